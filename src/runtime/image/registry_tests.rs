//! Tests of the registry client's parsing and policies (registry.rs).

use super::*;

#[test]
fn retry_after_takes_seconds_or_an_http_date() {
    // 1994-11-06 08:49:37 UTC, the example of RFC 9110.
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(784_111_777);
    assert_eq!(retry_after("7", now), Some(Duration::from_secs(7)));
    assert_eq!(retry_after(" 3600 ", now), Some(Duration::from_secs(30)), "capped");
    assert_eq!(retry_after("Sun, 06 Nov 1994 08:49:49 GMT", now), Some(Duration::from_secs(12)));
    // The obsolete forms a sender may still use.
    assert_eq!(retry_after("Sunday, 06-Nov-94 08:49:42 GMT", now), Some(Duration::from_secs(5)));
    assert_eq!(retry_after("Sun Nov  6 08:49:40 1994", now), Some(Duration::from_secs(3)));
    assert_eq!(retry_after("Sun, 06 Nov 1994 08:00:00 GMT", now), None, "already past: the usual backoff");
    assert_eq!(retry_after("Mon, 07 Nov 1994 08:49:37 GMT", now), Some(Duration::from_secs(30)), "capped");
    assert_eq!(retry_after("soon", now), None);
    assert_eq!(retry_after("-1", now), None);
}

#[test]
fn challenges() {
    let (s, p) = parse_challenge(
        r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/nginx:pull""#,
    );
    assert_eq!(s, "Bearer");
    assert_eq!(p["realm"], "https://auth.docker.io/token");
    assert_eq!(p["service"], "registry.docker.io");
    assert_eq!(p["scope"], "repository:library/nginx:pull");
    let (s, p) = parse_challenge(r#"Basic realm="Registry Realm""#);
    assert_eq!((s.as_str(), p["realm"].as_str()), ("Basic", "Registry Realm"));
}

#[test]
fn redirects_never_downgrade_to_http() {
    let from = "https://r.example/v2/x/blobs/sha256:1";
    assert_eq!(redirect_target(from, "https://s3.example/b?sig=1").unwrap(), "https://s3.example/b?sig=1");
    assert_eq!(redirect_target(from, "/other").unwrap(), "https://r.example/other");
    assert_eq!(redirect_target(from, "//cdn.example/b").unwrap(), "https://cdn.example/b");
    assert_eq!(redirect_target(from, "c").unwrap(), "https://r.example/v2/x/blobs/c");
    let e = redirect_target(from, "http://s3.example/b").unwrap_err();
    assert!(e.contains("from HTTPS to plain HTTP"), "{e}");
    assert_eq!(
        redirect_target(from, "HTTP://s3.example/b").unwrap_err().to_string(),
        "refusing a redirect from HTTPS to plain HTTP (HTTP://s3.example/b)"
    );
    assert_eq!(
        redirect_target(from, "file:///etc/passwd").unwrap_err().to_string(),
        "refusing a redirect to \"file:///etc/passwd\""
    );
    // A plain registry may redirect to plain HTTP, or up to HTTPS.
    let plain = "http://127.0.0.1:5000/v2/x/blobs/sha256:1";
    assert_eq!(redirect_target(plain, "http://127.0.0.1:9000/b").unwrap(), "http://127.0.0.1:9000/b");
    assert_eq!(redirect_target(plain, "https://s3.example/b").unwrap(), "https://s3.example/b");
}

type Seen = std::sync::Arc<Mutex<Vec<(String, bool)>>>;

/// A registry on loopback that redirects every /v2/ request to
/// /storage/blob; the paths asked for, with whether they carried an
/// Authorization header.
fn redirecting_registry() -> (u16, Seen) {
    use std::io::{BufRead, BufReader, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = std::sync::Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming().take(2) {
            let mut conn = conn.unwrap();
            let mut reader = BufReader::new(conn.try_clone().unwrap());
            let (mut path, mut auth) = (String::new(), false);
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap() == 0 || line == "\r\n" {
                    break;
                }
                if path.is_empty() {
                    path = line.split(' ').nth(1).unwrap_or("").to_string();
                }
                auth |= line.to_ascii_lowercase().starts_with("authorization:");
            }
            let answer = if path.starts_with("/v2/") {
                "HTTP/1.1 307 Temporary Redirect\r\nLocation: /storage/blob\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            } else {
                "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello"
            };
            log.lock().unwrap().push((path, auth));
            conn.write_all(answer.as_bytes()).unwrap();
        }
    });
    (port, seen)
}

