//! Images end to end, as root: fixtures built offline by umoci and skopeo,
//! pulled from Debian's docker-registry and from local layouts and
//! archives, compared with `umoci unpack` of the same image; tampered,
//! interrupted and hostile content refused with nothing left behind.

mod common;

use std::collections::BTreeSet;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

use common::proxy::{Options, Proxy};
use common::registry::{Registry, auth_file};
use supervisor::runtime::image::manifest::Platform;
use supervisor::runtime::image::{ImageError, PullOptions, Quiet, RegistryOptions, Store};
use supervisor::units::values::reference::ImageSource;

fn src(s: &str) -> ImageSource {
    ImageSource::parse(s, Path::new("/")).unwrap()
}

fn layout(fx: &Path, tag: &str) -> ImageSource {
    src(&format!("oci:{}:{tag}", fx.join("layout").display()))
}

/// Exports `reference` from `store` and compares it with `expected`.
fn assert_exports_as(store: &Store, reference: &str, expected: &Path) {
    let out = tempfile::tempdir().unwrap();
    let dest = out.path().join("rootfs");
    store.export(reference, &dest).unwrap();
    let diffs = common::trees::differences(expected, &dest);
    assert!(diffs.is_empty(), "{reference} differs from umoci unpack:\n{}", diffs.join("\n"));
}

/// Nothing half-made: no temp files, and only complete layers and blobs.
fn assert_store_clean(store: &Store) {
    let tmp: Vec<_> = fs::read_dir(store.root().join("tmp")).unwrap().collect();
    assert!(tmp.is_empty(), "leftovers in tmp: {tmp:?}");
}

fn count(dir: &Path) -> usize {
    fs::read_dir(dir).map_or(0, |d| d.count())
}

#[test]
fn local_layout_equals_umoci_unpack() {
    root_only!("local_layout_equals_umoci_unpack");
    let fx = common::fixtures();
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    for tag in ["base", "layered"] {
        let image = store.pull(&layout(&fx, tag), &PullOptions::default(), &Quiet).unwrap();
        assert_exports_as(&store, &image.record.reference, &fx.join("unpacked").join(tag));
    }
    // The layers are overlay-ready: whiteouts are 0/0 character devices and
    // the opaque directory carries the overlay xattr.
    let image = store.image(&layout(&fx, "layered").to_string()).unwrap().unwrap();
    let top = image.layer_dirs.last().unwrap();
    let motd = fs::symlink_metadata(top.join("etc/motd")).unwrap();
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    assert!(motd.file_type().is_char_device() && motd.rdev() == 0, "etc/motd is not a whiteout");
    assert!(fs::symlink_metadata(top.join("data/gone")).unwrap().file_type().is_char_device());
    let out = std::process::Command::new("getfattr")
        .args(["-n", "trusted.overlay.opaque", "--only-values"])
        .arg(top.join("data/old"))
        .output();
    if let Ok(out) = out {
        assert_eq!(String::from_utf8_lossy(&out.stdout), "y", "data/old is not opaque");
    }
    // The base layer is shared, not stored twice.
    assert_eq!(count(&store.root().join("layers")), 2);
    assert_store_clean(&store);
}

#[test]
fn zstd_layers_and_archives_give_the_same_tree() {
    root_only!("zstd_layers_and_archives_give_the_same_tree");
    let fx = common::fixtures();
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let expected = fx.join("unpacked/layered");
    for s in [
        format!("oci:{}:layered", fx.join("zstd").display()),
        format!("oci-archive:{}:layered", fx.join("layered-oci.tar").display()),
        format!("docker-archive:{}", fx.join("layered-docker.tar").display()),
        format!("docker-archive:{}:example.com/layered:v1", fx.join("layered-docker.tar").display()),
    ] {
        let image = store.pull(&src(&s), &PullOptions::default(), &Quiet).unwrap_or_else(|e| panic!("{s}: {e}"));
        assert_exports_as(&store, &image.record.reference, &expected);
    }
    let wrong = src(&format!("docker-archive:{}:example.com/other:v1", fx.join("layered-docker.tar").display()));
    let err = store.pull(&wrong, &PullOptions::default(), &Quiet).unwrap_err().to_string();
    assert!(err.contains("example.com/layered:v1"), "{err}");
}

