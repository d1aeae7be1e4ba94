//! `exec`: a new process in a running container: in all of its namespaces
//! and its cgroup, with its user, capabilities, `no_new_privs`, seccomp
//! filter, environment and working directory.
//!
//! The joining process makes itself non-dumpable before it enters the
//! container, so that the container's processes cannot reach its memory or
//! `/proc/PID/exe` (our binary) while it is there (the CVE-2019-5736
//! class); it replaces itself with the command right after.

use std::io::Read;
use std::os::fd::{AsFd, OwnedFd};

use nix::fcntl::{OFlag, open};
use nix::sched::{CloneFlags, setns};
use nix::sys::stat::Mode;
use nix::unistd::pipe2;

use super::RuntimeError;
use super::init;
use super::spawn::wait_exit;
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
    let mut size: libc::winsize = unsafe { std::mem::zeroed() };
    // SAFETY: TIOCGWINSZ writes one winsize we own; failure leaves it zero.
    let have_size = unsafe { libc::ioctl(0, libc::TIOCGWINSZ, &mut size) } == 0;
    let size_ptr = if have_size { &size as *const libc::winsize } else { std::ptr::null() };
    // SAFETY: openpty writes two descriptors; the name buffer may be null.
    let rc = unsafe { libc::openpty(&mut master, &mut slave, std::ptr::null_mut(), std::ptr::null(), size_ptr) };
    if rc != 0 {
        return Err(RuntimeError::Setup(format!("openpty: {}", std::io::Error::last_os_error())));
    }
    // SAFETY: openpty gave us these new descriptors.
    let (master, slave) = unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) };
    for fd in [&master, &slave] {
        // SAFETY: fcntl on our descriptors.
        unsafe { libc::fcntl(std::os::fd::AsRawFd::as_raw_fd(fd), libc::F_SETFD, libc::FD_CLOEXEC) };
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
    use std::io::Write;
    use std::os::fd::AsRawFd;
    let m = master.as_raw_fd();
    let mut stdin_open = true;
    let mut out = std::io::stdout().lock();
    let mut buf = [0u8; 4096];
    loop {
        let mut fds = [
            libc::pollfd { fd: if stdin_open { 0 } else { -1 }, events: libc::POLLIN, revents: 0 },
            libc::pollfd { fd: m, events: libc::POLLIN, revents: 0 },
        ];
        // SAFETY: poll(2) on an array we own.
        if unsafe { libc::poll(fds.as_mut_ptr(), 2, -1) } < 0 {
            if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return;
        }
        if fds[0].revents != 0 {
            // SAFETY: read(2)/write(2) into and from a buffer we own.
            let n = unsafe { libc::read(0, buf.as_mut_ptr().cast(), buf.len()) };
            if n <= 0 || unsafe { libc::write(m, buf.as_ptr().cast(), n as usize) } < 0 {
                stdin_open = false;
            }
        }
        if fds[1].revents != 0 {
            // SAFETY: as above; EIO once the command has closed the slave.
            let n = unsafe { libc::read(m, buf.as_mut_ptr().cast(), buf.len()) };
            if n <= 0 || out.write_all(&buf[..n as usize]).and_then(|()| out.flush()).is_err() {
                return;
            }
        }
    }
}

/// Runs `args` in the container `state` describes, on a new pseudo-terminal
/// when `tty`; its exit code.
/// With `timeout`, the command runs in a process group of its own, which
/// is killed whole (SIGKILL) when the timeout passes; the exit code is then
/// 124, as timeout(1) reports.
pub fn exec(
    state: &ContainerState,
    args: Vec<String>,
    tty: bool,
    timeout: Option<std::time::Duration>,
) -> Result<i32, RuntimeError> {
    if !state.alive() {
        return Err(RuntimeError::Setup(format!("container {:?} is not running", state.name)));
    }
    if args.is_empty() {
        return Err(RuntimeError::Setup("exec: no command".into()));
    }
    let plan = state.process.plan(args).map_err(RuntimeError::Setup)?;
    // The pty comes from the host's devpts, before we enter the container.
    let pty = if tty { Some(open_pty()?) } else { None };
    // SAFETY: prctl with integer arguments only.
    unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) };
    // Open every namespace first: once in the mount namespace, the host's
    // /proc is out of reach.
    let order = [
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
            .map_err(|e| RuntimeError::Setup(format!("open {path}: {e}")))?;
        namespaces.push((name, flag, fd));
    }
    for cg in state.cgroup.paths() {
        std::fs::write(cg.join("cgroup.procs"), std::process::id().to_string())
            .map_err(|e| RuntimeError::Setup(format!("join the cgroup {}: {e}", cg.display())))?;
    }
    for (name, flag, fd) in &namespaces {
        setns(fd.as_fd(), *flag).map_err(|e| RuntimeError::Setup(format!("enter the {name} namespace: {e}")))?;
    }
    // Entering a pid namespace applies to children: fork into it.
    let (err_r, err_w) = pipe2(OFlag::O_CLOEXEC).map_err(|e| RuntimeError::Setup(format!("pipe: {e}")))?;
    // SAFETY: fork-like clone in a single-threaded process (setns into a
    // mount namespace already required one).
    let rc = unsafe { libc::syscall(libc::SYS_clone, libc::SIGCHLD as libc::c_ulong, 0usize, 0usize, 0usize, 0usize) };
    if rc < 0 {
        return Err(RuntimeError::Setup(format!("clone: {}", std::io::Error::last_os_error())));
    }
    if rc == 0 {
        drop(err_r);
        if timeout.is_some() && pty.is_none() {
            // SAFETY: setpgid(0, 0) only moves this new process into a
            // process group of its own.
            unsafe { libc::setpgid(0, 0) };
        }
        if let Some(p) = &pty {
            use std::os::fd::AsRawFd;
            let slave = p.slave.as_raw_fd();
            // SAFETY: setsid, ioctl and dup2 on our own descriptors: the
            // slave becomes the controlling terminal and stdio.
            unsafe {
                libc::setsid();
                libc::ioctl(slave, libc::TIOCSCTTY, 0);
                for target in 0..3 {
                    libc::dup2(slave, target);
                }
            }
        }
        let message = match init::process(&plan) {
            Ok(never) => match never {},
            Err(e) => e,
        };
        let _ = nix::unistd::write(err_w.as_fd(), message.as_bytes());
        // SAFETY: ends the child without running destructors of copied state.
        unsafe { libc::_exit(127) };
    }
    drop(err_w);
    let pid = nix::unistd::Pid::from_raw(rc as i32);
    let mut message = String::new();
    let _ = std::fs::File::from(err_r).read_to_string(&mut message);
    if !message.is_empty() {
        let _ = wait_exit(pid);
        return Err(RuntimeError::Start(message));
    }
    if let Some(Pty { master, slave }) = pty {
        // Only the command holds the slave now: its exit ends the relay.
        drop(slave);
        let _raw = RawMode::enter();
        relay(&master);
    }
    match timeout {
        Some(t) => wait_or_kill_group(pid, t),
        None => wait_exit(pid),
    }
}

