//! A unit file run the whole way, as root: image from the store, an overlay
//! root filesystem over its layers, the spec built from unit and image, our
//! runtime, cleanup (`supervisord runtime run-unit`).

mod common;

use common::text;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The fixture image with every kind of layer entry (see tests/fixtures).
fn layered_image() -> String {
    format!("oci:{}:layered", common::fixtures().join("layout").display())
}

/// `supervisord` with a test's own state and run directories.
fn daemon(state: &Path, run: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_supervisord"));
    c.arg("--state-dir").arg(state).arg("--run-dir").arg(run);
    c
}

/// Waits until the container `name` is recorded as running.
fn wait_running(run: &Path, name: &str) {
    let record = run.join("containers").join(format!("{name}.json"));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !record.exists() {
        assert!(std::time::Instant::now() < deadline, "the container {name} did not start");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

fn run_unit(state: &Path, units: &Path, name: &str, body: &str) -> Output {
    let file = units.join(format!("{name}.toml"));
    std::fs::write(&file, body).unwrap();
    Command::new(env!("CARGO_BIN_EXE_supervisord"))
        .arg("--state-dir")
        .arg(state)
        .args(["runtime", "run-unit"])
        .arg(&file)
        .output()
        .unwrap()
}

#[test]
fn a_unit_runs_on_the_merged_layers_with_a_fresh_writable_layer() {
    root_only!("a_unit_runs_on_the_merged_layers_with_a_fresh_writable_layer");
    let dir = tempfile::tempdir().unwrap();
    let (state, units) = (dir.path().join("state"), dir.path().join("units"));
    std::fs::create_dir(&units).unwrap();
    let name = common::unique_name("u");
    let image = layered_image();
    let body = format!(
        r#"[container]
image = "{image}"
command = ["sh", "-c", "busybox id -u; busybox cat /data/old/new.txt; busybox ls /data/old; echo host=$HOSTNAME; busybox cat /etc/motd 2>/dev/null || echo motd-deleted; test -e /written && echo leftover; busybox touch /written && echo wrote; busybox cat /vol/count 2>/dev/null; echo run >> /vol/count; busybox grep CapEff /proc/self/status"]
volumes = ["data:/vol"]
"#
    );
    let out = run_unit(&state, &units, &name, &body);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{}", text(&out.stderr));
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines[0], "0");
    // The upper layer's opaque directory, file and directory deletions hold.
    assert_eq!(lines[1], "new content");
    assert_eq!(lines[2], "new.txt");
    assert_eq!(lines[3], format!("host={name}"));
    assert_eq!(lines[4], "motd-deleted");
    assert_eq!(lines[5], "wrote");
    assert_eq!(lines[6], "CapEff:\t00000000a80425fb", "Docker's default capabilities");

    // Second run: the writable layer is new, the named volume is not.
    let out = run_unit(&state, &units, &name, &body);
    let stdout = text(&out.stdout);
    assert!(!stdout.contains("leftover"), "the writable layer survived a restart: {stdout}");
    assert!(stdout.contains("\nrun\n"), "the volume lost its data: {stdout}");
    assert_eq!(std::fs::read_to_string(state.join("volumes/data/_data/count")).unwrap(), "run\nrun\n");

    // Nothing is left: no container directory, no overlay mount, no cgroup.
    assert!(!state.join("containers").join(&name).exists());
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mountinfo.contains(state.to_str().unwrap()), "a mount leaked");
    let default = Path::new(supervisor::supervisor::config::DEFAULT_RUN_DIR);
    let cg = supervisor::supervisor::config::cgroups_for(default).unwrap().open(&name);
    assert!(cg.paths().iter().all(|p| !p.exists()), "the cgroup leaked");
}