#[test]
fn an_index_resolves_to_the_platform() {
    root_only!("an_index_resolves_to_the_platform");
    let fx = common::fixtures();
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let amd64 = store.pull(&layout(&fx, "multi"), &PullOptions::default(), &Quiet).unwrap();
    let direct = store.pull(&layout(&fx, "layered"), &PullOptions::default(), &Quiet).unwrap();
    assert_eq!(amd64.record.manifest_digest, direct.record.manifest_digest);
    let arm = PullOptions {
        platform: Platform { architecture: "arm64".into(), os: "linux".into(), variant: Some("v8".into()) },
        ..PullOptions::default()
    };
    let arm64 = store.pull(&layout(&fx, "multi"), &arm, &Quiet).unwrap();
    assert_ne!(arm64.record.manifest_digest, amd64.record.manifest_digest);
    assert_eq!(arm64.record.platform, "linux/arm64");
    let s390x = PullOptions {
        platform: Platform { architecture: "s390x".into(), os: "linux".into(), variant: None },
        ..PullOptions::default()
    };
    let err = store.pull(&layout(&fx, "multi"), &s390x, &Quiet).unwrap_err();
    assert_eq!(err.to_string(), "no image for linux/s390x in the index; it has: linux/arm64/v8, linux/amd64");
}

#[test]
fn pulls_from_a_registry_and_reuses_layers() {
    root_only!("pulls_from_a_registry_and_reuses_layers");
    let fx = common::fixtures();
    let registry = Registry::start(None);
    registry.push(&format!("oci:{}:layered", fx.join("layout").display()), "test/layered:v1", false);
    registry.push(&format!("oci:{}:multi", fx.join("layout").display()), "test/multi:v1", true);
    registry.push(&format!("oci:{}:layered", fx.join("zstd").display()), "test/zstd:v1", false);
    let proxy = Proxy::start(registry.port, Options::plain());
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let expected = fx.join("unpacked/layered");
    for name in ["test/layered:v1", "test/multi:v1", "test/zstd:v1"] {
        let reference = format!("{}/{name}", proxy.host());
        let image =
            store.pull(&src(&reference), &PullOptions::default(), &Quiet).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(image.record.reference, reference);
        assert_exports_as(&store, &reference, &expected);
    }
    // layered: its config and two layers. multi resolves to the same
    // manifest: nothing new. zstd has the same config and diff IDs but other
    // blobs: those two are fetched (and checked), not unpacked again.
    assert_eq!(proxy.stats.blob_requests.load(Ordering::SeqCst), 5);
    let before = proxy.stats.blob_requests.load(Ordering::SeqCst);
    store.pull(&src(&format!("{}/test/layered:v1", proxy.host())), &PullOptions::default(), &Quiet).unwrap();
    assert_eq!(proxy.stats.blob_requests.load(Ordering::SeqCst), before, "a second pull fetched blobs again");
    // A digest pins the image.
    let digest = store.record(&format!("{}/test/layered:v1", proxy.host())).unwrap().unwrap().manifest_digest;
    let pinned = format!("{}/test/layered@{digest}", proxy.host());
    assert_eq!(store.pull(&src(&pinned), &PullOptions::default(), &Quiet).unwrap().record.manifest_digest, digest);
    // Errors name the registry and repository.
    let err =
        store.pull(&src(&format!("{}/test/nope:v1", registry.host())), &PullOptions::default(), &Quiet).unwrap_err();
    assert!(matches!(err, ImageError::NotFound { .. }), "{err}");
    assert!(err.to_string().contains(&format!("{}/test/nope", registry.host())), "{err}");
    assert_store_clean(&store);
}

