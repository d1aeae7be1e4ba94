//! `supervisor-runtime` honouring the parts of the runtime spec that
//! runtime-tools' validation suite found missing: hooks with the state on
//! their stdin, oomScoreAdj, rootfsPropagation, user namespaces with their
//! maps, namespaces joined by path, and the cgroup limits beyond memory,
//! CPU quota and pids. Root, on busybox bundles.

mod common;

use common::bundle::Bundle;
use common::text;

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

impl Bundle {
    /// The busybox fixture running `sh -c script` (see
    /// [`Bundle::busybox`]), with its mount points made beforehand: a
    /// user namespace's root may not make them in a root filesystem that
    /// the host's root owns.
    fn new(script: &str, edit: impl FnOnce(&mut Value, &std::path::Path)) -> Bundle {
        Bundle::busybox(script, |spec, path| {
            for d in ["shared", "proc", "dev", "sys", "tmp"] {
                std::fs::create_dir_all(path.join("rootfs").join(d)).unwrap();
            }
            edit(spec, path);
        })
    }

    fn read(&self, name: &str) -> String {
        std::fs::read_to_string(self.shared(name)).unwrap_or_default()
    }

    fn create(&self, id: &str) {
        self.ok(&["create", "--bundle", self.path.to_str().unwrap(), id]);
    }

    /// Created, started, waited for until stopped, deleted.
    fn run_to_end(&self, id: &str) {
        self.create(id);
        self.ok(&["start", id]);
        wait_until("stopped", 10, || self.state(id)["status"] == "stopped");
        self.ok(&["delete", id]);
    }
}

