//! A plain HTTP/1.0 client for the tests that hammer a published port.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// The body of `GET /` at `to` (2 s to connect, 5 s to answer), or why not.
pub fn get(to: SocketAddr) -> Result<String, String> {
    let mut s = TcpStream::connect_timeout(&to, Duration::from_secs(2)).map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(5))).map_err(|e| e.to_string())?;
    s.write_all(b"GET / HTTP/1.0\r\n\r\n").map_err(|e| format!("send: {e}"))?;
    answer(s)
}

/// The body of the 200 answer read to the end of `s`, or why not.
pub fn answer(mut s: TcpStream) -> Result<String, String> {
    let mut text = String::new();
    s.read_to_string(&mut text).map_err(|e| format!("read: {e}"))?;
    match text.split_once("\r\n\r\n") {
        Some((head, body)) if head.starts_with("HTTP/1.") && head.contains(" 200 ") => Ok(body.trim().to_string()),
        _ => Err(format!("answer {text:?}")),
    }
}
