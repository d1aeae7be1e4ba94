//! Grammars of single values: each parser takes the text of one value and
//! returns its canonical form or a message saying what was expected. They
//! know nothing of TOML or of where the value came from.

pub mod capability;
pub mod duration;
pub mod limits;
pub mod mounts;
pub mod names;
pub mod path;
pub mod port;
pub mod reference;
pub mod signal;
pub mod size;
