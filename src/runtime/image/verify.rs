//! `verify`: the store and the containers' directories checked against
//! what they claim, and, on request, repaired.
//!
//! Every blob is read whole and hashed (its name is its digest), every
//! image record is read and checked against its manifest, config, blobs
//! and layer directories, and whatever a killed pull, volume seeding or
//! container start left behind is listed. A check is a list of
//! [`Problem`]s, each naming the object and what is wrong with it, and
//! what `--repair` does about it: remove what is half-made or corrupt (a
//! corrupt blob and the images that need it lose their record, so that
//! the next start pulls them again), or make a missing layer again from
//! its stored blob (no registry needed: an appliance's store has no other
//! source). Nothing that a running container may use is removed.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::config::ImageConfig;
use super::digest::{Digest, HashingReader};
use super::error::{ImageError, Result};
use super::export::{VOLUME_DATA, VOLUME_LOCK, VOLUME_SEEDING};
use super::manifest::{Document, parse_document};
use super::pull::{PullOptions, Quiet};
use super::store::{ImageRecord, Store, remove_path, try_flock_exclusive};
use crate::runtime::container::ContainerState;

/// One thing that is wrong.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Problem {
    /// What is wrong: a blob's digest, an image's reference, a path.
    pub object: String,
    /// What is wrong with it.
    pub problem: String,
    /// What `--repair` does about it (None: nothing, and why is in `problem`).
    pub repair: Option<Repair>,
}

/// What `--repair` does about a problem.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Repair {
    /// Remove this file or directory (a leftover, a corrupt blob, a record).
    Remove(PathBuf),
    /// Make the image's missing layers again from its stored blobs.
    Restore(String),
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.object, self.problem)
    }
}

/// Where the containers' parts are, and who may be using them.
#[derive(Debug, Clone)]
pub struct Containers {
    /// The writable layers: `<state-dir>/containers/<name>/`.
    pub layers: PathBuf,
    /// The run directory, whose `containers/<name>.json` records the
    /// running ones (None: not checked).
    pub run_dir: Option<PathBuf>,
    /// Set when a supervisord runs: asks it what it knows (see
    /// [`DaemonView`]) when that matters, not once before the long hashing.
    pub daemon_units: Option<AskDaemon>,
}

/// What a running supervisord knows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DaemonView {
    /// The units it knows, whose container directories are its business
    /// (one may be in the making).
    pub units: BTreeSet<String>,
    /// The images its containers run, by manifest digest, with the units
    /// running each: their layer directories are under live overlays.
    pub running: BTreeMap<String, Vec<String>>,
    /// The images units being started (pulled, prepared) name, by
    /// reference, with those units: their containers are not made yet.
    pub starting: BTreeMap<String, Vec<String>>,
}

/// Asks the supervisord for its [`DaemonView`] (None: it did not answer).
/// Asked after the store is hashed and again right before removals, so a
/// unit added meanwhile is seen.
#[derive(Clone)]
pub struct AskDaemon(pub Arc<dyn Fn() -> Option<DaemonView> + Send + Sync>);

impl std::fmt::Debug for AskDaemon {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AskDaemon")
    }
}

impl AskDaemon {
    /// Always the same answer (what a test passes).
    pub fn fixed(view: DaemonView) -> Self {
        AskDaemon(Arc::new(move || Some(view.clone())))
    }

    fn ask(&self) -> Result<DaemonView> {
        (self.0)().ok_or_else(|| ImageError::Invalid("the supervisor did not say what it runs (shutting down?)".into()))
    }
}

/// What a repair did, one line each.
pub type Repaired = Vec<String>;

/// The outcome of `verify [--repair]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    /// What the check found.
    pub problems: Vec<Problem>,
    /// What the repair did (empty without one).
    pub repaired: Repaired,
    /// What a check after the repair still finds (the problems, without one).
    pub remaining: Vec<Problem>,
}

impl Report {
    /// Whether the store is consistent now.
    pub fn clean(&self) -> bool {
        self.remaining.is_empty()
    }
}

