//! A container's processes as `top` shows them, read from `/proc` of the
//! host: host PID, PID in the container's namespace, user, CPU % (over
//! the process's life, as `ps` computes it), resident memory, start time and
//! command line. A process that ends while it is read is left out.

use std::io::Read;
use std::path::Path;
use std::time::{Duration, SystemTime};

use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Process {
    pub pid: u32,
    /// Its PID in the container (the last of `NSpid`).
    pub container_pid: Option<u32>,
    pub uid: Option<u32>,
    pub cpu_percent: f64,
    pub rss_bytes: u64,
    #[serde(serialize_with = "rfc3339")]
    pub started: SystemTime,
    pub command: String,
}

fn rfc3339<S: serde::Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
    // humantime refuses times before 1970 (a board without a clock).
    s.collect_str(&humantime::format_rfc3339_seconds((*t).max(SystemTime::UNIX_EPOCH)))
}

/// The most of a command line shown (as `ps`).
const MAX_CMDLINE: u64 = 4096;

/// The fields of `/proc/PID/stat` that `top` needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stat {
    /// utime + stime, in clock ticks.
    pub cpu_ticks: u64,
    /// Since the kernel started, in clock ticks.
    pub start_ticks: u64,
    /// Resident pages.
    pub rss_pages: u64,
}

/// Parses `/proc/PID/stat`. The command name (field 2) is in parentheses
/// and may itself hold spaces and parentheses: the fields after it start
/// after the last `)`.
pub fn parse_stat(text: &str) -> Option<Stat> {
    let rest = &text[text.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state is field 3, so field N is f[N - 3].
    let field = |n: usize| f.get(n - 3)?.parse::<u64>().ok();
    Some(Stat { cpu_ticks: field(14)?.checked_add(field(15)?)?, start_ticks: field(22)?, rss_pages: field(24)? })
}

/// A `/proc/PID/status` field's first value (`Uid`) and last (`NSpid`).
fn status_field(status: &str, key: &str, last: bool) -> Option<u32> {
    let line = status.lines().find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))?;
    let mut values = line.split_whitespace();
    let v = if last { values.next_back() } else { values.next() };
    v?.parse().ok()
}

/// The machine facts a CPU % and a start time need.
pub struct Clock {
    pub ticks_per_second: u64,
    pub page_size: u64,
    /// When the kernel started.
    pub boot: SystemTime,
    /// Since the kernel started, now.
    pub uptime: Duration,
}

impl Clock {
    pub fn read(proc: &Path) -> Option<Clock> {
        let ticks = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK).ok()??;
        let page = nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE).ok()??;
        let uptime: f64 = std::fs::read_to_string(proc.join("uptime")).ok()?.split_whitespace().next()?.parse().ok()?;
        let uptime = Duration::try_from_secs_f64(uptime).ok()?;
        Some(Clock {
            ticks_per_second: u64::try_from(ticks).ok()?.max(1),
            page_size: u64::try_from(page).ok()?,
            boot: SystemTime::now().checked_sub(uptime)?,
            uptime,
        })
    }
}

