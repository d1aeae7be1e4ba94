//! Creating the container's first process. The parent clones it into its
//! new namespaces, puts it in its cgroup, and only then lets it continue
//! (a byte on the `go` pipe). The child reports a failure before `execve`
//! on a close-on-exec pipe; end-of-file on that pipe means the program was
//! executed (see [`super::process`]).
//!
//! Cloning copies only the calling thread: this must run in a process with
//! no other threads (the `supervisord runtime` command, or the spawn
//! helper, never a tokio worker). [`spawn`] checks that.

use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use nix::fcntl::OFlag;
use nix::unistd::{Pid, pipe2};

use super::RuntimeError;
use super::gate::Gate;
use super::init;
use super::plan::Plan;
use super::process::{Cloned, clone_reporting, clone_reporting_in};
use crate::runtime::cgroups::Cgroup;

fn threads() -> usize {
    std::fs::read_dir("/proc/self/task").map_or(1, |d| d.count())
}

/// Where the container's stdio goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stdio {
    /// Ours: a foreground run, or the spawn helper's (the caller's pipes).
    Inherit,
    /// stdin from /dev/null; stdout and stderr to pipes the caller reads.
    Pipes,
}

/// The read ends of a container's stdout and stderr ([`Stdio::Pipes`]).
#[derive(Debug)]
pub struct Output {
    pub stdout: File,
    pub stderr: File,
}

/// How [`spawn`] makes the process.
#[derive(Default)]
pub(crate) struct Options<'a> {
    /// Make the container our parent's child (`CLONE_PARENT`), not ours:
    /// the spawn helper creates it, and the supervisor's reaper then owns
    /// its exit.
    pub(crate) sibling: bool,
    /// Called with the new process's pid after it is in its cgroup and
    /// before it continues: the supervisor registers the pid with its
    /// reaper here, so that not even an early death goes unseen.
    pub(crate) on_cloned: Option<&'a dyn Fn(Pid) -> Result<(), RuntimeError>>,
    /// Stop at the start gate (an `O_PATH` descriptor of its FIFO) once
    /// set up: [`spawn`] returns then, before the program runs.
    pub(crate) gate: Option<BorrowedFd<'a>>,
    /// The engine's console socket (connected), for a plan with a terminal.
    pub(crate) console: Option<BorrowedFd<'a>>,
    /// With a gate, for a plan whose process pauses before `pivot_root`
    /// ([`super::hooks::InContainer::pause`]): called with its pid then;
    /// an error stops it there.
    pub(crate) before_pivot: Option<&'a dyn Fn(Pid) -> Result<(), RuntimeError>>,
}

