//! Two containers of one unit and the switchover of its traffic (issue 16,
//! start-first), as root on a real bridge with real nft: the starter's API
//! the engine calls, driven in-process (`start` with an instance, `switch`,
//! `finish`), with a Rust client hammering the published port throughout.

mod common;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::daemon::busybox;
use common::http::{answer, get};
use supervisor::runtime::cgroups::Manager;
use supervisor::runtime::image::{PullOptions, Store};
use supervisor::runtime::network::bridge::{Bridge, Config};
use supervisor::runtime::network::ipam::{Pool, Subnet};
use supervisor::runtime::reaper::Reaper;
use supervisor::supervisor::starter::{self, Env, Request, Started};
use supervisor::units::diag::Source;
use supervisor::units::model::Unit;
use supervisor::units::parse::{ParseInput, parse_unit};
use tokio::sync::Semaphore;

/// The unit `web` serving `content` on port 80, published on `port`.
fn unit(content: &str, port: u16) -> Unit {
    let script = format!("mkdir -p /www; echo {content} > /www/index.html; exec httpd -f -p 80 -h /www");
    let text = format!(
        "[container]\nimage = \"{}\"\ncommand = [\"sh\", \"-c\", {script:?}]\nports = [\"{port}:80\"]\naliases = [\"www\"]\n",
        busybox()
    );
    let input = ParseInput {
        name: "web",
        source: Source { path: Path::new("web.toml"), text: &text },
        base_dir: Path::new("/etc/units.d"),
        read_file: &|_| Err("no files here".into()),
    };
    parse_unit(&input).unwrap_or_else(|e| panic!("{text}\n{e:#?}")).unit
}

