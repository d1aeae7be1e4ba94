//! A Compose file read into unit files (`supervisorctl import compose`).
//!
//! The file is parsed with every key's line (`yaml`), interpolated as
//! Compose does (`interpolate`), and each service translated into one
//! unit file's text (`service`, with `storage` and `lifecycle`). Every key
//! of a service is either carried or reported with its line as not
//! carried, never passed over: the translation walks the keys that are
//! written, not the ones it knows. The texts are checked by the unit
//! parser before anything is written; a text it refuses is our bug and is
//! reported as such. The mapping and what is not carried are listed in
//! docs/interop.md.

mod interpolate;
mod lifecycle;
mod render;
mod service;
mod storage;
mod words;
pub mod yaml;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

pub use interpolate::{interpolate, parse_dotenv};

use crate::units::dir::check_texts;
use yaml::{Node, Value};

/// What an import needs; the caller reads the files.
pub struct Input<'a> {
    /// The Compose file's path, for messages.
    pub file: &'a Path,
    pub text: &'a str,
    /// The absolute directory of the Compose file: relative paths in it
    /// (binds, env_file) are relative to it.
    pub base_dir: &'a Path,
    /// Variables for interpolation: the environment over the `.env` file.
    pub env: &'a BTreeMap<String, String>,
    /// `--project`: the unit names' prefix (else the file's `name:`).
    pub project: Option<&'a str>,
    /// The directory the units will be written to (their validation
    /// resolves relative paths against it).
    pub out_dir: &'a Path,
    /// Reads a file a unit refers to (its env_file), for the validation.
    pub read_file: &'a dyn Fn(&Path) -> Result<String, String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    /// Something the translation changed or that means a little
    /// differently; carried.
    Note,
    /// A key (or part of a value) that is not in the units.
    Dropped,
    /// The file cannot be imported; nothing is written.
    Error,
}

/// One message about the Compose file, at a line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    pub file: PathBuf,
    pub line: usize,
    /// Where in the file: `services.web.ports[1]`.
    pub path: String,
    pub kind: Kind,
    pub message: String,
}

impl fmt::Display for Note {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.kind {
            Kind::Note => "note",
            Kind::Dropped => "not carried",
            Kind::Error => "error",
        };
        let path = if self.path.is_empty() { String::new() } else { format!(" {}:", self.path) };
        write!(f, "{}:{}:{path} {what}: {}", self.file.display(), self.line, self.message)
    }
}

/// One unit file to write.
#[derive(Debug, Clone, PartialEq)]
pub struct UnitText {
    pub name: String,
    pub service: String,
    /// The line of the service's key.
    pub line: usize,
    pub text: String,
}

/// The units (none when any note is an error) and every note, by line.
#[derive(Debug, Default)]
pub struct Imported {
    pub units: Vec<UnitText>,
    pub notes: Vec<Note>,
}

impl Imported {
    pub fn failed(&self) -> bool {
        self.notes.iter().any(|n| n.kind == Kind::Error)
    }

    pub fn dropped(&self) -> bool {
        self.notes.iter().any(|n| n.kind == Kind::Dropped)
    }
}

/// Collects notes while translating.
pub(crate) struct Cx<'a> {
    pub(crate) file: &'a Path,
    notes: Vec<Note>,
}

