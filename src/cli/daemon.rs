//! `supervisord`: the daemon's command line.
//!
//! The reconcile loop that runs containers is not built yet; what works is
//! `--check`: load the unit directory as the daemon would and print the
//! start order, or every error (like `nginx -t`).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

use crate::units::graph::start_order;
use crate::units::load_dir;

/// Run containers from TOML unit files and keep them in their desired state.
#[derive(Debug, Parser)]
#[command(name = "supervisord", version, about)]
pub struct Args {
    /// Directory of unit files.
    #[arg(long, default_value = "/etc/units.d", env = "SUPERVISOR_UNITS")]
    pub units: PathBuf,
    /// Images, volumes and container layers.
    #[arg(long, default_value = "/var/lib/supervisor")]
    pub state_dir: PathBuf,
    /// Control socket and runtime state.
    #[arg(long, default_value = "/run/supervisor")]
    pub run_dir: PathBuf,
    /// Unit logs.
    #[arg(long, default_value = "/var/log/supervisor")]
    pub log_dir: PathBuf,
    /// Global configuration file.
    #[arg(long, default_value = "/etc/supervisor/supervisord.toml")]
    pub config: PathBuf,
    /// Load the units, print the start order or the errors, and exit.
    #[arg(long)]
    pub check: bool,
}

pub fn run(args: Args) -> ExitCode {
    if !args.check {
        eprintln!(
            "supervisord: running containers is not implemented yet; use --check to validate {}",
            args.units.display()
        );
        return ExitCode::from(2);
    }
    let set = match load_dir(&args.units) {
        Ok(set) => set,
        Err(e) => {
            eprintln!("supervisord: {}: {e}", args.units.display());
            return ExitCode::from(2);
        }
    };
    let color = super::stderr_color();
    for e in &set.errors {
        eprint!("{}", e.render(color));
    }
    let units: Vec<_> = set.units.iter().map(|u| &u.unit).collect();
    for (step, group) in start_order(&units).iter().enumerate() {
        println!("start step {}: {}", step + 1, group.join(", "));
    }
    if set.errors.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(1) }
}
