//! The unit directory edited over the control path (`apply`, `remove`):
//! the change is checked against the whole directory first, and written
//! only when it is good, each file atomically. A file that would not load
//! is refused, never written, so what runs keeps its config; so is a
//! change that would make a unit that loads now stop loading (a removed
//! unit that another one names in `requires`, a port another unit took).

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::units::{UnitSet, load_dir, load_dir_changed};

/// An edit: each named unit gets the text given, or loses its file (None).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Edit {
    pub files: BTreeMap<String, Option<String>>,
    pub dry_run: bool,
}

/// Why an edit was refused; nothing was written.
#[derive(Debug, thiserror::Error)]
pub enum EditError {
    /// What would not load, each a rendered diagnostic (file:line:col).
    #[error("{}", .0.join("\n"))]
    Invalid(Vec<String>),
    /// Not a unit name (a DNS label): never a path.
    #[error("{0}")]
    Name(String),
    #[error("no unit file {}", .0.display())]
    NoFile(PathBuf),
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> EditError + '_ {
    move |source| EditError::Io { path: path.to_path_buf(), source }
}

fn file_of(dir: &Path, name: &str) -> PathBuf {
    crate::units::dir::unit_file(dir, name)
}

/// A unit name from a client: a DNS label, so that its file is in `dir`.
fn check_name(name: &str) -> Result<(), EditError> {
    crate::names::label::check_dns_label(name).map_err(|e| EditError::Name(format!("unit name {name:?}: {e}")))
}

/// The directory as it would be after `edit`, if the edit is good: every
/// unit it writes loads, and every unit that loads now still does.
pub fn check(dir: &Path, edit: &Edit) -> Result<UnitSet, EditError> {
    for (name, text) in &edit.files {
        check_name(name)?;
        let path = file_of(dir, name);
        if text.is_none() && fs::symlink_metadata(&path).is_err() {
            return Err(EditError::NoFile(path));
        }
    }
    let before = load_dir(dir).map_err(io_error(dir))?;
    let after = load_dir_changed(dir, &edit.files).map_err(io_error(dir))?;
    let valid = |set: &UnitSet| set.units.iter().map(|u| u.unit.name.clone()).collect::<BTreeSet<_>>();
    let (was, is) = (valid(&before), valid(&after));
    // A unit written must load; one that loaded must still (unless removed).
    let broken: BTreeSet<PathBuf> = edit
        .files
        .iter()
        .filter(|(name, text)| if text.is_some() { !is.contains(*name) } else { false })
        .map(|(name, _)| name)
        .chain(was.iter().filter(|name| !is.contains(*name) && !edit.files.contains_key(*name)))
        .map(|name| file_of(dir, name))
        .collect();
    if broken.is_empty() {
        return Ok(after);
    }
    let mut errors: Vec<String> = after
        .errors
        .iter()
        .filter(|d| d.unit_file.as_ref().is_some_and(|f| broken.contains(f)))
        .map(|d| d.render(false).trim_end().to_string())
        .collect();
    if errors.is_empty() {
        // Not expected: a unit that does not load has its diagnostic.
        errors = broken.iter().map(|f| format!("{}: would not load", f.display())).collect();
    }
    Err(EditError::Invalid(errors))
}

