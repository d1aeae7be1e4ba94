//! Unit logs: every line a container writes to stdout or stderr goes to
//! `<log-dir>/<unit>.log` as `TIME STREAM TEXT`, rotated by the unit's
//! `max_size`/`max_files` (`<unit>.log.1` is the newest old file).
//!
//! A line is written whole to one file: rotation happens between lines.
//! Memory is bounded: a line longer than [`MAX_LINE`] is written in pieces
//! of that size, and a container that writes faster than the disk takes is
//! slowed by its full pipe, not buffered without end.

use std::collections::{HashMap, VecDeque};
use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::SystemTime;

use tokio::io::AsyncReadExt;
use tokio::sync::broadcast;

/// The longest piece of a line written as one record.
pub const MAX_LINE: usize = 16 * 1024;

/// Rotation limits, changeable while the container runs (a `[logs]` edit
/// does not restart it).
#[derive(Debug)]
pub struct Limits {
    pub max_size: AtomicU64,
    pub max_files: AtomicU32,
}

impl Limits {
    pub fn new(max_size: u64, max_files: u32) -> Arc<Limits> {
        Arc::new(Limits { max_size: AtomicU64::new(max_size), max_files: AtomicU32::new(max_files) })
    }

    pub fn set(&self, max_size: u64, max_files: u32) {
        self.max_size.store(max_size, Ordering::Relaxed);
        self.max_files.store(max_files, Ordering::Relaxed);
    }
}

pub fn log_path(dir: &Path, unit: &str) -> PathBuf {
    dir.join(format!("{unit}.log"))
}

fn rotated(path: &Path, n: u32) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(format!(".{n}"));
    PathBuf::from(s)
}

/// Opens (or makes) a log file for appending, root's alone (0600), or
/// 0640 with the log directory's group when the daemon gave it one (the
/// global `log_group`). Set on every open, so an older file's looser
/// mode is fixed too; created 0600, so it is never readable by others
/// for a moment.
fn open_private(path: &Path) -> std::io::Result<File> {
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
    // Readable too: a torn tail is found by reading the end.
    let file = OpenOptions::new().create(true).read(true).append(true).mode(0o600).open(path)?;
    let group = path.parent().and_then(|d| fs::metadata(d).ok()).filter(|m| m.mode() & 0o050 == 0o050).map(|m| m.gid());
    if let Some(gid) = group {
        std::os::unix::fs::fchown(&file, None, Some(gid))?;
    }
    file.set_permissions(fs::Permissions::from_mode(if group.is_some() { 0o640 } else { 0o600 }))?;
    Ok(file)
}

/// One unit's log file.
///
/// A record is written whole or not at all: a write the disk could take
/// only part of (a full file system) is cut back off at once, and a file
/// left with a half record by a daemon killed mid-write is cut back to its
/// last whole line when it is opened again. Cut rather than ended with a
/// newline: the half record's text would read as a whole line that the
/// container never wrote.
pub struct Writer {
    path: PathBuf,
    /// None after a rotation whose new file could not be made: made at
    /// the next record.
    file: Option<File>,
    /// The file's length up to its last whole record.
    size: u64,
    /// A partial record could not be cut off yet: cut before the next.
    torn: bool,
    limits: Arc<Limits>,
}

