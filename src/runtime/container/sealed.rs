//! Our own program, protected from writes, for every process that runs it
//! inside a container: the container's first process until it executes its
//! program, and `exec`'s joining process until it does. Such a process
//! shows our program as `/proc/PID/exe`, and executing `/proc/self/exe`
//! runs it: were that the host's file as the host sees it, a process of the
//! container could open it and, once it is no longer being executed, write
//! it (runc's CVE-2019-5736).
//!
//! Two protections are accepted, both checked on the file the kernel says
//! we run ([`runs_protected`]), never on the environment:
//!
//! - a sealed memfd copy: neither written, grown nor shrunk, by anyone. The
//!   daemon makes one when it starts ([`sealed_self`]) and starts every
//!   spawn and exec helper from it, so a container it starts pays for no
//!   copy. It is also the fallback below.
//! - our file seen through a read-only overlayfs on a detached mount, as
//!   runc 1.2 does: the foreground commands (`runtime run`, `runtime
//!   run-unit`, `runtime exec`, `supervisorctl exec`, a helper started from
//!   the file) re-execute themselves from it ([`reexec_protected`]) before
//!   they create anything. Copying our 15 MB binary on every run
//!   quadrupled `runtime run`; the overlay view costs a few system calls.
//!   An overlay without an upper layer has no way to be written: opening
//!   the file for writing fails with `EROFS`, no remount can make it
//!   writable (there is no layer to write to), and the mount is attached
//!   to no tree, so nothing can reach it by path or unmount it to expose
//!   the file beneath. What makes the view safe is that property, which
//!   is why the check asks for both the overlayfs magic and a read-only
//!   mount rather than for any read-only mount: a read-only bind mount of
//!   the file could be remounted writable by whoever reaches it.
//!
//! When the overlay cannot be made (no overlayfs, a kernel without the
//! mount API, not privileged, our file's directory overlapping the empty
//! layer), we fall back to the memfd copy, which is as safe and only
//! slower: any failure of the overlay path falls back, since none of them
//! leaves anything behind.

use std::ffi::{CStr, CString};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use nix::errno::Errno;
use nix::fcntl::{AtFlags, FcntlArg, OFlag, SealFlag, fcntl, openat};
use nix::sys::memfd::{MFdFlags, memfd_create};
use nix::sys::stat::Mode;
use nix::sys::statfs::{OVERLAYFS_SUPER_MAGIC, fstatfs};
use nix::sys::statvfs::{FsFlags, fstatvfs};

use super::RuntimeError;

/// The second, empty layer of the overlay view: overlayfs mounts without
/// an upper layer only with at least two lower ones, and refuses layers
/// that contain one another, so it must be a directory of its own.
/// Root's, under /run: what it holds is hidden by our file's directory,
/// which is the upper of the two, and only our file's name is opened.
const EMPTY_LAYER: &str = "/run/supervisor-exe-layer";

/// The seals that make a copy immutable, this one included.
fn seals() -> SealFlag {
    SealFlag::F_SEAL_SEAL | SealFlag::F_SEAL_SHRINK | SealFlag::F_SEAL_GROW | SealFlag::F_SEAL_WRITE
}

/// Whether `file` is one of the two protected forms of our program: a
/// sealed memfd, or a file on a read-only overlayfs.
fn is_protected<F: AsFd>(file: F) -> bool {
    if fcntl(&file, FcntlArg::F_GET_SEALS).is_ok_and(|s| SealFlag::from_bits_truncate(s).contains(seals())) {
        return true;
    }
    fstatfs(&file).is_ok_and(|s| s.filesystem_type() == OVERLAYFS_SUPER_MAGIC)
        && fstatvfs(&file).is_ok_and(|s| s.flags().contains(FsFlags::ST_RDONLY))
}

/// A new sealed copy of the program this process runs.
fn copy_of_self() -> Result<OwnedFd, RuntimeError> {
    let copy = memfd_create("supervisord", MFdFlags::MFD_CLOEXEC | MFdFlags::MFD_ALLOW_SEALING)
        .map_err(|e| RuntimeError::sys("memfd_create", e))?;
    let mut copy = std::fs::File::from(copy);
    let mut me = std::fs::File::open("/proc/self/exe").map_err(|e| RuntimeError::io("open", "/proc/self/exe", e))?;
    std::io::copy(&mut me, &mut copy).map_err(|e| RuntimeError::io("copy", "/proc/self/exe", e))?;
    fcntl(&copy, FcntlArg::F_ADD_SEALS(seals()))
        .map_err(|e| RuntimeError::sys("seal the copy of /proc/self/exe", e))?;
    Ok(copy.into())
}

// The new mount API, which libc has the system call numbers of but not the
// constants (include/uapi/linux/mount.h).
const FSOPEN_CLOEXEC: libc::c_uint = 0x1;
const FSCONFIG_SET_STRING: libc::c_uint = 1;
const FSCONFIG_CMD_CREATE: libc::c_uint = 6;
const FSMOUNT_CLOEXEC: libc::c_uint = 0x1;
const MOUNT_ATTR_RDONLY: libc::c_uint = 0x1;
const MOUNT_ATTR_NOSUID: libc::c_uint = 0x2;
const MOUNT_ATTR_NODEV: libc::c_uint = 0x4;

