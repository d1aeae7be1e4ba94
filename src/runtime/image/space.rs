//! Bounds on what one pull may write and hold: the image's unpacked size,
//! the free space of the store's filesystem, and the memory its layers'
//! directory bookkeeping takes.
//!
//! A layer's compressed size says little about what it unpacks to (zeros
//! compress a thousandfold), so both are checked while unpacking, before
//! each file is written: the file's size is taken from the image's budget
//! (shared by its layers, which unpack at once), and every
//! [`CHECK_EVERY`] bytes, or before any file that large, `statvfs(2)` must
//! show room for it above a reserve, so that a hostile or oversized image
//! fails with an error that says why instead of filling the disk the
//! containers, logs and the daemon itself write to.
//!
//! A layer is made by [`Attempt`]s: a transient failure (a registry that
//! drops the connection late in a large layer) starts the layer afresh, and
//! its files, removed with the failed attempt, must not count twice.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// Bytes written between two looks at the free space.
pub const CHECK_EVERY: u64 = 64 << 20;

/// 16 MiB: the most memory the directory times of a pull's layers (all
/// that unpack at once) may take, part of the daemon's 256 MB goal. At the
/// usual 50-byte paths that is some 150,000 directories.
pub const MAX_DIR_MEMORY: usize = 16 << 20;

/// Free space a pull leaves untouched: 5 % of the filesystem, at most
/// 1 GiB (a small appliance disk keeps 5 %, a large disk 1 GiB).
pub fn reserve(filesystem_size: u64) -> u64 {
    (filesystem_size / 20).min(1 << 30)
}

/// One pull's allowance, shared by the threads making its layers.
pub struct Budget {
    /// The image, for errors.
    image: String,
    max: u64,
    used: AtomicU64,
    dir: PathBuf,
    since_check: AtomicU64,
    max_memory: usize,
    memory: AtomicUsize,
}

/// Free and total bytes of the filesystem holding `dir`, for unprivileged
/// users (`f_bavail`), as `df` shows them.
pub fn free_space(dir: &Path) -> std::io::Result<(u64, u64)> {
    let st = nix::sys::statvfs::statvfs(dir).map_err(std::io::Error::from)?;
    let unit = st.fragment_size();
    Ok((st.blocks_available().saturating_mul(unit), st.blocks().saturating_mul(unit)))
}

/// Where the filesystem holding `path` is mounted: its highest ancestor
/// on the same device (`path` itself when it cannot be read).
pub fn mount_point(path: &Path) -> PathBuf {
    use std::os::unix::fs::MetadataExt;
    let Ok(dev) = std::fs::metadata(path).map(|m| m.dev()) else { return path.to_path_buf() };
    let mut top = path;
    while let Some(parent) = top.parent() {
        match std::fs::metadata(parent) {
            Ok(m) if m.dev() == dev => top = parent,
            _ => break,
        }
    }
    top.to_path_buf()
}

impl Budget {
    /// `max`: the most bytes of file content the image may unpack to;
    /// `dir`: where the layers are written.
    pub fn new(image: &str, max: u64, dir: &Path) -> Budget {
        Budget::with_memory(image, max, dir, MAX_DIR_MEMORY)
    }

    /// As [`Budget::new`], with `max_memory` bytes for directory times.
    pub fn with_memory(image: &str, max: u64, dir: &Path, max_memory: usize) -> Budget {
        Budget {
            image: image.to_string(),
            max,
            used: AtomicU64::new(0),
            dir: dir.to_path_buf(),
            since_check: AtomicU64::new(0),
            max_memory,
            memory: AtomicUsize::new(0),
        }
    }

    /// Checks that `need` more bytes fit on the store's filesystem above
    /// the reserve.
    pub fn check_space(&self, need: u64) -> Result<(), String> {
        let (free, total) = free_space(&self.dir).map_err(|e| format!("statvfs {}: {e}", self.dir.display()))?;
        let keep = reserve(total);
        if free < need.saturating_add(keep) {
            // Worded as a full disk's error (ImageError::NoSpace) is.
            return Err(format!(
                "no space left on the filesystem of {} (mounted at {}): {free} bytes free; {need} more would leave less than the reserve of {keep} bytes (5% of the filesystem, at most 1 GiB)",
                self.dir.display(),
                mount_point(&self.dir).display()
            ));
        }
        Ok(())
    }

    /// Starts making one layer: what it takes is given back unless it is
    /// committed.
    pub fn attempt(&self) -> Attempt<'_> {
        Attempt { budget: self, taken: 0, committed: false }
    }

    /// Memory for directory bookkeeping, given back when dropped.
    pub fn memory(&self) -> Memory<'_> {
        Memory { budget: self, held: 0 }
    }

    /// Takes a file of `size` bytes (`on_disk`: of which this many are
    /// written, the rest being holes). A refused take leaves the budget as
    /// it was.
    fn take(&self, size: u64, on_disk: u64) -> Result<(), String> {
        let max = self.max;
        self.used
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |used| used.checked_add(size).filter(|n| *n <= max))
            .map_err(|_| {
                format!("image {}: unpacks to more than the limit of {} bytes (max_image_size)", self.image, self.max)
            })?;
        let since = self.since_check.fetch_add(on_disk, Ordering::Relaxed).saturating_add(on_disk);
        if since >= CHECK_EVERY || on_disk >= CHECK_EVERY {
            self.since_check.store(0, Ordering::Relaxed);
            self.check_space(on_disk)?;
        }
        Ok(())
    }

    fn give_back(&self, size: u64) {
        let _ = self.used.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |used| Some(used.saturating_sub(size)));
    }

    pub fn used(&self) -> u64 {
        self.used.load(Ordering::Relaxed)
    }

    pub fn memory_used(&self) -> usize {
        self.memory.load(Ordering::Relaxed)
    }
}

