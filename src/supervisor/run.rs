//! `supervisord runtime run-unit FILE`: one unit's container in the
//! foreground, the whole way the daemon will start it: the unit file, the
//! image from the store (pulled when missing), an overlay root filesystem
//! with a fresh writable layer, the spec built from unit and image, our
//! runtime, then cleanup. Like `docker run` for a unit file.

use std::fs;
use std::path::{Path, PathBuf};

use nix::sys::signal::Signal;

use super::prepare::{PrepareError, image, prepare};
use crate::runtime::container::Forwarding;
use crate::runtime::container::{Container, RuntimeError, Setup, Stdio};
use crate::runtime::image::{ImageError, PullOptions, Quiet, Store};
use crate::units::diag::Diagnostic;
use crate::units::load_files;

/// Why `run-unit` could not run the unit.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("{0}")]
    Unit(Box<Diagnostic>),
    #[error("{}: not a valid unit", .0.display())]
    NotAUnit(PathBuf),
    #[error("{}: ports = [\"{port}\"]: run-unit has no bridge network; published ports need supervisord", file.display())]
    Ports { file: PathBuf, port: String },
    #[error("{0}")]
    Store(#[from] ImageError),
    #[error("{0}")]
    Image(#[source] Box<PrepareError>),
    #[error("{}: {source}", file.display())]
    Prepare {
        file: PathBuf,
        #[source]
        source: Box<PrepareError>,
    },
    #[error("{}: {source}", path.display())]
    Log {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
}

impl RunError {
    /// The exit status of `run-unit` that failed, as `runtime run`'s and
    /// Docker's: 127 when the program is not in the image, 126 when it
    /// cannot be run, else 125.
    pub fn exit_code(&self) -> u8 {
        match self {
            RunError::Runtime(e) => e.exit_code(),
            _ => 125,
        }
    }
}

/// Runs the unit in `file` to completion; its exit code. With `log`, the
/// container's stdout and stderr lines go there, each tagged with its
/// stream, instead of to ours.
pub fn run_unit(file: &Path, state_dir: &Path, run_dir: &Path, log: Option<&Path>) -> Result<i32, RunError> {
    let set = load_files(&[file.to_path_buf()]);
    if let Some(e) = set.errors.iter().find(|e| e.unit_file.as_deref() == Some(file) || e.file == file) {
        return Err(RunError::Unit(Box::new(e.clone())));
    }
    let loaded = set.units.first().ok_or_else(|| RunError::NotAUnit(file.to_path_buf()))?;
    let unit = &loaded.unit;
    let name = &unit.name;
    if let Some(p) = unit.container.ports.first() {
        return Err(RunError::Ports { file: file.to_path_buf(), port: p.to_string() });
    }
    let store = Store::open(state_dir)?;
    let image = image(unit, &store, &PullOptions::default(), &Quiet, None).map_err(|e| RunError::Image(Box::new(e)))?;
    let prepared = prepare(unit, &unit.name, &image, state_dir, None, &[], None)
        .map_err(|e| RunError::Prepare { file: file.to_path_buf(), source: Box::new(e) })?;
    let log_file = match log {
        Some(p) => match fs::OpenOptions::new().create(true).append(true).open(p) {
            Ok(f) => Some(std::sync::Mutex::new(f)),
            Err(source) => {
                let _ = fs::remove_dir_all(&prepared.dir);
                return Err(RunError::Log { path: p.to_path_buf(), source });
            }
        },
        None => None,
    };
    let cgroups = crate::supervisor::config::cgroups_for(run_dir).map_err(RuntimeError::from)?;
    let setup = Setup {
        name,
        cgroups: &cgroups,
        resources: &prepared.resources,
        run_dir: Some(run_dir),
        dir: Some(&prepared.dir),
    };
    let stdio = if log_file.is_some() { Stdio::Pipes } else { Stdio::Inherit };
    // SIGTERM or SIGINT to `run-unit` stops the container as the daemon
    // will: its stop signal at once, SIGKILL to all of it after the timeout.
    let forwarding = Forwarding::stop(&[Signal::SIGTERM, Signal::SIGINT], prepared.stop_signal)?;
    let (container, output) = Container::create(&setup, &prepared.plan, stdio)?;
    forwarding.started(container.pid());
    let result = std::thread::scope(|s| {
        if let (Some(out), Some(output)) = (&log_file, output) {
            for (tag, stream) in [("stdout", output.stdout), ("stderr", output.stderr)] {
                s.spawn(move || copy_lines(stream, tag, out));
            }
        }
        match forwarding.stop_requested() {
            Some(stop) => container.wait_stopping(stop, unit.stop.timeout),
            None => container.wait(),
        }
    });
    let destroyed = container.destroy();
    if super::config::cgroup_instance(run_dir).is_some() {
        cgroups.remove_empty_bases();
    }
    if destroyed.oom_killed {
        eprintln!(
            "supervisord: {name}: the kernel's OOM killer killed a process of the container (memory limit reached)"
        );
    }
    if let Some(e) = destroyed.error {
        eprintln!("supervisord: {name}: {e}");
    }
    Ok(result?)
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
