//! What a running container leaves in the run directory
//! (`<run>/containers/<name>.json`): its first process (pid and start time,
//! so a reused pid is never mistaken for it), its cgroups and directories,
//! and how its processes run, for `exec` and for cleaning up after a
//! supervisor that died.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::RuntimeError;
use super::plan::{CapsPlan, ProcessPlan};
use crate::runtime::cgroups::Cgroup;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerState {
    pub name: String,
    pub pid: i32,
    /// The process's start time in clock ticks since boot (`/proc/PID/stat`).
    pub start_time: u64,
    pub cgroup: Cgroup,
    /// The container's directory (writable layer, mount point).
    pub dir: PathBuf,
    pub process: ProcessState,
}

/// [`ProcessPlan`] in a form that survives a restart of the supervisor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessState {
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
    /// bounding, effective, permitted, inheritable, ambient.
    pub caps: Option<[Vec<String>; 5]>,
    pub no_new_privileges: bool,
    pub seccomp: Option<Vec<(u16, u8, u8, u32)>>,
    pub cwd: String,
    pub env: Vec<String>,
}

fn names(v: &[caps::Capability]) -> Vec<String> {
    v.iter().map(|c| c.to_string()).collect()
}

fn parse(v: &[String]) -> Result<Vec<caps::Capability>, RuntimeError> {
    v.iter().map(|c| c.parse().map_err(|_| RuntimeError::Capability(c.clone()))).collect()
}

impl ProcessState {
    pub(crate) fn of(p: &ProcessPlan) -> ProcessState {
        ProcessState {
            uid: p.uid,
            gid: p.gid,
            additional_gids: p.additional_gids.clone(),
            caps: p.caps.as_ref().map(|c| {
                [names(&c.bounding), names(&c.effective), names(&c.permitted), names(&c.inheritable), names(&c.ambient)]
            }),
            no_new_privileges: p.no_new_privileges,
            seccomp: p.seccomp.clone(),
            cwd: p.cwd.clone(),
            env: p.env.clone(),
        }
    }

    /// The plan of a process running `args` like the container's own.
    pub(crate) fn plan(&self, args: Vec<String>) -> Result<ProcessPlan, RuntimeError> {
        let caps = match &self.caps {
            None => None,
            Some([b, e, p, i, a]) => Some(CapsPlan {
                bounding: parse(b)?,
                effective: parse(e)?,
                permitted: parse(p)?,
                inheritable: parse(i)?,
                ambient: parse(a)?,
            }),
        };
        Ok(ProcessPlan {
            uid: self.uid,
            gid: self.gid,
            additional_gids: self.additional_gids.clone(),
            caps,
            no_new_privileges: self.no_new_privileges,
            seccomp: self.seccomp.clone(),
            cwd: self.cwd.clone(),
            args,
            env: self.env.clone(),
            preserve_fds: 0,
        })
    }
}

/// The start time of `pid` (field 22 of `/proc/PID/stat`), if it runs.
pub fn start_time(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: count
    // from the last ')'.
    let after = &stat[stat.rfind(')')? + 1..];
    after.split_whitespace().nth(19)?.parse().ok()
}

impl ContainerState {
    /// The record of a running container (its program was executed).
    pub fn path(run_dir: &Path, name: &str) -> PathBuf {
        run_dir.join("containers").join(format!("{name}.json"))
    }

    /// The record of a container being made: written before its cgroup
    /// and first process exist (pid 0 until known), replaced by the
    /// running record once its program runs. Only the cleanup reads it;
    /// `exec` and the rest see a container once it runs. (Unit names have
    /// no dot, so it never collides with a running record.)
    pub fn pending_path(run_dir: &Path, name: &str) -> PathBuf {
        run_dir.join("containers").join(format!("{name}.pending.json"))
    }

    /// Writes the record root's alone: it holds the unit's environment,
    /// `env_file` secrets included. The directory is 0700 and the file
    /// 0600 from its creation, whatever the umask (a file made first and
    /// narrowed after would be readable for a moment).
    pub fn save(&self, run_dir: &Path) -> std::io::Result<()> {
        self.save_to(run_dir, &Self::path(run_dir, &self.name))
    }

    /// [`ContainerState::save`] of the pending record.
    pub fn save_pending(&self, run_dir: &Path) -> std::io::Result<()> {
        self.save_to(run_dir, &Self::pending_path(run_dir, &self.name))
    }

