//! The control socket: HTTP/1.1 and JSON over a unix socket
//! (`<run-dir>/control.sock`), root only (or a configured group), peer
//! credentials checked. The protocol is documented in docs/api.md.

mod commit;
mod container;
mod copy;
pub mod http;
mod images;
mod load;
mod pause;
mod peer;
mod pull;
mod push;
mod unit_files;
mod updates;

use self::peer::{Peer, hide_env_file, in_group};

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::io::AsyncWriteExt;
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{broadcast, mpsc, oneshot};

use self::http::{Request, RequestError};
use super::engine::{Command, Event, Op, StateEvent, UnitStatus};
use super::lifecycle::State;
use super::logs::{Hub, tail};
use super::policy::OpError;
use crate::runtime::image::verify::{AskDaemon, Containers, DaemonView};
use crate::runtime::image::{Digest, PullOptions, Store};
use crate::units::values::signal::Signal;

/// What the power verbs ask of PID 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Power {
    Off,
    Reboot,
}

/// Everything a connection may need.
pub struct Control {
    pub tx: mpsc::UnboundedSender<Event>,
    pub events: broadcast::Sender<StateEvent>,
    pub hub: Hub,
    pub log_dir: PathBuf,
    pub state_dir: PathBuf,
    /// The run directory: the containers' records (for `verify`).
    pub run_dir: PathBuf,
    pub store: Store,
    pub pull: PullOptions,
    /// Set when we are PID 1: where power requests go.
    pub power: Option<mpsc::UnboundedSender<Power>>,
    /// A group whose members may connect too.
    pub group: Option<u32>,
    /// Image auto-update (`POST /v1/update`).
    pub updater: Arc<super::autoupdate::Updater>,
    /// When each step of the start was done (`GET /v1/boot`).
    pub boot: super::boot::Timeline,
    /// Pulls are counted for the metrics.
    pub metrics: super::metrics::Counters,
}

/// Binds the socket: mode 0600, or 0660 owned by `group`.
pub fn bind(path: &Path, group: Option<u32>) -> std::io::Result<UnixListener> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    // Bound with a umask that leaves nobody a moment of access.
    let old = nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o177));
    let listener = UnixListener::bind(path);
    nix::sys::stat::umask(old);
    let listener = listener?;
    if let Some(gid) = group {
        std::os::unix::fs::chown(path, Some(0), Some(gid))?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))?;
    }
    Ok(listener)
}