/// One process from its `/proc/PID` files' text.
pub fn process(pid: u32, stat: &str, status: &str, cmdline: &[u8], clock: &Clock) -> Option<Process> {
    let s = parse_stat(stat)?;
    let started_after = Duration::from_millis(s.start_ticks.saturating_mul(1000) / clock.ticks_per_second);
    let alive = clock.uptime.saturating_sub(started_after).as_secs_f64();
    let cpu = s.cpu_ticks as f64 / clock.ticks_per_second as f64;
    let command = if cmdline.is_empty() {
        // A kernel thread or a zombie: its name, as ps shows it.
        let name = stat.get(stat.find('(')? + 1..stat.rfind(')')?)?;
        format!("[{name}]")
    } else {
        let args: Vec<String> = cmdline
            .split(|b| *b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        args.join(" ")
    };
    Some(Process {
        pid,
        container_pid: status_field(status, "NSpid", true),
        uid: status_field(status, "Uid", false),
        cpu_percent: if alive > 0.0 { (cpu / alive * 1000.0).round() / 10.0 } else { 0.0 },
        rss_bytes: s.rss_pages.saturating_mul(clock.page_size),
        started: clock.boot.checked_add(started_after).unwrap_or(clock.boot),
        command,
    })
}

/// Bytes received and sent over the interfaces of `/proc/PID/net/dev`
/// (the process's network namespace), its loopback left out.
pub fn net_dev(text: &str) -> (u64, u64) {
    let mut sum = (0u64, 0u64);
    for line in text.lines() {
        let Some((iface, counters)) = line.split_once(':') else { continue };
        if iface.trim() == "lo" {
            continue;
        }
        let f: Vec<u64> = counters.split_whitespace().filter_map(|v| v.parse().ok()).collect();
        if let (Some(rx), Some(tx)) = (f.first(), f.get(8)) {
            sum = (sum.0.saturating_add(*rx), sum.1.saturating_add(*tx));
        }
    }
    sum
}

/// The processes `pids` (a cgroup's), sorted by PID, from `proc`.
pub fn processes(proc: &Path, pids: &[u32]) -> Vec<Process> {
    let Some(clock) = Clock::read(proc) else { return Vec::new() };
    let mut out: Vec<Process> = pids
        .iter()
        .filter_map(|&pid| {
            let dir = proc.join(pid.to_string());
            let stat = std::fs::read_to_string(dir.join("stat")).ok()?;
            let status = std::fs::read_to_string(dir.join("status")).ok()?;
            let mut cmdline = Vec::new();
            std::fs::File::open(dir.join("cmdline")).ok()?.take(MAX_CMDLINE).read_to_end(&mut cmdline).ok()?;
            process(pid, &stat, &status, &cmdline, &clock)
        })
        .collect();
    out.sort_by_key(|p| p.pid);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    // A real line, with a command name that holds ") (" and spaces.
    const STAT: &str = "4242 (my) (cmd x) S 1 4242 4242 0 -1 4194560 120 0 0 0 250 50 0 0 20 0 1 0 123400 4800000 300 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0";

    #[test]
    fn network_bytes_leave_out_the_loopback() {
        let dev = "Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo:    5000      10    0    0    0     0          0         0     5000      10    0    0    0     0       0          0
  eth0:    1296      16    0    0    0     0          0         0      656       8    0    0    0     0       0          0
";
        assert_eq!(net_dev(dev), (1296, 656));
    }

    #[test]
    fn stat_fields_come_after_the_last_parenthesis() {
        assert_eq!(parse_stat(STAT), Some(Stat { cpu_ticks: 300, start_ticks: 123400, rss_pages: 300 }));
        assert_eq!(parse_stat("12 (x) S 1"), None);
        assert_eq!(parse_stat("no parenthesis"), None);
    }

    #[test]
    fn a_process_as_top_shows_it() {
        let clock = Clock {
            ticks_per_second: 100,
            page_size: 4096,
            boot: SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000),
            uptime: Duration::from_secs(1534),
        };
        let status = "Name:\tsleep\nUid:\t1000\t1000\t1000\t1000\nNSpid:\t4242\t7\n";
        let p = process(4242, STAT, status, b"sleep\x00100000\x00", &clock).unwrap();
        assert_eq!(p.container_pid, Some(7));
        assert_eq!(p.uid, Some(1000));
        assert_eq!(p.command, "sleep 100000");
        assert_eq!(p.rss_bytes, 300 * 4096);
        // Started 1234 s after boot, 3 s of CPU in the 300 s since: 1 %.
        assert_eq!(p.started, SystemTime::UNIX_EPOCH + Duration::from_secs(1_001_234));
        assert_eq!(p.cpu_percent, 1.0);
        let zombie = process(4242, STAT, "Uid:\t0\t0\t0\t0\n", b"", &clock).unwrap();
        assert_eq!((zombie.command.as_str(), zombie.container_pid), ("[my) (cmd x]", None));
    }
}
