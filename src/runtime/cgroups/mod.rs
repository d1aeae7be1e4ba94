//! cgroups, v1 (legacy and hybrid hosts) and v2: one cgroup per container
//! under the supervisor's own subtree, its limits, its usage, killing every
//! process in it, and removing it.
//!
//! A small module of our own rather than `cgroups-rs`, which treats a hybrid
//! host as v1 only and pulls in a D-Bus library: we need memory, cpu, pids,
//! freezer/kill, devices and OOM counts, with the mount table and the cgroup
//! root as parameters so that the v2 code is tested on a fake tree here
//! (this host is hybrid) and for real in the appliance VM (pure v2).
//!
//! On v1 the container gets a directory in each controller's hierarchy
//! (memory, cpu, cpuacct, pids, freezer, devices). On v2 a process may not
//! sit in a cgroup whose controllers are delegated to children, so the
//! supervisor first moves itself into a leaf (`supervisord`) of its own
//! cgroup and creates containers beside it.

pub mod devices;
mod freezer;
pub mod layout;
mod manager;
mod runc_stats;
pub mod spec_limits;
pub mod spec_path;
mod stats;
mod update;

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub use layout::{Layout, detect, own_paths};
pub use manager::{Manager, instance, remove_empty_instance};
pub use runc_stats::Stats as RuncStats;
pub use spec_limits::ExtraLimits;
pub use stats::{Io, io_service_bytes_v1, io_stat_v2};
pub use update::{Update, shares_to_weight};

#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("cgroup {op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("the cgroup v1 {0} controller is not mounted")]
    ControllerNotMounted(&'static str),
    #[error("no cgroup filesystem is mounted (neither cgroup v1 nor cgroup2)")]
    NotMounted,
    #[error("the cgroup did not freeze within 5 s")]
    FreezeTimeout,
    #[error("{0} is not supported")]
    Unsupported(&'static str),
    #[error("cgroupsPath {path:?}: {why}")]
    SpecPath { path: String, why: String },
    #[error("the container's cgroup has no {0} hierarchy (cgroup v1): its limits cannot be changed")]
    NotJoined(&'static str),
    #[error("{}: no swap accounting on this host (boot with swapaccount=1)", .0.display())]
    NoSwapAccounting(PathBuf),
    #[error("{}: not there (its cgroup v2 controller is not enabled)", .0.display())]
    NoFile(PathBuf),
    #[error("a swap limit needs a memory limit")]
    SwapWithoutMemory,
}

type Result<T> = std::result::Result<T, CgroupError>;

fn write(path: &Path, value: &str) -> Result<()> {
    fs::write(path, value).map_err(|source| CgroupError::Io { op: "write", path: path.to_path_buf(), source })
}

fn read(path: &Path) -> Result<String> {
    fs::read_to_string(path).map_err(|source| CgroupError::Io { op: "read", path: path.to_path_buf(), source })
}

/// Limits of one container. `None` is no limit.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resources {
    /// Hard memory limit in bytes.
    pub memory: Option<u64>,
    /// Swap allowed on top of `memory`, in bytes (`u64::MAX`: no bound);
    /// none by default.
    pub swap: Option<u64>,
    /// CPU quota per period, in microseconds.
    pub cpu_quota: Option<u64>,
    /// The CFS period in microseconds (100 ms when `None`).
    pub cpu_period: Option<u64>,
    pub pids: Option<u64>,
    /// Device access rules, in order, on top of "deny everything"; `None`
    /// leaves device access alone.
    pub devices: Option<Vec<DeviceRule>>,
    /// What only an OCI spec asks for (cpuset, shares, hugetlb, ...).
    pub extra: ExtraLimits,
}

/// `allow` a `kind` (`'c'`, `'b'` or `'a'`) device `major:minor` (`None`
/// for any) with `access` among `rwm`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceRule {
    pub allow: bool,
    pub kind: char,
    pub major: Option<u64>,
    pub minor: Option<u64>,
    pub access: String,
}

