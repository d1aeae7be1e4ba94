//! Event storms and crash-looping fleets: an inotify queue that overflows,
//! 200 units crashing at once, a container flooding its log
//! (docs/reliability.md, "Event storms and crash-looping fleets").

use std::time::{Duration, Instant};

use crate::common;
use crate::common::daemon::{Daemon, busybox};
use crate::root_only;

/// A unit that runs `script` under sh, stopping at once on SIGTERM.
pub fn unit(script: &str) -> String {
    format!(
        "[container]\nimage = \"{}\"\ncommand = [\"sh\", \"-c\", {:?}]\n",
        busybox(),
        format!("trap 'exit 0' TERM; {script}")
    )
}

pub fn pid_of(d: &Daemon) -> u32 {
    d.child.as_ref().expect("the daemon runs").id()
}

/// The daemon's CPU time in clock ticks: its own and that of the children
/// it has reaped (the spawn helpers and the containers' first processes).
pub fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // The fields after the command's closing parenthesis; utime is the 14th
    // field of the line, so the 12th here.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    fields[11..15].iter().map(|f| f.parse::<u64>().unwrap()).sum()
}

/// The daemon's resident memory in KiB.
pub fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// Bytes the daemon has written (its logs, mostly).
pub fn written_bytes(pid: u32) -> u64 {
    let io = std::fs::read_to_string(format!("/proc/{pid}/io")).unwrap();
    let line = io.lines().find(|l| l.starts_with("wchar:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

pub fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).unwrap().count()
}

fn ticks_per_second() -> u64 {
    // SAFETY: sysconf has no preconditions.
    (unsafe { libc::sysconf(libc::_SC_CLK_TCK) }) as u64
}

/// Sets `fs.inotify.max_queued_events` and puts the old value back when
/// dropped (also when the test panics).
struct QueueLimit {
    old: String,
}

const MAX_QUEUED: &str = "/proc/sys/fs/inotify/max_queued_events";

impl QueueLimit {
    fn set(n: u32) -> QueueLimit {
        let old = std::fs::read_to_string(MAX_QUEUED).unwrap();
        std::fs::write(MAX_QUEUED, n.to_string()).unwrap();
        QueueLimit { old }
    }
}

impl Drop for QueueLimit {
    fn drop(&mut self) {
        let _ = std::fs::write(MAX_QUEUED, self.old.trim());
    }
}

/// Stops the daemon (SIGSTOP) while alive: events queue up unread.
struct Stopped(i32);

impl Stopped {
    fn new(pid: u32) -> Stopped {
        // SAFETY: kill(2) of our child.
        unsafe { libc::kill(pid as i32, libc::SIGSTOP) };
        Stopped(pid as i32)
    }
}

impl Drop for Stopped {
    fn drop(&mut self) {
        // SAFETY: kill(2) of our child.
        unsafe { libc::kill(self.0, libc::SIGCONT) };
    }
}

fn has_inotify(pid: u32) -> bool {
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else { return false };
    fds.flatten().any(|e| std::fs::read_link(e.path()).is_ok_and(|t| t.to_string_lossy().contains("inotify")))
}

/// Fills the daemon's inotify queue with events it ignores (names in the
/// parent of the unit directory), so that what comes next is lost.
fn overflow_queue(d: &Daemon, round: u32) {
    for i in 0..40 {
        std::fs::write(d.dir.path().join(format!("noise-{i}")), format!("{round}")).unwrap();
    }
}

/// The daemon's inotify queue overflows while unit files are written,
/// edited and deleted: every unit still ends as its file says.
#[test]
fn an_inotify_queue_overflow_ends_in_a_full_rescan() {
    root_only!("an_inotify_queue_overflow_ends_in_a_full_rescan");
    let d = {
        let _lock = common::host_lock();
        let _limit = QueueLimit::set(16);
        let d = Daemon::start();
        // The limit is taken when the watcher makes its inotify instance,
        // after the socket is up: put it back as soon as that is done.
        let deadline = Instant::now() + Duration::from_secs(20);
        while !has_inotify(pid_of(&d)) {
            assert!(Instant::now() < deadline, "the daemon made no inotify instance:\n{}", d.log());
            std::thread::sleep(Duration::from_millis(10));
        }
        d
    };
    let pid = pid_of(&d);
    let names: Vec<String> = (0..100).map(|i| format!("ov{i:03}")).collect();
    {
        let _stopped = Stopped::new(pid);
        overflow_queue(&d, 1);
        for n in &names {
            d.write_unit(n, &unit("sleep 100000 & wait"));
        }
    }
    let deadline = Instant::now() + Duration::from_secs(240);
    let all_running = |want: &dyn Fn(&str) -> bool| loop {
        let status = d.status();
        let running = status.iter().filter(|u| want(u["name"].as_str().unwrap()) && u["state"] == "running").count();
        let expected = names.iter().filter(|n| want(n)).count();
        if running == expected && status.len() == expected {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "{running} of {expected} units running ({} known):\n{}",
            status.len(),
            d.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let before = all_running(&|_| true);
    assert!(d.log().contains("event queue overflowed"), "the queue did not overflow:\n{}", d.log());

    // The second storm: ten units edited (a new command restarts them),
    // ten deleted, all behind another overflow.
    let old_pid = |name: &str| before.iter().find(|u| u["name"] == name).unwrap()["pid"].as_i64().unwrap();
    let overflows = d.log().matches("event queue overflowed").count();
    {
        let _stopped = Stopped::new(pid);
        overflow_queue(&d, 2);
        for n in &names[..10] {
            d.write_unit(n, &unit("echo edited; sleep 100000 & wait"));
        }
        for n in &names[10..20] {
            std::fs::remove_file(d.units().join(format!("{n}.toml"))).unwrap();
        }
    }
    let deleted = |n: &str| names[10..20].iter().any(|x| x == n);
    let after = all_running(&|n| !deleted(n));
    assert!(d.log().matches("event queue overflowed").count() > overflows, "no second overflow:\n{}", d.log());
    for n in &names[..10] {
        let u = after.iter().find(|u| u["name"] == *n.as_str()).unwrap();
        assert_ne!(u["pid"].as_i64().unwrap(), old_pid(n), "{n} was edited but not restarted");
        d.wait_log(n, None, "edited");
    }
    for n in &names[20..] {
        let u = after.iter().find(|u| u["name"] == *n.as_str()).unwrap();
        assert_eq!(u["pid"].as_i64().unwrap(), old_pid(n), "{n} was not edited but restarted");
    }
}

/// One sample of the daemon's footprint.
struct Sample {
    at: Duration,
    ticks: u64,
    rss: u64,
    fds: usize,
}

/// 200 units exit 1 at once and are restarted (`always`) for two minutes:
/// the daemon spends under a quarter of a core, and its memory and open
/// files do not grow from the first minute to the second.
#[test]
fn a_crash_looping_fleet_costs_bounded_cpu_and_does_not_grow() {
    root_only!("a_crash_looping_fleet_costs_bounded_cpu_and_does_not_grow");
    let d = Daemon::start();
    let pid = pid_of(&d);
    for i in 0..200 {
        d.write_unit(&format!("cl{i:03}"), &unit("exit 1"));
    }
    let start = Instant::now();
    let sample = || Sample { at: start.elapsed(), ticks: cpu_ticks(pid), rss: rss_kib(pid), fds: open_fds(pid) };
    let mut samples = vec![sample()];
    while start.elapsed() < Duration::from_secs(120) {
        std::thread::sleep(Duration::from_secs(2));
        samples.push(sample());
    }
    // Still crash-looping, all of them (none failed or stuck).
    let status = d.status();
    assert_eq!(status.len(), 200);
    let restarts: u64 = status.iter().map(|u| u["restarts"].as_u64().unwrap_or(0)).sum();
    let (first, last) = (&samples[0], samples.last().unwrap());
    let seconds = (last.at - first.at).as_secs_f64();
    let cores = (last.ticks - first.ticks) as f64 / ticks_per_second() as f64 / seconds;
    let minute = |from: u64, to: u64| {
        let s: Vec<&Sample> = samples.iter().filter(|s| s.at.as_secs() >= from && s.at.as_secs() < to).collect();
        (s.iter().map(|s| s.rss).max().unwrap(), s.iter().map(|s| s.fds).max().unwrap())
    };
    // The first minute from 20 s on: the units' first starts are done.
    let (rss1, fds1) = minute(20, 60);
    let (rss2, fds2) = minute(60, 121);
    eprintln!(
        "fleet: {restarts} restarts, {cores:.3} cores over {seconds:.0} s; RSS {rss1} -> {rss2} KiB; fds {fds1} -> {fds2}"
    );
    assert!(restarts >= 200, "the fleet did not crash-loop: {restarts} restarts");
    assert!(cores < 0.25, "the daemon used {cores:.3} cores on average");
    assert!(rss2 <= rss1 + 8 * 1024, "RSS grew from {rss1} KiB to {rss2} KiB");
    assert!(fds2 <= fds1 + 16, "open fds grew from {fds1} to {fds2}");
}

/// 20 calls of `supervisorctl status`, sorted by time, and the daemon's
/// largest RSS meanwhile.
fn status_times(d: &Daemon, pid: u32) -> (Vec<Duration>, u64) {
    let mut times = Vec::new();
    let mut rss_max = 0;
    for _ in 0..20 {
        let t = Instant::now();
        let out = d.ctl(&["status"]);
        times.push(t.elapsed());
        assert!(out.status.success(), "{}", common::text(&out.stderr));
        rss_max = rss_max.max(rss_kib(pid));
        std::thread::sleep(Duration::from_millis(50));
    }
    times.sort();
    (times, rss_max)
}

/// A container writes ~100 MB/s to stdout: `status` still answers in
/// under 100 ms (median of 20) and the daemon's memory stays bounded.
#[test]
fn a_log_flood_leaves_status_quick_and_memory_bounded() {
    root_only!("a_log_flood_leaves_status_quick_and_memory_bounded");
    let d = Daemon::start();
    let pid = pid_of(&d);
    // `status` alone, for the report: what the machine's load costs.
    let quiet = status_times(&d, pid).0;
    let rss0 = rss_kib(pid);
    // Small files: the flood's disk use stays under 3 x 8 MB. `yes` writes
    // far faster than 100 MB/s: the daemon sets the pace.
    let body = format!("{}[logs]\nmax_size = \"8M\"\nmax_files = 3\n", unit(&format!("yes {}", "y".repeat(99))));
    d.write_unit("flood", &body);
    d.wait_state("flood", "running");
    d.wait_log("flood", Some(1), "yyyy");
    let (written0, ticks0, t0) = (written_bytes(pid), cpu_ticks(pid), Instant::now());
    let (times, rss_max) = status_times(&d, pid);
    let elapsed = t0.elapsed().as_secs_f64();
    let rate = (written_bytes(pid) - written0) as f64 / elapsed / 1e6;
    let cores = (cpu_ticks(pid) - ticks0) as f64 / ticks_per_second() as f64 / elapsed;
    let median = times[10];
    let u = d.unit("flood").unwrap();
    eprintln!(
        "flood: {rate:.0} MB/s logged with {cores:.2} cores; status median {median:?} (max {:?}; {:?} without \
         the flood); RSS {rss0} -> max {rss_max} KiB",
        times[19], quiet[10]
    );
    assert_eq!(u["state"], "running");
    // 100 ms, unless the machine alone (other tests, other builds) already
    // makes `status` slower than half that: then twice its quiet median.
    let bound = Duration::from_millis(100).max(quiet[10] * 2);
    assert!(median < bound, "status took {median:?} (median of 20, bound {bound:?}): {times:?}");
    assert!(rss_max < rss0 + 64 * 1024, "RSS grew from {rss0} KiB to {rss_max} KiB");
}
