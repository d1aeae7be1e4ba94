//! The appliance's data disk: an ext4 file system labelled
//! `supervisor-data` (`build.sh --data-disk`). PID 1 finds it by its
//! label, checks it (`e2fsck -p`, which also replays its journal after a
//! power loss), mounts it on [`MOUNT`] and binds its `units.d`, `state`
//! and `log` over the unit, state and log directories, so that what is
//! applied, pulled, written to volumes and logged outlives a reboot. A
//! labelled disk without them (made by an operator) gets them, seeded
//! from the initramfs. At power-off its file system is frozen last
//! (`FIFREEZE`: written out, journal clean), as it cannot be unmounted
//! while supervisord still holds files on it. Without a disk nothing
//! changes: everything stays in RAM. A blank virtio disk (its first MiB
//! all zeros) is formatted as the data disk at first boot, then seeded.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use nix::mount::{MsFlags, mount};

/// The file system label the disk is found by.
pub const LABEL: &str = "supervisor-data";
/// Where it is mounted.
pub const MOUNT: &str = "/var/lib/supervisor-data";

/// The disk, once mounted (for power-off and `boot`).
static MOUNTED: OnceLock<PathBuf> = OnceLock::new();

/// The device of the mounted data disk, if there is one.
pub fn mounted() -> Option<&'static Path> {
    MOUNTED.get().map(PathBuf::as_path)
}

/// The label of an ext2/3/4 file system from its first 2 KiB (the
/// superblock is at 1024: magic 0xEF53 at 0x38, the volume name at 0x78).
pub fn ext4_label(head: &[u8]) -> Option<String> {
    let sb = head.get(1024..1024 + 0x88)?;
    if sb[0x38..0x3a] != [0x53, 0xef] {
        return None;
    }
    let name = &sb[0x78..0x88];
    let end = name.iter().position(|&b| b == 0).unwrap_or(name.len());
    Some(String::from_utf8_lossy(&name[..end]).into_owned())
}

/// The block devices of /sys/class/block that `keep` (by name; loop and
/// RAM disks never), sorted by name, with their first `len` bytes, each
/// read only when the one before it was not the one looked for.
fn devices(keep: impl Fn(&str) -> bool, len: usize) -> impl Iterator<Item = (PathBuf, Vec<u8>)> {
    let mut names: Vec<String> = std::fs::read_dir("/sys/class/block")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str().map(String::from))
        .filter(|n| !n.starts_with("loop") && !n.starts_with("ram") && keep(n))
        .collect();
    names.sort();
    names.into_iter().filter_map(move |n| {
        let dev = Path::new("/dev").join(n);
        let mut head = vec![0u8; len];
        File::open(&dev).and_then(|mut f| f.read_exact(&mut head)).ok()?;
        Some((dev, head))
    })
}

/// The block device whose file system has `label`.
fn find(label: &str) -> Option<PathBuf> {
    devices(|_| true, 2048).find(|(_, head)| ext4_label(head).as_deref() == Some(label)).map(|(d, _)| d)
}

/// How much of a disk must be zeros for it to count as blank.
const BLANK: usize = 1 << 20;

/// A virtio disk an operator attached empty: a whole disk (no partition
/// of one) whose first MiB is all zeros, so no partition table and no
/// file system signature; the first of them by name.
fn blank_disk() -> Option<PathBuf> {
    let whole_virtio =
        |n: &str| n.starts_with("vd") && !Path::new("/sys/class/block").join(n).join("partition").exists();
    devices(whole_virtio, BLANK).find(|(_, head)| head.iter().all(|&b| b == 0)).map(|(d, _)| d)
}

/// Makes the data disk's file system on a blank disk (`mke2fs`, shipped
/// in the initramfs).
fn format(device: &Path) -> Result<(), String> {
    let dev = device.display();
    let made = Command::new("/usr/sbin/mke2fs").args(["-q", "-F", "-t", "ext4", "-L", LABEL]).arg(device).status();
    match made {
        Ok(s) if s.success() => {
            tracing::info!("{dev}: a blank disk: formatted as the data disk (ext4, label {LABEL})");
            Ok(())
        }
        Ok(s) => Err(format!("{dev}: a blank disk, but mke2fs failed ({s})")),
        Err(e) => Err(format!("{dev}: a blank disk, but mke2fs cannot run: {e}")),
    }
}

/// Where each directory of the daemon lives on the disk.
pub struct Dirs<'a> {
    pub units: &'a Path,
    pub state: &'a Path,
    pub log: &'a Path,
}

