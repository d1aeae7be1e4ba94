//! `exec`: a new process in a running container: in all of its namespaces
//! and its cgroup, with its user, capabilities, `no_new_privs`, seccomp
//! filter, environment and working directory.
//!
//! The joining process makes itself non-dumpable before it enters the
//! container, so that the container's processes cannot reach its memory or
//! `/proc/PID/exe` (our binary) while it is there (the CVE-2019-5736
//! class); it replaces itself with the command right after.

use std::os::fd::{AsFd, OwnedFd};

use nix::fcntl::{OFlag, open};
use nix::sched::{CloneFlags, setns};
use nix::sys::stat::Mode;

use super::RuntimeError;
use super::init;
use super::process::{clone_reporting, wait_exit, wait_or_kill};
use super::state::ContainerState;

/// A pseudo-terminal: the master stays with us, the slave becomes the
/// command's controlling terminal and stdio.
struct Pty {
    master: std::os::fd::OwnedFd,
    slave: std::os::fd::OwnedFd,
}

fn open_pty() -> Result<Pty, RuntimeError> {
    use std::os::fd::FromRawFd;
    let (mut master, mut slave) = (-1, -1);
    // Our own terminal's size, when we have one.
    let mut size = libc::winsize { ws_row: 0, ws_col: 0, ws_xpixel: 0, ws_ypixel: 0 };
    // Asked of our output too: without -i our stdin is /dev/null by now.
    // SAFETY: TIOCGWINSZ writes one winsize we own; failure leaves it zero.
    let have_size = [0, 1, 2].into_iter().any(|fd| unsafe { libc::ioctl(fd, libc::TIOCGWINSZ, &mut size) } == 0);
    let size_ptr = if have_size { &size as *const libc::winsize } else { std::ptr::null() };
    // SAFETY: openpty writes two descriptors into integers we own; the
    // name buffer and termios may be null, and `size_ptr` is null or points
    // to `size`, which outlives the call.
    let rc = unsafe { libc::openpty(&mut master, &mut slave, std::ptr::null_mut(), std::ptr::null(), size_ptr) };
    if rc != 0 {
        return Err(RuntimeError::sys("openpty", nix::errno::Errno::last()));
    }
    // SAFETY: openpty gave us these new descriptors; nothing else owns them.
    let (master, slave) = unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) };
    for fd in [&master, &slave] {
        nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC))
            .map_err(|e| RuntimeError::sys("fcntl", e))?;
    }
    Ok(Pty { master, slave })
}

/// Our terminal in raw mode while it lives (keys go to the command as
/// typed); restored when dropped.
struct RawMode(Option<libc::termios>);

impl RawMode {
    fn enter() -> RawMode {
        // SAFETY: tcgetattr/tcsetattr on fd 0 with termios structs we own.
        unsafe {
            if libc::isatty(0) == 0 {
                return RawMode(None);
            }
            let mut saved: libc::termios = std::mem::zeroed();
            if libc::tcgetattr(0, &mut saved) != 0 {
                return RawMode(None);
            }
            let mut raw = saved;
            libc::cfmakeraw(&mut raw);
            libc::tcsetattr(0, libc::TCSANOW, &raw);
            RawMode(Some(saved))
        }
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        if let Some(saved) = &self.0 {
            // SAFETY: restores the settings read in enter().
            unsafe { libc::tcsetattr(0, libc::TCSANOW, saved) };
        }
    }
}

/// Copies our stdin to the pty and the pty to our stdout until the command
/// closes its side. One thread with poll(2): after entering the container's
/// pid namespace this process may not create threads.
fn relay(master: &OwnedFd) {
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    use std::io::Write;
    let stdin = std::io::stdin();
    let mut stdin_open = true;
    let mut out = std::io::stdout().lock();
    let mut buf = [0u8; 4096];
    loop {
        let mut fds = vec![PollFd::new(master.as_fd(), PollFlags::POLLIN)];
        if stdin_open {
            fds.push(PollFd::new(stdin.as_fd(), PollFlags::POLLIN));
        }
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => return,
        }
        let ready = |f: &PollFd| f.revents().is_some_and(|r| !r.is_empty());
        let (from_command, from_us) = (ready(&fds[0]), fds.get(1).is_some_and(ready));
        if from_us {
            match nix::unistd::read(stdin.as_fd(), &mut buf) {
                Ok(n) if n > 0 => stdin_open = nix::unistd::write(master, &buf[..n]).is_ok(),
                _ => stdin_open = false,
            }
        }
        if from_command {
            // EIO once the command has closed the slave.
            match nix::unistd::read(master.as_fd(), &mut buf) {
                Ok(n) if n > 0 && out.write_all(&buf[..n]).and_then(|()| out.flush()).is_ok() => {}
                _ => return,
            }
        }
    }
}

