//! Unpacking one layer's tar stream into a directory that overlayfs can use
//! as a lower layer.
//!
//! OCI whiteouts become overlayfs ones: `.wh.NAME` a 0/0 character device
//! named NAME, `.wh..wh..opq` the `trusted.overlay.opaque` xattr on its
//! directory, so that mounting the layers gives the image's filesystem.
//! Modes, owners, setuid bits, xattrs, hard links, symlinks, device nodes
//! and mtimes are kept. Every path goes through [`SafeTree`], which refuses
//! entries that would leave the layer. What the tar reader buffers, the
//! number of entries, the image's unpacked size and the free space left
//! are bounded ([`TarGuard`], [`Budget`]); GNU sparse files stay sparse.

use std::io::Read;
use std::path::Path;

use nix::sys::stat::SFlag;
use tar::EntryType;

use super::error::{ImageError, Result};
use super::guard::{LimitExceeded, TarGuard, TarLimits};
use super::space::{Attempt, Budget, Memory};
use super::tree::{Meta, SafeTree, TreeError, components};

const WHITEOUT_PREFIX: &[u8] = b".wh.";
const OPAQUE_MARKER: &[u8] = b".wh..wh..opq";

/// What one unpack produced.
#[derive(Debug, Default, Clone, Copy)]
pub struct UnpackStats {
    pub entries: u64,
    /// Bytes of regular file content.
    pub bytes: u64,
}

/// What the allocator adds to each heap block (glibc: a 16-byte header,
/// rounded up).
const ALLOC_OVERHEAD: usize = 32;

/// Directory times to set once the layer is unpacked, in two allocations:
/// the paths back to back, and for each the end of its path and its mtime.
/// A directory costs its path and 16 bytes, not a heap block of its own.
/// Their capacity is held from the pull's directory memory (shared by the
/// layers unpacking at once) before it is allocated.
struct DirTimes<'a> {
    paths: Vec<u8>,
    index: Vec<(usize, i64)>,
    memory: Memory<'a>,
}

