//! A unit's lifecycle, as pure data and decisions: its states, how a
//! container ended, and what the restart policy makes of an exit.

use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;

pub use crate::timefmt::{opt_rfc3339, rfc3339};
use crate::units::model::{Restart, RestartPolicy};
use crate::units::values::signal::Signal;

/// The design's states of a unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// Stopped by an operator, or never started.
    Inactive,
    /// Its file never parsed: nothing runs.
    Invalid,
    /// Dependencies are not ready yet.
    Waiting,
    Pulling,
    Starting,
    Running,
    /// Running, its processes frozen by an operator's `pause` until
    /// `unpause`: no probes, no restarts.
    Paused,
    Stopping,
    /// Ended, and the restart policy leaves it so.
    Exited,
    /// Ended; restarts at `next_retry`.
    Backoff,
    /// Restart limit hit, or an error no retry can mend.
    Failed,
}

impl State {
    /// Every state, in the order of the enum: what lists them all (the
    /// metrics' one series per state) goes by this. A new variant fails
    /// `every_state_is_listed` until it is added here.
    pub const ALL: [State; 11] = [
        State::Inactive,
        State::Invalid,
        State::Waiting,
        State::Pulling,
        State::Starting,
        State::Running,
        State::Paused,
        State::Stopping,
        State::Exited,
        State::Backoff,
        State::Failed,
    ];

    pub fn name(self) -> &'static str {
        match self {
            State::Inactive => "inactive",
            State::Invalid => "invalid",
            State::Waiting => "waiting",
            State::Pulling => "pulling",
            State::Starting => "starting",
            State::Running => "running",
            State::Paused => "paused",
            State::Stopping => "stopping",
            State::Exited => "exited",
            State::Backoff => "backoff",
            State::Failed => "failed",
        }
    }

    /// A state the unit stays in until something happens to it (an exit,
    /// a timer, an operator): what a waiting client waits for.
    pub fn settled(self) -> bool {
        !matches!(self, State::Waiting | State::Pulling | State::Starting | State::Stopping)
    }
}

impl std::fmt::Display for State {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// How a container (or its start) ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExitInfo {
    /// The exit code; none when a signal ended it.
    pub exit_code: Option<i32>,
    /// The signal's name.
    pub signal: Option<String>,
    pub oom_killed: bool,
    /// Stopped for failing its health check.
    pub unhealthy: bool,
    /// The start failed: no program ran.
    pub error: Option<String>,
    #[serde(serialize_with = "rfc3339")]
    pub time: SystemTime,
}

impl ExitInfo {
    pub fn code(code: i32, oom_killed: bool, time: SystemTime) -> ExitInfo {
        ExitInfo { exit_code: Some(code), signal: None, oom_killed, unhealthy: false, error: None, time }
    }

    pub fn signal(signal: i32, oom_killed: bool, time: SystemTime) -> ExitInfo {
        let name = u8::try_from(signal)
            .ok()
            .and_then(|n| Signal::from_number(n.into()))
            .map_or_else(|| signal.to_string(), |s| s.to_string());
        ExitInfo { exit_code: None, signal: Some(name), oom_killed, unhealthy: false, error: None, time }
    }

    pub fn start_error(error: String, time: SystemTime) -> ExitInfo {
        ExitInfo { exit_code: None, signal: None, oom_killed: false, unhealthy: false, error: Some(error), time }
    }

    /// Whether `on-failure` counts it as a failure: anything but exit 0.
    pub fn is_failure(&self) -> bool {
        self.exit_code != Some(0) || self.oom_killed || self.unhealthy
    }

    /// `exited 0`, `exited 137 (oom-killed)`, `killed by SIGKILL`,
    /// `start failed: ...`.
    pub fn describe(&self) -> String {
        let base = match (&self.exit_code, &self.signal, &self.error) {
            (_, _, Some(e)) => return format!("start failed: {e}"),
            (Some(c), _, _) => format!("exited {c}"),
            (None, Some(s), _) => format!("killed by {s}"),
            (None, None, None) => "ended".to_string(),
        };
        let base = if self.oom_killed { format!("{base} (oom-killed)") } else { base };
        if self.unhealthy { format!("unhealthy, then {base}") } else { base }
    }
}

