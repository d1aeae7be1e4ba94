//! Debian's containerd (1.6) on our runtime, through its runc shim v2 (the
//! path a Kubernetes node's CRI plugin takes): `ctr run --runc-binary
//! target/.../supervisor-runtime`. containerd is started by the test with
//! a config, state directories and a socket of its own, and stopped after.
//! Root.

mod common;

use common::text;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::time::{Duration, Instant};

struct Containerd {
    dir: tempfile::TempDir,
    child: Child,
    /// A namespace of the test's own: the shim keeps runc state under
    /// /run/containerd/runc/<namespace>.
    namespace: String,
}

impl Containerd {
    fn start() -> Containerd {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::write(
            d.join("config.toml"),
            format!(
                "version = 2\nroot = \"{root}\"\nstate = \"{state}\"\ndisabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n\
                 [grpc]\n  address = \"{sock}\"\n",
                root = d.join("root").display(),
                state = d.join("state").display(),
                sock = d.join("containerd.sock").display(),
            ),
        )
        .unwrap();
        let log = std::fs::File::create(d.join("containerd.log")).unwrap();
        let child = Command::new("containerd")
            .arg("--config")
            .arg(d.join("config.toml"))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start containerd");
        let c = Containerd { dir, child, namespace: common::unique_name("suptest") };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !c.ctr(&["version"]).status.success() {
            assert!(Instant::now() < deadline, "containerd did not answer: {}", c.log());
            std::thread::sleep(Duration::from_millis(50));
        }
        c
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("containerd.log")).unwrap_or_default()
    }

    fn ctr(&self, args: &[&str]) -> Output {
        let mut c = Command::new("ctr");
        c.arg("--address").arg(self.dir.path().join("containerd.sock")).args(["--namespace", &self.namespace]);
        c.args(args);
        common::output_via_files(&mut c)
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.ctr(args);
        assert!(out.status.success(), "ctr {args:?}: {}\n{}", text(&out.stderr), self.log());
        text(&out.stdout)
    }

    fn task_status(&self, id: &str) -> String {
        let list = self.ok(&["task", "ls"]);
        list.lines()
            .find(|l| l.split_whitespace().next() == Some(id))
            .and_then(|l| l.split_whitespace().nth(2))
            .unwrap_or("")
            .to_string()
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        let _ = self.ctr(&["task", "kill", "-s", "KILL", "t2"]);
        let _ = self.ctr(&["task", "delete", "-f", "t2"]);
        let _ = self.ctr(&["container", "rm", "t2"]);
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(Path::new("/run/containerd/runc").join(&self.namespace));
        let _ =
            std::fs::remove_dir_all(Path::new("/run/containerd/io.containerd.runtime.v2.task").join(&self.namespace));
    }
}

fn runtime() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_supervisor-runtime"))
}

