//! An HTTP proxy in front of a registry, for what a plain registry cannot
//! show: it can demand Bearer tokens from a token service of its own (the
//! distribution spec's token flow), count requests, cut blob downloads
//! off in the middle, like a registry killed mid-layer, or stall them
//! there with the connection open, like a registry that hangs.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

#[derive(Default)]
pub struct Stats {
    pub token_requests: AtomicU32,
    pub blob_requests: AtomicU32,
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
}

impl Options {
    pub fn plain() -> Options {
        Options { bearer: None, cut: None, fail: None, stall: None }
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
