//! Writing untrusted paths into a directory without ever leaving it.
//!
//! Layer content is hostile input: an entry may name `../x`, `/etc/x`, or a
//! path through a symbolic link that an earlier entry planted
//! (`a -> /etc`, then `a/passwd`). Every path here is split into checked
//! components, and every parent directory is opened with `openat2(2)` and
//! `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS`, so the kernel itself refuses any
//! resolution that would leave the tree or follow a link. Final components
//! are created with `*at` calls that never follow links (`O_NOFOLLOW`,
//! `AT_SYMLINK_NOFOLLOW`). Layer unpacking and `export` both write through
//! this type.

use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, OpenHow, ResolveFlag, openat, openat2};
use nix::sys::stat::{FileStat, Mode, SFlag, fchmod, fstatat, futimens, makedev, mkdirat, mknodat, utimensat};
use nix::sys::time::TimeSpec;
use nix::unistd::{Gid, Uid, UnlinkatFlags, fchown, fchownat, linkat, symlinkat, unlinkat};

/// Why a write into the tree failed.
#[derive(Debug, thiserror::Error)]
pub enum TreeError {
    /// The path tries to leave the tree: the caller must refuse the entry.
    #[error("{0}")]
    Unsafe(String),
    /// A call on the tree failed: the operation and the errno.
    #[error("{op}: {source}")]
    Io {
        op: String,
        #[source]
        source: io::Error,
    },
    #[error("changing a file's owner was refused: unpacking image layers needs root")]
    ChownRefused,
    /// Reading a file's content from its source failed (not the tree).
    #[error("reading its content: {0}")]
    Read(#[source] io::Error),
}

impl TreeError {
    fn io(op: &str, e: impl Into<io::Error>) -> TreeError {
        TreeError::Io { op: op.to_string(), source: e.into() }
    }
}

type Result<T> = std::result::Result<T, TreeError>;

/// Owner, mode, time and extended attributes of an entry.
#[derive(Debug, Clone, Default)]
pub struct Meta {
    /// Permission bits, including setuid, setgid and sticky.
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime: i64,
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

/// The overlayfs attribute that makes a directory hide the layers below.
pub const OPAQUE_XATTR: &[u8] = b"trusted.overlay.opaque";

/// Splits a path from an archive into components: `.` and empty ones are
/// dropped; `..` and absolute paths are refused. `/` alone, which some
/// tools (umoci) write for the layer's root directory, is the root.
pub fn components(path: &[u8]) -> Result<Vec<&[u8]>> {
    if path.first() == Some(&b'/') && !path.iter().all(|b| *b == b'/') {
        return Err(TreeError::Unsafe("absolute path".into()));
    }
    if path.contains(&0) {
        return Err(TreeError::Unsafe("NUL byte in path".into()));
    }
    let mut out = Vec::new();
    for c in path.split(|b| *b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => return Err(TreeError::Unsafe("'..' in path".into())),
            c => out.push(c),
        }
    }
    Ok(out)
}

fn os(c: &[u8]) -> &Path {
    Path::new(OsStr::from_bytes(c))
}

fn join(comps: &[&[u8]]) -> Vec<u8> {
    let mut p = Vec::new();
    for (i, c) in comps.iter().enumerate() {
        if i > 0 {
            p.push(b'/');
        }
        p.extend_from_slice(c);
    }
    p
}

const BENEATH: ResolveFlag =
    ResolveFlag::RESOLVE_BENEATH.union(ResolveFlag::RESOLVE_NO_SYMLINKS).union(ResolveFlag::RESOLVE_NO_MAGICLINKS);
/// A container's root: its symlinks are followed, as the container would
/// see them, and never lead out of it.
const IN_ROOT: ResolveFlag = ResolveFlag::RESOLVE_IN_ROOT.union(ResolveFlag::RESOLVE_NO_MAGICLINKS);

fn open_dir_beneath(dir: BorrowedFd<'_>, path: &[u8]) -> std::result::Result<OwnedFd, Errno> {
    open_dir_with(dir, path, BENEATH)
}

fn open_dir_with(dir: BorrowedFd<'_>, path: &[u8], resolve: ResolveFlag) -> std::result::Result<OwnedFd, Errno> {
    let how = OpenHow::new().flags(OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC).resolve(resolve);
    let p: &Path = if path.is_empty() { Path::new(".") } else { os(path) };
    openat2(dir, p, how)
}

fn resolve_error(path: &[u8], e: Errno) -> TreeError {
    let shown = String::from_utf8_lossy(path);
    match e {
        Errno::ELOOP => TreeError::Unsafe(format!("{shown:?} goes through a symbolic link")),
        Errno::EXDEV => TreeError::Unsafe(format!("{shown:?} leads outside the layer")),
        Errno::ENOTDIR => TreeError::Unsafe(format!("a parent of {shown:?} is not a directory")),
        e => TreeError::io(&format!("open {shown:?}"), e),
    }
}

/// A directory that untrusted paths are written into.
pub struct SafeTree {
    root: OwnedFd,
    /// How parent directories are looked up from the root.
    resolve: ResolveFlag,
    /// The parent directory opened last, reused by its siblings.
    cached: Option<(Vec<u8>, OwnedFd)>,
}

impl SafeTree {
    pub fn open(root: &Path) -> io::Result<SafeTree> {
        let fd =
            openat(nix::fcntl::AT_FDCWD, root, OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty())?;
        Ok(SafeTree { root: fd, resolve: BENEATH, cached: None })
    }

