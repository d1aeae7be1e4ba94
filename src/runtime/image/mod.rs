//! Images: references to verified, unpacked layers in a content-addressed
//! store.
//!
//! `Store::pull` resolves a reference (a registry's, or a local OCI layout,
//! OCI archive, `docker save` archive, or root filesystem directory),
//! verifies every manifest and blob against its digest while streaming, and
//! unpacks each layer into a directory overlayfs can use as a lower layer,
//! refusing any entry that would write outside it. The store knows nothing
//! of units: what to keep on `prune` is its caller's input.

mod by_id;
pub mod change;
pub mod commit;
pub mod config;
pub mod diff;
pub mod digest;
pub mod error;
pub mod export;
pub mod guard;
pub mod load;
pub mod manifest;
pub mod pack;
pub mod pull;
pub mod push;
pub mod registry;
pub mod registry_options;
mod registry_request;
pub mod remote;
pub mod save;
pub mod source;
pub mod space;
pub mod store;
mod transfer;
pub mod tree;
pub mod unpack;
pub mod verify;
pub mod walk;

pub use config::ImageConfig;
pub use digest::Digest;
pub use error::ImageError;
pub use pull::{Progress, PullOptions, Quiet};
pub use push::{PushOptions, PushReport, Pushed};
pub use registry_options::RegistryOptions;
pub use remote::remote_digest;
pub use store::{Image, ImageRecord, Store};
