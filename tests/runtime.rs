//! The container runtime, as root, on busybox bundles: isolation, limits
//! (memory, pids, CPU measured from the cgroup), exit codes and signals,
//! volumes, and no leftovers after many runs. Specs start from the runtime
//! spec's defaults (oci-spec's `Spec::default()`, the same as `runc spec`).

mod common;

use common::text;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use oci_spec::runtime::Spec;
use serde_json::{Value, json};
use supervisor::runtime::cgroups::Manager;

struct Bundle {
    _dir: tempfile::TempDir,
    path: PathBuf,
}

/// A bundle of the busybox fixture running `sh -c script`, its spec edited
/// by `edit`.
fn bundle(script: &str, edit: impl FnOnce(&mut Value)) -> Bundle {
    let fx = common::fixtures();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bundle");
    std::fs::create_dir(&path).unwrap();
    let ok = Command::new("cp").arg("-a").arg(fx.join("unpacked/base")).arg(path.join("rootfs")).status().unwrap();
    assert!(ok.success());
    let mut spec = serde_json::to_value(Spec::default()).unwrap();
    spec["root"]["path"] = json!("rootfs");
    spec["process"]["args"] = json!(["/bin/sh", "-c", script]);
    spec["process"]["env"] = json!(["PATH=/bin"]);
    spec["hostname"] = json!("box");
    edit(&mut spec);
    std::fs::write(path.join("config.json"), serde_json::to_vec_pretty(&spec).unwrap()).unwrap();
    Bundle { _dir: dir, path }
}

fn runtime(bundle: &Path, id: &str) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_supervisord"));
    c.args(["runtime", "run", "--bundle"]).arg(bundle).arg(id);
    c
}

fn run(b: &Bundle, id: &str) -> Output {
    runtime(&b.path, id).output().unwrap()
}

#[test]
fn the_container_is_isolated() {
    root_only!("the_container_is_isolated");
    let script = r#"
        echo pid=$$
        echo hostname=$(busybox hostname)
        if busybox touch /sys/probe 2>/dev/null; then echo sys=rw; else echo sys=ro; fi
        if busybox touch /probe 2>/dev/null; then echo root=rw; else echo root=ro; fi
        echo timer_list=$(busybox cat /proc/timer_list | busybox wc -c)
        echo firmware=$(busybox ls /sys/firmware | busybox wc -l)
        echo procs=$(busybox ls /proc | busybox grep -c '^[0-9]')
        busybox grep -E '^(CapEff|CapBnd|NoNewPrivs)' /proc/self/status | busybox tr -d '\t'
        echo mounts=$(busybox cut -d' ' -f5 /proc/self/mountinfo | busybox tr '\n' ' ')
        busybox ls /dev
    "#;
    let b = bundle(script, |_| {});
    let out = run(&b, &common::unique_name("iso"));
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{}", text(&out.stderr));
    let line = |k: &str| {
        stdout.lines().find_map(|l| l.strip_prefix(k)).unwrap_or_else(|| panic!("no {k} in {stdout}")).to_string()
    };
    assert_eq!(line("pid="), "1", "the command is PID 1 of its namespace");
    assert_eq!(line("hostname="), "box");
    assert_eq!(line("sys="), "ro");
    assert_eq!(line("root="), "ro", "the default spec's root is read-only");
    // Masked: /proc/timer_list (a file: /dev/null over it) and /sys/firmware
    // (a directory: an empty tmpfs over it), both present on the host.
    assert!(std::fs::metadata("/proc/timer_list").is_ok() && std::fs::read_dir("/sys/firmware").unwrap().count() > 0);
    assert_eq!(line("timer_list="), "0", "/proc/timer_list is masked");
    assert_eq!(line("firmware="), "0", "/sys/firmware is masked");
    // The shell, its command substitution, ls and grep: the container's
    // own few, not the host's hundreds.
    let host_procs = std::fs::read_dir("/proc")
        .unwrap()
        .filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().parse::<u32>().is_ok())
        .count();
    assert!(host_procs > 20, "too few host processes for this check to mean anything");
    assert!(line("procs=").parse::<u32>().unwrap() <= 5, "host processes are visible: {stdout}");
    // CAP_AUDIT_WRITE, CAP_KILL, CAP_NET_BIND_SERVICE: bits 29, 5, 10.
    assert_eq!(line("CapEff:"), "0000000020000420");
    assert_eq!(line("CapBnd:"), "0000000020000420");
    assert_eq!(line("NoNewPrivs:"), "1");
    let mounts = line("mounts=");
    assert!(!mounts.contains("/work") && !mounts.contains(b.path.to_str().unwrap()), "host mounts leak: {mounts}");
    for dev in ["null", "zero", "full", "random", "urandom", "tty", "pts", "shm", "fd", "ptmx"] {
        assert!(stdout.lines().any(|l| l == dev), "/dev/{dev} is missing: {stdout}");
    }
}