    /// A tree whose root is a container's root directory (`cp` into a
    /// container): the parents of entries are looked up as the container
    /// sees them, its symlinks followed but resolved inside `root`
    /// (`RESOLVE_IN_ROOT`), so that no path leads out of it; final
    /// components are never followed, as in any tree.
    pub fn in_root(root: OwnedFd) -> SafeTree {
        SafeTree { root, resolve: IN_ROOT, cached: None }
    }

    fn open_dir(&self, path: &[u8]) -> std::result::Result<OwnedFd, Errno> {
        open_dir_with(self.root.as_fd(), path, self.resolve)
    }

    /// The directory that holds `comps`' last component, created (0755)
    /// when `create` and missing.
    fn parent(&mut self, comps: &[&[u8]], create: bool) -> Result<BorrowedFd<'_>> {
        let dir = join(&comps[..comps.len().saturating_sub(1)]);
        if self.cached.as_ref().is_none_or(|(p, _)| *p != dir) {
            let fd = match self.open_dir(&dir) {
                Ok(fd) => fd,
                Err(Errno::ENOENT) if create => self.create_dirs(&comps[..comps.len() - 1])?,
                Err(e) => return Err(resolve_error(&dir, e)),
            };
            self.cached = Some((dir, fd));
        }
        Ok(self.cached.as_ref().map(|(_, fd)| fd.as_fd()).expect("just cached"))
    }

    fn create_dirs(&self, comps: &[&[u8]]) -> Result<OwnedFd> {
        let mut cur = self.open_dir(b"").map_err(|e| resolve_error(b".", e))?;
        for (i, c) in comps.iter().enumerate() {
            // Each prefix from the root, so that a link on the way is
            // resolved as the root says.
            let next = match self.open_dir(&join(&comps[..=i])) {
                Ok(fd) => fd,
                Err(Errno::ENOENT) => {
                    mkdirat(cur.as_fd(), os(c), Mode::from_bits_truncate(0o755))
                        .map_err(|e| TreeError::io("mkdir", e))?;
                    // 0755 whatever the daemon's umask (0077): in the
                    // overlay this directory hides the lower layers' own.
                    nix::sys::stat::fchmodat(
                        cur.as_fd(),
                        os(c),
                        Mode::from_bits_truncate(0o755),
                        nix::sys::stat::FchmodatFlags::FollowSymlink,
                    )
                    .map_err(|e| TreeError::io("chmod", e))?;
                    self.open_dir(&join(&comps[..=i])).map_err(|e| resolve_error(&join(&comps[..=i]), e))?
                }
                Err(e) => return Err(resolve_error(&join(&comps[..=i]), e)),
            };
            cur = next;
        }
        Ok(cur)
    }

    /// What is at `comps` now, without following a link.
    pub fn stat(&mut self, comps: &[&[u8]]) -> Result<Option<FileStat>> {
        let Some(name) = comps.last() else { return Ok(None) };
        let parent = match self.parent(comps, false) {
            Ok(p) => p,
            Err(TreeError::Io { .. }) => return Ok(None),
            Err(e) => return Err(e),
        };
        match fstatat(parent, os(name), AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(st) => Ok(Some(st)),
            Err(Errno::ENOENT) => Ok(None),
            Err(e) => Err(TreeError::io("stat", e)),
        }
    }

