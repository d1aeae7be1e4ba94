//! Starting and cleaning up one unit's container for the daemon: the image
//! (pulled if needed) and the prepared plan, on the blocking pool; the
//! bridge's address and ports; then the runtime's container, created by
//! the spawn helper (see `runtime::container::helper`) as a child of ours.
//! Its pid is registered with the reaper, and its interface is on the
//! bridge, before the container may run.

use std::collections::HashMap;
use std::fs::File;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use nix::fcntl::OFlag;
use nix::unistd::pipe2;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot};
use tokio::task::{JoinError, spawn_blocking};

use super::prepare::{PrepareError, image, needs_pull, prepare};
use crate::names::reference::ImageSource;
use crate::runtime::cgroups::{Manager, Resources};
use crate::runtime::container::{Container, RuntimeError, Setup};
use crate::runtime::image::config::Healthcheck;
use crate::runtime::image::digest::Digest;
use crate::runtime::image::space::{free_space, mount_point};
use crate::runtime::image::{Progress, PullOptions, Quiet, Store};
/// What [`switch`] did: how long it took, the ports now published.
pub use crate::runtime::network::bridge::Switched;
use crate::runtime::network::bridge::{Bridge, Naming};
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
    /// Pulls under way, by registry.
    pub pulls: Pulls,
    /// Pulls and their bytes are counted for the metrics.
    pub metrics: super::metrics::Counters,
    /// Turns of ended containers' clean-up ([`CLEANUPS_AT_ONCE`]).
    pub cleanups: Semaphore,
}

/// Ended containers cleaned up at once (cgroups, mounts, directories:
/// kernel work on shared locks, on the blocking pool). A shutdown of 500
/// otherwise ran hundreds of threads at once, each one created for it,
/// and all contending for the same locks.
pub const CLEANUPS_AT_ONCE: usize = 8;

/// Pulls at once from one registry (each fetches up to four layers at
/// once): a registry that stalls holds its own pulls back, never a start
/// whose image is in the store, nor a pull from elsewhere.
const PULLS_PER_SOURCE: usize = 4;

/// The pull slots of each registry (local layouts and archives share one
/// set).
#[derive(Default)]
pub struct Pulls(Mutex<HashMap<String, Arc<Semaphore>>>);

impl Pulls {
    pub(crate) fn slots(&self, source: &ImageSource) -> Arc<Semaphore> {
        let key = match source {
            ImageSource::Registry(r) => r.registry.clone(),
            _ => String::new(),
        };
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        map.entry(key).or_insert_with(|| Arc::new(Semaphore::new(PULLS_PER_SOURCE))).clone()
    }
}

/// Free bytes a start needs on the run directory's filesystem (a tmpfs):
/// the container's state record, its sockets, the bridge's files.
const RUN_DIR_ROOM: u64 = 256 << 10;

