//! The control protocol on a virtio-serial port (the appliance's control
//! path from outside the VM: qemu exposes the port as a unix socket on the
//! host, so `supervisorctl --socket OUT/control.sock` works unchanged).
//!
//! A serial port is one byte stream that never closes, while the control
//! socket ends each answer by closing its connection. So a relay thread
//! reads one request from the port, passes it to our own control socket
//! (as root), and copies the answer back: as it is when it says its
//! length, in HTTP/1.1 chunks when it is a stream (whose end is then the
//! last chunk). One client at a time, as qemu's socket accepts one. When
//! the host side goes away (the port reports a hangup for a second) the
//! request so far and any answer in progress are dropped: the next client
//! starts clean.

use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};

use crate::supervisor::control::http::{self, RequestError};

/// Why an answer over the port failed.
#[derive(Debug, thiserror::Error)]
pub enum SerialError {
    #[error("the host side went away")]
    HostGone,
    #[error("the host side went away in an answer")]
    HostGoneInAnswer,
    #[error("a new request came in an answer")]
    NewRequest,
    #[error("write: {0}")]
    Write(#[source] std::io::Error),
    #[error("read: {0}")]
    Read(#[source] std::io::Error),
    #[error("the request body stopped coming for {}s", BODY_IDLE.as_secs())]
    BodyStalled,
    #[error("supervisord does not answer yet ({}: {source})", socket.display())]
    NoDaemon {
        socket: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: {source}", socket.display())]
    SendRequest {
        socket: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("control socket: {0}")]
    ReadAnswer(#[source] std::io::Error),
    #[error("the control socket closed before its answer")]
    NoAnswer,
}

/// The device of the virtio-serial port named `name`, from
/// `sys_ports` (`/sys/class/virtio-ports`).
pub fn find_port(sys_ports: &Path, name: &str) -> Option<PathBuf> {
    std::fs::read_dir(sys_ports).ok()?.flatten().find_map(|e| {
        let n = std::fs::read_to_string(e.path().join("name")).ok()?;
        (n.trim() == name).then(|| Path::new("/dev").join(e.file_name()))
    })
}

/// Serves the control socket `socket` on the virtio-serial port `name`
/// from a thread of its own (waiting for the port to appear).
pub fn serve(name: String, socket: PathBuf) {
    let spawned = std::thread::Builder::new().name("serial-control".into()).spawn(move || {
        let mut warned = false;
        loop {
            let port = find_port(Path::new("/sys/class/virtio-ports"), &name)
                .ok_or_else(|| format!("no virtio-serial port named {name:?}"))
                .and_then(|p| {
                    std::fs::OpenOptions::new()
                        .read(true)
                        .write(true)
                        .custom_flags(libc::O_NONBLOCK)
                        .open(&p)
                        .map_err(|e| format!("{}: {e}", p.display()))
                });
            match port {
                Ok(port) => {
                    tracing::info!("serving the control protocol on the serial port {name:?}");
                    relay(port, &socket);
                }
                Err(e) if !warned => {
                    tracing::warn!("serial control: {e} (looking again every second)");
                    warned = true;
                }
                Err(_) => {}
            }
            std::thread::sleep(Duration::from_secs(1));
        }
    });
    if let Err(e) = spawned {
        tracing::warn!("serial control thread: {e}");
    }
}

/// How long a poll waits while the host side is away (a hangup is
/// reported at once and for as long as it lasts).
const IDLE: Duration = Duration::from_millis(100);

/// How long a request body may stop coming (the daemon's own limit for an
/// archive) before the relay gives up on it and waits for a new client.
const BODY_IDLE: Duration = Duration::from_secs(60);

/// How long a hangup must last to mean that the client is gone.
/// virtio-serial reports the host side's connects and disconnects on a
/// control queue apart from the data: a new client's request (and the
/// room to answer it) can come before the last client's hangup is over.
/// Writes wait while the host side is away, so nothing is lost by waiting.
const GONE: Duration = Duration::from_secs(1);

/// The port, and since when it has reported a hangup.
struct Port {
    file: std::fs::File,
    hangup_since: Option<Instant>,
    /// Bytes of the next request read while answering the last one.
    carry: Vec<u8>,
}

impl Port {
    /// Polls for `flags` (at most `timeout`): whether they are ready, and
    /// whether the client is gone (a hangup that has lasted [`GONE`]).
    fn wait(&mut self, flags: PollFlags, timeout: Duration) -> (bool, bool) {
        let mut fds = [PollFd::new(self.file.as_fd(), flags)];
        let ms = PollTimeout::try_from(timeout).unwrap_or(PollTimeout::MAX);
        let got = match poll(&mut fds, ms) {
            Ok(n) if n > 0 => fds[0].revents().unwrap_or(PollFlags::empty()),
            _ => PollFlags::empty(),
        };
        let ready = got.intersects(flags);
        let hangup = got.contains(PollFlags::POLLHUP);
        (ready, self.gone(hangup && !ready))
    }

    fn gone(&mut self, hangup: bool) -> bool {
        if !hangup {
            self.hangup_since = None;
            return false;
        }
        self.hangup_since.get_or_insert_with(Instant::now).elapsed() >= GONE
    }

    /// Writes all of `bytes` (the port is non-blocking); fails when the
    /// client is gone.
    fn write_all(&mut self, mut bytes: &[u8]) -> Result<(), SerialError> {
        while !bytes.is_empty() {
            match self.file.write(bytes) {
                Ok(n) => bytes = &bytes[n..],
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    if self.wait(PollFlags::POLLOUT, IDLE).1 {
                        return Err(SerialError::HostGone);
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(SerialError::Write(e)),
            }
        }
        Ok(())
    }

    /// Reads `n` bytes of a request body from the port into `to` (while
    /// it takes them; after a failed write they are dropped). Fails when
    /// the client is gone, or sends nothing for [`BODY_IDLE`] (a body
    /// shorter than its length, a client that stopped after a refusal):
    /// the next client starts clean either way.
    fn copy_body(&mut self, mut n: u64, to: &mut Option<&mut UnixStream>) -> Result<(), SerialError> {
        let mut chunk = vec![0u8; 65536];
        let mut last = Instant::now();
        while n > 0 {
            if last.elapsed() >= BODY_IDLE {
                return Err(SerialError::BodyStalled);
            }
            let want = chunk.len().min(usize::try_from(n).unwrap_or(usize::MAX));
            match self.file.read(&mut chunk[..want]) {
                // Readable with nothing to read: the host side is away
                // (the poll below would report it as readable, not gone).
                Ok(0) => {
                    if self.gone(true) {
                        return Err(SerialError::HostGone);
                    }
                    std::thread::sleep(IDLE);
                    continue;
                }
                Ok(got) => {
                    self.hangup_since = None;
                    last = Instant::now();
                    n -= got as u64;
                    if let Some(control) = to {
                        if control.write_all(&chunk[..got]).is_err() {
                            *to = None;
                        }
                    }
                    continue;
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock || e.kind() == std::io::ErrorKind::Interrupted => {
                }
                Err(e) => return Err(SerialError::Read(e)),
            }
            if self.wait(PollFlags::POLLIN, IDLE).1 {
                return Err(SerialError::HostGone);
            }
        }
        Ok(())
    }

    /// Takes `n` bytes of a request body from the port and drops them.
    fn skip(&mut self, n: u64) -> Result<(), SerialError> {
        self.copy_body(n, &mut None)
    }

    fn send(&mut self, bytes: &[u8], chunked: bool) -> Result<(), SerialError> {
        if bytes.is_empty() {
            return Ok(());
        }
        if chunked {
            self.write_all(format!("{:x}\r\n", bytes.len()).as_bytes())?;
            self.write_all(bytes)?;
            self.write_all(b"\r\n")
        } else {
            self.write_all(bytes)
        }
    }
}

/// Requests and answers until the port fails.
fn relay(file: std::fs::File, socket: &Path) {
    let mut port = Port { file, hangup_since: None, carry: Vec::new() };
    let mut buf: Vec<u8> = Vec::new();
    loop {
        buf.append(&mut port.carry);
        match request_head(&buf) {
            Ok(Some((head, length))) => {
                // The head and what of the body is here; the rest of the
                // body is passed on as it comes (an image archive may be
                // larger than memory).
                let here = (buf.len() - head).min(usize::try_from(length).unwrap_or(usize::MAX));
                let request: Vec<u8> = buf.drain(..head + here).collect();
                // One request per client connection: whatever followed is
                // not ours to guess at.
                buf.clear();
                let rest = length - here as u64;
                tracing::debug!("serial control: a request of {} bytes", (head as u64).saturating_add(length));
                match answer(&mut port, socket, &request, rest) {
                    Ok(()) => tracing::debug!("serial control: answered"),
                    // Nothing was sent yet: the client gets an error, not silence.
                    Err(Failed::Before(e)) => {
                        let id = request_id(&request);
                        let _ =
                            port.write_all(&error_answer(503, "Service Unavailable", &e.to_string(), id.as_deref()));
                    }
                    Err(Failed::During(e)) => tracing::debug!("serial control: {e}"),
                }
                continue;
            }
            Ok(None) => {}
            Err(e) => {
                buf.clear();
                let _ = port.write_all(&error_answer(400, "Bad Request", &e.to_string(), None));
                continue;
            }
        }
        // More of the request.
        let (ready, gone) = port.wait(PollFlags::POLLIN, Duration::from_secs(3600));
        if gone && !buf.is_empty() {
            // Nobody on the host side: forget the partial request.
            tracing::debug!("serial control: the host side went away in a request");
            buf.clear();
        }
        if !ready {
            if port.hangup_since.is_some() {
                std::thread::sleep(IDLE);
            }
            continue;
        }
        let mut chunk = [0u8; 16384];
        match port.file.read(&mut chunk) {
            // Readable with nothing to read: the host side is away.
            Ok(0) => {
                port.gone(true);
                std::thread::sleep(IDLE);
            }
            Ok(n) => {
                port.hangup_since = None;
                buf.extend_from_slice(&chunk[..n]);
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock || e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return tracing::warn!("serial control: read: {e}"),
        }
    }
}

/// The length of the request head at the start of `buf` (with its blank
/// line) and of its body, once the head is all there (with the control
/// socket's own limits).
pub fn request_head(buf: &[u8]) -> Result<Option<(usize, u64)>, RequestError> {
    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        return if buf.len() > http::MAX_HEAD { Err(RequestError::HeadTooLarge) } else { Ok(None) };
    };
    Ok(Some((end + 4, http::content_length(&String::from_utf8_lossy(&buf[..end]))?)))
}

/// A whole JSON error answer.
fn error_answer(status: u16, reason: &str, message: &str, request_id: Option<&str>) -> Vec<u8> {
    let body = serde_json::json!({ "error": message }).to_string() + "\n";
    let id = request_id.map(|id| format!("X-Request-Id: {id}\r\n")).unwrap_or_default();
    format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\n{id}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Why an answer failed: before any of it was sent, or during.
enum Failed {
    Before(SerialError),
    During(SerialError),
}

/// How long a request waits for the control socket (supervisord starting,
/// or between two lives of it).
const SOCKET_WAIT: Duration = Duration::from_secs(30);

/// Passes one request to the control socket, `rest` more bytes of its
/// body from the port after `request`, and its answer back.
fn answer(port: &mut Port, socket: &Path, request: &[u8], rest: u64) -> Result<(), Failed> {
    let deadline = Instant::now() + SOCKET_WAIT;
    let mut control = loop {
        match UnixStream::connect(socket) {
            Ok(c) => break c,
            Err(source) if Instant::now() >= deadline => {
                // The body is the client's still: taken, so that its bytes
                // are not read as the next request.
                port.skip(rest).map_err(Failed::During)?;
                return Err(Failed::Before(SerialError::NoDaemon { socket: socket.to_path_buf(), source }));
            }
            Err(_) => {
                if port.wait(PollFlags::empty(), IDLE).1 {
                    return Err(Failed::During(SerialError::HostGone));
                }
                std::thread::sleep(IDLE);
            }
        }
    };
    let sent = control.write_all(request);
    // A daemon that answers before the whole body (a refusal) has
    // stopped reading: the rest of the body is taken and dropped, and its
    // answer, waiting on the socket, goes back.
    let mut to_daemon = sent.is_ok().then_some(&mut control);
    port.copy_body(rest, &mut to_daemon).map_err(Failed::During)?;
    if let Err(source) = sent {
        if !matches!(source.kind(), std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset) {
            return Err(Failed::Before(SerialError::SendRequest { socket: socket.to_path_buf(), source }));
        }
    }
    answer_from(port, &mut control, request_id(request).as_deref()).map_err(Failed::During)
}

/// Copies the control socket's answer to the port (reframed), until its
/// end or until the client is gone (a stream it stopped reading).
fn answer_from(port: &mut Port, control: &mut UnixStream, request_id: Option<&str>) -> Result<(), SerialError> {
    let mut head = Vec::new();
    let mut chunked = false;
    let mut chunk = [0u8; 16384];
    loop {
        let mut fds =
            [PollFd::new(control.as_fd(), PollFlags::POLLIN), PollFd::new(port.file.as_fd(), PollFlags::POLLIN)];
        let _ = poll(&mut fds, PollTimeout::from(100u16));
        let from_host = fds[1].revents().unwrap_or(PollFlags::empty());
        let readable = fds[0].revents().is_some_and(|r| !r.is_empty());
        let mut hangup = from_host.contains(PollFlags::POLLHUP);
        if from_host.contains(PollFlags::POLLIN) {
            // The port is also "readable" (a read gives 0) while the host
            // side is away.
            let mut next = [0u8; 16384];
            match port.file.read(&mut next) {
                // A client sends nothing after its request: bytes from the
                // host are the next client's, so this one is gone (a stream
                // it stopped reading). They start the next request.
                Ok(n) if n > 0 => {
                    port.carry.extend_from_slice(&next[..n]);
                    return Err(SerialError::NewRequest);
                }
                Ok(_) => hangup = true,
                Err(_) => {}
            }
        }
        if port.gone(hangup) {
            return Err(SerialError::HostGoneInAnswer);
        }
        if !readable {
            continue;
        }
        let n = match control.read(&mut chunk) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(SerialError::ReadAnswer(e)),
        };
        if head.is_empty() || head.windows(4).all(|w| w != b"\r\n\r\n") {
            if n == 0 {
                return Err(SerialError::NoAnswer);
            }
            head.extend_from_slice(&chunk[..n]);
            let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") else { continue };
            let (reframed, is_chunked) = reframe(&head[..end], request_id);
            chunked = is_chunked;
            port.write_all(reframed.as_bytes())?;
            let rest = head[end + 4..].to_vec();
            head.truncate(end + 4);
            port.send(&rest, chunked)?;
            continue;
        }
        if n == 0 {
            if chunked {
                port.write_all(b"0\r\n\r\n")?;
            }
            return Ok(());
        }
        port.send(&chunk[..n], chunked)?;
    }
}

/// The request's `X-Request-Id`, which its answer's head carries back:
/// a client that connects while the tail of an earlier client's answer is
/// still on its way skips to the head with its own id.
pub fn request_id(request: &[u8]) -> Option<String> {
    let end = request.windows(4).position(|w| w == b"\r\n\r\n").unwrap_or(request.len());
    let head = String::from_utf8_lossy(&request[..end]);
    http::header(&head, "x-request-id").filter(|v| !v.is_empty() && v.len() <= 64).map(str::to_string)
}

/// An answer's head for the port (ending in the blank line), with the
/// request's id, and whether its body must go in chunks: an answer
/// without a length (a stream) is ended on the socket by closing, which
/// the port cannot do.
pub fn reframe(head: &[u8], request_id: Option<&str>) -> (String, bool) {
    let head = String::from_utf8_lossy(head);
    let head = match request_id {
        Some(id) => format!("{head}\r\nX-Request-Id: {id}"),
        None => head.into_owned(),
    };
    let has_length =
        http::header(&head, "content-length").is_some() || http::header(&head, "transfer-encoding").is_some();
    if has_length {
        (format!("{head}\r\n\r\n"), false)
    } else {
        (format!("{head}\r\nTransfer-Encoding: chunked\r\n\r\n"), true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_head_gives_its_body_length_within_the_limits() {
        assert_eq!(request_head(b"GET /v1/units HTTP/1.1\r\nHost: x\r\n").unwrap(), None);
        let get = b"GET /v1/units HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n";
        assert_eq!(request_head(get).unwrap(), Some((get.len(), 0)));
        let head = "POST /v1/x HTTP/1.1\r\ncontent-length: 4\r\n\r\n";
        assert_eq!(request_head(format!("{head}ab").as_bytes()).unwrap(), Some((head.len(), 4)));
        assert_eq!(
            request_head(b"POST / HTTP/1.1\r\nContent-Length: x\r\n\r\n").unwrap_err().to_string(),
            "bad Content-Length"
        );
        assert_eq!(request_head(&vec![b'a'; 20000]).unwrap_err().to_string(), "request head too large");
        // Only an image archive may be larger than a request body.
        let big = format!("POST /v1/units/x/start HTTP/1.1\r\nContent-Length: {}\r\n\r\n", 2 << 20);
        assert_eq!(request_head(big.as_bytes()).unwrap_err().to_string(), "request body too large");
        let load = "POST /v1/images/load?name=a HTTP/1.1\r\nContent-Length: 5000000000\r\n\r\n";
        assert_eq!(request_head(load.as_bytes()).unwrap(), Some((load.len(), 5_000_000_000)));
    }

    #[test]
    fn the_request_id_is_found_and_bounded() {
        assert_eq!(request_id(b"GET / HTTP/1.1\r\nx-request-id: 42-7\r\n\r\n").as_deref(), Some("42-7"));
        assert_eq!(request_id(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"), None);
        assert_eq!(request_id(format!("GET / HTTP/1.1\r\nX-Request-Id: {}\r\n\r\n", "a".repeat(100)).as_bytes()), None);
    }

    #[test]
    fn streams_are_chunked_and_lengths_kept() {
        let (h, chunked) = reframe(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 3", None);
        assert!(!chunked);
        assert!(h.ends_with("Content-Length: 3\r\n\r\n"));
        let (h, chunked) = reframe(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close", Some("7-1"));
        assert!(h.contains("\r\nX-Request-Id: 7-1\r\n"), "{h}");
        assert!(chunked);
        assert!(h.ends_with("Transfer-Encoding: chunked\r\n\r\n"), "{h}");
    }
}
