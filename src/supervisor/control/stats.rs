//! `GET /v1/stats[?units=A,B]`: each running unit's resource use, as
//! `docker stats` shows it: CPU % of one core over half a second, memory
//! (without the page cache the kernel may drop at once) and its limit,
//! processes and their limit, network bytes (the container's namespace,
//! its loopback left out) and block I/O. Everything is read when asked:
//! an idle daemon keeps no timer for it.

use std::path::Path;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::net::UnixStream;

use super::{Control, ask, http};
use crate::runtime::cgroups::Cgroup;
use crate::runtime::procs::net_dev;
use crate::supervisor::engine::Command;

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
    let shutting = "the supervisor is shutting down";
    let Some(list) = ask(control, Command::Status).await else { return http::error(stream, 500, shutting).await };
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
