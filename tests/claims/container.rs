//! docs/units.md `[container]` keys seen from inside the container, and
//! what the operator's signals and a command that cannot run do.

use std::path::Path;
use std::process::{Command, Output};

use crate::common::daemon::{Daemon, busybox};
use crate::common::{self, text};
use crate::root_only;

use super::support::{busybox_with, sh_unit};

/// `supervisord runtime run-unit` of `body` as unit `name`: the
/// container's output and exit code.
fn run_unit(dir: &Path, body: &str) -> Output {
    let units = dir.join("units");
    std::fs::create_dir_all(&units).unwrap();
    let file = units.join(format!("{}.toml", common::unique_name("cl")));
    std::fs::write(&file, body).unwrap();
    Command::new(env!("CARGO_BIN_EXE_supervisord"))
        .arg("--state-dir")
        .arg(dir.join("state"))
        .args(["runtime", "run-unit"])
        .arg(&file)
        .output()
        .unwrap()
}

/// Runs `script` with the unit's `extra` keys; its stdout (exit 0 asserted).
fn run_script(dir: &Path, script: &str, extra: &str) -> String {
    let out = run_unit(dir, &format!("{}{extra}", sh_unit(script)));
    assert_eq!(out.status.code(), Some(0), "{extra}: {}\n{}", text(&out.stdout), text(&out.stderr));
    text(&out.stdout)
}

#[test]
fn cap_add_and_cap_drop_change_the_effective_set() {
    root_only!("cap_add_and_cap_drop_change_the_effective_set");
    let dir = tempfile::tempdir().unwrap();
    let caps = |extra: &str| run_script(dir.path(), "grep -E '^Cap(Eff|Bnd):' /proc/1/status", extra);
    // Docker's default set is 00000000a80425fb; the masks are the kernel's
    // bit numbers (CHOWN 0, NET_ADMIN 12, NET_RAW 13, SYS_TIME 25).
    for (extra, mask) in [
        ("", "00000000a80425fb"),
        ("cap_add = [\"SYS_TIME\"]\n", "00000000aa0425fb"),
        ("cap_drop = [\"CHOWN\", \"net_raw\"]\n", "00000000a80405fa"),
        ("cap_drop = [\"ALL\"]\ncap_add = [\"CAP_NET_ADMIN\"]\n", "0000000000001000"),
    ] {
        let out = caps(extra);
        assert_eq!(out, format!("CapEff:\t{mask}\nCapBnd:\t{mask}\n"), "{extra}");
    }
}

#[test]
fn read_only_tmpfs_and_ulimits_hold_inside() {
    root_only!("read_only_tmpfs_and_ulimits_hold_inside");
    let dir = tempfile::tempdir().unwrap();
    let script = "touch /written 2>/dev/null && echo root-writable || echo root-read-only; \
                  touch /scratch/f && echo tmpfs-writable; grep ' /scratch ' /proc/mounts | cut -d' ' -f3; stat -c %a /scratch; \
                  dd if=/dev/zero of=/scratch/big bs=1024 count=2048 2>/dev/null || echo tmpfs-full; \
                  grep -E '^Max (open files|processes)' /proc/self/limits | tr -s ' ' | sed 's/ *$//'";
    let extra = "read_only = true\ntmpfs = [\"/scratch:size=1m,mode=700\"]\n\
                 ulimits = { nofile = 1234, nproc = \"100:200\" }\n";
    let out = run_script(dir.path(), script, extra);
    assert_eq!(
        out,
        "root-read-only\ntmpfs-writable\ntmpfs\n700\ntmpfs-full\n\
         Max processes 100 200 processes\nMax open files 1234 1234 files\n",
    );
    // Without the keys: a writable root, no /scratch, the supervisor's limits.
    let out = run_script(dir.path(), "touch /written && echo root-writable; test -d /scratch || echo no-scratch", "");
    assert_eq!(out, "root-writable\nno-scratch\n");
}

#[test]
fn a_device_is_passed_through_at_the_path_asked_for() {
    root_only!("a_device_is_passed_through_at_the_path_asked_for");
    let dir = tempfile::tempdir().unwrap();
    let script = "stat -c '%F %t:%T' /dev/myzero; head -c 16 /dev/myzero | wc -c; \
                  head -c 16 /dev/myzero | tr -d '\\000' | wc -c";
    let out = run_script(dir.path(), script, "devices = [\"/dev/zero:/dev/myzero\"]\n");
    assert_eq!(out, "character special file 1:5\n16\n0\n");
    // Not there without the key.
    let out = run_script(dir.path(), "test -e /dev/myzero || echo absent", "");
    assert_eq!(out, "absent\n");
}

