//! Pulling an image into the store: resolve the reference to one manifest
//! (following an index to this host's platform), fetch the config, then make
//! every layer, several at once.
//!
//! Each layer is made in one pass, with no temporary tarball: the blob's
//! bytes are hashed (and bounded by the descriptor's size) while they are
//! written to the blob file and decompressed; the decompressed tar is hashed
//! (its diff ID) while it is unpacked. Only when both digests match are the
//! blob and the layer directory renamed into the store; a failed or
//! interrupted layer leaves nothing behind, and a retry starts it afresh.

use std::cell::RefCell;
use std::fs::{self, File};
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use flate2::read::MultiGzDecoder;

use super::config::ImageConfig;
use super::digest::{Digest, HashingReader};
use super::error::{ImageError, Result, is_no_space};
use super::guard::TarLimits;
use super::manifest::{Compression, Descriptor, Platform, layer_compression};
use super::registry_options::RegistryOptions;
use super::remote::{Resolved, fetcher, resolve};
use super::source::{Fetched, Fetcher};
use super::space::{Budget, mount_point};
use super::store::{Image, ImageRecord, LayerRecord, Store, now, unique_name};
use super::transfer::{Failure, Tee, Transport, Watched, classify, read_verified, size_text, tried};
use super::unpack::unpack_layer;
use crate::names::reference::ImageSource;

/// How to pull.
#[derive(Debug, Clone)]
pub struct PullOptions {
    pub registry: RegistryOptions,
    pub platform: Platform,
    /// Most bytes of file content one image may unpack to (its layers
    /// made by this pull together).
    pub max_image_size: u64,
    /// What one layer's tar stream may hold.
    pub tar: TarLimits,
    /// Layers made at once.
    pub concurrency: usize,
    /// The pause after a blob's transfer first breaks; it doubles for each
    /// try after (see `transfer::LAYER_TRIES`).
    pub retry_pause: Duration,
}

/// 32 GiB: the largest common images (CUDA and machine-learning stacks)
/// unpack to 10-20 GiB.
pub const MAX_IMAGE_SIZE: u64 = 32 << 30;

/// Image configs are a few kilobytes; a long history makes hundreds.
pub const MAX_CONFIG: u64 = 8 << 20;

impl Default for PullOptions {
    fn default() -> Self {
        PullOptions {
            registry: RegistryOptions::default(),
            platform: Platform::host(),
            max_image_size: MAX_IMAGE_SIZE,
            tar: TarLimits::default(),
            concurrency: 4,
            retry_pause: Duration::from_secs(1),
        }
    }
}

/// Hears how a pull goes, for progress bars or log lines.
pub trait Progress: Sync {
    fn resolved(&self, _reference: &str, _manifest: &Digest, _layers: &[Descriptor]) {}
    fn layer_bytes(&self, _layer: &Digest, _bytes: u64) {}
    /// `cached`: the layer was in the store already.
    fn layer_done(&self, _layer: &Digest, _cached: bool) {}
    /// A push's blob is at its destination: `how` it got there, and for
    /// a mount `from` which repository.
    fn blob_pushed(&self, _blob: &Digest, _how: super::push::Pushed, _from: Option<&str>) {}
}

/// Reports nothing.
pub struct Quiet;
impl Progress for Quiet {}

impl Store {
    /// Pulls `source` into the store (or finds it complete there) and
    /// returns the image. `dir:` sources are used in place.
    pub fn pull(&self, source: &ImageSource, options: &PullOptions, progress: &dyn Progress) -> Result<Image> {
        let reference = source.to_string();
        match (fetcher(source, options)?, source) {
            (Some(fetcher), _) => self.pull_from(&reference, &*fetcher, options, progress),
            (None, ImageSource::Dir { path }) => dir_image(&reference, Path::new(path)),
            (None, _) => Err(ImageError::Invalid(format!("{reference}: no source to pull from"))),
        }
    }

    /// Makes the layers of a recorded image that are missing from the
    /// store from its stored blobs, with every check a pull makes, and
    /// returns the image; None if `reference` is not recorded. No source is
    /// contacted: this is how an appliance's store, seeded with blobs and
    /// records only (its initramfs cannot carry the layers' xattrs), gets
    /// its layers at first use.
    pub fn restore(&self, reference: &str, options: &PullOptions, progress: &dyn Progress) -> Result<Option<Image>> {
        let Some(record) = self.record(reference)? else { return Ok(None) };
        let stored = StoredImage { store: self, record };
        self.pull_from(reference, &stored, options, progress).map(Some)
    }

