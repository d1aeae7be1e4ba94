//! The appliance, end to end: `packaging/appliance/build.sh` builds a VM
//! from the example units and some of the tests' own, qemu boots it (TCG,
//! the uncompressed kernel), and everything is checked from outside, as an
//! operator would: the console, the control path (a virtio-serial port,
//! a unix socket on this side), a published port through qemu's forward,
//! qemu's monitor for the keyboard and the power button. The VM is a pure
//! cgroup v2 host: the v2 limits are checked there.
//!
//! The verdict on a boot is the console (a kernel panic, our markers),
//! never qemu's exit code (qemu exits 0 when its guest dies).

mod common;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use common::text;
use serde_json::Value;

/// Boots run one at a time: each takes a core or two under TCG.
static BOOTS: Mutex<()> = Mutex::new(());

/// Units of the tests' own, beside the examples: each shows one cgroup v2
/// limit at work, in its logs or its status, read over the control path.
const TEST_UNITS: &[(&str, &str)] = &[
    (
        "oom",
        r#"[container]
image = "oci:images/busybox:latest"
command = ["sh", "-c", "head -c 200000000 /dev/zero | sort > /dev/null"]
[resources]
memory = "32M"
[restart]
policy = "no"
"#,
    ),
    (
        "pids",
        r#"[container]
image = "oci:images/busybox:latest"
command = ["sh", "-c", "echo pids.max $(cat /sys/fs/cgroup/pids.max); (for i in $(seq 40); do sleep 1000 & done) 2>&1; echo spawned; exec sleep 100000"]
[resources]
pids = 10
[stop]
signal = "SIGKILL"
"#,
    ),
    (
        "cpu",
        r#"[container]
image = "oci:images/busybox:latest"
command = ["sh", "-c", "echo cpu.max $(cat /sys/fs/cgroup/cpu.max); while :; do :; done"]
[resources]
cpus = 0.25
[stop]
signal = "SIGKILL"
"#,
    ),
    (
        "live",
        r#"[container]
image = "oci:images/busybox:latest"
command = ["sh", "-c", "while :; do echo memory.max $(cat /sys/fs/cgroup/memory.max); sleep 1; done"]
[resources]
memory = "64M"
[stop]
signal = "SIGKILL"
"#,
    ),
    // An operator inside the box: once `live` runs, it raises live's
    // memory limit by editing its unit file, which supervisord must apply
    // to the running container.
    (
        "editor",
        r#"[container]
image = "oci:images/busybox:latest"
command = ["sh", "-c", "sleep 3; sed 's/64M/96M/' /units/live.toml > /units/.live.tmp && mv /units/.live.tmp /units/live.toml && echo edited; exec sleep 100000"]
volumes = ["/etc/units.d:/units"]
[unit]
after = ["live"]
[stop]
signal = "SIGKILL"
"#,
    ),
    (
        "dev",
        r#"[container]
image = "oci:images/busybox:latest"
command = ["sh", "-c", "mknod /mem c 1 1 && echo made; if head -c 1 /mem > /dev/null; then echo device-readable; else echo device-refused; fi; exec sleep 100000"]
[stop]
signal = "SIGKILL"
"#,
    ),
];

/// The appliance, built once per test run (from the debug binaries the
/// tests were built with).
fn appliance() -> &'static Path {
    &built().0
}

/// The port of the registry on this side that the appliance is told it
/// may reach over plain HTTP (as `10.0.2.2:PORT`, qemu's address of the
/// host): chosen when it is built, started by the test that uses it.
fn registry_port() -> u16 {
    built().1
}

