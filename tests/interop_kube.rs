//! `supervisorctl generate kube`, checked by the tools its output is for:
//! the YAML of the example units and of a richer set validates (strict)
//! against a current Kubernetes schema with `kubernetes-validate`, and
//! the example units exported as Pods run under `podman kube play` and
//! answer as under supervisord (web on its port, db answering PING, the
//! worker counting jobs in db).

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::text;

fn ctl(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_supervisorctl")).args(args).output().unwrap()
}

/// `kubernetes-validate` from the tests' virtual environment
/// (`SUPERVISOR_TEST_VENV`, else /opt/supervisor-test-venv; made by
/// scripts/install-deps.sh). A missing tool is a failure, never a skip.
fn kubernetes_validate() -> PathBuf {
    let venv =
        std::env::var_os("SUPERVISOR_TEST_VENV").map_or(PathBuf::from("/opt/supervisor-test-venv"), PathBuf::from);
    let tool = venv.join("bin/kubernetes-validate");
    assert!(
        tool.exists(),
        "{} is missing: run scripts/install-deps.sh (it installs kubernetes-validate from PyPI into {})",
        tool.display(),
        venv.display()
    );
    tool
}

/// Validates `yaml` strictly (unknown fields are errors) against the
/// tool's newest Kubernetes schema; every object must pass.
#[track_caller]
fn validate(yaml: &str, dir: &Path) {
    let file = dir.join("out.yaml");
    fs::write(&file, yaml).unwrap();
    let out = Command::new(kubernetes_validate()).arg("--strict").arg(&file).output().unwrap();
    let report = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert!(out.status.success() && !report.contains("ERROR"), "kubernetes-validate:\n{report}\nYAML:\n{yaml}");
    assert!(report.contains("passed"), "{report}");
}

/// A copy of the example units (their files only) in a fresh directory.
fn example_units(into: &Path) -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("units.example");
    let units = into.join("units");
    fs::create_dir_all(units.join("www")).unwrap();
    for name in ["db.toml", "web.toml", "worker.toml", "www/index.html"] {
        fs::copy(root.join(name), units.join(name)).unwrap();
    }
    units
}

#[test]
fn the_examples_validate_as_pods_and_as_deployments() {
    let tmp = tempfile::tempdir().unwrap();
    let units = example_units(tmp.path());
    let units = units.to_str().unwrap();
    for kind in ["pod", "deployment"] {
        let out = ctl(&["--store", "/var/lib/supervisor", "generate", "kube", "--kind", kind, units]);
        // The local images, db's pids and the worker's ordering and
        // backoff are not carried: exit 2, each named on stderr.
        assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
        let stderr = text(&out.stderr);
        for line in ["db.toml: [resources] pids: not carried", "worker.toml: [unit] requires: not carried"] {
            assert!(stderr.contains(line), "{line:?} missing from:\n{stderr}");
        }
        let yaml = text(&out.stdout);
        assert!(yaml.contains("db.supervisor.io/pids: \"256\""), "{yaml}");
        validate(&yaml, tmp.path());
    }
}

/// Units that use most keys, each kind of probe, a unit in another's
/// network, host networking, named volumes shared by two units.
const RICH: &[(&str, &str)] = &[
    (
        "app.toml",
        r#"[unit]
description = "An application with a sidecar"
after = ["cache"]
[container]
image = "ghcr.io/org/app:2.1"
pull = "always"
entrypoint = ["/app"]
command = ["serve", "--port", "8000", "--verbose", "yes"]
env = { MODE = "on", COUNT = 3 }
env_file = "app.env"
workdir = "/srv"
user = "1000:1000"
read_only = true
ports = ["8000:8000", "127.0.0.1:9090:9090", "5000-5001:5000-5001/udp", "7000"]
volumes = ["shared_data:/data", "/etc/ssl/certs:/etc/ssl/certs:ro"]
tmpfs = ["/tmp:size=64M,mode=1777", "/run"]
cap_drop = ["ALL"]
cap_add = ["NET_BIND_SERVICE"]
sysctls = { "net.ipv4.ip_unprivileged_port_start" = 0 }
ulimits = { nofile = 4096 }
[resources]
cpus = 1.5
memory = "1.5G"
[restart]
policy = "on-failure"
[stop]
signal = "SIGINT"
timeout = "45s"
[health]
http = "http://localhost:8000/healthz"
interval = "15s"
timeout = "3s"
retries = 5
start_period = "30s"
[logs]
max_size = "50M"
[update]
strategy = "start-first"
min_healthy = "10s"
"#,
    ),
    (
        "sidecar.toml",
        r#"[container]
image = "busybox:1.36"
command = ["sh", "-c", "while true; do wget -q -O- http://localhost:8000/metrics; sleep 60; done"]
network = "unit:app"
volumes = ["shared_data:/data:ro"]
[health]
exec = ["test", "-e", "/data/ready"]
on_unhealthy = "none"
"#,
    ),
    (
        "cache.toml",
        r#"[container]
image = "redis:7@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
command = ["redis-server", "--save", ""]
[health]
tcp = 6379
on_unhealthy = "stop"
"#,
    ),
    (
        "probe.toml",
        r#"[container]
image = "oci:images/probe"
network = "host"
privileged = true
no_new_privileges = false
devices = ["/dev/fuse"]
notify = true
[restart]
policy = "no"
"#,
    ),
    ("9lives.toml", "[container]\nimage = \"nginx\"\nports = [\"8080:80\"]\n"),
];

