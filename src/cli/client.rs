//! The control socket's client: one HTTP/1.1 request per connection over
//! the unix socket (see docs/api.md).

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

/// The longest answer head read (supervisord's are a few hundred bytes).
const MAX_ANSWER_HEAD: usize = 64 << 10;
/// The most bytes skipped before our answer's head: the tail of an earlier
/// client's answer over the serial port, which the relay stops copying as
/// soon as the next request comes.
const MAX_SKIPPED: usize = 1 << 20;

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
pub use crate::names::percent_encode as encode;

impl Client {
    fn connect(&self, method: &str, target: &str) -> Result<(UnixStream, String), String> {
        self.connect_with(method, target, &[])
    }

    fn connect_with(&self, method: &str, target: &str, body: &[u8]) -> Result<(UnixStream, String), String> {
        self.connect_sending(method, target, &mut &body[..], body.len() as u64)
    }

    /// Connects and sends the request, its body (of `length` bytes) read
    /// from `body`.
    fn connect_sending(
        &self,
        method: &str,
        target: &str,
        body: &mut dyn Read,
        length: u64,
    ) -> Result<(UnixStream, String), String> {
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
        // An id of this request, which the appliance's serial relay puts in
        // its answer (see `head`).
        let id = format!(
            "{}-{}",
            std::process::id(),
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos())
        );
        let head = format!(
            "{method} {target} HTTP/1.1\r\nHost: supervisord\r\nX-Request-Id: {id}\r\nContent-Length: {length}\r\n\r\n"
        );
        let sent = s.write_all(head.as_bytes()).and_then(|()| {
            let copied = std::io::copy(&mut body.take(length), &mut s)?;
            if copied < length {
                return Err(std::io::Error::other(format!("the body ended after {copied} of {length} bytes")));
            }
            Ok(())
        });
        // A server that answers before reading (a refusal) closes early:
        // its answer is still there to read.
        match sent {
            Err(e) if !matches!(e.kind(), std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset) => {
                return Err(format!("{}: {e}", self.socket.display()));
            }
            _ => {}
        }
        Ok((s, id))
    }

    /// Reads the head; the status, what of the body came with it, and
    /// how the body ends. Over the appliance's serial port the tail of an
    /// earlier client's answer may come first: bytes before a head, and
    /// heads naming another request's id, are skipped.
    pub(crate) fn head(s: &mut dyn Read, id: &str) -> Result<(u16, Vec<u8>, Framing), String> {
        let mut buf = Vec::new();
        // What is skipped is only ever the tail of one earlier answer: a
        // peer that sends endless bytes without our head, or a head that
        // never ends, is an error, not a memory or time sink.
        let mut skipped = 0;
        loop {
            if let Some(start) = buf.windows(7).position(|w| w == b"HTTP/1.") {
                if let Some(len) = buf[start..].windows(4).position(|w| w == b"\r\n\r\n") {
                    let head = String::from_utf8_lossy(&buf[start..start + len]).into_owned();
                    let rest = buf[start + len + 4..].to_vec();
                    match parse_head(&head, id) {
                        Some((status, framing)) => return Ok((status, rest, framing)),
                        None => {
                            skipped += start + len + 4;
                            buf = rest;
                            continue;
                        }
                    }
                }
                if buf.len() - start > MAX_ANSWER_HEAD {
                    return Err(format!("supervisord's answer has a head of over {MAX_ANSWER_HEAD} bytes"));
                }
                skipped += start;
                buf.drain(..start);
            } else {
                // The last bytes may be the start of a head.
                let before = buf.len().saturating_sub(6);
                skipped += before;
                buf.drain(..before);
            }
            if skipped > MAX_SKIPPED {
                return Err(format!("no answer from supervisord in the first {MAX_SKIPPED} bytes it sent"));
            }
            let mut chunk = [0u8; 4096];
            let n = s.read(&mut chunk).map_err(|e| e.to_string())?;
            if n == 0 {
                return Err("supervisord closed the connection".into());
            }
            buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// Hands the body to `each` as it comes, until its end (the length,
    /// the last chunk, or the connection's end).
    pub(crate) fn body(
        s: &mut dyn Read,
        first: &[u8],
        mut framing: Framing,
        each: &mut dyn FnMut(&[u8]),
    ) -> Result<(), String> {
        let mut bytes = first.to_vec();
        loop {
            let done = match &mut framing {
                Framing::Length(left) => {
                    let take = bytes.len().min(*left);
                    each(&bytes[..take]);
                    *left -= take;
                    *left == 0
                }
                Framing::Chunked(d) => {
                    let out = d.feed(&bytes)?;
                    each(&out);
                    d.done()
                }
                Framing::Close => {
                    each(&bytes);
                    false
                }
            };
            if done {
                return Ok(());
            }
            let mut chunk = [0u8; 8192];
            match s.read(&mut chunk) {
                Ok(0) if matches!(framing, Framing::Close) => return Ok(()),
                Ok(0) => return Err("supervisord closed the connection in the answer".into()),
                Ok(n) => bytes = chunk[..n].to_vec(),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => bytes.clear(),
                Err(e) => return Err(e.to_string()),
            }
        }
    }

    pub fn request(&self, method: &str, target: &str) -> Result<Response, String> {
        self.request_with(method, target, &[])
    }

    /// [`Client::request`] with a body (JSON).
    pub fn request_with(&self, method: &str, target: &str, body: &[u8]) -> Result<Response, String> {
        let (mut s, id) = self.connect_with(method, target, body)?;
        let (status, first, framing) = Client::head(&mut s, &id)?;
        let mut body = Vec::new();
        Client::body(&mut s, &first, framing, &mut |b| body.extend_from_slice(b))?;
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
        let (s, id) = self.connect(method, target)?;
        Client::answer_stream(s, &id, each)
    }

    /// [`Client::stream_request`] of a POST whose body, `length` bytes, is
    /// read from `body` as it is sent (an image archive).
    pub fn upload(
        &self,
        target: &str,
        body: &mut dyn Read,
        length: u64,
        each: &mut dyn FnMut(&[u8]),
    ) -> Result<Option<Response>, String> {
        let (s, id) = self.connect_sending("POST", target, body, length)?;
        Client::answer_stream(s, &id, each)
    }

    /// A GET whose answer body is read as it comes (a tar): the reader,
    /// or the error answer whole.
    pub fn download(&self, target: &str) -> Result<Result<BodyReader, Response>, String> {
        let (mut s, id) = self.connect("GET", target)?;
        let (status, first, framing) = Client::head(&mut s, &id)?;
        if status != 200 {
            let mut body = Vec::new();
            Client::body(&mut s, &first, framing, &mut |b| body.extend_from_slice(b))?;
            return Ok(Err(Response { status, body }));
        }
        Ok(Ok(BodyReader { s, first: Some(first), pending: Vec::new(), at: 0, framing, ended: false }))
    }

    /// A request whose body, `length` bytes, is read from `body` as it is
    /// sent, and whose answer is read whole.
    pub fn send_body(&self, method: &str, target: &str, body: &mut dyn Read, length: u64) -> Result<Response, String> {
        let (mut s, id) = self.connect_sending(method, target, body, length)?;
        let (status, first, framing) = Client::head(&mut s, &id)?;
        let mut body = Vec::new();
        Client::body(&mut s, &first, framing, &mut |b| body.extend_from_slice(b))?;
        Ok(Response { status, body })
    }

    fn answer_stream(mut s: UnixStream, id: &str, each: &mut dyn FnMut(&[u8])) -> Result<Option<Response>, String> {
        let (status, first, framing) = Client::head(&mut s, id)?;
        if status != 200 || matches!(framing, Framing::Length(_)) {
            let mut body = Vec::new();
            Client::body(&mut s, &first, framing, &mut |b| body.extend_from_slice(b))?;
            return Ok(Some(Response { status, body }));
        }
        Client::body(&mut s, &first, framing, each)?;
        Ok(None)
    }
}

/// An answer's body as a reader, whatever its framing.
pub struct BodyReader {
    s: UnixStream,
    /// What came with the head, not yet through the framing.
    first: Option<Vec<u8>>,
    /// Body bytes received and not yet read.
    pending: Vec<u8>,
    at: usize,
    framing: Framing,
    ended: bool,
}

impl BodyReader {
    /// Raw bytes from the connection, decoded into `pending`; false at
    /// the body's end.
    fn fill(&mut self, raw: Vec<u8>, closed: bool) -> std::io::Result<bool> {
        let body = match &mut self.framing {
            Framing::Length(left) => {
                let take = raw.len().min(*left);
                *left -= take;
                self.ended = *left == 0;
                if closed && take == 0 && !self.ended {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        "supervisord closed in the answer",
                    ));
                }
                raw[..take].to_vec()
            }
            Framing::Chunked(d) => {
                let out = d.feed(&raw).map_err(std::io::Error::other)?;
                self.ended = d.done();
                if closed && out.is_empty() && !self.ended {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        "supervisord closed in the answer",
                    ));
                }
                out
            }
            Framing::Close => {
                self.ended = closed;
                raw
            }
        };
        self.pending = body;
        self.at = 0;
        Ok(!self.pending.is_empty() || !self.ended)
    }
}

