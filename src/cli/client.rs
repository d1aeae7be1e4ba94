//! The control socket's client: one HTTP/1.1 request per connection over
//! the unix socket (see docs/api.md).

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

pub struct Client {
    pub socket: PathBuf,
}

pub struct Response {
    pub status: u16,
    pub body: Vec<u8>,
}

impl Response {
    pub fn json(&self) -> Result<serde_json::Value, String> {
        serde_json::from_slice(&self.body).map_err(|e| format!("bad answer from supervisord: {e}"))
    }

    /// The `error` of an error answer.
    pub fn error(&self) -> String {
        self.json()
            .ok()
            .and_then(|v| v["error"].as_str().map(String::from))
            .unwrap_or_else(|| format!("supervisord answered {}", self.status))
    }
}

/// Percent-encodes a query or path value.
pub fn encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl Client {
    fn connect(&self, method: &str, target: &str) -> Result<UnixStream, String> {
        let mut s = UnixStream::connect(&self.socket).map_err(|e| {
            let hint = match e.kind() {
                std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused => {
                    " (is supervisord running? --socket or SUPERVISOR_SOCKET name another socket)"
                }
                std::io::ErrorKind::PermissionDenied => " (the control socket is root's)",
                _ => "",
            };
            format!("{}: {e}{hint}", self.socket.display())
        })?;
        let req = format!("{method} {target} HTTP/1.1\r\nHost: supervisord\r\nContent-Length: 0\r\n\r\n");
        // A server that answers before reading (a refusal) closes early:
        // its answer is still there to read.
        match s.write_all(req.as_bytes()) {
            Err(e) if !matches!(e.kind(), std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset) => {
                return Err(format!("{}: {e}", self.socket.display()));
            }
            _ => {}
        }
        Ok(s)
    }

    /// Reads the head; the status and what of the body came with it, and
    /// the body's length when given.
    fn head(&self, s: &mut UnixStream) -> Result<(u16, Vec<u8>, Option<usize>), String> {
        let mut buf = Vec::new();
        loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buf[..i]).into_owned();
                let status = head.split(' ').nth(1).and_then(|c| c.parse().ok()).ok_or("bad answer")?;
                let length = head.lines().find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length").then(|| v.trim().parse().ok())?
                });
                return Ok((status, buf[i + 4..].to_vec(), length));
            }
            let mut chunk = [0u8; 4096];
            let n = s.read(&mut chunk).map_err(|e| e.to_string())?;
            if n == 0 {
                return Err("supervisord closed the connection".into());
            }
            buf.extend_from_slice(&chunk[..n]);
        }
    }

    pub fn request(&self, method: &str, target: &str) -> Result<Response, String> {
        let mut s = self.connect(method, target)?;
        let (status, mut body, length) = self.head(&mut s)?;
        match length {
            Some(n) => {
                while body.len() < n {
                    let mut chunk = vec![0u8; n - body.len()];
                    let got = s.read(&mut chunk).map_err(|e| e.to_string())?;
                    if got == 0 {
                        break;
                    }
                    body.extend_from_slice(&chunk[..got]);
                }
            }
            None => {
                s.read_to_end(&mut body).map_err(|e| e.to_string())?;
            }
        }
        Ok(Response { status, body })
    }

    /// A streamed answer: `each` gets the body as it comes, until the
    /// stream ends. An error answer is returned whole instead.
    pub fn stream(&self, target: &str, each: &mut dyn FnMut(&[u8])) -> Result<Option<Response>, String> {
        self.stream_request("GET", target, each)
    }

    /// [`Client::stream`] with another method.
    pub fn stream_request(
        &self,
        method: &str,
        target: &str,
        each: &mut dyn FnMut(&[u8]),
    ) -> Result<Option<Response>, String> {
        let mut s = self.connect(method, target)?;
        let (status, first, length) = self.head(&mut s)?;
        if status != 200 || length.is_some() {
            let mut body = first;
            s.read_to_end(&mut body).map_err(|e| e.to_string())?;
            return Ok(Some(Response { status, body }));
        }
        each(&first);
        let mut chunk = [0u8; 8192];
        loop {
            match s.read(&mut chunk) {
                Ok(0) => return Ok(None),
                Ok(n) => each(&chunk[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.to_string()),
            }
        }
    }
}

/// The run directory of a socket (`<run-dir>/control.sock`).
pub fn run_dir(socket: &Path) -> PathBuf {
    socket.parent().map_or_else(|| PathBuf::from("/run/supervisor"), Path::to_path_buf)
}
