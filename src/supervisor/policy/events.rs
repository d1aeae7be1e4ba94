//! The events that change a unit: each records what happened and leaves
//! the consequences (signals, timers, probe loops) in `pending` for the
//! next converge.

use std::collections::BTreeMap;
use std::time::Duration;

use super::health;
use super::lifecycle::{AfterExit, ExitInfo, after_exit, jittered};
use super::record::{Life, Notify, Phase, Record, Rest, Run};
use super::reload::{Step, plan};
use super::update::Cause;
use super::{Action, Core, Level, Now, Op, ProbeLoop, StartOutcome, Timer};
use crate::health::{Health, ProbeResult, Tracker};
use crate::units::model::{OnUnhealthy, RestartPolicy};
use crate::units::{Hashes, LoadedUnit, UnitSet};

/// Why an operator's command was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpError {
    #[error("no unit named {0:?}")]
    Unknown(String),
    #[error("{name}: its unit file is invalid: {error}")]
    Invalid { name: String, error: String },
    #[error("{0} is not running")]
    NotRunning(String),
    #[error("{name} is {state}: only a running unit can be paused")]
    CannotPause { name: String, state: super::lifecycle::State },
    #[error("{0} is being updated: pause it once its update is done")]
    Updating(String),
    #[error("{0} is paused: unpause it first")]
    Paused(String),
    #[error("{0} is not paused")]
    NotPaused(String),
}

impl Core {
    /// The plan from the units known now to `set`; carried out unless
    /// `dry_run`.
    pub fn reload(&mut self, set: UnitSet, dry_run: bool, now: Now) -> BTreeMap<String, Step> {
        let current: BTreeMap<String, Option<Hashes>> = self
            .records
            .iter()
            .filter(|(_, r)| !r.removed)
            .map(|(n, r)| (n.clone(), r.config.as_ref().map(|u| u.hashes.clone())))
            .collect();
        let mut steps = plan(&current, &set);
        // A unit rolled back stays on its previous config until its file
        // changes again, exactly as with an invalid edit.
        for u in &set.units {
            let r = self.records.get(&u.unit.name);
            if r.is_some_and(|r| r.detached && r.file_hash.as_ref() == Some(&u.hashes.unit)) {
                steps.insert(u.unit.name.clone(), Step::Keep);
            }
        }
        if !dry_run {
            self.apply(&steps, set, now);
        }
        steps
    }

    fn apply(&mut self, steps: &BTreeMap<String, Step>, mut set: UnitSet, now: Now) {
        let mut loaded: BTreeMap<String, LoadedUnit> = set.units.drain(..).map(|u| (u.unit.name.clone(), u)).collect();
        // Running units whose [health] changed: their probes start anew.
        let mut reprobe = Vec::new();
        for (name, step) in steps {
            let new = loaded.remove(name);
            if *step == Step::Restart {
                self.begin_trial(name, Cause::Edit, now);
            }
            let r = self.records.entry(name.clone()).or_insert_with(|| Record::new(name, now.wall));
            if let Some(f) = set.files.get(name) {
                r.file = Some(f.clone());
            }
            if let Some(new) = &new {
                if r.file_hash.as_ref() != Some(&new.hashes.unit) {
                    // The file changed: whatever it says now is followed.
                    r.file_hash = Some(new.hashes.unit.clone());
                    r.detached = false;
                    if r.trial.is_none() {
                        r.update_error = None;
                    }
                }
            }
            match step {
                Step::Keep => r.file_error = None,
                Step::Update | Step::LiveUpdate => {
                    let new = new.expect("planned from the set");
                    // A start-first update's new container too: it is
                    // to serve with this config.
                    for run in r.run().into_iter().chain(r.next.as_ref()) {
                        self.pending.push(Action::Update {
                            name: name.clone(),
                            generation: run.generation,
                            unit: Box::new(new.clone()),
                            resources: *step == Step::LiveUpdate,
                        });
                    }
                    if r.config.as_ref().is_none_or(|old| old.unit.health != new.unit.health) && r.running() {
                        reprobe.push(name.clone());
                    }
                    r.config = Some(new);
                    r.file_error = None;
                }
                Step::Restart | Step::Start => {
                    r.config = new;
                    // A new config resolves its image anew.
                    r.image = None;
                    r.file_error = None;
                    r.removed = false;
                    // A new config is a new chance.
                    if let Life::Idle(rest) = &mut r.life {
                        *rest = Rest::Ready;
                    }
                    r.in_row = 0;
                    r.start_error = None;
                }
                Step::Remove => r.removed = true,
                Step::Invalid(err) => {
                    self.pending.push(Action::Note { name: name.clone(), level: Level::Error, message: err.clone() });
                    r.file_error = Some(err.clone());
                }
            }
        }
        for name in steps.iter().filter(|(_, s)| **s == Step::Restart).map(|(n, _)| n) {
            self.back_to_serving(name, now);
            self.settle_strategy(name);
        }
        for name in reprobe {
            let r = &self.records[&name];
            let runs: Vec<u64> = r.run().into_iter().chain(r.next.as_ref()).map(|run| run.generation).collect();
            for g in runs {
                self.start_probes(&name, g);
            }
        }
        self.reorder();
    }

