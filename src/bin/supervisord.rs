use std::process::ExitCode;

use clap::Parser;
use supervisor::cli::daemon;

fn main() -> ExitCode {
    daemon::run(daemon::Args::parse())
}
