//! `cp`: files into and out of a running container, as tar streams.
//!
//! Every path is the container's: it is looked up from the container's
//! root directory (`/proc/PID/root` of its first process, which also shows
//! its volumes and tmpfs mounts) with `openat2(RESOLVE_IN_ROOT |
//! RESOLVE_NO_MAGICLINKS)`, so a symlink or `..` in the container resolves
//! as the container sees it and never leads to a host file: a link to
//! `/etc/passwd` is the container's `/etc/passwd`. Out of the container
//! ([`Root::pack`]) a tree is walked without following anything
//! ([`crate::runtime::image::pack`]); into it ([`Root::extract`]) each
//! entry of the archive is written through a [`SafeTree`] whose parents
//! are looked up in the container's root and whose final components are
//! never followed. The same extraction, with a tree that follows no link
//! at all, writes an archive from a container into a host directory
//! ([`extract`]): what comes out of a container is hostile to the host.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, OpenHow, ResolveFlag, openat2, readlinkat};
use nix::sys::stat::{FileStat, SFlag, fstatat};
use serde::Serialize;
use tar::EntryType;

use crate::runtime::cgroups::Cgroup;
use crate::runtime::image::ImageError;
use crate::runtime::image::guard::{TarGuard, TarLimits};
use crate::runtime::image::pack::Packer;
use crate::runtime::image::tree::{SafeTree, TreeError, components};
use crate::runtime::image::unpack::{meta_of, node_of};
use crate::runtime::image::walk::{kind, on_kernel_fs, open_dir_at, walk};

/// Symlinks followed at most in one lookup (the kernel's own limit).
const MAX_LINKS: usize = 40;
/// Entries copied out at most.
pub const MAX_ENTRIES: usize = 1_000_000;

