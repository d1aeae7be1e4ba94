//! supervisor: a declarative container supervisor.
//!
//! `units` reads and validates unit files (pure, no privileges); `names` is
//! the leaf grammar (image references, DNS labels, host paths) that `units`
//! and `runtime` share; `interop` translates Compose files in and
//! Kubernetes objects out; `cli` holds the command-line definitions and the
//! commands of `supervisorctl` and `supervisord`. See `docs/` for the unit
//! format and the design.

// `unsafe` lives in the runtime only (docs/architecture.md), and every
// block there says why it is sound.
#![deny(unsafe_code)]
#![warn(clippy::undocumented_unsafe_blocks)]

pub mod cli;
// The fuzz targets' entry points (fuzz/, tests/fuzz_corpus.rs), not an API.
#[doc(hidden)]
pub mod fuzzing;
pub mod health;
pub mod interop;
pub mod names;
#[allow(unsafe_code)]
pub mod runtime;
pub mod supervisor;
pub mod timefmt;
pub mod units;
