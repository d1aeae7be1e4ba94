//! Policy: the one place that knows both unit files and the runtime. It
//! turns units into runtime requests (`spec`, `prepare`), and runs the
//! daemon: the reconcile loop, restart policy, logs and control socket.

pub mod autoupdate;
pub mod boot;
pub mod config;
pub mod control;
pub mod daemon;
pub mod engine;
pub mod logs;
pub mod metrics;
pub mod notify;
pub mod pid1;
pub mod policy;
pub mod prepare;
pub mod run;
pub mod spec;
pub mod starter;
pub mod unit_files;
pub mod watch;

pub use policy::{lifecycle, reload};

/// The daemon's own log: to stderr (the console as PID 1), level from
/// `SUPERVISOR_LOG` (default `info`).
pub fn init_logging() {
    use tracing_subscriber::fmt;
    let level = std::env::var("SUPERVISOR_LOG")
        .ok()
        .and_then(|l| l.parse::<tracing::Level>().ok())
        .unwrap_or(tracing::Level::INFO);
    let _ = fmt()
        .with_max_level(level)
        .with_writer(std::io::stderr)
        // A console is often a serial line captured to a file: no colours there.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()) && std::process::id() != 1)
        .with_target(false)
        .try_init();
}