/// What follows an exit the operator did not ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterExit {
    /// Start again after this delay.
    Restart(Duration),
    /// The policy leaves it stopped: `exited`.
    Stay,
    /// The restart limit is hit: `failed`.
    Fail,
}

/// The decision for an exit. `in_row` counts the exits in a row that led
/// to a restart before this one (reset by `reset_after` of good running,
/// which `ran_for` tells).
pub fn after_exit(policy: &Restart, in_row: u32, ran_for: Duration, exit: &ExitInfo) -> (AfterExit, u32) {
    let restart = match policy.policy {
        RestartPolicy::No => false,
        RestartPolicy::OnFailure => exit.is_failure(),
        RestartPolicy::Always => true,
    };
    if !restart {
        return (AfterExit::Stay, 0);
    }
    let in_row = if ran_for >= policy.reset_after { 1 } else { in_row + 1 };
    // `limit = N` allows N restarts in a row (Docker's `on-failure:N`);
    // the failure after them is final.
    if policy.limit > 0 && in_row > policy.limit {
        return (AfterExit::Fail, in_row);
    }
    (AfterExit::Restart(backoff(policy, in_row)), in_row)
}

/// Up to a tenth more than `delay`, by `jitter` (a fraction in [0, 1)),
/// and never past `max_delay`: the cap stays a cap.
pub fn jittered(delay: Duration, policy: &Restart, jitter: f64) -> Duration {
    let extra = delay.mul_f64(jitter.clamp(0.0, 1.0) / 10.0);
    delay.saturating_add(extra).min(policy.max_delay.max(delay))
}

/// Restarts of the whole fleet are paced: at most [`Pace::BURST`] at once,
/// then one per [`Pace::INTERVAL`]. A start costs the daemon tens of
/// milliseconds of CPU (a helper process, the writable layer, mounts, a
/// veth pair), so 200 units crash-looping on their own backoff alone would
/// keep a core busy; paced, their restarts cost a bounded share whatever
/// their number, while a few failing units keep their own backoff.
#[derive(Debug, Default)]
pub struct Pace {
    /// The theoretical time of the next restart (GCRA).
    next: Option<Instant>,
}

impl Pace {
    pub const INTERVAL: Duration = Duration::from_millis(500);
    pub const BURST: u32 = 10;

    /// When a restart due at `due` may happen: at `due`, or later when
    /// the fleet has used its pace. Calls must come in the order of `due`
    /// (as timers fire): one far ahead would hold back every later call.
    pub fn slot(&mut self, due: Instant) -> Instant {
        let tolerance = Self::INTERVAL * (Self::BURST - 1);
        let next = self.next.unwrap_or(due);
        let at = next.checked_sub(tolerance).map_or(due, |early| early.max(due));
        self.next = Some(next.max(at) + Self::INTERVAL);
        at
    }
}

