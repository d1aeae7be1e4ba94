//! docs/api.md "Protocol": request heads are limited to 16 KiB and bodies
//! to 1 MiB; past either the client gets a 400 and the daemon goes on.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use crate::common::daemon::Daemon;
use crate::common::{self, text};
use crate::root_only;

/// Sends `request` whole, then reads the answer to its end.
fn exchange(d: &Daemon, request: &[u8]) -> String {
    let mut s = UnixStream::connect(d.socket()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(20))).unwrap();
    // The daemon may answer (and close) before it has read all of a
    // request it refuses: a failed write is no failure of the test.
    let _ = s.write_all(request);
    let mut answer = Vec::new();
    let _ = s.read_to_end(&mut answer);
    text(&answer)
}

fn head_of(size: usize) -> Vec<u8> {
    let start = "GET /v1/version HTTP/1.1\r\nHost: x\r\nX-Pad: ";
    let pad = size - start.len() - 4;
    format!("{start}{}\r\n\r\n", "a".repeat(pad)).into_bytes()
}

#[test]
fn a_request_head_or_body_over_the_limit_gets_400_and_the_daemon_keeps_answering() {
    root_only!("a_request_head_or_body_over_the_limit_gets_400_and_the_daemon_keeps_answering");
    let d = Daemon::start();
    // Just under 16 KiB is served...
    let ok = exchange(&d, &head_of(16 * 1024 - 64));
    assert!(ok.starts_with("HTTP/1.1 200 ") && ok.contains("\"version\""), "{ok}");
    // ...and past it refused.
    let big = exchange(&d, &head_of(17 * 1024));
    assert!(big.starts_with("HTTP/1.1 400 "), "{big}");
    assert!(big.contains("\"error\":\"request head too large\"") || big.contains("request head too large"), "{big}");
    let mut body = b"POST /v1/reload HTTP/1.1\r\nHost: x\r\nContent-Length: 2000000\r\n\r\n".to_vec();
    body.extend(std::iter::repeat_n(b'x', 2_000_000));
    let big = exchange(&d, &body);
    assert!(big.starts_with("HTTP/1.1 400 ") && big.contains("request body too large"), "{big}");
    // A body of exactly 1 MiB is read (and the endpoint answers).
    let mut body = b"POST /v1/reload?dry_run=1 HTTP/1.1\r\nHost: x\r\nContent-Length: 1048576\r\n\r\n".to_vec();
    body.extend(std::iter::repeat_n(b'x', 1 << 20));
    let fits = exchange(&d, &body);
    assert!(fits.starts_with("HTTP/1.1 200 ") && fits.contains("\"dry_run\""), "{fits}");

    let name = common::unique_name("cl");
    d.write_unit(&name, &super::support::sh_unit("trap 'exit 0' TERM; sleep 100000 & wait"));
    d.wait_state(&name, "running");
    assert_eq!(d.ctl(&["status", &name]).status.code(), Some(0));
}
