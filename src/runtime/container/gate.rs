//! The start gate: how a container is created now and started later, as
//! the OCI runtime's `create` and `start` split it (runc's exec fifo).
//!
//! `create` makes a FIFO in the container's state directory and hands the
//! first process an `O_PATH` descriptor of it and the write end of a
//! `ready` pipe. The process does its whole setup (mounts, `pivot_root`,
//! user, capabilities, working directory), says so on `ready`, and opens
//! the FIFO for writing through `/proc/self/fd/N`, which blocks until
//! `start` opens it for reading. Only then does it install a
//! `no_new_privs` seccomp filter and execute its program. `create` returns
//! once `ready` has its byte, or with the reason the process could not get
//! there; `start` returns once the process has passed the gate and executed
//! its program (the FIFO's write end closes on exec), so that a signal sent
//! right after `start` finds the program, not our setup.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::Path;
use std::time::Instant;

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::stat::Mode;

use super::RuntimeError;
use super::init_error::InitError;
use super::process::{Woke, pidfd, watch};

/// The first process's side of the gate.
pub(crate) struct Gate {
    /// Write end: one byte once the setup is done.
    pub(crate) ready: OwnedFd,
    /// `O_PATH` descriptor of the FIFO.
    pub(crate) fifo: OwnedFd,
}

impl Gate {
    /// Says the setup stopped for the parent (see
    /// [`super::hooks::InContainer::pause`]); the caller then waits for its
    /// byte on `go`.
    pub(crate) fn pause(&self) {
        let _ = nix::unistd::write(self.ready.as_fd(), b"h");
    }

    /// Says the setup is done, then waits for `start`. Returns the FIFO's
    /// write end (close-on-exec): kept open until `execve`, its closing
    /// tells `start` that the program runs.
    pub(crate) fn wait(self) -> Result<OwnedFd, InitError> {
        let Gate { ready, fifo } = self;
        let _ = nix::unistd::write(ready.as_fd(), &[1]);
        drop(ready);
        // Reopened through our own descriptor: the FIFO's directory (the
        // host's) is out of reach after pivot_root, and a process may
        // always open its own /proc/self/fd entries.
        let path = format!("/proc/self/fd/{}", fifo.as_raw_fd());
        let opened = nix::fcntl::open(path.as_str(), OFlag::O_WRONLY | OFlag::O_CLOEXEC, Mode::empty())
            .map_err(|e| InitError::Sys { op: "wait for start: open the exec fifo".into(), errno: e as i32 })?;
        nix::unistd::write(opened.as_fd(), b"0")
            .map_err(|e| InitError::Sys { op: "wait for start: write the exec fifo".into(), errno: e as i32 })?;
        Ok(opened)
    }
}

/// Makes the FIFO at `path` (writable by anyone, as runc's: the process
/// may open it after it changed its user; its directory keeps others out).
pub(crate) fn make_fifo(path: &Path) -> Result<OwnedFd, RuntimeError> {
    nix::unistd::mkfifo(path, Mode::from_bits_truncate(0o622)).map_err(|e| RuntimeError::sys("mkfifo", e))?;
    // mkfifo applies the umask.
    nix::sys::stat::fchmodat(
        nix::fcntl::AT_FDCWD,
        path,
        Mode::from_bits_truncate(0o622),
        nix::sys::stat::FchmodatFlags::FollowSymlink,
    )
    .map_err(|e| RuntimeError::sys("chmod the exec fifo", e))?;
    nix::fcntl::open(path, OFlag::O_PATH | OFlag::O_CLOEXEC, Mode::empty())
        .map_err(|e| RuntimeError::io("open", path, std::io::Error::from(e)))
}

/// What [`open`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum Opened {
    /// The process passed the gate: its program runs (or is being run).
    Started,
    /// The process ended while waiting.
    Gone,
}

/// `start`: opens the gate of the waiting process `pid` through the FIFO at
/// `path`, and removes the FIFO. Waits at most until `deadline`.
pub fn open(path: &Path, pid: i32, deadline: Instant) -> Result<Opened, RuntimeError> {
    // The process first: once the FIFO is open it may run, end and be
    // reaped by its engine at once, and its pid would name nothing.
    let Ok(process) = pidfd(nix::unistd::Pid::from_raw(pid)) else {
        let _ = std::fs::remove_file(path);
        return Ok(Opened::Gone);
    };
    // Non-blocking for the open itself: a reader never waits for a writer.
    let fifo = nix::fcntl::open(path, OFlag::O_RDONLY | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC, Mode::empty())
        .map_err(|e| RuntimeError::io("open", path, std::io::Error::from(e)))?;
    let passed = |fifo: &OwnedFd| nix::unistd::read(fifo.as_fd(), &mut [0u8; 1]) == Ok(1);
    let result = loop {
        let mut byte = [0u8; 1];
        match nix::unistd::read(fifo.as_fd(), &mut byte) {
            Ok(1) => break Opened::Started,
            // No writer yet (0: none has opened it; EAGAIN: it opened and
            // has not written): wait for the process, or time out.
            Ok(_) | Err(Errno::EAGAIN) => {}
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(RuntimeError::sys("read the exec fifo", e)),
        }
        // Linux reports a hang-up on a FIFO only once a writer that came
        // after our open has gone: until the process opens it, this sleeps.
        match watch(process.as_fd(), Some(fifo.as_fd()), Some(deadline)) {
            // It may have passed the gate and ended since the read.
            Woke::Exited if passed(&fifo) => break Opened::Started,
            Woke::Exited => break Opened::Gone,
            Woke::TimedOut => {
                return Err(RuntimeError::sys("wait for the container at its start gate", Errno::ETIMEDOUT));
            }
            Woke::Other => {}
        }
    };
    if result == Opened::Started {
        // Until its program runs: end-of-file once execve closed the write
        // end, or it ended.
        loop {
            match nix::unistd::read(fifo.as_fd(), &mut [0u8; 1]) {
                Ok(0) => break,
                Ok(_) | Err(Errno::EINTR) => continue,
                Err(Errno::EAGAIN) => {}
                Err(e) => return Err(RuntimeError::sys("read the exec fifo", e)),
            }
            match watch(process.as_fd(), Some(fifo.as_fd()), Some(deadline)) {
                Woke::Exited => break,
                Woke::TimedOut => {
                    return Err(RuntimeError::sys("wait for the container to run its program", Errno::ETIMEDOUT));
                }
                Woke::Other => {}
            }
        }
    }
    let _ = std::fs::remove_file(path);
    Ok(result)
}
