//! A walk of a directory tree that someone else may be changing while it
//! is read: a container's writable layer (`diff`, `commit`), or its root
//! seen through `/proc/PID/root` (`cp` out of it). Nothing in the tree is
//! followed: each directory is opened from its parent's descriptor with
//! `O_NOFOLLOW` (a directory swapped for a symlink meanwhile is not
//! entered), entries are examined with `fstatat` without following, and
//! the walk is bounded in depth (a descriptor is held per level: a deep
//! tree must not exhaust the daemon's descriptors or stack) and in
//! entries (the visitors keep something per entry).
//!
//! What to do with each entry is a [`Visit`]: the walk hands it the entry
//! (with the directory already opened, so that its attributes are read
//! from the very directory that will be entered) and the state its parent
//! directory was given, and the visitor says whether to enter it, with
//! what state for its entries.

use std::ffi::{OsStr, OsString};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::ffi::OsStrExt;

use nix::dir::Dir;
use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag};
use nix::sys::stat::{FileStat, Mode, SFlag, fstatat};

use super::error::{ImageError, Result};

/// Directories deeper than this are refused: the walk holds a descriptor
/// per level.
pub const MAX_DEPTH: usize = 256;

/// One entry of a directory being walked.
pub struct Entry<'a> {
    /// The directory that holds it.
    pub parent: BorrowedFd<'a>,
    pub name: &'a OsStr,
    /// Its path from the walk's root, `/etc/motd` (bytes: names need not
    /// be UTF-8).
    pub path: &'a [u8],
    /// As `fstatat` saw it, not following a link.
    pub stat: &'a FileStat,
    /// The directory itself, opened without following, when it is one
    /// (None when it was swapped for something else or removed since).
    pub dir: Option<&'a Dir>,
}

impl Entry<'_> {
    pub fn kind(&self) -> SFlag {
        kind(self.stat)
    }

    /// The path, lossily as text (for listings and messages).
    pub fn path_text(&self) -> String {
        String::from_utf8_lossy(self.path).into_owned()
    }
}

/// The file type bits of a stat.
pub fn kind(st: &FileStat) -> SFlag {
    SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits())
}

/// Whether `st` is an overlay whiteout (a 0/0 character device).
pub fn is_whiteout(st: &FileStat) -> bool {
    kind(st) == SFlag::S_IFCHR && st.st_rdev == 0
}

/// Whether `fd` is on one of the kernel's own filesystems (`/proc`,
/// `/sys`, cgroups, debugfs, ...): their files are views of the kernel,
/// not anyone's content. A container's root shows its `/proc` and `/sys`
/// (the host's devices, and without masks `/proc/kcore`, whose size is the
/// address space) to the root daemon, which reads more of them than the
/// container itself may. FUSE counts too: its files are served by a
/// process (the container's, if it mounted one), which can hold a read of
/// the root daemon for as long as it likes.
pub fn on_kernel_fs(fd: BorrowedFd<'_>) -> bool {
    let Ok(st) = nix::sys::statfs::fstatfs(fd) else { return false };
    // The constants' type differs between architectures; the magic
    // numbers are 32 bits everywhere.
    let kind = st.filesystem_type().0 as u32;
    [
        libc::PROC_SUPER_MAGIC,
        libc::SYSFS_MAGIC,
        libc::CGROUP_SUPER_MAGIC,
        libc::CGROUP2_SUPER_MAGIC,
        libc::DEBUGFS_MAGIC,
        libc::TRACEFS_MAGIC,
        libc::SECURITYFS_MAGIC,
        libc::BPF_FS_MAGIC,
        libc::SELINUX_MAGIC,
        libc::NSFS_MAGIC,
        libc::FUSE_SUPER_MAGIC,
    ]
    .iter()
    .any(|magic| *magic as u32 == kind)
}

/// What to do with each entry of a walk.
pub trait Visit {
    /// What a directory hands to its entries (the lower layers' matching
    /// directories for `diff`; nothing for a tar).
    type Below;
    /// Called for each entry; `Some` enters it (a directory with `dir`).
    fn entry(&mut self, entry: &Entry<'_>, above: &Self::Below) -> Result<Option<Self::Below>>;
    /// Called after a directory's entries (not for the root).
    fn leave(&mut self, _path: &[u8]) -> Result<()> {
        Ok(())
    }
}

/// Walks `root` (its entries; the root itself is the caller's), each
/// entry handed to `visit`. `label` names the tree in errors (its path);
/// more than `max_entries` entries are refused.
pub fn walk<V: Visit>(root: Dir, top: &V::Below, visit: &mut V, label: &str, max_entries: usize) -> Result<()> {
    let mut w = Walker { visit, label, seen: 0, max_entries };
    w.dir(root, b"", top, 0)
}

/// Opens `name` in `parent` as a directory, never following a link: None
/// when it is not one (any more) or is gone.
pub fn open_dir_at(parent: BorrowedFd<'_>, name: &OsStr) -> std::result::Result<Option<Dir>, Errno> {
    let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    match Dir::openat(parent, name, flags, Mode::empty()) {
        Ok(d) => Ok(Some(d)),
        Err(Errno::ELOOP | Errno::ENOTDIR | Errno::ENOENT) => Ok(None),
        Err(e) => Err(e),
    }
}

struct Walker<'v, V> {
    visit: &'v mut V,
    label: &'v str,
    seen: usize,
    max_entries: usize,
}

impl<V: Visit> Walker<'_, V> {
    fn error(&self, path: &[u8], message: String) -> ImageError {
        ImageError::Invalid(format!("{}{}: {message}", self.label, String::from_utf8_lossy(path)))
    }

    fn dir(&mut self, mut dir: Dir, path: &[u8], above: &V::Below, depth: usize) -> Result<()> {
        if depth > MAX_DEPTH {
            return Err(self.error(path, format!("nested deeper than {MAX_DEPTH} directories")));
        }
        // No more names than there is room for.
        let room = self.max_entries.saturating_sub(self.seen) + 1;
        let names: Vec<OsString> = dir
            .iter()
            .filter_map(|e| e.ok())
            .map(|e| OsStr::from_bytes(e.file_name().to_bytes()).to_os_string())
            .filter(|n| n != "." && n != "..")
            .take(room)
            .collect();
        for name in names {
            self.seen += 1;
            if self.seen > self.max_entries {
                return Err(self.error(path, format!("more than {} entries", self.max_entries)));
            }
            let mut child = path.to_vec();
            child.push(b'/');
            child.extend_from_slice(name.as_bytes());
            // Gone meanwhile (the tree's owner works in it): skipped.
            let Ok(st) = fstatat(dir.as_fd(), name.as_os_str(), AtFlags::AT_SYMLINK_NOFOLLOW) else { continue };
            let opened = if kind(&st) == SFlag::S_IFDIR {
                open_dir_at(dir.as_fd(), &name).map_err(|e| self.error(&child, format!("open: {e}")))?
            } else {
                None
            };
            let entry = Entry { parent: dir.as_fd(), name: &name, path: &child, stat: &st, dir: opened.as_ref() };
            let below = self.visit.entry(&entry, above)?;
            if let (Some(below), Some(sub)) = (below, opened) {
                self.dir(sub, &child, &below, depth + 1)?;
                self.visit.leave(&child)?;
            }
        }
        Ok(())
    }
}
