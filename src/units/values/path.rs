//! Paths in unit files: absolute container paths, and host paths that may be
//! relative to the unit file's directory. The grammar lives in the leaf
//! module [`crate::names`], which image references need as well.

pub use crate::names::path::{clean_absolute, host_path};
