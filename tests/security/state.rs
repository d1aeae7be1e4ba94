//! Private state, unit files that only root can write, reserved unit
//! names, and the seccomp filter (see docs/security.md).

use crate::common::{self, daemon::Daemon, daemon::busybox};

/// A container that runs until stopped (and stops at SIGTERM: the init of
/// a pid namespace ignores signals it has no handler for).
const SLEEPER: &str = "trap 'exit 0' TERM; sleep 100000 & wait";

/// A busybox unit running `script` under `sh -c`, with `extra` keys in
/// its [container] section.
fn unit(script: &str, extra: &str) -> String {
    format!("[container]\nimage = \"{}\"\ncommand = [\"sh\", \"-c\", {script:?}]\n{extra}", busybox())
}

#[test]
fn a_unit_named_like_the_daemons_cgroup_is_refused() {
    if !common::require_root("a_unit_named_like_the_daemons_cgroup_is_refused") {
        return;
    }
    let d = Daemon::start();
    let good = common::unique_name("rn");
    d.write_unit("supervisord", &unit(SLEEPER, ""));
    d.write_unit(&good, &unit(SLEEPER, ""));
    d.wait_state(&good, "running");
    let bad = d.wait_for("supervisord", "refused", 10, |u| u.is_some_and(|u| !u["error"].is_null())).unwrap();
    assert_ne!(bad["state"], "running", "{bad}");
    assert!(bad["pid"].is_null(), "a container runs for the reserved name: {bad}");
    let err = bad["error"].as_str().unwrap();
    assert!(err.contains("supervisord.toml") && err.contains("reserved"), "{err}");
    // The daemon is still there and still answers.
    d.ctl(&["stop", "supervisord"]);
    assert!(d.unit(&good).is_some_and(|u| u["state"] == "running"), "{}", d.log());
}

#[test]
fn a_unit_file_others_can_write_is_refused() {
    if !common::require_root("a_unit_file_others_can_write_is_refused") {
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    let d = Daemon::start();
    let (good, bad) = (common::unique_name("wg"), common::unique_name("wb"));
    // Written elsewhere and moved in whole, so the daemon never reads the
    // bad file before its mode is set.
    let staged = d.dir.path().join(format!("{bad}.toml"));
    std::fs::write(&staged, unit(SLEEPER, "")).unwrap();
    std::fs::set_permissions(&staged, std::fs::Permissions::from_mode(0o664)).unwrap();
    std::fs::rename(&staged, d.units().join(format!("{bad}.toml"))).unwrap();
    d.write_unit(&good, &unit(SLEEPER, ""));
    d.wait_state(&good, "running");
    let u = d.wait_for(&bad, "refused", 10, |u| u.is_some_and(|u| !u["error"].is_null())).unwrap();
    assert!(u["pid"].is_null(), "a container runs for a group-writable unit file: {u}");
    let err = u["error"].as_str().unwrap();
    assert!(err.contains(&format!("{bad}.toml")) && err.contains("group-writable"), "{err}");
    let human = d.ctl(&["status", &bad]);
    assert!(crate::common::text(&human.stdout).contains("group-writable"), "{}", crate::common::text(&human.stdout));
}

/// Tries `clone` with the namespace flags of its argument, `io_uring_setup`,
/// `fork` and a thread; prints `name=0` or `name=-errno` for each.
const SYSCALLS_C: &str = r#"
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

static void *thread(void *arg) { return arg; }

int main(int argc, char **argv) {
    unsigned long flags = strtoul(argv[1], 0, 0);
    long pid = syscall(SYS_clone, flags | SIGCHLD, 0, 0, 0, 0);
    if (pid == 0) _exit(0);
    printf("clone=%ld\n", pid < 0 ? -errno : 0L);
    if (pid > 0) waitpid(pid, 0, 0);
    static char params[120];
    long fd = syscall(425 /* io_uring_setup */, 1, params);
    printf("io_uring_setup=%ld\n", fd < 0 ? -errno : 0L);
    pid_t child = fork();
    if (child == 0) _exit(0);
    printf("fork=%d\n", child < 0 ? -errno : 0);
    if (child > 0) waitpid(child, 0, 0);
    pthread_t t;
    int e = pthread_create(&t, 0, thread, 0);
    if (e == 0) pthread_join(t, 0);
    printf("thread=%d\n", -e);
    fflush(stdout);
    return 0;
}
"#;

/// The `name=value` lines a run-once unit printed (once it printed them all).
fn results(d: &Daemon, name: &str) -> std::collections::BTreeMap<String, i64> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let logs = common::text(&d.ctl(&["logs", name]).stdout);
        if logs.contains("thread=") {
            return logs
                .split_whitespace()
                .filter_map(|w| w.split_once('='))
                .filter_map(|(k, v)| Some((k.to_string(), v.parse().ok()?)))
                .collect();
        }
        assert!(std::time::Instant::now() < deadline, "{name} printed no results: {logs}\n{}", d.log());
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

#[test]
fn clone_with_namespace_flags_and_io_uring_are_refused() {
    if !common::require_root("clone_with_namespace_flags_and_io_uring_are_refused") {
        return;
    }
    let d = Daemon::start();
    let bin = common::compile_static(d.dir.path(), "syscalls", SYSCALLS_C);
    let mount = format!("volumes = [\"{}:/t:ro\"]\n[restart]\npolicy = \"no\"\n", bin.display());
    let run = |flags: i32| format!("/t/syscalls {flags:#x}");
    let (plain, admin) = (common::unique_name("sc"), common::unique_name("sa"));
    d.write_unit(&plain, &unit(&run(libc::CLONE_NEWUSER | libc::CLONE_NEWNET), &mount));
    let with_admin = format!("cap_add = [\"SYS_ADMIN\"]\n{mount}");
    d.write_unit(&admin, &unit(&run(libc::CLONE_NEWNS | libc::CLONE_NEWUTS), &with_admin));

    let r = results(&d, &plain);
    assert_eq!(r["clone"], -i64::from(libc::EPERM), "clone(CLONE_NEWUSER|CLONE_NEWNET) in a default unit: {r:?}");
    assert_eq!(r["io_uring_setup"], -i64::from(libc::EPERM), "{r:?}");
    assert_eq!((r["fork"], r["thread"]), (0, 0), "fork and threads must keep working: {r:?}");
    // As in Docker: CAP_SYS_ADMIN lifts the namespace rule (not io_uring's).
    let r = results(&d, &admin);
    assert_eq!(r["clone"], 0, "clone(CLONE_NEWNS|CLONE_NEWUTS) with SYS_ADMIN: {r:?}");
    assert_eq!(r["io_uring_setup"], -i64::from(libc::EPERM), "{r:?}");
    assert_eq!((r["fork"], r["thread"]), (0, 0), "{r:?}");
}

/// A directory any user may write, for commands run as another user
/// (`/tmp` is not world-writable on every machine).
fn scratch() -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt;
    let t = tempfile::tempdir().unwrap();
    std::fs::set_permissions(t.path(), std::fs::Permissions::from_mode(0o1777)).unwrap();
    t
}

