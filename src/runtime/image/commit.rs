//! `commit`: a container's writable layer as a new image on top of its
//! own, in the store under a name that units can run.
//!
//! The upper directory is packed ([`super::pack`], as an overlay: its
//! whiteouts and opaque directories become OCI whiteouts; the files the
//! runtime mounts in left out) into a gzip layer in the store's `tmp/`,
//! its digest and diff ID computed as it is written. The new config is the
//! base image's with the diff ID appended, a history entry, the time and
//! the `--change` edits; the new manifest is the base's with the config
//! and the layer appended. Those go into the store as a load does: through
//! the puller ([`Store::pull_from`]) reading from a source made of them,
//! so the new layer is verified and unpacked with every check any layer
//! gets (it is the container's content: as untrusted as a registry's).

use std::fs::{self, File};
use std::io::Cursor;
use std::path::{Path, PathBuf};

use flate2::write::GzEncoder;
use nix::dir::Dir;
use nix::fcntl::OFlag;
use nix::sys::stat::Mode;
use serde_json::Value;

use super::change::{self, Change};
use super::digest::{Digest, HashingWriter};
use super::error::{ImageError, Result};
use super::manifest::{DOCKER_MANIFEST, Descriptor};
use super::pack::Packer;
use super::pull::{PullOptions, Quiet};
use super::source::{BlobReader, Fetched, Fetcher};
use super::store::{Image, Store, unique_name};
use super::walk::walk;

const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
/// Entries a committed layer may hold (as a pulled layer).
const MAX_ENTRIES: usize = super::guard::MAX_ENTRIES as usize;

/// What to commit.
pub struct Commit<'a> {
    /// The container's overlay upper directory.
    pub upper: &'a Path,
    /// The image the container runs.
    pub base: &'a Image,
    /// The normalized reference to record the new image under.
    pub reference: &'a str,
    pub changes: &'a [Change],
    /// Paths the runtime mounts in (`/etc/hosts`): not in the layer.
    pub excluded: &'a [&'a str],
    /// What the history entry says made the layer.
    pub created_by: &'a str,
}

/// A file in the store's `tmp/`, removed when dropped.
struct TmpFile(PathBuf);

impl Drop for TmpFile {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.0);
    }
}

/// The new image's documents and layer, as a source for the puller.
struct Committed<'a> {
    store: &'a Store,
    manifest: Vec<u8>,
    media_type: Option<String>,
    config: Vec<u8>,
    config_digest: Digest,
    layer: Digest,
    layer_path: PathBuf,
}

impl Fetcher for Committed<'_> {
    fn name(&self) -> String {
        "the committed layer".into()
    }
    fn top(&self) -> Result<Fetched> {
        let digest = Some(Digest::of(&self.manifest));
        Ok(Fetched { bytes: self.manifest.clone(), content_type: self.media_type.clone(), digest })
    }
    fn manifest(&self, _digest: &Digest) -> Result<Fetched> {
        self.top()
    }
    fn blob(&self, desc: &Descriptor) -> Result<BlobReader<'_>> {
        if desc.digest == self.config_digest {
            return Ok(Box::new(Cursor::new(self.config.clone())));
        }
        let path = if desc.digest == self.layer { self.layer_path.clone() } else { self.store.blob_path(&desc.digest) };
        Ok(Box::new(File::open(&path).map_err(ImageError::io("open", &path))?))
    }
}

