//! Changing a running container's limits one by one, as `runc update`
//! does: only what is given is written, everything else stays as it is.
//! ([`Cgroup::set`] is the other way: the whole set of a container's
//! limits, a limit left out lifted.)
//!
//! Values are the OCI runtime spec's (`LinuxResources`): bytes, CFS
//! microseconds, v1 CPU shares, and -1 for "no limit". On cgroup v2 they
//! are converted as runc converts them: shares to `cpu.weight`, the spec's
//! memory-and-swap total to `memory.swap.max` (the swap alone).

use std::path::Path;

use super::{CgroupError, Result, read, write};
use crate::runtime::cgroups::Cgroup;

/// Limits to change; `None` leaves one alone.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Update {
    /// Bytes; -1: none.
    pub memory: Option<i64>,
    /// Memory and swap together, in bytes (the spec's `memory.swap`); -1:
    /// unbounded swap.
    pub memory_swap: Option<i64>,
    /// The soft limit in bytes (v2: `memory.low`); -1: none.
    pub memory_reservation: Option<i64>,
    /// Microseconds per period; -1: none.
    pub cpu_quota: Option<i64>,
    pub cpu_period: Option<u64>,
    /// v1 shares (2 to 262144; v2 gets the matching weight).
    pub cpu_shares: Option<u64>,
    pub cpuset_cpus: Option<String>,
    pub cpuset_mems: Option<String>,
    /// Processes; 0 or less: none.
    pub pids: Option<i64>,
}

impl Update {
    pub fn is_empty(&self) -> bool {
        *self == Update::default()
    }
}

/// v2's `cpu.weight` for v1 `shares` (runc's and crun's conversion: 2 is
/// 1, 1024 about 39, 262144 is 10000).
pub fn shares_to_weight(shares: u64) -> u64 {
    let shares = shares.clamp(2, 262_144);
    1 + (shares - 2) * 9999 / 262_142
}

fn limit_v1(v: i64) -> String {
    if v < 0 { "-1".into() } else { v.to_string() }
}

fn limit_v2(v: i64) -> String {
    if v < 0 { "max".into() } else { v.to_string() }
}

fn pids_value(v: i64) -> String {
    if v <= 0 { "max".into() } else { v.to_string() }
}

/// The directory of `controller` in a v1 cgroup, which must be there.
fn v1_dir<'a>(cg: &'a Cgroup, controller: &'static str) -> Result<&'a Path> {
    cg.v1(controller).map(|p| p.as_path()).ok_or(CgroupError::NotJoined(controller))
}

impl Cgroup {
    /// Writes what `u` gives, in an order the kernel accepts.
    pub fn update(&self, u: &Update) -> Result<()> {
        match self {
            Cgroup::V1(_) => self.update_v1(u),
            Cgroup::V2(dir) => update_v2(dir, u),
        }
    }

    fn update_v1(&self, u: &Update) -> Result<()> {
        if u.memory.is_some() || u.memory_swap.is_some() || u.memory_reservation.is_some() {
            let dir = v1_dir(self, "memory")?;
            memory_v1(dir, u.memory, u.memory_swap)?;
            if let Some(r) = u.memory_reservation {
                write(&dir.join("memory.soft_limit_in_bytes"), &limit_v1(r))?;
            }
        }
        if u.cpu_quota.is_some() || u.cpu_period.is_some() || u.cpu_shares.is_some() {
            let dir = v1_dir(self, "cpu")?;
            // The period first: a quota is checked against the period in force.
            if let Some(p) = u.cpu_period {
                write(&dir.join("cpu.cfs_period_us"), &p.to_string())?;
            }
            if let Some(q) = u.cpu_quota {
                write(&dir.join("cpu.cfs_quota_us"), &limit_v1(q))?;
            }
            if let Some(s) = u.cpu_shares {
                write(&dir.join("cpu.shares"), &s.to_string())?;
            }
        }
        if u.cpuset_cpus.is_some() || u.cpuset_mems.is_some() {
            let dir = v1_dir(self, "cpuset")?;
            cpuset(dir, u)?;
        }
        if let Some(p) = u.pids {
            write(&v1_dir(self, "pids")?.join("pids.max"), &pids_value(p))?;
        }
        Ok(())
    }
}

