//! The raw edge of process creation, shared by the container's first
//! process and `exec`: a fork-like `clone` whose child reports, on a
//! close-on-exec pipe, why it could not execute its program (end-of-file
//! means it did); waiting for a process, with or without a deadline.
//!
//! Cloning copies only the calling thread: callers run in a process with no
//! other threads.

use std::io::Read;
use std::os::fd::{AsFd, BorrowedFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{Signal, kill};
use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::{Pid, pipe2};

use super::InitError;
use super::RuntimeError;

/// A cloned child that has not yet reported whether its program runs.
pub(crate) struct Cloned {
    pub(crate) pid: Pid,
    report: OwnedFd,
}

/// Clones a child (`flags`: namespaces and `CLONE_*` options; SIGCHLD is
/// added) that runs `child`, which returns only with the reason its program
/// could not be executed.
pub(crate) fn clone_reporting(flags: libc::c_ulong, child: impl FnOnce() -> InitError) -> Result<Cloned, RuntimeError> {
    let (report_r, report_w) = pipe2(OFlag::O_CLOEXEC).map_err(|e| RuntimeError::sys("pipe", e))?;
    let pid = raw_clone(flags).map_err(|e| RuntimeError::sys("clone", e))?;
    if pid == 0 {
        drop(report_r);
        report_and_exit(report_w, child);
    }
    drop(report_w);
    Ok(Cloned { pid: Pid::from_raw(pid), report: report_r })
}

/// As [`clone_reporting`], the child made (as our child: `CLONE_PARENT`)
/// by a short-lived process that first enters the user namespace `user`:
/// the namespaces `flags` make are then owned by that one, whose root the
/// child can become. That process also enters the pid namespace `pid_ns`
/// for the child: its own stays ours, so the pid it reports is ours too.
pub(crate) fn clone_reporting_in(
    user: BorrowedFd,
    pid_ns: Option<BorrowedFd>,
    flags: libc::c_ulong,
    child: impl FnOnce() -> InitError,
) -> Result<Cloned, RuntimeError> {
    let (report_r, report_w) = pipe2(OFlag::O_CLOEXEC).map_err(|e| RuntimeError::sys("pipe", e))?;
    let (pid_r, pid_w) = pipe2(OFlag::O_CLOEXEC).map_err(|e| RuntimeError::sys("pipe", e))?;
    let middle = raw_clone(0).map_err(|e| RuntimeError::sys("clone", e))?;
    if middle == 0 {
        drop((report_r, pid_r));
        // The new child's pid, or minus the errno of what failed.
        let entered = nix::sched::setns(user, nix::sched::CloneFlags::CLONE_NEWUSER)
            .and_then(|()| pid_ns.map_or(Ok(()), |fd| nix::sched::setns(fd, nix::sched::CloneFlags::CLONE_NEWPID)));
        let pid = match entered {
            Err(e) => -(e as i32),
            Ok(()) => match raw_clone(flags | libc::CLONE_PARENT as libc::c_ulong) {
                Ok(0) => {
                    drop(pid_w);
                    report_and_exit(report_w, child)
                }
                Ok(pid) => pid,
                Err(e) => -(e as i32),
            },
        };
        let _ = nix::unistd::write(pid_w.as_fd(), &pid.to_ne_bytes());
        // SAFETY: as in report_and_exit: nothing of the parent's runs here.
        unsafe { libc::_exit(0) };
    }
    drop((report_w, pid_w));
    let mut bytes = [0u8; 4];
    let read = std::fs::File::from(pid_r).read_exact(&mut bytes);
    let _ = waitpid(Pid::from_raw(middle), None);
    match (read, i32::from_ne_bytes(bytes)) {
        (Ok(()), pid) if pid > 0 => Ok(Cloned { pid: Pid::from_raw(pid), report: report_r }),
        (Ok(()), errno) => Err(RuntimeError::sys("enter the user namespace and clone in it", Errno::from_raw(-errno))),
        (Err(_), _) => Err(RuntimeError::sys("enter the user namespace and clone in it", Errno::EIO)),
    }
}

/// A fork-like `clone` with `flags` (SIGCHLD added): 0 in the child.
fn raw_clone(flags: libc::c_ulong) -> Result<i32, Errno> {
    // SAFETY: a raw clone without a new stack behaves like fork(2); every
    // caller is single-threaded (checked by them), so the child's copy of
    // the heap and of every lock is consistent.
    let rc = unsafe {
        libc::syscall(libc::SYS_clone, flags | libc::SIGCHLD as libc::c_ulong, 0usize, 0usize, 0usize, 0usize)
    };
    if rc < 0 { Err(Errno::last()) } else { Ok(rc as i32) }
}

/// In the child: runs `child` and reports why it could not execute its
/// program on `report`, then exits.
fn report_and_exit(report: OwnedFd, child: impl FnOnce() -> InitError) -> ! {
    let error = child();
    let bytes = serde_json::to_vec(&error).unwrap_or_default();
    // Past a start gate, whoever created us may be gone: the reason
    // then goes to our stderr (the engine's log of the container).
    // SAFETY: SIG_IGN installs no handler; we exit right after.
    let _ = unsafe { nix::sys::signal::signal(Signal::SIGPIPE, nix::sys::signal::SigHandler::SigIgn) };
    if nix::unistd::write(report.as_fd(), &bytes).is_err() {
        let _ = nix::unistd::write(std::io::stderr(), format!("{error}\n").as_bytes());
    }
    // SAFETY: _exit(2) ends the child at once, without running the
    // parent's atexit handlers or destructors on state it copied.
    unsafe { libc::_exit(127) };
}

impl Cloned {
    /// Waits until the child has executed its program, or reaps it and
    /// returns why it could not.
    pub(crate) fn executed(self) -> Result<Pid, RuntimeError> {
        let mut bytes = Vec::new();
        let _ = std::fs::File::from(self.report).read_to_end(&mut bytes);
        if bytes.is_empty() {
            return Ok(self.pid);
        }
        let _ = waitpid(self.pid, None);
        Err(RuntimeError::Start(serde_json::from_slice(&bytes).unwrap_or(InitError::Abandoned)))
    }

    /// Waits until the child is set up and waits at its start gate (a byte
    /// on `ready`), or reaps it and returns why it could not get there.
    pub(crate) fn at_gate(self, ready: OwnedFd) -> Result<Pid, RuntimeError> {
        Ok(self.reached(ready.as_fd())?.pid)
    }

    /// Waits until the child says it reached a point of its setup (a byte
    /// on `ready`), or reaps it and returns why it could not get there.
    pub(crate) fn reached(self, ready: BorrowedFd) -> Result<Cloned, RuntimeError> {
        let mut byte = [0u8; 1];
        loop {
            match nix::unistd::read(ready, &mut byte) {
                Ok(1) => return Ok(self),
                Err(Errno::EINTR) => continue,
                // It ended (or closed its end) without getting there.
                _ => return self.executed().and(Err(RuntimeError::Start(InitError::Abandoned))),
            }
        }
    }

    /// Kills and reaps the child: it must not run.
    pub(crate) fn abort(self) {
        let _ = kill(self.pid, Signal::SIGKILL);
        let _ = waitpid(self.pid, None);
    }
}

/// Waits for our child `pid`; its exit code, or 128 + the signal that
/// killed it.
pub(crate) fn wait_exit(pid: Pid) -> Result<i32, RuntimeError> {
    loop {
        match waitpid(pid, None) {
            Ok(WaitStatus::Exited(_, code)) => return Ok(code),
            Ok(WaitStatus::Signaled(_, sig, _)) => return Ok(128 + sig as i32),
            Ok(_) | Err(Errno::EINTR) => continue,
            Err(e) => return Err(RuntimeError::sys("wait for the container", e)),
        }
    }
}

/// A descriptor that becomes readable when `pid` ends.
pub(crate) fn pidfd(pid: Pid) -> Result<OwnedFd, RuntimeError> {
    // SAFETY: pidfd_open(2) takes two integers and returns a new descriptor
    // or -1; nothing else is touched.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid.as_raw(), 0) };
    if fd < 0 {
        return Err(RuntimeError::sys("pidfd_open", Errno::last()));
    }
    // SAFETY: the kernel just gave us this descriptor; nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// What ended a [`watch`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Woke {
    Exited,
    Other,
    TimedOut,
}

/// Waits until the process of `pidfd` ends, `other` becomes readable, or
/// `deadline` passes.
pub(crate) fn watch(pidfd: BorrowedFd, other: Option<BorrowedFd>, deadline: Option<Instant>) -> Woke {
    loop {
        let timeout = match deadline {
            None => PollTimeout::NONE,
            Some(d) => {
                let left = d.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Woke::TimedOut;
                }
                PollTimeout::try_from(left.as_millis().clamp(1, i32::MAX as u128) as i32).unwrap_or(PollTimeout::MAX)
            }
        };
        let mut fds = vec![PollFd::new(pidfd, PollFlags::POLLIN)];
        if let Some(o) = other {
            fds.push(PollFd::new(o, PollFlags::POLLIN));
        }
        match poll(&mut fds, timeout) {
            Ok(0) => continue,
            Ok(_) => {
                let ready = |f: &PollFd| f.revents().is_some_and(|r| !r.is_empty());
                if ready(&fds[0]) {
                    return Woke::Exited;
                }
                return Woke::Other;
            }
            Err(Errno::EINTR) => continue,
            // A descriptor we cannot poll: waiting is all that is left.
            Err(_) => return Woke::Exited,
        }
    }
}

/// Stop escalation, the one way: `pid` has been asked to stop; wait up to
/// `timeout` for it to end, else `kill` (SIGKILL to all of it), then reap
/// it. Its status, and whether it had to be killed.
pub(crate) fn wait_or_kill(pid: Pid, timeout: Duration, kill: impl FnOnce()) -> Result<(i32, bool), RuntimeError> {
    let killed = match pidfd(pid) {
        Ok(fd) => watch(fd.as_fd(), None, Some(Instant::now() + timeout)) == Woke::TimedOut,
        Err(_) => true,
    };
    if killed {
        kill();
    }
    Ok((wait_exit(pid)?, killed))
}
