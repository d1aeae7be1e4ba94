//! `save`: an image of the store as an archive that `load`, `podman load`,
//! `docker load` and `skopeo copy` read: an OCI archive (a tar of an OCI
//! image layout, the stored blobs as they are, the image's name as its
//! `org.opencontainers.image.ref.name`), or `docker save`'s format (its
//! `manifest.json` with the name in `RepoTags`, each layer an uncompressed
//! tar named by its diff ID, as `docker load` expects). The archive is
//! written beside its destination and renamed into place: an interrupted
//! save leaves no half-written file under the name.

use std::fs::{self, File};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use super::digest::Digest;
use super::error::{ImageError, Result};
use super::manifest::{Compression, Manifest, OCI_MANIFEST, layer_compression};
use super::source::ArchiveFormat;
use super::store::{Store, unique_name};

/// The name an archive gives the image of `reference`: a registry
/// reference is one; an image from a local source (`oci:PATH`) has none,
/// and takes one at its load.
fn name(reference: &str) -> Option<String> {
    let r = crate::names::reference::ImageRef::parse(reference).ok()?;
    // Archives name images by tag: a digest-pinned reference's digest is
    // the archive's own manifest digest already.
    r.tag.is_some().then(|| crate::names::reference::ImageRef { digest: None, ..r }.to_string())
}

/// The whole archive is built under this name beside the destination.
fn temp_beside(dest: &Path) -> PathBuf {
    let name = dest.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    dest.with_file_name(format!(".{name}.{}", unique_name("save")))
}

impl Store {
    /// Writes the image `reference` names into an archive at `dest`.
    pub fn save(&self, reference: &str, dest: &Path, format: ArchiveFormat) -> Result<()> {
        // Shared: no garbage collection takes the blobs meanwhile.
        let _lock = self.lock_store(false)?;
        let record = self.record(reference)?.ok_or_else(|| ImageError::NotInStore(reference.to_string()))?;
        let manifest_bytes = self.read_blob(&record.manifest_digest)?;
        let manifest: Manifest = serde_json::from_slice(&manifest_bytes)
            .map_err(|e| ImageError::Invalid(format!("{reference}: stored manifest: {e}")))?;
        match fs::symlink_metadata(dest) {
            Ok(m) if !m.is_file() => {
                return Err(ImageError::Invalid(format!(
                    "{}: exists and is not a regular file (the archive is written beside it and renamed over it)",
                    dest.display()
                )));
            }
            _ => {}
        }
        let tmp = temp_beside(dest);
        let written = (|| {
            // A new file of ours alone: never one planted at that name.
            let file = std::os::unix::fs::OpenOptionsExt::mode(File::options().write(true).create_new(true), 0o644)
                .open(&tmp)
                .map_err(ImageError::io("create", &tmp))?;
            let mut tar = Archive { tar: tar::Builder::new(file), path: &tmp };
            match format {
                ArchiveFormat::Oci => {
                    self.write_oci(&mut tar, &record.reference, &record.manifest_digest, &manifest)?
                }
                ArchiveFormat::Docker => self.write_docker(&mut tar, &record.reference, &manifest)?,
            }
            let file = tar.tar.into_inner().map_err(ImageError::io("write", &tmp))?;
            file.sync_all().map_err(ImageError::io("sync", &tmp))?;
            fs::rename(&tmp, dest).map_err(ImageError::io("rename", dest))
        })();
        if written.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        written
    }

