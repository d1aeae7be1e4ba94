//! A real supervisord for a test: its own unit, state, run and log
//! directories; driven through the real supervisorctl.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The busybox image of units.example (built offline when missing).
pub fn busybox() -> String {
    let redis = super::example_redis();
    format!("oci:{}:latest", redis.parent().unwrap().join("busybox").display())
}

pub struct Daemon {
    pub dir: tempfile::TempDir,
    pub child: Option<Child>,
    /// Dropped last: the daemon's bridge and table are gone by then.
    _network: Option<super::HostLock>,
}

impl Daemon {
    pub fn start() -> Daemon {
        Daemon::start_with(|_| {})
    }

    /// Starts it with something more on its command (an environment).
    pub fn start_with(f: impl FnOnce(&mut Command)) -> Daemon {
        Daemon::start_configured("", f)
    }

    /// Starts it with this global config file (and, unless it says
    /// otherwise, a bridge and subnet of its own).
    pub fn start_configured(config: &str, f: impl FnOnce(&mut Command)) -> Daemon {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("units")).unwrap();
        let config =
            if config.contains("[network]") { config.to_string() } else { format!("{config}{}", network_config()) };
        std::fs::write(dir.path().join("supervisord.toml"), config).unwrap();
        let mut d = Daemon { dir, child: None, _network: super::network_user() };
        d.spawn_with(f);
        d
    }

    pub fn command(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_supervisord"));
        c.args(args(self.dir.path()));
        c
    }

    /// Starts (again) the daemon and waits for its socket.
    pub fn spawn(&mut self) {
        self.spawn_with(|_| {});
    }

    pub fn spawn_with(&mut self, f: impl FnOnce(&mut Command)) {
        let config = self.dir.path().join("supervisord.toml");
        if !config.exists() {
            std::fs::write(&config, "").unwrap();
        }
        let log = std::fs::File::create(self.dir.path().join("supervisord.log")).unwrap();
        let mut command = self.command();
        f(&mut command);
        let child = command.stderr(log).spawn().unwrap();
        self.child = Some(child);
        self.wait_socket();
    }

    pub fn wait_socket(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::os::unix::net::UnixStream::connect(self.socket()).is_err() {
            assert!(Instant::now() < deadline, "supervisord did not come up:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn units(&self) -> PathBuf {
        self.dir.path().join("units")
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("run/control.sock")
    }

    pub fn log_dir(&self) -> PathBuf {
        self.dir.path().join("log")
    }

    /// The daemon's own log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("supervisord.log")).unwrap_or_default()
    }

    pub fn write_unit(&self, name: &str, body: &str) -> PathBuf {
        let p = self.units().join(format!("{name}.toml"));
        std::fs::write(&p, body).unwrap();
        p
    }

    pub fn ctl(&self, args: &[&str]) -> Output {
        ctl(&self.socket(), args)
    }

    pub fn status(&self) -> Vec<Value> {
        let out = self.ctl(&["status", "--json"]);
        serde_json::from_slice::<Value>(&out.stdout)
            .unwrap_or_else(|e| panic!("status --json: {e}: {}", super::text(&out.stderr)))
            .as_array()
            .unwrap()
            .clone()
    }

    pub fn unit(&self, name: &str) -> Option<Value> {
        self.status().into_iter().find(|u| u["name"] == name)
    }

    /// Waits until `pred` holds for the unit's status (None: no such unit).
    pub fn wait_for(&self, name: &str, what: &str, secs: u64, pred: impl Fn(Option<&Value>) -> bool) -> Option<Value> {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let u = self.unit(name);
            if pred(u.as_ref()) {
                return u;
            }
            assert!(Instant::now() < deadline, "{name}: not {what} after {secs}s: {u:?}\n{}", self.log());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until the unit's log (the last `n` lines, or all) holds
    /// `needle`, and returns it: a line is logged after the unit is
    /// reported running, by another task.
    pub fn wait_log(&self, name: &str, n: Option<usize>, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        let n = n.map(|n| n.to_string());
        loop {
            let mut args = vec!["logs"];
            if let Some(n) = &n {
                args.extend(["-n", n]);
            }
            args.push(name);
            let out = super::text(&self.ctl(&args).stdout);
            if out.contains(needle) {
                return out;
            }
            assert!(Instant::now() < deadline, "{name}: no {needle:?} in its log after 30s: {out}\n{}", self.log());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn wait_state(&self, name: &str, state: &str) -> Value {
        self.wait_for(name, state, 30, |u| u.is_some_and(|u| u["state"] == state)).unwrap()
    }

    /// The cgroup directories of a unit's container (from inspect).
    pub fn cgroup_dirs(&self, name: &str) -> Vec<PathBuf> {
        let out = self.ctl(&["inspect", name]);
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        match &v["cgroup"] {
            Value::Object(m) => m
                .values()
                .flat_map(|x| match x {
                    Value::Object(inner) => inner.values().filter_map(|p| p.as_str().map(PathBuf::from)).collect(),
                    Value::String(p) => vec![PathBuf::from(p)],
                    _ => vec![],
                })
                .collect(),
            _ => vec![],
        }
    }

    /// SIGTERM, and the exit status (waits at most `secs`).
    pub fn terminate(&mut self, secs: u64) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("running");
        // SAFETY: kill(2) of our child.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            if let Some(st) = child.try_wait().unwrap() {
                return st;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("supervisord did not exit within {secs}s of SIGTERM:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SAFETY: kill(2) of our child.
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(30);
            while child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        // Whatever is left (a test that failed midway).
        let _ = Command::new(env!("CARGO_BIN_EXE_supervisord"))
            .arg("--run-dir")
            .arg(self.dir.path().join("run"))
            .args(["runtime", "cleanup"])
            .output();
    }
}

/// supervisorctl `args` against the control socket `socket`.
/// `boot --json` once every unit has ran (waiting up to `secs`), and its
/// phases as (name, milliseconds since the kernel started).
pub fn wait_boot(socket: &Path, secs: u64) -> (Value, Vec<(String, f64)>) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    let boot = loop {
        let out = ctl(socket, &["boot", "--json"]);
        let boot: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        if boot["phases"].as_array().is_some_and(|p| p.iter().any(|p| p["phase"] == "all_units_ran")) {
            break boot;
        }
        assert!(Instant::now() < deadline, "not every unit ran after {secs}s: {boot} {}", super::text(&out.stderr));
        std::thread::sleep(Duration::from_millis(100));
    };
    let phases = boot["phases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["phase"].as_str().unwrap().to_string(), p["at"].as_f64().unwrap()))
        .collect();
    (boot, phases)
}

pub fn ctl(socket: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_supervisorctl")).arg("--socket").arg(socket).args(args).output().unwrap()
}

/// supervisord's directory flags for a test directory `p` (units, state,
/// run and log directories, and `supervisord.toml`, below it).
pub fn args(p: &Path) -> Vec<std::ffi::OsString> {
    let mut out = Vec::new();
    for (flag, rel) in [
        ("--units", "units"),
        ("--state-dir", "state"),
        ("--run-dir", "run"),
        ("--log-dir", "log"),
        ("--config", "supervisord.toml"),
    ] {
        out.push(flag.into());
        out.push(p.join(rel).into_os_string());
    }
    out
}

/// A bridge name and a /24 of 10.214.0.0/15 no other test daemon (of any
/// test process) uses at the same time: a host-wide counter under a lock.
pub fn network_config() -> String {
    use std::io::{Read, Seek, Write};
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open("/tmp/supervisor-tests-subnets")
        .unwrap();
    // SAFETY: flock on a descriptor we own; blocks until granted.
    assert_eq!(unsafe { libc::flock(std::os::fd::AsRawFd::as_raw_fd(&f), libc::LOCK_EX) }, 0);
    let mut text = String::new();
    f.read_to_string(&mut text).unwrap();
    let mut n: u32 = text.trim().parse().unwrap_or(0);
    // Test processes of other checkouts may hold /24s the counter has come
    // round to: skip what the host routes already.
    let routes = std::process::Command::new("ip").args(["-4", "route", "show", "table", "all"]).output().unwrap();
    let routes = super::text(&routes.stdout);
    let subnet = |n: u32| format!("10.{}.{}.0/24", 214 + (n % 512) / 256, n % 256);
    for _ in 0..512 {
        if !routes.lines().any(|l| l.starts_with(&format!("{} ", subnet(n)))) {
            break;
        }
        n = n.wrapping_add(1);
    }
    f.set_len(0).unwrap();
    f.rewind().unwrap();
    write!(f, "{}", n.wrapping_add(1)).unwrap();
    format!("[network]\nbridge = \"{}\"\nsubnet = \"{}\"\n", super::unique_name("tb"), subnet(n))
}

/// Whether a process exists (and is not a zombie).
pub fn alive(pid: i64) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| s.rsplit(')').next().and_then(|r| r.split_whitespace().next()) != Some("Z"))
        .unwrap_or(false)
}

/// Whether anything is mounted under `path`.
pub fn mounted_under(path: &Path) -> bool {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let p = path.to_string_lossy();
    info.lines().any(|l| l.split(' ').nth(4).is_some_and(|m| m.starts_with(p.as_ref())))
}
