//! One container's life, the same for every caller: its cgroup (made and
//! limited), its first process (cloned here, or by the spawn helper for a
//! multi-threaded caller), its state record; then signals, live limits and
//! usage while it runs; and at the end, whether the OOM killer struck and
//! the removal of everything (processes, cgroup, directory, record).

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::sys::signal::Signal;
use nix::unistd::Pid;

use super::RuntimeError;
use super::helper::{Client, Request};
use super::plan::Plan;
use super::process::{Woke, pidfd, wait_exit, wait_or_kill, watch};
use super::spawn::{Options, Output, Stdio, spawn};
use super::state::{ContainerState, ProcessState, start_time};
use crate::runtime::cgroups::{Cgroup, Manager, Resources, Usage};

/// How long removal waits for the kernel to let go of a cgroup.
const REMOVE_TIMEOUT: Duration = Duration::from_secs(10);

/// Where a container lives and what bounds it.
pub struct Setup<'a> {
    /// Its name: its cgroup's and its state record's.
    pub name: &'a str,
    /// Where its cgroup is made.
    pub cgroups: &'a Manager,
    pub resources: &'a Resources,
    /// The run directory that gets its state record (for `exec`, and for
    /// the cleanup after a supervisor that died); none: no record.
    pub run_dir: Option<&'a Path>,
    /// Its own directory (writable layer, mount point), removed with it.
    pub dir: Option<&'a Path>,
}

/// What is removed with the container.
struct Parts {
    name: String,
    cgroup: Cgroup,
    run_dir: Option<PathBuf>,
    dir: Option<PathBuf>,
}

impl Parts {
    /// The record first (with the pid still unknown), then the cgroup: a
    /// container's first process exists only once a record names its
    /// cgroup, so a supervisor killed at any point leaves nothing its
    /// successor's [`super::clean_up`] cannot find.
    fn new(setup: &Setup, process: &ProcessState) -> Result<Parts, RuntimeError> {
        let parts = Parts {
            name: setup.name.to_string(),
            cgroup: setup.cgroups.open_for(setup.name, setup.resources),
            run_dir: setup.run_dir.map(Path::to_path_buf),
            dir: setup.dir.map(Path::to_path_buf),
        };
        if let Some(run_dir) = &parts.run_dir {
            let pending = parts.state(Pid::from_raw(0), process.clone());
            if let Err(e) = pending.save_pending(run_dir) {
                // Its directory is ours from here: nothing else removes it.
                if let Some(dir) = &parts.dir {
                    let _ = std::fs::remove_dir_all(dir);
                }
                let path = ContainerState::pending_path(run_dir, &parts.name);
                return Err(RuntimeError::io("record the container in", path, e));
            }
        }
        if let Err(e) = setup.cgroups.create_for(setup.name, setup.resources) {
            // Nothing can be in it: what was made of it (a v1 hierarchy or
            // two) goes without a kill, with its directory and record.
            let _ = parts.cgroup.remove(Duration::ZERO);
            if let Some(dir) = &parts.dir {
                let _ = std::fs::remove_dir_all(dir);
            }
            if let Some(run_dir) = &parts.run_dir {
                ContainerState::remove(run_dir, &parts.name);
            }
            return Err(e.into());
        }
        if let Err(e) = parts.cgroup.set(setup.resources) {
            parts.remove();
            return Err(e.into());
        }
        Ok(parts)
    }

    fn state(&self, pid: Pid, process: ProcessState) -> ContainerState {
        ContainerState {
            name: self.name.clone(),
            pid: pid.as_raw(),
            start_time: if pid.as_raw() > 0 { start_time(pid.as_raw()).unwrap_or(0) } else { 0 },
            cgroup: self.cgroup.clone(),
            dir: self.dir.clone().unwrap_or_default(),
            process,
        }
    }

    /// Completes the pending record with the first process's pid, which is
    /// in its cgroup and has not run yet (so a successor may kill it by pid
    /// too). A failure leaves the pending record, which names the cgroup.
    fn record_pid(&self, pid: Pid, process: ProcessState) {
        let Some(run_dir) = &self.run_dir else { return };
        if let Err(e) = self.state(pid, process).save_pending(run_dir) {
            tracing::warn!("{}: cannot record the container's pid: {e}", self.name);
        }
    }

    /// Its program runs: the running record (for `exec` and the cleanup)
    /// replaces the pending one.
    fn record(&self, pid: Pid, process: ProcessState) {
        let Some(run_dir) = &self.run_dir else { return };
        match self.state(pid, process).save(run_dir) {
            Ok(()) => {
                let _ = std::fs::remove_file(ContainerState::pending_path(run_dir, &self.name));
            }
            // The pending record stays: the cleanup still finds it.
            Err(e) => tracing::warn!("{}: cannot record the container's state: {e}", self.name),
        }
    }

