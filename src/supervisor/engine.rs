//! The reconcile loop. One task owns every unit's state; file events,
//! container starts and exits, timers and operator commands arrive as
//! [`Event`]s on one channel, and after each one [`Engine::converge`]
//! moves every unit one step towards what it should be. Nothing polls: an
//! idle supervisor sleeps in `recv`.
//!
//! A unit's state is derived from facts (is there a container, was it
//! asked to stop, is it held, in backoff, failed...), never stored apart
//! from them, so the two cannot disagree.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;
use tokio::sync::{Semaphore, broadcast, mpsc, oneshot, watch};

use super::lifecycle::{AfterExit, ExitInfo, State, after_exit, opt_rfc3339, rfc3339};
use super::logs::{self, Hub, Limits};
use super::notify;
use super::reload::{Step, plan};
use super::starter::{self, Env, Started};
use crate::health::{self, Check, Health, ProbeResult, Tracker, probe};
use crate::runtime::cgroups::{Cgroup, Usage};
use crate::runtime::image::config::Healthcheck;
use crate::runtime::reaper::Exit;
use crate::units::graph::{dependencies, start_order};
use crate::units::model::{OnUnhealthy, RestartPolicy};
use crate::units::{LoadedUnit, UnitSet, load_dir};
use tokio::task::AbortHandle;

/// Starts (pull, prepare, spawn) at once; more wait their turn.
const PARALLEL_STARTS: usize = 8;
/// Exits kept per unit for `inspect`.
const HISTORY: usize = 5;

pub enum Event {
    /// Read the unit directory again (a settled file event, SIGHUP).
    Rescan,
    /// A health probe's result.
    Probe {
        name: String,
        generation: u64,
        result: ProbeResult,
    },
    /// A message on a notify unit's socket.
    Notify {
        name: String,
        generation: u64,
        ready: bool,
        status: Option<String>,
    },
    /// A unit has waited for its dependencies for its `ready_timeout`.
    WaitTimeout {
        name: String,
    },
    Phase {
        name: String,
        generation: u64,
        phase: Phase,
    },
    Started {
        name: String,
        generation: u64,
        result: Result<RunInfo, String>,
    },
    Exited {
        name: String,
        generation: u64,
        exit: ExitInfo,
    },
    BackoffOver {
        name: String,
        generation: u64,
    },
    StopTimeout {
        name: String,
        generation: u64,
    },
    Command(Command),
    /// Stop every unit in reverse order; the sender hears when all are.
    Shutdown(oneshot::Sender<()>),
}

/// A container that runs.
pub struct RunInfo {
    pub pid: i32,
    pub cgroup: Cgroup,
    pub stop_signal: i32,
    pub image_digest: String,
    /// The image's HEALTHCHECK.
    pub image_health: Option<Healthcheck>,
    /// The listener of a notify unit's socket.
    pub notify_task: Option<AbortHandle>,
    /// Its address on the bridge.
    pub address: Option<std::net::Ipv4Addr>,
    pub ports: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Pulling,
    Starting,
    Running,
}

/// What an operator asks, with where the answer goes.
pub enum Command {
    Status(oneshot::Sender<Vec<UnitStatus>>),
    Inspect(String, oneshot::Sender<Option<serde_json::Value>>),
    /// Start, stop or restart units; the answer is each unit's generation
    /// (a restart waits for a newer one) or the first unknown name.
    Op(Op, Vec<String>, oneshot::Sender<Result<Vec<(String, u64)>, String>>),
    Kill(String, i32, oneshot::Sender<Result<(), String>>),
    Reload(bool, oneshot::Sender<Result<BTreeMap<String, Step>, String>>),
    /// Names of the named volumes each unit uses.
    Volumes(oneshot::Sender<BTreeMap<String, Vec<String>>>),
    /// A unit's log directory record limits (for `logs`).
    LogFiles(String, oneshot::Sender<Option<u32>>),
    /// How many units are in each state (systemd's STATUS= line).
    Counts(oneshot::Sender<BTreeMap<State, usize>>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Start,
    Stop,
    Restart,
}

/// One unit as `status` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct UnitStatus {
    pub name: String,
    pub state: State,
    #[serde(serialize_with = "rfc3339")]
    pub since: SystemTime,
    pub pid: Option<i32>,
    /// `starting`, `healthy`, `unhealthy`; null without a probe.
    pub health: Option<String>,
    /// The last `STATUS=` text of a notify unit.
    pub notify_status: Option<String>,
    pub restarts: u32,
    pub exit_code: Option<i32>,
    pub signal: Option<String>,
    pub oom_killed: bool,
    pub error: Option<String>,
    #[serde(serialize_with = "opt_rfc3339")]
    pub next_retry: Option<SystemTime>,
    /// Why it is in its state: what it waits for, how it last ended.
    pub reason: Option<String>,
    pub image: Option<String>,
    pub image_digest: Option<String>,
    /// Its address on the bridge network.
    pub address: Option<String>,
    /// Its published ports, `0.0.0.0:8080->80/tcp`.
    pub ports: Vec<String>,
    #[serde(serialize_with = "opt_rfc3339")]
    pub started_at: Option<SystemTime>,
    pub file: Option<PathBuf>,
    /// Held stopped by an operator until `start`.
    pub held: bool,
    /// The container generation (one more per start).
    pub generation: u64,
}