#[test]
fn basic_auth_from_an_auth_file() {
    root_only!("basic_auth_from_an_auth_file");
    let fx = common::fixtures();
    let registry = Registry::start(Some(("tester", "s3cret")));
    registry.push(&format!("oci:{}:base", fx.join("layout").display()), "private/base:v1", false);
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("state")).unwrap();
    let reference = src(&format!("{}/private/base:v1", registry.host()));
    let err = store.pull(&reference, &PullOptions::default(), &Quiet).unwrap_err();
    assert!(matches!(err, ImageError::Denied { status: 401, .. }), "{err}");
    assert!(err.to_string().contains("private/base"), "{err}");
    assert!(err.to_string().contains("no credentials"), "{err}");

    let wrong = auth_file(dir.path(), &registry.host(), "tester", "wrong");
    let options =
        PullOptions { registry: RegistryOptions::default().with_auth_file(&wrong).unwrap(), ..PullOptions::default() };
    let err = store.pull(&reference, &options, &Quiet).unwrap_err();
    assert!(err.to_string().contains("refused"), "{err}");

    let good = auth_file(dir.path(), &registry.host(), "tester", "s3cret");
    let options =
        PullOptions { registry: RegistryOptions::default().with_auth_file(&good).unwrap(), ..PullOptions::default() };
    store.pull(&reference, &options, &Quiet).unwrap();
    assert_exports_as(&store, &reference.to_string(), &fx.join("unpacked/base"));
}

#[test]
fn bearer_token_flow_with_token_reuse() {
    root_only!("bearer_token_flow_with_token_reuse");
    let fx = common::fixtures();
    let registry = Registry::start(None);
    registry.push(&format!("oci:{}:layered", fx.join("layout").display()), "team/app:v1", false);
    let proxy =
        Proxy::start(registry.port, Options { bearer: Some(("robot".into(), "tok3n".into())), ..Options::plain() });
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("state")).unwrap();
    let reference = src(&format!("{}/team/app:v1", proxy.host()));
    // Anonymous: the token service refuses.
    let err = store.pull(&reference, &PullOptions::default(), &Quiet).unwrap_err();
    assert!(matches!(err, ImageError::Denied { .. }), "{err}");
    let auth = auth_file(dir.path(), &proxy.host(), "robot", "tok3n");
    let options =
        PullOptions { registry: RegistryOptions::default().with_auth_file(&auth).unwrap(), ..PullOptions::default() };
    let before = proxy.stats.token_requests.load(Ordering::SeqCst);
    store.pull(&reference, &options, &Quiet).unwrap();
    assert_exports_as(&store, &reference.to_string(), &fx.join("unpacked/layered"));
    // One token for the manifest, config and both layers.
    assert_eq!(proxy.stats.token_requests.load(Ordering::SeqCst) - before, 1);
}

/// Copies the layout of `tag` and flips one byte of its top layer's blob.
fn tampered_layout(fx: &Path, dir: &Path) -> PathBuf {
    let copy = dir.join("tampered");
    let ok = std::process::Command::new("cp").arg("-a").arg(fx.join("layout")).arg(&copy).status().unwrap();
    assert!(ok.success());
    let index: serde_json::Value = serde_json::from_slice(&fs::read(copy.join("index.json")).unwrap()).unwrap();
    let entry = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == "layered")
        .unwrap();
    let blob = |d: &str| copy.join("blobs/sha256").join(d.trim_start_matches("sha256:"));
    let manifest: serde_json::Value =
        serde_json::from_slice(&fs::read(blob(entry["digest"].as_str().unwrap())).unwrap()).unwrap();
    let layer = blob(manifest["layers"][1]["digest"].as_str().unwrap());
    let mut bytes = fs::read(&layer).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x55;
    fs::write(&layer, bytes).unwrap();
    copy
}