    /// Everything goes; the first failure is returned, after the rest.
    fn remove(&self) -> Option<RuntimeError> {
        // The pid namespace's init is gone, so the kernel killed the rest;
        // make sure of it (or stop it, when it never ran).
        let _ = self.cgroup.kill_all();
        let mut error = self.cgroup.remove(REMOVE_TIMEOUT).err().map(RuntimeError::Cgroup);
        if let Some(dir) = &self.dir {
            match std::fs::remove_dir_all(dir) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    error = error.or(Some(RuntimeError::io("remove", dir, e)));
                }
                _ => {}
            }
        }
        if let Some(run_dir) = &self.run_dir {
            ContainerState::remove(run_dir, &self.name);
        }
        error
    }
}

/// A created container: its first process runs its program.
pub struct Container {
    parts: Parts,
    pid: Pid,
}

/// What [`Container::destroy`] found and did.
#[derive(Debug)]
pub struct Destroyed {
    /// The kernel's OOM killer killed a process of the container.
    pub oom_killed: bool,
    /// Something could not be removed.
    pub error: Option<RuntimeError>,
}

/// A container made by the spawn helper, in its cgroup, that has not run
/// yet: the caller registers its pid (with its reaper) and puts its network
/// interface in place, then lets it go.
pub struct Pending {
    parts: Parts,
    pid: Pid,
    client: Client,
    process: ProcessState,
}

impl Container {
    /// Creates the container from this process, which must be
    /// single-threaded (a foreground `runtime` command). Returns once its
    /// program runs; with [`Stdio::Pipes`], its output.
    pub fn create(setup: &Setup, plan: &Plan, stdio: Stdio) -> Result<(Container, Option<Output>), RuntimeError> {
        Container::create_with(setup, plan, stdio, &Options::default())
    }

    /// [`Container::create`], but its first process stops at the start
    /// gate of `fifo` (see `gate`) once set up: returns then, with stdio
    /// ours (or, with `console`, a terminal it sends to that socket). Its
    /// record says it runs; the FIFO tells it is only created.
    pub fn create_at_gate(
        setup: &Setup,
        plan: &Plan,
        fifo: BorrowedFd,
        console: Option<BorrowedFd>,
        before_pivot: &dyn Fn(Pid) -> Result<(), RuntimeError>,
    ) -> Result<Container, RuntimeError> {
        let options = Options { gate: Some(fifo), console, before_pivot: Some(before_pivot), ..Options::default() };
        Ok(Container::create_with(setup, plan, Stdio::Inherit, &options)?.0)
    }

    fn create_with(
        setup: &Setup,
        plan: &Plan,
        stdio: Stdio,
        options: &Options,
    ) -> Result<(Container, Option<Output>), RuntimeError> {
        let process = ProcessState::of(&plan.process);
        let parts = Parts::new(setup, &process)?;
        match spawn(plan, &parts.cgroup, stdio, options) {
            Ok((pid, output)) => {
                parts.record(pid, process);
                Ok((Container { parts, pid }, output))
            }
            Err(e) => {
                parts.remove();
                Err(e)
            }
        }
    }

    /// Creates the container through the spawn helper `helper` (our own
    /// binary, `runtime spawn`), for a multi-threaded caller: the container
    /// becomes the caller's child, with `stdout` and `stderr` as its
    /// output. It waits for [`Pending::go`].
    pub fn spawn_by_helper(
        setup: &Setup,
        plan: &Plan,
        helper: &Path,
        stdout: OwnedFd,
        stderr: OwnedFd,
    ) -> Result<Pending, RuntimeError> {
        let process = ProcessState::of(&plan.process);
        let parts = Parts::new(setup, &process)?;
        let request = Request { plan: plan.clone(), cgroup: parts.cgroup.clone() };
        match Client::start(helper, &request, stdout, stderr) {
            Ok((client, pid)) => {
                // It is in its cgroup and waits for our go.
                parts.record_pid(pid, process.clone());
                Ok(Pending { parts, pid, client, process })
            }
            Err(e) => {
                parts.remove();
                Err(e)
            }
        }
    }

    /// The container a state record in `run_dir` describes (left by a
    /// supervisor that died), to be destroyed like any other.
    pub(crate) fn recorded(run_dir: &Path, state: ContainerState) -> Container {
        let dir = Some(state.dir).filter(|d| !d.as_os_str().is_empty());
        let parts = Parts { name: state.name, cgroup: state.cgroup, run_dir: Some(run_dir.to_path_buf()), dir };
        Container { parts, pid: Pid::from_raw(state.pid) }
    }

    pub fn name(&self) -> &str {
        &self.parts.name
    }

    /// Its first process.
    pub fn pid(&self) -> i32 {
        self.pid.as_raw()
    }

    pub fn cgroup(&self) -> &Cgroup {
        &self.parts.cgroup
    }

    /// Sends `signal` to its first process.
    pub fn signal(&self, signal: Signal) -> Result<(), RuntimeError> {
        nix::sys::signal::kill(self.pid, signal).map_err(|e| RuntimeError::sys("kill", e))
    }

