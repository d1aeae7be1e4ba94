//! `POST /v1/units/NAME/rollback` and `POST /v1/update`: an operator's
//! rollback and image auto-update, each answered when its trial has ended
//! (unless `no_block`). Like start and stop, members of the socket group
//! may ask: they drive the units, and an update pulls only from the
//! registries the units name.

use std::time::Duration;

use tokio::net::UnixStream;

use super::super::autoupdate::trial_end;
use super::super::engine::{Command, Rolled};
use super::super::policy::update::UpdateError;
use super::http::{self, Request};
use super::{Control, ask, unit_status};

/// How long a rollback is waited for; past this the answer is its state
/// then (still in progress).
const ROLLBACK_WAIT: Duration = Duration::from_secs(600);

/// The answer: `{"unit", "outcome", "reason", "status"}`, where outcome is
/// `succeeded` (200), `taken` (it did not run: its next start uses the
/// previous config; 200), `in-progress` (with `no_block`, or past the
/// wait; 202), `rolled-back` or `failed` (the rollback's own trial failed
/// and it went back to where it was; 409).
pub(super) async fn rollback(
    stream: &mut UnixStream,
    control: &Control,
    name: &str,
    wait: bool,
) -> std::io::Result<()> {
    let mut rx = control.events.subscribe();
    let trial = match ask(control, |tx| Command::Rollback(name.to_string(), tx)).await {
        Some(Ok(Rolled { trial, .. })) => trial,
        Some(Err(e @ UpdateError::Unknown(_))) => return http::error(stream, 404, &e.to_string()).await,
        Some(Err(e)) => return http::error(stream, 409, &e.to_string()).await,
        None => return http::error(stream, 500, "the supervisor is shutting down").await,
    };
    let (code, outcome, reason) = if !trial {
        (200, "taken".to_string(), None)
    } else if !wait {
        (202, "in-progress".to_string(), None)
    } else {
        let deadline = tokio::time::Instant::now() + ROLLBACK_WAIT;
        match trial_end(&mut rx, name, deadline, || unit_status(control, name)).await {
            Some((u, why)) if u == "succeeded" => (200, u, why),
            Some((u, why)) => (409, u, why),
            None => (202, "in-progress".to_string(), None),
        }
    };
    let status = unit_status(control, name).await;
    let body = serde_json::json!({"unit": name, "outcome": outcome, "reason": reason, "status": status});
    http::json(stream, code, &body).await
}

/// `?units=a,b` (none: every unit with `auto = "registry"`), `dry_run`,
/// `no_block`: `{"dry_run", "units": [report...]}`.
pub(super) async fn update(stream: &mut UnixStream, control: &Control, req: &Request) -> std::io::Result<()> {
    let names: Vec<String> = req
        .query
        .get("units")
        .map(|u| u.split(',').filter(|n| !n.is_empty()).map(String::from).collect())
        .unwrap_or_default();
    let dry_run = req.flag("dry_run");
    let reports = control.updater.update(&names, dry_run, !req.flag("no_block")).await;
    http::json(stream, 200, &serde_json::json!({"dry_run": dry_run, "units": reports})).await
}
