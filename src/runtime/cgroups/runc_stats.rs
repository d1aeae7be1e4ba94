//! A container's cgroup statistics in the shape `runc events --stats`
//! prints them (runc's `events/types.go`): what engines and their tools
//! parse. Read from v1 (cpuacct, cpu, memory, pids, blkio where joined)
//! or v2 interface files; a file that is not there leaves its numbers at 0.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use serde::Serialize;

use super::Cgroup;

#[derive(Debug, Default, Serialize)]
pub struct Stats {
    pub cpu: Cpu,
    pub memory: Memory,
    pub pids: Pids,
    pub blkio: Blkio,
}

#[derive(Debug, Default, Serialize)]
pub struct Cpu {
    pub usage: CpuUsage,
    pub throttling: Throttling,
}

/// Nanoseconds.
#[derive(Debug, Default, Serialize)]
pub struct CpuUsage {
    #[serde(skip_serializing_if = "is_zero")]
    pub total: u64,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub percpu: Vec<u64>,
    pub kernel: u64,
    pub user: u64,
}

#[derive(Debug, Default, Serialize)]
pub struct Throttling {
    #[serde(skip_serializing_if = "is_zero")]
    pub periods: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub throttled_periods: u64,
    /// Nanoseconds.
    #[serde(skip_serializing_if = "is_zero")]
    pub throttled_time: u64,
}

#[derive(Debug, Default, Serialize)]
pub struct Memory {
    #[serde(skip_serializing_if = "is_zero")]
    pub cache: u64,
    pub usage: MemoryEntry,
    pub swap: MemoryEntry,
    pub kernel: MemoryEntry,
    /// `memory.stat`, key by key.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub raw: BTreeMap<String, u64>,
}

/// Bytes; a limit of none is `u64::MAX`, as runc reports it.
#[derive(Debug, Default, Serialize)]
pub struct MemoryEntry {
    pub limit: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub usage: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub max: u64,
    pub failcnt: u64,
}

#[derive(Debug, Default, Serialize)]
pub struct Pids {
    #[serde(skip_serializing_if = "is_zero")]
    pub current: u64,
    /// 0: none.
    #[serde(skip_serializing_if = "is_zero")]
    pub limit: u64,
}

#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Blkio {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub io_service_bytes_recursive: Vec<BlkioEntry>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub io_serviced_recursive: Vec<BlkioEntry>,
}

#[derive(Debug, Default, Serialize, PartialEq, Eq)]
pub struct BlkioEntry {
    pub major: u64,
    pub minor: u64,
    pub op: String,
    pub value: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

fn text(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_default()
}

/// A number file; "max" (v2) or v1's page-rounded i64::MAX is `u64::MAX`.
fn number(path: &Path) -> u64 {
    let t = text(path);
    match t.trim() {
        "max" => u64::MAX,
        s => s.parse::<u64>().map(|n| if n >= 1 << 62 { u64::MAX } else { n }).unwrap_or(0),
    }
}

/// `key value` lines.
fn keyed(t: &str) -> BTreeMap<String, u64> {
    t.lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(' ')?;
            Some((k.to_string(), v.trim().parse().ok()?))
        })
        .collect()
}

/// USER_HZ: the unit of v1's `cpuacct.stat` (100 on every Linux ABI).
const USER_HZ: u64 = 100;

