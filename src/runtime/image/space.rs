//! Bounds on what one pull may write: the image's unpacked size, and the
//! free space of the store's filesystem.
//!
//! A layer's compressed size says little about what it unpacks to (zeros
//! compress a thousandfold), so both are checked while unpacking, before
//! each file is written: the file's size is taken from the image's budget
//! (shared by its layers, which unpack at once), and every
//! [`CHECK_EVERY`] bytes, or before any file that large, `statvfs(2)` must
//! show room for it above a reserve, so that a hostile or oversized image
//! fails with an error that says why instead of filling the disk the
//! containers, logs and the daemon itself write to.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Bytes written between two looks at the free space.
pub const CHECK_EVERY: u64 = 64 << 20;

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
}

/// Free and total bytes of the filesystem holding `dir`, for unprivileged
/// users (`f_bavail`), as `df` shows them.
pub fn free_space(dir: &Path) -> std::io::Result<(u64, u64)> {
    let st = nix::sys::statvfs::statvfs(dir).map_err(std::io::Error::from)?;
    let unit = st.fragment_size();
    Ok((st.blocks_available().saturating_mul(unit), st.blocks().saturating_mul(unit)))
}

impl Budget {
    /// `max`: the most bytes of file content the image may unpack to;
    /// `dir`: where the layers are written.
    pub fn new(image: &str, max: u64, dir: &Path) -> Budget {
        Budget {
            image: image.to_string(),
            max,
            used: AtomicU64::new(0),
            dir: dir.to_path_buf(),
            since_check: AtomicU64::new(0),
        }
    }

    /// Checks that `need` more bytes fit on the store's filesystem above
    /// the reserve.
    pub fn check_space(&self, need: u64) -> Result<(), String> {
        let (free, total) = free_space(&self.dir).map_err(|e| format!("statvfs {}: {e}", self.dir.display()))?;
        let keep = reserve(total);
        if free < need.saturating_add(keep) {
            return Err(format!(
                "the store's filesystem ({}) has {free} bytes free; {need} more would leave less than the reserve of {keep} bytes (5% of the filesystem, at most 1 GiB)",
                self.dir.display()
            ));
        }
        Ok(())
    }

    /// Takes a file of `size` bytes (`on_disk`: of which this many are
    /// written, the rest being holes) from the budget.
    pub fn take(&self, size: u64, on_disk: u64) -> Result<(), String> {
        let used = self.used.fetch_add(size, Ordering::Relaxed).saturating_add(size);
        if used > self.max {
            return Err(format!(
                "image {}: unpacks to more than the limit of {} bytes (max_image_size)",
                self.image, self.max
            ));
        }
        let since = self.since_check.fetch_add(on_disk, Ordering::Relaxed).saturating_add(on_disk);
        if since >= CHECK_EVERY || on_disk >= CHECK_EVERY {
            self.since_check.store(0, Ordering::Relaxed);
            self.check_space(on_disk)?;
        }
        Ok(())
    }

    pub fn used(&self) -> u64 {
        self.used.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        b.take(60, 60).unwrap();
        let e = b.take(41, 41).unwrap_err();
        assert!(e.contains("img:1") && e.contains("limit of 100 bytes") && e.contains("max_image_size"), "{e}");
        // Asking for more than any disk has fails the space check.
        let big = Budget::new("img:2", u64::MAX, dir.path());
        let e = big.take(u64::MAX / 2, u64::MAX / 2).unwrap_err();
        assert!(e.contains("reserve"), "{e}");
    }
}
