//! Creating the container's first process. The parent clones it into its
//! new namespaces, puts it in its cgroup, and only then lets it continue
//! (a byte on the `go` pipe). The child reports a failure before `execve`
//! as a message on a close-on-exec pipe; end-of-file on that pipe means the
//! program was executed.
//!
//! Cloning copies only the calling thread: this must run in a process with
//! no other threads (the `supervisord runtime` command, or a spawner
//! process, never a tokio worker). [`spawn`] checks that.

use std::io::Read;
use std::os::fd::AsFd;

use nix::fcntl::OFlag;
use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::{Pid, pipe2};

use super::RuntimeError;
use super::init;
use super::plan::Plan;
use crate::runtime::cgroups::Cgroup;

fn threads() -> usize {
    std::fs::read_dir("/proc/self/task").map_or(1, |d| d.count())
}

/// Where the container's stdio goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stdio {
    /// Ours: a foreground run.
    Inherit,
    /// stdin from /dev/null; stdout and stderr to pipes the caller reads.
    Pipes,
}

/// A started container: its first process, and its output when piped.
#[derive(Debug)]
pub struct Spawned {
    pub pid: Pid,
    pub stdout: Option<std::fs::File>,
    pub stderr: Option<std::fs::File>,
}

/// Starts the container's first process; returns once its program runs.
pub fn spawn(plan: &Plan, cgroup: Option<&Cgroup>, stdio: Stdio) -> Result<Spawned, RuntimeError> {
    spawn_with(plan, cgroup, stdio, &Options::default())
}

/// How [`spawn_with`] makes the process.
#[derive(Default)]
pub struct Options<'a> {
    /// Make the container our parent's child (`CLONE_PARENT`), not ours:
    /// a helper started by the supervisor creates it, and the supervisor's
    /// reaper then owns its exit.
    pub sibling: bool,
    /// Called with the new process's pid after it is in its cgroup and
    /// before it continues: the supervisor registers the pid with its
    /// reaper here, so that not even an early death goes unseen.
    pub on_cloned: Option<&'a dyn Fn(Pid) -> Result<(), RuntimeError>>,
}

/// [`spawn`], with [`Options`].
pub fn spawn_with(
    plan: &Plan,
    cgroup: Option<&Cgroup>,
    stdio: Stdio,
    options: &Options,
) -> Result<Spawned, RuntimeError> {
    if threads() != 1 {
        return Err(RuntimeError::Setup("containers must be created from a single-threaded process".into()));
    }
    let pipes = match stdio {
        Stdio::Inherit => None,
        Stdio::Pipes => {
            let p = |what| pipe2(OFlag::O_CLOEXEC).map_err(|e| RuntimeError::Setup(format!("{what} pipe: {e}")));
            let null =
                std::fs::File::open("/dev/null").map_err(|e| RuntimeError::Setup(format!("open /dev/null: {e}")))?;
            Some((null, p("stdout")?, p("stderr")?))
        }
    };
    let (go_r, go_w) = pipe2(OFlag::O_CLOEXEC).map_err(|e| RuntimeError::Setup(format!("pipe: {e}")))?;
    let (err_r, err_w) = pipe2(OFlag::O_CLOEXEC).map_err(|e| RuntimeError::Setup(format!("pipe: {e}")))?;
    let mut flags = plan.clone_flags.bits() as libc::c_ulong | libc::SIGCHLD as libc::c_ulong;
    if options.sibling {
        flags |= libc::CLONE_PARENT as libc::c_ulong;
    }
    // SAFETY: a raw clone without a new stack behaves like fork(2); the
    // process is single-threaded (checked above), so the child's copy of
    // the heap and locks is consistent.
    let rc = unsafe { libc::syscall(libc::SYS_clone, flags, 0usize, 0usize, 0usize, 0usize) };
    if rc < 0 {
        return Err(RuntimeError::Setup(format!("clone: {}", std::io::Error::last_os_error())));
    }
    if rc == 0 {
        drop(go_w);
        drop(err_r);
        if let Some((null, (_, out_w), (_, err_pipe_w))) = &pipes {
            use std::os::fd::AsRawFd;
            // SAFETY: dup2 onto stdio of descriptors we hold; the copies
            // do not close on exec.
            unsafe {
                libc::dup2(null.as_raw_fd(), 0);
                libc::dup2(out_w.as_raw_fd(), 1);
                libc::dup2(err_pipe_w.as_raw_fd(), 2);
            }
        }
        let message = init::run(plan, go_r);
        let _ = nix::unistd::write(err_w.as_fd(), message.as_bytes());
        // SAFETY: _exit ends the child without running the parent's atexit
        // handlers or destructors on copied state.
        unsafe { libc::_exit(127) };
    }
    let pid = Pid::from_raw(rc as i32);
    drop(go_r);
    drop(err_w);
    // Keep only the read ends: the container's exit then ends the streams.
    let (stdout, stderr) = match pipes {
        Some((_, (out_r, _), (err_pipe_r, _))) => {
            (Some(std::fs::File::from(out_r)), Some(std::fs::File::from(err_pipe_r)))
        }
        None => (None, None),
    };
    let abort = |why: RuntimeError| {
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
        let _ = waitpid(pid, None);
        why
    };
    if let Some(cg) = cgroup {
        cg.add(pid.as_raw() as u32).map_err(|e| abort(RuntimeError::Cgroup(e)))?;
    }
    if let Some(hook) = options.on_cloned {
        hook(pid).map_err(abort)?;
    }
    nix::unistd::write(go_w.as_fd(), &[1])
        .map_err(|e| abort(RuntimeError::Setup(format!("start the container: {e}"))))?;
    drop(go_w);
    let mut message = String::new();
    let _ = std::fs::File::from(err_r).read_to_string(&mut message);
    if !message.is_empty() {
        let _ = waitpid(pid, None);
        return Err(RuntimeError::Start(message));
    }
    Ok(Spawned { pid, stdout, stderr })
}

/// Waits for `pid`; its exit code, or 128 + the signal that killed it.
pub fn wait_exit(pid: Pid) -> Result<i32, RuntimeError> {
    loop {
        match waitpid(pid, None) {
            Ok(WaitStatus::Exited(_, code)) => return Ok(code),
            Ok(WaitStatus::Signaled(_, sig, _)) => return Ok(128 + sig as i32),
            Ok(_) | Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(RuntimeError::Setup(format!("wait for the container: {e}"))),
        }
    }
}