impl Writer {
    pub fn open(path: PathBuf, limits: Arc<Limits>) -> std::io::Result<Writer> {
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir)?;
        }
        let file = open_private(&path)?;
        let size = cut_torn_tail(&file)?;
        Ok(Writer { path, file: Some(file), size, limits, torn: false })
    }

    /// A writer whose file could not be opened (a full or failing log
    /// file system): it opens the file at the next record that comes, so
    /// the container's output is still read.
    pub fn closed(path: PathBuf, limits: Arc<Limits>) -> Writer {
        Writer { path, file: None, size: 0, limits, torn: false }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes one record, or several whole ones; rotates first when it
    /// would not fit. On an error nothing of it is left in the file (or,
    /// if even the cut failed, it is cut before the next record).
    pub fn write_record(&mut self, record: &[u8]) -> std::io::Result<()> {
        let limits = self.limits.clone();
        self.write_limited(record, &limits)
    }

    /// [`Writer::write_record`] under `limits` (those of the container
    /// whose record it is: each of a unit's containers has its own, which
    /// a `[logs]` edit changes).
    fn write_limited(&mut self, record: &[u8], limits: &Limits) -> std::io::Result<()> {
        if self.torn {
            if let Some(f) = &self.file {
                f.set_len(self.size)?;
            }
            self.torn = false;
        }
        let max = limits.max_size.load(Ordering::Relaxed);
        if self.size > 0 && self.size + record.len() as u64 > max {
            self.rotate(limits.max_files.load(Ordering::Relaxed))?;
        }
        let file = match &mut self.file {
            Some(f) => f,
            None => {
                if let Some(dir) = self.path.parent() {
                    fs::create_dir_all(dir)?;
                }
                let f = open_private(&self.path)?;
                self.size = cut_torn_tail(&f)?;
                self.file.insert(f)
            }
        };
        if let Err(e) = file.write_all(record) {
            self.torn = file.set_len(self.size).is_err();
            return Err(e);
        }
        self.size += record.len() as u64;
        Ok(())
    }

    fn rotate(&mut self, files: u32) -> std::io::Result<()> {
        let files = files.max(1);
        if files == 1 {
            if let Some(f) = &self.file {
                f.set_len(0)?;
            }
            self.size = 0;
            return Ok(());
        }
        // .N-1 is dropped by the rename of .N-2 over it, and so on down.
        for n in (1..files - 1).rev() {
            let from = rotated(&self.path, n);
            if from.exists() {
                fs::rename(&from, rotated(&self.path, n + 1))?;
            }
        }
        // Missing when the last rotation could not make the new file.
        if self.path.exists() {
            fs::rename(&self.path, rotated(&self.path, 1))?;
        }
        self.file = None;
        self.size = 0;
        let file = open_private(&self.path)?;
        self.file = Some(file);
        Ok(())
    }
}

/// Cuts a half record off the end of a log file (a daemon killed in the
/// middle of a write); the length up to the last whole line.
fn cut_torn_tail(file: &File) -> std::io::Result<u64> {
    use std::os::unix::fs::FileExt;
    let len = file.metadata()?.len();
    let mut end = len;
    let mut chunk = vec![0u8; 64 * 1024];
    while end > 0 {
        let start = end.saturating_sub(chunk.len() as u64);
        let piece = &mut chunk[..(end - start) as usize];
        file.read_exact_at(piece, start)?;
        if let Some(i) = piece.iter().rposition(|b| *b == b'\n') {
            let whole = start + i as u64 + 1;
            if whole != len {
                file.set_len(whole)?;
            }
            return Ok(whole);
        }
        end = start;
    }
    if len > 0 {
        file.set_len(0)?;
    }
    Ok(0)
}

/// `TIME STREAM TEXT\n`.
pub fn format_record(time: SystemTime, stream: &str, text: &[u8]) -> Vec<u8> {
    let stamp = humantime::format_rfc3339_micros(time).to_string();
    let mut out = Vec::with_capacity(stamp.len() + stream.len() + text.len() + 3);
    push_record(&mut out, &stamp, stream, text);
    out
}

/// Appends `STAMP STREAM TEXT\n` to `out`.
fn push_record(out: &mut Vec<u8>, stamp: &str, stream: &str, text: &[u8]) {
    out.extend_from_slice(stamp.as_bytes());
    out.push(b' ');
    out.extend_from_slice(stream.as_bytes());
    out.push(b' ');
    out.extend_from_slice(text);
    out.push(b'\n');
}

type Follow = broadcast::Sender<Arc<[u8]>>;

/// A unit's log writer, shared by every container of the unit that runs
/// (two during a start-first update): each batch of whole records is
/// written under its lock, so the containers' lines interleave whole, and
/// one writer alone cuts torn tails and rotates. Closed when the last
/// container's copy ends.
pub struct SharedWriter {
    writer: Arc<Mutex<Writer>>,
    /// This container's limits.
    limits: Arc<Limits>,
}

impl SharedWriter {
    fn write_record(&self, record: &[u8]) -> std::io::Result<()> {
        self.writer.lock().unwrap_or_else(|e| e.into_inner()).write_limited(record, &self.limits)
    }

    fn max_size(&self) -> u64 {
        self.limits.max_size.load(Ordering::Relaxed)
    }

    fn path(&self) -> PathBuf {
        self.writer.lock().unwrap_or_else(|e| e.into_inner()).path.clone()
    }
}

/// Live log lines for `logs -f`, per unit (only kept while someone
/// follows), the count of lines each unit's log could not take, and the
/// writer of each unit's log while a container of it runs.
#[derive(Clone, Default)]
pub struct Hub {
    followers: Arc<Mutex<HashMap<String, Follow>>>,
    dropped: Arc<Mutex<HashMap<String, Arc<AtomicU64>>>>,
    writers: Arc<Mutex<HashMap<String, Weak<Mutex<Writer>>>>>,
}

