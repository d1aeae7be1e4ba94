//! The OCI runtime's command line as engines drive it (runc's contract):
//! `create` sets a container up with its program held at a start gate,
//! `start` lets it run, `state`, `kill`, `pause`, `resume`, `delete`,
//! `list` and `ps` act on it by ID. Each is one short-lived process; what
//! lasts is under the root directory (see `record`). The container itself
//! is the one every caller of ours makes ([`crate::runtime::container`]);
//! the engine (conmon, containerd's shim) is its parent once `create`
//! exits, and reaps it.

mod documents;
mod events;
mod record;
mod update;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use oci_spec::runtime::{Process, Spec};

pub use crate::runtime::container::hooks;
pub use documents::{default_spec, features};
pub use events::{Event, events, stats_event};
use hooks::{HookError, Point};
use record::{Dir, Record};
pub use record::{SPEC_VERSION, State, Status};
pub use update::{resources_update, update};

use crate::runtime::cgroups::{self, CgroupError};
pub use crate::runtime::container::{CommandLine, ExecOptions};
use crate::runtime::container::{Container, PidFile, Plan, RuntimeError, Setup};

/// How long `start` waits for a created container at its gate.
const START_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum OciError {
    #[error("container id {id:?}: {why}")]
    BadId { id: String, why: &'static str },
    #[error("container {0:?} does not exist")]
    NotFound(String),
    #[error("container {0:?} already exists")]
    Exists(String),
    #[error("container {id:?} is {status}: {op} needs it {wanted}")]
    WrongState { id: String, status: Status, op: &'static str, wanted: &'static str },
    #[error("{0}")]
    Console(&'static str),
    #[error("unknown signal {0:?}")]
    Signal(String),
    #[error("update: linux.resources.{0} cannot be changed by this runtime")]
    UpdateUnsupported(&'static str),
    #[error("{op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error(transparent)]
    Cgroup(#[from] CgroupError),
    #[error("container {0:?} has no process (config.json): it cannot start, and is stopped")]
    NoProcess(String),
}

impl OciError {
    fn io(op: &'static str, path: &Path, source: std::io::Error) -> OciError {
        OciError::Io { op, path: path.to_path_buf(), source }
    }
}

/// runc's rule for IDs: letters, digits, `_+-.`, not `.` or `..`; they
/// name a directory under the root.
pub fn check_id(id: &str) -> Result<(), OciError> {
    let bad = |why| Err(OciError::BadId { id: id.to_string(), why });
    if id.is_empty() || id.len() > 1024 {
        return bad("must be 1 to 1024 characters");
    }
    if id == "." || id == ".." {
        return bad("must not be . or ..");
    }
    if !id.bytes().all(|b| b.is_ascii_alphanumeric() || b"_+-.".contains(&b)) {
        return bad("may hold only letters, digits and _+-.");
    }
    Ok(())
}

fn loaded(root: &Path, id: &str) -> Result<(Dir, Record), OciError> {
    check_id(id)?;
    let dir = Dir::of(root, id);
    let record = dir.load(id)?;
    Ok((dir, record))
}

/// `create`: the bundle's container, set up, its program waiting for
/// `start`. Writes its first process's pid to `pid_file`.
/// With a terminal in the spec, `console_socket` is where its master goes.
/// Our descriptors 3 to 3+`preserve_fds`-1 stay open in its program.
pub fn create(
    root: &Path,
    id: &str,
    bundle: &Path,
    pid_file: Option<&Path>,
    console_socket: Option<&Path>,
    preserve_fds: u32,
) -> Result<(), OciError> {
    check_id(id)?;
    // The container is cloned from this process: from a protected form of it.
    crate::runtime::container::reexec_protected()?;
    let bundle = std::path::absolute(bundle).map_err(|e| OciError::io("resolve", bundle, e))?;
    let config = bundle.join("config.json");
    let spec = Spec::load(&config).map_err(|source| RuntimeError::LoadSpec { path: config.clone(), source })?;
    let mut plan = Plan::from_spec(&spec, &bundle).map_err(RuntimeError::from)?;
    plan.process.preserve_fds = preserve_fds;
    plan.check_host(crate::runtime::container::selinux_enabled()).map_err(RuntimeError::from)?;
    let spec_hooks = spec.hooks().clone();
    let resources = plan.resources(&spec).map_err(RuntimeError::from)?;
    let console = match (plan.terminal(), console_socket) {
        (true, Some(path)) => Some(
            std::os::unix::net::UnixStream::connect(path)
                .map_err(|e| OciError::io("connect to the console socket", path, e))?,
        ),
        (false, None) => None,
        (true, None) => return Err(OciError::Console("process.terminal is true: give --console-socket")),
        (false, Some(_)) => return Err(OciError::Console("--console-socket needs process.terminal = true")),
    };
    let rootfs = spec.root().as_ref().map(|r| bundle.join(r.path())).unwrap_or_default();
    let cgroups_path = spec.linux().as_ref().and_then(|l| l.cgroups_path().as_ref()).map(|p| p.to_string_lossy());
    let mountinfo = read("/proc/self/mountinfo")?;
    let layout = cgroups::detect(&mountinfo)?;
    let own = cgroups::own_paths(&read("/proc/self/cgroup")?);
    let (manager, name) = cgroups::spec_path::for_spec(&layout, &own, cgroups_path.as_deref(), id)?;

    let dir = Dir::of(root, id);
    make_private_dir(root, false)?;
    match make_private_dir(&dir.0, true) {
        Err(OciError::Io { source, .. }) if source.kind() == std::io::ErrorKind::AlreadyExists => {
            return Err(OciError::Exists(id.to_string()));
        }
        other => other?,
    }
    let made = (|| {
        let record = Record {
            id: id.to_string(),
            bundle: bundle.clone(),
            rootfs,
            created: humantime::format_rfc3339_nanos(std::time::SystemTime::now()).to_string(),
            annotations: spec.annotations().clone().unwrap_or_default().into_iter().collect(),
            name: name.clone(),
            hooks: spec_hooks.clone(),
            no_process: spec.process().is_none(),
        };
        dir.save(&record)?;
        let mut plan = plan;
        if let Ok(serde_json::Value::Object(state)) = serde_json::to_value(dir.state(&record)) {
            plan.set_hook_state(state);
        }
        let fifo = crate::runtime::container::make_fifo(&dir.fifo())?;
        let setup = Setup { name: &name, cgroups: &manager, resources: &resources, run_dir: Some(&dir.0), dir: None };
        let console = console.as_ref().map(std::os::fd::AsFd::as_fd);
        // The hooks of the runtime's namespace that come first, in the
        // spec's order, while the first process waits before pivot_root.
        // One that fails stops it: its program never runs.
        let before_pivot = |pid: nix::unistd::Pid| -> Result<(), RuntimeError> {
            let Some(h) = &spec_hooks else { return Ok(()) };
            let state = State { pid: pid.as_raw(), ..dir.state(&record) }.for_hook(Status::Created);
            hooks::run(h, Point::CreateRuntime, &state)?;
            Ok(hooks::run(h, Point::Prestart, &state)?)
        };
        let container =
            Container::create_at_gate(&setup, &plan, std::os::fd::AsFd::as_fd(&fifo), console, &before_pivot)?;
        let written = match pid_file {
            Some(path) => PidFile::open(path).and_then(|f| f.write(container.pid())).map_err(OciError::from),
            None => Ok(()),
        };
        if let Err(e) = written {
            let _ = container.kill_all();
            let _ = container.destroy();
            return Err(e);
        }
        Ok(())
    })();
    if made.is_err() {
        let _ = std::fs::remove_dir_all(&dir.0);
    }
    made
}

fn read(path: &str) -> Result<String, OciError> {
    std::fs::read_to_string(path).map_err(|e| OciError::io("read", Path::new(path), e))
}

fn make_private_dir(path: &Path, exclusive: bool) -> Result<(), OciError> {
    use std::os::unix::fs::DirBuilderExt;
    let made = std::fs::DirBuilder::new().recursive(!exclusive).mode(0o700).create(path);
    made.map_err(|e| OciError::io("create", path, e))
}

/// `start`: lets a created container's program run, then runs its
/// `poststart` hooks; the hooks that failed (warnings: the container runs).
pub fn start(root: &Path, id: &str) -> Result<Vec<HookError>, OciError> {
    let (dir, record) = loaded(root, id)?;
    let state = dir.state(&record);
    if state.status != Status::Created {
        return Err(OciError::WrongState { id: id.into(), status: state.status, op: "start", wanted: "created" });
    }
    if record.no_process {
        // It can never run: it stops, so that it can be deleted.
        if let Some(c) = dir.container(&record) {
            c.cgroup.kill_all()?;
        }
        let _ = std::fs::remove_file(dir.fifo());
        return Err(OciError::NoProcess(id.into()));
    }
    match crate::runtime::container::open_gate(&dir.fifo(), state.pid, Instant::now() + START_TIMEOUT)? {
        crate::runtime::container::Opened::Started => Ok(match &record.hooks {
            Some(h) => hooks::run_all(h, Point::Poststart, &state.for_hook(Status::Running)),
            None => Vec::new(),
        }),
        crate::runtime::container::Opened::Gone => {
            Err(OciError::WrongState { id: id.into(), status: Status::Stopped, op: "start", wanted: "created" })
        }
    }
}

/// `state`.
pub fn state(root: &Path, id: &str) -> Result<State, OciError> {
    let (dir, record) = loaded(root, id)?;
    Ok(dir.state(&record))
}

/// `list`: every container under the root, by ID.
pub fn list(root: &Path) -> Result<Vec<State>, OciError> {
    let entries = match std::fs::read_dir(root) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(OciError::io("read", root, e)),
    };
    let mut states: Vec<State> = entries
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .filter_map(|id| loaded(root, &id).ok().map(|(dir, record)| dir.state(&record)))
        .collect();
    states.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(states)
}

/// A signal as engines name it: `SIGTERM`, `TERM` or `15`.
pub fn parse_signal(s: &str) -> Result<Signal, OciError> {
    let bad = || OciError::Signal(s.to_string());
    if let Ok(n) = s.parse::<i32>() {
        return Signal::try_from(n).map_err(|_| bad());
    }
    let upper = s.to_ascii_uppercase();
    let name = if upper.starts_with("SIG") { upper } else { format!("SIG{upper}") };
    name.parse().map_err(|_| bad())
}

/// `kill`: `signal` to the first process, or with `all` to every process
/// of the container.
pub fn kill(root: &Path, id: &str, signal: Signal, all: bool) -> Result<(), OciError> {
    let (dir, record) = loaded(root, id)?;
    let state = dir.state(&record);
    let container = dir.container(&record).filter(|_| state.status != Status::Stopped);
    let Some(container) = container else {
        return Err(OciError::WrongState { id: id.into(), status: state.status, op: "kill", wanted: "running" });
    };
    if all {
        for pid in container.cgroup.procs()? {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), signal);
        }
        // A frozen process gets its signal once thawed, as runc does it.
        if state.status == Status::Paused && signal == Signal::SIGKILL {
            container.cgroup.thaw()?;
        }
        return Ok(());
    }
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(state.pid), signal)
        .map_err(|e| RuntimeError::Sys { op: "kill", errno: e })?;
    Ok(())
}

