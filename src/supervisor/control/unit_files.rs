//! The unit directory over the control path: `reload`, and `apply`,
//! `remove` and `cat`, which read and write unit files (root only: whoever
//! writes unit files is root). An edit is checked and written by the
//! engine ([`crate::supervisor::unit_files`]), then reloaded as any edit;
//! the answer, like reload's, comes once the units it touched have
//! settled.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use tokio::net::UnixStream;
use tokio::sync::broadcast;

use super::super::engine::{Command, StateEvent};
use super::super::reload::Step;
use super::super::unit_files::{Edit, EditError};
use super::http::{self, Request};
use super::{Control, ask};

/// How long the answer waits for the touched units to settle.
const SETTLE: Duration = Duration::from_secs(120);

const SHUTTING: &str = "the supervisor is shutting down";

pub(super) async fn reload(stream: &mut UnixStream, control: &Control, dry_run: bool) -> std::io::Result<()> {
    let rx = control.events.subscribe();
    let steps = match ask(control, |tx| Command::Reload(dry_run, tx)).await {
        Some(Ok(steps)) => steps,
        Some(Err(e)) => return http::error(stream, 500, &e.to_string()).await,
        None => return http::error(stream, 500, SHUTTING).await,
    };
    // Any file that does not load makes a reload's answer 422.
    let invalid = steps.values().any(|s| matches!(s, Step::Invalid(_)));
    let plan = plan(control, rx, &steps, dry_run).await;
    http::json(stream, if invalid { 422 } else { 200 }, &serde_json::json!({"dry_run": dry_run, "plan": plan})).await
}

/// `POST /v1/apply[?dry_run=1]` with `{"units": {"NAME": "TOML text", ...}}`.
pub(super) async fn apply(stream: &mut UnixStream, control: &Control, req: &Request) -> std::io::Result<()> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Body {
        units: BTreeMap<String, String>,
    }
    let body: Body = match serde_json::from_slice(&req.body) {
        Ok(b) => b,
        Err(e) => return http::error(stream, 400, &format!("apply needs {{\"units\": {{NAME: TEXT}}}}: {e}")).await,
    };
    if body.units.is_empty() {
        return http::error(stream, 400, "apply: no units").await;
    }
    let files = body.units.into_iter().map(|(name, text)| (name, Some(text))).collect();
    edit(stream, control, Edit { files, dry_run: req.flag("dry_run") }).await
}

/// `POST /v1/remove?units=A,B[&dry_run=1]`.
pub(super) async fn remove(stream: &mut UnixStream, control: &Control, req: &Request) -> std::io::Result<()> {
    let files: BTreeMap<String, Option<String>> = req
        .query
        .get("units")
        .into_iter()
        .flat_map(|u| u.split(','))
        .filter(|u| !u.is_empty())
        .map(|u| (u.to_string(), None))
        .collect();
    if files.is_empty() {
        return http::error(stream, 400, "remove needs ?units=NAME[,NAME...]").await;
    }
    edit(stream, control, Edit { files, dry_run: req.flag("dry_run") }).await
}

async fn edit(stream: &mut UnixStream, control: &Control, edit: Edit) -> std::io::Result<()> {
    let rx = control.events.subscribe();
    let dry_run = edit.dry_run;
    let steps = match ask(control, |tx| Command::Edit(edit, tx)).await {
        Some(Ok(steps)) => steps,
        Some(Err(e)) => return edit_error(stream, &e).await,
        None => return http::error(stream, 500, SHUTTING).await,
    };
    // Files that were invalid before stay in the plan as such; they do not
    // make this edit fail.
    let plan = plan(control, rx, &steps, dry_run).await;
    http::json(stream, 200, &serde_json::json!({"dry_run": dry_run, "plan": plan})).await
}

async fn edit_error(stream: &mut UnixStream, e: &EditError) -> std::io::Result<()> {
    match e {
        EditError::Invalid(errors) => {
            let body = serde_json::json!({"error": e.to_string(), "errors": errors});
            http::json(stream, 422, &body).await
        }
        EditError::Name(_) => http::error(stream, 400, &e.to_string()).await,
        EditError::NoFile(_) => http::error(stream, 404, &e.to_string()).await,
        EditError::Io { .. } => http::error(stream, 500, &e.to_string()).await,
    }
}

/// `GET /v1/units/NAME/file`: the unit file as the daemon reads it.
pub(super) async fn cat(stream: &mut UnixStream, control: &Control, name: &str) -> std::io::Result<()> {
    match ask(control, |tx| Command::UnitFile(name.to_string(), tx)).await {
        Some(Ok(Some(text))) => http::respond(stream, 200, "application/toml", text.as_bytes()).await,
        Some(Ok(None)) => http::error(stream, 404, &format!("no unit file for {name:?}")).await,
        Some(Err(e)) => edit_error(stream, &e).await,
        None => http::error(stream, 500, SHUTTING).await,
    }
}

/// The plan as JSON, `[{"unit", "action", "error"?, "state"?}]`: unless a
/// dry run, after waiting (at most [`SETTLE`]) for the units the plan
/// touched to settle, with the state each reached.
async fn plan(
    control: &Control,
    mut rx: broadcast::Receiver<StateEvent>,
    steps: &BTreeMap<String, Step>,
    dry_run: bool,
) -> Vec<serde_json::Value> {
    let mut states = serde_json::Map::new();
    if !dry_run {
        let touched: BTreeSet<&String> =
            steps.iter().filter(|(_, s)| !matches!(s, Step::Keep | Step::Invalid(_))).map(|(n, _)| n).collect();
        let deadline = tokio::time::Instant::now() + SETTLE;
        loop {
            let list = ask(control, Command::Status).await.unwrap_or_default();
            let open = list.iter().any(|u| touched.contains(&u.name) && !u.state.settled());
            if !open || tokio::time::timeout_at(deadline, rx.recv()).await.is_err() {
                for u in list.into_iter().filter(|u| touched.contains(&u.name)) {
                    states.insert(u.name.clone(), serde_json::to_value(u.state).unwrap_or_default());
                }
                break;
            }
        }
        for (name, step) in steps {
            if *step == Step::Remove && !states.contains_key(name) {
                states.insert(name.clone(), serde_json::json!("removed"));
            }
        }
    }
    steps
        .iter()
        .map(|(name, step)| {
            let mut v = serde_json::json!({"unit": name, "action": step.name()});
            if let Step::Invalid(e) = step {
                v["error"] = serde_json::json!(e);
            }
            if let Some(s) = states.get(name) {
                v["state"] = s.clone();
            }
            v
        })
        .collect()
}
