//! `update` and `events` of `supervisor-runtime`: their flags (runc's) and
//! output.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{Failure, failure};
use crate::runtime::cgroups::Update;
use crate::runtime::oci;

/// runc's `update` flags. With `--resources`, the flags given change what
/// it says.
#[derive(clap::Args, Debug)]
pub(super) struct UpdateArgs {
    /// The resources to apply, an OCI `LinuxResources` object (JSON); `-`:
    /// standard input.
    #[arg(short, long, value_name = "FILE")]
    resources: Option<PathBuf>,
    /// Memory limit (bytes, or with a k, m, g or t suffix; -1: none).
    #[arg(long, value_name = "SIZE", allow_hyphen_values = true, value_parser = size)]
    memory: Option<i64>,
    /// Memory and swap together (as --memory; -1: unbounded swap).
    #[arg(long = "memory-swap", value_name = "SIZE", allow_hyphen_values = true, value_parser = size)]
    memory_swap: Option<i64>,
    /// The soft memory limit (as --memory).
    #[arg(long = "memory-reservation", value_name = "SIZE", allow_hyphen_values = true, value_parser = size)]
    memory_reservation: Option<i64>,
    /// CPU time per period, in microseconds (-1: none).
    #[arg(long = "cpu-quota", value_name = "US", allow_hyphen_values = true)]
    cpu_quota: Option<i64>,
    /// The CFS period, in microseconds.
    #[arg(long = "cpu-period", value_name = "US")]
    cpu_period: Option<u64>,
    /// The CPU's relative weight (cgroup v1 shares; v2 gets the matching
    /// weight).
    #[arg(long = "cpu-shares", visible_alias = "cpu-share", value_name = "SHARES")]
    cpu_shares: Option<u64>,
    /// The CPUs it may run on (`0-2,4`).
    #[arg(long = "cpuset-cpus", value_name = "LIST")]
    cpuset_cpus: Option<String>,
    /// The memory nodes it may use.
    #[arg(long = "cpuset-mems", value_name = "LIST")]
    cpuset_mems: Option<String>,
    /// The most processes (0 or less: none).
    #[arg(long = "pids-limit", value_name = "N", allow_hyphen_values = true)]
    pids_limit: Option<i64>,
    id: String,
}

/// `events` flags.
#[derive(clap::Args, Debug)]
pub(super) struct EventsArgs {
    /// Print one stats event and exit.
    #[arg(long)]
    stats: bool,
    /// How often stats are printed (`5s`, `500ms`).
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = humantime::parse_duration)]
    interval: Duration,
    id: String,
}

/// A size as runc reads one: bytes, or a binary k, m, g, t or p suffix (an
/// optional trailing `b`, any case); `-1` is none.
pub(super) fn size(s: &str) -> Result<i64, String> {
    if s == "-1" {
        return Ok(-1);
    }
    let lower = s.trim().to_ascii_lowercase();
    let body = lower.strip_suffix('b').unwrap_or(&lower);
    let (digits, shift) = match body.char_indices().last() {
        Some((i, c @ ('k' | 'm' | 'g' | 't' | 'p'))) => (&body[..i], 10 * (1 + "kmgtp".find(c).unwrap_or(0) as u32)),
        _ => (body, 0),
    };
    let bad = || format!("{s:?}: a size in bytes, or with a k, m, g or t suffix, or -1");
    let n: f64 = digits.trim().parse().map_err(|_| bad())?;
    if !n.is_finite() || n < 0.0 {
        return Err(bad());
    }
    let bytes = n * (1u64 << shift) as f64;
    if bytes >= i64::MAX as f64 { Err(bad()) } else { Ok(bytes as i64) }
}

fn read_resources(path: &Path) -> Result<Update, Failure> {
    let mut text = Vec::new();
    let read = if path == Path::new("-") {
        std::io::stdin().read_to_end(&mut text).map(|_| ())
    } else {
        std::fs::File::open(path).and_then(|mut f| f.read_to_end(&mut text)).map(|_| ())
    };
    read.map_err(|e| failure(format!("--resources {}: {e}", path.display())))?;
    let resources: oci_spec::runtime::LinuxResources = serde_json::from_slice(&text)
        .map_err(|e| failure(format!("--resources {}: not a LinuxResources object: {e}", path.display())))?;
    Ok(oci::resources_update(&resources)?)
}

pub(super) fn update(root: &Path, args: &UpdateArgs) -> Result<(), Failure> {
    let mut u = match &args.resources {
        Some(path) => read_resources(path)?,
        None => Update::default(),
    };
    let flag = |f: &Option<i64>, v: &mut Option<i64>| {
        if f.is_some() {
            *v = *f;
        }
    };
    flag(&args.memory, &mut u.memory);
    flag(&args.memory_swap, &mut u.memory_swap);
    flag(&args.memory_reservation, &mut u.memory_reservation);
    flag(&args.cpu_quota, &mut u.cpu_quota);
    flag(&args.pids_limit, &mut u.pids);
    u.cpu_period = args.cpu_period.or(u.cpu_period);
    u.cpu_shares = args.cpu_shares.or(u.cpu_shares);
    u.cpuset_cpus = args.cpuset_cpus.clone().or(u.cpuset_cpus);
    u.cpuset_mems = args.cpuset_mems.clone().or(u.cpuset_mems);
    Ok(oci::update(root, &args.id, &u)?)
}

/// One event, one compact JSON line, as runc writes them; false once our
/// output is closed.
fn emit(event: &oci::Event) -> bool {
    use std::io::Write;
    let Ok(line) = serde_json::to_string(event) else { return false };
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}").and_then(|()| out.flush()).is_ok()
}

pub(super) fn events(root: &Path, args: &EventsArgs) -> Result<(), Failure> {
    if args.stats {
        emit(&oci::stats_event(root, &args.id)?);
        return Ok(());
    }
    if args.interval.is_zero() {
        return Err(failure("--interval must be more than 0"));
    }
    oci::events(root, &args.id, args.interval, |event| emit(&event))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::size;

    #[test]
    fn sizes_as_runc_reads_them() {
        assert_eq!(size("1048576"), Ok(1 << 20));
        assert_eq!(size("64m"), Ok(64 << 20));
        assert_eq!(size("64M"), Ok(64 << 20));
        assert_eq!(size("1.5g"), Ok(3 << 29));
        assert_eq!(size("2kb"), Ok(2048));
        assert_eq!(size("-1"), Ok(-1));
        assert!(size("-2").is_err());
        assert!(size("lots").is_err());
        assert!(size("").is_err());
    }
}
