//! The decision core: every rule of the supervisor as a pure state
//! machine. Events go in as method calls (a new reading of the unit
//! directory, a container started or ended, a probe's result, a timer,
//! an operator's command), each with the current time as an argument;
//! [`Core::converge`] then returns the [`Action`]s that move every unit
//! one step towards what it should be. No I/O, no tokio, no clock: the
//! engine loop (`super::engine`) carries the actions out, and the tests in
//! `tests/` drive the core directly, without root.
//!
//! What is decided here: the reload plan and how it is applied
//! (keep-last-good for invalid files), ordering and readiness gating,
//! operator holds across reloads, restart policy and backoff, stop
//! ordering (dependents first, at shutdown too), what a dependency's
//! failure does to its dependents, and what an operator's `pause` holds.

pub mod health;
pub mod lifecycle;
pub mod reload;
pub mod status;
pub mod update;

pub mod beside;
mod converge;
mod events;
mod pause;
mod record;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

pub use events::OpError;
pub use record::{HISTORY, Life, Notify, Phase, Record, Rest, Run, Running};

use crate::runtime::image::config::Healthcheck;
use crate::units::LoadedUnit;
use health::Check;
use lifecycle::State;
use status::{StateEvent, UnitStatus};

/// The time of an event: the monotonic clock for every decision, the
/// wall clock for what operators read.
#[derive(Debug, Clone, Copy)]
pub struct Now {
    pub mono: Instant,
    pub wall: SystemTime,
    /// A random fraction in [0, 1) drawn for this event: the restart
    /// backoff's jitter, so that units failing together do not all come
    /// back at the same instant. An input like the clock, so tests fix it.
    pub jitter: f64,
}

impl Now {
    pub fn after(self, d: Duration) -> Now {
        Now { mono: self.mono + d, wall: self.wall + d, ..self }
    }
}

/// What an operator asks of units.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Start,
    Stop,
    Restart,
}

/// The network of another unit's container that a `network = "unit:..."`
/// unit joins: its first process, and its address on the bridge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Join {
    pub pid: i32,
    pub address: Option<std::net::Ipv4Addr>,
}

/// What a started container reports.
#[derive(Debug, Clone)]
pub struct Started {
    pub pid: i32,
    pub stop_signal: i32,
    pub image_digest: String,
    /// The image's HEALTHCHECK.
    pub image_health: Option<Healthcheck>,
    /// Its address on the bridge.
    pub address: Option<std::net::Ipv4Addr>,
    pub ports: Vec<String>,
}

/// A start-first update's switchover, done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Moved {
    /// From the call to the new rules and names in place.
    pub took: Duration,
    /// The ports now published to the new container.
    pub ports: Vec<String>,
}

/// How a start ended: the container runs, or it could not be made (the
/// message is what `status` shows as the unit's error).
#[derive(Debug, Clone)]
pub enum StartOutcome {
    Running(Started),
    Failed(String),
}

/// A timer the core asks for; it comes back as the matching call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Timer {
    /// [`Core::backoff_over`].
    Backoff { name: String, generation: u64 },
    /// [`Core::stop_timeout`].
    StopTimeout { name: String, generation: u64 },
    /// [`Core::wait_timeout`].
    WaitTimeout { name: String },
    /// [`Core::drained`]: the old container of a switchover may stop.
    Drained { name: String, generation: u64 },
    /// A trial's time is up (`healthy_within`, or `min_healthy` of being
    /// ready): it only wakes the loop, [`Core::converge`] reads the clock.
    Update { name: String, generation: u64 },
}

/// What the engine is to do.
#[derive(Debug, Clone)]
pub enum Action {
    /// Create the unit's container (pull, prepare, spawn).
    /// `image`: the image ID to run (none: resolve the reference by the
    /// unit's pull policy). `beside`: a start-first update's new
    /// container, beside the serving one (a runtime name of its own, its
    /// own address, no published ports yet).
    Start {
        name: String,
        generation: u64,
        unit: Box<LoadedUnit>,
        join: Option<Join>,
        image: Option<String>,
        beside: bool,
    },
    /// Move the unit's traffic (published ports, its name on the bridge)
    /// from its serving container (`from`) to the new one beside it
    /// (`to`), in one step; reported back by [`Core::switched`].
    Switch { name: String, from: u64, to: u64 },
    /// Send the container's first process its stop signal.
    Signal { name: String, generation: u64, pid: i32, signal: i32 },
    /// SIGKILL to every process of the container.
    KillAll { name: String, generation: u64 },
    /// Thaw the container's processes (a paused container being stopped:
    /// before its stop signal, which comes next).
    Thaw { name: String, generation: u64 },
    /// End what lives beside the container (its probe loop, its notify
    /// listener): it is being stopped or is gone.
    EndTasks { name: String, generation: u64 },
    /// Run this check against the container from now on (none: no probe
    /// loop); replaces any loop it had.
    Probe { name: String, generation: u64, probe: Option<ProbeLoop> },
    /// Apply a changed config to the running container: its log limits,
    /// and its `[resources]` when `resources`.
    Update { name: String, generation: u64, unit: Box<LoadedUnit>, resources: bool },
    /// Call back after `after`.
    Timer { after: Duration, timer: Timer },
    /// A unit changed state.
    Emit(StateEvent),
    /// Something worth a line in the daemon's log.
    Note { name: String, level: Level, message: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Info,
    Warn,
    Error,
}

/// A probe loop to run.
#[derive(Debug, Clone)]
pub struct ProbeLoop {
    pub check: Check,
    pub pid: i32,
    pub hostname: String,
}

/// Every unit's state, and the rules.
#[derive(Debug, Default)]
pub struct Core {
    records: BTreeMap<String, Record>,
    /// Names in start order (dependencies first).
    order: Vec<String>,
    shutting_down: bool,
    /// Actions decided by the event calls, returned by the next converge.
    pending: Vec<Action>,
    /// The fleet's restart pace.
    pace: lifecycle::Pace,
}

impl Core {
    pub fn new() -> Core {
        Core::default()
    }

    pub fn record(&self, name: &str) -> Option<&Record> {
        self.records.get(name)
    }

    pub fn records(&self) -> impl Iterator<Item = &Record> {
        self.records.values()
    }

    pub fn shutting_down(&self) -> bool {
        self.shutting_down
    }

    /// Every unit's status, in start order.
    pub fn status(&self) -> Vec<UnitStatus> {
        self.order.iter().map(|n| self.records[n].status(self.shutting_down)).collect()
    }

    pub fn state(&self, name: &str) -> Option<State> {
        self.records.get(name).map(|r| r.state(self.shutting_down))
    }

    /// How many units are in each state (systemd's STATUS= line).
    pub fn counts(&self) -> BTreeMap<State, usize> {
        let mut out = BTreeMap::new();
        for r in self.records.values() {
            *out.entry(r.state(self.shutting_down)).or_insert(0) += 1;
        }
        out
    }

    /// Shutting down, and no container is left.
    pub fn all_stopped(&self) -> bool {
        self.shutting_down && self.records.values().all(Record::no_containers)
    }

    /// The directories of every unit's `env_file` (watched for edits).
    pub fn env_file_dirs(&self) -> BTreeSet<PathBuf> {
        self.records
            .values()
            .filter_map(|r| r.config.as_ref()?.unit.container.env_file.as_ref())
            .map(PathBuf::from)
            .collect()
    }

    /// Stop every unit, dependents first; nothing starts any more.
    pub fn shutdown(&mut self) {
        self.shutting_down = true;
    }
}
