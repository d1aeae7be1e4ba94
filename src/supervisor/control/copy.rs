//! `cp` through the control socket, as Docker's archive endpoints do it:
//! `GET /v1/units/NAME/stat?path=P` (what is at a path in the unit's
//! container, so the client can decide what a destination means),
//! `GET /v1/units/NAME/archive?path=P` (a tar of it, streamed) and
//! `PUT /v1/units/NAME/archive?path=DIR` (a tar streamed in, extracted
//! into that directory). Paths are the container's, resolved in its root
//! through its first process (`runtime::copy`): a running container only.
//! Root only: a copy out reads any file of the container (its secrets),
//! a copy in changes what it runs.

use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::net::UnixStream;
use tokio::sync::mpsc;

use super::http::{self, Request};
use super::peer::Peer;
use super::{Control, ask};
use crate::runtime::cgroups::Cgroup;
use crate::runtime::copy::{CopyError, Root, base_name};
use crate::supervisor::engine::Command;

/// How long an archive being copied in may stop coming.
const IDLE: Duration = Duration::from_secs(60);

/// The root of unit `name`'s running container, or the answer is sent.
async fn root_of(stream: &mut UnixStream, control: &Control, name: &str, peer: Peer) -> std::io::Result<Option<Root>> {
    if peer != Peer::Root {
        http::error(stream, 403, "only root may copy files into or out of a container").await?;
        return Ok(None);
    }
    let v = match ask(control, |tx| Command::Inspect(name.to_string(), tx)).await {
        Some(Some(v)) => v,
        Some(None) => return http::error(stream, 404, &format!("no unit named {name:?}")).await.map(|()| None),
        None => return http::error(stream, 500, "the supervisor is shutting down").await.map(|()| None),
    };
    let pid = v["status"]["pid"].as_i64().and_then(|p| i32::try_from(p).ok());
    let cgroup = serde_json::from_value::<Cgroup>(v["cgroup"].clone()).ok();
    let (Some(pid), Some(cgroup)) = (pid, cgroup) else {
        http::error(stream, 409, &format!("{name} is not running (cp needs its running container)")).await?;
        return Ok(None);
    };
    match tokio::task::spawn_blocking({
        let name = name.to_string();
        move || Root::of_process(pid, &cgroup, &name)
    })
    .await
    {
        Ok(Ok(root)) => Ok(Some(root)),
        Ok(Err(e)) => http::error(stream, 409, &e.to_string()).await.map(|()| None),
        Err(e) => http::error(stream, 500, &e.to_string()).await.map(|()| None),
    }
}

fn status_of(e: &CopyError) -> u16 {
    match e {
        CopyError::NotFound { .. } => 404,
        CopyError::Relative { .. } | CopyError::NotADirectory { .. } | CopyError::Unnamed { .. } => 400,
        CopyError::KernelFs { .. } => 400,
        CopyError::Entry { .. } | CopyError::Read(_) => 400,
        _ => 500,
    }
}

fn path_of(stream_req: &Request) -> Result<&str, String> {
    match stream_req.query.get("path") {
        Some(p) if p.starts_with('/') => Ok(p),
        Some(p) => Err(format!("path: {p:?} is not absolute")),
        None => Err("a path is needed: ?path=/…".into()),
    }
}

pub(super) async fn stat(
    stream: &mut UnixStream,
    control: &Control,
    name: &str,
    req: &Request,
    peer: Peer,
) -> std::io::Result<()> {
    let path = match path_of(req) {
        Ok(p) => p.to_string(),
        Err(e) => return http::error(stream, 400, &e).await,
    };
    let Some(root) = root_of(stream, control, name, peer).await? else { return Ok(()) };
    let follow = req.flag("follow");
    match tokio::task::spawn_blocking(move || root.stat(&path, follow)).await {
        Ok(Ok(st)) => http::json(stream, 200, &st).await,
        Ok(Err(e)) => http::error(stream, status_of(&e), &e.to_string()).await,
        Err(e) => http::error(stream, 500, &e.to_string()).await,
    }
}

/// A `Write` whose bytes go, in chunks, to the task that sends them.
struct Chunks {
    tx: mpsc::Sender<Vec<u8>>,
    buf: Vec<u8>,
}

impl std::io::Write for Chunks {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(bytes);
        if self.buf.len() >= 64 * 1024 {
            self.flush()?;
        }
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = std::mem::take(&mut self.buf);
        self.tx.blocking_send(chunk).map_err(|_| std::io::Error::from(std::io::ErrorKind::BrokenPipe))
    }
}

