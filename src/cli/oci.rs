//! `supervisor-runtime`: our runtime behind runc's command line, for the
//! engines that drive one (podman's conmon, containerd's runc shim). See
//! docs/runtime.md. The operations live in [`crate::runtime::oci`]; this is
//! their command line, their output and their error log.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

use crate::runtime::oci::{self, OciError};

mod verbs;

#[derive(Parser, Debug)]
#[command(
    name = "supervisor-runtime",
    about = "An OCI runtime with runc's command line (the runtime of supervisord)",
    disable_version_flag = true
)]
pub struct Cli {
    /// Where containers' state is kept.
    #[arg(long, global = true, default_value = "/run/supervisor-runtime", value_name = "DIR")]
    root: PathBuf,
    /// Also write errors to this file (the engine reads it).
    #[arg(long, global = true, value_name = "FILE")]
    log: Option<PathBuf>,
    #[arg(long = "log-format", global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// Accepted for runc's sake; changes nothing yet.
    #[arg(long, global = true)]
    debug: bool,
    /// Refused: this runtime has no systemd cgroup driver.
    #[arg(long = "systemd-cgroup", global = true)]
    systemd_cgroup: bool,
    /// Print the version (runc's format).
    #[arg(short = 'v', long = "version")]
    version: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Set a container up from a bundle; its program waits for `start`.
    Create(CreateArgs),
    /// Let a created container's program run, then run its poststart hooks.
    Start { id: String },
    /// Create, start and wait for a container, then delete it; exit with
    /// its code.
    Run(CreateArgs),
    /// Run a process in a running container.
    Exec(ExecArgs),
    /// Print the container's state (OCI state JSON).
    State { id: String },
    /// Send a signal (default SIGTERM) to the container's first process.
    Kill {
        /// To every process of the container.
        #[arg(short, long)]
        all: bool,
        id: String,
        #[arg(default_value = "SIGTERM")]
        signal: String,
    },
    /// Remove a stopped container, then run its poststop hooks.
    Delete {
        /// Kill it first if it is created, running or paused.
        #[arg(short, long)]
        force: bool,
        id: String,
    },
    /// List the containers.
    #[command(alias = "ls")]
    List {
        #[arg(short, long, value_enum, default_value_t = Format::Table)]
        format: Format,
        /// Only the IDs.
        #[arg(short, long)]
        quiet: bool,
    },
    /// The container's processes.
    Ps {
        #[arg(short, long, value_enum, default_value_t = Format::Table)]
        format: Format,
        id: String,
    },
    /// Change the container's limits (runc's flags, or an OCI
    /// LinuxResources object); what is not given stays.
    Update(verbs::UpdateArgs),
    /// Print the container's events: stats every interval and OOM kills
    /// (JSON, one a line), or with --stats one stats object.
    Events(verbs::EventsArgs),
    /// Freeze every process of the container.
    Pause { id: String },
    /// Thaw a paused container.
    Resume { id: String },
    /// Write a default config.json into the current directory.
    Spec {
        /// The bundle directory to write it in.
        #[arg(short, long, default_value = ".")]
        bundle: PathBuf,
    },
    /// Print the features document (what this runtime understands).
    Features,
}

#[derive(clap::Args, Debug)]
struct CreateArgs {
    /// The bundle: config.json and the root filesystem.
    #[arg(short, long, default_value = ".")]
    bundle: PathBuf,
    /// Write the container's first process's pid here.
    #[arg(long = "pid-file", value_name = "FILE")]
    pid_file: Option<PathBuf>,
    /// Where the container's terminal goes (a pseudo-terminal master sent
    /// over this unix socket), when its spec asks for one.
    #[arg(long = "console-socket", value_name = "SOCKET")]
    console_socket: Option<PathBuf>,
    /// Accepted (pivot_root is always used: it is the safe way).
    #[arg(long = "no-pivot")]
    no_pivot: bool,
    /// Accepted (no session keyring is made).
    #[arg(long = "no-new-keyring")]
    no_new_keyring: bool,
    /// Pass our descriptors 3 to 3+N-1 on to the container's program.
    #[arg(long = "preserve-fds", default_value_t = 0, value_name = "N")]
    preserve_fds: u32,
    id: String,
}

