//! A directory tree into a tar stream, the counterpart of [`super::unpack`]:
//! a container's writable layer as an image layer (`commit`), or a part of
//! its root filesystem for `cp`. The tree belongs to the container, which
//! may change it while it is read: it is walked by [`super::walk`] (nothing
//! followed, bounded), each file is opened from its directory's descriptor
//! with `O_NOFOLLOW | O_NONBLOCK` and checked to still be a regular file,
//! and its content is cut or padded to the size its header gave (a file
//! that grows or shrinks meanwhile cannot break the archive).
//!
//! Kept: owner, mode (setuid bits too), modification time, symlinks as
//! symlinks, hard links within the tree as links, device nodes and FIFOs,
//! and the extended attributes of files and directories (as PAX
//! `SCHILY.xattr.` records, as Docker writes them) except overlayfs' own.
//! Sockets are left out (a tar cannot hold them).
//!
//! In an overlay upper directory ([`Packer::overlay`]) a whiteout (a 0/0
//! character device) becomes an OCI whiteout file `.wh.NAME`, and an opaque
//! directory (`trusted.overlay.opaque=y`) is followed by `DIR/.wh..wh..opq`.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use nix::dir::Dir;
use nix::fcntl::{OFlag, openat, readlinkat};
use nix::sys::stat::{FileStat, Mode, SFlag, fstat, major, minor};
use tar::{EntryType, Header};

use super::error::{ImageError, Result};
use super::walk::{Entry, Visit, is_whiteout, kind, on_kernel_fs};

/// The overlayfs attribute that makes a directory opaque. Only the
/// `trusted.` one: our overlays are never mounted with `userxattr`, so a
/// `user.overlay.` attribute is one any file owner in the container may
/// set, and means nothing to overlayfs.
const OPAQUE: &[u8] = b"trusted.overlay.opaque";

/// Writes entries of a tree into a tar.
pub struct Packer<'a, W: Write> {
    out: &'a mut tar::Builder<W>,
    /// Names the tree in errors (a path, or `unit:/path`).
    label: String,
    /// What the tree's root is called in the archive (`etc` for a copy of
    /// `/etc`); empty: its entries are at the archive's top.
    prefix: Vec<u8>,
    /// Whether the tree is an overlay upper directory.
    overlay: bool,
    /// Paths from the root (`/etc/hosts`) left out.
    excluded: Vec<Vec<u8>>,
    /// The archive name of each file with more than one link, by device
    /// and inode: later names become hard links to it.
    links: HashMap<(u64, u64), Vec<u8>>,
    /// Entries written.
    pub entries: u64,
}

