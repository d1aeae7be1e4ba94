//! Unit logs when the disk or the daemon fails: a full log directory
//! (docs/reliability.md, "Full disks", "The log directory") and the
//! daemon killed in the middle of a write ("The daemon killed at any
//! point", "Logs").

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::storms::{pid_of, unit};
use crate::common;
use crate::common::daemon::Daemon;
use crate::root_only;

/// A small tmpfs mounted on a directory, unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(dir).unwrap();
        let st = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size},mode=0700"), "tmpfs"])
            .arg(dir)
            .status()
            .unwrap();
        assert!(st.success(), "mount a tmpfs on {}", dir.display());
        Tmpfs(dir.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // Lazily: the daemon may still hold a log open.
        let _ = std::process::Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Fills the file system of `dir` with one file, its path.
fn fill(dir: &Path) -> PathBuf {
    use std::io::Write;
    let path = dir.join("filler");
    let mut f = std::fs::File::create(&path).unwrap();
    let chunk = vec![0u8; 4096];
    while f.write_all(&chunk).is_ok() {}
    path
}

fn dropped_lines(d: &Daemon, name: &str) -> u64 {
    let out = d.ctl(&["inspect", name]);
    assert!(out.status.success(), "inspect {name}: {}", common::text(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    v["logs"]["dropped_lines"].as_u64().unwrap_or_else(|| panic!("no logs.dropped_lines in inspect: {v}"))
}

/// Checks that every line of `text` is a whole record of `line-N-<pad>-end`.
fn assert_whole_lines(text: &str, pad: &str, what: &str) -> usize {
    for l in text.lines() {
        let fields: Vec<&str> = l.splitn(3, ' ').collect();
        assert_eq!(fields.len(), 3, "{what}: not a record: {l:.200}");
        assert!(humantime::parse_rfc3339(fields[0]).is_ok(), "{what}: no time: {l:.200}");
        assert_eq!(fields[1], "stdout", "{what}: {l:.200}");
        let body = fields[2].strip_prefix("line-").unwrap_or_else(|| panic!("{what}: a torn line: {l:.200}"));
        let (n, rest) = body.split_once('-').unwrap_or_else(|| panic!("{what}: a torn line: {l:.200}"));
        assert!(n.parse::<u64>().is_ok(), "{what}: a torn line: {l:.200}");
        assert_eq!(rest, format!("{pad}-end"), "{what}: a torn line: {:.200}", l);
    }
    text.lines().count()
}

/// The log directory's file system is full: the unit keeps running, its
/// output keeps being read (the lines that cannot be written are counted
/// in `inspect`), and its log takes lines again once there is space.
#[test]
fn a_full_log_directory_drops_and_counts_lines_and_resumes() {
    root_only!("a_full_log_directory_drops_and_counts_lines_and_resumes");
    let d = Daemon::start();
    let _tmpfs = Tmpfs::mount(&d.log_dir(), "1m");
    let filler = fill(&d.log_dir());
    let pad = "p".repeat(60);
    let name = common::unique_name("lf");
    // Far more than a pipe holds per second: blocked on a full pipe, the
    // unit's count of dropped lines would stop moving.
    let body = format!(
        "{}[logs]\nmax_size = \"200k\"\nmax_files = 2\n",
        unit(&format!("i=0; while true; do echo line-$i-{pad}-end; i=$((i+1)); done"))
    );
    d.write_unit(&name, &body);
    let pid = d.wait_state(&name, "running")["pid"].as_i64().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while dropped_lines(&d, &name) < 1000 {
        assert!(Instant::now() < deadline, "no dropped lines counted:\n{}", d.log());
        std::thread::sleep(Duration::from_millis(50));
    }
    // Still read: the count goes on growing, the container is the same.
    let before = dropped_lines(&d, &name);
    let deadline = Instant::now() + Duration::from_secs(30);
    while dropped_lines(&d, &name) < before + 10_000 {
        assert!(Instant::now() < deadline, "the unit's output is no longer read:\n{}", d.log());
        std::thread::sleep(Duration::from_millis(50));
    }
    let u = d.unit(&name).unwrap();
    assert_eq!(u["state"], "running", "{u}");
    assert_eq!(u["pid"].as_i64().unwrap(), pid, "the unit was restarted: {u}");
    let out = d.ctl(&["inspect", &name]);
    assert!(common::text(&out.stdout).contains("\"dropped_lines\""), "{}", common::text(&out.stdout));

    // Space again: new lines come to the log, whole.
    std::fs::remove_file(&filler).unwrap();
    d.wait_log(&name, Some(1), "-end");
    let log = std::fs::read_to_string(d.log_dir().join(format!("{name}.log"))).unwrap();
    assert!(assert_whole_lines(&log, &pad, "after the disk was full") > 0);
    assert!(d.log().contains("lines are dropped"), "the daemon did not say so:\n{}", d.log());
}

/// A log file that ends in a half line (a daemon killed in the middle of a
/// write) has it cut before the next line is written: no line of the file
/// is two records glued together.
#[test]
fn a_half_line_left_in_a_log_is_cut_before_the_next_line() {
    root_only!("a_half_line_left_in_a_log_is_cut_before_the_next_line");
    let d = Daemon::start();
    let name = common::unique_name("lh");
    let pad = "q".repeat(40);
    std::fs::create_dir_all(d.log_dir()).unwrap();
    let path = d.log_dir().join(format!("{name}.log"));
    std::fs::write(
        &path,
        format!("2026-11-30T12:00:00.000000Z stdout line-0-{pad}-end\n2026-11-30T12:00:00.000001Z stdout line-1-qq"),
    )
    .unwrap();
    let body = format!("{}[restart]\npolicy = \"no\"\n", unit(&format!("echo line-2-{pad}-end")));
    d.write_unit(&name, &body);
    d.wait_state(&name, "exited");
    d.wait_log(&name, None, "line-2-");
    let text = std::fs::read_to_string(&path).unwrap();
    assert_eq!(assert_whole_lines(&text, &pad, "the log"), 2, "{text}");
}

/// supervisord is killed (-9) while a unit floods its log with long lines;
/// after a successor has written to the same log, every line of it is a
/// whole line the unit wrote.
#[test]
fn no_torn_line_after_the_daemon_is_killed_mid_write() {
    root_only!("no_torn_line_after_the_daemon_is_killed_mid_write");
    let mut d = Daemon::start();
    let name = common::unique_name("lk");
    let pad = "k".repeat(6000);
    // Long lines: a write cut by the kill is more likely to be a partial one.
    let body = format!(
        "{}[restart]\npolicy = \"no\"\n[logs]\nmax_size = \"200M\"\n",
        unit(&format!("i=0; while [ $i -lt 4000 ]; do echo line-$i-{pad}-end; i=$((i+1)); done; sleep 100000 & wait"))
    );
    d.write_unit(&name, &body);
    d.wait_state(&name, "running");
    let path = d.log_dir().join(format!("{name}.log"));
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::fs::metadata(&path).map_or(0, |m| m.len()) < 4 << 20 {
        assert!(Instant::now() < deadline, "the unit did not flood its log:\n{}", d.log());
        std::thread::sleep(Duration::from_millis(1));
    }
    let mut child = d.child.take().unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    let before = std::fs::metadata(&path).unwrap().len();
    // Whether the kill cut a write this time (it need not: the test then
    // shows only that whole lines stay whole).
    let torn = std::fs::read(&path).unwrap().last() != Some(&b'\n');
    // The successor cleans up the killed daemon's container and starts
    // the unit anew, appending to the same log.
    d.spawn();
    assert_ne!(pid_of(&d), child.id());
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::fs::metadata(&path).map_or(0, |m| m.len()) < before + (1 << 20) {
        assert!(Instant::now() < deadline, "the successor wrote nothing to the log:\n{}", d.log());
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(d.ctl(&["stop", &name]).status.success());
    d.wait_state(&name, "inactive");
    let text = std::fs::read_to_string(&path).unwrap();
    let lines = assert_whole_lines(&text, &pad, "after kill -9");
    eprintln!("kill -9 mid-write: {lines} whole lines, {before} bytes before the kill, a half line left: {torn}");
}

/// A unit that floods its output right before each exit and is restarted
/// at once, cycle after cycle: the restart's writer never shares the log
/// file with the last run's copy still draining its pipes, so every line
/// is whole, each run's lines are all there, in order, and no two runs'
/// lines are mixed.
#[test]
fn a_burst_at_exit_is_whole_in_the_log_across_restarts() {
    root_only!("a_burst_at_exit_is_whole_in_the_log_across_restarts");
    let d = Daemon::start();
    let name = common::unique_name("lr");
    const LINES: usize = 3000;
    let pad = "r".repeat(200);
    let body = format!(
        "{}[restart]\npolicy = \"always\"\ndelay = \"50ms\"\nmax_delay = \"100ms\"\n[logs]\nmax_size = \"500M\"\n",
        unit(&format!(
            "c=$RANDOM$RANDOM$RANDOM; i=0; while [ $i -lt {LINES} ]; do echo run-$c-$i-{pad}-end; i=$((i+1)); done; \
             exit 3"
        ))
    );
    d.write_unit(&name, &body);
    d.wait_for(&name, "restarted 5 times", 60, |u| u.is_some_and(|u| u["restarts"].as_u64() >= Some(5)));
    assert!(d.ctl(&["stop", &name]).status.success());
    d.wait_state(&name, "inactive");
    let path = d.log_dir().join(format!("{name}.log"));
    let text = std::fs::read_to_string(&path).unwrap();
    // Each run's lines, in the order the file has them.
    let mut runs: Vec<(String, Vec<usize>)> = Vec::new();
    for l in text.lines() {
        let fields: Vec<&str> = l.splitn(3, ' ').collect();
        assert_eq!(fields.len(), 3, "not a record: {l:.300}");
        assert!(humantime::parse_rfc3339(fields[0]).is_ok(), "no time: {l:.300}");
        fn torn<T>(l: &str) -> T {
            panic!("a torn line: {l:.300}")
        }
        let body = fields[2].strip_prefix("run-").unwrap_or_else(|| torn(l));
        let (run, rest) = body.split_once('-').unwrap_or_else(|| torn(l));
        let (n, rest) = rest.split_once('-').unwrap_or_else(|| torn(l));
        let n: usize = n.parse().unwrap_or_else(|_| torn(l));
        if rest != format!("{pad}-end") {
            torn::<()>(l);
        }
        match runs.last_mut() {
            Some((r, ns)) if r == run => ns.push(n),
            _ => {
                assert!(runs.iter().all(|(r, _)| r != run), "run {run}'s lines are mixed with another's: {l:.300}");
                runs.push((run.to_string(), vec![n]));
            }
        }
    }
    assert!(runs.len() >= 5, "{} runs in the log, 5 restarts seen", runs.len());
    for (i, (run, ns)) in runs.iter().enumerate() {
        // The last run may have been stopped in the middle of its burst.
        let want = if i + 1 == runs.len() { ns.len() } else { LINES };
        assert!(
            ns.len() == want && ns.iter().enumerate().all(|(k, &n)| k == n),
            "run {run} ({i} of {}): {} lines, not 0..{want} in order",
            runs.len(),
            ns.len()
        );
    }
}