#[test]
fn a_tampered_blob_is_refused_and_nothing_kept() {
    root_only!("a_tampered_blob_is_refused_and_nothing_kept");
    let fx = common::fixtures();
    let dir = tempfile::tempdir().unwrap();
    let copy = tampered_layout(&fx, dir.path());
    let store = Store::open(&dir.path().join("state")).unwrap();
    let reference = src(&format!("oci:{}:layered", copy.display()));
    let err = store.pull(&reference, &PullOptions::default(), &Quiet).unwrap_err();
    // Either gzip notices the corruption or the digest does: both refuse.
    let text = err.to_string();
    assert!(text.contains("tampered") || text.contains("reading the layer"), "{text}");
    assert!(store.record(&reference.to_string()).unwrap().is_none());
    // Only the intact base layer made it into the store.
    assert_eq!(count(&store.root().join("layers")), 1);
    assert_store_clean(&store);

    // The same through a registry: the registry serves the bad bytes.
    let registry = Registry::start(None);
    registry.push(&format!("oci:{}:base", fx.join("layout").display()), "t/img:v1", false);
    let blobs = registry.storage().join("docker/registry/v2/blobs/sha256");
    let mut tampered = 0;
    for prefix in fs::read_dir(&blobs).unwrap() {
        for d in fs::read_dir(prefix.unwrap().path()).unwrap() {
            let data = d.unwrap().path().join("data");
            let bytes = fs::read(&data).unwrap();
            if bytes.len() > 100_000 {
                let mut b = bytes.clone();
                let at = b.len() - 10;
                b[at] ^= 1;
                fs::write(&data, b).unwrap();
                tampered += 1;
            }
        }
    }
    assert_eq!(tampered, 1, "expected one layer blob in the registry");
    let store = Store::open(&dir.path().join("state2")).unwrap();
    let err = store.pull(&src(&format!("{}/t/img:v1", registry.host())), &PullOptions::default(), &Quiet).unwrap_err();
    assert!(err.to_string().contains("tampered") || err.to_string().contains("reading the layer"), "{err}");
    assert_eq!(count(&store.root().join("layers")), 0);
    assert_eq!(count(&store.root().join("blobs/sha256")), 2, "only the verified manifest and config are kept");
    assert_store_clean(&store);
}

#[test]
fn an_interrupted_layer_is_retried_or_leaves_nothing() {
    root_only!("an_interrupted_layer_is_retried_or_leaves_nothing");
    let fx = common::fixtures();
    let registry = Registry::start(None);
    registry.push(&format!("oci:{}:layered", fx.join("layout").display()), "t/app:v1", false);
    let dir = tempfile::tempdir().unwrap();

    // Cut once mid-layer: the pull starts that layer afresh and succeeds.
    let proxy = Proxy::start(registry.port, Options { cut: Some((1, 50_000)), ..Options::plain() });
    let store = Store::open(&dir.path().join("a")).unwrap();
    let reference = src(&format!("{}/t/app:v1", proxy.host()));
    store.pull(&reference, &PullOptions::default(), &Quiet).unwrap();
    assert_eq!(proxy.stats.cuts_left.load(Ordering::SeqCst), 0, "the proxy did not cut");
    assert_exports_as(&store, &reference.to_string(), &fx.join("unpacked/layered"));
    assert_store_clean(&store);

    // Cut every time: the pull fails, and nothing half-made stays.
    let proxy = Proxy::start(registry.port, Options { cut: Some((1000, 50_000)), ..Options::plain() });
    let store = Store::open(&dir.path().join("b")).unwrap();
    let reference = src(&format!("{}/t/app:v1", proxy.host()));
    let err = store.pull(&reference, &PullOptions::default(), &Quiet).unwrap_err().to_string();
    // It names the image, the blob, what happened to it and the tries,
    // not some other failure.
    assert!(err.starts_with(&format!("pull {reference}: blob sha256:")), "{err}");
    assert!(err.contains("the registry closed or reset the connection after 50.0 kB"), "{err}");
    assert!(err.ends_with(", 3 attempts"), "{err}");
    assert!(store.record(&reference.to_string()).unwrap().is_none());
    assert_store_clean(&store);
    let layer_blobs: Vec<_> = fs::read_dir(store.root().join("layers")).unwrap().collect();
    // The small crafted layer fits under the cut; the busybox one never does.
    assert!(layer_blobs.len() <= 1, "{layer_blobs:?}");
    // Once the registry is whole again, the same store completes the pull.
    let reference = src(&format!("{}/t/app:v1", registry.host()));
    store.pull(&reference, &PullOptions::default(), &Quiet).unwrap();
    assert_exports_as(&store, &reference.to_string(), &fx.join("unpacked/layered"));
}

