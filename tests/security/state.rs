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
