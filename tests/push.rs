//! `supervisorctl push` end to end, as root: an image pulled into the
//! daemon's store from one registry is pushed to another that wants Basic
//! auth, read back by skopeo with the same digest; pushed again (every
//! blob already there), to a second repository (every blob mounted), and
//! with wrong or no credentials (refused, saying so).

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::daemon::Daemon;
use common::registry::{Registry, auth_file};
use serde_json::Value;

const USER: &str = "pusher";
const PASS: &str = "s3cret";

fn ok(out: &Output, what: &str) -> String {
    assert!(out.status.success(), "{what}: {}\n{}", common::text(&out.stderr), common::text(&out.stdout));
    common::text(&out.stdout)
}

fn skopeo(args: &[&str]) -> Output {
    Command::new("skopeo").args(args).output().expect("skopeo (apt-get install skopeo)")
}

/// The manifest at `reference` as the registry serves it, by skopeo.
fn raw_manifest(reference: &str) -> Vec<u8> {
    let creds = format!("--creds={USER}:{PASS}");
    let out = skopeo(&["inspect", "--raw", "--tls-verify=false", &creds, &format!("docker://{reference}")]);
    ok(&out, "skopeo inspect --raw");
    out.stdout
}

fn blobs_by_how(report: &Value) -> Vec<(String, String)> {
    report["blobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| (b["digest"].as_str().unwrap().to_string(), b["how"].as_str().unwrap().to_string()))
        .collect()
}

#[test]
fn push_to_a_registry_with_basic_auth_and_read_it_back() {
    if !common::require_root("push_to_a_registry_with_basic_auth_and_read_it_back") {
        return;
    }
    let fx = common::fixtures();
    let source = Registry::start(None);
    source.push(&format!("oci:{}:layered", fx.join("layout").display()), "src/app:v1", false);
    let target = Registry::start(Some((USER, PASS)));
    let dir = tempfile::tempdir().unwrap();
    let auth = auth_file(dir.path(), &target.host(), USER, PASS);
    let daemon = Daemon::start_configured(&format!("authfile = {:?}\n", auth.display().to_string()), |_| {});
    let image = format!("{}/src/app:v1", source.host());
    let pulled = ok(&daemon.ctl(&["pull", &image]), "pull");
    let digest = pulled.lines().find_map(|l| l.strip_prefix("digest: ")).expect("pull prints the digest").to_string();

    // Small chunks: the layers go in PATCHes, the config (under 1k) in one PUT.
    let one = format!("{}/one/app:v1", target.host());
    let out = daemon.ctl(&["push", "--chunk-size", "1k", "--json", &image, &one]);
    let report: Value = serde_json::from_str(&ok(&out, "push")).unwrap();
    let stderr = common::text(&out.stderr);
    assert!(stderr.contains(": pushed"), "a progress line per blob off a terminal:\n{stderr}");
    assert_eq!(report["manifest_digest"], digest.as_str());

    // The registry serves the very manifest: same digest, read by skopeo.
    let raw = raw_manifest(&one);
    assert_eq!(common::sha256(&raw), digest, "the pushed manifest's digest is the image ID");
    let manifest: Value = serde_json::from_slice(&raw).unwrap();
    let mut sizes = vec![(manifest["config"]["digest"].clone(), manifest["config"]["size"].as_u64().unwrap())];
    for l in manifest["layers"].as_array().unwrap() {
        sizes.push((l["digest"].clone(), l["size"].as_u64().unwrap()));
    }
    let blobs = report["blobs"].as_array().unwrap();
    assert_eq!(blobs.len(), sizes.len(), "{report}");
    for (digest, size) in &sizes {
        let b = blobs.iter().find(|b| b["digest"] == *digest).unwrap_or_else(|| panic!("{digest} not pushed"));
        assert_eq!(b["how"], "uploaded", "{b}");
        assert_eq!(b["chunks"].as_u64().unwrap(), if *size > 1024 { size.div_ceil(1024) } else { 0 }, "{b}");
    }
    assert!(sizes.iter().any(|(_, s)| *s > 1024), "a layer over the chunk size covers the chunked upload");
    let copy = dir.path().join("copy");
    let out = skopeo(&[
        "copy",
        "-q",
        "--src-tls-verify=false",
        &format!("--src-creds={USER}:{PASS}"),
        &format!("docker://{one}"),
        &format!("oci:{}:v1", copy.display()),
    ]);
    ok(&out, "skopeo copy to an OCI layout");
    let index: Value = serde_json::from_slice(&std::fs::read(copy.join("index.json")).unwrap()).unwrap();
    assert_eq!(index["manifests"][0]["digest"], digest.as_str());

    // Again: every blob is there already; nothing is uploaded.
    let out = daemon.ctl(&["push", "--json", &image, &one]);
    let again: Value = serde_json::from_str(&ok(&out, "push again")).unwrap();
    for (d, how) in blobs_by_how(&again) {
        assert_eq!(how, "present", "{d}");
    }
    assert!(common::text(&out.stderr).contains("already in the registry"), "{}", common::text(&out.stderr));

    // A second repository of the same registry: mounted from the first.
    let two = format!("{}/two/app:v2", target.host());
    let out = daemon.ctl(&["push", &image, &two]);
    assert!(ok(&out, "push to two").contains(&format!("digest: {digest}")));
    let stderr = common::text(&out.stderr);
    assert_eq!(stderr.matches("mounted from one/app").count(), sizes.len(), "every blob mounted:\n{stderr}");
    assert_eq!(common::sha256(&raw_manifest(&two)), digest);
    assert_linked(&target.storage(), "two/app", &sizes.iter().map(|(d, _)| d.as_str().unwrap()).collect::<Vec<_>>());

    // Wrong and missing credentials, offline on a store of its own.
    let store = dir.path().join("store");
    let wrong = dir.path().join("wrong");
    std::fs::create_dir(&wrong).unwrap();
    let wrong_auth = auth_file(&wrong, &target.host(), USER, "nope");
    let offline = |authfile: &Path, args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_supervisorctl"))
            .arg("--store")
            .arg(&store)
            .arg("--authfile")
            .arg(authfile)
            .args(args)
            .output()
            .unwrap()
    };
    ok(&offline(&wrong_auth, &["pull", &image]), "offline pull");
    let three = format!("{}/three/app:v1", target.host());
    let out = offline(&wrong_auth, &["push", &image, &three]);
    assert_eq!(out.status.code(), Some(1), "{}", common::text(&out.stderr));
    let stderr = common::text(&out.stderr);
    assert!(stderr.contains(&format!("{}/three/app", target.host())) && stderr.contains("refused"), "{stderr}");
    let out = offline(&dir.path().join("none.json"), &["push", &image, &three]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = common::text(&out.stderr);
    assert!(stderr.contains("access denied (401)") && stderr.contains("no credentials"), "{stderr}");
    // Offline with the right credentials: the same image ID again.
    let out = offline(&auth, &["push", &image, &three]);
    assert!(ok(&out, "offline push").contains(&format!("digest: {digest}")));
    assert_eq!(common::sha256(&raw_manifest(&three)), digest);
    // A digest as the destination is refused: the manifest names itself.
    let out = offline(&auth, &["push", &image, &format!("{}/three/app@{digest}", target.host())]);
    assert_eq!(out.status.code(), Some(1));
    assert!(common::text(&out.stderr).contains("not a digest"), "{}", common::text(&out.stderr));
}

/// Each of `blobs` is linked into `repository` in the registry's storage
/// (distribution's layout: `_layers/sha256/<hex>/link`).
fn assert_linked(storage: &Path, repository: &str, blobs: &[&str]) {
    let layers = storage.join("docker/registry/v2/repositories").join(repository).join("_layers/sha256");
    for b in blobs {
        let hex = b.strip_prefix("sha256:").unwrap();
        assert!(layers.join(hex).join("link").is_file(), "{b} is not in {repository}");
    }
}

/// A front for a registry that answers the first `fail` blob uploads
/// (`PATCH`es and `PUT`s of a blob; with `patches_only`, `PATCH`es
/// past a blob's first chunk, so that a resumed session has some) with 503 and
/// passes everything else on as it came; how many it failed, and how many
/// upload sessions were opened (`POST`), are counted.
struct FlakyFront {
    port: u16,
    failed: std::sync::Arc<std::sync::atomic::AtomicU32>,
    sessions: std::sync::Arc<std::sync::atomic::AtomicU32>,
}

impl FlakyFront {
    fn start(upstream: u16, fail: u32, patches_only: bool) -> FlakyFront {
        use std::io::{BufRead, BufReader, Read, Write};
        use std::sync::atomic::Ordering;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let failed = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
        let sessions = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
        let (count, posts) = (failed.clone(), sessions.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { continue };
                let (count, posts) = (count.clone(), posts.clone());
                std::thread::spawn(move || {
                    let mut reader = BufReader::new(conn.try_clone().unwrap());
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
                    let length = head
                        .iter()
                        .find_map(|h| {
                            h.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_string())
                        })
                        .and_then(|v| v.parse::<usize>().ok())
                        .unwrap_or(0);
                    let mut body = vec![0; length];
                    if reader.read_exact(&mut body).is_err() {
                        return;
                    }
                    let line = head[0].clone();
                    if line.starts_with("POST ") && line.contains("/blobs/uploads/") {
                        posts.fetch_add(1, Ordering::SeqCst);
                    }
                    let put = line.starts_with("PUT ") && line.contains("digest=") && !patches_only;
                    let later = head.iter().any(|h| {
                        h.to_ascii_lowercase()
                            .strip_prefix("content-range:")
                            .is_some_and(|r| !r.trim().starts_with("0-"))
                    });
                    let upload = (line.starts_with("PATCH ") && (later || !patches_only)) || put;
                    if upload
                        && count
                            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| (n < fail).then_some(n + 1))
                            .is_ok()
                    {
                        let _ = conn
                            .write_all(b"HTTP/1.1 503 Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
                        return;
                    }
                    let mut up = std::net::TcpStream::connect(("127.0.0.1", upstream)).unwrap();
                    let mut request = String::new();
                    for h in &head {
                        if !h.to_ascii_lowercase().starts_with("connection:") {
                            request += &format!("{h}\r\n");
                        }
                    }
                    request += "Connection: close\r\n\r\n";
                    up.write_all(request.as_bytes()).unwrap();
                    up.write_all(&body).unwrap();
                    let mut response = Vec::new();
                    let _ = up.read_to_end(&mut response);
                    let _ = conn.write_all(&response);
                });
            }
        });
        FlakyFront { port, failed, sessions }
    }

    fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