#[test]
fn concurrent_pulls_do_the_work_once() {
    root_only!("concurrent_pulls_do_the_work_once");
    let fx = common::fixtures();
    let registry = Registry::start(None);
    registry.push(&format!("oci:{}:layered", fx.join("layout").display()), "t/app:v1", false);
    let proxy = Proxy::start(registry.port, Options::plain());
    let dir = tempfile::tempdir().unwrap();
    let reference = src(&format!("{}/t/app:v1", proxy.host()));
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                // Separate Store values, as separate processes would have.
                let store = Store::open(dir.path()).unwrap();
                store.pull(&reference, &PullOptions::default(), &Quiet).unwrap();
            });
        }
    });
    assert_eq!(proxy.stats.blob_requests.load(Ordering::SeqCst), 2 + 1, "two layers and a config, once");
    let store = Store::open(dir.path()).unwrap();
    assert_exports_as(&store, &reference.to_string(), &fx.join("unpacked/layered"));
}

#[test]
fn prune_and_rmi_keep_what_is_used() {
    root_only!("prune_and_rmi_keep_what_is_used");
    let fx = common::fixtures();
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let base = store.pull(&layout(&fx, "base"), &PullOptions::default(), &Quiet).unwrap();
    let layered = store.pull(&layout(&fx, "layered"), &PullOptions::default(), &Quiet).unwrap();
    assert_eq!(store.list().unwrap().len(), 2);
    // Prune keeping base: layered goes, its top layer too, the shared one stays.
    let removed = store.prune(&BTreeSet::from([base.record.reference.clone()]), &BTreeSet::new()).unwrap();
    assert_eq!(removed.images, vec![layered.record.reference.clone()]);
    assert_eq!(removed.layers, 1);
    assert_eq!(count(&store.root().join("layers")), 1);
    assert!(base.layer_dirs[0].is_dir());
    assert_exports_as(&store, &base.record.reference, &fx.join("unpacked/base"));
    store.remove(&base.record.reference).unwrap();
    assert_eq!(count(&store.root().join("layers")), 0);
    assert_eq!(count(&store.root().join("blobs/sha256")), 0);
    assert!(matches!(store.remove(&base.record.reference), Err(ImageError::NotInStore(_))));
}

/// A raw tar entry: name, type, link target, content.
type RawEntry<'a> = (&'a [u8], tar::EntryType, &'a [u8], &'a [u8]);

