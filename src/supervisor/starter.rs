//! Starting and cleaning up one unit's container for the daemon. Blocking
//! code, run on tokio's blocking pool: the image (pulled if needed), the
//! prepared spec, the cgroup, then the spawn helper (`supervisord runtime
//! spawn`, see `runtime::container::helper`), which makes the container a
//! child of ours. Its pid is registered with the reaper before the
//! container may run.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use nix::fcntl::OFlag;
use nix::unistd::pipe2;
use tokio::sync::oneshot;

use super::prepare::{container_dir, image, needs_pull, prepare};
use crate::runtime::cgroups::{Cgroup, Manager, Resources};
use crate::runtime::container::helper::{Go, Reply};
use crate::runtime::container::state::{ContainerState, ProcessState, start_time};
use std::sync::Arc;

use crate::runtime::image::config::Healthcheck;
use crate::runtime::image::{PullOptions, Quiet, Store};
use crate::runtime::network::bridge::Bridge;
use crate::runtime::network::ports::Publish;
use crate::runtime::reaper::{Exit, Reaper};
use crate::units::Unit;
use crate::units::model::Network;

/// What starting needs, shared by every start.
pub struct Env {
    pub state_dir: PathBuf,
    pub run_dir: PathBuf,
    pub store: Store,
    pub pull: PullOptions,
    pub cgroups: Manager,
    pub reaper: Reaper,
    /// The program that serves `runtime spawn` (ourselves).
    pub helper: PathBuf,
    /// The bridge network, for units on it.
    pub bridge: Option<Arc<Bridge>>,
}

/// A running container.
pub struct Started {
    pub pid: i32,
    pub cgroup: Cgroup,
    pub stop_signal: i32,
    pub image_digest: String,
    pub image_health: Option<Healthcheck>,
    pub exit: oneshot::Receiver<Exit>,
    pub stdout: std::fs::File,
    pub stderr: std::fs::File,
    /// The host end of its veth pair, on the bridge.
    pub veth: Option<String>,
    /// Its address there.
    pub address: Option<std::net::Ipv4Addr>,
    /// Its published ports, `0.0.0.0:8080->80/tcp`.
    pub ports: Vec<String>,
}

/// Starts `unit`'s container. `pulling` is called first when the image
/// must be fetched, `starting` once it is there.
/// The network of another unit's container that a `network = "unit:..."`
/// unit joins: its first process, and its address on the bridge.
#[derive(Debug, Clone, Copy)]
pub struct Join {
    pub pid: i32,
    pub address: Option<std::net::Ipv4Addr>,
}

