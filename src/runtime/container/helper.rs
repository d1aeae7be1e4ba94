//! `supervisord runtime spawn`: creates one container for a multi-threaded
//! caller (the supervisor runs on tokio, and cloning a process that has
//! threads copies only the calling one, with whatever locks the others
//! held). The caller starts this helper as a fresh, single-threaded
//! process; the helper clones the container with `CLONE_PARENT`, so the
//! container is the caller's child and the caller's reaper sees its exit.
//!
//! Protocol, on the helper's standard input (a unix stream socket), one
//! JSON message per line, typed on both sides ([`Client`] is the caller's):
//!
//! ```text
//! caller -> helper   Request               the plan (built by the caller) and cgroup
//! helper -> caller   Reply::Pid(N)         the container exists, in its cgroup
//! caller -> helper   Go                    its exit will be seen: let it run
//! helper -> caller   Reply::Running        its program was executed
//!                    Reply::Failed(..)     or it was not, and why
//! ```
//!
//! The helper's standard output and error are the container's: the caller
//! passes the write ends of its log pipes there. The container's stdin is
//! /dev/null.

use std::io::{BufRead, BufReader, Write};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::InitError;
use super::RuntimeError;
use super::plan::Plan;
use super::spawn::{Options, Stdio, spawn};
use crate::runtime::cgroups::Cgroup;

/// What to create.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Request {
    pub(crate) plan: Plan,
    pub(crate) cgroup: Cgroup,
}

/// One message from the helper.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Reply {
    Pid(i32),
    Running,
    Failed(Failure),
}

/// Why the helper could not create the container.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Failure {
    /// Its process failed before its program ran.
    Start(InitError),
    /// Anything else; `code` is the status a runtime reports for it.
    Other { message: String, code: u8 },
}

/// The caller's go-ahead.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Go;

fn send<T: Serialize>(out: &mut UnixStream, message: &T) -> Result<(), RuntimeError> {
    let mut line = serde_json::to_vec(message).map_err(RuntimeError::HelperMessage)?;
    line.push(b'\n');
    out.write_all(&line).map_err(|source| RuntimeError::Helper { op: "send", source })
}

fn receive<T: DeserializeOwned>(input: &mut BufReader<UnixStream>) -> Result<T, RuntimeError> {
    let mut line = String::new();
    input.read_line(&mut line).map_err(|source| RuntimeError::Helper { op: "receive", source })?;
    if line.is_empty() {
        return Err(RuntimeError::HelperProtocol("ended without an answer"));
    }
    serde_json::from_str(&line).map_err(RuntimeError::HelperMessage)
}

/// The helper's main: serves one request on stdin; its exit code.
pub fn serve() -> u8 {
    use std::os::fd::AsFd;
    // The daemon starts us from a sealed copy; anyone else gets a protected form here,
    // before the request is read (our stdin survives the re-execution).
    if let Err(e) = super::reexec_protected() {
        eprintln!("supervisord: {e}");
        return e.exit_code();
    }
    // Our stdin is the socket to the caller; move it out of the way so the
    // container's stdin can be /dev/null.
    let Ok(socket) = std::io::stdin().as_fd().try_clone_to_owned() else { return 125 };
    let socket = UnixStream::from(socket);
    match std::fs::File::open("/dev/null") {
        Ok(null) => {
            if nix::unistd::dup2_stdin(null).is_err() {
                return 125;
            }
        }
        Err(_) => return 125,
    }
    let Ok(mut out) = socket.try_clone() else { return 125 };
    let mut input = BufReader::new(socket);
    match run(&mut input, &mut out) {
        Ok(()) => 0,
        Err(e) => {
            let code = e.exit_code();
            let failure = match e {
                RuntimeError::Start(e) => Failure::Start(e),
                e => Failure::Other { message: e.to_string(), code },
            };
            let _ = send(&mut out, &Reply::Failed(failure));
            code
        }
    }
}