/// Writes an OCI layout with one layer made of `entries`, written with raw
/// headers so that the test can make what well-behaved tar writers refuse.
fn hostile_layout(dir: &Path, entries: &[RawEntry<'_>]) -> PathBuf {
    let mut tarball = Vec::new();
    for (name, kind, link, data) in entries {
        let mut h = tar::Header::new_old();
        let old = h.as_old_mut();
        old.name[..name.len()].copy_from_slice(name);
        old.linkname[..link.len()].copy_from_slice(link);
        h.set_entry_type(*kind);
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_size(data.len() as u64);
        h.set_cksum();
        tarball.extend_from_slice(h.as_bytes());
        tarball.extend_from_slice(data);
        tarball.resize(tarball.len().div_ceil(512) * 512, 0);
    }
    tarball.extend_from_slice(&[0u8; 1024]);
    let layout = dir.join("layout");
    fs::create_dir_all(layout.join("blobs/sha256")).unwrap();
    let put = |bytes: &[u8]| {
        let d = common::sha256(bytes);
        fs::write(layout.join("blobs/sha256").join(&d["sha256:".len()..]), bytes).unwrap();
        (d, bytes.len())
    };
    let (layer, layer_size) = put(&tarball);
    let config = format!(
        r#"{{"architecture":"amd64","os":"linux","config":{{}},"rootfs":{{"type":"layers","diff_ids":["{layer}"]}}}}"#
    );
    let (config_digest, config_size) = put(config.as_bytes());
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{config_digest}","size":{config_size}}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{layer}","size":{layer_size}}}]}}"#
    );
    let (m, msize) = put(manifest.as_bytes());
    fs::write(layout.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    fs::write(
        layout.join("index.json"),
        format!(r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{m}","size":{msize},"annotations":{{"org.opencontainers.image.ref.name":"evil"}}}}]}}"#),
    )
    .unwrap();
    layout
}

#[test]
fn hostile_layers_are_refused_and_write_nothing_outside() {
    root_only!("hostile_layers_are_refused_and_write_nothing_outside");
    use tar::EntryType::{Directory, Link, Regular, Symlink};
    let dir = tempfile::tempdir().unwrap();
    let outside = dir.path().join("outside");
    fs::create_dir(&outside).unwrap();
    let out = outside.to_str().unwrap().as_bytes().to_vec();
    let mut escape_link = out.clone();
    escape_link.extend_from_slice(b"/victim");
    fs::write(outside.join("victim"), "original").unwrap();
    let cases: Vec<(&str, Vec<RawEntry<'_>>, &str)> = vec![
        ("dotdot", vec![(b"../../../../escaped", Regular, b"", b"x")], "'..' in path"),
        ("absolute", vec![(b"/tmp/escaped-absolute", Regular, b"", b"x")], "absolute path"),
        (
            "through a planted symlink",
            vec![(b"link", Symlink, &out, b""), (b"link/pwned", Regular, b"", b"x")],
            "goes through a symbolic link",
        ),
        (
            "through a symlinked directory",
            vec![(b"d", Directory, b"", b""), (b"d/up", Symlink, b"../..", b""), (b"d/up/pwned", Regular, b"", b"x")],
            "goes through a symbolic link",
        ),
        ("hard link out", vec![(b"hl", Link, b"../../outside/victim", b"")], "'..' in path"),
        ("hard link absolute", vec![(b"hl", Link, &escape_link, b"")], "absolute path"),
        (
            "hard link through a symlink",
            vec![(b"link", Symlink, &out, b""), (b"hl", Link, b"link/victim", b"")],
            "goes through a symbolic link",
        ),
        ("whiteout escape", vec![(b"../.wh.victim", Regular, b"", b"")], "'..' in path"),
    ];
    for (name, entries, reason) in cases {
        let case_dir = dir.path().join(name.replace(' ', "-"));
        fs::create_dir(&case_dir).unwrap();
        let layout = hostile_layout(&case_dir, &entries);
        let store = Store::open(&case_dir.join("state")).unwrap();
        let reference = src(&format!("oci:{}:evil", layout.display()));
        let err = store.pull(&reference, &PullOptions::default(), &Quiet).unwrap_err();
        assert!(matches!(err, ImageError::UnsafeEntry { .. }), "{name}: {err}");
        assert!(err.to_string().contains(reason), "{name}: {err}");
        assert_eq!(count(&store.root().join("layers")), 0, "{name}");
        assert_store_clean(&store);
    }
    assert_eq!(fs::read_to_string(outside.join("victim")).unwrap(), "original");
    assert_eq!(count(&outside), 1, "something was written outside");
    assert!(!Path::new("/tmp/escaped-absolute").exists());
    assert!(!dir.path().join("escaped").exists());
}

#[test]
fn the_cli_pulls_lists_exports_and_prunes() {
    root_only!("the_cli_pulls_lists_exports_and_prunes");
    let fx = common::fixtures();
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("state");
    let ctl = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_supervisorctl"))
            .arg("--store")
            .arg(&store)
            .args(args)
            .output()
            .unwrap()
    };
    let reference = format!("oci:{}:layered", fx.join("layout").display());
    let out = ctl(&["pull", &reference]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("digest: sha256:"), "{stdout}");
    assert!(String::from_utf8_lossy(&out.stderr).contains(": done"), "plain progress lines off a terminal");
    let out = ctl(&["images", "--json"]);
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(list[0]["reference"], reference);
    assert_eq!(list[0]["layers"].as_array().unwrap().len(), 2);
    let export = dir.path().join("rootfs");
    assert!(ctl(&["export", &reference, export.to_str().unwrap()]).status.success());
    assert!(common::trees::differences(&fx.join("unpacked/layered"), &export).is_empty());
    // Export never overwrites.
    let out = ctl(&["export", &reference, export.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not empty"));
    // Prune with a unit that names it keeps it; with none, removes it.
    let units = dir.path().join("units");
    fs::create_dir(&units).unwrap();
    let mut f = fs::File::create(units.join("app.toml")).unwrap();
    writeln!(f, "[container]\nimage = {reference:?}").unwrap();
    assert!(ctl(&["prune", "--units", units.to_str().unwrap()]).status.success());
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&ctl(&["images", "--json"]).stdout)
            .unwrap()
            .as_array()
            .unwrap()
            .len(),
        1
    );
    fs::remove_file(units.join("app.toml")).unwrap();
    let out = ctl(&["prune", "--units", units.to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&out.stdout).contains(&format!("removed {reference}")));
    assert_eq!(String::from_utf8_lossy(&ctl(&["images", "--json"]).stdout).trim(), "[]");
}

