//! `supervisorctl`: the operator's tool.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use super::validate;

/// Control and inspect supervisord, and check unit files offline.
#[derive(Debug, Parser)]
#[command(name = "supervisorctl", version, about, propagate_version = true)]
pub struct Cli {
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
}

pub fn run(cli: Cli) -> ExitCode {
    match cli.command {
        Command::Validate { paths, json } => validate::run(&paths, json),
    }
}
