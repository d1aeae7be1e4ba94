//! The boot timeline: when each step of bringing the units up was done,
//! read from the kernel's `CLOCK_BOOTTIME` (time since the kernel started),
//! so that as PID 1 the first figure is the kernel's own start-up. Served
//! at `GET /v1/boot`, printed by `supervisorctl boot`.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::{broadcast, mpsc, oneshot};

use super::engine::{Command, Event, StateEvent};
use super::lifecycle::State;

/// A step, in the order a boot takes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// supervisord's `main` ran (as PID 1: `/init`).
    Started,
    /// The configured kernel modules are loaded.
    ModulesLoaded,
    /// The data disk is checked and mounted (an appliance with one).
    DataDisk,
    /// The uplink interface has its address and route.
    Uplink,
    /// The bridge network is set up.
    Bridge,
    /// The control socket listens.
    ControlPath,
    /// The first unit's container runs.
    FirstUnitRan,
    /// Every unit that is to run (valid, not stopped by an operator) has
    /// run: reached `running` since the start (one that ends by design, a
    /// job, still counts).
    AllUnitsRan,
}

/// One step and when it was done.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Mark {
    pub phase: Phase,
    /// Since the kernel started, in milliseconds (microsecond precision).
    #[serde(serialize_with = "millis")]
    pub at: Duration,
}

fn millis<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64((d.as_micros() as f64) / 1000.0)
}

/// The marks so far; each phase is marked once (the first time).
#[derive(Debug, Clone, Default)]
pub struct Timeline(Arc<Mutex<Vec<Mark>>>);

impl Timeline {
    /// Marks `phase` now.
    pub fn mark(&self, phase: Phase) {
        self.mark_at(phase, boottime());
    }

    pub fn mark_at(&self, phase: Phase, at: Duration) {
        let mut marks = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if !marks.iter().any(|m| m.phase == phase) {
            marks.push(Mark { phase, at });
        }
    }

    /// The marks in the order of the phases.
    pub fn marks(&self) -> Vec<Mark> {
        let mut marks = self.0.lock().unwrap_or_else(|e| e.into_inner()).clone();
        marks.sort_by_key(|m| m.phase);
        marks
    }
}

/// Marks the first unit that runs, then the moment every unit has run,
/// from the engine's state events; ends then, or when the engine is gone.
/// Each unit's state is followed from the events (the engine is asked for
/// all of them once, and again only if events were missed), and every
/// change is judged: a unit that never ran and is then removed, held
/// stopped or made invalid no longer counts.
pub async fn watch_units(mut events: broadcast::Receiver<StateEvent>, tx: mpsc::UnboundedSender<Event>, t: Timeline) {
    let mut progress = Progress::default();
    let mut ask = true;
    loop {
        if ask {
            let (reply, rx) = oneshot::channel();
            if tx.send(Event::Command(Command::Status(reply))).is_err() {
                return;
            }
            let Ok(units) = rx.await else { return };
            progress.seed(units.into_iter().map(|u| (u.name, u.state)));
            ask = false;
        }
        if progress.any_ran() {
            t.mark(Phase::FirstUnitRan);
        }
        if progress.all_ran() {
            t.mark(Phase::AllUnitsRan);
            return;
        }
        match events.recv().await {
            Err(broadcast::error::RecvError::Closed) => return,
            Err(broadcast::error::RecvError::Lagged(_)) => ask = true,
            Ok(ev) => progress.event(&ev.unit, ev.new, ev.removed),
        }
    }
}

/// Which units have run, and the state of each.
#[derive(Debug, Default)]
struct Progress {
    states: BTreeMap<String, State>,
    ran: BTreeSet<String>,
}

impl Progress {
    fn seed(&mut self, units: impl Iterator<Item = (String, State)>) {
        self.states = units.collect();
        let ran: Vec<String> = self.states.iter().filter(|(_, s)| has_run(**s)).map(|(n, _)| n.clone()).collect();
        self.ran.extend(ran);
    }

    fn event(&mut self, unit: &str, new: State, removed: bool) {
        if removed {
            self.states.remove(unit);
            return;
        }
        if has_run(new) {
            self.ran.insert(unit.to_string());
        }
        self.states.insert(unit.to_string(), new);
    }

    fn any_ran(&self) -> bool {
        !self.ran.is_empty()
    }

    /// Every unit that is to run (not invalid, not held stopped) has run.
    fn all_ran(&self) -> bool {
        self.any_ran()
            && self
                .states
                .iter()
                .filter(|(_, s)| !matches!(s, State::Inactive | State::Invalid))
                .all(|(n, _)| self.ran.contains(n))
    }
}

/// A state only a unit that ran reaches: running, or exited (a job that
/// ran and ended).
fn has_run(state: State) -> bool {
    matches!(state, State::Running | State::Exited)
}

/// Time since the kernel started, suspend included.
pub fn boottime() -> Duration {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_BOOTTIME).map_or(Duration::ZERO, Duration::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_phase_keeps_its_first_mark_and_marks_come_in_phase_order() {
        let t = Timeline::default();
        t.mark_at(Phase::ControlPath, Duration::from_millis(900));
        t.mark_at(Phase::Started, Duration::from_micros(412_345));
        t.mark_at(Phase::ControlPath, Duration::from_millis(950));
        let marks = t.marks();
        assert_eq!(
            marks,
            [
                Mark { phase: Phase::Started, at: Duration::from_micros(412_345) },
                Mark { phase: Phase::ControlPath, at: Duration::from_millis(900) },
            ]
        );
        assert_eq!(
            serde_json::to_value(&marks).unwrap(),
            serde_json::json!([{"phase": "started", "at": 412.345}, {"phase": "control_path", "at": 900.0}])
        );
    }

    #[test]
    fn all_units_ran_once_each_that_is_to_run_has_run() {
        let mut p = Progress::default();
        p.seed(
            [("db", State::Starting), ("job", State::Waiting), ("off", State::Inactive)]
                .map(|(n, s)| (n.into(), s))
                .into_iter(),
        );
        assert!(!p.any_ran());
        p.event("db", State::Running, false);
        assert!(p.any_ran() && !p.all_ran());
        // A job that ran and ended counts; a held unit does not wait.
        p.event("job", State::Running, false);
        p.event("job", State::Exited, false);
        assert!(p.all_ran());
        // A unit that never ran holds it back, until it goes.
        p.event("new", State::Starting, false);
        assert!(!p.all_ran());
        p.event("new", State::Failed, false);
        assert!(!p.all_ran(), "a failed start did not run");
        p.event("new", State::Inactive, true);
        assert!(p.all_ran());
        // Or until it is held stopped or made invalid.
        p.event("bad", State::Backoff, false);
        assert!(!p.all_ran());
        p.event("bad", State::Invalid, false);
        assert!(p.all_ran());
    }

    #[test]
    fn the_clock_is_the_kernels_since_it_started() {
        // /proc/uptime is the same clock (CLOCK_BOOTTIME), in centiseconds.
        let uptime: f64 = std::fs::read_to_string("/proc/uptime").unwrap().split(' ').next().unwrap().parse().unwrap();
        let ours = boottime().as_secs_f64();
        assert!((ours - uptime).abs() < 1.0, "CLOCK_BOOTTIME {ours} s, /proc/uptime {uptime} s");
    }
}
