//! The reload plan: what a new reading of the unit directory means for
//! each unit, decided from the per-class hashes alone (pure). `reload
//! --dry-run` prints it; `reload` and every settled file event carry out
//! the same plan.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::units::{Change, Hashes, UnitSet};

/// What happens to one unit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "action", content = "error")]
pub enum Step {
    /// Unchanged: not touched.
    Keep,
    /// Description, ordering, restart, stop, health or logs changed:
    /// taken without touching the container.
    Update,
    /// `[resources]` changed: written to the running container's cgroup.
    LiveUpdate,
    /// `[container]` changed: stopped and started anew.
    Restart,
    /// A new unit.
    Start,
    /// Its file is gone: stopped and its container removed.
    Remove,
    /// Its file does not load (the error): nothing running is touched.
    Invalid(String),
}

impl Step {
    pub fn name(&self) -> &'static str {
        match self {
            Step::Keep => "keep",
            Step::Update => "update",
            Step::LiveUpdate => "live-update",
            Step::Restart => "restart",
            Step::Start => "start",
            Step::Remove => "remove",
            Step::Invalid(_) => "invalid",
        }
    }
}

/// The plan from the units known now (`current`: name to the hashes of
/// the last good config, none for a unit that never loaded) to `set`.
pub fn plan(current: &BTreeMap<String, Option<Hashes>>, set: &UnitSet) -> BTreeMap<String, Step> {
    let mut out = BTreeMap::new();
    for loaded in &set.units {
        let step = match current.get(&loaded.unit.name) {
            Some(Some(old)) => match old.change_to(&loaded.hashes) {
                Change::None => Step::Keep,
                Change::Config => Step::Update,
                Change::Live => Step::LiveUpdate,
                Change::Restart => Step::Restart,
            },
            _ => Step::Start,
        };
        out.insert(loaded.unit.name.clone(), step);
    }
    for (name, file) in &set.files {
        if out.contains_key(name) {
            continue;
        }
        let error = set
            .errors
            .iter()
            .find(|d| d.unit_file.as_deref() == Some(file.as_path()))
            .map_or_else(|| "the file did not load".to_string(), |d| d.to_string());
        out.insert(name.clone(), Step::Invalid(error));
    }
    for name in current.keys() {
        out.entry(name.clone()).or_insert(Step::Remove);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::units::load_files;

    fn set(files: &[(&str, &str)]) -> (tempfile::TempDir, UnitSet) {
        let dir = tempfile::tempdir().unwrap();
        let mut paths = Vec::new();
        for (name, body) in files {
            let p = dir.path().join(format!("{name}.toml"));
            std::fs::write(&p, body).unwrap();
            paths.push(p);
        }
        let set = load_files(&paths);
        (dir, set)
    }

    const BASE: &str = "[container]\nimage = \"busybox\"\ncommand = [\"sleep\", \"1000\"]\n";

    #[test]
    fn each_class_of_change_gets_its_step() {
        let (_d, old) = set(&[("a", BASE), ("b", BASE), ("c", BASE), ("d", BASE), ("gone", BASE)]);
        let current: BTreeMap<_, _> = old.units.iter().map(|u| (u.unit.name.clone(), Some(u.hashes.clone()))).collect();
        let (_d2, new) = set(&[
            ("a", &format!("# a comment\n{BASE}")),
            ("b", &format!("{BASE}[resources]\nmemory = \"64M\"\n")),
            ("c", &format!("{BASE}[restart]\npolicy = \"no\"\n")),
            ("d", "[container]\nimage = \"busybox\"\ncommand = [\"sleep\", \"2000\"]\n"),
            ("e", BASE),
            ("f", "[container]\nimage = \"busybox\"\nmemroy = 1\n"),
        ]);
        let p = plan(&current, &new);
        let steps: Vec<(&str, &str)> = p.iter().map(|(n, s)| (n.as_str(), s.name())).collect();
        assert_eq!(
            steps,
            [
                ("a", "keep"),
                ("b", "live-update"),
                ("c", "update"),
                ("d", "restart"),
                ("e", "start"),
                ("f", "invalid"),
                ("gone", "remove")
            ]
        );
        let Step::Invalid(e) = &p["f"] else { panic!() };
        assert!(e.contains("f.toml:3:1") && e.contains("memroy"), "{e}");
    }

    #[test]
    fn an_invalid_edit_of_a_known_unit_is_invalid_not_removed() {
        let (_d, old) = set(&[("a", BASE)]);
        let current: BTreeMap<_, _> = old.units.iter().map(|u| (u.unit.name.clone(), Some(u.hashes.clone()))).collect();
        let (_d2, new) = set(&[("a", "[container\n")]);
        assert!(matches!(plan(&current, &new)["a"], Step::Invalid(_)));
    }
}