/// A descriptor returned by a system call, or its errno.
fn fd_or_errno(ret: libc::c_long) -> Result<OwnedFd, Errno> {
    match i32::try_from(ret) {
        // SAFETY: a non-negative return of fsopen/fsmount is a new
        // descriptor that nothing else owns.
        Ok(fd) if fd >= 0 => Ok(unsafe { OwnedFd::from_raw_fd(fd) }),
        _ => Err(Errno::last()),
    }
}

fn fsconfig(ctx: &OwnedFd, cmd: libc::c_uint, key: Option<&CStr>, value: Option<&CStr>) -> Result<(), Errno> {
    let ptr = |s: Option<&CStr>| s.map_or(std::ptr::null(), CStr::as_ptr);
    // SAFETY: `ctx` is an open filesystem context; key and value are
    // NUL-terminated strings (or null, as `cmd` allows) that outlive the
    // call, which does not keep them.
    let ret = unsafe { libc::syscall(libc::SYS_fsconfig, ctx.as_raw_fd(), cmd, ptr(key), ptr(value), 0) };
    if ret < 0 { Err(Errno::last()) } else { Ok(()) }
}

/// A layer path as overlayfs's lowerdir list reads it: `:` separates
/// layers and `\` escapes.
fn escape_layer(path: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(path.len());
    for &b in path {
        if b == b':' || b == b'\\' {
            out.push(b'\\');
        }
        out.push(b);
    }
    out
}

/// The lowerdir option for a view of `dir` over the empty layer.
fn lowerdir(dir: &Path, empty: &Path) -> Vec<u8> {
    [escape_layer(dir.as_os_str().as_bytes()), b":".to_vec(), escape_layer(empty.as_os_str().as_bytes())].concat()
}

/// Our program's file, opened (O_PATH) through a read-only overlayfs of
/// its directory that is mounted nowhere: once the mount's descriptor is
/// closed, the opened file is all that holds the mount.
fn overlay_view_of_self() -> Result<OwnedFd, RuntimeError> {
    let exe = std::fs::read_link("/proc/self/exe").map_err(|e| RuntimeError::io("readlink", "/proc/self/exe", e))?;
    let (Some(dir), Some(name)) = (exe.parent(), exe.file_name()) else {
        return Err(RuntimeError::sys("split /proc/self/exe into directory and name", Errno::EINVAL));
    };
    match std::fs::DirBuilder::new().mode(0o700).create(EMPTY_LAYER) {
        Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => {
            return Err(RuntimeError::io("create", EMPTY_LAYER, e));
        }
        _ => {}
    }
    let lower = CString::new(lowerdir(dir, Path::new(EMPTY_LAYER))).map_err(|_| RuntimeError::NulByte)?;
    // SAFETY: the name is a NUL-terminated string; the call only reads it.
    let ctx = fd_or_errno(unsafe { libc::syscall(libc::SYS_fsopen, c"overlay".as_ptr(), FSOPEN_CLOEXEC) })
        .map_err(|e| RuntimeError::sys("fsopen overlay", e))?;
    fsconfig(&ctx, FSCONFIG_SET_STRING, Some(c"lowerdir"), Some(&lower))
        .map_err(|e| RuntimeError::sys("fsconfig overlay lowerdir", e))?;
    fsconfig(&ctx, FSCONFIG_CMD_CREATE, None, None).map_err(|e| RuntimeError::sys("create the overlay", e))?;
    let attrs = MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV;
    // SAFETY: `ctx` is a filesystem context whose superblock was created.
    let mount = fd_or_errno(unsafe { libc::syscall(libc::SYS_fsmount, ctx.as_raw_fd(), FSMOUNT_CLOEXEC, attrs) })
        .map_err(|e| RuntimeError::sys("fsmount the overlay", e))?;
    let flags = OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let file =
        openat(&mount, name, flags, Mode::empty()).map_err(|e| RuntimeError::sys("open our file on the overlay", e))?;
    drop(mount);
    if !is_protected(&file) {
        return Err(RuntimeError::sys("check the overlay view is read-only overlayfs", Errno::EROFS));
    }
    Ok(file)
}

/// Whether this process already runs from a protected form of our program
/// (see the module's documentation). Asked of the kernel, not of the
/// environment, so that no caller can skip the protection.
pub(crate) fn runs_protected() -> bool {
    std::fs::File::open("/proc/self/exe").is_ok_and(is_protected)
}