/// Serves connections until the listener fails, at most
/// [`http::MAX_CONNECTIONS`] at once: past that, new ones wait in the
/// socket's backlog (not refused: an idle connection ends within
/// [`http::READ_TIMEOUT`], and the waiting client is served then). Peers
/// other than root hold at most [`http::MAX_OTHERS`] of them (more get a
/// 503): streams (`events`, `logs -f`) last as long as their client wants,
/// and a member of the socket group must not be able to fill every slot
/// and lock root out.
pub async fn serve(listener: UnixListener, control: Arc<Control>) {
    let slots = Arc::new(tokio::sync::Semaphore::new(http::MAX_CONNECTIONS));
    let others = Arc::new(tokio::sync::Semaphore::new(http::MAX_OTHERS));
    loop {
        let Ok(slot) = slots.clone().acquire_owned().await else { return };
        let (stream, _) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                tracing::error!("control socket: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let (control, others) = (control.clone(), others.clone());
        tokio::spawn(async move {
            let mut stream = stream;
            if let Err(e) = connection(&mut stream, &control, &others).await {
                tracing::debug!("control connection: {e}");
            }
            drop(slot);
        });
    }
}

async fn connection(
    stream: &mut UnixStream,
    control: &Control,
    others: &Arc<tokio::sync::Semaphore>,
) -> std::io::Result<()> {
    let cred = stream.peer_cred()?;
    let allowed = cred.uid() == 0 || control.group.is_some_and(|g| cred.gid() == g || in_group(cred.pid(), g));
    let other_slot = if cred.uid() == 0 { None } else { Some(others.clone().try_acquire_owned()) };
    // The request is read (bounded) even from a peer that is refused: an
    // answer sent before it would meet a client still writing, which
    // would see a broken pipe instead of the refusal.
    let req = match tokio::time::timeout(http::READ_TIMEOUT, http::read_request(stream)).await {
        Ok(req) => req,
        Err(_) => {
            let message = format!("no whole request within {}s", http::READ_TIMEOUT.as_secs());
            return http::error(stream, 408, &message).await;
        }
    };
    if !allowed {
        return http::error(stream, 403, "only root (or the control group) may use the control socket").await;
    }
    let _other_slot = match other_slot {
        Some(Err(_)) => {
            let message =
                format!("{} connections of users other than root are open already: try again", http::MAX_OTHERS);
            return http::error(stream, 503, &message).await;
        }
        held => held,
    };
    let req = match req {
        Ok(r) => r,
        Err(e) => return http::error(stream, 400, &e.to_string()).await,
    };
    let peer = if cred.uid() == 0 { Peer::Root } else { Peer::Group };
    route(stream, control, req, peer).await
}

async fn ask<T>(control: &Control, make: impl FnOnce(oneshot::Sender<T>) -> Command) -> Option<T> {
    let (tx, rx) = oneshot::channel();
    control.tx.send(Event::Command(make(tx))).ok()?;
    rx.await.ok()
}

async fn route(stream: &mut UnixStream, control: &Control, req: Request, peer: Peer) -> std::io::Result<()> {
    let path: Vec<&str> = req.path.iter().map(String::as_str).collect();
    let shutting = || "the supervisor is shutting down";
    match (req.method.as_str(), path.as_slice()) {
        ("GET", ["v1", "version"]) => {
            http::json(stream, 200, &serde_json::json!({"version": env!("CARGO_PKG_VERSION")})).await
        }
        ("GET", ["v1", "boot"]) => {
            let data_disk = super::pid1::data_disk::mounted();
            let body = serde_json::json!({
                "clock": "CLOCK_BOOTTIME",
                "pid1": control.power.is_some(),
                "data_disk": data_disk.map(|d| serde_json::json!({"device": d, "mounted_on": super::pid1::data_disk::MOUNT})),
                "phases": control.boot.marks(),
            });
            http::json(stream, 200, &body).await
        }
        ("GET", ["v1", "units"]) => match ask(control, Command::Status).await {
            Some(list) => http::json(stream, 200, &list).await,
            None => http::error(stream, 500, shutting()).await,
        },
        ("GET", ["v1", "units", name]) => match ask(control, |tx| Command::Inspect(name.to_string(), tx)).await {
            Some(Some(v)) if peer == Peer::Root => http::json(stream, 200, &v).await,
            Some(Some(v)) => http::json(stream, 200, &hide_env_file(v)).await,
            Some(None) => http::error(stream, 404, &format!("no unit named {name:?}")).await,
            None => http::error(stream, 500, shutting()).await,
        },
        ("POST", ["v1", "units", name, op @ ("start" | "stop" | "restart")]) => {
            let op = match *op {
                "start" => Op::Start,
                "stop" => Op::Stop,
                _ => Op::Restart,
            };
            unit_op(stream, control, name, op, !req.flag("no_block")).await
        }
        ("POST", ["v1", "units", name, verb @ ("pause" | "unpause")]) => {
            pause::pause(stream, control, name, *verb == "pause").await
        }
        ("POST", ["v1", "units", name, "rollback"]) => {
            updates::rollback(stream, control, name, !req.flag("no_block")).await
        }
        ("POST", ["v1", "update"]) => updates::update(stream, control, &req).await,
        ("POST", ["v1", "units", name, "kill"]) => {
            let signal = match Signal::parse(req.query.get("signal").map_or("SIGTERM", String::as_str)) {
                Ok(s) => s,
                Err(e) => return http::error(stream, 400, &e).await,
            };
            match ask(control, |tx| Command::Kill(name.to_string(), signal.number(), tx)).await {
                Some(Ok(())) => http::json(stream, 200, &serde_json::json!({"unit": name, "signal": signal})).await,
                Some(Err(e)) => http::error(stream, 409, &e.to_string()).await,
                None => http::error(stream, 500, shutting()).await,
            }
        }
        ("GET", ["v1", "units", name, "diff"]) => container::diff(stream, control, name).await,
        ("POST", ["v1", "units", name, "commit"]) => commit::commit(stream, control, name, &req, peer).await,
        ("GET", ["v1", "units", name, "stat"]) => copy::stat(stream, control, name, &req, peer).await,
        ("GET", ["v1", "units", name, "archive"]) => copy::get(stream, control, name, &req, peer).await,
        ("PUT", ["v1", "units", name, "archive"]) => {
            let name = name.to_string();
            copy::put(stream, control, &name, req, peer).await
        }
        ("GET", ["v1", "units", name, "top"]) => container::top(stream, control, name).await,
        ("GET", ["v1", "stats"]) => container::stats(stream, control, req.query.get("units").map(String::as_str)).await,
        ("GET", ["v1", "units", name, "logs"]) => logs(stream, control, name, &req).await,
        ("POST", ["v1", "reload"]) => unit_files::reload(stream, control, req.flag("dry_run")).await,
        ("POST", ["v1", "apply"]) if peer == Peer::Root => unit_files::apply(stream, control, &req).await,
        ("POST", ["v1", "remove"]) if peer == Peer::Root => unit_files::remove(stream, control, &req).await,
        ("GET", ["v1", "units", name, "file"]) if peer == Peer::Root => unit_files::cat(stream, control, name).await,
        ("POST", ["v1", "apply" | "remove"]) | ("GET", ["v1", "units", _, "file"]) => {
            http::error(stream, 403, "only root may read or write unit files").await
        }
        ("GET", ["v1", "events"]) => events(stream, control).await,
        ("GET", ["v1", "volumes"]) => volumes(stream, control, None).await,
        ("DELETE", ["v1", "volumes", name]) => volumes(stream, control, Some(name)).await,
        ("GET", ["v1", "images"]) => {
            let store = control.store.clone();
            blocking(stream, 500, move || store.list()).await
        }
        ("POST", ["v1", "images", "load"]) => load::load(stream, control, req, peer).await,
        ("POST", ["v1", "images", "pull"]) => {
            let Some(reference) = req.query.get("reference").cloned() else {
                return http::error(stream, 400, "pull needs ?reference=").await;
            };
            pull::pull(stream, control, &reference, peer).await
        }
        ("POST", ["v1", "images", "push"]) => push::push(stream, control, &req, peer).await,
        ("DELETE", ["v1", "images", reference]) => {
            // An image a unit keeps stays (as Docker keeps a container's).
            let Some(list) = ask(control, Command::Status).await else {
                return http::error(stream, 500, shutting()).await;
            };
            let digest = control.store.record(reference).ok().flatten().map(|r| r.manifest_digest);
            let users = images::users(&list, reference, digest.as_ref());
            if !users.is_empty() {
                return http::error(stream, 409, &format!("{reference} is used by {}", users.join(", "))).await;
            }
            let (store, reference) = (control.store.clone(), reference.to_string());
            blocking(stream, 404, move || store.remove(&reference)).await
        }
        ("POST", ["v1", "images", "prune"]) => {
            let Some(list) = ask(control, Command::Status).await else {
                return http::error(stream, 500, shutting()).await;
            };
            let (keep, ids) = (images::kept_references(&list), images::kept_digests(&list));
            let store = control.store.clone();
            blocking(stream, 500, move || store.prune(&keep, &ids)).await
        }
        ("POST", ["v1", "images", "verify"]) => verify(stream, control, req.flag("repair"), peer).await,
        ("POST", ["v1", verb @ ("poweroff" | "reboot")]) => match &control.power {
            Some(power) => {
                let _ = power.send(if *verb == "poweroff" { Power::Off } else { Power::Reboot });
                http::json(stream, 200, &serde_json::json!({"accepted": verb})).await
            }
            None => http::error(stream, 409, &format!("{verb}: only when supervisord is PID 1")).await,
        },
        (_, ["v1", ..]) => {
            http::error(stream, 404, &format!("no such endpoint: {} /{}", req.method, path.join("/"))).await
        }
        _ => http::error(stream, 404, "the API is under /v1/").await,
    }
}

/// Start, stop or restart a unit, and (unless `no_block`) wait for the
/// outcome: the unit's status, with 200 when reached and 409 when not.
async fn unit_op(stream: &mut UnixStream, control: &Control, name: &str, op: Op, wait: bool) -> std::io::Result<()> {
    // Listen before asking, so no change is missed.
    let mut rx = control.events.subscribe();
    let before = match ask(control, |tx| Command::Op(op, vec![name.to_string()], tx)).await {
        Some(Ok(g)) => g.first().map_or(0, |(_, g)| *g),
        Some(Err(e @ OpError::Unknown(_))) => return http::error(stream, 404, &e.to_string()).await,
        // Its file is invalid, it is paused.
        Some(Err(e)) => return http::error(stream, 409, &e.to_string()).await,
        None => return http::error(stream, 500, "the supervisor is shutting down").await,
    };
    let outcome = |u: &UnitStatus| -> Option<bool> {
        match op {
            Op::Stop => {
                matches!(u.state, State::Inactive | State::Invalid | State::Exited | State::Failed).then_some(true)
            }
            Op::Start if u.state == State::Running => Some(true),
            Op::Restart if u.state == State::Running && u.generation > before => Some(true),
            // A start that ended: failed, exited, back off.
            Op::Start | Op::Restart => {
                (u.state.settled() && u.state != State::Running && u.generation > before).then_some(false)
            }
        }
    };
    if !wait {
        return match unit_status(control, name).await {
            Some(u) => http::json(stream, 200, &u).await,
            None => http::error(stream, 404, &format!("no unit named {name:?}")).await,
        };
    }
    // A unit waiting for its dependencies may wait long; past this the
    // answer is its state then.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(300);
    loop {
        let Some(u) = unit_status(control, name).await else {
            return http::error(stream, 404, &format!("no unit named {name:?}")).await;
        };
        match outcome(&u) {
            Some(true) => return http::json(stream, 200, &u).await,
            Some(false) => return http::json(stream, 409, &u).await,
            None => {}
        }
        loop {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Err(_) => return http::json(stream, 409, &u).await,
                Ok(Ok(ev)) if ev.unit != name => continue,
                Ok(Ok(_)) | Ok(Err(broadcast::error::RecvError::Lagged(_))) => break,
                Ok(Err(broadcast::error::RecvError::Closed)) => {
                    return http::error(stream, 500, "the supervisor is shutting down").await;
                }
            }
        }
    }
}