impl Store {
    /// Checks, and with `repair` repairs and checks again.
    pub fn verify_report(&self, containers: &Containers, repair: Option<&PullOptions>) -> Result<Report> {
        let problems = self.verify(containers)?;
        let Some(options) = repair.filter(|_| !problems.is_empty()) else {
            return Ok(Report { remaining: problems.clone(), problems, repaired: Vec::new() });
        };
        let repaired = self.repair(&problems, containers, options)?;
        let remaining = self.verify(containers)?;
        Ok(Report { problems, repaired, remaining })
    }

    /// Checks the store (and `containers`), with the store lock held
    /// exclusively, so no pull is halfway: what is in `tmp/` is a leftover.
    pub fn verify(&self, containers: &Containers) -> Result<Vec<Problem>> {
        let _lock = self.lock_store(true)?;
        let mut problems = Vec::new();
        let blobs = self.check_blobs(&mut problems)?;
        // Asked after the hashing, which takes long: what runs now counts.
        let daemon = containers.daemon_units.as_ref().map(AskDaemon::ask).transpose()?;
        self.check_store(&blobs, daemon.as_ref(), &mut problems)?;
        problems.extend(check_volumes(&self.state_dir().join("volumes")));
        problems.extend(check_containers(containers, daemon.as_ref()));
        Ok(problems)
    }

    /// Does what `problems` say (see [`Problem::repair`]): removals first,
    /// with the store lock held exclusively, then restores (which are
    /// pulls from the store and take it shared). Returns what it did.
    /// A supervisord is asked again right before: the writable layer of a
    /// unit it knows by then is kept, as is a seeding under way.
    pub fn repair(&self, problems: &[Problem], containers: &Containers, options: &PullOptions) -> Result<Repaired> {
        let mut removals = BTreeSet::new();
        let mut restores = BTreeSet::new();
        for p in problems {
            match &p.repair {
                Some(Repair::Remove(path)) => removals.insert(path.clone()),
                Some(Repair::Restore(reference)) => restores.insert(reference.clone()),
                None => false,
            };
        }
        let mut done = Vec::new();
        {
            let _lock = self.lock_store(true)?;
            let daemon = containers.daemon_units.as_ref().map(AskDaemon::ask).transpose()?;
            for path in &removals {
                let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
                if path.parent() == Some(containers.layers.as_path())
                    && daemon.as_ref().is_some_and(|d| d.units.contains(unit_of(&name)))
                {
                    done.push(format!("kept {}: unit {name} is known to the supervisor now", path.display()));
                    continue;
                }
                // A volume's seeding: only with its lock, which a start
                // seeding it now holds.
                let _seeding = match path.parent().filter(|_| name == VOLUME_SEEDING) {
                    Some(volume) => match try_flock_exclusive(&volume.join(VOLUME_LOCK))? {
                        Some(lock) => Some(lock),
                        None => {
                            done.push(format!("kept {}: the volume is being seeded now", path.display()));
                            continue;
                        }
                    },
                    None => None,
                };
                match remove_path(path) {
                    Ok(()) => done.push(format!("removed {}", path.display())),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(ImageError::io("remove", path)(e)),
                }
            }
        }
        for reference in restores {
            // Its record may have gone with a corrupt blob: pulled anew then.
            if self.restore(&reference, options, &Quiet)?.is_some() {
                done.push(format!("made the layers of {reference} again from its stored blobs"));
            }
        }
        Ok(done)
    }

