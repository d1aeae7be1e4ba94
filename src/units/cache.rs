//! What one load of a unit directory keeps for the next: each file's text
//! and what parsing it gave. A rescan reads every file again (reading is
//! cheap, and only the text says whether a file changed: a time stamp can
//! stay the same across two writes), but parses only those whose text
//! differs. With hundreds of units, parsing and hashing them all is most
//! of a reload, and an edit changes one.
//!
//! A unit that read another file while it was parsed (an `env_file`) is
//! never kept: its outcome depends on more than its text.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use super::diag::Diagnostic;
use super::dir::LoadedUnit;

/// The outcome of parsing one unit file: the unit, or its errors.
pub type Parsed = Result<LoadedUnit, Vec<Diagnostic>>;

/// Parses by file, from the last load; see the module's comment.
#[derive(Debug, Default)]
pub struct ParseCache {
    entries: HashMap<PathBuf, (String, Parsed)>,
    /// The files of the load under way: an entry not among them when it
    /// ends is dropped (its file is gone or unreadable).
    seen: HashSet<PathBuf>,
}

impl ParseCache {
    /// What parsing `path` gave last time, if its text was `text`.
    pub fn get(&mut self, path: &Path, text: &str) -> Option<Parsed> {
        self.seen.insert(path.to_path_buf());
        match self.entries.get(path) {
            Some((kept, parsed)) if kept == text => Some(parsed.clone()),
            Some(_) => {
                self.entries.remove(path);
                None
            }
            None => None,
        }
    }

    /// Keeps what parsing `path` with `text` gave (call after [`get`]).
    ///
    /// [`get`]: ParseCache::get
    pub fn put(&mut self, path: &Path, text: String, parsed: Parsed) {
        self.entries.insert(path.to_path_buf(), (text, parsed));
    }

    /// Ends a load: forgets every file it did not look up.
    pub fn end_load(&mut self) {
        let seen = std::mem::take(&mut self.seen);
        self.entries.retain(|p, _| seen.contains(p));
    }

    /// How many files' parses are kept.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}