/// Starts the container's first process; returns once its program runs.
pub(crate) fn spawn(
    plan: &Plan,
    cgroup: &Cgroup,
    stdio: Stdio,
    options: &Options,
) -> Result<(Pid, Option<Output>), RuntimeError> {
    if threads() != 1 {
        return Err(RuntimeError::Threads);
    }
    // Until it executes its program, the child runs ours, visible to the
    // container as /proc/PID/exe.
    if !super::sealed::runs_protected() {
        return Err(RuntimeError::NotSealed);
    }
    let pipes = match stdio {
        Stdio::Inherit => None,
        Stdio::Pipes => {
            let p = || pipe2(OFlag::O_CLOEXEC).map_err(|e| RuntimeError::sys("pipe", e));
            let null = File::open("/dev/null").map_err(|e| RuntimeError::io("open", "/dev/null", e))?;
            Some((null, p()?, p()?))
        }
    };
    let open = |path: &std::path::Path| File::open(path).map_err(|e| RuntimeError::io("open", path, e));
    // A pid namespace is entered for our children: the container is cloned
    // into it (after the user namespace, by the process that enters that).
    let pid_ns = plan.join.iter().find(|j| j.flag == libc::CLONE_NEWPID).map(|j| open(&j.path)).transpose()?;
    let user = plan.join_user.as_deref().map(open).transpose()?;
    if let (Some(fd), None) = (&pid_ns, &user) {
        nix::sched::setns(fd, nix::sched::CloneFlags::CLONE_NEWPID)
            .map_err(|e| RuntimeError::sys("join the pid namespace", e))?;
    }
    let (go_r, go_w) = pipe2(OFlag::O_CLOEXEC).map_err(|e| RuntimeError::sys("pipe", e))?;
    let ready = match options.gate {
        Some(_) => Some(pipe2(OFlag::O_CLOEXEC).map_err(|e| RuntimeError::sys("pipe", e))?),
        None => None,
    };
    let console_fd = options.console.map(|c| c.as_raw_fd());
    let gate_fds = options.gate.map(|fifo| fifo.as_raw_fd()).zip(ready.as_ref().map(|(_, w)| w.as_raw_fd()));
    let mut flags = plan.clone_flags.bits() as libc::c_ulong;
    if options.sibling {
        flags |= libc::CLONE_PARENT as libc::c_ulong;
    }
    let go_w_raw = go_w.as_raw_fd();
    let stdio_fds = pipes.as_ref().map(|(null, (_, out_w), (_, err_w))| (null.as_fd(), out_w.as_fd(), err_w.as_fd()));
    let child = move || {
        // Our copy of the parent's end: the parent's going away must end
        // our wait for it.
        // SAFETY: in the child, `go_w_raw` is our copy of the parent's
        // write end, which nothing in the child uses.
        unsafe { libc::close(go_w_raw) };
        if let Some((null, out, err)) = stdio_fds {
            // The copies on 0-2 do not close on exec.
            let _ = nix::unistd::dup2_stdin(null);
            let _ = nix::unistd::dup2_stdout(out);
            let _ = nix::unistd::dup2_stderr(err);
        }
        // SAFETY: in the child, these are our copies of descriptors the
        // parent keeps open until we are cloned; nothing else here owns them.
        let gate = gate_fds.map(|(fifo, ready)| unsafe {
            Gate { fifo: OwnedFd::from_raw_fd(fifo), ready: OwnedFd::from_raw_fd(ready) }
        });
        // SAFETY: as above, our copy of the caller's console socket.
        let console = console_fd.map(|fd| unsafe { OwnedFd::from_raw_fd(fd) });
        init::run(plan, go_r, gate, console)
    };
    let child = match &user {
        Some(ns) => clone_reporting_in(ns.as_fd(), pid_ns.as_ref().map(|f| f.as_fd()), flags, child)?,
        None => clone_reporting(flags, child)?,
    };
    let pid = child.pid;
    // Keep only the read ends: the container's exit then ends the streams.
    let output =
        pipes.map(|(_, (out_r, _), (err_r, _))| Output { stdout: File::from(out_r), stderr: File::from(err_r) });
    // A new user namespace gets its maps before the child goes on (it
    // waits for our byte): only a process outside it may write them.
    let mapped = write_id_maps(pid, plan);
    let cloned =
        mapped.and_then(|()| cgroup.add(pid.as_raw() as u32).map_err(RuntimeError::Cgroup)).and_then(
            |()| match options.on_cloned {
                Some(hook) => hook(pid),
                None => Ok(()),
            },
        );
    if let Err(e) = cloned {
        child.abort();
        return Err(e);
    }
    if let Err(e) = nix::unistd::write(go_w.as_fd(), &[1]) {
        child.abort();
        return Err(RuntimeError::sys("start the container", e));
    }
    match ready {
        Some((ready_r, ready_w)) => {
            drop(ready_w);
            let child = match plan.hooks.pause {
                true => paused(child, ready_r.as_fd(), go_w, options.before_pivot)?,
                false => child,
            };
            child.at_gate(ready_r)?;
        }
        None => {
            child.executed()?;
        }
    }
    Ok((pid, output))
}

/// The child has stopped before `pivot_root` (a byte on `ready`): runs
/// `before_pivot`, then lets it go on (a second byte on `go`).
fn paused(
    child: Cloned,
    ready: BorrowedFd,
    go: OwnedFd,
    before_pivot: Option<&dyn Fn(Pid) -> Result<(), RuntimeError>>,
) -> Result<Cloned, RuntimeError> {
    let child = child.reached(ready)?;
    if let Err(e) = before_pivot.map_or(Ok(()), |f| f(child.pid)) {
        child.abort();
        return Err(e);
    }
    if let Err(e) = nix::unistd::write(go.as_fd(), &[1]) {
        child.abort();
        return Err(RuntimeError::sys("let the container go on", e));
    }
    Ok(child)
}

/// Writes the uid and gid maps of the child's new user namespace, if any.
fn write_id_maps(pid: Pid, plan: &Plan) -> Result<(), RuntimeError> {
    for (file, map) in [("uid_map", &plan.uid_map), ("gid_map", &plan.gid_map)] {
        if map.is_empty() {
            continue;
        }
        let text: String = map.iter().map(|(inside, outside, size)| format!("{inside} {outside} {size}\n")).collect();
        let path = format!("/proc/{}/{file}", pid.as_raw());
        // One write: the kernel takes a map only whole, and only once.
        std::fs::write(&path, text).map_err(|e| RuntimeError::io("write", path, e))?;
    }
    Ok(())
}