#[derive(clap::Args, Debug)]
struct ExecArgs {
    /// The process (a runtime-spec `process` object, JSON); else CMD and
    /// the options below.
    #[arg(short, long, value_name = "FILE")]
    process: Option<PathBuf>,
    /// Return once it runs; its engine reaps it.
    #[arg(short, long)]
    detach: bool,
    /// Write the process's pid here.
    #[arg(long = "pid-file", value_name = "FILE")]
    pid_file: Option<PathBuf>,
    /// Where the process's terminal goes (a pseudo-terminal master sent
    /// over this unix socket), when it has one (--tty, or the process's
    /// `terminal`).
    #[arg(long = "console-socket", value_name = "SOCKET")]
    console_socket: Option<PathBuf>,
    /// Give the command a terminal (needs --console-socket).
    #[arg(short, long)]
    tty: bool,
    /// Its working directory (default: the container's).
    #[arg(long, value_name = "DIR")]
    cwd: Option<String>,
    /// A variable on top of the container's environment (repeatable).
    #[arg(short, long, value_name = "K=V")]
    env: Vec<String>,
    /// UID[:GID] (default: the container's user; its group unless given).
    #[arg(short, long, value_name = "UID:GID")]
    user: Option<String>,
    /// Pass our descriptors 3 to 3+N-1 on to it.
    #[arg(long = "preserve-fds", default_value_t = 0, value_name = "N")]
    preserve_fds: u32,
    id: String,
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    command: Vec<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Format {
    Table,
    Json,
}

/// A failure, with the exit code it means.
struct Failure {
    message: String,
    code: u8,
}

impl From<OciError> for Failure {
    fn from(e: OciError) -> Failure {
        let code = match &e {
            OciError::Runtime(r) => r.exit_code(),
            _ => 1,
        };
        Failure { message: e.to_string(), code }
    }
}

fn failure(message: impl Into<String>) -> Failure {
    Failure { message: message.into(), code: 1 }
}

pub fn run(cli: Cli) -> ExitCode {
    let result = execute(&cli);
    match result {
        Ok(code) => ExitCode::from(code),
        Err(f) => {
            log_error(&cli, &f.message);
            errln!("supervisor-runtime: {}", f.message);
            ExitCode::from(f.code)
        }
    }
}

fn execute(cli: &Cli) -> Result<u8, Failure> {
    if cli.version {
        outln!("supervisor-runtime version {}", env!("CARGO_PKG_VERSION"));
        outln!("spec: {}", oci::SPEC_VERSION);
        return Ok(0);
    }
    if cli.systemd_cgroup {
        return Err(failure("--systemd-cgroup: this runtime has no systemd cgroup driver; use cgroupfs paths"));
    }
    let Some(command) = &cli.command else {
        return Err(failure("no command; see --help"));
    };
    let root = cli.root.as_path();
    match command {
        Command::Create(args) => create(root, args)?,
        Command::Start { id } => warn(cli, oci::start(root, id)?),
        Command::Run(args) => return run_container(cli, args),
        Command::Exec(args) => return exec(root, args),
        Command::State { id } => print_json(&oci::state(root, id)?),
        Command::Kill { all, id, signal } => oci::kill(root, id, oci::parse_signal(signal)?, *all)?,
        Command::Delete { force, id } => warn(cli, oci::delete(root, id, *force)?),
        Command::List { format, quiet } => list(root, *format, *quiet)?,
        Command::Ps { format, id } => ps(root, id, *format)?,
        Command::Update(args) => verbs::update(root, args)?,
        Command::Events(args) => verbs::events(root, args)?,
        Command::Pause { id } => oci::pause(root, id, true)?,
        Command::Resume { id } => oci::pause(root, id, false)?,
        Command::Spec { bundle } => write_spec(bundle)?,
        Command::Features => print_json(&oci::features()),
    }
    Ok(0)
}

fn create(root: &Path, args: &CreateArgs) -> Result<(), Failure> {
    let _ = (args.no_pivot, args.no_new_keyring);
    let (pid_file, console) = (args.pid_file.as_deref(), args.console_socket.as_deref());
    Ok(oci::create(root, &args.id, &args.bundle, pid_file, console, args.preserve_fds)?)
}

/// Hooks that failed where the spec makes a failure a warning
/// (`poststart`, `poststop`): on stderr and in the log.
fn warn(cli: &Cli, warnings: Vec<oci::hooks::HookError>) {
    for w in warnings {
        log_line(cli, "warning", &w.to_string());
        errln!("supervisor-runtime: warning: {w}");
    }
}

/// `run`: the container is our child; its exit code is ours.
fn run_container(cli: &Cli, args: &CreateArgs) -> Result<u8, Failure> {
    let root = cli.root.as_path();
    create(root, args)?;
    let pid = oci::state(root, &args.id)?.pid;
    let started = oci::start(root, &args.id);
    let code = match started {
        Ok(warnings) => {
            warn(cli, warnings);
            wait(pid)
        }
        Err(e) => Err(e.into()),
    };
    let deleted = oci::delete(root, &args.id, true);
    let code = code?;
    warn(cli, deleted?);
    Ok(code)
}

fn exec(root: &Path, args: &ExecArgs) -> Result<u8, Failure> {
    let what = match &args.process {
        Some(path) => {
            let text = std::fs::read(path).map_err(|e| failure(format!("{}: {e}", path.display())))?;
            let process = serde_json::from_slice(&text).map_err(|e| failure(format!("{}: {e}", path.display())))?;
            oci::Exec::Process(Box::new(process))
        }
        None => command_line(args)?,
    };
    let options = oci::ExecOptions {
        detach: args.detach,
        pid_file: args.pid_file.as_deref(),
        console_socket: args.console_socket.as_deref(),
        preserve_fds: args.preserve_fds,
    };
    let code = oci::exec(root, &args.id, &what, &options)?;
    Ok(u8::try_from(code).unwrap_or(255))
}

/// `exec ID CMD...`: the flags given, the rest the container's (runc's way).
fn command_line(args: &ExecArgs) -> Result<oci::Exec, Failure> {
    if args.command.is_empty() {
        return Err(failure("exec: no command (give CMD or --process FILE)"));
    }
    let user = match &args.user {
        None => None,
        Some(spec) => {
            let number =
                |s: &str| s.parse::<u32>().map_err(|_| failure(format!("--user {spec:?}: UID[:GID], numbers")));
            match spec.split_once(':') {
                Some((uid, gid)) => Some((number(uid)?, Some(number(gid)?))),
                None => Some((number(spec)?, None)),
            }
        }
    };
    if let Some(bad) = args.env.iter().find(|e| !e.contains('=')) {
        return Err(failure(format!("--env {bad:?}: K=V")));
    }
    let command = oci::CommandLine { user, cwd: args.cwd.clone(), env: args.env.clone(), tty: args.tty };
    Ok(oci::Exec::Command(args.command.clone(), command))
}

fn wait(pid: i32) -> Result<u8, Failure> {
    use nix::sys::wait::{WaitStatus, waitpid};
    loop {
        match waitpid(nix::unistd::Pid::from_raw(pid), None) {
            Ok(WaitStatus::Exited(_, code)) => return Ok(code as u8),
            Ok(WaitStatus::Signaled(_, signal, _)) => return Ok(128u8.saturating_add(signal as u8)),
            Ok(_) | Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(failure(format!("wait for the container: {e}"))),
        }
    }
}

fn print_json(value: &impl serde::Serialize) {
    match serde_json::to_string_pretty(value) {
        Ok(text) => outln!("{text}"),
        Err(e) => errln!("supervisor-runtime: {e}"),
    }
}

fn list(root: &Path, format: Format, quiet: bool) -> Result<(), Failure> {
    let states = oci::list(root)?;
    if quiet {
        for s in &states {
            outln!("{}", s.id);
        }
    } else if format == Format::Json {
        print_json(&states);
    } else {
        outln!("{:<24} {:<8} {:<10} {:<40} {:<32} OWNER", "ID", "PID", "STATUS", "BUNDLE", "CREATED");
        for s in &states {
            outln!(
                "{:<24} {:<8} {:<10} {:<40} {:<32} {}",
                s.id,
                s.pid,
                s.status,
                s.bundle.display(),
                s.created,
                if s.owner.is_empty() { "root" } else { &s.owner }
            );
        }
    }
    Ok(())
}

fn ps(root: &Path, id: &str, format: Format) -> Result<(), Failure> {
    let pids = oci::pids(root, id)?;
    if format == Format::Json {
        print_json(&pids);
        return Ok(());
    }
    outln!("{:<8} CMD", "PID");
    for pid in pids {
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let words: Vec<String> =
            cmdline.split(|b| *b == 0).filter(|w| !w.is_empty()).map(|w| String::from_utf8_lossy(w).into()).collect();
        outln!("{pid:<8} {}", words.join(" "));
    }
    Ok(())
}

fn write_spec(bundle: &Path) -> Result<(), Failure> {
    let path = bundle.join("config.json");
    let text = serde_json::to_vec_pretty(&oci::default_spec()).map_err(|e| failure(e.to_string()))?;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
        .map_err(|e| failure(format!("{}: {e}", path.display())))?;
    file.write_all(&text).map_err(|e| failure(format!("{}: {e}", path.display())))
}

/// runc's log line, where the engine looks for the reason of a failure.
fn log_error(cli: &Cli, message: &str) {
    log_line(cli, "error", message);
}

fn log_line(cli: &Cli, level: &str, message: &str) {
    let Some(path) = &cli.log else { return };
    let time = humantime::format_rfc3339_nanos(std::time::SystemTime::now()).to_string();
    let line = match cli.log_format {
        LogFormat::Json => serde_json::json!({ "level": level, "msg": message, "time": time }).to_string(),
        LogFormat::Text => format!("time={time:?} level={level} msg={message:?}"),
    };
    if let Ok(mut f) = std::fs::OpenOptions::new().append(true).create(true).open(path) {
        let _ = writeln!(f, "{line}");
    }
}
