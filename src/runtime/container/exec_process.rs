//! `exec` as engines call it (runc's `exec --process FILE`): a process
//! described by a runtime-spec `process` object, run in a container with
//! the caller's stdio as its own (or, with `process.terminal`, a
//! pseudo-terminal of the container's devpts whose master goes to the
//! engine's console socket, as the first process's does), its pid written
//! where the engine reads it; with `detach`, left to the engine (its
//! subreaper) at once, else waited for.
//!
//! What the description leaves out comes from the container's first
//! process: capabilities, `no_new_privs`; the seccomp filter is always the
//! container's, as runc does it.

use std::os::fd::OwnedFd;
use std::path::Path;

use oci_spec::runtime::Process;

use super::exec::enter;
use super::pid_file::PidFile;
use super::plan::{CapsPlan, PlanError, ProcessPlan, capabilities};
use super::process::{clone_reporting, wait_exit};
use super::state::ContainerState;
use super::{RuntimeError, console, init};

/// How [`exec_process`] runs it.
#[derive(Debug, Default, Clone, Copy)]
pub struct ExecOptions<'a> {
    /// Return once it runs: the engine reaps it.
    pub detach: bool,
    /// Where its pid goes (a host path).
    pub pid_file: Option<&'a Path>,
    /// The engine's console socket, for a process with a terminal.
    pub console_socket: Option<&'a Path>,
    /// Our descriptors 3 to 3+N-1 that it keeps.
    pub preserve_fds: u32,
}

/// `exec ID CMD...` from a command line (runc's way): what it does not
/// give comes from the container's first process.
#[derive(Debug, Default, Clone)]
pub struct CommandLine {
    /// UID and maybe GID; else the container's user (and group).
    pub user: Option<(u32, Option<u32>)>,
    /// Else the container's working directory.
    pub cwd: Option<String>,
    /// `K=V` on top of the container's environment.
    pub env: Vec<String>,
    /// A terminal (through the console socket).
    pub tty: bool,
}

/// Runs `args` in the container `state` describes, as `command` says.
pub fn exec_command(
    state: &ContainerState,
    args: Vec<String>,
    command: &CommandLine,
    options: &ExecOptions,
) -> Result<i32, RuntimeError> {
    if args.is_empty() {
        return Err(RuntimeError::NoCommand);
    }
    let mut plan = state.process.plan(args)?;
    if let Some((uid, gid)) = command.user {
        (plan.uid, plan.additional_gids) = (uid, Vec::new());
        plan.gid = gid.unwrap_or(plan.gid);
    }
    if let Some(cwd) = &command.cwd {
        plan.cwd = cwd.clone();
    }
    for var in &command.env {
        let key = var.split_once('=').map_or(var.as_str(), |(k, _)| k);
        plan.env.retain(|e| e.split_once('=').map_or(e.as_str(), |(k, _)| k) != key);
        plan.env.push(var.clone());
    }
    run(state, plan, command.tty, None, options)
}

/// Runs `process` in the container `state` describes. Returns its exit
/// code (0 once started, with `detach`).
pub fn exec_process(state: &ContainerState, process: &Process, options: &ExecOptions) -> Result<i32, RuntimeError> {
    let args = process.args().clone().unwrap_or_default();
    if args.is_empty() {
        return Err(RuntimeError::NoCommand);
    }
    let mut plan = state.process.plan(args)?;
    let user = process.user();
    plan.uid = user.uid();
    plan.gid = user.gid();
    plan.additional_gids = user.additional_gids().clone().unwrap_or_default();
    if let Some(env) = process.env() {
        plan.env = env.clone();
    }
    plan.cwd = process.cwd().to_string_lossy().into_owned();
    if let Some(c) = process.capabilities() {
        plan.caps = Some(CapsPlan {
            bounding: capabilities(c.bounding())?,
            effective: capabilities(c.effective())?,
            permitted: capabilities(c.permitted())?,
            inheritable: capabilities(c.inheritable())?,
            ambient: capabilities(c.ambient())?,
        });
    }
    if let Some(nnp) = process.no_new_privileges() {
        // A process may add no_new_privs, never drop the container's.
        plan.no_new_privileges |= nnp;
    }
    let clamp = |n: u64| u16::try_from(n).unwrap_or(u16::MAX);
    let size = process.console_size().as_ref().map(|b| (clamp(b.height()), clamp(b.width())));
    run(state, plan, process.terminal().unwrap_or(false), size, options)
}

/// Runs `plan` in the container; with `terminal`, on a pseudo-terminal of
/// its own (`size`: rows and columns) whose master goes to the console
/// socket.
fn run(
    state: &ContainerState,
    mut plan: ProcessPlan,
    terminal: bool,
    size: Option<(u16, u16)>,
    options: &ExecOptions,
) -> Result<i32, RuntimeError> {
    if !state.alive() {
        return Err(RuntimeError::NotRunning(state.name.clone()));
    }
    plan.preserve_fds = options.preserve_fds;
    let invalid = |what: &str| RuntimeError::Plan(PlanError::Unsupported { what: what.to_string() });
    // Connected from the host, before we enter the container.
    let console = match (terminal, options.console_socket) {
        (true, Some(path)) => Some(OwnedFd::from(
            std::os::unix::net::UnixStream::connect(path)
                .map_err(|e| RuntimeError::io("connect to the console socket", path, e))?,
        )),
        (false, None) => None,
        (true, None) => return Err(invalid("a terminal (--tty, process.terminal) without --console-socket")),
        (false, Some(_)) => return Err(invalid("--console-socket without a terminal (--tty, process.terminal)")),
    };
    // The pid file is the host's: its directory is opened before we enter
    // the container's mount namespace.
    let pid_dir = match options.pid_file {
        Some(path) => Some(PidFile::open(path)?),
        None => None,
    };
    nix::sys::prctl::set_dumpable(false).map_err(|e| RuntimeError::sys("make us non-dumpable", e))?;
    enter(state)?;
    let child = clone_reporting(0, move || {
        let _ = nix::unistd::setsid();
        // In the container's mount namespace: its /dev/ptmx.
        if let Some(socket) = console
            && let Err(e) = console::attach(socket, size, plan.uid)
        {
            return e;
        }
        match init::process(&plan, None, &Default::default()) {
            Ok(never) => match never {},
            Err(e) => e,
        }
    })?;
    let pid = child.executed()?;
    if let Some(pid_file) = pid_dir {
        pid_file.write(pid.as_raw())?;
    }
    if options.detach {
        return Ok(0);
    }
    wait_exit(pid)
}
