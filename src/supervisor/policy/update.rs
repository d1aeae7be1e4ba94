//! Updates: a change that replaces a running unit's container is on
//! trial until its new container has been running (healthy when it has a
//! probe, READY=1 when it is a notify unit) within `healthy_within`, and
//! stayed so for `min_healthy`. A trial that fails goes back, with
//! `rollback = true`, to the config and the exact image (by ID) that ran
//! before; the file on disk is left as it is, and the unit stays on the
//! previous config until the file changes again.
//!
//! Three things start a trial: an edit of the unit file (its container
//! keys or `env_file`), a new image for an `auto = "registry"` unit
//! ([`Core::roll_image`]), and an operator's `rollback` ([`Core::rollback`]).
//! The verdict is read in [`Core::gate`], which every converge calls:
//! the events (an exit, a failed start, a probe, READY=1) and the trial's
//! timers only wake the loop; the rules are all here.

use std::time::{Duration, Instant};

use super::lifecycle::ExitInfo;
use super::record::{Life, Record, Rest};
use super::status::StateEvent;
use super::{Action, Core, Level, Now, Timer};
use crate::health::Health;
use crate::units::LoadedUnit;
use crate::units::model::RestartPolicy;

/// A config and the image it ran: what a rollback returns to.
#[derive(Debug, Clone)]
pub struct Good {
    pub config: LoadedUnit,
    /// The image ID (manifest digest) its container ran.
    pub image: String,
}

/// What started a trial.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    /// The unit file changed.
    Edit,
    /// A new image of the same tag (`auto = "registry"`).
    Image,
    /// `supervisorctl rollback`.
    Rollback,
}

/// An update on trial: the record's config (and image) are the new ones.
#[derive(Debug, Clone)]
pub struct Trial {
    /// What runs again if the trial fails.
    pub from: Good,
    /// Whether the unit ran another config than its file's before.
    pub from_detached: bool,
    pub cause: Cause,
    /// The trial's container once asked for, and the time by which it
    /// must be ready.
    pub generation: Option<u64>,
    pub deadline: Option<Instant>,
    /// Since when it has been ready without a break.
    pub ready_since: Option<Instant>,
    /// Start-first: the new container runs beside the serving one.
    pub beside: bool,
    /// Passed, and its traffic is being moved to it.
    pub switching: bool,
}

/// What `status` says of a unit's updates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum UpdateState {
    InProgress,
    /// It runs another config than its file's (an update failed and was
    /// rolled back, or an operator rolled it back), or its file's config
    /// with the image it ran before a new one failed.
    RolledBack,
}

impl UpdateState {
    /// Every update state (the metrics' one series per state).
    pub const ALL: [UpdateState; 2] = [UpdateState::InProgress, UpdateState::RolledBack];

    /// As `status --json` writes it.
    pub fn name(self) -> &'static str {
        match self {
            UpdateState::InProgress => "in-progress",
            UpdateState::RolledBack => "rolled-back",
        }
    }
}

/// Why an operator's rollback or image update was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UpdateError {
    #[error("no unit named {0:?}")]
    Unknown(String),
    #[error("{0} has no previous config to roll back to (none has been replaced by a successful update)")]
    NoPrevious(String),
    #[error("{0}: an update is in progress; wait until it succeeds or is rolled back")]
    InProgress(String),
    #[error("{0}: its unit file is invalid")]
    Invalid(String),
}

impl Record {
    /// What runs now and would be returned to: the config on trial's
    /// origin during a trial, else the running container's config and
    /// image. None when nothing runs (a unit that is not running starts
    /// with a new config as it is: there is nothing to go back to).
    pub fn good(&self) -> Option<Good> {
        if let Some(t) = &self.trial {
            return Some(t.from.clone());
        }
        let config = self.config.clone()?;
        let run = self.run().filter(|r| !r.stopping)?;
        let image = run.running()?.container.image_digest.clone();
        current_config(self, run).then_some(Good { config, image })
    }

    pub fn update_state(&self) -> Option<UpdateState> {
        // An image that failed its trial: the file's config runs, with
        // the image it ran before.
        let image_rolled_back = self.rejected_image.is_some() && self.update_error.is_some();
        match (&self.trial, self.detached || image_rolled_back) {
            (Some(_), _) => Some(UpdateState::InProgress),
            (None, true) => Some(UpdateState::RolledBack),
            (None, false) => None,
        }
    }