    /// Makes the missing layers of `record` (a reference's or a dangling
    /// one) from its stored blobs, as [`Store::restore`] does, and leaves
    /// the records as they are: a dangling image restored must not take
    /// its reference back from the image the reference names now.
    pub(super) fn restore_record(
        &self,
        record: ImageRecord,
        options: &PullOptions,
        progress: &dyn Progress,
    ) -> Result<Image> {
        let reference = record.reference.clone();
        let stored = StoredImage { store: self, record };
        let image = self.pull_inner(&reference, &stored, options, progress, false).map_err(|e| self.no_space(e))?;
        Ok(Image { record: stored.record, ..image })
    }

    pub(super) fn pull_from(
        &self,
        reference: &str,
        fetcher: &dyn Fetcher,
        options: &PullOptions,
        progress: &dyn Progress,
    ) -> Result<Image> {
        self.pull_inner(reference, fetcher, options, progress, true).map_err(|e| self.no_space(e))
    }

    /// `e`, or, when it is a full filesystem, an error that says so and
    /// names the store and its mount point.
    pub(super) fn no_space(&self, e: ImageError) -> ImageError {
        let full = match &e {
            ImageError::Io { source, .. } | ImageError::Unpack { source, .. } | ImageError::Pack { source, .. } => {
                is_no_space(source)
            }
            _ => false,
        };
        if !full {
            return e;
        }
        ImageError::NoSpace { store: self.root().to_path_buf(), mount: mount_point(self.root()), detail: e.to_string() }
    }

    fn pull_inner(
        &self,
        reference: &str,
        fetcher: &dyn Fetcher,
        options: &PullOptions,
        progress: &dyn Progress,
        save: bool,
    ) -> Result<Image> {
        let reference = reference.to_string();
        let _shared = self.lock_store(false)?;

        let Resolved { bytes: manifest_bytes, digest: manifest_digest, manifest } =
            resolve(fetcher, &options.platform)?;
        let config_bytes = {
            // Locked like a layer, so that concurrent pulls fetch it once.
            let _lock = self.lock_layer(&manifest.config.digest)?;
            match self.read_blob(&manifest.config.digest) {
                Ok(b) => b,
                Err(_) => {
                    if manifest.config.size > MAX_CONFIG {
                        return Err(ImageError::Limit {
                            what: format!("{reference}: config {}", manifest.config.digest),
                            message: format!("{} bytes is over the limit of {MAX_CONFIG} bytes", manifest.config.size),
                        });
                    }
                    let b = read_verified(fetcher, &manifest.config, "config", options.retry_pause)?;
                    self.put_blob(&manifest.config.digest, &b)?;
                    b
                }
            }
        };
        let config = ImageConfig::parse(&config_bytes)?;
        if config.rootfs.diff_ids.len() != manifest.layers.len() {
            return Err(ImageError::Invalid(format!(
                "{reference}: the manifest has {} layers but the config {} diff IDs",
                manifest.layers.len(),
                config.rootfs.diff_ids.len()
            )));
        }
        self.put_blob(&manifest_digest, &manifest_bytes)?;
        progress.resolved(&reference, &manifest_digest, &manifest.layers);

        let layers: Vec<(&Descriptor, &Digest)> = manifest.layers.iter().zip(&config.rootfs.diff_ids).collect();
        // The store's root names the filesystem in errors; tmp is on it.
        let budget = Budget::new(&reference, options.max_image_size, self.root());
        // The blobs alone take their compressed size: a floor of what the
        // missing layers need (what they unpack to is checked as they do).
        let missing: u64 = layers
            .iter()
            .filter(|(d, diff)| !(self.blob_path(&d.digest).is_file() && self.layer_path(diff).is_dir()))
            .map(|(d, _)| d.size)
            .fold(0, u64::saturating_add);
        budget
            .check_space(missing)
            .map_err(|message| ImageError::Limit { what: format!("image {reference}"), message })?;
        self.make_layers(fetcher, &layers, options, &budget, progress)?;

        let record = ImageRecord {
            reference: reference.clone(),
            manifest_digest,
            config_digest: manifest.config.digest.clone(),
            platform: format!("{}/{}", config.os, config.architecture),
            layers: layers
                .iter()
                .map(|(d, diff)| LayerRecord {
                    digest: d.digest.clone(),
                    diff_id: (*diff).clone(),
                    media_type: d.media_type.clone(),
                    size: d.size,
                })
                .collect(),
            size: manifest.layers.iter().map(|l| l.size).sum(),
            pulled: now(),
        };
        if save {
            self.put_record(&record)?;
        }
        let layer_dirs = record.layers.iter().map(|l| self.layer_path(&l.diff_id)).collect();
        Ok(Image { record, config, layer_dirs })
    }