/// Finds, checks and mounts the data disk and binds its directories over
/// `dirs`. `Ok(None)`: no disk (RAM only); an error: a disk that could not
/// be used (the appliance then runs from RAM, and says why).
pub fn mount_data(dirs: &Dirs) -> Result<Option<PathBuf>, String> {
    let device = match find(LABEL) {
        Some(device) => device,
        None => match blank_disk() {
            Some(blank) => {
                format(&blank)?;
                blank
            }
            None => return Ok(None),
        },
    };
    let dev = device.display();
    // -p: repair what is safe without a person; 1 (fixed) is fine, 2 asks
    // for a reboot that does not apply to a disk not yet mounted, 4 and up
    // are errors left unfixed.
    if Path::new("/usr/sbin/e2fsck").exists() {
        match Command::new("/usr/sbin/e2fsck").arg("-p").arg(&device).status() {
            Ok(s) if s.code().is_some_and(|c| c < 4) => {}
            Ok(s) => return Err(format!("{dev}: e2fsck -p found errors it could not fix ({s}); not mounted")),
            Err(e) => tracing::warn!("{dev}: cannot run e2fsck: {e}; mounted unchecked"),
        }
    }
    std::fs::create_dir_all(MOUNT).map_err(|e| format!("{MOUNT}: {e}"))?;
    mount(Some(&device), MOUNT, Some("ext4"), MsFlags::MS_NOATIME, None::<&str>)
        .map_err(|e| format!("mount {dev} on {MOUNT}: {e}"))?;
    // Mounted: frozen at power-off from now on, whatever happens next.
    let _ = MOUNTED.set(device.clone());
    for (sub, target) in [("units.d", dirs.units), ("state", dirs.state), ("log", dirs.log)] {
        let source = Path::new(MOUNT).join(sub);
        if !source.exists() {
            // A disk without it: seeded from what the initramfs has.
            seed(target, &source).map_err(|e| format!("seed {} from {}: {e}", source.display(), target.display()))?;
        }
        std::fs::create_dir_all(target).map_err(|e| format!("{}: {e}", target.display()))?;
        mount(Some(&source), target, None::<&str>, MsFlags::MS_BIND, None::<&str>)
            .map_err(|e| format!("bind {} on {}: {e}", source.display(), target.display()))?;
    }
    Ok(Some(device))
}

/// Copies the tree `from` (files, directories, links; owners and modes)
/// to the new directory `to`, made under a temporary name and renamed
/// once whole, so that a power loss in the middle seeds it again.
fn seed(from: &Path, to: &Path) -> std::io::Result<()> {
    let partial = to.with_extension("seeding");
    let _ = std::fs::remove_dir_all(&partial);
    match std::fs::symlink_metadata(from) {
        // Nothing to seed from: an empty directory.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => std::fs::create_dir(&partial)?,
        _ => copy_tree(from, &partial)?,
    }
    std::fs::rename(&partial, to)
}

fn copy_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let meta = std::fs::symlink_metadata(from)?;
    if meta.is_dir() {
        std::fs::create_dir(to)?;
        for entry in std::fs::read_dir(from)? {
            let entry = entry?;
            copy_tree(&entry.path(), &to.join(entry.file_name()))?;
        }
    } else if meta.file_type().is_symlink() {
        std::os::unix::fs::symlink(std::fs::read_link(from)?, to)?;
        return Ok(());
    } else if meta.is_file() {
        std::fs::copy(from, to)?;
    } else {
        // Device nodes, sockets, FIFOs: none belong in these directories.
        return Ok(());
    }
    std::os::unix::fs::chown(to, Some(meta.uid()), Some(meta.gid()))?;
    std::fs::set_permissions(to, std::fs::Permissions::from_mode(meta.mode() & 0o7777))
}

/// The data disk's file system, opened before the unmounts of a power-off
/// and frozen after them (see [`crate::runtime::sys::freeze_fs`]).
pub fn open_for_freeze() -> Option<File> {
    mounted().and_then(|_| File::open(MOUNT).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_label_is_read_from_an_ext4_superblock() {
        // A real one: mke2fs writes it, as build.sh does.
        let dir = tempfile::tempdir().unwrap();
        let image = dir.path().join("d.img");
        let made = Command::new("mke2fs")
            .args(["-q", "-F", "-t", "ext4", "-L", LABEL])
            .arg(&image)
            .arg("8M")
            .status()
            .unwrap();
        assert!(made.success());
        let mut head = vec![0u8; 2048];
        File::open(&image).unwrap().read_exact(&mut head).unwrap();
        assert_eq!(ext4_label(&head).as_deref(), Some(LABEL));
        // Not a file system, or too short.
        assert_eq!(ext4_label(&[0u8; 2048]), None);
        assert_eq!(ext4_label(&head[..1100]), None);
    }

    #[test]
    fn a_seeded_tree_keeps_files_links_and_modes() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let from = dir.path().join("from");
        std::fs::create_dir_all(from.join("images/blobs")).unwrap();
        std::fs::write(from.join("images/blobs/a"), "blob").unwrap();
        std::fs::set_permissions(from.join("images"), std::fs::Permissions::from_mode(0o700)).unwrap();
        std::os::unix::fs::symlink("blobs/a", from.join("images/link")).unwrap();
        let to = dir.path().join("to");
        seed(&from, &to).unwrap();
        assert_eq!(std::fs::read_to_string(to.join("images/blobs/a")).unwrap(), "blob");
        assert_eq!(std::fs::read_link(to.join("images/link")).unwrap(), Path::new("blobs/a"));
        assert_eq!(std::fs::metadata(to.join("images")).unwrap().permissions().mode() & 0o777, 0o700);
        assert!(!to.with_extension("seeding").exists());
        // Nothing to seed from: an empty directory.
        let empty = dir.path().join("empty");
        seed(&dir.path().join("absent"), &empty).unwrap();
        assert_eq!(std::fs::read_dir(&empty).unwrap().count(), 0);
    }
}