/// How an exec'd command's stdio is made. Never the caller's own
/// descriptors: a terminal passed in would let the command push input into
/// the operator's shell with `TIOCSTI` (bubblewrap's CVE-2017-5226) or
/// change its settings.
enum Io {
    /// A pseudo-terminal of the command's own.
    Tty(Pty),
    /// Pipes we relay: `stdin` is /dev/null or a pipe fed from our stdin.
    Pipes { stdin: (OwnedFd, Option<OwnedFd>), stdout: (OwnedFd, OwnedFd), stderr: (OwnedFd, OwnedFd) },
}

fn pipe() -> Result<(OwnedFd, OwnedFd), RuntimeError> {
    nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|e| RuntimeError::sys("pipe", e))
}

impl Io {
    fn new(tty: bool, interactive: bool) -> Result<Io, RuntimeError> {
        if tty {
            return Ok(Io::Tty(open_pty()?));
        }
        let stdin = if interactive {
            let (r, w) = pipe()?;
            // Non-blocking: a command that does not read its input must not
            // stop us from relaying its output.
            nix::fcntl::fcntl(&w, nix::fcntl::FcntlArg::F_SETFL(OFlag::O_NONBLOCK))
                .map_err(|e| RuntimeError::sys("fcntl", e))?;
            (r, Some(w))
        } else {
            let null = open("/dev/null", OFlag::O_RDONLY | OFlag::O_CLOEXEC, Mode::empty())
                .map_err(|e| RuntimeError::io("open", "/dev/null", e.into()))?;
            (null, None)
        };
        Ok(Io::Pipes { stdin, stdout: pipe()?, stderr: pipe()? })
    }
}

/// Relays our stdin to the command's and its stdout and stderr to ours
/// until it has exited and what it wrote before is read. With `deadline`,
/// `kill` runs once it passes; true if it did. One thread with poll(2):
/// after entering the container's pid namespace this process may not
/// create threads.
fn relay_pipes(
    exited: &OwnedFd,
    mut stdin: Option<OwnedFd>,
    stdout: OwnedFd,
    stderr: OwnedFd,
    deadline: Option<std::time::Instant>,
    kill: impl Fn(),
) -> bool {
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    let ours_in = std::io::stdin();
    // A stream of the command's output, and where it goes.
    let mut outputs: Vec<(OwnedFd, std::os::fd::RawFd)> = vec![(stdout, 1), (stderr, 2)];
    for (fd, _) in &outputs {
        let _ = nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_SETFL(OFlag::O_NONBLOCK));
    }
    let mut pending: Vec<u8> = Vec::new();
    let mut timed_out = false;
    let mut buf = [0u8; 16384];
    let mut gone = false;
    loop {
        // Once the command has exited, what it wrote is read to the end of
        // what is there; a process it left behind does not hold us, even
        // one that keeps writing (`sh -c 'yes &'`): what the command wrote
        // before it exited is in the pipe, whose buffer is at most
        // DRAIN_MAX, so reading more than that would only be the others'.
        if gone {
            for (fd, to) in &outputs {
                let mut drained = 0;
                while drained < DRAIN_MAX
                    && let Ok(n @ 1..) = nix::unistd::read(fd.as_fd(), &mut buf)
                {
                    drained += n;
                    if write_all(*to, &buf[..n]).is_err() {
                        break;
                    }
                }
            }
            return timed_out;
        }
        let mut fds = vec![PollFd::new(exited.as_fd(), PollFlags::POLLIN)];
        for (fd, _) in &outputs {
            fds.push(PollFd::new(fd.as_fd(), PollFlags::POLLIN));
        }
        // Our input is read only when the last read went through.
        let feed = match &stdin {
            Some(w) if !pending.is_empty() => Some(PollFd::new(w.as_fd(), PollFlags::POLLOUT)),
            Some(_) => Some(PollFd::new(ours_in.as_fd(), PollFlags::POLLIN)),
            None => None,
        };
        let feed_at = fds.len();
        fds.extend(feed);
        let timeout = match deadline {
            Some(d) if !timed_out => {
                let left = d.saturating_duration_since(std::time::Instant::now());
                PollTimeout::try_from(left.as_millis().min(i32::MAX as u128) as i32).unwrap_or(PollTimeout::MAX)
            }
            _ => PollTimeout::NONE,
        };
        match poll(&mut fds, timeout) {
            Ok(0) => {
                timed_out = true;
                kill();
                continue;
            }
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => return timed_out,
        }
        let revents: Vec<bool> = fds.iter().map(|f| f.revents().is_some_and(|r| !r.is_empty())).collect();
        drop(fds);
        gone = revents[0];
        let mut closed = Vec::new();
        for (i, (fd, to)) in outputs.iter().enumerate() {
            if !revents[i + 1] {
                continue;
            }
            match nix::unistd::read(fd.as_fd(), &mut buf) {
                Ok(n @ 1..) => {
                    // Ours is closed (a pipe whose reader went away): the
                    // command's own writes fail from now on, as they would
                    // have on ours.
                    if write_all(*to, &buf[..n]).is_err() {
                        closed.push(i);
                    }
                }
                Err(nix::errno::Errno::EAGAIN | nix::errno::Errno::EINTR) => {}
                _ => closed.push(i),
            }
        }
        for i in closed.into_iter().rev() {
            outputs.remove(i);
        }
        if revents.get(feed_at).copied().unwrap_or(false)
            && let Some(w) = &stdin
        {
            if pending.is_empty() {
                match nix::unistd::read(ours_in.as_fd(), &mut buf) {
                    Ok(n @ 1..) => pending.extend_from_slice(&buf[..n]),
                    Err(nix::errno::Errno::EINTR | nix::errno::Errno::EAGAIN) => {}
                    // End of our input: the command's ends too.
                    _ => stdin = None,
                }
            } else {
                match nix::unistd::write(w, &pending) {
                    Ok(n) => drop(pending.drain(..n)),
                    Err(nix::errno::Errno::EINTR | nix::errno::Errno::EAGAIN) => {}
                    // The command closed its input.
                    Err(_) => {
                        pending.clear();
                        stdin = None;
                    }
                }
            }
        }
    }
}

