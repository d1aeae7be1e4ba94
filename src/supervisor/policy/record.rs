//! One unit as the decision core sees it: its last good config, what the
//! operator and the file want, and its life as an enum whose variants
//! carry their data, so that a container in backoff or a failed unit
//! with a pid cannot be written down.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::time::{Instant, SystemTime};

use super::Started;
use super::health::Check;
use super::lifecycle::{ExitInfo, State};
use super::status::UnitStatus;
use super::update::{Good, Trial};
use crate::health::{Health, Tracker};
use crate::units::LoadedUnit;
use crate::units::model::OnUnhealthy;

/// Exits kept per unit for `inspect`.
pub const HISTORY: usize = 5;

/// The per-unit record.
#[derive(Debug, Clone)]
pub struct Record {
    pub name: String,
    /// The last good config; none if the file never loaded.
    pub config: Option<LoadedUnit>,
    pub file: Option<PathBuf>,
    /// The file's current error (the unit keeps its last good config).
    pub file_error: Option<String>,
    /// The last start's error (a failed pull, a bad spec, a dependency
    /// that never became ready).
    pub start_error: Option<String>,
    /// The operator's stop: held stopped until `start`, across reloads.
    pub held: bool,
    /// Its file is gone: it is forgotten once its container is.
    pub removed: bool,
    pub life: Life,
    /// Exits in a row that led to a restart (reset by good running).
    pub in_row: u32,
    pub restarts: u32,
    /// Exits the kernel's OOM killer caused, since the unit was first
    /// seen (for the metrics; `history` keeps only the last few).
    pub oom_kills: u64,
    pub history: VecDeque<ExitInfo>,
    /// One more per container started.
    pub generation: u64,
    /// Why it is in its state.
    pub reason: Option<String>,
    /// The state last reported (for state-change events).
    pub reported: State,
    pub since: SystemTime,
    /// Since when it waits for its dependencies.
    pub waiting_since: Option<Instant>,
    /// The image ID (manifest digest) its config runs: taken at the first
    /// start of a config and passed to every later start of it, so that a
    /// restart never changes image silently. None: the next start
    /// resolves the image reference by its pull policy.
    pub image: Option<String>,
    /// The last good config and image before the current one: what
    /// `rollback` returns to.
    /// Boxed, as `trial`: most units have neither, and a record is kept
    /// per unit (inline, each would be another config's size).
    pub previous: Option<Box<Good>>,
    /// An update on trial.
    pub trial: Option<Box<Trial>>,
    /// The hash of the config its file gave last.
    pub file_hash: Option<String>,
    /// It runs another config than its file's (an update was rolled back)
    /// until the file changes again.
    pub detached: bool,
    /// Why its last update failed.
    pub update_error: Option<String>,
    /// An image that failed its trial: auto-update does not try it again.
    pub rejected_image: Option<String>,
    /// A start-first update's new container, started beside the serving
    /// one (in `life`) until it is judged.
    pub next: Option<Run>,
    /// Containers being stopped beside the serving one: the old one after
    /// a switchover, a new one that failed its trial.
    pub leaving: Vec<Run>,
}

/// Whether there is a container, and if not, how the last one ended.
#[derive(Debug, Clone)]
pub enum Life {
    /// No container.
    Idle(Rest),
    /// A container: being started, running, or being stopped.
    Active(Run),
}

/// What a unit without a container does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rest {
    /// Nothing keeps it from starting but its dependencies.
    Ready,
    /// Restarts when the timer of this generation fires; `paced`: its own
    /// delay is over and it waits for the fleet's pace to give it a turn
    /// (see [`super::lifecycle::Pace`]).
    Backoff { generation: u64, until: Instant, at: SystemTime, paced: bool },
    /// Ended, and the restart policy leaves it so.
    Exited,
    /// The restart limit was hit, or no retry can mend it.
    Failed,
}