fn wait_until(what: &str, secs: u64, pred: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !pred() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A host hook appending `name` and its stdin (the state) to `log`.
fn hook(log: &std::path::Path, name: &str) -> Value {
    json!({"path": "/bin/sh", "args": ["sh", "-c", format!("echo {name} $(cat) >> {}", log.display())]})
}

#[test]
fn hooks_run_in_order_with_the_state_and_a_failing_prestart_leaves_nothing() {
    if !common::require_root("hooks_run_in_order_with_the_state_and_a_failing_prestart_leaves_nothing") {
        return;
    }
    // One log for all: the host's hooks and createContainer (run before
    // pivot_root, when the host's paths are still there) write its host
    // path, startContainer (run in the container's root) its /shared path.
    let mut log = PathBuf::new();
    let b = Bundle::new("echo ran > /shared/ran", |s, path| {
        log = path.join("shared/hooks.log");
        let in_container = |name: &str, log: &str| {
            let script = format!("echo {name} $(cat) >> {log}; readlink /proc/self/ns/mnt > {log}.{name}");
            json!({"path": "/bin/sh", "args": ["sh", "-c", script]})
        };
        s["annotations"] = json!({"org.example": "x"});
        s["hooks"] = json!({
            "createRuntime": [hook(&log, "createRuntime")],
            "prestart": [hook(&log, "prestart1"), hook(&log, "prestart2")],
            "createContainer": [in_container("createContainer", &log.display().to_string())],
            "startContainer": [in_container("startContainer", "/shared/hooks.log")],
            "poststart": [hook(&log, "poststart")],
            "poststop": [hook(&log, "poststop")],
        });
    });
    b.create("h1");
    let pid = b.state("h1")["pid"].clone();
    assert!(!b.shared("ran").exists(), "the program ran at create");
    assert!(!b.shared("hooks.log.startContainer").exists(), "startContainer ran at create");
    let container_mnt = std::fs::read_link(format!("/proc/{pid}/ns/mnt")).unwrap();
    let host_mnt = std::fs::read_link("/proc/self/ns/mnt").unwrap();
    b.ok(&["start", "h1"]);
    wait_until("stopped", 10, || b.state("h1")["status"] == "stopped");
    assert_eq!(b.read("ran"), "ran\n");
    b.ok(&["delete", "h1"]);
    let lines: Vec<(String, Value)> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(|l| {
            let (name, state) = l.split_once(' ').unwrap();
            (name.to_string(), serde_json::from_str(state).unwrap())
        })
        .collect();
    let names: Vec<&str> = lines.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        ["createRuntime", "prestart1", "prestart2", "createContainer", "startContainer", "poststart", "poststop"]
    );
    for (name, state) in &lines {
        assert_eq!((&state["id"], &state["bundle"]), (&json!("h1"), &json!(b.path)), "{name}: {state}");
        assert_eq!(state["annotations"]["org.example"], "x", "{name}: {state}");
        let status = match name.as_str() {
            "poststart" => "running",
            "poststop" => "stopped",
            _ => "created",
        };
        assert_eq!(state["status"], status, "{name}: {state}");
        match name.as_str() {
            "poststop" => {}
            // The container's own pid, as runc gives it: its pid namespace's.
            "createContainer" | "startContainer" => assert_eq!(state["pid"], 1, "{name}: {state}"),
            _ => assert_eq!(state["pid"], pid, "{name}: {state}"),
        }
    }
    for name in ["createContainer", "startContainer"] {
        let mnt = b.read(&format!("hooks.log.{name}"));
        assert_eq!(mnt.trim(), container_mnt.to_str().unwrap(), "{name} did not run in the container's mounts");
        assert_ne!(mnt.trim(), host_mnt.to_str().unwrap());
    }

    // A prestart hook that fails: create fails, naming it; the program
    // never runs and nothing of the container is left.
    let failing = Bundle::new("echo ran > /shared/ran", |s, _| {
        s["hooks"] = json!({"prestart": [{"path": "/bin/false", "args": ["false"]}]});
    });
    let out = failing.runtime(&["create", "--bundle", failing.path.to_str().unwrap(), "h2"]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("prestart hook /bin/false: exited with status 1"), "{}", text(&out.stderr));
    assert!(text(&failing.runtime(&["state", "h2"]).stderr).contains("does not exist"));
    assert!(!failing.shared("ran").exists());
    // So does a createContainer hook.
    let failing = Bundle::new("echo ran > /shared/ran", |s, _| {
        s["hooks"] = json!({"createContainer": [{"path": "/bin/false", "args": ["false"]}]});
    });
    let out = failing.runtime(&["create", "--bundle", failing.path.to_str().unwrap(), "h4"]);
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(stderr.contains("createContainer hook /bin/false: exited with status 1"), "{stderr}");
    assert!(text(&failing.runtime(&["state", "h4"]).stderr).contains("does not exist"));
    assert!(!failing.shared("ran").exists());
    // A poststart hook that fails is a warning: the container runs.
    let warned = Bundle::new("echo ran > /shared/ran", |s, _| {
        s["hooks"] = json!({"poststart": [{"path": "/bin/false", "args": ["false"]}]});
    });
    warned.create("h3");
    let out = warned.runtime(&["start", "h3"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("warning: poststart hook /bin/false"), "{}", text(&out.stderr));
    wait_until("the program", 10, || warned.shared("ran").exists());
    wait_until("stopped", 10, || warned.state("h3")["status"] == "stopped");
    warned.ok(&["delete", "h3"]);
}

#[test]
fn oom_score_adj_root_propagation_and_a_user_namespace() {
    if !common::require_root("oom_score_adj_root_propagation_and_a_user_namespace") {
        return;
    }
    let script = "cat /proc/self/oom_score_adj > /shared/oom; cat /proc/self/uid_map > /shared/uid_map; \
                  cat /proc/self/gid_map > /shared/gid_map; id -u > /shared/uid; \
                  grep -E '^[^ ]+ [^ ]+ [^ ]+ [^ ]+ / ' /proc/self/mountinfo > /shared/root; ls -ln /dev/null > /shared/null";
    let b = Bundle::new(script, |s, _| {
        s["process"]["oomScoreAdj"] = json!(500);
        s["linux"]["rootfsPropagation"] = json!("rshared");
        s["linux"]["namespaces"].as_array_mut().unwrap().push(json!({"type": "user"}));
        s["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
        s["linux"]["gidMappings"] = json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
        // v1 cgroup hierarchies are not ours to mount in a user namespace.
        s["mounts"].as_array_mut().unwrap().retain(|m| m["type"] != "cgroup");
    });
    b.run_to_end("u1");
    assert_eq!(b.read("oom").trim(), "500");
    assert_eq!(b.read("uid_map").split_whitespace().collect::<Vec<_>>(), ["0", "100000", "65536"]);
    assert_eq!(b.read("gid_map").split_whitespace().collect::<Vec<_>>(), ["0", "100000", "65536"]);
    assert_eq!(b.read("uid").trim(), "0");
    // The root is a shared mount of its own peer group.
    assert!(b.read("root").contains(" shared:"), "{}", b.read("root"));
    // /dev/null is the host's node, bound (it could not be made there).
    assert!(b.read("null").starts_with('c'), "{}", b.read("null"));
    // And the files it wrote belong to the mapped host uid.
    use std::os::unix::fs::MetadataExt;
    assert_eq!(std::fs::metadata(b.shared("oom")).unwrap().uid(), 100000);
}

#[test]
fn a_user_namespace_joined_by_path_owns_the_new_namespaces() {
    if !common::require_root("a_user_namespace_joined_by_path_owns_the_new_namespaces") {
        return;
    }
    let in_user_namespace = |s: &mut Value| {
        s["linux"]["namespaces"].as_array_mut().unwrap().push(json!({"type": "user"}));
        s["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": 200000, "size": 65536}]);
        s["linux"]["gidMappings"] = json!([{"containerID": 0, "hostID": 200000, "size": 65536}]);
        // v1 cgroup hierarchies are not ours to mount in a user namespace.
        s["mounts"].as_array_mut().unwrap().retain(|m| m["type"] != "cgroup");
    };
    let first = Bundle::new("echo up > /shared/up; while :; do sleep 1; done", |s, _| in_user_namespace(s));
    first.create("j1");
    first.ok(&["start", "j1"]);
    wait_until("the first container", 10, || first.shared("up").exists());
    let pid = first.state("j1")["pid"].as_i64().unwrap();
    // The second enters the first's user namespace and makes the others
    // (mount, pid, network, ...) in it, as its own.
    let script = "cat /proc/self/uid_map > /shared/uid_map; id -u > /shared/uid; hostname > /shared/hostname; \
                  mount -t tmpfs none /tmp && echo mounted > /shared/mount";
    let second = Bundle::new(script, |s, _| {
        in_user_namespace(s);
        let list = s["linux"]["namespaces"].as_array_mut().unwrap();
        list.last_mut().unwrap()["path"] = json!(format!("/proc/{pid}/ns/user"));
        s["linux"].as_object_mut().unwrap().retain(|k, _| k != "uidMappings" && k != "gidMappings");
        s["process"]["capabilities"]["bounding"].as_array_mut().unwrap().push(json!("CAP_SYS_ADMIN"));
        s["process"]["capabilities"]["effective"].as_array_mut().unwrap().push(json!("CAP_SYS_ADMIN"));
        s["process"]["capabilities"]["permitted"].as_array_mut().unwrap().push(json!("CAP_SYS_ADMIN"));
        s["hostname"] = json!("joined");
    });
    second.create("j2");
    let pid2 = second.state("j2")["pid"].as_i64().unwrap();
    let ns = |pid: i64, name: &str| std::fs::read_link(format!("/proc/{pid}/ns/{name}")).unwrap();
    assert_eq!(ns(pid2, "user"), ns(pid, "user"));
    for name in ["mnt", "pid", "uts", "net"] {
        assert_ne!(ns(pid2, name), ns(pid, name), "{name}");
    }
    second.ok(&["start", "j2"]);
    wait_until("stopped", 10, || second.state("j2")["status"] == "stopped");
    assert_eq!(second.read("uid_map").split_whitespace().collect::<Vec<_>>(), ["0", "200000", "65536"]);
    assert_eq!(second.read("uid").trim(), "0");
    assert_eq!(second.read("hostname").trim(), "joined");
    // Its mount namespace is owned by the joined user namespace, where it
    // is root with CAP_SYS_ADMIN: it may mount (it could not in a mount
    // namespace the host's user namespace owns).
    assert_eq!(second.read("mount").trim(), "mounted");
    use std::os::unix::fs::MetadataExt;
    assert_eq!(std::fs::metadata(second.shared("uid")).unwrap().uid(), 200000);
    second.ok(&["delete", "j2"]);
    first.ok(&["kill", "j1", "KILL"]);
    wait_until("stopped", 10, || first.state("j1")["status"] == "stopped");
    first.ok(&["delete", "j1"]);
}