/// Polls `GET /` at `to` until it answers `want`.
fn wait_answer(to: SocketAddr, want: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut last = Err(String::new());
    while Instant::now() < deadline {
        last = get(to);
        if last.as_deref() == Ok(want) {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("{to} did not answer {want:?}: {last:?}");
}

/// `cmd`'s stdout, its exit taken from the reaper (which reaps every child
/// of this process).
async fn run(reaper: &Reaper, cmd: &[&str]) -> String {
    let mut child = std::process::Command::new(cmd[0])
        .args(&cmd[1..])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    let exit = reaper.watch(child.id() as i32);
    let mut out = String::new();
    child.stdout.take().unwrap().read_to_string(&mut out).unwrap();
    // Waited for through the reaper.
    drop(child);
    let _ = exit.await;
    out
}

/// Stops `started` and cleans up after it, as the engine does.
async fn stop(env: &Env, started: Started) {
    let Started { container, exit, veth, .. } = started;
    container.signal(nix::sys::signal::Signal::SIGKILL).unwrap();
    exit.await.unwrap();
    starter::finish(env, container, veth.as_deref()).await;
}

fn pool_holders(state: &Path, bridge: &str, subnet: Subnet) -> Vec<String> {
    let (pool, _) = Pool::load(&state.join("network").join(format!("{bridge}.json")), subnet);
    pool.used.into_values().collect()
}

/// The client loop: `GET /` one connection after another until `stop`;
/// every answer (or failure) in order.
fn hammer(to: SocketAddr, stop: Arc<AtomicBool>, seen: Arc<Mutex<Vec<Result<String, String>>>>) {
    while !stop.load(Ordering::Relaxed) {
        let r = get(to);
        seen.lock().unwrap().push(r);
    }
}

#[test]
fn a_units_traffic_moves_to_its_second_container_in_one_step_without_a_failed_request() {
    root_only!("a_units_traffic_moves_to_its_second_container_in_one_step_without_a_failed_request");
    let _quiet = common::network_quiet();
    let before = common::host_network();
    let config = common::daemon::network_config();
    let field = |key: &str| {
        let line = config.lines().find_map(|l| l.strip_prefix(&format!("{key} = "))).unwrap();
        line.trim_matches('"').to_string()
    };
    let (bridge_name, subnet) = (field("bridge"), Subnet::parse(&field("subnet")).unwrap());
    let dir = tempfile::tempdir().unwrap();
    let (state, run_dir) = (dir.path().join("state"), dir.path().join("run"));
    std::fs::create_dir_all(&state).unwrap();
    std::fs::create_dir_all(run_dir.join("containers")).unwrap();
    let port = common::free_port();
    let published = SocketAddr::from((Ipv4Addr::LOCALHOST, port));

    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let took = rt.block_on(async {
        let reaper = Reaper::start().unwrap();
        let bridge = Bridge::setup(Config { name: bridge_name.clone(), subnet }, &state, &run_dir, reaper.clone())
            .await
            .unwrap();
        let bridge = Arc::new(bridge);
        let env = Arc::new(Env {
            state_dir: state.clone(),
            run_dir: run_dir.clone(),
            store: Store::open(&state).unwrap(),
            pull: PullOptions::default(),
            cgroups: Manager::for_host(&common::unique_name("sw"), None).unwrap(),
            reaper: reaper.clone(),
            helper: PathBuf::from(env!("CARGO_BIN_EXE_supervisord")),
            bridge: Some(bridge.clone()),
            pulls: Default::default(),
            metrics: Default::default(),
            cleanups: Semaphore::new(supervisor::supervisor::starter::CLEANUPS_AT_ONCE),
        });
        let starts = Arc::new(Semaphore::new(4));
        let request = |content: &str, instance: Option<&str>| Request {
            unit: unit(content, port),
            image: None,
            notify_dir: None,
            join: None,
            instance: instance.map(str::to_string),
        };
        let old = starter::start(
            env.clone(),
            starter::Turn::wait(starts.clone()).await.unwrap(),
            request("old", None),
            || {},
            || {},
        )
        .await
        .unwrap();
        assert_eq!(old.ports, [format!("0.0.0.0:{port}->80/tcp")]);
        tokio::task::spawn_blocking(move || wait_answer(published, "old")).await.unwrap();

        // A second container that goes before any switch (a failed
        // update) takes nothing of the first one's: its ports, its name.
        let failed = starter::start(
            env.clone(),
            starter::Turn::wait(starts.clone()).await.unwrap(),
            request("failed", Some("web.9")),
            || {},
            || {},
        );
        stop(&env, failed.await.unwrap()).await;
        let old_ip = old.address.unwrap();
        let hosts = std::fs::read_to_string(bridge.hosts_path()).unwrap();
        assert!(hosts.contains(&format!("{old_ip}\tweb www\n")), "{hosts}");
        assert_eq!(get(published), Ok("old".into()));
        assert_eq!(pool_holders(&state, &bridge_name, subnet), ["web"]);

        // The second container: beside the first, its own address, cgroup,
        // directory and record; no ports, and not named yet.
        let bad = starter::start(
            env.clone(),
            starter::Turn::wait(starts.clone()).await.unwrap(),
            request("x", Some("db.2")),
            || {},
            || {},
        )
        .await;
        assert!(bad.is_err_and(|e| e.to_string().contains("db.2")));
        let new = starter::start(
            env.clone(),
            starter::Turn::wait(starts.clone()).await.unwrap(),
            request("new", Some("web.2")),
            || {},
            || {},
        )
        .await;
        let new = new.unwrap();
        let new_ip = new.address.unwrap();
        assert_ne!(old_ip, new_ip);
        assert!(new.ports.is_empty(), "{:?}", new.ports);
        assert_eq!(new.container.name(), "web.2");
        assert!(run_dir.join("containers/web.2.json").exists() && run_dir.join("containers/web.json").exists());
        assert!(state.join("containers/web.2").is_dir() && state.join("containers/web").is_dir());
        let (old_cgroup, new_cgroup) = (old.container.cgroup().paths(), new.container.cgroup().paths());
        assert_ne!(old_cgroup, new_cgroup);
        let hosts = std::fs::read_to_string(bridge.hosts_path()).unwrap();
        assert!(hosts.contains(&format!("{old_ip}\tweb www\n")) && !hosts.contains(&new_ip.to_string()), "{hosts}");
        tokio::task::spawn_blocking(move || wait_answer(SocketAddr::from((new_ip, 80)), "new")).await.unwrap();
        assert_eq!(get(published), Ok("old".into()), "the published port moved before the switch");

        // A connection opened before the switch, its request sent after.
        let established = TcpStream::connect(published).unwrap();
        let (stop_loop, seen) = (Arc::new(AtomicBool::new(false)), Arc::new(Mutex::new(Vec::new())));
        let client = {
            let (stop_loop, seen) = (stop_loop.clone(), seen.clone());
            std::thread::spawn(move || hammer(published, stop_loop, seen))
        };
        let count = || seen.lock().unwrap().len();
        let deadline = Instant::now() + Duration::from_secs(30);
        while count() < 300 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }

        let asked = std::time::Instant::now();
        let switched = starter::switch(&env, "web", "web", "web.2").await.unwrap();
        let took = switched.at.duration_since(asked);
        assert_eq!(switched.ports, [format!("0.0.0.0:{port}->80/tcp")]);
        // New connections go to the new container from now on.
        assert_eq!(get(published), Ok("new".into()));
        let hosts = std::fs::read_to_string(bridge.hosts_path()).unwrap();
        assert!(hosts.contains(&format!("{new_ip}\tweb www\n")) && !hosts.contains(&old_ip.to_string()), "{hosts}");
        assert!(!hosts.contains("web.2"), "{hosts}");
        // The established one still reaches the old container.
        let mut established = established;
        established.write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
        established.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        assert_eq!(answer(established), Ok("old".into()));

        let at_switch = count();
        let deadline = Instant::now() + Duration::from_secs(30);
        while count() < at_switch + 300 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }

        // The old container goes: nothing of it is left, and the port
        // answers from the new one throughout.
        let old_veth = old.veth.clone().unwrap();
        stop(&env, old).await;
        let at_stop = count();
        let deadline = Instant::now() + Duration::from_secs(30);
        while count() < at_stop + 300 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        stop_loop.store(true, Ordering::Relaxed);
        tokio::task::spawn_blocking(move || client.join().unwrap()).await.unwrap();
        let seen = std::mem::take(&mut *seen.lock().unwrap());
        let failed: Vec<&String> = seen.iter().filter_map(|r| r.as_ref().err()).collect();
        assert!(
            failed.is_empty(),
            "{} of {} requests failed: {:?}",
            failed.len(),
            seen.len(),
            &failed[..5.min(failed.len())]
        );
        assert!(seen.len() >= 900, "only {} requests", seen.len());
        // Old, then new, never back.
        let first_new = seen.iter().position(|r| r.as_deref() == Ok("new")).expect("no answer from the new container");
        assert!(first_new > 0 && seen[..first_new].iter().all(|r| r.as_deref() == Ok("old")));
        assert!(
            seen[first_new..].iter().all(|r| r.as_deref() == Ok("new")),
            "an answer from the old one after the new"
        );

        assert!(!Path::new("/sys/class/net").join(&old_veth).exists(), "{old_veth} left");
        assert!(!run_dir.join("containers/web.json").exists(), "the old container's record left");
        assert!(!state.join("containers/web").exists(), "the old container's directory left");
        assert!(old_cgroup.iter().all(|p| !p.exists()), "the old container's cgroup left");
        assert_eq!(pool_holders(&state, &bridge_name, subnet), ["web.2"]);
        let rules = run(&reaper, &["nft", "list", "table", "ip", &format!("supervisor_{bridge_name}")]).await;
        assert!(!rules.contains(&old_ip.to_string()), "{rules}");
        assert_eq!(rules.matches(&format!("dnat to {new_ip}:80")).count(), 2, "{rules}");
        assert_eq!(get(published), Ok("new".into()));

        // The new container's end frees the unit's ports and name.
        stop(&env, new).await;
        assert!(pool_holders(&state, &bridge_name, subnet).is_empty());
        assert!(std::net::TcpListener::bind(published).is_ok(), "the port is still held");
        let rules = run(&reaper, &["nft", "list", "table", "ip", &format!("supervisor_{bridge_name}")]).await;
        assert!(!rules.contains("dnat to"), "{rules}");
        assert!(!std::fs::read_to_string(bridge.hosts_path()).unwrap().contains("web"));
        assert!(new_cgroup.iter().all(|p| !p.exists()), "the new container's cgroup left");

        // A supervisor dies with a second container up: its successor's
        // cleanup removes it like any container (and its bridge setup
        // frees every address, as detach does here).
        let spare = request("spare", Some("web.3"));
        let spare =
            starter::start(env.clone(), starter::Turn::wait(starts.clone()).await.unwrap(), spare, || {}, || {})
                .await
                .unwrap();
        let spare_cgroup = spare.container.cgroup().paths();
        let r = run_dir.clone();
        let cleaned = tokio::task::spawn_blocking(move || supervisor::runtime::container::clean_up(&r)).await.unwrap();
        assert_eq!(cleaned.containers, ["web.3"]);
        assert!(tokio::time::timeout(Duration::from_secs(10), spare.exit).await.is_ok(), "web.3 still runs");
        assert!(!run_dir.join("containers/web.3.json").exists() && !state.join("containers/web.3").exists());
        assert!(spare_cgroup.iter().all(|p| !p.exists()), "web.3's cgroup left");
        bridge.detach("web.3", spare.veth.as_deref()).await;
        bridge.teardown().await;
        reaper.stop();
        took
    });
    drop(rt);
    eprintln!("traffic moved in {took:?}");
    assert!(took < Duration::from_millis(500), "the switch took {took:?}");
    let after = common::host_network();
    assert_eq!(after, before, "the host's network changed");
}