    /// Start order: dependencies first, then every other name.
    fn reorder(&mut self) {
        let units: Vec<&crate::units::Unit> =
            self.records.values().filter_map(|r| r.config.as_ref().map(|u| &u.unit)).collect();
        let mut order: Vec<String> = crate::units::graph::start_order(&units).into_iter().flatten().collect();
        let known: std::collections::BTreeSet<&String> = order.iter().collect();
        let rest: Vec<String> = self.records.keys().filter(|n| !known.contains(n)).cloned().collect();
        order.extend(rest);
        self.order = order;
    }

    /// The start reached a new phase (pulling, then starting).
    pub fn phase(&mut self, name: &str, generation: u64, phase: Phase) {
        if let Some(run) = self.records.get_mut(name).and_then(|r| r.run_of(generation)) {
            if run.running().is_none() {
                run.phase = phase;
            }
        }
    }

    /// A start ended: the container runs, or it could not be made.
    pub fn started(&mut self, name: &str, generation: u64, outcome: StartOutcome, now: Now) {
        let Some(r) = self.records.get_mut(name) else { return };
        if !r.serving(generation) {
            return self.started_beside(name, generation, outcome, now);
        }
        if r.find(generation).is_none() {
            return;
        }
        match outcome {
            StartOutcome::Running(s) => {
                let Some(run) = r.now_running(generation, s, now) else { return };
                // Asked to stop while it started: the next converge stops
                // it, in order (its dependents first), as it would any
                // container it does not keep, or keeps it if it is wanted
                // again by then; its probes start either way (a stop ends
                // them).
                run.stopping = false;
                r.start_error = None;
                r.reason = None;
                self.start_probes(name, generation);
            }
            StartOutcome::Failed(err) => {
                self.pending.push(Action::Note { name: name.into(), level: Level::Error, message: err.clone() });
                r.life = Life::Idle(Rest::Ready);
                r.start_error = Some(err.clone());
                let exit = ExitInfo::start_error(err, now.wall);
                self.after_exit(name, exit, Duration::ZERO, true, now);
            }
        }
    }

