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