/// A change of state, for `events` and for clients that wait.
#[derive(Debug, Clone, Serialize)]
pub struct StateEvent {
    pub unit: String,
    pub old: State,
    pub new: State,
    pub reason: Option<String>,
    #[serde(serialize_with = "rfc3339")]
    pub time: SystemTime,
    pub generation: u64,
    /// The unit is gone (its file was removed).
    pub removed: bool,
}

/// A container of a unit: being started, running, or being stopped.
struct Run {
    generation: u64,
    phase: Phase,
    /// The `[container]` hash it was started with.
    restart_hash: String,
    pid: Option<i32>,
    cgroup: Option<Cgroup>,
    stop_signal: i32,
    image_digest: Option<String>,
    started_at: Option<(Instant, SystemTime)>,
    /// Asked to stop (by us); its exit is then not a failure.
    stopping: bool,
    /// An operator's restart: stop it, then start anew.
    restart: bool,
    log_limits: Arc<Limits>,
    image_health: Option<Healthcheck>,
    address: Option<std::net::Ipv4Addr>,
    ports: Vec<String>,
    /// The health check and its state, when there is one.
    health: Option<(Check, Tracker)>,
    /// Stopped for being unhealthy: what `on_unhealthy` said.
    unhealthy: Option<OnUnhealthy>,
    /// `notify = true`: READY=1 seen, and the last STATUS= text.
    notify: Option<(bool, Option<String>)>,
    /// The probe loop.
    probe: Option<AbortHandle>,
    /// Tasks that live as long as the container (the notify socket).
    tasks: Vec<AbortHandle>,
}

impl Run {
    fn end_tasks(&mut self) {
        for t in self.probe.take().into_iter().chain(self.tasks.drain(..)) {
            t.abort();
        }
    }
}

struct Entry {
    name: String,
    /// The last good config; none if the file never loaded.
    unit: Option<LoadedUnit>,
    file: Option<PathBuf>,
    /// The file's current error (the unit keeps its last good config).
    file_error: Option<String>,
    /// The last start's error (a failed pull, a bad spec...).
    start_error: Option<String>,
    held: bool,
    failed: bool,
    /// Ended, and the policy leaves it so.
    exited: bool,
    removed: bool,
    backoff: Option<(u64, SystemTime)>,
    in_row: u32,
    restarts: u32,
    history: VecDeque<ExitInfo>,
    run: Option<Run>,
    generation: u64,
    reason: Option<String>,
    reported: State,
    since: SystemTime,
    /// Since when it waits for its dependencies.
    waiting_since: Option<Instant>,
}

impl Entry {
    fn new(name: &str) -> Entry {
        Entry {
            name: name.to_string(),
            unit: None,
            file: None,
            file_error: None,
            start_error: None,
            held: false,
            failed: false,
            exited: false,
            removed: false,
            backoff: None,
            in_row: 0,
            restarts: 0,
            history: VecDeque::new(),
            run: None,
            generation: 0,
            reason: None,
            reported: State::Inactive,
            since: SystemTime::now(),
            waiting_since: None,
        }
    }

    fn state(&self, shutting_down: bool) -> State {
        if let Some(run) = &self.run {
            return match (run.stopping, run.phase) {
                (true, _) => State::Stopping,
                (false, Phase::Pulling) => State::Pulling,
                (false, Phase::Starting) => State::Starting,
                (false, Phase::Running) if run.notify.as_ref().is_some_and(|(ready, _)| !ready) => State::Starting,
                (false, Phase::Running) => State::Running,
            };
        }
        if self.unit.is_none() {
            State::Invalid
        } else if self.held || self.removed || shutting_down {
            State::Inactive
        } else if self.failed {
            State::Failed
        } else if self.backoff.is_some() {
            State::Backoff
        } else if self.exited {
            State::Exited
        } else {
            State::Waiting
        }
    }

    /// Whether it should have a container now, its dependencies aside.
    fn wants(&self, shutting_down: bool) -> bool {
        !shutting_down
            && self.unit.is_some()
            && !self.removed
            && !self.held
            && !self.failed
            && !self.exited
            && self.backoff.is_none()
    }

    /// Keeps `exit` among the last [`HISTORY`] for `inspect`.
    fn record(&mut self, exit: ExitInfo) {
        self.history.push_back(exit);
        if self.history.len() > HISTORY {
            self.history.pop_front();
        }
    }

    fn running(&self) -> bool {
        self.run.as_ref().is_some_and(|r| r.phase == Phase::Running && !r.stopping)
    }

    /// Running, healthy if it has a health check, and notified ready if
    /// it is a notify unit: what its dependents wait for.
    fn ready(&self) -> bool {
        self.running()
            && self.run.as_ref().is_some_and(|r| {
                r.health.as_ref().is_none_or(|(_, t)| t.status == Health::Healthy)
                    && r.notify.as_ref().is_none_or(|(ready, _)| *ready)
            })
    }

    /// Its state as a dependent's reason shows it: `running, health
    /// starting (last probe: connection refused)`.
    fn describe(&self, shutting_down: bool) -> String {
        let mut out = self.state(shutting_down).to_string();
        if let Some(run) = &self.run {
            if let Some((_, t)) = &run.health {
                out.push_str(&format!(", health {}", t.status.name()));
                if let Some(last) = t.results.back().filter(|r| !r.healthy) {
                    out.push_str(&format!(" (last probe: {})", last.output));
                }
            }
            if run.notify.as_ref().is_some_and(|(ready, _)| !ready) {
                out.push_str(", no READY=1 yet");
            }
        }
        out
    }