#[test]
fn transient_registry_errors_are_retried() {
    root_only!("transient_registry_errors_are_retried");
    let fx = common::fixtures();
    let registry = Registry::start(None);
    registry.push(&format!("oci:{}:base", fx.join("layout").display()), "t/base:v1", false);
    let dir = tempfile::tempdir().unwrap();
    for (status, failures) in [(503u16, 2u32), (429, 1), (500, 1)] {
        let proxy = Proxy::start(registry.port, Options { fail: Some((failures, status)), ..Options::plain() });
        let store = Store::open(&dir.path().join(status.to_string())).unwrap();
        let reference = src(&format!("{}/t/base:v1", proxy.host()));
        let started = std::time::Instant::now();
        store.pull(&reference, &PullOptions::default(), &Quiet).unwrap_or_else(|e| panic!("{status}: {e}"));
        assert_eq!(proxy.stats.manifest_requests.load(Ordering::SeqCst), failures + 1, "{status}");
        if status == 429 {
            assert!(started.elapsed() >= std::time::Duration::from_secs(1), "Retry-After was not honoured");
        }
    }
    // A registry that keeps failing is an error naming it, after a few tries.
    let proxy = Proxy::start(registry.port, Options { fail: Some((100, 503)), ..Options::plain() });
    let store = Store::open(&dir.path().join("down")).unwrap();
    let err = store.pull(&src(&format!("{}/t/base:v1", proxy.host())), &PullOptions::default(), &Quiet).unwrap_err();
    assert!(err.to_string().contains("HTTP 503") && err.to_string().contains(&proxy.host()), "{err}");
    assert_eq!(proxy.stats.manifest_requests.load(Ordering::SeqCst), 5);
}

#[test]
fn unpacked_size_is_bounded() {
    root_only!("unpacked_size_is_bounded");
    let fx = common::fixtures();
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    // busybox alone is over a megabyte unpacked.
    let options = PullOptions { max_image_size: 1 << 20, ..PullOptions::default() };
    let err = store.pull(&layout(&fx, "base"), &options, &Quiet).unwrap_err();
    assert!(matches!(err, ImageError::Limit { .. }), "{err}");
    assert!(err.to_string().contains("unpacks to more than the limit of 1048576 bytes (max_image_size)"), "{err}");
    assert_eq!(count(&store.root().join("layers")), 0);
    assert_store_clean(&store);
}
