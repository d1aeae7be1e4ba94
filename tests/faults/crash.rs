//! The daemon killed with SIGKILL at any point (docs/reliability.md, "The
//! daemon killed at any point"): a successor on the same directories runs
//! every unit exactly once, and nothing of the killed daemon's containers
//! is left: no process, cgroup, mount, veth, address or nft rule.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::daemon::{Daemon, alive, busybox, mounted_under};
use crate::common::{self, text};
use crate::root_only;

/// A unit that runs `script` under sh (and stops at once on SIGTERM,
/// unless the script says otherwise).
fn unit(script: &str, extra: &str) -> String {
    format!(
        "[container]\nimage = \"{}\"\ncommand = [\"sh\", \"-c\", {:?}]\n{extra}",
        busybox(),
        format!("trap 'exit 0' TERM; {script}")
    )
}

fn bridge_of(d: &Daemon) -> String {
    let conf = std::fs::read_to_string(d.dir.path().join("supervisord.toml")).unwrap();
    conf.lines().find_map(|l| l.strip_prefix("bridge = ")).unwrap().trim_matches('"').to_string()
}

/// SIGKILL to the daemon, and its exit reaped.
fn kill_9(d: &mut Daemon) {
    let mut child = d.child.take().expect("running");
    child.kill().unwrap();
    child.wait().unwrap();
}

/// The containers of each unit in `names` that exist on the host: the
/// pid namespaces of the live processes whose cgroup is named after the
/// unit (a container is one pid namespace; an orphan of a killed daemon
/// has its own), each with the host pid of its init.
fn containers(names: &BTreeSet<String>) -> BTreeMap<String, BTreeMap<u64, i64>> {
    use std::os::unix::fs::MetadataExt;
    let mut out: BTreeMap<String, BTreeMap<u64, i64>> = BTreeMap::new();
    let Ok(entries) = std::fs::read_dir("/proc") else { return out };
    for e in entries.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i64>().ok()) else { continue };
        let Ok(cgroups) = std::fs::read_to_string(format!("/proc/{pid}/cgroup")) else { continue };
        let owner = cgroups.lines().find_map(|l| {
            let path = l.splitn(3, ':').nth(2)?;
            let last = path.rsplit('/').next()?;
            names.get(last).cloned()
        });
        let Some(owner) = owner else { continue };
        if !alive(pid) {
            continue;
        }
        let Ok(ns) = std::fs::metadata(format!("/proc/{pid}/ns/pid")) else { continue };
        // The init of a pid namespace has the lowest host pid in it while
        // it lives (pids grow; a wrap-around is not met in a test's time).
        let slot = out.entry(owner).or_default().entry(ns.ino()).or_insert(pid);
        *slot = (*slot).min(pid);
    }
    out
}

