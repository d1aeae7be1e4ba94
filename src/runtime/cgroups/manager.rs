//! Where the containers' cgroups are made: under the supervisor's own
//! subtree of this process's cgroup, one level deeper for a daemon that is
//! not the host's default one (see [`instance`]).

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::{Cgroup, CgroupError, Layout, Resources, Result, detect, own_paths, read, spec_limits, write};

/// Where the supervisor's containers' cgroups live.
#[derive(Debug, Clone)]
pub enum Manager {
    /// A base directory per v1 controller.
    V1(BTreeMap<String, PathBuf>),
    /// The v2 directory the containers' cgroups are made in.
    V2(PathBuf),
}

const V2_CONTROLLERS: [&str; 5] = ["cpu", "cpuset", "hugetlb", "memory", "pids"];

/// The directory, below the subtree, of the containers of a supervisor
/// whose run directory is `run_dir`: none for `default` (the host's
/// supervisor keeps `supervisor/<unit>`), else `run.` and a hash of the
/// run directory's path.
///
/// Containers are named after their units, and two daemons started from
/// one cgroup (one login session) would otherwise share `supervisor/web`:
/// the second one's stop of its `web` killed and removed the first one's.
/// The run directory is what one daemon alone may hold (its lock), and the
/// same directory names the same cgroups again for a successor that cleans
/// up after a crash. The `.` keeps the name out of the unit names (DNS
/// labels), which are the default supervisor's directories beside it.
pub fn instance(run_dir: &Path, default: &Path) -> Option<String> {
    let absolute = |p: &Path| fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
    let own = absolute(run_dir);
    if own == absolute(default) {
        return None;
    }
    let digest = Sha256::digest(own.as_os_str().as_encoded_bytes());
    Some(format!("run.{}", digest[..8].iter().map(|b| format!("{b:02x}")).collect::<String>()))
}

impl Manager {
    /// The manager of this host, for containers under `subtree` (a name)
    /// of this process's own cgroup, in the directory `instance` of it.
    pub fn for_host(subtree: &str, instance: Option<&str>) -> Result<Manager> {
        let mountinfo = read(Path::new("/proc/self/mountinfo"))?;
        let own = read(Path::new("/proc/self/cgroup"))?;
        let layout = detect(&mountinfo)?;
        Manager::new(&layout, &own_paths(&own), subtree, instance, std::process::id())
    }

    /// The manager for a `layout`, with this process (`pid`) in the cgroups
    /// `own` names.
    pub fn new(
        layout: &Layout,
        own: &BTreeMap<String, String>,
        subtree: &str,
        instance: Option<&str>,
        pid: u32,
    ) -> Result<Manager> {
        match layout {
            Layout::Legacy { controllers, .. } => {
                let mut bases = BTreeMap::new();
                for (name, mount) in controllers {
                    let base = v1_base(mount, own, name, subtree);
                    let base = match instance {
                        Some(i) => base.join(i),
                        None => base,
                    };
                    create_dir(&base)?;
                    bases.insert(name.clone(), base);
                }
                Ok(Manager::V1(bases))
            }
            Layout::Unified { root } => {
                let base = v2_base(root, own, subtree);
                if own.get("").is_none_or(|p| p == "/") {
                    // The root cgroup may hold processes and delegate: a
                    // subtree of our own under it.
                    create_dir(&base)?;
                    enable_controllers(root)?;
                } else {
                    // Leave our cgroup for a leaf, so that it may delegate.
                    let leaf = base.join(crate::names::label::DAEMON_CGROUP_LEAF);
                    create_dir(&leaf)?;
                    write(&leaf.join("cgroup.procs"), &pid.to_string())?;
                }
                enable_controllers(&base)?;
                let Some(instance) = instance else { return Ok(Manager::V2(base)) };
                let base = base.join(instance);
                create_dir(&base)?;
                enable_controllers(&base)?;
                Ok(Manager::V2(base))
            }
        }
    }

