//! `exec`: a new process in a running container: in all of its namespaces
//! and its cgroup, with its user, capabilities, `no_new_privs`, seccomp
//! filter, environment and working directory.
//!
//! The joining process makes itself non-dumpable before it enters the
//! container, so that the container's processes cannot reach its memory or
//! `/proc/PID/exe` (our binary) while it is there (the CVE-2019-5736
//! class); it replaces itself with the command right after.

use std::io::Read;
use std::os::fd::AsFd;

use nix::fcntl::{OFlag, open};
use nix::sched::{CloneFlags, setns};
use nix::sys::stat::Mode;
use nix::unistd::pipe2;

use super::RuntimeError;
use super::init;
use super::spawn::wait_exit;
use super::state::ContainerState;

/// Runs `args` in the container `state` describes; its exit code.
pub fn exec(state: &ContainerState, args: Vec<String>) -> Result<i32, RuntimeError> {
    if !state.alive() {
        return Err(RuntimeError::Setup(format!("container {:?} is not running", state.name)));
    }
    if args.is_empty() {
        return Err(RuntimeError::Setup("exec: no command".into()));
    }
    let plan = state.process.plan(args).map_err(RuntimeError::Setup)?;
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
    wait_exit(pid)
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