    fn save_to(&self, run_dir: &Path, path: &Path) -> std::io::Result<()> {
        use std::io::Write;
        use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(path.parent().unwrap_or(run_dir))?;
        let tmp = path.with_extension("json.tmp");
        // A leftover of a crash keeps its old mode if reused: start anew.
        match std::fs::remove_file(&tmp) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp)?;
        f.write_all(&serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?)?;
        // Renamed whole, so a killed daemon never leaves a torn record; not
        // fsync'd: a record describes live processes, and the power cut
        // that could lose an unsynced one ends them too (the run directory
        // is a tmpfs as a rule).
        std::fs::rename(tmp, path)
    }

    pub fn load(run_dir: &Path, name: &str) -> Result<ContainerState, RuntimeError> {
        Self::load_from(&Self::path(run_dir, name), name)
    }

    /// The record at `path` (running or pending) of container `name`.
    pub fn load_from(path: &Path, name: &str) -> Result<ContainerState, RuntimeError> {
        let bytes = std::fs::read(path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => RuntimeError::NotRunning(name.to_string()),
            _ => RuntimeError::io("read", path, e),
        })?;
        serde_json::from_slice(&bytes).map_err(|source| RuntimeError::Record { path: path.to_path_buf(), source })
    }

    /// Removes both records of `name`.
    pub fn remove(run_dir: &Path, name: &str) {
        let _ = std::fs::remove_file(Self::path(run_dir, name));
        let _ = std::fs::remove_file(Self::pending_path(run_dir, name));
    }

    /// Whether the recorded first process still runs (and is that process).
    /// A record written before the process existed has pid 0: never alive.
    pub fn alive(&self) -> bool {
        self.pid > 0 && start_time(self.pid) == Some(self.start_time)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_times_and_round_trip() {
        let me = std::process::id() as i32;
        assert!(start_time(me).is_some());
        assert_eq!(start_time(i32::MAX), None);
        let p = ProcessPlan {
            uid: 1,
            gid: 2,
            additional_gids: vec![3],
            caps: Some(CapsPlan { bounding: vec![caps::Capability::CAP_KILL], ..CapsPlan::default() }),
            no_new_privileges: true,
            seccomp: Some(vec![(6, 0, 0, 0x7fff_0000)]),
            cwd: "/".into(),
            args: vec!["sh".into()],
            env: vec!["A=1".into()],
            preserve_fds: 0,
        };
        let dir = tempfile::tempdir().unwrap();
        let state = ContainerState {
            name: "web".into(),
            pid: me,
            start_time: start_time(me).unwrap(),
            cgroup: Cgroup::V2("/sys/fs/cgroup/x".into()),
            dir: "/x".into(),
            process: ProcessState::of(&p),
        };
        state.save(dir.path()).unwrap();
        use std::os::unix::fs::MetadataExt;
        let mode = |p: PathBuf| std::fs::metadata(p).unwrap().mode() & 0o7777;
        assert_eq!(mode(ContainerState::path(dir.path(), "web")), 0o600, "the record holds the environment");
        assert_eq!(mode(dir.path().join("containers")), 0o700);
        let loaded = ContainerState::load(dir.path(), "web").unwrap();
        assert_eq!(loaded, state);
        assert!(loaded.alive());
        assert_eq!(loaded.process.plan(vec!["sh".into()]).unwrap(), p);
        ContainerState::remove(dir.path(), "web");
        assert!(ContainerState::load(dir.path(), "web").unwrap_err().to_string().contains("not running"));
    }
}

/// What [`clean_up`] removed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Cleaned {
    pub containers: Vec<String>,
}

/// Removes every container recorded in `run_dir`: whatever still runs of
/// it is killed (SIGKILL to its whole cgroup), then its cgroups, its
/// directory and its record go. A supervisor calls this at start, before
/// any unit starts, for what an earlier one that died left behind.
///
/// Every container is found: its pending record is written before its
/// cgroup is made and its first process cloned (see `lifecycle.rs`), so a
/// pending record whose pid is still 0 (killed between the two) names a
/// cgroup that is empty, or holds a process that never ran its program. A record torn by
/// the crash cannot be: it is written to a temporary file and renamed;
/// that temporary file, if left, is removed here.
pub fn clean_up(run_dir: &Path) -> Cleaned {
    let mut cleaned = Cleaned::default();
    let Ok(entries) = std::fs::read_dir(run_dir.join("containers")) else { return cleaned };
    for entry in entries.flatten() {
        let path = entry.path();
        let Some(file) = path.file_name().and_then(|s| s.to_str()) else { continue };
        if file.ends_with(".json.tmp") {
            let _ = std::fs::remove_file(&path);
            continue;
        }
        let Some(stem) = file.strip_suffix(".json") else { continue };
        let name = stem.strip_suffix(".pending").unwrap_or(stem).to_string();
        // Both records of one container may be there (killed between
        // writing the running one and removing the pending one): the
        // second finds it gone.
        if let Ok(state) = ContainerState::load_from(&path, &name) {
            let alive = state.alive();
            let container = super::Container::recorded(run_dir, state);
            if alive {
                // Not in its cgroup any more, or no cgroup: kill it directly.
                let _ = container.signal(nix::sys::signal::Signal::SIGKILL);
            }
            let _ = container.destroy();
        }
        ContainerState::remove(run_dir, &name);
        cleaned.containers.push(name);
    }
    cleaned.containers.sort();
    cleaned.containers.dedup();
    cleaned
}

#[cfg(test)]
impl ProcessState {
    /// Root's first process with no capabilities: the tests' fixture.
    pub(super) fn for_tests() -> ProcessState {
        ProcessState {
            uid: 0,
            gid: 0,
            additional_gids: vec![],
            caps: None,
            no_new_privileges: true,
            seccomp: None,
            cwd: "/".into(),
            env: vec![],
        }
    }
}

#[cfg(test)]
mod clean_up_tests {
    use super::*;

    #[test]
    fn a_pending_record_and_a_torn_write_are_cleaned_without_signalling_pid_0() {
        let t = tempfile::tempdir().unwrap();
        let (run, layer) = (t.path().join("run"), t.path().join("layer"));
        std::fs::create_dir_all(layer.join("upper")).unwrap();
        let process = ProcessState::for_tests();
        // Killed between the record and the clone: pid 0, a cgroup that
        // was never made. SIGKILL to pid 0 would end this test's process
        // group.
        let pending = ContainerState {
            name: "web".into(),
            pid: 0,
            start_time: 0,
            cgroup: Cgroup::V2(t.path().join("cg/web")),
            dir: layer.clone(),
            process,
        };
        pending.save_pending(&run).unwrap();
        // Killed while writing a record: its temporary file.
        std::fs::write(ContainerState::path(&run, "db").with_extension("json.tmp"), "{\"na").unwrap();
        assert_eq!(clean_up(&run), Cleaned { containers: vec!["web".into()] });
        assert!(!layer.exists());
        let left: Vec<_> =
            std::fs::read_dir(run.join("containers")).unwrap().flatten().map(|e| e.file_name()).collect();
        assert!(left.is_empty(), "{left:?}");
    }
}
