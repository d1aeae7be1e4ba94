//! A running container seen from outside, read when asked (an idle daemon
//! keeps no timer for it): `GET /v1/stats` (each running unit's resource
//! use, as `docker stats`), `GET /v1/units/NAME/top` (its container's
//! processes, as `docker top`) and `GET /v1/units/NAME/diff` (what it
//! changed in its root filesystem, as `docker diff`).
//!
//! stats: CPU % of one core over half a second, memory (without the page
//! cache the kernel may drop at once) and its limit, processes and their
//! limit, network bytes (the container's namespace, its loopback left
//! out) and block I/O. top: the cgroup's processes from the host's
//! `/proc`. diff: the overlay upper directory against the image's layers.

use std::path::Path;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::net::UnixStream;

use super::{Control, ask, http};
use crate::runtime::cgroups::Cgroup;
use crate::runtime::image::Digest;
use crate::runtime::image::diff::changes;
use crate::runtime::procs::{net_dev, processes};
use crate::supervisor::engine::Command;
use crate::supervisor::prepare::container_dir;

const SHUTTING: &str = "the supervisor is shutting down";

/// The inspect object of unit `name`, or None once the error answer (an
/// unknown unit, a daemon shutting down) is sent.
async fn inspected(
    stream: &mut UnixStream,
    control: &Control,
    name: &str,
) -> std::io::Result<Option<serde_json::Value>> {
    match ask(control, |tx| Command::Inspect(name.to_string(), tx)).await {
        Some(Some(v)) => Ok(Some(v)),
        Some(None) => http::error(stream, 404, &format!("no unit named {name:?}")).await.map(|()| None),
        None => http::error(stream, 500, SHUTTING).await.map(|()| None),
    }
}

/// The window CPU % is measured over.
const WINDOW: Duration = Duration::from_millis(500);

#[derive(Debug, Serialize)]
struct Stats {
    name: String,
    cpu_percent: f64,
    memory_bytes: Option<u64>,
    memory_limit_bytes: Option<u64>,
    pids: Option<u64>,
    pids_limit: Option<u64>,
    net_rx_bytes: Option<u64>,
    net_tx_bytes: Option<u64>,
    block_read_bytes: u64,
    block_write_bytes: u64,
}

pub(super) async fn stats(stream: &mut UnixStream, control: &Control, units: Option<&str>) -> std::io::Result<()> {
    let Some(list) = ask(control, Command::Status).await else { return http::error(stream, 500, SHUTTING).await };
    let wanted: Option<Vec<&str>> = units.map(|u| u.split(',').filter(|n| !n.is_empty()).collect());
    if let Some(unknown) = wanted.iter().flatten().find(|n| !list.iter().any(|u| u.name == **n)) {
        return http::error(stream, 404, &format!("no unit named {unknown:?}")).await;
    }
    let mut targets: Vec<(String, i32, Cgroup)> = Vec::new();
    for u in list.iter().filter(|u| wanted.as_ref().is_none_or(|w| w.contains(&u.name.as_str()))) {
        let Some(pid) = u.pid else { continue };
        let Some(Some(v)) = ask(control, |tx| Command::Inspect(u.name.clone(), tx)).await else { continue };
        if let Ok(cgroup) = serde_json::from_value::<Cgroup>(v["cgroup"].clone()) {
            targets.push((u.name.clone(), pid, cgroup));
        }
    }
    let cpu = |targets: &[(String, i32, Cgroup)]| -> Vec<Option<u64>> {
        targets.iter().map(|(_, _, c)| c.usage().cpu_ns).collect()
    };
    let (before, start) = (cpu(&targets), Instant::now());
    tokio::time::sleep(WINDOW).await;
    super::blocking(stream, 500, move || {
        let (after, elapsed) = (cpu(&targets), start.elapsed());
        let out: Vec<Stats> = targets
            .iter()
            .zip(before.iter().zip(&after))
            .map(|((name, pid, cgroup), (b, a))| {
                let usage = cgroup.usage();
                let io = cgroup.io();
                let net = std::fs::read_to_string(Path::new("/proc").join(pid.to_string()).join("net/dev"))
                    .ok()
                    .map(|t| net_dev(&t));
                let spent = a.zip(*b).map_or(0, |(a, b)| a.saturating_sub(b));
                Stats {
                    name: name.clone(),
                    cpu_percent: (spent as f64 / elapsed.as_nanos().max(1) as f64 * 1000.0).round() / 10.0,
                    memory_bytes: usage.memory.map(|m| m.saturating_sub(io.inactive_file)),
                    memory_limit_bytes: io.memory_limit,
                    pids: usage.pids,
                    pids_limit: io.pids_limit,
                    net_rx_bytes: net.map(|n| n.0),
                    net_tx_bytes: net.map(|n| n.1),
                    block_read_bytes: io.block_read,
                    block_write_bytes: io.block_write,
                }
            })
            .collect();
        Ok::<_, String>(out)
    })
    .await
}

pub(super) async fn top(stream: &mut UnixStream, control: &Control, name: &str) -> std::io::Result<()> {
    let Some(v) = inspected(stream, control, name).await? else { return Ok(()) };
    let Ok(cgroup) = serde_json::from_value::<Cgroup>(v["cgroup"].clone()) else {
        return http::error(stream, 409, &format!("{name} has no container")).await;
    };
    super::blocking(stream, 500, move || {
        let pids = cgroup.procs().map_err(|e| e.to_string())?;
        Ok::<_, String>(processes(Path::new("/proc"), &pids))
    })
    .await
}

/// The files the daemon mounts into a container (made in its writable
/// layer when the image has none): see `starter`'s bind mounts.
const RUNTIME_FILES: &[&str] = &["/etc/hosts", "/etc/resolv.conf"];

/// One walk at a time: each holds a descriptor per directory level.
static WALKS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(1);

pub(super) async fn diff(stream: &mut UnixStream, control: &Control, name: &str) -> std::io::Result<()> {
    let Ok(_walk) = WALKS.acquire().await else { return http::error(stream, 500, SHUTTING).await };
    let Some(v) = inspected(stream, control, name).await? else { return Ok(()) };
    let (Some(runtime_name), Some(image_id)) = (v["runtime_name"].as_str(), v["status"]["image_id"].as_str()) else {
        return http::error(stream, 409, &format!("{name} has no container")).await;
    };
    let Ok(digest) = Digest::parse(image_id) else {
        return http::error(stream, 500, &format!("{name}: image ID {image_id:?}")).await;
    };
    let upper = container_dir(&control.state_dir, runtime_name).join("upper");
    let store = control.store.clone();
    let name = name.to_string();
    super::blocking(stream, 500, move || {
        let image = store
            .image_by_digest(&digest)
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("{name}: its image {digest} is no longer in the store"))?;
        changes(&upper, &image.layer_dirs, RUNTIME_FILES).map_err(|e| format!("{name}: {e}"))
    })
    .await
}
