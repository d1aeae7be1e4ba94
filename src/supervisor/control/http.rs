//! Just enough HTTP/1.1 for the control socket: one request per
//! connection, bounded headers and body, answers with `Connection: close`
//! (streams end when the connection does), so `curl --unix-socket` works.
//! Bounded in time too: a request must arrive whole within
//! [`READ_TIMEOUT`], and a client that stops reading its answer for
//! [`WRITE_TIMEOUT`] is dropped, so that no client holds a connection (of
//! the [`MAX_CONNECTIONS`]) or the daemon's memory by doing nothing.

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

pub const MAX_HEAD: usize = 16 * 1024;
pub const MAX_BODY: usize = 1 << 20;
/// The path of a request whose body is not read whole but handed to its
/// route as it comes: an image archive (`supervisorctl load`), as large
/// as the store has room for. The other is `PUT /v1/units/NAME/archive`
/// (`cp` into a container: as large as the room where it goes).
pub const UPLOAD: [&str; 3] = ["v1", "images", "load"];
/// From the connection to the end of its request (a client that sends
/// nothing, or half a request, is dropped then).
pub const READ_TIMEOUT: Duration = Duration::from_secs(10);
/// How long one write of an answer may wait for the client to read.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// Connections served at once; more wait in the socket's backlog until one
/// ends (an idle one within [`READ_TIMEOUT`]).
pub const MAX_CONNECTIONS: usize = 64;
/// Of those, the most that peers other than root may hold: the rest stay
/// root's.
pub const MAX_OTHERS: usize = 32;

/// Why a request is refused (the text of its 400 answer).
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    #[error("bad Content-Length")]
    BadLength,
    #[error("request body too large")]
    BodyTooLarge,
    #[error("request head too large")]
    HeadTooLarge,
    #[error("read the request: {0}")]
    Read(#[source] std::io::Error),
    /// The client closed its end in the `head` or the `body`.
    #[error("connection closed in the {0}")]
    Closed(&'static str),
    #[error("request head is not UTF-8")]
    NotUtf8,
    #[error("bad request line")]
    RequestLine,
    #[error("since: {0:?} is neither a time (2026-11-23T07:00:00Z) nor a duration (10m)")]
    Since(String),
    #[error("since: {0:?} is before 1970: give a later time, or no since for the whole log")]
    SinceTooEarly(String),
}

#[derive(Debug)]
pub struct Request {
    pub method: String,
    /// Path segments, percent-decoded.
    pub path: Vec<String>,
    pub query: BTreeMap<String, String>,
    pub body: Vec<u8>,
    /// An upload's length: `body` holds what of it came with the head,
    /// the rest is still to be read from the connection.
    pub upload: Option<u64>,
    /// The `Accept` header (the metrics listener's choice of format).
    pub accept: Option<String>,
}

impl Request {
    pub fn flag(&self, key: &str) -> bool {
        self.query.get(key).is_some_and(|v| v.is_empty() || v == "1" || v == "true")
    }
}

pub fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => {
                let hex = std::str::from_utf8(&b[i + 1..i + 3]).ok().and_then(|h| u8::from_str_radix(h, 16).ok());
                match hex {
                    Some(v) => {
                        out.push(v);
                        i += 3;
                        continue;
                    }
                    None => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A header's value in a head (its first line is the request or status
/// line), by name, case-insensitively.
pub fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().skip(1).find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// A request target's path segments, percent-decoded, and its query.
fn split_target(target: &str) -> (Vec<String>, &str) {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    (path.split('/').filter(|s| !s.is_empty()).map(percent_decode).collect(), query)
}

/// Whether a request head is an upload's ([`UPLOAD`]).
fn is_upload(head: &str) -> bool {
    let mut parts = head.split("\r\n").next().unwrap_or("").split(' ');
    let (method, path) = (parts.next(), parts.next().map(|t| split_target(t).0));
    match (method, path) {
        (Some("POST"), Some(p)) => p == UPLOAD,
        (Some("PUT"), Some(p)) => p.len() == 4 && p[0] == "v1" && p[1] == "units" && p[3] == "archive",
        _ => false,
    }
}

/// A request head's body length (0 without Content-Length), bounded by
/// [`MAX_BODY`] unless it is an [`UPLOAD`].
pub fn content_length(head: &str) -> Result<u64, RequestError> {
    let length = match header(head, "content-length") {
        Some(v) => v.parse().map_err(|_| RequestError::BadLength)?,
        None => 0,
    };
    if length > MAX_BODY as u64 && !is_upload(head) {
        return Err(RequestError::BodyTooLarge);
    }
    Ok(length)
}

/// Reads one request; an error text for a 400 answer. Generic over the
/// reader so that the fuzz entry points feed it bytes.
pub async fn read_request<R: AsyncRead + Unpin>(stream: &mut R) -> Result<Request, RequestError> {
    let mut buf = Vec::new();
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            // Wherever the read that brought the end stopped: a head that
            // came in one piece is held to the limit as well.
            if i + 4 > MAX_HEAD {
                return Err(RequestError::HeadTooLarge);
            }
            break i;
        }
        if buf.len() > MAX_HEAD {
            return Err(RequestError::HeadTooLarge);
        }
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk).await.map_err(RequestError::Read)?;
        if n == 0 {
            return Err(RequestError::Closed("request"));
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = std::str::from_utf8(&buf[..head_end]).map_err(|_| RequestError::NotUtf8)?;
    let mut parts = head.split("\r\n").next().unwrap_or("").split(' ');
    let (method, target) = match (parts.next(), parts.next(), parts.next()) {
        (Some(m), Some(t), Some(v)) if v.starts_with("HTTP/1.") => (m.to_string(), t.to_string()),
        _ => return Err(RequestError::RequestLine),
    };
    let length = content_length(head)?;
    let accept = header(head, "accept").map(str::to_string);
    let mut body = buf[head_end + 4..].to_vec();
    let (path, query) = split_target(&target);
    let query = query
        .split('&')
        .filter(|s| !s.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect();
    if is_upload(head) {
        body.truncate(usize::try_from(length).unwrap_or(usize::MAX));
        return Ok(Request { method, path, query, body, upload: Some(length), accept });
    }
    // Not an upload: within MAX_BODY.
    let length = length as usize;
    while body.len() < length {
        let mut chunk = vec![0u8; (length - body.len()).min(65536)];
        let n = stream.read(&mut chunk).await.map_err(RequestError::Read)?;
        if n == 0 {
            return Err(RequestError::Closed("body"));
        }
        body.extend_from_slice(&chunk[..n]);
    }
    body.truncate(length);
    Ok(Request { method, path, query, body, upload: None, accept })
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        422 => "Unprocessable Entity",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        507 => "Insufficient Storage",
        _ => "Unknown",
    }
}

/// A whole answer.
pub async fn respond(stream: &mut UnixStream, status: u16, content_type: &str, body: &[u8]) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        reason(status),
        body.len()
    );
    send(stream, head.as_bytes()).await?;
    send(stream, body).await?;
    stream.shutdown().await
}

