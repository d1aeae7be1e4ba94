//! The content-addressed image store, inside the state directory:
//!
//! ```text
//! images/blobs/sha256/<hex>   blobs as fetched (manifests, configs, layers)
//! images/layers/<hex>/        one unpacked directory per layer, by diff ID
//! images/refs/<hex>.json      a record per reference (hex of its name)
//! images/dangling/<hex>.json  an image a reference no longer names, by
//!                             its manifest digest (kept until a prune
//!                             finds no container running it)
//! images/pushed/<hex>.json    the repositories an image (by its manifest
//!                             digest) was pushed to: where a push may
//!                             mount its blobs from
//! images/daemon.lock          held (shared) by a running supervisord
//! images/tmp/                 work in progress
//! images/locks/               per-layer lock files
//! images/lock                 the store lock
//! ```
//!
//! Crash safety: everything is made under `tmp/` and renamed into place once
//! complete and synced (blobs: fsync; layers: one `syncfs`), and a record is
//! written last, so a record always names complete blobs and layers. The
//! rename is a layer's completion marker: a directory under `layers/` is
//! whole, one under `tmp/` never is. What a killed pull leaves in `tmp/`
//! (a partial blob, a half-unpacked layer) is removed when the store is
//! next opened with no pull running ([`Store::open`]), and by every garbage
//! collection; it is never resumed (a pull starts the layer afresh).
//!
//! Concurrency, across threads and processes: a pull holds the store lock
//! shared and each layer's lock exclusively while it makes that layer, so
//! two pulls of one image do the work once; garbage collection (`rmi`,
//! `prune`) holds the store lock exclusively and so never removes what a
//! pull is making.
//!
//! Images are identified by their manifest digest (what `status` shows as
//! a container's `image_digest`): the manifest names the exact blobs and,
//! through its config, the layers. When a pull moves a reference to
//! another image (a tag pushed anew), the image it named stays as a
//! dangling record, because a running container's overlay may still have
//! its layers as lower directories; `prune` drops it only when the caller
//! says no container runs it. [`Store::image_by_digest`] finds an image by
//! its ID whichever record holds it.

use std::collections::BTreeSet;
use std::fs::{self, File};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::config::ImageConfig;
use super::digest::Digest;
use super::error::{ImageError, Result};

/// A pulled image: what its reference resolved to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageRecord {
    /// The normalized reference or source, as units name it.
    pub reference: String,
    pub manifest_digest: Digest,
    pub config_digest: Digest,
    pub platform: String,
    pub layers: Vec<LayerRecord>,
    /// Sum of the layers' blob sizes.
    pub size: u64,
    /// When it was pulled, in seconds since the epoch.
    pub pulled: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerRecord {
    pub digest: Digest,
    pub diff_id: Digest,
    pub media_type: String,
    pub size: u64,
}

/// An image ready to run: its config and its layer directories.
#[derive(Debug, Clone)]
pub struct Image {
    pub record: ImageRecord,
    pub config: ImageConfig,
    /// Lower directories, the base layer first.
    pub layer_dirs: Vec<PathBuf>,
}

/// What a garbage collection removed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Removed {
    pub images: Vec<String>,
    pub layers: usize,
    pub blobs: usize,
}

/// A held `flock`; released when dropped.
pub struct Lock(#[allow(dead_code)] File);

/// The file whose `flock` guards `path`'s object, made if missing.
fn lock_file(path: &Path) -> Result<File> {
    File::options().create(true).truncate(false).write(true).open(path).map_err(ImageError::io("open lock", path))
}

pub(super) fn flock(path: &Path, exclusive: bool) -> Result<Lock> {
    let file = lock_file(path)?;
    let op = if exclusive { libc::LOCK_EX } else { libc::LOCK_SH };
    loop {
        // SAFETY: flock on a descriptor we own; blocks until granted.
        if unsafe { libc::flock(file.as_raw_fd(), op) } == 0 {
            return Ok(Lock(file));
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            return Err(ImageError::io("lock", path)(e));
        }
    }
}

/// The exclusive `flock` of `path` if no one holds it, at once.
pub(super) fn try_flock_exclusive(path: &Path) -> Result<Option<Lock>> {
    let file = lock_file(path)?;
    loop {
        // SAFETY: flock on a descriptor we own; LOCK_NB: it never blocks.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
            return Ok(Some(Lock(file)));
        }
        let e = std::io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EWOULDBLOCK) => return Ok(None),
            Some(libc::EINTR) => continue,
            _ => return Err(ImageError::io("lock", path)(e)),
        }
    }
}

