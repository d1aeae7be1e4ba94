//! The engine loop: it only carries things out. Events arrive on one
//! channel (settled file events, container starts and exits, probe
//! results, timers, operator commands); each becomes a call on the
//! decision core (`super::policy`), and what the core decides comes back
//! as actions for the [`Backend`]. Nothing polls: an idle supervisor
//! sleeps in `recv`.

mod backend;
mod commands;
mod container;
mod real;
mod wire;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::path::PathBuf;

use tokio::sync::{broadcast, mpsc, oneshot, watch};

pub use super::policy::Op;
pub use super::policy::status::{StateEvent, UnitStatus};
pub use backend::{Backend, Events, Start};
pub use real::Real;
pub use wire::{
    Command, Event, FreezeError, KillError, PauseError, ReloadError, Rolled, StartPhase, UnitSample, UpdateTarget,
};

use super::policy::reload::Step;
use super::policy::{Action, Core, Level, Now, Phase};
use crate::units::{ParseCache, load_dir_cached};

/// The clocks now: the loop reads them, the core never does.
fn now() -> Now {
    Now { mono: std::time::Instant::now(), wall: std::time::SystemTime::now(), jitter: random_fraction() }
}

/// A fraction in [0, 1) from std's randomly keyed hasher: enough to spread
/// restarts, with no random-number crate.
fn random_fraction() -> f64 {
    use std::hash::{BuildHasher, Hasher};
    let bits = std::collections::hash_map::RandomState::new().build_hasher().finish();
    (bits >> 11) as f64 / (1u64 << 53) as f64
}

/// The most events handled before the core decides.
const BATCH: usize = 64;

/// Whether `event` only reports what the runtime did (it may be handled in
/// a batch before the core decides); not a command, a rescan or a shutdown.
fn reports_only(event: &Event) -> bool {
    matches!(
        event,
        Event::Phase { .. }
            | Event::Started { .. }
            | Event::Exited { .. }
            | Event::Frozen { .. }
            | Event::Switched { .. }
            | Event::Timer(_)
            | Event::Probe { .. }
            | Event::Notify { .. }
    )
}

pub struct Engine<B: Backend> {
    units_dir: PathBuf,
    /// Each unit file's text and parse at the last rescan: an edit of
    /// one file parses that file, not the directory.
    parsed: ParseCache,
    core: Core,
    backend: B,
    tx: mpsc::UnboundedSender<Event>,
    events: broadcast::Sender<StateEvent>,
    env_files: watch::Sender<std::collections::BTreeSet<PathBuf>>,
    shutdown_waiters: Vec<oneshot::Sender<()>>,
    /// Where the loop notes how long each pass took and when the unit
    /// directory was last applied.
    metrics: super::metrics::Counters,
    /// The `pause`s waiting for their container's freeze, by unit and
    /// generation.
    pausing: commands::Pausing,
}

impl<B: Backend> Engine<B> {
    pub fn new(
        units_dir: PathBuf,
        backend: B,
        tx: mpsc::UnboundedSender<Event>,
        events: broadcast::Sender<StateEvent>,
        env_files: watch::Sender<std::collections::BTreeSet<PathBuf>>,
    ) -> Engine<B> {
        let metrics = super::metrics::Counters::default();
        Engine {
            units_dir,
            parsed: ParseCache::default(),
            core: Core::new(),
            backend,
            tx,
            events,
            env_files,
            shutdown_waiters: Vec::new(),
            metrics,
            pausing: Default::default(),
        }
    }

    /// Notes its passes and reloads in `metrics` (the daemon's, which
    /// its metrics listener shows).
    pub fn with_metrics(mut self, metrics: super::metrics::Counters) -> Engine<B> {
        self.metrics = metrics;
        self
    }