#[test]
fn a_richer_set_validates_as_pods_and_as_deployments() {
    let tmp = tempfile::tempdir().unwrap();
    let units = tmp.path().join("units");
    fs::create_dir(&units).unwrap();
    for (name, body) in RICH {
        fs::write(units.join(name), body).unwrap();
    }
    fs::write(units.join("app.env"), "TOKEN=from-file\nMODE=off\n").unwrap();
    let units = units.to_str().unwrap();
    let check = ctl(&["validate", units]);
    assert_eq!(check.status.code(), Some(0), "{}{}", text(&check.stdout), text(&check.stderr));
    for kind in ["pod", "deployment"] {
        let out = ctl(&["--store", "/nonexistent", "generate", "kube", "--kind", kind, units]);
        assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
        let yaml = text(&out.stdout);
        // The sidecar is a container of app's Pod; env_file is inlined,
        // the unit's env over it; `yes` stays a string.
        assert_eq!(
            yaml.matches("\n  - name: sidecar\n").count() + yaml.matches("\n      - name: sidecar\n").count(),
            1
        );
        assert!(yaml.contains("name: TOKEN") && yaml.contains("value: from-file"), "{yaml}");
        assert!(yaml.contains("- \"yes\""), "{yaml}");
        assert!(!yaml.contains("value: off"), "{yaml}");
        validate(&yaml, tmp.path());
    }
    // Written atomically to --out, the same YAML.
    let file = tmp.path().join("k8s.yaml");
    let out = ctl(&["generate", "kube", "--out", file.to_str().unwrap(), units]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(out.stdout.is_empty());
    assert!(fs::read_to_string(&file).unwrap().contains("kind: Pod"));
    assert_eq!(fs::read_dir(tmp.path()).unwrap().count(), 3, "no temporary file left");
}

#[test]
fn bad_input_is_an_error_and_writes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let units = tmp.path().join("units");
    fs::create_dir(&units).unwrap();
    fs::write(units.join("a.toml"), "[container]\nimage = \"x\"\nmemroy = 1\n").unwrap();
    let file = tmp.path().join("k8s.yaml");
    let out = ctl(&["generate", "kube", "--out", file.to_str().unwrap(), units.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("a.toml:3:1"), "{}", text(&out.stderr));
    assert!(!file.exists());
    let out = ctl(&["generate", "kube", "--image", "nope", units.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
}

#[test]
fn a_unit_that_loses_nothing_exits_zero() {
    let tmp = tempfile::tempdir().unwrap();
    let units = tmp.path().join("units");
    fs::create_dir(&units).unwrap();
    fs::write(units.join("web.toml"), "[container]\nimage = \"nginx:1.27\"\nports = [\"8080:80\"]\n").unwrap();
    let out = ctl(&["generate", "kube", units.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stderr), "");
    validate(&text(&out.stdout), tmp.path());
}

/// A podman with storage, runtime state, network configs and events of
/// its own under a temporary directory; its Pods, network and what CNI
/// left on the host (the network's bridge, its IPAM and dnsname state,
/// nft tables that were not there before) go when it is dropped.
struct Podman {
    dir: PathBuf,
    network: String,
    tables_before: String,
}

impl Podman {
    fn new(dir: &Path, network: &str) -> Podman {
        let runtime = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/kube/clamp-runtime");
        let conf = format!(
            "[containers]\ndefault_ulimits = [\"nofile=1024:1024\"]\n\
             [engine]\ncgroup_manager = \"cgroupfs\"\nevents_logger = \"file\"\nevents_logfile_path = \"{d}/events.log\"\n\
             runtime = \"clamp\"\n[engine.runtimes]\nclamp = [\"{r}\"]\n\
             [network]\nnetwork_config_dir = \"{d}/cni\"\n",
            d = dir.display(),
            r = runtime.display()
        );
        fs::create_dir_all(dir.join("cni")).unwrap();
        fs::write(dir.join("containers.conf"), conf).unwrap();
        Podman { dir: dir.to_path_buf(), network: network.to_string(), tables_before: nft_tables() }
    }

    fn cmd(&self, args: &[&str]) -> Output {
        let d = &self.dir;
        Command::new("podman")
            .env("CONTAINERS_CONF", d.join("containers.conf"))
            .arg("--root")
            .arg(d.join("root"))
            .arg("--runroot")
            .arg(d.join("runroot"))
            .arg("--tmpdir")
            .arg(d.join("tmp"))
            .arg("--volumepath")
            .arg(d.join("volumes"))
            .args(["--storage-driver", "vfs"])
            .args(args)
            .output()
            .expect("podman is missing: run scripts/install-deps.sh")
    }

    #[track_caller]
    fn ok(&self, args: &[&str]) -> String {
        let out = self.cmd(args);
        assert!(out.status.success(), "podman {args:?}: {}{}", text(&out.stdout), text(&out.stderr));
        text(&out.stdout)
    }

    /// Renames the bridge of the test's network (in its CNI config) to
    /// `name`, a name no one else uses.
    fn own_bridge(&self, name: &str) {
        let file = self.dir.join("cni").join(format!("{}.conflist", self.network));
        let mut v: serde_json::Value = serde_json::from_str(&fs::read_to_string(&file).unwrap()).unwrap();
        for p in v["plugins"].as_array_mut().unwrap() {
            if p.get("bridge").is_some() {
                p["bridge"] = name.into();
            }
        }
        fs::write(&file, serde_json::to_string_pretty(&v).unwrap()).unwrap();
        assert_eq!(self.bridge().as_deref(), Some(name));
    }

    /// The bridge CNI made for the test's network.
    fn bridge(&self) -> Option<String> {
        let conf = fs::read_to_string(self.dir.join("cni").join(format!("{}.conflist", self.network))).ok()?;
        let v: serde_json::Value = serde_json::from_str(&conf).ok()?;
        v["plugins"].as_array()?.iter().find_map(|p| p["bridge"].as_str().map(String::from))
    }
}

/// crun 1.8 (the runtime under `clamp-runtime`) refuses to run on a
/// hybrid cgroup host while a controller is left on the cgroup2 mount:
/// hugetlb, on a fresh machine of this kind, which mounts every other one
/// as v1. For the test, hugetlb gets a v1 hierarchy (as `bench/lib.sh`'s
/// `crun_on_hybrid` does), unmounted again at the end, which puts it back.
struct HugetlbOnV1 {
    mount: Option<PathBuf>,
}

impl HugetlbOnV1 {
    fn for_crun() -> HugetlbOnV1 {
        let on_v2 = fs::read_to_string("/sys/fs/cgroup/unified/cgroup.controllers").unwrap_or_default();
        if !on_v2.split_whitespace().any(|c| c == "hugetlb") {
            return HugetlbOnV1 { mount: None };
        }
        let mount = PathBuf::from("/sys/fs/cgroup/hugetlb");
        fs::create_dir_all(&mount).unwrap();
        let out = Command::new("mount").args(["-t", "cgroup", "-o", "hugetlb", "cgroup"]).arg(&mount).output().unwrap();
        assert!(out.status.success(), "cannot give hugetlb a v1 hierarchy for crun: {}", text(&out.stderr));
        HugetlbOnV1 { mount: Some(mount) }
    }
}

impl Drop for HugetlbOnV1 {
    fn drop(&mut self) {
        if let Some(m) = &self.mount {
            // The cgroups podman's Pods left (libpod_parent), deepest
            // first: a hierarchy unmounted with cgroups in it lives on,
            // unseen, and keeps hugetlb from cgroup2.
            let mut dirs: Vec<PathBuf> = Vec::new();
            let mut todo = vec![m.clone()];
            while let Some(d) = todo.pop() {
                for e in fs::read_dir(&d).into_iter().flatten().flatten() {
                    if e.file_type().is_ok_and(|t| t.is_dir()) {
                        todo.push(e.path());
                        dirs.push(e.path());
                    }
                }
            }
            for d in dirs.iter().rev() {
                let _ = fs::remove_dir(d);
            }
            // Until the kernel has freed them (they are counted until
            // then): unmounted earlier, the hierarchy would stay.
            let deadline = Instant::now() + Duration::from_secs(10);
            while hugetlb_cgroups() > 1 && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            let out = Command::new("umount").arg(m).output().unwrap();
            if out.status.success() {
                let _ = fs::remove_dir(m);
            } else {
                eprintln!("hugetlb stays on its v1 hierarchy at {}: {}", m.display(), text(&out.stderr));
            }
        }
    }
}

/// How many cgroups hugetlb's hierarchy has (`/proc/cgroups`).
fn hugetlb_cgroups() -> u64 {
    let table = fs::read_to_string("/proc/cgroups").unwrap_or_default();
    table
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.first() == Some(&"hugetlb")).then(|| f.get(2)?.parse().ok()).flatten()
        })
        .unwrap_or(0)
}