    /// Makes the layers on `concurrency` threads; the first error wins.
    fn make_layers(
        &self,
        fetcher: &dyn Fetcher,
        layers: &[(&Descriptor, &Digest)],
        options: &PullOptions,
        budget: &Budget,
        progress: &dyn Progress,
    ) -> Result<()> {
        let next = AtomicUsize::new(0);
        let first_error: Mutex<Option<ImageError>> = Mutex::new(None);
        let workers = options.concurrency.clamp(1, layers.len().max(1));
        std::thread::scope(|s| {
            for _ in 0..workers {
                s.spawn(|| {
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some((desc, diff_id)) = layers.get(i) else { break };
                        if first_error.lock().unwrap_or_else(|e| e.into_inner()).is_some() {
                            break;
                        }
                        let what = format!("blob {}", desc.digest);
                        let result = tried("pull", &fetcher.name(), &what, options.retry_pause, || {
                            self.make_layer(fetcher, desc, diff_id, options, budget, progress)
                        });
                        if let Err(e) = result {
                            first_error.lock().unwrap_or_else(|e| e.into_inner()).get_or_insert(e);
                        }
                    }
                });
            }
        });
        match first_error.into_inner().unwrap_or_else(|e| e.into_inner()) {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Makes one layer's blob and directory, unless the store has both.
    fn make_layer(
        &self,
        fetcher: &dyn Fetcher,
        desc: &Descriptor,
        diff_id: &Digest,
        options: &PullOptions,
        budget: &Budget,
        progress: &dyn Progress,
    ) -> Result<(), Failure> {
        let _lock = self.lock_layer(diff_id)?;
        let blob_path = self.blob_path(&desc.digest);
        let layer_path = self.layer_path(diff_id);
        let (have_blob, have_layer) = (blob_path.is_file(), layer_path.is_dir());
        if have_blob && have_layer {
            progress.layer_done(&desc.digest, true);
            return Ok(());
        }
        let compression = layer_compression(&desc.media_type)?;
        // A stored blob (a store seeded without its layers, as an appliance
        // image is) is unpacked from disk, with the same checks.
        let reader: Box<dyn Read + Send> = if have_blob {
            Box::new(File::open(&blob_path).map_err(ImageError::io("open", &blob_path))?)
        } else {
            fetcher.blob(desc)?
        };
        // What the source did, told apart from what the unpacking did.
        let transport = RefCell::new(Transport::default());
        let reader = Watched { inner: reader, seen: &transport };
        let mut tmp = TempPaths::default();
        let tmp_dir = self.tmp_dir();
        let mut blob_file = if have_blob {
            None
        } else {
            let p = tmp.add(tmp_dir.join(unique_name("blob")));
            Some(File::create(&p).map_err(ImageError::io("create", &p))?)
        };
        let unpack_dir = if have_layer {
            None
        } else {
            let p = tmp.add(tmp_dir.join(unique_name("layer")));
            fs::create_dir(&p).map_err(ImageError::io("create", &p))?;
            Some(p)
        };

        // Files of a failed try are removed with it; their bytes go back.
        let mut attempt = budget.attempt();
        let layer_name = desc.digest.to_string();
        let mut blob = HashingReader::new(reader, desc.size);
        let write_error = RefCell::new(None);
        let diff_digest = (|| {
            let copy = blob_file.as_mut();
            let mut tee = Tee { inner: &mut blob, copy, write_error: &write_error, progress, digest: &desc.digest };
            let mut tar: Box<dyn Read> = match compression {
                Compression::None => Box::new(&mut tee),
                Compression::Gzip => Box::new(MultiGzDecoder::new(&mut tee)),
                Compression::Zstd => Box::new(zstd::Decoder::new(&mut tee).map_err(|e| layer_error(&layer_name, e))?),
            };
            // Tar headers and padding come on top of the content that the
            // budget bounds: 1.5 KiB at most for each entry.
            let headers = options.tar.max_entries.saturating_mul(1536);
            let stream_limit = options.max_image_size.saturating_add(headers);
            let mut diff = HashingReader::new(&mut tar, stream_limit);
            if let Some(dir) = &unpack_dir {
                unpack_layer(&mut diff, dir, &layer_name, options.tar, &mut attempt)?;
            }
            io::copy(&mut diff, &mut io::sink()).map_err(|e| layer_error(&layer_name, e))?;
            let (diff_digest, _) = diff.finish();
            drop(tar);
            // Whatever follows the compressed stream is part of the blob too.
            io::copy(&mut tee, &mut io::sink()).map_err(|e| layer_error(&layer_name, e))?;
            Ok(diff_digest)
        })();
        let seen = transport.take();
        let received = blob.count();
        let diff_digest = match diff_digest {
            Ok(d) => d,
            Err(e) => {
                if let (Some(source), false) = (write_error.take(), have_blob) {
                    return Err(ImageError::Io { op: "write", path: tmp.0[0].clone(), source }.into());
                }
                return Err(classify(&fetcher.name(), desc, e, seen, received));
            }
        };
        let (digest, size) = blob.finish();
        if seen.ended && size < desc.size && !have_blob {
            return Err(Failure::Transfer(format!(
                "the body ended after {} of {}",
                size_text(size),
                size_text(desc.size)
            )));
        }
        if digest != desc.digest || size != desc.size {
            return Err(Failure::Other(ImageError::DigestMismatch {
                what: "layer".into(),
                expected: format!("{} ({} bytes)", desc.digest, desc.size),
                actual: format!("{digest} ({size} bytes)"),
            }));
        }
        if diff_digest != *diff_id {
            return Err(Failure::Other(ImageError::DigestMismatch {
                what: format!("uncompressed layer {}, diff ID", desc.digest),
                expected: diff_id.to_string(),
                actual: diff_digest.to_string(),
            }));
        }
        if let (Some(file), false) = (blob_file, have_blob) {
            let tmp_blob = &tmp.0[0];
            file.sync_all().map_err(ImageError::io("sync", tmp_blob))?;
            fs::rename(tmp_blob, &blob_path).map_err(ImageError::io("rename", &blob_path))?;
        }
        if let Some(dir) = &unpack_dir {
            fs::rename(dir, &layer_path).map_err(ImageError::io("rename", &layer_path))?;
        }
        attempt.commit();
        tmp.0.clear();
        for d in [self.blob_path(&desc.digest), layer_path] {
            if let Some(parent) = d.parent() {
                File::open(parent).and_then(|f| f.sync_all()).map_err(ImageError::io("sync", parent))?;
            }
        }
        progress.layer_done(&desc.digest, false);
        Ok(())
    }
}

/// A recorded image's blobs in the store, as a source.
struct StoredImage<'a> {
    store: &'a Store,
    record: ImageRecord,
}