impl<'a, W: Write> Packer<'a, W> {
    pub fn new(out: &'a mut tar::Builder<W>, label: &str, prefix: &[u8]) -> Packer<'a, W> {
        Packer {
            out,
            label: label.to_string(),
            prefix: prefix.to_vec(),
            overlay: false,
            excluded: Vec::new(),
            links: HashMap::new(),
            entries: 0,
        }
    }

    /// Treats the tree as an overlay upper directory (see the module's
    /// documentation), leaving out `excluded` paths (`/etc/hosts`).
    pub fn overlay(mut self, excluded: &[&str]) -> Self {
        self.overlay = true;
        self.excluded = excluded.iter().map(|p| p.as_bytes().to_vec()).collect();
        self
    }

    /// The archive name of the entry at `path` (`/a/b` from the root).
    fn name(&self, path: &[u8]) -> Vec<u8> {
        let rel = path.strip_prefix(b"/").unwrap_or(path);
        match (self.prefix.is_empty(), rel.is_empty()) {
            (true, _) => rel.to_vec(),
            (false, true) => self.prefix.clone(),
            (false, false) => [self.prefix.as_slice(), b"/", rel].concat(),
        }
    }

    fn error(&self, path: &[u8], op: &'static str) -> impl FnOnce(io::Error) -> ImageError + use<W> {
        let (tree, entry) = (self.label.clone(), String::from_utf8_lossy(path).into_owned());
        move |source| ImageError::Pack { tree, entry, op, source }
    }

    /// The entry `name` of `parent` (stat `st`, the directory `dir` when
    /// it is one), under `path` from the root; whether it is a directory
    /// to enter.
    pub fn add(
        &mut self,
        parent: BorrowedFd<'_>,
        file_name: &OsStr,
        path: &[u8],
        st: &FileStat,
        dir: Option<&Dir>,
    ) -> Result<bool> {
        let name = self.name(path);
        let mut h = header(st);
        match kind(st) {
            SFlag::S_IFDIR => {
                let Some(dir) = dir else { return Ok(false) };
                let xattrs = xattrs(dir.as_fd());
                self.refuse_redirect(&xattrs, path)?;
                if !name.is_empty() {
                    self.pax(&name, &xattrs, path)?;
                    h.set_entry_type(EntryType::Directory);
                    h.set_size(0);
                    let mut dir_name = name.clone();
                    dir_name.push(b'/');
                    self.append(&mut h, &dir_name, io::empty(), path)?;
                }
                if self.overlay && xattrs.iter().any(|(k, v)| k == OPAQUE && v == b"y") {
                    let marker = if name.is_empty() {
                        b".wh..wh..opq".to_vec()
                    } else {
                        [&name, &b"/.wh..wh..opq"[..]].concat()
                    };
                    self.marker(&marker, st, path)?;
                }
                // A mount of the kernel's (`/proc`, `/sys`) is copied as the
                // empty directory an image has there.
                return Ok(!on_kernel_fs(dir.as_fd()));
            }
            SFlag::S_IFREG => {
                if st.st_nlink > 1
                    && let Some(first) = self.links.get(&(st.st_dev, st.st_ino)).cloned()
                {
                    h.set_entry_type(EntryType::Link);
                    h.set_size(0);
                    self.link(&mut h, &name, &first, path)?;
                    return Ok(false);
                }
                // Gone or replaced since the walk saw it: left out. Held
                // first by a path descriptor, which opens nothing: the tree's
                // owner may have swapped the file for a device node since
                // (a container with CAP_MKNOD makes any it likes, and its
                // device cgroup does not bind the daemon), and a real open
                // of one has effects of its own (a watchdog armed, a tape
                // rewound), whatever is read after.
                let flags = OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
                let Ok(held) = openat(parent, file_name, flags, Mode::empty()) else { return Ok(false) };
                let now = fstat(&held).map_err(|e| self.error(path, "stat")(e.into()))?;
                if kind(&now) != SFlag::S_IFREG || on_kernel_fs(held.as_fd()) {
                    return Ok(false);
                }
                // The very inode held, opened for reading.
                let Ok(file) = reopen(held.as_fd()) else { return Ok(false) };
                let xattrs = xattrs(file.as_fd());
                self.refuse_redirect(&xattrs, path)?;
                self.pax(&name, &xattrs, path)?;
                let mut h = header(&now);
                h.set_entry_type(EntryType::Regular);
                let size = now.st_size.max(0) as u64;
                h.set_size(size);
                let content = Exactly { inner: file.take(size), left: size };
                self.append(&mut h, &name, content, path)?;
                // Its other names link to this one, now that it is in the
                // archive (a file left out above must not be a link target).
                if now.st_nlink > 1 {
                    self.links.insert((now.st_dev, now.st_ino), name);
                }
            }
            SFlag::S_IFLNK => {
                let Ok(target) = readlinkat(parent, file_name) else { return Ok(false) };
                h.set_entry_type(EntryType::Symlink);
                h.set_size(0);
                self.link(&mut h, &name, target.as_bytes(), path)?;
            }
            SFlag::S_IFCHR if self.overlay && is_whiteout(st) => {
                let (dir, last) = match name.iter().rposition(|b| *b == b'/') {
                    Some(i) => (&name[..=i], &name[i + 1..]),
                    None => (&b""[..], &name[..]),
                };
                let whiteout = [dir, b".wh.", last].concat();
                self.marker(&whiteout, st, path)?;
            }
            k @ (SFlag::S_IFCHR | SFlag::S_IFBLK | SFlag::S_IFIFO) => {
                h.set_entry_type(match k {
                    SFlag::S_IFCHR => EntryType::Char,
                    SFlag::S_IFBLK => EntryType::Block,
                    _ => EntryType::Fifo,
                });
                h.set_size(0);
                if k != SFlag::S_IFIFO {
                    let dev = st.st_rdev;
                    h.set_device_major(major(dev) as u32).map_err(self.error(path, "device number"))?;
                    h.set_device_minor(minor(dev) as u32).map_err(self.error(path, "device number"))?;
                }
                self.append(&mut h, &name, io::empty(), path)?;
            }
            // Sockets (and anything else): no tar entry can hold them.
            _ => {}
        }
        Ok(false)
    }

    /// An overlay mounted with `redirect_dir` or `metacopy` keeps a renamed
    /// directory's or a copied-up file's content in a lower layer, which a
    /// layer of the upper directory alone cannot carry: refused rather
    /// than written wrong (our mounts use neither).
    fn refuse_redirect(&self, xattrs: &[(Vec<u8>, Vec<u8>)], path: &[u8]) -> Result<()> {
        let held_below = |k: &[u8]| k.ends_with(b"overlay.redirect") || k.ends_with(b"overlay.metacopy");
        if self.overlay && xattrs.iter().any(|(k, _)| k.starts_with(b"trusted.overlay.") && held_below(k)) {
            return Err(ImageError::Invalid(format!(
                "{}{}: its content is in a lower layer (an overlay redirect or metacopy): cannot be committed",
                self.label,
                String::from_utf8_lossy(path)
            )));
        }
        Ok(())
    }

    /// An empty regular file that is a whiteout or opaque marker.
    fn marker(&mut self, name: &[u8], st: &FileStat, path: &[u8]) -> Result<()> {
        let mut h = header(st);
        h.set_entry_type(EntryType::Regular);
        h.set_mode(0o644);
        h.set_size(0);
        self.append(&mut h, name, io::empty(), path)
    }

    fn append(&mut self, h: &mut Header, name: &[u8], data: impl Read, path: &[u8]) -> Result<()> {
        let error = self.error(path, "write");
        self.out.append_data(h, Path::new(OsStr::from_bytes(name)), data).map_err(error)?;
        self.entries += 1;
        Ok(())
    }

    fn link(&mut self, h: &mut Header, name: &[u8], target: &[u8], path: &[u8]) -> Result<()> {
        let error = self.error(path, "write");
        let (name, target) = (Path::new(OsStr::from_bytes(name)), Path::new(OsStr::from_bytes(target)));
        self.out.append_link(h, name, target).map_err(error)?;
        self.entries += 1;
        Ok(())
    }

    /// A PAX header with `xattrs` for the entry `name` that follows.
    fn pax(&mut self, name: &[u8], xattrs: &[(Vec<u8>, Vec<u8>)], path: &[u8]) -> Result<()> {
        let kept: Vec<&(Vec<u8>, Vec<u8>)> = xattrs.iter().filter(|(k, _)| !overlays_own(k)).collect();
        if kept.is_empty() {
            return Ok(());
        }
        let mut records = Vec::new();
        for (k, v) in kept {
            records.extend(pax_record(&[b"SCHILY.xattr.", k.as_slice()].concat(), v));
        }
        let mut h = Header::new_ustar();
        h.set_entry_type(EntryType::XHeader);
        h.set_mode(0o644);
        h.set_size(records.len() as u64);
        // The name of a PAX header is informative only; a short one.
        let short: Vec<u8> = name.iter().rev().take(80).rev().copied().collect();
        let mut pax_name = b"PaxHeaders/".to_vec();
        pax_name.extend(short.iter().filter(|b| **b != b'/'));
        h.set_path(Path::new(OsStr::from_bytes(&pax_name))).map_err(self.error(path, "write"))?;
        h.set_cksum();
        self.out.append(&h, records.as_slice()).map_err(self.error(path, "write"))
    }
}

/// What a walk of the tree hands each entry to.
impl<W: Write> Visit for Packer<'_, W> {
    type Below = ();