    /// The container of `generation` ended, and nothing of it is left.
    pub fn exited(&mut self, name: &str, generation: u64, exit: ExitInfo, now: Now) {
        let Some(r) = self.records.get_mut(name) else { return };
        if r.run_of(generation).is_none() {
            return;
        }
        if !r.serving(generation) {
            return self.exited_beside(name, generation, exit);
        }
        let Life::Active(run) = std::mem::replace(&mut r.life, Life::Idle(Rest::Ready)) else { unreachable!() };
        self.pending.push(Action::EndTasks { name: name.into(), generation });
        let ran_for = run.running().map_or(Duration::ZERO, |x| now.mono.saturating_duration_since(x.started_at));
        if !super::update::current_config(r, &run) {
            // Its config was replaced meanwhile (an update rolled back):
            // the config it runs now has not failed.
            r.reason = Some(exit.describe());
            r.record(exit);
            return;
        }
        match run.unhealthy {
            Some(OnUnhealthy::Restart) => {
                // Counts as a failure for the backoff, whatever the policy.
                let exit = ExitInfo { unhealthy: true, ..exit };
                self.note(name, exit.describe());
                self.after_exit(name, exit, ran_for, false, now);
                return;
            }
            Some(OnUnhealthy::Stop) => {
                let exit = ExitInfo { unhealthy: true, ..exit };
                r.reason = Some(format!("{}; on_unhealthy = \"stop\"", exit.describe()));
                r.life = Life::Idle(Rest::Failed);
                r.record(exit);
                return;
            }
            _ => {}
        }
        if run.stopping {
            r.reason = Some(exit.describe());
            r.record(exit);
            return;
        }
        if run.paused {
            // Killed while frozen (from outside: nothing of ours stops a
            // paused container without thawing it): the operator wanted
            // it not to run, so the restart policy does not bring it back.
            r.reason = Some(format!("{} while paused", exit.describe()));
            r.life = Life::Idle(Rest::Exited);
            r.record(exit);
            return;
        }
        self.note(name, exit.describe());
        self.after_exit(name, exit, ran_for, false, now);
    }

    /// An exit nobody asked for: the restart policy decides.
    fn after_exit(&mut self, name: &str, exit: ExitInfo, ran_for: Duration, start_failed: bool, now: Now) {
        let r = self.records.get_mut(name).expect("known");
        let Some(unit) = r.config.as_ref() else { return };
        let mut policy = unit.unit.restart.clone();
        if exit.unhealthy && policy.policy == RestartPolicy::No {
            // on_unhealthy = "restart" asks for it.
            policy.policy = RestartPolicy::OnFailure;
        }
        let (decision, in_row) = after_exit(&policy, r.in_row, ran_for, &exit);
        r.in_row = in_row;
        r.reason = Some(exit.describe());
        r.record(exit);
        r.life = Life::Idle(match decision {
            AfterExit::Restart(delay) => {
                let delay = jittered(delay, &policy, now.jitter);
                r.restarts += 1;
                let generation = r.generation;
                let timer = Timer::Backoff { name: name.to_string(), generation };
                self.pending.push(Action::Timer { after: delay, timer });
                Rest::Backoff { generation, until: now.mono + delay, at: now.wall + delay, paced: false }
            }
            // A start that failed with no policy to retry it is failed,
            // not a clean exit.
            AfterExit::Stay if start_failed => Rest::Failed,
            AfterExit::Stay => Rest::Exited,
            AfterExit::Fail => {
                r.reason = Some(format!("restart limit reached; last: {}", r.reason.take().unwrap_or_default()));
                Rest::Failed
            }
        });
    }

    /// The backoff timer of `generation` fired. The unit's own delay is
    /// over; it restarts now if the fleet's pace has a turn free, or waits
    /// for its turn. Turns are taken here, as timers fire, in time order:
    /// taken at the exit for when the delay would end, a turn far ahead (a
    /// unit at a long `max_delay`) would push every other unit's restart
    /// back behind it.
    pub fn backoff_over(&mut self, name: &str, generation: u64, now: Now) {
        let Some(r) = self.records.get_mut(name) else { return };
        let Life::Idle(Rest::Backoff { generation: g, paced, .. }) = r.life else { return };
        if g != generation {
            return;
        }
        if !paced {
            let turn = self.pace.slot(now.mono);
            if turn > now.mono {
                let wait = turn - now.mono;
                r.life = Life::Idle(Rest::Backoff { generation, until: turn, at: now.wall + wait, paced: true });
                let timer = Timer::Backoff { name: name.to_string(), generation };
                self.pending.push(Action::Timer { after: wait, timer });
                return;
            }
        }
        r.life = Life::Idle(Rest::Ready);
    }