pub fn start(
    env: &Env,
    unit: &Unit,
    notify_dir: Option<&Path>,
    join: Option<Join>,
    pulling: &dyn Fn(),
    starting: &dyn Fn(),
) -> Result<Started, String> {
    if needs_pull(unit, &env.store) {
        pulling();
    }
    let image = image(unit, &env.store, &env.pull, &Quiet)?;
    starting();
    let name = &unit.name;
    let bridge = env.bridge.as_deref().filter(|_| unit.container.network == Network::Bridge);
    // A unit joining another's network is on the bridge if that one is.
    let joined = env.bridge.as_deref().filter(|_| join.is_some_and(|j| j.address.is_some()));
    let files: Vec<(PathBuf, &'static str)> = bridge
        .or(joined)
        .map(|b| vec![(b.hosts_path(), "/etc/hosts"), (b.resolv_path(), "/etc/resolv.conf")])
        .unwrap_or_default();
    let netns = join.map(|j| PathBuf::from(format!("/proc/{}/ns/net", j.pid)));
    let mut prepared = prepare(unit, &image, &env.state_dir, notify_dir, &files, netns.as_deref())?;
    let mut ports = Vec::new();
    if let Some(b) = bridge {
        let publish = publishes(unit)?;
        let (plan, described) =
            tokio::runtime::Handle::current().block_on(b.reserve(name, &publish)).map_err(|e| e.to_string())?;
        prepared.request.network = Some(plan);
        ports = described;
    }
    let mut aliases = unit.container.aliases.clone();
    if unit.container.hostname != unit.name {
        aliases.push(unit.container.hostname.clone());
    }
    let cgroup = match env.cgroups.create(name) {
        Ok(c) => c,
        Err(e) => {
            if let Some(b) = bridge {
                tokio::runtime::Handle::current().block_on(b.unreserve(name));
            }
            return Err(e.to_string());
        }
    };
    let mut veth = None;
    let result = cgroup
        .set(&prepared.resources)
        .map_err(|e| e.to_string())
        .and_then(|()| spawn(env, &prepared.request, &cgroup, bridge.map(|b| (b, &aliases[..])), name, &mut veth));
    match result {
        Ok((pid, exit, stdout, stderr)) => {
            if let (Some(b), Some(addr)) = (joined, join.and_then(|j| j.address)) {
                // Its name (and aliases) resolve to the address it shares.
                b.add_name(name, addr, &aliases);
            }
            let state = ContainerState {
                name: name.clone(),
                pid,
                start_time: start_time(pid).unwrap_or(0),
                cgroup: cgroup.clone(),
                dir: prepared.request.dir.clone(),
                process: ProcessState::of(&prepared.plan.process),
            };
            if let Err(e) = state.save(&env.run_dir) {
                tracing::warn!("{name}: cannot record the container's state: {e}");
            }
            Ok(Started {
                pid,
                cgroup,
                stop_signal: prepared.stop_signal,
                image_digest: prepared.image_digest,
                image_health: image.config.config.healthcheck.clone(),
                exit,
                stdout,
                stderr,
                veth,
                address: prepared.request.network.as_ref().map(|n| n.address),
                ports,
            })
        }
        Err(e) => {
            clean_up(env, name, &cgroup, veth.as_deref());
            Err(e)
        }
    }
}

type Spawned = (i32, oneshot::Receiver<Exit>, std::fs::File, std::fs::File);

fn spawn(
    env: &Env,
    request: &crate::runtime::container::helper::SpawnRequest,
    cgroup: &Cgroup,
    bridge: Option<(&Bridge, &[String])>,
    name: &str,
    veth: &mut Option<String>,
) -> Result<Spawned, String> {
    let io = |what: &str, e: std::io::Error| format!("spawn helper: {what}: {e}");
    let (ours, theirs) = UnixStream::pair().map_err(|e| io("socketpair", e))?;
    let pipe = || pipe2(OFlag::O_CLOEXEC).map_err(|e| io("pipe", e.into()));
    let (out_r, out_w) = pipe()?;
    let (err_r, err_w) = pipe()?;
    let mut req = serde_json::to_value(request).map_err(|e| e.to_string())?;
    req["cgroup"] = serde_json::to_value(cgroup).map_err(|e| e.to_string())?;
    let mut line = serde_json::to_vec(&req).map_err(|e| e.to_string())?;
    line.push(b'\n');
    // The helper is reaped by the reaper (nobody waits for it); its
    // outcome comes over the socket.
    let _helper = Command::new(&env.helper)
        .args(["runtime", "spawn"])
        .stdin(std::process::Stdio::from(std::os::fd::OwnedFd::from(theirs)))
        .stdout(std::process::Stdio::from(out_w))
        .stderr(std::process::Stdio::from(err_w))
        .env_clear()
        .spawn()
        .map_err(|e| io(&env.helper.display().to_string(), e))?;
    let mut writer = ours.try_clone().map_err(|e| io("socket", e))?;
    ours.set_read_timeout(Some(Duration::from_secs(60))).map_err(|e| io("socket", e))?;
    let mut reader = BufReader::new(ours);
    writer.write_all(&line).map_err(|e| io("send", e))?;
    let read = |reader: &mut BufReader<UnixStream>| -> Result<Reply, String> {
        let mut line = String::new();
        reader.read_line(&mut line).map_err(|e| io("receive", e))?;
        if line.is_empty() {
            return Err("spawn helper: ended without an answer".into());
        }
        serde_json::from_str(&line).map_err(|e| format!("spawn helper: bad answer {line:?}: {e}"))
    };
    let reply = read(&mut reader)?;
    let pid = match (reply.pid, reply.error) {
        (Some(pid), _) => pid,
        (None, Some(e)) => return Err(e),
        _ => return Err("spawn helper: no pid".into()),
    };
    let exit = env.reaper.watch(pid);
    // On the bridge before it runs: its interface is there for its init
    // to configure.
    if let (Some((b, aliases)), Some(plan)) = (bridge, &request.network) {
        let attached = tokio::runtime::Handle::current()
            .block_on(b.attach(name, aliases, pid as u32, plan))
            .map_err(|e| e.to_string())?;
        *veth = Some(attached);
    }
    let mut go = serde_json::to_vec(&Go { go: true }).map_err(|e| e.to_string())?;
    go.push(b'\n');
    writer.write_all(&go).map_err(|e| io("send", e))?;
    let reply = read(&mut reader)?;
    if let Some(e) = reply.error {
        return Err(e);
    }
    Ok((pid, exit, std::fs::File::from(out_r), std::fs::File::from(err_r)))
}

/// After the container's first process ended: whether the OOM killer
/// struck, then nothing of it left: processes, cgroup, writable layer,
/// state record.
pub fn finish(env: &Env, name: &str, cgroup: &Cgroup, veth: Option<&str>) -> bool {
    let oom = cgroup.oom_kills() > 0;
    clean_up(env, name, cgroup, veth);
    oom
}

fn clean_up(env: &Env, name: &str, cgroup: &Cgroup, veth: Option<&str>) {
    if let Some(b) = &env.bridge {
        // Off the bridge (if it was on it): name, address, veth.
        tokio::runtime::Handle::current().block_on(b.detach(name, veth));
    }
    let _ = cgroup.kill_all();
    if let Err(e) = cgroup.remove(Duration::from_secs(10)) {
        tracing::warn!("{name}: cannot remove its cgroup: {e}");
    }
    let dir = container_dir(&env.state_dir, name);
    if let Err(e) = remove_container_dir(&dir) {
        tracing::warn!("{name}: cannot remove {}: {e}", dir.display());
    }
    ContainerState::remove(&env.run_dir, name);
}

fn remove_container_dir(dir: &Path) -> std::io::Result<()> {
    match std::fs::remove_dir_all(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        r => r,
    }
}

/// The unit's `ports`, one [`Publish`] per port (ranges expanded).
pub fn publishes(unit: &Unit) -> Result<Vec<Publish>, String> {
    let mut out = Vec::new();
    for m in &unit.container.ports {
        let host_ip = match m.host_ip {
            None => None,
            Some(std::net::IpAddr::V4(ip)) => Some(ip),
            Some(ip) => return Err(format!("ports: {ip}: the bridge network is IPv4 only")),
        };
        let udp = m.protocol == crate::units::values::port::Protocol::Udp;
        for i in 0..m.container_port.count() {
            let offset = i as u16;
            out.push(Publish {
                host_ip,
                host_port: m.host_port.map_or(0, |h| h.start + offset),
                container_port: m.container_port.start + offset,
                udp,
            });
        }
    }
    Ok(out)
}

/// The limits a `[resources]` edit writes to a running container (device
/// rules are left as they are).
pub fn live_resources(unit: &Unit) -> Resources {
    let period: u64 = 100_000;
    Resources {
        memory: unit.resources.memory,
        cpu_quota: unit.resources.nano_cpus.map(|n| n * period / 1_000_000_000),
        cpu_period: unit.resources.nano_cpus.map(|_| period),
        pids: unit.resources.pids,
        devices: None,
    }
}
