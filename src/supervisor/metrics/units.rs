//! The per-unit metrics of one scrape, encoded from the engine's samples
//! and the kernel's readings (a `prometheus-client` collector: nothing of
//! it outlives the scrape).
//!
//! Names follow Prometheus's conventions: the `supervisor_` prefix, base
//! units in the name (`_seconds`, `_bytes`), `_total` on counters, and an
//! enumeration as one 0/1 series per value (`state="running"`), so that
//! `sum by (state)` and alerts on `== 1` work and no value is encoded in
//! a number. The lists of values come from where they are defined
//! ([`State::ALL`], [`Health::ALL`], [`UpdateState::ALL`]).

use std::time::SystemTime;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Unit;

use super::Reading;
use crate::health::Health;
use crate::supervisor::engine::UnitSample;
use crate::supervisor::policy::lifecycle::State;
use crate::supervisor::policy::update::UpdateState;

/// Every unit of one scrape, with what was read of its container.
#[derive(Debug)]
pub struct Units {
    pub units: Vec<(UnitSample, Reading)>,
    /// The wall clock at the scrape (for the uptimes).
    pub now: SystemTime,
}

type Labels<'a> = [(&'static str, &'a str); 2];

/// One metric family: its descriptor, then one series per row (none at
/// all when there is no row: a family with no series says nothing).
fn family<S: EncodeLabelSet, M: EncodeMetric>(
    encoder: &mut DescriptorEncoder,
    (name, help, unit): (&str, &str, Option<&Unit>),
    rows: impl IntoIterator<Item = (S, M)>,
) -> Result<(), std::fmt::Error> {
    let rows: Vec<(S, M)> = rows.into_iter().collect();
    let Some((_, first)) = rows.first() else { return Ok(()) };
    let mut metric = encoder.encode_descriptor(name, help, unit, first.metric_type())?;
    for (labels, m) in &rows {
        m.encode(metric.encode_family(labels)?)?;
    }
    Ok(())
}

fn unit(name: &str) -> [(&'static str, &str); 1] {
    [("unit", name)]
}

fn flag(on: bool) -> ConstGauge {
    ConstGauge::new(i64::from(on))
}

fn gauge(v: u64) -> ConstGauge {
    ConstGauge::new(i64::try_from(v).unwrap_or(i64::MAX))
}

impl Collector for Units {
    fn encode(&self, mut e: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let units = &self.units;
        let per_state = State::ALL.map(|s| units.iter().filter(|(u, _)| u.state == s).count());
        family(
            &mut e,
            ("units", "Units in each state.", None),
            State::ALL.iter().zip(per_state).map(|(s, n)| ([("state", s.name())], gauge(n as u64))),
        )?;
        family(
            &mut e,
            ("unit_state", "The unit's state: 1 for the state it is in, 0 for the others.", None),
            units.iter().flat_map(|(u, _)| {
                State::ALL
                    .iter()
                    .map(|s| -> (Labels, _) { ([("unit", &u.name), ("state", s.name())], flag(u.state == *s)) })
            }),
        )?;
        family(
            &mut e,
            (
                "unit_health",
                "The running container's health (units with a health check): 1 for its status, 0 for the others.",
                None,
            ),
            units.iter().filter_map(|(u, _)| Some((u, u.health?))).flat_map(|(u, h)| {
                Health::ALL
                    .iter()
                    .map(move |s| -> (Labels, _) { ([("unit", &u.name), ("health", s.name())], flag(h == *s)) })
            }),
        )?;
        family(
            &mut e,
            ("unit_update_state", "The unit's update: 1 for the state it is in (all 0: no update to report).", None),
            units.iter().flat_map(|(u, _)| {
                UpdateState::ALL.iter().map(|s| -> (Labels, _) {
                    ([("unit", &u.name), ("state", s.name())], flag(u.update_state == Some(*s)))
                })
            }),
        )?;
        family(
            &mut e,
            ("unit_restarts", "Restarts by the unit's restart policy since the daemon started.", None),
            units.iter().map(|(u, _)| (unit(&u.name), ConstCounter::new(u64::from(u.restarts)))),
        )?;
        family(
            &mut e,
            (
                "unit_oom_kills",
                "The unit's containers that the kernel's OOM killer ended since the daemon started.",
                None,
            ),
            units.iter().map(|(u, _)| (unit(&u.name), ConstCounter::new(u.oom_kills))),
        )?;
        family(
            &mut e,
            (
                "unit_last_exit_code",
                "How the unit's last container ended: its exit code, or 128 + the signal that killed it.",
                None,
            ),
            units.iter().filter_map(|(u, _)| Some((unit(&u.name), ConstGauge::new(i64::from(u.last_exit_code?))))),
        )?;
        family(
            &mut e,
            ("unit_uptime", "How long the unit's container has been running.", Some(&Unit::Seconds)),
            units.iter().filter_map(|(u, _)| {
                let up = self.now.duration_since(u.started_at?).unwrap_or_default();
                Some((unit(&u.name), ConstGauge::new(up.as_secs_f64())))
            }),
        )?;
        family(
            &mut e,
            ("unit_cpu", "CPU time the unit's container has used (user and system).", Some(&Unit::Seconds)),
            units.iter().filter_map(|(u, r)| Some((unit(&u.name), ConstCounter::new(r.cpu_seconds?)))),
        )?;
        family(
            &mut e,
            (
                "unit_memory",
                "Memory the unit's container uses, without the page cache the kernel may drop at once.",
                Some(&Unit::Bytes),
            ),
            units.iter().filter_map(|(u, r)| Some((unit(&u.name), gauge(r.memory_bytes?)))),
        )?;
        family(
            &mut e,
            ("unit_memory_limit", "The unit's memory limit (units with one).", Some(&Unit::Bytes)),
            units.iter().filter_map(|(u, r)| Some((unit(&u.name), gauge(r.memory_limit_bytes?)))),
        )?;
        family(
            &mut e,
            ("unit_pids", "Processes (tasks) in the unit's container.", None),
            units.iter().filter_map(|(u, r)| Some((unit(&u.name), gauge(r.pids?)))),
        )?;
        family(
            &mut e,
            (
                "unit_network_receive",
                "Bytes the unit's container received (its own network namespace, loopback left out).",
                Some(&Unit::Bytes),
            ),
            units.iter().filter_map(|(u, r)| Some((unit(&u.name), ConstCounter::new(r.network?.0)))),
        )?;
        family(
            &mut e,
            (
                "unit_network_transmit",
                "Bytes the unit's container sent (its own network namespace, loopback left out).",
                Some(&Unit::Bytes),
            ),
            units.iter().filter_map(|(u, r)| Some((unit(&u.name), ConstCounter::new(r.network?.1)))),
        )
    }
}