    /// The image a rollback would return to: kept in the store until an
    /// update succeeds.
    pub fn previous_image(&self) -> Option<&str> {
        match &self.trial {
            Some(t) => Some(&t.from.image),
            None => self.previous.as_ref().map(|g| g.image.as_str()),
        }
    }
}

/// Whether `run` was started from the record's config and image.
pub(super) fn current_config(r: &Record, run: &super::record::Run) -> bool {
    r.config.as_ref().is_some_and(|u| u.hashes.restart == run.restart_hash)
        && (r.image.is_none() || run.image.is_none() || run.image == r.image)
}

impl Core {
    /// A change is about to replace `name`'s container: a trial from what
    /// runs now, if anything runs. Called before the record takes the new
    /// config.
    pub(super) fn begin_trial(&mut self, name: &str, cause: Cause, now: Now) {
        // A new container beside the serving one of an earlier trial is
        // replaced by this trial's.
        if self.records.get(name).is_some_and(|r| r.next.is_some()) {
            self.drop_next(name);
        }
        let Some(r) = self.records.get_mut(name) else { return };
        let Some(from) = r.good() else {
            r.trial = None;
            return;
        };
        let from_detached = r.trial.as_ref().map_or(r.detached, |t| t.from_detached);
        r.trial = Some(Box::new(Trial {
            from,
            from_detached,
            cause,
            generation: None,
            deadline: None,
            ready_since: None,
            beside: false,
            switching: false,
        }));
        r.update_error = None;
        let why = match cause {
            Cause::Edit => "the unit file changed",
            Cause::Image => "a new image",
            Cause::Rollback => "rollback by operator",
        };
        self.update_event(name, "started", why.to_string(), now);
    }

    /// The trial's container is being asked for: its clock starts.
    pub(super) fn trial_started(&mut self, name: &str, generation: u64, now: Now) {
        let Some(r) = self.records.get_mut(name) else { return };
        let Some(within) = r.config.as_ref().map(|u| u.unit.update.healthy_within) else { return };
        let Some(t) = r.trial.as_mut().filter(|t| t.generation.is_none()) else { return };
        t.generation = Some(generation);
        t.deadline = Some(now.mono + within);
        let timer = Timer::Update { name: name.to_string(), generation };
        self.pending.push(Action::Timer { after: within, timer });
    }

    /// Reads every trial's verdict: succeeded, failed, or not yet.
    pub(super) fn gate(&mut self, now: Now) {
        let down = self.shutting_down;
        let names: Vec<String> = self.records.values().filter(|r| r.trial.is_some()).map(|r| r.name.clone()).collect();
        for name in names {
            let r = &self.records[&name];
            if r.held || r.removed || r.config.is_none() || down {
                // Stopped by the operator, removed, or shutting down: the
                // new config stays, and nothing is judged.
                let why = if down {
                    "shutdown"
                } else if r.removed {
                    "unit file removed"
                } else {
                    "stopped by operator"
                };
                self.drop_next(&name);
                self.records.get_mut(&name).expect("listed").trial = None;
                self.update_event(&name, "abandoned", why.to_string(), now);
                continue;
            }
            match verdict(r, now) {
                Verdict::Wait(None) => {}
                Verdict::Wait(Some((generation, after))) => {
                    let t = self.records.get_mut(&name).and_then(|r| r.trial.as_mut()).expect("listed");
                    t.ready_since = Some(now.mono);
                    let timer = Timer::Update { name: name.clone(), generation };
                    self.pending.push(Action::Timer { after, timer });
                }
                Verdict::Passed if self.records[&name].next.is_some() => {
                    let r = self.records.get_mut(&name).expect("listed");
                    let from = r.run().map_or(0, |x| x.generation);
                    let t = r.trial.as_mut().expect("listed");
                    if !t.switching {
                        t.switching = true;
                        let to = t.generation.expect("judged");
                        self.pending.push(Action::Switch { name: name.clone(), from, to });
                    }
                }
                Verdict::Passed => self.trial_passed(&name, now),
                Verdict::Failed(why) => self.trial_failed(&name, why, now),
            }
        }
    }

