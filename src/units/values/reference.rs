//! Image references: the grammar lives in the leaf module [`crate::names`],
//! shared with the runtime that pulls them; unit code reads it from here.

pub use crate::names::reference::{DEFAULT_REGISTRY, ImageRef, ImageSource};
