//! What the claims' tests share: units running a shell script on busybox,
//! a live event stream, times in the daemon's RFC 3339.
#![allow(dead_code)]

use std::io::BufRead;
use std::io::Write;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::Command;
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::{Duration, Instant, SystemTime};

use serde_json::Value;

use crate::common::daemon::{Daemon, busybox};

/// A unit running `script` under busybox's sh (the script sets its own traps).
pub fn sh_unit(script: &str) -> String {
    sh_unit_on(&busybox(), script)
}

pub fn sh_unit_on(image: &str, script: &str) -> String {
    format!("[container]\nimage = \"{image}\"\ncommand = [\"sh\", \"-c\", {script:?}]\n")
}

/// A directory of the test's, bound into containers as `/s` by [`shared_volume`].
pub fn shared_dir(d: &Daemon) -> std::path::PathBuf {
    let p = d.dir.path().join("shared");
    std::fs::create_dir_all(&p).unwrap();
    p
}

pub fn shared_volume(dir: &Path) -> String {
    format!("volumes = [\"{}:/s\"]\n", dir.display())
}

pub fn time(v: &Value) -> SystemTime {
    let s = v.as_str().unwrap_or_else(|| panic!("not a time: {v}"));
    humantime::parse_rfc3339_weak(s.trim_end_matches('Z')).unwrap_or_else(|e| panic!("{s}: {e}"))
}

/// `GET /v1/events`, read line by line on a thread. Subscribed once
/// [`Events::follow`] returns: the daemon subscribes before it sends the
/// answer's head, which `follow` waits for (a `supervisorctl events`
/// started just before the units are written may miss their first events).
pub struct Events {
    stream: UnixStream,
    lines: Receiver<Value>,
}

impl Events {
    pub fn follow(d: &Daemon) -> Events {
        let mut stream = UnixStream::connect(d.socket()).unwrap();
        stream.write_all(b"GET /v1/events HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let mut reader = std::io::BufReader::new(stream.try_clone().unwrap());
        let mut status = String::new();
        reader.read_line(&mut status).unwrap();
        assert!(status.starts_with("HTTP/1.1 200 "), "events: {status}");
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            if line.trim().is_empty() {
                break;
            }
        }
        stream.set_read_timeout(None).unwrap();
        let (tx, lines) = channel();
        std::thread::spawn(move || {
            for line in reader.lines().map_while(Result::ok) {
                let v: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("an event: {e}: {line}"));
                if tx.send(v).is_err() {
                    break;
                }
            }
        });
        Events { stream, lines }
    }

    /// The events of `unit` until `until` holds for one (included), or
    /// a failure after `secs`.
    pub fn until(&self, unit: &str, secs: u64, until: impl Fn(&Value) -> bool) -> Vec<Value> {
        self.all_until(secs, |v| v["unit"] == unit, until)
    }

    /// The events `keep` holds for until `until` holds for one of them
    /// (included), or a failure after `secs`.
    pub fn all_until(&self, secs: u64, keep: impl Fn(&Value) -> bool, until: impl Fn(&Value) -> bool) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(secs);
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(v) if !v["lagged"].is_null() => panic!("the event stream lagged: {v}"),
                Ok(v) if keep(&v) => {
                    let done = until(&v);
                    seen.push(v);
                    if done {
                        return seen;
                    }
                }
                Ok(_) => {}
                Err(RecvTimeoutError::Timeout) => panic!("the awaited event did not come in {secs}s: {seen:#?}"),
                Err(RecvTimeoutError::Disconnected) => panic!("the event stream ended: {seen:#?}"),
            }
        }
    }
}

impl Drop for Events {
    fn drop(&mut self) {
        let _ = self.stream.shutdown(std::net::Shutdown::Both);
    }
}

/// Polls `f` until it returns Some, failing with `what` after `secs`.
pub fn poll<T>(what: &str, secs: u64, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "{what}: not within {secs}s");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The busybox image with its config changed by umoci (not our code):
/// `umoci config ARGS` on a copy of the layout, as `oci:PATH:TAG`.
pub fn busybox_with(dir: &Path, tag: &str, args: &[&str]) -> String {
    let from = busybox();
    let layout = from.trim_start_matches("oci:").trim_end_matches(":latest");
    let copy = dir.join(format!("layout-{tag}"));
    let st = Command::new("cp").arg("-a").arg(layout).arg(&copy).status().unwrap();
    assert!(st.success(), "copy {layout}");
    let out = Command::new("umoci")
        .args(["config", "--image"])
        .arg(format!("{}:latest", copy.display()))
        .args(["--tag", tag])
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "umoci config {args:?}: {}", crate::common::text(&out.stderr));
    format!("oci:{}:{tag}", copy.display())
}
