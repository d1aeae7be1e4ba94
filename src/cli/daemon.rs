//! `supervisord`: the daemon's command line.
//!
//! The reconcile loop that runs containers is not built yet; what works is
//! `--check`: load the unit directory as the daemon would and print the
//! start order, or every error (like `nginx -t`).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

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
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// The container runtime on its own, as crun and runc are used.
    #[command(subcommand)]
    Runtime(RuntimeCommand),
}

#[derive(Debug, Subcommand)]
pub enum RuntimeCommand {
    /// Run an OCI bundle (config.json + rootfs) in the foreground and exit
    /// with the container's exit code (128+N for signal N).
    Run {
        /// The bundle directory.
        #[arg(long, short)]
        bundle: PathBuf,
        /// A name for the container (its cgroup's name).
        id: String,
    },
    /// Run one unit's container in the foreground, as the daemon would
    /// start it (image from the store, pulled when missing; overlay root
    /// filesystem), and exit with its exit code.
    RunUnit {
        /// Write the container's stdout and stderr lines to this file, each
        /// tagged with its stream, instead of passing them through.
        #[arg(long, value_name = "FILE")]
        log: Option<PathBuf>,
        /// The unit file.
        file: PathBuf,
    },
    /// Remove what containers recorded in the run directory left: kill what
    /// still runs of them, remove their cgroups, directories and records
    /// (what a supervisor does at start after an earlier one died).
    Cleanup,
    /// Run a command in a running container (started by run-unit) and exit
    /// with its code: 126 when it cannot be run, 127 when it is not there.
    Exec {
        /// Give the command a pseudo-terminal (as `docker exec -t`).
        #[arg(short, long)]
        tty: bool,
        /// The container (unit) name.
        name: String,
        /// The command and its arguments.
        #[arg(last = true, required = true)]
        command: Vec<String>,
    },
}

pub fn run(args: Args) -> ExitCode {
    if let Some(Command::Runtime(RuntimeCommand::Run { bundle, id })) = &args.command {
        return match crate::runtime::container::bundle::run_bundle(bundle, id) {
            Ok(code) => ExitCode::from(code.clamp(0, 255) as u8),
            Err(e) => {
                eprintln!("supervisord: {e}");
                ExitCode::from(e.exit_code())
            }
        };
    }
    if let Some(Command::Runtime(RuntimeCommand::RunUnit { log, file })) = &args.command {
        return match crate::supervisor::run::run_unit(file, &args.state_dir, &args.run_dir, log.as_deref()) {
            Ok(code) => ExitCode::from(code.clamp(0, 255) as u8),
            Err(e) => {
                eprintln!("supervisord: {e}");
                ExitCode::from(125)
            }
        };
    }
    if let Some(Command::Runtime(RuntimeCommand::Cleanup)) = &args.command {
        for name in crate::runtime::container::state::clean_up(&args.run_dir).containers {
            println!("removed {name}");
        }
        return ExitCode::SUCCESS;
    }
    if let Some(Command::Runtime(RuntimeCommand::Exec { tty, name, command })) = &args.command {
        use crate::runtime::container::exec::{exec, reexec_from_sealed_copy};
        use crate::runtime::container::state::ContainerState;
        let result = ContainerState::load(&args.run_dir, name)
            .map_err(crate::runtime::container::RuntimeError::Setup)
            .and_then(|state| {
                reexec_from_sealed_copy()?;
                exec(&state, command.clone(), *tty)
            });
        return match result {
            Ok(code) => ExitCode::from(code.clamp(0, 255) as u8),
            Err(e) => {
                eprintln!("supervisord: {e}");
                ExitCode::from(e.exit_code())
            }
        };
    }
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