fn nft_tables() -> String {
    Command::new("nft").args(["list", "tables"]).output().map(|o| text(&o.stdout)).unwrap_or_default()
}

impl Drop for Podman {
    fn drop(&mut self) {
        let bridge = self.bridge();
        let _ = self.cmd(&["pod", "rm", "--all", "--force"]);
        let _ = self.cmd(&["rm", "--all", "--force"]);
        let _ = self.cmd(&["network", "rm", "--force", &self.network]);
        let _ = self.cmd(&["rmi", "--all", "--force"]);
        // Only the test's own bridge (see `own_bridge`) is removed.
        if let Some(bridge) = bridge.filter(|b| !b.starts_with("cni-podman")) {
            let _ = Command::new("ip").args(["link", "delete", &bridge]).output();
        }
        let _ = fs::remove_dir_all(Path::new("/var/lib/cni/networks").join(&self.network));
        let _ = fs::remove_dir_all(Path::new("/run/containers/cni/dnsname").join(&self.network));
        for table in ["ip filter", "ip nat", "ip6 filter", "ip6 nat"] {
            let line = format!("table {table}\n");
            if !self.tables_before.contains(&line) && nft_tables().contains(&line) {
                let mut args = vec!["delete", "table"];
                args.extend(table.split(' '));
                let _ = Command::new("nft").args(args).output();
            }
        }
        // Whatever podman left mounted under its directories (vfs needs
        // none; the Pods' /dev/shm mounts), so the directory can go.
        let mounts = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let prefix = self.dir.display().to_string();
        for m in mounts.lines().filter_map(|l| l.split(' ').nth(4)).filter(|m| m.starts_with(&prefix)) {
            let _ = Command::new("umount").args(["-l", m]).output();
        }
    }
}

