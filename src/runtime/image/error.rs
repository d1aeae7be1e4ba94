//! Errors of the image code: one variant per failing operation, each naming
//! what it failed on.

use std::io;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{registry}: {message}")]
    Registry { registry: String, message: String },
    /// A transfer that kept failing (a connection, a status, a stall): the
    /// verb (`pull`, `push`), the source or destination
    /// (`127.0.0.1:5000/app:v1`), what was sent or fetched, what went
    /// wrong the last time, and how many tries were made.
    #[error("{verb} {source_name}: {what}: {fault}, {attempts} attempt{}", if *.attempts == 1 { "" } else { "s" })]
    Transfer { verb: &'static str, source_name: String, what: String, fault: String, attempts: u32 },
    /// The store's filesystem is full (ENOSPC, EDQUOT, or the free-space
    /// reserve of a pull is not there).
    #[error("no space left on the filesystem of {} (mounted at {}): {detail}", store.display(), mount.display())]
    NoSpace { store: PathBuf, mount: PathBuf, detail: String },
    #[error("{registry}/{repository}: {what} not found")]
    NotFound { registry: String, repository: String, what: String },
    #[error("{registry}/{repository}: access denied ({status}){hint}")]
    Denied { registry: String, repository: String, status: u16, hint: String },
    #[error("{what} {expected}: content has digest {actual} (the blob is corrupt or was tampered with)")]
    DigestMismatch { what: String, expected: String, actual: String },
    #[error("{what} {digest}: {message}")]
    Blob { what: String, digest: String, message: String },
    #[error("layer {layer}: refusing entry {entry:?}: {reason}")]
    UnsafeEntry { layer: String, entry: String, reason: String },
    #[error("layer {layer}: {message}")]
    Layer { layer: String, message: String },
    /// Writing an entry of a layer into its directory failed.
    #[error("layer {layer}: {entry}: {op}: {source}")]
    Unpack {
        layer: String,
        entry: String,
        op: String,
        #[source]
        source: io::Error,
    },
    /// Reading an entry of a directory tree into a tar stream (a layer of
    /// `commit`, a copy out of a container) failed, or writing it out.
    #[error("{tree}{entry}: {op}: {source}")]
    Pack {
        tree: String,
        entry: String,
        op: &'static str,
        #[source]
        source: io::Error,
    },
    /// Content over one of the bounds a pull keeps (never retried).
    #[error("{what}: {message}")]
    Limit { what: String, message: String },
    #[error("no image for {wanted} in the index; it has: {available}")]
    NoPlatform { wanted: String, available: String },
    #[error("{source_name}: {message}")]
    Source { source_name: String, message: String },
    #[error("unsupported media type {0:?}")]
    MediaType(String),
    /// A message of its own: schema 1 has no media type worth naming.
    #[error("Docker schema 1 manifests are not supported (the image is too old)")]
    SchemaOne,
    /// Asking a source which image a reference names now (the moved-tag
    /// check) failed.
    #[error("check {image} at its source: {source}")]
    Check {
        image: String,
        #[source]
        source: Box<ImageError>,
    },
    #[error("{0}: not in the store (pull it first)")]
    NotInStore(String),
    #[error("{0}")]
    Invalid(String),
    #[error("unsupported digest {0:?} (expected sha256:<hex>)")]
    DigestAlgorithm(String),
    #[error("malformed digest {0:?}")]
    MalformedDigest(String),
}

impl ImageError {
    pub fn io(op: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> ImageError {
        let path = path.into();
        move |source| ImageError::Io { op, path, source }
    }
}

/// Whether `e` says the filesystem is full (or the user's quota is).
pub fn is_no_space(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EDQUOT)) || e.kind() == io::ErrorKind::StorageFull
}

pub type Result<T, E = ImageError> = std::result::Result<T, E>;
