//! Compares two directory trees as a user of the image would see them:
//! paths, types, modes, owners, contents, link targets, device numbers,
//! user xattrs, hard-link groups and file mtimes.

use std::collections::BTreeMap;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

fn describe(root: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut inodes: BTreeMap<(u64, u64), String> = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let mut entries: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
        entries.sort();
        for p in entries {
            let md = std::fs::symlink_metadata(&p).unwrap();
            let rel = p.strip_prefix(root).unwrap().display().to_string();
            let ft = md.file_type();
            let kind = if ft.is_dir() {
                stack.push(p.clone());
                "dir".to_string()
            } else if ft.is_symlink() {
                format!("link -> {}", std::fs::read_link(&p).unwrap().display())
            } else if ft.is_file() {
                let data = std::fs::read(&p).unwrap();
                let first = inodes.entry((md.dev(), md.ino())).or_insert_with(|| rel.clone()).clone();
                let link = if first != rel { format!(" hardlink of {first}") } else { String::new() };
                format!("file {} bytes {:x} mtime {}{link}", data.len(), fnv(&data), md.mtime())
            } else if ft.is_char_device() || ft.is_block_device() {
                format!("dev {}:{}", libc::major(md.rdev()), libc::minor(md.rdev()))
            } else {
                "fifo".to_string()
            };
            let xattr = user_xattr(&p);
            out.insert(rel, format!("{kind} mode {:o} owner {}:{}{xattr}", md.mode() & 0o7777, md.uid(), md.gid()));
        }
    }
    out
}

fn fnv(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf29ce484222325u64, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x100000001b3))
}

fn user_xattr(p: &Path) -> String {
    let c = std::ffi::CString::new(std::os::unix::ffi::OsStrExt::as_bytes(p.as_os_str())).unwrap();
    let mut buf = [0u8; 256];
    // SAFETY: valid NUL-terminated strings and a buffer of buf.len() bytes.
    let n = unsafe { libc::lgetxattr(c.as_ptr(), c"user.test".as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    if n >= 0 { format!(" user.test={}", String::from_utf8_lossy(&buf[..n as usize])) } else { String::new() }
}

/// Every difference between the trees, one line each; empty when equal.
pub fn differences(expected: &Path, actual: &Path) -> Vec<String> {
    let (a, b) = (describe(expected), describe(actual));
    let mut diffs = Vec::new();
    for (k, v) in &a {
        match b.get(k) {
            None => diffs.push(format!("missing {k}: {v}")),
            Some(w) if w != v => diffs.push(format!("{k}: expected {v}, got {w}")),
            _ => {}
        }
    }
    for (k, v) in &b {
        if !a.contains_key(k) {
            diffs.push(format!("extra {k}: {v}"));
        }
    }
    diffs
}
