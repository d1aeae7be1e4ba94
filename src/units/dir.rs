//! Loading a directory of unit files: which files are units, reading them
//! safely (no hang on a FIFO, no unbounded read of a huge or endless file),
//! and the checks that need the whole set. One bad file never hides the good
//! ones: the result is the valid units plus every error.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::cache::{ParseCache, Parsed};
use super::diag::{Diagnostic, Source};
use super::graph;
use super::hash::Hashes;
use super::model::Unit;
use super::owner;
use super::parse::{ParseInput, UnitSpans, parse_unit};
use super::values::names::check_dns_label;
use crate::names::label::DAEMON_CGROUP_LEAF;

/// Unit files (and env files) larger than this are refused unread.
pub const MAX_FILE_SIZE: u64 = 1 << 20;

/// A valid unit with where it came from and its identity.
#[derive(Debug, Clone, Serialize)]
pub struct LoadedUnit {
    #[serde(flatten)]
    pub unit: Unit,
    pub file: PathBuf,
    /// `hashes.unit`, repeated for scripts.
    pub hash: String,
    pub hashes: Hashes,
    #[serde(skip)]
    pub spans: UnitSpans,
}

/// The result of loading a set of unit files.
#[derive(Debug, Clone, Default)]
pub struct UnitSet {
    /// Valid units, sorted by name.
    pub units: Vec<LoadedUnit>,
    /// Every problem, sorted by file and position.
    pub errors: Vec<Diagnostic>,
    /// Every unit name that has a file, valid or not, with its file.
    pub files: BTreeMap<String, PathBuf>,
}

/// Whether a directory entry is a unit file: `NAME.toml`, not hidden. This
/// also ignores editor files: `.#x.toml` (Emacs lock), `.x.toml.swp` (vim),
/// `x.toml~` (backups) and vim's `4913` write test.
pub fn is_unit_file_name(name: &str) -> bool {
    name.len() > ".toml".len() && name.ends_with(".toml") && !name.starts_with('.')
}

/// [`is_unit_file_name`] for a directory entry's name; a non-UTF-8 name
/// that still looks like a unit's is one (and reported as a bad name).
pub fn is_unit_file(name: &std::ffi::OsStr) -> bool {
    match name.to_str() {
        Some(n) => is_unit_file_name(n),
        None => name.as_encoded_bytes().ends_with(b".toml") && !name.as_encoded_bytes().starts_with(b"."),
    }
}

/// Lists the unit files of `dir`, sorted. Fails only when the directory
/// itself cannot be read.
pub fn list_unit_files(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        if is_unit_file(&entry.file_name()) {
            files.push(entry.path());
        }
    }
    files.sort();
    Ok(files)
}

/// Loads every unit file of `dir` and runs the cross-unit checks.
pub fn load_dir(dir: &Path) -> io::Result<UnitSet> {
    Ok(load_files(&list_unit_files(dir)?))
}

/// [`load_dir`], parsing again only the files whose text changed since
/// the last load with the same `cache` (the daemon's rescans).
pub fn load_dir_cached(dir: &Path, cache: &mut ParseCache) -> io::Result<UnitSet> {
    let set = load(&list_unit_files(dir)?, &|path| read_text(path), Some(&mut *cache));
    cache.end_load();
    Ok(set)
}

/// Loads the given unit files as one set.
pub fn load_files(paths: &[PathBuf]) -> UnitSet {
    load(paths, &|path| read_text(path), None)
}

/// Loads `dir` as it would be with `changes` made, writing nothing: each
/// unit named there has the text given (a new file, or one replaced), or
/// no file (None). How an edit over the control path is checked before
/// it is written.
pub fn load_dir_changed(dir: &Path, changes: &BTreeMap<String, Option<String>>) -> io::Result<UnitSet> {
    let path_of = |name: &str| unit_file(dir, name);
    let mut paths = list_unit_files(dir)?;
    paths.retain(|p| !changes.keys().any(|name| *p == path_of(name)));
    paths.extend(changes.iter().filter(|(_, text)| text.is_some()).map(|(name, _)| path_of(name)));
    paths.sort();
    let given: BTreeMap<PathBuf, &str> =
        changes.iter().filter_map(|(name, text)| Some((path_of(name), text.as_deref()?))).collect();
    let read = |path: &Path| match given.get(path) {
        Some(text) => Ok(text.to_string()),
        None => read_text(path),
    };
    Ok(load(&paths, &read, None))
}

