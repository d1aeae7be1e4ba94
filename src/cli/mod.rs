//! Command-line interfaces. The clap definitions live in the library (not in
//! `src/bin/`) so that man pages and shell completions can be generated from
//! them; the binaries only parse arguments and call [`ctl::run`] or
//! [`daemon::run`].

/// `eprintln!` that does not panic when standard error is a closed pipe
/// (`supervisorctl pull x 2>&1 | head -1`): the message is lost, as the
/// reader wanted.
macro_rules! errln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

/// `println!` to standard output through [`out`].
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::cli::out(format!("{}\n", format_args!($($arg)*)).as_bytes())
    };
}

/// `print!` to standard output through [`out`].
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::cli::out(format!($($arg)*).as_bytes())
    };
}

pub mod client;
pub mod container;
pub mod control;
pub mod copy;
pub mod ctl;
pub mod daemon;
pub mod docs;
pub mod generate;
pub mod images;
pub mod import;
pub mod oci;
pub mod progress;
pub mod push;
pub mod unit_files;
pub mod updates;
pub mod validate;

use std::io::{IsTerminal, Write};

/// Writes `bytes` to standard output, at once. When its reader is gone
/// (`supervisorctl inspect web | head -1`) the process ends quietly, with
/// status 0, as Unix tools do, instead of panicking (as `println!` would)
/// or streaming on into nothing (`logs -f`, `events`).
pub(crate) fn out(bytes: &[u8]) {
    let mut stdout = std::io::stdout().lock();
    if let Err(e) = stdout.write_all(bytes).and_then(|()| stdout.flush()) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        errln!("supervisorctl: standard output: {e}");
        std::process::exit(1);
    }
}

/// Whether to color output written to stdout (a terminal, and no
/// `NO_COLOR`: <https://no-color.org>).
pub(crate) fn stdout_color() -> bool {
    std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none()
}

/// Whether to color output written to stderr.
pub(crate) fn stderr_color() -> bool {
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none()
}