/// Writes `edit` into `dir`: every new text first to a hidden file beside
/// its unit file (not a unit file name, so the watcher and a reload ignore
/// it), synced; only once all are, each is renamed over its unit file and
/// the removals follow; then the directory is synced. A failure while the
/// texts are written removes them and leaves the directory as it was;
/// after a crash each file is the old or the new one, whole.
pub fn write(dir: &Path, edit: &Edit) -> Result<(), EditError> {
    let mut staged: Vec<(PathBuf, PathBuf)> = Vec::new();
    let unstage = |staged: &[(PathBuf, PathBuf)]| {
        for (temporary, _) in staged {
            let _ = fs::remove_file(temporary);
        }
    };
    for (name, text) in &edit.files {
        let Some(text) = text else { continue };
        let temporary = dir.join(format!(".{name}.toml.apply"));
        if let Err(e) = stage(&temporary, text) {
            unstage(&staged);
            return Err(e);
        }
        staged.push((temporary, file_of(dir, name)));
    }
    for (i, (temporary, path)) in staged.iter().enumerate() {
        if let Err(e) = fs::rename(temporary, path) {
            // Renames do not fail on a directory we could write a moment
            // ago; if one does, the earlier ones stand (each file whole).
            unstage(&staged[i..]);
            return Err(io_error(path)(e));
        }
    }
    for (name, text) in &edit.files {
        if text.is_none() {
            let path = file_of(dir, name);
            fs::remove_file(&path).map_err(io_error(&path))?;
        }
    }
    if let Err(e) = File::open(dir).and_then(|d| d.sync_all()) {
        // Everything is in place; only its durability is in doubt.
        tracing::warn!("{}: the unit files are written but not synced: {e}", dir.display());
    }
    Ok(())
}

/// One text in a new file at `temporary`, synced. A leftover of a crash
/// (or anything else by that name) goes first: the file is made new,
/// never opened through a link.
fn stage(temporary: &Path, text: &str) -> Result<(), EditError> {
    match fs::remove_file(temporary) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(io_error(temporary)(e)),
        _ => {}
    }
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .custom_flags(libc::O_NOFOLLOW)
        .open(temporary)
        .map_err(io_error(temporary))?;
    file.write_all(text.as_bytes()).and_then(|()| file.sync_all()).map_err(|e| {
        let _ = fs::remove_file(temporary);
        io_error(temporary)(e)
    })
}