impl Fetcher for StoredImage<'_> {
    fn name(&self) -> String {
        format!("the store's copy of {}", self.record.reference)
    }
    fn top(&self) -> Result<Fetched> {
        self.manifest(&self.record.manifest_digest)
    }
    fn manifest(&self, digest: &Digest) -> Result<Fetched> {
        let bytes = self.store.read_blob(digest)?;
        Ok(Fetched { bytes, content_type: None, digest: Some(digest.clone()) })
    }
    fn blob(&self, desc: &Descriptor) -> Result<super::source::BlobReader<'_>> {
        let path = self.store.blob_path(&desc.digest);
        Ok(Box::new(File::open(&path).map_err(ImageError::io("open", &path))?))
    }
}

fn layer_error(layer: &str, e: io::Error) -> ImageError {
    ImageError::Layer { layer: layer.to_string(), message: format!("reading the layer: {e}") }
}

/// A `dir:` source: the directory is the one read-only layer.
fn dir_image(reference: &str, path: &Path) -> Result<Image> {
    let meta = fs::metadata(path).map_err(ImageError::io("open", path))?;
    if !meta.is_dir() {
        return Err(ImageError::Source { source_name: reference.to_string(), message: "not a directory".into() });
    }
    let empty = Digest::of(b"");
    let record = ImageRecord {
        reference: reference.to_string(),
        manifest_digest: empty.clone(),
        config_digest: empty,
        platform: Platform::host().to_string(),
        layers: Vec::new(),
        size: 0,
        pulled: now(),
    };
    Ok(Image { record, config: ImageConfig::default(), layer_dirs: vec![path.to_path_buf()] })
}

/// Paths removed when dropped, unless taken out.
#[derive(Default)]
struct TempPaths(Vec<PathBuf>);

impl TempPaths {
    fn add(&mut self, p: PathBuf) -> PathBuf {
        self.0.push(p.clone());
        p
    }
}