    /// Removes whatever is at `comps` (a whole directory tree too).
    pub fn remove(&mut self, comps: &[&[u8]]) -> Result<()> {
        let Some(name) = comps.last() else { return Err(TreeError::Unsafe("cannot remove the root".into())) };
        let parent = match self.parent(comps, false) {
            Ok(p) => p,
            Err(TreeError::Io { .. }) => return Ok(()),
            Err(e) => return Err(e),
        };
        remove_at(parent, name)
    }

    /// Removes every entry inside the directory `comps`.
    pub fn clear_dir(&mut self, comps: &[&[u8]]) -> Result<()> {
        let dir = self.open_dir(&join(comps)).map_err(|e| resolve_error(&join(comps), e))?;
        clear_at(dir)
    }

    /// Makes room for a new non-directory entry: anything there goes.
    fn replace(&mut self, comps: &[&[u8]]) -> Result<BorrowedFd<'_>> {
        let name = *comps.last().ok_or_else(|| TreeError::Unsafe("empty path".into()))?;
        let parent = self.parent(comps, true)?;
        remove_at(parent, name)?;
        Ok(parent)
    }

    /// Writes a regular file from `data`; returns its size. With `sparse`,
    /// runs of zeros become holes instead of written blocks.
    pub fn file(&mut self, comps: &[&[u8]], meta: &Meta, data: &mut dyn Read, sparse: bool) -> Result<u64> {
        let name = os(comps.last().copied().unwrap_or_default());
        let parent = self.replace(comps)?;
        let flags = OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        let fd =
            openat(parent, name, flags, Mode::from_bits_truncate(0o600)).map_err(|e| TreeError::io("create", e))?;
        let mut file = File::from(fd);
        let size = copy(data, &mut file, sparse)?;
        set_meta_fd(file.as_fd(), meta, true)?;
        Ok(size)
    }

    /// Makes a directory (or keeps the one there) and sets its metadata,
    /// all but the time: a directory's mtime changes as entries are added,
    /// so callers set it last with [`SafeTree::set_mtime`].
    pub fn dir(&mut self, comps: &[&[u8]], meta: &Meta) -> Result<()> {
        if let Some(name) = comps.last() {
            let is_dir = self.stat(comps)?.is_some_and(|st| SFlag::from_bits_truncate(st.st_mode) == SFlag::S_IFDIR);
            if !is_dir {
                let parent = self.replace(comps)?;
                mkdirat(parent, os(name), Mode::from_bits_truncate(0o700)).map_err(|e| TreeError::io("mkdir", e))?;
            }
        }
        let fd = self.open_dir(&join(comps)).map_err(|e| resolve_error(&join(comps), e))?;
        set_meta_fd(fd.as_fd(), meta, false)
    }

    /// Sets a directory's mtime; one that a later entry removed or
    /// replaced is skipped.
    pub fn set_mtime(&mut self, comps: &[&[u8]], mtime: i64) -> Result<()> {
        let fd = match self.open_dir(&join(comps)) {
            Ok(fd) => fd,
            Err(Errno::ENOENT | Errno::ENOTDIR) => return Ok(()),
            Err(e) => return Err(resolve_error(&join(comps), e)),
        };
        let t = TimeSpec::new(mtime, 0);
        futimens(fd.as_fd(), &t, &t).map_err(|e| TreeError::io("set times", e))
    }

    pub fn symlink(&mut self, comps: &[&[u8]], target: &[u8], meta: &Meta) -> Result<()> {
        if target.contains(&0) {
            return Err(TreeError::Unsafe("NUL byte in link target".into()));
        }
        let name = os(comps.last().copied().unwrap_or_default());
        let parent = self.replace(comps)?;
        // The target is stored, never followed here: a link may point
        // anywhere, since it is resolved inside the container's root.
        symlinkat(os(target), parent, name).map_err(|e| TreeError::io("symlink", e))?;
        set_owner_and_time_at(parent, name, meta)
    }

    /// A hard link to `target`, an entry already in this tree.
    pub fn hardlink(&mut self, comps: &[&[u8]], target: &[&[u8]]) -> Result<()> {
        let tname = *target.last().ok_or_else(|| TreeError::Unsafe("hard link to the root".into()))?;
        let tdir = join(&target[..target.len() - 1]);
        let tparent = self.open_dir(&tdir).map_err(|e| match e {
            Errno::ENOENT => TreeError::Unsafe("hard link to a file that is not in this layer".into()),
            e => resolve_error(&tdir, e),
        })?;
        match fstatat(tparent.as_fd(), os(tname), AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(st) if SFlag::from_bits_truncate(st.st_mode) == SFlag::S_IFDIR => {
                return Err(TreeError::Unsafe("hard link to a directory".into()));
            }
            Ok(_) => {}
            Err(_) => return Err(TreeError::Unsafe("hard link to a file that is not in this layer".into())),
        }
        if target == comps {
            return Ok(());
        }
        let name = os(comps.last().copied().unwrap_or_default());
        let parent = self.replace(comps)?;
        // No AT_SYMLINK_FOLLOW: a link to a symlink links the symlink itself.
        linkat(tparent.as_fd(), os(tname), parent, name, AtFlags::empty()).map_err(|e| TreeError::io("link", e))
    }

    /// A device node or FIFO.
    pub fn node(&mut self, comps: &[&[u8]], kind: SFlag, major: u64, minor: u64, meta: &Meta) -> Result<()> {
        let name = os(comps.last().copied().unwrap_or_default());
        let parent = self.replace(comps)?;
        mknodat(parent, name, kind, Mode::from_bits_truncate(meta.mode & 0o777), makedev(major, minor))
            .map_err(|e| TreeError::io("mknod", e))?;
        // mknod applies the umask; the image's mode is what counts. The node
        // was just made in a directory no one else writes: no link to follow.
        nix::sys::stat::fchmodat(
            parent,
            name,
            Mode::from_bits_truncate(meta.mode & 0o7777),
            nix::sys::stat::FchmodatFlags::FollowSymlink,
        )
        .map_err(|e| TreeError::io("chmod", e))?;
        set_owner_and_time_at(parent, name, meta)
    }

    /// An overlayfs whiteout (a 0/0 character device) hiding `comps` in
    /// the layers below, unless this layer itself has an entry there: a
    /// whiteout only ever applies to lower layers.
    pub fn whiteout(&mut self, comps: &[&[u8]]) -> Result<()> {
        if self.stat(comps)?.is_some() {
            return Ok(());
        }
        let name = os(comps.last().copied().unwrap_or_default());
        let parent = self.parent(comps, true)?;
        mknodat(parent, name, SFlag::S_IFCHR, Mode::empty(), makedev(0, 0))
            .map_err(|e| TreeError::io("mknod whiteout", e))
    }

    /// Marks the directory `comps` opaque: the layers below contribute
    /// nothing to it.
    pub fn opaque(&mut self, comps: &[&[u8]]) -> Result<()> {
        if self.stat(comps)?.is_none() {
            self.dir(comps, &Meta { mode: 0o755, ..Meta::default() })?;
        }
        let fd = self.open_dir(&join(comps)).map_err(|e| resolve_error(&join(comps), e))?;
        set_xattr(fd.as_fd(), OPAQUE_XATTR, b"y")
    }

    /// Flushes everything written under the tree to disk: one `syncfs(2)`
    /// for the whole layer instead of an fsync per file.
    pub fn sync(&self) -> io::Result<()> {
        nix::unistd::syncfs(self.root.as_fd()).map_err(io::Error::from)
    }
}

