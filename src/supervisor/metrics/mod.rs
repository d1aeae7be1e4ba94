//! Prometheus metrics (`metrics = "127.0.0.1:9101"` in the global config):
//! a listener of its own serving `GET /metrics`, read-only, apart from the
//! control socket and its privileges (`serve.rs`).
//!
//! Nothing here runs on a timer. The daemon-wide counters ([`Counters`])
//! are bumped where the facts happen: the engine loop notes how long each
//! pass took and when the unit directory was applied, the pull paths note
//! each pull and the bytes it fetched. Everything per unit is read at
//! scrape time: the records from the engine (one `Sample` command on its
//! channel, as `status` asks), the cgroup and network figures from the
//! kernel on the blocking pool (`read.rs`), then encoded by
//! `prometheus-client` (`units.rs`). An idle daemon without scrapers wakes
//! no more often for having metrics.

mod read;
mod serve;
mod units;

use std::sync::atomic::AtomicU64;
use std::time::{Duration, SystemTime};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::{Registry, Unit};

use crate::runtime::image::manifest::Descriptor;
use crate::runtime::image::{Digest, Progress};
pub use read::{Reading, read};
pub use serve::{MetricsError, bind, serve, start};
pub use units::Units;

/// The bounds of the reconcile histogram's buckets, in seconds: a pass of
/// the loop is usually well under a millisecond; a reload of hundreds of
/// units, or a loaded machine, takes longer.
const RECONCILE_BUCKETS: [f64; 12] = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0];

/// A pull's outcome, the label of `supervisor_image_pulls_total`.
type PullResult = [(&'static str, &'static str); 1];
const SUCCESS: PullResult = [("result", "success")];
const FAILURE: PullResult = [("result", "failure")];

/// The daemon's own counters, shared (cheap clones of the same values) by
/// the engine, the pull paths and the listener.
#[derive(Debug, Clone)]
pub struct Counters {
    reconcile: Histogram,
    pulls: Family<PullResult, Counter>,
    pulled_bytes: Counter,
    last_reload: Gauge<f64, AtomicU64>,
}

impl Default for Counters {
    fn default() -> Self {
        let pulls = Family::default();
        // Both outcomes are shown from the start, at zero.
        for r in [SUCCESS, FAILURE] {
            let _ = pulls.get_or_create(&r);
        }
        Counters {
            reconcile: Histogram::new(RECONCILE_BUCKETS),
            pulls,
            pulled_bytes: Counter::default(),
            last_reload: Gauge::default(),
        }
    }
}

impl Counters {
    /// One pass of the engine loop (an event, or a burst of the runtime's
    /// reports, handled; the units converged) took `took`.
    pub fn reconciled(&self, took: Duration) {
        self.reconcile.observe(took.as_secs_f64());
    }

    /// The unit directory was read and its plan applied at `at`.
    pub fn reloaded(&self, at: SystemTime) {
        let secs = at.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default().as_secs_f64();
        self.last_reload.set(secs);
    }

    /// A pull ended, well or not.
    pub fn pulled(&self, ok: bool) {
        self.pulls.get_or_create(if ok { &SUCCESS } else { &FAILURE }).inc();
    }

    /// Wraps a pull's progress so that the bytes it fetches are counted.
    pub fn counting<'a>(&'a self, inner: &'a dyn Progress) -> Counting<'a> {
        Counting { inner, bytes: &self.pulled_bytes }
    }

    /// Registers the daemon-wide metrics in `registry`.
    fn register(&self, registry: &mut Registry) {
        registry.register_with_unit(
            "reconcile_duration",
            "How long one pass of the engine loop took: an event (or a burst of the runtime's reports) handled and every unit converged",
            Unit::Seconds,
            self.reconcile.clone(),
        );
        registry.register(
            "image_pulls",
            "Image pulls (a unit's start, supervisorctl pull, auto-update), by outcome",
            self.pulls.clone(),
        );
        registry.register_with_unit(
            "image_pulled",
            "Bytes of image layers fetched by pulls",
            Unit::Bytes,
            self.pulled_bytes.clone(),
        );
        registry.register_with_unit(
            "last_reload_success_timestamp",
            "When the unit directory was last read and its plan applied (Unix time)",
            Unit::Seconds,
            self.last_reload.clone(),
        );
    }
}

/// A pull's progress, passed on, with its layer bytes counted.
pub struct Counting<'a> {
    inner: &'a dyn Progress,
    bytes: &'a Counter,
}

impl Progress for Counting<'_> {
    fn resolved(&self, reference: &str, manifest: &Digest, layers: &[Descriptor]) {
        self.inner.resolved(reference, manifest, layers);
    }
    fn layer_bytes(&self, layer: &Digest, bytes: u64) {
        self.bytes.inc_by(bytes);
        self.inner.layer_bytes(layer, bytes);
    }
    fn layer_done(&self, layer: &Digest, cached: bool) {
        self.inner.layer_done(layer, cached);
    }
}

/// The content types of the two text formats: OpenMetrics (what
/// `prometheus-client` writes, and what Prometheus asks for first) and
/// Prometheus's own text format 0.0.4 (for clients that do not ask for
/// OpenMetrics).
pub const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
pub const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The exposition: every unit of `units` and the daemon's counters, in
/// OpenMetrics text (ending in `# EOF`) or, when not `openmetrics`,
/// Prometheus's text format.
pub fn exposition(units: Units, counters: &Counters, openmetrics: bool) -> String {
    let mut registry = Registry::with_prefix("supervisor");
    registry.register_collector(Box::new(units));
    counters.register(&mut registry);
    registry.register("build", "The supervisor's version", Info::new([("version", env!("CARGO_PKG_VERSION"))]));
    let mut out = String::new();
    // Writing into a String does not fail, nor does any of our encoders.
    let _ = if openmetrics {
        prometheus_client::encoding::text::encode(&mut out, &registry)
    } else {
        prometheus_client::encoding::prometheus_text::encode(&mut out, &registry)
    };
    out
}

#[cfg(test)]
mod tests;