/// `script` under `sh -c` as uid and gid 65534 with the supplementary
/// `groups`; its stdout, stderr and whether it succeeded.
fn as_nobody(script: &str, groups: &str, tmp: &std::path::Path) -> (String, String, bool) {
    let mut c = std::process::Command::new("setpriv");
    c.args(["--reuid=65534", "--regid=65534"]);
    if groups.is_empty() {
        c.arg("--clear-groups");
    } else {
        c.arg(format!("--groups={groups}"));
    }
    let out = c.args(["sh", "-c", script]).env("TMPDIR", tmp).output().unwrap();
    (common::text(&out.stdout), common::text(&out.stderr), out.status.success())
}

fn mode(p: &std::path::Path) -> (u32, u32) {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    (m.mode() & 0o7777, m.gid())
}

#[test]
fn another_user_reaches_nothing_of_the_daemons_state() {
    if !common::require_root("another_user_reaches_nothing_of_the_daemons_state") {
        return;
    }
    use std::os::unix::process::CommandExt;
    // A daemon started by someone with the common umask 022.
    let d = Daemon::start_with(|c| {
        // SAFETY: umask(2) in the child before exec; it cannot fail.
        unsafe {
            c.pre_exec(|| {
                libc::umask(0o022);
                Ok(())
            })
        };
    });
    let env_file = d.dir.path().join("app.env");
    std::fs::write(&env_file, "FILE_SECRET=from-the-env-file\n").unwrap();
    let name = common::unique_name("ps");
    // The container leaves a setuid-root copy of busybox and a device node
    // in its writable layer (CAP_FOWNER and CAP_MKNOD are default
    // capabilities).
    let script = format!(
        "mkdir /suid && cp /bin/busybox /suid/busybox && chmod 4755 /suid/busybox && \
         mknod -m 666 /x-null c 1 3 && echo planted; {SLEEPER}"
    );
    let extra = format!("env = {{ SECRET = \"in-the-unit-file\" }}\nenv_file = \"{}\"\n", env_file.display());
    d.write_unit(&name, &unit(&script, &extra));
    d.wait_state(&name, "running");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !common::text(&d.ctl(&["logs", &name]).stdout).contains("planted") {
        assert!(std::time::Instant::now() < deadline, "{}", common::text(&d.ctl(&["logs", &name]).stdout));
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let upper = d.dir.path().join("state/containers").join(&name).join("upper");
    let (suid, node) = (upper.join("suid/busybox"), upper.join("x-null"));
    assert_eq!(mode(&suid).0, 0o4755, "the container planted a setuid binary");

    // Every file, device node and socket under the three directories.
    let tmp = scratch();
    let list = tmp.path().join("files");
    let mut files = Vec::new();
    for top in ["state", "run", "log"] {
        let out = std::process::Command::new("find")
            .arg(d.dir.path().join(top))
            .args([
                "-xdev", "(", "-type", "f", "-o", "-type", "c", "-o", "-type", "b", "-o", "-type", "s", ")", "-print",
            ])
            .output()
            .unwrap();
        files.extend(common::text(&out.stdout).lines().map(str::to_string));
    }
    let record = d.dir.path().join("run/containers").join(format!("{name}.json"));
    for must in [&record, &d.log_dir().join(format!("{name}.log")), &suid, &node] {
        assert!(files.iter().any(|f| f == must.to_str().unwrap()), "{} is not among the files", must.display());
    }
    assert!(std::fs::read_to_string(&record).unwrap().contains("from-the-env-file"), "the record holds the secret");
    std::fs::write(&list, files.join("\n") + "\n").unwrap();

    // As nobody: read each one, run the setuid copy, open the device.
    let probe = format!(
        "cat {list} >/dev/null && echo control-read-ok; \
         while read -r f; do if cat \"$f\" >/dev/null 2>&1 || [ -r \"$f\" ]; then echo \"READ $f\"; fi; done < {list}; \
         {suid} id -u && echo 'RAN the setuid binary'; \
         exec 3<{node} && echo 'OPENED the device node'; true",
        list = list.display(),
        suid = suid.display(),
        node = node.display(),
    );
    let (out, err, _) = as_nobody(&probe, "", tmp.path());
    assert!(out.contains("control-read-ok"), "the check itself does not work: {out}{err}");
    let reached: Vec<&str> = out.lines().filter(|l| *l != "control-read-ok").collect();
    assert!(reached.is_empty(), "another user reached the daemon's state:\n{}", reached.join("\n"));
}

#[test]
fn an_installation_with_open_modes_is_made_private_at_start() {
    if !common::require_root("an_installation_with_open_modes_is_made_private_at_start") {
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    // A log group and a socket group, by number (no /etc/group entry needed).
    let mut d = Daemon::start_configured("log_group = \"4242\"\nsocket_group = \"4243\"\n", |_| {});
    let name = common::unique_name("pm");
    d.write_unit(&name, &unit("echo hello; sleep 100000 & wait", ""));
    d.wait_state(&name, "running");
    d.terminate(30);
    // What an older version under umask 022 left.
    let root = d.dir.path().to_path_buf();
    let p = |rel: &str| root.join(rel);
    let log = d.log_dir().join(format!("{name}.log"));
    for (path, m) in [(p("state"), 0o755), (p("run"), 0o755), (p("log"), 0o755), (log.clone(), 0o644)] {
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(m)).unwrap();
    }
    std::fs::create_dir_all(p("run/containers")).unwrap();
    std::fs::set_permissions(p("run/containers"), std::fs::Permissions::from_mode(0o755)).unwrap();
    d.spawn();
    d.wait_state(&name, "running");
    assert_eq!(mode(&p("state")).0, 0o700);
    assert_eq!(mode(&p("run")).0, 0o711, "the socket group must reach the control socket");
    assert_eq!(mode(&p("run/containers")).0, 0o700);
    assert_eq!(mode(&p("log")), (0o750, 4242));
    assert_eq!(mode(&log), (0o640, 4242));
    assert_eq!(mode(&p("run/supervisord.lock")).0, 0o600);

    let tmp = scratch();
    let ctl = env!("CARGO_BIN_EXE_supervisorctl");
    let socket = d.socket();
    // A member of the log group reads the log, and nothing of the state.
    let read = format!("cat {} && ls {}", log.display(), p("state").display());
    let (out, _, ok) = as_nobody(&read, "4242", tmp.path());
    assert!(out.contains("hello") && !ok, "{out}");
    // A member of the socket group drives the daemon; others do not.
    let status = format!("{ctl} --socket {} status", socket.display());
    let (out, err, ok) = as_nobody(&status, "4243", tmp.path());
    assert!(ok && out.contains(&name), "{out}{err}");
    let (_, _, ok) = as_nobody(&status, "", tmp.path());
    assert!(!ok, "a user outside the socket group used the control socket");
    let (_, _, ok) = as_nobody(&format!("cat {}", log.display()), "", tmp.path());
    assert!(!ok, "a user outside the log group read a log");
}
