//! The mounts the container's first process makes in its root: the spec's
//! mounts (resolved inside the root, see `init::open_in_root`), the device
//! nodes of a tmpfs `/dev`, and the masked and read-only paths.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::{OFlag, openat};
use nix::mount::{MsFlags, mount};
use nix::sys::stat::{Mode, SFlag, makedev, mknodat};
use nix::unistd::{Gid, Uid};

use super::init::{Result, err, fd_path, open_in_root};
use super::init_error::InitError;
use super::plan::{MountPlan, Plan};

pub(super) fn mount_one(root: BorrowedFd<'_>, m: &MountPlan) -> Result<()> {
    let is_file = m.bind && std::fs::metadata(&m.source).map(|md| !md.is_dir()).unwrap_or(false);
    if m.bind && !Path::new(&m.source).exists() {
        return Err(InitError::NoMountSource { destination: m.destination.clone(), path: m.source.clone() });
    }
    let target = open_in_root(root, &m.destination, is_file)?;
    let at = fd_path(&target);
    let what = format!("mount {} on {}", m.kind, m.destination);
    if m.kind == "cgroup" || m.kind == "cgroup2" {
        return super::cgroup_mounts::mount_cgroups(root, &at, m);
    }
    let data = (!m.data.is_empty()).then_some(m.data.as_str());
    if m.bind {
        mount(Some(m.source.as_str()), &at, None::<&str>, m.flags & (MsFlags::MS_BIND | MsFlags::MS_REC), None::<&str>)
            .map_err(err(&what))?;
    } else {
        mount(Some(m.source.as_str()), &at, Some(m.kind.as_str()), m.flags, data).map_err(err(&what))?;
    }
    // The descriptor still names the directory under the new mount: what
    // follows applies to the mount, so resolve the destination again.
    let extra = m.flags & !(MsFlags::MS_BIND | MsFlags::MS_REC);
    if (m.bind && !extra.is_empty()) || !m.propagation.is_empty() {
        let mounted = open_in_root(root, &m.destination, is_file)?;
        let at = fd_path(&mounted);
        if m.bind && !extra.is_empty() {
            // Bind mounts take flags like ro only on a remount.
            mount(None::<&str>, &at, None::<&str>, MsFlags::MS_REMOUNT | MsFlags::MS_BIND | extra, None::<&str>)
                .map_err(err(format!("{what} (remount)")))?;
            if m.flags.contains(MsFlags::MS_REC) {
                // The remount changed the top mount only: the mounts
                // below it (a tmpfs mounted in a read-only volume) get
                // the same flags, where the kernel can (Linux 5.12+).
                set_attributes_recursively(&mounted, extra).map_err(err(format!("{what} (recursively)")))?;
            }
        }
        if !m.propagation.is_empty() {
            mount(None::<&str>, &at, None::<&str>, m.propagation, None::<&str>)
                .map_err(err(format!("{what} (propagation)")))?;
        }
    }
    Ok(())
}

/// `struct mount_attr` of mount_setattr(2) (linux/mount.h).
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

const MOUNT_ATTR_RDONLY: u64 = 0x1;
const MOUNT_ATTR_NOSUID: u64 = 0x2;
const MOUNT_ATTR_NODEV: u64 = 0x4;
const MOUNT_ATTR_NOEXEC: u64 = 0x8;
const AT_RECURSIVE: libc::c_uint = 0x8000;

/// The mount_setattr(2) attributes of mount flags (the ones it can set).
fn mount_attributes(flags: MsFlags) -> u64 {
    [
        (MsFlags::MS_RDONLY, MOUNT_ATTR_RDONLY),
        (MsFlags::MS_NOSUID, MOUNT_ATTR_NOSUID),
        (MsFlags::MS_NODEV, MOUNT_ATTR_NODEV),
        (MsFlags::MS_NOEXEC, MOUNT_ATTR_NOEXEC),
    ]
    .into_iter()
    .filter(|(f, _)| flags.contains(*f))
    .fold(0, |acc, (_, a)| acc | a)
}

fn mount_setattr(fd: libc::c_int, flags: libc::c_uint, attr: Option<&MountAttr>) -> std::result::Result<(), Errno> {
    let (ptr, size) = match attr {
        Some(a) => (a as *const MountAttr, std::mem::size_of::<MountAttr>()),
        None => (std::ptr::null(), 0),
    };
    // SAFETY: mount_setattr(2) reads `size` bytes at `ptr` (a MountAttr we
    // own, or null with size 0) and the empty path; `fd` is ours.
    let rc = unsafe { libc::syscall(libc::SYS_mount_setattr, fd, c"".as_ptr(), flags, ptr, size) };
    if rc == 0 { Ok(()) } else { Err(Errno::last()) }
}

