//! `/sys/fs/cgroup` in the container: cgroup2 where the host is unified;
//! else a tmpfs holding one v1 hierarchy per controller, as runc makes it.
//! Each shows the container's own cgroup as its root: with a cgroup
//! namespace the kernel does that; without one (engines that ask for none,
//! as podman on v1 does) the container's own directory is bound over the
//! hierarchy's root, so that a program reads its own limits where it looks
//! for them (`/sys/fs/cgroup/memory/memory.limit_in_bytes`).

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::fcntl::{OFlag, OpenHow, ResolveFlag, openat2};
use nix::mount::{MsFlags, mount};

use super::init::{Result, err, fd_path, open_in_root};
use super::init_error::InitError;
use super::plan::MountPlan;

pub(super) fn mount_cgroups(root: BorrowedFd<'_>, at: &Path, m: &MountPlan) -> Result<()> {
    let flags = m.flags & (MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC | MsFlags::MS_RELATIME);
    let read = |path: &str| std::fs::read_to_string(path).map_err(|e| InitError::io(format!("read {path}"), &e));
    let mountinfo = read("/proc/self/mountinfo")?;
    // Where we are (in our cgroup, and in our cgroup namespace if any).
    let own = crate::runtime::cgroups::own_paths(&read("/proc/self/cgroup")?);
    match crate::runtime::cgroups::detect(&mountinfo) {
        Ok(crate::runtime::cgroups::Layout::Unified { .. }) => {
            mount(Some("cgroup2"), at, Some("cgroup2"), m.flags, None::<&str>).map_err(err("mount cgroup2"))?;
            own_root(root, &m.destination, own.get(""), m.flags)
        }
        Ok(crate::runtime::cgroups::Layout::Legacy { controllers, .. }) => {
            mount(Some("tmpfs"), at, Some("tmpfs"), flags, Some("mode=755")).map_err(err("mount /sys/fs/cgroup"))?;
            let mut mounted: Vec<&PathBuf> = Vec::new();
            for (name, host) in &controllers {
                if mounted.contains(&host) {
                    continue;
                }
                mounted.push(host);
                // Resolved again: the path now crosses into the new tmpfs.
                let sub = format!("{}/{}", m.destination, host.file_name().unwrap_or_default().to_string_lossy());
                let dir = open_in_root(root, &sub, false)?;
                let opts: Vec<&str> = controllers.iter().filter(|(_, h)| *h == host).map(|(n, _)| n.as_str()).collect();
                mount(Some("cgroup"), &fd_path(&dir), Some("cgroup"), m.flags, Some(opts.join(",").as_str()))
                    .map_err(err(format!("mount the {name} cgroup")))?;
                own_root(root, &sub, own.get(name), m.flags)?;
            }
            let top = open_in_root(root, &m.destination, false)?;
            mount(
                None::<&str>,
                &fd_path(&top),
                None::<&str>,
                MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | flags,
                Some("mode=755"),
            )
            .map_err(err("make /sys/fs/cgroup read-only"))
        }
        Err(e) => Err(InitError::Cgroups { message: e.to_string() }),
    }
}

/// Binds our own cgroup's directory over the root of the hierarchy just
/// mounted at `path` (nothing to do when we are at its root), with that
/// mount's `flags` (a bind starts writable: a read-only one is made so).
fn own_root(root: BorrowedFd<'_>, path: &str, own: Option<&String>, flags: MsFlags) -> Result<()> {
    let Some(own) = own.map(|p| p.trim_start_matches('/')).filter(|p| !p.is_empty()) else { return Ok(()) };
    // Opened anew: this crosses into the hierarchy mounted there.
    let top: OwnedFd = open_in_root(root, path, false)?;
    let how = OpenHow::new()
        .flags(OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_SYMLINKS | ResolveFlag::RESOLVE_NO_XDEV);
    let inner = openat2(top.as_fd(), own, how).map_err(err(format!("open our cgroup {own} under {path}")))?;
    mount(Some(&fd_path(&inner)), &fd_path(&top), None::<&str>, MsFlags::MS_BIND, None::<&str>)
        .map_err(err(format!("bind our cgroup over {path}")))?;
    let kept = flags & (MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC);
    if kept.is_empty() {
        return Ok(());
    }
    let bound = open_in_root(root, path, false)?;
    mount(None::<&str>, &fd_path(&bound), None::<&str>, MsFlags::MS_REMOUNT | MsFlags::MS_BIND | kept, None::<&str>)
        .map_err(err(format!("make our cgroup at {path} read-only")))
}