/// Writes `bytes`, or fails if the client has not taken them within
/// [`WRITE_TIMEOUT`] (it stopped reading: its answer would pile up).
pub async fn send(stream: &mut UnixStream, bytes: &[u8]) -> std::io::Result<()> {
    match tokio::time::timeout(WRITE_TIMEOUT, stream.write_all(bytes)).await {
        Ok(done) => done,
        Err(_) => Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!("the client read nothing for {}s", WRITE_TIMEOUT.as_secs()),
        )),
    }
}

/// Resolves when the client hangs up. A stream that has nothing to write
/// for a long time (`logs -f` of a quiet unit, `events`) learns so only
/// here, and frees its connection; what the client sends meanwhile is
/// read and dropped.
pub async fn hangup(stream: &UnixStream) {
    let mut buf = [0u8; 1024];
    loop {
        if stream.readable().await.is_err() {
            return;
        }
        match stream.try_read(&mut buf) {
            Ok(0) => return,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(_) => return,
        }
    }
}

pub async fn json(stream: &mut UnixStream, status: u16, value: &impl serde::Serialize) -> std::io::Result<()> {
    let mut body = serde_json::to_vec_pretty(value).unwrap_or_default();
    body.push(b'\n');
    respond(stream, status, "application/json", &body).await
}

/// `{"error": message}` with `status`.
pub async fn error(stream: &mut UnixStream, status: u16, message: &str) -> std::io::Result<()> {
    json(stream, status, &serde_json::json!({ "error": message })).await
}

/// The head of a streamed answer; the body follows until the connection
/// closes.
pub async fn stream_head(stream: &mut UnixStream, content_type: &str) -> std::io::Result<()> {
    let head = format!("HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nConnection: close\r\n\r\n");
    send(stream, head.as_bytes()).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("2026-11-23T07%3A07%3A46Z"), "2026-11-23T07:07:46Z");
        assert_eq!(percent_decode("a%2"), "a%2");
        assert_eq!(percent_decode("%zz"), "%zz");
        assert_eq!(percent_decode("%"), "%");
    }
}
