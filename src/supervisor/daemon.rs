//! `supervisord` itself: set up (PID 1 duties, limits, crash recovery),
//! then run the engine, the watcher and the control socket on tokio until
//! a shutdown signal, and stop every unit in reverse order on the way out.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::{broadcast, mpsc, oneshot, watch};

use super::autoupdate::Updater;
use super::boot::{Phase, Timeline};
use super::control::{self, Control, Power};
use super::engine::{Engine, Event, Real};
use super::logs::Hub;
use super::starter::Env;
use super::{pid1, watch as watcher};
use crate::runtime::container::clean_up;
use crate::runtime::image::{PullOptions, RegistryOptions, Store};
use crate::runtime::network::NetworkError;
use crate::runtime::network::bridge::{Bridge, Config as BridgeConfig};
use crate::runtime::reaper::Reaper;

/// Where things are, after flags and the config file.
#[derive(Debug, Clone)]
pub struct Paths {
    pub units: PathBuf,
    pub state_dir: PathBuf,
    pub run_dir: PathBuf,
    pub log_dir: PathBuf,
}

pub struct Options {
    pub paths: Paths,
    /// The bridge network; none: bridge units get loopback only.
    pub bridge: Option<BridgeConfig>,
    pub insecure_registries: Vec<String>,
    pub authfile: PathBuf,
    /// `registry_timeout` and `max_image_size` (None: the defaults).
    pub registry_timeout: Option<std::time::Duration>,
    pub max_image_size: Option<u64>,
    pub socket_group: Option<u32>,
    /// The group that may read the unit logs (files 0640); none: root alone.
    pub log_group: Option<u32>,
    /// Kernel modules to load first.
    pub modules: Vec<String>,
    /// A virtio-serial port to serve the control protocol on.
    pub control_port: Option<String>,
    /// The host's interface to configure (an appliance's).
    pub uplink: Option<Uplink>,
    /// How often `auto = "registry"` units are checked (None: never).
    pub auto_update_interval: Option<Duration>,
    /// Where to serve Prometheus metrics (None: nowhere).
    pub metrics: Option<std::net::SocketAddr>,
}

#[derive(Debug, Clone)]
pub struct Uplink {
    /// None: the first ethernet interface.
    pub interface: Option<String>,
    pub address: std::net::Ipv4Addr,
    pub prefix: u8,
    pub gateway: Option<std::net::Ipv4Addr>,
}

/// Raises our soft NOFILE limit to the hard one: hundreds of containers
/// mean thousands of descriptors (pipes, sockets, cgroup files).
fn raise_nofile() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        if soft < hard {
            let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
        }
    }
}

fn notify(states: &[sd_notify::NotifyState]) {
    if std::env::var_os("NOTIFY_SOCKET").is_some() {
        let _ = sd_notify::notify(states);
    }
}