fn built() -> &'static (PathBuf, u16) {
    static BUILT: OnceLock<(PathBuf, u16)> = OnceLock::new();
    BUILT.get_or_init(|| {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let images = common::example_redis().parent().unwrap().to_path_buf();
        let work = root.join("target/appliance-test");
        let _ = std::fs::remove_dir_all(&work);
        let units = work.join("units");
        std::fs::create_dir_all(units.join("images")).unwrap();
        for entry in std::fs::read_dir(root.join("units.example")).unwrap().flatten() {
            let name = entry.file_name();
            if entry.path().extension().is_some_and(|e| e == "toml") {
                std::fs::copy(entry.path(), units.join(&name)).unwrap();
            }
        }
        let copy = |from: &Path, to: &Path| {
            let st = Command::new("cp").arg("-a").arg(from).arg(to).status().unwrap();
            assert!(st.success());
        };
        copy(&root.join("units.example/www"), &units);
        for image in ["busybox", "redis"] {
            copy(&images.join(image), &units.join("images"));
        }
        for (name, body) in TEST_UNITS {
            std::fs::write(units.join(format!("{name}.toml")), body).unwrap();
        }
        let out = work.join("out");
        let bin = Path::new(env!("CARGO_BIN_EXE_supervisord")).parent().unwrap();
        let port = common::free_port();
        let built = Command::new(root.join("packaging/appliance/build.sh"))
            .arg("--units")
            .arg(&units)
            .arg("--image")
            .arg(extra_image())
            .arg("--insecure-registry")
            .arg(format!("10.0.2.2:{port}"))
            .arg("--data-disk")
            .arg("512M")
            .arg("--out")
            .arg(&out)
            .env("SUPERVISOR_BIN", bin)
            .env("APPLIANCE_CACHE", root.join("target/appliance-cache"))
            .output()
            .unwrap();
        assert!(built.status.success(), "build.sh failed:\n{}", text(&built.stderr));
        for f in ["vmlinuz", "initrd.img", "boot.sh", "data.img"] {
            assert!(out.join(f).is_file(), "build.sh made no {f}");
        }
        (out, port)
    })
}

/// An image no unit names, seeded with `--image` (this machine's path,
/// which the VM knows only as the name of a record).
fn extra_image() -> String {
    format!("oci:{}:latest", common::example_redis().display())
}

/// A directory to boot from: the built kernel and initramfs, a copy of
/// boot.sh (it puts control.sock beside itself), and a data disk of its
/// own: a copy of the built one (sparse: most of it is empty), or a blank
/// one.
fn vm_dir(built_disk: bool) -> tempfile::TempDir {
    let out = appliance();
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(out.join("boot.sh"), dir.path().join("boot.sh")).unwrap();
    for f in ["vmlinuz", "initrd.img"] {
        std::os::unix::fs::symlink(out.join(f), dir.path().join(f)).unwrap();
    }
    if built_disk {
        let copied = Command::new("cp").arg("--sparse=always").arg(out.join("data.img")).arg(dir.path()).status();
        assert!(copied.unwrap().success());
    } else {
        let blank = std::fs::File::create(dir.path().join("data.img")).unwrap();
        blank.set_len(256 << 20).unwrap();
    }
    dir
}

struct Vm {
    child: Child,
    dir: tempfile::TempDir,
    port: u16,
    started: Instant,
}

impl Vm {
    /// Boots the appliance (with more kernel arguments, if any); its
    /// console, control socket and monitor in a directory of their own.
    fn boot(append: &str) -> Vm {
        Vm::boot_in(vm_dir(true), append)
    }

