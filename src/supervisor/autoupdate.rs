//! Image auto-update (`supervisorctl update`, and the daemon's timer every
//! `auto_update_interval`): for each unit with `auto = "registry"`, ask the
//! registry which image its tag names now, and when that is not the image
//! the unit runs, pull it and roll it out through the core's trial (so a
//! broken image goes back to the one that ran). A registry that fails
//! only makes a report: the running unit is never touched by it.
//!
//! As podman's auto-update, only units that opted in are looked at: a unit
//! named on the command line without `auto = "registry"` is an error
//! naming it, not a silent image change.

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio::task::spawn_blocking;

use super::engine::{Command, Event, Rolled, StateEvent, UnitStatus, UpdateTarget};
use super::policy::update::UpdateState;
use super::starter::Env;
use crate::runtime::image::{Quiet, remote_digest};
use crate::units::values::reference::ImageSource;

/// How long `update` waits for the trials it started: past this the
/// answer says the update is still in progress.
const TRIAL_WAIT: Duration = Duration::from_secs(600);

/// What updating one unit came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    /// Its tag names the image it runs.
    UpToDate,
    /// `--dry-run`: its tag names another image.
    Available,
    /// Its tag names an image whose update failed and was rolled back: not
    /// tried again until the tag moves on.
    Rejected,
    /// The new image runs and passed its trial (or, the unit not running,
    /// its next start takes it).
    Updated,
    /// On trial (the timer does not wait for the verdict, nor does an
    /// `update` that waited too long).
    InProgress,
    /// The new image failed its trial: the unit runs the previous one.
    RolledBack,
    /// The new image failed its trial, and `rollback = false` keeps it.
    Failed,
    /// Nothing was changed: the reason is in `message`.
    Error,
}

/// One unit's line of an update.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub unit: String,
    pub outcome: Outcome,
    /// The image ID it ran before.
    pub running: Option<String>,
    /// The image ID its tag names in the registry.
    pub registry: Option<String>,
    /// The registry's image failed an update of this unit before.
    pub rejected_before: bool,
    pub message: Option<String>,
}

impl Report {
    fn new(t: &UpdateTarget, outcome: Outcome) -> Report {
        Report {
            unit: t.name.clone(),
            outcome,
            running: t.image_id.clone(),
            registry: None,
            rejected_before: false,
            message: None,
        }
    }

    fn error(unit: &str, message: String) -> Report {
        Report {
            unit: unit.to_string(),
            outcome: Outcome::Error,
            running: None,
            registry: None,
            rejected_before: false,
            message: Some(message),
        }
    }
}

/// What an update needs of the daemon: the engine's channel, its events,
/// and the store, pull options and pull slots the starts use.
pub struct Updater {
    pub tx: mpsc::UnboundedSender<Event>,
    pub events: broadcast::Sender<StateEvent>,
    pub env: Arc<Env>,
}

async fn ask<T>(tx: &mpsc::UnboundedSender<Event>, make: impl FnOnce(oneshot::Sender<T>) -> Command) -> Option<T> {
    let (reply, rx) = oneshot::channel();
    tx.send(Event::Command(make(reply))).ok()?;
    rx.await.ok()
}

