//! Debian's podman (4.3, with conmon and its CNI network) on our runtime:
//! `podman --runtime target/.../supervisor-runtime`. Its own storage in a
//! temporary directory, a containers.conf of the test's (cgroupfs, file
//! events, limits this host allows). Root.

mod common;

use common::text;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

struct Podman {
    dir: tempfile::TempDir,
    image: String,
    /// Whether the CNI bridge and the nft tables podman's CNI plugins make
    /// (ip filter, ip nat, ip6 nat) were there before us.
    had: (bool, [bool; 3]),
    _network: Option<common::HostLock>,
    /// One podman test at a time: each removes, when done, the CNI bridge
    /// and tables it found missing, which another one may still be using.
    _one: std::sync::MutexGuard<'static, ()>,
}

static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

const CNI_TABLES: [(&str, &str); 3] = [("ip", "filter"), ("ip", "nat"), ("ip6", "nat")];

fn nft_table(family: &str, name: &str) -> bool {
    Command::new("nft").args(["list", "table", family, name]).output().is_ok_and(|o| o.status.success())
}

fn link(name: &str) -> bool {
    Path::new("/sys/class/net").join(name).exists()
}

impl Podman {
    fn new() -> Podman {
        let one = ONE_AT_A_TIME.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let network = common::network_user();
        let had = (link("cni-podman0"), CNI_TABLES.map(|(family, name)| nft_table(family, name)));
        let dir = tempfile::tempdir().unwrap();
        // Its own libpod tmp directory (exit files, events) too: two tests
        // sharing /run/libpod lose each other's exit codes when one resets.
        std::fs::write(
            dir.path().join("containers.conf"),
            format!(
                "[containers]\n\
                 default_ulimits = [\"nofile=1024:1024\", \"nproc=1024:1024\"]\n\
                 [engine]\n\
                 cgroup_manager = \"cgroupfs\"\n\
                 events_logger = \"file\"\n\
                 tmp_dir = \"{tmp}\"\n\
                 events_logfile_path = \"{tmp}/events.log\"\n",
                tmp = dir.path().join("tmp").display()
            ),
        )
        .unwrap();
        let mut p = Podman { dir, image: String::new(), had, _network: network, _one: one };
        // The busybox of units.example, into this storage.
        let busybox = common::daemon::busybox();
        let out = p.podman(&["pull", "-q", &busybox]);
        assert!(out.status.success(), "podman pull {busybox}: {}", text(&out.stderr));
        p.image = text(&out.stdout).trim().to_string();
        p
    }

    fn runtime() -> &'static str {
        env!("CARGO_BIN_EXE_supervisor-runtime")
    }

    fn podman(&self, args: &[&str]) -> Output {
        let mut c = Command::new("podman");
        c.env("CONTAINERS_CONF", self.dir.path().join("containers.conf"))
            .arg("--root")
            .arg(self.dir.path().join("root"))
            .arg("--runroot")
            .arg(self.dir.path().join("runroot"))
            .args(["--runtime", Podman::runtime()])
            .args(args);
        common::output_via_files(&mut c)
    }

    /// The shell command line of `podman ARGS` with this storage, for
    /// [`common::under_script`] (with [`Podman::env`]).
    fn line(&self, args: &str) -> String {
        format!(
            "podman --root {} --runroot {} --runtime {} {args}",
            self.dir.path().join("root").display(),
            self.dir.path().join("runroot").display(),
            Podman::runtime()
        )
    }

    fn env(&self) -> [(&'static str, std::ffi::OsString); 1] {
        [("CONTAINERS_CONF", self.dir.path().join("containers.conf").into_os_string())]
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.podman(args);
        assert!(out.status.success(), "podman {args:?}: {}", text(&out.stderr));
        text(&out.stdout)
    }

    fn volume(&self) -> PathBuf {
        let v = self.dir.path().join("volume");
        std::fs::create_dir_all(&v).unwrap();
        v
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        let _ = self.podman(&["rm", "-af", "-t", "0"]);
        let _ = self.podman(&["system", "reset", "-f"]);
        // What podman's network left that was not there before us.
        if !self.had.0 && link("cni-podman0") {
            let _ = Command::new("ip").args(["link", "del", "cni-podman0"]).status();
        }
        for (had, (family, name)) in self.had.1.into_iter().zip(CNI_TABLES) {
            if !had && nft_table(family, name) {
                let _ = Command::new("nft").args(["delete", "table", family, name]).status();
            }
        }
    }
}