    /// Handles events until shutdown completes.
    pub async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Event>, ready: oneshot::Sender<()>) {
        let began = std::time::Instant::now();
        let _ = self.rescan(false);
        self.converge();
        self.metrics.reconciled(began.elapsed());
        let _ = ready.send(());
        // A command or a rescan waiting behind a batch: it comes next, alone.
        let mut held = None;
        loop {
            let event = match held.take() {
                Some(e) => e,
                None => match rx.recv().await {
                    Some(e) => e,
                    None => return,
                },
            };
            let began = std::time::Instant::now();
            let batch = reports_only(&event);
            self.handle(event);
            // The runtime's reports that came meanwhile are handled before
            // deciding: one pass over every unit for a burst (a shutdown's
            // hundreds of exits), not one per report. Each one's state
            // changes are still reported, in order. A command or a rescan
            // is decided on after what came before it, as always.
            for _ in 1..if batch { BATCH } else { 1 } {
                let Ok(next) = rx.try_recv() else { break };
                if !reports_only(&next) {
                    held = Some(next);
                    break;
                }
                self.core.report(now());
                self.handle(next);
            }
            self.converge();
            self.metrics.reconciled(began.elapsed());
            if self.core.all_stopped() {
                for w in self.shutdown_waiters.drain(..) {
                    let _ = w.send(());
                }
                return;
            }
        }
    }

    fn handle(&mut self, event: Event) {
        let now = now();
        let core = &mut self.core;
        match event {
            Event::Rescan => {
                let _ = self.rescan(false);
            }
            Event::Phase { name, generation, phase } => {
                let phase = match phase {
                    StartPhase::Pulling => Phase::Pulling,
                    StartPhase::Starting => Phase::Starting,
                };
                core.phase(&name, generation, phase);
            }
            Event::Started { name, generation, outcome } => core.started(&name, generation, outcome, now),
            Event::Exited { name, generation, exit } => core.exited(&name, generation, exit, now),
            Event::Frozen { name, generation, result } => self.frozen(name, generation, result),
            Event::Switched { name, to, result } => core.switched(&name, to, result, now),
            Event::Timer(t) => match t {
                super::policy::Timer::Backoff { name, generation } => core.backoff_over(&name, generation, now),
                super::policy::Timer::StopTimeout { name, generation } => core.stop_timeout(&name, generation),
                super::policy::Timer::WaitTimeout { name } => core.wait_timeout(&name, now),
                // The converge after every event judges the trial.
                super::policy::Timer::Update { .. } => {}
                super::policy::Timer::Drained { name, generation } => core.drained(&name, generation),
            },
            Event::Probe { name, generation, result } => core.probed(&name, generation, result, now),
            Event::Notify { name, generation, ready, status } => core.notified(&name, generation, ready, status),
            Event::Command(c) => self.command(c),
            Event::Shutdown(done) => {
                core.shutdown();
                self.shutdown_waiters.push(done);
            }
        }
    }

    /// Asks the core what to do now, and does it.
    fn converge(&mut self) {
        for action in self.core.converge(now()) {
            self.carry_out(action);
        }
    }

    fn carry_out(&mut self, action: Action) {
        let tx = &self.tx;
        match action {
            Action::Start { name, generation, unit, join, image, beside } => {
                let start = backend::Start { unit: *unit, join, image, beside };
                self.backend.start(&name, generation, start, tx)
            }
            Action::Switch { name, from, to } => self.backend.switch(&name, from, to, tx),
            Action::Signal { name, pid, signal, .. } => {
                if let Err(e) = self.backend.signal(&name, pid, signal) {
                    tracing::warn!("{name}: cannot send its stop signal: {e}");
                }
            }
            Action::KillAll { name, generation } => self.backend.kill_all(&name, generation),
            Action::Thaw { name, generation } => {
                if let Err(e) = self.backend.thaw(&name, generation) {
                    // Its stop timeout's SIGKILL to all of it still ends it.
                    tracing::warn!("cannot thaw it before its stop signal: {e}");
                }
            }
            Action::EndTasks { name, generation } => self.backend.end_tasks(&name, generation),
            Action::Probe { name, generation, probe } => self.backend.probe(&name, generation, probe, tx),
            Action::Update { name, generation, unit, resources } => {
                self.backend.update(&name, generation, &unit, resources)
            }
            Action::Timer { after, timer } => {
                let tx = tx.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(after).await;
                    let _ = tx.send(Event::Timer(timer));
                });
            }
            Action::Emit(event) => {
                match &event.reason {
                    Some(r) => tracing::info!("{}: {} -> {} ({r})", event.unit, event.old, event.new),
                    None => tracing::info!("{}: {} -> {}", event.unit, event.old, event.new),
                }
                let _ = self.events.send(event);
            }
            Action::Note { name, level, message } => match level {
                Level::Info => tracing::info!("{name}: {message}"),
                Level::Warn => tracing::warn!("{name}: {message}"),
                Level::Error => tracing::error!("{name}: {message}"),
            },
        }
    }

    /// Reads the directory and carries out (or only returns) the plan.
    fn rescan(&mut self, dry_run: bool) -> Result<BTreeMap<String, Step>, ReloadError> {
        let set = match load_dir_cached(&self.units_dir, &mut self.parsed) {
            Ok(set) => set,
            Err(e) => {
                let err = ReloadError { dir: self.units_dir.clone(), source: e };
                // A directory that vanished for a moment (being replaced)
                // must not stop everything: keep what runs.
                tracing::error!("{err}; keeping the units as they are");
                return Err(err);
            }
        };
        Ok(self.reload_set(set, dry_run))
    }

    /// Carries out (or only returns) the plan that takes the units to `set`.
    fn reload_set(&mut self, set: crate::units::UnitSet, dry_run: bool) -> BTreeMap<String, Step> {
        let now = now();
        let steps = self.core.reload(set, dry_run, now);
        if !dry_run {
            self.metrics.reloaded(now.wall);
            let dirs = self.core.env_file_dirs();
            self.env_files.send_if_modified(|d| {
                let changed = *d != dirs;
                *d = dirs;
                changed
            });
        }
        steps
    }
}