/// A container of a unit.
#[derive(Debug, Clone)]
pub struct Run {
    pub generation: u64,
    /// The `[container]` hash it was started with.
    pub restart_hash: String,
    pub phase: Phase,
    /// Asked to stop (by us): its exit is then not a failure. Before its
    /// pid is known, it is stopped as soon as it has started.
    pub stopping: bool,
    /// An operator's restart: stop it, then start anew.
    pub restart: bool,
    /// Stopped for failing its health check: what `on_unhealthy` said.
    pub unhealthy: Option<OnUnhealthy>,
    /// `notify = true`: READY=1 seen, and the last STATUS= text.
    pub notify: Option<Notify>,
    /// The image ID it was started with (a pinned one), then the one it
    /// runs.
    pub image: Option<String>,
    /// Frozen by an operator's `pause`: its probes do not run, and it is
    /// thawed before any stop signal.
    pub paused: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Notify {
    pub ready: bool,
    pub status: Option<String>,
}

/// How far a start has come.
#[derive(Debug, Clone)]
pub enum Phase {
    Pulling,
    Starting,
    Running(Box<Running>),
}

/// What is known of a container once it runs.
#[derive(Debug, Clone)]
pub struct Running {
    /// What its start reported: pid, stop signal, image, address.
    pub container: Started,
    pub started_at: Instant,
    pub started_wall: SystemTime,
    /// The health check and its state, when there is one.
    pub health: Option<(Check, Tracker)>,
}

impl Run {
    /// Running and not asked to stop, healthy if it has a health check,
    /// notified ready if it is a notify unit.
    pub fn ready(&self) -> bool {
        !self.stopping
            && !self.paused
            && self.running().is_some_and(|x| x.health.as_ref().is_none_or(|(_, t)| t.status == Health::Healthy))
            && self.notify.as_ref().is_none_or(|n| n.ready)
    }

    pub fn running(&self) -> Option<&Running> {
        match &self.phase {
            Phase::Running(r) => Some(r),
            _ => None,
        }
    }

    pub fn running_mut(&mut self) -> Option<&mut Running> {
        match &mut self.phase {
            Phase::Running(r) => Some(r),
            _ => None,
        }
    }
}

impl Record {
    pub fn new(name: &str, now: SystemTime) -> Record {
        Record {
            name: name.to_string(),
            config: None,
            file: None,
            file_error: None,
            start_error: None,
            held: false,
            removed: false,
            life: Life::Idle(Rest::Ready),
            in_row: 0,
            restarts: 0,
            oom_kills: 0,
            history: VecDeque::new(),
            generation: 0,
            reason: None,
            reported: State::Inactive,
            since: now,
            waiting_since: None,
            image: None,
            previous: None,
            trial: None,
            file_hash: None,
            detached: false,
            update_error: None,
            rejected_image: None,
            next: None,
            leaving: Vec::new(),
        }
    }

    pub fn run(&self) -> Option<&Run> {
        match &self.life {
            Life::Active(run) => Some(run),
            Life::Idle(_) => None,
        }
    }

    pub fn run_mut(&mut self) -> Option<&mut Run> {
        match &mut self.life {
            Life::Active(run) => Some(run),
            Life::Idle(_) => None,
        }
    }

    /// Its container of `generation`: the serving one, or one beside it.
    pub fn run_of(&mut self, generation: u64) -> Option<&mut Run> {
        let Record { life, next, leaving, .. } = self;
        let serving = match life {
            Life::Active(run) => Some(run),
            Life::Idle(_) => None,
        };
        serving.into_iter().chain(next.as_mut()).chain(leaving.iter_mut()).find(|r| r.generation == generation)
    }

    /// Its container of `generation`, serving or beside.
    pub fn find(&self, generation: u64) -> Option<&Run> {
        self.run().into_iter().chain(self.next.as_ref()).chain(self.leaving.iter()).find(|r| r.generation == generation)
    }

    /// Its container of `generation` (serving or beside) runs as `s`
    /// reports; the first start of a config pins the image it ran.
    pub(super) fn now_running(&mut self, generation: u64, s: Started, now: super::Now) -> Option<&mut Run> {
        let run = self.find(generation)?;
        if self.image.is_none() && self.config.as_ref().is_some_and(|u| u.hashes.restart == run.restart_hash) {
            self.image = Some(s.image_digest.clone());
        }
        let run = self.run_of(generation)?;
        run.image = Some(s.image_digest.clone());
        run.phase = Phase::Running(Box::new(Running {
            container: s,
            started_at: now.mono,
            started_wall: now.wall,
            health: None,
        }));
        Some(run)
    }

    /// Whether `generation` is the serving container (in `life`).
    pub fn serving(&self, generation: u64) -> bool {
        self.run().is_some_and(|r| r.generation == generation)
    }

    /// It has no container at all, serving or beside.
    pub fn no_containers(&self) -> bool {
        self.run().is_none() && self.next.is_none() && self.leaving.is_empty()
    }

    pub fn rest(&self) -> Option<Rest> {
        match &self.life {
            Life::Idle(rest) => Some(*rest),
            Life::Active(_) => None,
        }
    }