impl Cx<'_> {
    fn push(&mut self, line: usize, path: &str, kind: Kind, message: impl Into<String>) {
        self.notes.push(Note { file: self.file.to_path_buf(), line, path: path.into(), kind, message: message.into() });
    }

    pub(crate) fn note(&mut self, line: usize, path: &str, message: impl Into<String>) {
        self.push(line, path, Kind::Note, message);
    }

    pub(crate) fn drop(&mut self, line: usize, path: &str, message: impl Into<String>) {
        self.push(line, path, Kind::Dropped, message);
    }

    pub(crate) fn error(&mut self, line: usize, path: &str, message: impl Into<String>) {
        self.push(line, path, Kind::Error, message);
    }

    /// A scalar's text (numbers and booleans as written); an error for
    /// anything else.
    pub(crate) fn text(&mut self, node: &Node, path: &str) -> Option<String> {
        match &node.value {
            Value::Scalar(s) if !s.is_null() => Some(s.text.clone()),
            _ => {
                self.error(node.line, path, format!("expected a single value, found {}", node.kind()));
                None
            }
        }
    }

    /// A list of scalars, or one scalar as a list of one.
    pub(crate) fn texts(&mut self, node: &Node, path: &str) -> Option<Vec<String>> {
        match &node.value {
            Value::Seq(items) => items.iter().enumerate().map(|(i, n)| self.text(n, &format!("{path}[{i}]"))).collect(),
            _ => self.text(node, path).map(|t| vec![t]),
        }
    }

    /// A boolean (YAML 1.2 `true`/`false`, or the strings).
    pub(crate) fn bool(&mut self, node: &Node, path: &str) -> Option<bool> {
        if let Value::Scalar(s) = &node.value {
            if let Some(b) = s.as_bool() {
                return Some(b);
            }
            match s.text.to_ascii_lowercase().as_str() {
                "true" => return Some(true),
                "false" => return Some(false),
                _ => {}
            }
        }
        self.error(node.line, path, format!("expected true or false, found {}", node.kind()));
        None
    }

    /// A mapping's entries; an error for anything else.
    pub(crate) fn map<'n>(&mut self, node: &'n Node, path: &str) -> Option<&'n [(yaml::Key, Node)]> {
        let m = node.map();
        if m.is_none() {
            self.error(node.line, path, format!("expected a mapping, found {}", node.kind()));
        }
        m
    }
}

/// What every service's translation knows of the whole file.
pub(crate) struct Project<'a> {
    pub base_dir: &'a Path,
    /// Service name -> unit name.
    pub units: BTreeMap<String, String>,
    /// Services with a healthcheck of their own.
    pub healthy: BTreeSet<String>,
    /// Top-level volume key -> the volume's name in the units.
    pub volumes: BTreeMap<String, String>,
    pub env: &'a BTreeMap<String, String>,
    /// Reads an env_file beyond a service's first (their values are
    /// written into the unit).
    pub read_file: &'a dyn Fn(&Path) -> Result<String, String>,
}

/// Translates a Compose file into unit files.
pub fn import(input: &Input<'_>) -> Imported {
    let mut cx = Cx { file: input.file, notes: Vec::new() };
    let units = translate(&mut cx, input).unwrap_or_default();
    let mut out = Imported { units, notes: cx.notes };
    if !out.failed() {
        validate(&mut out, input);
    }
    if out.failed() {
        out.units.clear();
    }
    out.notes.sort_by(|a, b| (a.line, &a.path).cmp(&(b.line, &b.path)));
    out
}

fn translate(cx: &mut Cx<'_>, input: &Input<'_>) -> Option<Vec<UnitText>> {
    let mut doc = match yaml::parse(input.text) {
        Ok(d) => d,
        Err(e) => {
            cx.error(e.line, "", format!("YAML: {}", e.message));
            return None;
        }
    };
    interpolate_all(cx, &mut doc, input.env, "");
    if cx.notes.iter().any(|n| n.kind == Kind::Error) {
        return None;
    }
    let top = cx.map(&doc, "")?;
    let mut project = input.project.map(str::to_string);
    let mut services = None;
    let mut volumes = None;
    for (key, value) in top {
        let k = key.text.as_str();
        match k {
            "services" => services = Some(value),
            "volumes" => volumes = Some(value),
            "version" => cx.note(key.line, k, "obsolete in the Compose specification; ignored"),
            "name" if input.project.is_some() => cx.note(key.line, k, "--project given: it names the project"),
            "name" => project = cx.text(value, k),
            _ if k.starts_with("x-") => {}
            "networks" => cx.drop(
                key.line,
                k,
                "units share one bridge network (or host, none, or another unit's namespace): networks of their own are not made",
            ),
            "configs" | "secrets" => cx.drop(
                key.line,
                k,
                "units have no configs or secrets: mount the file with a bind volume instead",
            ),
            "include" => {
                cx.error(key.line, k, "include: is not supported: import each Compose file by itself");
            }
            _ => cx.drop(key.line, k, "not a key of the Compose specification"),
        }
    }
    let Some(services) = services else {
        cx.error(doc.line, "", "no services: section");
        return None;
    };
    let services = cx.map(services, "services")?;
    let prefix = project.as_deref().and_then(|p| {
        let label = words::unit_name(p, None);
        if label.is_none() {
            cx.error(doc.line, "name", format!("project name {p:?} has nothing to make a unit name of"));
        }
        label
    });

    let mut proj = Project {
        base_dir: input.base_dir,
        units: BTreeMap::new(),
        healthy: BTreeSet::new(),
        volumes: BTreeMap::new(),
        env: input.env,
        read_file: input.read_file,
    };
    if let Some(v) = volumes {
        storage::top_volumes(cx, v, prefix.as_deref(), &mut proj.volumes);
    }
    let mut taken: BTreeMap<String, String> = BTreeMap::new();
    for (key, node) in services {
        let path = format!("services.{}", key.text);
        let Some(name) = words::unit_name(&key.text, prefix.as_deref()) else {
            cx.error(key.line, &path, "the service name has no letter or digit to make a unit name of");
            continue;
        };
        if let Some(other) = taken.insert(name.clone(), key.text.clone()) {
            cx.error(key.line, &path, format!("services {other:?} and {:?} both become unit {name:?}", key.text));
            continue;
        }
        let plain = prefix.as_ref().map_or(key.text.clone(), |p| format!("{p}-{}", key.text));
        if name != plain {
            cx.note(key.line, &path, format!("unit name {name:?}: unit names are DNS labels"));
        }
        if node.get("healthcheck").is_some_and(lifecycle::has_probe) {
            proj.healthy.insert(key.text.clone());
        }
        proj.units.insert(key.text.clone(), name);
    }
    if cx.notes.iter().any(|n| n.kind == Kind::Error) {
        return None;
    }
    let mut out = Vec::new();
    for (key, node) in services {
        let path = format!("services.{}", key.text);
        if let Some(draft) = service::translate(cx, &proj, &key.text, key.line, node, &path) {
            let name = proj.units[&key.text].clone();
            out.push(UnitText { name, service: key.text.clone(), line: key.line, text: draft.render() });
        }
    }
    Some(out)
}