    /// (Re)starts the health probe loop of a running unit: its own check,
    /// or its image's; none stops the loop.
    pub(super) fn start_probes(&mut self, name: &str, generation: u64) {
        let Some(r) = self.records.get_mut(name) else { return };
        let Some(unit) = r.config.as_ref() else { return };
        let hostname = unit.unit.container.hostname.clone();
        let health = unit.unit.health.clone();
        let Some(run) = r.run_of(generation) else { return };
        let Some(running) = run.running_mut() else { return };
        let check = health::effective(&health, running.container.image_health.as_ref());
        running.health =
            check.as_ref().map(|c| (c.clone(), Tracker::new(running.started_at, c.start_period, c.retries)));
        if run.paused {
            // Its loop ended at the pause; `unpause` starts this check.
            return;
        }
        let Some(running) = run.running() else { return };
        let probe = check.map(|check| ProbeLoop { check, pid: running.container.pid, hostname });
        self.pending.push(Action::Probe { name: name.into(), generation, probe });
    }

    /// A probe's result.
    pub fn probed(&mut self, name: &str, generation: u64, result: ProbeResult, now: Now) {
        // Health does not act during a shutdown: stops go in order then.
        if self.shutting_down {
            return;
        }
        let Some(run) = self.records.get_mut(name).and_then(|r| r.run_of(generation)) else { return };
        // A result of a probe that ran into the freeze: not counted.
        if run.stopping || run.paused {
            return;
        }
        let Some((check, tracker)) = run.running_mut().and_then(|x| x.health.as_mut()) else { return };
        let output = result.output.clone();
        let Some(health) = tracker.record(result, now.mono) else { return };
        let action = check.on_unhealthy;
        self.note(name, format!("health {} ({output})", health.name()));
        if health != Health::Unhealthy || action == OnUnhealthy::None {
            return;
        }
        let r = self.records.get_mut(name).expect("checked");
        if !r.serving(generation) {
            // A new container on trial: the trial's gate judges it.
            return;
        }
        let run = r.run_of(generation).expect("checked");
        run.unhealthy = Some(action);
        self.stop(name, format!("unhealthy: {output}"));
    }

    /// A message on a notify unit's socket.
    pub fn notified(&mut self, name: &str, generation: u64, ready: bool, status: Option<String>) {
        let Some(n) = self.records.get_mut(name).and_then(|r| r.run_of(generation)).and_then(|r| r.notify.as_mut())
        else {
            return;
        };
        let newly = ready && !n.ready;
        n.ready |= ready;
        if status.is_some() {
            n.status = status;
        }
        if newly {
            self.note(name, "READY=1".into());
        }
    }

    /// A unit's `ready_timeout` has passed since it began to wait.
    pub fn wait_timeout(&mut self, name: &str, now: Now) {
        let Some(r) = self.records.get_mut(name) else { return };
        let timeout = r.config.as_ref().map_or(Duration::MAX, |u| u.unit.unit.ready_timeout);
        let waited = r.waiting_since.is_some_and(|t| now.mono.saturating_duration_since(t) >= timeout);
        if r.run().is_none() && waited {
            let why = r.reason.clone().unwrap_or_default();
            let msg = format!("not started after {}: {why}", humantime::format_duration(timeout));
            self.pending.push(Action::Note { name: name.into(), level: Level::Warn, message: msg.clone() });
            self.records.get_mut(name).expect("known").start_error = Some(msg);
        }
    }

    /// The stop timeout of `generation` has passed.
    pub fn stop_timeout(&mut self, name: &str, generation: u64) {
        if self.records.get_mut(name).and_then(|r| r.run_of(generation)).is_some() {
            let message = "still running after its stop timeout: SIGKILL to all of it".to_string();
            self.pending.push(Action::Note { name: name.into(), level: Level::Info, message });
            self.pending.push(Action::KillAll { name: name.into(), generation });
        }
    }