impl Cgroup {
    /// See the module's doc.
    pub fn runc_stats(&self) -> Stats {
        match self {
            Cgroup::V1(dirs) => {
                let mut s = Stats::default();
                if let Some(d) = dirs.get("cpuacct") {
                    s.cpu.usage.total = number(&d.join("cpuacct.usage"));
                    s.cpu.usage.percpu = text(&d.join("cpuacct.usage_percpu"))
                        .split_whitespace()
                        .filter_map(|n| n.parse().ok())
                        .collect();
                    let ticks = keyed(&text(&d.join("cpuacct.stat")));
                    let ns = |k: &str| ticks.get(k).copied().unwrap_or(0) * (1_000_000_000 / USER_HZ);
                    (s.cpu.usage.user, s.cpu.usage.kernel) = (ns("user"), ns("system"));
                }
                if let Some(d) = dirs.get("cpu") {
                    let t = keyed(&text(&d.join("cpu.stat")));
                    let get = |k: &str| t.get(k).copied().unwrap_or(0);
                    s.cpu.throttling = Throttling {
                        periods: get("nr_periods"),
                        throttled_periods: get("nr_throttled"),
                        throttled_time: get("throttled_time"),
                    };
                }
                if let Some(d) = dirs.get("memory") {
                    let entry = |prefix: &str| MemoryEntry {
                        limit: number(&d.join(format!("{prefix}.limit_in_bytes"))),
                        usage: number(&d.join(format!("{prefix}.usage_in_bytes"))),
                        max: number(&d.join(format!("{prefix}.max_usage_in_bytes"))),
                        failcnt: number(&d.join(format!("{prefix}.failcnt"))),
                    };
                    s.memory.usage = entry("memory");
                    s.memory.swap = entry("memory.memsw");
                    s.memory.kernel = entry("memory.kmem");
                    s.memory.raw = keyed(&text(&d.join("memory.stat")));
                    s.memory.cache = s.memory.raw.get("cache").copied().unwrap_or(0);
                }
                if let Some(d) = dirs.get("pids") {
                    s.pids = pids(d);
                }
                if let Some(d) = dirs.get("blkio") {
                    s.blkio.io_service_bytes_recursive = blkio_v1(&text(&d.join("blkio.throttle.io_service_bytes")));
                    s.blkio.io_serviced_recursive = blkio_v1(&text(&d.join("blkio.throttle.io_serviced")));
                }
                s
            }
            Cgroup::V2(d) => {
                let mut s = Stats::default();
                let cpu = keyed(&text(&d.join("cpu.stat")));
                let us = |k: &str| cpu.get(k).copied().unwrap_or(0) * 1000;
                s.cpu.usage = CpuUsage {
                    total: us("usage_usec"),
                    percpu: Vec::new(),
                    kernel: us("system_usec"),
                    user: us("user_usec"),
                };
                s.cpu.throttling = Throttling {
                    periods: cpu.get("nr_periods").copied().unwrap_or(0),
                    throttled_periods: cpu.get("nr_throttled").copied().unwrap_or(0),
                    throttled_time: us("throttled_usec"),
                };
                let events = keyed(&text(&d.join("memory.events")));
                s.memory.usage = MemoryEntry {
                    limit: number(&d.join("memory.max")),
                    usage: number(&d.join("memory.current")),
                    max: number(&d.join("memory.peak")),
                    failcnt: events.get("max").copied().unwrap_or(0),
                };
                // v2 counts swap alone; runc reports memory and swap together.
                let swap_limit = number(&d.join("memory.swap.max"));
                s.memory.swap = MemoryEntry {
                    limit: if swap_limit == u64::MAX || s.memory.usage.limit == u64::MAX {
                        u64::MAX
                    } else {
                        swap_limit + s.memory.usage.limit
                    },
                    usage: number(&d.join("memory.swap.current")) + s.memory.usage.usage,
                    max: 0,
                    failcnt: 0,
                };
                s.memory.raw = keyed(&text(&d.join("memory.stat")));
                s.memory.cache = s.memory.raw.get("file").copied().unwrap_or(0);
                s.pids = pids(d);
                (s.blkio.io_service_bytes_recursive, s.blkio.io_serviced_recursive) = io_v2(&text(&d.join("io.stat")));
                s
            }
        }
    }
}

fn pids(d: &Path) -> Pids {
    let limit = number(&d.join("pids.max"));
    Pids { current: number(&d.join("pids.current")), limit: if limit == u64::MAX { 0 } else { limit } }
}

/// v1's `MAJ:MIN Op N` lines (the `Total` line has no device: left out).
fn blkio_v1(t: &str) -> Vec<BlkioEntry> {
    t.lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let (dev, op, value) = (f.next()?, f.next()?, f.next()?.parse().ok()?);
            let (major, minor) = dev.split_once(':')?;
            Some(BlkioEntry { major: major.parse().ok()?, minor: minor.parse().ok()?, op: op.to_string(), value })
        })
        .collect()
}

