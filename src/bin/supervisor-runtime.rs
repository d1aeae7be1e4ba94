use std::process::ExitCode;

use clap::Parser;
use supervisor::cli::oci;

fn main() -> ExitCode {
    oci::run(oci::Cli::parse())
}