#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    #[error("open the root directory of process {pid}: {source}")]
    OpenRoot {
        pid: i32,
        #[source]
        source: std::io::Error,
    },
    /// The pid no longer names the container's process (it ended, and the
    /// number may be another process's now).
    #[error("{label}: process {pid} is not the container's any more ({reason})")]
    NotTheContainer { label: String, pid: i32, reason: &'static str },
    #[error("{path}: not an absolute path")]
    Relative { path: String },
    #[error("{path}: no such file or directory")]
    NotFound { path: String },
    #[error("{path}: not a directory")]
    NotADirectory { path: String },
    #[error("{path}: {op}: {source}")]
    Lookup {
        path: String,
        op: &'static str,
        #[source]
        source: Errno,
    },
    #[error("{path}: more than {MAX_LINKS} symbolic links")]
    TooManyLinks { path: String },
    /// `/proc`, `/sys` and the like: the kernel's, not the container's files.
    #[error("{path}: on the kernel's own filesystem (proc, sysfs, cgroup...), not a file of the container's to copy")]
    KernelFs { path: String },
    #[error("{path}: a copy of a file needs a name for it")]
    Unnamed { path: String },
    #[error("{0}")]
    Pack(#[from] ImageError),
    #[error("write the archive: {0}")]
    Write(#[source] std::io::Error),
    #[error("read the archive: {0}")]
    Read(#[source] std::io::Error),
    #[error("{entry}: {reason}")]
    Entry { entry: String, reason: String },
    /// The stream stopped before the archive's end: the copy failed on
    /// the sending side (a daemon logs why).
    #[error("the archive was cut short after {entries} entries (the copy failed where it was made)")]
    CutShort { entries: u64 },
}

type Result<T> = std::result::Result<T, CopyError>;

/// What is at a path: `stat` of `cp`, as the client decides what a
/// destination means.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PathStat {
    /// The last component of the path (`/` for the root).
    pub name: String,
    /// `file`, `directory`, `symlink` or `other`.
    pub kind: &'static str,
    pub mode: u32,
    pub size: u64,
    /// Seconds since the epoch.
    pub mtime: i64,
    /// A symlink's target, as stored.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub link_target: Option<String>,
}

/// A container's root directory.
pub struct Root {
    fd: OwnedFd,
    /// Names the container in errors (`web`).
    label: String,
}

/// A path found in a root: the directory that holds it and its name there.
struct Located {
    parent: OwnedFd,
    name: OsString,
    stat: FileStat,
    /// The path as it was resolved (links followed), for messages.
    path: String,
}

impl Root {
    /// The root of the container whose first process is `pid`, a member
    /// of `cgroup`.
    ///
    /// A pid is only a number: the container may have ended since it was
    /// read, and the number may name another process by now (a host
    /// process, whose root is the host's `/`: a copy in would write the
    /// host's files). So the process is held by a descriptor of its
    /// `/proc` directory (which never names another process), its root is
    /// opened through that, and only then is it checked to still be in
    /// the container's cgroup and alive: alive then, it is the process
    /// the cgroup listed. A root that is the daemon's own is refused
    /// whatever the check says.
    pub fn of_process(pid: i32, cgroup: &Cgroup, label: &str) -> Result<Root> {
        let open_error = |source: Errno| CopyError::OpenRoot { pid, source: source.into() };
        let gone = |reason| CopyError::NotTheContainer { label: label.to_string(), pid, reason };
        let process = nix::fcntl::open(
            Path::new(&format!("/proc/{pid}")),
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )
        .map_err(|e| if e == Errno::ENOENT { gone("it has ended") } else { open_error(e) })?;
        let fd = nix::fcntl::openat(
            process.as_fd(),
            "root",
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )
        .map_err(|e| if e == Errno::ENOENT { gone("it has ended") } else { open_error(e) })?;
        let member = cgroup.procs().is_ok_and(|pids| pids.iter().any(|p| i64::from(*p) == i64::from(pid)));
        if !member {
            return Err(gone("it is not in the container's cgroup"));
        }
        // Looked up in the held directory: fails once that process is gone.
        if fstatat(process.as_fd(), "stat", AtFlags::AT_SYMLINK_NOFOLLOW).is_err() {
            return Err(gone("it has ended"));
        }
        let ours = nix::sys::stat::stat("/").map_err(open_error)?;
        let theirs = nix::sys::stat::fstat(fd.as_fd()).map_err(open_error)?;
        if (ours.st_dev, ours.st_ino) == (theirs.st_dev, theirs.st_ino) {
            return Err(gone("its root is the host's"));
        }
        Ok(Root { fd, label: label.to_string() })
    }

    /// `dir` as a root (a container's, or one made by a test).
    pub fn at(dir: &Path, label: &str) -> Result<Root> {
        let flags = OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
        let fd = nix::fcntl::open(dir, flags, nix::sys::stat::Mode::empty()).map_err(|source| CopyError::Lookup {
            path: dir.display().to_string(),
            op: "open",
            source,
        })?;
        Ok(Root { fd, label: label.to_string() })
    }

    /// Opens the directory at `path` in the root (links followed inside it).
    fn open_dir(&self, path: &str, flags: OFlag) -> std::result::Result<OwnedFd, Errno> {
        let resolve = ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS;
        let how = OpenHow::new().flags(flags | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC).resolve(resolve);
        let rel = path.trim_start_matches('/');
        openat2(self.fd.as_fd(), if rel.is_empty() { "." } else { rel }, how)
    }

    fn lookup_error(&self, path: &str, op: &'static str) -> impl Fn(Errno) -> CopyError {
        let path = format!("{}:{path}", self.label);
        move |source| match source {
            Errno::ENOENT => CopyError::NotFound { path: path.clone() },
            Errno::ENOTDIR => CopyError::NotADirectory { path: path.clone() },
            source => CopyError::Lookup { path: path.clone(), op, source },
        }
    }

    /// Finds `path`; with `follow`, a symlink at its end is followed too
    /// (inside the root), otherwise it is what is found.
    fn locate(&self, path: &str, follow: bool) -> Result<Located> {
        if !path.starts_with('/') {
            return Err(CopyError::Relative { path: path.to_string() });
        }
        let mut path = path.to_string();
        for _ in 0..=MAX_LINKS {
            let trimmed = path.trim_end_matches('/');
            let (parent_path, name) = match trimmed.rsplit_once('/') {
                Some((_, "." | "..")) | None => (trimmed, "."),
                Some((p, n)) => (p, n),
            };
            let parent = self.open_dir(parent_path, OFlag::O_RDONLY).map_err(self.lookup_error(parent_path, "open"))?;
            let stat = fstatat(parent.as_fd(), name, AtFlags::AT_SYMLINK_NOFOLLOW)
                .map_err(self.lookup_error(&path, "stat"))?;
            if follow && kind(&stat) == SFlag::S_IFLNK {
                let target = readlinkat(parent.as_fd(), name).map_err(self.lookup_error(&path, "readlink"))?;
                let target = target.to_string_lossy();
                path = if target.starts_with('/') { target.into_owned() } else { format!("{parent_path}/{target}") };
                continue;
            }
            let held = nix::fcntl::openat(
                parent.as_fd(),
                name,
                OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                nix::sys::stat::Mode::empty(),
            )
            .map_err(self.lookup_error(&path, "open"))?;
            if on_kernel_fs(held.as_fd()) {
                return Err(CopyError::KernelFs { path: format!("{}:{path}", self.label) });
            }
            return Ok(Located { parent, name: OsString::from(name), stat, path });
        }
        Err(CopyError::TooManyLinks { path: format!("{}:{path}", self.label) })
    }

    /// What is at `path` (a symlink at its end followed with `follow`).
    pub fn stat(&self, path: &str, follow: bool) -> Result<PathStat> {
        let at = self.locate(path, follow)?;
        let link_target = (kind(&at.stat) == SFlag::S_IFLNK)
            .then(|| readlinkat(at.parent.as_fd(), at.name.as_os_str()).ok())
            .flatten()
            .map(|t| t.to_string_lossy().into_owned());
        let name = path.trim_end_matches('/').rsplit('/').next().filter(|n| !n.is_empty()).unwrap_or("/");
        Ok(PathStat {
            name: name.to_string(),
            kind: match kind(&at.stat) {
                SFlag::S_IFREG => "file",
                SFlag::S_IFDIR => "directory",
                SFlag::S_IFLNK => "symlink",
                _ => "other",
            },
            mode: at.stat.st_mode & 0o7777,
            size: at.stat.st_size.max(0) as u64,
            mtime: at.stat.st_mtime,
            link_target,
        })
    }

    /// Writes a tar of `path` into `out`, its root named `name` (a
    /// directory's entries at the top when `name` is empty). Returns the
    /// number of entries.
    pub fn pack(&self, path: &str, follow: bool, name: &[u8], out: impl Write) -> Result<u64> {
        let at = self.locate(path, follow)?;
        let is_dir = kind(&at.stat) == SFlag::S_IFDIR;
        if name.is_empty() && !is_dir {
            return Err(CopyError::Unnamed { path: at.path });
        }
        let dir = if is_dir {
            open_dir_at(at.parent.as_fd(), &at.name).map_err(self.lookup_error(&at.path, "open"))?
        } else {
            None
        };
        let label = format!("{}:{}", self.label, at.path.trim_end_matches('/'));
        let mut builder = tar::Builder::new(out);
        let mut packer = Packer::new(&mut builder, &label, name);
        let enter = packer.add(at.parent.as_fd(), &at.name, b"", &at.stat, dir.as_ref())?;
        if let (true, Some(dir)) = (enter, dir) {
            walk(dir, &(), &mut packer, &label, MAX_ENTRIES)?;
        }
        let entries = packer.entries;
        builder.finish().map_err(CopyError::Write)?;
        builder.into_inner().and_then(|mut w| w.flush()).map_err(CopyError::Write)?;
        Ok(entries)
    }

    /// The directory `path` (links followed inside the root), for the free
    /// space check of an extraction into it.
    pub fn dir_file(&self, path: &str) -> Result<File> {
        let fd = self.open_dir(path, OFlag::O_RDONLY).map_err(self.lookup_error(path, "open"))?;
        Ok(File::from(fd))
    }

    /// Extracts the tar `input` into the existing directory `dir` of the
    /// root. Returns the number of entries.
    pub fn extract(&self, dir: &str, input: &mut dyn Read) -> Result<u64> {
        if !dir.starts_with('/') {
            return Err(CopyError::Relative { path: dir.to_string() });
        }
        // The directory must be there (links followed inside the root).
        drop(self.dir_file(dir)?);
        let root = self.fd.try_clone().map_err(|e| CopyError::Lookup {
            path: format!("{}:/", self.label),
            op: "duplicate",
            source: Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)),
        })?;
        // An O_PATH descriptor serves as the base of openat2 as well.
        let mut tree = SafeTree::in_root(root);
        let base: Vec<&[u8]> = components(dir.trim_start_matches('/').as_bytes())
            .map_err(|e| CopyError::Entry { entry: dir.to_string(), reason: e.to_string() })?;
        extract_into(&mut tree, &base, input, false).map(|e| e.entries)
    }
}

