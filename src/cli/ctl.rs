//! `supervisorctl`: the operator's tool.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use super::client::Client;
use super::container;
use super::control;
use super::copy;
use super::generate::{self, KubeArgs};
use super::images::{self, StoreArgs};
use super::import;
use super::push;
use super::unit_files;
use super::updates;
use super::validate;

/// Control and inspect supervisord, and check unit files offline.
#[derive(Debug, Parser)]
#[command(name = "supervisorctl", version, about, propagate_version = true)]
pub struct Cli {
    /// The control socket of supervisord.
    #[arg(
        long,
        global = true,
        value_name = "PATH",
        env = "SUPERVISOR_SOCKET",
        default_value = "/run/supervisor/control.sock"
    )]
    pub socket: PathBuf,
    /// Work on this state directory (images) directly, without a daemon;
    /// the same layout as supervisord's --state-dir. Without it, image
    /// verbs go to a running supervisord, or else to /var/lib/supervisor.
    #[arg(long, global = true, value_name = "DIR", env = "SUPERVISOR_STORE")]
    pub store: Option<PathBuf>,
    /// Registry credentials, as auth.json ({"auths": {"HOST": {"auth": base64(user:pass)}}}).
    #[arg(long, global = true, value_name = "PATH", default_value = "/etc/supervisor/auth.json")]
    pub authfile: PathBuf,
    /// Reach this registry (HOST[:PORT]) over plain HTTP; loopback registries always are.
    #[arg(long = "insecure-registry", global = true, value_name = "HOST")]
    pub insecure_registry: Vec<String>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check unit files offline: every error with file:line:column.
    ///
    /// Exit status: 0 when every unit is valid, 1 when any file is invalid
    /// or unreadable, 2 for bad usage or a PATH that cannot be read at all.
    Validate {
        /// Unit files or directories of unit files.
        #[arg(default_value = "/etc/units.d")]
        paths: Vec<PathBuf>,
        /// Print {"units": [...], "errors": [...]} on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Pull an image into the store and print its digest.
    Pull {
        /// A registry reference (nginx:1.27) or oci:, oci-archive:, docker-archive:, dir: source.
        reference: String,
    },
    /// Load the images of an archive (OCI archive or `docker save`) into the store.
    ///
    /// Each image takes the names it carries (RepoTags, or
    /// org.opencontainers.image.ref.name). Through a running supervisord
    /// the archive is streamed over the control socket (so it works on an
    /// appliance's serial control path too).
    Load {
        /// The archive.
        file: PathBuf,
        /// Store the archive's one image under this name (NAME:TAG),
        /// needed when it carries none.
        #[arg(long, value_name = "NAME")]
        name: Option<String>,
    },
    /// List the images in the store.
    Images {
        #[arg(long)]
        json: bool,
    },
    /// Remove an image, and the layers no other image uses.
    Rmi { reference: String },
    /// Remove the images that no unit names, and unused layers.
    Prune {
        /// The unit files whose images are kept.
        #[arg(long, default_value = "/etc/units.d")]
        units: PathBuf,
    },
    /// Check the store: every blob's digest, every image against its blobs
    /// and layers, leftovers of interrupted pulls and volume seedings, the
    /// containers' records and writable layers. One line per problem.
    ///
    /// Exit status: 0 when everything is consistent (after the repair, with
    /// --repair), 1 when something is wrong.
    Verify {
        /// Remove what is half-made or corrupt (an image that needs a
        /// corrupt blob loses its record, so its next start pulls it
        /// again), and make missing layers again from their stored blobs.
        #[arg(long)]
        repair: bool,
        /// With --store: the run directory, whose container records are
        /// checked against the writable layers.
        #[arg(long, value_name = "DIR")]
        run_dir: Option<PathBuf>,
        /// Print {"problems": [...], "repaired": [...], "remaining": [...]}.
        #[arg(long)]
        json: bool,
    },
    /// Write an image's merged root filesystem into DIR (new or empty).
    Export { reference: String, dir: PathBuf },
    /// Write an image of the store into an archive that `load`,
    /// `podman load`, `docker load` and `skopeo copy` read.
    Save {
        reference: String,
        file: PathBuf,
        #[arg(long, value_enum, default_value = "oci-archive")]
        format: images::SaveFormat,
    },
    /// Push an image of the store to a registry, as DEST (REGISTRY/NAME:TAG).
    ///
    /// Blobs the registry has are skipped, blobs another repository of it
    /// is known to hold (the image was pulled from there or pushed there)
    /// are mounted, the others uploaded; the manifest goes last, as the
    /// store holds it, so the image ID is the same there. A bare name is
    /// normalized as pull does (app is docker.io/library/app:latest).
    /// Credentials: --authfile; through a running supervisord, its own
    /// (its `authfile`). Root only.
    Push {
        /// The image in the store, as `images` lists it.
        reference: String,
        /// Where to: REGISTRY/NAME:TAG.
        dest: String,
        /// Upload blobs larger than SIZE in chunks of SIZE (bytes, or with
        /// a k, M or G suffix); smaller ones in one request.
        #[arg(long, value_name = "SIZE", default_value = "64M")]
        chunk_size: String,
        /// Print {"reference", "destination", "manifest_digest", "blobs":
        /// [{"digest", "size", "how", "from", "chunks"}]}.
        #[arg(long)]
        json: bool,
    },
    /// One line per unit (or the named ones); exit 0 when all run, 3 when
    /// any does not.
    Status {
        units: Vec<String>,
        #[arg(long)]
        json: bool,
    },
    /// Start units (also ones an operator stopped) and wait until they run.
    Start {
        #[arg(required = true)]
        units: Vec<String>,
        /// Do not wait for the outcome.
        #[arg(long)]
        no_block: bool,
        #[arg(long)]
        json: bool,
    },
    /// Stop units and hold them stopped (across reloads) until `start`.
    Stop {
        #[arg(required = true)]
        units: Vec<String>,
        #[arg(long)]
        no_block: bool,
        #[arg(long)]
        json: bool,
    },
    /// Stop units and start them anew.
    Restart {
        #[arg(required = true)]
        units: Vec<String>,
        #[arg(long)]
        no_block: bool,
        #[arg(long)]
        json: bool,
    },
    /// Freeze every process of running units (the cgroup freezer), as
    /// `docker pause`: state `paused`, no health probes, no restarts,
    /// until `unpause`. A stop thaws a paused unit first. Pausing a paused
    /// unit is no error.
    ///
    /// Exit status: 0 when every unit is paused, 1 when any is not (not
    /// running, unknown, or the freeze failed).
    Pause {
        #[arg(required = true)]
        units: Vec<String>,
        /// Print each unit's status, as `status --json`.
        #[arg(long)]
        json: bool,
    },
    /// Thaw paused units: they run again, and their probes with them.
    ///
    /// Exit status: 0 when every unit runs again, 1 when any was not
    /// paused or could not be thawed.
    Unpause {
        #[arg(required = true)]
        units: Vec<String>,
        /// Print each unit's status, as `status --json`.
        #[arg(long)]
        json: bool,
    },
    /// Read the unit directory again and apply the difference (or, with
    /// --dry-run, print what would be done). Exit 1 if any file is invalid.
    Reload {
        #[arg(long)]
        dry_run: bool,
        #[arg(long)]
        json: bool,
    },
    /// Put unit files into supervisord's unit directory and apply them
    /// (as an edit of the files there is): each checked here, then by
    /// supervisord against its whole directory, and written only if every
    /// one loads and no unit that loads now would stop loading. Relative
    /// paths in a file (env_file, binds, local images) are the daemon's:
    /// relative to its unit directory.
    ///
    /// Exit status: 0 when applied (or, with --dry-run, when it would be),
    /// 1 when refused: nothing is written then.
    Apply {
        /// Unit files (NAME.toml) or directories of them.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// Only check, and print what would be done.
        #[arg(long)]
        dry_run: bool,
        #[arg(long)]
        json: bool,
    },
    /// Remove units' files from supervisord's unit directory: each unit
    /// stops and its container goes (named volumes stay). Refused when a
    /// remaining unit requires one of them.
    Remove {
        #[arg(required = true)]
        units: Vec<String>,
        /// Only print what would be done.
        #[arg(long)]
        dry_run: bool,
        #[arg(long)]
        json: bool,
    },
    /// Print a unit's file as supervisord reads it.
    Cat { unit: String },
    /// Go back to the unit's previous good config and image (one step:
    /// a second rollback returns), through the same health-gated trial as
    /// an update, and wait for its outcome.
    ///
    /// Exit status: 0 when the rollback succeeded (or the unit does not
    /// run, and its next start takes the previous config), 1 when it was
    /// refused (nothing to roll back to) or its trial failed.
    Rollback {
        unit: String,
        /// Do not wait for the outcome.
        #[arg(long)]
        no_block: bool,
        #[arg(long)]
        json: bool,
    },
    /// Check the registry for new images of the units with
    /// auto = "registry" (all, or the named ones), pull them and roll them
    /// out, each going back to the image it ran if the new one fails.
    ///
    /// Exit status: 0 when every unit is up to date or updated, 1 when any
    /// failed or was rolled back.
    Update {
        units: Vec<String>,
        /// Only list the units whose tag names another image, with both
        /// image IDs.
        #[arg(long)]
        dry_run: bool,
        /// Do not wait for the new images' trials.
        #[arg(long)]
        no_block: bool,
        #[arg(long)]
        json: bool,
    },
    /// Send a signal to a unit's main process (no restart is counted).
    Kill {
        #[arg(short, long, default_value = "SIGTERM")]
        signal: String,
        unit: String,
    },
    /// A unit's output, `TIME STREAM TEXT` per line.
    Logs {
        /// Keep printing new lines.
        #[arg(short, long)]
        follow: bool,
        /// Only the last N lines.
        #[arg(short = 'n', long = "tail", value_name = "N")]
        tail: Option<usize>,
        /// Only lines since a time (RFC 3339) or a duration ago (10m).
        #[arg(long, value_name = "T")]
        since: Option<String>,
        unit: String,
    },
    /// Run a command in a unit's container; exit with its code (126 when
    /// it cannot be run, 127 when it is not found).
    Exec {
        /// Keep stdin open.
        #[arg(short, long)]
        interactive: bool,
        /// Allocate a pseudo-terminal.
        #[arg(short, long)]
        tty: bool,
        unit: String,
        #[arg(last = true, required = true)]
        command: Vec<String>,
    },
    /// The unit's normalized config, state, resource usage and last exits (JSON).
    Inspect { unit: String },
    /// Resource use of the running units (or the named ones): CPU % of one
    /// core, memory and its limit, processes, network and block I/O.
    /// Refreshed every second on a terminal; one snapshot otherwise.
    Stats {
        units: Vec<String>,
        /// One snapshot, also on a terminal.
        #[arg(long)]
        no_stream: bool,
        /// One snapshot as [{"name", "cpu_percent", "memory_bytes", ...}].
        #[arg(long)]
        json: bool,
    },
    /// The processes of the unit's container: host PID, PID in the
    /// container, user ID, CPU % (over each one's life), resident memory,
    /// start time, command.
    Top {
        unit: String,
        /// Print [{"pid", "container_pid", "uid", "cpu_percent", "rss_bytes", "started", "command"}].
        #[arg(long)]
        json: bool,
    },
    /// What the unit's container changed in its root filesystem, as
    /// `docker diff`: A added, C changed, D deleted.
    Diff {
        unit: String,
        /// Print [{"kind", "path"}].
        #[arg(long)]
        json: bool,
    },
    /// Copy files or directories between a unit's running container and
    /// the host, as `docker cp`: `cp UNIT:PATH DEST` or `cp SRC UNIT:PATH`.
    ///
    /// A file goes into an existing directory under its own name, over an
    /// existing file, or becomes a new file named DEST; a directory goes
    /// into an existing directory under its own name (its contents alone
    /// when SRC ends in `/.`), or becomes a new directory named DEST.
    /// Owners, modes, times and symlinks are kept. `-` as DEST writes a
    /// tar to standard output; `-` as SRC reads a tar from standard input
    /// and extracts it into the directory UNIT:PATH. Paths in the container
    /// are resolved in its root: a symlink there never leads to a host file.
    Cp {
        /// Follow a symlink at the end of SRC (in the container, inside its root).
        #[arg(short = 'L', long)]
        follow_link: bool,
        /// UNIT:PATH, a host path, or - for a tar on standard input.
        src: String,
        /// UNIT:PATH, a host path, or - for a tar on standard output.
        dest: String,
    },
    /// Make an image of a unit's container: its image with what the
    /// container changed in its files as a new layer, recorded in the
    /// store as REF (NAME:TAG) for units to run, as `docker commit`.
    ///
    /// A running container is paused while its files are read (unless
    /// --pause=false). Prints the new image's ID.
    Commit {
        unit: String,
        /// The new image's name (NAME:TAG).
        reference: String,
        /// Edit the new image's config with a Dockerfile instruction: CMD,
        /// ENTRYPOINT, ENV, EXPOSE, LABEL, USER or WORKDIR (repeatable).
        #[arg(short, long = "change", value_name = "INSTRUCTION")]
        changes: Vec<String>,
        /// Pause a running container while its files are read.
        #[arg(short, long, default_value_t = true, action = clap::ArgAction::Set, value_name = "BOOL")]
        pause: bool,
        /// Print {"unit", "reference", "id", "layer", "size"}.
        #[arg(long)]
        json: bool,
    },
    /// A live stream of state changes.
    Events {
        #[arg(long)]
        json: bool,
    },
    /// Named volumes and the units that use them.
    Volumes {
        #[arg(long)]
        json: bool,
    },
    /// Named volume commands.
    #[command(subcommand)]
    Volume(VolumeCommand),
    /// Translate another tool's files into unit files.
    #[command(subcommand)]
    Import(ImportCommand),
    /// When each step of supervisord's start was done, from the kernel's
    /// clock (time since it started): as an appliance's init, its boot.
    Boot {
        #[arg(long)]
        json: bool,
    },
    /// Stop every unit and power off (supervisord as PID 1 only).
    Poweroff,
    /// Stop every unit and reboot (supervisord as PID 1 only).
    Reboot,
    /// Write unit files as another tool's configuration.
    #[command(subcommand)]
    Generate(GenerateCommand),
    /// Write the manual pages and shell completions of both programs into
    /// DIR (for packaging).
    #[command(hide = true)]
    GenerateDocs { dir: PathBuf },
}