    fn entry(&mut self, e: &Entry<'_>, _: &()) -> Result<Option<()>> {
        if self.excluded.iter().any(|x| x.as_slice() == e.path) {
            return Ok(None);
        }
        Ok(self.add(e.parent, e.name, e.path, e.stat, e.dir)?.then_some(()))
    }
}

/// Opens the regular file `held` (an `O_PATH` descriptor) for reading,
/// through its `/proc/self/fd` link: the same inode, not a name that may
/// name something else by now.
fn reopen(held: BorrowedFd<'_>) -> io::Result<File> {
    let link = format!("/proc/self/fd/{}", held.as_raw_fd());
    let flags = OFlag::O_RDONLY | OFlag::O_NONBLOCK | OFlag::O_NOCTTY | OFlag::O_CLOEXEC;
    let fd = nix::fcntl::open(Path::new(&link), flags, Mode::empty())?;
    Ok(File::from(fd))
}

/// overlayfs' own attributes (whiteouts, redirects, origins): never
/// carried, as unpacking never sets them either.
fn overlays_own(name: &[u8]) -> bool {
    name.starts_with(b"trusted.overlay.") || name.starts_with(b"user.overlay.")
}

/// A GNU header (long names, large ids) with `st`'s owner, mode and time.
fn header(st: &FileStat) -> Header {
    let mut h = Header::new_gnu();
    h.set_mode(st.st_mode & 0o7777);
    h.set_uid(u64::from(st.st_uid));
    h.set_gid(u64::from(st.st_gid));
    h.set_mtime(st.st_mtime.max(0) as u64);
    h
}