#[test]
fn containerd_runs_tasks_on_our_runtime_through_the_runc_shim() {
    let test = "containerd_runs_tasks_on_our_runtime_through_the_runc_shim";
    if !common::require_root(test)
        || !common::require(test, common::have("containerd") && common::have("ctr"), "containerd is not installed")
        || !common::require(test, common::have("skopeo"), "skopeo is not installed")
    {
        return;
    }
    let c = Containerd::start();
    // The busybox of units.example, imported as an archive.
    let archive = c.dir.path().join("busybox.tar");
    let busybox = common::daemon::busybox();
    let copy = Command::new("skopeo")
        .args(["copy", "-q", &busybox])
        .arg(format!("oci-archive:{}:docker.io/library/busybox:latest", archive.display()))
        .output()
        .unwrap();
    assert!(copy.status.success(), "skopeo: {}", text(&copy.stderr));
    c.ok(&["image", "import", "--base-name", "docker.io/library/busybox", archive.to_str().unwrap()]);
    let image = "docker.io/library/busybox:latest";
    let rt = runtime();
    let rt = rt.to_str().unwrap();

    // run --rm: output and exit code through the shim.
    assert_eq!(c.ok(&["run", "--rm", "--runc-binary", rt, image, "t1", "echo", "hi"]), "hi\n");
    let out = c.ctr(&["run", "--rm", "--runc-binary", rt, image, "t1", "sh", "-c", "exit 3"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));

    // A detached task: exec, ps, pause/resume, kill, delete.
    c.ok(&[
        "run",
        "-d",
        "--runc-binary",
        rt,
        image,
        "t2",
        "sh",
        "-c",
        "trap 'exit 0' TERM; while :; do sleep 0.1; done",
    ]);
    assert_eq!(c.task_status("t2"), "RUNNING");
    let out = c.ctr(&["task", "exec", "--exec-id", "e1", "t2", "sh", "-c", "echo in-exec; exit 2"]);
    assert_eq!((out.status.code(), text(&out.stdout).as_str()), (Some(2), "in-exec\n"), "{}", text(&out.stderr));
    // exec -t: the shim hands us its console socket; ctr needs a terminal
    // of its own (script(1) gives it one).
    let line = format!(
        "ctr --address {} --namespace {} task exec -t --exec-id e2 t2 sh -c 'tty; echo typed-$((2+3)); exit 5'",
        c.dir.path().join("containerd.sock").display(),
        c.namespace
    );
    let (code, shown) = common::under_script(&line, &[]);
    assert_eq!(code, Some(5), "{shown}\n{}", c.log());
    // ctr writes the terminal's CR LF through its own terminal's newline
    // translation (CR CR LF, with runc too): the lines are what counts.
    assert!(shown.replace('\r', "").contains("/dev/pts/0\ntyped-5\n"), "{shown:?}");
    // metrics: the shim reads the task's cgroup itself (with any runtime,
    // only where every v1 hierarchy a process is in is mounted).
    if every_v1_hierarchy_is_mounted() {
        let metrics = c.ok(&["task", "metrics", "t2"]);
        assert!(metrics.contains("memory.usage_in_bytes") || metrics.contains("memory.usage"), "{metrics}");
    } else {
        eprintln!(
            "not checked: ctr task metrics (a cgroup v1 hierarchy of ours is not mounted: the shim cannot load it)"
        );
    }
    let ps = c.ok(&["task", "ps", "t2"]);
    assert!(ps.lines().count() >= 3, "the shell and its sleep: {ps}");
    c.ok(&["task", "pause", "t2"]);
    assert_eq!(c.task_status("t2"), "PAUSED");
    c.ok(&["task", "resume", "t2"]);
    assert_eq!(c.task_status("t2"), "RUNNING");
    c.ok(&["task", "kill", "t2"]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while c.task_status("t2") != "STOPPED" {
        assert!(Instant::now() < deadline, "SIGTERM did not stop the task");
        std::thread::sleep(Duration::from_millis(20));
    }
    c.ok(&["task", "delete", "t2"]);
    c.ok(&["container", "rm", "t2"]);
    // Nothing of ours is left in the shim's runtime root.
    let left: Vec<_> = std::fs::read_dir(Path::new("/run/containerd/runc").join(&c.namespace))
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "left in the runtime root: {left:?}");
}

/// Whether each v1 hierarchy in /proc/self/cgroup has a mount (containerd's
/// cgroups library, in the shim, refuses to load a cgroup otherwise).
fn every_v1_hierarchy_is_mounted() -> bool {
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let options: Vec<&str> = mounts
        .lines()
        .filter_map(|l| l.split_once(" - ").map(|(_, r)| r))
        .filter(|r| r.starts_with("cgroup "))
        .filter_map(|r| r.split(' ').nth(2))
        .collect();
    let own = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    own.lines()
        .filter_map(|l| l.split(':').nth(1))
        .filter(|c| !c.is_empty())
        .all(|controllers| controllers.split(',').all(|c| options.iter().any(|o| o.split(',').any(|x| x == c))))
}
