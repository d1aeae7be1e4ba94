//! `supervisorctl`: the operator's tool.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use super::images::{self, StoreArgs};
use super::validate;

/// Control and inspect supervisord, and check unit files offline.
#[derive(Debug, Parser)]
#[command(name = "supervisorctl", version, about, propagate_version = true)]
pub struct Cli {
    /// Work on this state directory (images, volumes) directly, without a
    /// daemon; the same layout as supervisord's --state-dir.
    #[arg(long, global = true, value_name = "DIR", default_value = "/var/lib/supervisor", env = "SUPERVISOR_STORE")]
    pub store: PathBuf,
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
    /// Write an image's merged root filesystem into DIR (new or empty).
    Export { reference: String, dir: PathBuf },
}

pub fn run(cli: Cli) -> ExitCode {
    let store = StoreArgs { store: cli.store, authfile: cli.authfile, insecure: cli.insecure_registry };
    match cli.command {
        Command::Validate { paths, json } => validate::run(&paths, json),
        Command::Pull { reference } => images::pull(&store, &reference),
        Command::Images { json } => images::images(&store, json),
        Command::Rmi { reference } => images::rmi(&store, &reference),
        Command::Prune { units } => images::prune(&store, &units),
        Command::Export { reference, dir } => images::export(&store, &reference, &dir),
    }
}
