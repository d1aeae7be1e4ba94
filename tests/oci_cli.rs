//! `supervisor-runtime`, driven as an engine drives runc: create (the
//! program held until start), start, state, ps, exec, pause and resume,
//! kill, delete; the documents (`--version`, `spec`, `features`); and the
//! refusals an engine must be able to read. Root, on busybox bundles.

mod common;

use common::bundle::Bundle;
use common::text;

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

impl Bundle {
    /// The busybox fixture running `sh -c script` (see [`Bundle::busybox`]).
    fn new(script: &str, edit: impl FnOnce(&mut Value)) -> Bundle {
        Bundle::busybox(script, |s, _| edit(s))
    }
}

fn wait_until(what: &str, secs: u64, pred: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !pred() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn create_holds_the_program_until_start_and_delete_leaves_nothing() {
    if !common::require_root("create_holds_the_program_until_start_and_delete_leaves_nothing") {
        return;
    }
    let b = Bundle::new(
        "echo started > /shared/started; trap 'echo term > /shared/term; exit 7' TERM; while :; do sleep 0.05; done",
        |s| {
            s["linux"]["cgroupsPath"] = json!("/supervisor-tests-oci/created");
        },
    );
    let pid_file = b.dir.path().join("pid");
    b.ok(&["create", "--bundle", b.path.to_str().unwrap(), "--pid-file", pid_file.to_str().unwrap(), "c1"]);
    let state = b.state("c1");
    assert_eq!(state["status"], "created", "{state}");
    let pid: i64 = std::fs::read_to_string(&pid_file).unwrap().parse().unwrap();
    assert_eq!(state["pid"], pid);
    assert_eq!(state["bundle"], json!(b.path));
    assert!(Path::new(&format!("/proc/{pid}")).exists());
    assert!(!b.shared("started").exists(), "the program ran before start");
    // Its cgroup is where the spec put it, with its first process in it.
    let procs = std::fs::read_to_string("/sys/fs/cgroup/pids/supervisor-tests-oci/created/cgroup.procs")
        .or_else(|_| std::fs::read_to_string("/sys/fs/cgroup/supervisor-tests-oci/created/cgroup.procs"))
        .unwrap();
    assert!(procs.lines().any(|l| l == pid.to_string()), "{procs}");
    // A second create of the same ID is refused, and the first one stays.
    let again = b.runtime(&["create", "--bundle", b.path.to_str().unwrap(), "c1"]);
    assert!(!again.status.success());
    assert!(text(&again.stderr).contains("already exists"), "{}", text(&again.stderr));
    assert_eq!(b.state("c1")["status"], "created");

    b.ok(&["start", "c1"]);
    wait_until("the program", 10, || b.shared("started").exists());
    assert_eq!(b.state("c1")["status"], "running");
    let list = b.ok(&["list", "--format", "json"]);
    let list: Value = serde_json::from_str(&list).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(list[0]["id"], "c1");
    let ps: Vec<i64> = serde_json::from_str(&b.ok(&["ps", "--format", "json", "c1"])).unwrap();
    assert!(ps.contains(&pid) && ps.len() >= 2, "{ps:?}");
    // start twice: refused, saying why.
    let twice = b.runtime(&["start", "c1"]);
    assert!(text(&twice.stderr).contains("is running"), "{}", text(&twice.stderr));
    // delete without --force: refused while it runs.
    let busy = b.runtime(&["delete", "c1"]);
    assert!(!busy.status.success());
    assert_eq!(b.state("c1")["status"], "running");

    b.ok(&["kill", "c1", "TERM"]);
    wait_until("the TERM trap", 10, || b.shared("term").exists());
    // The create process is gone: our test process is not its parent, so
    // the stopped container is a zombie until init reaps it, and counts as
    // stopped either way.
    wait_until("stopped", 10, || b.state("c1")["status"] == "stopped");
    assert_eq!(b.state("c1")["pid"], 0);
    b.ok(&["delete", "c1"]);
    assert!(!b.root().join("c1").exists());
    assert!(!Path::new("/sys/fs/cgroup/pids/supervisor-tests-oci/created").exists());
    let gone = b.runtime(&["state", "c1"]);
    assert!(text(&gone.stderr).contains("does not exist"), "{}", text(&gone.stderr));
    for c in ["memory", "pids", "cpu", "cpuacct", "freezer", "devices", ""] {
        let _ = std::fs::remove_dir(Path::new("/sys/fs/cgroup").join(c).join("supervisor-tests-oci"));
    }
}

#[test]
fn exec_pause_resume_and_forced_delete() {
    if !common::require_root("exec_pause_resume_and_forced_delete") {
        return;
    }
    let b = Bundle::new("i=0; while :; do i=$((i+1)); echo $i > /shared/count; sleep 0.02; done", |_| {});
    b.ok(&["create", "--bundle", b.path.to_str().unwrap(), "c2"]);
    b.ok(&["start", "c2"]);
    wait_until("the counter", 10, || b.shared("count").exists());

    // exec, the engine's way: a process description, a pid file, detached.
    let process = json!({
        "args": ["/bin/sh", "-c", "echo $GREETING $(id -u):$(id -g) $(pwd) > /shared/exec; exit 3"],
        "env": ["PATH=/bin", "GREETING=hello"],
        "cwd": "/tmp",
        "user": { "uid": 1000, "gid": 1000 },
    });
    let process_file = b.dir.path().join("process.json");
    std::fs::write(&process_file, process.to_string()).unwrap();
    let exec_pid = b.dir.path().join("exec.pid");
    let out = b.runtime(&[
        "exec",
        "--process",
        process_file.to_str().unwrap(),
        "--pid-file",
        exec_pid.to_str().unwrap(),
        "c2",
    ]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    assert_eq!(std::fs::read_to_string(b.shared("exec")).unwrap(), "hello 1000:1000 /tmp\n");
    assert!(std::fs::read_to_string(&exec_pid).unwrap().parse::<i32>().unwrap() > 0);
    // And a command line, with the container's environment.
    let out = b.runtime(&["exec", "c2", "/bin/sh", "-c", "echo $PATH"]);
    assert_eq!(text(&out.stdout), "/bin\n", "{}", text(&out.stderr));

    let count = || std::fs::read_to_string(b.shared("count")).unwrap_or_default();
    b.ok(&["pause", "c2"]);
    assert_eq!(b.state("c2")["status"], "paused");
    let frozen = count();
    // Not a synchronization: a frozen counter must not move in this time.
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(count(), frozen, "the counter moved while paused");
    let refused = b.runtime(&["exec", "c2", "/bin/true"]);
    assert!(text(&refused.stderr).contains("is paused"), "{}", text(&refused.stderr));
    b.ok(&["resume", "c2"]);
    assert_eq!(b.state("c2")["status"], "running");
    wait_until("the counter to move again", 10, || count() != frozen);

    // A paused container is killed by a forced delete too.
    b.ok(&["pause", "c2"]);
    let pid = b.state("c2")["pid"].as_i64().unwrap();
    b.ok(&["delete", "--force", "c2"]);
    wait_until("its first process to end", 10, || {
        std::fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |s| s.contains(") Z "))
    });
    assert!(!b.root().join("c2").exists());
}

#[test]
fn documents_and_refusals() {
    if !common::require_root("documents_and_refusals") {
        return;
    }
    let b = Bundle::new("true", |_| {});
    let version = b.ok(&["--version"]);
    let lines: Vec<&str> = version.lines().collect();
    assert!(lines[0].starts_with("supervisor-runtime version "), "{version}");
    assert!(lines[1].starts_with("spec: 1."), "{version}");
    let features: Value = serde_json::from_str(&b.ok(&["features"])).unwrap();
    assert_eq!(features["ociVersionMax"], "1.3.0");
    assert_eq!(features["linux"]["cgroup"]["systemd"], false);
    let spec_dir = tempfile::tempdir().unwrap();
    b.ok(&["spec", "--bundle", spec_dir.path().to_str().unwrap()]);
    // What `spec` writes is a spec crun reads (checked by crun itself).
    let spec: Value = serde_json::from_slice(&std::fs::read(spec_dir.path().join("config.json")).unwrap()).unwrap();
    assert_eq!(spec["root"]["path"], "rootfs");
    let again = b.runtime(&["spec", "--bundle", spec_dir.path().to_str().unwrap()]);
    assert!(!again.status.success(), "spec overwrote config.json");

    let refused = |args: &[&str], needle: &str| {
        let out = b.runtime(args);
        assert!(!out.status.success(), "{args:?} succeeded");
        let err = text(&out.stderr);
        assert!(err.contains(needle), "{args:?}: {err}");
    };
    let bundle = b.path.to_str().unwrap();
    refused(&["--systemd-cgroup", "create", "--bundle", bundle, "x"], "systemd cgroup driver");
    refused(&["create", "--bundle", bundle, "../x"], "container id");
    refused(&["create", "--bundle", bundle, "--console-socket", "/tmp/s", "x"], "console-socket");
    refused(&["state", "nosuch"], "does not exist");
    refused(&["kill", "nosuch", "KILL"], "does not exist");
    let log = b.dir.path().join("log.json");
    let out = b.runtime(&["--log", log.to_str().unwrap(), "--log-format", "json", "start", "nosuch"]);
    assert!(!out.status.success());
    let line: Value = serde_json::from_str(std::fs::read_to_string(&log).unwrap().lines().last().unwrap()).unwrap();
    assert_eq!(line["level"], "error");
    assert!(line["msg"].as_str().unwrap().contains("nosuch"), "{line}");
    // A systemd-style cgroupsPath is refused before anything is made.
    let systemd = Bundle::new("true", |s| s["linux"]["cgroupsPath"] = json!("system.slice:x:y"));
    let out = systemd.runtime(&["create", "--bundle", systemd.path.to_str().unwrap(), "s1"]);
    assert!(text(&out.stderr).contains("systemd cgroup driver"), "{}", text(&out.stderr));
    assert!(!systemd.root().join("s1").exists());
    // `run`: create, start, wait, delete; its exit code is the container's.
    let run = Bundle::new("exit 5", |_| {});
    let out = run.runtime(&["run", "--bundle", run.path.to_str().unwrap(), "r1"]);
    assert_eq!(out.status.code(), Some(5), "{}", text(&out.stderr));
    assert!(!run.root().join("r1").exists());
}