/// Waits for `pid` at most `timeout`; then kills its process group and
/// reports 124.
fn wait_or_kill_group(pid: nix::unistd::Pid, timeout: std::time::Duration) -> Result<i32, RuntimeError> {
    // SAFETY: pidfd_open(2) of our child; the result is checked.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid.as_raw(), 0) };
    if fd >= 0 {
        // SAFETY: a new descriptor nothing else owns.
        let fd = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd as i32) };
        let mut pfd = libc::pollfd { fd: std::os::fd::AsRawFd::as_raw_fd(&fd), events: libc::POLLIN, revents: 0 };
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            // SAFETY: poll(2) on one pollfd we own.
            let n = unsafe { libc::poll(&mut pfd, 1, left.as_millis().min(i32::MAX as u128) as i32) };
            if n > 0 {
                return wait_exit(pid);
            }
            if n == 0 || left.is_zero() {
                break;
            }
        }
    }
    // SAFETY: kill(2) of the process group our child leads.
    unsafe { libc::kill(-pid.as_raw(), libc::SIGKILL) };
    let _ = wait_exit(pid);
    eprintln!("timed out after {}", humantime::format_duration(timeout));
    Ok(124)
}

/// The environment variable that tells a re-executed program it already
/// runs from a sealed copy.
const SEALED: &str = "_SUPERVISOR_SEALED_COPY";

/// Re-executes this program from a sealed in-memory copy of itself, unless
/// it already runs from one. `exec` calls this before it joins a container:
/// its forked child runs this program inside the container's pid namespace
/// until its own `execve`, and a container process allowed to trace it
/// could otherwise open `/proc/PID/exe` and reach the host's binary (the
/// CVE-2019-5736 class). A sealed memfd cannot be written, grown or shrunk.
pub fn reexec_from_sealed_copy() -> Result<(), RuntimeError> {
    use std::ffi::CString;
    use std::os::fd::{AsRawFd, FromRawFd};
    use std::os::unix::ffi::OsStrExt;
    if std::env::var_os(SEALED).is_some() {
        return Ok(());
    }
    let fail = |what: &str, e: std::io::Error| RuntimeError::Setup(format!("{what}: {e}"));
    // SAFETY: memfd_create with a constant NUL-terminated name.
    let fd = unsafe { libc::memfd_create(c"supervisord".as_ptr(), libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING) };
    if fd < 0 {
        return Err(fail("memfd_create", std::io::Error::last_os_error()));
    }
    // SAFETY: the kernel gave us this new descriptor.
    let mut copy = unsafe { std::fs::File::from_raw_fd(fd) };
    let mut me = std::fs::File::open("/proc/self/exe").map_err(|e| fail("open /proc/self/exe", e))?;
    std::io::copy(&mut me, &mut copy).map_err(|e| fail("copy the binary", e))?;
    let seals = libc::F_SEAL_SEAL | libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_WRITE;
    // SAFETY: fcntl on our descriptor with integer arguments.
    if unsafe { libc::fcntl(copy.as_raw_fd(), libc::F_ADD_SEALS, seals) } != 0 {
        return Err(fail("seal the copy", std::io::Error::last_os_error()));
    }
    let c = |b: &[u8]| CString::new(b).map_err(|_| RuntimeError::Setup("NUL byte in an argument".into()));
    let args: Vec<CString> = std::env::args_os().map(|a| c(a.as_bytes())).collect::<Result<_, _>>()?;
    let mut env: Vec<CString> =
        std::env::vars_os().map(|(k, v)| c(&[k.as_bytes(), b"=", v.as_bytes()].concat())).collect::<Result<_, _>>()?;
    env.push(c(format!("{SEALED}=1").as_bytes())?);
    let mut argv: Vec<*const libc::c_char> = args.iter().map(|a| a.as_ptr()).collect();
    argv.push(std::ptr::null());
    let mut envp: Vec<*const libc::c_char> = env.iter().map(|e| e.as_ptr()).collect();
    envp.push(std::ptr::null());
    // SAFETY: argv and envp are NULL-terminated arrays of valid C strings
    // that outlive the call; fexecve only returns on failure.
    unsafe { libc::fexecve(copy.as_raw_fd(), argv.as_ptr(), envp.as_ptr()) };
    Err(fail("re-execute from the sealed copy", std::io::Error::last_os_error()))
}
