//! supervisord end to end, as root: a real daemon on its own directories,
//! real containers (busybox, built offline), driven by editing unit files
//! and by supervisorctl.

mod common;

use std::io::Write;
use std::time::{Duration, Instant};

use common::daemon::{Daemon, alive, busybox, mounted_under};
use common::text;
use serde_json::Value;

/// A unit that runs `script` under sh, stopping at once on SIGTERM.
fn unit(script: &str) -> String {
    format!(
        "[container]\nimage = \"{}\"\ncommand = [\"sh\", \"-c\", {:?}]\n",
        busybox(),
        format!("trap 'exit 0' TERM; {script}")
    )
}

fn sleeper() -> String {
    unit("sleep 100000 & wait")
}

fn pid(u: &Value) -> i64 {
    u["pid"].as_i64().unwrap_or_else(|| panic!("no pid: {u}"))
}

#[test]
fn edits_are_applied_unit_by_unit() {
    root_only!("edits_are_applied_unit_by_unit");
    let d = Daemon::start();
    let (a, b) = (common::unique_name("ea"), common::unique_name("eb"));
    // Dropping a file starts the unit.
    d.write_unit(&a, &sleeper());
    let file_b = d.write_unit(&b, &sleeper());
    let ua = d.wait_state(&a, "running");
    let ub = d.wait_state(&b, "running");
    assert!(alive(pid(&ua)) && alive(pid(&ub)));

    // An edit restarts that unit with the new config; the sibling keeps
    // its container.
    d.write_unit(&b, &unit("echo second-config; sleep 100000 & wait"));
    let nb = d
        .wait_for(&b, "restarted", 30, |u| u.is_some_and(|u| u["state"] == "running" && u["pid"] != ub["pid"]))
        .unwrap();
    assert!(!alive(pid(&ub)), "the old container of {b} is still there");
    assert_eq!(d.unit(&a).unwrap()["pid"], ua["pid"], "{a} was touched by an edit of {b}");
    d.wait_log(&b, None, "stdout second-config");

    // An invalid edit keeps the container running and shows where.
    std::fs::write(&file_b, format!("{}\nmemroy = \"1G\"\n", unit("sleep 100000 & wait"))).unwrap();
    let bad = d.wait_for(&b, "showing its error", 10, |u| u.is_some_and(|u| !u["error"].is_null())).unwrap();
    assert_eq!(bad["state"], "running");
    assert_eq!(bad["pid"], nb["pid"]);
    let err = bad["error"].as_str().unwrap();
    assert!(err.contains(&format!("{}:5:1", file_b.display())) && err.contains("memroy"), "{err}");
    let human = d.ctl(&["status", &b]);
    assert!(text(&human.stdout).contains(":5:1"), "{}", text(&human.stdout));

    // Deleting the file stops it and leaves nothing behind.
    let cgroups = d.cgroup_dirs(&b);
    assert!(!cgroups.is_empty());
    std::fs::remove_file(&file_b).unwrap();
    d.wait_for(&b, "removed", 30, |u| u.is_none());
    assert!(!alive(pid(&nb)), "the container of a removed unit still runs");
    for cg in &cgroups {
        assert!(!cg.exists(), "{} is left", cg.display());
    }
    assert!(!mounted_under(&d.dir.path().join("state/containers").join(&b)), "a mount is left");
    assert!(!d.dir.path().join("state/containers").join(&b).exists());
    assert_eq!(d.unit(&a).unwrap()["pid"], ua["pid"]);
}

#[test]
fn editors_renames_and_half_written_files() {
    root_only!("editors_renames_and_half_written_files");
    let d = Daemon::start();
    let name = common::unique_name("ed");
    // vim-like: write a swap file, then rename it over the unit file.
    let tmp = d.units().join(format!(".{name}.toml.swp"));
    std::fs::write(&tmp, unit("echo renamed-in; sleep 100000 & wait")).unwrap();
    std::fs::rename(&tmp, d.units().join(format!("{name}.toml"))).unwrap();
    d.wait_state(&name, "running");
    d.wait_log(&name, None, "renamed-in");

    // A file written in two parts, with a pause longer than the settle
    // time: the first half alone (a valid unit without its command) must
    // never be started.
    let half = common::unique_name("hf");
    let mut f = std::fs::File::create(d.units().join(format!("{half}.toml"))).unwrap();
    f.write_all(format!("[container]\nimage = \"{}\"\n", busybox()).as_bytes()).unwrap();
    f.flush().unwrap();
    std::thread::sleep(Duration::from_millis(400));
    f.write_all(b"command = [\"sh\", \"-c\", \"trap 'exit 0' TERM; echo whole-file; sleep 100000 & wait\"]\n").unwrap();
    drop(f);
    let u = d.wait_state(&half, "running");
    assert_eq!(u["generation"], 1, "the half-written file was started: {u}");
    assert_eq!(u["restarts"], 0);
    d.wait_log(&half, None, "whole-file");
}

#[test]
fn a_container_that_ignores_sigterm_is_killed_at_its_timeout_with_its_children() {
    root_only!("a_container_that_ignores_sigterm_is_killed_at_its_timeout_with_its_children");
    let d = Daemon::start();
    let name = common::unique_name("st");
    let body = format!(
        "[container]\nimage = \"{}\"\ncommand = [\"sh\", \"-c\", \"trap '' TERM; sleep 100000 & sleep 100000 & wait; wait\"]\n[stop]\ntimeout = \"2s\"\n",
        busybox()
    );
    d.write_unit(&name, &body);
    let u = d.wait_state(&name, "running");
    let cgroups = d.cgroup_dirs(&name);
    let procs: Vec<i64> = cgroups
        .iter()
        .filter_map(|c| std::fs::read_to_string(c.join("cgroup.procs")).ok())
        .flat_map(|s| s.lines().filter_map(|l| l.parse().ok()).collect::<Vec<i64>>())
        .collect();
    assert!(procs.len() >= 3, "the shell and its two children: {procs:?}");
    let t = Instant::now();
    let out = d.ctl(&["stop", &name]);
    let took = t.elapsed();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(took >= Duration::from_millis(1900), "stopped before its timeout: {took:?}");
    // Killed at the timeout, not long after: a bound loose enough for a
    // loaded machine (the timeout is 2 s; no timeout at all would hang).
    assert!(took < Duration::from_secs(10), "stop took {took:?}");
    assert!(!alive(pid(&u)));
    for p in procs {
        assert!(!alive(p), "process {p} of the container survived its stop");
    }
    assert_eq!(d.unit(&name).unwrap()["state"], "inactive");
}