fn owner_error(e: Errno) -> TreeError {
    if e == Errno::EPERM { TreeError::ChownRefused } else { TreeError::io("chown", e) }
}

/// Owner and time of `name` in `parent`, without following it (links and
/// device nodes, which cannot be opened to set them).
fn set_owner_and_time_at(parent: BorrowedFd<'_>, name: &Path, meta: &Meta) -> Result<()> {
    let (uid, gid) = (Some(Uid::from_raw(meta.uid)), Some(Gid::from_raw(meta.gid)));
    fchownat(parent, name, uid, gid, AtFlags::AT_SYMLINK_NOFOLLOW).map_err(owner_error)?;
    let t = TimeSpec::new(meta.mtime, 0);
    utimensat(parent, name, &t, &t, nix::sys::stat::UtimensatFlags::NoFollowSymlink)
        .map_err(|e| TreeError::io("set times", e))
}

/// Owner, then mode (chown clears setuid bits), then xattrs and time.
fn set_meta_fd(fd: BorrowedFd<'_>, meta: &Meta, set_time: bool) -> Result<()> {
    fchown(fd, Some(Uid::from_raw(meta.uid)), Some(Gid::from_raw(meta.gid))).map_err(owner_error)?;
    fchmod(fd, Mode::from_bits_truncate(meta.mode & 0o7777)).map_err(|e| TreeError::io("chmod", e))?;
    for (name, value) in &meta.xattrs {
        // overlayfs metadata would let a layer forge whiteouts or redirects.
        if name.starts_with(b"trusted.overlay.") {
            continue;
        }
        set_xattr(fd, name, value)?;
    }
    if set_time {
        let t = TimeSpec::new(meta.mtime, 0);
        futimens(fd, &t, &t).map_err(|e| TreeError::io("set times", e))?;
    }
    Ok(())
}