impl Drop for TempPaths {
    fn drop(&mut self) {
        for p in &self.0 {
            let _ = if p.is_dir() { fs::remove_dir_all(p) } else { fs::remove_file(p) };
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicU32;

    use super::super::transfer::LAYER_TRIES;

    use super::*;

    /// An image of one uncompressed layer whose blob breaks, the first
    /// `cuts` times it is fetched, after `cut_at` bytes (a registry that
    /// drops the connection late in the layer).
    struct Flaky {
        manifest: Vec<u8>,
        config: Vec<u8>,
        layer: Vec<u8>,
        cut_at: usize,
        cuts: AtomicU32,
    }

    struct Broken;
    impl Read for Broken {
        fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
            Err(io::Error::new(io::ErrorKind::ConnectionReset, "connection reset by peer"))
        }
    }

    impl Flaky {
        /// A layer with a directory and a file of `file_size` bytes, owned
        /// by the caller (so that no root is needed to unpack it).
        fn new(file_size: usize, cuts: u32) -> Flaky {
            let mut b = tar::Builder::new(Vec::new());
            let (uid, gid) = (nix::unistd::geteuid().as_raw().into(), nix::unistd::getegid().as_raw().into());
            for (path, kind, size) in
                [("etc/", tar::EntryType::Directory, 0), ("etc/big", tar::EntryType::Regular, file_size)]
            {
                let mut h = tar::Header::new_ustar();
                h.set_entry_type(kind);
                h.set_size(size as u64);
                h.set_mode(0o755);
                h.set_uid(uid);
                h.set_gid(gid);
                h.set_mtime(1_700_000_000);
                b.append_data(&mut h, path, &vec![7u8; size][..]).unwrap();
            }
            let layer = b.into_inner().unwrap();
            let diff_id = Digest::of(&layer);
            let config = serde_json::json!({
                "architecture": "amd64", "os": "linux",
                "rootfs": {"type": "layers", "diff_ids": [diff_id.to_string()]},
            })
            .to_string()
            .into_bytes();
            let manifest = serde_json::json!({
                "schemaVersion": 2,
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                           "digest": Digest::of(&config).to_string(), "size": config.len()},
                "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                            "digest": diff_id.to_string(), "size": layer.len()}],
            })
            .to_string()
            .into_bytes();
            // Past the file's content, in the end-of-archive blocks.
            let cut_at = layer.len() - 600;
            Flaky { manifest, config, layer, cut_at, cuts: AtomicU32::new(cuts) }
        }
    }

    impl Fetcher for Flaky {
        fn name(&self) -> String {
            "flaky".into()
        }
        fn top(&self) -> Result<Fetched> {
            Ok(Fetched { bytes: self.manifest.clone(), content_type: None, digest: None })
        }
        fn manifest(&self, _: &Digest) -> Result<Fetched> {
            self.top()
        }
        fn blob(&self, desc: &Descriptor) -> Result<super::super::source::BlobReader<'_>> {
            if desc.digest == Digest::of(&self.config) {
                return Ok(Box::new(io::Cursor::new(self.config.clone())));
            }
            if self.cuts.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1)).is_ok() {
                return Ok(Box::new(io::Cursor::new(self.layer[..self.cut_at].to_vec()).chain(Broken)));
            }
            Ok(Box::new(io::Cursor::new(self.layer.clone())))
        }
    }

    fn options(max_image_size: u64) -> PullOptions {
        PullOptions { max_image_size, retry_pause: Duration::ZERO, ..PullOptions::default() }
    }

    #[test]
    fn a_retried_layer_is_not_counted_twice_against_max_image_size() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        // 700 bytes under a limit of 1000: a retry that counted the first
        // try's file again would be refused at 1400.
        let flaky = Flaky::new(700, 1);
        let image = store.pull_from("flaky:v1", &flaky, &options(1000), &Quiet).unwrap();
        assert_eq!(flaky.cuts.load(Ordering::Relaxed), 0, "the layer was not cut");
        let big = image.layer_dirs[0].join("etc/big");
        assert_eq!(fs::metadata(&big).unwrap().len(), 700);

        // Cut on every try: the error is the connection's, not the limit.
        let store = Store::open(&dir.path().join("b")).unwrap();
        let flaky = Flaky::new(700, LAYER_TRIES);
        let e = store.pull_from("flaky:v1", &flaky, &options(1000), &Quiet).unwrap_err().to_string();
        assert!(e.contains("connection reset") && !e.contains("max_image_size"), "{e}");

        // The limit still holds for what the layer really unpacks to.
        let store = Store::open(&dir.path().join("c")).unwrap();
        let e = store.pull_from("flaky:v1", &Flaky::new(700, 0), &options(600), &Quiet).unwrap_err().to_string();
        assert!(e.contains("limit of 600 bytes (max_image_size)"), "{e}");
    }
}