#[test]
fn namespaces_joined_by_path_are_the_other_containers() {
    if !common::require_root("namespaces_joined_by_path_are_the_other_containers") {
        return;
    }
    let first = Bundle::new("echo up > /shared/up; while :; do sleep 1; done", |_, _| {});
    first.create("n1");
    first.ok(&["start", "n1"]);
    wait_until("the first container", 10, || first.shared("up").exists());
    let pid = first.state("n1")["pid"].as_i64().unwrap();
    let ns = |pid: i64, name: &str| std::fs::read_link(format!("/proc/{pid}/ns/{name}")).unwrap();
    // A mount namespace that still sees the host's files (a container's
    // own has pivoted into its root, where our bundle is not).
    let mut unshared =
        Command::new("unshare").args(["--mount", "--fork", "--kill-child", "sleep", "1000"]).spawn().unwrap();
    let mnt_of = |pid: u32| -> PathBuf {
        // The forked child of unshare is in the new namespace.
        let children = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
        let child = children.split_whitespace().next().map_or(pid, |c| c.parse().unwrap());
        PathBuf::from(format!("/proc/{child}/ns/mnt"))
    };
    wait_until("unshare's child", 10, || {
        std::fs::read_link(mnt_of(unshared.id())).ok() != std::fs::read_link("/proc/self/ns/mnt").ok()
    });
    let mnt = mnt_of(unshared.id());
    let second = Bundle::new("while :; do sleep 1; done", |s, _| {
        let list = s["linux"]["namespaces"].as_array_mut().unwrap();
        for n in list.iter_mut() {
            let name = match n["type"].as_str().unwrap() {
                "mount" => "mnt",
                "network" => "net",
                other => other,
            }
            .to_string();
            let name = name.as_str();
            if ["ipc", "uts", "pid", "net"].contains(&name) {
                n["path"] = json!(format!("/proc/{pid}/ns/{name}"));
            }
            if name == "mnt" {
                n["path"] = json!(mnt);
            }
        }
        s["hostname"] = Value::Null;
    });
    second.create("n2");
    let pid2 = second.state("n2")["pid"].as_i64().unwrap();
    for name in ["ipc", "uts", "pid", "net"] {
        assert_eq!(ns(pid2, name), ns(pid, name), "{name}");
    }
    assert_eq!(std::fs::read_link(format!("/proc/{pid2}/ns/mnt")).unwrap(), std::fs::read_link(&mnt).unwrap());
    // The pid namespace is the first one's: its init sees the newcomer.
    let inside = std::fs::read_to_string(format!("/proc/{pid2}/status")).unwrap();
    let nspid = inside.lines().find(|l| l.starts_with("NSpid:")).unwrap().to_string();
    assert!(nspid.split_whitespace().count() == 3 && !nspid.ends_with("\t1"), "{nspid}");
    for (b, id) in [(&second, "n2"), (&first, "n1")] {
        b.ok(&["kill", id, "KILL"]);
        wait_until("stopped", 10, || b.state(id)["status"] == "stopped");
        b.ok(&["delete", id]);
    }
    let _ = unshared.kill();
    let _ = unshared.wait();
}

