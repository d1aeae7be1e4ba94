//! `diff`: what a container changed in its root filesystem, read from its
//! overlay upper directory against the image's layers, as `docker diff`
//! shows it: `A` added, `C` changed (a file written, or a directory that
//! holds a change), `D` deleted (an overlay whiteout). The upper directory
//! is the container's to write, even while it is read: it is walked by
//! [`super::walk`], which follows nothing and is bounded in depth and
//! entries, and the list is bounded in changes too. A lower layer is looked
//! into only through real directories, never through a symlink (which
//! could name a host path). Lower layers are the store's, never written
//! after their unpacking.

use std::ffi::OsStr;
use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use nix::dir::Dir;
use nix::fcntl::OFlag;
use nix::sys::stat::{Mode, SFlag};
use serde::Serialize;

use super::error::{ImageError, Result};
use super::walk::{Entry, Visit, is_whiteout, walk};

pub use super::walk::MAX_DEPTH;
/// Changes listed at most (some 100 bytes each in the daemon).
pub const MAX_CHANGES: usize = 200_000;

/// One changed path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Change {
    /// `A`, `C` or `D`.
    pub kind: char,
    /// Absolute in the container (`/etc/motd`).
    pub path: String,
}

/// Whether `meta` is an overlay whiteout (a 0/0 character device).
fn whiteout(meta: &fs::Metadata) -> bool {
    meta.file_type().is_char_device() && meta.rdev() == 0
}

/// The changes in `upper` over `lowers` (the image's layers, the base
/// first), sorted by path. `runtime_files` are files the runtime made as
/// mount targets (`/etc/hosts` when the image has none): not the
/// container's changes, so not listed when added, nor their directories
/// when nothing else in them changed (as Docker keeps them in a layer of
/// its own).
pub fn changes(upper: &Path, lowers: &[PathBuf], runtime_files: &[&str]) -> Result<Vec<Change>> {
    let mut out = Vec::new();
    let top = Dir::open(upper, OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty())
        .map_err(|e| ImageError::io("open", upper)(e.into()))?;
    // The lowers' directories at this point of the walk, the top one
    // first; None where a layer has no real directory here.
    let dirs: Vec<Option<PathBuf>> = lowers.iter().rev().map(|l| Some(l.clone())).collect();
    let mut lister = Lister { upper, out: &mut out };
    walk(top, &dirs, &mut lister, &upper.display().to_string(), MAX_CHANGES.saturating_mul(2))?;
    out.retain(|c| !(c.kind == 'A' && runtime_files.contains(&c.path.as_str())));
    let dirs_of_runtime_files: Vec<&str> =
        runtime_files.iter().filter_map(|f| f.rsplit_once('/').map(|(d, _)| d)).filter(|d| !d.is_empty()).collect();
    let kept: Vec<String> = out.iter().map(|c| c.path.clone()).collect();
    out.retain(|c| {
        let under = format!("{}/", c.path);
        !(c.kind == 'C'
            && dirs_of_runtime_files.contains(&c.path.as_str())
            && !kept.iter().any(|p| p.starts_with(&under)))
    });
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

/// Whether `name` is in the lowers' merged view (the top layer that has
/// it decides; a whiteout there hides it), and each lower's directory of
/// that name when it is a real one.
fn in_lowers(dirs: &[Option<PathBuf>], name: &OsStr) -> (bool, Vec<Option<PathBuf>>) {
    let mut found = None;
    let below = dirs
        .iter()
        .map(|d| {
            let path = d.as_ref()?.join(name);
            let meta = fs::symlink_metadata(&path).ok()?;
            found.get_or_insert(!whiteout(&meta));
            meta.is_dir().then_some(path)
        })
        .collect();
    (found.unwrap_or(false), below)
}

struct Lister<'a> {
    upper: &'a Path,
    out: &'a mut Vec<Change>,
}

impl Visit for Lister<'_> {
    type Below = Vec<Option<PathBuf>>;

    fn entry(&mut self, e: &Entry<'_>, dirs: &Self::Below) -> Result<Option<Self::Below>> {
        let path = e.path_text();
        let (existed, below) = in_lowers(dirs, e.name);
        if is_whiteout(e.stat) {
            if existed {
                self.push(Change { kind: 'D', path })?;
            }
            return Ok(None);
        }
        self.push(Change { kind: if existed { 'C' } else { 'A' }, path })?;
        Ok((e.kind() == SFlag::S_IFDIR).then_some(below))
    }
}

