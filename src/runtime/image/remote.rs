//! What a reference names at its source: the one manifest a pull of it
//! records (an index followed to this host's platform). A pull resolves a
//! reference this way before it fetches anything else, and the moved-tag
//! check of auto-update ([`remote_digest`]) does it alone, so that both
//! compare the same thing: the image ID (`ImageRecord::manifest_digest`),
//! never an index's digest, which is what a registry's HEAD of a tag
//! returns for a multi-platform image.

use std::path::Path;

use super::digest::Digest;
use super::error::{ImageError, Result};
use super::manifest::{Document, Manifest, Platform, parse_document, select_platform};
use super::pull::PullOptions;
use super::registry::Registry;
use super::source::{DockerArchive, Fetched, Fetcher, OciLayout};
use crate::names::reference::ImageSource;

/// The source of `source`'s manifests and blobs; None for a `dir:`
/// source, which is used in place and has neither.
pub(super) fn fetcher(source: &ImageSource, options: &PullOptions) -> Result<Option<Box<dyn Fetcher>>> {
    Ok(Some(match source {
        ImageSource::Registry(r) => Box::new(Registry::new(r, &options.registry)),
        ImageSource::OciLayout { path, tag } => Box::new(OciLayout::dir(Path::new(path), tag.as_deref())),
        ImageSource::OciArchive { path, tag } => Box::new(OciLayout::archive(Path::new(path), tag.as_deref())?),
        ImageSource::DockerArchive { path, image } => DockerArchive::open(Path::new(path), image.as_deref())?,
        ImageSource::Dir { .. } => return Ok(None),
    }))
}

/// The image ID `source` names now at its source: the manifest digest a
/// pull of it would record, with the pull's platform, authentication,
/// timeouts and retries. Only manifests are fetched (an index and the
/// platform's manifest: a few kilobytes), never a config or a layer.
pub fn remote_digest(source: &ImageSource, options: &PullOptions) -> Result<Digest> {
    let checked = |e: ImageError| ImageError::Check { image: source.to_string(), source: Box::new(e) };
    let Some(fetcher) = fetcher(source, options).map_err(checked)? else {
        return Err(checked(ImageError::Source {
            source_name: source.to_string(),
            message: "a directory is used in place: it has no manifest to compare".into(),
        }));
    };
    resolve(&*fetcher, &options.platform).map(|r| r.digest).map_err(checked)
}

/// The one manifest a reference names for a platform.
pub(super) struct Resolved {
    pub bytes: Vec<u8>,
    /// The image ID.
    pub digest: Digest,
    pub manifest: Manifest,
}

/// The manifest `fetcher`'s reference names for `platform`, verified.
pub(super) fn resolve(fetcher: &dyn Fetcher, platform: &Platform) -> Result<Resolved> {
    let top = fetcher.top()?;
    let top_digest = verify(&top, &fetcher.name())?;
    let (bytes, digest) = match parse_document(&top.bytes, top.content_type.as_deref())? {
        Document::Manifest(_) => (top.bytes, top_digest),
        Document::Index(index) => {
            let desc = select_platform(&index, platform)?;
            let fetched = fetcher.manifest(&desc.digest)?;
            let digest = verify(&fetched, &fetcher.name())?;
            (fetched.bytes, digest)
        }
    };
    match parse_document(&bytes, None)? {
        Document::Manifest(manifest) => Ok(Resolved { bytes, digest, manifest }),
        Document::Index(_) => Err(ImageError::Invalid(format!("{}: an index points to another index", fetcher.name()))),
    }
}

/// The document's digest, checked against the one it was asked for.
fn verify(f: &Fetched, name: &str) -> Result<Digest> {
    let actual = Digest::of(&f.bytes);
    match &f.digest {
        Some(expected) if *expected != actual => Err(ImageError::DigestMismatch {
            what: format!("{name}: manifest"),
            expected: expected.to_string(),
            actual: actual.to_string(),
        }),
        _ => Ok(actual),
    }
}
