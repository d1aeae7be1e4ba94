//! `supervisord runtime spawn`: creates one container for a multi-threaded
//! caller (the supervisor runs on tokio, and cloning a process that has
//! threads copies only the calling one, with whatever locks the others
//! held). The caller starts this helper as a fresh, single-threaded
//! process; the helper clones the container with `CLONE_PARENT`, so the
//! container is the caller's child and the caller's reaper sees its exit.
//!
//! Protocol, on the helper's standard input (a unix stream socket), one
//! JSON object per line:
//!
//! ```text
//! caller -> helper   SpawnRequest
//! helper -> caller   {"pid": N}            the container exists, in its cgroup
//! caller -> helper   {"go": true}          its exit will be seen: let it run
//! helper -> caller   {"ok": true}          its program was executed
//!                    {"error": "...", "code": 127}   or it was not
//! ```
//!
//! The helper's standard output and error are the container's: the caller
//! passes the write ends of its log pipes there. The container's stdin is
//! /dev/null.

use std::io::{BufRead, BufReader, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::RuntimeError;
use super::plan::{OverlayPlan, from_spec};
use super::spawn::{Options, Stdio, spawn_with};
use crate::runtime::cgroups::Cgroup;
use crate::runtime::seccomp::default_filter;

/// What to create.
#[derive(Debug, Serialize, Deserialize)]
pub struct SpawnRequest {
    pub spec: oci_spec::runtime::Spec,
    /// The container's directory: relative paths of the spec resolve here.
    pub dir: PathBuf,
    /// Layers (lowest first), upper and work directories of the overlay
    /// root filesystem; none when the spec's root is used as it is.
    pub overlay: Option<(Vec<PathBuf>, PathBuf, PathBuf)>,
    /// Apply the default seccomp filter (derived from the capabilities).
    pub default_seccomp: bool,
    pub cgroup: Option<Cgroup>,
    /// The interface the caller puts in the container's network namespace
    /// before it lets the container go, and its configuration.
    #[serde(default)]
    pub network: Option<crate::runtime::network::NetPlan>,
}

/// One message from the helper.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Reply {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pid: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ok: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// With `error`: the exit status a runtime reports for it (125-127).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<u8>,
}

/// Gives the plan's process the default seccomp filter for its
/// capabilities.
pub fn apply_default_seccomp(plan: &mut super::plan::Plan) {
    let caps: Vec<String> = plan.process.caps.iter().flat_map(|c| c.bounding.iter().map(|b| b.to_string())).collect();
    plan.process.seccomp = Some(default_filter(&caps).iter().map(|i| (i.code, i.jt, i.jf, i.k)).collect());
}

/// The caller's go-ahead.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Go {
    pub go: bool,
}

fn send(out: &mut UnixStream, reply: &Reply) -> std::io::Result<()> {
    let mut line = serde_json::to_vec(reply).map_err(std::io::Error::other)?;
    line.push(b'\n');
    out.write_all(&line)
}

/// The helper's main: serves one request on stdin; its exit code.
pub fn serve() -> u8 {
    // Our stdin is the socket to the caller; move it out of the way so the
    // container's stdin can be /dev/null.
    // SAFETY: fcntl F_DUPFD_CLOEXEC makes a new descriptor we then own.
    let fd = unsafe { libc::fcntl(0, libc::F_DUPFD_CLOEXEC, 3) };
    if fd < 0 {
        return 125;
    }
    // SAFETY: `fd` is a fresh descriptor nothing else owns.
    let socket = UnixStream::from(unsafe { OwnedFd::from_raw_fd(fd) });
    match std::fs::File::open("/dev/null") {
        // SAFETY: dup2 onto stdin of a descriptor we hold.
        Ok(null) => unsafe {
            libc::dup2(null.as_raw_fd(), 0);
        },
        Err(_) => return 125,
    }
    let Ok(mut out) = socket.try_clone() else { return 125 };
    let mut input = BufReader::new(socket);
    match run(&mut input, &mut out) {
        Ok(()) => 0,
        Err(e) => {
            let _ =
                send(&mut out, &Reply { error: Some(e.to_string()), code: Some(e.exit_code()), ..Reply::default() });
            e.exit_code()
        }
    }
}

fn run(input: &mut BufReader<UnixStream>, out: &mut UnixStream) -> Result<(), RuntimeError> {
    let io = |e: std::io::Error| RuntimeError::Setup(format!("talk to the supervisor: {e}"));
    let mut line = String::new();
    input.read_line(&mut line).map_err(io)?;
    let req: SpawnRequest =
        serde_json::from_str(&line).map_err(|e| RuntimeError::Spec(format!("bad spawn request: {e}")))?;
    let mut plan = from_spec(&req.spec, &req.dir).map_err(RuntimeError::Spec)?;
    plan.overlay = req.overlay.map(|(layers, upper, work)| OverlayPlan { layers, upper, work });
    plan.network = req.network;
    // A supervised container is never in our caller's session: a ^C at
    // the terminal that runs the supervisor is not for it.
    plan.new_session = true;
    if req.default_seccomp {
        apply_default_seccomp(&mut plan);
    }
    let out_cell = std::cell::RefCell::new(out.try_clone().map_err(io)?);
    let input_cell = std::cell::RefCell::new(input);
    let on_cloned = |pid: nix::unistd::Pid| -> Result<(), RuntimeError> {
        send(&mut out_cell.borrow_mut(), &Reply { pid: Some(pid.as_raw()), ..Reply::default() }).map_err(io)?;
        let mut line = String::new();
        input_cell.borrow_mut().read_line(&mut line).map_err(io)?;
        match serde_json::from_str::<Go>(&line) {
            Ok(Go { go: true }) => Ok(()),
            _ => Err(RuntimeError::Setup("the supervisor did not let the container start".into())),
        }
    };
    let options = Options { sibling: true, on_cloned: Some(&on_cloned) };
    spawn_with(&plan, req.cgroup.as_ref(), Stdio::Inherit, &options)?;
    send(out, &Reply { ok: Some(true), ..Reply::default() }).map_err(io)
}