#[test]
fn a_redirect_is_followed_without_the_credentials() {
    let (port, seen) = redirecting_registry();
    let reference = ImageRef::parse(&format!("127.0.0.1:{port}/x:t")).unwrap();
    let r = Registry::new(&reference, &RegistryOptions::default());
    *r.auth.lock().unwrap() = Auth::Basic("Basic bWU6c2VjcmV0".into());
    let mut resp = r.get("blobs/sha256:1", None, "blob").unwrap();
    assert_eq!(resp.body_mut().read_to_string().unwrap(), "hello");
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen, [("/v2/x/blobs/sha256:1".to_string(), true), ("/storage/blob".to_string(), false)]);
}

#[test]
fn only_the_registrys_own_challenges_are_answered() {
    let reference = ImageRef::parse("127.0.0.1:5000/x:t").unwrap();
    let r = Registry::new(&reference, &RegistryOptions::default());
    let base = r.base.clone();
    assert!(r.own_origin(&format!("{base}/v2/x/blobs/sha256:1")));
    // Where a redirect led: another host, port, or a host that only
    // begins like the registry's.
    for other in ["https://storage.example/blob", "http://127.0.0.1:50001/v2/x", "http://127.0.0.1:5000.evil/v2"] {
        assert!(!r.own_origin(other), "{other}");
    }
}

#[test]
fn credentials_never_go_to_a_plain_http_realm_of_a_secure_registry() {
    assert!(check_realm("https://auth.example/token", false, true).is_ok());
    let e = check_realm("http://auth.example/token", false, true).unwrap_err();
    assert!(e.contains("plain HTTP") && e.contains("insecure_registries"), "{e}");
    assert!(check_realm("http://auth.example/token", false, false).is_ok(), "no credentials, nothing to leak");
    assert!(check_realm("http://127.0.0.1:5000/token", true, true).is_ok(), "a plain registry's own realm");
    assert_eq!(
        check_realm("ftp://auth.example/token", false, false).unwrap_err().to_string(),
        "token service \"ftp://auth.example/token\" is not an HTTP(S) URL"
    );
}

#[test]
fn a_huge_expires_in_does_not_overflow() {
    let now = Instant::now();
    for e in [Some(u64::MAX), Some(u64::MAX / 1000), Some(i64::MAX as u64)] {
        let t = token_expiry(now, e);
        assert_eq!(t, now + Duration::from_secs(MAX_TOKEN_LIFE - 5));
    }
    assert_eq!(token_expiry(now, None), now + Duration::from_secs(55));
    assert_eq!(token_expiry(now, Some(0)), now + Duration::from_secs(5));
}

/// A registry on loopback that reads each request whole and answers the
/// first with `first` (a status line and headers), any later one with
/// 201; the request lines it got, with their Content-Length.
fn answering_registry(first: &'static str) -> (u16, Seen) {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen: Seen = std::sync::Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    std::thread::spawn(move || {
        for (i, conn) in listener.incoming().enumerate() {
            let Ok(mut conn) = conn else { return };
            conn.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
            let mut reader = BufReader::new(conn.try_clone().unwrap());
            let (mut request, mut length) = (String::new(), 0);
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if request.is_empty() {
                    request = line.trim_end().to_string();
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                }
            }
            log.lock().unwrap().push((request, length > 0));
            let mut body = vec![0; length];
            let whole = reader.read_exact(&mut body).is_ok();
            let answer = if i == 0 && whole { first } else { "HTTP/1.1 201 Created\r\n" };
            let _ = conn.write_all(format!("{answer}Content-Length: 0\r\nConnection: close\r\n\r\n").as_bytes());
        }
    });
    (port, seen)
}