impl DeviceRule {
    /// The v1 `devices.allow`/`devices.deny` line.
    fn v1_line(&self) -> String {
        let n = |x: Option<u64>| x.map_or_else(|| "*".to_string(), |v| v.to_string());
        format!("{} {}:{} {}", self.kind, n(self.major), n(self.minor), self.access)
    }
}

/// Usage of one container.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Usage {
    /// CPU time in nanoseconds.
    pub cpu_ns: Option<u64>,
    pub memory: Option<u64>,
    pub memory_peak: Option<u64>,
    pub pids: Option<u64>,
}

/// One container's cgroup.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Cgroup {
    V1(BTreeMap<String, PathBuf>),
    V2(PathBuf),
}

impl Cgroup {
    fn dirs(&self) -> Vec<&PathBuf> {
        match self {
            Cgroup::V1(dirs) => dirs.values().collect(),
            Cgroup::V2(dir) => vec![dir],
        }
    }

    fn v1(&self, controller: &str) -> Option<&PathBuf> {
        match self {
            Cgroup::V1(dirs) => dirs.get(controller),
            Cgroup::V2(_) => None,
        }
    }

    /// Paths to record for crash recovery.
    pub fn paths(&self) -> Vec<PathBuf> {
        self.dirs().into_iter().cloned().collect()
    }

    /// Moves `pid` into the cgroup (every hierarchy of it).
    pub fn add(&self, pid: u32) -> Result<()> {
        for dir in self.dirs() {
            write(&dir.join("cgroup.procs"), &pid.to_string())?;
        }
        Ok(())
    }

    /// Applies `r`; a limit left out is lifted.
    pub fn set(&self, r: &Resources) -> Result<()> {
        let period = r.cpu_period.unwrap_or(100_000);
        match self {
            Cgroup::V2(dir) => {
                let max = |v: Option<u64>| v.map_or_else(|| "max".to_string(), |n| n.to_string());
                if dir.join("memory.max").exists() {
                    write(&dir.join("memory.max"), &max(r.memory))?;
                    if dir.join("memory.swap.max").exists() {
                        let swap = match (r.memory, r.swap) {
                            (None, _) | (_, Some(u64::MAX)) => "max".to_string(),
                            (Some(_), swap) => swap.unwrap_or(0).to_string(),
                        };
                        write(&dir.join("memory.swap.max"), &swap)?;
                    }
                }
                if dir.join("cpu.max").exists() {
                    write(&dir.join("cpu.max"), &format!("{} {period}", max(r.cpu_quota)))?;
                }
                if dir.join("pids.max").exists() {
                    write(&dir.join("pids.max"), &max(r.pids))?;
                }
                if let Some(rules) = &r.devices {
                    devices::attach(dir, rules)?;
                }
                spec_limits::set_v2(dir, &r.extra)
            }
            Cgroup::V1(_) => {
                if let Some(m) = self.v1("memory") {
                    set_v1_memory(m, r.memory, r.swap)?;
                }
                if let Some(c) = self.v1("cpu") {
                    write(&c.join("cpu.cfs_period_us"), &period.to_string())?;
                    let quota = r.cpu_quota.map_or_else(|| "-1".to_string(), |q| q.to_string());
                    write(&c.join("cpu.cfs_quota_us"), &quota)?;
                }
                if let Some(p) = self.v1("pids") {
                    write(&p.join("pids.max"), &r.pids.map_or_else(|| "max".to_string(), |n| n.to_string()))?;
                }
                if let (Some(d), Some(rules)) = (self.v1("devices"), &r.devices) {
                    write(&d.join("devices.deny"), "a")?;
                    for rule in rules {
                        let file = if rule.allow { "devices.allow" } else { "devices.deny" };
                        write(&d.join(file), &rule.v1_line())?;
                    }
                }
                match self {
                    Cgroup::V1(dirs) => spec_limits::set_v1(dirs, &r.extra),
                    Cgroup::V2(_) => Ok(()),
                }
            }
        }
    }

