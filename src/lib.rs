//! supervisor: a declarative container supervisor.
//!
//! `units` reads and validates unit files (pure, no privileges); `cli` holds
//! the command-line definitions and the commands of `supervisorctl` and
//! `supervisord`. See `docs/` for the unit format and the design.

pub mod cli;
pub mod health;
pub mod runtime;
pub mod supervisor;
pub mod timefmt;
pub mod units;