/// A unit's file as it is now (`cat`): None when it has none.
pub fn read(dir: &Path, name: &str) -> Result<Option<String>, EditError> {
    check_name(name)?;
    let path = file_of(dir, name);
    if fs::symlink_metadata(&path).is_err() {
        return Ok(None);
    }
    crate::units::dir::read_text(&path).map(Some).map_err(|d| EditError::Invalid(vec![d.render(false)]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir_with(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
        for (name, text) in files {
            fs::write(file_of(dir.path(), name), text).unwrap();
        }
        dir
    }

    fn edit(files: &[(&str, Option<&str>)]) -> Edit {
        Edit { files: files.iter().map(|(n, t)| (n.to_string(), t.map(String::from))).collect(), dry_run: false }
    }

    const WEB: &str = "[container]\nimage = \"busybox\"\ncommand = [\"httpd\", \"-f\"]\n";

    fn names(set: &UnitSet) -> Vec<&str> {
        set.units.iter().map(|u| u.unit.name.as_str()).collect()
    }

    #[test]
    fn a_good_unit_is_checked_against_the_directory_and_written_whole() {
        let dir = dir_with(&[("db", WEB)]);
        let e = edit(&[("web", Some("[unit]\nrequires = [\"db\"]\n[container]\nimage = \"busybox\"\n"))]);
        assert_eq!(names(&check(dir.path(), &e).unwrap()), ["db", "web"]);
        write(dir.path(), &e).unwrap();
        let text = fs::read_to_string(dir.path().join("web.toml")).unwrap();
        assert_eq!(text, "[unit]\nrequires = [\"db\"]\n[container]\nimage = \"busybox\"\n");
        // Nothing else is left beside it.
        let mut entries: Vec<String> =
            fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        entries.sort();
        assert_eq!(entries, ["db.toml", "web.toml"]);
        assert_eq!(read(dir.path(), "web").unwrap().as_deref(), Some(text.as_str()));
        assert_eq!(read(dir.path(), "nothing").unwrap(), None);
    }

    #[test]
    fn a_unit_that_would_not_load_is_refused_with_its_line() {
        let dir = dir_with(&[("web", WEB)]);
        let e = edit(&[("web", Some("[container]\nimage = \"busybox\"\nrestart = 3\n"))]);
        let Err(EditError::Invalid(errors)) = check(dir.path(), &e) else { panic!("accepted") };
        let path = dir.path().join("web.toml").display().to_string();
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(errors[0].starts_with(&format!("{path}:3:1: error: ")), "{errors:?}");
        assert!(errors[0].contains("restart"), "{errors:?}");
    }

    #[test]
    fn a_change_that_breaks_another_unit_is_refused() {
        let dir = dir_with(&[("db", WEB), ("web", "[unit]\nrequires = [\"db\"]\n[container]\nimage = \"busybox\"\n")]);
        // Removing what web requires would make web invalid.
        let Err(EditError::Invalid(errors)) = check(dir.path(), &edit(&[("db", None)])) else { panic!("accepted") };
        let web = dir.path().join("web.toml").display().to_string();
        assert!(errors.iter().all(|e| e.starts_with(&web)), "{errors:?}");
        assert!(errors.iter().any(|e| e.contains("\"db\"")), "{errors:?}");
        // Both at once are fine.
        let set = check(dir.path(), &edit(&[("db", None), ("web", None)])).unwrap();
        assert!(set.units.is_empty());
        write(dir.path(), &edit(&[("db", None), ("web", None)])).unwrap();
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn a_file_already_invalid_does_not_block_other_edits() {
        let dir = dir_with(&[("bad", "[container]\n"), ("web", WEB)]);
        let set = check(dir.path(), &edit(&[("new", Some(WEB))])).unwrap();
        assert_eq!(names(&set), ["new", "web"]);
        // And it may be replaced by a good one, or removed.
        check(dir.path(), &edit(&[("bad", Some(WEB))])).unwrap();
        check(dir.path(), &edit(&[("bad", None)])).unwrap();
    }

    #[test]
    fn a_name_is_a_unit_name_never_a_path() {
        let dir = dir_with(&[]);
        for name in ["../web", "web/x", "", "Web", "web.toml"] {
            assert!(matches!(check(dir.path(), &edit(&[(name, Some(WEB))])), Err(EditError::Name(_))), "{name}");
            assert!(matches!(read(dir.path(), name), Err(EditError::Name(_))), "{name}");
        }
    }

    #[test]
    fn removing_a_unit_without_a_file_is_an_error() {
        let dir = dir_with(&[("web", WEB)]);
        match check(dir.path(), &edit(&[("db", None)])) {
            Err(EditError::NoFile(p)) => assert_eq!(p, dir.path().join("db.toml")),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_text_that_cannot_be_written_leaves_the_directory_as_it_was() {
        let dir = dir_with(&[("db", WEB), ("web", WEB)]);
        // The second text's temporary name is taken by a directory that
        // cannot be removed as a file: its staging fails.
        fs::create_dir(dir.path().join(".web.toml.apply")).unwrap();
        fs::write(dir.path().join(".web.toml.apply/x"), "").unwrap();
        let e = edit(&[("a", Some(WEB)), ("db", None), ("web", Some("[container]\nimage = \"x\"\n"))]);
        assert!(matches!(write(dir.path(), &e), Err(EditError::Io { .. })));
        let mut entries: Vec<String> =
            fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        entries.sort();
        assert_eq!(entries, [".web.toml.apply", "db.toml", "web.toml"], "a.toml written or db.toml removed");
        assert_eq!(fs::read_to_string(dir.path().join("web.toml")).unwrap(), WEB);
    }

    #[test]
    fn a_leftover_temporary_file_is_replaced_not_followed() {
        let dir = dir_with(&[]);
        let outside = tempfile::NamedTempFile::new().unwrap();
        std::os::unix::fs::symlink(outside.path(), dir.path().join(".web.toml.apply")).unwrap();
        write(dir.path(), &edit(&[("web", Some(WEB))])).unwrap();
        assert_eq!(fs::read_to_string(outside.path()).unwrap(), "");
        assert_eq!(fs::read_to_string(dir.path().join("web.toml")).unwrap(), WEB);
        assert!(fs::symlink_metadata(dir.path().join(".web.toml.apply")).is_err());
    }
}
