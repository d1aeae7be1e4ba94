//! Docker's health state machine. A container starts `starting`; a
//! success makes it `healthy` (and ends the start period); after the start
//! period, `retries` failures in a row make it `unhealthy`; failures
//! during the start period do not count.

use std::collections::VecDeque;
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;

use crate::timefmt::rfc3339;

/// Results kept for `inspect`.
pub const KEPT: usize = 5;
/// Bytes of a probe's output kept.
pub const OUTPUT: usize = 256;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Health {
    Starting,
    Healthy,
    Unhealthy,
}

impl Health {
    /// Every health state (the metrics' one series per state).
    pub const ALL: [Health; 3] = [Health::Starting, Health::Healthy, Health::Unhealthy];

    pub fn name(self) -> &'static str {
        match self {
            Health::Starting => "starting",
            Health::Healthy => "healthy",
            Health::Unhealthy => "unhealthy",
        }
    }
}

/// One probe's outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProbeResult {
    #[serde(serialize_with = "rfc3339")]
    pub time: SystemTime,
    pub healthy: bool,
    /// An exec probe's exit code.
    pub exit_code: Option<i32>,
    /// An http probe's status.
    pub http_status: Option<u16>,
    /// The first bytes of the output, or why the probe failed.
    pub output: String,
}

#[derive(Debug, Clone)]
pub struct Tracker {
    pub status: Health,
    failures: u32,
    started: Instant,
    start_period: Duration,
    retries: u32,
    /// The start period ended early, by a success.
    started_up: bool,
    pub results: VecDeque<ProbeResult>,
}

impl Tracker {
    pub fn new(started: Instant, start_period: Duration, retries: u32) -> Tracker {
        Tracker {
            status: Health::Starting,
            failures: 0,
            started,
            start_period,
            retries: retries.max(1),
            started_up: false,
            results: VecDeque::new(),
        }
    }

    /// Failures in a row that count.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// Records a result at `now`; the new status when it changed.
    pub fn record(&mut self, result: ProbeResult, now: Instant) -> Option<Health> {
        let before = self.status;
        if result.healthy {
            self.failures = 0;
            self.started_up = true;
            self.status = Health::Healthy;
        } else if self.started_up || now.duration_since(self.started) >= self.start_period {
            self.failures += 1;
            if self.failures >= self.retries {
                self.status = Health::Unhealthy;
            }
        }
        self.results.push_back(result);
        if self.results.len() > KEPT {
            self.results.pop_front();
        }
        (self.status != before).then_some(self.status)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(ok: bool) -> ProbeResult {
        ProbeResult { time: SystemTime::now(), healthy: ok, exit_code: None, http_status: None, output: String::new() }
    }

    #[test]
    fn failures_in_the_start_period_do_not_count_and_a_success_ends_it() {
        let t0 = Instant::now();
        let mut t = Tracker::new(t0, Duration::from_secs(10), 2);
        for s in 1..5 {
            assert_eq!(t.record(r(false), t0 + Duration::from_secs(s)), None);
        }
        assert_eq!(t.status, Health::Starting);
        assert_eq!(t.record(r(true), t0 + Duration::from_secs(6)), Some(Health::Healthy));
        // The period ended with the success: failures count now.
        assert_eq!(t.record(r(false), t0 + Duration::from_secs(7)), None);
        assert_eq!(t.record(r(false), t0 + Duration::from_secs(8)), Some(Health::Unhealthy));
        assert_eq!(t.record(r(true), t0 + Duration::from_secs(9)), Some(Health::Healthy));
        assert_eq!(t.results.len(), KEPT);
    }

    #[test]
    fn after_the_start_period_retries_failures_make_it_unhealthy() {
        let t0 = Instant::now();
        let mut t = Tracker::new(t0, Duration::from_secs(1), 3);
        assert_eq!(t.record(r(false), t0), None);
        let later = t0 + Duration::from_secs(2);
        assert_eq!(t.record(r(false), later), None);
        assert_eq!(t.record(r(false), later), None);
        assert_eq!(t.record(r(false), later), Some(Health::Unhealthy));
        assert_eq!(t.failures(), 3);
    }
}