/// Why a unit's container did not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Prepare(#[from] PrepareError),
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error("ports: {0}: the bridge network is IPv4 only")]
    Ipv6Port(IpAddr),
    /// The bridge refused.
    #[error(transparent)]
    Network(#[from] crate::runtime::network::NetworkError),
    #[error("log pipe: {0}")]
    Pipe(#[source] nix::errno::Errno),
    #[error("starts are closed: the supervisor is shutting down")]
    NoTurn,
    #[error("start task failed: {0}")]
    Task(#[from] JoinError),
    #[error("{unit}: {instance:?} is not a name for a second container of the unit (UNIT.GENERATION, digits)")]
    Instance { unit: String, instance: String },
    #[error(
        "no space left on the filesystem of the run directory {} (mounted at {}): {free} bytes free, a start needs {RUN_DIR_ROOM} bytes",
        path.display(), mount.display()
    )]
    RunDirFull { path: PathBuf, mount: PathBuf, free: u64 },
    #[error("statvfs {}: {source}", path.display())]
    RunDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Fails a start when the run directory's filesystem cannot hold what a
/// container writes there: its state record would be lost silently.
fn check_run_dir(run_dir: &Path) -> Result<(), StartError> {
    let (free, _) = free_space(run_dir).map_err(|source| StartError::RunDir { path: run_dir.to_path_buf(), source })?;
    if free < RUN_DIR_ROOM {
        return Err(StartError::RunDirFull { path: run_dir.to_path_buf(), mount: mount_point(run_dir), free });
    }
    Ok(())
}

/// A running container.
pub struct Started {
    pub container: Container,
    pub stop_signal: i32,
    pub image_digest: String,
    pub image_health: Option<Healthcheck>,
    pub exit: oneshot::Receiver<Exit>,
    pub stdout: File,
    pub stderr: File,
    /// The host end of its veth pair, on the bridge.
    pub veth: Option<String>,
    /// Its address there.
    pub address: Option<Ipv4Addr>,
    /// Its published ports, `0.0.0.0:8080->80/tcp`.
    pub ports: Vec<String>,
}

/// The network of another unit's container that a `network = "unit:..."`
/// unit joins: its first process, and its address on the bridge.
#[derive(Debug, Clone, Copy)]
pub struct Join {
    pub pid: i32,
    pub address: Option<Ipv4Addr>,
}

/// Says once, when the first unit with a read-only volume starts, that the
/// kernel can only make the volume's top mount read-only (no
/// mount_setattr before Linux 5.12): mounts below it stay writable.
fn warn_once_without_recursive_readonly() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        if !crate::runtime::container::recursive_readonly() {
            tracing::warn!(
                "this kernel has no mount_setattr (Linux 5.12+): a read-only volume's sub-mounts stay writable"
            );
        }
    });
}

/// What to start.
pub struct Request {
    pub unit: Unit,
    /// The image ID to run; none: the unit's reference, by its pull policy.
    pub image: Option<String>,
    /// A notify unit's socket directory.
    pub notify_dir: Option<PathBuf>,
    /// The container whose network it joins.
    pub join: Option<Join>,
    /// The runtime name of a second container of the unit, started beside
    /// the one that runs ([`instance_name`]): its own cgroup, directory,
    /// state record and address; no published ports and no name on the
    /// bridge until [`switch`] moves them to it. None: the unit's name.
    pub instance: Option<String>,
}

/// The runtime name of the unit's container of `generation` started
/// beside the running one: `web.7`. A unit's name is a DNS label, so the
/// dot cannot make another unit's name; cgroups, container directories,
/// state records and the address pool take it (veth names do not derive
/// from it).
pub fn instance_name(unit: &str, generation: u64) -> String {
    format!("{unit}.{generation}")
}

/// The unit a runtime name belongs to: `web` for `web` and `web.7`.
pub fn unit_of(runtime_name: &str) -> &str {
    runtime_name.split_once('.').map_or(runtime_name, |(unit, _)| unit)
}

fn check_instance(unit: &str, instance: &str) -> Result<(), StartError> {
    let generation = instance.strip_prefix(unit).and_then(|rest| rest.strip_prefix('.'));
    match generation {
        Some(g) if !g.is_empty() && g.len() <= 20 && g.bytes().all(|b| b.is_ascii_digit()) => Ok(()),
        _ => Err(StartError::Instance { unit: unit.to_string(), instance: instance.to_string() }),
    }
}

/// A start's turn: one of the permits that bound how many containers are
/// made at once (and how many blocking threads read the store for them).
pub struct Turn {
    starts: Arc<Semaphore>,
    permit: Option<OwnedSemaphorePermit>,
}

impl Turn {
    /// Waits for a permit of `starts`; None once it is closed.
    pub async fn wait(starts: Arc<Semaphore>) -> Option<Turn> {
        let permit = starts.clone().acquire_owned().await.ok()?;
        Some(Turn { starts, permit: Some(permit) })
    }

