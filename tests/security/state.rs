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