    /// Asks `name`'s container to stop: its stop signal now (or as soon
    /// as it has started), SIGKILL to all of it after its stop timeout.
    pub(super) fn stop(&mut self, name: &str, why: String) {
        let r = self.records.get_mut(name).expect("known");
        if r.config.is_none() {
            return;
        }
        r.reason = Some(why);
        let Some(generation) = r.run().map(|run| run.generation) else { return };
        self.stop_generation(name, generation);
    }

    /// Asks `name`'s container of `generation` (serving or beside) to
    /// stop, as [`Core::stop`] does.
    pub(super) fn stop_generation(&mut self, name: &str, generation: u64) {
        let r = self.records.get_mut(name).expect("known");
        let Some(unit) = r.config.as_ref() else { return };
        let timeout = unit.unit.stop.timeout;
        let Some(run) = r.run_of(generation) else { return };
        run.stopping = true;
        self.pending.push(Action::EndTasks { name: name.into(), generation });
        if std::mem::take(&mut run.paused) {
            // A frozen process would only take its stop signal once
            // thawed: thaw first, so it has its whole stop timeout.
            self.pending.push(Action::Thaw { name: name.into(), generation });
        }
        let Some(running) = run.running() else {
            // Still starting: stopped as soon as it is started.
            return;
        };
        let (pid, signal) = (running.container.pid, running.container.stop_signal);
        self.pending.push(Action::Signal { name: name.into(), generation, pid, signal });
        let timer = Timer::StopTimeout { name: name.into(), generation };
        self.pending.push(Action::Timer { after: timeout, timer });
    }

    /// An operator's start, stop or restart; each unit's generation (a
    /// restart waits for a newer one).
    pub fn operate(&mut self, op: Op, names: &[String]) -> Result<Vec<(String, u64)>, OpError> {
        if let Some(bad) = names.iter().find(|n| !self.records.contains_key(*n)) {
            return Err(OpError::Unknown(bad.clone()));
        }
        if let Some(bad) = names.iter().find(|n| self.records[*n].config.is_none()) {
            let error = self.records[bad].file_error.clone().unwrap_or_default();
            return Err(OpError::Invalid { name: bad.clone(), error });
        }
        if op == Op::Start {
            // As Docker's `start` of a paused container.
            if let Some(bad) = names.iter().find(|n| self.records[*n].run().is_some_and(|r| r.paused)) {
                return Err(OpError::Paused(bad.clone()));
            }
        }
        let mut generations = Vec::new();
        for name in names {
            let r = self.records.get_mut(name).expect("checked");
            match op {
                Op::Stop => r.held = true,
                Op::Start | Op::Restart => {
                    r.held = false;
                    r.in_row = 0;
                    match &mut r.life {
                        Life::Idle(rest) => *rest = Rest::Ready,
                        Life::Active(run) => run.restart |= op == Op::Restart,
                    }
                }
            }
            generations.push((name.clone(), r.generation));
        }
        Ok(generations)
    }

    /// The pid of `name`'s running container, for `kill`.
    pub fn pid(&self, name: &str) -> Result<i32, OpError> {
        let r = self.records.get(name).ok_or_else(|| OpError::Unknown(name.into()))?;
        if r.run().is_some_and(|run| run.paused) {
            // Its signal would wait for the thaw.
            return Err(OpError::Paused(name.into()));
        }
        r.run().and_then(Run::running).map(|x| x.container.pid).ok_or_else(|| OpError::NotRunning(name.into()))
    }

    fn note(&mut self, name: &str, message: String) {
        self.pending.push(Action::Note { name: name.into(), level: Level::Info, message });
    }
}

/// A fresh container record for a start.
pub(super) fn new_run(generation: u64, unit: &LoadedUnit, image: Option<String>) -> Run {
    Run {
        generation,
        restart_hash: unit.hashes.restart.clone(),
        phase: Phase::Starting,
        stopping: false,
        restart: false,
        unhealthy: None,
        notify: unit.unit.container.notify.then(Notify::default),
        image,
        paused: false,
    }
}
