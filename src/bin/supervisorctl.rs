use std::process::ExitCode;

use clap::Parser;
use supervisor::cli::ctl;

fn main() -> ExitCode {
    ctl::run(ctl::Cli::parse())
}
