//! cgroup mechanics that need a real kernel, as root.

mod common;

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;

use supervisor::runtime::cgroups::DeviceRule;
use supervisor::runtime::cgroups::devices::attach;

/// `head -c 1 DEVICE` run from inside the cgroup `dir`: did it succeed?
fn can_read(dir: &Path, device: &str) -> bool {
    let procs = dir.join("cgroup.procs");
    let mut cmd = Command::new("head");
    cmd.args(["-c", "1", device]);
    // SAFETY: the closure only writes a file, which is safe between fork and exec.
    unsafe {
        cmd.pre_exec(move || std::fs::write(&procs, "0"));
    }
    cmd.output().unwrap().status.success()
}

/// The v2 device program, on this host's cgroup2 mount (a hybrid host has
/// one; the appliance VM is all v2).
#[test]
fn the_v2_device_program_confines_device_access() {
    if !common::require_root("the_v2_device_program_confines_device_access") {
        return;
    }
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let Some(root) = mountinfo.lines().find(|l| l.contains(" - cgroup2 ")).and_then(|l| l.split(' ').nth(4)) else {
        common::cannot_run("the_v2_device_program_confines_device_access", "no cgroup2 mount on this host");
        return;
    };
    let dir = Path::new(root).join(common::unique_name("dev"));
    std::fs::create_dir(&dir).unwrap();
    let rule = |allow, minor: Option<u64>| DeviceRule { allow, kind: 'c', major: Some(1), minor, access: "rwm".into() };
    let deny_all = DeviceRule { allow: false, kind: 'a', major: None, minor: None, access: "rwm".into() };

    assert!(can_read(&dir, "/dev/zero"), "before any program");
    attach(&dir, &[deny_all.clone(), rule(true, Some(3))]).unwrap();
    assert!(can_read(&dir, "/dev/null"), "/dev/null is allowed");
    assert!(!can_read(&dir, "/dev/zero"), "/dev/zero is not");
    // A new program replaces the old one.
    attach(&dir, &[deny_all, rule(true, Some(5))]).unwrap();
    assert!(can_read(&dir, "/dev/zero"));
    assert!(!can_read(&dir, "/dev/null"));

    std::fs::remove_dir(&dir).unwrap();
}
