//! `export`: an image's merged root filesystem in a plain directory, all
//! layers applied and whiteouts resolved, like the rootfs `umoci unpack`
//! makes. The layers are our own unpacked directories; the destination is
//! written through [`SafeTree`], since a lower layer's symlink must not
//! redirect an upper layer's files out of the destination.

use std::collections::HashMap;
use std::ffi::CString;
use std::fs::{self, File};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use nix::sys::stat::SFlag;

use super::error::{ImageError, Result};
use super::store::Store;
use super::tree::{Meta, OPAQUE_XATTR, SafeTree, TreeError};

impl Store {
    /// Writes the merged root filesystem of `reference` into `dest`, which
    /// must not exist or be empty. Never pulls.
    pub fn export(&self, reference: &str, dest: &Path) -> Result<()> {
        let image = self.image(reference)?.ok_or_else(|| ImageError::NotInStore(reference.to_string()))?;
        match fs::read_dir(dest) {
            Ok(mut entries) => {
                if entries.next().is_some() {
                    return Err(ImageError::Invalid(format!("{}: the directory is not empty", dest.display())));
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                fs::create_dir_all(dest).map_err(ImageError::io("create", dest))?;
            }
            Err(e) => return Err(ImageError::io("open", dest)(e)),
        }
        merge_layers(&image.layer_dirs, dest)
    }
}

/// Applies `layers` (the base first) onto `dest`.
pub fn merge_layers(layers: &[PathBuf], dest: &Path) -> Result<()> {
    let mut tree = SafeTree::open(dest).map_err(ImageError::io("open", dest))?;
    let mut dir_times: Vec<(Vec<Vec<u8>>, i64)> = Vec::new();
    for layer in layers {
        copy_layer(layer, &mut tree, &mut dir_times)?;
    }
    for (comps, mtime) in dir_times.iter().rev() {
        let refs: Vec<&[u8]> = comps.iter().map(Vec::as_slice).collect();
        tree.set_mtime(&refs, *mtime).map_err(|e| tree_error(dest, e))?;
    }
    Ok(())
}

fn tree_error(at: &Path, e: TreeError) -> ImageError {
    ImageError::Invalid(format!("export to {}: {e}", at.display()))
}

fn copy_layer(layer: &Path, tree: &mut SafeTree, dir_times: &mut Vec<(Vec<Vec<u8>>, i64)>) -> Result<()> {
    let root_meta = fs::symlink_metadata(layer).map_err(ImageError::io("stat", layer))?;
    tree.dir(&[], &meta_of(layer, &root_meta)?).map_err(|e| tree_error(layer, e))?;
    let mut links: HashMap<(u64, u64), Vec<Vec<u8>>> = HashMap::new();
    let mut stack: Vec<(PathBuf, Vec<Vec<u8>>)> = vec![(layer.to_path_buf(), Vec::new())];
    while let Some((dir, comps)) = stack.pop() {
        let mut entries: Vec<_> = fs::read_dir(&dir)
            .map_err(ImageError::io("read", &dir))?
            .collect::<std::io::Result<_>>()
            .map_err(ImageError::io("read", &dir))?;
        entries.sort_by_key(|e| e.file_name());
        for entry in entries {
            let path = entry.path();
            let md = fs::symlink_metadata(&path).map_err(ImageError::io("stat", &path))?;
            let mut c = comps.clone();
            c.push(entry.file_name().as_bytes().to_vec());
            let refs: Vec<&[u8]> = c.iter().map(Vec::as_slice).collect();
            let fail = |e| tree_error(&path, e);
            let ft = md.file_type();
            if ft.is_char_device() && md.rdev() == 0 {
                // An overlay whiteout: what the lower layers had here goes.
                tree.remove(&refs).map_err(fail)?;
                continue;
            }
            let meta = meta_of(&path, &md)?;
            if ft.is_dir() {
                tree.dir(&refs, &meta).map_err(fail)?;
                if get_xattr(&path, OPAQUE_XATTR).as_deref() == Some(b"y") {
                    tree.clear_dir(&refs).map_err(fail)?;
                }
                dir_times.push((c.clone(), meta.mtime));
                stack.push((path, c));
            } else if ft.is_file() {
                if md.nlink() > 1 {
                    if let Some(first) = links.get(&(md.dev(), md.ino())) {
                        let first: Vec<&[u8]> = first.iter().map(Vec::as_slice).collect();
                        tree.hardlink(&refs, &first).map_err(fail)?;
                        continue;
                    }
                    links.insert((md.dev(), md.ino()), c.clone());
                }
                let mut f = File::open(&path).map_err(ImageError::io("open", &path))?;
                tree.file(&refs, &meta, &mut f, false).map_err(fail)?;
            } else if ft.is_symlink() {
                let target = fs::read_link(&path).map_err(ImageError::io("readlink", &path))?;
                tree.symlink(&refs, target.as_os_str().as_bytes(), &meta).map_err(fail)?;
            } else {
                let kind = if ft.is_char_device() {
                    SFlag::S_IFCHR
                } else if ft.is_block_device() {
                    SFlag::S_IFBLK
                } else {
                    SFlag::S_IFIFO
                };
                let (major, minor) = (libc::major(md.rdev()).into(), libc::minor(md.rdev()).into());
                tree.node(&refs, kind, major, minor, &meta).map_err(fail)?;
            }
        }
    }
    Ok(())
}

fn meta_of(path: &Path, md: &fs::Metadata) -> Result<Meta> {
    Ok(Meta { mode: md.mode() & 0o7777, uid: md.uid(), gid: md.gid(), mtime: md.mtime(), xattrs: list_xattrs(path)? })
}

fn cpath(path: &Path) -> Result<CString> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| ImageError::Invalid(format!("{}: NUL in path", path.display())))
}