    /// Whether its container (if any) may keep running: wanted, started
    /// from the current config, not asked to restart.
    fn current(&self, shutting_down: bool) -> bool {
        self.wants(shutting_down)
            && self
                .run
                .as_ref()
                .is_none_or(|r| !r.restart && self.unit.as_ref().is_some_and(|u| u.hashes.restart == r.restart_hash))
    }

    fn status(&self, shutting_down: bool) -> UnitStatus {
        let last = self.history.back();
        let run = self.run.as_ref();
        UnitStatus {
            name: self.name.clone(),
            state: self.state(shutting_down),
            since: self.since,
            pid: run.and_then(|r| r.pid),
            health: run.and_then(|r| r.health.as_ref()).map(|(_, t)| t.status.name().to_string()),
            notify_status: run.and_then(|r| r.notify.as_ref()).and_then(|(_, s)| s.clone()),
            restarts: self.restarts,
            exit_code: last.and_then(|e| e.exit_code),
            signal: last.and_then(|e| e.signal.clone()),
            oom_killed: last.is_some_and(|e| e.oom_killed),
            error: self.file_error.clone().or_else(|| self.start_error.clone()),
            next_retry: self.backoff.map(|(_, t)| t),
            reason: self.reason.clone(),
            image: self.unit.as_ref().map(|u| u.unit.container.image.to_string()),
            image_digest: run.and_then(|r| r.image_digest.clone()),
            address: run.and_then(|r| r.address).map(|a| a.to_string()),
            ports: run.map(|r| r.ports.clone()).unwrap_or_default(),
            started_at: run.and_then(|r| r.started_at.map(|(_, t)| t)),
            file: self.file.clone(),
            held: self.held,
            generation: self.generation,
        }
    }
}

pub struct Engine {
    units_dir: PathBuf,
    log_dir: PathBuf,
    env: Arc<Env>,
    probes: Arc<probe::Env>,
    hub: Hub,
    entries: BTreeMap<String, Entry>,
    /// Names in start order (dependencies first).
    order: Vec<String>,
    tx: mpsc::UnboundedSender<Event>,
    events: broadcast::Sender<StateEvent>,
    starts: Arc<Semaphore>,
    env_files: watch::Sender<BTreeSet<PathBuf>>,
    shutting_down: bool,
    shutdown_waiters: Vec<oneshot::Sender<()>>,
}