/// One try at making a layer: the file bytes it took from the image's
/// budget go back when it is dropped uncommitted (it failed, and its files
/// were removed).
pub struct Attempt<'a> {
    budget: &'a Budget,
    taken: u64,
    committed: bool,
}

impl<'a> Attempt<'a> {
    /// Takes a file of `size` bytes, `on_disk` of them written.
    pub fn take(&mut self, size: u64, on_disk: u64) -> Result<(), String> {
        self.budget.take(size, on_disk)?;
        self.taken = self.taken.saturating_add(size);
        Ok(())
    }

    /// The layer is in the store: its files stay counted.
    pub fn commit(mut self) {
        self.committed = true;
    }

    pub fn budget(&self) -> &'a Budget {
        self.budget
    }
}

impl Drop for Attempt<'_> {
    fn drop(&mut self) {
        if !self.committed {
            self.budget.give_back(self.taken);
        }
    }
}

/// Bytes of memory held from the pull's [`MAX_DIR_MEMORY`], given back
/// when dropped with what they account for.
pub struct Memory<'a> {
    budget: &'a Budget,
    held: usize,
}

impl Memory<'_> {
    /// Holds `more` bytes, unless the pull's layers together would then
    /// hold more than the limit.
    pub fn grow(&mut self, more: usize) -> Result<(), String> {
        let max = self.budget.max_memory;
        self.budget
            .memory
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |held| held.checked_add(more).filter(|n| *n <= max))
            .map_err(|_| {
                format!(
                    "image {}: its directories' times would take more than the limit of {max} bytes of memory \
                     (for the layers unpacking at once); too many directories",
                    self.budget.image
                )
            })?;
        self.held += more;
        Ok(())
    }

    pub fn held(&self) -> usize {
        self.held
    }
}

impl Drop for Memory<'_> {
    fn drop(&mut self) {
        let held = self.held;
        let _ = self.budget.memory.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |m| Some(m.saturating_sub(held)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mount_point_is_the_highest_ancestor_on_the_same_filesystem() {
        let dir = tempfile::tempdir().unwrap();
        let deep = dir.path().join("a/b");
        std::fs::create_dir_all(&deep).unwrap();
        let top = mount_point(&deep);
        assert!(deep.starts_with(&top), "{}", top.display());
        // /proc is a filesystem of its own, mounted at /proc.
        assert_eq!(mount_point(Path::new("/proc/self")), Path::new("/proc"));
        assert_eq!(mount_point(Path::new("/")), Path::new("/"));
    }

    #[test]
    fn reserve_is_five_percent_up_to_a_gibibyte() {
        assert_eq!(reserve(1 << 30), (1 << 30) / 20);
        assert_eq!(reserve(100 << 30), 1 << 30);
        assert_eq!(reserve(0), 0);
    }

    #[test]
    fn the_budget_is_shared_and_names_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        let b = Budget::new("img:1", 100, dir.path());
        let (mut one, mut two) = (b.attempt(), b.attempt());
        one.take(60, 60).unwrap();
        let e = two.take(41, 41).unwrap_err();
        assert!(e.contains("img:1") && e.contains("limit of 100 bytes") && e.contains("max_image_size"), "{e}");
        // Asking for more than any disk has fails the space check.
        let big = Budget::new("img:2", u64::MAX, dir.path());
        let e = big.attempt().take(u64::MAX / 2, u64::MAX / 2).unwrap_err();
        assert!(e.contains("reserve"), "{e}");
    }

    #[test]
    fn a_failed_attempt_gives_its_bytes_back_and_a_committed_one_keeps_them() {
        let dir = tempfile::tempdir().unwrap();
        let b = Budget::new("img", 100, dir.path());
        // A layer of 70 bytes fails late, then is tried again whole.
        let mut first = b.attempt();
        first.take(60, 60).unwrap();
        drop(first);
        assert_eq!(b.used(), 0);
        let mut second = b.attempt();
        second.take(60, 60).unwrap();
        second.take(10, 10).unwrap();
        second.commit();
        assert_eq!(b.used(), 70);
        // The next layer finds the committed bytes still counted.
        let e = b.attempt().take(31, 31).unwrap_err();
        assert!(e.contains("limit of 100 bytes"), "{e}");
        // A refused take is not charged, so nothing is given back twice.
        assert_eq!(b.used(), 70);
    }

    #[test]
    fn a_huge_charge_does_not_wrap() {
        let dir = tempfile::tempdir().unwrap();
        let b = Budget::new("img", u64::MAX, dir.path());
        let mut a = b.attempt();
        // Sparse: nothing on disk, so no space check.
        a.take(u64::MAX - 10, 0).unwrap();
        assert!(a.take(100, 0).is_err(), "the sum wrapped around");
        assert_eq!(b.used(), u64::MAX - 10);
        drop(a);
        assert_eq!(b.used(), 0);
    }

    #[test]
    fn directory_memory_is_shared_bounded_and_given_back() {
        let dir = tempfile::tempdir().unwrap();
        let b = Budget::with_memory("img", 0, dir.path(), 1000);
        let mut one = b.memory();
        let mut two = b.memory();
        one.grow(600).unwrap();
        let e = two.grow(401).unwrap_err();
        assert!(e.contains("img") && e.contains("limit of 1000 bytes of memory"), "{e}");
        two.grow(400).unwrap();
        assert_eq!(
            one.grow(usize::MAX).unwrap_err().to_string(),
            "image img: its directories' times would take more than the limit of 1000 bytes of memory (for the layers unpacking at once); too many directories"
        );
        drop(one);
        assert_eq!(b.memory_used(), 400);
        drop(two);
        assert_eq!(b.memory_used(), 0);
    }
}