/// v1 wants `memory.limit_in_bytes <= memory.memsw.limit_in_bytes` after
/// every write: which goes first depends on where the limit moves (runc's
/// order). Memory set to unlimited without a swap value takes swap along.
fn memory_v1(dir: &Path, memory: Option<i64>, swap: Option<i64>) -> Result<()> {
    let limit_file = dir.join("memory.limit_in_bytes");
    let memsw = dir.join("memory.memsw.limit_in_bytes");
    let swap = match (memory, swap) {
        (Some(m), None) if m < 0 && memsw.exists() => Some(-1),
        (_, s) => s,
    };
    if swap.is_some() && !memsw.exists() {
        return Err(CgroupError::NoSwapAccounting(memsw));
    }
    match (memory, swap) {
        (Some(m), Some(s)) => {
            let current: u64 = read(&limit_file)?.trim().parse().unwrap_or(u64::MAX);
            if s < 0 || current < s as u64 {
                write(&memsw, &limit_v1(s))?;
                write(&limit_file, &limit_v1(m))
            } else {
                write(&limit_file, &limit_v1(m))?;
                write(&memsw, &limit_v1(s))
            }
        }
        (Some(m), None) => write(&limit_file, &limit_v1(m)),
        (None, Some(s)) => write(&memsw, &limit_v1(s)),
        (None, None) => Ok(()),
    }
}

fn cpuset(dir: &Path, u: &Update) -> Result<()> {
    if let Some(c) = &u.cpuset_cpus {
        write(&dir.join("cpuset.cpus"), c)?;
    }
    if let Some(m) = &u.cpuset_mems {
        write(&dir.join("cpuset.mems"), m)?;
    }
    Ok(())
}

/// A v2 interface file, which must exist (its controller enabled).
fn v2_file(dir: &Path, name: &'static str) -> Result<std::path::PathBuf> {
    let path = dir.join(name);
    if path.exists() { Ok(path) } else { Err(CgroupError::NoFile(path)) }
}

