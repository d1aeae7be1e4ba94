//! Names and references that more than one layer reads: the image-reference
//! grammar (the unit file's `image`, the runtime's pulls and local sources),
//! DNS labels (unit names, container ids) and host paths.
//!
//! A leaf: it imports nothing else of the crate, so `units` and `runtime`
//! can both use it without either knowing the other.

pub mod label;
pub mod path;
pub mod percent;
pub mod reference;

pub use label::check_dns_label;
pub use percent::percent_encode;
pub use reference::{ImageRef, ImageSource};
