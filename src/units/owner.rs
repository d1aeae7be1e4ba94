//! Who may write a unit file. A unit is root-equivalent (it can ask for
//! `privileged`, any host path, any capability), so a unit file, its
//! `env_file` or the directory that holds them that anyone but root could
//! write makes the unit invalid. systemd only warns about such files; we
//! refuse them.
//!
//! The reader's own uid counts as root's: `supervisorctl validate` run by a
//! user on files of their own checks them as the daemon would check them
//! once root owns them.

use std::os::unix::fs::MetadataExt;

/// What makes a file or directory with `meta` writable by someone other
/// than root or `reader` (the euid that reads it), in words; None if
/// nothing does.
pub fn writable_by_others(meta: &std::fs::Metadata, reader: u32) -> Option<String> {
    let mode = meta.mode() & 0o7777;
    let owner = meta.uid();
    if owner != 0 && owner != reader {
        return Some(format!("it is owned by uid {owner}, not root"));
    }
    let who = match (mode & 0o020 != 0, mode & 0o002 != 0) {
        (true, true) => "group- and world-writable",
        (true, false) => "group-writable",
        (false, true) => "world-writable",
        (false, false) => return None,
    };
    Some(format!("it is {who} (mode {mode:04o})"))
}

/// The effective uid of this process.
pub fn reader() -> u32 {
    nix::unistd::geteuid().as_raw()
}

/// The message for a unit file (or env file) that others can write.
pub fn file_message(why: &str) -> String {
    format!(
        "refused: {why}, and a unit is root-equivalent, so only root may be able to write its files \
         (chown root and chmod go-w)"
    )
}

/// The message for a unit whose directory (the one that `holds` its file,
/// in words) others can write.
pub fn dir_message(dir: &std::path::Path, holds: &str, why: &str) -> String {
    format!(
        "refused: the directory {} that {holds} can be written by others: {why}; a unit is \
         root-equivalent, so only root may be able to add or replace its files (chown root and chmod go-w)",
        dir.display()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn only_root_or_the_reader_may_write() {
        let t = tempfile::tempdir().unwrap();
        let f = t.path().join("u.toml");
        std::fs::write(&f, "").unwrap();
        let me = reader();
        let check = |mode: u32, reader: u32| {
            std::fs::set_permissions(&f, std::fs::Permissions::from_mode(mode)).unwrap();
            writable_by_others(&std::fs::metadata(&f).unwrap(), reader)
        };
        assert_eq!(check(0o644, me), None);
        assert_eq!(check(0o600, me), None);
        assert_eq!(check(0o664, me).unwrap(), "it is group-writable (mode 0664)");
        assert_eq!(check(0o646, me).unwrap(), "it is world-writable (mode 0646)");
        assert_eq!(check(0o666, me).unwrap(), "it is group- and world-writable (mode 0666)");
        // A file of another user than root and the reader.
        let other = if me == 0 {
            std::os::unix::fs::chown(&f, Some(4242), None).unwrap();
            4242
        } else {
            me
        };
        assert_eq!(check(0o644, me.wrapping_add(1)).unwrap(), format!("it is owned by uid {other}, not root"));
    }
}