impl Updater {
    /// Updates `names` (empty: every unit with `auto = "registry"`), or
    /// with `dry_run` only says which would change. `wait`: wait for the
    /// trials' verdicts.
    pub async fn update(&self, names: &[String], dry_run: bool, wait: bool) -> Vec<Report> {
        // Listen before any trial starts, so no verdict is missed.
        let mut rx = self.events.subscribe();
        let Some(targets) = ask(&self.tx, Command::UpdateTargets).await else {
            return vec![Report::error("-", "the supervisor is shutting down".into())];
        };
        let mut chosen = Vec::new();
        let mut reports = Vec::new();
        if names.is_empty() {
            chosen.extend(targets.into_iter().filter(|t| t.auto));
        } else {
            for name in names {
                match targets.iter().find(|t| &t.name == name) {
                    None => reports.push(Report::error(name, format!("no unit named {name:?}"))),
                    Some(t) if !t.auto => reports.push(Report::error(
                        name,
                        format!("{name} does not follow its image's tag: set auto = \"registry\" in its [update]"),
                    )),
                    Some(t) => chosen.push(t.clone()),
                }
            }
        }
        let mut trials = Vec::new();
        for t in &chosen {
            let report = self.one(t, dry_run).await;
            if report.outcome == Outcome::InProgress {
                trials.push(reports.len());
            }
            reports.push(report);
        }
        if wait && !trials.is_empty() {
            let deadline = tokio::time::Instant::now() + TRIAL_WAIT;
            for i in trials {
                let name = reports[i].unit.clone();
                if let Some((outcome, why)) = self.verdict(&mut rx, &name, deadline).await {
                    reports[i].outcome = outcome;
                    reports[i].message = why;
                }
            }
        }
        reports
    }

    /// The check (and, without `dry_run`, the pull and the roll-out) of one
    /// unit.
    async fn one(&self, t: &UpdateTarget, dry_run: bool) -> Report {
        let mut report = Report::new(t, Outcome::Error);
        let source = match &t.image {
            Some(s @ ImageSource::Registry(_)) => s.clone(),
            Some(s) => {
                report.message = Some(format!("{s} is not in a registry: it has no tag to follow"));
                return report;
            }
            None => {
                report.message = Some(format!("{}: its unit file is invalid", t.name));
                return report;
            }
        };
        if t.in_progress {
            report.message =
                Some(format!("{}: an update is in progress; wait until it succeeds or is rolled back", t.name));
            return report;
        }
        let env = self.env.clone();
        let s = source.clone();
        let checked = spawn_blocking(move || remote_digest(&s, &env.pull)).await;
        let remote = match checked.map_err(|e| e.to_string()).and_then(|r| r.map_err(|e| e.to_string())) {
            Ok(d) => d.to_string(),
            Err(e) => {
                report.message = Some(e);
                return report;
            }
        };
        report.rejected_before = t.rejected.as_deref() == Some(remote.as_str());
        report.registry = Some(remote.clone());
        if t.image_id.as_deref() == Some(remote.as_str()) {
            report.outcome = Outcome::UpToDate;
            return report;
        }
        if dry_run {
            report.outcome = Outcome::Available;
            return report;
        }
        if report.rejected_before {
            report.outcome = Outcome::Rejected;
            return report;
        }
        let slot = self.env.pulls.slots(&source).acquire_owned().await;
        let env = self.env.clone();
        let pulled = spawn_blocking(move || {
            let pulled = env.store.pull(&source, &env.pull, &env.metrics.counting(&Quiet));
            env.metrics.pulled(pulled.is_ok());
            pulled
        })
        .await;
        drop(slot);
        let image = match pulled.map_err(|e| e.to_string()).and_then(|r| r.map_err(|e| e.to_string())) {
            Ok(image) => image.record.manifest_digest.to_string(),
            Err(e) => {
                report.message = Some(e);
                return report;
            }
        };
        // The tag may have moved again since the check: what was pulled is
        // what rolls out.
        report.registry = Some(image.clone());
        match ask(&self.tx, |reply| Command::RollImage(t.name.clone(), image, reply)).await {
            None => report.message = Some("the supervisor is shutting down".into()),
            Some(Err(e)) => report.message = Some(e.to_string()),
            Some(Ok(Rolled { changed: false, .. })) => report.outcome = Outcome::UpToDate,
            Some(Ok(Rolled { trial: true, .. })) => report.outcome = Outcome::InProgress,
            Some(Ok(Rolled { trial: false, .. })) => {
                report.outcome = Outcome::Updated;
                report.message = Some("not running: its next start takes it".into());
            }
        }
        report
    }