#[derive(Debug, Subcommand)]
pub enum ImportCommand {
    /// Write one unit file per service of a Compose file, offline.
    ///
    /// Variables are interpolated as Compose does, from the environment
    /// and the .env file beside FILE (the environment wins). Every key
    /// that is not carried is listed on stderr as FILE:LINE: PATH: not
    /// carried: why. Unit files that exist are not replaced (without
    /// --force); on an error nothing is written.
    ///
    /// Exit status: 0 when everything was carried, 2 when some key was
    /// not, 1 on an error.
    Compose {
        /// The Compose file (compose.yaml, docker-compose.yml).
        file: PathBuf,
        /// Where to write the unit files (made if missing).
        #[arg(long, value_name = "DIR", default_value = ".")]
        out: PathBuf,
        /// Name units PROJECT-SERVICE and volumes PROJECT_VOLUME, as
        /// Compose names containers and volumes (default: the file's
        /// top-level name:, else the service names alone).
        #[arg(long, short = 'p', value_name = "NAME")]
        project: Option<String>,
        /// Replace unit files that exist.
        #[arg(long)]
        force: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum GenerateCommand {
    /// Units as Kubernetes YAML: a Pod each (valid as a kubelet static
    /// pod), or a Deployment each with a Service for its ports. Units
    /// joining another's network are containers of its Pod. What Kubernetes
    /// cannot say is written as a UNIT.supervisor.io/KEY annotation and
    /// named on stderr (docs/interop.md).
    ///
    /// From a directory of unit files (offline), or from the running
    /// supervisord: the named units, or all of them.
    ///
    /// Exit status: 0 when every key was carried, 2 when some were not
    /// (written as annotations), 1 on error (nothing written).
    Kube {
        /// What to write for each unit (Pod: the default).
        #[arg(long, value_enum, default_value = "pod")]
        kind: KubeKind,
        /// Write the YAML to FILE (atomically) instead of standard output.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
        /// Run REF as UNIT's image (a unit's local oci:, dir: or archive
        /// image is otherwise written as localhost/NAME:TAG).
        #[arg(long = "image", value_name = "UNIT=REF")]
        images: Vec<String>,
        /// A directory of unit files, or names of supervisord's units.
        #[arg(value_name = "DIR | UNIT")]
        targets: Vec<String>,
    },
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum KubeKind {
    Pod,
    Deployment,
}

#[derive(Debug, Subcommand)]
pub enum VolumeCommand {
    /// Remove a named volume (refused while a unit uses it).
    Rm { name: String },
}

pub fn run(cli: Cli) -> ExitCode {
    let client = Client { socket: cli.socket.clone() };
    // Image verbs go to the daemon when one runs and no store is named.
    let daemon = cli.store.is_none() && std::os::unix::net::UnixStream::connect(&cli.socket).is_ok();
    let store = StoreArgs {
        store: cli.store.unwrap_or_else(|| PathBuf::from("/var/lib/supervisor")),
        authfile: cli.authfile,
        insecure: cli.insecure_registry,
    };
    match cli.command {
        Command::Validate { paths, json } => validate::run(&paths, json),
        Command::Pull { reference } if daemon => images::pull_via(&client, &reference),
        Command::Pull { reference } => images::pull(&store, &reference),
        Command::Load { file, name } if daemon => images::load_via(&client, &file, name.as_deref()),
        Command::Load { file, name } => images::load(&store, &file, name.as_deref()),
        Command::Images { json } if daemon => images::images_via(&client, json),
        Command::Images { json } => images::images(&store, json),
        Command::Rmi { reference } if daemon => images::rmi_via(&client, &reference),
        Command::Rmi { reference } => images::rmi(&store, &reference),
        Command::Prune { .. } if daemon => images::prune_via(&client),
        Command::Prune { units } => images::prune(&store, &units),
        Command::Verify { repair, json, .. } if daemon => images::verify_via(&client, repair, json),
        Command::Verify { repair, run_dir, json } => images::verify(&store, run_dir.as_deref(), repair, json),
        Command::Push { reference, dest, chunk_size, json } if daemon => {
            push::push_via(&client, &reference, &dest, &chunk_size, json)
        }
        Command::Push { reference, dest, chunk_size, json } => push::push(&store, &reference, &dest, &chunk_size, json),
        Command::Export { reference, dir } => images::export(&store, &reference, &dir),
        Command::Save { reference, file, format } => images::save(&store, &reference, &file, format),
        Command::Status { units, json } => control::status(&client, &units, json),
        Command::Start { units, no_block, json } => control::op(&client, "start", &units, no_block, json),
        Command::Stop { units, no_block, json } => control::op(&client, "stop", &units, no_block, json),
        Command::Restart { units, no_block, json } => control::op(&client, "restart", &units, no_block, json),
        Command::Reload { dry_run, json } => control::reload(&client, dry_run, json),
        Command::Apply { paths, dry_run, json } => unit_files::apply(&client, &paths, dry_run, json),
        Command::Remove { units, dry_run, json } => unit_files::remove(&client, &units, dry_run, json),
        Command::Cat { unit } => unit_files::cat(&client, &unit),
        Command::Rollback { unit, no_block, json } => updates::rollback(&client, &unit, no_block, json),
        Command::Update { units, dry_run, no_block, json } => updates::update(&client, &units, dry_run, no_block, json),
        Command::Kill { signal, unit } => control::kill(&client, &signal, &unit),
        Command::Logs { follow, tail, since, unit } => control::logs(&client, &unit, follow, tail, since.as_deref()),
        Command::Exec { interactive, tty, unit, command } => control::exec(&client, &unit, interactive, tty, command),
        Command::Inspect { unit } => control::inspect(&client, &unit),
        Command::Diff { unit, json } => container::diff(&client, &unit, json),
        Command::Top { unit, json } => container::top(&client, &unit, json),
        Command::Pause { units, json } => container::pause(&client, "pause", &units, json),
        Command::Unpause { units, json } => container::pause(&client, "unpause", &units, json),
        Command::Stats { units, no_stream, json } => container::stats(&client, &units, no_stream, json),
        Command::Cp { follow_link, src, dest } => copy::cp(&client, &src, &dest, follow_link),
        Command::Commit { unit, reference, changes, pause, json } => {
            container::commit(&client, &unit, &reference, &changes, pause, json)
        }
        Command::Events { json } => control::events(&client, json),
        Command::Volumes { json } => control::volumes(&client, json),
        Command::Volume(VolumeCommand::Rm { name }) => control::volume_rm(&client, &name),
        Command::Import(ImportCommand::Compose { file, out, project, force }) => {
            import::compose(&file, Some(&out), project.as_deref(), force)
        }
        Command::Boot { json } => control::boot(&client, json),
        Command::Poweroff => control::power(&client, "poweroff"),
        Command::Reboot => control::power(&client, "reboot"),
        Command::Generate(GenerateCommand::Kube { kind, out, images, targets }) => {
            let kind = match kind {
                KubeKind::Pod => crate::interop::kube::Kind::Pod,
                KubeKind::Deployment => crate::interop::kube::Kind::Deployment,
            };
            generate::kube(&client, KubeArgs { kind, out, images, targets, state_dir: store.store.clone() })
        }
        Command::GenerateDocs { dir } => match super::docs::generate(&dir) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                errln!("supervisorctl: {}: {e}", dir.display());
                ExitCode::FAILURE
            }
        },
    }
}
