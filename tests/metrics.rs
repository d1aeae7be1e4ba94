//! The metrics listener end to end, as root: a real daemon with
//! `metrics = "127.0.0.1:PORT"`, real containers, scraped by a plain
//! HTTP GET and by Debian's Prometheus (started here with a config of its
//! own), whose query API must show a unit's restarts.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::daemon::{Daemon, busybox};
use serde_json::Value;

/// One HTTP/1.1 exchange: the status code, the head and the body.
fn http(port: u16, request: &str) -> (u16, String, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or_else(|| panic!("no head: {answer:?}"));
    let status = head.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or_else(|| panic!("{head}"));
    (status, head.to_string(), body.to_string())
}

fn get(port: u16, path: &str, accept: Option<&str>) -> (u16, String, String) {
    let accept = accept.map(|a| format!("Accept: {a}\r\n")).unwrap_or_default();
    http(port, &format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{accept}\r\n"))
}

/// The value of the series `name{labels}` (exactly those labels).
fn value(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

fn scrape(port: u16) -> String {
    let (status, head, body) = get(port, "/metrics", None);
    assert_eq!(status, 200, "{head}\n{body}");
    body
}

/// Scrapes until `pred` holds for the text (within `secs`).
fn scrape_until(port: u16, what: &str, secs: u64, pred: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let text = scrape(port);
        if pred(&text) {
            return text;
        }
        assert!(Instant::now() < deadline, "not {what} after {secs}s:\n{text}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Prometheus, killed when dropped.
struct Prometheus {
    child: Child,
    dir: tempfile::TempDir,
    /// Its HTTP API's port.
    port: u16,
}

impl Prometheus {
    /// Scrapes `target` every second; its API on `port`.
    fn start(target: u16, port: u16) -> Prometheus {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  - job_name: supervisor\n    static_configs:\n      - targets: [\"127.0.0.1:{target}\"]\n"
            ),
        )
        .unwrap();
        let log = std::fs::File::create(dir.path().join("prometheus.log")).unwrap();
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", dir.path().join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        Prometheus { child, dir, port }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("prometheus.log")).unwrap_or_default()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `%XX` for everything but unreserved characters (a PromQL query in a URL).
fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The value of an instant query's first result, once there is one.
fn query(port: u16, promql: &str) -> Option<f64> {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else { return None };
    let request = format!(
        "GET /api/v1/query?query={} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
        url_encode(promql)
    );
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(request.as_bytes()).ok()?;
    let mut answer = String::new();
    s.read_to_string(&mut answer).ok()?;
    let (_, body) = answer.split_once("\r\n\r\n")?;
    let v: Value = serde_json::from_str(body).ok()?;
    v["data"]["result"][0]["value"][1].as_str()?.parse().ok()
}

/// A unit that is OOM-killed soon after each start (a shell holding 60 MB
/// under a 16 MiB limit), restarted quickly.
fn oom_unit() -> String {
    format!(
        "[container]\nimage = \"{}\"\ncommand = [\"sh\", \"-c\", \"x=$(head -c 60000000 /dev/zero | tr '\\\\0' a)\"]\n\
         [resources]\nmemory = \"16M\"\n[restart]\ndelay = \"200ms\"\nmax_delay = \"1s\"\n",
        busybox()
    )
}

fn busy_unit() -> String {
    format!(
        "[container]\nimage = \"{}\"\ncommand = [\"sh\", \"-c\", \"while :; do :; done\"]\n\
         [resources]\nmemory = \"64M\"\n[stop]\nsignal = \"SIGKILL\"\n",
        busybox()
    )
}

#[test]
fn units_are_scraped_and_prometheus_sees_a_restart() {
    root_only!("units_are_scraped_and_prometheus_sees_a_restart");
    assert!(common::have("prometheus"), "prometheus is missing: Debian's package prometheus (scripts/install-deps.sh)");
    let port = common::free_port();
    let d = Daemon::start_configured(&format!("metrics = \"127.0.0.1:{port}\"\n"), |_| {});
    let (oom, busy) = (common::unique_name("mo"), common::unique_name("mb"));
    d.write_unit(&oom, &oom_unit());
    d.write_unit(&busy, &busy_unit());
    d.wait_state(&busy, "running");
    d.wait_for(&oom, "restarted after an OOM kill", 60, |u| u.is_some_and(|u| u["restarts"].as_u64() >= Some(1)));

    let of = |unit: &str, metric: &str| format!("supervisor_{metric}{{unit=\"{unit}\"}}");
    let text = scrape_until(port, "showing the OOM kill", 30, |t| {
        value(t, &of(&oom, "unit_oom_kills_total")).is_some_and(|n| n >= 1.0)
    });
    assert!(value(&text, &of(&oom, "unit_restarts_total")).is_some_and(|n| n >= 1.0), "{text}");
    // Killed by SIGKILL: 128 + 9, as a shell says it.
    assert_eq!(value(&text, &of(&oom, "unit_last_exit_code")), Some(137.0), "{text}");
    let state = |unit: &str, s: &str| format!("supervisor_unit_state{{unit=\"{unit}\",state=\"{s}\"}}");
    assert_eq!(value(&text, &state(&busy, "running")), Some(1.0), "{text}");
    assert_eq!(value(&text, &state(&busy, "failed")), Some(0.0), "{text}");
    assert!(value(&text, "supervisor_units{state=\"running\"}").is_some_and(|n| n >= 1.0), "{text}");
    // The busy loop's container, read from its cgroup and namespace.
    assert!(value(&text, &of(&busy, "unit_memory_bytes")).is_some_and(|m| m > 0.0), "{text}");
    assert_eq!(value(&text, &of(&busy, "unit_memory_limit_bytes")), Some(f64::from(64u32 << 20)), "{text}");
    assert!(value(&text, &of(&busy, "unit_pids")).is_some_and(|n| n >= 1.0), "{text}");
    assert!(value(&text, &of(&busy, "unit_network_receive_bytes_total")).is_some(), "{text}");
    assert!(value(&text, &of(&busy, "unit_uptime_seconds")).is_some_and(|s| s >= 0.0), "{text}");
    let cpu = value(&text, &of(&busy, "unit_cpu_seconds_total")).unwrap_or_else(|| panic!("{text}"));
    scrape_until(port, "showing more CPU time", 30, |t| {
        value(t, &of(&busy, "unit_cpu_seconds_total")).is_some_and(|now| now > cpu + 0.05)
    });
    // The daemon's own.
    assert!(value(&text, "supervisor_last_reload_success_timestamp_seconds").is_some_and(|t| t > 1.7e9), "{text}");
    assert!(value(&text, "supervisor_reconcile_duration_seconds_count").is_some_and(|n| n >= 1.0), "{text}");
    let version = format!("supervisor_build_info{{version=\"{}\"}}", env!("CARGO_PKG_VERSION"));
    assert_eq!(value(&text, &version), Some(1.0), "{text}");
    // Without an Accept header: Prometheus's text format; asked for, OpenMetrics.
    let (_, head, _) = get(port, "/metrics", None);
    assert!(head.contains("Content-Type: text/plain; version=0.0.4"), "{head}");
    let (status, head, body) =
        get(port, "/metrics", Some("application/openmetrics-text;version=1.0.0,text/plain;q=0.5"));
    assert_eq!(status, 200, "{head}");
    assert!(head.contains("Content-Type: application/openmetrics-text; version=1.0.0"), "{head}");
    assert!(body.ends_with("# EOF\n"), "{body}");
    assert!(body.contains("# TYPE supervisor_unit_restarts counter"), "{body}");

    // A real Prometheus scrapes us every second: its query API gives the
    // unit's restarts, at least as many as status counted before.
    let prom = Prometheus::start(port, common::free_port());
    let counted = d.unit(&oom).unwrap()["restarts"].as_f64().unwrap();
    let promql = format!("supervisor_unit_restarts_total{{unit=\"{oom}\"}}");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if query(prom.port, &promql).is_some_and(|v| v >= counted) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "Prometheus has no {promql} >= {counted} after 60s (last: {:?})\n{}",
            query(prom.port, &promql),
            prom.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // Every series it took was well formed: the target is up.
    assert_eq!(query(prom.port, "up{job=\"supervisor\"}"), Some(1.0), "{}", prom.log());
}

/// The TCP sockets process `pid` listens on (`/proc/net/tcp{,6}`, state
/// LISTEN, matched to its descriptors by inode), as `ADDRESS:PORT` in hex.
fn listening(pid: u32) -> Vec<String> {
    let inodes: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::read_link(e.path()).ok())
        .filter_map(|l| l.to_str()?.strip_prefix("socket:[")?.strip_suffix(']').map(str::to_string))
        .collect();
    let mut out = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        for line in std::fs::read_to_string(Path::new(table)).unwrap_or_default().lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() > 9 && f[3] == "0A" && inodes.iter().any(|i| i == f[9]) {
                out.push(f[1].to_string());
            }
        }
    }
    out
}

#[test]
fn nothing_listens_without_the_key_and_only_get_metrics_is_served() {
    root_only!("nothing_listens_without_the_key_and_only_get_metrics_is_served");
    let off = Daemon::start();
    let pid = off.child.as_ref().unwrap().id();
    // Its socket accepts before the daemon has gone on to start the
    // metrics listener: an answered request says that it has.
    let out = off.ctl(&["status"]);
    assert!(out.status.code().is_some_and(|c| c == 0 || c == 3), "{}", common::text(&out.stderr));
    assert_eq!(listening(pid), Vec::<String>::new(), "a daemon without metrics listens on TCP");
    drop(off);

    let port = common::free_port();
    let d = Daemon::start_configured(&format!("metrics = \"127.0.0.1:{port}\"\n"), |_| {});
    let pid = d.child.as_ref().unwrap().id();
    // The one socket is the configured one (127.0.0.1 is 0100007F in the table).
    let deadline = Instant::now() + Duration::from_secs(20);
    while listening(pid).is_empty() {
        assert!(Instant::now() < deadline, "nothing listens on {port}:\n{}", d.log());
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(listening(pid), [format!("0100007F:{port:04X}")]);

    let (status, head, _) = http(port, "POST /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 5\r\n\r\nhello");
    assert_eq!(status, 405, "{head}");
    assert!(head.contains("Allow: GET"), "{head}");
    for (method, path) in [("GET", "/v1/status"), ("POST", "/v1/units/x/stop"), ("GET", "/")] {
        let (status, head, _) = http(port, &format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"));
        assert_eq!(status, 404, "{method} {path}: {head}");
    }
    let (status, _, body) = http(port, "nonsense\r\n\r\n");
    assert_eq!(status, 400, "{body}");
    // And after all that, it still serves.
    assert!(scrape(port).contains("supervisor_build_info"));
}