#[test]
fn users_from_the_image_and_the_realistic_redis_image() {
    root_only!("users_from_the_image_and_the_realistic_redis_image");
    let dir = tempfile::tempdir().unwrap();
    let (state, units) = (dir.path().join("state"), dir.path().join("units"));
    std::fs::create_dir(&units).unwrap();
    let image = layered_image();
    let body = format!(
        "[container]\nimage = \"{image}\"\nuser = \"app\"\ncommand = [\"sh\", \"-c\", \"busybox id -u; busybox id -g; echo $HOME; busybox grep CapEff /proc/self/status\"]\n"
    );
    let out = run_unit(&state, &units, &common::unique_name("u"), &body);
    assert_eq!(text(&out.stdout), "1000\n1000\n/data\nCapEff:\t0000000000000000\n", "{}", text(&out.stderr));

    let out = run_unit(
        &state,
        &units,
        "nouser",
        &format!("[container]\nimage = \"{image}\"\nuser = \"nobody\"\ncommand = [\"true\"]\n"),
    );
    assert_eq!(out.status.code(), Some(125));
    assert!(text(&out.stderr).contains("user \"nobody\" is not in the image's /etc/passwd"), "{}", text(&out.stderr));

    // The example database image, built from Debian's packages: no shell,
    // its own user.
    let redis = common::example_redis();
    let body = format!(
        "[container]\nimage = \"oci:{}:latest\"\nuser = \"redis\"\ncommand = [\"--version\"]\n",
        redis.display()
    );
    let out = run_unit(&state, &units, "db", &body);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).starts_with("Redis server v="), "{}", text(&out.stdout));
}

#[test]
fn the_default_seccomp_filter_is_installed_unless_unconfined() {
    root_only!("the_default_seccomp_filter_is_installed_unless_unconfined");
    let dir = tempfile::tempdir().unwrap();
    let (state, units) = (dir.path().join("state"), dir.path().join("units"));
    std::fs::create_dir(&units).unwrap();
    let image = layered_image();
    // The kernel's own view of the process: its seccomp mode and its
    // no_new_privs bit, as /proc/self/status shows them.
    let status = "busybox grep -E '^(NoNewPrivs|Seccomp):' /proc/self/status | busybox tr -d '\\t'; busybox ls /data > /dev/null && echo works";
    for (extra, expected) in [
        ("", "NoNewPrivs:1\nSeccomp:2\nworks\n"),
        ("no_new_privileges = false\n", "NoNewPrivs:0\nSeccomp:2\nworks\n"),
        ("seccomp = \"unconfined\"\n", "NoNewPrivs:1\nSeccomp:0\nworks\n"),
        ("privileged = true\n", "NoNewPrivs:1\nSeccomp:0\nworks\n"),
    ] {
        let body = format!("[container]\nimage = \"{image}\"\n{extra}command = [\"sh\", \"-c\", \"{status}\"]\n");
        let out = run_unit(&state, &units, &common::unique_name("sc"), &body);
        assert_eq!(text(&out.stdout), expected, "{extra}: {}", text(&out.stderr));
    }
}

#[test]
fn a_new_named_volume_is_seeded_from_the_image() {
    root_only!("a_new_named_volume_is_seeded_from_the_image");
    let dir = tempfile::tempdir().unwrap();
    let (state, units) = (dir.path().join("state"), dir.path().join("units"));
    std::fs::create_dir(&units).unwrap();
    let image = layered_image();
    let body = format!(
        "[container]\nimage = \"{image}\"\nvolumes = [\"seeded:/data\"]\ncommand = [\"sh\", \"-c\", \"busybox ls /data | busybox tr '\\\\n' ' '; echo; busybox rm /data/keep.txt\"]\n"
    );
    let out = run_unit(&state, &units, &common::unique_name("vs"), &body);
    // /data of the merged image: keep.txt and the opaque old/ (gone/ deleted).
    assert_eq!(text(&out.stdout), "keep.txt old \n", "{}", text(&out.stderr));
    assert_eq!(std::fs::read_to_string(state.join("volumes/seeded/_data/old/new.txt")).unwrap(), "new content\n");
    // Not seeded again: the volume is no longer new.
    let out = run_unit(&state, &units, &common::unique_name("vs"), &body);
    assert_eq!(text(&out.stdout), "old \n", "{}", text(&out.stderr));
}

