//! docs/supervisor.md "Logs": `supervisorctl logs --since` and `logs -f`
//! read across rotated files.

use std::io::BufRead;
use std::process::{Command, Stdio};
use std::sync::mpsc::channel;
use std::time::{Duration, SystemTime};

use crate::common::daemon::Daemon;
use crate::common::{self, text};
use crate::root_only;

use super::support::sh_unit;

/// 20 lines, then (on SIGUSR1) 80 more, each about 100 bytes: with a 4k
/// limit the second batch rotates the log twice.
const SCRIPT: &str = "trap 'exit 0' TERM; trap 'go=1' USR1; pad=0123456789012345678901234567890123456789012345678901234567890123456789; \
    i=0; while [ $i -lt 20 ]; do echo one-$i-$pad; i=$((i+1)); done; \
    while [ -z \"$go\" ]; do sleep 0.1; done; \
    i=0; while [ $i -lt 80 ]; do echo two-$i-$pad; i=$((i+1)); done; echo two-done; sleep 100000 & wait";

/// The `two-N` numbers of `lines`, and whether any `one-` line is there.
fn batch_two(lines: &[String]) -> (Vec<u32>, bool) {
    let text = |l: &String| l.splitn(3, ' ').nth(2).unwrap_or_default().to_string();
    let numbers = lines
        .iter()
        .filter_map(|l| text(l).strip_prefix("two-").and_then(|r| r.split('-').next()).and_then(|n| n.parse().ok()))
        .collect();
    (numbers, lines.iter().any(|l| text(l).starts_with("one-")))
}

#[test]
fn logs_since_and_logs_follow_read_across_a_rotation() {
    root_only!("logs_since_and_logs_follow_read_across_a_rotation");
    let d = Daemon::start();
    let name = common::unique_name("lr");
    d.write_unit(&name, &format!("{}[logs]\nmax_size = \"4k\"\nmax_files = 5\n", sh_unit(SCRIPT)));
    d.wait_state(&name, "running");
    d.wait_log(&name, None, "one-19-");
    let since = humantime::format_rfc3339_micros(SystemTime::now()).to_string();

    let mut follow = Command::new(env!("CARGO_BIN_EXE_supervisorctl"))
        .arg("--socket")
        .arg(d.socket())
        .args(["logs", "-f", "-n", "1", &name])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = channel();
    let out = follow.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    // The follower is there once it shows the last line so far.
    let first = rx.recv_timeout(Duration::from_secs(20)).expect("logs -f printed nothing");
    assert!(first.contains("one-19-"), "{first}");
    assert!(d.ctl(&["kill", "-s", "USR1", &name]).status.success());
    let mut followed = Vec::new();
    while !followed.last().is_some_and(|l: &String| l.ends_with(" two-done")) {
        let line =
            rx.recv_timeout(Duration::from_secs(20)).unwrap_or_else(|_| panic!("logs -f stopped: {followed:#?}"));
        followed.push(line);
    }
    let _ = follow.kill();
    let _ = follow.wait();
    let logs = d.log_dir();
    assert!(logs.join(format!("{name}.log.2")).exists(), "the log did not rotate twice");
    let all: Vec<u32> = (0..80).collect();
    assert_eq!(batch_two(&followed), (all.clone(), false), "logs -f across the rotation: {followed:#?}");

    let out = d.ctl(&["logs", "--since", &since, &name]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let lines: Vec<String> = text(&out.stdout).lines().map(String::from).collect();
    assert_eq!(batch_two(&lines), (all, false), "logs --since {since}: {lines:#?}");
    assert_eq!(lines.len(), 81, "{lines:#?}");
    // Without --since, both batches, oldest first.
    let out = text(&d.ctl(&["logs", &name]).stdout);
    assert_eq!(out.lines().count(), 101, "{out}");
    assert!(
        out.lines()
            .next()
            .unwrap()
            .ends_with(" one-0-0123456789012345678901234567890123456789012345678901234567890123456789")
    );
}
