//! Health checks, readiness and dependency gating, end to end as root:
//! real containers (busybox httpd), real probes, a real daemon.

mod common;

use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use common::daemon::{Daemon, busybox};
use common::text;
use serde_json::Value;
use sha2::{Digest, Sha256};

fn time(v: &Value) -> SystemTime {
    humantime::parse_rfc3339_weak(v.as_str().unwrap_or_else(|| panic!("not a time: {v}"))).unwrap()
}

fn inspect(d: &Daemon, name: &str) -> Value {
    serde_json::from_slice(&d.ctl(&["inspect", name]).stdout).unwrap()
}

/// httpd on 8080 serving "ok" (started after `delay` seconds), and a
/// shell that stays (and stops at once on SIGTERM).
fn web(delay: &str, health: &str) -> String {
    format!(
        "[container]\nimage = \"{}\"\ncommand = [\"sh\", \"-c\", \"trap 'exit 0' TERM; mkdir -p /www; echo ok > /www/index.html; sleep {delay}; httpd -p 8080 -h /www; while true; do sleep 1 & wait; done\"]\n[restart]\ndelay = \"100ms\"\n[health]\n{health}",
        busybox()
    )
}

#[test]
fn an_http_probe_goes_healthy_and_a_dead_server_is_restarted() {
    root_only!("an_http_probe_goes_healthy_and_a_dead_server_is_restarted");
    let d = Daemon::start();
    let name = common::unique_name("hh");
    d.write_unit(
        &name,
        &web("0", "http = \"http://localhost:8080/\"\ninterval = \"200ms\"\ntimeout = \"1s\"\nretries = 2\n"),
    );
    let u = d.wait_for(&name, "healthy", 30, |u| u.is_some_and(|u| u["health"] == "healthy")).unwrap();
    let line = text(&d.ctl(&["status", &name]).stdout);
    assert!(line.contains("healthy"), "{line}");
    let v = inspect(&d, &name);
    let last = v["health"]["results"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["http_status"], 200, "{v}");

    // The server dies; the container does not: unhealthy after 2 failed
    // probes, and restarted (counted as a failure).
    let out = d.ctl(&["exec", &name, "--", "killall", "httpd"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let again = d
        .wait_for(&name, "restarted", 30, |x| {
            x.is_some_and(|x| x["pid"] != u["pid"] && x["state"] == "running" && x["health"] == "healthy")
        })
        .unwrap();
    assert_eq!(again["restarts"], 1);
    let v = inspect(&d, &name);
    let exit = v["last_exits"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(exit["unhealthy"], true, "{v}");
    assert!(d.log().contains(&format!("{name}: health unhealthy")), "{}", d.log());
}

#[test]
fn failures_in_the_start_period_do_not_count() {
    root_only!("failures_in_the_start_period_do_not_count");
    let d = Daemon::start();
    let name = common::unique_name("sp");
    // Nothing listens on port 9: every probe fails.
    let body = format!(
        "[container]\nimage = \"{}\"\ncommand = [\"sh\", \"-c\", \"trap 'exit 0' TERM; sleep 100000 & wait\"]\n[health]\ntcp = 9\ninterval = \"100ms\"\nretries = 1\nstart_period = \"1500ms\"\non_unhealthy = \"none\"\n",
        busybox()
    );
    d.write_unit(&name, &body);
    let u = d.wait_state(&name, "running");
    let started = time(&u["started_at"]);
    let bad = d.wait_for(&name, "unhealthy", 30, |x| x.is_some_and(|x| x["health"] == "unhealthy")).unwrap();
    let after = SystemTime::now().duration_since(started).unwrap();
    assert!(after >= Duration::from_millis(1500), "unhealthy {after:?} after the start, inside the start period");
    assert_eq!(bad["pid"], u["pid"], "on_unhealthy = none must not touch the container");
    let v = inspect(&d, &name);
    let results = v["health"]["results"].as_array().unwrap();
    assert!(results.iter().all(|r| r["healthy"] == false), "{v}");
}

#[test]
fn the_start_interval_probes_quickly_until_the_first_success() {
    root_only!("the_start_interval_probes_quickly_until_the_first_success");
    let d = Daemon::start();
    let name = common::unique_name("si");
    // The server listens 2 s after the start: the first probe (within the
    // first second) fails, and with a 1 h interval only the start interval
    // can bring the next one.
    let body = format!(
        "[container]\nimage = \"{}\"\ncommand = [\"sh\", \"-c\", \"sleep 2; exec httpd -f -p 8080\"]\n[health]\ntcp = 8080\ninterval = \"1h\"\nstart_period = \"1h\"\nstart_interval = \"100ms\"\n[stop]\nsignal = \"SIGKILL\"\n",
        busybox()
    );
    d.write_unit(&name, &body);
    d.wait_for(&name, "healthy", 30, |x| x.is_some_and(|x| x["health"] == "healthy")).unwrap();
    let v = inspect(&d, &name);
    let results = v["health"]["results"].as_array().unwrap();
    assert!(results.len() >= 2 && results[0]["healthy"] == false, "{v}");
    assert_eq!(v["health"]["check"]["start_interval"], "100ms", "{v}");
}

/// Processes whose command line is exactly `args`.
fn processes(args: &[&str]) -> Vec<u32> {
    let want: Vec<u8> = args.iter().flat_map(|a| a.bytes().chain([0])).collect();
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|p| std::fs::read(format!("/proc/{p}/cmdline")).is_ok_and(|c| c == want))
        .collect()
}

#[test]
fn an_exec_probe_that_hangs_is_killed_at_its_timeout_and_fails() {
    root_only!("an_exec_probe_that_hangs_is_killed_at_its_timeout_and_fails");
    let d = Daemon::start();
    let name = common::unique_name("xt");
    // A probe whose child would outlive it if only the probe were killed.
    let body = format!(
        "[container]\nimage = \"{}\"\ncommand = [\"sh\", \"-c\", \"trap 'exit 0' TERM; sleep 100000 & wait\"]\n[health]\nexec = \"sleep 31 & sleep 32\"\ninterval = \"200ms\"\ntimeout = \"300ms\"\nretries = 2\non_unhealthy = \"none\"\n",
        busybox()
    );
    d.write_unit(&name, &body);
    let t0 = Instant::now();
    d.wait_for(&name, "unhealthy", 30, |x| x.is_some_and(|x| x["health"] == "unhealthy"));
    assert!(t0.elapsed() >= Duration::from_millis(600), "two probes of 300 ms each: {:?}", t0.elapsed());
    let v = inspect(&d, &name);
    let last = v["health"]["results"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["exit_code"], 124, "{v}");
    assert!(last["output"].as_str().unwrap().contains("timed out"), "{v}");
    // Stop probing, then nothing of the probes may be left.
    // (Left behind, they would live half a minute: past the deadline.)
    assert!(d.ctl(&["stop", &name]).status.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    while !(processes(&["sleep", "31"]).is_empty() && processes(&["sleep", "32"]).is_empty()) {
        assert!(Instant::now() < deadline, "a probe process was left");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A copy of the busybox OCI layout whose config has a Docker HEALTHCHECK.
fn image_with_healthcheck(dir: &Path, healthcheck: Value) -> String {
    let src = busybox();
    let src = src.trim_start_matches("oci:").trim_end_matches(":latest");
    let out = dir.join("hc-image");
    let st = std::process::Command::new("cp").arg("-a").arg(src).arg(&out).status().unwrap();
    assert!(st.success());
    let blob = |digest: &str| out.join("blobs/sha256").join(digest.trim_start_matches("sha256:"));
    let write = |bytes: &[u8]| -> String {
        let hex: String = Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect();
        std::fs::write(out.join("blobs/sha256").join(&hex), bytes).unwrap();
        format!("sha256:{hex}")
    };
    let index_path = out.join("index.json");
    let mut index: Value = serde_json::from_slice(&std::fs::read(&index_path).unwrap()).unwrap();
    let m = &mut index["manifests"][0];
    let mut manifest: Value =
        serde_json::from_slice(&std::fs::read(blob(m["digest"].as_str().unwrap())).unwrap()).unwrap();
    let mut config: Value =
        serde_json::from_slice(&std::fs::read(blob(manifest["config"]["digest"].as_str().unwrap())).unwrap()).unwrap();
    config["config"]["Healthcheck"] = healthcheck;
    let config = serde_json::to_vec(&config).unwrap();
    manifest["config"]["digest"] = write(&config).into();
    manifest["config"]["size"] = config.len().into();
    let manifest = serde_json::to_vec(&manifest).unwrap();
    m["digest"] = write(&manifest).into();
    m["size"] = manifest.len().into();
    let tag = m["annotations"]["org.opencontainers.image.ref.name"].as_str().unwrap_or("latest").to_string();
    std::fs::write(&index_path, serde_json::to_vec(&index).unwrap()).unwrap();
    format!("oci:{}:{tag}", out.display())
}

#[test]
fn an_images_healthcheck_is_probed_without_a_health_section_and_only_reported() {
    root_only!("an_images_healthcheck_is_probed_without_a_health_section_and_only_reported");
    let d = Daemon::start();
    let image = image_with_healthcheck(
        d.dir.path(),
        serde_json::json!({"Test": ["CMD-SHELL", "test -e /tmp/healthy"], "Interval": 200_000_000u64, "Retries": 1}),
    );
    let name = common::unique_name("ih");
    let body = format!(
        "[container]\nimage = \"{image}\"\ncommand = [\"sh\", \"-c\", \"trap 'exit 0' TERM; sleep 0.5; touch /tmp/healthy; sleep 100000 & wait\"]\n"
    );
    d.write_unit(&name, &body);
    let u = d.wait_for(&name, "healthy", 30, |x| x.is_some_and(|x| x["health"] == "healthy")).unwrap();
    assert_eq!(inspect(&d, &name)["health"]["check"]["from_image"], true);
    assert!(d.ctl(&["exec", &name, "--", "rm", "/tmp/healthy"]).status.success());
    let bad = d.wait_for(&name, "unhealthy", 30, |x| x.is_some_and(|x| x["health"] == "unhealthy")).unwrap();
    // The image's check only reports, as Docker's does: more failed probes
    // come, and the container stays.
    let streak = |n: &str| inspect(&d, n)["health"]["failing_streak"].as_u64().unwrap_or(0);
    let probes_after = |n: &str, from: u64| {
        let deadline = Instant::now() + Duration::from_secs(30);
        while streak(n) < from + 2 {
            assert!(Instant::now() < deadline, "{n}: no more probes after {from} failures");
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    probes_after(&name, streak(&name));
    let now = d.unit(&name).unwrap();
    assert_eq!((now["pid"].clone(), now["restarts"].clone()), (u["pid"].clone(), 0.into()), "{bad}");

    // `disable = true` turns it off: while the other unit is probed twice
    // more, this one has no health at all.
    let off = common::unique_name("io");
    d.write_unit(&off, &format!("{body}[health]\ndisable = true\n"));
    let u = d.wait_state(&off, "running");
    probes_after(&name, streak(&name));
    assert!(u["health"].is_null() && d.unit(&off).unwrap()["health"].is_null());
    assert!(inspect(&d, &off)["health"].is_null(), "{}", inspect(&d, &off));
}

#[test]
fn a_dependent_starts_only_after_its_dependency_is_healthy() {
    root_only!("a_dependent_starts_only_after_its_dependency_is_healthy");
    let d = Daemon::start();
    let (db, app) = (common::unique_name("hd"), common::unique_name("ha"));
    d.write_unit(&db, &web("1.5", "http = \"http://localhost:8080/\"\ninterval = \"100ms\"\nstart_period = \"10s\"\n"));
    d.write_unit(
        &app,
        &format!(
            "[unit]\nrequires = [\"{db}\"]\n[container]\nimage = \"{}\"\ncommand = [\"sh\", \"-c\", \"trap 'exit 0' TERM; sleep 100000 & wait\"]\n",
            busybox()
        ),
    );
    // While db runs but is not healthy, app waits and says why.
    let waiting = d
        .wait_for(&app, "waiting on db's health", 30, |x| {
            x.is_some_and(|x| {
                x["state"] == "waiting" && x["reason"].as_str().is_some_and(|r| r.contains("health starting"))
            })
        })
        .unwrap();
    assert!(waiting["reason"].as_str().unwrap().contains(&db), "{waiting}");
    let a = d.wait_state(&app, "running");
    let v = inspect(&d, &db);
    let healthy_at = v["health"]["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["healthy"] == true)
        .map(|r| time(&r["time"]))
        .expect("a healthy result");
    let db_started = time(&v["status"]["started_at"]);
    let app_started = time(&a["started_at"]);
    assert!(healthy_at.duration_since(db_started).unwrap() >= Duration::from_millis(1500));
    assert!(app_started >= healthy_at, "app started {app_started:?} before db was healthy {healthy_at:?}");
}

/// A static program that sends its argument to $NOTIFY_SOCKET.
const NOTIFY: &str = r#"#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
int main(int argc, char **argv) {
    const char *path = getenv("NOTIFY_SOCKET");
    if (!path || argc < 2) return 2;
    int s = socket(AF_UNIX, SOCK_DGRAM, 0);
    struct sockaddr_un a = {0};
    a.sun_family = AF_UNIX;
    strncpy(a.sun_path, path, sizeof a.sun_path - 1);
    return sendto(s, argv[1], strlen(argv[1]), 0, (struct sockaddr *)&a, sizeof a) < 0;
}
"#;

#[test]
fn a_notify_unit_is_ready_only_when_it_says_so() {
    root_only!("a_notify_unit_is_ready_only_when_it_says_so");
    let d = Daemon::start();
    let bin = common::compile_static(d.dir.path(), "notify", NOTIFY);
    let (svc, dep) = (common::unique_name("nt"), common::unique_name("nd"));
    d.write_unit(
        &svc,
        &format!(
            "[container]\nimage = \"{}\"\nnotify = true\nvolumes = [\"{}:/opt/bin:ro\"]\ncommand = [\"sh\", \"-c\", \"trap 'exit 0' TERM; /opt/bin/notify 'STATUS=warming up'; sleep 1; /opt/bin/notify READY=1; sleep 100000 & wait\"]\n",
            busybox(),
            bin.display()
        ),
    );
    d.write_unit(
        &dep,
        &format!(
            "[unit]\nrequires = [\"{svc}\"]\n[container]\nimage = \"{}\"\ncommand = [\"sh\", \"-c\", \"trap 'exit 0' TERM; sleep 100000 & wait\"]\n",
            busybox()
        ),
    );
    // Its process runs, but it is starting until READY=1.
    let early = d
        .wait_for(&svc, "started, not ready", 30, |x| {
            x.is_some_and(|x| x["state"] == "starting" && x["pid"].is_number() && x["notify_status"] == "warming up")
        })
        .unwrap();
    assert_eq!(d.unit(&dep).unwrap()["state"], "waiting");
    let t0 = Instant::now();
    let ready = d.wait_state(&svc, "running");
    assert_eq!(ready["pid"], early["pid"]);
    assert!(t0.elapsed() >= Duration::from_millis(500), "ready after {:?}", t0.elapsed());
    assert!(d.log().contains(&format!("{svc}: READY=1")));
    let started = time(&d.wait_state(&dep, "running")["started_at"]);
    assert!(started > time(&early["started_at"]) + Duration::from_millis(900));
}

#[test]
fn past_its_ready_timeout_a_waiting_unit_says_what_it_waits_for() {
    root_only!("past_its_ready_timeout_a_waiting_unit_says_what_it_waits_for");
    let d = Daemon::start();
    let (db, app) = (common::unique_name("rd"), common::unique_name("ra"));
    // db never becomes healthy (nothing listens), and is never restarted.
    d.write_unit(
        &db,
        &format!(
            "[container]\nimage = \"{}\"\ncommand = [\"sh\", \"-c\", \"trap 'exit 0' TERM; sleep 100000 & wait\"]\n[health]\ntcp = 5432\ninterval = \"200ms\"\nstart_period = \"1h\"\n",
            busybox()
        ),
    );
    // Running first: a pull or start that outlasts the app's ready timeout
    // on a loaded machine would be what it waits for instead.
    d.wait_state(&db, "running");
    d.write_unit(
        &app,
        &format!(
            "[unit]\nrequires = [\"{db}\"]\nready_timeout = \"1s\"\n[container]\nimage = \"{}\"\ncommand = [\"sleep\", \"1000\"]\n",
            busybox()
        ),
    );
    let u = d.wait_for(&app, "reporting its wait", 30, |x| x.is_some_and(|x| !x["error"].is_null())).unwrap();
    let err = u["error"].as_str().unwrap();
    assert_eq!(u["state"], "waiting");
    assert!(err.contains("not started after 1s") && err.contains(&format!("requires {db}")), "{err}");
    assert!(err.contains("health starting") && err.contains("port 5432"), "{err}");
    let line = text(&d.ctl(&["status", &app]).stdout);
    assert!(line.contains("not started after 1s"), "{line}");
}