/// Polls `check` until it is true, for at most `secs`, then says `what`.
#[track_caller]
fn eventually(secs: u64, what: &str, mut check: impl FnMut() -> Result<(), String>) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        match check() {
            Ok(()) => return,
            Err(e) if Instant::now() > deadline => panic!("{what} within {secs}s: {e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(250)),
        }
    }
}

#[test]
fn the_examples_run_under_podman_kube_play() {
    root_only!("the_examples_run_under_podman_kube_play");
    // Port 8080 on the host and podman's CNI state are host-wide.
    let _lock = common::host_lock();
    let images = common::example_redis().parent().unwrap().to_path_buf();
    let tmp = tempfile::tempdir().unwrap();
    let units = example_units(tmp.path());
    // db's volume as supervisord keeps it: seeded from the image's /data,
    // which belongs to the image's user redis (999).
    let state = tmp.path().join("state");
    let data = state.join("volumes/db-data");
    fs::create_dir_all(&data).unwrap();
    std::os::unix::fs::chown(&data, Some(999), Some(999)).unwrap();
    // Before podman, so that it is given back after podman's cleanup.
    let _hugetlb = HugetlbOnV1::for_crun();
    let podman = Podman::new(&tmp.path().join("podman"), &common::unique_name("kube"));
    // The example's local images, under the names the YAML gives them.
    for name in ["busybox", "redis"] {
        let pulled = podman.ok(&["pull", "--quiet", &format!("oci:{}:latest", images.join(name).display())]);
        podman.ok(&["tag", pulled.trim(), &format!("localhost/{name}:latest")]);
    }
    let out = ctl(&["--store", state.to_str().unwrap(), "generate", "kube", units.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let yaml = tmp.path().join("pods.yaml");
    fs::write(&yaml, &out.stdout).unwrap();
    // Units reach each other by name: a network with DNS (dnsname).
    // A /24 no test daemon uses at the same time.
    let config = common::daemon::network_config();
    let subnet = config.lines().find_map(|l| l.strip_prefix("subnet = ")).unwrap().trim_matches('"').to_string();
    podman.ok(&["network", "create", "--subnet", &subnet, &podman.network]);
    // A bridge of the test's own: podman, seeing only this test's network
    // directory, names it cni-podman0, which may be another's.
    podman.own_bridge(&common::unique_name("kb"));
    podman.ok(&["kube", "play", "--network", &podman.network, yaml.to_str().unwrap()]);
    eventually(60, "web answers on its port 8080", || {
        let body = common::http::get("127.0.0.1:8080".parse().unwrap())?;
        body.contains("Hello from a container").then_some(()).ok_or(body)
    });
    eventually(60, "db answers PING", || {
        let out = podman.cmd(&["exec", "db-db", "redis-cli", "ping"]);
        (text(&out.stdout).trim() == "PONG").then_some(()).ok_or(format!("{}{}", text(&out.stdout), text(&out.stderr)))
    });
    // The worker counts jobs in db, by its name: INCR answers :1, :2, ...
    eventually(60, "the worker reaches db", || {
        let logs = podman.ok(&["logs", "worker-worker"]);
        logs.lines().any(|l| l.trim() == ":2").then_some(()).ok_or(logs)
    });
    let jobs = podman.ok(&["exec", "db-db", "redis-cli", "get", "jobs"]);
    assert!(jobs.trim().parse::<u32>().is_ok_and(|n| n >= 2), "jobs: {jobs}");
    podman.ok(&["kube", "down", yaml.to_str().unwrap()]);
}

#[test]
fn units_of_the_running_daemon_are_read_as_it_reads_them() {
    root_only!("units_of_the_running_daemon_are_read_as_it_reads_them");
    let d = common::daemon::Daemon::start();
    let image = common::daemon::busybox();
    let (main, side) = (common::unique_name("km"), common::unique_name("ks"));
    fs::write(d.units().join("main.env"), "FROM_FILE=yes\n").unwrap();
    d.write_unit(
        &main,
        &format!(
            "[container]\nimage = {image:?}\ncommand = [\"sleep\", \"100000\"]\nenv_file = \"main.env\"\n\
             volumes = [\"./data:/data\"]\n[stop]\nsignal = \"SIGKILL\"\n"
        ),
    );
    d.write_unit(
        &side,
        &format!("[container]\nimage = {image:?}\ncommand = [\"sleep\", \"100000\"]\nnetwork = \"unit:{main}\"\n"),
    );
    d.wait_state(&main, "running");
    // The side car alone brings the unit whose network it joins: one Pod.
    let socket = d.socket();
    let from_daemon = common::daemon::ctl(&socket, &["generate", "kube", &side]);
    assert_eq!(from_daemon.status.code(), Some(2), "{}", text(&from_daemon.stderr));
    let offline = ctl(&["generate", "kube", d.units().to_str().unwrap()]);
    assert_eq!(offline.status.code(), Some(2), "{}", text(&offline.stderr));
    let yaml = text(&from_daemon.stdout);
    assert_eq!(yaml, text(&offline.stdout));
    assert_eq!(yaml.matches("kind: Pod").count(), 1, "{yaml}");
    assert!(yaml.contains(&format!("- name: {side}")) && yaml.contains("value: \"yes\""), "{yaml}");
    assert!(yaml.contains(&format!("path: {}/data", d.units().display())), "{yaml}");
    let tmp = tempfile::tempdir().unwrap();
    validate(&yaml, tmp.path());
    let unknown = common::daemon::ctl(&socket, &["generate", "kube", "nosuchunit"]);
    assert_eq!(unknown.status.code(), Some(1), "{}", text(&unknown.stderr));
}

/// The check above can fail: what a cluster would refuse, the validator
/// refuses too (a YAML 1.1 boolean where a string belongs, an unknown
/// field in strict mode).
#[test]
fn the_validator_refuses_what_a_cluster_would() {
    let tmp = tempfile::tempdir().unwrap();
    let pod = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: a\nspec:\n  containers:\n  - name: a\n    image: x\n";
    for bad in [format!("{pod}    args:\n    - no\n"), format!("{pod}    stopSignals: TERM\n")] {
        let file = tmp.path().join("bad.yaml");
        fs::write(&file, &bad).unwrap();
        let out = Command::new(kubernetes_validate()).arg("--strict").arg(&file).output().unwrap();
        assert!(!out.status.success(), "accepted:\n{bad}\n{}", text(&out.stdout));
    }
}
