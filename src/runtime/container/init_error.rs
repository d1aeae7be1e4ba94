//! Why a process in a container could not run its program: made in the
//! child between `clone` and `execve` and sent to the parent as data, so
//! the exit status (125, 126, 127) follows from its kind.

use nix::errno::Errno;
use serde::{Deserialize, Serialize};

/// Why a process in a container could not run its program. Made in the
/// child, between `clone` and `execve`, and sent to the parent over a pipe:
/// hence plain data (errnos as numbers).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum InitError {
    /// A system call of the setup failed; `op` names it and its object.
    #[error("{op}: {}", desc(*errno))]
    Sys { op: String, errno: i32 },
    /// The capability library refused (it reports text, not an errno).
    #[error("{op}: {message}")]
    Caps { op: String, message: String },
    #[error("{message}")]
    Seccomp { message: String },
    #[error("mount cgroups: {message}")]
    Cgroups { message: String },
    /// A `createContainer` or `startContainer` hook failed.
    #[error("{message}")]
    Hook { message: String },
    #[error("the runtime went away before the container started")]
    Abandoned,
    #[error("the image has too many layers ({0}) for one overlay mount")]
    TooManyLayers(usize),
    #[error("interface name {0:?} is too long")]
    InterfaceName(String),
    #[error("mount {destination}: the source {path} does not exist")]
    NoMountSource { destination: String, path: String },
    #[error("device {0} is not under /dev")]
    DeviceOutsideDev(String),
    #[error("exec {program:?}: no such file in the image (searched PATH={search})")]
    NotOnPath { program: String, search: String },
    #[error("the spec has no process to run")]
    NoProcess,
    #[error("exec {program:?}: NUL byte in an argument")]
    NulByte { program: String },
    /// `execve` itself failed.
    #[error("exec {program:?}: {}", exec_reason(*errno))]
    Exec { program: String, errno: i32 },
}

fn desc(errno: i32) -> &'static str {
    Errno::from_raw(errno).desc()
}

fn exec_reason(errno: i32) -> &'static str {
    match Errno::from_raw(errno) {
        Errno::ENOENT => "no such file in the image",
        Errno::EACCES => "permission denied",
        e => e.desc(),
    }
}

impl InitError {
    /// The exit status a runtime reports for it, as Docker does: 127 when
    /// the program is not in the image, 126 when it cannot be run, else 125.
    pub fn exit_code(&self) -> u8 {
        match self {
            InitError::NotOnPath { .. } | InitError::Exec { errno: libc::ENOENT, .. } => 127,
            InitError::Exec { .. } | InitError::NulByte { .. } => 126,
            _ => 125,
        }
    }

    pub(super) fn io(op: impl ToString, e: &std::io::Error) -> InitError {
        InitError::Sys { op: op.to_string(), errno: e.raw_os_error().unwrap_or(libc::EIO) }
    }

    pub(super) fn last_os(op: impl ToString) -> InitError {
        InitError::io(op, &std::io::Error::last_os_error())
    }

    pub(super) fn caps(op: impl ToString) -> impl FnOnce(caps::errors::CapsError) -> InitError {
        move |e| InitError::Caps { op: op.to_string(), message: e.to_string() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_come_from_the_kind_of_failure() {
        let program = "app".to_string();
        let cases = [
            (InitError::NotOnPath { program: program.clone(), search: "/bin".into() }, 127),
            (InitError::Exec { program: program.clone(), errno: libc::ENOENT }, 127),
            (InitError::Exec { program: program.clone(), errno: libc::EACCES }, 126),
            (InitError::NulByte { program: program.clone() }, 126),
            (InitError::Sys { op: "chdir to the working directory \"/x\"".into(), errno: libc::ENOENT }, 125),
            (InitError::Abandoned, 125),
        ];
        for (e, code) in cases {
            assert_eq!(e.exit_code(), code, "{e}");
            assert_eq!(super::super::RuntimeError::Start(e).exit_code(), code);
        }
        let e = InitError::Exec { program, errno: libc::EACCES };
        assert_eq!(e.to_string(), r#"exec "app": permission denied"#);
    }
}