fn wait_until(what: &str, secs: u64, pred: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !pred() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn podman_runs_containers_on_our_runtime() {
    if !common::require_root("podman_runs_containers_on_our_runtime")
        || !common::require("podman_runs_containers_on_our_runtime", common::have("podman"), "podman is not installed")
    {
        return;
    }
    let p = Podman::new();
    let image = p.image.clone();

    // podman info names our runtime.
    let info = p.ok(&["info", "--format", "{{.Host.OCIRuntime.Path}}|{{.Host.OCIRuntime.Version}}"]);
    assert!(info.starts_with(Podman::runtime()), "{info}");
    assert!(info.contains("supervisor-runtime version"), "{info}");

    // run --rm: output, exit code, nothing left.
    assert_eq!(p.ok(&["run", "--rm", &image, "echo", "hi"]), "hi\n");
    let out = p.podman(&["run", "--rm", &image, "sh", "-c", "exit 3"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    assert_eq!(p.ok(&["ps", "-aq"]), "");
    // --preserve-fds: a descriptor of ours reaches the container's program.
    let fd3 = p.dir.path().join("fd3");
    let line = p.line(&format!("run --rm --preserve-fds 1 {image} sh -c 'echo via-fd3 >&3'"));
    let mut shell = Command::new("bash");
    shell.arg("-c").arg(format!("{line} 3>>{}", fd3.display())).envs(p.env());
    let out = common::output_via_files(&mut shell);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(std::fs::read_to_string(&fd3).unwrap(), "via-fd3\n");

    // Limits read back from inside.
    let limits = p.ok(&[
        "run",
        "--rm",
        "--memory",
        "64m",
        "--pids-limit",
        "50",
        &image,
        "sh",
        "-c",
        "cat /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/pids/pids.max 2>/dev/null \
         || cat /sys/fs/cgroup/memory.max /sys/fs/cgroup/pids.max",
    ]);
    assert_eq!(limits, "67108864\n50\n");

    // run -it under a pseudo-terminal (script(1)): the container's terminal
    // comes through the console socket. It answers a line typed at it.
    let image_arg = image.clone();
    let mut it = Command::new("script");
    it.args(["-qec"])
        .arg(format!(
            "podman --root {root} --runroot {runroot} --runtime {rt} run -it --rm {image_arg} \
             sh -c 'read line; echo got $line; tty; exit 4'",
            root = p.dir.path().join("root").display(),
            runroot = p.dir.path().join("runroot").display(),
            rt = Podman::runtime(),
        ))
        .arg("/dev/null")
        .env("CONTAINERS_CONF", p.dir.path().join("containers.conf"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped());
    let mut child = it.spawn().unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(b"typed\n").unwrap();
    let out = child.wait_with_output().unwrap();
    let shown = text(&out.stdout);
    assert_eq!(out.status.code(), Some(4), "{shown}");
    assert!(shown.contains("got typed\r\n/dev/pts/0\r\n"), "{shown:?}");

    // run -d with a published port and a volume; exec; pause; stop; rm.
    let port = common::free_port();
    let volume = p.volume();
    // All addresses: CNI's portmap does not reach 127.0.0.1 binds from the
    // host itself without route_localnet.
    let publish = format!("{port}:80");
    let bind = format!("{}:/data", volume.display());
    let id = p.ok(&[
        "run",
        "-d",
        "--name",
        "web",
        "-p",
        &publish,
        "-v",
        &bind,
        &image,
        "sh",
        "-c",
        "mkdir -p /www && echo served > /www/index.html && echo written > /data/out && exec httpd -f -p 80 -h /www",
    ]);
    assert_eq!(id.trim().len(), 64, "{id}");
    wait_until("the volume write", 10, || volume.join("out").exists());
    let to = format!("127.0.0.1:{port}").parse().unwrap();
    wait_until("the published port", 10, || common::http::get(to).is_ok_and(|a| a == "served"));
    assert_eq!(p.ok(&["exec", "web", "cat", "/data/out"]), "written\n");
    let out = p.podman(&["exec", "web", "sh", "-c", "exit 4"]);
    assert_eq!(out.status.code(), Some(4));
    assert_eq!(p.ok(&["exec", "--user", "1000:1000", "web", "id", "-u"]), "1000\n");
    // exec -it: the exec'd shell's own terminal, through conmon's console
    // socket.
    let env = p.env();
    let env: Vec<(&str, &std::ffi::OsStr)> = env.iter().map(|(k, v)| (*k, v.as_os_str())).collect();
    let (code, shown) = common::under_script(&p.line("exec -it web sh -c 'tty; echo in-$((1+1)); exit 3'"), &env);
    assert_eq!(code, Some(3), "{shown}");
    assert!(shown.contains("/dev/pts/0\r\nin-2\r\n"), "{shown:?}");

    p.ok(&["pause", "web"]);
    assert_eq!(p.ok(&["inspect", "--format", "{{.State.Status}}", "web"]), "paused\n");
    p.ok(&["unpause", "web"]);
    assert_eq!(p.ok(&["inspect", "--format", "{{.State.Status}}", "web"]), "running\n");

    // httpd as PID 1 ignores SIGTERM: podman escalates to SIGKILL after -t.
    let started = Instant::now();
    p.ok(&["stop", "-t", "1", "web"]);
    assert!(started.elapsed() >= Duration::from_secs(1));
    assert_eq!(p.ok(&["inspect", "--format", "{{.State.Status}}", "web"]), "exited\n");
    // A program that handles SIGTERM stops at once, with its own code.
    p.ok(&["run", "-d", "--name", "polite", &image, "sh", "-c", "trap 'exit 0' TERM; while :; do sleep 0.1; done"]);
    let started = Instant::now();
    p.ok(&["stop", "-t", "20", "polite"]);
    assert!(started.elapsed() < Duration::from_secs(10), "SIGTERM did not reach the container");
    assert_eq!(p.ok(&["inspect", "--format", "{{.State.ExitCode}}", "polite"]), "0\n");
    p.ok(&["rm", "web", "polite"]);
    assert_eq!(p.ok(&["ps", "-aq"]), "");
    // Nothing of ours is left under podman's runtime root.
    let state = p.dir.path().join("runroot");
    assert!(!contains_container_state(&state), "leftover container state under {}", state.display());
}

/// Whether a `state.json` of ours is anywhere below `dir`.
fn contains_container_state(dir: &Path) -> bool {
    let Ok(entries) = std::fs::read_dir(dir) else { return false };
    entries.flatten().any(|e| {
        let path = e.path();
        path.is_dir() && (path.join("exec.fifo").exists() || contains_container_state(&path))
    })
}

/// `podman run -it --rm` of a command that exits at once, on a terminal:
/// its output shows, every time (the container may end before conmon has
/// read its terminal).
#[test]
fn podman_run_it_rm_shows_the_output_of_a_command_that_exits_at_once() {
    let test = "podman_run_it_rm_shows_the_output_of_a_command_that_exits_at_once";
    if !common::require_root(test) || !common::require(test, common::have("podman"), "podman is not installed") {
        return;
    }
    let p = Podman::new();
    let env = p.env();
    let env: Vec<(&str, &std::ffi::OsStr)> = env.iter().map(|(k, v)| (*k, v.as_os_str())).collect();
    for i in 0..20 {
        let (code, shown) = common::under_script(&p.line(&format!("run -it --rm {} echo hi-{i}", p.image)), &env);
        assert_eq!(code, Some(0), "run {i}: {shown:?}");
        assert!(shown.contains(&format!("hi-{i}\r\n")), "run {i} showed {shown:?}");
    }
    assert_eq!(p.ok(&["ps", "-aq"]), "");
}