impl Hub {
    /// The writer of `unit`'s log at `path`, under `limits` (the
    /// container's): the one its other running container writes with, or
    /// a new one. A log that cannot be opened
    /// gets a writer that tries again at each record: the container's
    /// output is read all the same (a pipe left to fill would block it).
    pub fn writer(&self, unit: &str, path: PathBuf, limits: Arc<Limits>) -> SharedWriter {
        let mut map = self.writers.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(writer) = map.get(unit).and_then(Weak::upgrade) {
            return SharedWriter { writer, limits };
        }
        let writer = Writer::open(path.clone(), limits.clone()).unwrap_or_else(|e| {
            tracing::error!("{unit}: cannot open {}: {e}; trying again at each line", path.display());
            Writer::closed(path, limits.clone())
        });
        let writer = Arc::new(Mutex::new(writer));
        // The writers of units gone are dropped with the next unit's.
        map.retain(|_, w| w.strong_count() > 0);
        map.insert(unit.to_string(), Arc::downgrade(&writer));
        SharedWriter { writer, limits }
    }

    pub fn subscribe(&self, unit: &str) -> broadcast::Receiver<Arc<[u8]>> {
        let mut map = self.followers.lock().unwrap_or_else(|e| e.into_inner());
        map.entry(unit.to_string()).or_insert_with(|| broadcast::channel(1024).0).subscribe()
    }

    fn publish(&self, unit: &str, record: &[u8]) {
        let mut map = self.followers.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(tx) = map.get(unit) {
            if tx.receiver_count() == 0 {
                map.remove(unit);
            } else {
                let _ = tx.send(Arc::from(record));
            }
        }
    }

    /// Lines of `unit` that could not be written to its log since the
    /// daemon started (a full or failing log file system).
    pub fn dropped(&self, unit: &str) -> u64 {
        let map = self.dropped.lock().unwrap_or_else(|e| e.into_inner());
        map.get(unit).map_or(0, |c| c.load(Ordering::Relaxed))
    }

    fn dropped_counter(&self, unit: &str) -> Arc<AtomicU64> {
        let mut map = self.dropped.lock().unwrap_or_else(|e| e.into_inner());
        map.entry(unit.to_string()).or_default().clone()
    }
}

/// A stream of the container's output.
struct Lines<R> {
    stream: &'static str,
    reader: R,
    /// Read and not yet taken: `buf[start..]`.
    buf: Vec<u8>,
    start: usize,
    eof: bool,
    /// The last read filled all the room there was: read more at once.
    busy: bool,
}

/// The most read at once from a busy stream.
const READ_MAX: usize = 64 * 1024;

impl<R: tokio::io::AsyncRead + Unpin> Lines<R> {
    fn new(stream: &'static str, reader: R) -> Lines<R> {
        Lines { stream, reader, buf: Vec::new(), start: 0, eof: false, busy: false }
    }

    /// Waits until a line (or a [`MAX_LINE`] piece, or the rest at the
    /// end) can be taken; false at the end.
    async fn ready(&mut self) -> bool {
        loop {
            if self.line_len().is_some() {
                return true;
            }
            if self.eof {
                return self.start < self.buf.len();
            }
            // Lines are taken by moving `start`; the taken bytes are moved
            // out once per read, not once per line.
            if self.start > 0 {
                self.buf.drain(..self.start);
                self.start = 0;
            }
            // Read into the buffer itself: no chunk array lives in the
            // future while it waits (hundreds of idle containers).
            let room = self.buf.capacity() - self.buf.len();
            if room < 512 {
                self.buf.reserve(if self.busy { READ_MAX } else { 2048 });
            }
            let room = self.buf.capacity() - self.buf.len();
            match self.reader.read_buf(&mut self.buf).await {
                Ok(0) | Err(_) => self.eof = true,
                Ok(n) => self.busy = n >= room,
            }
        }
    }

    /// The length of the line that can be taken now (and of what ends it).
    fn line_len(&self) -> Option<(usize, usize)> {
        let data = &self.buf[self.start..];
        // memchr: a flood is searched at memory speed.
        match memchr::memchr(b'\n', data) {
            Some(i) if i <= MAX_LINE => Some((i, 1)),
            _ if data.len() >= MAX_LINE => Some((MAX_LINE, 0)),
            _ if self.eof && !data.is_empty() => Some((data.len(), 0)),
            _ => None,
        }
    }