    fn give_back(&mut self) {
        self.permit = None;
    }

    /// Takes a permit again after [`Turn::give_back`]; an error once
    /// `starts` is closed (a start never goes on without its turn).
    async fn take(&mut self) -> Result<(), StartError> {
        if self.permit.is_none() {
            self.permit = Some(self.starts.clone().acquire_owned().await.map_err(|_| StartError::NoTurn)?);
        }
        Ok(())
    }
}

/// Starts `unit`'s container. `pulling` is called first when the image
/// must be fetched, `starting` once it is there. The caller waits for its
/// [`Turn`] first (so that the starts waiting hold only their request, not
/// this future); it is held to the end, except during a pull, which may
/// wait on a slow registry for minutes.
pub async fn start(
    env: Arc<Env>,
    mut turn: Turn,
    request: Request,
    pulling: impl Fn() + Send + 'static,
    starting: impl Fn() + Send + 'static,
) -> Result<Started, StartError> {
    let Request { unit, image: pin, notify_dir, join, instance } = request;
    // The core's image IDs are the manifest digests the store recorded.
    let pin = pin.and_then(|p| Digest::parse(&p).ok());
    if let Some(i) = &instance {
        check_instance(&unit.name, i)?;
    }
    // The runtime's name for this container: its cgroup, directory,
    // record and place on the bridge.
    let listed = instance.is_none();
    let name = instance.unwrap_or_else(|| unit.name.clone());
    let bridge = env.bridge.clone().filter(|_| unit.container.network == Network::Bridge);
    // A unit joining another's network is on the bridge if that one is.
    let joined = env.bridge.clone().filter(|_| join.is_some_and(|j| j.address.is_some()));
    let files: Vec<(PathBuf, &'static str)> = bridge
        .as_ref()
        .or(joined.as_ref())
        .map(|b| vec![(b.hosts_path(), "/etc/hosts"), (b.resolv_path(), "/etc/resolv.conf")])
        .unwrap_or_default();
    let netns = join.map(|j| PathBuf::from(format!("/proc/{}/ns/net", j.pid)));
    let mut aliases = unit.container.aliases.clone();
    if unit.container.hostname != unit.name {
        aliases.push(unit.container.hostname.clone());
    }
    // A second container gets the unit's ports from the first one at the
    // switch: they are held (and DNATed) by one container at a time.
    let publish = match bridge {
        Some(_) if listed => publishes(&unit)?,
        _ => Vec::new(),
    };

    if unit.container.volumes.iter().any(|v| v.read_only) {
        warn_once_without_recursive_readonly();
    }
    // The image is looked up under a start permit, so that a few blocking
    // threads, not one per unit, read the store when hundreds of units
    // start at once (500 of them took 160 threads and doubled the daemon's
    // memory). A pull gives its permit back for as long as it takes: a
    // registry that hangs holds back its own pulls (`Pulls`), never the
    // start of a unit whose image is in the store.
    let (e, u) = (env.clone(), unit.clone());
    let p = pin.clone();
    let pull = spawn_blocking(move || needs_pull(&u, &e.store, p.as_ref())).await?;
    let slot = match pull {
        true => {
            turn.give_back();
            pulling();
            Some(env.pulls.slots(&unit.container.image).acquire_owned().await)
        }
        false => None,
    };
    let (e, u) = (env.clone(), unit.clone());
    let image = spawn_blocking(move || {
        let counted = e.metrics.counting(&Quiet);
        let progress: &dyn Progress = if pull { &counted } else { &Quiet };
        let image = image(&u, &e.store, &e.pull, progress, pin.as_ref());
        if pull {
            e.metrics.pulled(image.is_ok());
        }
        image
    })
    .await??;
    drop(slot);
    turn.take().await?;
    starting();
    check_run_dir(&env.run_dir)?;
    let (e, n) = (env.clone(), name.clone());
    let unit_name = unit.name.clone();
    let (mut prepared, image_health) = spawn_blocking(move || -> Result<_, StartError> {
        let prepared = prepare(&unit, &n, &image, &e.state_dir, notify_dir.as_deref(), &files, netns.as_deref())?;
        Ok((prepared, image.config.config.healthcheck.clone()))
    })
    .await??;

    // Until the container owns its directory (the writable layer prepare
    // made), a failure removes it here.
    let dir = prepared.dir.clone();
    let drop_dir = async || {
        let _ = spawn_blocking(move || std::fs::remove_dir_all(dir)).await;
    };
    let mut ports = Vec::new();
    let mut net = None;
    if let Some(b) = &bridge {
        let (plan, described) = match b.reserve(&name, &publish).await {
            Ok(r) => r,
            Err(e) => {
                drop_dir().await;
                return Err(StartError::Network(e));
            }
        };
        prepared.plan.set_network(Some(plan.clone()));
        net = Some(plan);
        ports = described;
    }
    let address = prepared.plan.address();
    let (stop_signal, image_digest) = (prepared.stop_signal, prepared.image_digest.clone());

    // From here on, a failure leaves nothing behind: the helper kills the
    // container when we go away, the runtime removes the rest.
    let undo = async |veth: Option<&str>| {
        if let Some(b) = &env.bridge {
            // Off the bridge (if it was on it): name, address, veth.
            b.detach(&name, veth).await;
        }
    };
    let pipes = pipe2(OFlag::O_CLOEXEC).and_then(|out| Ok((out, pipe2(OFlag::O_CLOEXEC)?)));
    let ((out_r, out_w), (err_r, err_w)) = match pipes {
        Ok(p) => p,
        Err(e) => {
            undo(None).await;
            drop_dir().await;
            return Err(StartError::Pipe(e));
        }
    };
    let (e, n) = (env.clone(), name.clone());
    let pending = spawn_blocking(move || {
        let setup = Setup {
            name: &n,
            cgroups: &e.cgroups,
            resources: &prepared.resources,
            run_dir: Some(&e.run_dir),
            dir: Some(&prepared.dir),
        };
        Container::spawn_by_helper(&setup, &prepared.plan, &e.helper, out_w, err_w)
    })
    .await
    .map_err(StartError::from)
    .and_then(|r| r.map_err(StartError::from));
    let pending = match pending {
        Ok(p) => p,
        Err(e) => {
            undo(None).await;
            return Err(e);
        }
    };
    let exit = env.reaper.watch(pending.pid());
    // On the bridge before it runs: its interface is there for its init to
    // configure.
    let mut veth = None;
    if let (Some(b), Some(plan)) = (&bridge, &net) {
        let naming = Naming { name: &unit_name, aliases: &aliases, listed };
        match b.attach(&name, &naming, pending.pid() as u32, plan).await {
            Ok(v) => veth = Some(v),
            Err(e) => {
                let _ = spawn_blocking(move || pending.abort()).await;
                undo(None).await;
                return Err(StartError::Network(e));
            }
        }
    }
    let container = match spawn_blocking(move || pending.go()).await {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => {
            undo(veth.as_deref()).await;
            return Err(e.into());
        }
        Err(e) => {
            undo(veth.as_deref()).await;
            return Err(e.into());
        }
    };
    if let (Some(b), Some(addr)) = (&joined, join.and_then(|j| j.address)) {
        // Its name (and aliases) resolve to the address it shares.
        b.add_name(&name, addr, &Naming { name: &unit_name, aliases: &aliases, listed });
    }
    Ok(Started {
        container,
        stop_signal,
        image_digest,
        image_health,
        exit,
        stdout: File::from(out_r),
        stderr: File::from(err_r),
        veth,
        address,
        ports,
    })
}

/// After the container's first process ended: whether the OOM killer
/// struck, then nothing of it left: processes, cgroup, writable layer,
/// state record, and its place on the bridge.
pub async fn finish(env: &Env, container: Container, veth: Option<&str>) -> bool {
    let name = container.name().to_string();
    if let Some(b) = &env.bridge {
        b.detach(&name, veth).await;
    }
    // Closed never: the semaphore lives as long as the daemon.
    let _turn = env.cleanups.acquire().await;
    match spawn_blocking(move || container.destroy()).await {
        Ok(destroyed) => {
            if let Some(e) = destroyed.error {
                tracing::warn!("{name}: {e}");
            }
            destroyed.oom_killed
        }
        Err(e) => {
            tracing::warn!("{name}: cleanup failed: {e}");
            false
        }
    }
}

/// Moves `unit`'s traffic from its running container `from` to `to`
/// (both runtime names: the unit's name or an [`instance_name`]), started
/// beside it and healthy: the published ports in one nft transaction (new
/// connections go to `to`, established ones keep flowing to `from` until
/// it stops) and the unit's name and aliases on the bridge. From then on
/// `to` owns them: [`finish`] of `from` frees only its own address, and
/// `to`'s frees the ports. A unit off the bridge has nothing to move.
pub async fn switch(env: &Env, unit: &str, from: &str, to: &str) -> Result<Switched, StartError> {
    if unit_of(to) != unit || unit_of(from) != unit {
        let instance = if unit_of(to) != unit { to } else { from };
        return Err(StartError::Instance { unit: unit.to_string(), instance: instance.to_string() });
    }
    let Some(b) = &env.bridge else { return Ok(Switched { at: Instant::now(), ports: Vec::new() }) };
    let moved = b.switch(from, to).await?;
    tracing::info!("{unit}: traffic moved from {from} to {to}");
    Ok(moved)
}

/// The unit's `ports`, one [`Publish`] per port (ranges expanded).
pub fn publishes(unit: &Unit) -> Result<Vec<Publish>, StartError> {
    let mut out = Vec::new();
    for m in &unit.container.ports {
        let host_ip = match m.host_ip {
            None => None,
            Some(IpAddr::V4(ip)) => Some(ip),
            Some(ip) => return Err(StartError::Ipv6Port(ip)),
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
        swap: None,
        cpu_quota: unit.resources.nano_cpus.map(|n| n * period / 1_000_000_000),
        cpu_period: unit.resources.nano_cpus.map(|_| period),
        pids: unit.resources.pids,
        devices: None,
        ..Resources::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instance_names_belong_to_their_unit_and_nothing_else_passes() {
        assert_eq!(instance_name("web", 7), "web.7");
        assert_eq!(unit_of("web.7"), "web");
        assert_eq!(unit_of("web"), "web");
        assert!(check_instance("web", "web.7").is_ok());
        for bad in ["web", "web.", "web.x", "db.7", "web.7/../x", "web7", "web.7.pending", "webs.7"] {
            let e = check_instance("web", bad).unwrap_err().to_string();
            assert!(e.contains("web") && e.contains(bad), "{bad}: {e}");
        }
    }

    #[test]
    fn pull_slots_are_per_registry() {
        let pulls = Pulls::default();
        let source = |s: &str| ImageSource::parse(s, std::path::Path::new("/")).unwrap();
        let a = pulls.slots(&source("127.0.0.1:5000/x:1"));
        let same = pulls.slots(&source("127.0.0.1:5000/y:2"));
        let other = pulls.slots(&source("127.0.0.1:5001/x:1"));
        assert!(Arc::ptr_eq(&a, &same));
        assert!(!Arc::ptr_eq(&a, &other));
        // A registry's slots all taken leave another's free.
        let held: Vec<_> = (0..PULLS_PER_SOURCE).map(|_| a.clone().try_acquire_owned().unwrap()).collect();
        assert!(same.clone().try_acquire_owned().is_err());
        assert!(other.clone().try_acquire_owned().is_ok());
        drop(held);
        assert!(a.try_acquire_owned().is_ok());
    }
}