    /// Makes (or reuses) the cgroup `name`.
    pub fn create(&self, name: &str) -> Result<Cgroup> {
        self.create_for(name, &Resources::default())
    }

    /// Makes (or reuses) the cgroup `name` for limits `r`: the v1
    /// hierarchies only a spec's limits need (cpuset, hugetlb) are joined
    /// only when `r` asks for them, so that a container pays for no more
    /// cgroup writes than it uses.
    pub fn create_for(&self, name: &str, r: &Resources) -> Result<Cgroup> {
        let cg = self.open_for(name, r);
        for dir in cg.dirs() {
            create_dir(dir)?;
        }
        if let Some(cpuset) = cg.v1("cpuset") {
            spec_limits::init_cpuset(cpuset)?;
        }
        Ok(cg)
    }

    /// The cgroup `name`, whether or not it exists (to clean up after a
    /// crash).
    pub fn open(&self, name: &str) -> Cgroup {
        self.open_for(name, &Resources::default())
    }

    /// The cgroup `name` as [`Manager::create_for`] makes it for `r`.
    pub fn open_for(&self, name: &str, r: &Resources) -> Cgroup {
        let used = |c: &str| match c {
            "cpuset" => r.extra.cpus.is_some() || r.extra.mems.is_some(),
            "hugetlb" => !r.extra.hugetlb.is_empty(),
            "blkio" => r.extra.blkio != spec_limits::Blkio::default(),
            "net_cls" => r.extra.net_class_id.is_some(),
            "net_prio" => !r.extra.net_priorities.is_empty(),
            _ => true,
        };
        match self {
            Manager::V1(bases) => {
                Cgroup::V1(bases.iter().filter(|(c, _)| used(c)).map(|(c, b)| (c.clone(), b.join(name))).collect())
            }
            Manager::V2(base) => Cgroup::V2(base.join(name)),
        }
    }

    /// Removes the directories the containers were made in, where they are
    /// empty: what a daemon with an `instance` of its own does at its end,
    /// so that no daemon that ever ran leaves a cgroup behind.
    pub fn remove_empty_bases(&self) {
        let bases: Vec<&PathBuf> = match self {
            Manager::V1(bases) => bases.values().collect(),
            Manager::V2(base) => vec![base],
        };
        for base in bases {
            let _ = fs::remove_dir(base);
        }
    }
}

/// The directory of the v1 `controller` (mounted at `mount`) that the
/// containers' cgroups are made in: `subtree` of this process's cgroup.
fn v1_base(mount: &Path, own: &BTreeMap<String, String>, controller: &str, subtree: &str) -> PathBuf {
    let own_path = own.get(controller).map_or("/", String::as_str);
    mount.join(own_path.trim_start_matches('/')).join(subtree)
}

/// The v2 directory the containers' cgroups are made in: `subtree` of the
/// root cgroup for a process in it, else the process's own cgroup (which it
/// leaves for a leaf).
fn v2_base(root: &Path, own: &BTreeMap<String, String>, subtree: &str) -> PathBuf {
    match own.get("").map_or("/", String::as_str) {
        "/" => root.join(subtree),
        own_path => root.join(own_path.trim_start_matches('/')),
    }
}

/// Removes the directory `instance` of this host's `subtree` where it is
/// empty, making nothing: what `runtime cleanup` does for a supervisor that
/// died, from the same cgroup the supervisor ran in.
pub fn remove_empty_instance(subtree: &str, instance: &str) {
    let (Ok(mountinfo), Ok(own)) = (read(Path::new("/proc/self/mountinfo")), read(Path::new("/proc/self/cgroup")))
    else {
        return;
    };
    let Ok(layout) = detect(&mountinfo) else { return };
    let own = own_paths(&own);
    let bases = match &layout {
        Layout::Legacy { controllers, .. } => {
            controllers.iter().map(|(name, mount)| v1_base(mount, &own, name, subtree)).collect()
        }
        Layout::Unified { root } => vec![v2_base(root, &own, subtree)],
    };
    for base in bases {
        let _ = fs::remove_dir(base.join(instance));
    }
}