/// Checks unit files given as text, as if they were the files of `dir`
/// (named NAME.toml there) and no other: each parsed, then the cross-unit
/// checks. Reads nothing itself; `read_file` reads what a unit refers to
/// (its env_file). For units made by a program before they are written.
pub fn check_texts(
    dir: &Path,
    texts: &BTreeMap<String, String>,
    read_file: &dyn Fn(&Path) -> Result<String, String>,
) -> UnitSet {
    let mut set = UnitSet::default();
    let paths: BTreeMap<&str, PathBuf> = texts.keys().map(|n| (n.as_str(), unit_file(dir, n))).collect();
    for (name, text) in texts {
        let path = &paths[name.as_str()];
        set.files.insert(name.clone(), path.clone());
        if let Err(e) = check_dns_label(name).and_then(|()| check_not_reserved(name)) {
            set.errors.push(Diagnostic::whole_file(path, e));
            continue;
        }
        add_parsed(&mut set, &ParseInput { name, source: Source { path, text }, base_dir: dir, read_file });
    }
    let source_of = |name: &str| Some(Source { path: paths.get(name)?, text: texts.get(name)? });
    let (cross, invalid) = graph::cross_check(&set.units, &set.files, &source_of);
    set.errors.extend(cross);
    for d in &mut set.errors {
        d.unit_file.get_or_insert_with(|| d.file.clone());
    }
    set.units.retain(|u| !invalid.contains(&u.unit.name));
    set
}

/// Loads `paths` as one set, each file's text from `read`, the parse of
/// a text seen before from `cache`.
fn load(
    paths: &[PathBuf],
    read: &dyn Fn(&Path) -> Result<String, Box<Diagnostic>>,
    mut cache: Option<&mut ParseCache>,
) -> UnitSet {
    let mut set = UnitSet::default();
    let mut texts: BTreeMap<String, (PathBuf, String)> = BTreeMap::new();
    let mut dirs: BTreeMap<PathBuf, Option<String>> = BTreeMap::new();
    for path in paths {
        let name = match unit_name(path) {
            Ok(n) => n,
            Err(e) => {
                set.errors.push(Diagnostic::whole_file(path, e));
                continue;
            }
        };
        if let Some(first) = set.files.get(&name) {
            let msg = format!("unit {name:?} is also defined by {}", first.display());
            set.errors.push(Diagnostic::whole_file(path, msg));
            continue;
        }
        set.files.insert(name.clone(), path.clone());
        // Known by name (so status shows it invalid), never run.
        if let Err(e) = check_not_reserved(&name) {
            set.errors.push(Diagnostic::whole_file(path, e));
            continue;
        }
        let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        // A unit file that is a link: whoever can write the directory of
        // the file it points to can replace that file too.
        let linked_dir = fs::symlink_metadata(path)
            .is_ok_and(|m| m.file_type().is_symlink())
            .then(|| fs::canonicalize(path).ok()?.parent().map(Path::to_path_buf))
            .flatten();
        let checked = [
            Some((dir.to_path_buf(), "holds this unit file")),
            linked_dir.map(|d| (d, "holds the file this unit file links to")),
        ];
        let refused = checked.into_iter().flatten().find_map(|(d, holds)| {
            let why = dirs.entry(d.clone()).or_insert_with(|| dir_problem(&d)).clone()?;
            Some(owner::dir_message(&d, holds, &why))
        });
        if let Some(message) = refused {
            set.errors.push(Diagnostic::whole_file(path, message));
            continue;
        }
        let text = match read(path) {
            Ok(t) => t,
            Err(d) => {
                set.errors.push(*d);
                continue;
            }
        };
        let kept = cache.as_deref_mut().and_then(|c| c.get(path, &text));
        let parsed = kept.unwrap_or_else(|| {
            // Whether it read another file: then its parse depends on more
            // than its text, and is not kept.
            let read_other = std::cell::Cell::new(false);
            let input = ParseInput {
                name: &name,
                source: Source { path, text: &text },
                base_dir: path.parent().unwrap_or(Path::new(".")),
                read_file: &|p| {
                    read_other.set(true);
                    read_text(p).map_err(|d| d.message)
                },
            };
            let parsed = parse(&input);
            if let Some(c) = cache.as_deref_mut().filter(|_| !read_other.get()) {
                c.put(path, text.clone(), parsed.clone());
            }
            parsed
        });
        add(&mut set, parsed);
        texts.insert(name, (path.clone(), text));
    }
    let source_of = |name: &str| texts.get(name).map(|(p, t)| Source { path: p, text: t });
    let (cross, invalid) = graph::cross_check(&set.units, &set.files, &source_of);
    set.errors.extend(cross);
    for d in &mut set.errors {
        if d.unit_file.is_none() {
            d.unit_file = Some(d.file.clone());
        }
    }
    set.units.retain(|u| !invalid.contains(&u.unit.name));
    set.errors.sort_by(|a, b| (&a.file, a.line, a.column).cmp(&(&b.file, b.line, b.column)));
    set
}

/// Parses one unit into `set`: the unit with its hashes, or its errors
/// (each naming the unit's file).
fn add_parsed(set: &mut UnitSet, input: &ParseInput) {
    add(set, parse(input));
}

