//! `supervisor-runtime`'s later verbs, as engines and people drive them:
//! `update` (runc's flags and a LinuxResources object), `events` (`--stats`
//! and the stream, with an OOM kill), `exec` with a terminal through the
//! console socket and its `--cwd`/`--env`/`--user` flags, and
//! `--preserve-fds` on `run` and `exec`. Root, on busybox bundles.

mod common;

use common::bundle::Bundle;
use common::text;

use std::io::{BufRead, BufReader, Read};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

impl Bundle {
    /// The busybox fixture running `sh -c script` (see
    /// [`Bundle::busybox`]), `FROM=spec` in its environment, in the cgroup
    /// `cgroup` (under a test parent).
    fn new(script: &str, cgroup: &str) -> Bundle {
        Bundle::new_with(script, cgroup, |_| {})
    }

    /// [`Bundle::new`], its spec edited by `edit`.
    fn new_with(script: &str, cgroup: &str, edit: impl FnOnce(&mut Value)) -> Bundle {
        Bundle::busybox(script, |spec, _| {
            spec["process"]["env"] = json!(["PATH=/bin", "FROM=spec"]);
            spec["linux"]["cgroupsPath"] = json!(format!("/supervisor-tests-verbs/{cgroup}"));
            edit(spec);
        })
    }

    /// Created and started, running `script`.
    fn started(script: &str, id: &str) -> Bundle {
        let b = Bundle::new(script, id);
        b.ok(&["create", "--bundle", b.path.to_str().unwrap(), id]);
        b.ok(&["start", id]);
        b
    }

    /// What `cmd` prints inside container `id`.
    fn exec(&self, id: &str, cmd: &str) -> String {
        self.ok(&["exec", id, "/bin/sh", "-c", cmd])
    }
}

impl Drop for Bundle {
    fn drop(&mut self) {
        for entry in std::fs::read_dir(self.root()).into_iter().flatten().flatten() {
            let id = entry.file_name();
            let _ = self.runtime(&["delete", "--force", id.to_str().unwrap_or_default()]);
        }
        for c in ["memory", "pids", "cpu", "cpuacct", "freezer", "devices", ""] {
            let _ = std::fs::remove_dir(Path::new("/sys/fs/cgroup").join(c).join("supervisor-tests-verbs"));
        }
    }
}