impl<'a> DirTimes<'a> {
    fn new(budget: &'a Budget) -> DirTimes<'a> {
        DirTimes { paths: Vec::new(), index: Vec::new(), memory: budget.memory() }
    }

    fn push(&mut self, comps: &[&[u8]], mtime: i64) -> std::result::Result<(), String> {
        let len = comps.iter().map(|c| c.len()).sum::<usize>() + comps.len().saturating_sub(1);
        reserve(&mut self.paths, len, &mut self.memory)?;
        reserve(&mut self.index, 1, &mut self.memory)?;
        for (i, c) in comps.iter().enumerate() {
            if i > 0 {
                self.paths.push(b'/');
            }
            self.paths.extend_from_slice(c);
        }
        self.index.push((self.paths.len(), mtime));
        Ok(())
    }

    /// The paths and times, the last pushed first.
    fn rev(&self) -> impl Iterator<Item = (&[u8], i64)> {
        (0..self.index.len()).rev().map(|i| {
            let start = if i == 0 { 0 } else { self.index[i - 1].0 };
            let (end, mtime) = self.index[i];
            (&self.paths[start..end], mtime)
        })
    }
}

/// Makes room in `v` for `more` items, growing it by half (not doubling,
/// which would leave up to half the bound unused), after holding the new
/// capacity from `memory`.
fn reserve<T>(v: &mut Vec<T>, more: usize, memory: &mut Memory<'_>) -> std::result::Result<(), String> {
    if v.capacity() - v.len() >= more {
        return Ok(());
    }
    let item = std::mem::size_of::<T>();
    let want = v.len().saturating_add(more).max(v.capacity().saturating_add(v.capacity() / 2)).max(4096 / item);
    let overhead = if v.capacity() == 0 { ALLOC_OVERHEAD } else { 0 };
    let bytes = (want - v.capacity()).saturating_mul(item).saturating_add(overhead);
    memory.grow(bytes)?;
    v.reserve_exact(want - v.len());
    Ok(())
}

/// Unpacks the (uncompressed) tar stream `input` into the empty directory
/// `dest`. `layer` names the layer in errors. Every file's size is taken
/// from `attempt` (the image's budget, shared by its layers) before it is
/// written.
/// Stops at the end-of-archive marker: the caller drains and checks the
/// rest of the stream.
pub fn unpack_layer(
    input: &mut dyn Read,
    dest: &Path,
    layer: &str,
    limits: TarLimits,
    attempt: &mut Attempt<'_>,
) -> Result<UnpackStats> {
    let mut tree = SafeTree::open(dest).map_err(ImageError::io("open layer directory", dest))?;
    let mut guard = TarGuard::new(input, limits);
    let mut archive = tar::Archive::new(&mut guard as &mut dyn Read);
    let mut stats = UnpackStats::default();
    let budget = attempt.budget();
    let mut dir_times = DirTimes::new(budget);
    let limit = |message: String| ImageError::Limit { what: format!("layer {layer}"), message };
    let read_error = |e: std::io::Error| match LimitExceeded::of(&e) {
        Some(refused) => limit(refused.0.clone()),
        None => ImageError::Layer { layer: layer.to_string(), message: format!("reading the layer: {e}") },
    };

    for entry in archive.entries().map_err(read_error)? {
        let mut entry = entry.map_err(read_error)?;
        let path = entry.path_bytes().into_owned();
        let shown = String::from_utf8_lossy(&path).into_owned();
        let refuse =
            |reason: String| ImageError::UnsafeEntry { layer: layer.to_string(), entry: shown.clone(), reason };
        let fail = |e: TreeError| match e {
            TreeError::Unsafe(reason) => refuse(reason),
            // The stream broke (or was refused) inside a file's content.
            TreeError::Read(e) => read_error(e),
            // Kept typed: a full filesystem is told apart from bad content.
            TreeError::Io { op, source } => {
                ImageError::Unpack { layer: layer.to_string(), entry: shown.clone(), op, source }
            }
            other => ImageError::Layer { layer: layer.to_string(), message: format!("{shown}: {other}") },
        };
        let comps = components(&path).map_err(fail)?;
        let meta = meta_of(&mut entry).map_err(read_error)?;
        let kind = entry.header().entry_type();
        stats.entries += 1;

        // Whiteouts: the name says what they are, whatever the entry type.
        if let Some(name) = comps.last().filter(|n| n.starts_with(WHITEOUT_PREFIX)) {
            let parent = &comps[..comps.len() - 1];
            if *name == OPAQUE_MARKER {
                tree.opaque(parent).map_err(fail)?;
            } else {
                let hidden = &name[WHITEOUT_PREFIX.len()..];
                if hidden.is_empty() || hidden == b"." || hidden == b".." {
                    return Err(refuse("malformed whiteout".into()));
                }
                let mut target = parent.to_vec();
                target.push(hidden);
                tree.whiteout(&target).map_err(fail)?;
            }
            continue;
        }
        if comps.is_empty() && kind != EntryType::Directory {
            return Err(refuse("only a directory can be the layer's root".into()));
        }

        match kind {
            EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => {
                // A sparse file counts at its apparent size (reading its
                // holes costs time too); only its data takes disk space.
                let sparse = kind == EntryType::GNUSparse;
                let size = entry.size();
                let on_disk = if sparse { entry.header().entry_size().unwrap_or(size) } else { size };
                attempt.take(size, on_disk).map_err(limit)?;
                stats.bytes += tree.file(&comps, &meta, &mut entry, sparse).map_err(fail)?;
            }
            EntryType::Directory => {
                tree.dir(&comps, &meta).map_err(fail)?;
                dir_times.push(&comps, meta.mtime).map_err(limit)?;
            }
            EntryType::Symlink => {
                let target = entry.link_name_bytes().ok_or_else(|| refuse("symbolic link without a target".into()))?;
                tree.symlink(&comps, &target, &meta).map_err(fail)?;
            }
            EntryType::Link => {
                let target = entry.link_name_bytes().ok_or_else(|| refuse("hard link without a target".into()))?;
                let target = components(&target).map_err(|e| refuse(format!("hard link target: {e}")))?;
                tree.hardlink(&comps, &target).map_err(fail)?;
            }
            EntryType::Char | EntryType::Block | EntryType::Fifo => {
                let (sflag, major, minor) = node_of(kind, entry.header());
                tree.node(&comps, sflag, major, minor, &meta).map_err(fail)?;
            }
            // Extension headers are read by the tar crate; anything else
            // (volume labels, GNU multi-volume parts) carries no file.
            _ => {}
        }
    }

    // A directory's mtime changes while entries are added to it: set them
    // last, the deepest first.
    for (joined, mtime) in dir_times.rev() {
        let comps: Vec<&[u8]> = if joined.is_empty() { Vec::new() } else { joined.split(|b| *b == b'/').collect() };
        tree.set_mtime(&comps, mtime)
            .map_err(|e| ImageError::Layer { layer: layer.to_string(), message: format!("{e:?}") })?;
    }
    tree.sync().map_err(ImageError::io("sync layer", dest))?;
    Ok(stats)
}

/// A device or FIFO entry (`kind`) as [`SafeTree::node`] makes it: its
/// file type and device numbers (0 where the header has none).
pub fn node_of(kind: EntryType, h: &tar::Header) -> (SFlag, u64, u64) {
    let major = h.device_major().ok().flatten().unwrap_or(0).into();
    let minor = h.device_minor().ok().flatten().unwrap_or(0).into();
    let sflag = match kind {
        EntryType::Char => SFlag::S_IFCHR,
        EntryType::Block => SFlag::S_IFBLK,
        _ => SFlag::S_IFIFO,
    };
    (sflag, major, minor)
}

/// Metadata of an entry, with PAX overrides (large ids, xattrs).
pub fn meta_of<R: Read>(entry: &mut tar::Entry<'_, R>) -> std::io::Result<Meta> {
    let h = entry.header();
    let mut meta = Meta {
        mode: h.mode()?,
        uid: h.uid()? as u32,
        gid: h.gid()? as u32,
        mtime: h.mtime()? as i64,
        xattrs: Vec::new(),
    };
    if let Some(exts) = entry.pax_extensions()? {
        for ext in exts {
            let ext = ext?;
            let key = ext.key_bytes();
            if let Some(name) = key.strip_prefix(b"SCHILY.xattr.") {
                meta.xattrs.push((name.to_vec(), ext.value_bytes().to_vec()));
            } else if key == b"uid" {
                meta.uid = std::str::from_utf8(ext.value_bytes()).ok().and_then(|v| v.parse().ok()).unwrap_or(meta.uid);
            } else if key == b"gid" {
                meta.gid = std::str::from_utf8(ext.value_bytes()).ok().and_then(|v| v.parse().ok()).unwrap_or(meta.gid);
            } else if key == b"mtime" {
                let secs = std::str::from_utf8(ext.value_bytes()).ok().and_then(|v| v.split('.').next()?.parse().ok());
                meta.mtime = secs.unwrap_or(meta.mtime);
            }
        }
    }
    Ok(meta)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directory_times_hold_their_real_size_from_the_pulls_bound() {
        let dir = tempfile::tempdir().unwrap();
        let budget = Budget::with_memory("img:1", 0, dir.path(), 64 << 10);
        let mut other = budget.memory();
        other.grow(1000).unwrap();
        let mut times = DirTimes::new(&budget);
        let name = [b'd'; 50];
        let e = loop {
            if let Err(e) = times.push(&[b"usr", &name], 1) {
                break e;
            }
            // Whatever was allocated was held first, with the allocator's
            // overhead for each of the two blocks.
            let allocated = times.paths.capacity() + times.index.capacity() * size_of::<(usize, i64)>();
            assert!(times.memory.held() >= allocated + 2 * ALLOC_OVERHEAD);
        };
        assert!(e.contains("img:1") && e.contains("limit of 65536 bytes of memory"), "{e}");
        // 54-byte paths and 16 bytes of index each: close to the bound,
        // not a quarter of it.
        assert!(times.index.len() > 500, "{} directories", times.index.len());
        let last: Vec<_> = times.rev().take(1).collect();
        assert_eq!(last[0].0.len(), 4 + name.len());
        drop(times);
        // The bound is the pull's: what another layer held stays held.
        assert_eq!(budget.memory_used(), other.held());
    }
}
