//! `supervisorctl pause` / `unpause` end to end as root: a real daemon
//! freezes a real container's cgroup (v1 `freezer.state`, v2
//! `cgroup.freeze`), its probes and restart policy leave it alone, and a
//! stop thaws it first.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::daemon::{Daemon, alive, busybox};
use common::text;
use serde_json::Value;

/// A counter written to /data/count every 50 ms (a bind of `data`), a
/// shell that ends at once on SIGTERM, and an http probe of its httpd that
/// would fail (and, with `retries = 1`, restart it) if it ran while the
/// container is frozen: the kernel still accepts the connection, nobody
/// answers within the timeout. (An exec probe would not show it: its
/// process joins the cgroup and freezes with it, and its result never
/// comes while frozen.)
fn counter(data: &Path) -> String {
    format!(
        "[container]\nimage = \"{}\"\nvolumes = [\"{}:/data\"]\n\
         command = [\"sh\", \"-c\", \"trap 'exit 0' TERM; mkdir -p /www; echo ok > /www/index.html; httpd -p 8080 -h /www; i=0; while true; do i=$((i+1)); echo $i > /data/count.new; mv /data/count.new /data/count; sleep 0.05 & wait; done\"]\n\
         [restart]\npolicy = \"always\"\ndelay = \"100ms\"\n\
         [stop]\ntimeout = \"30s\"\n\
         [health]\nhttp = \"http://localhost:8080/\"\ninterval = \"200ms\"\ntimeout = \"300ms\"\nretries = 1\non_unhealthy = \"restart\"\n",
        busybox(),
        data.display()
    )
}

fn count(data: &Path) -> u64 {
    std::fs::read_to_string(data.join("count")).ok().and_then(|s| s.trim().parse().ok()).unwrap_or(0)
}

/// Waits until the counter is past `n`; how long that took.
fn wait_past(data: &Path, n: u64, d: &Daemon) -> Duration {
    let start = Instant::now();
    while count(data) <= n {
        assert!(start.elapsed() < Duration::from_secs(30), "the counter stays at {}:\n{}", count(data), d.log());
        std::thread::sleep(Duration::from_millis(5));
    }
    start.elapsed()
}

/// Whether the kernel says the unit's cgroup is frozen, read from the
/// freezer's own file (v1 `freezer.state`, v2 `cgroup.events`).
fn frozen(dirs: &[PathBuf]) -> bool {
    for dir in dirs {
        if let Ok(state) = std::fs::read_to_string(dir.join("freezer.state")) {
            return state.trim() == "FROZEN";
        }
        if let Ok(events) = std::fs::read_to_string(dir.join("cgroup.events")) {
            return events.lines().any(|l| l.trim() == "frozen 1");
        }
    }
    panic!("no freezer file in {dirs:?}");
}

fn pid(u: &Value) -> i64 {
    u["pid"].as_i64().unwrap_or_else(|| panic!("no pid: {u}"))
}

#[test]
fn pause_freezes_the_container_and_unpause_resumes_it() {
    root_only!("pause_freezes_the_container_and_unpause_resumes_it");
    let d = Daemon::start();
    let name = common::unique_name("pz");
    let data = d.dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    d.write_unit(&name, &counter(&data));
    let before = d.wait_for(&name, "healthy", 30, |u| u.is_some_and(|u| u["health"] == "healthy")).unwrap();
    // The running rate: ten steps of the counter.
    let c0 = count(&data);
    let ten_steps = wait_past(&data, c0 + 9, &d);
    let dirs = d.cgroup_dirs(&name);
    assert!(!frozen(&dirs));

    let out = d.ctl(&["pause", &name]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), format!("{name}: paused"));
    assert!(frozen(&dirs), "the kernel does not report the cgroup frozen");
    let u = d.unit(&name).unwrap();
    assert_eq!(u["state"], "paused", "{u}");
    assert_eq!(u["pid"], before["pid"]);
    let line = d.ctl(&["status", &name]);
    assert_eq!(line.status.code(), Some(3), "a paused unit does not run");
    assert!(text(&line.stdout).contains("PAUSED"), "{}", text(&line.stdout));

    // Frozen: over many times the time ten steps took when it ran (and
    // many probe intervals and timeouts), the counter does not move, its
    // probes do not fail it, its restart policy does not touch it.
    let c1 = count(&data);
    let window = (ten_steps * 4).max(Duration::from_secs(2));
    let end = Instant::now() + window;
    while Instant::now() < end {
        let u = d.unit(&name).unwrap();
        assert_eq!(
            (&u["state"], &u["health"], &u["restarts"]),
            (&"paused".into(), &"healthy".into(), &0.into()),
            "{u}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(count(&data), c1, "the counter moved while paused");
    assert!(!d.log().contains(&format!("{name}: health unhealthy")), "{}", d.log());

    // Twice is fine.
    let out = d.ctl(&["pause", &name]);
    assert!(out.status.success(), "{}", text(&out.stderr));

    let out = d.ctl(&["unpause", &name]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), format!("{name}: running"));
    assert!(!frozen(&dirs));
    wait_past(&data, c1, &d);
    let u = d.unit(&name).unwrap();
    assert_eq!((&u["state"], &u["pid"], &u["restarts"]), (&"running".into(), &before["pid"], &0.into()), "{u}");

    let out = d.ctl(&["unpause", &name]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains(&format!("{name} is not paused")), "{}", text(&out.stderr));
    let out = d.ctl(&["pause", "no-such-unit"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("no unit named \"no-such-unit\""), "{}", text(&out.stderr));

    // A stop of a paused unit thaws it, and its stop signal ends it at
    // once: no wait for the 30 s stop timeout and its SIGKILL.
    assert!(d.ctl(&["pause", &name]).status.success());
    let asked = Instant::now();
    let out = d.ctl(&["stop", &name]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(asked.elapsed() < Duration::from_secs(10), "stop took {:?}", asked.elapsed());
    let u = d.unit(&name).unwrap();
    assert_eq!((&u["state"], &u["exit_code"], &u["signal"]), (&"inactive".into(), &0.into(), &Value::Null), "{u}");
    assert!(!alive(pid(&before)));

    let out = d.ctl(&["pause", &name]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains(&format!("{name} is inactive: only a running unit can be paused")), "{err}");
}

#[test]
fn a_paused_unit_left_by_a_crashed_daemon_is_cleaned_and_started_anew() {
    root_only!("a_paused_unit_left_by_a_crashed_daemon_is_cleaned_and_started_anew");
    let mut d = Daemon::start();
    let name = common::unique_name("pc");
    let data = d.dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    d.write_unit(&name, &counter(&data));
    let old = d.wait_state(&name, "running");
    assert!(d.ctl(&["pause", &name]).status.success());
    let mut child = d.child.take().unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(alive(pid(&old)), "the frozen container outlives a SIGKILLed supervisor");
    d.spawn();
    // The next one kills it through its frozen cgroup and starts the unit
    // anew, not paused.
    let new = d.wait_state(&name, "running");
    assert_ne!(new["pid"], old["pid"]);
    assert!(!alive(pid(&old)), "the old frozen container survived the new supervisor's start");
    assert!(!frozen(&d.cgroup_dirs(&name)));
    wait_past(&data, count(&data), &d);
}