impl Read for BodyReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if let Some(first) = self.first.take() {
            self.fill(first, false)?;
        }
        loop {
            if self.at < self.pending.len() {
                let n = buf.len().min(self.pending.len() - self.at);
                buf[..n].copy_from_slice(&self.pending[self.at..self.at + n]);
                self.at += n;
                if self.at == self.pending.len() {
                    self.pending.clear();
                    self.at = 0;
                }
                return Ok(n);
            }
            if self.ended {
                return Ok(0);
            }
            let mut chunk = vec![0u8; 64 * 1024];
            let n = loop {
                match self.s.read(&mut chunk) {
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    r => break r?,
                }
            };
            chunk.truncate(n);
            self.fill(chunk, n == 0)?;
        }
    }
}

/// A head's status and framing; None when it names another request's id
/// (an earlier client's answer, to skip).
fn parse_head(head: &str, id: &str) -> Option<(u16, Framing)> {
    let header = |name| crate::supervisor::control::http::header(head, name);
    if header("x-request-id").is_some_and(|other| other != id) {
        return None;
    }
    let status = head.split(' ').nth(1).and_then(|c| c.parse().ok())?;
    let framing = if header("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        Framing::Chunked(Dechunk::default())
    } else if let Some(n) = header("content-length").and_then(|v| v.parse().ok()) {
        Framing::Length(n)
    } else {
        Framing::Close
    };
    Some((status, framing))
}