/// Syncs a directory, so that a rename into it is durable.
fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(ImageError::io("sync", dir))
}

/// Writes `bytes` to `path` atomically and durably.
pub(super) fn write_atomic(tmp_dir: &Path, path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = tmp_dir.join(unique_name("w"));
    let write = || -> std::io::Result<()> {
        let mut f = File::create(&tmp)?;
        std::io::Write::write_all(&mut f, bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    };
    write().map_err(|e| {
        let _ = fs::remove_file(&tmp);
        ImageError::io("write", path)(e)
    })?;
    sync_dir(path.parent().unwrap_or(Path::new("/")))
}

/// A name no other writer uses: pid, thread and a counter.
pub(super) fn unique_name(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!("{prefix}-{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed))
}

pub fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// The image store of a state directory.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
}

/// Removes `path`, a file or a whole directory (never following a link).
pub(super) fn remove_path(path: &Path) -> std::io::Result<()> {
    let md = fs::symlink_metadata(path)?;
    if md.is_dir() { fs::remove_dir_all(path) } else { fs::remove_file(path) }
}

impl Store {
    /// Opens (and creates) the store in `state_dir`, and removes what
    /// killed pulls left in `tmp/` when no pull runs (see [`Store::sweep`]).
    pub fn open(state_dir: &Path) -> Result<Store> {
        let store = Store::open_as_is(state_dir)?;
        store.sweep()?;
        Ok(store)
    }

    /// Opens (and creates) the store without sweeping it: for `verify`,
    /// which reports what a killed pull left.
    pub fn open_as_is(state_dir: &Path) -> Result<Store> {
        // Private, as the daemon's state directory is: layers hold setuid
        // binaries and device nodes (`supervisorctl --store DIR` too).
        crate::runtime::private::private_dir(state_dir, 0o700, None).map_err(ImageError::io("create", state_dir))?;
        let root = state_dir.join("images");
        for d in ["blobs/sha256", "layers", "refs", "tmp", "locks"] {
            let p = root.join(d);
            fs::create_dir_all(&p).map_err(ImageError::io("create", &p))?;
        }
        Ok(Store { root })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The state directory the store is in.
    pub fn state_dir(&self) -> &Path {
        self.root.parent().unwrap_or(Path::new("/"))
    }

    /// Removes everything in `tmp/` (partial blobs, half-unpacked layers,
    /// half-written records) if no pull or garbage collection runs, in
    /// this process or another: every pull holds the store lock shared
    /// while it has files there, so with the lock taken exclusively what is
    /// there belongs to no one. Returns the paths removed; none when the
    /// store is busy (the next open or garbage collection sweeps).
    pub fn sweep(&self) -> Result<Vec<PathBuf>> {
        let Some(_lock) = try_flock_exclusive(&self.root.join("lock"))? else { return Ok(Vec::new()) };
        self.sweep_locked()
    }

    /// [`Store::sweep`], with the store lock held exclusively.
    fn sweep_locked(&self) -> Result<Vec<PathBuf>> {
        let dir = self.tmp_dir();
        let mut removed = Vec::new();
        for entry in fs::read_dir(&dir).map_err(ImageError::io("read", &dir))? {
            let path = entry.map_err(ImageError::io("read", &dir))?.path();
            remove_path(&path).map_err(ImageError::io("remove", &path))?;
            removed.push(path);
        }
        Ok(removed)
    }

    pub fn blob_path(&self, d: &Digest) -> PathBuf {
        self.root.join("blobs/sha256").join(d.hex())
    }

    pub fn layer_path(&self, diff_id: &Digest) -> PathBuf {
        self.root.join("layers").join(diff_id.hex())
    }

    pub(super) fn tmp_dir(&self) -> PathBuf {
        self.root.join("tmp")
    }

    pub(super) fn record_path(&self, reference: &str) -> PathBuf {
        self.root.join("refs").join(format!("{}.json", Digest::of(reference.as_bytes()).hex()))
    }

    /// Shared for pulls, exclusive for garbage collection and `verify`.
    pub(super) fn lock_store(&self, exclusive: bool) -> Result<Lock> {
        flock(&self.root.join("lock"), exclusive)
    }

    pub(super) fn lock_layer(&self, diff_id: &Digest) -> Result<Lock> {
        flock(&self.root.join("locks").join(format!("{}.lock", diff_id.hex())), true)
    }

    /// Stores a small blob (manifest, config) after checking its digest.
    pub(super) fn put_blob(&self, digest: &Digest, bytes: &[u8]) -> Result<()> {
        let actual = Digest::of(bytes);
        if actual != *digest {
            return Err(ImageError::DigestMismatch {
                what: "blob".into(),
                expected: digest.to_string(),
                actual: actual.to_string(),
            });
        }
        let path = self.blob_path(digest);
        // A stored copy that is not whole (damaged since) is replaced, or
        // every later read of it would fail.
        if fs::read(&path).is_ok_and(|stored| Digest::of(&stored) == *digest) {
            return Ok(());
        }
        write_atomic(&self.tmp_dir(), &path, bytes)
    }

    /// A stored blob, checked against its digest.
    pub fn read_blob(&self, digest: &Digest) -> Result<Vec<u8>> {
        let path = self.blob_path(digest);
        let bytes = fs::read(&path).map_err(ImageError::io("read", &path))?;
        let actual = Digest::of(&bytes);
        if actual != *digest {
            return Err(ImageError::DigestMismatch {
                what: "stored blob".into(),
                expected: digest.to_string(),
                actual: actual.to_string(),
            });
        }
        Ok(bytes)
    }

    pub(super) fn dangling_dir(&self) -> PathBuf {
        self.root.join("dangling")
    }

    /// Records `record`; the image its reference named before, if another,
    /// becomes dangling (see the module's documentation).
    pub(super) fn put_record(&self, record: &ImageRecord) -> Result<()> {
        if let Some(old) = self.record(&record.reference)?
            && old.manifest_digest != record.manifest_digest
        {
            let dir = self.dangling_dir();
            fs::create_dir_all(&dir).map_err(ImageError::io("create", &dir))?;
            let bytes = serde_json::to_vec_pretty(&old).map_err(|e| ImageError::Invalid(e.to_string()))?;
            write_atomic(&self.tmp_dir(), &dir.join(format!("{}.json", old.manifest_digest.hex())), &bytes)?;
        }
        let bytes = serde_json::to_vec_pretty(record).map_err(|e| ImageError::Invalid(e.to_string()))?;
        write_atomic(&self.tmp_dir(), &self.record_path(&record.reference), &bytes)
    }

    /// Images no reference names any more, kept for the containers that
    /// may run them.
    pub fn dangling(&self) -> Result<Vec<ImageRecord>> {
        read_records(&self.dangling_dir())
    }

    /// Held (shared) by a supervisord for as long as it runs: its
    /// containers' images are known only to it, so an offline prune or
    /// rmi must not run beside it. Waits for an offline one to finish.
    pub fn hold_for_daemon(&self) -> Result<Lock> {
        flock(&self.root.join("daemon.lock"), false)
    }

    /// For an offline prune, rmi or verify (`verb`): fails at once if a
    /// supervisord is using the store, and keeps one from starting until
    /// dropped.
    pub fn lock_out_daemon(&self, verb: &str) -> Result<Lock> {
        let path = self.root.join("daemon.lock");
        match try_flock_exclusive(&path)? {
            Some(lock) => Ok(lock),
            None => Err(ImageError::Invalid(format!(
                "a running supervisord uses the store {}, and only it knows which images its containers run: use `supervisorctl {verb}` through it (without --store), or stop it first",
                self.root.display()
            ))),
        }
    }

    pub fn record(&self, reference: &str) -> Result<Option<ImageRecord>> {
        read_record(&self.record_path(reference))
    }

    /// The image recorded for `reference`, if it is complete.
    pub fn image(&self, reference: &str) -> Result<Option<Image>> {
        let Some(record) = self.record(reference)? else { return Ok(None) };
        self.complete(record).map(Some)
    }

    /// The image `record` names, with its config; an error if a layer is
    /// missing from the store.
    pub(super) fn complete(&self, record: ImageRecord) -> Result<Image> {
        let config = ImageConfig::parse(&self.read_blob(&record.config_digest)?)?;
        let layer_dirs: Vec<PathBuf> = record.layers.iter().map(|l| self.layer_path(&l.diff_id)).collect();
        if let Some(missing) = layer_dirs.iter().find(|d| !d.is_dir()) {
            return Err(ImageError::Invalid(format!(
                "{}: layer {} is missing from the store",
                record.reference,
                missing.display()
            )));
        }
        Ok(Image { record, config, layer_dirs })
    }

    /// Every recorded image, sorted by reference.
    pub fn list(&self) -> Result<Vec<ImageRecord>> {
        read_records(&self.root.join("refs"))
    }

    /// Removes the image `reference` and whatever only it used.
    pub fn remove(&self, reference: &str) -> Result<Removed> {
        let _lock = self.lock_store(true)?;
        let path = self.record_path(reference);
        if !path.exists() {
            return Err(ImageError::NotInStore(reference.to_string()));
        }
        fs::remove_file(&path).map_err(ImageError::io("remove", &path))?;
        let mut removed = self.collect_garbage()?;
        removed.images.push(reference.to_string());
        Ok(removed)
    }

    /// Removes every image whose reference is not in `keep` and whose
    /// manifest digest is not in `running` (the images containers run),
    /// every dangling image not in `running`, then every layer and blob
    /// that no remaining image uses, and leftovers of interrupted pulls.
    pub fn prune(&self, keep: &BTreeSet<String>, running: &BTreeSet<Digest>) -> Result<Removed> {
        let _lock = self.lock_store(true)?;
        let mut images = Vec::new();
        let mut named = BTreeSet::new();
        for record in self.list()? {
            if keep.contains(&record.reference) || running.contains(&record.manifest_digest) {
                named.insert(record.manifest_digest);
            } else {
                let path = self.record_path(&record.reference);
                fs::remove_file(&path).map_err(ImageError::io("remove", &path))?;
                images.push(record.reference);
            }
        }
        for record in self.dangling()? {
            // One that a kept reference names again needs no record of its own.
            if !running.contains(&record.manifest_digest) || named.contains(&record.manifest_digest) {
                let path = self.dangling_dir().join(format!("{}.json", record.manifest_digest.hex()));
                fs::remove_file(&path).map_err(ImageError::io("remove", &path))?;
                if !named.contains(&record.manifest_digest) {
                    images.push(format!("{}@{}", record.reference, record.manifest_digest));
                }
            }
        }
        let mut removed = self.collect_garbage()?;
        removed.images = images;
        Ok(removed)
    }

    /// With the store lock held exclusively: removes unreferenced layers and
    /// blobs, and everything in `tmp/`.
    fn collect_garbage(&self) -> Result<Removed> {
        let mut blobs = BTreeSet::new();
        let mut layers = BTreeSet::new();
        for r in self.list()?.into_iter().chain(self.dangling()?) {
            blobs.insert(r.manifest_digest.hex().to_string());
            blobs.insert(r.config_digest.hex().to_string());
            for l in &r.layers {
                blobs.insert(l.digest.hex().to_string());
                layers.insert(l.diff_id.hex().to_string());
            }
        }
        // Where an image was pushed: kept while the image is.
        let pushed: BTreeSet<String> = blobs.iter().map(|hex| format!("{hex}.json")).collect();
        let mut removed = Removed::default();
        let sweep = |dir: &Path, keep: &BTreeSet<String>, count: &mut usize| -> Result<()> {
            for entry in fs::read_dir(dir).map_err(ImageError::io("read", dir))? {
                let entry = entry.map_err(ImageError::io("read", dir))?;
                let name = entry.file_name().to_string_lossy().into_owned();
                if !keep.contains(&name) {
                    let p = entry.path();
                    let r = if p.is_dir() && !p.is_symlink() { fs::remove_dir_all(&p) } else { fs::remove_file(&p) };
                    r.map_err(ImageError::io("remove", &p))?;
                    *count += 1;
                }
            }
            Ok(())
        };
        sweep(&self.root.join("blobs/sha256"), &blobs, &mut removed.blobs)?;
        sweep(&self.root.join("layers"), &layers, &mut removed.layers)?;
        let pushed_dir = self.root.join("pushed");
        if pushed_dir.is_dir() {
            sweep(&pushed_dir, &pushed, &mut 0)?;
        }
        self.sweep_locked()?;
        Ok(removed)
    }
}

/// The record in `path`, if there is one.
pub(super) fn read_record(path: &Path) -> Result<Option<ImageRecord>> {
    match fs::read(path) {
        Ok(b) => {
            serde_json::from_slice(&b).map(Some).map_err(|e| ImageError::Invalid(format!("{}: {e}", path.display())))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(ImageError::io("read", path)(e)),
    }
}

/// The records in `dir` (none if it does not exist), sorted by reference.
fn read_records(dir: &Path) -> Result<Vec<ImageRecord>> {
    let mut out = Vec::new();
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(ImageError::io("read", dir)(e)),
    };
    for entry in entries {
        let path = entry.map_err(ImageError::io("read", dir))?.path();
        if path.extension().is_some_and(|e| e == "json") {
            let bytes = fs::read(&path).map_err(ImageError::io("read", &path))?;
            let record: ImageRecord =
                serde_json::from_slice(&bytes).map_err(|e| ImageError::Invalid(format!("{}: {e}", path.display())))?;
            out.push(record);
        }
    }
    out.sort_by(|a, b| a.reference.cmp(&b.reference));
    Ok(out)
}

impl Image {
    /// A small file of the image's merged filesystem, without mounting it:
    /// the topmost layer that has `path` wins, a whiteout there hides it,
    /// and an opaque parent directory hides the layers below. Links are
    /// resolved inside each layer's root (`RESOLVE_IN_ROOT`), so an
    /// image's symlink can never make us read a host file.
    pub fn read_file(&self, path: &str, max: u64) -> Result<Option<Vec<u8>>> {
        use nix::fcntl::{OFlag, OpenHow, ResolveFlag, openat2};
        use std::io::Read;
        use std::os::fd::AsRawFd;
        let how = || OpenHow::new().flags(OFlag::O_PATH | OFlag::O_CLOEXEC).resolve(ResolveFlag::RESOLVE_IN_ROOT);
        let rel = path.trim_start_matches('/');
        let parent = rel.rsplit_once('/').map_or(".", |(p, _)| p);
        for layer in self.layer_dirs.iter().rev() {
            let dir = File::open(layer).map_err(ImageError::io("open", layer))?;
            match openat2(&dir, rel, how()) {
                Ok(fd) => {
                    let st =
                        nix::sys::stat::fstat(&fd).map_err(|e| ImageError::io("stat", layer.join(rel))(e.into()))?;
                    let kind = st.st_mode & libc::S_IFMT;
                    if kind == libc::S_IFCHR && st.st_rdev == 0 {
                        return Ok(None);
                    }
                    if kind != libc::S_IFREG {
                        return Ok(None);
                    }
                    let proc_path = PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()));
                    let mut bytes = Vec::new();
                    File::open(&proc_path)
                        .and_then(|f| f.take(max + 1).read_to_end(&mut bytes))
                        .map_err(ImageError::io("read", layer.join(rel)))?;
                    if bytes.len() as u64 > max {
                        return Err(ImageError::Invalid(format!("{path} in the image is larger than {max} bytes")));
                    }
                    return Ok(Some(bytes));
                }
                Err(nix::errno::Errno::ENOENT) => {
                    if let Ok(p) = openat2(&dir, parent, how()) {
                        let opaque = std::fs::read_link(format!("/proc/self/fd/{}", p.as_raw_fd()))
                            .ok()
                            .and_then(|real| super::export::get_xattr(&real, super::tree::OPAQUE_XATTR));
                        if opaque.as_deref() == Some(b"y") {
                            return Ok(None);
                        }
                    }
                }
                Err(_) => continue,
            }
        }
        Ok(None)
    }
}

#[cfg(test)]
#[path = "store_tests.rs"]
mod tests;