    pub(super) fn trial_passed(&mut self, name: &str, now: Now) {
        let r = self.records.get_mut(name).expect("known");
        let t = r.trial.take().expect("on trial");
        r.previous = Some(Box::new(t.from));
        r.update_error = None;
        r.rejected_image = None;
        self.update_event(name, "succeeded", "healthy".into(), now);
    }

    pub(super) fn trial_failed(&mut self, name: &str, why: String, now: Now) {
        self.drop_next(name);
        let r = self.records.get_mut(name).expect("known");
        let t = r.trial.take().expect("on trial");
        let rollback = t.cause == Cause::Rollback || r.config.as_ref().is_some_and(|u| u.unit.update.rollback);
        r.update_error = Some(why.clone());
        if !rollback {
            let message = format!("update failed: {why}; rollback = false, so it stays on the new config");
            self.pending.push(Action::Note { name: name.into(), level: Level::Warn, message });
            self.update_event(name, "failed", why, now);
            return;
        }
        if t.cause == Cause::Image {
            r.rejected_image = r.image.clone();
        }
        r.detached = match t.cause {
            Cause::Edit => true,
            Cause::Image | Cause::Rollback => t.from_detached,
        };
        r.config = Some(t.from.config);
        r.image = Some(t.from.image.clone());
        r.in_row = 0;
        r.start_error = None;
        if let Life::Idle(rest) = &mut r.life {
            *rest = Rest::Ready;
        }
        let message = format!("update failed: {why}; back to the previous config (image {})", t.from.image);
        self.pending.push(Action::Note { name: name.into(), level: Level::Warn, message });
        self.update_event(name, "rolled-back", why, now);
    }

    /// An update's step, on the events stream (its state stays as it is).
    pub(super) fn update_event(&mut self, name: &str, update: &str, reason: String, now: Now) {
        let r = &self.records[name];
        let state = r.state(self.shutting_down);
        self.pending.push(Action::Emit(StateEvent {
            unit: name.to_string(),
            old: state,
            new: state,
            reason: Some(reason),
            time: now.wall,
            generation: r.generation,
            removed: false,
            update: Some(update.to_string()),
        }));
    }

    /// `supervisorctl rollback`: back to the previous good config and
    /// image, through the same trial as an update (one step: a second
    /// rollback returns to where the first began).
    pub fn rollback(&mut self, name: &str, now: Now) -> Result<(), UpdateError> {
        let r = self.records.get(name).ok_or_else(|| UpdateError::Unknown(name.into()))?;
        if r.trial.is_some() {
            return Err(UpdateError::InProgress(name.into()));
        }
        let Some(previous) = r.previous.clone() else { return Err(UpdateError::NoPrevious(name.into())) };
        if r.running() {
            self.begin_trial(name, Cause::Rollback, now);
        }
        let r = self.records.get_mut(name).expect("known");
        // From now on it does not follow its file (until the file
        // changes): a reload during the trial must not undo it.
        r.detached = true;
        if r.trial.is_none() {
            // Nothing runs: the previous config is simply taken.
            if let (Some(config), Some(image)) = (r.config.clone(), r.image.clone()) {
                r.previous = Some(Box::new(Good { config, image }));
            }
            if let Life::Idle(rest) = &mut r.life {
                *rest = Rest::Ready;
            }
        }
        r.config = Some(previous.config);
        r.image = Some(previous.image);
        r.in_row = 0;
        r.start_error = None;
        self.settle_strategy(name);
        Ok(())
    }

    /// A new image of an `auto = "registry"` unit's tag, already in the
    /// store: rolled out through a trial when the unit runs, taken at its
    /// next start otherwise. False when there is nothing to do: it runs
    /// that image, or that image failed its trial before.
    pub fn roll_image(&mut self, name: &str, image: &str, now: Now) -> Result<bool, UpdateError> {
        let r = self.records.get(name).ok_or_else(|| UpdateError::Unknown(name.into()))?;
        if r.config.is_none() {
            return Err(UpdateError::Invalid(name.into()));
        }
        if r.trial.is_some() {
            return Err(UpdateError::InProgress(name.into()));
        }
        if r.image.as_deref() == Some(image) || r.rejected_image.as_deref() == Some(image) {
            return Ok(false);
        }
        if r.running() {
            self.begin_trial(name, Cause::Image, now);
        }
        self.records.get_mut(name).expect("known").image = Some(image.to_string());
        self.settle_strategy(name);
        Ok(true)
    }
}