#[test]
fn entrypoint_replaces_or_clears_the_images_as_docker_does() {
    root_only!("entrypoint_replaces_or_clears_the_images_as_docker_does");
    let dir = tempfile::tempdir().unwrap();
    let args = ["--config.entrypoint", "echo", "--config.entrypoint", "image-ep", "--config.cmd", "image-cmd"];
    let image = busybox_with(dir.path(), "ep", &args);
    let run = |keys: &str| {
        let out = run_unit(dir.path(), &format!("[container]\nimage = \"{image}\"\n{keys}"));
        assert_eq!(out.status.code(), Some(0), "{keys}: {}", text(&out.stderr));
        text(&out.stdout)
    };
    assert_eq!(run(""), "image-ep image-cmd\n");
    assert_eq!(run("command = [\"unit-cmd\"]\n"), "image-ep unit-cmd\n");
    // A new entrypoint drops the image's Cmd (Docker's rule).
    assert_eq!(run("entrypoint = [\"echo\", \"unit-ep\"]\n"), "unit-ep\n");
    assert_eq!(run("entrypoint = [\"echo\", \"unit-ep\"]\ncommand = [\"unit-cmd\"]\n"), "unit-ep unit-cmd\n");
    assert_eq!(run("entrypoint = []\ncommand = [\"echo\", \"cleared\"]\n"), "cleared\n");
}

#[test]
fn hup_usr1_and_usr2_reach_the_service_without_a_restart() {
    root_only!("hup_usr1_and_usr2_reach_the_service_without_a_restart");
    let d = Daemon::start();
    let name = common::unique_name("sg");
    let script = "trap 'exit 0' TERM; for s in HUP USR1 USR2; do trap \"echo got-$s\" $s; done; echo up; \
                  while true; do sleep 0.1; done";
    d.write_unit(&name, &sh_unit(script));
    let u = d.wait_state(&name, "running");
    d.wait_log(&name, None, "stdout up");
    for (spelling, got) in [("HUP", "got-HUP"), ("SIGUSR1", "got-USR1"), ("usr2", "got-USR2"), ("1", "got-HUP")] {
        let out = d.ctl(&["kill", "-s", spelling, &name]);
        assert!(out.status.success(), "kill -s {spelling}: {}", text(&out.stderr));
        d.wait_log(&name, Some(1), got);
    }
    let log = text(&d.ctl(&["logs", &name]).stdout);
    let got: Vec<&str> = log.lines().filter_map(|l| l.split(' ').nth(2)).filter(|w| w.starts_with("got-")).collect();
    assert_eq!(got, ["got-HUP", "got-USR1", "got-USR2", "got-HUP"], "{log}");
    let after = d.unit(&name).unwrap();
    assert_eq!((&after["pid"], &after["restarts"], &after["state"]), (&u["pid"], &0.into(), &"running".into()));
}

#[test]
fn a_command_that_is_not_executable_exits_126_and_status_says_why() {
    root_only!("a_command_that_is_not_executable_exits_126_and_status_says_why");
    let d = Daemon::start();
    let name = common::unique_name("ne");
    let data = d.dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    std::fs::write(data.join("script"), "#!/bin/sh\necho never\n").unwrap();
    let body = |command: &str| {
        format!(
            "[container]\nimage = \"{}\"\ncommand = [\"{command}\"]\nvolumes = [\"{}:/data:ro\"]\n[restart]\npolicy = \"no\"\n",
            busybox(),
            data.display()
        )
    };
    d.write_unit(&name, &body("/data/script"));
    let u = d.wait_state(&name, "failed");
    // No program ran, so no exit code (docs/api.md): the error says why.
    assert_eq!((&u["exit_code"], &u["pid"]), (&serde_json::Value::Null, &serde_json::Value::Null), "{u}");
    assert_eq!(u["error"], "exec \"/data/script\": permission denied", "{u}");
    let shown = text(&d.ctl(&["status", &name]).stdout);
    assert!(shown.contains("FAILED") && shown.contains("permission denied"), "{shown}");
    // The same unit in the foreground exits as `docker run` does.
    let alone = tempfile::tempdir().unwrap();
    let out = run_unit(alone.path(), &body("/data/script"));
    assert_eq!(out.status.code(), Some(126), "{}", text(&out.stderr));
    let out = run_unit(alone.path(), &body("/data/none"));
    assert_eq!(out.status.code(), Some(127), "{}", text(&out.stderr));
}