/// A request whose body is a stream is sent once: a 401 (a token that
/// expired during a long push) renews the authentication and fails as a
/// transfer, for the caller to send the body again from its start; a
/// redirect is not followed. Neither sends the spent stream again.
#[test]
fn a_streamed_body_is_never_sent_again_by_a_challenge_or_a_redirect() {
    for (first, fault) in [
        ("HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm=\"r\"\r\n", "HTTP 401"),
        ("HTTP/1.1 307 Temporary Redirect\r\nLocation: /elsewhere\r\n", "HTTP 307"),
    ] {
        let (port, seen) = answering_registry(first);
        let reference = ImageRef::parse(&format!("127.0.0.1:{port}/x:t")).unwrap();
        let mut options = RegistryOptions::default();
        options.credentials.insert(format!("127.0.0.1:{port}"), ("me".into(), "secret".into()));
        let r = Registry::for_push(&reference, &options, &[]);
        let mut blob: &[u8] = b"hello";
        let url = r.url("blobs/uploads/1?digest=sha256%3A1");
        let e = r.send(Method::Put, url, &[], &mut Body::Stream(&mut blob, 5), &[], "blob sha256:1").unwrap_err();
        let text = e.to_string();
        assert!(text.contains(fault) && !text.contains("secret"), "{text}");
        if fault == "HTTP 401" {
            assert!(matches!(e, ImageError::Transfer { .. }), "the caller sends it again: {e:?}");
            assert!(matches!(*r.auth.lock().unwrap(), Auth::Basic(_)), "the credentials are taken up");
        }
        let seen = seen.lock().unwrap().clone();
        assert_eq!(seen, [("PUT /v2/x/blobs/uploads/1?digest=sha256%3A1 HTTP/1.1".to_string(), true)], "{first}");
    }
}

/// An upload's `Location` may point elsewhere (blob storage, or wherever
/// the registry says): the registry's credentials go only to the
/// registry's own origin.
#[test]
fn credentials_go_only_to_the_registrys_own_origin() {
    let (port, seen) = redirecting_registry();
    let reference = ImageRef::parse("127.0.0.1:1/x:t").unwrap();
    let r = Registry::for_push(&reference, &RegistryOptions::default(), &[]);
    *r.auth.lock().unwrap() = Auth::Basic("Basic bWU6c2VjcmV0".into());
    let elsewhere = format!("http://127.0.0.1:{port}/v2/x/blobs/uploads/1");
    r.send(Method::Get, elsewhere, &[], &mut Body::Empty, &[], "blob").unwrap();
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen, [("/v2/x/blobs/uploads/1".to_string(), false), ("/storage/blob".to_string(), false)]);
}

/// A signed URL's query (blob storage's signature) is a credential: an
/// error names the URL without it.
#[test]
fn errors_name_a_url_without_its_signed_query() {
    for first in ["HTTP/1.1 400 Bad Request\r\n", "HTTP/1.1 503 Service Unavailable\r\n"] {
        let (port, _) = answering_registry(first);
        let reference = ImageRef::parse(&format!("127.0.0.1:{port}/x:t")).unwrap();
        let r = Registry::for_push(&reference, &RegistryOptions::default(), &[]);
        let url = r.url("blobs/uploads/1?X-Amz-Signature=topsecret");
        let mut blob: &[u8] = b"hello";
        let e = r.send(Method::Put, url, &[], &mut Body::Stream(&mut blob, 5), &[], "blob sha256:1").unwrap_err();
        let text = e.to_string();
        assert!(text.contains("/v2/x/blobs/uploads/1: HTTP") && !text.contains("topsecret"), "{text}");
    }
}