    fn write_oci(
        &self,
        tar: &mut Archive<'_>,
        reference: &str,
        manifest_digest: &Digest,
        manifest: &Manifest,
    ) -> Result<()> {
        let media_type = if manifest.media_type.is_empty() { OCI_MANIFEST } else { &manifest.media_type };
        let mut entry = serde_json::json!({
            "mediaType": media_type,
            "digest": manifest_digest,
            "size": self.blob_size(manifest_digest)?,
        });
        if let Some(name) = name(reference) {
            entry["annotations"] = serde_json::json!({ "org.opencontainers.image.ref.name": name });
        }
        let index = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": [entry],
        });
        tar.append_bytes("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)?;
        tar.append_bytes("index.json", index.to_string().as_bytes())?;
        let blobs =
            [manifest_digest, &manifest.config.digest].into_iter().chain(manifest.layers.iter().map(|l| &l.digest));
        for digest in blobs {
            self.append_blob(tar, &format!("blobs/sha256/{}", digest.hex()), digest)?;
        }
        Ok(())
    }

    fn write_docker(&self, tar: &mut Archive<'_>, reference: &str, manifest: &Manifest) -> Result<()> {
        let config_bytes = self.read_blob(&manifest.config.digest)?;
        let config = super::ImageConfig::parse(&config_bytes)?;
        let config_name = format!("blobs/sha256/{}", manifest.config.digest.hex());
        tar.append_bytes(&config_name, &config_bytes)?;
        if manifest.layers.len() != config.rootfs.diff_ids.len() {
            return Err(ImageError::Invalid(format!(
                "{reference}: the manifest has {} layers but the config {} diff IDs",
                manifest.layers.len(),
                config.rootfs.diff_ids.len()
            )));
        }
        let mut layers = Vec::new();
        for (layer, diff_id) in manifest.layers.iter().zip(&config.rootfs.diff_ids) {
            let name = format!("blobs/sha256/{}", diff_id.hex());
            match layer_compression(&layer.media_type)? {
                Compression::None => self.append_blob(tar, &name, &layer.digest)?,
                compression => self.append_uncompressed(tar, &name, &layer.digest, compression)?,
            }
            layers.push(name);
        }
        let tags: Vec<String> = name(reference).into_iter().collect();
        let saved = serde_json::json!([{ "Config": config_name, "RepoTags": tags, "Layers": layers }]);
        tar.append_bytes("manifest.json", saved.to_string().as_bytes())
    }

    fn blob_size(&self, digest: &Digest) -> Result<u64> {
        let path = self.blob_path(digest);
        Ok(fs::metadata(&path).map_err(ImageError::io("stat", &path))?.len())
    }

    fn append_blob(&self, tar: &mut Archive<'_>, name: &str, digest: &Digest) -> Result<()> {
        let path = self.blob_path(digest);
        let mut file = File::open(&path).map_err(ImageError::io("open", &path))?;
        let size = file.metadata().map_err(ImageError::io("stat", &path))?.len();
        tar.append(name, size, &mut file)
    }

    /// A compressed layer blob as the plain tar it holds: decompressed
    /// into the store's `tmp/` first, since a tar entry's size comes first.
    fn append_uncompressed(
        &self,
        tar: &mut Archive<'_>,
        name: &str,
        digest: &Digest,
        compression: Compression,
    ) -> Result<()> {
        let path = self.blob_path(digest);
        let blob = File::open(&path).map_err(ImageError::io("open", &path))?;
        let mut reader: Box<dyn Read> = match compression {
            Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(blob)),
            Compression::Zstd => Box::new(zstd::Decoder::new(blob).map_err(ImageError::io("read", &path))?),
            Compression::None => Box::new(blob),
        };
        let tmp = self.tmp_dir().join(unique_name("layer"));
        let copied = (|| {
            let mut plain = File::options()
                .read(true)
                .write(true)
                .create_new(true)
                .open(&tmp)
                .map_err(|e| self.no_space(ImageError::io("create", &tmp)(e)))?;
            // The decompressed copy is on the store's filesystem.
            let size = std::io::copy(&mut reader, &mut plain)
                .map_err(|e| self.no_space(ImageError::io("decompress", &path)(e)))?;
            plain.flush().map_err(ImageError::io("write", &tmp))?;
            use std::io::Seek;
            plain.rewind().map_err(ImageError::io("seek", &tmp))?;
            tar.append(name, size, &mut plain)
        })();
        let _ = fs::remove_file(&tmp);
        copied
    }
}

/// The archive being written, and where (for errors).
struct Archive<'a> {
    tar: tar::Builder<File>,
    path: &'a Path,
}

impl Archive<'_> {
    fn append(&mut self, name: &str, size: u64, data: &mut dyn Read) -> Result<()> {
        let mut h = tar::Header::new_ustar();
        h.set_size(size);
        h.set_mode(0o644);
        h.set_mtime(0);
        self.tar.append_data(&mut h, name, data).map_err(ImageError::io("write", self.path))
    }

    fn append_bytes(&mut self, name: &str, bytes: &[u8]) -> Result<()> {
        self.append(name, bytes.len() as u64, &mut &bytes[..])
    }
}