/// One PAX record: `LEN KEY=VALUE\n`, LEN counting itself.
fn pax_record(key: &[u8], value: &[u8]) -> Vec<u8> {
    let rest = key.len() + value.len() + 3; // ' ', '=', '\n'
    let mut len = rest + 1;
    while len != rest + len.to_string().len() {
        len = rest + len.to_string().len();
    }
    [len.to_string().as_bytes(), b" ", key, b"=", value, b"\n"].concat()
}

/// The extended attributes of an open file or directory (none when they
/// cannot be read: an attribute is not worth failing a copy for).
fn xattrs(fd: BorrowedFd<'_>) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut names = vec![0u8; 64 * 1024];
    // SAFETY: fd is open for the call; the buffer is writable for its length.
    let n = unsafe { libc::flistxattr(fd.as_raw_fd(), names.as_mut_ptr().cast(), names.len()) };
    if n <= 0 {
        return Vec::new();
    }
    names.truncate(n as usize);
    let mut out = Vec::new();
    for name in names.split(|b| *b == 0).filter(|n| !n.is_empty()) {
        let Ok(c) = std::ffi::CString::new(name) else { continue };
        let mut value = vec![0u8; 64 * 1024];
        // SAFETY: fd is open; c is NUL-terminated; the buffer is writable
        // for its length.
        let len = unsafe { libc::fgetxattr(fd.as_raw_fd(), c.as_ptr(), value.as_mut_ptr().cast(), value.len()) };
        if len >= 0 {
            value.truncate(len as usize);
            out.push((name.to_vec(), value));
        }
    }
    out
}

/// Exactly `left` bytes: what `inner` gives, then zeros if it ends early
/// (a file truncated while it is read).
struct Exactly<R> {
    inner: R,
    left: u64,
}