/// Sets `flags` (ro, nosuid, nodev, noexec) on the mount `fd` names and on
/// every mount below it. Without mount_setattr (Linux before 5.12) the top
/// mount keeps them alone, as before; [`recursive_readonly`] tells.
fn set_attributes_recursively(fd: &OwnedFd, flags: MsFlags) -> std::result::Result<(), Errno> {
    let attr = MountAttr { attr_set: mount_attributes(flags), attr_clr: 0, propagation: 0, userns_fd: 0 };
    if attr.attr_set == 0 {
        return Ok(());
    }
    match mount_setattr(fd.as_raw_fd(), libc::AT_EMPTY_PATH as libc::c_uint | AT_RECURSIVE, Some(&attr)) {
        Err(Errno::ENOSYS) => Ok(()),
        other => other,
    }
}

/// Whether the kernel makes read-only volumes read-only recursively
/// (it has mount_setattr(2)).
pub fn recursive_readonly() -> bool {
    // An invalid descriptor: EBADF (or EINVAL) where the call exists.
    mount_setattr(-1, 0, None) != Err(Errno::ENOSYS)
}

/// The default and requested device nodes, and the standard links.
pub(super) fn make_dev(root: BorrowedFd<'_>, plan: &Plan) -> Result<()> {
    let user_namespace = plan.user_namespace();
    let dev = open_in_root(root, "/dev", false)?;
    let dev = openat(dev.as_fd(), ".", OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty())
        .map_err(err("open /dev"))?;
    for d in &plan.devices {
        let rel = d.path.strip_prefix("/dev/").ok_or_else(|| InitError::DeviceOutsideDev(d.path.clone()))?;
        if let Some((parent, _)) = rel.rsplit_once('/') {
            open_in_root(root, &format!("/dev/{parent}"), false)?;
        }
        let kind = match d.kind {
            'b' => SFlag::S_IFBLK,
            'p' => SFlag::S_IFIFO,
            _ => SFlag::S_IFCHR,
        };
        match mknodat(dev.as_fd(), rel, kind, Mode::from_bits_truncate(d.mode & 0o777), makedev(d.major, d.minor)) {
            Ok(()) => {}
            // In a user namespace no device node can be made: the host's
            // node is bound over an empty file instead, as runc does (its
            // owner and mode are the host's).
            Err(Errno::EPERM) if user_namespace && kind != SFlag::S_IFIFO => {
                bind_host_device(root, &d.path)?;
                continue;
            }
            Err(e) => return Err(err(format!("mknod {}", d.path))(e)),
        }
        nix::sys::stat::fchmodat(
            dev.as_fd(),
            rel,
            Mode::from_bits_truncate(d.mode & 0o7777),
            nix::sys::stat::FchmodatFlags::FollowSymlink,
        )
        .map_err(err(format!("chmod {}", d.path)))?;
        nix::unistd::fchownat(
            dev.as_fd(),
            rel,
            Some(Uid::from_raw(d.uid)),
            Some(Gid::from_raw(d.gid)),
            nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
        )
        .map_err(err(format!("chown {}", d.path)))?;
    }
    for (link, target) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
        ("ptmx", "pts/ptmx"),
        ("core", "/proc/kcore"),
    ] {
        match nix::unistd::symlinkat(target, dev.as_fd(), link) {
            Ok(()) | Err(Errno::EEXIST) => {}
            Err(e) => return Err(err(format!("symlink /dev/{link}"))(e)),
        }
    }
    Ok(())
}

/// Hides `path`: /dev/null over a file, an empty read-only tmpfs over a
/// directory.
pub(super) fn mask(path: &str) -> Result<()> {
    match std::fs::symlink_metadata(path) {
        Err(_) => Ok(()),
        Ok(md) if md.is_dir() => mount(Some("tmpfs"), path, Some("tmpfs"), MsFlags::MS_RDONLY, Some("size=0"))
            .map_err(err(format!("mask {path}"))),
        Ok(_) => mount(Some("/dev/null"), path, None::<&str>, MsFlags::MS_BIND, None::<&str>)
            .map_err(err(format!("mask {path}"))),
    }
}

pub(super) fn make_readonly(path: &str) -> Result<()> {
    if std::fs::symlink_metadata(path).is_err() {
        return Ok(());
    }
    mount(Some(path), path, None::<&str>, MsFlags::MS_BIND | MsFlags::MS_REC, None::<&str>)
        .map_err(err(format!("bind {path}")))?;
    mount(
        None::<&str>,
        path,
        None::<&str>,
        MsFlags::MS_REMOUNT | MsFlags::MS_BIND | MsFlags::MS_RDONLY | MsFlags::MS_REC,
        None::<&str>,
    )
    .map_err(err(format!("make {path} read-only")))
}

/// Binds the host's device node `path` (still reachable: the root is not
/// pivoted yet) over a new empty file at `path` in the root.
fn bind_host_device(root: BorrowedFd<'_>, path: &str) -> Result<()> {
    if !Path::new(path).exists() {
        return Err(InitError::NoMountSource { destination: path.to_string(), path: path.to_string() });
    }
    let target = open_in_root(root, path, true)?;
    mount(Some(path), &fd_path(&target), None::<&str>, MsFlags::MS_BIND, None::<&str>)
        .map_err(err(format!("bind the host's {path}")))
}