/// Parses one unit: the unit with its hashes, or its errors (each naming
/// the unit's file).
fn parse(input: &ParseInput) -> Parsed {
    let path = input.source.path;
    match parse_unit(input) {
        Ok(parsed) => {
            let hashes = Hashes::of(&parsed.unit);
            Ok(LoadedUnit {
                unit: parsed.unit,
                file: path.to_path_buf(),
                hash: hashes.unit.clone(),
                hashes,
                spans: parsed.spans,
            })
        }
        Err(errs) => Err(errs
            .into_iter()
            .map(|mut d| {
                d.unit_file = Some(path.to_path_buf());
                d
            })
            .collect()),
    }
}

fn add(set: &mut UnitSet, parsed: Parsed) {
    match parsed {
        Ok(unit) => set.units.push(unit),
        Err(errs) => set.errors.extend(errs),
    }
}

/// The file of unit `name` in `dir`.
pub fn unit_file(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}.toml"))
}

/// The unit name of a file: its stem, which must be a DNS label.
pub fn unit_name(path: &Path) -> Result<String, String> {
    let file_name = path.file_name().ok_or("not a file name")?;
    let file_name = file_name.to_str().ok_or("the file name is not valid UTF-8")?;
    let stem = file_name.strip_suffix(".toml").unwrap_or(file_name);
    check_dns_label(stem).map_err(|e| format!("the unit name (the file name without .toml) {e}"))?;
    Ok(stem.to_string())
}

/// What lets others than root write the directory `dir` (which can then
/// add or replace unit files), judged on the opened directory.
fn dir_problem(dir: &Path) -> Option<String> {
    use std::os::unix::fs::OpenOptionsExt;
    // O_PATH: a directory we may search but not list is still judged.
    let opened = fs::OpenOptions::new().read(true).custom_flags(libc::O_PATH | libc::O_DIRECTORY).open(dir);
    match opened.and_then(|d| d.metadata()) {
        Ok(meta) => owner::writable_by_others(&meta, owner::reader()),
        // Not reachable: its files cannot be read either, and say so.
        Err(_) => None,
    }
}

/// Refuses the names the daemon uses for itself where units' names go.
pub fn check_not_reserved(name: &str) -> Result<(), String> {
    if name == DAEMON_CGROUP_LEAF {
        return Err(format!(
            "the unit name {name:?} is reserved: it is the cgroup supervisord moves itself into, so the unit's \
             container would share it and stopping the unit would kill supervisord; rename the file"
        ));
    }
    Ok(())
}

/// Reads a small regular file as UTF-8, refusing what is not one.
pub fn read_text(path: &Path) -> Result<String, Box<Diagnostic>> {
    let fail = |m: String| Box::new(Diagnostic::whole_file(path, m));
    // Checking the type first means a FIFO or a device is never opened,
    // so reading can neither block nor run forever (it is checked again on
    // the opened file, with the owner and mode).
    let meta = fs::metadata(path).map_err(|e| {
        let dangling = e.kind() == io::ErrorKind::NotFound && fs::symlink_metadata(path).is_ok();
        fail(match e.raw_os_error() {
            Some(libc::ELOOP) => "cannot read: symbolic link loop".to_string(),
            _ if dangling => {
                let target = fs::read_link(path).map(|t| t.display().to_string()).unwrap_or_default();
                format!("cannot read: dangling symbolic link to {target:?}")
            }
            _ => format!("cannot read: {e}"),
        })
    })?;
    if !meta.is_file() {
        return Err(fail("cannot read: not a regular file".into()));
    }
    if meta.len() > MAX_FILE_SIZE {
        return Err(fail(format!("file is too large ({} bytes; the limit is {MAX_FILE_SIZE})", meta.len())));
    }
    let file = fs::File::open(path).map_err(|e| fail(format!("cannot read: {e}")))?;
    // What is read is judged by the opened file's own metadata: the path
    // could name another file by now.
    let meta = file.metadata().map_err(|e| fail(format!("cannot read: {e}")))?;
    if !meta.is_file() {
        return Err(fail("cannot read: not a regular file".into()));
    }
    if let Some(why) = owner::writable_by_others(&meta, owner::reader()) {
        return Err(fail(owner::file_message(&why)));
    }
    let mut bytes = Vec::new();
    file.take(MAX_FILE_SIZE + 1).read_to_end(&mut bytes).map_err(|e| fail(format!("cannot read: {e}")))?;
    if bytes.len() as u64 > MAX_FILE_SIZE {
        return Err(fail(format!("file is too large (over {MAX_FILE_SIZE} bytes)")));
    }
    String::from_utf8(bytes).map_err(|e| {
        let valid = e.utf8_error().valid_up_to();
        let prefix = String::from_utf8_lossy(&e.as_bytes()[..valid]).into_owned();
        let src = Source { path, text: &prefix };
        Box::new(src.diagnostic(valid..valid, "the file is not valid UTF-8 (TOML files must be UTF-8)"))
    })
}
