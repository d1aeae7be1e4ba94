//! supervisor: a declarative container supervisor.
//!
//! `units` reads and validates unit files (pure, no privileges); `names` is
//! the leaf grammar (image references, DNS labels, host paths) that `units`
//! and `runtime` share; `cli` holds the command-line definitions and the
//! commands of `supervisorctl` and `supervisord`. See `docs/` for the unit
//! format and the design.

pub mod cli;
pub mod health;
pub mod names;
pub mod runtime;
pub mod supervisor;
pub mod timefmt;
pub mod units;