/// A path that executes a sealed copy of our program, made on the first
/// call and kept open (close-on-exec) while we live: `/proc/self/fd/N`,
/// which a child resolves to its inherited copy of the descriptor when it
/// executes it. One copy for every helper the daemon starts: starting a
/// container pays for no copy.
pub fn sealed_self() -> Result<PathBuf, RuntimeError> {
    static COPY: OnceLock<OwnedFd> = OnceLock::new();
    let fd = match COPY.get() {
        Some(fd) => fd,
        None => {
            let made = copy_of_self()?;
            COPY.get_or_init(|| made)
        }
    };
    Ok(PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd())))
}

/// Re-executes this program, with the same arguments and environment, from
/// a read-only overlay view of its file, or failing that from a sealed
/// in-memory copy, unless it already runs from either. Callers do this
/// before anything they would have to undo. Both candidates pass
/// [`is_protected`] before they are executed, so the re-executed program
/// finds itself protected and does not loop.
pub fn reexec_protected() -> Result<(), RuntimeError> {
    if runs_protected() {
        return Ok(());
    }
    let c = |b: &[u8]| CString::new(b).map_err(|_| RuntimeError::NulByte);
    let args: Vec<CString> = std::env::args_os().map(|a| c(a.as_bytes())).collect::<Result<_, _>>()?;
    let env: Vec<CString> =
        std::env::vars_os().map(|(k, v)| c(&[k.as_bytes(), b"=", v.as_bytes()].concat())).collect::<Result<_, _>>()?;
    if let Ok(view) = overlay_view_of_self() {
        // Only returns on failure; the copy below is then the way.
        let _ = nix::unistd::execveat(&view, c"", &args, &env, AtFlags::AT_EMPTY_PATH);
    }
    let copy = copy_of_self()?;
    let Err(e) = nix::unistd::fexecve(&copy, &args, &env);
    Err(RuntimeError::sys("re-execute from the sealed copy", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_copy_is_sealed_and_the_test_binary_is_not() {
        assert!(!runs_protected(), "a test binary runs from its file");
        let path = sealed_self().unwrap();
        assert_eq!(sealed_self().unwrap(), path, "one copy per process");
        let copy = std::fs::OpenOptions::new().read(true).open(&path).unwrap();
        let got = SealFlag::from_bits_truncate(fcntl(&copy, FcntlArg::F_GET_SEALS).unwrap());
        assert!(got.contains(seals()), "{got:?}");
        assert!(is_protected(&copy));
        let mine = std::fs::read("/proc/self/exe").unwrap();
        assert_eq!(std::fs::read(&path).unwrap().len(), mine.len());
        // Sealed against writes: even root cannot change it.
        let w = std::fs::OpenOptions::new().write(true).open(&path);
        let err = w.and_then(|mut w| std::io::Write::write_all(&mut w, b"x")).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EPERM), "{err}");
    }

    #[test]
    fn layer_paths_are_escaped_and_ours_is_on_top() {
        assert_eq!(lowerdir(Path::new("/usr/bin"), Path::new("/run/e")), b"/usr/bin:/run/e");
        assert_eq!(lowerdir(Path::new("/a:b\\c"), Path::new("/e")), b"/a\\:b\\\\c:/e");
    }

    /// The skip convention of tests/common (docs/testing.md), for the one
    /// privileged test of the library: a failure under
    /// `SUPERVISOR_TEST_ROOT=1`, else a line in the `SUPERVISOR_TEST_SKIPS` file.
    fn skip_or_fail(test: &str, why: &str) {
        let asked = std::env::var("SUPERVISOR_TEST_ROOT").as_deref() == Ok("1");
        assert!(!asked, "{test}: {why}, and SUPERVISOR_TEST_ROOT=1 asks for every privileged test to run");
        eprintln!("skipped {test}: {why}");
        if let Some(path) = std::env::var_os("SUPERVISOR_TEST_SKIPS") {
            let line = format!("{test}: {why}\n");
            let f = std::fs::OpenOptions::new().create(true).append(true).open(&path);
            f.and_then(|mut f| std::io::Write::write_all(&mut f, line.as_bytes())).expect("record the skip");
        }
    }

    #[test]
    fn the_overlay_view_is_our_program_and_read_only() {
        // Mounting needs CAP_SYS_ADMIN; unprivileged runs take the copy.
        if !nix::unistd::geteuid().is_root() {
            skip_or_fail("the_overlay_view_is_our_program_and_read_only", "needs root");
            return;
        }
        let view = overlay_view_of_self().unwrap();
        assert!(is_protected(&view));
        let path = format!("/proc/self/fd/{}", view.as_raw_fd());
        assert_eq!(std::fs::read(&path).unwrap(), std::fs::read("/proc/self/exe").unwrap());
        let w = std::fs::OpenOptions::new().write(true).open(&path).unwrap_err();
        assert_eq!(w.raw_os_error(), Some(libc::EROFS), "{w}");
        // The host's file, on its own mount, is not what the view is.
        use std::os::unix::fs::MetadataExt;
        let (a, b) = (std::fs::metadata(&path).unwrap(), std::fs::metadata("/proc/self/exe").unwrap());
        assert_ne!((a.dev(), a.ino()), (b.dev(), b.ino()));
    }
}