    /// Takes the next line (without its newline), or a piece of
    /// [`MAX_LINE`] bytes of a longer one, if one has been read.
    fn take(&mut self, f: impl FnOnce(&[u8])) -> bool {
        let Some((len, end)) = self.line_len() else { return false };
        f(&self.buf[self.start..self.start + len]);
        self.start += len + end;
        // An idle stream holds no buffer.
        if self.start == self.buf.len() {
            self.buf = Vec::new();
            self.start = 0;
        }
        true
    }
}

/// The most bytes of whole records written at once: a flood costs one
/// write per batch, not one per line.
const BATCH: usize = 64 * 1024;

/// Copies the container's stdout and stderr into its log until both end.
///
/// The pipes are always drained: when the log cannot be written (a full
/// log file system), lines are dropped and counted (see [`Hub::dropped`]),
/// never left to fill the pipe and block the container; writing resumes
/// with the first line that fits again.
pub async fn copy(unit: String, stdout: File, stderr: File, writer: SharedWriter, hub: Hub) {
    let receiver = |f: File| tokio::net::unix::pipe::Receiver::from_file(f);
    let (Ok(out), Ok(err)) = (receiver(stdout), receiver(stderr)) else {
        tracing::error!("{unit}: cannot read the container's output");
        return;
    };
    let dropped = hub.dropped_counter(&unit);
    let mut out = Lines::new("stdout", out);
    let mut err = Lines::new("stderr", err);
    let (mut out_done, mut err_done) = (false, false);
    let mut failing: Option<u64> = None;
    let mut batch = Vec::new();
    while !(out_done && err_done) {
        let (is_out, more) = tokio::select! {
            more = out.ready(), if !out_done => (true, more),
            more = err.ready(), if !err_done => (false, more),
        };
        if !more {
            *(if is_out { &mut out_done } else { &mut err_done }) = true;
            continue;
        }
        let lines = if is_out { &mut out } else { &mut err };
        // Every whole line already read goes in one batch, with one time.
        let limit = BATCH.min(writer.max_size() as usize);
        let stamp = humantime::format_rfc3339_micros(SystemTime::now()).to_string();
        let stream = lines.stream;
        let mut count = 0u64;
        while batch.len() < limit.max(1)
            && lines.take(|line| {
                let at = batch.len();
                push_record(&mut batch, &stamp, stream, line);
                hub.publish(&unit, &batch[at..]);
            })
        {
            count += 1;
        }
        match writer.write_record(&batch) {
            Ok(()) => {
                if let Some(since) = failing.take() {
                    let lost = dropped.load(Ordering::Relaxed) - since;
                    tracing::warn!("{unit}: writing {} again; {lost} lines were dropped", writer.path().display());
                }
            }
            Err(e) => {
                if failing.is_none() {
                    tracing::error!(
                        "{unit}: writing {}: {e}; lines are dropped (and counted) until it works",
                        writer.path().display()
                    );
                    failing = Some(dropped.load(Ordering::Relaxed));
                }
                dropped.fetch_add(count, Ordering::Relaxed);
            }
        }
        batch.clear();
        if batch.capacity() > 2 * BATCH {
            batch = Vec::new();
        }
    }
}

/// The last `n` records of a unit's log (across rotated files), those at
/// or after `since` when given.
pub fn tail(dir: &Path, unit: &str, n: Option<usize>, since: Option<SystemTime>, max_files: u32) -> Vec<Vec<u8>> {
    let path = log_path(dir, unit);
    let mut files: Vec<PathBuf> = (1..max_files.max(1) + 8).rev().map(|i| rotated(&path, i)).collect();
    files.push(path);
    let since = since.map(|t| humantime::format_rfc3339_micros(t).to_string());
    let limit = n.unwrap_or(usize::MAX);
    let mut out: VecDeque<Vec<u8>> = VecDeque::new();
    for f in files {
        let Ok(file) = File::open(&f) else { continue };
        for line in BufReader::new(file).split(b'\n') {
            let Ok(mut line) = line else { break };
            // Timestamps of one width sort as text.
            if since.as_ref().is_some_and(|s| line.get(..s.len()).is_some_and(|t| t < s.as_bytes())) {
                continue;
            }
            line.push(b'\n');
            out.push_back(line);
            if out.len() > limit {
                out.pop_front();
            }
        }
    }
    out.into()
}

#[cfg(test)]
#[path = "logs_tests.rs"]
mod tests;
