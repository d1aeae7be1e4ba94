//! Command-line interfaces. The clap definitions live in the library (not in
//! `src/bin/`) so that man pages and shell completions can be generated from
//! them; the binaries only parse arguments and call [`ctl::run`] or
//! [`daemon::run`].

pub mod client;
pub mod control;
pub mod ctl;
pub mod daemon;
pub mod docs;
pub mod images;
pub mod progress;
pub mod unit_files;
pub mod updates;
pub mod validate;

use std::io::IsTerminal;

/// Whether to color output written to stderr.
pub(crate) fn stderr_color() -> bool {
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none()
}