    /// The pids in the cgroup.
    pub fn procs(&self) -> Result<Vec<u32>> {
        let dir = match self {
            Cgroup::V2(d) => d,
            Cgroup::V1(dirs) => match dirs.get("pids").or_else(|| dirs.values().next()) {
                Some(d) => d,
                None => return Ok(Vec::new()),
            },
        };
        match fs::read_to_string(dir.join("cgroup.procs")) {
            Ok(s) => Ok(s.lines().filter_map(|l| l.trim().parse().ok()).collect()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(source) => Err(CgroupError::Io { op: "read", path: dir.join("cgroup.procs"), source }),
        }
    }

    /// SIGKILLs every process in the cgroup, with no window for one to fork
    /// a new one unseen: `cgroup.kill` where the kernel has it (5.14), else
    /// freeze, kill each, thaw.
    ///
    /// An empty cgroup (a container whose pid namespace went with its
    /// init, the usual case at its removal) is left alone: with no process
    /// in it none can fork into it, and a freeze and thaw would flip a
    /// kernel static key twice (v1's freezer), which patches kernel text on
    /// every CPU, one cgroup at a time.
    pub fn kill_all(&self) -> Result<()> {
        if let Cgroup::V2(dir) = self
            && dir.join("cgroup.kill").exists()
        {
            return write(&dir.join("cgroup.kill"), "1");
        }
        if self.procs()?.is_empty() {
            return Ok(());
        }
        let freezer = match self {
            Cgroup::V2(dir) => Some((dir.join("cgroup.freeze"), "1", "0")),
            Cgroup::V1(dirs) => dirs.get("freezer").map(|d| (d.join("freezer.state"), "FROZEN", "THAWED")),
        };
        let frozen = freezer.as_ref().is_some_and(|(file, on, _)| write(file, on).is_ok());
        for pid in self.procs()? {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), nix::sys::signal::Signal::SIGKILL);
        }
        if let (true, Some((file, _, off))) = (frozen, freezer) {
            write(&file, off)?;
        }
        Ok(())
    }

    /// Removes the cgroup once its processes are gone (waiting up to
    /// `timeout` for the kernel to let go of them). A cgroup that does not
    /// exist is already removed.
    pub fn remove(&self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        for dir in self.dirs() {
            loop {
                match fs::remove_dir(dir) {
                    Ok(()) => break,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => break,
                    Err(e) if e.raw_os_error() == Some(libc::EBUSY) && Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    Err(source) => return Err(CgroupError::Io { op: "remove", path: dir.clone(), source }),
                }
            }
        }
        Ok(())
    }

    /// How many times the kernel OOM-killed a process of this cgroup.
    pub fn oom_kills(&self) -> u64 {
        let (file, key) = match self {
            Cgroup::V2(dir) => (dir.join("memory.events"), "oom_kill"),
            Cgroup::V1(dirs) => match dirs.get("memory") {
                Some(d) => (d.join("memory.oom_control"), "oom_kill"),
                None => return 0,
            },
        };
        keyed(&file, key).unwrap_or(0)
    }

    /// CPU time, memory (current and peak) and process count.
    pub fn usage(&self) -> Usage {
        let num = |p: PathBuf| fs::read_to_string(p).ok().and_then(|s| s.trim().parse::<u64>().ok());
        match self {
            Cgroup::V2(dir) => Usage {
                cpu_ns: keyed(&dir.join("cpu.stat"), "usage_usec").map(|us| us * 1000),
                memory: num(dir.join("memory.current")),
                memory_peak: num(dir.join("memory.peak")),
                pids: num(dir.join("pids.current")),
            },
            Cgroup::V1(dirs) => Usage {
                cpu_ns: dirs.get("cpuacct").and_then(|d| num(d.join("cpuacct.usage"))),
                memory: dirs.get("memory").and_then(|d| num(d.join("memory.usage_in_bytes"))),
                memory_peak: dirs.get("memory").and_then(|d| num(d.join("memory.max_usage_in_bytes"))),
                pids: dirs.get("pids").and_then(|d| num(d.join("pids.current"))),
            },
        }
    }
}