#[test]
fn restart_policies_and_backoff() {
    root_only!("restart_policies_and_backoff");
    let d = Daemon::start();
    let always = common::unique_name("ra");
    d.write_unit(
        &always,
        &format!("{}[restart]\npolicy = \"always\"\ndelay = \"200ms\"\nmax_delay = \"5s\"\n", sleeper()),
    );
    let mut u = d.wait_state(&always, "running");
    // Killed three times: it comes back each time, later each time.
    let mut delays = Vec::new();
    for n in 1..=3 {
        let killed = Instant::now();
        // SAFETY: kill(2) of a container process of the test's daemon.
        unsafe { libc::kill(pid(&u) as i32, libc::SIGKILL) };
        let before = u["pid"].clone();
        u = d
            .wait_for(&always, "back", 30, |x| x.is_some_and(|x| x["state"] == "running" && x["pid"] != before))
            .unwrap();
        delays.push(killed.elapsed());
        assert_eq!(u["restarts"], n);
        assert_eq!(u["signal"], "SIGKILL");
        assert!(u["exit_code"].is_null());
    }
    assert!(delays[0] >= Duration::from_millis(200), "{delays:?}");
    assert!(delays[1] >= Duration::from_millis(400), "{delays:?}");
    assert!(delays[2] >= Duration::from_millis(800), "{delays:?}");
    assert!(delays[2] > delays[0], "{delays:?}");

    // on-failure: exit 0 stays down; exit 3 is restarted. Both start
    // together with the same delay: by the time the failing one has been
    // restarted twice, the clean one would have been too, were it to be.
    let (clean, failing) = (common::unique_name("rc"), common::unique_name("rf"));
    d.write_unit(
        &clean,
        &format!("{}[restart]\npolicy = \"on-failure\"\ndelay = \"100ms\"\n", unit("sleep 0.2; exit 0")),
    );
    d.write_unit(
        &failing,
        &format!("{}[restart]\npolicy = \"on-failure\"\ndelay = \"100ms\"\nlimit = 2\n", unit("sleep 0.2; exit 3")),
    );
    let u = d.wait_state(&failing, "failed");
    assert_eq!(u["restarts"], 2, "{u}");
    assert_eq!(u["exit_code"], 3);
    assert!(u["reason"].as_str().unwrap().contains("restart limit"), "{u}");
    let u = d.wait_state(&clean, "exited");
    assert_eq!(u["exit_code"], 0);
    assert_eq!((u["state"].as_str(), u["restarts"].as_u64()), (Some("exited"), Some(0)), "{u}");
}

