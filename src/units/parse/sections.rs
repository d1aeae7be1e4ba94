//! The small sections: `[unit]`, `[resources]`, `[restart]`, `[stop]` and
//! `[logs]`.

use std::time::Duration;

use toml::de::DeValue;

use super::keys::{Section, names_sorted};
use super::{Cx, UnitSpans};
use crate::units::model::{Logs, Resources, Restart, RestartPolicy, Stop, UnitSection};
use crate::units::suggest::did_you_mean;
use crate::units::values::names::check_dns_label;
use crate::units::values::signal::Signal;

/// Docker's smallest accepted memory limit.
const MIN_MEMORY: u64 = 6 << 20;
/// The kernel's smallest CFS quota is 1ms per 100ms period.
const MIN_NANO_CPUS: u64 = 10_000_000;

pub(super) fn parse_unit_section(cx: &mut Cx<'_>, s: &Section<'_, '_>, spans: &mut UnitSpans) -> UnitSection {
    s.check_keys(cx);
    let description = s.string(cx, "description");
    let label = |x: &str| check_dns_label(x).map(|_| x.to_string()).map_err(|e| format!("unit name {e}"));
    spans.after = names_sorted(s.string_list(cx, "after", label).unwrap_or_default());
    spans.requires = names_sorted(s.string_list(cx, "requires", label).unwrap_or_default());
    let ready_timeout = s.duration(cx, "ready_timeout").unwrap_or(Duration::from_secs(300));
    UnitSection {
        description,
        after: spans.after.iter().map(|(n, _)| n.clone()).collect(),
        requires: spans.requires.iter().map(|(n, _)| n.clone()).collect(),
        ready_timeout,
    }
}

pub(super) fn parse_resources(cx: &mut Cx<'_>, s: &Section<'_, '_>) -> Resources {
    s.check_keys(cx);
    let nano_cpus = s.typed(cx, "cpus", "a number of CPUs, like 0.5", |v| {
        let cpus = match v {
            DeValue::Float(f) => f.as_str().parse::<f64>().ok().filter(|x| x.is_finite()),
            DeValue::Integer(i) => i64::from_str_radix(i.as_str(), i.radix()).ok().map(|n| n as f64),
            _ => return None,
        };
        Some(match cpus {
            Some(c) if c > 0.0 && c <= 1e6 => {
                let nanos = (c * 1e9).round() as u64;
                if nanos < MIN_NANO_CPUS { Err(format!("{c} is below the minimum of 0.01 CPUs")) } else { Ok(nanos) }
            }
            _ => Err("must be a number of CPUs above zero, like 0.5 or 2".into()),
        })
    });
    let memory = s.size(cx, "memory").and_then(|m| {
        if m < MIN_MEMORY {
            cx.error(
                s.get("memory").map_or(0..0, |v| v.span()),
                "invalid \"memory\" in [resources]: the minimum is 6M",
            );
            None
        } else {
            Some(m)
        }
    });
    let pids = s.integer(cx, "pids", 1, i64::MAX).map(|n| n as u64);
    Resources { nano_cpus, memory, pids }
}

pub(super) fn parse_restart(cx: &mut Cx<'_>, s: &Section<'_, '_>) -> Restart {
    s.check_keys(cx);
    let policy = s.string_with(cx, "policy", |p| match p {
        "no" => Ok(RestartPolicy::No),
        "on-failure" => Ok(RestartPolicy::OnFailure),
        "always" => Ok(RestartPolicy::Always),
        "unless-stopped" => {
            Err(r#""unless-stopped" is what "always" means here: an operator's stop is always respected"#.into())
        }
        other => Err(format!(
            r#"{other:?} is not one of "no", "on-failure", "always"{}"#,
            did_you_mean(other, ["no", "on-failure", "always"])
        )),
    });
    let delay = s.positive_duration(cx, "delay").unwrap_or(Duration::from_millis(100));
    let max_delay = s.positive_duration(cx, "max_delay").unwrap_or(Duration::from_secs(60));
    if delay > max_delay
        && let Some(v) = s.get("delay").or_else(|| s.get("max_delay"))
    {
        cx.error(v.span(), "[restart] delay is longer than max_delay");
    }
    let reset_after = s.duration(cx, "reset_after").unwrap_or(Duration::from_secs(10));
    let limit = s.integer(cx, "limit", 0, i64::from(u32::MAX)).map_or(0, |n| n as u32);
    Restart { policy: policy.unwrap_or(RestartPolicy::Always), delay, max_delay, reset_after, limit }
}

pub(super) fn parse_stop(cx: &mut Cx<'_>, s: &Section<'_, '_>) -> Stop {
    s.check_keys(cx);
    let signal = s.typed(cx, "signal", r#"a signal name like "SIGTERM" or a number"#, |v| match v {
        DeValue::String(name) => Some(Signal::parse(name)),
        DeValue::Integer(i) => Some(
            i64::from_str_radix(i.as_str(), i.radix())
                .ok()
                .and_then(Signal::from_number)
                .ok_or_else(|| format!("{} is not a signal number (1-31, 34-64)", i.as_str())),
        ),
        _ => None,
    });
    let timeout = s.duration(cx, "timeout").unwrap_or(Duration::from_secs(10));
    Stop { signal, timeout }
}

pub(super) fn parse_logs(cx: &mut Cx<'_>, s: &Section<'_, '_>) -> Logs {
    s.check_keys(cx);
    let max_size = s.size(cx, "max_size").unwrap_or(10 << 20);
    if max_size < 4096
        && let Some(v) = s.get("max_size")
    {
        cx.error(v.span(), "invalid \"max_size\" in [logs]: the minimum is 4k");
    }
    let max_files = s.integer(cx, "max_files", 1, 1000).map_or(3, |n| n as u32);
    Logs { max_size, max_files }
}
