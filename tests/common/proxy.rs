//! An HTTP proxy in front of a registry, for what a plain registry cannot
//! show: it can demand Bearer tokens from a token service of its own (the
//! distribution spec's token flow), count requests, cut blob downloads
//! off in the middle, like a registry killed mid-layer, or stall them
//! there with the connection open, like a registry that hangs; and do any
//! [`Fault`] to layer blobs or manifests a number of times.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

/// What the proxy does to a response instead of passing it on.
#[derive(Debug, Clone, Copy)]
pub enum Fault {
    /// Answer with this status instead (429 comes with `Retry-After: 1`).
    Status(u16),
    /// Send this many bytes of the body, then reset the connection (RST).
    Reset(usize),
    /// Send this many bytes of the body, then nothing, the connection
    /// open (until the proxy is dropped).
    Stall(usize),
    /// Say in Content-Length that the body is this many bytes longer
    /// (negative: shorter) than it is, send it whole and close.
    Length(i64),
    /// Send the body, then zeros without end (no Content-Length), until
    /// the client goes away.
    Endless,
}

/// Blobs with a body longer than this are layers; shorter ones (configs)
/// are never faulted, so that a fault's count is the layer's.
pub const LAYER_MIN: usize = 16 << 10;

#[derive(Default)]
pub struct Stats {
    pub token_requests: AtomicU32,
    pub blob_requests: AtomicU32,
    /// Requests for layer blobs (see [`LAYER_MIN`]).
    pub layer_requests: AtomicU32,
    pub layer_faults_left: AtomicU32,
    pub manifest_faults_left: AtomicU32,
    pub cuts_left: AtomicU32,
    pub failures_left: AtomicU32,
    pub manifest_requests: AtomicU32,
    pub stop: AtomicBool,
}

pub struct Proxy {
    pub port: u16,
    pub stats: Arc<Stats>,
}

pub struct Options {
    /// Require a Bearer token, which the token service gives for these
    /// Basic credentials.
    pub bearer: Option<(String, String)>,
    /// Cut this many blob responses off after this many body bytes.
    pub cut: Option<(u32, usize)>,
    /// Answer this many manifest requests with this status (429 comes
    /// with `Retry-After: 1`).
    pub fail: Option<(u32, u16)>,
    /// Stop sending every blob response after this many body bytes, and
    /// keep its connection open (until the proxy is dropped).
    pub stall: Option<usize>,
    /// Do this to this many layer blob responses.
    pub layers: Option<(u32, Fault)>,
    /// Do this to this many manifest responses.
    pub manifests: Option<(u32, Fault)>,
}

impl Options {
    pub fn plain() -> Options {
        Options { bearer: None, cut: None, fail: None, stall: None, layers: None, manifests: None }
    }

    /// `fault` on the first `times` layer blob responses.
    pub fn layers(times: u32, fault: Fault) -> Options {
        Options { layers: Some((times, fault)), ..Options::plain() }
    }
}

impl Proxy {
    pub fn start(upstream: u16, options: Options) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let stats = Arc::new(Stats::default());
        if let Some((n, _)) = options.cut {
            stats.cuts_left.store(n, Ordering::SeqCst);
        }
        if let Some((n, _)) = options.fail {
            stats.failures_left.store(n, Ordering::SeqCst);
        }
        if let Some((n, _)) = options.layers {
            stats.layer_faults_left.store(n, Ordering::SeqCst);
        }
        if let Some((n, _)) = options.manifests {
            stats.manifest_faults_left.store(n, Ordering::SeqCst);
        }
        let st = stats.clone();
        let options = Arc::new(options);
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if st.stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let (st, options) = (st.clone(), options.clone());
                std::thread::spawn(move || serve(conn, upstream, port, &options, &st));
            }
        });
        Proxy { port, stats }
    }

    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stats.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn serve(conn: TcpStream, upstream: u16, port: u16, options: &Options, stats: &Stats) {
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let mut conn = conn;
    // One request per connection: every response says Connection: close.
    let mut head = Vec::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        if line == "\r\n" {
            break;
        }
        head.push(line.trim_end().to_string());
    }
    // The connection alone: a reset must close its last descriptor.
    drop(reader);
    let Some(request_line) = head.first() else { return };
    let path = request_line.split(' ').nth(1).unwrap_or("/").to_string();
    let header = |name: &str| {
        head.iter().skip(1).find_map(|h| {
            let (k, v) = h.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
        })
    };
    if let Some((user, pass)) = &options.bearer {
        use base64::Engine as _;
        let basic = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}")));
        if path.starts_with("/token") {
            stats.token_requests.fetch_add(1, Ordering::SeqCst);
            let ok = header("authorization").as_deref() == Some(basic.as_str()) && path.contains("scope=repository");
            let resp = if ok {
                let body = r#"{"token":"test-token","expires_in":300}"#;
                format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                )
            } else {
                "HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_string()
            };
            let _ = conn.write_all(resp.as_bytes());
            return;
        }
        if header("authorization").as_deref() != Some("Bearer test-token") {
            let repo = path
                .strip_prefix("/v2/")
                .and_then(|p| p.rsplit_once("/manifests/").or(p.rsplit_once("/blobs/")))
                .map(|(r, _)| r);
            let scope = repo.map(|r| format!(",scope=\"repository:{r}:pull\"")).unwrap_or_default();
            let resp = format!(
                "HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Bearer realm=\"http://127.0.0.1:{port}/token\",service=\"test-registry\"{scope}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            );
            let _ = conn.write_all(resp.as_bytes());
            return;
        }
    }
    if path.contains("/manifests/") {
        stats.manifest_requests.fetch_add(1, Ordering::SeqCst);
        if let Some((_, status)) = options.fail
            && stats.failures_left.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok()
        {
            let retry = if status == 429 { "Retry-After: 1\r\n" } else { "" };
            let resp = format!("HTTP/1.1 {status} Failing\r\n{retry}Content-Length: 0\r\nConnection: close\r\n\r\n");
            let _ = conn.write_all(resp.as_bytes());
            return;
        }
    }
    let is_blob = path.contains("/blobs/");
    if is_blob {
        stats.blob_requests.fetch_add(1, Ordering::SeqCst);
    }
    let mut up = TcpStream::connect(("127.0.0.1", upstream)).unwrap();
    let accept = header("accept").map(|a| format!("Accept: {a}\r\n")).unwrap_or_default();
    let req = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{upstream}\r\n{accept}Connection: close\r\n\r\n");
    up.write_all(req.as_bytes()).unwrap();
    let mut response = Vec::new();
    let _ = up.read_to_end(&mut response);
    let body_len = response.windows(4).position(|w| w == b"\r\n\r\n").map_or(0, |i| response.len() - i - 4);
    let ok = response.starts_with(b"HTTP/1.1 200") || response.starts_with(b"HTTP/1.0 200");
    let take = |left: &AtomicU32| left.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok();
    let fault = if is_blob && ok && body_len > LAYER_MIN {
        stats.layer_requests.fetch_add(1, Ordering::SeqCst);
        options.layers.filter(|_| take(&stats.layer_faults_left)).map(|(_, f)| f)
    } else if path.contains("/manifests/") && ok {
        options.manifests.filter(|_| take(&stats.manifest_faults_left)).map(|(_, f)| f)
    } else {
        None
    };
    if let Some(fault) = fault {
        return send_faulty(conn, &response, fault, stats);
    }
    if let (true, Some((_, after))) = (is_blob, options.cut) {
        let cut = stats.cuts_left.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok();
        if cut {
            let body_start = response.windows(4).position(|w| w == b"\r\n\r\n").map_or(0, |i| i + 4);
            let end = (body_start + after).min(response.len());
            let _ = conn.write_all(&response[..end]);
            let _ = conn.shutdown(std::net::Shutdown::Both);
            return;
        }
    }
    if let (true, Some(after)) = (is_blob, options.stall) {
        let body_start = response.windows(4).position(|w| w == b"\r\n\r\n").map_or(0, |i| i + 4);
        if response.len() > body_start + after {
            let _ = conn.write_all(&response[..body_start + after]);
            while !stats.stop.load(Ordering::SeqCst) {
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            return;
        }
    }
    let _ = conn.write_all(&response);
}

