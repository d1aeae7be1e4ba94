//! The test convention for privileged tests (see docs/testing.md).
//!
//! - A test that needs root calls [`require_root`] first (or `root_only!`),
//!   one that needs a kernel feature [`require`]. When the prerequisite is
//!   there it proceeds. Otherwise it is skipped, the reason recorded by
//!   [`skip`] where a summary finds it, unless `SUPERVISOR_TEST_ROOT=1` asks
//!   for every privileged test (CI sets it): then it fails loudly instead
//!   of passing silently.
//! - A missing tool (one `scripts/install-deps.sh` installs) is always a
//!   failure that names the package, never a skip.
//! - Names of host-global things (bridges, netns, cgroups, ports) come from
//!   [`unique_name`], so tests can run in parallel.
//! - A test that changes something host-wide that others read holds
//!   [`host_lock`] for its duration.
#![allow(dead_code)]

use std::fs::File;
use std::sync::atomic::{AtomicU32, Ordering};

/// Output bytes as text.
pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Returns from the calling test unless it may run its privileged part
/// (see [`require_root`]).
#[macro_export]
macro_rules! root_only {
    ($name:expr) => {
        if !common::require_root($name) {
            return;
        }
    };
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// True when the calling test may run its privileged part.
#[must_use]
pub fn require_root(test: &str) -> bool {
    require(test, is_root(), "needs root")
}

/// True when the calling test's prerequisite (`present`) holds. Otherwise
/// the test is skipped, and says so through [`skip`]; or, when
/// `SUPERVISOR_TEST_ROOT=1` asks for every privileged test (as CI does),
/// it fails: a run meant to prove something must not pass without it.
#[must_use]
pub fn require(test: &str, present: bool, missing: &str) -> bool {
    if !present {
        cannot_run(test, missing);
    }
    present
}

/// `test` cannot run (`why`): a failure under `SUPERVISOR_TEST_ROOT=1`,
/// else a recorded [`skip`]; the caller returns.
pub fn cannot_run(test: &str, why: &str) {
    if std::env::var("SUPERVISOR_TEST_ROOT").as_deref() == Ok("1") {
        panic!("{test}: {why}, and SUPERVISOR_TEST_ROOT=1 asks for every privileged test to run");
    }
    skip(test, why);
}

/// Records that `test` did not run, and why: on stderr (which libtest
/// shows only for failures) and as a line `test: reason` appended to the
/// file `SUPERVISOR_TEST_SKIPS` names, which `.ci/run` and
/// `scripts/test-unprivileged.sh` print as a summary at the end.
pub fn skip(test: &str, reason: &str) {
    let line = format!("{test}: {reason}\n");
    eprint!("skipped {line}");
    let Some(path) = std::env::var_os("SUPERVISOR_TEST_SKIPS") else { return };
    // One write(2) of one short line to an O_APPEND file: lines of tests
    // running in parallel do not mix.
    let written = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .and_then(|mut f| std::io::Write::write_all(&mut f, line.as_bytes()));
    if let Err(e) = written {
        panic!("{test}: skipped ({reason}), and recording that in {} failed: {e}", path.to_string_lossy());
    }
}

/// A short name unique to this process and call: `prefix` + pid + counter,
/// at most 15 bytes so it fits an interface name.
pub fn unique_name(prefix: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let name = format!("{prefix}{:x}{n:x}", std::process::id());
    assert!(name.len() <= 15, "{name} is too long for an interface name");
    name
}

/// Whether `tool` is on the PATH.
pub fn have(tool: &str) -> bool {
    std::process::Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Runs `cmd` to its end with its output in files, and returns it: what
/// it leaves running (a container it created, an engine's monitor) may
/// inherit them and keep them open, which would make a pipe never end.
pub fn output_via_files(cmd: &mut std::process::Command) -> std::process::Output {
    use std::io::{Read, Seek, SeekFrom};
    let out = tempfile::tempfile().unwrap();
    let err = tempfile::tempfile().unwrap();
    let status = cmd
        .stdin(std::process::Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(err.try_clone().unwrap())
        .status()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    let read = |mut f: File| {
        let mut v = Vec::new();
        f.seek(SeekFrom::Start(0)).unwrap();
        f.read_to_end(&mut v).unwrap();
        v
    };
    std::process::Output { status, stdout: read(out), stderr: read(err) }
}

/// Serializes tests (across test binaries) that touch a host-global thing.
pub struct HostLock(File);

pub fn host_lock() -> HostLock {
    lock_file("/tmp/supervisor-tests.lock", libc::LOCK_EX)
}

fn lock_file(path: &str, how: libc::c_int) -> HostLock {
    let f = File::create(path).expect("create the test lock file");
    // SAFETY: flock on a file descriptor we own; blocks until granted.
    let rc = unsafe { libc::flock(std::os::fd::AsRawFd::as_raw_fd(&f), how) };
    assert_eq!(rc, 0, "flock: {}", std::io::Error::last_os_error());
    HostLock(f)
}

const NETWORK_LOCK: &str = "/tmp/supervisor-tests-network.lock";

std::thread_local! {
    static NETWORK_QUIET: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Held (shared) by whatever adds links, addresses, routes or nft tables
/// to the host for a while (a test daemon, an outside namespace), so that
/// [`network_quiet`] can compare the host's network before and after.
/// None on the thread that holds [`network_quiet`] itself.
pub fn network_user() -> Option<HostLock> {
    (!NETWORK_QUIET.get()).then(|| lock_file(NETWORK_LOCK, libc::LOCK_SH))
}

/// While held, no other test (of any test process) changes the host's
/// network: what this thread sees change is its own doing.
pub struct NetworkQuiet(HostLock);

pub fn network_quiet() -> NetworkQuiet {
    let lock = lock_file(NETWORK_LOCK, libc::LOCK_EX);
    NETWORK_QUIET.set(true);
    NetworkQuiet(lock)
}

impl Drop for NetworkQuiet {
    fn drop(&mut self) {
        NETWORK_QUIET.set(false);
    }
}

/// The host's links, addresses, routes, nft ruleset and IP forwarding, as
/// text to compare (lifetimes and counters, which move on their own, left out).
pub fn host_network() -> String {
    let run = |cmd: &[&str]| {
        let out = std::process::Command::new(cmd[0]).args(&cmd[1..]).output().expect(cmd[0]);
        assert!(out.status.success(), "{cmd:?}: {}", text(&out.stderr));
        text(&out.stdout)
    };
    let mut out = String::new();
    for cmd in [
        &["ip", "-o", "link"][..],
        &["ip", "-o", "addr"],
        &["ip", "route", "show", "table", "all"],
        &["nft", "list", "ruleset"],
    ] {
        out += &format!("## {}\n", cmd.join(" "));
        for line in run(cmd).lines() {
            let mut words: Vec<&str> = Vec::new();
            let mut it = line.split_whitespace();
            while let Some(w) = it.next() {
                match w {
                    "valid_lft" | "preferred_lft" | "packets" | "bytes" => {
                        it.next();
                    }
                    _ => words.push(w),
                }
            }
            out += &words.join(" ");
            out.push('\n');
        }
    }
    out += &format!("## ip_forward {}", std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap());
    out
}

pub mod bundle;
pub mod daemon;
pub mod http;
pub mod proxy;
pub mod registry;
pub mod trees;

/// The image fixtures of `tests/fixtures/make-images.sh`, built once and
/// reused while the scripts are unchanged.
pub fn fixtures() -> std::path::PathBuf {
    use std::hash::{Hash, Hasher};
    let here = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let mut h = std::collections::hash_map::DefaultHasher::new();
    for f in ["make-images.sh", "crafted-layer.py"] {
        std::fs::read(here.join(f)).expect("fixture script").hash(&mut h);
    }
    let out = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("image-fixtures-{:x}", h.finish()));
    // A lock of its own: a test may build a bundle while it holds host_lock.
    let _lock = lock_file("/tmp/supervisor-tests-fixtures.lock", libc::LOCK_EX);
    if !out.join(".done").exists() {
        let status =
            std::process::Command::new(here.join("make-images.sh")).arg(&out).status().expect("run make-images.sh");
        assert!(status.success(), "building the image fixtures failed");
        std::fs::write(out.join(".done"), "").unwrap();
    }
    out
}

/// The example images of units.example (built by the project's script
/// when missing); the redis layout's path.
pub fn example_redis() -> std::path::PathBuf {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let redis = root.join("units.example/images/redis");
    if !redis.join("index.json").exists() {
        let ok = std::process::Command::new(root.join("scripts/build-example-images.sh")).status().unwrap();
        assert!(ok.success(), "building the example images failed");
    }
    redis
}

/// The OCI digest (`sha256:HEX`) of `bytes`, computed with sha2 itself
/// rather than by the code under test, for images a test writes.
pub fn sha256(bytes: &[u8]) -> String {
    use sha2::Digest;
    format!("sha256:{:x}", sha2::Sha256::digest(bytes))
}

/// A reader that hashes (sha2 itself, see [`sha256`]) and counts what
/// passes through it, for layers too large to hold in memory.
pub struct HashRead<R> {
    inner: R,
    hash: sha2::Sha256,
    len: u64,
}

impl<R: std::io::Read> HashRead<R> {
    pub fn new(inner: R) -> HashRead<R> {
        HashRead { inner, hash: sha2::Digest::new(), len: 0 }
    }

    /// `sha256:HEX` and the byte count.
    pub fn finish(self) -> (String, u64) {
        (format!("sha256:{:x}", sha2::Digest::finalize(self.hash)), self.len)
    }
}

impl<R: std::io::Read> std::io::Read for HashRead<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        sha2::Digest::update(&mut self.hash, &buf[..n]);
        self.len += n as u64;
        Ok(n)
    }
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A static program compiled from C `source` into `dir/bin/name`, for a
/// busybox container (which has no compiler, UDP server or notify client);
/// the `bin` directory, to mount.
pub fn compile_static(dir: &std::path::Path, name: &str, source: &str) -> std::path::PathBuf {
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let src = dir.join(format!("{name}.c"));
    std::fs::write(&src, source).unwrap();
    let st = std::process::Command::new("cc").args(["-static", "-Os", "-o"]).arg(bin.join(name)).arg(&src).status();
    assert!(st.is_ok_and(|s| s.success()), "cc -static (gcc and libc6-dev) is needed for this test");
    bin
}

/// Runs the shell command `line` on a pseudo-terminal of script(1)'s, as
/// a person at a terminal would; its exit code and what the terminal
/// showed. Its input stays open (and empty) until it exits: an input that
/// ends sends the terminal an end-of-file, which is not what a person does.
pub fn under_script(line: &str, env: &[(&str, &std::ffi::OsStr)]) -> (Option<i32>, String) {
    use std::io::Read;
    use std::process::{Command, Stdio};
    let mut c = Command::new("script");
    c.args(["-qec", line, "/dev/null"]).stdin(Stdio::piped()).stdout(Stdio::piped());
    for (k, v) in env {
        c.env(k, v);
    }
    let mut child = c.spawn().unwrap_or_else(|e| panic!("script: {e}"));
    let input = child.stdin.take();
    let mut shown = Vec::new();
    child.stdout.take().expect("piped").read_to_end(&mut shown).unwrap();
    let status = child.wait().unwrap();
    drop(input);
    (status.code(), text(&shown))
}
