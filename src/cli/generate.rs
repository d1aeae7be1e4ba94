//! `supervisorctl generate kube [--kind pod|deployment] [--out FILE]
//! [--image UNIT=REF]... [DIR | UNIT...]`: unit files as Kubernetes YAML.
//!
//! The translation is `interop::kube`'s (pure); this file finds the units
//! (a directory offline, or the running daemon's unit files), looks up
//! registry images' digests in the store, prints the warnings and writes
//! the YAML (to a temporary name, then renamed: never half a file).

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::interop::kube::{self, Kind, Options, Source};
use crate::runtime::image::store::Store;
use crate::units::dir::{load_dir, load_dir_changed};
use crate::units::model::Network;
use crate::units::values::reference::ImageSource;
use crate::units::{LoadedUnit, UnitSet};

use super::client::{Client, encode};

/// Exit statuses: everything carried, an error, something not carried.
const CARRIED: u8 = 0;
const ERROR: u8 = 1;
const LOST: u8 = 2;

pub struct KubeArgs {
    pub kind: Kind,
    pub out: Option<PathBuf>,
    pub images: Vec<String>,
    pub targets: Vec<String>,
    pub state_dir: PathBuf,
}

fn fail(message: impl std::fmt::Display) -> ExitCode {
    errln!("supervisorctl: {message}");
    ExitCode::from(ERROR)
}

pub fn kube(client: &Client, args: KubeArgs) -> ExitCode {
    let mut overrides = BTreeMap::new();
    for i in &args.images {
        match i.split_once('=') {
            Some((unit, image)) if !unit.is_empty() && !image.is_empty() => {
                overrides.insert(unit.to_string(), image.to_string());
            }
            _ => return fail(format!("--image {i:?}: expected UNIT=REF")),
        }
    }
    let units = match units(client, &args.targets) {
        Ok(u) => u,
        Err(e) => return fail(e),
    };
    for name in overrides.keys() {
        if !units.iter().any(|u| &u.unit.name == name) {
            return fail(format!("--image {name}=...: no unit {name:?} is being generated"));
        }
    }
    let store = open_store(&args.state_dir);
    let digest = |source: &ImageSource| -> Option<String> {
        let ImageSource::Registry(_) = source else { return None };
        let record = store.as_ref()?.record(&source.to_string()).ok()??;
        Some(record.manifest_digest.to_string())
    };
    let state_dir = args.state_dir.display().to_string();
    let opts = Options { kind: args.kind, state_dir: &state_dir, overrides: &overrides, digest: &digest };
    let sources: Vec<Source<'_>> = units.iter().map(|u| Source { unit: &u.unit, file: &u.file }).collect();
    let output = match kube::generate(&sources, &opts) {
        Ok(o) => o,
        Err(e) => return fail(e),
    };
    for w in &output.warnings {
        errln!("{w}");
    }
    let written = match &args.out {
        Some(path) => write_atomically(path, output.yaml.as_bytes()).map_err(|e| format!("{}: {e}", path.display())),
        None => {
            super::out(output.yaml.as_bytes());
            Ok(())
        }
    };
    match written {
        Err(e) => fail(e),
        Ok(()) if output.lost() => {
            let n = output.warnings.iter().filter(|w| w.lost).count();
            errln!("supervisorctl: {n} key(s) not carried: written as annotations (docs/interop.md)");
            ExitCode::from(LOST)
        }
        Ok(()) => ExitCode::from(CARRIED),
    }
}

