//! `supervisord`: the daemon's command line. Without a subcommand it runs
//! the daemon (`supervisor::daemon`); `--check` loads the unit directory
//! as the daemon would and prints the start order or every error (like
//! `nginx -t`); `runtime ...` is the container runtime on its own.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::supervisor::config::Config;
use crate::supervisor::daemon::{Options, Paths};
use crate::units::graph::start_order;
use crate::units::load_dir;

/// Run containers from TOML unit files and keep them in their desired state.
#[derive(Debug, Parser)]
#[command(name = "supervisord", version, about)]
pub struct Args {
    /// Directory of unit files [default: /etc/units.d].
    #[arg(long, env = "SUPERVISOR_UNITS")]
    pub units: Option<PathBuf>,
    /// Images, volumes and container layers [default: /var/lib/supervisor].
    #[arg(long)]
    pub state_dir: Option<PathBuf>,
    /// Control socket and runtime state [default: /run/supervisor].
    #[arg(long)]
    pub run_dir: Option<PathBuf>,
    /// Unit logs [default: /var/log/supervisor].
    #[arg(long)]
    pub log_dir: Option<PathBuf>,
    /// Global configuration file [default: /etc/supervisor/supervisord.toml].
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Load the units, print the start order or the errors, and exit.
    #[arg(long)]
    pub check: bool,
    /// With --check: print each image the units name (as the store records
    /// it, one per line) instead of the start order.
    #[arg(long, requires = "check")]
    pub images: bool,
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
    /// Create one container for a supervisor (the spawn helper; its
    /// protocol is on stdin).
    #[command(hide = true)]
    Spawn,
    /// Run a command in a running container (started by run-unit) and exit
    /// with its code: 126 when it cannot be run, 127 when it is not there.
    Exec {
        /// Give the command a pseudo-terminal (as `docker exec -t`).
        #[arg(short, long)]
        tty: bool,
        /// Kill the command (its whole process group) after this long and
        /// exit 124.
        #[arg(long, value_parser = humantime::parse_duration)]
        timeout: Option<std::time::Duration>,
        /// The container (unit) name.
        name: String,
        /// The command and its arguments.
        #[arg(last = true, required = true)]
        command: Vec<String>,
    },
}

pub fn run(args: Args) -> ExitCode {
    if let Some(Command::Runtime(RuntimeCommand::Spawn)) = &args.command {
        return ExitCode::from(crate::runtime::container::serve_spawn_helper());
    }
    let default_config = PathBuf::from("/etc/supervisor/supervisord.toml");
    let config = match Config::load(args.config.as_ref().unwrap_or(&default_config), args.config.is_some()) {
        Ok(c) => c,
        Err(e) => {
            errln!("supervisord: {e}");
            return ExitCode::from(2);
        }
    };
    // Absolute: paths in unit files are relative to the unit's directory,
    // and a relative one would be read from wherever a container is made.
    let pick = |flag: &Option<PathBuf>, conf: &Option<PathBuf>, default: &str| {
        let p = flag.clone().or_else(|| conf.clone()).unwrap_or_else(|| PathBuf::from(default));
        std::path::absolute(&p).unwrap_or(p)
    };
    let paths = Paths {
        units: pick(&args.units, &config.units, "/etc/units.d"),
        state_dir: pick(&args.state_dir, &config.state_dir, "/var/lib/supervisor"),
        run_dir: pick(&args.run_dir, &config.run_dir, crate::supervisor::config::DEFAULT_RUN_DIR),
        log_dir: pick(&args.log_dir, &config.log_dir, "/var/log/supervisor"),
    };
    run_with(args, paths, config)
}