fn update_v2(dir: &Path, u: &Update) -> Result<()> {
    if let Some(m) = u.memory {
        write(&v2_file(dir, "memory.max")?, &limit_v2(m))?;
    }
    if let Some(s) = u.memory_swap {
        // The spec's total, less the memory limit: the swap alone.
        let swap = if s < 0 {
            "max".to_string()
        } else {
            let memory = match u.memory {
                Some(m) => m,
                None => read(&v2_file(dir, "memory.max")?)?.trim().parse::<i64>().unwrap_or(-1),
            };
            if memory < 0 {
                return Err(CgroupError::SwapWithoutMemory);
            }
            (s - memory).max(0).to_string()
        };
        write(&v2_file(dir, "memory.swap.max")?, &swap)?;
    }
    if let Some(r) = u.memory_reservation {
        write(&v2_file(dir, "memory.low")?, &limit_v2(r))?;
    }
    if u.cpu_quota.is_some() || u.cpu_period.is_some() {
        let file = v2_file(dir, "cpu.max")?;
        // "QUOTA PERIOD": what is not given stays as it is.
        let current = read(&file)?;
        let mut fields = current.split_whitespace();
        let (old_quota, old_period) = (fields.next().unwrap_or("max"), fields.next().unwrap_or("100000"));
        let quota = u.cpu_quota.map_or_else(|| old_quota.to_string(), limit_v2);
        let period = u.cpu_period.map_or_else(|| old_period.to_string(), |p| p.to_string());
        write(&file, &format!("{quota} {period}"))?;
    }
    if let Some(s) = u.cpu_shares {
        write(&v2_file(dir, "cpu.weight")?, &shares_to_weight(s).to_string())?;
    }
    if let Some(c) = &u.cpuset_cpus {
        write(&v2_file(dir, "cpuset.cpus")?, c)?;
    }
    if let Some(m) = &u.cpuset_mems {
        write(&v2_file(dir, "cpuset.mems")?, m)?;
    }
    if let Some(p) = u.pids {
        write(&v2_file(dir, "pids.max")?, &pids_value(p))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::fs;

    use super::*;

    #[test]
    fn shares_become_weights_as_runc_converts_them() {
        assert_eq!(shares_to_weight(2), 1);
        assert_eq!(shares_to_weight(1024), 39);
        assert_eq!(shares_to_weight(262_144), 10_000);
        assert_eq!(shares_to_weight(0), 1);
    }

    fn v1_tree() -> (tempfile::TempDir, Cgroup) {
        let t = tempfile::tempdir().unwrap();
        let mut dirs = BTreeMap::new();
        for c in ["memory", "cpu", "pids"] {
            let d = t.path().join(c);
            fs::create_dir(&d).unwrap();
            dirs.insert(c.to_string(), d);
        }
        (t, Cgroup::V1(dirs))
    }

    #[test]
    fn v1_writes_only_what_is_given() {
        let (t, cg) = v1_tree();
        let rd = |f: &str| fs::read_to_string(t.path().join(f)).unwrap();
        fs::write(t.path().join("cpu/cpu.cfs_quota_us"), "50000").unwrap();
        fs::write(t.path().join("memory/memory.limit_in_bytes"), "67108864").unwrap();
        fs::write(t.path().join("memory/memory.memsw.limit_in_bytes"), "134217728").unwrap();
        cg.update(&Update { pids: Some(20), cpu_shares: Some(512), ..Update::default() }).unwrap();
        assert_eq!((rd("pids/pids.max"), rd("cpu/cpu.shares")), ("20".into(), "512".into()));
        assert_eq!(rd("cpu/cpu.cfs_quota_us"), "50000", "a limit not given is left alone");
        assert_eq!(rd("memory/memory.limit_in_bytes"), "67108864");
        cg.update(&Update { pids: Some(-1), cpu_quota: Some(-1), cpu_period: Some(50_000), ..Update::default() })
            .unwrap();
        assert_eq!(
            (rd("pids/pids.max"), rd("cpu/cpu.cfs_quota_us"), rd("cpu/cpu.cfs_period_us")),
            ("max".into(), "-1".into(), "50000".into())
        );
        // Memory unlimited takes swap along.
        cg.update(&Update { memory: Some(-1), ..Update::default() }).unwrap();
        assert_eq!(
            (rd("memory/memory.limit_in_bytes"), rd("memory/memory.memsw.limit_in_bytes")),
            ("-1".into(), "-1".into())
        );
    }

    #[test]
    fn v1_cpuset_needs_its_hierarchy_and_swap_needs_accounting() {
        let (_t, cg) = v1_tree();
        let e = cg.update(&Update { cpuset_cpus: Some("0".into()), ..Update::default() }).unwrap_err();
        assert!(e.to_string().contains("cpuset"), "{e}");
        let e = cg.update(&Update { memory: Some(1 << 20), memory_swap: Some(2 << 20), ..Update::default() });
        assert!(e.unwrap_err().to_string().contains("memsw"));
    }

    #[test]
    fn v2_converts_swap_and_keeps_the_period() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path();
        for (f, v) in [
            ("memory.max", "max"),
            ("memory.swap.max", "0"),
            ("cpu.max", "max 100000"),
            ("cpu.weight", "100"),
            ("pids.max", "max"),
        ] {
            fs::write(d.join(f), v).unwrap();
        }
        let cg = Cgroup::V2(d.to_path_buf());
        let rd = |f: &str| fs::read_to_string(d.join(f)).unwrap();
        cg.update(&Update {
            memory: Some(64 << 20),
            memory_swap: Some(96 << 20),
            cpu_quota: Some(20_000),
            ..Update::default()
        })
        .unwrap();
        assert_eq!((rd("memory.max"), rd("memory.swap.max")), ("67108864".into(), "33554432".into()));
        assert_eq!(rd("cpu.max"), "20000 100000");
        cg.update(&Update { cpu_period: Some(50_000), cpu_shares: Some(1024), pids: Some(7), ..Update::default() })
            .unwrap();
        assert_eq!((rd("cpu.max"), rd("cpu.weight"), rd("pids.max")), ("20000 50000".into(), "39".into(), "7".into()));
        // No memory.low file (memory controller off): named.
        let e = cg.update(&Update { memory_reservation: Some(1), ..Update::default() }).unwrap_err();
        assert!(e.to_string().contains("memory.low"), "{e}");
    }
}
