//! The limits only an OCI spec asks for (`supervisor-runtime`), beyond the
//! memory, CPU quota, pids and devices every container of ours may have:
//! CPU shares (v2: weight) and realtime time, the cpuset (CPUs and memory
//! nodes), and hugetlb page limits. Written only when asked for.

use std::collections::BTreeMap;
use std::path::Path;

use super::{CgroupError, Result, read};

/// Writes a cgroup file that must exist: a missing one is a limit this
/// kernel does not have, named as such (creating it fails with EACCES).
fn write(path: &Path, value: &str) -> Result<()> {
    use std::io::Write;
    let opened = std::fs::OpenOptions::new().write(true).truncate(true).open(path);
    opened.and_then(|mut f| f.write_all(value.as_bytes())).map_err(|source| CgroupError::Io {
        op: "write",
        path: path.to_path_buf(),
        source,
    })
}

/// See the module's doc. `None` (or empty) leaves the kernel's value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExtraLimits {
    pub cpu_shares: Option<u64>,
    pub rt_period: Option<u64>,
    pub rt_runtime: Option<i64>,
    pub cpus: Option<String>,
    pub mems: Option<String>,
    /// Page size as the kernel names it (`2MB`, `1GB`) to a limit in bytes.
    pub hugetlb: BTreeMap<String, u64>,
    /// Memory: the soft limit (v2: `memory.low`), in bytes.
    pub memory_reservation: Option<u64>,
    pub swappiness: Option<u64>,
    /// v1's kernel memory and TCP buffer limits, in bytes.
    pub kernel_memory: Option<i64>,
    pub kernel_tcp: Option<i64>,
    pub disable_oom_killer: bool,
    pub blkio: Blkio,
    /// v1's net_cls class id and net_prio priorities (interface, priority).
    pub net_class_id: Option<u32>,
    pub net_priorities: Vec<(String, u32)>,
}

/// Block I/O weights and throttling (`linux.resources.blockIO`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Blkio {
    pub weight: Option<u16>,
    pub leaf_weight: Option<u16>,
    /// (major, minor, weight, leaf weight).
    pub weight_device: Vec<(i64, i64, Option<u16>, Option<u16>)>,
    /// (kind, major, minor, rate); kind: `read_bps`, `write_bps`,
    /// `read_iops`, `write_iops`.
    pub throttle: Vec<(&'static str, i64, i64, u64)>,
}

impl ExtraLimits {
    pub fn is_empty(&self) -> bool {
        *self == ExtraLimits::default()
    }
}

fn missing(controller: &'static str) -> CgroupError {
    CgroupError::ControllerNotMounted(controller)
}

/// v1: each limit in its controller's hierarchy.
pub(super) fn set_v1(dirs: &BTreeMap<String, std::path::PathBuf>, l: &ExtraLimits) -> Result<()> {
    if l.cpu_shares.is_some() || l.rt_period.is_some() || l.rt_runtime.is_some() {
        let cpu = dirs.get("cpu").ok_or(missing("cpu"))?;
        if let Some(s) = l.cpu_shares {
            write(&cpu.join("cpu.shares"), &s.to_string())?;
        }
        // The period first: the runtime must fit in it.
        if let Some(p) = l.rt_period {
            write(&cpu.join("cpu.rt_period_us"), &p.to_string())?;
        }
        if let Some(r) = l.rt_runtime {
            write(&cpu.join("cpu.rt_runtime_us"), &r.to_string())?;
        }
    }
    if l.cpus.is_some() || l.mems.is_some() {
        let cpuset = dirs.get("cpuset").ok_or(missing("cpuset"))?;
        if let Some(c) = &l.cpus {
            write(&cpuset.join("cpuset.cpus"), c)?;
        }
        if let Some(m) = &l.mems {
            write(&cpuset.join("cpuset.mems"), m)?;
        }
    }
    let memory_asked = l.memory_reservation.is_some()
        || l.swappiness.is_some()
        || l.kernel_memory.is_some()
        || l.kernel_tcp.is_some()
        || l.disable_oom_killer;
    if memory_asked {
        let m = dirs.get("memory").ok_or(missing("memory"))?;
        if let Some(r) = l.memory_reservation {
            write(&m.join("memory.soft_limit_in_bytes"), &r.to_string())?;
        }
        if let Some(s) = l.swappiness {
            write(&m.join("memory.swappiness"), &s.to_string())?;
        }
        if let Some(k) = l.kernel_memory {
            write(&m.join("memory.kmem.limit_in_bytes"), &k.to_string())?;
        }
        if let Some(k) = l.kernel_tcp {
            write(&m.join("memory.kmem.tcp.limit_in_bytes"), &k.to_string())?;
        }
        if l.disable_oom_killer {
            write(&m.join("memory.oom_control"), "1")?;
        }
    }
    if l.blkio != Blkio::default() {
        let dir = dirs.get("blkio").ok_or(missing("blkio"))?;
        let b = &l.blkio;
        // CFQ's file names, which runc and crun write too; a kernel whose
        // block devices have neither CFQ nor BFQ has no weight files.
        if let Some(w) = b.weight {
            write(&dir.join("blkio.weight"), &w.to_string())?;
        }
        if let Some(w) = b.leaf_weight {
            write(&dir.join("blkio.leaf_weight"), &w.to_string())?;
        }
        for (major, minor, weight, leaf) in &b.weight_device {
            if let Some(w) = weight {
                write(&dir.join("blkio.weight_device"), &format!("{major}:{minor} {w}"))?;
            }
            if let Some(w) = leaf {
                write(&dir.join("blkio.leaf_weight_device"), &format!("{major}:{minor} {w}"))?;
            }
        }
        for (kind, major, minor, rate) in &b.throttle {
            write(&dir.join(format!("blkio.throttle.{kind}_device")), &format!("{major}:{minor} {rate}"))?;
        }
    }
    if let Some(id) = l.net_class_id {
        let dir = dirs.get("net_cls").ok_or(missing("net_cls"))?;
        write(&dir.join("net_cls.classid"), &id.to_string())?;
    }
    if !l.net_priorities.is_empty() {
        let dir = dirs.get("net_prio").ok_or(missing("net_prio"))?;
        for (interface, priority) in &l.net_priorities {
            write(&dir.join("net_prio.ifpriomap"), &format!("{interface} {priority}"))?;
        }
    }
    if !l.hugetlb.is_empty() {
        let dir = dirs.get("hugetlb").ok_or(missing("hugetlb"))?;
        for (size, limit) in &l.hugetlb {
            write(&dir.join(format!("hugetlb.{size}.limit_in_bytes")), &limit.to_string())?;
        }
    }
    Ok(())
}