#[test]
fn cpuset_shares_and_a_missing_controller_named() {
    if !common::require_root("cpuset_shares_and_a_missing_controller_named") {
        return;
    }
    if !std::path::Path::new("/sys/fs/cgroup/cpuset/cpuset.cpus").exists() {
        // The v2 path is the appliance's (tests there); this host is hybrid.
        eprintln!("cpuset_shares_and_a_missing_controller_named: no v1 cpuset hierarchy here");
        return;
    }
    let cg = common::unique_name("sr-spec");
    let b = Bundle::new("while :; do sleep 1; done", |s, _| {
        s["linux"]["cgroupsPath"] = json!(format!("/{cg}"));
        s["linux"]["resources"] = json!({
            "cpu": {"shares": 512, "cpus": "0", "mems": "0"},
            "memory": {"limit": 67108864, "reservation": 33554432, "swappiness": 10},
        });
    });
    b.create("c1");
    let rd = |c: &str, f: &str| std::fs::read_to_string(format!("/sys/fs/cgroup/{c}/{cg}/{f}")).unwrap();
    assert_eq!(rd("cpu", "cpu.shares").trim(), "512");
    assert_eq!(rd("cpuset", "cpuset.cpus").trim(), "0");
    assert_eq!(rd("memory", "memory.soft_limit_in_bytes").trim(), "33554432");
    assert_eq!(rd("memory", "memory.swappiness").trim(), "10");
    let pid = b.state("c1")["pid"].to_string();
    assert!(rd("cpuset", "cgroup.procs").lines().any(|l| l == pid), "not in its cpuset");
    b.ok(&["delete", "--force", "c1"]);
    assert!(!std::path::Path::new(&format!("/sys/fs/cgroup/cpuset/{cg}")).exists());

    // A limit whose controller this host lacks is an error naming it,
    // and leaves nothing behind.
    if !std::path::Path::new("/sys/fs/cgroup/net_cls").exists() {
        let n = Bundle::new("true", |s, _| {
            s["linux"]["cgroupsPath"] = json!(format!("/{cg}-net"));
            s["linux"]["resources"] = json!({"network": {"classID": 1048577}});
        });
        let out = n.runtime(&["create", "--bundle", n.path.to_str().unwrap(), "c2"]);
        assert!(text(&out.stderr).contains("net_cls controller is not mounted"), "{}", text(&out.stderr));
        assert!(!std::path::Path::new(&format!("/sys/fs/cgroup/memory/{cg}-net")).exists());
    }
}