    pub fn state(&self, shutting_down: bool) -> State {
        if let Some(run) = self.run() {
            return match (&run.phase, run.stopping) {
                (_, true) => State::Stopping,
                (Phase::Pulling, _) => State::Pulling,
                (Phase::Starting, _) => State::Starting,
                (Phase::Running(_), _) if run.paused => State::Paused,
                (Phase::Running(_), _) if run.notify.as_ref().is_some_and(|n| !n.ready) => State::Starting,
                (Phase::Running(_), _) => State::Running,
            };
        }
        if self.config.is_none() {
            return State::Invalid;
        }
        if self.held || self.removed || shutting_down {
            return State::Inactive;
        }
        match self.rest() {
            Some(Rest::Failed) => State::Failed,
            Some(Rest::Backoff { .. }) => State::Backoff,
            Some(Rest::Exited) => State::Exited,
            _ => State::Waiting,
        }
    }

    /// Whether it should have a container now, its dependencies aside.
    pub fn wants(&self, shutting_down: bool) -> bool {
        let rest_allows = match &self.life {
            Life::Active(_) => true,
            Life::Idle(rest) => *rest == Rest::Ready,
        };
        !shutting_down && self.config.is_some() && !self.removed && !self.held && rest_allows
    }

    /// Its container runs and was not asked to stop.
    pub fn running(&self) -> bool {
        self.run().is_some_and(|r| r.running().is_some() && !r.stopping)
    }

    /// Running, healthy if it has a health check, and notified ready if
    /// it is a notify unit: what its dependents wait for.
    pub fn ready(&self) -> bool {
        self.run().is_some_and(Run::ready)
    }

    /// Whether its container (if any) may keep running: wanted, started
    /// from the current config, not asked to restart.
    pub fn current(&self, shutting_down: bool) -> bool {
        self.wants(shutting_down) && self.run().is_none_or(|r| !r.restart && super::update::current_config(self, r))
    }

    /// Its state as a dependent's reason shows it: `running, health
    /// starting (last probe: connection refused)`.
    pub fn describe(&self, shutting_down: bool) -> String {
        let mut out = self.state(shutting_down).to_string();
        if let Some(run) = self.run() {
            if let Some((_, t)) = run.running().and_then(|r| r.health.as_ref()) {
                out.push_str(&format!(", health {}", t.status.name()));
                if let Some(last) = t.results.back().filter(|r| !r.healthy) {
                    out.push_str(&format!(" (last probe: {})", last.output));
                }
            }
            if run.notify.as_ref().is_some_and(|n| !n.ready) {
                out.push_str(", no READY=1 yet");
            }
        }
        out
    }

    /// Keeps `exit` among the last [`HISTORY`] for `inspect`.
    pub fn record(&mut self, exit: ExitInfo) {
        self.oom_kills += u64::from(exit.oom_killed);
        self.history.push_back(exit);
        if self.history.len() > HISTORY {
            self.history.pop_front();
        }
    }

    pub fn status(&self, shutting_down: bool) -> UnitStatus {
        let last = self.history.back();
        let running = self.run().and_then(Run::running);
        UnitStatus {
            name: self.name.clone(),
            state: self.state(shutting_down),
            since: self.since,
            pid: running.map(|r| r.container.pid),
            health: running.and_then(|r| r.health.as_ref()).map(|(_, t)| t.status.name().to_string()),
            notify_status: self.run().and_then(|r| r.notify.as_ref()).and_then(|n| n.status.clone()),
            restarts: self.restarts,
            exit_code: last.and_then(|e| e.exit_code),
            signal: last.and_then(|e| e.signal.clone()),
            oom_killed: last.is_some_and(|e| e.oom_killed),
            error: self.file_error.clone().or_else(|| self.start_error.clone()),
            next_retry: match self.rest() {
                Some(Rest::Backoff { at, .. }) => Some(at),
                _ => None,
            },
            reason: self.reason.clone(),
            image: self.config.as_ref().map(|u| u.unit.container.image.to_string()),
            image_digest: running.map(|r| r.container.image_digest.clone()),
            image_id: running.map(|r| r.container.image_digest.clone()).or_else(|| self.image.clone()),
            previous_image_id: self.previous_image().map(str::to_string),
            update_state: self.update_state(),
            update_error: self.update_error.clone(),
            address: running.and_then(|r| r.container.address).map(|a| a.to_string()),
            ports: running.map(|r| r.container.ports.clone()).unwrap_or_default(),
            started_at: running.map(|r| r.started_wall),
            file: self.file.clone(),
            held: self.held,
            generation: self.generation,
        }
    }
}