/// v2: weight for shares (runc's conversion), the cpuset, `hugetlb.*.max`;
/// realtime time has no v2 interface.
pub(super) fn set_v2(dir: &Path, l: &ExtraLimits) -> Result<()> {
    if l.rt_period.is_some() || l.rt_runtime.is_some() {
        return Err(CgroupError::Unsupported("realtime CPU time (cpu.realtimeRuntime) on cgroup v2"));
    }
    if l.swappiness.is_some() || l.kernel_memory.is_some() || l.kernel_tcp.is_some() || l.disable_oom_killer {
        return Err(CgroupError::Unsupported(
            "memory.swappiness, kernel, kernelTCP and disableOOMKiller (cgroup v1 only) on cgroup v2",
        ));
    }
    if l.net_class_id.is_some() || !l.net_priorities.is_empty() {
        return Err(CgroupError::Unsupported("network classID and priorities (cgroup v1 only) on cgroup v2"));
    }
    if l.blkio.leaf_weight.is_some() || l.blkio.weight_device.iter().any(|d| d.3.is_some()) {
        return Err(CgroupError::Unsupported("blockIO leafWeight (cgroup v1 only) on cgroup v2"));
    }
    if let Some(w) = l.blkio.weight {
        write(&dir.join("io.weight"), &format!("default {}", blkio_weight_to_io(w)))?;
    }
    for (major, minor, weight, _) in &l.blkio.weight_device {
        if let Some(w) = weight {
            write(&dir.join("io.weight"), &format!("{major}:{minor} {}", blkio_weight_to_io(*w)))?;
        }
    }
    for (kind, major, minor, rate) in &l.blkio.throttle {
        let key = match *kind {
            "read_bps" => "rbps",
            "write_bps" => "wbps",
            "read_iops" => "riops",
            _ => "wiops",
        };
        write(&dir.join("io.max"), &format!("{major}:{minor} {key}={rate}"))?;
    }
    if let Some(r) = l.memory_reservation {
        write(&dir.join("memory.low"), &r.to_string())?;
    }
    if let Some(s) = l.cpu_shares {
        write(&dir.join("cpu.weight"), &shares_to_weight(s).to_string())?;
    }
    if let Some(c) = &l.cpus {
        write(&dir.join("cpuset.cpus"), c)?;
    }
    if let Some(m) = &l.mems {
        write(&dir.join("cpuset.mems"), m)?;
    }
    for (size, limit) in &l.hugetlb {
        write(&dir.join(format!("hugetlb.{size}.max")), &limit.to_string())?;
    }
    Ok(())
}

/// cgroup v1 shares (2..262144) as v2 weight (1..10000), as runc and crun
/// convert them.
pub fn shares_to_weight(shares: u64) -> u64 {
    if shares == 0 {
        return 0;
    }
    1 + (shares.clamp(2, 262_144) - 2) * 9999 / 262_142
}

/// v1 blkio weight (10..1000) as v2 io weight (1..10000), as runc
/// converts it.
pub fn blkio_weight_to_io(weight: u16) -> u64 {
    1 + (u64::from(weight.clamp(10, 1000)) - 10) * 9999 / 990
}