#[test]
fn a_broken_upload_is_sent_again_and_a_registry_that_keeps_failing_is_named() {
    if !common::require_root("a_broken_upload_is_sent_again_and_a_registry_that_keeps_failing_is_named") {
        return;
    }
    use std::sync::atomic::Ordering;
    let fx = common::fixtures();
    let registry = Registry::start(None);
    registry.push(&format!("oci:{}:layered", fx.join("layout").display()), "src/app:v1", false);
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let ctl = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_supervisorctl")).arg("--store").arg(&store).args(args).output().unwrap()
    };
    let image = format!("{}/src/app:v1", registry.host());
    let digest =
        ok(&ctl(&["pull", &image]), "pull").lines().find_map(|l| l.strip_prefix("digest: ").map(String::from)).unwrap();
    // Two uploads fail: each blob is sent again, from its start, and the
    // push succeeds with the image ID.
    let front = FlakyFront::start(registry.port, 2, false);
    let dest = format!("{}/dst/app:v1", front.host());
    assert!(ok(&ctl(&["push", &image, &dest]), "push through failures").contains(&format!("digest: {digest}")));
    assert_eq!(front.failed.load(Ordering::SeqCst), 2, "the front failed two uploads");
    let out = skopeo(&["inspect", "--raw", "--tls-verify=false", &format!("docker://{}/dst/app:v1", registry.host())]);
    assert_eq!(common::sha256(&ok(&out, "skopeo inspect").into_bytes()), digest);
    // A chunk past the first fails: the session says how far it got, and
    // the upload goes on in it (one session per blob, none opened again).
    let front = FlakyFront::start(registry.port, 1, true);
    let dest = format!("{}/chunked/app:v1", front.host());
    let out = ctl(&["push", "--chunk-size", "1k", "--json", &image, &dest]);
    let report: Value = serde_json::from_str(&ok(&out, "push through a broken chunk")).unwrap();
    assert_eq!(front.failed.load(Ordering::SeqCst), 1, "the front failed a chunk");
    let blobs = report["blobs"].as_array().unwrap();
    assert!(blobs.iter().all(|b| b["how"] == "uploaded"), "{report}");
    assert_eq!(front.sessions.load(Ordering::SeqCst) as usize, blobs.len(), "a session per blob: {report}");
    let out =
        skopeo(&["inspect", "--raw", "--tls-verify=false", &format!("docker://{}/chunked/app:v1", registry.host())]);
    assert_eq!(common::sha256(&ok(&out, "skopeo inspect").into_bytes()), digest);
    // Every upload fails: the error names the destination, the blob, the
    // status and the tries.
    let front = FlakyFront::start(registry.port, u32::MAX, false);
    let out = ctl(&["push", &image, &format!("{}/other/app:v1", front.host())]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = common::text(&out.stderr);
    assert!(
        stderr.contains(&format!("push {}/other/app: blob sha256:", front.host()))
            && stderr.contains("HTTP 503")
            && stderr.contains("3 attempts"),
        "{stderr}"
    );
}