    /// How `name`'s trial ended, or None when it had not by `deadline`.
    async fn verdict(
        &self,
        rx: &mut broadcast::Receiver<StateEvent>,
        name: &str,
        deadline: tokio::time::Instant,
    ) -> Option<(Outcome, Option<String>)> {
        let (update, why) = trial_end(rx, name, deadline, || self.status(name)).await?;
        let outcome = match update.as_str() {
            "succeeded" => Outcome::Updated,
            "rolled-back" => Outcome::RolledBack,
            _ => Outcome::Failed,
        };
        Some((outcome, why))
    }

    async fn status(&self, name: &str) -> Option<UnitStatus> {
        ask(&self.tx, Command::Status).await?.into_iter().find(|u| u.name == name)
    }

    /// The timer: an update of every `auto = "registry"` unit each
    /// `every`, logged (trials are not waited for: the core logs their
    /// verdicts).
    pub async fn every(self: Arc<Self>, every: Duration) {
        loop {
            tokio::time::sleep(every).await;
            for r in self.update(&[], false, false).await {
                log(&r);
            }
        }
    }
}

fn log(r: &Report) {
    let (unit, from, to) = (&r.unit, r.running.as_deref().unwrap_or("none"), r.registry.as_deref().unwrap_or("?"));
    match r.outcome {
        Outcome::UpToDate => tracing::debug!("{unit}: auto-update: up to date ({from})"),
        Outcome::Rejected => {
            tracing::info!("{unit}: auto-update: {to} failed an update before; staying on {from}")
        }
        Outcome::InProgress => tracing::info!("{unit}: auto-update: rolling out {to} (was {from})"),
        Outcome::Updated | Outcome::Available | Outcome::RolledBack | Outcome::Failed => {
            tracing::info!("{unit}: auto-update: {:?} {to} (was {from})", r.outcome)
        }
        Outcome::Error => {
            tracing::warn!("{unit}: auto-update: {}", r.message.as_deref().unwrap_or("failed"))
        }
    }
}

/// Waits for the end of `name`'s trial: the update step (`succeeded`,
/// `rolled-back`, `failed`) and its reason; None at `deadline`. When events
/// were lost (a lagging receiver), the unit's status says whether it is
/// still on trial, and how it ended.
pub async fn trial_end<F, Fut>(
    rx: &mut broadcast::Receiver<StateEvent>,
    name: &str,
    deadline: tokio::time::Instant,
    status: F,
) -> Option<(String, Option<String>)>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Option<UnitStatus>>,
{
    // Ended before we listened (while the caller waited for another
    // unit's trial, whose events were the ones read): the status says how.
    if let Some(ended) = from_status(status().await?) {
        return Some(ended);
    }
    loop {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Err(_) | Ok(Err(broadcast::error::RecvError::Closed)) => return None,
            Ok(Ok(ev)) if ev.unit != name => {}
            Ok(Ok(ev)) => match ev.update.as_deref() {
                Some(u @ ("succeeded" | "rolled-back" | "failed" | "abandoned")) => {
                    return Some((u.to_string(), ev.reason));
                }
                _ if ev.removed => return Some(("failed".into(), Some("the unit was removed".into()))),
                _ => {}
            },
            Ok(Err(broadcast::error::RecvError::Lagged(_))) => {
                if let Some(ended) = from_status(status().await?) {
                    return Some(ended);
                }
            }
        }
    }
}

/// How a trial ended, as a unit's status tells it; None while it runs.
fn from_status(u: UnitStatus) -> Option<(String, Option<String>)> {
    match (u.update_state, u.update_error) {
        (Some(UpdateState::InProgress), _) => None,
        (Some(UpdateState::RolledBack), Some(e)) => Some(("rolled-back".into(), Some(e))),
        (None, Some(e)) => Some(("failed".into(), Some(e))),
        _ => Some(("succeeded".into(), None)),
    }
}