    /// SIGKILL to every process of it.
    pub fn kill_all(&self) -> Result<(), RuntimeError> {
        Ok(self.parts.cgroup.kill_all()?)
    }

    /// Applies new limits while it runs.
    pub fn set(&self, resources: &Resources) -> Result<(), RuntimeError> {
        Ok(self.parts.cgroup.set(resources)?)
    }

    pub fn usage(&self) -> Usage {
        self.parts.cgroup.usage()
    }

    /// Waits for its first process to end (made by [`Container::create`]:
    /// our child); its exit code, or 128 + the signal that ended it.
    pub fn wait(&self) -> Result<i32, RuntimeError> {
        wait_exit(self.pid)
    }

    /// [`Container::wait`], with stop escalation: once `stop_requested`
    /// becomes readable (its stop signal went to it), it has `timeout` to
    /// end before every process of it is killed.
    pub fn wait_stopping(&self, stop_requested: BorrowedFd, timeout: Duration) -> Result<i32, RuntimeError> {
        let fd = pidfd(self.pid)?;
        if watch(fd.as_fd(), Some(stop_requested), None) == Woke::Other {
            let kill = || {
                let _ = self.kill_all();
            };
            return Ok(wait_or_kill(self.pid, timeout, kill)?.0);
        }
        wait_exit(self.pid)
    }

    /// After its first process ended: whether the OOM killer struck, then
    /// nothing of it left.
    pub fn destroy(self) -> Destroyed {
        let oom_killed = self.parts.cgroup.oom_kills() > 0;
        let error = self.parts.remove();
        Destroyed { oom_killed, error }
    }
}

impl Pending {
    pub fn pid(&self) -> i32 {
        self.pid.as_raw()
    }

    /// Lets it run; returns once its program runs.
    pub fn go(self) -> Result<Container, RuntimeError> {
        let Pending { parts, pid, client, process } = self;
        match client.go() {
            Ok(()) => {
                parts.record(pid, process);
                Ok(Container { parts, pid })
            }
            Err(e) => {
                parts.remove();
                Err(e)
            }
        }
    }

    /// It must not run: the helper kills it (it sees the caller go away),
    /// and everything of it is removed.
    pub fn abort(self) {
        let Pending { parts, client, .. } = self;
        drop(client);
        parts.remove();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn process() -> ProcessState {
        ProcessState::for_tests()
    }

    #[test]
    fn the_record_names_the_cgroup_before_the_first_process_exists() {
        let t = tempfile::tempdir().unwrap();
        let (base, run, layer) = (t.path().join("cg"), t.path().join("run"), t.path().join("layer"));
        std::fs::create_dir(&base).unwrap();
        std::fs::create_dir(&layer).unwrap();
        let cgroups = Manager::V2(base.clone());
        let resources = Resources::default();
        let setup =
            Setup { name: "web", cgroups: &cgroups, resources: &resources, run_dir: Some(&run), dir: Some(&layer) };
        let parts = Parts::new(&setup, &process()).unwrap();
        // Not running yet: `exec` and the rest do not see it.
        assert!(matches!(ContainerState::load(&run, "web"), Err(RuntimeError::NotRunning(_))));
        let read = |p: PathBuf| serde_json::from_slice::<ContainerState>(&std::fs::read(p).unwrap()).unwrap();
        let pending = read(ContainerState::pending_path(&run, "web"));
        assert_eq!((pending.pid, &pending.cgroup, &pending.dir), (0, &Cgroup::V2(base.join("web")), &layer));
        assert!(!pending.alive(), "a pending record is never alive (pid 0 is never signalled)");
        assert!(base.join("web").is_dir());
        let me = Pid::from_raw(std::process::id() as i32);
        parts.record_pid(me, process());
        assert_eq!(read(ContainerState::pending_path(&run, "web")).pid, me.as_raw());
        assert!(matches!(ContainerState::load(&run, "web"), Err(RuntimeError::NotRunning(_))));
        parts.record(me, process());
        let recorded = ContainerState::load(&run, "web").unwrap();
        assert_eq!(recorded.pid, me.as_raw());
        assert!(recorded.alive());
        assert!(!ContainerState::pending_path(&run, "web").exists());
    }

    #[test]
    fn a_container_whose_cgroup_cannot_be_made_leaves_no_record_and_no_directory() {
        let t = tempfile::tempdir().unwrap();
        let (base, run, layer) = (t.path().join("cg"), t.path().join("run"), t.path().join("layer"));
        // A file where the cgroup's parent should be: mkdir fails.
        std::fs::write(&base, "").unwrap();
        std::fs::create_dir(&layer).unwrap();
        let cgroups = Manager::V2(base);
        let resources = Resources::default();
        let setup =
            Setup { name: "web", cgroups: &cgroups, resources: &resources, run_dir: Some(&run), dir: Some(&layer) };
        assert!(matches!(Parts::new(&setup, &process()), Err(RuntimeError::Cgroup(_))));
        assert!(!ContainerState::pending_path(&run, "web").exists());
        assert!(!layer.exists());
    }
}
