//! The runtime: mechanism, not policy. It turns image references into
//! verified root filesystems (and, as it grows, container descriptions into
//! isolated processes); it knows nothing of unit files, restart policies or
//! the supervisor. The pure value grammars of `units::values` (image
//! references) are the one thing it shares with the unit code.

pub mod cgroups;
pub mod container;
pub mod copy;
pub mod image;
pub mod network;
pub mod oci;
pub mod private;
pub mod procs;
pub mod reaper;
pub mod seccomp;
pub mod sys;