impl<R: Read> Read for Exactly<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 {
            return Ok(0);
        }
        let want = buf.len().min(usize::try_from(self.left).unwrap_or(usize::MAX));
        let n = match self.inner.read(&mut buf[..want])? {
            0 => {
                buf[..want].fill(0);
                want
            }
            n => n,
        };
        self.left -= n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pax_records_count_their_own_length() {
        assert_eq!(pax_record(b"a", b"b"), b"6 a=b\n");
        let long = vec![b'v'; 95];
        let r = pax_record(b"k", &long);
        assert_eq!(r.len(), 102);
        assert!(r.starts_with(b"102 k="));
    }

    #[test]
    fn an_upper_directory_becomes_a_layer_with_oci_whiteouts() {
        // Whiteouts are device nodes and opaque markers trusted xattrs:
        // only root makes them.
        if !nix::unistd::Uid::effective().is_root() {
            return;
        }
        let t = tempfile::tempdir().unwrap();
        let upper = t.path().join("upper");
        std::fs::create_dir_all(upper.join("etc")).unwrap();
        std::fs::create_dir_all(upper.join("dir")).unwrap();
        std::fs::write(upper.join("etc/hosts"), "127.0.0.1 x").unwrap();
        std::fs::write(upper.join("etc/app.conf"), "conf").unwrap();
        std::fs::hard_link(upper.join("etc/app.conf"), upper.join("etc/same")).unwrap();
        std::fs::write(upper.join("dir/kept"), "k").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", upper.join("link")).unwrap();
        let mut tree = super::super::tree::SafeTree::open(&upper).unwrap();
        tree.whiteout(&[b"gone"]).unwrap();
        tree.opaque(&[b"dir"]).unwrap();

        let mut builder = tar::Builder::new(Vec::new());
        let mut packer = Packer::new(&mut builder, "upper", b"").overlay(&["/etc/hosts"]);
        let top = Dir::open(&upper, OFlag::O_RDONLY | OFlag::O_DIRECTORY, Mode::empty()).unwrap();
        super::super::walk::walk(top, &(), &mut packer, "upper", 100).unwrap();
        let bytes = builder.into_inner().unwrap();
        let mut archive = tar::Archive::new(bytes.as_slice());
        let mut entries: Vec<(String, EntryType, String)> = archive
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                let link = e.link_name().unwrap().map(|l| l.display().to_string()).unwrap_or_default();
                (String::from_utf8_lossy(&e.path_bytes()).into_owned(), e.header().entry_type(), link)
            })
            .collect();
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        let names: Vec<&str> = entries.iter().map(|e| e.0.as_str()).collect();
        assert_eq!(
            names,
            [".wh.gone", "dir/", "dir/.wh..wh..opq", "dir/kept", "etc/", "etc/app.conf", "etc/same", "link"]
        );
        let kind = |n: &str| entries.iter().find(|e| e.0 == n).map(|e| (e.1, e.2.clone())).unwrap();
        assert_eq!(kind("link"), (EntryType::Symlink, "/etc/passwd".into()));
        // One of the two names of the file is its content, the other a link.
        let (a, b) = (kind("etc/app.conf"), kind("etc/same"));
        assert!(
            (a.0 == EntryType::Regular && b == (EntryType::Link, "etc/app.conf".into()))
                || (b.0 == EntryType::Regular && a == (EntryType::Link, "etc/same".into())),
            "{a:?} {b:?}"
        );
    }

    #[test]
    fn a_file_swapped_for_a_special_one_after_the_walk_saw_it_is_never_opened() {
        let t = tempfile::tempdir().unwrap();
        std::fs::write(t.path().join("f"), "file").unwrap();
        let seen = nix::sys::stat::stat(&t.path().join("f")).unwrap();
        // The swap, made before the step: a FIFO stands in for a device
        // node (making one needs root; opening either is what must not
        // happen), and inotify tells whether anything opened it.
        std::fs::remove_file(t.path().join("f")).unwrap();
        nix::unistd::mkfifo(&t.path().join("f"), Mode::from_bits_truncate(0o600)).unwrap();
        let mut inotify = inotify::Inotify::init().unwrap();
        inotify.watches().add(t.path(), inotify::WatchMask::OPEN).unwrap();
        let dir = Dir::open(t.path(), OFlag::O_RDONLY | OFlag::O_DIRECTORY, Mode::empty()).unwrap();
        let mut builder = tar::Builder::new(Vec::new());
        let mut packer = Packer::new(&mut builder, "root", b"");
        assert!(!packer.add(dir.as_fd(), OsStr::new("f"), b"/f", &seen, None).unwrap());
        assert_eq!(packer.entries, 0, "left out, as a file gone since the walk");
        let mut buf = [0u8; 1024];
        let opened = match inotify.read_events(&mut buf) {
            Ok(events) => events.filter(|e| e.name == Some(OsStr::new("f"))).count(),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => 0,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(opened, 0, "the FIFO was opened");
    }

    #[test]
    fn a_hard_linked_file_gone_after_the_walk_is_no_link_target() {
        let t = tempfile::tempdir().unwrap();
        std::fs::write(t.path().join("a"), "same").unwrap();
        std::fs::hard_link(t.path().join("a"), t.path().join("b")).unwrap();
        std::fs::hard_link(t.path().join("a"), t.path().join("c")).unwrap();
        let seen = nix::sys::stat::stat(&t.path().join("a")).unwrap();
        // The walk saw `a`; it is removed before the packer opens it.
        std::fs::remove_file(t.path().join("a")).unwrap();
        let dir = Dir::open(t.path(), OFlag::O_RDONLY | OFlag::O_DIRECTORY, Mode::empty()).unwrap();
        let mut builder = tar::Builder::new(Vec::new());
        let mut packer = Packer::new(&mut builder, "root", b"");
        packer.add(dir.as_fd(), OsStr::new("a"), b"/a", &seen, None).unwrap();
        for name in ["b", "c"] {
            let st = nix::sys::stat::stat(&t.path().join(name)).unwrap();
            packer.add(dir.as_fd(), OsStr::new(name), format!("/{name}").as_bytes(), &st, None).unwrap();
        }
        let bytes = builder.into_inner().unwrap();
        let mut archive = tar::Archive::new(bytes.as_slice());
        let mut entries = archive.entries().unwrap();
        let mut b = entries.next().unwrap().unwrap();
        assert_eq!((&*b.path_bytes(), b.header().entry_type()), (&b"b"[..], EntryType::Regular));
        let mut content = String::new();
        b.read_to_string(&mut content).unwrap();
        assert_eq!(content, "same");
        let c = entries.next().unwrap().unwrap();
        assert_eq!(c.header().entry_type(), EntryType::Link);
        assert_eq!(&*c.link_name_bytes().unwrap(), b"b", "a link to a name in the archive");
        assert!(entries.next().is_none());
    }

    #[test]
    fn user_overlay_attributes_a_container_can_set_are_not_overlay_markers() {
        // Our overlays are mounted without `userxattr`: there a `user.`
        // attribute is any file owner's to set, not overlayfs' word.
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir(t.path().join("dir")).unwrap();
        std::fs::write(t.path().join("dir/kept"), "k").unwrap();
        std::fs::write(t.path().join("file"), "f").unwrap();
        let set = |path: &Path, name: &str, value: &[u8]| {
            let (p, n) =
                (std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap(), std::ffi::CString::new(name).unwrap());
            // SAFETY: both strings are NUL-terminated; value is readable
            // for its length.
            unsafe { libc::setxattr(p.as_ptr(), n.as_ptr(), value.as_ptr().cast(), value.len(), 0) == 0 }
        };
        if !set(&t.path().join("dir"), "user.overlay.opaque", b"y") {
            eprintln!("skipped: no user xattrs on {}", t.path().display());
            return;
        }
        assert!(set(&t.path().join("file"), "user.overlay.metacopy", b""));
        let mut builder = tar::Builder::new(Vec::new());
        let mut packer = Packer::new(&mut builder, "upper", b"").overlay(&[]);
        let top = Dir::open(t.path(), OFlag::O_RDONLY | OFlag::O_DIRECTORY, Mode::empty()).unwrap();
        super::super::walk::walk(top, &(), &mut packer, "upper", 100).unwrap();
        let bytes = builder.into_inner().unwrap();
        let mut archive = tar::Archive::new(bytes.as_slice());
        let mut names: Vec<String> = archive
            .entries()
            .unwrap()
            .map(|e| String::from_utf8_lossy(&e.unwrap().path_bytes()).into_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["dir/", "dir/kept", "file"]);
    }

    #[test]
    fn the_kernels_filesystems_are_empty_directories_and_no_files() {
        // The host's /proc and /sys, as a container's root shows its own.
        let root = Dir::open("/", OFlag::O_RDONLY | OFlag::O_DIRECTORY, Mode::empty()).unwrap();
        let mut builder = tar::Builder::new(Vec::new());
        let mut packer = Packer::new(&mut builder, "root", b"");
        for name in ["proc", "sys"] {
            let st = nix::sys::stat::stat(Path::new("/").join(name).as_path()).unwrap();
            let dir = Dir::open(Path::new("/").join(name).as_path(), OFlag::O_RDONLY, Mode::empty()).unwrap();
            let enter = packer.add(root.as_fd(), OsStr::new(name), format!("/{name}").as_bytes(), &st, Some(&dir));
            assert!(!enter.unwrap(), "/{name} is not entered");
        }
        let proc = Dir::open("/proc", OFlag::O_RDONLY | OFlag::O_DIRECTORY, Mode::empty()).unwrap();
        let st = nix::sys::stat::stat("/proc/cpuinfo").unwrap();
        packer.add(proc.as_fd(), OsStr::new("cpuinfo"), b"/proc/cpuinfo", &st, None).unwrap();
        let bytes = builder.into_inner().unwrap();
        let mut archive = tar::Archive::new(bytes.as_slice());
        let names: Vec<String> = archive
            .entries()
            .unwrap()
            .map(|e| String::from_utf8_lossy(&e.unwrap().path_bytes()).into_owned())
            .collect();
        assert_eq!(names, ["proc/", "sys/"]);
    }

    #[test]
    fn content_is_cut_or_padded_to_the_size_in_the_header() {
        let mut out = Vec::new();
        Exactly { inner: &b"abc"[..], left: 5 }.read_to_end(&mut out).unwrap();
        assert_eq!(out, b"abc\0\0");
        let mut out = Vec::new();
        Exactly { inner: (&b"abcdef"[..]).take(2), left: 2 }.read_to_end(&mut out).unwrap();
        assert_eq!(out, b"ab");
    }
}