/// What an extraction onto the host made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Extracted {
    pub entries: u64,
    /// Device nodes of the archive that were not made.
    pub devices_left_out: u64,
}

/// Extracts the tar `input` (from a container: hostile) into the host
/// directory `dest`, which must exist: no entry can leave it, through
/// `..`, an absolute name or a symlink (none is followed).
///
/// Nor does it bring the container's privileges onto the host: a
/// container makes device nodes (CAP_MKNOD; its device cgroup, not the
/// node, keeps it from the disk), setuid files and file capabilities of
/// its choosing, which on the host would open the host's disks or run as
/// root for whoever reaches `dest`. So device nodes are left out (and
/// counted), setuid and setgid bits dropped, and only `user.` extended
/// attributes kept (`security.capability`, `trusted.` ones are not).
pub fn extract(dest: &Path, input: &mut dyn Read) -> Result<Extracted> {
    let mut tree = SafeTree::open(dest).map_err(|e| CopyError::Lookup {
        path: dest.display().to_string(),
        op: "open",
        source: Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)),
    })?;
    extract_into(&mut tree, &[], input, true)
}

/// Writes each entry of `input` under `base` in `tree`; `from_container`:
/// onto the host (see [`extract`]).
fn extract_into(tree: &mut SafeTree, base: &[&[u8]], input: &mut dyn Read, from_container: bool) -> Result<Extracted> {
    let mut guard = TarGuard::new(input, TarLimits::default());
    let mut archive = tar::Archive::new(&mut guard as &mut dyn Read);
    let mut dir_times: Vec<(Vec<Vec<u8>>, i64)> = Vec::new();
    let (mut entries, mut devices_left_out) = (0, 0);
    for entry in archive.entries().map_err(CopyError::Read)? {
        let mut entry = entry.map_err(CopyError::Read)?;
        let path = entry.path_bytes().into_owned();
        let shown = String::from_utf8_lossy(&path).into_owned();
        let refuse = |reason: String| CopyError::Entry { entry: shown.clone(), reason };
        let fail = |e: TreeError| match e {
            TreeError::Read(e) => CopyError::Read(e),
            e => refuse(e.to_string()),
        };
        let comps = components(&path).map_err(fail)?;
        let full: Vec<&[u8]> = base.iter().copied().chain(comps.iter().copied()).collect();
        let mut meta = meta_of(&mut entry).map_err(CopyError::Read)?;
        let kind = entry.header().entry_type();
        if from_container {
            if matches!(kind, EntryType::Char | EntryType::Block) {
                devices_left_out += 1;
                continue;
            }
            meta.mode &= !(libc::S_ISUID | libc::S_ISGID);
            meta.xattrs.retain(|(name, _)| name.starts_with(b"user."));
            // An entry over a directory of the host would remove that whole
            // tree (and whatever is mounted in it): a container that swaps
            // a directory being copied for a file must not do that.
            let is_dir = |st: FileStat| crate::runtime::image::walk::kind(&st) == SFlag::S_IFDIR;
            if kind != EntryType::Directory && tree.stat(&full).map_err(fail)?.is_some_and(is_dir) {
                return Err(refuse("a directory on the host is not replaced by a file from a container".into()));
            }
        }
        if full.is_empty() && kind != EntryType::Directory {
            return Err(refuse("only a directory can be the root".into()));
        }
        match kind {
            EntryType::Regular | EntryType::Continuous => {
                // Zeros from a container become holes on the host: a file
                // it made sparse (terabytes for nothing: `truncate -s`)
                // takes no more of the host's disk than of its own.
                tree.file(&full, &meta, &mut entry, from_container).map_err(fail)?;
            }
            EntryType::Directory => {
                tree.dir(&full, &meta).map_err(fail)?;
                dir_times.push((full.iter().map(|c| c.to_vec()).collect(), meta.mtime));
            }
            EntryType::Symlink => {
                let target = entry.link_name_bytes().ok_or_else(|| refuse("symbolic link without a target".into()))?;
                tree.symlink(&full, &target, &meta).map_err(fail)?;
            }
            EntryType::Link => {
                let target = entry.link_name_bytes().ok_or_else(|| refuse("hard link without a target".into()))?;
                let target = components(&target).map_err(|e| refuse(format!("hard link target: {e}")))?;
                let target: Vec<&[u8]> = base.iter().copied().chain(target).collect();
                tree.hardlink(&full, &target).map_err(fail)?;
            }
            EntryType::Char | EntryType::Block | EntryType::Fifo => {
                let (sflag, major, minor) = node_of(kind, entry.header());
                tree.node(&full, sflag, major, minor, &meta).map_err(fail)?;
            }
            // Extension headers are read by the tar crate; nothing else
            // carries a file.
            _ => continue,
        }
        entries += 1;
    }
    if !guard.ended() {
        return Err(CopyError::CutShort { entries });
    }
    // A directory's time changes as entries are added: set last, deepest first.
    for (comps, mtime) in dir_times.iter().rev() {
        let comps: Vec<&[u8]> = comps.iter().map(Vec::as_slice).collect();
        tree.set_mtime(&comps, *mtime).map_err(|e| CopyError::Entry {
            entry: String::from_utf8_lossy(&comps.join(&b'/')).into_owned(),
            reason: e.to_string(),
        })?;
    }
    Ok(Extracted { entries, devices_left_out })
}

/// The name `cp` gives a copy of `path` when none is asked for: its last
/// component (`.` for the root, as `docker cp` names it).
pub fn base_name(path: &str) -> &OsStr {
    let trimmed = path.trim_end_matches('/');
    match trimmed.rsplit('/').next() {
        Some("") | None => OsStr::new("."),
        Some(n) => OsStr::from_bytes(n.as_bytes()),
    }
}

#[cfg(test)]
#[path = "copy_tests.rs"]
mod tests;
