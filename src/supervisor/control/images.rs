//! Which images the daemon's units keep from `prune` and `rmi`
//! (`DELETE /v1/images/REF`): every image a unit names, every image a
//! container runs (by ID: a tag pulled anew may name another image than
//! the one still running), and the image a unit would roll back to, kept
//! until an update succeeds. Without that last one, a prune between an
//! update and its failure would leave the rollback nothing to run.

use std::collections::BTreeSet;
use std::fmt;

use super::super::engine::UnitStatus;
use crate::runtime::image::Digest;

/// Why a unit keeps an image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Why {
    /// Its file names the reference.
    Names,
    /// Its container runs the image, or is pinned to it.
    Runs,
    /// It goes back to the image if its update fails.
    RollsBackTo,
}

impl fmt::Display for Why {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Why::Names => "its unit file names it",
            Why::Runs => "it runs it",
            Why::RollsBackTo => "the image it rolls back to",
        })
    }
}

/// What of one unit's status decides which images it keeps.
pub struct Uses<'a> {
    pub name: &'a str,
    /// The reference its file names.
    pub image: Option<&'a str>,
    /// Image IDs, each with why it is kept.
    pub ids: Vec<(&'a str, Why)>,
}

impl<'a> From<&'a UnitStatus> for Uses<'a> {
    fn from(u: &'a UnitStatus) -> Uses<'a> {
        let ids = [(u.image_id.as_deref(), Why::Runs), (u.previous_image_id.as_deref(), Why::RollsBackTo)];
        Uses {
            name: &u.name,
            image: u.image.as_deref(),
            ids: ids.into_iter().filter_map(|(id, why)| Some((id?, why))).collect(),
        }
    }
}

/// The IDs of every image a unit runs or may roll back to.
pub fn kept_digests(list: &[UnitStatus]) -> BTreeSet<Digest> {
    kept(list.iter().map(Uses::from))
}

/// The references units name.
pub fn kept_references(list: &[UnitStatus]) -> BTreeSet<String> {
    list.iter().filter_map(|u| u.image.clone()).collect()
}

fn kept<'a>(uses: impl IntoIterator<Item = Uses<'a>>) -> BTreeSet<Digest> {
    uses.into_iter().flat_map(|u| u.ids).filter_map(|(id, _)| Digest::parse(id).ok()).collect()
}

/// The units that keep the image `reference` (whose ID is `digest`, if it
/// is recorded), each with why: `web (the image it rolls back to)`.
pub fn users(list: &[UnitStatus], reference: &str, digest: Option<&Digest>) -> Vec<String> {
    users_of(list.iter().map(Uses::from), reference, digest)
}

fn users_of<'a>(uses: impl IntoIterator<Item = Uses<'a>>, reference: &str, digest: Option<&Digest>) -> Vec<String> {
    uses.into_iter()
        .filter_map(|u| {
            let by_id = u.ids.iter().find(|(id, _)| digest.is_some_and(|d| d.as_str() == *id)).map(|(_, why)| *why);
            let why = if u.image == Some(reference) { Some(Why::Names) } else { by_id }?;
            Some(format!("{} ({why})", u.name))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(s: &str) -> Digest {
        Digest::of(s.as_bytes())
    }

    #[test]
    fn the_running_and_the_previous_image_are_both_kept_and_named() {
        let (old, new, other) = (digest("old"), digest("new"), digest("other"));
        let uses = || {
            vec![
                Uses {
                    name: "web",
                    image: Some("r/web:v2"),
                    ids: vec![(new.as_str(), Why::Runs), (old.as_str(), Why::RollsBackTo)],
                },
                Uses { name: "db", image: Some("r/db:v1"), ids: vec![("not a digest", Why::Runs)] },
                Uses { name: "idle", image: None, ids: Vec::new() },
            ]
        };
        assert_eq!(kept(uses()), BTreeSet::from([old.clone(), new.clone()]));
        assert_eq!(users_of(uses(), "r/web:v1", Some(&old)), vec!["web (the image it rolls back to)"]);
        assert_eq!(users_of(uses(), "r/web:v2", Some(&new)), vec!["web (its unit file names it)"]);
        assert_eq!(users_of(uses(), "r/web:v3", Some(&new)), vec!["web (it runs it)"]);
        assert_eq!(users_of(uses(), "r/db:v1", None), vec!["db (its unit file names it)"]);
        assert!(users_of(uses(), "r/other:v1", Some(&other)).is_empty());
        assert!(users_of(uses(), "r/other:v1", None).is_empty());
    }
}