/// The most read from each of the command's outputs after it exited: the
/// largest pipe buffer an unprivileged process can ask for
/// (`/proc/sys/fs/pipe-max-size`'s default).
const DRAIN_MAX: usize = 1 << 20;

/// Writes all of `bytes` to our descriptor `fd` (1 or 2).
fn write_all(fd: std::os::fd::RawFd, mut bytes: &[u8]) -> Result<(), nix::errno::Errno> {
    // SAFETY: our standard output and error stay open while we live.
    let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
    while !bytes.is_empty() {
        match nix::unistd::write(fd, bytes) {
            Ok(n) => bytes = &bytes[n..],
            Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Signals that we pass on to the command, as `docker exec` relays them.
const FORWARDED: [nix::sys::signal::Signal; 6] = {
    use nix::sys::signal::Signal::*;
    [SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGUSR1, SIGUSR2]
};

/// Runs `args` in the container `state` describes; its exit code. The
/// command runs in a new session, so it has no controlling terminal of
/// ours: with `tty` on a new pseudo-terminal of its own, else with pipes
/// that we relay (its stdin fed from ours when `interactive`, else
/// /dev/null). Signals that end us (SIGINT, SIGTERM, ...) are passed on.
/// With `timeout`, the command's process group is killed whole (SIGKILL)
/// when the timeout passes; the exit code is then 124, as timeout(1)
/// reports.
pub fn exec(
    state: &ContainerState,
    args: Vec<String>,
    tty: bool,
    interactive: bool,
    timeout: Option<std::time::Duration>,
) -> Result<i32, RuntimeError> {
    if !state.alive() {
        return Err(RuntimeError::NotRunning(state.name.clone()));
    }
    if args.is_empty() {
        return Err(RuntimeError::NoCommand);
    }
    let plan = state.process.plan(args)?;
    // The pty and /dev/null come from the host, before we enter the
    // container.
    let io = Io::new(tty, interactive)?;
    nix::sys::prctl::set_dumpable(false).map_err(|e| RuntimeError::sys("make us non-dumpable", e))?;
    enter(state)?;
    // From here a signal that would end us goes to the command (once its
    // pid is known), so that it does not outlive an interrupted exec.
    let forwarding = super::Forwarding::each(&FORWARDED)?;
    // Entering a pid namespace applies to children: fork into it (the
    // process is single-threaded: setns into a mount namespace requires it).
    let child_io = match &io {
        Io::Tty(p) => (p.slave.as_fd(), p.slave.as_fd(), p.slave.as_fd()),
        Io::Pipes { stdin, stdout, stderr } => (stdin.0.as_fd(), stdout.1.as_fd(), stderr.1.as_fd()),
    };
    let child = clone_reporting(0, move || {
        // A session of its own: no controlling terminal but its own pty,
        // and a process group that a timeout kills whole.
        let _ = nix::unistd::setsid();
        if tty {
            // SAFETY: TIOCSCTTY takes an integer argument; the slave is open.
            unsafe { libc::ioctl(std::os::fd::AsRawFd::as_raw_fd(&child_io.0), libc::TIOCSCTTY, 0) };
        }
        // The copies on 0-2 do not close on exec.
        let _ = nix::unistd::dup2_stdin(child_io.0);
        let _ = nix::unistd::dup2_stdout(child_io.1);
        let _ = nix::unistd::dup2_stderr(child_io.2);
        match init::process(&plan, None, &Default::default()) {
            Ok(never) => match never {},
            Err(e) => e,
        }
    })?;
    let pid = child.executed()?;
    forwarding.started(pid.as_raw());
    let kill = || {
        let _ = nix::sys::signal::killpg(pid, nix::sys::signal::Signal::SIGKILL);
    };
    let deadline = timeout.map(|t| std::time::Instant::now() + t);
    let timed_out = match io {
        Io::Tty(Pty { master, slave }) => {
            // Only the command holds the slave now: its exit ends the relay.
            drop(slave);
            let _raw = RawMode::enter();
            relay(&master);
            false
        }
        Io::Pipes { stdin, stdout, stderr } => {
            // Only the command holds its ends now.
            drop((stdin.0, stdout.1, stderr.1));
            let exited = super::process::pidfd(pid)?;
            relay_pipes(&exited, stdin.1, stdout.0, stderr.0, deadline, kill)
        }
    };
    let (status, timed_out) = match deadline {
        Some(d) if !timed_out => {
            let (status, killed) = wait_or_kill(pid, d.saturating_duration_since(std::time::Instant::now()), kill)?;
            (status, killed)
        }
        _ => (wait_exit(pid)?, timed_out),
    };
    drop(forwarding);
    match (timed_out, timeout) {
        (true, Some(t)) => {
            eprintln!("timed out after {}", humantime::format_duration(t));
            Ok(124)
        }
        _ => Ok(status),
    }
}

/// Moves this process into the container's cgroup and namespaces (the pid
/// namespace applies to its children): what every process exec'd into a
/// container goes through. The caller is single-threaded and non-dumpable.
pub(crate) fn enter(state: &ContainerState) -> Result<(), RuntimeError> {
    // Open every namespace first: once in the mount namespace, the host's
    // /proc is out of reach.
    let order = [
        // The user namespace first: it owns the others.
        ("user", CloneFlags::CLONE_NEWUSER),
        ("cgroup", CloneFlags::CLONE_NEWCGROUP),
        ("ipc", CloneFlags::CLONE_NEWIPC),
        ("uts", CloneFlags::CLONE_NEWUTS),
        ("net", CloneFlags::CLONE_NEWNET),
        ("pid", CloneFlags::CLONE_NEWPID),
        ("mnt", CloneFlags::CLONE_NEWNS),
    ];
    let mut namespaces = Vec::new();
    for (name, flag) in order {
        let path = format!("/proc/{}/ns/{name}", state.pid);
        let theirs = std::fs::read_link(&path).ok();
        let ours = std::fs::read_link(format!("/proc/self/ns/{name}")).ok();
        if theirs.is_some() && theirs == ours {
            continue; // shared with us (network = "host")
        }
        let fd = open(path.as_str(), OFlag::O_RDONLY | OFlag::O_CLOEXEC, Mode::empty())
            .map_err(|e| RuntimeError::io("open", &path, e.into()))?;
        namespaces.push((name, flag, fd));
    }
    for cg in state.cgroup.paths() {
        std::fs::write(cg.join("cgroup.procs"), std::process::id().to_string())
            .map_err(|e| RuntimeError::io("join the cgroup", &cg, e))?;
    }
    for (name, flag, fd) in &namespaces {
        setns(fd.as_fd(), *flag).map_err(|e| RuntimeError::io("enter the namespace", *name, e.into()))?;
    }
    Ok(())
}
