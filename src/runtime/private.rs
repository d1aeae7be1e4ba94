//! Directories private to their owner, whatever the umask and whatever
//! their modes were before: the daemon's state, run and log directories,
//! and an image store. The mode is set on the opened directory, so that an
//! installation made by an older version (or under a loose umask) is fixed
//! at the next start.
//!
//! Only the top of each tree is set: a path below a directory of mode 0700
//! cannot be resolved by anyone but its owner, whatever the modes below it
//! (the setuid binaries and device nodes of image layers and of containers'
//! writable layers must keep theirs, as the image and the container made
//! them).

use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

/// Makes `path` (with any missing parents) a directory of mode `mode`,
/// with the group `group` when given (which the mode may then let read).
/// A symbolic link is followed: the directory it names is what holds the
/// state (an operator may have moved it to another disk).
pub fn private_dir(path: &Path, mode: u32, group: Option<u32>) -> io::Result<()> {
    std::fs::create_dir_all(path)?;
    let done = |meta: &std::fs::Metadata| meta.mode() & 0o7777 == mode && group.is_none_or(|g| g == meta.gid());
    // Left alone when already so: whoever does not own it (a user's
    // `supervisorctl --store` on root's store) then meets the plain
    // permission error of what it reads next, not one of chmod.
    let meta = std::fs::metadata(path)?;
    if !meta.is_dir() {
        return Err(io::Error::from(io::ErrorKind::NotADirectory));
    }
    if done(&meta) {
        return Ok(());
    }
    // Changed through the opened directory: the one checked is the one set.
    let dir = std::fs::File::open(path)?;
    let meta = dir.metadata()?;
    if !meta.is_dir() {
        return Err(io::Error::from(io::ErrorKind::NotADirectory));
    }
    if group.is_some_and(|g| g != meta.gid()) {
        std::os::unix::fs::fchown(&dir, None, group)?;
    }
    dir.set_permissions(std::fs::Permissions::from_mode(mode))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn made_and_fixed_whatever_the_umask() {
        let t = tempfile::tempdir().unwrap();
        let new = t.path().join("a/b");
        private_dir(&new, 0o700, None).unwrap();
        assert_eq!(std::fs::metadata(&new).unwrap().mode() & 0o7777, 0o700);
        // An existing directory with looser modes.
        std::fs::set_permissions(&new, std::fs::Permissions::from_mode(0o777)).unwrap();
        private_dir(&new, 0o711, None).unwrap();
        assert_eq!(std::fs::metadata(&new).unwrap().mode() & 0o7777, 0o711);
        // Its own group may stay.
        let gid = std::fs::metadata(&new).unwrap().gid();
        private_dir(&new, 0o750, Some(gid)).unwrap();
        assert_eq!(std::fs::metadata(&new).unwrap().mode() & 0o7777, 0o750);
        // A file is not a directory.
        std::fs::write(t.path().join("f"), "").unwrap();
        assert_eq!(private_dir(&t.path().join("f"), 0o700, None).unwrap_err().kind(), io::ErrorKind::AlreadyExists);
    }
}