    /// The records, layers and leftovers against `blobs` (checked first);
    /// `daemon`: the images a supervisord's containers run or are made of.
    fn check_store(
        &self,
        blobs: &BTreeMap<String, Blob>,
        daemon: Option<&DaemonView>,
        problems: &mut Vec<Problem>,
    ) -> Result<()> {
        let layers = self.check_layer_dirs(problems)?;
        for (dir, dangling) in [(self.root().join("refs"), false), (self.dangling_dir(), true)] {
            for (path, record) in read_records(&dir, problems)? {
                let expected = if dangling {
                    dir.join(format!("{}.json", record.manifest_digest.hex()))
                } else {
                    self.record_path(&record.reference)
                };
                if path != expected {
                    problems.push(Problem {
                        object: path.display().to_string(),
                        problem: format!("a record of {} under another name than its own", record.reference),
                        repair: Some(Repair::Remove(path.clone())),
                    });
                    continue;
                }
                let users: Vec<String> = daemon
                    .into_iter()
                    .flat_map(|d| {
                        let running = d.running.get(record.manifest_digest.hex()).into_iter().flatten();
                        running.chain(d.starting.get(&record.reference).into_iter().flatten())
                    })
                    .cloned()
                    .collect();
                self.check_record(&path, &record, blobs, &layers, &users, problems);
            }
        }
        let tmp = self.tmp_dir();
        for entry in fs::read_dir(&tmp).map_err(ImageError::io("read", &tmp))? {
            let path = entry.map_err(ImageError::io("read", &tmp))?.path();
            problems.push(Problem {
                object: path.display().to_string(),
                problem: "left by an interrupted pull (a partial blob or a half-unpacked layer)".into(),
                repair: Some(Repair::Remove(path)),
            });
        }
        Ok(())
    }

    /// Hashes every blob; returns the state of each by its hex.
    fn check_blobs(&self, problems: &mut Vec<Problem>) -> Result<BTreeMap<String, Blob>> {
        let dir = self.root().join("blobs/sha256");
        let mut out = BTreeMap::new();
        for entry in fs::read_dir(&dir).map_err(ImageError::io("read", &dir))? {
            let path = entry.map_err(ImageError::io("read", &dir))?.path();
            let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            let Ok(digest) = Digest::parse(&format!("sha256:{name}")) else {
                problems.push(Problem {
                    object: path.display().to_string(),
                    problem: "not a blob (its name is no sha256 digest)".into(),
                    repair: Some(Repair::Remove(path)),
                });
                continue;
            };
            let state = match hash_file(&path) {
                Ok((actual, size)) if actual == digest => Blob::Good(size),
                Ok((actual, _)) => {
                    problems.push(Problem {
                        object: format!("blob {digest}"),
                        problem: format!(
                            "content has digest {actual} (corrupt); the images that need it pull it again"
                        ),
                        repair: Some(Repair::Remove(path)),
                    });
                    Blob::Corrupt
                }
                Err(e) => {
                    problems.push(Problem {
                        object: format!("blob {digest}"),
                        problem: format!("cannot be read: {e}"),
                        repair: Some(Repair::Remove(path)),
                    });
                    Blob::Corrupt
                }
            };
            out.insert(name, state);
        }
        Ok(out)
    }

    /// The layer directories by hex; anything else under `layers/` is a
    /// problem.
    fn check_layer_dirs(&self, problems: &mut Vec<Problem>) -> Result<BTreeSet<String>> {
        let dir = self.root().join("layers");
        let mut out = BTreeSet::new();
        for entry in fs::read_dir(&dir).map_err(ImageError::io("read", &dir))? {
            let path = entry.map_err(ImageError::io("read", &dir))?.path();
            let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            let is_dir = fs::symlink_metadata(&path).is_ok_and(|m| m.is_dir());
            if Digest::parse(&format!("sha256:{name}")).is_err() || !is_dir {
                problems.push(Problem {
                    object: path.display().to_string(),
                    problem: "not a layer (layers are directories named by their diff ID)".into(),
                    repair: Some(Repair::Remove(path)),
                });
                continue;
            }
            out.insert(name);
        }
        Ok(out)
    }

