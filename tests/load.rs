//! Images into a running daemon without a registry, as root: `supervisorctl
//! load` streams an archive (made by skopeo) over the control socket, and
//! units run from what it loaded.

mod common;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use common::daemon::{Daemon, busybox};
use common::text;

/// `busybox()` copied by skopeo to `dest` (`oci-archive:PATH:NAME`, ...).
fn skopeo_copy(dest: &str) {
    let out = Command::new("skopeo").args(["copy", "-q", &busybox(), dest]).output().expect("skopeo (Debian: skopeo)");
    assert!(out.status.success(), "skopeo copy {dest}: {}", text(&out.stderr));
}

fn store_tmp(d: &Daemon) -> PathBuf {
    d.dir.path().join("state/images/tmp")
}

fn tmp_files(d: &Daemon) -> Vec<(PathBuf, u64)> {
    std::fs::read_dir(store_tmp(d))
        .unwrap()
        .flatten()
        .map(|e| (e.path(), e.metadata().map_or(0, |m| m.len())))
        .collect()
}

/// Waits until `what` holds of the store's tmp/ (within 20 s).
fn wait_tmp(d: &Daemon, what: &str, pred: impl Fn(&[(PathBuf, u64)]) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !pred(&tmp_files(d)) {
        assert!(Instant::now() < deadline, "tmp/ never {what}: {:?}", tmp_files(d));
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn load_takes_the_names_an_archive_carries_and_units_run_from_them() {
    root_only!("load_takes_the_names_an_archive_carries_and_units_run_from_them");
    let d = Daemon::start();
    let dir = tempfile::tempdir().unwrap();
    let at = |f: &str| dir.path().join(f).to_str().unwrap().to_string();
    let tag = common::unique_name("v");
    let (oci, docker, bare) = (at("named-oci.tar"), at("docker.tar"), at("bare-oci.tar"));
    skopeo_copy(&format!("oci-archive:{oci}:example.com/loaded/busybox:{tag}"));
    skopeo_copy(&format!("docker-archive:{docker}:example.com/loaded/saved:{tag}"));
    skopeo_copy(&format!("oci-archive:{bare}:{tag}"));

    // The names the archives carry: podman's and skopeo's OCI ref name,
    // docker save's RepoTags.
    for (file, name) in [(&oci, "busybox"), (&docker, "saved")] {
        let out = d.ctl(&["load", file]);
        assert!(out.status.success(), "load {file}: {}", text(&out.stderr));
        assert_eq!(text(&out.stdout), format!("Loaded image: example.com/loaded/{name}:{tag}\n"));
    }
    // A bare tag names no image: refused with what to do, nothing stored.
    let out = d.ctl(&["load", &bare]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("image 1 of 1 has no name") && err.contains("--name"), "{err}");
    let out = d.ctl(&["load", "--name", &format!("example.com/loaded/named:{tag}"), &bare]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), format!("Loaded image: example.com/loaded/named:{tag}\n"));
    // Something else is refused, and says why.
    let out = d.ctl(&["load", &d.dir.path().join("supervisord.toml").display().to_string()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("not a readable tar archive"), "{}", text(&out.stderr));

    let images = text(&d.ctl(&["images"]).stdout);
    for name in ["busybox", "saved", "named"] {
        assert!(images.contains(&format!("example.com/loaded/{name}:{tag}")), "{images}");
    }
    // example.com is never asked: the loaded image is in the store.
    let unit = common::unique_name("loaded");
    d.write_unit(
        &unit,
        &format!(
            "[container]\nimage = \"example.com/loaded/saved:{tag}\"\ncommand = [\"sh\", \"-c\", \"echo from-the-archive; exec sleep 100000\"]\n"
        ),
    );
    d.wait_state(&unit, "running");
    d.wait_log(&unit, None, "from-the-archive");
    assert!(tmp_files(&d).is_empty(), "left in the store's tmp/: {:?}", tmp_files(&d));
}

/// The request as `supervisorctl load` sends it, by hand.
fn load_head(length: u64) -> String {
    format!("POST /v1/images/load HTTP/1.1\r\nHost: x\r\nContent-Length: {length}\r\n\r\n")
}

fn answer(s: &mut UnixStream) -> String {
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

#[test]
fn an_archive_is_received_onto_disk_as_it_comes_and_removed_when_its_client_goes() {
    root_only!("an_archive_is_received_onto_disk_as_it_comes_and_removed_when_its_client_goes");
    let d = Daemon::start();
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("busybox.tar");
    skopeo_copy(&format!("oci-archive:{}:example.com/streamed/busybox:v1", archive.display()));
    let bytes = std::fs::read(&archive).unwrap();
    let half = bytes.len() / 2;
    // Larger than any other request's body may be (1 MiB).
    assert!(bytes.len() > 1 << 20, "a test archive of {} bytes is too small", bytes.len());

    // Half of it, then a pause: what came is on disk in the store's tmp/
    // (not held in memory), and the rest completes the load.
    let mut s = UnixStream::connect(d.socket()).unwrap();
    s.write_all(load_head(bytes.len() as u64).as_bytes()).unwrap();
    s.write_all(&bytes[..half]).unwrap();
    wait_tmp(&d, "had the first half", |files| files.len() == 1 && files[0].1 == half as u64);
    s.write_all(&bytes[half..]).unwrap();
    let out = answer(&mut s);
    assert!(out.starts_with("HTTP/1.1 200 OK"), "{out}");
    assert!(out.contains("example.com/streamed/busybox:v1") && !out.contains("\"error\""), "{out}");
    wait_tmp(&d, "emptied after the load", <[_]>::is_empty);

    // A client that goes halfway: its part is removed.
    let mut s = UnixStream::connect(d.socket()).unwrap();
    s.write_all(load_head(bytes.len() as u64).as_bytes()).unwrap();
    s.write_all(&bytes[..half]).unwrap();
    wait_tmp(&d, "had the first half", |files| files.len() == 1 && files[0].1 == half as u64);
    drop(s);
    wait_tmp(&d, "emptied after the client went", <[_]>::is_empty);

    // More than the store's filesystem has room for: refused at once,
    // before any of it is sent, naming the store.
    let mut s = UnixStream::connect(d.socket()).unwrap();
    s.write_all(load_head(1 << 60).as_bytes()).unwrap();
    let out = answer(&mut s);
    assert!(out.starts_with("HTTP/1.1 507 Insufficient Storage"), "{out}");
    let store = d.dir.path().join("state/images");
    assert!(out.contains(&format!("no space left on the filesystem of {}", store.display())), "{out}");
    // Any other request's body stays within the usual limit.
    let mut s = UnixStream::connect(d.socket()).unwrap();
    s.write_all(b"POST /v1/apply HTTP/1.1\r\nContent-Length: 2000000\r\n\r\n").unwrap();
    let out = answer(&mut s);
    assert!(out.starts_with("HTTP/1.1 400") && out.contains("request body too large"), "{out}");
    assert!(tmp_files(&d).is_empty());
}

fn ctl_store(store: &std::path::Path, args: &[&str]) -> std::process::Output {
    let out = Command::new(env!("CARGO_BIN_EXE_supervisorctl")).arg("--store").arg(store).args(args).output().unwrap();
    assert!(out.status.success(), "supervisorctl {args:?}: {}{}", text(&out.stdout), text(&out.stderr));
    out
}

fn skopeo(args: &[&str]) -> String {
    let out = Command::new("skopeo").args(args).output().expect("skopeo (Debian: skopeo)");
    assert!(out.status.success(), "skopeo {args:?}: {}", text(&out.stderr));
    text(&out.stdout)
}

#[test]
fn save_writes_archives_that_skopeo_and_load_read_back() {
    root_only!("save_writes_archives_that_skopeo_and_load_read_back");
    let dir = tempfile::tempdir().unwrap();
    let at = |f: &str| dir.path().join(f).to_str().unwrap().to_string();
    let (first, second) = (dir.path().join("first"), dir.path().join("second"));
    // Into a store without a daemon (--store), under a registry name.
    skopeo_copy(&format!("oci-archive:{}:example.com/saved/busybox:v1", at("in.tar")));
    ctl_store(&first, &["load", &at("in.tar")]);
    let images: serde_json::Value = serde_json::from_slice(&ctl_store(&first, &["images", "--json"]).stdout).unwrap();
    let record = &images[0];
    assert_eq!(record["reference"], "example.com/saved/busybox:v1");

    // An OCI archive: skopeo reads the same manifest, under the name.
    ctl_store(&first, &["save", "example.com/saved/busybox:v1", &at("oci.tar")]);
    let inspected: serde_json::Value =
        serde_json::from_str(&skopeo(&["inspect", &format!("oci-archive:{}", at("oci.tar"))])).unwrap();
    assert_eq!(inspected["Digest"], record["manifest_digest"], "{inspected}");
    let index = Command::new("tar").args(["xOf", &at("oci.tar"), "index.json"]).output().unwrap();
    assert!(text(&index.stdout).contains("\"org.opencontainers.image.ref.name\":\"example.com/saved/busybox:v1\""));
    // docker save's format: skopeo copies it out; its layers are the
    // plain tars whose digests are the diff IDs.
    ctl_store(&first, &["save", "--format", "docker-archive", "example.com/saved/busybox:v1", &at("docker.tar")]);
    skopeo(&["copy", "-q", &format!("docker-archive:{}", at("docker.tar")), &format!("oci:{}:copied", at("layout"))]);
    let config: serde_json::Value =
        serde_json::from_str(&skopeo(&["inspect", "--config", &format!("docker-archive:{}", at("docker.tar"))]))
            .unwrap();
    let original: serde_json::Value =
        serde_json::from_str(&skopeo(&["inspect", "--config", &format!("oci-archive:{}", at("in.tar"))])).unwrap();
    assert_eq!(config["rootfs"], original["rootfs"]);

    // Debian's podman loads both into a storage of its own: the OCI one
    // under its name, the docker one under its RepoTags, each the same
    // image (its ID is the config's digest, its layers the diff IDs).
    let manifest: serde_json::Value =
        serde_json::from_str(&skopeo(&["inspect", "--raw", &format!("oci-archive:{}", at("oci.tar"))])).unwrap();
    let image_id = manifest["config"]["digest"].as_str().and_then(|d| d.strip_prefix("sha256:")).unwrap().to_string();
    let podman = |args: &[&str]| {
        let out = Command::new("podman")
            .arg("--root")
            .arg(dir.path().join("podman"))
            .arg("--runroot")
            .arg(dir.path().join("podman-run"))
            .args(["--storage-driver", "vfs", "--events-backend", "file"])
            .args(args)
            .output()
            .expect("podman (Debian: podman)");
        assert!(out.status.success(), "podman {args:?}: {}", text(&out.stderr));
        text(&out.stdout)
    };
    for archive in ["oci.tar", "docker.tar"] {
        let name = "example.com/saved/busybox:v1";
        let loaded = podman(&["load", "-i", &at(archive)]);
        assert!(loaded.contains(name), "podman load {archive}: {loaded}");
        let inspected: serde_json::Value = serde_json::from_str(&podman(&["image", "inspect", name])).unwrap();
        assert_eq!(inspected[0]["Id"].as_str(), Some(image_id.as_str()), "{inspected}");
        assert_eq!(inspected[0]["RootFS"]["Layers"], original["rootfs"]["diff_ids"], "{inspected}");
        podman(&["rmi", name]);
    }

    // Both load back into another store, and the OCI one is the same image.
    let out = ctl_store(&second, &["load", &at("oci.tar")]);
    assert_eq!(text(&out.stdout), "Loaded image: example.com/saved/busybox:v1\n");
    let again: serde_json::Value = serde_json::from_slice(&ctl_store(&second, &["images", "--json"]).stdout).unwrap();
    assert_eq!(again[0]["manifest_digest"], record["manifest_digest"]);
    let out = ctl_store(&second, &["load", "--name", "example.com/saved/again:v2", &at("docker.tar")]);
    assert_eq!(text(&out.stdout), "Loaded image: example.com/saved/again:v2\n");
    let runs = ctl_store(&second, &["export", "example.com/saved/again:v2", &at("rootfs")]);
    assert!(runs.status.success() && dir.path().join("rootfs/bin/busybox").exists());

    // Not in the store: an error, and no file.
    let missing = Command::new(env!("CARGO_BIN_EXE_supervisorctl"))
        .arg("--store")
        .arg(&first)
        .args(["save", "example.com/nothere:v1", &at("none.tar")])
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(1));
    assert!(text(&missing.stderr).contains("not in the store"), "{}", text(&missing.stderr));
    assert!(!dir.path().join("none.tar").exists());
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}