impl Lister<'_> {
    fn push(&mut self, change: Change) -> Result<()> {
        if self.out.len() >= MAX_CHANGES {
            let parent = change.path.rsplit_once('/').map_or("", |(p, _)| p);
            return Err(ImageError::Invalid(format!(
                "{}{parent}: more than {MAX_CHANGES} changes: too many to list",
                self.upper.display()
            )));
        }
        self.out.push(change);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn added_changed_and_deleted_as_docker_diff_shows_them() {
        let t = tempfile::tempdir().unwrap();
        let (base, top, upper) = (t.path().join("base"), t.path().join("top"), t.path().join("upper"));
        for d in [base.join("etc"), base.join("var/log"), top.join("etc"), upper.join("etc"), upper.join("new/dir")] {
            fs::create_dir_all(d).unwrap();
        }
        fs::write(base.join("etc/passwd"), "root").unwrap();
        fs::write(top.join("etc/motd"), "hi").unwrap();
        fs::write(upper.join("etc/passwd"), "root\nme").unwrap();
        fs::write(upper.join("etc/added"), "x").unwrap();
        fs::write(upper.join("new/dir/file"), "x").unwrap();
        // A symlink in the upper named like a lower directory is a change
        // of that path, and is not followed.
        std::os::unix::fs::symlink("/etc", upper.join("var")).unwrap();
        let whiteouts = nix::unistd::Uid::effective().is_root();
        if whiteouts {
            nix::sys::stat::mknod(
                &upper.join("etc/motd"),
                nix::sys::stat::SFlag::S_IFCHR,
                nix::sys::stat::Mode::empty(),
                0,
            )
            .unwrap();
        }
        let got: Vec<String> =
            changes(&upper, &[base, top], &[]).unwrap().into_iter().map(|c| format!("{} {}", c.kind, c.path)).collect();
        let mut want =
            vec!["C /etc", "A /etc/added", "C /etc/passwd", "A /new", "A /new/dir", "A /new/dir/file", "C /var"];
        if whiteouts {
            want.insert(2, "D /etc/motd");
        }
        assert_eq!(got, want);
    }

    #[test]
    fn the_runtimes_mount_targets_are_not_the_containers_changes() {
        let t = tempfile::tempdir().unwrap();
        let (lower, upper) = (t.path().join("lower"), t.path().join("upper"));
        fs::create_dir_all(lower.join("etc")).unwrap();
        fs::create_dir_all(upper.join("etc")).unwrap();
        fs::write(upper.join("etc/hosts"), "").unwrap();
        let runtime = ["/etc/hosts", "/etc/resolv.conf"];
        assert_eq!(changes(&upper, std::slice::from_ref(&lower), &runtime).unwrap(), []);
        // Beside a change of the container's own, the directory is listed.
        fs::write(upper.join("etc/mine"), "x").unwrap();
        let got: Vec<String> = changes(&upper, &[lower], &runtime)
            .unwrap()
            .into_iter()
            .map(|c| format!("{} {}", c.kind, c.path))
            .collect();
        assert_eq!(got, ["C /etc", "A /etc/mine"]);
    }

    #[test]
    fn a_tree_too_deep_is_refused_not_walked_to_the_end() {
        let t = tempfile::tempdir().unwrap();
        let upper = t.path().join("upper");
        let mut deep = upper.clone();
        for _ in 0..MAX_DEPTH + 2 {
            deep.push("d");
        }
        fs::create_dir_all(&deep).unwrap();
        let e = changes(&upper, &[], &[]).unwrap_err().to_string();
        assert!(e.ends_with(&format!("nested deeper than {MAX_DEPTH} directories")), "{e}");
    }

    #[test]
    fn a_lower_is_never_looked_into_through_a_symlink() {
        let t = tempfile::tempdir().unwrap();
        let (lower, upper, host) = (t.path().join("lower"), t.path().join("upper"), t.path().join("host"));
        fs::create_dir_all(&lower).unwrap();
        fs::create_dir_all(upper.join("link")).unwrap();
        fs::create_dir_all(&host).unwrap();
        fs::write(host.join("secret"), "x").unwrap();
        fs::write(upper.join("link/secret"), "y").unwrap();
        // In the image, /link is a symlink to a host directory that has a
        // file of that name: the file is still new in the container.
        std::os::unix::fs::symlink(&host, lower.join("link")).unwrap();
        let got: Vec<String> =
            changes(&upper, &[lower], &[]).unwrap().into_iter().map(|c| format!("{} {}", c.kind, c.path)).collect();
        assert_eq!(got, ["C /link", "A /link/secret"]);
    }
}
