//! A unit's figures from the kernel, read at scrape time (blocking: run
//! it on the blocking pool): CPU, memory and processes from its cgroup,
//! network bytes from its network namespace.

use std::path::Path;

use crate::runtime::procs::net_dev;
use crate::supervisor::engine::UnitSample;

/// What the kernel says of one unit's container; `None` where there is
/// no container, or the figure cannot be read (a controller that is not
/// mounted, a container that just ended).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Reading {
    pub cpu_seconds: Option<f64>,
    /// In use, without the page cache the kernel may drop at once (what
    /// `stats` and `docker stats` show).
    pub memory_bytes: Option<u64>,
    /// None: no limit.
    pub memory_limit_bytes: Option<u64>,
    pub pids: Option<u64>,
    /// Received and sent on its interfaces (loopback left out).
    pub network: Option<(u64, u64)>,
}

/// Reads `unit`'s container: its cgroup, and `/proc/PID/net/dev` of its
/// first process (whose network namespace is the container's).
pub fn read(unit: &UnitSample, proc: &Path) -> Reading {
    let mut out = Reading::default();
    if let Some(cgroup) = &unit.cgroup {
        let usage = cgroup.usage();
        let io = cgroup.io();
        out.cpu_seconds = usage.cpu_ns.map(|ns| ns as f64 / 1e9);
        out.memory_bytes = usage.memory.map(|m| m.saturating_sub(io.inactive_file));
        out.memory_limit_bytes = io.memory_limit;
        out.pids = usage.pids;
    }
    if let Some(pid) = unit.netns_pid {
        out.network =
            std::fs::read_to_string(proc.join(pid.to_string()).join("net/dev")).ok().map(|text| net_dev(&text));
    }
    out
}
