//! Unit files: TOML in, validated and normalized [`Unit`] values or precise
//! errors out.
//!
//! This module is pure policy-free data handling: it imports nothing else of
//! the crate, never touches a container, and is tested without root. The
//! supervisor turns its `Unit`s into runtime requests; `supervisorctl
//! validate` prints its errors.
//!
//! Layout: `values/` holds the grammar of each kind of value (sizes, ports,
//! image references, ...); `parse` walks one file's spanned TOML with them;
//! `dir` loads a directory and `graph` checks the set as a whole; `hash`
//! gives the normalized unit its identity.

pub mod cache;
pub mod diag;
pub mod dir;
pub mod envfile;
pub mod graph;
pub mod hash;
pub mod model;
pub mod owner;
pub mod parse;
pub mod schema;
pub mod suggest;
pub mod values;

pub use cache::ParseCache;
pub use diag::Diagnostic;
pub use dir::{LoadedUnit, UnitSet, load_dir, load_dir_cached, load_dir_changed, load_files};
pub use hash::{Change, Hashes};
pub use model::Unit;