/// The units to write: a directory's (one argument naming a directory),
/// else the running daemon's, all of them or those named (with the units
/// whose network they join, which are part of their Pod).
fn units(client: &Client, targets: &[String]) -> Result<Vec<LoadedUnit>, String> {
    if let [one] = targets {
        let path = Path::new(one);
        if path.is_dir() {
            let set = load_dir(path).map_err(|e| format!("{one}: {e}"))?;
            return valid(set, None);
        }
        if one.contains('/') {
            return Err(format!("{one}: no such directory (give a directory of unit files, or unit names)"));
        }
    }
    let mut names: Vec<String> = targets.to_vec();
    if names.is_empty() {
        let r = client.request("GET", "/v1/units")?;
        if r.status != 200 {
            return Err(r.error());
        }
        let list = r.json()?;
        names = list.as_array().into_iter().flatten().filter_map(|u| u["name"].as_str().map(String::from)).collect();
        if names.is_empty() {
            return Err("supervisord has no units".into());
        }
    }
    let mut dir: Option<PathBuf> = None;
    let mut changes = BTreeMap::new();
    let mut wanted: BTreeSet<String> = BTreeSet::new();
    let mut queue = names;
    while let Some(name) = queue.pop() {
        if !wanted.insert(name.clone()) {
            continue;
        }
        // The file as the daemon reads it, and where it is (relative
        // paths in it are relative to that directory).
        let r = client.request("GET", &format!("/v1/units/{}", encode(&name)))?;
        if r.status != 200 {
            return Err(format!("{name}: {}", r.error()));
        }
        let v = r.json()?;
        let file = v["unit"]["file"].as_str().map(PathBuf::from).ok_or(format!("{name}: supervisord names no file"))?;
        let r = client.request("GET", &format!("/v1/units/{}/file", encode(&name)))?;
        if r.status != 200 {
            return Err(format!("{name}: {}", r.error()));
        }
        let text = String::from_utf8(r.body).map_err(|_| format!("{name}: the unit file is not UTF-8"))?;
        changes.insert(name.clone(), Some(text));
        dir.get_or_insert_with(|| file.parent().map(Path::to_path_buf).unwrap_or_default());
        if let Some(owner) = v["unit"]["container"]["network"].as_str().and_then(|n| n.strip_prefix("unit:")) {
            queue.push(owner.to_string());
        }
    }
    let dir = dir.unwrap_or_default();
    let set = load_dir_changed(&dir, &changes).map_err(|e| format!("{}: {e}", dir.display()))?;
    valid(set, Some(&wanted))
}

/// The units of `set` (those `wanted`, if given); an error listing every
/// problem when one of them is invalid: half a translation is none.
fn valid(set: UnitSet, wanted: Option<&BTreeSet<String>>) -> Result<Vec<LoadedUnit>, String> {
    let keep = |name: &str| wanted.is_none_or(|w| w.contains(name));
    let errors: Vec<String> = set
        .errors
        .iter()
        .filter(|d| {
            let stem = d.unit_file.as_ref().unwrap_or(&d.file).file_stem().and_then(|s| s.to_str()).unwrap_or("");
            keep(stem)
        })
        .map(ToString::to_string)
        .collect();
    if !errors.is_empty() {
        return Err(format!("{}\ninvalid units: nothing written", errors.join("\n")));
    }
    let units: Vec<LoadedUnit> = set.units.into_iter().filter(|u| keep(&u.unit.name)).collect();
    if let Some(w) = wanted {
        for name in w {
            if !units.iter().any(|u| &u.unit.name == name) {
                return Err(format!("no valid unit {name:?}"));
            }
        }
    }
    if units.is_empty() {
        return Err("no units to write".into());
    }
    for u in &units {
        if let Network::Unit(owner) = &u.unit.container.network
            && !units.iter().any(|o| &o.unit.name == owner)
        {
            return Err(format!("{}: joins the network of {owner:?}, which is not valid", u.file.display()));
        }
    }
    Ok(units)
}

/// The image store, read as it is (nothing created or swept), if there is one.
fn open_store(state_dir: &Path) -> Option<Store> {
    if !state_dir.join("images").is_dir() {
        return None;
    }
    Store::open_as_is(state_dir).ok()
}

/// Writes `bytes` to `path` through a temporary file in the same
/// directory, renamed over it once complete.
fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name().ok_or_else(|| std::io::Error::other("not a file name"))?;
    let tmp = dir.join(format!(".{}.{}.tmp", name.to_string_lossy(), std::process::id()));
    let result = (|| {
        let mut f = std::fs::OpenOptions::new().write(true).create_new(true).open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}