/// Runs the daemon; its exit code. As PID 1 it never returns.
pub fn run(options: Options) -> u8 {
    let boot = Timeline::default();
    boot.mark(Phase::Started);
    // What the daemon creates without a mode of its own is root's alone,
    // whatever umask it was started with (systemd's unit sets the same);
    // what containers must read is given its mode explicitly, and the
    // container's processes get Docker's 0022.
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o077));
    let pid1 = pid1::is_pid1();
    let escaped = if pid1 { pid1::leave_initramfs() } else { None };
    let mut no_path = None;
    if pid1 {
        pid1::mount_basics();
        pid1::console();
        if std::env::var_os("PATH").is_none() {
            // The kernel gives init no PATH; helpers (nft) are found by it.
            // Set once /proc is there, which tells that no other thread runs.
            let path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
            no_path = crate::runtime::sys::set_env_single_threaded("PATH", path).err();
        }
    }
    super::init_logging();
    if let Some(e) = no_path {
        tracing::warn!("{e}");
    }
    // An init booted from an initramfs is an appliance's: only then is
    // there a data disk to look for (and a blank disk to format: never
    // on a machine whose disks supervisord does not own).
    let appliance = escaped.is_some();
    if let Some(what) = escaped {
        tracing::info!("{what}");
    }
    pid1::modules::load(&options.modules);
    if !options.modules.is_empty() {
        boot.mark(Phase::ModulesLoaded);
    }
    if appliance {
        let p = &options.paths;
        let dirs = pid1::data_disk::Dirs { units: &p.units, state: &p.state_dir, log: &p.log_dir };
        match pid1::data_disk::mount_data(&dirs) {
            Ok(Some(device)) => {
                tracing::info!("data disk {}: units, images, volumes and logs are kept on it", device.display());
                boot.mark(Phase::DataDisk);
            }
            Ok(None) => tracing::info!(
                "no data disk (label {}): units, images, volumes and logs are in RAM, gone at power-off",
                pid1::data_disk::LABEL
            ),
            Err(e) => tracing::error!("data disk: {e}; units, images, volumes and logs are in RAM, gone at power-off"),
        }
    }
    if pid1 {
        pid1::host_setup();
        // The power button asks for what SIGUSR2 does: a clean power-off.
        pid1::power_button::watch(|| {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::this(), nix::sys::signal::Signal::SIGUSR2);
        });
        // A panic in PID 1 is a kernel panic: log it and keep going (the
        // task that panicked ends; the loop below starts a new engine).
        std::panic::set_hook(Box::new(|info| tracing::error!("panic: {info}")));
    } else {
        // Orphans of our containers' helpers and execs are ours to reap.
        if let Err(e) = nix::sys::prctl::set_child_subreaper(true) {
            tracing::warn!("become the subreaper of our descendants: {e}");
        }
    }
    if let Some(port) = &options.control_port {
        pid1::serial::serve(port.clone(), options.paths.run_dir.join("control.sock"));
    }
    raise_nofile();
    // glibc gives each thread that allocates an arena of its own; for a
    // daemon whose threads are tokio's few workers and short-lived
    // blocking ones, two arenas hold the same with less memory.
    crate::runtime::sys::limit_malloc_arenas(2);
    let runtime = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            tracing::error!("cannot start the async runtime: {e}");
            return 1;
        }
    };
    loop {
        match runtime.block_on(daemon(&options, pid1, &boot)) {
            Ok(Some(power)) if pid1 => {
                pid1::power(power);
                // reboot(2) failed: nothing else to do but go on.
            }
            Ok(_) if !pid1 => return 0,
            Ok(_) => {}
            Err(e) if !pid1 => {
                tracing::error!("{e}");
                return 1;
            }
            Err(e) => tracing::error!("{e}; starting again"),
        }
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// Why one life of the daemon could not start, or how it ended.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("SIGCHLD handler: {0}")]
    Reaper(#[source] std::io::Error),
    #[error("{op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}; one supervisord per run directory")]
    Locked(#[source] crate::runtime::container::OwnerError),
    #[error("cgroups: {0}")]
    Cgroups(#[source] crate::runtime::cgroups::CgroupError),
    #[error("{0}")]
    Images(#[source] crate::runtime::image::ImageError),
    #[error("probe socket thread: {0}")]
    Probes(#[source] std::io::Error),
    #[error("bridge network {name}: {source}")]
    Bridge {
        name: String,
        #[source]
        source: NetworkError,
    },
    #[error("the engine ended: {0}")]
    Engine(#[source] tokio::task::JoinError),
    #[error("no ethernet interface")]
    NoEthernet,
    #[error(transparent)]
    Uplink(#[from] NetworkError),
}

/// The directories the daemon makes in the run directory: container
/// records, the bridge's files, notify sockets.
const RUN_SUBDIRS: [&str; 3] = ["containers", "network", "notify"];

/// Makes the state, run and log directories private to root, at every
/// start (so an installation made under a loose umask, or by a version
/// that did not do this, is fixed): the state directory 0700; the run
/// directory 0700, or 0711 when a socket group must reach the control
/// socket in it, with each of its subdirectories (container records that
/// hold the units' environments, network files, notify sockets) 0700; the
/// log directory 0700, or 0750 with the log group. Below these, nothing is
/// reachable by path for anyone else, whatever its own mode.
fn private_dirs(
    paths: &Paths,
    socket_group: Option<u32>,
    log_group: Option<u32>,
) -> Result<(), (PathBuf, std::io::Error)> {
    use crate::runtime::private::private_dir;
    let at = |p: &std::path::Path| {
        let p = p.to_path_buf();
        move |e| (p, e)
    };
    private_dir(&paths.state_dir, 0o700, None).map_err(at(&paths.state_dir))?;
    let run_mode = if socket_group.is_some() { 0o711 } else { 0o700 };
    private_dir(&paths.run_dir, run_mode, None).map_err(at(&paths.run_dir))?;
    // Only the subdirectories we make: a run directory shared with others
    // (`--run-dir /run`) keeps the modes of theirs.
    for sub in RUN_SUBDIRS {
        let dir = paths.run_dir.join(sub);
        if dir.is_dir() {
            private_dir(&dir, 0o700, None).map_err(at(&dir))?;
        }
    }
    let log_mode = if log_group.is_some() { 0o750 } else { 0o700 };
    private_dir(&paths.log_dir, log_mode, log_group).map_err(at(&paths.log_dir))
}

/// What a supervisor killed before a container got its record leaves, now
/// that [`clean_up`] has removed every recorded container: writable layers
/// (`<state>/containers/NAME`, made before the record) and notify sockets
/// (`<run>/notify/NAME`). Nothing runs yet and the run directory is ours
/// (locked), so each is a leftover. What was removed, by kind and name.
fn sweep_leftovers(paths: &Paths) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    let dirs =
        [("writable layer", paths.state_dir.join("containers")), ("notify socket", paths.run_dir.join("notify"))];
    for (what, dir) in dirs {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for entry in entries.flatten() {
            let path = entry.path();
            let gone = match entry.file_type() {
                Ok(t) if t.is_dir() => std::fs::remove_dir_all(&path),
                _ => std::fs::remove_file(&path),
            };
            match gone {
                Ok(()) => out.push((what, entry.file_name().to_string_lossy().into_owned())),
                Err(e) => tracing::warn!("remove the leftover {}: {e}", path.display()),
            }
        }
    }
    out.sort();
    out
}

/// Ends the reaper with the life of the daemon that started it.
struct ReaperGuard(Reaper);

impl Drop for ReaperGuard {
    fn drop(&mut self) {
        self.0.stop();
    }
}

/// One life of the daemon: until shutdown (`Ok(power)` as PID 1) or a
/// setup error.
async fn daemon(options: &Options, pid1: bool, boot: &Timeline) -> Result<Option<Power>, DaemonError> {
    let paths = &options.paths;
    let io = |op, path: &std::path::Path| {
        let path = path.to_path_buf();
        move |source| DaemonError::Io { op, path, source }
    };
    // The reaper comes first: no child's exit may be missed.
    let reaper = Reaper::start().map_err(DaemonError::Reaper)?;
    let _reaper_guard = ReaperGuard(reaper.clone());
    private_dirs(paths, options.socket_group, options.log_group).map_err(|(path, source)| DaemonError::Io {
        op: "make private",
        path,
        source,
    })?;
    // One supervisor per run directory: a second one would take the
    // first's containers for leftovers.
    let _lock = crate::runtime::container::own(&paths.run_dir, true).map_err(DaemonError::Locked)?;
    // What an earlier supervisor that died left behind goes first.
    let cleaned = clean_up(&paths.run_dir);
    for name in &cleaned.containers {
        tracing::info!("{name}: removed the container an earlier supervisor left");
    }
    for (what, name) in sweep_leftovers(paths) {
        tracing::info!("{name}: removed the {what} an earlier supervisor left");
    }
    let cgroups = super::config::cgroups_for(&paths.run_dir).map_err(DaemonError::Cgroups)?;
    let store = Store::open(&paths.state_dir).map_err(DaemonError::Images)?;
    // Offline prune and rmi stay out while we run (see Store::hold_for_daemon).
    let _store_in_use = store.hold_for_daemon().map_err(DaemonError::Images)?;
    let mut registry = RegistryOptions { insecure: options.insecure_registries.clone(), ..RegistryOptions::default() }
        .with_auth_file(&options.authfile)
        .map_err(DaemonError::Images)?;
    registry.timeout = options.registry_timeout.unwrap_or(registry.timeout);
    let mut pull = PullOptions { registry, ..PullOptions::default() };
    pull.max_image_size = options.max_image_size.unwrap_or(pull.max_image_size);
    // Our own program serves `runtime spawn` and `runtime exec`.
    // From one sealed in-memory copy, so that no container process can
    // reach the host's binary (see runtime/container/sealed.rs).
    let helper = crate::runtime::container::sealed_self().map_err(|e| DaemonError::Io {
        op: "make a sealed copy of",
        path: "/proc/self/exe".into(),
        source: std::io::Error::other(e),
    })?;
    let probes = Arc::new(crate::health::probe::Env {
        helper: helper.clone(),
        run_dir: paths.run_dir.clone(),
        reaper: reaper.clone(),
        sockets: crate::health::netns::Factory::start().map_err(DaemonError::Probes)?,
    });
    if let Some(up) = &options.uplink {
        // Not fatal: the units still run, only not reachable from outside.
        match uplink(up).await {
            Ok(()) => boot.mark(Phase::Uplink),
            Err(e) => tracing::error!("uplink: {e}"),
        }
    }
    let bridge = match &options.bridge {
        Some(config) => Some(Arc::new(
            Bridge::setup(config.clone(), &paths.state_dir, &paths.run_dir, reaper.clone())
                .await
                .map_err(|source| DaemonError::Bridge { name: config.name.clone(), source })?,
        )),
        None => None,
    };
    if bridge.is_some() {
        boot.mark(Phase::Bridge);
    }
    let counters = super::metrics::Counters::default();
    let env = Arc::new(Env {
        state_dir: paths.state_dir.clone(),
        run_dir: paths.run_dir.clone(),
        store: store.clone(),
        pull: pull.clone(),
        cgroups,
        reaper,
        helper,
        bridge: bridge.clone(),
        pulls: Default::default(),
        metrics: counters.clone(),
        cleanups: tokio::sync::Semaphore::new(super::starter::CLEANUPS_AT_ONCE),
    });
    let (tx, rx) = mpsc::unbounded_channel();
    let (events, _) = broadcast::channel(1024);
    let hub = Hub::default();
    let (env_files, env_files_rx) = watch::channel(BTreeSet::new());
    let backend = Real::new(env.clone(), probes, hub.clone(), paths.log_dir.clone());
    let engine =
        Engine::new(paths.units.clone(), backend, tx.clone(), events.clone(), env_files).with_metrics(counters.clone());

    let updater = Arc::new(Updater { tx: tx.clone(), events: events.clone(), env: env.clone() });
    let options_interval = options.auto_update_interval;
    let (power_tx, mut power_rx) = mpsc::unbounded_channel();
    let control = Arc::new(Control {
        tx: tx.clone(),
        events: events.clone(),
        hub,
        log_dir: paths.log_dir.clone(),
        state_dir: paths.state_dir.clone(),
        run_dir: paths.run_dir.clone(),
        store,
        pull,
        power: pid1.then_some(power_tx.clone()),
        group: options.socket_group,
        updater: updater.clone(),
        boot: boot.clone(),
        metrics: counters.clone(),
    });
    let socket = paths.run_dir.join("control.sock");
    let listener = control::bind(&socket, options.socket_group).map_err(io("bind the control socket", &socket))?;
    let server = tokio::spawn(control::serve(listener, control));
    boot.mark(Phase::ControlPath);
    let metrics = super::metrics::start(options.metrics, tx.clone(), counters);
    let booting = tokio::spawn(super::boot::watch_units(events.subscribe(), tx.clone(), boot.clone()));

    let (rescan_tx, mut rescan_rx) = mpsc::unbounded_channel();
    let watch_task = tokio::spawn(watcher::run(paths.units.clone(), env_files_rx, rescan_tx));
    let forward = {
        let tx = tx.clone();
        tokio::spawn(async move {
            while rescan_rx.recv().await.is_some() {
                let _ = tx.send(Event::Rescan);
            }
        })
    };

    let (ready_tx, ready_rx) = oneshot::channel();
    let mut engine_task = tokio::spawn(engine.run(rx, ready_tx));
    let signals = tokio::spawn(signals(tx.clone(), pid1, power_tx));
    if ready_rx.await.is_ok() {
        tracing::info!("supervising the units of {}", paths.units.display());
        notify(&[sd_notify::NotifyState::Ready]);
    }
    let status = tokio::spawn(systemd_status(events.subscribe(), tx.clone()));
    let auto_update = tokio::spawn(async move {
        match options_interval {
            Some(every) => updater.every(every).await,
            None => std::future::pending().await,
        }
    });

    // Shutdown: a signal (or a power verb) asks the engine to stop every
    // unit; the engine task ends when all are stopped.
    let mut power = None;
    let outcome = tokio::select! {
        r = &mut engine_task => r,
        p = power_rx.recv() => {
            power = p;
            notify(&[sd_notify::NotifyState::Stopping]);
            let (done_tx, _done_rx) = oneshot::channel();
            let _ = tx.send(Event::Shutdown(done_tx));
            engine_task.await
        }
    };
    for t in [server, watch_task, forward, signals, status, auto_update, booting, metrics] {
        t.abort();
    }
    let _ = std::fs::remove_file(&socket);
    if let Some(b) = &bridge {
        // Everything is stopped (or the engine died: the next life cleans
        // up and takes the bridge over).
        if outcome.is_ok() {
            b.teardown().await;
        }
    }
    if outcome.is_ok() && super::config::cgroup_instance(&paths.run_dir).is_some() {
        env.cgroups.remove_empty_bases();
    }
    match outcome {
        Ok(()) => {
            tracing::info!("every unit is stopped");
            Ok(power)
        }
        Err(e) => Err(DaemonError::Engine(e)),
    }
}

/// Configures the host's interface (waiting a while for it to appear: a
/// just-loaded driver probes in the background).
async fn uplink(up: &Uplink) -> Result<(), DaemonError> {
    let mut name = up.interface.clone();
    for _ in 0..50 {
        name = name.or_else(first_ethernet);
        if name.as_deref().is_some_and(|n| crate::runtime::network::netlink::index(n).is_some()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let name = name.ok_or(DaemonError::NoEthernet)?;
    let netlink = crate::runtime::network::netlink::Netlink::open()?;
    netlink.uplink(&name, up.address, up.prefix, up.gateway).await?;
    tracing::info!(
        "uplink {name}: {}/{}{}",
        up.address,
        up.prefix,
        up.gateway.map(|g| format!(" via {g}")).unwrap_or_default()
    );
    Ok(())
}

/// The first interface (by name) backed by a device and of ethernet type:
/// no loopback, bridge or veth has a `device`.
fn first_ethernet() -> Option<String> {
    let mut names: Vec<String> = std::fs::read_dir("/sys/class/net")
        .ok()?
        .flatten()
        .filter(|e| e.path().join("device").exists())
        .filter(|e| std::fs::read_to_string(e.path().join("type")).is_ok_and(|t| t.trim() == "1"))
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names.into_iter().next()
}

/// SIGTERM/SIGINT: shut down (as PID 1: SIGTERM and SIGUSR2 power off,
/// SIGINT reboots); SIGHUP: reload.
async fn signals(tx: mpsc::UnboundedSender<Event>, pid1: bool, power: mpsc::UnboundedSender<Power>) {
    let make = |k| signal(k).map_err(|e| tracing::error!("signal handler: {e}")).ok();
    let (Some(mut term), Some(mut int), Some(mut hup), Some(mut usr2)) = (
        make(SignalKind::terminate()),
        make(SignalKind::interrupt()),
        make(SignalKind::hangup()),
        make(SignalKind::user_defined2()),
    ) else {
        return;
    };
    loop {
        let what = tokio::select! {
            _ = term.recv() => Some(Power::Off),
            _ = usr2.recv() => if pid1 { Some(Power::Off) } else { None },
            _ = int.recv() => Some(if pid1 { Power::Reboot } else { Power::Off }),
            _ = hup.recv() => {
                tracing::info!("SIGHUP: reading the unit directory again");
                let _ = tx.send(Event::Rescan);
                None
            }
        };
        if let Some(p) = what {
            tracing::info!("stopping every unit ({})", if pid1 { format!("{p:?}") } else { "shutdown".into() });
            let _ = power.send(p);
        }
    }
}

/// systemd's STATUS= line (and watchdog pings when asked for) under
/// systemd; nothing otherwise.
async fn systemd_status(mut events: broadcast::Receiver<super::engine::StateEvent>, tx: mpsc::UnboundedSender<Event>) {
    if std::env::var_os("NOTIFY_SOCKET").is_none() {
        return;
    }
    let watchdog = sd_notify::watchdog_enabled();
    let mut ping = tokio::time::interval(watchdog.map_or(Duration::from_secs(3600), |w| w / 2));
    loop {
        tokio::select! {
            ev = events.recv() => {
                if matches!(ev, Err(broadcast::error::RecvError::Closed)) {
                    return;
                }
                let (reply, rx) = oneshot::channel();
                if tx.send(Event::Command(super::engine::Command::Counts(reply))).is_err() {
                    return;
                }
                if let Ok(counts) = rx.await {
                    use super::lifecycle::State;
                    let of = |s| counts.get(&s).copied().unwrap_or(0);
                    let all: usize = counts.values().sum();
                    let line = format!("{} running, {} failed, {all} units", of(State::Running), of(State::Failed));
                    notify(&[sd_notify::NotifyState::Status(&line)]);
                }
            }
            _ = ping.tick(), if watchdog.is_some() => notify(&[sd_notify::NotifyState::Watchdog]),
        }
    }
}