/// Every unit of `names` runs in the successor `d`, each in exactly one
/// container (whose init is the pid `status` shows), and no other
/// container of theirs exists on the host.
fn exactly_once(d: &Daemon, names: &BTreeSet<String>, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let running: BTreeMap<String, i64> = d
            .status()
            .into_iter()
            .filter(|u| u["state"] == "running")
            .filter_map(|u| Some((u["name"].as_str()?.to_string(), u["pid"].as_i64()?)))
            .filter(|(n, _)| names.contains(n))
            .collect();
        if running.len() == names.len() {
            let found = containers(names);
            let wrong: Vec<String> = names
                .iter()
                .filter_map(|n| {
                    let inits: Vec<i64> = found.get(n).map(|m| m.values().copied().collect()).unwrap_or_default();
                    (inits != [running[n]]).then(|| format!("{n}: status pid {}, containers {inits:?}", running[n]))
                })
                .collect();
            // A start in flight may still show the old pid: ask again
            // before calling a difference a duplicate.
            if wrong.is_empty() {
                return;
            }
            assert!(Instant::now() < deadline, "{what}: not exactly one container per unit:\n{wrong:#?}\n{}", d.log());
        } else {
            assert!(
                Instant::now() < deadline,
                "{what}: {} of {} units running after 180s\n{}",
                running.len(),
                names.len(),
                d.log()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The cgroup directories named after the units of `names` under the
/// hierarchies the daemon uses (found from `dirs`, a unit's cgroup).
fn cgroups_named(dirs: &[PathBuf], names: &BTreeSet<String>) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for base in dirs.iter().filter_map(|d| d.parent()).collect::<BTreeSet<&Path>>() {
        for n in names {
            if base.join(n).exists() {
                out.push(base.join(n));
            }
        }
    }
    out
}

fn veths_on(bridge: &str) -> Vec<String> {
    let out = Command::new("ip").args(["-o", "link", "show", "master", bridge]).output().unwrap();
    text(&out.stdout).lines().filter_map(|l| l.split(": ").nth(1)).map(|s| s.to_string()).collect()
}

/// Waits until `bridge` has `n` veths: those of dead containers go with
/// their network namespaces, which the kernel tears down in the background.
fn wait_veths(bridge: &str, n: usize, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let veths = veths_on(bridge);
        if veths.len() == n {
            return;
        }
        assert!(Instant::now() < deadline, "{what}: {} veths on {bridge}, not {n}: {veths:?}", veths.len());
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// After the successor's clean shutdown: nothing of any life of the
/// daemon is left on the host or in its directories.
fn nothing_left(d: &Daemon, names: &BTreeSet<String>, cgroup_dirs: &[PathBuf], bridge: &str) {
    let procs = containers(names);
    assert!(procs.is_empty(), "container processes left: {procs:?}");
    let cgroups = cgroups_named(cgroup_dirs, names);
    assert!(cgroups.is_empty(), "cgroups left: {cgroups:?}");
    assert!(!mounted_under(d.dir.path()), "a mount is left under {}", d.dir.path().display());
    let entries = |p: PathBuf| -> Vec<String> {
        std::fs::read_dir(p).map_or(vec![], |r| r.flatten().map(|e| e.file_name().to_string_lossy().into()).collect())
    };
    assert_eq!(entries(d.dir.path().join("run/containers")), Vec::<String>::new(), "state records left");
    assert_eq!(entries(d.dir.path().join("state/containers")), Vec::<String>::new(), "writable layers left");
    let links = text(&Command::new("ip").args(["-o", "link"]).output().unwrap().stdout);
    assert!(!links.contains(&format!(": {bridge}:")), "the bridge {bridge} is left");
    let tables = text(&Command::new("nft").args(["list", "tables"]).output().unwrap().stdout);
    assert!(!tables.contains(&format!("supervisor_{bridge}")), "{tables}");
}

/// The pool's holders, from the state directory.
fn pool_holders(d: &Daemon, bridge: &str) -> BTreeSet<String> {
    let path = d.dir.path().join(format!("state/network/{bridge}.json"));
    let pool: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    pool["used"].as_object().unwrap().values().filter_map(|v| v.as_str().map(String::from)).collect()
}

#[test]
fn kill_9_during_the_start_of_50_units_leaves_each_running_exactly_once() {
    root_only!("kill_9_during_the_start_of_50_units_leaves_each_running_exactly_once");
    let mut d = Daemon::start();
    let bridge = bridge_of(&d);
    let names: BTreeSet<String> = (0..50).map(|_| common::unique_name("ks")).collect();
    for n in &names {
        d.write_unit(n, &unit("sleep 100000 & wait", ""));
    }
    // Each life is killed at another point of its start of the 50 units
    // (the next one starts them all anew): right away, with starts in
    // flight (0.4 s: the reported race), with some and with half of them
    // running. A container of any life that outlived it would still run
    // at the end, beside the last life's.
    let running = |d: &Daemon| d.status().iter().filter(|u| u["state"] == "running").count();
    for when in ["at once", "after 0.4 s", "with 10 running", "with half running", "after 0.8 s", "with 40 running"] {
        let at = match when {
            "at once" => 0,
            "after 0.4 s" => 400,
            "after 0.8 s" => 800,
            "with 10 running" => 10,
            "with half running" => 25,
            _ => 40,
        };
        if when.starts_with("after") {
            std::thread::sleep(Duration::from_millis(at));
        } else if when.starts_with("with") {
            let deadline = Instant::now() + Duration::from_secs(120);
            while running(&d) < at as usize {
                assert!(Instant::now() < deadline, "{when}: the units did not start:\n{}", d.log());
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        kill_9(&mut d);
        d.spawn();
    }
    exactly_once(&d, &names, "after six lives killed while starting");
    wait_veths(&bridge, names.len(), "after the kills");
    assert_eq!(pool_holders(&d, &bridge), names, "the address pool");
    let cgroup_dirs = d.cgroup_dirs(names.first().unwrap());
    assert!(d.terminate(120).success(), "{}", d.log());
    nothing_left(&d, &names, &cgroup_dirs, &bridge);
}

#[test]
fn kill_9_during_a_shutdown_leaves_each_unit_running_exactly_once_in_the_successor() {
    root_only!("kill_9_during_a_shutdown_leaves_each_unit_running_exactly_once_in_the_successor");
    let mut d = Daemon::start();
    let bridge = bridge_of(&d);
    let names: BTreeSet<String> = (0..6).map(|_| common::unique_name("kd")).collect();
    // Stops that take a while: SIGTERM is ignored, SIGKILL comes at the
    // timeout (not reached before the kill; the successor's shutdown
    // waits for it).
    for n in &names {
        d.write_unit(n, &unit("trap '' TERM; sleep 100000 & wait; wait", "[stop]\ntimeout = \"10s\"\n"));
    }
    for n in &names {
        d.wait_state(n, "running");
    }
    let old = containers(&names);
    let child = d.child.as_ref().unwrap();
    // SAFETY: kill(2) of our child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(30);
    while !names.iter().all(|n| d.unit(n).is_some_and(|u| u["state"] == "stopping")) {
        assert!(Instant::now() < deadline, "the units are not stopping:\n{}", d.log());
        std::thread::sleep(Duration::from_millis(20));
    }
    kill_9(&mut d);
    d.spawn();
    exactly_once(&d, &names, "during a shutdown");
    let new = containers(&names);
    for (n, inits) in &old {
        for pid in inits.values() {
            assert!(!alive(*pid), "{n}: the killed daemon's container {pid} still runs");
            assert!(!new[n].values().any(|p| p == pid));
        }
    }
    assert!(d.log().contains("removed the container an earlier supervisor left"), "{}", d.log());
    let cgroup_dirs = d.cgroup_dirs(names.first().unwrap());
    assert!(d.terminate(60).success(), "{}", d.log());
    nothing_left(&d, &names, &cgroup_dirs, &bridge);
}

/// How many lines of our nft table name each port.
fn port_rules(bridge: &str, ports: &[u16]) -> Vec<usize> {
    let table = format!("supervisor_{bridge}");
    let rules = text(&Command::new("nft").args(["list", "table", "ip", &table]).output().unwrap().stdout);
    ports.iter().map(|p| rules.lines().filter(|l| l.contains(&format!(" {p} "))).count()).collect()
}

#[test]
fn after_kill_9_networked_units_get_addresses_and_their_ports_answer() {
    root_only!("after_kill_9_networked_units_get_addresses_and_their_ports_answer");
    let mut d = Daemon::start();
    let bridge = bridge_of(&d);
    let names: Vec<String> = (0..3).map(|_| common::unique_name("kn")).collect();
    let picked: Vec<std::net::TcpListener> =
        (0..3).map(|_| std::net::TcpListener::bind("0.0.0.0:0").unwrap()).collect();
    let ports: Vec<u16> = picked.iter().map(|l| l.local_addr().unwrap().port()).collect();
    drop(picked);
    for (n, port) in names.iter().zip(&ports) {
        let script = format!("mkdir -p /www; echo {n} > /www/index.html; httpd -p 80 -h /www; sleep 100000 & wait");
        d.write_unit(n, &unit(&script, &format!("ports = [\"127.0.0.1:{port}:80\"]\n")));
    }
    let set: BTreeSet<String> = names.iter().cloned().collect();
    let answers = |d: &Daemon| {
        for (n, port) in names.iter().zip(&ports) {
            let u = d.wait_state(n, "running");
            assert!(u["address"].as_str().is_some_and(|a| !a.is_empty()), "{n}: no address: {u}");
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                let o = Command::new("timeout")
                    .args(["5", "busybox", "wget", "-q", "-O", "-", &format!("http://127.0.0.1:{port}/")])
                    .output()
                    .unwrap();
                if o.status.success() && text(&o.stdout).trim() == n {
                    break;
                }
                assert!(Instant::now() < deadline, "{n}: port {port} does not answer: {}{}", text(&o.stderr), d.log());
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    };
    answers(&d);
    let rules = port_rules(&bridge, &ports);
    assert!(rules.iter().all(|n| *n > 0), "no rule for a port: {rules:?}");
    // Three crashes in a row, each while a restart of every unit is in
    // flight: addresses are freed, ports and rules are taken over.
    for round in 0..3 {
        let mut args = vec!["restart", "--no-block"];
        args.extend(names.iter().map(String::as_str));
        let _ = d.ctl(&args);
        kill_9(&mut d);
        d.spawn();
        exactly_once(&d, &set, &format!("crash {round}"));
        answers(&d);
        assert_eq!(pool_holders(&d, &bridge), set, "crash {round}: the address pool");
        wait_veths(&bridge, names.len(), &format!("crash {round}"));
        assert_eq!(port_rules(&bridge, &ports), rules, "crash {round}: the rules of the ports");
    }
    let cgroup_dirs = d.cgroup_dirs(&names[0]);
    assert!(d.terminate(60).success(), "{}", d.log());
    nothing_left(&d, &set, &cgroup_dirs, &bridge);
}
