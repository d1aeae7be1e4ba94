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
use std::sync::{Arc, Mutex};
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
    let file = OpenOptions::new().create(true).append(true).mode(0o600).open(path)?;
    let group = path.parent().and_then(|d| fs::metadata(d).ok()).filter(|m| m.mode() & 0o050 == 0o050).map(|m| m.gid());
    if let Some(gid) = group {
        std::os::unix::fs::fchown(&file, None, Some(gid))?;
    }
    file.set_permissions(fs::Permissions::from_mode(if group.is_some() { 0o640 } else { 0o600 }))?;
    Ok(file)
}

/// One unit's log file.
pub struct Writer {
    path: PathBuf,
    file: File,
    size: u64,
    limits: Arc<Limits>,
}

impl Writer {
    pub fn open(path: PathBuf, limits: Arc<Limits>) -> std::io::Result<Writer> {
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir)?;
        }
        let file = open_private(&path)?;
        let size = file.metadata()?.len();
        Ok(Writer { path, file, size, limits })
    }

    /// Writes one record; rotates first when it would not fit.
    pub fn write_record(&mut self, record: &[u8]) -> std::io::Result<()> {
        let max = self.limits.max_size.load(Ordering::Relaxed);
        if self.size > 0 && self.size + record.len() as u64 > max {
            self.rotate()?;
        }
        self.file.write_all(record)?;
        self.size += record.len() as u64;
        Ok(())
    }

    fn rotate(&mut self) -> std::io::Result<()> {
        let files = self.limits.max_files.load(Ordering::Relaxed).max(1);
        if files == 1 {
            self.file.set_len(0)?;
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
        fs::rename(&self.path, rotated(&self.path, 1))?;
        self.file = open_private(&self.path)?;
        self.size = 0;
        Ok(())
    }
}

/// `TIME STREAM TEXT\n`.
pub fn format_record(time: SystemTime, stream: &str, text: &[u8]) -> Vec<u8> {
    let stamp = humantime::format_rfc3339_micros(time).to_string();
    let mut out = Vec::with_capacity(stamp.len() + stream.len() + text.len() + 3);
    out.extend_from_slice(stamp.as_bytes());
    out.push(b' ');
    out.extend_from_slice(stream.as_bytes());
    out.push(b' ');
    out.extend_from_slice(text);
    out.push(b'\n');
    out
}

type Follow = broadcast::Sender<Arc<[u8]>>;

/// Live log lines for `logs -f`, per unit; only kept while someone follows.
#[derive(Clone, Default)]
pub struct Hub {
    followers: Arc<Mutex<HashMap<String, Follow>>>,
}

impl Hub {
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
}

/// A stream of the container's output.
struct Lines<R> {
    stream: &'static str,
    reader: R,
    buf: Vec<u8>,
    eof: bool,
}

impl<R: tokio::io::AsyncRead + Unpin> Lines<R> {
    /// The next whole line (without its newline), or a piece of
    /// [`MAX_LINE`] bytes of a longer one; none at the end.
    async fn next(&mut self) -> Option<Vec<u8>> {
        loop {
            if let Some(i) = self.buf.iter().position(|b| *b == b'\n') {
                let mut line: Vec<u8> = self.buf.drain(..=i).collect();
                line.pop();
                self.release();
                return Some(line);
            }
            if self.buf.len() >= MAX_LINE {
                let piece = self.buf.drain(..MAX_LINE).collect();
                self.release();
                return Some(piece);
            }
            if self.eof {
                return (!self.buf.is_empty()).then(|| std::mem::take(&mut self.buf));
            }
            // Read into the buffer itself: no chunk array lives in the
            // future while it waits (hundreds of idle containers).
            if self.buf.capacity() - self.buf.len() < 512 {
                self.buf.reserve(2048);
            }
            match self.reader.read_buf(&mut self.buf).await {
                Ok(0) | Err(_) => self.eof = true,
                Ok(_) => {}
            }
        }
    }

    /// An idle stream holds no buffer.
    fn release(&mut self) {
        if self.buf.is_empty() && self.buf.capacity() > 0 {
            self.buf = Vec::new();
        }
    }
}

/// Copies the container's stdout and stderr into its log until both end.
pub async fn copy(unit: String, stdout: File, stderr: File, mut writer: Writer, hub: Hub) {
    let receiver = |f: File| tokio::net::unix::pipe::Receiver::from_file(f);
    let (Ok(out), Ok(err)) = (receiver(stdout), receiver(stderr)) else {
        tracing::error!("{unit}: cannot read the container's output");
        return;
    };
    let mut out = Lines { stream: "stdout", reader: out, buf: Vec::new(), eof: false };
    let mut err = Lines { stream: "stderr", reader: err, buf: Vec::new(), eof: false };
    let (mut out_done, mut err_done) = (false, false);
    let mut failed = false;
    while !(out_done && err_done) {
        let (stream, line) = tokio::select! {
            l = out.next(), if !out_done => (out.stream, l),
            l = err.next(), if !err_done => (err.stream, l),
        };
        let Some(line) = line else {
            if stream == "stdout" {
                out_done = true;
            } else {
                err_done = true;
            }
            continue;
        };
        let record = format_record(SystemTime::now(), stream, &line);
        if let Err(e) = writer.write_record(&record) {
            // Keep draining (the container must not block on a full
            // pipe), and say it once.
            if !failed {
                tracing::error!("{unit}: writing {}: {e}", writer.path.display());
                failed = true;
            }
        }
        hub.publish(&unit, &record);
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
mod tests {
    use super::*;

    #[test]
    fn rotation_keeps_whole_lines_and_the_newest_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("u.log");
        let mut w = Writer::open(path.clone(), Limits::new(100, 3)).unwrap();
        for i in 0..40 {
            w.write_record(format!("line {i:04} ....................\n").as_bytes()).unwrap();
        }
        let mut names: Vec<String> =
            fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        names.sort();
        assert_eq!(names, ["u.log", "u.log.1", "u.log.2"]);
        let mut seen = Vec::new();
        for f in ["u.log.2", "u.log.1", "u.log"] {
            let text = fs::read_to_string(dir.path().join(f)).unwrap();
            assert!(text.len() <= 100, "{f} is {} bytes", text.len());
            for l in text.lines() {
                assert!(l.starts_with("line ") && l.ends_with('.'), "split line {l:?}");
                seen.push(l[5..9].parse::<u32>().unwrap());
            }
        }
        // The newest lines, in order, none missing.
        assert_eq!(*seen.last().unwrap(), 39);
        assert!(seen.windows(2).all(|w| w[1] == w[0] + 1), "{seen:?}");
        let last = tail(dir.path(), "u", Some(3), None, 3);
        assert_eq!(last.len(), 3);
        assert!(String::from_utf8_lossy(&last[2]).starts_with("line 0039"));
    }

    #[tokio::test]
    async fn long_lines_are_cut_into_pieces() {
        let data = vec![b'x'; MAX_LINE * 2 + 10];
        let mut lines = Lines { stream: "stdout", reader: &data[..], buf: Vec::new(), eof: false };
        let mut sizes = Vec::new();
        while let Some(l) = lines.next().await {
            sizes.push(l.len());
        }
        assert_eq!(sizes, [MAX_LINE, MAX_LINE, 10]);
    }
}