fn set_xattr(fd: BorrowedFd<'_>, name: &[u8], value: &[u8]) -> Result<()> {
    let name = std::ffi::CString::new(name).map_err(|_| TreeError::Unsafe("NUL byte in xattr name".into()))?;
    // SAFETY: fd is open for the call's duration; name is NUL-terminated;
    // value points to value.len() readable bytes.
    let rc = unsafe { libc::fsetxattr(fd.as_raw_fd(), name.as_ptr(), value.as_ptr().cast(), value.len(), 0) };
    if rc == 0 { Ok(()) } else { Err(TreeError::io(&format!("set xattr {name:?}"), io::Error::last_os_error())) }
}

/// Removes `name` in `dir`, recursively when it is a directory.
fn remove_at(dir: BorrowedFd<'_>, name: &[u8]) -> Result<()> {
    match unlinkat(dir, os(name), UnlinkatFlags::NoRemoveDir) {
        Ok(()) | Err(Errno::ENOENT) => Ok(()),
        Err(Errno::EISDIR) => {
            let sub = open_dir_beneath(dir, name).map_err(|e| resolve_error(name, e))?;
            clear_at(sub)?;
            unlinkat(dir, os(name), UnlinkatFlags::RemoveDir).map_err(|e| TreeError::io("rmdir", e))
        }
        Err(e) => Err(TreeError::io("unlink", e)),
    }
}

fn clear_at(dir: OwnedFd) -> Result<()> {
    let mut d = nix::dir::Dir::from_fd(dir).map_err(|e| TreeError::io("read dir", e))?;
    let names: Vec<Vec<u8>> = d
        .iter()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_bytes().to_vec())
        .filter(|n| n != b"." && n != b"..")
        .collect();
    let fd = d.as_fd();
    for n in names {
        remove_at(fd, &n)?;
    }
    Ok(())
}

/// Copies with a large buffer (layer files are often big). With `sparse`,
/// a read of zeros only moves the offset, so a hole stays a hole however
/// large the file's apparent size; the length is set at the end.
fn copy(from: &mut dyn Read, to: &mut File, sparse: bool) -> Result<u64> {
    use std::io::{Seek, SeekFrom};
    let mut buf = vec![0u8; 256 * 1024];
    let mut total = 0;
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(TreeError::Read(e)),
        };
        let written = if sparse && buf[..n].iter().all(|b| *b == 0) {
            to.seek(SeekFrom::Current(n as i64)).map(|_| ())
        } else {
            to.write_all(&buf[..n])
        };
        written.map_err(|e| TreeError::io("write", e))?;
        total += n as u64;
    }
    if sparse {
        to.set_len(total).map_err(|e| TreeError::io("set length", e))?;
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn component_rules() {
        assert_eq!(components(b"./a//b/./c/").unwrap(), [&b"a"[..], b"b", b"c"]);
        assert!(components(b"").unwrap().is_empty());
        assert!(components(b"./").unwrap().is_empty());
        assert!(components(b"/").unwrap().is_empty());
        assert_eq!(components(b"/etc/passwd").unwrap_err().to_string(), "absolute path");
        assert_eq!(components(b"a/../../etc").unwrap_err().to_string(), "'..' in path");
        assert_eq!(components(b"..").unwrap_err().to_string(), "'..' in path");
    }
}