fn run_with(args: Args, paths: Paths, config: Config) -> ExitCode {
    if let Some(Command::Runtime(RuntimeCommand::Run { bundle, id })) = &args.command {
        return match crate::runtime::container::run_bundle(bundle, id) {
            Ok(code) => ExitCode::from(code.clamp(0, 255) as u8),
            Err(e) => {
                errln!("supervisord: {e}");
                ExitCode::from(e.exit_code())
            }
        };
    }
    if let Some(Command::Runtime(RuntimeCommand::RunUnit { log, file })) = &args.command {
        // Its container is cloned from this process: from a protected form of it.
        if let Err(e) = crate::runtime::container::reexec_protected() {
            errln!("supervisord: {e}");
            return ExitCode::from(e.exit_code());
        }
        // Beside a daemon, its start (which takes every container of the
        // run directory for an earlier one's leftover) would remove ours.
        let owner = std::fs::create_dir_all(&paths.run_dir)
            .map_err(|source| crate::runtime::container::OwnerError::Open { path: paths.run_dir.clone(), source })
            .and_then(|()| crate::runtime::container::own(&paths.run_dir, false));
        let _owner = match owner {
            Ok(o) => o,
            Err(e) => {
                errln!("supervisord: {e}: give run-unit another --run-dir");
                return ExitCode::from(125);
            }
        };
        return match crate::supervisor::run::run_unit(file, &paths.state_dir, &paths.run_dir, log.as_deref()) {
            Ok(code) => ExitCode::from(code.clamp(0, 255) as u8),
            Err(e) => {
                errln!("supervisord: {e}");
                ExitCode::from(e.exit_code())
            }
        };
    }
    if let Some(Command::Runtime(RuntimeCommand::Cleanup)) = &args.command {
        if !paths.run_dir.exists() {
            return ExitCode::SUCCESS;
        }
        // The containers of a live owner are not leftovers.
        let _owner = match crate::runtime::container::own(&paths.run_dir, true) {
            Ok(o) => o,
            Err(e) => {
                errln!("supervisord: {e}: its containers are not leftovers; stop it first");
                return ExitCode::from(1);
            }
        };
        for name in crate::runtime::container::clean_up(&paths.run_dir).containers {
            outln!("removed {name}");
        }
        crate::supervisor::config::remove_cgroup_instance(&paths.run_dir);
        return ExitCode::SUCCESS;
    }
    if let Some(Command::Runtime(RuntimeCommand::Exec { tty, timeout, name, command })) = &args.command {
        use crate::runtime::container::ContainerState;
        use crate::runtime::container::{exec, reexec_protected};
        let result = ContainerState::load(&paths.run_dir, name).and_then(|state| {
            reexec_protected()?;
            exec(&state, command.clone(), *tty, true, *timeout)
        });
        return match result {
            Ok(code) => ExitCode::from(code.clamp(0, 255) as u8),
            Err(e) => {
                errln!("supervisord: {e}");
                ExitCode::from(e.exit_code())
            }
        };
    }
    if !args.check {
        let (socket_group, log_group) = match config.socket_gid().and_then(|s| Ok((s, config.log_gid()?))) {
            Ok(g) => g,
            Err(e) => {
                errln!("supervisord: {e}");
                return ExitCode::from(2);
            }
        };
        let subnet = config.network.subnet.as_deref().unwrap_or(crate::runtime::network::DEFAULT_SUBNET);
        let subnet = match crate::runtime::network::ipam::Subnet::parse(subnet) {
            Ok(s) => s,
            Err(e) => {
                errln!("supervisord: [network] subnet: {e}");
                return ExitCode::from(2);
            }
        };
        let bridge = config.network.bridge.clone().unwrap_or_else(|| "sv0".to_string());
        if bridge.is_empty() || bridge.len() > 15 || bridge.contains(['/', ' ']) {
            errln!("supervisord: [network] bridge: {bridge:?} is not an interface name (1-15 characters)");
            return ExitCode::from(2);
        }
        let uplink = match config.uplink.as_ref().map(|u| u.address().map(|a| (u, a))).transpose() {
            Ok(u) => u.map(|(u, (address, prefix))| crate::supervisor::daemon::Uplink {
                interface: u.interface.clone(),
                address,
                prefix,
                gateway: u.gateway,
            }),
            Err(e) => {
                errln!("supervisord: {e}");
                return ExitCode::from(2);
            }
        };
        let options = Options {
            paths,
            bridge: Some(crate::runtime::network::bridge::Config { name: bridge, subnet }),
            insecure_registries: config.insecure_registries.clone(),
            authfile: config.authfile.clone().unwrap_or_else(|| PathBuf::from("/etc/supervisor/auth.json")),
            registry_timeout: config.registry_timeout,
            max_image_size: config.max_image_size,
            socket_group,
            log_group,
            modules: config.modules.clone(),
            control_port: config.control_port.clone(),
            uplink,
            auto_update_interval: config.auto_update_interval,
            metrics: config.metrics,
        };
        return ExitCode::from(crate::supervisor::daemon::run(options));
    }
    let set = match load_dir(&paths.units) {
        Ok(set) => set,
        Err(e) => {
            errln!("supervisord: {}: {e}", paths.units.display());
            return ExitCode::from(2);
        }
    };
    let color = super::stderr_color();
    for e in &set.errors {
        let _ = std::io::Write::write_all(&mut std::io::stderr(), e.render(color).as_bytes());
    }
    let units: Vec<_> = set.units.iter().map(|u| &u.unit).collect();
    if args.images {
        let refs: std::collections::BTreeSet<String> = units.iter().map(|u| u.container.image.to_string()).collect();
        for r in refs {
            outln!("{r}");
        }
        return if set.errors.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(1) };
    }
    for (step, group) in start_order(&units).iter().enumerate() {
        outln!("start step {}: {}", step + 1, group.join(", "));
    }
    if set.errors.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(1) }
}