/// Interpolates every value below `node` (keys stay as written), noting
/// each unset variable once.
fn interpolate_all(cx: &mut Cx<'_>, node: &mut Node, env: &BTreeMap<String, String>, path: &str) {
    // An explicit stack: the depth is bounded by the parser, but nothing
    // here needs to recurse.
    let mut stack: Vec<(&mut Node, String)> = vec![(node, path.to_string())];
    while let Some((node, path)) = stack.pop() {
        let line = node.line;
        match &mut node.value {
            Value::Scalar(s) => match interpolate::interpolate(&s.text, env) {
                Ok(done) => {
                    for var in done.unset {
                        if !cx.notes.iter().any(|n| n.message.starts_with(&format!("variable {var} "))) {
                            cx.note(line, &path, format!("variable {var} is not set: an empty string is used"));
                        }
                    }
                    // What a value became is text, even when empty: an
                    // interpolated value is never null.
                    if done.text != s.text || s.text.contains('$') {
                        s.plain = false;
                    }
                    s.text = done.text;
                }
                Err(e) => cx.error(line, &path, e),
            },
            Value::Seq(items) => {
                for (i, item) in items.iter_mut().enumerate() {
                    stack.push((item, format!("{path}[{i}]")));
                }
            }
            Value::Map(entries) => {
                for (k, v) in entries.iter_mut() {
                    let p = if path.is_empty() { k.text.clone() } else { format!("{path}.{}", k.text) };
                    stack.push((v, p));
                }
            }
        }
    }
}

/// Runs the unit parser and the cross-unit checks over the texts.
fn validate(out: &mut Imported, input: &Input<'_>) {
    let texts: BTreeMap<String, String> = out.units.iter().map(|u| (u.name.clone(), u.text.clone())).collect();
    let set = check_texts(input.out_dir, &texts, input.read_file);
    for e in set.errors {
        let service = out.units.iter().find(|u| e.unit_file.as_deref() == Some(&u_path(input.out_dir, &u.name)));
        let (line, path) = service.map_or((1, String::new()), |u| (u.line, format!("services.{}", u.service)));
        out.notes.push(Note {
            file: input.file.to_path_buf(),
            line,
            path,
            kind: Kind::Error,
            message: format!(
                "the unit written for it does not load ({e}); this is a bug of import compose unless the message names a file of yours"
            ),
        });
    }
}

fn u_path(dir: &Path, name: &str) -> PathBuf {
    crate::units::dir::unit_file(dir, name)
}

#[cfg(test)]
mod tests;