    /// One record against its blobs and layers; `users`: the units whose
    /// containers run it (its record then stays, or a prune would remove
    /// the layers under their overlays).
    fn check_record(
        &self,
        path: &Path,
        record: &ImageRecord,
        blobs: &BTreeMap<String, Blob>,
        layers: &BTreeSet<String>,
        users: &[String],
        problems: &mut Vec<Problem>,
    ) {
        let object = format!("image {}", record.reference);
        let drop_record = |problem: String| match users {
            [] => Problem {
                object: object.clone(),
                problem: format!("{problem}; its record goes, so the next start pulls it again"),
                repair: Some(Repair::Remove(path.to_path_buf())),
            },
            _ => Problem {
                object: object.clone(),
                problem: format!(
                    "{problem}; in use by unit {}: stop {} and run verify --repair again",
                    users.join(", unit "),
                    if users.len() > 1 { "them" } else { "it" }
                ),
                repair: None,
            },
        };
        let mut needed = vec![("manifest", &record.manifest_digest), ("config", &record.config_digest)];
        needed.extend(record.layers.iter().map(|l| ("layer", &l.digest)));
        let mut broken = false;
        for (what, digest) in &needed {
            match blobs.get(digest.hex()) {
                Some(Blob::Good(_)) => {}
                Some(Blob::Corrupt) => {
                    problems.push(drop_record(format!("its {what} blob {digest} is corrupt")));
                    broken = true;
                }
                None => {
                    problems.push(drop_record(format!("its {what} blob {digest} is missing")));
                    broken = true;
                }
            }
        }
        if broken {
            return;
        }
        for l in &record.layers {
            if let Some(Blob::Good(size)) = blobs.get(l.digest.hex())
                && *size != l.size
            {
                problems
                    .push(drop_record(format!("layer blob {} has {size} bytes, the record says {}", l.digest, l.size)));
                return;
            }
        }
        // The record against the manifest and config it names.
        let manifest = self.read_blob(&record.manifest_digest).ok().and_then(|b| parse_document(&b, None).ok());
        let config = self.read_blob(&record.config_digest).ok().and_then(|b| ImageConfig::parse(&b).ok());
        let consistent = match (manifest, config) {
            (Some(Document::Manifest(m)), Some(c)) => {
                m.config.digest == record.config_digest
                    && m.layers.iter().map(|d| &d.digest).eq(record.layers.iter().map(|l| &l.digest))
                    && c.rootfs.diff_ids.iter().eq(record.layers.iter().map(|l| &l.diff_id))
            }
            _ => false,
        };
        if !consistent {
            problems.push(drop_record("its record does not match its manifest and config".into()));
            return;
        }
        let missing: Vec<&Digest> =
            record.layers.iter().map(|l| &l.diff_id).filter(|d| !layers.contains(d.hex())).collect();
        if let Some(first) = missing.first() {
            problems.push(Problem {
                object,
                problem: format!(
                    "{} of its layer directories missing ({first}{}); its blobs are whole, so they are made again from them",
                    missing.len(),
                    if missing.len() > 1 { ", ..." } else { "" }
                ),
                repair: Some(Repair::Restore(record.reference.clone())),
            });
        }
    }
}

/// A blob as found: whole (with its size) or not.
enum Blob {
    Good(u64),
    Corrupt,
}

fn hash_file(path: &Path) -> std::io::Result<(Digest, u64)> {
    let mut r = HashingReader::new(File::open(path)?, u64::MAX);
    std::io::copy(&mut r, &mut std::io::sink())?;
    Ok(r.finish())
}