#[test]
fn exec_runs_in_the_container_as_its_process_does() {
    root_only!("exec_runs_in_the_container_as_its_process_does");
    let dir = tempfile::tempdir().unwrap();
    let (state, units, run) = (dir.path().join("state"), dir.path().join("units"), dir.path().join("run"));
    std::fs::create_dir(&units).unwrap();
    let name = common::unique_name("ex");
    let file = units.join(format!("{name}.toml"));
    let image = layered_image();
    std::fs::write(
        &file,
        format!("[container]\nimage = \"{image}\"\nuser = \"app\"\nworkdir = \"/data\"\nenv = {{ GREETING = \"hi\" }}\ncommand = [\"busybox\", \"sleep\", \"60\"]\n[stop]\ntimeout = \"1s\"\n"),
    )
    .unwrap();
    let daemon = || daemon(&state, &run);
    let mut container = daemon().args(["runtime", "run-unit"]).arg(&file).spawn().unwrap();
    wait_running(&run, &name);
    let record = run.join("containers").join(format!("{name}.json"));
    let exec = |cmd: &[&str]| daemon().args(["runtime", "exec", &name, "--"]).args(cmd).output().unwrap();
    let script = "busybox id -u; pwd; echo $GREETING; busybox hostname; busybox ps -o args | busybox sed -n 2p; \
                  busybox grep -E '^(Seccomp|NoNewPrivs):' /proc/self/status | busybox tr -d '\\t'; exit 5";
    let out = exec(&["sh", "-c", script]);
    assert_eq!(out.status.code(), Some(5), "{}", text(&out.stderr));
    // ps: the container's own first process is PID 1 of what exec sees.
    assert_eq!(text(&out.stdout), format!("1000\n/data\nhi\n{name}\nbusybox sleep 60\nNoNewPrivs:1\nSeccomp:2\n"));
    // The joining process runs from a read-only view of our binary (or a
    // sealed in-memory copy), never from the host's file, and says nothing
    // of it to the command.
    let installed = std::path::PathBuf::from(env!("CARGO_BIN_EXE_supervisord"));
    let mut joiner = daemon().args(["runtime", "exec", &name, "--", "busybox", "sleep", "2"]).spawn().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_millis(1800);
    let mut exe = installed.clone();
    while std::time::Instant::now() < deadline {
        exe = std::fs::read_link(format!("/proc/{}/exe", joiner.id())).unwrap_or_default();
        if !exe.as_os_str().is_empty() && exe != installed {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_ne!(exe, installed, "the joining process runs the host's binary");
    let w = std::fs::OpenOptions::new().write(true).open(format!("/proc/{}/exe", joiner.id()));
    // Refused because it is sealed (a read-only view, or a running
    // program's text), not for some other reason (the process gone).
    let err = w.expect_err("the joining process's binary opened for writing");
    assert!(matches!(err.raw_os_error(), Some(libc::EROFS | libc::ETXTBSY)), "{exe:?}: {err}");
    assert_eq!(joiner.wait().unwrap().code(), Some(0));
    assert_eq!(text(&exec(&["sh", "-c", "env | busybox grep -c SEALED"]).stdout), "0\n");
    // With -t the command gets a terminal, and what we type reaches it.
    let mut shell = daemon()
        .args(["runtime", "exec", "-t", &name, "--", "sh"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(shell.stdin.as_mut().unwrap(), b"[ -t 0 ] && echo term-$((6*7)); exit 4\n").unwrap();
    let out = shell.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(4));
    assert!(text(&out.stdout).contains("term-42\r\n"), "{:?}", text(&out.stdout));
    let out = exec(&["nope"]);
    assert_eq!(out.status.code(), Some(127));
    assert!(text(&out.stderr).contains("no such file in the image"));
    // SIGTERM to run-unit stops the container as the daemon will: sleep, as
    // PID 1 without a handler, ignores SIGTERM, so SIGKILL follows after
    // stop.timeout (1 s here).
    let started = std::time::Instant::now();
    // SAFETY: kill(2) on our child.
    unsafe { libc::kill(container.id() as i32, libc::SIGTERM) };
    let status = container.wait().unwrap();
    let took = started.elapsed();
    assert_eq!(status.code(), Some(137), "killed by SIGKILL after the stop timeout");
    // At the 1 s timeout; the upper bound is loose for a loaded machine.
    assert!(took >= std::time::Duration::from_secs(1) && took < std::time::Duration::from_secs(8), "{took:?}");
    assert!(!record.exists(), "the state record outlived the container");
    let out = exec(&["true"]);
    assert_eq!(out.status.code(), Some(125), "exec into a container that is gone");
    assert!(text(&out.stderr).contains("is not running"));
}

#[test]
fn what_a_dead_supervisor_left_is_cleaned_up() {
    root_only!("what_a_dead_supervisor_left_is_cleaned_up");
    let dir = tempfile::tempdir().unwrap();
    let (state, units, run) = (dir.path().join("state"), dir.path().join("units"), dir.path().join("run"));
    std::fs::create_dir(&units).unwrap();
    let name = common::unique_name("orph");
    let file = units.join(format!("{name}.toml"));
    let image = layered_image();
    std::fs::write(
        &file,
        format!(
            "[container]\nimage = \"{image}\"\ncommand = [\"sh\", \"-c\", \"busybox sleep 300 & busybox sleep 300\"]\n"
        ),
    )
    .unwrap();
    let daemon = || daemon(&state, &run);
    let mut runner = daemon().args(["runtime", "run-unit"]).arg(&file).spawn().unwrap();
    wait_running(&run, &name);
    let record = run.join("containers").join(format!("{name}.json"));
    // Once both sleeps run in the container's cgroup...
    let cg = supervisor::supervisor::config::cgroups_for(&run).unwrap().open(&name);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while cg.procs().map_or(0, |p| p.len()) < 2 {
        assert!(std::time::Instant::now() < deadline, "the container's processes: {:?}", cg.procs());
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    // ...the runner dies without a chance to clean up: the container is orphaned.
    runner.kill().unwrap();
    runner.wait().unwrap();
    let orphans = cg.procs().unwrap();
    assert!(orphans.len() >= 2, "expected the orphaned processes in the cgroup: {orphans:?}");

    let out = daemon().args(["runtime", "cleanup"]).output().unwrap();
    assert_eq!(text(&out.stdout), format!("removed {name}\n"));
    for pid in orphans {
        let gone = (0..100).any(|_| {
            std::thread::sleep(std::time::Duration::from_millis(20));
            std::fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |s| s.contains(") Z "))
        });
        assert!(gone, "process {pid} survived the cleanup");
    }
    assert!(cg.paths().iter().all(|p| !p.exists()), "the cgroup survived the cleanup");
    assert!(!record.exists() && !state.join("containers").join(&name).exists());
}

#[test]
fn the_example_database_serves_and_answers_through_exec() {
    root_only!("the_example_database_serves_and_answers_through_exec");
    let redis = common::example_redis();
    let dir = tempfile::tempdir().unwrap();
    let (state, units, run) = (dir.path().join("state"), dir.path().join("units"), dir.path().join("run"));
    std::fs::create_dir(&units).unwrap();
    // units.example/db.toml, with its image path made absolute.
    let example = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("units.example/db.toml")).unwrap();
    let name = common::unique_name("db");
    let body = example.replace("oci:images/redis:latest", &format!("oci:{}:latest", redis.display()));
    let file = units.join(format!("{name}.toml"));
    std::fs::write(&file, body).unwrap();
    let daemon = || daemon(&state, &run);
    let mut server =
        daemon().args(["runtime", "run-unit"]).arg(&file).stdout(std::process::Stdio::null()).spawn().unwrap();
    let exec = |cmd: &[&str]| daemon().args(["runtime", "exec", &name, "--"]).args(cmd).output().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let out = exec(&["redis-cli", "ping"]);
        if text(&out.stdout) == "PONG\n" {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "redis never answered: {}", text(&out.stderr));
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(text(&exec(&["redis-cli", "set", "k", "v"]).stdout), "OK\n");
    assert_eq!(text(&exec(&["redis-cli", "get", "k"]).stdout), "v\n");
    // It runs as the image's redis user, under the unit's 256M limit.
    assert_eq!(text(&exec(&["redis-cli", "config", "get", "dir"]).stdout), "dir\n/data\n");
    let cg = supervisor::supervisor::config::cgroups_for(&run).unwrap().open(&name);
    let status = std::fs::read_to_string(format!("/proc/{}/status", cg.procs().unwrap()[0])).unwrap();
    assert!(status.lines().any(|l| l.starts_with("Uid:") && l.contains("999")), "{status}");
    // redis saves its data set on SIGTERM (the unit's stop signal) and exits 0.
    // SAFETY: kill(2) on our child.
    unsafe { libc::kill(server.id() as i32, libc::SIGTERM) };
    assert_eq!(server.wait().unwrap().code(), Some(0));
    assert!(state.join("volumes/db-data/_data/appendonlydir").exists(), "no data in the named volume");
}

#[test]
fn the_containers_output_can_go_to_the_caller_as_streams() {
    root_only!("the_containers_output_can_go_to_the_caller_as_streams");
    let dir = tempfile::tempdir().unwrap();
    let (state, run) = (dir.path().join("state"), dir.path().join("run"));
    let file = dir.path().join("logged.toml");
    let image = layered_image();
    std::fs::write(
        &file,
        format!("[container]\nimage = \"{image}\"\ncommand = [\"sh\", \"-c\", \"echo out1; echo err1 >&2; read x || echo no-stdin; exit 2\"]\n"),
    )
    .unwrap();
    let log = dir.path().join("container.log");
    let out = daemon(&state, &run).args(["runtime", "run-unit", "--log"]).arg(&log).arg(&file).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(text(&out.stdout), "", "the container's output went to the log, not to us");
    let mut lines: Vec<String> = std::fs::read_to_string(&log).unwrap().lines().map(String::from).collect();
    lines.sort();
    assert_eq!(lines, ["stderr err1", "stdout no-stdin", "stdout out1"]);
}

#[test]
fn a_host_disk_made_with_mknod_cannot_be_read() {
    root_only!("a_host_disk_made_with_mknod_cannot_be_read");
    let dir = tempfile::tempdir().unwrap();
    let (state, run) = (dir.path().join("state"), dir.path().join("run"));
    // The block device that holds this test's files: a real host disk.
    use std::os::unix::fs::MetadataExt;
    let dev = std::fs::metadata(dir.path()).unwrap().dev();
    let (major, minor) = (libc::major(dev), libc::minor(dev));
    let file = dir.path().join("disk.toml");
    let image = layered_image();
    // CAP_MKNOD is among the defaults: making the node works, using it must not.
    let script = format!(
        "busybox mknod /tmp/disk b {major} {minor} && echo made; busybox head -c 1 /tmp/disk > /dev/null 2>&1 && echo read || echo refused"
    );
    std::fs::write(&file, format!("[container]\nimage = \"{image}\"\ncommand = [\"sh\", \"-c\", \"{script}\"]\n"))
        .unwrap();
    let out = daemon(&state, &run).args(["runtime", "run-unit"]).arg(&file).output().unwrap();
    assert_eq!(text(&out.stdout), "made\nrefused\n", "{}", text(&out.stderr));
}

#[test]
fn many_unit_runs_leave_nothing_behind() {
    root_only!("many_unit_runs_leave_nothing_behind");
    let dir = tempfile::tempdir().unwrap();
    let (state, run) = (dir.path().join("state"), dir.path().join("run"));
    let name = common::unique_name("cy");
    let file = dir.path().join(format!("{name}.toml"));
    let image = layered_image();
    std::fs::write(
        &file,
        format!("[container]\nimage = \"{image}\"\ncommand = [\"sh\", \"-c\", \"echo x > /written\"]\n"),
    )
    .unwrap();
    let mounts = || std::fs::read_to_string("/proc/self/mountinfo").unwrap().lines().count();
    let before = mounts();
    // The directory of this run directory's cgroups (made here, if it was not).
    let bases: Vec<PathBuf> = supervisor::supervisor::config::cgroups_for(&run)
        .unwrap()
        .open(&name)
        .paths()
        .iter()
        .map(|p| p.parent().unwrap().to_path_buf())
        .collect();
    for i in 0..300 {
        let out = daemon(&state, &run).args(["runtime", "run-unit"]).arg(&file).output().unwrap();
        assert_eq!(out.status.code(), Some(0), "run {i}: {}", text(&out.stderr));
    }
    assert_eq!(mounts(), before, "mounts leaked");
    assert!(!state.join("containers").join(&name).exists(), "the container directory leaked");
    assert!(std::fs::read_dir(run.join("containers")).map_or(true, |mut d| d.next().is_none()), "state records leaked");
    // The container's cgroup went with it, and the directory of the run
    // directory's cgroups with the last one.
    assert!(bases.iter().all(|p| !p.exists()), "a cgroup leaked: {bases:?}");
}

#[test]
fn namespaced_sysctls_apply_to_the_container_only() {
    root_only!("namespaced_sysctls_apply_to_the_container_only");
    let dir = tempfile::tempdir().unwrap();
    let (state, run) = (dir.path().join("state"), dir.path().join("run"));
    let file = dir.path().join("sysctl.toml");
    let image = layered_image();
    let host_before = std::fs::read_to_string("/proc/sys/net/core/somaxconn").unwrap();
    std::fs::write(
        &file,
        format!(
            "[container]\nimage = \"{image}\"\nsysctls = {{ \"net.core.somaxconn\" = \"1234\", \"kernel.shmmni\" = 2048 }}\n\
             command = [\"sh\", \"-c\", \"busybox cat /proc/sys/net/core/somaxconn /proc/sys/kernel/shmmni; echo 5 > /proc/sys/net/core/somaxconn 2>/dev/null || echo read-only\"]\n"
        ),
    )
    .unwrap();
    let out = daemon(&state, &run).args(["runtime", "run-unit"]).arg(&file).output().unwrap();
    assert_eq!(text(&out.stdout), "1234\n2048\nread-only\n", "{}", text(&out.stderr));
    assert_eq!(
        std::fs::read_to_string("/proc/sys/net/core/somaxconn").unwrap(),
        host_before,
        "the host's value changed"
    );
}

/// An OCI layout: the fixture's busybox layer, then `extra` layers of one
/// small file each (`/l0`, `/l1`, ...), written here (what is tested is the
/// overlay mount, not the image's origin).
fn many_layer_layout(dir: &Path, extra: usize) -> std::path::PathBuf {
    let fx = common::fixtures().join("layout");
    let read = |d: &str| std::fs::read(fx.join("blobs/sha256").join(d.trim_start_matches("sha256:"))).unwrap();
    let index: serde_json::Value = serde_json::from_slice(&std::fs::read(fx.join("index.json")).unwrap()).unwrap();
    let base = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == "base")
        .unwrap();
    let manifest: serde_json::Value = serde_json::from_slice(&read(base["digest"].as_str().unwrap())).unwrap();
    let mut config: serde_json::Value =
        serde_json::from_slice(&read(manifest["config"]["digest"].as_str().unwrap())).unwrap();
    let out = dir.join("many");
    std::fs::create_dir_all(out.join("blobs/sha256")).unwrap();
    let put = |bytes: &[u8]| {
        let d = common::sha256(bytes);
        std::fs::write(out.join("blobs/sha256").join(&d["sha256:".len()..]), bytes).unwrap();
        (d, bytes.len())
    };
    let base_layer = &manifest["layers"][0];
    put(&read(base_layer["digest"].as_str().unwrap()));
    let mut layers = vec![base_layer.clone()];
    for i in 0..extra {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(2);
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_cksum();
        b.append_data(&mut h, format!("l{i}"), &b"x\n"[..]).unwrap();
        let (d, size) = put(&b.into_inner().unwrap());
        config["rootfs"]["diff_ids"].as_array_mut().unwrap().push(serde_json::json!(d));
        layers.push(
            serde_json::json!({"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": d, "size": size}),
        );
    }
    let (cd, cs) = put(&serde_json::to_vec(&config).unwrap());
    let m = serde_json::json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": cs}, "layers": layers});
    let (md, ms) = put(&serde_json::to_vec(&m).unwrap());
    std::fs::write(out.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    let idx = serde_json::json!({"schemaVersion": 2, "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
        "digest": md, "size": ms, "annotations": {"org.opencontainers.image.ref.name": "many"}}]});
    std::fs::write(out.join("index.json"), serde_json::to_vec(&idx).unwrap()).unwrap();
    out
}

#[test]
fn an_image_of_many_layers_mounts() {
    root_only!("an_image_of_many_layers_mounts");
    let dir = tempfile::tempdir().unwrap();
    let (state, run) = (dir.path().join("state"), dir.path().join("run"));
    let layout = many_layer_layout(dir.path(), 120);
    // 121 layer paths of about 100 bytes: far more than the one page of
    // mount options a plain lowerdir list could use.
    let file = dir.path().join("many.toml");
    std::fs::write(
        &file,
        format!("[container]\nimage = \"oci:{}:many\"\ncommand = [\"sh\", \"-c\", \"busybox ls / | busybox grep -c '^l[0-9]'; busybox cat /l119\"]\n", layout.display()),
    )
    .unwrap();
    let out = daemon(&state, &run).args(["runtime", "run-unit"]).arg(&file).output().unwrap();
    assert_eq!(text(&out.stdout), "120\nx\n", "{}", text(&out.stderr));
}