fn create_dir(dir: &Path) -> Result<()> {
    fs::create_dir_all(dir).map_err(|source| CgroupError::Io { op: "create", path: dir.to_path_buf(), source })
}

/// Turns on the controllers we use for `dir`'s children (those it has).
pub(super) fn enable_controllers(dir: &Path) -> Result<()> {
    let available = read(&dir.join("cgroup.controllers"))?;
    let wanted: Vec<String> = V2_CONTROLLERS
        .iter()
        .filter(|c| available.split_whitespace().any(|a| a == **c))
        .map(|c| format!("+{c}"))
        .collect();
    if wanted.is_empty() {
        return Ok(());
    }
    write(&dir.join("cgroup.subtree_control"), &wanted.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_run_directory_has_no_instance_and_others_each_their_own() {
        let t = tempfile::tempdir().unwrap();
        let (default, other) = (t.path().join("run"), t.path().join("other"));
        fs::create_dir(&default).unwrap();
        fs::create_dir(&other).unwrap();
        assert_eq!(instance(&default, &default), None);
        // The same directory by another spelling is the same daemon's.
        assert_eq!(instance(&t.path().join("other/../run"), &default), None);
        let a = instance(&other, &default).unwrap();
        assert!(a.starts_with("run.") && a.len() == "run.".len() + 16, "{a}");
        assert!(crate::names::label::check_dns_label(&a).is_err(), "{a} could be a unit's name");
        assert_eq!(instance(&other, &default), Some(a.clone()));
        assert_ne!(instance(&t.path().join("third"), &default), Some(a));
    }

    /// A cgroup directory as the kernel makes it: with its own files.
    fn kernel_dir(dir: &Path, controllers: &str) {
        fs::create_dir_all(dir).unwrap();
        fs::write(dir.join("cgroup.controllers"), controllers).unwrap();
        fs::write(dir.join("cgroup.subtree_control"), "").unwrap();
    }

    #[test]
    fn an_instance_is_one_level_deeper_and_delegates_on_v2() {
        let t = tempfile::tempdir().unwrap();
        let own = t.path().join("user/app");
        kernel_dir(t.path(), "cpu memory pids\n");
        kernel_dir(&own, "memory pids\n");
        kernel_dir(&own.join("run.1"), "memory pids\n");
        let layout = Layout::Unified { root: t.path().to_path_buf() };
        let m = Manager::new(&layout, &own_paths("0::/user/app\n"), "supervisor", Some("run.1"), 7).unwrap();
        assert_eq!(m.create("web").unwrap(), Cgroup::V2(own.join("run.1/web")));
        assert_eq!(fs::read_to_string(own.join("supervisord/cgroup.procs")).unwrap(), "7");
        for dir in [&own, &own.join("run.1")] {
            assert_eq!(fs::read_to_string(dir.join("cgroup.subtree_control")).unwrap(), "+memory +pids");
        }
    }

    #[test]
    fn an_instance_is_one_level_deeper_on_v1_and_goes_when_empty() {
        let t = tempfile::tempdir().unwrap();
        let controllers = ["memory", "pids"].map(|c| (c.to_string(), t.path().join(c))).into();
        let layout = Layout::Legacy { controllers, unified: None };
        let m = Manager::new(&layout, &own_paths("4:memory:/a\n"), "supervisor", Some("run.1"), 1).unwrap();
        let cg = m.create("db").unwrap();
        assert_eq!(
            cg.paths(),
            [t.path().join("memory/a/supervisor/run.1/db"), t.path().join("pids/supervisor/run.1/db")]
        );
        m.remove_empty_bases();
        assert!(t.path().join("pids/supervisor/run.1").exists(), "removed with a container in it");
        fs::remove_dir(t.path().join("pids/supervisor/run.1/db")).unwrap();
        m.remove_empty_bases();
        assert!(!t.path().join("pids/supervisor/run.1").exists());
        assert!(t.path().join("pids/supervisor").exists(), "the shared subtree is not ours to remove");
    }
}