pub(super) async fn get(
    stream: &mut UnixStream,
    control: &Control,
    name: &str,
    req: &Request,
    peer: Peer,
) -> std::io::Result<()> {
    let path = match path_of(req) {
        Ok(p) => p.to_string(),
        Err(e) => return http::error(stream, 400, &e).await,
    };
    let Some(root) = root_of(stream, control, name, peer).await? else { return Ok(()) };
    let follow = req.flag("follow");
    // The name of the copy's root: given, empty for a directory's
    // entries alone, or the path's last component.
    let as_name: Vec<u8> = match req.query.get("name") {
        Some(n) if n.contains('/') || n == ".." => {
            return http::error(stream, 400, &format!("name: {n:?} is not a file name")).await;
        }
        Some(n) => n.as_bytes().to_vec(),
        None => std::os::unix::ffi::OsStrExt::as_bytes(base_name(&path)).to_vec(),
    };
    // Errors known before the first byte get their own answer.
    let (checked, root) = {
        let p = path.clone();
        match tokio::task::spawn_blocking(move || (root.stat(&p, follow), root)).await {
            Ok(r) => r,
            Err(e) => return http::error(stream, 500, &e.to_string()).await,
        }
    };
    match checked {
        Err(e) => return http::error(stream, status_of(&e), &e.to_string()).await,
        Ok(st) if as_name.is_empty() && st.kind != "directory" => {
            let message = format!("{name}:{path}: not a directory (an empty name copies a directory's entries)");
            return http::error(stream, 400, &message).await;
        }
        Ok(_) => {}
    }
    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(8);
    let unit = name.to_string();
    let packing = tokio::task::spawn_blocking(move || {
        let result = root.pack(&path, follow, &as_name, Chunks { tx, buf: Vec::new() });
        if let Err(e) = &result {
            tracing::warn!("cp out of {unit}: {e}");
        }
        result
    });
    http::stream_head(stream, "application/x-tar").await?;
    while let Some(chunk) = rx.recv().await {
        // A client gone: the packing stops at its next chunk.
        http::send(stream, &chunk).await?;
    }
    let _ = packing.await;
    tokio::io::AsyncWriteExt::shutdown(stream).await
}

/// A `Read` of the chunks the connection's task receives.
struct Received {
    rx: mpsc::Receiver<Vec<u8>>,
    chunk: Vec<u8>,
    at: usize,
}

impl std::io::Read for Received {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.at == self.chunk.len() {
            match self.rx.blocking_recv() {
                Some(c) => (self.chunk, self.at) = (c, 0),
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.chunk.len() - self.at);
        buf[..n].copy_from_slice(&self.chunk[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

pub(super) async fn put(
    stream: &mut UnixStream,
    control: &Control,
    name: &str,
    req: Request,
    peer: Peer,
) -> std::io::Result<()> {
    let dir = match path_of(&req) {
        Ok(p) => p.to_string(),
        Err(e) => return http::error(stream, 400, &e).await,
    };
    let Some(root) = root_of(stream, control, name, peer).await? else { return Ok(()) };
    let length = req.upload.unwrap_or(req.body.len() as u64);
    // Room for it where it goes (the container's writable layer, or the
    // volume mounted there): checked before a byte is written.
    let (room, root) = {
        let d = dir.clone();
        let checked = tokio::task::spawn_blocking(move || {
            let free = root.dir_file(&d).and_then(|f| {
                nix::sys::statvfs::fstatvfs(&f)
                    .map(|v| v.blocks_available().saturating_mul(v.fragment_size()))
                    .map_err(|source| CopyError::Lookup { path: d.clone(), op: "statvfs", source })
            });
            (free, root)
        })
        .await;
        match checked {
            Ok(r) => r,
            Err(e) => return http::error(stream, 500, &e.to_string()).await,
        }
    };
    match room {
        Err(e) => return http::error(stream, status_of(&e), &e.to_string()).await,
        Ok(free) if free < length => {
            let message = format!("{name}:{dir}: {length} bytes to copy, {free} free there");
            return http::error(stream, 507, &message).await;
        }
        Ok(_) => {}
    }
    let (tx, rx) = mpsc::channel::<Vec<u8>>(8);
    let target = dir.clone();
    let extracting = tokio::task::spawn_blocking(move || {
        let mut input = Received { rx, chunk: Vec::new(), at: 0 };
        let result = root.extract(&target, &mut input);
        // What the client sends after a failure is not waited for.
        drop(input);
        result
    });
    let received = receive(stream, &tx, req.body, length).await;
    drop(tx);
    let extracted = extracting.await;
    match (received, extracted) {
        (Err((status, message)), _) => http::error(stream, status, &message).await,
        (_, Ok(Err(e))) => http::error(stream, status_of(&e), &format!("{name}:{dir}: {e}")).await,
        (Ok(()), Ok(Ok(entries))) => {
            tracing::info!("cp into {name}:{dir}: {entries} entries");
            http::json(stream, 200, &serde_json::json!({"unit": name, "path": dir, "entries": entries})).await
        }
        (Ok(()), Err(e)) => http::error(stream, 500, &e.to_string()).await,
    }
}

/// Hands the body (`first`, then the rest of its `length` bytes) to the
/// extraction; a status and message when the client fails.
async fn receive(
    stream: &mut UnixStream,
    tx: &mpsc::Sender<Vec<u8>>,
    first: Vec<u8>,
    length: u64,
) -> Result<(), (u16, String)> {
    let mut received = first.len() as u64;
    if !first.is_empty() && tx.send(first).await.is_err() {
        return Ok(());
    }
    let mut buf = vec![0u8; 1 << 16];
    while received < length {
        let want = buf.len().min(usize::try_from(length - received).unwrap_or(usize::MAX));
        let n = match tokio::time::timeout(IDLE, stream.read(&mut buf[..want])).await {
            Err(_) => return Err((408, format!("the archive stopped coming after {received} of {length} bytes"))),
            Ok(Err(e)) => return Err((400, format!("read the archive after {received} of {length} bytes: {e}"))),
            Ok(Ok(0)) => {
                return Err((400, format!("the client closed after {received} of the archive's {length} bytes")));
            }
            Ok(Ok(n)) => n,
        };
        received += n as u64;
        // The extraction ended (failed): its error is the answer.
        if tx.send(buf[..n].to_vec()).await.is_err() {
            return Ok(());
        }
    }
    Ok(())
}