/// The units that name volume `name`.
fn users_of<'a>(used: &'a BTreeMap<String, Vec<String>>, name: &str) -> Vec<&'a str> {
    used.iter().filter(|(_, v)| v.iter().any(|n| n == name)).map(|(u, _)| u.as_str()).collect()
}

/// One JSON object and a newline, on a streamed answer.
async fn json_line(stream: &mut UnixStream, value: &impl serde::Serialize) -> std::io::Result<()> {
    let mut line = serde_json::to_vec(value).unwrap_or_default();
    line.push(b'\n');
    http::send(stream, &line).await
}

/// Runs blocking `work` off the event loop and answers with its value
/// (200) or its error (`status`).
async fn blocking<T, E>(
    stream: &mut UnixStream,
    status: u16,
    work: impl FnOnce() -> Result<T, E> + Send + 'static,
) -> std::io::Result<()>
where
    T: serde::Serialize + Send + 'static,
    E: std::fmt::Display + Send + 'static,
{
    match tokio::task::spawn_blocking(work).await {
        Ok(Ok(v)) => http::json(stream, 200, &v).await,
        Ok(Err(e)) => http::error(stream, status, &e.to_string()).await,
        Err(e) => http::error(stream, 500, &e.to_string()).await,
    }
}

/// `verify [--repair]` of the daemon's store and containers, root only:
/// even a plain check holds the store lock exclusively while it hashes
/// every blob, blocking every pull. The containers of the units the daemon
/// knows are its own business (one may be halfway through its start), and
/// the images its containers run keep their records: it is asked after the
/// hashing and again right before removals, not once before.
async fn verify(stream: &mut UnixStream, control: &Control, repair: bool, peer: Peer) -> std::io::Result<()> {
    if peer != Peer::Root {
        return http::error(stream, 403, "only root may verify or repair the store").await;
    }
    let tx = control.tx.clone();
    let ask = move || {
        let (reply, rx) = oneshot::channel();
        tx.send(Event::Command(Command::Status(reply))).ok()?;
        let list: Vec<UnitStatus> = rx.blocking_recv().ok()?;
        let (mut running, mut starting) = (BTreeMap::<String, Vec<String>>::new(), BTreeMap::new());
        for u in &list {
            if let Some(digest) = u.image_digest.as_deref().and_then(|d| Digest::parse(d).ok()) {
                running.entry(digest.hex().to_string()).or_default().push(u.name.clone());
            } else if let Some(image) = u.image.clone().filter(|_| matches!(u.state, State::Pulling | State::Starting))
            {
                starting.entry(image).or_insert_with(Vec::new).push(u.name.clone());
            }
        }
        Some(DaemonView { units: list.into_iter().map(|u| u.name).collect(), running, starting })
    };
    let containers = Containers {
        layers: super::prepare::containers_dir(&control.state_dir),
        run_dir: Some(control.run_dir.clone()),
        daemon_units: Some(AskDaemon(Arc::new(ask))),
    };
    let (store, pull) = (control.store.clone(), control.pull.clone());
    blocking(stream, 500, move || store.verify_report(&containers, repair.then_some(&pull))).await
}