fn wait_until(what: &str, secs: u64, pred: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !pred() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The container's limits as it sees them: memory, memory+swap, CPU quota
/// and period, pids (v1 files, or v2's).
const LIMITS: &str = "cd /sys/fs/cgroup; \
    if [ -d memory ]; then cat memory/memory.limit_in_bytes memory/memory.memsw.limit_in_bytes \
    cpu/cpu.cfs_quota_us cpu/cpu.cfs_period_us pids/pids.max; \
    else cat memory.max memory.swap.max cpu.max pids.max; fi";

#[test]
fn update_changes_limits_in_place_and_keeps_what_is_not_given() {
    if !common::require_root("update_changes_limits_in_place_and_keeps_what_is_not_given") {
        return;
    }
    let b = Bundle::started("while :; do sleep 1; done", "u1");
    let v1 = Path::new("/sys/fs/cgroup/memory").is_dir();
    b.ok(&[
        "update",
        "--memory",
        "64m",
        "--memory-swap",
        "96m",
        "--cpu-quota",
        "20000",
        "--cpu-period",
        "100000",
        "--pids-limit",
        "30",
        "u1",
    ]);
    let seen = b.exec("u1", LIMITS);
    if v1 {
        assert_eq!(seen, "67108864\n100663296\n20000\n100000\n30\n");
    } else {
        assert_eq!(seen, "67108864\n33554432\n20000 100000\n30\n");
    }
    // runc's way for engines: a LinuxResources object on stdin; what it
    // leaves out (the CPU quota) stays.
    let mut child =
        b.command(&["update", "--resources", "-", "u1"]).stdin(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    std::io::Write::write_all(
        &mut child.stdin.take().unwrap(),
        br#"{"memory": {"limit": 33554432, "swap": 33554432}, "pids": {"limit": 12}}"#,
    )
    .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let seen = b.exec("u1", LIMITS);
    if v1 {
        assert_eq!(seen, "33554432\n33554432\n20000\n100000\n12\n");
    } else {
        assert_eq!(seen, "33554432\n0\n20000 100000\n12\n");
    }
    // The pids limit holds: 12 processes at most, whatever the shell tries.
    let out = b.runtime(&["exec", "u1", "/bin/sh", "-c", "for i in $(seq 20); do sleep 1 & done; wait"]);
    assert!(text(&out.stderr).contains("can't fork"), "{}", text(&out.stderr));
    // Unlimited again, and a field update cannot change is named.
    b.ok(&["update", "--memory", "-1", "--pids-limit", "-1", "--cpu-quota", "-1", "u1"]);
    let seen = b.exec("u1", LIMITS);
    assert!(seen.ends_with("max\n") && !seen.contains("20000"), "{seen}");
    let bad = b.dir.path().join("bad.json");
    std::fs::write(&bad, r#"{"blockIO": {"weight": 10}}"#).unwrap();
    let out = b.runtime(&["update", "--resources", bad.to_str().unwrap(), "u1"]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("linux.resources.blockIO cannot be changed"), "{}", text(&out.stderr));
    let out = b.runtime(&["update", "--memory", "lots", "u1"]);
    assert!(!out.status.success() && text(&out.stderr).contains("a size in bytes"), "{}", text(&out.stderr));
    let out = b.runtime(&["update", "--memory", "1m", "nosuch"]);
    assert!(text(&out.stderr).contains("does not exist"), "{}", text(&out.stderr));
}

#[test]
fn events_print_stats_and_an_oom_kill() {
    if !common::require_root("events_print_stats_and_an_oom_kill") {
        return;
    }
    let b = Bundle::started("echo up > /shared/up; while :; do sleep 1; done", "e1");
    wait_until("the program", 10, || b.shared("up").exists());
    let stats: Value = serde_json::from_str(&b.ok(&["events", "--stats", "e1"])).unwrap();
    assert_eq!((&stats["type"], &stats["id"]), (&json!("stats"), &json!("e1")), "{stats}");
    let data = &stats["data"];
    assert!(data["memory"]["usage"]["usage"].as_u64().unwrap() > 0, "{data}");
    assert!(data["pids"]["current"].as_u64().unwrap() >= 2, "{data}");
    assert!(data["cpu"]["usage"]["total"].as_u64().unwrap() > 0, "{data}");

    // The stream: stats every interval; an OOM kill as its own event.
    b.ok(&["update", "--memory", "16m", "--memory-swap", "16m", "e1"]);
    let mut events = b.command(&["events", "--interval", "300ms", "e1"]).stdout(Stdio::piped()).spawn().unwrap();
    let mut lines = BufReader::new(events.stdout.take().unwrap()).lines();
    let first: Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    assert_eq!(first["type"], "stats");
    // dd's 64 MiB buffer cannot fit in 16 (busybox's sh runs its applets).
    let hog = b.runtime(&["exec", "e1", "/bin/sh", "-c", "exec dd if=/dev/zero of=/dev/null bs=64M count=1"]);
    assert_eq!(hog.status.code(), Some(137), "{}", text(&hog.stderr));
    let mut kinds = Vec::new();
    for line in lines.by_ref() {
        let event: Value = serde_json::from_str(&line.unwrap()).unwrap();
        assert_eq!(event["id"], "e1");
        kinds.push(event["type"].as_str().unwrap().to_string());
        if kinds.last().is_some_and(|k| k == "oom") {
            break;
        }
        assert!(kinds.len() < 50, "no oom event: {kinds:?}");
    }
    // The stream ends with the container.
    b.ok(&["kill", "e1", "KILL"]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while events.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "events outlived its container");
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = b.runtime(&["events", "--stats", "e1"]);
    assert!(text(&out.stderr).contains("is stopped"), "{}", text(&out.stderr));
}

/// An engine's console socket: the pseudo-terminal master sent to it.
struct ConsoleSocket {
    path: PathBuf,
    listener: UnixListener,
}

impl ConsoleSocket {
    fn new(dir: &Path) -> ConsoleSocket {
        let path = dir.join("console.sock");
        ConsoleSocket { listener: UnixListener::bind(&path).unwrap(), path }
    }

    /// Accepts one connection and receives its descriptor.
    fn master(&self) -> OwnedFd {
        use nix::sys::socket::{ControlMessageOwned, MsgFlags, recvmsg};
        let (conn, _) = self.listener.accept().unwrap();
        let mut buf = [0u8; 64];
        let mut iov = [std::io::IoSliceMut::new(&mut buf)];
        let mut space = nix::cmsg_space!([std::os::fd::RawFd; 1]);
        let msg = recvmsg::<()>(conn.as_raw_fd(), &mut iov, Some(&mut space), MsgFlags::empty()).unwrap();
        for c in msg.cmsgs().unwrap() {
            if let ControlMessageOwned::ScmRights(fds) = c {
                // SAFETY (test): the kernel just gave us this descriptor.
                return unsafe { OwnedFd::from_raw_fd(fds[0]) };
            }
        }
        panic!("no descriptor on the console socket");
    }
}

/// Everything the terminal shows until its last process closes it.
fn read_terminal(master: OwnedFd) -> String {
    let mut f = std::fs::File::from(master);
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    // EIO once nothing holds the slave any more.
    while let Ok(n @ 1..) = f.read(&mut buf) {
        out.extend_from_slice(&buf[..n]);
    }
    text(&out)
}

#[test]
fn exec_gets_a_terminal_through_the_console_socket_and_its_flags() {
    if !common::require_root("exec_gets_a_terminal_through_the_console_socket_and_its_flags") {
        return;
    }
    let b = Bundle::started("while :; do sleep 1; done", "x1");
    let socket = ConsoleSocket::new(b.dir.path());
    let sock = socket.path.to_str().unwrap().to_string();
    let exec = b
        .command(&[
            "exec",
            "--tty",
            "--console-socket",
            &sock,
            "--cwd",
            "/tmp",
            "--env",
            "A=1",
            "--user",
            "1000:1000",
            "x1",
        ])
        .args([
            "/bin/sh",
            "-c",
            "tty; echo $A $(id -u):$(id -g) $(pwd); [ -t 0 ] && echo stdin-is-a-tty; stat -c %u $(tty); exit 6",
        ])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let shown = read_terminal(socket.master());
    let out = exec.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(6), "{}", text(&out.stderr));
    // Its own terminal, its user's (as runc gives it).
    assert_eq!(shown, "/dev/pts/0\r\n1 1000:1000 /tmp\r\nstdin-is-a-tty\r\n1000\r\n");

    // The engine's way: a process description with a terminal, detached,
    // its pid in a file; the terminal answers what is typed at it.
    let process = json!({
        "terminal": true, "consoleSize": {"height": 40, "width": 100},
        "args": ["/bin/sh", "-c", "stty size; read line; echo got $line"],
        "env": ["PATH=/bin"], "cwd": "/", "user": {"uid": 0, "gid": 0},
    });
    let file = b.dir.path().join("process.json");
    std::fs::write(&file, process.to_string()).unwrap();
    let pid_file = b.dir.path().join("exec.pid");
    let detached = b
        .command(&["exec", "--detach", "--process", file.to_str().unwrap(), "--console-socket", &sock, "--pid-file"])
        .arg(&pid_file)
        .arg("x1")
        .spawn()
        .unwrap();
    let master = socket.master();
    let out = detached.wait_with_output().unwrap();
    assert!(out.status.success());
    assert!(std::fs::read_to_string(&pid_file).unwrap().parse::<i32>().unwrap() > 0);
    std::fs::File::from(master.try_clone().unwrap()).write_all(b"typed\n").unwrap();
    let shown = read_terminal(master);
    assert!(shown.contains("40 100\r\n") && shown.contains("got typed\r\n"), "{shown:?}");

    // A command line's --env comes on top of the container's environment.
    assert_eq!(
        b.ok(&["exec", "--env", "FROM=flag", "--env", "B=2", "x1", "/bin/sh", "-c", "echo $FROM $B $PATH"]),
        "flag 2 /bin\n"
    );
    assert_eq!(b.exec("x1", "echo $FROM"), "spec\n");

    // A terminal needs the socket.
    let out = b.runtime(&["exec", "--tty", "x1", "/bin/true"]);
    assert!(text(&out.stderr).contains("console-socket"), "{}", text(&out.stderr));
}

use std::io::Write;

#[test]
fn exec_from_a_command_line_takes_what_it_does_not_give_from_the_container() {
    if !common::require_root("exec_from_a_command_line_takes_what_it_does_not_give_from_the_container") {
        return;
    }
    let b = Bundle::new_with("while :; do sleep 1; done", "x2", |s| {
        s["process"]["user"] = json!({"uid": 1000, "gid": 1001});
        s["process"]["cwd"] = json!("/tmp");
    });
    b.ok(&["create", "--bundle", b.path.to_str().unwrap(), "x2"]);
    b.ok(&["start", "x2"]);
    // runc's way: its user, group, working directory and environment.
    assert_eq!(b.exec("x2", "echo $(id -u):$(id -g) $(pwd) $FROM"), "1000:1001 /tmp spec\n");
    // --user UID keeps its group; UID:GID sets both.
    assert_eq!(b.ok(&["exec", "--user", "0", "x2", "/bin/sh", "-c", "echo $(id -u):$(id -g)"]), "0:1001\n");
    assert_eq!(
        b.ok(&["exec", "--user", "0:0", "--cwd", "/", "x2", "/bin/sh", "-c", "echo $(id -u):$(id -g) $(pwd)"]),
        "0:0 /\n"
    );
    let out = b.runtime(&["exec", "--env", "NOEQUALS", "x2", "/bin/true"]);
    assert!(text(&out.stderr).contains("K=V"), "{}", text(&out.stderr));
}

#[test]
fn preserved_descriptors_reach_the_program_and_no_others() {
    if !common::require_root("preserved_descriptors_reach_the_program_and_no_others") {
        return;
    }
    // fd 3 a file of ours to write to, fd 4 one that must not come along.
    let b = Bundle::new(
        "echo through-3 >&3; if [ -e /proc/self/fd/4 ]; then echo fd4-leaked > /shared/leak; fi; \
         echo up > /shared/up; while :; do sleep 1; done",
        "p1",
    );
    let (three, four) = (b.dir.path().join("three"), b.dir.path().join("four"));
    let runtime = env!("CARGO_BIN_EXE_supervisor-runtime");
    let shell = |args: &str| {
        let script =
            format!("exec {runtime} --root {} {args} 3>>{} 4>>{}", b.root().display(), three.display(), four.display());
        let out = common::output_via_files(Command::new("bash").args(["-c", &script]));
        assert!(out.status.success(), "{args}: {}", text(&out.stderr));
    };
    shell(&format!("create --preserve-fds 1 --bundle {} p1", b.path.display()));
    b.ok(&["start", "p1"]);
    wait_until("the program", 10, || b.shared("up").exists());
    assert_eq!(std::fs::read_to_string(&three).unwrap(), "through-3\n");
    assert!(!b.shared("leak").exists(), "fd 4 reached the program");
    // exec too.
    shell("exec --preserve-fds 2 p1 /bin/sh -c 'echo exec-3 >&3; echo exec-4 >&4'");
    assert_eq!(std::fs::read_to_string(&three).unwrap(), "through-3\nexec-3\n");
    assert_eq!(std::fs::read_to_string(&four).unwrap(), "exec-4\n");
    // Without it, nothing beyond stdio.
    let out = b.runtime(&["exec", "p1", "/bin/sh", "-c", "ls /proc/self/fd"]);
    assert_eq!(text(&out.stdout), "0\n1\n2\n3\n", "{}", text(&out.stderr));
}
