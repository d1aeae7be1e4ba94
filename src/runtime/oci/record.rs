//! What `create` leaves under the runtime's root for the later commands:
//! `<root>/<id>/` (0700) holds `state.json` (the bundle, the creation time,
//! the annotations, and the name of the container's own record), the
//! container's record (`containers/<name>.json`, as every container of
//! ours has: first process, cgroup, how its processes run) and, until
//! `start`, the `exec.fifo` of its start gate.
//!
//! The status is never stored: it is read from the processes. A container
//! whose first process runs is `created` while its FIFO is there, else
//! `running` (`paused` when its cgroup is frozen); anything else is
//! `stopped`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::OciError;
use crate::runtime::container::ContainerState;

/// The runtime spec version we report.
pub const SPEC_VERSION: &str = "1.2.0";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    pub id: String,
    pub bundle: PathBuf,
    pub rootfs: PathBuf,
    /// RFC 3339.
    pub created: String,
    pub annotations: BTreeMap<String, String>,
    /// The name of the container's own record (its cgroup's).
    pub name: String,
    /// The spec's hooks: `start` and `delete` run theirs.
    #[serde(default)]
    pub hooks: Option<oci_spec::runtime::Hooks>,
    /// The spec has no `process`: created, never started.
    #[serde(default)]
    pub no_process: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Created,
    Running,
    Paused,
    Stopped,
}

impl State {
    /// The state as a hook reads it on its stdin, with `status` as the
    /// hook point has it.
    pub fn for_hook(&self, status: Status) -> Vec<u8> {
        let state = State { status, ..self.clone() };
        serde_json::to_vec(&state).unwrap_or_default()
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str(match self {
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Stopped => "stopped",
        })
    }
}

/// The OCI state of a container (`runc state`'s fields).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct State {
    pub oci_version: &'static str,
    pub id: String,
    pub status: Status,
    /// 0 once stopped.
    pub pid: i32,
    pub bundle: PathBuf,
    pub rootfs: PathBuf,
    pub created: String,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    pub owner: String,
}

/// Whether its first process runs: alive, and not a zombie its engine has
/// yet to reap.
fn running(c: &ContainerState) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", c.pid)).unwrap_or_default();
    let state = stat.rfind(')').and_then(|i| stat[i + 1..].split_whitespace().next());
    c.alive() && !matches!(state, Some("Z" | "X") | None)
}

/// One container's directory under the root.
pub struct Dir(pub PathBuf);

impl Dir {
    pub fn of(root: &Path, id: &str) -> Dir {
        Dir(root.join(id))
    }

    pub fn record(&self) -> PathBuf {
        self.0.join("state.json")
    }

    pub fn fifo(&self) -> PathBuf {
        self.0.join("exec.fifo")
    }

    pub fn load(&self, id: &str) -> Result<Record, OciError> {
        let path = self.record();
        let bytes = std::fs::read(&path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => OciError::NotFound(id.to_string()),
            _ => OciError::io("read", &path, e),
        })?;
        serde_json::from_slice(&bytes).map_err(|e| OciError::io("read", &path, std::io::Error::other(e)))
    }

    /// Written whole (temporary file, then rename), 0600.
    pub fn save(&self, record: &Record) -> Result<(), OciError> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let path = self.record();
        let tmp = path.with_extension("json.tmp");
        let write = || -> std::io::Result<()> {
            let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp)?;
            f.write_all(&serde_json::to_vec_pretty(record).map_err(std::io::Error::other)?)?;
            std::fs::rename(&tmp, &path)
        };
        write().map_err(|e| OciError::io("write", &path, e))
    }

    /// The container's own record, if its first process was made.
    pub fn container(&self, record: &Record) -> Option<ContainerState> {
        ContainerState::load(&self.0, &record.name).ok()
    }

    /// Its state, read from its processes.
    pub fn state(&self, record: &Record) -> State {
        let container = self.container(record).filter(running);
        let status = match &container {
            None => Status::Stopped,
            Some(_) if self.fifo().exists() => Status::Created,
            Some(c) if c.cgroup.frozen() => Status::Paused,
            Some(_) => Status::Running,
        };
        State {
            oci_version: SPEC_VERSION,
            id: record.id.clone(),
            status,
            pid: container.map_or(0, |c| c.pid),
            bundle: record.bundle.clone(),
            rootfs: record.rootfs.clone(),
            created: record.created.clone(),
            annotations: record.annotations.clone(),
            owner: String::new(),
        }
    }
}