/// The records in `dir` (none if it does not exist); unreadable ones are
/// problems.
fn read_records(dir: &Path, problems: &mut Vec<Problem>) -> Result<Vec<(PathBuf, ImageRecord)>> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(ImageError::io("read", dir)(e)),
    };
    let mut out = Vec::new();
    for entry in entries {
        let path = entry.map_err(ImageError::io("read", dir))?.path();
        let parsed = fs::read(&path)
            .map_err(|e| e.to_string())
            .and_then(|b| serde_json::from_slice::<ImageRecord>(&b).map_err(|e| e.to_string()));
        match parsed {
            Ok(record) if path.extension().is_some_and(|e| e == "json") => out.push((path, record)),
            Ok(_) => problems.push(Problem {
                object: path.display().to_string(),
                problem: "not a record (records end in .json)".into(),
                repair: Some(Repair::Remove(path)),
            }),
            Err(e) => problems.push(Problem {
                object: path.display().to_string(),
                problem: format!("an unreadable image record ({e}); the image is pulled again at its next start"),
                repair: Some(Repair::Remove(path)),
            }),
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

/// Half-seeded named volumes: a seeding that was killed.
fn check_volumes(dir: &Path) -> Vec<Problem> {
    let mut problems = Vec::new();
    for volume in fs::read_dir(dir).into_iter().flatten().flatten() {
        let seeding = volume.path().join(VOLUME_SEEDING);
        // One being seeded now (a unit starting) holds its lock.
        let lock = volume.path().join(VOLUME_LOCK);
        let busy = lock.exists() && !matches!(try_flock_exclusive(&lock), Ok(Some(_)));
        if !busy && fs::symlink_metadata(&seeding).is_ok() {
            let name = volume.file_name().to_string_lossy().into_owned();
            let seeded = volume.path().join(VOLUME_DATA).exists();
            problems.push(Problem {
                object: format!("volume {name}"),
                problem: format!(
                    "{} holds a seeding that was interrupted{}",
                    seeding.display(),
                    if seeded { "" } else { "; the volume is seeded again at its next use" }
                ),
                repair: Some(Repair::Remove(seeding)),
            });
        }
    }
    problems
}

/// The containers' records against their writable layers.
fn check_containers(c: &Containers, daemon: Option<&DaemonView>) -> Vec<Problem> {
    let mut problems = Vec::new();
    let mut recorded = BTreeSet::new();
    if let Some(run_dir) = &c.run_dir {
        let dir = run_dir.join("containers");
        for entry in fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            let file = entry.file_name().to_string_lossy().into_owned();
            let Some(stem) = file.strip_suffix(".json") else {
                // A record half-written (`.json.tmp`) by a killed start.
                if daemon.is_none() {
                    problems.push(Problem {
                        object: path.display().to_string(),
                        problem: "left by an interrupted container start".into(),
                        repair: Some(Repair::Remove(path)),
                    });
                }
                continue;
            };
            // A container being made has a pending record (see
            // ContainerState::pending_path); its layer is as much its own.
            let name = stem.strip_suffix(".pending").unwrap_or(stem).to_string();
            recorded.insert(name.clone());
            let object = format!("container {name}");
            match ContainerState::load_from(&path, &name) {
                Err(e) => problems.push(Problem {
                    object,
                    problem: format!("its record {} cannot be read: {e}", path.display()),
                    repair: daemon.is_none().then_some(Repair::Remove(path)),
                }),
                Ok(state) if daemon.is_some() => {
                    if !state.dir.is_dir() {
                        problems.push(Problem {
                            object,
                            problem: format!("its writable layer {} is missing", state.dir.display()),
                            repair: None,
                        });
                    }
                }
                Ok(state) if state.alive() => problems.push(Problem {
                    object,
                    problem: format!(
                        "pid {} still runs, with no supervisord: the next supervisord's start removes it",
                        state.pid
                    ),
                    repair: None,
                }),
                Ok(_) => problems.push(Problem {
                    object,
                    problem: format!(
                        "its record {} names a process that is gone (a supervisord died); the next supervisord's start removes it",
                        path.display()
                    ),
                    repair: None,
                }),
            }
        }
    }
    for entry in fs::read_dir(&c.layers).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let theirs = daemon.is_some_and(|d| d.units.contains(unit_of(&name)));
        if recorded.contains(&name) || theirs {
            continue;
        }
        let path = entry.path();
        // Without the run directory a record cannot be looked for: a
        // layer is only removed when it is known to be no one's.
        let (repair, hint) = match &c.run_dir {
            Some(_) => (Some(Repair::Remove(path.clone())), ""),
            None => (None, " (name the run directory to check for its record and repair)"),
        };
        problems.push(Problem {
            object: format!("container {name}"),
            problem: format!("writable layer {} without a container record{hint}", path.display()),
            repair,
        });
    }
    problems
}

/// The unit a container's directory belongs to: `web` of `web` and of
/// `web.7`, a second container started beside the unit's running one
/// (unit names have no dot).
fn unit_of(container: &str) -> &str {
    container.split_once('.').map_or(container, |(unit, _)| unit)
}

#[cfg(test)]
#[path = "verify_tests.rs"]
mod tests;
