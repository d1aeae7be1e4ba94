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
//! the host side goes away (the port reports a hangup) the request so far
//! and any answer in progress are dropped: the next client starts clean.

use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};

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
                Ok(mut port) => {
                    tracing::info!("serving the control protocol on the serial port {name:?}");
                    relay(&mut port, &socket);
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

/// What waiting on the port gave.
enum Wait {
    Data,
    Hangup,
    Idle,
}

fn wait(port: &impl AsFd, flags: PollFlags, timeout: Duration) -> Wait {
    let mut fds = [PollFd::new(port.as_fd(), flags)];
    let ms = PollTimeout::try_from(timeout).unwrap_or(PollTimeout::MAX);
    match poll(&mut fds, ms) {
        Ok(0) | Err(_) => Wait::Idle,
        Ok(_) => {
            let got = fds[0].revents().unwrap_or(PollFlags::empty());
            if got.intersects(flags) {
                Wait::Data
            } else if got.contains(PollFlags::POLLHUP) {
                Wait::Hangup
            } else {
                Wait::Idle
            }
        }
    }
}

/// Requests and answers until the port fails.
fn relay(port: &mut std::fs::File, socket: &Path) {
    let mut buf: Vec<u8> = Vec::new();
    loop {
        match wait(port, PollFlags::POLLIN, Duration::from_secs(3600)) {
            Wait::Hangup => {
                // Nobody on the host side: forget any partial request.
                buf.clear();
                std::thread::sleep(IDLE);
                continue;
            }
            Wait::Idle => continue,
            Wait::Data => {}
        }
        let mut chunk = [0u8; 16384];
        match port.read(&mut chunk) {
            Ok(0) => {
                buf.clear();
                std::thread::sleep(IDLE);
                continue;
            }
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock || e.kind() == std::io::ErrorKind::Interrupted => {
                continue;
            }
            Err(e) => return tracing::warn!("serial control: read: {e}"),
        }
        match request_len(&buf) {
            Ok(None) => continue,
            Ok(Some(n)) => {
                let request: Vec<u8> = buf.drain(..n).collect();
                // One request per client connection: whatever followed is
                // not ours to guess at.
                buf.clear();
                match answer(port, socket, &request) {
                    Ok(()) => {}
                    // Nothing was sent yet: the client gets an error, not silence.
                    Err(Failed::Before(e)) => {
                        let _ = write_all(port, &error_answer(503, "Service Unavailable", &e));
                    }
                    Err(Failed::During(e)) => tracing::debug!("serial control: {e}"),
                }
            }
            Err(e) => {
                buf.clear();
                let _ = write_all(port, &error_answer(400, "Bad Request", &e));
            }
        }
    }
}

const MAX_REQUEST: usize = (1 << 20) + 16 * 1024;

/// The length of the complete request at the start of `buf`, if it is
/// all there.
pub fn request_len(buf: &[u8]) -> Result<Option<usize>, String> {
    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        return if buf.len() > 16 * 1024 { Err("request head too large".into()) } else { Ok(None) };
    };
    let head = String::from_utf8_lossy(&buf[..end]);
    let mut length = 0usize;
    for line in head.split("\r\n").skip(1) {
        if let Some((k, v)) = line.split_once(':') {
            if k.trim().eq_ignore_ascii_case("content-length") {
                length = v.trim().parse().map_err(|_| "bad Content-Length".to_string())?;
            }
        }
    }
    let total = end + 4 + length;
    if total > MAX_REQUEST {
        return Err("request too large".into());
    }
    Ok((buf.len() >= total).then_some(total))
}