async fn unit_status(control: &Control, name: &str) -> Option<UnitStatus> {
    ask(control, Command::Status).await.and_then(|l| l.into_iter().find(|u| u.name == name))
}

async fn events(stream: &mut UnixStream, control: &Control) -> std::io::Result<()> {
    let mut rx = control.events.subscribe();
    http::stream_head(stream, "application/x-ndjson").await?;
    loop {
        let next = tokio::select! {
            next = rx.recv() => next,
            () = http::hangup(stream) => return Ok(()),
        };
        match next {
            Ok(ev) => {
                json_line(stream, &ev).await?;
            }
            Err(broadcast::error::RecvError::Lagged(n)) => {
                let line = format!("{{\"lagged\": {n}}}\n");
                http::send(stream, line.as_bytes()).await?;
            }
            Err(broadcast::error::RecvError::Closed) => return Ok(()),
        }
    }
}

async fn logs(stream: &mut UnixStream, control: &Control, name: &str, req: &Request) -> std::io::Result<()> {
    let Some(Some(files)) = ask(control, |tx| Command::LogFiles(name.to_string(), tx)).await else {
        return http::error(stream, 404, &format!("no unit named {name:?}")).await;
    };
    let n = match req.query.get("tail").map(|t| (t, t.parse::<usize>())) {
        None => None,
        Some((_, Ok(n))) => Some(n),
        Some((t, Err(_))) => {
            return http::error(stream, 400, &format!("tail: {t:?} is not a number of lines")).await;
        }
    };
    let since = match req.query.get("since") {
        None => None,
        Some(s) => match parse_since(s) {
            Ok(t) => Some(t),
            Err(e) => return http::error(stream, 400, &e.to_string()).await,
        },
    };
    // Subscribe first: no line between the read of the file and the
    // follow is lost (one may show twice).
    let follow = req.flag("follow").then(|| control.hub.subscribe(name));
    let (dir, unit) = (control.log_dir.clone(), name.to_string());
    let lines = tokio::task::spawn_blocking(move || tail(&dir, &unit, n, since, files)).await.unwrap_or_default();
    http::stream_head(stream, "text/plain; charset=utf-8").await?;
    for l in lines {
        http::send(stream, &l).await?;
    }
    let Some(mut rx) = follow else { return stream.shutdown().await };
    loop {
        let next = tokio::select! {
            next = rx.recv() => next,
            () = http::hangup(stream) => return Ok(()),
        };
        match next {
            Ok(line) => http::send(stream, &line).await?,
            Err(broadcast::error::RecvError::Lagged(_)) => continue,
            Err(broadcast::error::RecvError::Closed) => return Ok(()),
        }
    }
}