/// Sends `response` (a whole HTTP/1.1 response) with `fault` done to it.
fn send_faulty(mut conn: TcpStream, response: &[u8], fault: Fault, stats: &Stats) {
    let split = response.windows(4).position(|w| w == b"\r\n\r\n").map_or(response.len(), |i| i + 4);
    let (head, body) = response.split_at(split);
    let head = String::from_utf8_lossy(head);
    // The head without its Content-Length and Connection (and the blank
    // line): the faulty response's own go in, and it is the connection's
    // last, so that nothing reads past what it says.
    let lines: Vec<&str> = head
        .split("\r\n")
        .filter(|l| !l.is_empty())
        .filter(|l| !["content-length:", "connection:"].iter().any(|h| l.to_ascii_lowercase().starts_with(h)))
        .collect();
    let with = |lines: &[&str], extra: &str| {
        format!("{}\r\nConnection: close\r\n{extra}\r\n", lines.join("\r\n")).into_bytes()
    };
    match fault {
        Fault::Status(status) => {
            let retry = if status == 429 { "Retry-After: 1\r\n" } else { "" };
            let resp = format!("HTTP/1.1 {status} Failing\r\n{retry}Content-Length: 0\r\nConnection: close\r\n\r\n");
            let _ = conn.write_all(resp.as_bytes());
        }
        Fault::Reset(after) => {
            let _ = conn.write_all(&with(&lines, &format!("Content-Length: {}\r\n", body.len())));
            let _ = conn.write_all(&body[..after.min(body.len())]);
            let _ = conn.flush();
            let linger = libc::linger { l_onoff: 1, l_linger: 0 };
            // SAFETY: setsockopt on a socket we own, with a linger of the
            // size given; closing it with a zero linger sends a RST.
            unsafe {
                libc::setsockopt(
                    std::os::fd::AsRawFd::as_raw_fd(&conn),
                    libc::SOL_SOCKET,
                    libc::SO_LINGER,
                    (&linger as *const libc::linger).cast(),
                    std::mem::size_of::<libc::linger>() as libc::socklen_t,
                );
            }
            drop(conn);
        }
        Fault::Stall(after) => {
            let _ = conn.write_all(&with(&lines, &format!("Content-Length: {}\r\n", body.len())));
            let _ = conn.write_all(&body[..after.min(body.len())]);
            while !stats.stop.load(Ordering::SeqCst) {
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
        }
        Fault::Length(delta) => {
            let said = (body.len() as i64 + delta).max(0);
            let _ = conn.write_all(&with(&lines, &format!("Content-Length: {said}\r\n")));
            let _ = conn.write_all(body);
            let _ = conn.shutdown(std::net::Shutdown::Both);
        }
        Fault::Endless => {
            let _ = conn.write_all(&with(&lines, ""));
            let _ = conn.write_all(body);
            let zeros = vec![0u8; 64 << 10];
            // Until the client stops reading (a write fails) or the proxy goes.
            while !stats.stop.load(Ordering::SeqCst) {
                if conn.write_all(&zeros).is_err() {
                    break;
                }
            }
        }
    }
}