#[test]
fn dependencies_order_start_and_reverse_stop() {
    root_only!("dependencies_order_start_and_reverse_stop");
    let d = Daemon::start();
    let (db, app, web) = (common::unique_name("db"), common::unique_name("ap"), common::unique_name("wb"));
    // Written dependents first: the order must come from the graph.
    d.write_unit(&web, &format!("[unit]\nrequires = [\"{app}\"]\n{}", sleeper()));
    d.write_unit(&app, &format!("[unit]\nrequires = [\"{db}\"]\n{}", sleeper()));
    d.write_unit(&db, &sleeper());
    let started: Vec<String> = [&db, &app, &web]
        .iter()
        .map(|n| d.wait_state(n, "running")["started_at"].as_str().unwrap().to_string())
        .collect();
    assert!(started[0] < started[1] && started[1] < started[2], "start order: {started:?}");

    // Stopping a required unit stops its dependents first...
    let out = d.ctl(&["stop", &db]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let events = d.log();
    let pos = |what: &str| events.find(what).unwrap_or_else(|| panic!("{what} not in the log:\n{events}"));
    let stop_web = pos(&format!("{web}: stopping -> waiting"));
    let stop_app = pos(&format!("{app}: stopping -> waiting"));
    let stop_db = pos(&format!("{db}: stopping -> inactive"));
    assert!(stop_web < stop_app && stop_app < stop_db, "stop order is not reversed:\n{events}");
    let w = d.unit(&web).unwrap();
    assert_eq!(w["state"], "waiting");
    assert!(w["reason"].as_str().unwrap().contains(&app), "{w}");
    // ...which start again when it is back.
    assert!(d.ctl(&["start", &db]).status.success());
    d.wait_state(&web, "running");
}

#[test]
fn sigterm_stops_everything_and_the_daemon_exits_0() {
    root_only!("sigterm_stops_everything_and_the_daemon_exits_0");
    let mut d = Daemon::start();
    let names: Vec<String> = (0..3).map(|_| common::unique_name("sd")).collect();
    for n in &names {
        d.write_unit(n, &sleeper());
    }
    let pids: Vec<i64> = names.iter().map(|n| pid(&d.wait_state(n, "running"))).collect();
    let status = d.terminate(30);
    assert!(status.success(), "supervisord exited with {status}:\n{}", d.log());
    for p in pids {
        assert!(!alive(p), "container process {p} outlived the daemon");
    }
    assert!(!d.socket().exists());
    let left: Vec<_> = std::fs::read_dir(d.dir.path().join("run/containers")).unwrap().collect();
    assert!(left.is_empty(), "state records left: {left:?}");
}

#[test]
fn a_crashed_daemon_leaves_nothing_its_successor_does_not_clean() {
    root_only!("a_crashed_daemon_leaves_nothing_its_successor_does_not_clean");
    let mut d = Daemon::start();
    let name = common::unique_name("cr");
    d.write_unit(&name, &sleeper());
    let old = d.wait_state(&name, "running");
    let cgroups = d.cgroup_dirs(&name);
    let mut child = d.child.take().unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    // The container outlives a SIGKILLed supervisor...
    assert!(alive(pid(&old)));
    d.spawn();
    // ...and the next one removes it before starting the unit anew.
    let new = d.wait_state(&name, "running");
    assert_ne!(new["pid"], old["pid"]);
    assert!(!alive(pid(&old)), "the old container survived the new supervisor's start");
    assert!(d.log().contains("removed the container an earlier supervisor left"), "{}", d.log());
    assert_eq!(d.cgroup_dirs(&name), cgroups);
}

#[test]
fn resources_change_live_without_a_restart() {
    root_only!("resources_change_live_without_a_restart");
    let d = Daemon::start();
    let name = common::unique_name("lv");
    d.write_unit(&name, &format!("{}[resources]\nmemory = \"64M\"\n", sleeper()));
    let u = d.wait_state(&name, "running");
    let mem = d
        .cgroup_dirs(&name)
        .into_iter()
        .map(|c| c.join("memory.limit_in_bytes"))
        .chain(d.cgroup_dirs(&name).into_iter().map(|c| c.join("memory.max")))
        .find(|p| p.exists())
        .expect("a memory limit file");
    assert_eq!(std::fs::read_to_string(&mem).unwrap().trim(), (64u64 << 20).to_string());
    let plan = d.ctl(&["reload", "--dry-run"]);
    assert!(text(&plan.stdout).contains(&format!("{name}: keep")), "{}", text(&plan.stdout));
    std::fs::write(d.units().join(format!("{name}.toml")), format!("{}[resources]\nmemory = \"96M\"\n", sleeper()))
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::fs::read_to_string(&mem).unwrap().trim() != (96u64 << 20).to_string() {
        assert!(Instant::now() < deadline, "the new limit was not written:\n{}", d.log());
        std::thread::sleep(Duration::from_millis(20));
    }
    let after = d.unit(&name).unwrap();
    assert_eq!(after["pid"], u["pid"]);
    assert_eq!(after["generation"], u["generation"]);
}

#[test]
fn reload_dry_run_prints_the_plan_and_reload_carries_it_out() {
    root_only!("reload_dry_run_prints_the_plan_and_reload_carries_it_out");
    let d = Daemon::start();
    let (keep, change, bad) = (common::unique_name("rk"), common::unique_name("rr"), common::unique_name("ri"));
    // `change` and `bad` are links to files outside the unit directory:
    // editing those in place makes no event the watcher hears, so only a
    // reload can see the edits, and what happens after --dry-run is the
    // dry run's doing alone.
    let outside = d.dir.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    let linked = |name: &str, body: &str| {
        let target = outside.join(format!("{name}.toml"));
        std::fs::write(&target, body).unwrap();
        std::os::unix::fs::symlink(&target, d.units().join(format!("{name}.toml"))).unwrap();
        target
    };
    d.write_unit(&keep, &sleeper());
    let change_file = linked(&change, &sleeper());
    let bad_file = linked(&bad, &sleeper());
    let kept = d.wait_state(&keep, "running");
    let old = d.wait_state(&change, "running");
    let old_bad = d.wait_state(&bad, "running");
    std::fs::write(&change_file, unit("echo v2; sleep 100000 & wait")).unwrap();
    std::fs::write(&bad_file, "[container]\nimage = 1\n").unwrap();

    let plan = |args: &[&str]| {
        let out = d.ctl(args);
        assert_eq!(out.status.code(), Some(1), "an invalid file makes reload exit 1: {}", text(&out.stderr));
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        let action = |n: &str| {
            let step = v["plan"].as_array().unwrap().iter().find(|s| s["unit"] == n);
            step.map(|s| s["action"].as_str().unwrap().to_string())
        };
        (v["dry_run"].clone(), action(&keep), action(&change), action(&bad))
    };
    let some = |a: &str| Some(a.to_string());
    let dry = plan(&["reload", "--dry-run", "--json"]);
    assert_eq!(dry, (Value::Bool(true), some("keep"), some("restart"), some("invalid")));
    // Nothing was done: the same containers run the old configs...
    for (name, before) in [(&keep, &kept), (&change, &old), (&bad, &old_bad)] {
        let u = d.unit(name).unwrap();
        assert_eq!(
            (&u["state"], &u["pid"], &u["generation"]),
            (&before["state"], &before["pid"], &before["generation"])
        );
        assert!(u["error"].is_null(), "a dry run recorded the invalid file: {u}");
    }
    // ...and the daemon still sees the same difference to carry out.
    let real = plan(&["reload", "--json"]);
    assert_eq!(real, (Value::Bool(false), some("keep"), some("restart"), some("invalid")));
    let now = d.unit(&change).unwrap();
    assert_eq!((now["state"].as_str(), now["generation"].as_u64()), (Some("running"), Some(2)), "{now}");
    assert_ne!(now["pid"], old["pid"]);
    d.wait_log(&change, None, "v2");
    // The invalid file keeps its unit on the last good config, and says why.
    let b = d.unit(&bad).unwrap();
    assert_eq!((&b["state"], &b["pid"]), (&old_bad["state"], &old_bad["pid"]), "{b}");
    assert!(b["error"].as_str().is_some_and(|e| e.contains(&format!("{bad}.toml"))), "{b}");
    assert_eq!(d.unit(&keep).unwrap()["pid"], kept["pid"]);
}

#[test]
fn logs_rotate_without_losing_lines() {
    root_only!("logs_rotate_without_losing_lines");
    let d = Daemon::start();
    let name = common::unique_name("lg");
    let body = format!(
        "{}[restart]\npolicy = \"no\"\n[logs]\nmax_size = \"1M\"\nmax_files = 3\n",
        unit("i=0; while [ $i -lt 20000 ]; do echo line-$i-padding-padding-padding-padding; i=$((i+1)); done")
    );
    d.write_unit(&name, &body);
    d.wait_state(&name, "exited");
    let dir = d.log_dir();
    let mut numbers = Vec::new();
    for f in [format!("{name}.log.2"), format!("{name}.log.1"), format!("{name}.log")] {
        let p = dir.join(&f);
        let Ok(text) = std::fs::read_to_string(&p) else { continue };
        assert!(text.len() as u64 <= 1 << 20, "{f} is {} bytes", text.len());
        for l in text.lines() {
            let fields: Vec<&str> = l.splitn(3, ' ').collect();
            assert_eq!(fields.len(), 3, "{l}");
            assert_eq!(fields[1], "stdout");
            let n: u64 = fields[2].strip_prefix("line-").and_then(|r| r.split('-').next()).unwrap().parse().unwrap();
            assert!(fields[2].ends_with("padding"), "a split line: {l}");
            numbers.push(n);
        }
    }
    assert!(dir.join(format!("{name}.log.1")).exists(), "no rotation happened");
    assert!(!dir.join(format!("{name}.log.3")).exists());
    assert_eq!(*numbers.last().unwrap(), 19999);
    assert!(numbers.windows(2).all(|w| w[1] == w[0] + 1), "lines lost between files");
    let tail = d.ctl(&["logs", "-n", "2", &name]);
    let lines: Vec<String> = text(&tail.stdout).lines().map(String::from).collect();
    assert_eq!(lines.len(), 2);
    assert!(lines[1].contains("line-19999-"), "{lines:?}");
}

#[test]
fn kill_exec_inspect_and_events() {
    root_only!("kill_exec_inspect_and_events");
    let d = Daemon::start();
    let name = common::unique_name("kx");
    d.write_unit(&name, &unit("trap 'echo got-hup' HUP; while true; do sleep 0.1; done"));
    let u = d.wait_state(&name, "running");
    assert!(d.ctl(&["kill", "-s", "HUP", &name]).status.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    while !text(&d.ctl(&["logs", &name]).stdout).contains("got-hup") {
        assert!(Instant::now() < deadline, "SIGHUP did not reach the service");
        std::thread::sleep(Duration::from_millis(50));
    }
    let after = d.unit(&name).unwrap();
    assert_eq!((after["pid"].clone(), after["restarts"].clone()), (u["pid"].clone(), 0.into()));

    let out = d.ctl(&["exec", &name, "--", "sh", "-c", "echo in-$HOSTNAME; exit 7"]);
    assert_eq!(out.status.code(), Some(7));
    assert_eq!(text(&out.stdout).trim(), format!("in-{name}"));
    assert_eq!(d.ctl(&["exec", &name, "--", "no-such-program"]).status.code(), Some(127));
    // The container's first process and an exec'd one both run under the
    // default seccomp filter.
    let out = d.ctl(&["exec", &name, "--", "grep", "-h", "^Seccomp:", "/proc/1/status", "/proc/self/status"]);
    assert_eq!(text(&out.stdout).split_whitespace().collect::<Vec<_>>(), ["Seccomp:", "2", "Seccomp:", "2"]);

    let v: Value = serde_json::from_slice(&d.ctl(&["inspect", &name]).stdout).unwrap();
    assert_eq!(v["status"]["state"], "running");
    assert_eq!(v["unit"]["name"], name.as_str());
    assert!(v["usage"]["memory"].as_u64().is_some(), "{v}");

    // events: a live stream of state changes. It is known to be listening
    // once it shows a marker unit's start; the restart comes after that.
    let mut ev = std::process::Command::new(env!("CARGO_BIN_EXE_supervisorctl"))
        .arg("--socket")
        .arg(d.socket())
        .args(["events", "--json"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<Value>();
    let stdout = ev.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in std::io::BufRead::lines(std::io::BufReader::new(stdout)).map_while(Result::ok) {
            if let Ok(v) = serde_json::from_str(&line) {
                let _ = tx.send(v);
            }
        }
    });
    let next_of = |unit: &str, deadline: Instant| loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let v = rx.recv_timeout(left).unwrap_or_else(|e| panic!("no event of {unit}: {e}"));
        if v["unit"] == unit {
            return (v["old"].as_str().unwrap().to_string(), v["new"].as_str().unwrap().to_string());
        }
    };
    // The marker fails and is restarted again and again, so that the
    // stream, whenever it begins listening, sees it.
    let marker = common::unique_name("km");
    d.write_unit(&marker, &format!("{}[restart]\npolicy = \"always\"\ndelay = \"100ms\"\n", unit("sleep 0.1; exit 1")));
    next_of(&marker, Instant::now() + Duration::from_secs(30));
    std::fs::remove_file(d.units().join(format!("{marker}.toml"))).unwrap();
    assert!(d.ctl(&["restart", &name]).status.success());
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut states = vec![next_of(&name, deadline)];
    while states.last().is_some_and(|(_, new)| new != "running") {
        states.push(next_of(&name, deadline));
    }
    ev.kill().unwrap();
    ev.wait().unwrap();
    let pairs: Vec<(&str, &str)> = states.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
    assert_eq!(pairs.first(), Some(&("running", "stopping")), "{pairs:?}");
    assert_eq!(pairs.last(), Some(&("starting", "running")), "{pairs:?}");
}

#[test]
fn the_socket_refuses_other_users() {
    root_only!("the_socket_refuses_other_users");
    let d = Daemon::start();
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(d.socket()).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);
    // A non-root process that can reach the socket file (we open the
    // directory's permissions to make the point of the peer check).
    let sock = d.socket();
    std::fs::set_permissions(&sock, std::os::unix::fs::PermissionsExt::from_mode(0o666)).unwrap();
    let mut dir = sock.parent();
    while let Some(p) = dir {
        let _ = std::fs::set_permissions(p, std::os::unix::fs::PermissionsExt::from_mode(0o755));
        if p == d.dir.path().parent().unwrap() {
            break;
        }
        dir = p.parent();
    }
    let out = std::process::Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(env!("CARGO_BIN_EXE_supervisorctl"))
        .arg("--socket")
        .arg(&sock)
        .args(["status"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("only root"), "{}", text(&out.stderr));
}

#[test]
fn as_pid_1_of_a_pid_namespace_it_reaps_orphans() {
    root_only!("as_pid_1_of_a_pid_namespace_it_reaps_orphans");
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("units")).unwrap();
    let p = dir.path();
    std::fs::write(p.join("supervisord.toml"), "").unwrap();
    let mut child = std::process::Command::new("unshare")
        .args(["--pid", "--fork", "--mount", "--mount-proc", "--uts", "--net", "--"])
        .arg(env!("CARGO_BIN_EXE_supervisord"))
        .args(common::daemon::args(p))
        .stderr(std::fs::File::create(p.join("d.log")).unwrap())
        .spawn()
        .unwrap();
    let sock = p.join("run/control.sock");
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::os::unix::net::UnixStream::connect(&sock).is_err() {
        assert!(
            Instant::now() < deadline,
            "no socket: {}",
            std::fs::read_to_string(p.join("d.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // The daemon: the child of unshare's fork.
    let init: i32 = std::fs::read_to_string(format!("/proc/{}/task/{}/children", child.id(), child.id()))
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    // Its children's pids (a child not yet past its exec is still "sh":
    // pids, not names, tell the orphans).
    let children = || -> std::collections::BTreeSet<String> {
        let list = std::fs::read_to_string(format!("/proc/{init}/task/{init}/children")).unwrap_or_default();
        list.split_whitespace().map(String::from).collect()
    };
    let before = children();
    // Orphans in its namespace: a shell that leaves three short-lived
    // background processes behind and exits.
    let st = std::process::Command::new("nsenter")
        .args(["-t", &init.to_string(), "-p", "--", "sh", "-c", "sleep 2 & sleep 2 & sleep 2 & exit 0"])
        .status()
        .unwrap();
    assert!(st.success());
    // They are its children once the shell has ended; they run their two
    // seconds and are reaped: none is left, alive or a zombie.
    let orphans: Vec<String> = children().difference(&before).cloned().collect();
    assert_eq!(orphans.len(), 3, "the orphans are not supervisord's children: {orphans:?}");
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let now = children();
        let left: Vec<&String> = orphans.iter().filter(|o| now.contains(*o)).collect();
        if left.is_empty() {
            break;
        }
        let states: Vec<String> =
            left.iter().filter_map(|c| std::fs::read_to_string(format!("/proc/{c}/stat")).ok()).collect();
        assert!(Instant::now() < deadline, "not reaped by supervisord as PID 1: {states:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
    // SIGTERM: as PID 1 it stops everything and powers off (here: ends
    // its pid namespace).
    // SAFETY: kill(2) of a process we started.
    unsafe { libc::kill(init, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "PID 1 did not end on SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    }
    let log = std::fs::read_to_string(p.join("d.log")).unwrap_or_default();
    assert!(log.contains("every unit is stopped"), "{log}");
}

#[test]
fn a_host_port_taken_by_another_program_is_a_clear_error() {
    root_only!("a_host_port_taken_by_another_program_is_a_clear_error");
    let d = Daemon::start();
    let taken = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let (web, ok) = (common::unique_name("pp"), common::unique_name("po"));
    d.write_unit(&web, &format!("{}ports = [\"{port}:80\"]\n[restart]\nmax_delay = \"1s\"\n", sleeper()));
    d.write_unit(&ok, &sleeper());
    d.wait_state(&ok, "running");
    let u = d.wait_for(&web, "refused", 30, |u| u.is_some_and(|u| !u["error"].is_null())).unwrap();
    let err = u["error"].as_str().unwrap();
    assert!(err.contains(&format!("host port 0.0.0.0:{port}/tcp is already in use")), "{u}");
    assert!(u["pid"].is_null(), "{u}");
    let out = d.ctl(&["status"]);
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(d.ctl(&["status", &ok]).status.code(), Some(0));
    assert_eq!(d.ctl(&["status", "no-such-unit"]).status.code(), Some(4));
    // Once the port is free, the next retry takes it.
    drop(taken);
    let u = d.wait_state(&web, "running");
    assert_eq!(u["ports"], serde_json::json!([format!("0.0.0.0:{port}->80/tcp")]));
}

#[test]
fn a_configmap_style_swap_and_a_replaced_directory_are_followed() {
    root_only!("a_configmap_style_swap_and_a_replaced_directory_are_followed");
    let d = Daemon::start();
    let units = d.units();
    let name = common::unique_name("cm");
    // Kubernetes' layout: NAME.toml -> ..data/NAME.toml, ..data -> ..v1.
    let version = |v: &str, script: &str| {
        let dir = units.join(format!("..{v}"));
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join(format!("{name}.toml")), unit(script)).unwrap();
    };
    version("v1", "echo config-v1; sleep 100000 & wait");
    std::os::unix::fs::symlink("..v1", units.join("..data")).unwrap();
    std::os::unix::fs::symlink(format!("..data/{name}.toml"), units.join(format!("{name}.toml"))).unwrap();
    let first = d.wait_state(&name, "running");
    // The atomic swap: a new version, a new ..data link renamed over the old.
    version("v2", "echo config-v2; sleep 100000 & wait");
    std::os::unix::fs::symlink("..v2", units.join("..data_tmp")).unwrap();
    std::fs::rename(units.join("..data_tmp"), units.join("..data")).unwrap();
    d.wait_for(&name, "restarted", 30, |u| u.is_some_and(|u| u["state"] == "running" && u["pid"] != first["pid"]));
    d.wait_log(&name, None, "config-v2");

    // The directory itself replaced by another one (renamed over it).
    let other = common::unique_name("rp");
    let fresh = d.dir.path().join("units.new");
    std::fs::create_dir(&fresh).unwrap();
    std::fs::write(fresh.join(format!("{other}.toml")), sleeper()).unwrap();
    std::fs::rename(&units, d.dir.path().join("units.old")).unwrap();
    std::fs::rename(&fresh, &units).unwrap();
    d.wait_state(&other, "running");
    d.wait_for(&name, "removed", 30, |u| u.is_none());
    // And the new directory is watched in turn.
    let third = common::unique_name("th");
    std::fs::write(units.join(format!("{third}.toml")), sleeper()).unwrap();
    d.wait_state(&third, "running");
}

#[test]
fn a_changed_env_file_restarts_its_unit_and_an_operator_stop_holds_across_reloads() {
    root_only!("a_changed_env_file_restarts_its_unit_and_an_operator_stop_holds_across_reloads");
    let d = Daemon::start();
    let env_dir = d.dir.path().join("env");
    std::fs::create_dir(&env_dir).unwrap();
    let env = env_dir.join("app.env");
    std::fs::write(&env, "GREETING=one\n").unwrap();
    let name = common::unique_name("ev");
    d.write_unit(
        &name,
        &format!(
            "[container]\nimage = \"{}\"\nenv_file = \"{}\"\ncommand = [\"sh\", \"-c\", \"trap 'exit 0' TERM; echo greeting=$GREETING; sleep 100000 & wait\"]\n",
            busybox(),
            env.display()
        ),
    );
    let first = d.wait_state(&name, "running");
    std::fs::write(&env, "GREETING=two\n").unwrap();
    d.wait_for(&name, "restarted", 30, |u| u.is_some_and(|u| u["state"] == "running" && u["pid"] != first["pid"]));
    d.wait_log(&name, None, "greeting=two");

    // stop holds: an edit that would restart it, and a reload, leave it stopped.
    assert!(d.ctl(&["stop", &name]).status.success());
    std::fs::write(&env, "GREETING=three\n").unwrap();
    // reload answers once what it touched has settled: its answer, and the
    // unit's status after it, are final.
    let out = d.ctl(&["reload", "--json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let step = v["plan"].as_array().unwrap().iter().find(|s| s["unit"] == name.as_str()).cloned();
    assert_eq!(step.map(|s| s["state"].clone()), Some(Value::from("inactive")), "{v}");
    let u = d.unit(&name).unwrap();
    assert_eq!((u["state"].as_str(), u["held"].as_bool()), (Some("inactive"), Some(true)), "{u}");
    let out = d.ctl(&["start", &name]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    d.wait_log(&name, Some(1), "greeting=three");
}

#[test]
fn systemd_hears_ready_status_and_stopping() {
    root_only!("systemd_hears_ready_status_and_stopping");
    let sock_dir = tempfile::tempdir().unwrap();
    let path = sock_dir.path().join("notify");
    let sock = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut d = Daemon::start_with(|c| {
        c.env("NOTIFY_SOCKET", &path);
    });
    let name = common::unique_name("sy");
    d.write_unit(&name, &sleeper());
    let mut seen = String::new();
    let mut buf = [0u8; 4096];
    while !seen.contains("STATUS=1 running") {
        let n = sock.recv(&mut buf).unwrap_or_else(|e| panic!("{e}; so far: {seen}"));
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
        seen.push('\n');
    }
    assert!(seen.starts_with("READY=1"), "{seen}");
    assert!(d.terminate(30).success());
    let mut rest = String::new();
    while let Ok(n) = sock.recv(&mut buf) {
        rest.push_str(&String::from_utf8_lossy(&buf[..n]));
        if rest.contains("STOPPING=1") {
            break;
        }
    }
    assert!(rest.contains("STOPPING=1"), "{rest}");
}

#[test]
fn many_units_start_together() {
    root_only!("many_units_start_together");
    let d = Daemon::start();
    // More than the starts that run at once.
    let names: Vec<String> = (0..20).map(|_| common::unique_name("mu")).collect();
    for n in &names {
        d.write_unit(n, &sleeper());
    }
    for n in &names {
        d.wait_state(n, "running");
    }
}

#[test]
fn a_socket_group_may_connect_and_others_may_not() {
    root_only!("a_socket_group_may_connect_and_others_may_not");
    let d = Daemon::start_configured("socket_group = \"65534\"\n", |_| {});
    let md = std::fs::metadata(d.socket()).unwrap();
    assert_eq!(std::os::unix::fs::PermissionsExt::mode(&md.permissions()) & 0o777, 0o660);
    assert_eq!(std::os::unix::fs::MetadataExt::gid(&md), 65534);
    let mut dir = d.socket().parent().map(std::path::Path::to_path_buf);
    while let Some(p) = dir {
        let _ = std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o755));
        if p == d.dir.path().parent().unwrap() {
            break;
        }
        dir = p.parent().map(std::path::Path::to_path_buf);
    }
    let as_user = |gid: &str| {
        std::process::Command::new("setpriv")
            .args(["--reuid=65534", &format!("--regid={gid}"), "--clear-groups", "--"])
            .arg(env!("CARGO_BIN_EXE_supervisorctl"))
            .arg("--socket")
            .arg(d.socket())
            .args(["status", "--json"])
            .output()
            .unwrap()
    };
    let member = as_user("65534");
    assert!(member.status.success(), "{}", text(&member.stderr));
    assert_eq!(text(&member.stdout).trim(), "[]");
    // Another group cannot even open the socket file: the kernel refuses
    // the connect (EACCES), before the daemon's own peer check.
    let other = as_user("65533");
    let err = text(&other.stderr);
    assert_eq!(other.status.code(), Some(1), "{err}");
    assert!(err.contains(&format!("{}: Permission denied", d.socket().display())), "{err}");
    assert!(text(&other.stdout).is_empty(), "{}", text(&other.stdout));
}

#[test]
fn named_volumes_are_listed_and_removed_only_when_unused() {
    root_only!("named_volumes_are_listed_and_removed_only_when_unused");
    let d = Daemon::start();
    let name = common::unique_name("vo");
    let vol = format!("{name}-data");
    let file = d.write_unit(
        &name,
        &format!("{}volumes = [\"{vol}:/data\"]\n", unit("echo kept > /data/f; sleep 100000 & wait")),
    );
    d.wait_state(&name, "running");
    let v: Value = serde_json::from_slice(&d.ctl(&["volumes", "--json"]).stdout).unwrap();
    let entry = v.as_array().unwrap().iter().find(|x| x["name"] == vol.as_str()).expect("listed").clone();
    assert_eq!(entry["used_by"], serde_json::json!([name]));
    let refused = d.ctl(&["volume", "rm", &vol]);
    assert!(!refused.status.success());
    assert!(text(&refused.stderr).contains(&format!("used by {name}")), "{}", text(&refused.stderr));
    // The unit goes; the volume stays, with its data, until removed.
    std::fs::remove_file(file).unwrap();
    d.wait_for(&name, "removed", 30, |u| u.is_none());
    let data = std::path::PathBuf::from(entry["path"].as_str().unwrap()).join("f");
    assert_eq!(std::fs::read_to_string(&data).unwrap(), "kept\n");
    assert!(d.ctl(&["volume", "rm", &vol]).status.success());
    assert!(!data.exists());
}

#[test]
fn logs_follow_shows_new_lines_as_they_come() {
    root_only!("logs_follow_shows_new_lines_as_they_come");
    use std::io::BufRead;
    let d = Daemon::start();
    let name = common::unique_name("lf");
    d.write_unit(&name, &unit("echo first; trap 'echo got-usr1' USR1; while true; do sleep 0.1; done"));
    d.wait_state(&name, "running");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !text(&d.ctl(&["logs", &name]).stdout).contains("first") {
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut follow = std::process::Command::new(env!("CARGO_BIN_EXE_supervisorctl"))
        .arg("--socket")
        .arg(d.socket())
        .args(["logs", "-f", "-n", "1", &name])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(follow.stdout.take().unwrap()).lines();
    assert!(lines.next().unwrap().unwrap().ends_with("stdout first"));
    assert!(d.ctl(&["kill", "-s", "USR1", &name]).status.success());
    let next = lines.next().unwrap().unwrap();
    assert!(next.ends_with("stdout got-usr1"), "{next}");
    follow.kill().unwrap();
    follow.wait().unwrap();
}

#[test]
fn image_verbs_are_served_by_the_running_daemon() {
    root_only!("image_verbs_are_served_by_the_running_daemon");
    let d = Daemon::start();
    let name = common::unique_name("iv");
    d.write_unit(&name, &sleeper());
    d.wait_state(&name, "running");
    // No --store: the daemon's store answers.
    let images: Value = serde_json::from_slice(&d.ctl(&["images", "--json"]).stdout).unwrap();
    let reference = busybox();
    assert!(images.as_array().unwrap().iter().any(|i| i["reference"] == reference.as_str()), "{images}");
    let refused = d.ctl(&["rmi", &reference]);
    assert!(!refused.status.success());
    assert!(text(&refused.stderr).contains(&format!("used by {name}")), "{}", text(&refused.stderr));

    // A pull through the daemon, on a terminal: per-layer progress bars.
    let other = format!("oci:{}:layered", common::fixtures().join("layout").display());
    let cmd = format!("{} --socket {} pull {other}", env!("CARGO_BIN_EXE_supervisorctl"), d.socket().display());
    let out = std::process::Command::new("script").args(["-qec", &cmd, "/dev/null"]).output().unwrap();
    let shown = text(&out.stdout);
    assert!(out.status.success(), "{shown}");
    assert!(shown.contains("\x1b[2K") && shown.contains("[####################]"), "no progress bars: {shown:?}");
    assert!(shown.contains("digest: sha256:"), "{shown}");
    let images: Value = serde_json::from_slice(&d.ctl(&["images", "--json"]).stdout).unwrap();
    assert!(images.as_array().unwrap().iter().any(|i| i["reference"] == other.as_str()), "{images}");
    // Without a terminal: plain lines.
    let plain = d.ctl(&["pull", &other]);
    assert!(plain.status.success());
    assert!(!text(&plain.stderr).contains('\x1b') && text(&plain.stderr).contains("already in the store"));
    assert!(d.ctl(&["rmi", &other]).status.success());
}

#[test]
fn status_colors_states_on_a_terminal_unless_no_color_is_set() {
    root_only!("status_colors_states_on_a_terminal_unless_no_color_is_set");
    let d = Daemon::start();
    let name = common::unique_name("co");
    d.write_unit(&name, &sleeper());
    d.wait_state(&name, "running");
    let on_terminal = |env: &str| {
        let cmd = format!("{env} {} --socket {} status", env!("CARGO_BIN_EXE_supervisorctl"), d.socket().display());
        let out = std::process::Command::new("script").args(["-qec", &cmd, "/dev/null"]).output().unwrap();
        text(&out.stdout)
    };
    let colored = on_terminal("env");
    assert!(colored.contains("\x1b[") && colored.contains("RUNNING"), "{colored:?}");
    let plain = on_terminal("env NO_COLOR=1");
    assert!(!plain.contains('\x1b') && plain.contains("RUNNING"), "{plain:?}");
}

#[test]
fn diff_lists_what_the_container_added_changed_and_deleted() {
    root_only!("diff_lists_what_the_container_added_changed_and_deleted");
    let d = Daemon::start();
    let name = common::unique_name("df");
    d.write_unit(
        &name,
        &unit("echo me >> /etc/passwd; rm /etc/group; mkdir -p /srv/new; echo x > /srv/new/file; echo changed; sleep 100000 & wait"),
    );
    d.wait_log(&name, None, "changed");
    let out = d.ctl(&["diff", &name]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let lines: Vec<String> = text(&out.stdout).lines().map(String::from).collect();
    for want in ["C /etc", "C /etc/passwd", "D /etc/group", "A /srv", "A /srv/new", "A /srv/new/file"] {
        assert!(lines.iter().any(|l| l == want), "no {want:?} in:\n{}", lines.join("\n"));
    }
    assert!(!lines.iter().any(|l| l.ends_with(" /bin") || l.ends_with(" /usr")), "untouched paths listed: {lines:?}");
    // The files the daemon mounts in (made in the writable layer when the
    // image has none) are not the container's changes.
    assert!(!lines.iter().any(|l| l.ends_with("/etc/hosts") || l.ends_with("/etc/resolv.conf")), "{lines:?}");
    let json: Value = serde_json::from_slice(&d.ctl(&["diff", "--json", &name]).stdout).unwrap();
    assert!(json.as_array().unwrap().iter().any(|c| c["kind"] == "D" && c["path"] == "/etc/group"), "{json}");
    let none = d.ctl(&["diff", "nosuchunit"]);
    assert_eq!(none.status.code(), Some(1));
    assert!(text(&none.stderr).contains("no unit named"), "{}", text(&none.stderr));
}

#[test]
fn stats_numbers_move_with_a_busy_loop_and_a_memory_hog() {
    root_only!("stats_numbers_move_with_a_busy_loop_and_a_memory_hog");
    let d = Daemon::start();
    let (busy, hog) = (common::unique_name("busy"), common::unique_name("hog"));
    let image = busybox();
    d.write_unit(
        &busy,
        &format!("[container]\nimage = \"{image}\"\ncommand = [\"sh\", \"-c\", \"while :; do :; done\"]\n[stop]\nsignal = \"SIGKILL\"\n"),
    );
    d.write_unit(
        &hog,
        &format!(
            "[container]\nimage = \"{image}\"\ncommand = [\"sh\", \"-c\", \"x=$(head -c 60000000 /dev/zero | tr '\\\\0' a); echo held; sleep 100000 & wait\"]\n[resources]\nmemory = \"256M\"\n[stop]\nsignal = \"SIGKILL\"\n"
        ),
    );
    d.wait_state(&busy, "running");
    d.wait_log(&hog, None, "held");
    let out = d.ctl(&["stats", "--json", &busy, &hog]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stats: Value = serde_json::from_slice(&out.stdout).unwrap();
    let of = |name: &str| stats.as_array().unwrap().iter().find(|s| s["name"] == name).cloned().unwrap();
    let (b, h) = (of(&busy), of(&hog));
    // A busy loop takes most of a core (other tests share the machine).
    assert!(b["cpu_percent"].as_f64().unwrap() > 30.0, "{b}");
    assert!(h["cpu_percent"].as_f64().unwrap() < 30.0, "{h}");
    // The hog holds its 60 MB within its limit; the loop holds little.
    assert!(h["memory_bytes"].as_u64().unwrap() > 55_000_000, "{h}");
    assert!(b["memory_bytes"].as_u64().unwrap() < 20_000_000, "{b}");
    assert_eq!(h["memory_limit_bytes"], 256 << 20);
    assert!(h["pids"].as_u64().unwrap() >= 2 && b["pids"].as_u64().unwrap() >= 1, "{stats}");
    // Bridge network: the container's interface has counters.
    assert!(h["net_rx_bytes"].is_u64() && h["net_tx_bytes"].is_u64(), "{h}");
    let table = text(&d.ctl(&["stats", "--no-stream", &hog]).stdout);
    assert!(table.starts_with("NAME") && table.contains("/ 268.4MB"), "{table}");
    let unknown = d.ctl(&["stats", "nosuchunit"]);
    assert!(text(&unknown.stderr).contains("no unit named"), "{}", text(&unknown.stderr));
}

#[test]
fn top_lists_the_containers_processes() {
    root_only!("top_lists_the_containers_processes");
    let d = Daemon::start();
    let name = common::unique_name("tp");
    d.write_unit(&name, &sleeper());
    let u = d.wait_state(&name, "running");
    let listed = || -> Value { serde_json::from_slice(&d.ctl(&["top", "--json", &name]).stdout).unwrap() };
    // The shell starts its sleep right after it runs: wait for both.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut procs = listed();
    while procs.as_array().unwrap().len() < 2 {
        assert!(Instant::now() < deadline, "{procs}");
        std::thread::sleep(Duration::from_millis(50));
        procs = listed();
    }
    let procs = procs.as_array().unwrap().clone();
    let init = procs.iter().find(|p| p["container_pid"] == 1).unwrap_or_else(|| panic!("no PID 1: {procs:?}"));
    assert_eq!(init["pid"], u["pid"], "{procs:?}");
    assert!(init["command"].as_str().unwrap().starts_with("sh -c"), "{procs:?}");
    let sleep = procs.iter().find(|p| p["command"] == "sleep 100000").unwrap_or_else(|| panic!("{procs:?}"));
    assert_ne!(sleep["container_pid"], 1);
    assert_eq!(sleep["uid"], 0);
    assert!(sleep["rss_bytes"].as_u64().unwrap() > 0, "{sleep}");
    let pid = sleep["pid"].as_u64().unwrap();
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
    assert_eq!(cmdline, b"sleep\x00100000\x00", "host PID {pid} is not the container's sleep");
    let table = text(&d.ctl(&["top", &name]).stdout);
    assert!(table.starts_with("     PID   CPID") && table.contains("sleep 100000"), "{table}");
}

#[test]
fn relative_directories_and_dot_binds_work() {
    root_only!("relative_directories_and_dot_binds_work");
    let d = Daemon::start_with(|c| {
        // The same daemon, its unit directory named relative to its
        // working directory, as a user in a checkout would.
        let args: Vec<std::ffi::OsString> = c.get_args().map(|a| a.to_os_string()).collect();
        let dir = std::path::Path::new(&args[1]).parent().unwrap().to_path_buf();
        c.current_dir(&dir);
        let mut fresh = std::process::Command::new(c.get_program());
        fresh.arg("--units").arg("units").args(&args[2..]).current_dir(&dir);
        *c = fresh;
    });
    let name = common::unique_name("rl");
    std::fs::create_dir(d.units().join("www")).unwrap();
    std::fs::write(d.units().join("www/page"), "relative-bind\n").unwrap();
    d.write_unit(&name, &format!("{}volumes = [\"./www:/www:ro\"]\n", unit("cat /www/page; sleep 100000 & wait")));
    d.wait_state(&name, "running");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !text(&d.ctl(&["logs", &name]).stdout).contains("relative-bind") {
        assert!(Instant::now() < deadline, "{}", d.log());
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn boot_lists_each_step_of_the_start_on_the_kernels_clock() {
    root_only!("boot_lists_each_step_of_the_start_on_the_kernels_clock");
    let d = Daemon::start();
    let name = common::unique_name("boot");
    d.write_unit(&name, &sleeper());
    d.wait_state(&name, "running");
    let (boot, phases) = common::daemon::wait_boot(&d.socket(), 30);
    // The test daemon has a bridge, no modules and no uplink to set up.
    let names: Vec<&str> = phases.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(names, ["started", "bridge", "control_path", "first_unit_ran", "all_units_ran"], "{boot}");
    assert!(phases.windows(2).all(|w| w[0].1 <= w[1].1), "{boot}");
    assert_eq!(boot["pid1"], false);
    // The kernel's clock: the daemon started well after the machine, and
    // before now (/proc/uptime is the same clock, in seconds).
    let uptime: f64 = std::fs::read_to_string("/proc/uptime").unwrap().split(' ').next().unwrap().parse().unwrap();
    let started = phases[0].1 / 1000.0;
    assert!(started > 1.0 && started < uptime && uptime - started < 60.0, "started {started} s, uptime {uptime} s");
    let table = text(&d.ctl(&["boot"]).stdout);
    assert_eq!(table.lines().count(), 6, "{table}");
    assert!(table.contains("first unit ran") && table.contains("all units ran"), "{table}");
}

#[test]
fn two_daemons_with_units_of_one_name_keep_to_their_own_containers() {
    root_only!("two_daemons_with_units_of_one_name_keep_to_their_own_containers");
    // Two supervisors on one host (each with its own directories), started
    // from the same cgroup, both with a unit `name`.
    let mut first = Daemon::start();
    let mut second = Daemon::start();
    let name = common::unique_name("tw");
    first.write_unit(&name, &sleeper());
    second.write_unit(&name, &sleeper());
    let kept = pid(&first.wait_state(&name, "running"));
    pid(&second.wait_state(&name, "running"));
    let (mine, theirs) = (first.cgroup_dirs(&name), second.cgroup_dirs(&name));
    assert!(mine.iter().all(|c| !theirs.contains(c)), "one cgroup for both: {mine:?}");
    // The second one stops its container, and ends: the first one's runs on.
    assert!(second.terminate(30).success(), "{}", second.log());
    assert!(alive(kept), "the other supervisor's container was killed");
    let u = first.unit(&name).unwrap();
    assert_eq!((u["state"].as_str(), pid(&u)), (Some("running"), kept), "{u}");
    assert!(mine.iter().all(|c| c.exists()), "the other supervisor removed the cgroup");
    // Its cgroups, in a directory of its own, went with it.
    let left: Vec<_> = theirs.iter().filter_map(|c| c.parent()).filter(|p| p.exists()).collect();
    assert!(left.is_empty(), "left behind: {left:?}");
    // The first one dies; `runtime cleanup` of its run directory removes
    // its container and the directory of its cgroups.
    let mut child = first.child.take().unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_supervisord"))
        .arg("--run-dir")
        .arg(first.dir.path().join("run"))
        .args(["runtime", "cleanup"])
        .output()
        .unwrap();
    assert_eq!(text(&out.stdout), format!("removed {name}\n"), "{}", text(&out.stderr));
    assert!(!alive(kept));
    let left: Vec<_> = mine.iter().filter_map(|c| c.parent()).filter(|p| p.exists()).collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}