/// v2's `MAJ:MIN rbytes=N wbytes=N rios=N wios=N ...` lines: bytes and
/// operations, as `Read` and `Write` entries.
fn io_v2(t: &str) -> (Vec<BlkioEntry>, Vec<BlkioEntry>) {
    let (mut bytes, mut ios) = (Vec::new(), Vec::new());
    for line in t.lines() {
        let mut f = line.split_whitespace();
        let Some((major, minor)) = f.next().and_then(|d| d.split_once(':')) else { continue };
        let (Ok(major), Ok(minor)) = (major.parse::<u64>(), minor.parse::<u64>()) else { continue };
        for field in f {
            let Some((k, v)) = field.split_once('=') else { continue };
            let Ok(value) = v.parse() else { continue };
            let (list, op) = match k {
                "rbytes" => (&mut bytes, "Read"),
                "wbytes" => (&mut bytes, "Write"),
                "rios" => (&mut ios, "Read"),
                "wios" => (&mut ios, "Write"),
                _ => continue,
            };
            list.push(BlkioEntry { major, minor, op: op.into(), value });
        }
    }
    (bytes, ios)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1_files_in_runcs_shape() {
        let t = tempfile::tempdir().unwrap();
        let mut dirs = BTreeMap::new();
        for (c, files) in [
            (
                "cpuacct",
                &[
                    ("cpuacct.usage", "5000"),
                    ("cpuacct.usage_percpu", "3000 2000 "),
                    ("cpuacct.stat", "user 3\nsystem 1\n"),
                ][..],
            ),
            ("cpu", &[("cpu.stat", "nr_periods 10\nnr_throttled 2\nthrottled_time 777\n")][..]),
            (
                "memory",
                &[
                    ("memory.usage_in_bytes", "4096"),
                    ("memory.limit_in_bytes", "9223372036854771712"),
                    ("memory.max_usage_in_bytes", "8192"),
                    ("memory.failcnt", "0"),
                    ("memory.stat", "cache 100\nrss 200\n"),
                ][..],
            ),
            ("pids", &[("pids.current", "3"), ("pids.max", "max")][..]),
        ] {
            let d = t.path().join(c);
            fs::create_dir(&d).unwrap();
            for (f, v) in files {
                fs::write(d.join(f), v).unwrap();
            }
            dirs.insert(c.to_string(), d);
        }
        let s = serde_json::to_value(Cgroup::V1(dirs).runc_stats()).unwrap();
        assert_eq!(s["cpu"]["usage"]["total"], 5000);
        assert_eq!(s["cpu"]["usage"]["percpu"], serde_json::json!([3000, 2000]));
        assert_eq!(s["cpu"]["usage"]["user"], 30_000_000);
        assert_eq!(s["cpu"]["usage"]["kernel"], 10_000_000);
        assert_eq!(s["cpu"]["throttling"]["throttled_time"], 777);
        assert_eq!(s["memory"]["usage"]["usage"], 4096);
        assert_eq!(s["memory"]["usage"]["limit"], u64::MAX);
        assert_eq!(s["memory"]["cache"], 100);
        assert_eq!(s["memory"]["raw"]["rss"], 200);
        assert_eq!(s["pids"], serde_json::json!({ "current": 3 }));
    }

    #[test]
    fn v2_io_and_blkio_lines() {
        let (bytes, ios) = io_v2("8:0 rbytes=10 wbytes=20 rios=1 wios=2 dbytes=0\n");
        assert_eq!(bytes.iter().map(|e| (e.op.as_str(), e.value)).collect::<Vec<_>>(), [("Read", 10), ("Write", 20)]);
        assert_eq!(ios.len(), 2);
        let v1 = blkio_v1("8:0 Read 4096\n8:0 Write 100\nTotal 4196\n");
        assert_eq!(
            v1,
            [
                BlkioEntry { major: 8, minor: 0, op: "Read".into(), value: 4096 },
                BlkioEntry { major: 8, minor: 0, op: "Write".into(), value: 100 }
            ]
        );
    }
}