/// `pause` and `resume`.
pub fn pause(root: &Path, id: &str, paused: bool) -> Result<(), OciError> {
    let (dir, record) = loaded(root, id)?;
    let state = dir.state(&record);
    let (op, wanted, from) =
        if paused { ("pause", "running", Status::Running) } else { ("resume", "paused", Status::Paused) };
    let container = dir.container(&record).filter(|_| state.status == from);
    let Some(container) = container else {
        return Err(OciError::WrongState { id: id.into(), status: state.status, op, wanted });
    };
    if paused {
        container.cgroup.freeze()?
    } else {
        container.cgroup.thaw()?
    }
    Ok(())
}

/// `ps`: the pids of the container's processes.
pub fn pids(root: &Path, id: &str) -> Result<Vec<u32>, OciError> {
    let (dir, record) = loaded(root, id)?;
    match dir.container(&record) {
        Some(c) => Ok(c.cgroup.procs()?),
        None => Ok(Vec::new()),
    }
}

/// `delete`: removes a stopped container; with `force`, a created,
/// running or paused one is killed first. Then its `poststop` hooks run;
/// those that failed are returned (warnings: it is deleted).
pub fn delete(root: &Path, id: &str, force: bool) -> Result<Vec<HookError>, OciError> {
    check_id(id)?;
    let dir = Dir::of(root, id);
    let record = match dir.load(id) {
        Ok(r) => r,
        // Made by a create that died before its record: only the directory.
        Err(OciError::NotFound(_)) if dir.0.is_dir() => {
            std::fs::remove_dir_all(&dir.0).map_err(|e| OciError::io("remove", &dir.0, e))?;
            return Ok(Vec::new());
        }
        Err(e) => return Err(e),
    };
    let state = dir.state(&record);
    // A created container is not stopped either (the spec's rule; engines
    // delete one with --force).
    if matches!(state.status, Status::Created | Status::Running | Status::Paused) && !force {
        return Err(OciError::WrongState { id: id.into(), status: state.status, op: "delete", wanted: "stopped" });
    }
    if state.status == Status::Paused {
        // Frozen processes die only once thawed.
        if let Some(c) = dir.container(&record) {
            c.cgroup.thaw()?;
        }
    }
    // Whatever runs of it is killed, then its cgroup and records go: the
    // cleanup after a crash, which also finds a create that died halfway.
    crate::runtime::container::clean_up(&dir.0);
    std::fs::remove_dir_all(&dir.0).map_err(|e| OciError::io("remove", &dir.0, e))?;
    Ok(match &record.hooks {
        Some(h) => hooks::run_all(h, Point::Poststop, &State { pid: 0, ..state }.for_hook(Status::Stopped)),
        None => Vec::new(),
    })
}

/// What `exec` runs.
pub enum Exec {
    /// An engine's process description (`--process FILE`).
    Process(Box<Process>),
    /// A command line's command, the rest from the container.
    Command(Vec<String>, CommandLine),
}

/// `exec`: a process in the running container `id`; its exit code (0 at
/// once with `options.detach`).
pub fn exec(root: &Path, id: &str, what: &Exec, options: &ExecOptions) -> Result<i32, OciError> {
    let (dir, record) = loaded(root, id)?;
    let state = dir.state(&record);
    let container = dir.container(&record).filter(|_| state.status == Status::Running);
    let Some(container) = container else {
        return Err(OciError::WrongState { id: id.into(), status: state.status, op: "exec", wanted: "running" });
    };
    // It joins the container: from a protected form of our binary.
    crate::runtime::container::reexec_protected()?;
    let code = match what {
        Exec::Process(process) => crate::runtime::container::exec_process(&container, process, options)?,
        Exec::Command(args, command) => {
            crate::runtime::container::exec_command(&container, args.clone(), command, options)?
        }
    };
    Ok(code)
}
