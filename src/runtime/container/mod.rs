//! Containers on our own runtime: a process tree in new namespaces, on its
//! own root filesystem, in its own cgroup, with the privileges the spec
//! gives it.
//!
//! `plan` turns an OCI runtime spec into a plan (pure), `spawn` clones the
//! first process and `init` is what that process does before `execve`;
//! `bundle` runs an OCI bundle in the foreground.

pub mod bundle;
pub mod exec;
pub mod helper;
pub mod init;
pub mod plan;
pub mod spawn;
pub mod state;

use crate::runtime::cgroups::CgroupError;

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("{0}")]
    Spec(String),
    #[error("{0}")]
    Cgroup(#[from] CgroupError),
    #[error("{0}")]
    Setup(String),
    /// The container's process failed before its program ran.
    #[error("{0}")]
    Start(String),
}

impl RuntimeError {
    /// The exit status `runtime run` reports, as Docker does: 127 when the
    /// program is not in the image, 126 when it cannot be run, else 125.
    pub fn exit_code(&self) -> u8 {
        match self {
            RuntimeError::Start(m) if m.starts_with("exec ") && m.contains("no such file") => 127,
            RuntimeError::Start(m) if m.starts_with("exec ") => 126,
            _ => 125,
        }
    }
}