/// Writes all of `bytes` to the non-blocking port; fails when the host
/// side goes away.
fn write_all(port: &mut std::fs::File, mut bytes: &[u8]) -> Result<(), String> {
    while !bytes.is_empty() {
        match port.write(bytes) {
            Ok(n) => bytes = &bytes[n..],
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if let Wait::Hangup = wait(port, PollFlags::POLLOUT, Duration::from_secs(5)) {
                    return Err("the host side went away".into());
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(format!("write: {e}")),
        }
    }
    Ok(())
}

/// A whole JSON error answer.
fn error_answer(status: u16, reason: &str, message: &str) -> Vec<u8> {
    let body = serde_json::json!({ "error": message }).to_string() + "\n";
    format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Why an answer failed: before any of it was sent, or during.
enum Failed {
    Before(String),
    During(String),
}

/// How long a request waits for the control socket (supervisord starting,
/// or between two lives of it).
const SOCKET_WAIT: Duration = Duration::from_secs(30);

/// Passes one request to the control socket and its answer back.
fn answer(port: &mut std::fs::File, socket: &Path, request: &[u8]) -> Result<(), Failed> {
    let deadline = std::time::Instant::now() + SOCKET_WAIT;
    let mut control = loop {
        match UnixStream::connect(socket) {
            Ok(c) => break c,
            Err(e) if std::time::Instant::now() >= deadline => {
                return Err(Failed::Before(format!("supervisord does not answer yet ({}: {e})", socket.display())));
            }
            Err(_) => {
                if let Wait::Hangup = wait(port, PollFlags::empty(), Duration::from_millis(100)) {
                    return Err(Failed::During("the host side went away".into()));
                }
            }
        }
    };
    control.write_all(request).map_err(|e| Failed::Before(format!("{}: {e}", socket.display())))?;
    answer_from(port, &mut control).map_err(Failed::During)
}

/// Copies the control socket's answer to the port (reframed).
fn answer_from(port: &mut std::fs::File, control: &mut UnixStream) -> Result<(), String> {
    let mut head = Vec::new();
    let mut chunked = false;
    let mut chunk = [0u8; 16384];
    loop {
        // The port's hangup ends the answer early (a client gone mid-stream).
        let mut fds = [PollFd::new(control.as_fd(), PollFlags::POLLIN), PollFd::new(port.as_fd(), PollFlags::empty())];
        let _ = poll(&mut fds, PollTimeout::from(1000u16));
        if fds[1].revents().is_some_and(|r| r.contains(PollFlags::POLLHUP)) {
            return Err("the host side went away in an answer".into());
        }
        if fds[0].revents().is_none_or(|r| r.is_empty()) {
            continue;
        }
        let n = match control.read(&mut chunk) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(format!("control socket: {e}")),
        };
        if head.is_empty() || head.windows(4).all(|w| w != b"\r\n\r\n") {
            if n == 0 {
                return Err("the control socket closed before its answer".into());
            }
            head.extend_from_slice(&chunk[..n]);
            let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") else { continue };
            let (reframed, is_chunked) = reframe(&head[..end]);
            chunked = is_chunked;
            write_all(port, reframed.as_bytes())?;
            let rest = head[end + 4..].to_vec();
            head.truncate(end + 4);
            send(port, &rest, chunked)?;
            continue;
        }
        if n == 0 {
            if chunked {
                write_all(port, b"0\r\n\r\n")?;
            }
            return Ok(());
        }
        send(port, &chunk[..n], chunked)?;
    }
}

fn send(port: &mut std::fs::File, bytes: &[u8], chunked: bool) -> Result<(), String> {
    if bytes.is_empty() {
        return Ok(());
    }
    if chunked {
        write_all(port, format!("{:x}\r\n", bytes.len()).as_bytes())?;
        write_all(port, bytes)?;
        write_all(port, b"\r\n")
    } else {
        write_all(port, bytes)
    }
}

/// An answer's head for the port (ending in the blank line), and whether
/// its body must go in chunks: an answer without a length (a stream) is
/// ended on the socket by closing, which the port cannot do.
pub fn reframe(head: &[u8]) -> (String, bool) {
    let head = String::from_utf8_lossy(head);
    let has_length = head.split("\r\n").skip(1).any(|l| {
        l.split_once(':').is_some_and(|(k, _)| {
            k.trim().eq_ignore_ascii_case("content-length") || k.trim().eq_ignore_ascii_case("transfer-encoding")
        })
    });
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
    fn a_request_is_complete_with_its_body() {
        assert_eq!(request_len(b"GET /v1/units HTTP/1.1\r\nHost: x\r\n").unwrap(), None);
        let get = b"GET /v1/units HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n";
        assert_eq!(request_len(get).unwrap(), Some(get.len()));
        let post = b"POST /v1/x HTTP/1.1\r\ncontent-length: 4\r\n\r\nab";
        assert_eq!(request_len(post).unwrap(), None);
        let head = "POST /v1/x HTTP/1.1\r\ncontent-length: 4\r\n\r\n";
        assert_eq!(request_len(format!("{head}abcdEXTRA").as_bytes()).unwrap(), Some(head.len() + 4));
        assert!(request_len(b"POST / HTTP/1.1\r\nContent-Length: x\r\n\r\n").is_err());
        assert!(request_len(&vec![b'a'; 20000]).is_err());
    }

    #[test]
    fn streams_are_chunked_and_lengths_kept() {
        let (h, chunked) = reframe(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 3");
        assert!(!chunked);
        assert!(h.ends_with("Content-Length: 3\r\n\r\n"));
        let (h, chunked) = reframe(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close");
        assert!(chunked);
        assert!(h.ends_with("Transfer-Encoding: chunked\r\n\r\n"), "{h}");
    }
}
