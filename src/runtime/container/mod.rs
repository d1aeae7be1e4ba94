//! Containers on our own runtime: a process tree in new namespaces, on its
//! own root filesystem, in its own cgroup, with the privileges the spec
//! gives it.
//!
//! [`Container`] is the one lifecycle every caller uses (the daemon,
//! `runtime run --bundle`, `runtime run-unit`): cgroup, first process,
//! state record, signals, limits, then removal of all of it. Inside:
//! `plan` turns an OCI runtime spec into a [`Plan`] (pure), `spawn` clones
//! the first process, `init` is what that process does before `execve`,
//! and `helper` creates it from a single-threaded process for the daemon.

mod bundle;
mod cgroup_mounts;
mod console;
mod exec;
mod exec_process;
mod gate;
mod helper;
pub mod hooks;
mod init;
mod init_error;
mod init_mounts;
mod init_net;
mod lifecycle;
mod limits;
mod owner;
mod pid_file;
mod plan;
mod process;
mod sealed;
mod signals;
mod spawn;
mod spec_fields;
mod state;
mod wire;

use std::path::PathBuf;

use nix::errno::Errno;

// The commands of `supervisord runtime` and what the daemon needs besides
// a Container: the whole surface the rest of the crate sees.
pub use bundle::{run_bundle, selinux_enabled};
pub use exec::exec;
pub use exec_process::{CommandLine, ExecOptions, exec_command, exec_process};
pub(crate) use gate::make_fifo;
pub use gate::{Opened, open as open_gate};
pub use helper::serve as serve_spawn_helper;
pub use init_error::InitError;
pub use init_mounts::recursive_readonly;
pub(crate) use init_net::loopback_up;
pub use lifecycle::{Container, Destroyed, Pending, Setup};
pub use limits::hard_limit;
pub use owner::{Owner, OwnerError, own};
pub use pid_file::PidFile;
pub use plan::{Plan, PlanError};
pub use sealed::{reexec_protected, sealed_self};
pub use signals::Forwarding;
pub use spawn::{Output, Stdio};
pub use state::{ContainerState, clean_up};

use crate::runtime::cgroups::CgroupError;

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error("{0}")]
    Cgroup(#[from] CgroupError),
    /// The container's process failed before its program ran.
    #[error(transparent)]
    Start(#[from] InitError),
    #[error("{op}: {}", errno.desc())]
    Sys { op: &'static str, errno: Errno },
    #[error("{op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("containers must be created from a single-threaded process")]
    Threads,
    #[error(
        "containers must be created from a protected form of our program (a sealed copy or a read-only overlay view), never from its file"
    )]
    NotSealed,
    #[error("container id {reason}")]
    Id { reason: String },
    #[error("{}: {source}", path.display())]
    LoadSpec {
        path: PathBuf,
        #[source]
        source: oci_spec::OciSpecError,
    },
    #[error("container {0:?} is not running")]
    NotRunning(String),
    #[error("exec: no command")]
    NoCommand,
    #[error("{}: {source}", path.display())]
    Record {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("unknown capability {0}")]
    Capability(String),
    #[error("NUL byte in an argument")]
    NulByte,
    #[error("spawn helper: {op}: {source}")]
    Helper {
        op: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("spawn helper: {0}")]
    HelperProtocol(&'static str),
    #[error("spawn helper: bad message: {0}")]
    HelperMessage(#[source] serde_json::Error),
    /// The helper failed for a reason other than the container's start;
    /// `code` is the status it exited with.
    #[error("{message}")]
    HelperFailed { message: String, code: u8 },
    #[error("the supervisor did not let the container start")]
    NoGo,
    #[error(transparent)]
    Hook(#[from] hooks::HookError),
}

impl RuntimeError {
    pub(crate) fn sys(op: &'static str, errno: Errno) -> RuntimeError {
        RuntimeError::Sys { op, errno }
    }

    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> RuntimeError {
        RuntimeError::Io { op, path: path.into(), source }
    }

    /// The exit status `runtime run` reports, as Docker does: 127 when the
    /// program is not in the image, 126 when it cannot be run, else 125.
    pub fn exit_code(&self) -> u8 {
        match self {
            RuntimeError::Start(e) => e.exit_code(),
            RuntimeError::HelperFailed { code, .. } => *code,
            _ => 125,
        }
    }
}