/// A new v1 cpuset cgroup starts with no CPUs and no memory nodes, and no
/// process may join it then: each level from the first that has them down
/// to `dir` gets its parent's, as runc does it.
pub(super) fn init_cpuset(dir: &Path) -> Result<()> {
    let mut missing_levels = Vec::new();
    let mut cur = dir.to_path_buf();
    loop {
        let cpus = read(&cur.join("cpuset.cpus"))?;
        if !cpus.trim().is_empty() {
            break;
        }
        missing_levels.push(cur.clone());
        match cur.parent() {
            Some(p) if p.join("cpuset.cpus").exists() => cur = p.to_path_buf(),
            _ => break,
        }
    }
    for level in missing_levels.iter().rev() {
        let parent = level.parent().unwrap_or(level);
        for file in ["cpuset.cpus", "cpuset.mems"] {
            let value = read(&parent.join(file))?;
            write(&level.join(file), value.trim())?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_convert_to_weight_as_runc_does() {
        assert_eq!(shares_to_weight(2), 1);
        assert_eq!(shares_to_weight(1024), 39);
        assert_eq!(shares_to_weight(262_144), 10_000);
        assert_eq!(shares_to_weight(0), 0);
    }

    #[test]
    fn blkio_and_network_limits_are_written_where_v1_has_them() {
        let t = tempfile::tempdir().unwrap();
        let dirs = BTreeMap::from([("blkio".to_string(), t.path().to_path_buf())]);
        for f in ["blkio.weight", "blkio.throttle.read_bps_device"] {
            std::fs::write(t.path().join(f), "").unwrap();
        }
        let l = ExtraLimits {
            blkio: Blkio { weight: Some(300), throttle: vec![("read_bps", 8, 0, 1048576)], ..Blkio::default() },
            ..ExtraLimits::default()
        };
        set_v1(&dirs, &l).unwrap();
        let rd = |f: &str| std::fs::read_to_string(t.path().join(f)).unwrap();
        assert_eq!((rd("blkio.weight"), rd("blkio.throttle.read_bps_device")), ("300".into(), "8:0 1048576".into()));
        // No net_cls hierarchy: named, never skipped.
        let net = ExtraLimits { net_class_id: Some(0x100001), ..ExtraLimits::default() };
        assert!(matches!(set_v1(&dirs, &net), Err(CgroupError::ControllerNotMounted("net_cls"))));
        assert_eq!((blkio_weight_to_io(10), blkio_weight_to_io(1000)), (1, 10000));
    }

    #[test]
    fn a_new_cpuset_gets_its_parents_cpus_and_nodes_level_by_level() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path();
        let leaf = root.join("a/b");
        std::fs::create_dir_all(&leaf).unwrap();
        std::fs::write(root.join("cpuset.cpus"), "0-3\n").unwrap();
        std::fs::write(root.join("cpuset.mems"), "0\n").unwrap();
        for d in [root.join("a"), leaf.clone()] {
            std::fs::write(d.join("cpuset.cpus"), "\n").unwrap();
            std::fs::write(d.join("cpuset.mems"), "\n").unwrap();
        }
        init_cpuset(&leaf).unwrap();
        let rd = |p: &Path| std::fs::read_to_string(p).unwrap();
        assert_eq!((rd(&root.join("a/cpuset.cpus")), rd(&leaf.join("cpuset.cpus"))), ("0-3".into(), "0-3".into()));
        assert_eq!(rd(&leaf.join("cpuset.mems")), "0");
        let limits = ExtraLimits {
            cpus: Some("1".into()),
            hugetlb: BTreeMap::from([("2MB".to_string(), 4 << 20)]),
            ..ExtraLimits::default()
        };
        let dirs = BTreeMap::from([("cpuset".to_string(), leaf.clone()), ("hugetlb".to_string(), leaf.clone())]);
        std::fs::write(leaf.join("hugetlb.2MB.limit_in_bytes"), "").unwrap();
        let no_1gb = ExtraLimits { hugetlb: BTreeMap::from([("1GB".to_string(), 1 << 30)]), ..ExtraLimits::default() };
        let e = set_v1(&dirs, &no_1gb).unwrap_err().to_string();
        assert!(e.contains("hugetlb.1GB.limit_in_bytes") && e.contains("No such file"), "{e}");
        set_v1(&dirs, &limits).unwrap();
        assert_eq!(rd(&leaf.join("cpuset.cpus")), "1");
        assert_eq!(rd(&leaf.join("hugetlb.2MB.limit_in_bytes")), "4194304");
        let no_cpu = ExtraLimits { cpu_shares: Some(512), ..ExtraLimits::default() };
        assert!(matches!(set_v1(&dirs, &no_cpu), Err(CgroupError::ControllerNotMounted("cpu"))));
    }
}
