//! Start-first updates end to end, as root: a real daemon on its own
//! bridge, busybox httpd behind a published port, and a client loop
//! hammering that port from the host through the update. The new
//! container starts beside the old one; traffic moves once it is healthy;
//! no request fails; a new container that fails leaves the old one as it
//! was.

mod common;

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::daemon::{Daemon, alive, busybox};
use common::http::get;
use serde_json::Value;

/// httpd serving `content` on the published `port`, healthy once it
/// answers, start-first; `command` replaces the server (a broken one).
fn web(content: &str, port: u16, command: Option<&str>) -> String {
    let server = format!("mkdir -p /www; echo {content} > /www/index.html; exec httpd -f -p 80 -h /www");
    format!(
        "[container]\nimage = \"{}\"\ncommand = [\"sh\", \"-c\", {:?}]\nports = [\"{port}:80\"]\n\
         [health]\nexec = [\"wget\", \"-q\", \"-O\", \"/dev/null\", \"http://127.0.0.1/\"]\ninterval = \"200ms\"\n\
         [stop]\ntimeout = \"5s\"\n\
         [update]\nstrategy = \"start-first\"\nhealthy_within = \"20s\"\nmin_healthy = \"1s\"\n",
        busybox(),
        command.unwrap_or(&server)
    )
}

/// Clients asking `to` in a loop, each keeping every answer in order.
struct Load {
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<Vec<Result<String, String>>>>,
    count: Arc<Mutex<usize>>,
}

impl Load {
    fn start(to: SocketAddr, threads: usize) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let count = Arc::new(Mutex::new(0));
        let threads = (0..threads)
            .map(|_| {
                let (stop, count) = (stop.clone(), count.clone());
                std::thread::spawn(move || {
                    let mut seen = Vec::new();
                    while !stop.load(Ordering::Relaxed) {
                        seen.push(get(to));
                        *count.lock().unwrap() += 1;
                    }
                    seen
                })
            })
            .collect();
        Load { stop, threads, count }
    }

    fn count(&self) -> usize {
        *self.count.lock().unwrap()
    }

    /// Waits until `n` more requests were made.
    fn more(&self, n: usize) {
        let target = self.count() + n;
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.count() < target {
            assert!(Instant::now() < deadline, "the clients made {} of {target} requests", self.count());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn end(self) -> Vec<Vec<Result<String, String>>> {
        self.stop.store(true, Ordering::Relaxed);
        self.threads.into_iter().map(|t| t.join().unwrap()).collect()
    }
}

fn pid(u: &Value) -> i64 {
    u["pid"].as_i64().unwrap()
}

/// The container records in the daemon's run directory.
fn records(d: &Daemon) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(d.dir.path().join("run/containers"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn a_start_first_update_under_a_client_loop_fails_no_request_and_leaves_one_container() {
    root_only!("a_start_first_update_under_a_client_loop_fails_no_request_and_leaves_one_container");
    let d = Daemon::start();
    let name = common::unique_name("sf");
    let port = common::free_port();
    let to = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    d.write_unit(&name, &web("old", port, None));
    let old = d.wait_for(&name, "healthy", 60, |u| u.is_some_and(|u| u["health"] == "healthy")).unwrap();
    assert_eq!(get(to).as_deref(), Ok("old"));

    let load = Load::start(to, 4);
    load.more(1000);
    d.write_unit(&name, &web("new", port, None));
    let new = d
        .wait_for(&name, "the update done", 60, |u| {
            u.is_some_and(|u| u["pid"] != old["pid"] && u["update_state"].is_null() && u["state"] == "running")
        })
        .unwrap();
    load.more(1000);
    let seen = load.end();

    let all: Vec<&Result<String, String>> = seen.iter().flatten().collect();
    let failed: Vec<&String> = all.iter().filter_map(|r| r.as_ref().err()).collect();
    assert!(all.len() >= 2000, "{} requests", all.len());
    assert!(
        failed.is_empty(),
        "{} of {} requests failed: {:?}",
        failed.len(),
        all.len(),
        &failed[..failed.len().min(5)]
    );
    // Each client saw the old content, then the new, and never the old
    // again once it had the new.
    for answers in &seen {
        let bodies: Vec<&str> = answers.iter().filter_map(|r| r.as_deref().ok()).collect();
        let first_new = bodies.iter().position(|b| *b == "new").expect("a client never saw the new content");
        assert!(bodies[..first_new].iter().all(|b| *b == "old"), "{:?}", &bodies[..first_new]);
        assert!(bodies[first_new..].iter().all(|b| *b == "new"), "the old content after the new");
    }
    assert_eq!(new["update_error"], Value::Null, "{new}");
    assert_eq!(new["ports"], old["ports"], "{new}");
    assert_ne!(new["address"], old["address"], "the new container has its own address");
    // The old container is gone: its process, and its record.
    let deadline = Instant::now() + Duration::from_secs(15);
    while alive(pid(&old)) || records(&d).len() > 1 {
        assert!(Instant::now() < deadline, "the old container is left: {:?}", records(&d));
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(records(&d), [format!("{name}.{}.json", new["generation"])], "the serving container's record");
    // Its exec probe enters it, not the old one: it stays healthy, and is
    // not restarted, for ten probe intervals after the old one is gone.
    let watch = Instant::now() + Duration::from_secs(2);
    while Instant::now() < watch {
        let u = d.unit(&name).unwrap();
        assert_eq!((&u["pid"], &u["health"]), (&new["pid"], &Value::from("healthy")), "{u}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let log = d.log();
    assert!(log.contains("traffic moved to the new container in"), "{log}");
}

#[test]
fn a_start_first_update_that_fails_leaves_the_serving_container_untouched() {
    root_only!("a_start_first_update_that_fails_leaves_the_serving_container_untouched");
    let d = Daemon::start();
    let name = common::unique_name("sf");
    let port = common::free_port();
    let to = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    d.write_unit(&name, &web("old", port, None));
    let old = d.wait_for(&name, "healthy", 60, |u| u.is_some_and(|u| u["health"] == "healthy")).unwrap();

    let load = Load::start(to, 2);
    d.write_unit(&name, &web("new", port, Some("echo broken; exit 1")));
    let after =
        d.wait_for(&name, "rolled back", 60, |u| u.is_some_and(|u| u["update_state"] == "rolled-back")).unwrap();
    load.more(200);
    let seen = load.end();
    assert_eq!(after["pid"], old["pid"], "the serving container was replaced: {after}");
    assert_eq!(after["update_error"], "exited 1", "{after}");
    assert_eq!((&after["address"], &after["ports"]), (&old["address"], &old["ports"]));
    let failed: Vec<&String> = seen.iter().flatten().filter_map(|r| r.as_ref().err()).collect();
    assert!(failed.is_empty(), "requests failed: {:?}", &failed[..failed.len().min(5)]);
    assert!(seen.iter().flatten().all(|r| r.as_deref() == Ok("old")));
    // The failed container left nothing: one record, the serving one's.
    let deadline = Instant::now() + Duration::from_secs(15);
    while records(&d).len() > 1 {
        assert!(Instant::now() < deadline, "the failed container is left: {:?}", records(&d));
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(records(&d), [format!("{name}.json")]);
}