/// How an answer's body ends. supervisord's own socket closes after each
/// answer; the appliance's serial control port cannot, and so frames
/// streams in chunks.
pub(crate) enum Framing {
    Length(usize),
    Chunked(Dechunk),
    Close,
}

/// The longest chunk size line (size and extensions) a [`Dechunk`] takes.
const SIZE_LINE: usize = 64;

/// An incremental decoder of HTTP/1.1 chunked bodies.
#[derive(Debug, Default)]
pub struct Dechunk {
    pending: Vec<u8>,
    /// Bytes of the current chunk still to come (then its CRLF).
    left: usize,
    in_chunk: bool,
    done: bool,
}

impl Dechunk {
    /// The body bytes in `input` (what ends mid-line is kept for later).
    pub fn feed(&mut self, input: &[u8]) -> Result<Vec<u8>, String> {
        self.pending.extend_from_slice(input);
        let mut out = Vec::new();
        let mut at = 0;
        while !self.done {
            let rest = &self.pending[at..];
            if self.in_chunk {
                let take = rest.len().min(self.left);
                out.extend_from_slice(&rest[..take]);
                at += take;
                self.left -= take;
                if self.left > 0 {
                    break;
                }
                if self.pending.len() - at < 2 {
                    break;
                }
                if &self.pending[at..at + 2] != b"\r\n" {
                    return Err("bad chunked answer: no CRLF after a chunk".into());
                }
                at += 2;
                self.in_chunk = false;
            } else {
                // The same limit whether the line came whole or not: 64
                // bytes before its CRLF (of which a lone CR may be here).
                let Some(end) = rest.windows(2).position(|w| w == b"\r\n") else {
                    if rest.len() > SIZE_LINE + 1 {
                        return Err("bad chunked answer: chunk size line too long".into());
                    }
                    break;
                };
                if end > SIZE_LINE {
                    return Err("bad chunked answer: chunk size line too long".into());
                }
                let line = String::from_utf8_lossy(&rest[..end]);
                let size = line.split(';').next().unwrap_or("").trim();
                let size = usize::from_str_radix(size, 16).map_err(|_| format!("bad chunk size {size:?}"))?;
                at += end + 2;
                if size == 0 {
                    // Trailers are not used by supervisord.
                    self.done = true;
                } else {
                    self.left = size;
                    self.in_chunk = true;
                }
            }
        }
        self.pending.drain(..at);
        Ok(out)
    }