enum Verdict {
    /// Not yet; with the trial's container that just became ready and how
    /// long it must stay so.
    Wait(Option<(u64, Duration)>),
    Passed,
    Failed(String),
}

fn verdict(r: &Record, now: Now) -> Verdict {
    let t = r.trial.as_ref().expect("on trial");
    let (Some(generation), Some(deadline)) = (t.generation, t.deadline) else { return Verdict::Wait(None) };
    let Some(unit) = r.config.as_ref() else { return Verdict::Wait(None) };
    let policy = &unit.unit.update;
    if t.beside && r.run().is_none() {
        return Verdict::Failed("its serving container ended during the update".into());
    }
    let beside = r.next.as_ref().filter(|x| x.generation == generation);
    let Some(run) = r.run().filter(|x| x.generation == generation).or(beside) else {
        // Its container is gone (or never started): how it ended decides.
        let Some(exit) = r.history.back() else { return Verdict::Failed("ended".into()) };
        if ran_to_completion(exit, unit.unit.restart.policy) {
            return Verdict::Passed;
        }
        return Verdict::Failed(exit.describe());
    };
    let unhealthy = run.running().and_then(|x| x.health.as_ref()).is_some_and(|(_, t)| t.status == Health::Unhealthy);
    if run.unhealthy.is_some() || unhealthy && t.beside {
        // Its health check is stopping it (or would, beside): it will not
        // get healthy.
        return Verdict::Failed(format!("unhealthy: {}", why_not_ready(run)));
    }
    let ready = run.ready();
    match (ready, t.ready_since) {
        (true, None) if policy.min_healthy.is_zero() => Verdict::Passed,
        (true, None) => Verdict::Wait(Some((generation, policy.min_healthy))),
        (true, Some(since)) if now.mono.saturating_duration_since(since) >= policy.min_healthy => Verdict::Passed,
        (true, Some(_)) => Verdict::Wait(None),
        (false, Some(_)) => Verdict::Failed(format!(
            "not {} for {}: {}",
            ready_word(run),
            humantime::format_duration(policy.min_healthy),
            why_not_ready(run)
        )),
        (false, None) if now.mono >= deadline => Verdict::Failed(format!(
            "not {} within {}: {}",
            ready_word(run),
            humantime::format_duration(policy.healthy_within),
            why_not_ready(run)
        )),
        (false, None) => Verdict::Wait(None),
    }
}

/// What the gate waits for: health, or READY=1 for a notify unit without
/// a probe.
fn ready_word(run: &super::record::Run) -> &'static str {
    let probe = run.running().is_some_and(|x| x.health.is_some());
    if run.notify.is_some() && !probe { "ready" } else { "healthy" }
}

/// Why a unit on trial is not ready: `pulling`, `health starting (last
/// probe: connection refused)`, `no READY=1`.
fn why_not_ready(run: &super::record::Run) -> String {
    let Some(running) = run.running() else {
        return if matches!(run.phase, super::record::Phase::Pulling) { "pulling" } else { "starting" }.to_string();
    };
    let mut out = Vec::new();
    if let Some((_, t)) = running.health.as_ref().filter(|(_, t)| t.status != crate::health::Health::Healthy) {
        let mut h = format!("health {}", t.status.name());
        if let Some(last) = t.results.back().filter(|x| !x.healthy) {
            h.push_str(&format!(" (last probe: {})", last.output.trim()));
        }
        out.push(h);
    }
    if run.notify.as_ref().is_some_and(|n| !n.ready) {
        out.push("no READY=1".to_string());
    }
    if out.is_empty() { "running".to_string() } else { out.join(", ") }
}

/// A job whose policy does not restart it after a clean exit has done
/// what it was asked: its update succeeded.
fn ran_to_completion(exit: &ExitInfo, policy: RestartPolicy) -> bool {
    exit.error.is_none() && !exit.is_failure() && policy != RestartPolicy::Always
}
