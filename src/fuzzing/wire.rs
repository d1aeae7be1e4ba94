//! What a peer on a socket or the serial port controls: a control API
//! request as the daemon reads it, an answer as `supervisorctl` reads it,
//! and the serial relay's framing.

use std::future::Future;
use std::io::Read;
use std::task::{Context, Poll, Waker};

use crate::cli::client::{Client, Dechunk, Response};
use crate::supervisor::control::http::{self, MAX_BODY, MAX_HEAD, read_request};
use crate::supervisor::control::parse_since;
use crate::supervisor::pid1::serial::{reframe, request_head, request_id};

/// Runs a future that never waits (its reader is a byte slice) to its end.
fn finish<F: Future>(future: F) -> F::Output {
    let mut future = std::pin::pin!(future);
    match future.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(out) => out,
        Poll::Pending => panic!("reading a request from memory waited"),
    }
}

/// A request as the control socket reads it: what is accepted has the body
/// its head announced, within the limits (or, for an upload, what of its
/// body came with the head, for its route to read on); its `since` is
/// judged as the logs endpoint judges it.
pub fn control_request(data: &[u8]) {
    let mut input = data;
    let Ok(request) = finish(read_request(&mut input)) else { return };
    let end = data.windows(4).position(|w| w == b"\r\n\r\n").unwrap_or_else(|| panic!("a request without a head"));
    assert!(end <= MAX_HEAD + 4096, "a head of {end} bytes was read");
    let head = std::str::from_utf8(&data[..end]).unwrap_or_else(|_| panic!("a head that is not UTF-8 was read"));
    let length = http::content_length(head).ok();
    match request.upload {
        Some(upload) => {
            assert_eq!(request.path, http::UPLOAD, "an upload to another path");
            assert_eq!(length, Some(upload), "the upload is not as long as announced");
            assert!(request.body.len() as u64 <= upload, "more of the upload than it has");
        }
        None => {
            assert!(request.body.len() <= MAX_BODY, "a body over the limit was read");
            assert_eq!(length, Some(request.body.len() as u64), "the body is not as long as announced");
        }
    }
    assert_eq!(request.body, data[end + 4..end + 4 + request.body.len()], "the body is not what was sent");
    assert!(!request.path.iter().any(String::is_empty), "an empty path segment");
    if let Some(since) = request.query.get("since") {
        let _ = parse_since(since);
    }
    let _ = request.flag("follow");
}

/// Hands out its bytes at most `piece` at a time, as a socket may.
struct Pieces<'a> {
    data: &'a [u8],
    piece: usize,
}

impl Read for Pieces<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = buf.len().min(self.piece).min(self.data.len());
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}

/// The bytes `supervisorctl` reads from its socket (or, through the
/// appliance's relay, the serial port) as the answer to the request
/// `9-9`, read whole and in small pieces: the same answer either way,
/// never more body than bytes sent, and its JSON judged. Then the bytes
/// as a body, framed in chunks as the serial relay frames streams, decode
/// to themselves however they are cut.
pub fn client_response(data: &[u8]) {
    let read = |piece: usize| {
        let mut input = Pieces { data, piece };
        let (status, first, framing) = Client::head(&mut input, "9-9")?;
        let mut body = Vec::new();
        Client::body(&mut input, &first, framing, &mut |b| body.extend_from_slice(b))?;
        Ok::<_, String>(Response { status, body })
    };
    let whole = read(usize::MAX);
    if let Ok(answer) = &whole {
        assert!(answer.body.len() <= data.len(), "more body than bytes sent");
        let _ = answer.json();
        let _ = answer.error();
    }
    let cut = read(7);
    assert_eq!(
        whole.as_ref().map(|a| (a.status, &a.body)).ok(),
        cut.as_ref().map(|a| (a.status, &a.body)).ok(),
        "the answer read differently in pieces"
    );

    let size = 1 + data.first().map_or(0, |b| *b as usize % 17);
    let mut wire = Vec::new();
    for chunk in data.chunks(size) {
        wire.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        wire.extend_from_slice(chunk);
        wire.extend_from_slice(b"\r\n");
    }
    wire.extend_from_slice(b"0\r\n\r\n");
    let mut decoder = Dechunk::default();
    let mut out = Vec::new();
    for piece in wire.chunks(size + 2) {
        out.extend(decoder.feed(piece).unwrap_or_else(|e| panic!("chunks as the relay frames them refused: {e}")));
    }
    assert!(decoder.done(), "the last chunk was not seen");
    assert_eq!(out, data, "chunks decoded to other bytes");
}

/// The serial relay's reading of requests from the port: a complete
/// head is within the bytes, ends in its blank line and is found again in
/// exactly those bytes; an incomplete one is no longer than the head limit; the
/// request id is bounded and on one line; an answer's head reframed for
/// the port ends its head.
pub fn serial_framing(data: &[u8]) {
    match request_head(data) {
        Ok(Some((head, _))) => {
            assert!(head <= data.len(), "a head longer than the bytes");
            assert!(data[..head].ends_with(b"\r\n\r\n"), "a head that does not end in a blank line");
            assert!(request_head(&data[..head]).unwrap_or(None).is_some_and(|h| h.0 == head), "the head alone differs");
        }
        Ok(None) => assert!(
            data.len() <= MAX_HEAD || data.windows(4).any(|w| w == b"\r\n\r\n"),
            "{} bytes without a head are still waited on",
            data.len()
        ),
        Err(_) => {}
    }
    let id = request_id(data);
    if let Some(id) = &id {
        assert!(!id.is_empty() && id.len() <= 64 && !id.contains('\n'), "request id {id:?}");
    }
    let end = data.windows(4).position(|w| w == b"\r\n\r\n").unwrap_or(data.len());
    let (head, _) = reframe(&data[..end], id.as_deref());
    assert!(head.ends_with("\r\n\r\n"), "a reframed head that does not end");
}
