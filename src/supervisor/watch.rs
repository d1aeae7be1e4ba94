//! Watching the unit directory (and the directories of `env_file`s) with
//! inotify. Any event there makes the directory "dirty"; once events have
//! stopped for [`SETTLE`] and no file is still open for writing, one
//! rescan is asked for. A rescan reads the whole directory, so no event
//! kind needs its own handling: editors' temp-file-and-rename, delete and
//! recreate, attribute changes, the Kubernetes ConfigMap swap of a
//! `..data` symlink, and a queue overflow all end in the same full read.
//!
//! The directory itself being replaced (renamed away, deleted, made
//! anew) is seen through a watch on its parent, and the watches are set
//! again at every rescan, which follows the new inode.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::time::Duration;

use futures_core::Stream;
use inotify::{EventMask, Inotify, WatchDescriptor, WatchMask};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

/// Quiet time after the last event before the directory is read: long
/// enough to take a burst of files (a `cp`, a checkout) in one read,
/// short beside an edit's latency. A read parses only the files that
/// changed, so one that comes mid-burst costs little.
pub const SETTLE: Duration = Duration::from_millis(10);
/// The longest a file still open for writing delays a rescan.
pub const MAX_SETTLE: Duration = Duration::from_secs(2);

fn mask() -> WatchMask {
    WatchMask::CREATE
        | WatchMask::CLOSE_WRITE
        | WatchMask::MODIFY
        | WatchMask::MOVED_TO
        | WatchMask::MOVED_FROM
        | WatchMask::DELETE
        | WatchMask::ATTRIB
        | WatchMask::DELETE_SELF
        | WatchMask::MOVE_SELF
}

/// Watches `dir` (and the env files `extra` names); sends `()` on
/// `rescan` whenever the directory should be read.
pub async fn run(dir: PathBuf, mut extra: watch::Receiver<BTreeSet<PathBuf>>, rescan: mpsc::UnboundedSender<()>) {
    let inotify = match Inotify::init() {
        Ok(i) => i,
        Err(e) => {
            tracing::error!("inotify: {e}; edits of {} are seen only on reload", dir.display());
            return;
        }
    };
    let mut watches = inotify.watches();
    let mut stream = match inotify.into_event_stream([0u8; 8192]) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!("inotify: {e}; edits of {} are seen only on reload", dir.display());
            return;
        }
    };
    // Per watch, the names that matter: every name in the unit directory;
    // only the directory's own name in its parent and only the env files'
    // names in theirs (other files there, our own log for one, must not
    // cause rescans).
    let mut filters: HashMap<WatchDescriptor, Option<HashSet<OsString>>> = HashMap::new();
    let mut add_all = |extra: &BTreeSet<PathBuf>, filters: &mut HashMap<WatchDescriptor, Option<HashSet<OsString>>>| {
        filters.clear();
        let mut add = |d: &Path, name: Option<&OsStr>| {
            // A missing directory is fine: its parent's watch sees it come.
            let Ok(wd) = watches.add(d, mask()) else { return };
            let f = filters.entry(wd).or_insert_with(|| Some(HashSet::new()));
            match (f.as_mut(), name) {
                (Some(set), Some(n)) => {
                    set.insert(n.to_owned());
                }
                _ => *f = None,
            }
        };
        add(&dir, None);
        if let Some(name) = dir.file_name() {
            let parent = dir.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("/"));
            add(parent, Some(name));
        }
        for file in extra {
            if let (Some(parent), Some(name)) = (file.parent(), file.file_name()) {
                add(parent, Some(name));
            }
        }
    };
    add_all(&extra.borrow(), &mut filters);
    // The daemon's first read of the directory may have come before these
    // watches existed: a file written in between would be seen by no
    // event. One read now that they do closes that window.
    if rescan.send(()).is_err() {
        return;
    }
    let mut writing: HashSet<OsString> = HashSet::new();
    let mut dirty_since: Option<Instant> = None;
    let mut deadline: Option<Instant> = None;
    loop {
        let next = std::future::poll_fn(|cx| Pin::new(&mut stream).poll_next(cx));
        let sleep = async {
            match deadline {
                Some(d) => tokio::time::sleep_until(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            event = next => {
                let Some(Ok(event)) = event else {
                    tracing::error!("inotify stream ended; edits of {} are seen only on reload", dir.display());
                    return;
                };
                let overflow = event.mask.contains(EventMask::Q_OVERFLOW);
                let wanted = match (filters.get(&event.wd), &event.name) {
                    (Some(Some(names)), Some(n)) => names.contains(n),
                    // The watched directory itself went away or moved.
                    (Some(Some(_)), None) => event.mask.intersects(EventMask::DELETE_SELF | EventMask::MOVE_SELF),
                    (Some(None), _) => true,
                    (None, _) => false,
                };
                if !wanted && !overflow {
                    continue;
                }
                if overflow {
                    // Events were lost: which files changed is unknown, so
                    // the whole directory is read (as for any event).
                    tracing::warn!("inotify: the event queue overflowed; reading all of {} again", dir.display());
                }
                if let Some(name) = event.name {
                    if event.mask.contains(EventMask::MODIFY) {
                        writing.insert(name);
                    } else if event.mask.intersects(EventMask::CLOSE_WRITE | EventMask::DELETE | EventMask::MOVED_FROM) {
                        writing.remove(&name);
                    }
                }
                let now = Instant::now();
                dirty_since.get_or_insert(now);
                deadline = Some(now + SETTLE);
            }
            Ok(()) = extra.changed() => {
                add_all(&extra.borrow_and_update(), &mut filters);
            }
            () = sleep => {
                let now = Instant::now();
                let waited = dirty_since.map_or(Duration::ZERO, |s| now - s);
                if !writing.is_empty() && waited < MAX_SETTLE {
                    deadline = Some(now + SETTLE);
                    continue;
                }
                writing.clear();
                dirty_since = None;
                deadline = None;
                if rescan.send(()).is_err() {
                    return;
                }
                add_all(&extra.borrow(), &mut filters);
            }
        }
    }
}