/// v1 needs memory.limit <= memory.memsw.limit at every step; memsw is
/// memory and swap together.
fn set_v1_memory(dir: &Path, limit: Option<u64>, swap: Option<u64>) -> Result<()> {
    let value = limit.map_or_else(|| "-1".to_string(), |n| n.to_string());
    let memsw = dir.join("memory.memsw.limit_in_bytes");
    if !memsw.exists() {
        return write(&dir.join("memory.limit_in_bytes"), &value);
    }
    let total = match (limit, swap) {
        (None, _) | (_, Some(u64::MAX)) => None,
        (Some(l), s) => Some(l.saturating_add(s.unwrap_or(0))),
    };
    let total_value = total.map_or_else(|| "-1".to_string(), |n| n.to_string());
    let current: u64 = read(&memsw)?.trim().parse().unwrap_or(u64::MAX);
    if total.is_none_or(|t| t > current) {
        write(&memsw, &total_value)?;
        write(&dir.join("memory.limit_in_bytes"), &value)
    } else {
        write(&dir.join("memory.limit_in_bytes"), &value)?;
        write(&memsw, &total_value)
    }
}

/// The value of `key` in a `key value` per line file.
fn keyed(file: &Path, key: &str) -> Option<u64> {
    fs::read_to_string(file).ok()?.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok()).flatten()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fake v2 tree: a root with controllers, our process in /user/app.
    fn fake_v2() -> (tempfile::TempDir, Manager) {
        let t = tempfile::tempdir().unwrap();
        let root = t.path();
        fs::write(root.join("cgroup.controllers"), "cpuset cpu io memory pids\n").unwrap();
        fs::write(root.join("cgroup.subtree_control"), "").unwrap();
        let own = root.join("user/app");
        fs::create_dir_all(&own).unwrap();
        fs::write(own.join("cgroup.controllers"), "cpu memory pids\n").unwrap();
        fs::write(own.join("cgroup.subtree_control"), "").unwrap();
        let layout = Layout::Unified { root: root.to_path_buf() };
        let own_map = own_paths("0::/user/app\n");
        let m = Manager::new(&layout, &own_map, "supervisor", None, 4242).unwrap();
        (t, m)
    }

    #[test]
    fn v2_moves_itself_into_a_leaf_and_delegates() {
        let (t, m) = fake_v2();
        let own = t.path().join("user/app");
        assert_eq!(fs::read_to_string(own.join("supervisord/cgroup.procs")).unwrap(), "4242");
        assert_eq!(fs::read_to_string(own.join("cgroup.subtree_control")).unwrap(), "+cpu +memory +pids");
        let Manager::V2(base) = &m else { panic!() };
        assert_eq!(base, &own);
    }

    #[test]
    fn v2_limits_usage_and_oom() {
        let (t, m) = fake_v2();
        let cg = m.create("web").unwrap();
        let dir = t.path().join("user/app/web");
        assert_eq!(cg, Cgroup::V2(dir.clone()));
        for f in ["memory.max", "memory.swap.max", "cpu.max", "pids.max"] {
            fs::write(dir.join(f), "").unwrap();
        }
        cg.set(&Resources { memory: Some(256 << 20), cpu_quota: Some(50_000), pids: Some(64), ..Resources::default() })
            .unwrap();
        let rd = |f: &str| fs::read_to_string(dir.join(f)).unwrap();
        assert_eq!((rd("memory.max"), rd("memory.swap.max")), ("268435456".into(), "0".into()));
        assert_eq!(rd("cpu.max"), "50000 100000");
        assert_eq!(rd("pids.max"), "64");
        cg.set(&Resources::default()).unwrap();
        assert_eq!(
            (rd("memory.max"), rd("cpu.max"), rd("pids.max")),
            ("max".into(), "max 100000".into(), "max".into())
        );
        fs::write(dir.join("memory.events"), "low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n").unwrap();
        fs::write(dir.join("cpu.stat"), "usage_usec 1500\nuser_usec 1000\n").unwrap();
        fs::write(dir.join("memory.current"), "4096\n").unwrap();
        fs::write(dir.join("pids.current"), "2\n").unwrap();
        assert_eq!(cg.oom_kills(), 1);
        assert_eq!(cg.usage(), Usage { cpu_ns: Some(1_500_000), memory: Some(4096), memory_peak: None, pids: Some(2) });
        fs::write(dir.join("cgroup.kill"), "").unwrap();
        cg.kill_all().unwrap();
        assert_eq!(rd("cgroup.kill"), "1");
    }

    #[test]
    fn v2_at_the_root_uses_a_subtree() {
        let t = tempfile::tempdir().unwrap();
        fs::write(t.path().join("cgroup.controllers"), "memory pids\n").unwrap();
        fs::write(t.path().join("cgroup.subtree_control"), "").unwrap();
        let layout = Layout::Unified { root: t.path().to_path_buf() };
        // The subtree's own files exist once the kernel makes the directory.
        fs::create_dir(t.path().join("supervisor")).unwrap();
        fs::write(t.path().join("supervisor/cgroup.controllers"), "memory pids\n").unwrap();
        fs::write(t.path().join("supervisor/cgroup.subtree_control"), "").unwrap();
        let m = Manager::new(&layout, &own_paths("0::/\n"), "supervisor", None, 1).unwrap();
        assert!(matches!(m, Manager::V2(ref b) if *b == t.path().join("supervisor")));
        assert_eq!(fs::read_to_string(t.path().join("cgroup.subtree_control")).unwrap(), "+memory +pids");
    }

    #[test]
    fn v1_memory_order_and_devices() {
        let t = tempfile::tempdir().unwrap();
        let mut controllers = BTreeMap::new();
        for c in ["memory", "cpu", "pids", "devices"] {
            controllers.insert(c.to_string(), t.path().join(c));
        }
        let layout = Layout::Legacy { controllers, unified: None };
        let m = Manager::new(&layout, &own_paths("4:memory:/a\n"), "supervisor", None, 1).unwrap();
        let cg = m.create("db").unwrap();
        let mem = t.path().join("memory/a/supervisor/db");
        assert!(mem.is_dir());
        fs::write(mem.join("memory.memsw.limit_in_bytes"), "9223372036854771712\n").unwrap();
        let rules = vec![DeviceRule { allow: true, kind: 'c', major: Some(1), minor: Some(3), access: "rwm".into() }];
        cg.set(&Resources { memory: Some(1 << 30), pids: Some(10), devices: Some(rules), ..Resources::default() })
            .unwrap();
        let rd = |p: &str| fs::read_to_string(t.path().join(p)).unwrap();
        assert_eq!(rd("memory/a/supervisor/db/memory.limit_in_bytes"), "1073741824");
        assert_eq!(rd("memory/a/supervisor/db/memory.memsw.limit_in_bytes"), "1073741824");
        assert_eq!(rd("cpu/supervisor/db/cpu.cfs_quota_us"), "-1");
        assert_eq!(rd("pids/supervisor/db/pids.max"), "10");
        // devices.deny "a" then the allow line (a real file keeps only the last write).
        assert_eq!(rd("devices/supervisor/db/devices.allow"), "c 1:3 rwm");
        assert_eq!(rd("devices/supervisor/db/devices.deny"), "a");
    }

    #[test]
    fn v1_kill_all_freezes_only_a_cgroup_with_processes_in_it() {
        use std::os::unix::process::ExitStatusExt;
        let t = tempfile::tempdir().unwrap();
        let dirs: BTreeMap<String, PathBuf> =
            ["freezer", "pids"].map(|c| (c.to_string(), t.path().join(c))).into_iter().collect();
        for d in dirs.values() {
            fs::create_dir(d).unwrap();
            fs::write(d.join("cgroup.procs"), "").unwrap();
        }
        let cg = Cgroup::V1(dirs);
        let state = t.path().join("freezer/freezer.state");
        cg.kill_all().unwrap();
        assert!(!state.exists(), "an empty cgroup was frozen");
        let mut child = std::process::Command::new("sleep").arg("100").spawn().unwrap();
        fs::write(t.path().join("pids/cgroup.procs"), format!("{}\n", child.id())).unwrap();
        cg.kill_all().unwrap();
        assert_eq!(child.wait().unwrap().signal(), Some(libc::SIGKILL));
        // Frozen around the kill and thawed after (a file keeps the last write).
        assert_eq!(fs::read_to_string(&state).unwrap(), "THAWED");
    }
}