fn run(input: &mut BufReader<UnixStream>, out: &mut UnixStream) -> Result<(), RuntimeError> {
    let Request { mut plan, cgroup } = receive(input)?;
    // A supervised container is never in our caller's session: a ^C at
    // the terminal that runs the supervisor is not for it.
    plan.new_session = true;
    let out_cell =
        std::cell::RefCell::new(out.try_clone().map_err(|source| RuntimeError::Helper { op: "socket", source })?);
    let input_cell = std::cell::RefCell::new(input);
    let on_cloned = |pid: nix::unistd::Pid| -> Result<(), RuntimeError> {
        send(&mut out_cell.borrow_mut(), &Reply::Pid(pid.as_raw()))?;
        match receive::<Go>(&mut input_cell.borrow_mut()) {
            Ok(Go) => Ok(()),
            Err(_) => Err(RuntimeError::NoGo),
        }
    };
    let options = Options { sibling: true, on_cloned: Some(&on_cloned), ..Options::default() };
    spawn(&plan, &cgroup, Stdio::Inherit, &options)?;
    send(out, &Reply::Running)
}

/// The caller's side of the protocol.
pub(crate) struct Client {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

fn failed(failure: Failure) -> RuntimeError {
    match failure {
        Failure::Start(e) => RuntimeError::Start(e),
        Failure::Other { message, code } => RuntimeError::HelperFailed { message, code },
    }
}

impl Client {
    /// Starts `helper` with `request`; returns once the container exists,
    /// with its pid.
    pub(crate) fn start(
        helper: &Path,
        request: &Request,
        stdout: OwnedFd,
        stderr: OwnedFd,
    ) -> Result<(Client, nix::unistd::Pid), RuntimeError> {
        let io = |op| move |source| RuntimeError::Helper { op, source };
        let (ours, theirs) = UnixStream::pair().map_err(io("socketpair"))?;
        // The helper is reaped by the caller's reaper (nobody waits for
        // it); its outcome comes over the socket.
        let _helper = std::process::Command::new(helper)
            .args(["runtime", "spawn"])
            .stdin(std::process::Stdio::from(OwnedFd::from(theirs)))
            .stdout(std::process::Stdio::from(stdout))
            .stderr(std::process::Stdio::from(stderr))
            .env_clear()
            .spawn()
            .map_err(|e| RuntimeError::io("start", helper, e))?;
        let mut writer = ours.try_clone().map_err(io("socket"))?;
        ours.set_read_timeout(Some(Duration::from_secs(60))).map_err(io("socket"))?;
        let mut reader = BufReader::new(ours);
        send(&mut writer, request)?;
        match receive(&mut reader)? {
            Reply::Pid(pid) => Ok((Client { reader, writer }, nix::unistd::Pid::from_raw(pid))),
            Reply::Failed(f) => Err(failed(f)),
            Reply::Running => Err(RuntimeError::HelperProtocol("no pid")),
        }
    }

    /// Lets the container run; returns once its program runs.
    pub(crate) fn go(mut self) -> Result<(), RuntimeError> {
        send(&mut self.writer, &Go)?;
        match receive(&mut self.reader)? {
            Reply::Running => Ok(()),
            Reply::Failed(f) => Err(failed(f)),
            Reply::Pid(_) => Err(RuntimeError::HelperProtocol("a second pid")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_start_keeps_its_kind_across_the_socket() {
        let not_found = InitError::Exec { program: "/bin/nope".into(), errno: libc::ENOENT };
        let line = serde_json::to_string(&Reply::Failed(Failure::Start(not_found))).unwrap();
        let Reply::Failed(f) = serde_json::from_str(&line).unwrap() else { panic!("{line}") };
        let e = failed(f);
        assert_eq!(e.exit_code(), 127);
        assert_eq!(e.to_string(), r#"exec "/bin/nope": no such file in the image"#);
        let other = Failure::Other { message: "cgroup write x: denied".into(), code: 125 };
        let Reply::Failed(f) = serde_json::from_str(&serde_json::to_string(&Reply::Failed(other)).unwrap()).unwrap()
        else {
            panic!()
        };
        assert_eq!(failed(f).exit_code(), 125);
    }
}