/// The delay before restart number `n` in a row (from 1): `delay`,
/// doubling up to `max_delay`.
pub fn backoff(policy: &Restart, n: u32) -> Duration {
    let factor = 1u32.checked_shl(n.saturating_sub(1).min(31)).unwrap_or(u32::MAX);
    policy.delay.saturating_mul(factor).min(policy.max_delay.max(policy.delay))
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: SystemTime = SystemTime::UNIX_EPOCH;

    fn policy(p: RestartPolicy, limit: u32) -> Restart {
        Restart {
            policy: p,
            delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(1),
            reset_after: Duration::from_secs(10),
            limit,
        }
    }

    #[test]
    fn delays_double_up_to_the_maximum() {
        let p = policy(RestartPolicy::Always, 0);
        let d: Vec<u128> = (1..=7).map(|n| backoff(&p, n).as_millis()).collect();
        assert_eq!(d, [100, 200, 400, 800, 1000, 1000, 1000]);
        assert_eq!(backoff(&p, 200), Duration::from_secs(1));
    }

    #[test]
    fn jitter_adds_up_to_a_tenth_and_never_passes_the_cap() {
        let p = policy(RestartPolicy::Always, 0);
        assert_eq!(jittered(Duration::from_millis(100), &p, 0.0), Duration::from_millis(100));
        assert_eq!(jittered(Duration::from_millis(100), &p, 0.5), Duration::from_millis(105));
        assert_eq!(jittered(Duration::from_millis(800), &p, 0.99), Duration::from_micros(879_200));
        assert_eq!(jittered(Duration::from_secs(1), &p, 0.9), Duration::from_secs(1), "at the cap");
    }

    #[test]
    fn on_failure_leaves_a_clean_exit_alone() {
        let p = policy(RestartPolicy::OnFailure, 0);
        let short = Duration::from_millis(5);
        assert_eq!(after_exit(&p, 0, short, &ExitInfo::code(0, false, T)).0, AfterExit::Stay);
        assert_eq!(after_exit(&p, 0, short, &ExitInfo::code(1, false, T)).0, AfterExit::Restart(p.delay));
        assert_eq!(after_exit(&p, 0, short, &ExitInfo::signal(9, false, T)).0, AfterExit::Restart(p.delay));
        let no = policy(RestartPolicy::No, 0);
        assert_eq!(after_exit(&no, 0, short, &ExitInfo::code(1, false, T)).0, AfterExit::Stay);
        let always = policy(RestartPolicy::Always, 0);
        assert_eq!(after_exit(&always, 0, short, &ExitInfo::code(0, false, T)).0, AfterExit::Restart(p.delay));
    }

    #[test]
    fn the_limit_allows_that_many_restarts_in_a_row_and_good_running_resets_it() {
        let p = policy(RestartPolicy::Always, 2);
        let short = Duration::from_millis(5);
        let exit = ExitInfo::code(1, false, T);
        let (a, n) = after_exit(&p, 0, short, &exit);
        assert_eq!((a, n), (AfterExit::Restart(Duration::from_millis(100)), 1));
        let (a, n) = after_exit(&p, n, short, &exit);
        assert_eq!((a, n), (AfterExit::Restart(Duration::from_millis(200)), 2));
        assert_eq!(after_exit(&p, n, short, &exit).0, AfterExit::Fail);
        // Ten seconds of running start the count again.
        assert_eq!(after_exit(&p, n, Duration::from_secs(10), &exit), (AfterExit::Restart(p.delay), 1));
    }

    #[test]
    fn every_state_is_listed() {
        // Exhaustive: a new state does not compile here until it has a
        // place, and the assertion wants it in ALL at that place.
        let place = |s: State| match s {
            State::Inactive => 0,
            State::Invalid => 1,
            State::Waiting => 2,
            State::Pulling => 3,
            State::Starting => 4,
            State::Running => 5,
            State::Paused => 6,
            State::Stopping => 7,
            State::Exited => 8,
            State::Backoff => 9,
            State::Failed => 10,
        };
        let places: Vec<usize> = State::ALL.iter().map(|s| place(*s)).collect();
        assert_eq!(places, (0..State::ALL.len()).collect::<Vec<_>>());
        assert_eq!(State::ALL.iter().map(|s| place(*s)).max(), Some(State::ALL.len() - 1));
    }

    #[test]
    fn exits_are_described_as_operators_read_them() {
        assert_eq!(ExitInfo::code(137, true, T).describe(), "exited 137 (oom-killed)");
        assert_eq!(ExitInfo::signal(9, false, T).describe(), "killed by SIGKILL");
        assert_eq!(ExitInfo::code(0, false, T).describe(), "exited 0");
        assert!(ExitInfo::start_error("exec foo: no such file".into(), T).describe().starts_with("start failed"));
    }
}