    /// Boots again from the files (and the data disk) of an earlier boot.
    fn boot_in(dir: tempfile::TempDir, append: &str) -> Vm {
        let _ = std::fs::remove_file(dir.path().join("console.log"));
        let port = common::free_port();
        let child = Command::new(dir.path().join("boot.sh"))
            .env("CONSOLE", dir.path().join("console.log"))
            .env("MONITOR", dir.path().join("monitor.sock"))
            .env("FORWARD", format!("tcp:127.0.0.1:{port}-:8080"))
            .env("APPEND", append)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("qemu.err")).unwrap())
            .spawn()
            .unwrap();
        Vm { child, dir, port, started: Instant::now() }
    }

    /// Ends qemu (hard, if it still runs) and keeps its directory.
    fn into_dir(mut self) -> tempfile::TempDir {
        let _ = self.child.kill();
        let _ = self.child.wait();
        std::mem::replace(&mut self.dir, tempfile::tempdir().unwrap())
    }

    fn console(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("console.log")).unwrap_or_default()
    }

    fn socket(&self) -> PathBuf {
        self.dir.path().join("control.sock")
    }

    /// Waits for `marker` on the console; a kernel panic or qemu's end
    /// first is the verdict instead.
    fn wait_console(&mut self, marker: &str, secs: u64) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let console = self.console();
            if console.contains(marker) {
                return;
            }
            assert!(!console.contains("Kernel panic"), "the guest panicked:\n{console}");
            if let Some(st) = self.child.try_wait().unwrap() {
                panic!("qemu ended ({st}) before {marker:?}:\n{console}\n{}", self.qemu_err());
            }
            assert!(Instant::now() < deadline, "no {marker:?} on the console after {secs}s:\n{console}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn qemu_err(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("qemu.err")).unwrap_or_default()
    }

    fn ctl(&self, args: &[&str]) -> std::process::Output {
        common::daemon::ctl(&self.socket(), args)
    }

    fn status(&self) -> Vec<Value> {
        let out = self.ctl(&["status", "--json"]);
        serde_json::from_slice::<Value>(&out.stdout)
            .map(|v| v.as_array().cloned().unwrap_or_default())
            .unwrap_or_default()
    }

    fn unit(&self, name: &str) -> Value {
        self.status().into_iter().find(|u| u["name"] == name).unwrap_or(Value::Null)
    }

    /// Waits until `pred` holds for the unit's status.
    fn wait_unit(&mut self, name: &str, what: &str, secs: u64, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let u = self.unit(name);
            if pred(&u) {
                return u;
            }
            let console = self.console();
            assert!(!console.contains("Kernel panic"), "the guest panicked:\n{console}");
            assert!(Instant::now() < deadline, "{name}: not {what} after {secs}s: {u}\n{console}");
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    fn logs(&self, name: &str) -> String {
        text(&self.ctl(&["logs", name]).stdout)
    }

    fn wait_logs(&mut self, name: &str, needle: &str, secs: u64) -> String {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let logs = self.logs(name);
            if logs.contains(needle) {
                return logs;
            }
            assert!(Instant::now() < deadline, "{name}: no {needle:?} in its logs after {secs}s:\n{logs}");
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// A command to qemu's monitor. The monitor reads its input a
    /// character at a time: the connection stays open until the command's
    /// prompt comes back, or the rest of the command would be lost.
    fn monitor(&self, command: &str) {
        let path = self.dir.path().join("monitor.sock");
        let mut s = std::os::unix::net::UnixStream::connect(&path).unwrap();
        s.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
        let read_until = |s: &mut std::os::unix::net::UnixStream, prompts: usize| {
            let mut seen = Vec::new();
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline && text(&seen).matches("(qemu) ").count() < prompts {
                let mut buf = [0u8; 4096];
                if let Ok(n) = s.read(&mut buf) {
                    seen.extend_from_slice(&buf[..n]);
                }
            }
        };
        read_until(&mut s, 1);
        s.write_all(format!("{command}\n").as_bytes()).unwrap();
        read_until(&mut s, 2);
    }

    /// Waits for qemu to end; the console then.
    fn wait_end(&mut self, secs: u64) -> String {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while self.child.try_wait().unwrap().is_none() {
            assert!(Instant::now() < deadline, "qemu still runs {secs}s later:\n{}", self.console());
            std::thread::sleep(Duration::from_millis(100));
        }
        self.console()
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// qemu and a kernel package are needed; as root (build.sh makes device
/// nodes).
fn can_run(test: &str) -> bool {
    if !common::require_root(test) {
        return false;
    }
    let qemu = Command::new("qemu-system-x86_64").arg("--version").output().is_ok_and(|o| o.status.success());
    assert!(qemu, "{test}: qemu-system-x86_64 is missing (scripts/install-deps.sh installs qemu-system-x86)");
    true
}

const EXAMPLES: [&str; 3] = ["db", "web", "worker"];

#[test]
fn the_appliance_runs_the_examples_and_enforces_cgroup_v2_limits_then_powers_off() {
    if !can_run("the_appliance_runs_the_examples_and_enforces_cgroup_v2_limits_then_powers_off") {
        return;
    }
    let _one = BOOTS.lock().unwrap_or_else(|e| e.into_inner());
    let mut vm = Vm::boot("");
    vm.wait_console("supervising the units of /etc/units.d", 120);
    assert!(vm.console().contains("left the initramfs root"), "{}", vm.console());
    for name in EXAMPLES {
        vm.wait_unit(name, "running", 120, |u| u["state"] == "running");
    }
    eprintln!("all example units running {:.1}s after qemu started", vm.started.elapsed().as_secs_f64());
    let images: Value = serde_json::from_slice(&vm.ctl(&["images", "--json"]).stdout).unwrap();
    let seeded = images.as_array().unwrap().iter().any(|i| i["reference"] == extra_image().as_str());
    assert!(seeded, "--image {} is not in the VM's store: {images}", extra_image());
    let status = vm.ctl(&["status", "db", "web", "worker"]);
    assert_eq!(status.status.code(), Some(0), "{}", text(&status.stdout));

    // The boot, on the guest's own clock: every step, in order, once
    // every unit has run (the OOM test unit ends, but it ran).
    let (boot, phases) = common::daemon::wait_boot(&vm.socket(), 120);
    let names: Vec<&str> = phases.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(
        names,
        [
            "started",
            "modules_loaded",
            "data_disk",
            "uplink",
            "bridge",
            "control_path",
            "first_unit_ran",
            "all_units_ran"
        ],
        "{boot}"
    );
    assert!(phases.windows(2).all(|w| w[0].1 <= w[1].1), "not in time order: {boot}");
    // Since the kernel started: /init comes after the kernel's own boot.
    assert!(phases[0].1 > 0.0 && boot["pid1"] == true, "{boot}");
    eprintln!("{}", text(&vm.ctl(&["boot"]).stdout));

    // The editor's edit of live.toml is in first: an apply reloads the
    // whole directory, and its plan would carry that edit too.
    vm.wait_logs("editor", "edited", 60);
    vm.wait_logs("live", &format!("memory.max {}", 96u64 << 20), 60);

    // A unit managed over the control path: applied, run, shown, removed.
    let mine = tempfile::tempdir().unwrap();
    let hello = mine.path().join("hello.toml");
    let hello_text = "[container]\nimage = \"oci:images/busybox:latest\"\ncommand = [\"sh\", \"-c\", \"echo hello from apply; exec sleep 100000\"]\n[stop]\nsignal = \"SIGKILL\"\n";
    std::fs::write(&hello, hello_text).unwrap();
    let applied = vm.ctl(&["apply", hello.to_str().unwrap()]);
    assert!(applied.status.success(), "{}", text(&applied.stderr));
    assert_eq!(text(&applied.stdout), "hello: start -> running\n");
    vm.wait_logs("hello", "hello from apply", 60);
    assert_eq!(text(&vm.ctl(&["cat", "hello"]).stdout), hello_text);
    let removed = vm.ctl(&["remove", "hello"]);
    assert_eq!(text(&removed.stdout), "hello: remove -> removed\n", "{}", text(&removed.stderr));
    assert!(vm.status().iter().all(|u| u["name"] != "hello"));

    // An image pulled into the running VM from a registry on this side
    // (qemu's user network: the host is 10.0.2.2), then run.
    let registry = common::registry::Registry::start_on(registry_port(), None);
    let busybox = common::example_redis().parent().unwrap().join("busybox");
    registry.push(&format!("oci:{}:latest", busybox.display()), "vm/busybox:1", false);
    let reference = format!("10.0.2.2:{}/vm/busybox:1", registry.port);
    let pulled = vm.ctl(&["pull", &reference]);
    assert!(pulled.status.success(), "{}{}", text(&pulled.stdout), text(&pulled.stderr));
    let pulled_unit = mine.path().join("pulled.toml");
    std::fs::write(
        &pulled_unit,
        format!("[container]\nimage = \"{reference}\"\ncommand = [\"sh\", \"-c\", \"echo pulled runs; exec sleep 100000\"]\n[stop]\nsignal = \"SIGKILL\"\n"),
    )
    .unwrap();
    let applied = vm.ctl(&["apply", pulled_unit.to_str().unwrap()]);
    assert!(applied.status.success(), "{}", text(&applied.stderr));
    vm.wait_logs("pulled", "pulled runs", 60);

    // An image loaded without a registry: an archive streamed through the
    // serial control path into the VM's store, then run.
    let archive = mine.path().join("busybox.tar");
    let copied = Command::new("skopeo")
        .args(["copy", "-q", &format!("oci:{}:latest", busybox.display())])
        .arg(format!("oci-archive:{}:vm.local/loaded:1", archive.display()))
        .output()
        .expect("skopeo (Debian: skopeo)");
    assert!(copied.status.success(), "{}", text(&copied.stderr));
    let loaded = vm.ctl(&["load", archive.to_str().unwrap()]);
    assert!(loaded.status.success(), "{}{}", text(&loaded.stdout), text(&loaded.stderr));
    assert_eq!(text(&loaded.stdout), "Loaded image: vm.local/loaded:1\n");
    let loaded_unit = mine.path().join("loaded.toml");
    std::fs::write(
        &loaded_unit,
        "[container]\nimage = \"vm.local/loaded:1\"\ncommand = [\"sh\", \"-c\", \"echo loaded runs; exec sleep 100000\"]\n[stop]\nsignal = \"SIGKILL\"\n",
    )
    .unwrap();
    let applied = vm.ctl(&["apply", loaded_unit.to_str().unwrap()]);
    assert!(applied.status.success(), "{}", text(&applied.stderr));
    vm.wait_logs("loaded", "loaded runs", 60);

    // The web unit's published port, through qemu's forward to the guest.
    let mut page = String::new();
    for _ in 0..100 {
        if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", vm.port)) {
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            let _ = s.write_all(b"GET / HTTP/1.0\r\n\r\n");
            page.clear();
            let _ = s.read_to_string(&mut page);
            if page.contains("200 OK") {
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(page.contains("Hello from a container"), "the web unit did not answer on its port: {page:?}");

    // cgroup v2 on a pure v2 host: the OOM kill is reported...
    let oom = vm.wait_unit("oom", "OOM-killed", 120, |u| u["oom_killed"] == true);
    assert_ne!(oom["state"], "running", "{oom}");
    // ...the pids limit holds...
    let pids = vm.wait_logs("pids", "spawned", 60);
    assert!(pids.contains("pids.max 10"), "{pids}");
    assert!(pids.contains("can't fork") || pids.contains("Resource temporarily unavailable"), "{pids}");
    // ...the CPU quota is written and caps the busy loop...
    let cpu = vm.wait_logs("cpu", "cpu.max", 60);
    assert!(cpu.contains("cpu.max 25000 100000"), "{cpu}");
    let usage = |vm: &Vm| {
        let v: Value = serde_json::from_slice(&vm.ctl(&["inspect", "cpu"]).stdout).unwrap();
        v["usage"]["cpu_ns"].as_u64().unwrap_or_else(|| panic!("no CPU usage in {v}"))
    };
    let (before, t) = (usage(&vm), Instant::now());
    std::thread::sleep(Duration::from_secs(4));
    let share = (usage(&vm) - before) as f64 / t.elapsed().as_nanos() as f64;
    assert!(share > 0.02 && share < 0.35, "CPU share {share:.2} with cpus = 0.25");
    // ...a limit changes on the running container when its file is edited...
    let live = vm.wait_unit("live", "running", 60, |u| u["state"] == "running");
    vm.wait_logs("editor", "edited", 60);
    vm.wait_logs("live", &format!("memory.max {}", 96u64 << 20), 60);
    let after = vm.unit("live");
    assert_eq!(after["pid"], live["pid"], "live was restarted instead of updated: {after}");
    // ...and a device node made inside is refused by the device program.
    let dev = vm.wait_logs("dev", "device-", 60);
    assert!(dev.contains("made"), "mknod is allowed, as Docker allows it: {dev}");
    assert!(dev.contains("device-refused") && dev.contains("Operation not permitted"), "{dev}");

    // supervisorctl poweroff: every unit stopped, then the VM is off.
    let off = vm.ctl(&["poweroff"]);
    assert!(off.status.success(), "{}", text(&off.stderr));
    let console = vm.wait_end(120);
    for name in EXAMPLES {
        assert!(console.contains(&format!("{name}: stopping -> inactive")), "{name} not stopped:\n{console}");
    }
    assert!(console.contains("every unit is stopped"), "{console}");
    assert!(console.contains("reboot: Power down"), "{console}");
}

#[test]
fn ctrl_alt_del_reboots_and_the_power_button_powers_off_cleanly() {
    if !can_run("ctrl_alt_del_reboots_and_the_power_button_powers_off_cleanly") {
        return;
    }
    let _one = BOOTS.lock().unwrap_or_else(|e| e.into_inner());
    for (how, marker) in
        [("sendkey ctrl-alt-delete", "reboot: Restarting system"), ("system_powerdown", "reboot: Power down")]
    {
        let mut vm = Vm::boot("");
        vm.wait_unit("web", "running", 120, |u| u["state"] == "running");
        vm.wait_console("watching the power button", 30);
        vm.monitor(how);
        let console = vm.wait_end(120);
        assert!(console.contains("web: stopping -> inactive"), "{how}: web not stopped:\n{console}");
        assert!(console.contains("every unit is stopped"), "{how}:\n{console}");
        assert!(console.contains(marker), "{how}: no {marker:?}:\n{console}");
    }
}

#[test]
fn a_dead_init_is_a_failed_boot_whatever_qemu_says() {
    if !can_run("a_dead_init_is_a_failed_boot_whatever_qemu_says") {
        return;
    }
    let _one = BOOTS.lock().unwrap_or_else(|e| e.into_inner());
    // No init at all: the kernel panics, and qemu (-no-reboot) exits 0.
    let mut vm = Vm::boot("rdinit=/nonexistent");
    let console = vm.wait_end(120);
    assert!(vm.child.try_wait().unwrap().is_some_and(|s| s.success()), "qemu's exit code says nothing");
    assert!(console.contains("Kernel panic"), "the harness would miss it:\n{console}");
    // And the harness's waits fail on it, instead of timing out.
    let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| vm.wait_console("never", 5)));
    let message = caught.expect_err("wait_console passed on a panicked guest");
    let message = message.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(message.contains("panicked") || message.contains("qemu ended"), "{message}");
}

/// The data disk: what is applied, written to a named volume and removed
/// outlives a clean power-off and a hard one, its file system is left
/// clean by a power-off, and the store is consistent after a power loss.
#[test]
fn the_data_disk_keeps_units_and_volumes_across_power_offs_and_power_loss() {
    if !can_run("the_data_disk_keeps_units_and_volumes_across_power_offs_and_power_loss") {
        return;
    }
    let _one = BOOTS.lock().unwrap_or_else(|e| e.into_inner());
    let mut vm = Vm::boot("");
    vm.wait_unit("worker", "running", 120, |u| u["state"] == "running");
    let boot: Value = serde_json::from_slice(&vm.ctl(&["boot", "--json"]).stdout).unwrap();
    assert!(boot["data_disk"]["device"].as_str().is_some_and(|d| d.starts_with("/dev/vd")), "{boot}");
    let status = vm.ctl(&["status"]);
    assert!(!text(&status.stderr).contains("no data disk"), "{}", text(&status.stderr));

    // A unit applied over the control path counts its boots in a volume
    // (and syncs, as a database does: a power loss takes what the file
    // system had not yet written, up to its 5 s commit interval).
    let mine = tempfile::tempdir().unwrap();
    let counter = mine.path().join("counter.toml");
    std::fs::write(
        &counter,
        "[container]\nimage = \"oci:images/busybox:latest\"\nvolumes = [\"counts:/c\"]\n\
         command = [\"sh\", \"-c\", \"echo x >> /c/boots; sync; echo boots $(wc -l < /c/boots); exec sleep 100000\"]\n\
         [stop]\nsignal = \"SIGKILL\"\n",
    )
    .unwrap();
    let applied = vm.ctl(&["apply", counter.to_str().unwrap()]);
    assert!(applied.status.success(), "{}", text(&applied.stderr));
    vm.wait_logs("counter", "boots 1", 60);
    // A value written into the example redis (its data in a named volume;
    // over the network, as `exec` does not go over the serial port): none
    // yet, then set.
    let kv = mine.path().join("kv.toml");
    std::fs::write(
        &kv,
        "[unit]\nrequires = [\"db\"]\n[container]\nimage = \"oci:images/busybox:latest\"\n\
         command = [\"sh\", \"-c\", \"printf 'GET greeting\\\\r\\\\nSET greeting kept-by-redis\\\\r\\\\nQUIT\\\\r\\\\n' | nc db 6379; exec sleep 100000\"]\n\
         [stop]\nsignal = \"SIGKILL\"\n",
    )
    .unwrap();
    let applied = vm.ctl(&["apply", kv.to_str().unwrap()]);
    assert!(applied.status.success(), "{}", text(&applied.stderr));
    let first = vm.wait_logs("kv", "+OK", 60);
    assert!(first.contains("$-1") && !first.contains("kept-by-redis"), "{first}");
    // And an example unit removed.
    let removed = vm.ctl(&["remove", "worker"]);
    assert!(removed.status.success(), "{}", text(&removed.stderr));

    // A clean power-off leaves a clean file system.
    assert!(vm.ctl(&["poweroff"]).status.success());
    let console = vm.wait_end(120);
    assert!(console.contains("data disk: written out and frozen"), "{console}");
    let dir = vm.into_dir();
    let fsck = Command::new("e2fsck").arg("-fn").arg(dir.path().join("data.img")).output().unwrap();
    assert!(fsck.status.success(), "e2fsck -fn after a power-off: {}{}", text(&fsck.stdout), text(&fsck.stderr));

    // Booted again: the applied unit runs with its volume, the removed one
    // stays removed.
    let mut vm = Vm::boot_in(dir, "");
    vm.wait_logs("counter", "boots 2", 120);
    // redis saved its data set at the power-off: the value is there.
    vm.wait_logs("kv", "kept-by-redis", 120);
    vm.wait_unit("web", "running", 120, |u| u["state"] == "running");
    assert!(vm.status().iter().all(|u| u["name"] != "worker"), "worker came back: {:?}", vm.status());

    // Power lost (qemu killed): the journal is replayed, the units come
    // back, and the store is consistent.
    let dir = vm.into_dir();
    let mut vm = Vm::boot_in(dir, "");
    vm.wait_logs("counter", "boots 3", 120);
    vm.wait_unit("db", "running", 120, |u| u["state"] == "running");
    let verify = vm.ctl(&["verify"]);
    assert!(verify.status.success(), "verify after a power loss: {}{}", text(&verify.stdout), text(&verify.stderr));
    assert!(vm.ctl(&["poweroff"]).status.success());
    vm.wait_end(120);
}

/// An empty disk attached by an operator is formatted at first boot and
/// seeded from the initramfs: the units run from it, and it is clean
/// after a power-off.
#[test]
fn a_blank_disk_is_formatted_and_seeded_at_first_boot() {
    if !can_run("a_blank_disk_is_formatted_and_seeded_at_first_boot") {
        return;
    }
    let _one = BOOTS.lock().unwrap_or_else(|e| e.into_inner());
    let mut vm = Vm::boot_in(vm_dir(false), "");
    vm.wait_unit("web", "running", 120, |u| u["state"] == "running");
    assert!(vm.console().contains("a blank disk: formatted as the data disk"), "{}", vm.console());
    let boot: Value = serde_json::from_slice(&vm.ctl(&["boot", "--json"]).stdout).unwrap();
    assert_eq!(boot["data_disk"]["device"], "/dev/vda", "{boot}");
    assert!(vm.ctl(&["poweroff"]).status.success());
    vm.wait_end(120);
    let image = vm.into_dir();
    let image = image.path().join("data.img");
    let head = Command::new("dumpe2fs").arg("-h").arg(&image).output().unwrap();
    assert!(text(&head.stdout).contains("Filesystem volume name:   supervisor-data"), "{}", text(&head.stdout));
    let fsck = Command::new("e2fsck").arg("-fn").arg(&image).output().unwrap();
    assert!(fsck.status.success(), "{}{}", text(&fsck.stdout), text(&fsck.stderr));
    // Seeded: the units are on it.
    let listed = Command::new("debugfs").args(["-R", "ls /units.d"]).arg(&image).output().unwrap();
    assert!(text(&listed.stdout).contains("web.toml"), "{}", text(&listed.stdout));
}