    pub fn done(&self) -> bool {
        self.done
    }
}

/// The run directory of a socket (`<run-dir>/control.sock`).
pub fn run_dir(socket: &Path) -> PathBuf {
    socket.parent().map_or_else(|| PathBuf::from("/run/supervisor"), Path::to_path_buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads_of_other_requests_are_skipped() {
        assert!(parse_head("HTTP/1.1 200 OK\r\nX-Request-Id: 1-2\r\nContent-Length: 3", "9-9").is_none());
        let (status, framing) =
            parse_head("HTTP/1.1 404 Not Found\r\nX-Request-Id: 9-9\r\nContent-Length: 3", "9-9").unwrap();
        assert_eq!(status, 404);
        assert!(matches!(framing, Framing::Length(3)));
        // supervisord's own socket names no id.
        let (_, framing) = parse_head("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked", "9-9").unwrap();
        assert!(matches!(framing, Framing::Chunked(_)));
    }

    /// Endless bytes, and a read past `limit` fails the test.
    struct Endless {
        byte: u8,
        given: usize,
        limit: usize,
    }

    impl Read for Endless {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            assert!(self.given < self.limit, "read on after {} bytes", self.given);
            buf.fill(self.byte);
            self.given += buf.len();
            Ok(buf.len())
        }
    }

    #[test]
    fn endless_bytes_without_a_head_or_in_one_are_refused() {
        let mut garbage = Endless { byte: b'x', given: 0, limit: 2 * MAX_SKIPPED };
        let e = Client::head(&mut garbage, "9-9").err().unwrap();
        assert_eq!(e, "no answer from supervisord in the first 1048576 bytes it sent");
        let mut endless_head = std::io::Cursor::new(b"HTTP/1.1 200 OK\r\nX-A: ".to_vec()).chain(Endless {
            byte: b'a',
            given: 0,
            limit: 2 * MAX_ANSWER_HEAD,
        });
        let e = Client::head(&mut endless_head, "9-9").err().unwrap();
        assert_eq!(e, "supervisord's answer has a head of over 65536 bytes");
    }

    #[test]
    fn chunks_decode_however_they_are_cut() {
        let wire = b"5\r\nhello\r\n7;x=1\r\n, world\r\n0\r\n\r\n";
        for cut in 1..wire.len() {
            let mut d = Dechunk::default();
            let mut out = d.feed(&wire[..cut]).unwrap();
            out.extend(d.feed(&wire[cut..]).unwrap());
            assert_eq!(out, b"hello, world", "cut at {cut}");
            assert!(d.done());
        }
        let mut d = Dechunk::default();
        assert_eq!(d.feed(b"3\r\nabc\r\n").unwrap(), b"abc");
        assert!(!d.done());
        assert_eq!(Dechunk::default().feed(b"zz\r\n").unwrap_err().to_string(), "bad chunk size \"zz\"");
        assert_eq!(
            Dechunk::default().feed(b"2\r\nabXY").unwrap_err().to_string(),
            "bad chunked answer: no CRLF after a chunk"
        );
    }

    #[test]
    fn a_size_line_is_judged_the_same_however_it_is_cut() {
        // Found by the client_response fuzz target: a 75-byte size line
        // ("0" and CRs) was refused in pieces and taken whole.
        for (pad, taken) in [(63, true), (64, false), (200, false)] {
            let line = [b"0".as_slice(), &vec![b'\r'; pad], b"\r\n\r\n"].concat();
            let whole = Dechunk::default().feed(&line).is_ok();
            assert_eq!(whole, taken, "{pad} CRs, whole");
            for cut in 1..line.len() {
                let mut d = Dechunk::default();
                let parts = d.feed(&line[..cut]).and_then(|_| d.feed(&line[cut..]));
                assert_eq!(parts.is_ok(), taken, "{pad} CRs, cut at {cut}");
            }
        }
    }
}
