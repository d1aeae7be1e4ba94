//! `supervisord runtime run-unit FILE`: one unit's container in the
//! foreground, the whole way the daemon will start it: the unit file, the
//! image from the store (pulled when missing), an overlay root filesystem
//! with a fresh writable layer, the spec built from unit and image, our
//! runtime, then cleanup. Like `docker run` for a unit file.

use std::fs;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::time::Duration;

use super::prepare::{image, prepare};
use crate::runtime::cgroups::Manager;
use crate::runtime::container::spawn::{Stdio, spawn, wait_exit};
use crate::runtime::container::state::{ContainerState, ProcessState, start_time};
use crate::runtime::image::{PullOptions, Quiet, Store};
use crate::units::load_files;

/// Runs the unit in `file` to completion; its exit code. With `log`, the
/// container's stdout and stderr lines go there, each tagged with its
/// stream, instead of to ours.
pub fn run_unit(file: &Path, state_dir: &Path, run_dir: &Path, log: Option<&Path>) -> Result<i32, String> {
    let set = load_files(&[file.to_path_buf()]);
    if let Some(e) = set.errors.iter().find(|e| e.unit_file.as_deref() == Some(file) || e.file == file) {
        return Err(e.to_string());
    }
    let loaded = set.units.first().ok_or_else(|| format!("{}: not a valid unit", file.display()))?;
    let unit = &loaded.unit;
    let name = &unit.name;
    if let Some(p) = unit.container.ports.first() {
        return Err(format!(
            "{}: ports = [\"{p}\"]: run-unit has no bridge network; published ports need supervisord",
            file.display()
        ));
    }
    let store = Store::open(state_dir).map_err(|e| e.to_string())?;
    let image = image(unit, &store, &PullOptions::default(), &Quiet)?;
    let prepared = prepare(unit, &image, state_dir, None, &[], None).map_err(|e| format!("{}: {e}", file.display()))?;
    let (plan, dir) = (prepared.plan, prepared.request.dir);

    let cgroup = Manager::for_host("supervisor").and_then(|m| m.create(name)).map_err(|e| e.to_string())?;
    let result = cgroup.set(&prepared.resources).map_err(|e| e.to_string()).and_then(|()| {
        let log_file = match log {
            Some(p) => Some(
                fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(p)
                    .map_err(|e| format!("{}: {e}", p.display()))?,
            ),
            None => None,
        };
        let stdio = if log_file.is_some() { Stdio::Pipes } else { Stdio::Inherit };
        // Stop handling is in place before the container starts, so that a
        // SIGTERM while it starts neither kills us nor is lost.
        let stopper = Stopper::install(prepared.stop_signal);
        let spawned = spawn(&plan, Some(&cgroup), stdio).map_err(|e| e.to_string())?;
        let pid = spawned.pid;
        stopper.started(pid.as_raw());
        let log_file = log_file.map(std::sync::Mutex::new);
        let state = ContainerState {
            name: name.clone(),
            pid: pid.as_raw(),
            start_time: start_time(pid.as_raw()).unwrap_or(0),
            cgroup: cgroup.clone(),
            dir: dir.clone(),
            process: ProcessState::of(&plan.process),
        };
        if let Err(e) = state.save(run_dir) {
            eprintln!("supervisord: {name}: cannot record the container's state: {e}");
        }
        std::thread::scope(|s| {
            // Stop semantics: the stop signal goes to the container's first
            // process at once (the handler); after the timeout, SIGKILL to
            // every process of the container.
            s.spawn(|| stopper.escalate_after(unit.stop.timeout, &cgroup));
            if let Some(out) = &log_file {
                for (tag, stream) in [("stdout", spawned.stdout), ("stderr", spawned.stderr)] {
                    if let Some(stream) = stream {
                        s.spawn(move || copy_lines(stream, tag, out));
                    }
                }
            }
            let code = wait_exit(pid).map_err(|e| e.to_string());
            stopper.done();
            code
        })
    });
    ContainerState::remove(run_dir, name);
    if cgroup.oom_kills() > 0 {
        eprintln!(
            "supervisord: {name}: the kernel's OOM killer killed a process of the container (memory limit reached)"
        );
    }
    let _ = cgroup.kill_all();
    let _ = cgroup.remove(Duration::from_secs(5));
    let _ = fs::remove_dir_all(&dir);
    result
}

static CONTAINER_PID: AtomicI32 = AtomicI32::new(0);
static STOP_SIGNAL: AtomicI32 = AtomicI32::new(libc::SIGTERM);
static STOP_REQUESTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_stop(_: libc::c_int) {
    STOP_REQUESTED.store(true, Ordering::SeqCst);
    let pid = CONTAINER_PID.load(Ordering::SeqCst);
    if pid > 0 {
        // SAFETY: kill(2) is async-signal-safe.
        unsafe { libc::kill(pid, STOP_SIGNAL.load(Ordering::SeqCst)) };
    }
}

/// SIGTERM or SIGINT to `run-unit` stops the container as the daemon
/// will: its stop signal, then SIGKILL to all of it after the timeout.
struct Stopper {
    finished: AtomicBool,
}

impl Stopper {
    fn install(stop_signal: i32) -> Stopper {
        STOP_SIGNAL.store(stop_signal, Ordering::SeqCst);
        for sig in [libc::SIGTERM, libc::SIGINT] {
            // SAFETY: the handler only stores atomics and calls kill(2).
            unsafe { libc::signal(sig, on_stop as *const () as libc::sighandler_t) };
        }
        Stopper { finished: AtomicBool::new(false) }
    }

    /// The container runs: a stop asked for while it started goes to it now.
    fn started(&self, pid: i32) {
        CONTAINER_PID.store(pid, Ordering::SeqCst);
        if STOP_REQUESTED.load(Ordering::SeqCst) {
            // SAFETY: kill(2) of the container we just started.
            unsafe { libc::kill(pid, STOP_SIGNAL.load(Ordering::SeqCst)) };
        }
    }

    fn escalate_after(&self, timeout: Duration, cgroup: &crate::runtime::cgroups::Cgroup) {
        let tick = Duration::from_millis(20);
        while !STOP_REQUESTED.load(Ordering::SeqCst) {
            if self.finished.load(Ordering::SeqCst) {
                return;
            }
            std::thread::sleep(tick);
        }
        let deadline = std::time::Instant::now() + timeout;
        while std::time::Instant::now() < deadline {
            if self.finished.load(Ordering::SeqCst) {
                return;
            }
            std::thread::sleep(tick);
        }
        let _ = cgroup.kill_all();
    }

    fn done(&self) {
        self.finished.store(true, Ordering::SeqCst);
    }
}

/// Copies a container's stream into the log, a line at a time, each line
/// tagged with its stream.
fn copy_lines(stream: fs::File, tag: &str, out: &std::sync::Mutex<fs::File>) {
    use std::io::{BufRead, Write};
    for line in std::io::BufReader::new(stream).split(b'\n') {
        let Ok(line) = line else { return };
        let mut f = out.lock().unwrap_or_else(|e| e.into_inner());
        let _ = f.write_all(&[tag.as_bytes(), b" ", &line, b"\n"].concat());
    }
}
