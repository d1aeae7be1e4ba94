//! A container's limits and block I/O as `stats` reads them (v1 and v2).

use std::fs;
use std::path::PathBuf;

use super::{Cgroup, keyed};

/// A container's limits and block I/O, as `stats` shows them.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Io {
    /// None: unlimited.
    pub memory_limit: Option<u64>,
    pub pids_limit: Option<u64>,
    pub block_read: u64,
    pub block_write: u64,
    /// Page cache the kernel may drop at once, which `docker stats` leaves
    /// out of the memory it shows.
    pub inactive_file: u64,
}

impl Cgroup {
    /// The memory and pids limits in force, and the bytes read from and
    /// written to block devices.
    pub fn io(&self) -> Io {
        // "max" (v2), or v1's "unlimited" (a page-rounded i64::MAX).
        let limit = |p: PathBuf| {
            let v = fs::read_to_string(p).ok()?.trim().parse::<u64>().ok()?;
            (v < 1 << 62).then_some(v)
        };
        match self {
            Cgroup::V2(dir) => {
                let (block_read, block_write) =
                    io_stat_v2(&fs::read_to_string(dir.join("io.stat")).unwrap_or_default());
                Io {
                    memory_limit: limit(dir.join("memory.max")),
                    pids_limit: limit(dir.join("pids.max")),
                    block_read,
                    block_write,
                    inactive_file: keyed(&dir.join("memory.stat"), "inactive_file").unwrap_or(0),
                }
            }
            Cgroup::V1(dirs) => {
                let blkio = dirs
                    .get("blkio")
                    .and_then(|d| fs::read_to_string(d.join("blkio.throttle.io_service_bytes")).ok())
                    .unwrap_or_default();
                let (block_read, block_write) = io_service_bytes_v1(&blkio);
                Io {
                    memory_limit: dirs.get("memory").and_then(|d| limit(d.join("memory.limit_in_bytes"))),
                    pids_limit: dirs.get("pids").and_then(|d| limit(d.join("pids.max"))),
                    block_read,
                    block_write,
                    inactive_file: dirs
                        .get("memory")
                        .and_then(|d| keyed(&d.join("memory.stat"), "total_inactive_file"))
                        .unwrap_or(0),
                }
            }
        }
    }
}

/// Bytes read and written, summed over devices, from v2's `io.stat`
/// (`8:0 rbytes=N wbytes=N rios=N ...`).
pub fn io_stat_v2(text: &str) -> (u64, u64) {
    let mut sum = (0u64, 0u64);
    for field in text.split_whitespace() {
        let value = |prefix: &str| field.strip_prefix(prefix).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        sum.0 = sum.0.saturating_add(value("rbytes="));
        sum.1 = sum.1.saturating_add(value("wbytes="));
    }
    sum
}

/// The same from v1's `blkio.throttle.io_service_bytes` (`8:0 Read N`).
pub fn io_service_bytes_v1(text: &str) -> (u64, u64) {
    let mut sum = (0u64, 0u64);
    for line in text.lines() {
        let mut f = line.split_whitespace();
        let (Some(_device), Some(op), Some(n)) = (f.next(), f.next(), f.next()) else { continue };
        let n: u64 = n.parse().unwrap_or(0);
        match op {
            "Read" => sum.0 = sum.0.saturating_add(n),
            "Write" => sum.1 = sum.1.saturating_add(n),
            _ => {}
        }
    }
    sum
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_io_is_summed_over_devices() {
        assert_eq!(
            io_stat_v2("8:0 rbytes=4096 wbytes=8192 rios=1 wios=2 dbytes=0 dios=0\n253:0 rbytes=1 wbytes=2\n"),
            (4097, 8194)
        );
        let v1 = "8:0 Read 4096\n8:0 Write 100\n8:0 Sync 4196\n8:0 Total 4196\n8:16 Read 4\nTotal 4200\n";
        assert_eq!(io_service_bytes_v1(v1), (4100, 100));
    }
}