/// The extended attributes of `path` (not following a link), except the
/// overlayfs ones, which describe the layer, not the image.
fn list_xattrs(path: &Path) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let c = cpath(path)?;
    let mut names = vec![0u8; 4096];
    // SAFETY: c is NUL-terminated; names has names.len() writable bytes.
    let n = unsafe { libc::llistxattr(c.as_ptr(), names.as_mut_ptr().cast(), names.len()) };
    if n < 0 {
        let e = std::io::Error::last_os_error();
        return if e.raw_os_error() == Some(libc::ENOTSUP) {
            Ok(Vec::new())
        } else {
            Err(ImageError::io("list xattrs", path)(e))
        };
    }
    let mut out = Vec::new();
    for name in names[..n as usize].split(|b| *b == 0).filter(|n| !n.is_empty()) {
        if name.starts_with(b"trusted.overlay.") {
            continue;
        }
        if let Some(v) = get_xattr(path, name) {
            out.push((name.to_vec(), v));
        }
    }
    Ok(out)
}

/// The value of the xattr `name` of `path` (not following a link).
pub(super) fn get_xattr(path: &Path, name: &[u8]) -> Option<Vec<u8>> {
    let c = cpath(path).ok()?;
    let n = CString::new(name).ok()?;
    let mut buf = vec![0u8; 65536];
    // SAFETY: both strings are NUL-terminated; buf has buf.len() writable bytes.
    let len = unsafe { libc::lgetxattr(c.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    (len >= 0).then(|| buf[..len as usize].to_vec())
}

/// A named volume's data directory, below the volume's own directory.
pub const VOLUME_DATA: &str = "_data";

/// Where a named volume's data is seeded before it is renamed to
/// [`VOLUME_DATA`]: what a killed seeding leaves, never used.
pub const VOLUME_SEEDING: &str = "_data.seeding";

/// The lock of a volume's seeding, in the volume's directory.
pub(super) const VOLUME_LOCK: &str = ".seed.lock";

/// Makes the named volume `volume` (a directory under the state
/// directory's `volumes/`) once, seeded with what the image has at
/// `path`, as Docker seeds a new named volume; a volume that exists is
/// left as it is. Atomic against a kill at any point: the data is copied
/// into [`VOLUME_SEEDING`], synced, and renamed to [`VOLUME_DATA`], so a
/// volume is either absent (and seeded again, from the start, by the next
/// caller) or whole. Two callers at once seed it once (a lock in the
/// volume's directory). Returns whether it was seeded now.
pub fn seed_volume(layers: &[PathBuf], path: &str, volume: &Path) -> Result<bool> {
    let data = volume.join(VOLUME_DATA);
    if fs::symlink_metadata(&data).is_ok() {
        return Ok(false);
    }
    fs::create_dir_all(volume).map_err(ImageError::io("create", volume))?;
    let _lock = super::store::flock(&volume.join(VOLUME_LOCK), true)?;
    if fs::symlink_metadata(&data).is_ok() {
        return Ok(false);
    }
    let seeding = volume.join(VOLUME_SEEDING);
    match super::store::remove_path(&seeding) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(ImageError::io("remove", &seeding)(e)),
        _ => {}
    }
    fs::create_dir(&seeding).map_err(ImageError::io("create", &seeding))?;
    // 0755 as in Docker, whatever the daemon's umask (0077).
    fs::set_permissions(&seeding, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .map_err(ImageError::io("chmod", &seeding))?;
    seed_from_layers(layers, path, &seeding)?;
    // The content first, then the rename that makes it the volume's.
    let dir = File::open(&seeding).map_err(ImageError::io("open", &seeding))?;
    nix::unistd::syncfs(&dir).map_err(|e| ImageError::io("sync", &seeding)(e.into()))?;
    fs::rename(&seeding, &data).map_err(ImageError::io("rename", &data))?;
    File::open(volume).and_then(|d| d.sync_all()).map_err(ImageError::io("sync", volume))?;
    Ok(true)
}

/// Copies what the image has at `path` (merged over its layers) into
/// `dest`, as Docker seeds a new named volume: only real directories are
/// followed down the path in each layer (never a link), and a whiteout of
/// the path in an upper layer empties what the lower ones gave. Returns
/// whether the image had anything there.
pub fn seed_from_layers(layers: &[PathBuf], path: &str, dest: &Path) -> Result<bool> {
    let comps: Vec<&str> = path.split('/').filter(|c| !c.is_empty() && *c != ".").collect();
    let mut tree = SafeTree::open(dest).map_err(ImageError::io("open", dest))?;
    let mut dir_times: Vec<(Vec<Vec<u8>>, i64)> = Vec::new();
    let mut found = false;
    'layers: for layer in layers {
        let mut at = layer.clone();
        for c in &comps {
            at.push(c);
            match fs::symlink_metadata(&at) {
                Ok(md) if md.file_type().is_dir() => {}
                Ok(md) if md.file_type().is_char_device() && md.rdev() == 0 => {
                    tree.clear_dir(&[]).map_err(|e| tree_error(dest, e))?;
                    found = false;
                    continue 'layers;
                }
                _ => continue 'layers,
            }
        }
        if get_xattr(&at, OPAQUE_XATTR).as_deref() == Some(b"y") {
            tree.clear_dir(&[]).map_err(|e| tree_error(dest, e))?;
        }
        copy_layer(&at, &mut tree, &mut dir_times)?;
        found = true;
    }
    for (c, mtime) in dir_times.iter().rev() {
        let refs: Vec<&[u8]> = c.iter().map(Vec::as_slice).collect();
        tree.set_mtime(&refs, *mtime).map_err(|e| tree_error(dest, e))?;
    }
    Ok(found)
}
