//! Watching the unit directory (and the directories of `env_file`s) with
//! inotify. Any event there makes the directory "dirty"; once events have
//! stopped for [`SETTLE`] and no file is still open for writing, one
//! rescan is asked for, except for a rename into place that comes when
//! all is quiet: that one is read at once (see [`renamed_in`]). A rescan
//! reads the whole directory, so no event kind needs its own handling:
//! editors' temp-file-and-rename, delete and recreate, attribute changes,
//! the Kubernetes ConfigMap swap of a `..data` symlink, and a queue
//! overflow all end in the same full read.
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
    // Since the last read: whether anything but the making of a file no
    // read looks at happened (see [`tentative`]), and the cookie of a
    // rename that was the first such event.
    let mut changed = false;
    let mut first_rename: Option<u32> = None;
    let mut last_read: Option<Instant> = None;
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
                let now = Instant::now();
                let making_only = !overflow
                    && matches!(filters.get(&event.wd), Some(None))
                    && event.name.as_deref().is_some_and(|n| tentative(n, event.mask, &dir, &extra.borrow()));
                let renamed_in = !making_only && !overflow && {
                    let quiet = !changed && last_read.is_none_or(|t| now - t >= SETTLE);
                    renamed_in(event.mask, event.cookie, quiet, &mut first_rename)
                };
                changed |= !making_only;
                if let Some(name) = event.name {
                    if event.mask.contains(EventMask::MODIFY) {
                        writing.insert(name);
                    } else if event.mask.intersects(EventMask::CLOSE_WRITE | EventMask::DELETE | EventMask::MOVED_FROM) {
                        writing.remove(&name);
                    }
                }
                if renamed_in && writing.is_empty() {
                    // A rename into place is whole the moment it happens
                    // (an edit's write-then-rename, a ConfigMap swap): no
                    // burst to wait for.
                    dirty_since = None;
                    deadline = None;
                    (changed, first_rename, last_read) = (false, None, Some(now));
                    if rescan.send(()).is_err() {
                        return;
                    }
                    add_all(&extra.borrow(), &mut filters);
                    continue;
                }
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
                (changed, first_rename, last_read) = (false, None, Some(now));
                if rescan.send(()).is_err() {
                    return;
                }
                add_all(&extra.borrow(), &mut filters);
            }
        }
    }
}

/// Whether an event on `name` in the unit directory `dir` only makes a
/// file that no read looks at (neither a unit file nor an env file): an
/// editor's or a tool's temporary file, before it is renamed into place.
/// Such events still lead to a read, but they do not keep the rename that
/// follows them from being read at once. Renames and deletions never are:
/// a name no read looks at may still be a step of a unit file's path (a
/// ConfigMap's `..data` symlink).
fn tentative(name: &OsStr, mask: EventMask, dir: &Path, env_files: &BTreeSet<PathBuf>) -> bool {
    let making = EventMask::CREATE | EventMask::MODIFY | EventMask::CLOSE_WRITE | EventMask::ATTRIB;
    let moving = EventMask::MOVED_FROM | EventMask::MOVED_TO | EventMask::DELETE;
    mask.intersects(making)
        && !mask.intersects(moving)
        && !crate::units::dir::is_unit_file(name)
        && !env_files.contains(&dir.join(name))
}

/// Whether an event ends a rename into the watched directories that is all
/// that happened since they were last `quiet`: a `MOVED_TO` then (from
/// elsewhere), or after only the `MOVED_FROM` of the same rename (`cookie`).
/// `first` keeps that `MOVED_FROM`'s cookie between the two events.
fn renamed_in(mask: EventMask, cookie: u32, quiet: bool, first: &mut Option<u32>) -> bool {
    if quiet {
        *first = mask.contains(EventMask::MOVED_FROM).then_some(cookie);
        return mask.contains(EventMask::MOVED_TO);
    }
    let pair = mask.contains(EventMask::MOVED_TO) && *first == Some(cookie);
    *first = None;
    pair
}

#[cfg(test)]
mod tests {
    use super::*;

    /// How long the watcher takes to ask for the next read, on the
    /// runtime's paused clock (which moves on only when every task waits
    /// for a timer: the settle time is not waited for in real time).
    async fn next_read(rx: &mut mpsc::UnboundedReceiver<()>) -> Duration {
        let start = Instant::now();
        rx.recv().await.expect("the watcher ended");
        start.elapsed()
    }

    #[tokio::test(start_paused = true)]
    async fn a_rename_into_place_is_read_at_once_and_other_changes_settle() {
        let t = tempfile::tempdir().unwrap();
        let file = |name: &str| t.path().join(name);
        let (_extra_tx, extra) = watch::channel(BTreeSet::new());
        let (tx, mut rx) = mpsc::unbounded_channel();
        tokio::spawn(run(t.path().to_path_buf(), extra, tx));
        next_read(&mut rx).await;
        // A unit file written in place may be half-written at its first event.
        std::fs::write(file("web.toml"), "[container]\n").unwrap();
        assert!(next_read(&mut rx).await >= SETTLE);
        tokio::time::sleep(SETTLE * 2).await;
        // Written aside and renamed into place (an editor's save): whole at
        // once, and read once.
        std::fs::write(file("web.toml.tmp"), "[container]\n").unwrap();
        std::fs::rename(file("web.toml.tmp"), file("web.toml")).unwrap();
        assert_eq!(next_read(&mut rx).await, Duration::ZERO);
        tokio::time::sleep(SETTLE * 2).await;
        assert!(rx.try_recv().is_err(), "a second read of one save");
        // A rename amid other changes waits for their end, and all of them
        // are read once.
        std::fs::write(file("db.toml"), "[container]\n").unwrap();
        std::fs::write(file("cache.toml.tmp"), "[container]\n").unwrap();
        std::fs::rename(file("cache.toml.tmp"), file("cache.toml")).unwrap();
        assert!(next_read(&mut rx).await >= SETTLE);
        tokio::time::sleep(SETTLE * 2).await;
        assert!(rx.try_recv().is_err(), "a second read of one burst");
        // A file no read looks at still leads to a read (it may be a step
        // of a unit file's path), only not at once.
        std::fs::write(file("notes.txt"), "x").unwrap();
        assert!(next_read(&mut rx).await >= SETTLE);
        // A rename right after a read waits too: it may be the tail of the
        // changes that read saw the start of.
        std::fs::rename(file("db.toml"), file("db2.toml")).unwrap();
        assert!(next_read(&mut rx).await >= SETTLE);
    }
}