/// `--since`: an RFC 3339 time, or a duration ago (`10m`), not before
/// 1970 (log lines are stamped from there on).
pub fn parse_since(s: &str) -> Result<SystemTime, RequestError> {
    parse_since_at(s, SystemTime::now())
}

fn parse_since_at(s: &str, now: SystemTime) -> Result<SystemTime, RequestError> {
    let t = match humantime::parse_rfc3339_weak(s) {
        Ok(t) => t,
        Err(_) => {
            let ago = humantime::parse_duration(s).map_err(|_| RequestError::Since(s.to_string()))?;
            now.checked_sub(ago).ok_or_else(|| RequestError::SinceTooEarly(s.to_string()))?
        }
    };
    if t < SystemTime::UNIX_EPOCH {
        return Err(RequestError::SinceTooEarly(s.to_string()));
    }
    Ok(t)
}

async fn volumes(stream: &mut UnixStream, control: &Control, remove: Option<&str>) -> std::io::Result<()> {
    let Some(used) = ask(control, Command::Volumes).await else {
        return http::error(stream, 500, "the supervisor is shutting down").await;
    };
    let dir = control.state_dir.join("volumes");
    if let Some(name) = remove {
        let users = users_of(&used, name);
        if !users.is_empty() {
            return http::error(stream, 409, &format!("volume {name} is used by {}", users.join(", "))).await;
        }
        let path = dir.join(name);
        if crate::units::values::names::check_volume_name(name).is_err() || !path.is_dir() {
            return http::error(stream, 404, &format!("no volume named {name:?}")).await;
        }
        let removed = serde_json::json!({ "removed": name });
        return blocking(stream, 500, move || std::fs::remove_dir_all(path).map(|()| removed)).await;
    }
    let mut list = Vec::new();
    if let Ok(rd) = std::fs::read_dir(&dir) {
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let users = users_of(&used, &name);
            list.push(serde_json::json!({"name": name, "path": e.path().join("_data"), "used_by": users}));
        }
    }
    list.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
    http::json(stream, 200, &list).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_is_a_time_or_a_duration_ago_never_before_1970() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        assert_eq!(parse_since_at("10m", now).unwrap(), now - Duration::from_secs(600));
        let t = parse_since_at("2026-11-23T07:00:00Z", now).unwrap();
        assert_eq!(t, humantime::parse_rfc3339("2026-11-23T07:00:00Z").unwrap());
        for early in ["999999999999h", "100y", "18446744073709551615s"] {
            let e = parse_since_at(early, now).unwrap_err().to_string();
            assert!(e.starts_with("since: ") && e.contains(early), "{e}");
        }
        // Longer than a duration can be: refused by the parser, named too.
        let e = parse_since_at("99999999999999999999999h", now).unwrap_err().to_string();
        assert!(e.starts_with("since: "), "{e}");
        assert_eq!(
            parse_since_at("soon", now).unwrap_err().to_string(),
            "since: \"soon\" is neither a time (2026-11-23T07:00:00Z) nor a duration (10m)"
        );
    }
}