#[test]
fn exit_codes_signals_and_start_errors() {
    root_only!("exit_codes_signals_and_start_errors");
    let b = bundle("exit 7", |_| {});
    assert_eq!(run(&b, &common::unique_name("ex")).status.code(), Some(7));

    let b = bundle("", |s| s["process"]["args"] = json!(["/bin/nope"]));
    let out = run(&b, &common::unique_name("ex"));
    assert_eq!(out.status.code(), Some(127));
    assert!(text(&out.stderr).contains(r#"exec "/bin/nope": no such file in the image"#), "{}", text(&out.stderr));

    let b = bundle("", |s| s["process"]["cwd"] = json!("/nonexistent"));
    let out = run(&b, &common::unique_name("ex"));
    assert_eq!(out.status.code(), Some(125));
    assert!(text(&out.stderr).contains("working directory"), "{}", text(&out.stderr));

    // SIGTERM to the runtime is forwarded to the container's process.
    let b = bundle("trap 'exit 42' TERM; echo ready; while :; do busybox sleep 0.05; done", |_| {});
    let mut child = runtime(&b.path, &common::unique_name("sig")).stdout(Stdio::piped()).spawn().unwrap();
    let mut first = [0u8; 6];
    std::io::Read::read_exact(child.stdout.as_mut().unwrap(), &mut first).unwrap();
    // SAFETY: kill(2) on our child's pid.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    assert_eq!(child.wait().unwrap().code(), Some(42));

    // A container killed by a signal exits 128 + N.
    let id = common::unique_name("kil");
    let b = bundle("echo ready; busybox sleep 60", |_| {});
    let mut child = runtime(&b.path, &id).stdout(Stdio::piped()).spawn().unwrap();
    std::io::Read::read_exact(child.stdout.as_mut().unwrap(), &mut first).unwrap();
    let cg = Manager::for_host("supervisor-runtime", None).unwrap().open(&id);
    let init = *cg.procs().unwrap().iter().min().unwrap();
    // SAFETY: kill(2) on the container's first process.
    unsafe { libc::kill(init as i32, libc::SIGKILL) };
    assert_eq!(child.wait().unwrap().code(), Some(137));
}

#[test]
fn a_memory_hog_is_oom_killed_and_reported() {
    root_only!("a_memory_hog_is_oom_killed_and_reported");
    // sort keeps its one 200 MB line in memory.
    let b = bundle("busybox head -c 200000000 /dev/zero | busybox sort > /dev/null", |s| {
        s["linux"]["resources"]["memory"] = json!({ "limit": 32 << 20 });
    });
    let out = run(&b, &common::unique_name("oom"));
    assert_eq!(out.status.code(), Some(137), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("OOM killer"), "{}", text(&out.stderr));
}

#[test]
fn the_pids_limit_holds_and_the_container_still_ends() {
    root_only!("the_pids_limit_holds_and_the_container_still_ends");
    // A subshell forks sleepers until a fork fails, which ends it (as a
    // failed fork ends a shell); its sleepers stay, and the first shell
    // counts them with a glob (a builtin: no fork is left to count with).
    let script = "(for i in $(busybox seq 40); do busybox sleep 30 & done); set -- /proc/[0-9]*; echo procs=$#";
    let b = bundle(script, |s| {
        s["linux"]["resources"]["pids"] = json!({ "limit": 10 });
    });
    let started = Instant::now();
    let out = run(&b, &common::unique_name("pid"));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("fork") || stderr.contains("Resource temporarily unavailable"), "{stderr}");
    // Ten at the most: the shell, the subshell and eight sleepers; the
    // subshell has ended, the shell and the eight are left.
    assert_eq!(text(&out.stdout), "procs=9\n", "{stderr}");
    // The sleepers die with the namespace's init: no 30 s wait.
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[test]
fn half_a_cpu_is_half_a_cpu() {
    root_only!("half_a_cpu_is_half_a_cpu");
    let id = common::unique_name("cpu");
    let b = bundle("trap 'exit 0' TERM; echo ready; while :; do :; done", |s| {
        s["linux"]["resources"]["cpu"] = json!({ "quota": 50000, "period": 100000 });
    });
    let mut child = runtime(&b.path, &id).stdout(Stdio::piped()).spawn().unwrap();
    let mut ready = [0u8; 6];
    std::io::Read::read_exact(child.stdout.as_mut().unwrap(), &mut ready).unwrap();
    let cg = Manager::for_host("supervisor-runtime", None).unwrap().open(&id);
    let before = (cg.usage().cpu_ns.unwrap(), Instant::now());
    std::thread::sleep(Duration::from_secs(3));
    let used = cg.usage().cpu_ns.unwrap() - before.0;
    let share = used as f64 / before.1.elapsed().as_nanos() as f64;
    // SAFETY: kill(2) on our child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    assert_eq!(child.wait().unwrap().code(), Some(0));
    // The quota is the ceiling; the floor only shows the loop ran, since the
    // other tests (and builds) beside this one on two cores may take most
    // of the CPU from it.
    assert!((0.05..=0.6).contains(&share), "CPU share {share:.2}, expected at most about 0.5");
}

#[test]
fn bind_volumes_read_write_and_read_only() {
    root_only!("bind_volumes_read_write_and_read_only");
    let host = tempfile::tempdir().unwrap();
    std::fs::write(host.path().join("in.txt"), "from the host").unwrap();
    let script =
        "busybox cat /rw/in.txt; echo written > /rw/out.txt; if echo x > /ro/x 2>/dev/null; then echo ro-writable; fi";
    let hp = host.path().to_str().unwrap().to_string();
    let b = bundle(script, |s| {
        let mounts = s["mounts"].as_array_mut().unwrap();
        mounts.push(json!({ "destination": "/rw", "type": "bind", "source": hp, "options": ["rbind"] }));
        mounts.push(json!({ "destination": "/ro", "type": "bind", "source": hp, "options": ["rbind", "ro"] }));
    });
    let out = run(&b, &common::unique_name("vol"));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "from the host");
    assert_eq!(std::fs::read_to_string(host.path().join("out.txt")).unwrap(), "written\n");
    assert!(!host.path().join("x").exists());
}

/// Everything a container leaves on the host that we can count.
fn host_state() -> (usize, Vec<PathBuf>) {
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap().lines().count();
    let cgroups: Vec<PathBuf> = match Manager::for_host("supervisor-runtime", None).unwrap() {
        Manager::V1(bases) => bases
            .values()
            .flat_map(|b| std::fs::read_dir(b).unwrap())
            .map(|e| e.unwrap().path())
            .filter(|p| p.is_dir())
            .collect(),
        Manager::V2(base) => {
            std::fs::read_dir(base).unwrap().map(|e| e.unwrap().path()).filter(|p| p.is_dir()).collect()
        }
    };
    (mounts, cgroups)
}

#[test]
fn many_runs_leave_nothing_behind() {
    root_only!("many_runs_leave_nothing_behind");
    let _lock = common::host_lock();
    let b = bundle("true", |_| {});
    let id = common::unique_name("cyc");
    let (mounts_before, _) = host_state();
    let runs = 1000;
    for i in 0..runs {
        let out = run(&b, &id);
        assert_eq!(out.status.code(), Some(0), "run {i}: {}", text(&out.stderr));
    }
    let (mounts_after, cgroups) = host_state();
    assert_eq!(mounts_after, mounts_before, "mounts leaked");
    let ours: Vec<_> = cgroups.iter().filter(|p| p.ends_with(&id)).collect();
    assert!(ours.is_empty(), "cgroups leaked: {ours:?}");
}

#[test]
fn a_bundles_seccomp_profile_is_honoured() {
    root_only!("a_bundles_seccomp_profile_is_honoured");
    let script = "busybox mkdir /tmp/x 2>&1 || echo mkdir-refused; \
                  busybox sleep 30 & kill -0 $! && echo signal-0-ok; kill -9 $! 2>/dev/null || echo kill-9-refused; \
                  busybox grep -E '^Seccomp:' /proc/self/status | busybox tr -d '\\t'";
    let b = bundle(script, |s| {
        s["root"]["readonly"] = json!(false);
        s["linux"]["seccomp"] = json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86"],
            "syscalls": [
                {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1},
                {"names": ["kill"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13,
                 "args": [{"index": 1, "value": 9, "op": "SCMP_CMP_EQ"}]},
                {"names": ["no_such_call_here"], "action": "SCMP_ACT_ERRNO"}
            ]
        });
    });
    let out = run(&b, &common::unique_name("scp"));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("Operation not permitted") && stdout.contains("mkdir-refused"), "{stdout}");
    assert!(stdout.contains("signal-0-ok") && stdout.contains("kill-9-refused"), "{stdout}");
    assert!(stdout.contains("Seccomp:2"), "{stdout}");
}