impl Engine {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        units_dir: PathBuf,
        log_dir: PathBuf,
        env: Arc<Env>,
        probes: Arc<probe::Env>,
        hub: Hub,
        tx: mpsc::UnboundedSender<Event>,
        events: broadcast::Sender<StateEvent>,
        env_files: watch::Sender<BTreeSet<PathBuf>>,
    ) -> Engine {
        Engine {
            units_dir,
            log_dir,
            env,
            probes,
            hub,
            entries: BTreeMap::new(),
            order: Vec::new(),
            tx,
            events,
            starts: Arc::new(Semaphore::new(PARALLEL_STARTS)),
            env_files,
            shutting_down: false,
            shutdown_waiters: Vec::new(),
        }
    }

    /// Counts of units by state, for systemd's STATUS=.
    fn counts(&self) -> BTreeMap<State, usize> {
        let mut out = BTreeMap::new();
        for e in self.entries.values() {
            *out.entry(e.state(self.shutting_down)).or_insert(0) += 1;
        }
        out
    }

    /// Handles events until shutdown completes.
    pub async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Event>, ready: oneshot::Sender<()>) {
        let mut ready = Some(ready);
        let _ = self.rescan(false);
        self.converge();
        if let Some(r) = ready.take() {
            let _ = r.send(());
        }
        while let Some(event) = rx.recv().await {
            self.handle(event);
            self.converge();
            if self.shutting_down && self.entries.values().all(|e| e.run.is_none()) {
                for w in self.shutdown_waiters.drain(..) {
                    let _ = w.send(());
                }
                return;
            }
        }
    }

    fn handle(&mut self, event: Event) {
        match event {
            Event::Rescan => {
                let _ = self.rescan(false);
            }
            Event::Phase { name, generation, phase } => {
                if let Some(run) = self.run_of(&name, generation) {
                    run.phase = phase;
                }
            }
            Event::Started { name, generation, result } => self.started(&name, generation, result),
            Event::Exited { name, generation, exit } => self.exited(&name, generation, exit),
            Event::BackoffOver { name, generation } => {
                if let Some(e) = self.entries.get_mut(&name) {
                    if e.backoff.is_some_and(|(g, _)| g == generation) {
                        e.backoff = None;
                    }
                }
            }
            Event::Probe { name, generation, result } => self.probed(&name, generation, result),
            Event::Notify { name, generation, ready, status } => {
                if let Some(run) = self.run_of(&name, generation) {
                    if let Some(n) = run.notify.as_mut() {
                        if ready && !n.0 {
                            tracing::info!("{name}: READY=1");
                        }
                        n.0 |= ready;
                        if status.is_some() {
                            n.1 = status;
                        }
                    }
                }
            }
            Event::WaitTimeout { name } => {
                if let Some(e) = self.entries.get(&name) {
                    let timeout = e.unit.as_ref().map_or(Duration::MAX, |u| u.unit.unit.ready_timeout);
                    if e.run.is_none() && e.waiting_since.is_some_and(|t| t.elapsed() >= timeout) {
                        let why = e.reason.clone().unwrap_or_default();
                        let msg = format!("not started after {}: {why}", humantime::format_duration(timeout));
                        tracing::warn!("{name}: {msg}");
                        self.entries.get_mut(&name).expect("known").start_error = Some(msg);
                    }
                }
            }
            Event::StopTimeout { name, generation } => {
                if let Some(run) = self.run_of(&name, generation) {
                    if let Some(cg) = run.cgroup.clone() {
                        tracing::info!("{name}: still running after its stop timeout: SIGKILL to all of it");
                        tokio::task::spawn_blocking(move || cg.kill_all());
                    }
                }
            }
            Event::Command(c) => self.command(c),
            Event::Shutdown(done) => {
                self.shutting_down = true;
                self.shutdown_waiters.push(done);
            }
        }
    }

    /// Sends `event` to ourselves after `delay` (the timers: backoff,
    /// stop timeout, ready timeout).
    fn later(&self, delay: Duration, event: Event) {
        let tx = self.tx.clone();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let _ = tx.send(event);
        });
    }

    fn run_of(&mut self, name: &str, generation: u64) -> Option<&mut Run> {
        self.entries.get_mut(name)?.run.as_mut().filter(|r| r.generation == generation)
    }

    /// Reads the directory and carries out (or only returns) the plan.
    fn rescan(&mut self, dry_run: bool) -> Result<BTreeMap<String, Step>, String> {
        let set = match load_dir(&self.units_dir) {
            Ok(set) => set,
            Err(e) => {
                let msg = format!("{}: {e}", self.units_dir.display());
                // A directory that vanished for a moment (being replaced)
                // must not stop everything: keep what runs.
                tracing::error!("{msg}; keeping the units as they are");
                return Err(msg);
            }
        };
        let current: BTreeMap<String, Option<crate::units::Hashes>> = self
            .entries
            .iter()
            .filter(|(_, e)| !e.removed)
            .map(|(n, e)| (n.clone(), e.unit.as_ref().map(|u| u.hashes.clone())))
            .collect();
        let steps = plan(&current, &set);
        if !dry_run {
            self.apply(&steps, set);
        }
        Ok(steps)
    }

    fn apply(&mut self, steps: &BTreeMap<String, Step>, mut set: UnitSet) {
        let mut loaded: BTreeMap<String, LoadedUnit> = set.units.drain(..).map(|u| (u.unit.name.clone(), u)).collect();
        // Running units whose [health] changed: their probes start anew.
        let mut reprobe: Vec<String> = Vec::new();
        for (name, step) in steps {
            let new = loaded.remove(name);
            let e = self.entries.entry(name.clone()).or_insert_with(|| Entry::new(name));
            if let Some(f) = set.files.get(name) {
                e.file = Some(f.clone());
            }
            match step {
                Step::Keep => e.file_error = None,
                Step::Update | Step::LiveUpdate => {
                    let new = new.expect("planned from the set");
                    if let Some(run) = &e.run {
                        run.log_limits.set(new.unit.logs.max_size, new.unit.logs.max_files);
                        if *step == Step::LiveUpdate {
                            if let Some(cg) = run.cgroup.clone() {
                                let r = starter::live_resources(&new.unit);
                                let name = name.clone();
                                tokio::task::spawn_blocking(move || {
                                    if let Err(err) = cg.set(&r) {
                                        tracing::error!("{name}: cannot apply the new [resources]: {err}");
                                    }
                                });
                            }
                        }
                    }
                    if e.unit.as_ref().is_none_or(|old| old.unit.health != new.unit.health) && e.running() {
                        reprobe.push(name.clone());
                    }
                    e.unit = Some(new);
                    e.file_error = None;
                }
                Step::Restart | Step::Start => {
                    e.unit = new;
                    e.file_error = None;
                    e.removed = false;
                    // A new config is a new chance.
                    e.failed = false;
                    e.exited = false;
                    e.backoff = None;
                    e.in_row = 0;
                    e.start_error = None;
                }
                Step::Remove => e.removed = true,
                Step::Invalid(err) => {
                    tracing::error!("{err}");
                    e.file_error = Some(err.clone());
                }
            }
        }
        for name in reprobe {
            self.start_probes(&name);
        }
        let units: Vec<&crate::units::Unit> =
            self.entries.values().filter_map(|e| e.unit.as_ref().map(|u| &u.unit)).collect();
        let mut order: Vec<String> = start_order(&units).into_iter().flatten().collect();
        for name in self.entries.keys() {
            if !order.contains(name) {
                order.push(name.clone());
            }
        }
        self.order = order;
        let dirs: BTreeSet<PathBuf> = self
            .entries
            .values()
            .filter_map(|e| e.unit.as_ref()?.unit.container.env_file.as_ref())
            .map(PathBuf::from)
            .collect();
        self.env_files.send_if_modified(|d| {
            let changed = *d != dirs;
            *d = dirs;
            changed
        });
    }

    /// What a unit requires (the owner of a network it joins included:
    /// it lives in that container's namespace) and what it starts after.
    fn deps(&self, name: &str) -> (Vec<String>, Vec<String>) {
        match self.entries.get(name).and_then(|e| e.unit.as_ref()) {
            Some(u) => {
                let mut requires = u.unit.unit.requires.clone();
                if let crate::units::model::Network::Unit(owner) = &u.unit.container.network {
                    if !requires.contains(owner) {
                        requires.push(owner.clone());
                    }
                }
                (requires, u.unit.unit.after.clone())
            }
            None => (Vec::new(), Vec::new()),
        }
    }

    /// Moves every unit one step towards what it should be.
    fn converge(&mut self) {
        let down = self.shutting_down;
        // Which containers may keep running: current, and every required
        // unit keeps running too (dependencies come first in `order`).
        let mut keep: HashMap<String, bool> = HashMap::new();
        for name in &self.order {
            let e = &self.entries[name];
            let (requires, _) = self.deps(name);
            let ok = e.current(down)
                && requires
                    .iter()
                    .all(|r| keep.get(r).copied().unwrap_or(false) && self.entries.get(r).is_some_and(Entry::running));
            keep.insert(name.clone(), ok);
        }
        // Stops, dependents first: a unit stops once nothing that depends
        // on it and is going down still has a container.
        let mut dependents: HashMap<String, Vec<String>> = HashMap::new();
        for v in self.entries.values().filter(|v| v.run.is_some()) {
            for d in v.unit.iter().flat_map(|u| dependencies(&u.unit)) {
                dependents.entry(d.to_string()).or_default().push(v.name.clone());
            }
        }
        for name in self.order.clone().iter().rev() {
            let e = &self.entries[name];
            let Some(run) = &e.run else { continue };
            if run.stopping || keep[name] {
                continue;
            }
            let blocked = dependents.get(name).is_some_and(|vs| {
                vs.iter().any(|v| {
                    *v != *name
                        && !keep.get(v).copied().unwrap_or(false)
                        && self.entries.get(v).is_some_and(|x| x.run.is_some())
                })
            });
            if !blocked {
                let why = self.stop_reason(name);
                self.stop(name, why);
            }
        }
        // Starts, dependencies first.
        for name in self.order.clone() {
            let e = &self.entries[&name];
            if e.run.is_some() || !e.wants(down) {
                continue;
            }
            let (requires, after) = self.deps(&name);
            let mut waiting_for = None;
            for d in &requires {
                match self.entries.get(d) {
                    Some(dep) if dep.ready() && keep.get(d).copied().unwrap_or(false) => {}
                    Some(dep) => {
                        waiting_for = Some(format!("requires {d} ({})", dep.describe(down)));
                        break;
                    }
                    None => {
                        waiting_for = Some(format!("requires {d}, which has no unit file"));
                        break;
                    }
                }
            }
            if waiting_for.is_none() {
                for d in &after {
                    if let Some(dep) = self.entries.get(d) {
                        if dep.wants(down) && !dep.ready() {
                            waiting_for = Some(format!("after {d} ({})", dep.describe(down)));
                            break;
                        }
                    }
                }
            }
            match waiting_for {
                Some(w) => {
                    let e = self.entries.get_mut(&name).expect("known");
                    e.reason = Some(w);
                    if e.waiting_since.is_none() {
                        e.waiting_since = Some(Instant::now());
                        let timeout = e.unit.as_ref().map_or(Duration::MAX, |u| u.unit.unit.ready_timeout);
                        self.later(timeout, Event::WaitTimeout { name: name.clone() });
                    }
                }
                None => {
                    self.entries.get_mut(&name).expect("known").waiting_since = None;
                    self.start(&name);
                }
            }
        }
        // Units whose file is gone and whose container is gone are done.
        let gone: Vec<String> =
            self.entries.values().filter(|e| e.removed && e.run.is_none()).map(|e| e.name.clone()).collect();
        for name in gone {
            let e = self.entries.remove(&name).expect("known");
            self.order.retain(|n| *n != name);
            self.emit(&e, e.reported, State::Inactive, true);
        }
        self.report();
    }

    fn stop_reason(&self, name: &str) -> String {
        let e = &self.entries[name];
        if self.shutting_down {
            return "shutdown".into();
        }
        if e.removed {
            return "unit file removed".into();
        }
        if e.held {
            return "stopped by operator".into();
        }
        if e.run.as_ref().is_some_and(|r| r.restart) {
            return "restart by operator".into();
        }
        if !e.current(false) {
            return "configuration changed".into();
        }
        let (requires, _) = self.deps(name);
        for r in requires {
            let st = self.entries.get(&r).map_or(State::Inactive, |d| d.state(false));
            if st != State::Running {
                return format!("requires {r} ({st})");
            }
        }
        "stopped".into()
    }

    /// Emits state changes since the last report.
    fn report(&mut self) {
        let down = self.shutting_down;
        let mut changes = Vec::new();
        for e in self.entries.values_mut() {
            let now = e.state(down);
            if now != e.reported {
                changes.push((e.name.clone(), e.reported, now));
                e.reported = now;
                e.since = SystemTime::now();
            }
        }
        for (name, old, new) in changes {
            let e = &self.entries[&name];
            self.emit(e, old, new, false);
        }
    }

    fn emit(&self, e: &Entry, old: State, new: State, removed: bool) {
        match &e.reason {
            Some(r) => tracing::info!("{}: {old} -> {new} ({r})", e.name),
            None => tracing::info!("{}: {old} -> {new}", e.name),
        }
        let _ = self.events.send(StateEvent {
            unit: e.name.clone(),
            old,
            new,
            reason: e.reason.clone(),
            time: SystemTime::now(),
            generation: e.generation,
            removed,
        });
    }

    fn start(&mut self, name: &str) {
        let e = self.entries.get_mut(name).expect("known");
        let loaded = e.unit.clone().expect("wanted units have a config");
        if let Err(err) = super::prepare::unsupported(&loaded.unit) {
            tracing::error!("{name}: {err}");
            e.failed = true;
            e.reason = Some(format!("start failed: {err}"));
            e.start_error = Some(err);
            return;
        }
        e.generation += 1;
        e.reason = None;
        let generation = e.generation;
        let limits = Limits::new(loaded.unit.logs.max_size, loaded.unit.logs.max_files);
        e.run = Some(Run {
            generation,
            phase: Phase::Starting,
            restart_hash: loaded.hashes.restart.clone(),
            pid: None,
            cgroup: None,
            stop_signal: libc::SIGTERM,
            image_digest: None,
            started_at: None,
            stopping: false,
            restart: false,
            log_limits: limits.clone(),
            image_health: None,
            address: None,
            ports: Vec::new(),
            health: None,
            unhealthy: None,
            notify: loaded.unit.container.notify.then_some((false, None)),
            probe: None,
            tasks: Vec::new(),
        });
        // The container whose network it joins (running: it is required).
        let join = match &loaded.unit.container.network {
            crate::units::model::Network::Unit(owner) => self
                .entries
                .get(owner)
                .and_then(|o| o.run.as_ref())
                .and_then(|r| r.pid.map(|pid| starter::Join { pid, address: r.address })),
            _ => None,
        };
        let (env, tx, starts) = (self.env.clone(), self.tx.clone(), self.starts.clone());
        let (hub, log_path) = (self.hub.clone(), logs::log_path(&self.log_dir, name));
        let name = name.to_string();
        tokio::spawn(async move {
            let permit = starts.acquire_owned().await;
            let unit = loaded.unit;
            // A notify unit's socket exists before its container does.
            let notify = match unit.container.notify {
                true => match notify::bind(&env.run_dir, &name) {
                    Ok(n) => Some(n),
                    Err(e) => {
                        let _ = tx.send(Event::Started { name, generation, result: Err(e.to_string()) });
                        return;
                    }
                },
                false => None,
            };
            let notify_dir = notify.as_ref().map(|(dir, _)| dir.clone());
            let (n, t) = (name.clone(), tx.clone());
            let result = tokio::task::spawn_blocking(move || {
                let phase = |phase| {
                    let _ = t.send(Event::Phase { name: n.clone(), generation, phase });
                };
                starter::start(&env, &unit, notify_dir.as_deref(), join, &|| phase(Phase::Pulling), &|| {
                    phase(Phase::Starting)
                })
                .map(|s| (s, env, unit))
            })
            .await
            .unwrap_or_else(|e| Err(format!("start task failed: {e}")));
            // The next start may go; this task goes on to wait for the exit.
            drop(permit);
            let (started, env) = match result {
                Ok((s, env, _unit)) => (s, env),
                Err(e) => {
                    if let Some((dir, _)) = &notify {
                        notify::remove(dir);
                    }
                    let _ = tx.send(Event::Started { name, generation, result: Err(e) });
                    return;
                }
            };
            let Started {
                pid,
                cgroup,
                stop_signal,
                image_digest,
                image_health,
                exit,
                stdout,
                stderr,
                veth,
                address,
                ports,
            } = started;
            let notify_task = notify.as_ref().map(|(_, socket)| {
                let (tx, name) = (tx.clone(), name.clone());
                let socket = socket.clone();
                tokio::spawn(async move {
                    notify::listen(&socket, |ready, status| {
                        let _ = tx.send(Event::Notify { name: name.clone(), generation, ready, status });
                    })
                    .await
                })
                .abort_handle()
            });
            match logs::Writer::open(log_path.clone(), limits) {
                Ok(w) => {
                    tokio::spawn(logs::copy(name.clone(), stdout, stderr, w, hub));
                }
                Err(e) => tracing::error!("{name}: cannot open {}: {e}", log_path.display()),
            }
            let info = RunInfo {
                pid,
                cgroup: cgroup.clone(),
                stop_signal,
                image_digest,
                image_health,
                notify_task,
                address,
                ports,
            };
            let _ = tx.send(Event::Started { name: name.clone(), generation, result: Ok(info) });
            // The exit, then nothing of the container left.
            let status = exit.await.unwrap_or(Exit::Signal(libc::SIGKILL));
            let n = name.clone();
            let oom = tokio::task::spawn_blocking(move || starter::finish(&env, &n, &cgroup, veth.as_deref()))
                .await
                .unwrap_or(false);
            if let Some((dir, _)) = &notify {
                notify::remove(dir);
            }
            let exit = match status {
                Exit::Code(c) => ExitInfo::code(c, oom),
                Exit::Signal(s) => ExitInfo::signal(s, oom),
            };
            let _ = tx.send(Event::Exited { name, generation, exit });
        });
    }

    fn started(&mut self, name: &str, generation: u64, result: Result<RunInfo, String>) {
        let Some(e) = self.entries.get_mut(name) else { return };
        let Some(run) = e.run.as_mut().filter(|r| r.generation == generation) else { return };
        match result {
            Ok(s) => {
                run.pid = Some(s.pid);
                run.cgroup = Some(s.cgroup);
                run.stop_signal = s.stop_signal;
                run.image_digest = Some(s.image_digest);
                run.image_health = s.image_health;
                run.address = s.address;
                run.ports = s.ports;
                run.tasks.extend(s.notify_task);
                run.phase = Phase::Running;
                run.started_at = Some((Instant::now(), SystemTime::now()));
                e.start_error = None;
                let why = e.reason.take();
                if run.stopping {
                    // Asked to stop while it started.
                    run.stopping = false;
                    self.stop(name, why.unwrap_or_else(|| "stopped".into()));
                } else {
                    self.start_probes(name);
                }
            }
            Err(err) => {
                tracing::error!("{name}: {err}");
                e.run = None;
                e.start_error = Some(err.clone());
                let exit = ExitInfo::start_error(err);
                self.after_exit(name, exit, Duration::ZERO, true);
            }
        }
    }

    fn exited(&mut self, name: &str, generation: u64, exit: ExitInfo) {
        let Some(e) = self.entries.get_mut(name) else { return };
        if e.run.as_ref().is_none_or(|r| r.generation != generation) {
            return;
        }
        let mut run = e.run.take().expect("checked");
        run.end_tasks();
        let ran_for = run.started_at.map_or(Duration::ZERO, |(t, _)| t.elapsed());
        match run.unhealthy {
            Some(OnUnhealthy::Restart) => {
                // Counts as a failure for the backoff, whatever the policy.
                let exit = ExitInfo { unhealthy: true, ..exit };
                tracing::info!("{name}: {}", exit.describe());
                self.after_exit(name, exit, ran_for, false);
                return;
            }
            Some(OnUnhealthy::Stop) => {
                let exit = ExitInfo { unhealthy: true, ..exit };
                e.reason = Some(format!("{}; on_unhealthy = \"stop\"", exit.describe()));
                e.failed = true;
                e.record(exit);
                return;
            }
            _ => {}
        }
        if run.stopping {
            e.reason = Some(exit.describe());
            e.record(exit);
            return;
        }
        tracing::info!("{name}: {}", exit.describe());
        self.after_exit(name, exit, ran_for, false);
    }

    /// An exit nobody asked for: the restart policy decides.
    fn after_exit(&mut self, name: &str, exit: ExitInfo, ran_for: Duration, start_failed: bool) {
        let e = self.entries.get_mut(name).expect("known");
        let Some(unit) = e.unit.as_ref() else { return };
        let mut policy = unit.unit.restart.clone();
        if exit.unhealthy && policy.policy == RestartPolicy::No {
            // on_unhealthy = "restart" asks for it.
            policy.policy = RestartPolicy::OnFailure;
        }
        let (decision, in_row) = after_exit(&policy, e.in_row, ran_for, &exit);
        e.in_row = in_row;
        e.reason = Some(exit.describe());
        e.record(exit);
        match decision {
            AfterExit::Restart(delay) => {
                e.restarts += 1;
                let generation = e.generation;
                e.backoff = Some((generation, SystemTime::now() + delay));
                self.later(delay, Event::BackoffOver { name: name.to_string(), generation });
            }
            // A start that failed with no policy to retry it is failed,
            // not a clean exit.
            AfterExit::Stay if start_failed => e.failed = true,
            AfterExit::Stay => e.exited = true,
            AfterExit::Fail => {
                e.failed = true;
                e.reason = Some(format!("restart limit reached; last: {}", e.reason.take().unwrap_or_default()));
            }
        }
    }

    /// (Re)starts the health probe loop of a running unit, when it has a
    /// check (its own, or its image's).
    fn start_probes(&mut self, name: &str) {
        let Some(e) = self.entries.get_mut(name) else { return };
        let Some(unit) = e.unit.as_ref() else { return };
        let hostname = unit.unit.container.hostname.clone();
        let Some(run) = e.run.as_mut() else { return };
        if let Some(t) = run.probe.take() {
            t.abort();
        }
        let (Some(pid), Some(check)) = (run.pid, health::effective(&unit.unit.health, run.image_health.as_ref()))
        else {
            run.health = None;
            return;
        };
        let started = run.started_at.map_or_else(Instant::now, |(t, _)| t);
        let tracker = Tracker::new(started, check.start_period, check.retries);
        let (env, tx, generation) = (self.probes.clone(), self.tx.clone(), run.generation);
        let (name, c) = (name.to_string(), check.clone());
        let task = tokio::spawn(async move {
            // Spread the first probes of many units over up to a second
            // (or the interval), instead of a burst.
            let spread = c.interval.min(Duration::from_secs(1));
            let h = name.bytes().fold(0xcbf29ce484222325u64, |h, b| (h ^ b as u64).wrapping_mul(0x100000001b3));
            tokio::time::sleep(spread.mul_f64((h % 1000) as f64 / 1000.0)).await;
            loop {
                let target = probe::Target { name: &name, pid, hostname: &hostname };
                let result = probe::run(&env, &target, &c.probe, c.timeout).await;
                if tx.send(Event::Probe { name: name.clone(), generation, result }).is_err() {
                    return;
                }
                tokio::time::sleep(c.interval).await;
            }
        });
        run.probe = Some(task.abort_handle());
        run.health = Some((check, tracker));
    }

    fn probed(&mut self, name: &str, generation: u64, result: ProbeResult) {
        let Some(run) = self.run_of(name, generation) else { return };
        if run.stopping {
            return;
        }
        let Some((check, tracker)) = run.health.as_mut() else { return };
        let output = result.output.clone();
        let Some(now) = tracker.record(result, Instant::now()) else { return };
        tracing::info!("{name}: health {} ({output})", now.name());
        if now != Health::Unhealthy {
            return;
        }
        let action = check.on_unhealthy;
        if action == OnUnhealthy::None {
            return;
        }
        run.unhealthy = Some(action);
        self.stop(name, format!("unhealthy: {output}"));
    }

    fn stop(&mut self, name: &str, why: String) {
        let e = self.entries.get_mut(name).expect("known");
        let Some(unit) = e.unit.as_ref() else { return };
        let timeout = unit.unit.stop.timeout;
        e.reason = Some(why);
        let Some(run) = e.run.as_mut() else { return };
        run.stopping = true;
        run.end_tasks();
        let Some(pid) = run.pid else {
            // Still starting: stopped as soon as it is started.
            return;
        };
        // SAFETY: kill(2) of our own child (not yet reaped: its exit
        // would have ended `run`).
        unsafe { libc::kill(pid, run.stop_signal) };
        let generation = run.generation;
        self.later(timeout, Event::StopTimeout { name: name.to_string(), generation });
    }

    fn command(&mut self, c: Command) {
        match c {
            Command::Status(reply) => {
                let _ = reply.send(self.order.iter().map(|n| self.entries[n].status(self.shutting_down)).collect());
            }
            Command::Inspect(name, reply) => {
                let _ = reply.send(self.entries.get(&name).map(|e| self.inspect(e)));
            }
            Command::Op(op, names, reply) => {
                if let Some(bad) = names.iter().find(|n| !self.entries.contains_key(*n)) {
                    let _ = reply.send(Err(format!("no unit named {bad:?}")));
                    return;
                }
                if let Some(bad) = names.iter().find(|n| self.entries[*n].unit.is_none()) {
                    let err = self.entries[bad].file_error.clone().unwrap_or_default();
                    let _ = reply.send(Err(format!("{bad}: its unit file is invalid: {err}")));
                    return;
                }
                let mut generations = Vec::new();
                for name in &names {
                    let e = self.entries.get_mut(name).expect("checked");
                    match op {
                        Op::Stop => e.held = true,
                        Op::Start | Op::Restart => {
                            e.held = false;
                            e.failed = false;
                            e.exited = false;
                            e.backoff = None;
                            e.in_row = 0;
                            if op == Op::Restart {
                                if let Some(run) = &mut e.run {
                                    run.restart = true;
                                }
                            }
                        }
                    }
                    generations.push((name.clone(), e.generation));
                }
                let _ = reply.send(Ok(generations));
            }
            Command::Kill(name, signal, reply) => {
                let result = match self.entries.get(&name).and_then(|e| e.run.as_ref()).and_then(|r| r.pid) {
                    Some(pid) => {
                        // SAFETY: kill(2) of our own child.
                        if unsafe { libc::kill(pid, signal) } == 0 {
                            Ok(())
                        } else {
                            Err(format!("{name}: {}", std::io::Error::last_os_error()))
                        }
                    }
                    None if self.entries.contains_key(&name) => Err(format!("{name} is not running")),
                    None => Err(format!("no unit named {name:?}")),
                };
                let _ = reply.send(result);
            }
            Command::Reload(dry_run, reply) => {
                let _ = reply.send(self.rescan(dry_run));
            }
            Command::Volumes(reply) => {
                let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
                for e in self.entries.values() {
                    for v in e.unit.iter().flat_map(|u| u.unit.container.volumes.iter()) {
                        if let crate::units::values::mounts::VolumeSource::Named(n) = &v.source {
                            out.entry(e.name.clone()).or_default().push(n.clone());
                        }
                    }
                }
                let _ = reply.send(out);
            }
            Command::Counts(reply) => {
                let _ = reply.send(self.counts());
            }
            Command::LogFiles(name, reply) => {
                let files = self.entries.get(&name).map(|e| e.unit.as_ref().map_or(1, |u| u.unit.logs.max_files));
                let _ = reply.send(files);
            }
        }
    }

    fn inspect(&self, e: &Entry) -> serde_json::Value {
        let usage: Option<Usage> = e.run.as_ref().and_then(|r| r.cgroup.as_ref()).map(Cgroup::usage);
        serde_json::json!({
            "status": e.status(self.shutting_down),
            "unit": e.unit,
            "usage": usage,
            "last_exits": e.history,
            "cgroup": e.run.as_ref().and_then(|r| r.cgroup.as_ref()),
            "health": e.run.as_ref().and_then(|r| r.health.as_ref()).map(|(check, t)| serde_json::json!({
                "status": t.status,
                "failing_streak": t.failures(),
                "check": check,
                "results": t.results,
            })),
        })
    }
}