impl Store {
    /// Makes and records the image `c` describes; returns it.
    pub fn commit(&self, c: &Commit<'_>, options: &PullOptions) -> Result<Image> {
        // Held while the layer sits in tmp/: no sweep removes it.
        let _shared = self.lock_store(false)?;
        let tmp = TmpFile(self.tmp_dir().join(unique_name("commit") + ".tar.gz"));
        let (layer, size, diff_id) = self.write_layer(c, &tmp.0)?;

        let base_manifest = self.read_blob(&c.base.record.manifest_digest)?;
        let mut manifest: Value = serde_json::from_slice(&base_manifest)
            .map_err(|e| ImageError::Invalid(format!("{}: manifest: {e}", c.base.record.reference)))?;
        let mut config: Value = serde_json::from_slice(&self.read_blob(&c.base.record.config_digest)?)
            .map_err(|e| ImageError::Invalid(format!("{}: config: {e}", c.base.record.reference)))?;

        change::apply(&mut config, c.changes);
        let now = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
        config["created"] = Value::from(now.clone());
        push(&mut config, &["rootfs", "diff_ids"], Value::from(diff_id.to_string()));
        push(&mut config, &["history"], serde_json::json!({"created": now, "created_by": c.created_by}));
        let config = serde_json::to_vec(&config).map_err(|e| ImageError::Invalid(e.to_string()))?;
        let config_digest = Digest::of(&config);

        let media_type = manifest["mediaType"].as_str().map(String::from);
        let layer_type =
            if media_type.as_deref() == Some(DOCKER_MANIFEST) { DOCKER_LAYER_GZIP } else { OCI_LAYER_GZIP };
        manifest["config"]["digest"] = Value::from(config_digest.to_string());
        manifest["config"]["size"] = Value::from(config.len());
        push(
            &mut manifest,
            &["layers"],
            serde_json::json!({"mediaType": layer_type, "digest": layer.to_string(), "size": size}),
        );
        let manifest = serde_json::to_vec(&manifest).map_err(|e| ImageError::Invalid(e.to_string()))?;

        let source =
            Committed { store: self, manifest, media_type, config, config_digest, layer, layer_path: tmp.0.clone() };
        self.pull_from(c.reference, &source, options, &Quiet)
    }

    /// Packs the upper directory into a gzip layer at `path`: its digest,
    /// size and diff ID.
    fn write_layer(&self, c: &Commit<'_>, path: &Path) -> Result<(Digest, u64, Digest)> {
        let label = c.upper.display().to_string();
        let write_error = |e: std::io::Error| self.no_space(ImageError::io("write", path)(e));
        let file = File::create_new(path).map_err(ImageError::io("create", path))?;
        let gz = GzEncoder::new(HashingWriter::new(file), flate2::Compression::default());
        let mut builder = tar::Builder::new(HashingWriter::new(gz));
        let top = Dir::open(c.upper, OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty())
            .map_err(|e| ImageError::io("open", c.upper)(e.into()))?;
        let mut packer = Packer::new(&mut builder, &label, b"").overlay(c.excluded);
        walk(top, &(), &mut packer, &label, MAX_ENTRIES).map_err(|e| self.no_space(e))?;
        builder.finish().map_err(write_error)?;
        let (diff_id, _, gz) = builder.into_inner().map_err(write_error)?.finish();
        let (layer, size, file) = gz.finish().map_err(write_error)?.finish();
        file.sync_all().map_err(write_error)?;
        Ok((layer, size, diff_id))
    }
}

/// Appends `value` to the array at `path` in `doc`, made if missing.
fn push(doc: &mut Value, path: &[&str], value: Value) {
    let mut at = doc;
    for key in path {
        if !at.is_object() {
            *at = Value::Object(serde_json::Map::new());
        }
        at = at.as_object_mut().expect("an object just made").entry(*key).or_insert(Value::Null);
    }
    if !at.is_array() {
        *at = Value::Array(Vec::new());
    }
    if let Value::Array(a) = at {
        a.push(value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arrays_are_appended_to_or_made() {
        let mut doc = serde_json::json!({"rootfs": {"type": "layers", "diff_ids": ["a"]}});
        push(&mut doc, &["rootfs", "diff_ids"], Value::from("b"));
        push(&mut doc, &["history"], Value::from("h"));
        assert_eq!(doc, serde_json::json!({"rootfs": {"type": "layers", "diff_ids": ["a", "b"]}, "history": ["h"]}));
    }
}
