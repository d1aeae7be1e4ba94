//! Hostile images, garbage collection and the registry client (see
//! docs/security.md: "Hostile images", "Garbage collection", "Registry
//! client"), end to end through a real supervisord.

use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::common;
use crate::common::daemon::Daemon;

const GZIP_LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
const TAR_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";

/// Writes an OCI layout at `dir/layout` whose image `tag` has one layer,
/// the tar stream `tar` (gzip-compressed when `gzip`), streamed to disk
/// and hashed on the way, so that gigabytes of content need no memory.
fn layout_with_layer(dir: &Path, tag: &str, tar: impl Read, gzip: bool) -> PathBuf {
    let layout = dir.join("layout");
    let blobs = layout.join("blobs/sha256");
    fs::create_dir_all(&blobs).unwrap();
    let put = |bytes: &[u8]| {
        let d = common::sha256(bytes);
        fs::write(blobs.join(&d["sha256:".len()..]), bytes).unwrap();
        (d, bytes.len())
    };
    let tmp = blobs.join("layer.tmp");
    let mut diff = common::HashRead::new(tar);
    let (layer, layer_size) = {
        let mut out = fs::File::create(&tmp).unwrap();
        let body: Box<dyn Read + '_> = if gzip {
            Box::new(flate2::read::GzEncoder::new(&mut diff, flate2::Compression::fast()))
        } else {
            Box::new(&mut diff)
        };
        let mut blob = common::HashRead::new(body);
        io::copy(&mut blob, &mut out).unwrap();
        blob.finish()
    };
    let (diff_id, _) = diff.finish();
    fs::rename(&tmp, blobs.join(&layer["sha256:".len()..])).unwrap();
    let config = format!(
        r#"{{"architecture":"amd64","os":"linux","config":{{"Cmd":["/bin/sh"]}},"rootfs":{{"type":"layers","diff_ids":["{diff_id}"]}}}}"#
    );
    let (config_digest, config_size) = put(config.as_bytes());
    let media = if gzip { GZIP_LAYER } else { TAR_LAYER };
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{config_digest}","size":{config_size}}},"layers":[{{"mediaType":"{media}","digest":"{layer}","size":{layer_size}}}]}}"#
    );
    let (m, msize) = put(manifest.as_bytes());
    fs::write(layout.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    fs::write(
        layout.join("index.json"),
        format!(r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{m}","size":{msize},"annotations":{{"org.opencontainers.image.ref.name":"{tag}"}}}}]}}"#),
    )
    .unwrap();
    layout
}

/// A ustar header of `kind` for `name` with `size` bytes of data.
fn header(name: &str, kind: tar::EntryType, size: u64) -> Vec<u8> {
    let mut h = tar::Header::new_ustar();
    h.set_path(name).unwrap();
    h.set_entry_type(kind);
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h.set_size(size);
    h.set_cksum();
    h.as_bytes().to_vec()
}

/// The peak resident memory of process `pid`, in bytes (VmHWM).
fn peak_rss(pid: u32) -> u64 {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).expect("VmHWM in /proc/PID/status");
    let kb: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kb * 1024
}

#[test]
fn a_pax_record_of_a_gibibyte_is_refused_and_the_daemon_stays_small() {
    if !common::require_root("a_pax_record_of_a_gibibyte_is_refused_and_the_daemon_stays_small") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // One well-formed PAX record of exactly 1 GiB ("<len> comment=AAA...\n"),
    // then a file it would describe: a few MB once gzipped.
    const RECORD: u64 = 1 << 30;
    let prefix = format!("{RECORD} comment=");
    let value = RECORD - prefix.len() as u64 - 1;
    // 1 GiB is a multiple of 512: no padding after the record's newline.
    let mut tail = b"\n".to_vec();
    tail.extend_from_slice(&header("victim", tar::EntryType::Regular, 0));
    tail.extend_from_slice(&[0; 1024]);
    let tar = io::Cursor::new(header("PaxHeaders/victim", tar::EntryType::XHeader, RECORD))
        .chain(io::Cursor::new(prefix.into_bytes()))
        .chain(io::repeat(b'A').take(value))
        .chain(io::Cursor::new(tail));
    let layout = layout_with_layer(dir.path(), "evil", tar, true);

    let d = Daemon::start();
    let pid = d.child.as_ref().unwrap().id();
    let started = Instant::now();
    let out = d.ctl(&["pull", &format!("oci:{}:evil", layout.display())]);
    let err = common::text(&out.stderr);
    assert!(!out.status.success(), "the pull succeeded: {}", common::text(&out.stdout));
    assert!(
        err.contains("a PAX extended header of 1073741824 bytes is over the limit of 1048576 bytes"),
        "the error does not name the limit: {err}"
    );
    assert!(err.contains("layer sha256:"), "the error does not name the layer: {err}");
    let peak = peak_rss(pid);
    assert!(peak < 256 << 20, "supervisord's peak RSS was {} MiB", peak >> 20);
    // Refused at the header: not after reading the gigabyte.
    assert!(started.elapsed() < Duration::from_secs(20), "took {:?}", started.elapsed());
    assert!(d.ctl(&["status"]).status.success(), "the daemon stopped answering:\n{}", d.log());
}

/// Runs `supervisorctl args` against `d`, killed after `limit`; the output
/// and how long it took (None: it was still running at `limit`).
fn ctl_within(d: &Daemon, args: &[&str], limit: Duration) -> (Option<std::process::Output>, Duration) {
    let started = Instant::now();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_supervisorctl"))
        .arg("--socket")
        .arg(d.socket())
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            return (None, started.elapsed());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    (Some(child.wait_with_output().unwrap()), started.elapsed())
}

#[test]
fn a_stalled_registry_fails_a_pull_within_the_timeout() {
    if !common::require_root("a_stalled_registry_fails_a_pull_within_the_timeout") {
        return;
    }
    use crate::common::proxy::{Options, Proxy};
    use std::sync::atomic::Ordering;
    let registry = common::registry::Registry::start(None);
    registry.push(&common::daemon::busybox(), "stall/busybox:1", false);
    // busybox's layer is about a megabyte: it stalls after 64 KiB; the
    // config, smaller, comes whole.
    let proxy = Proxy::start(registry.port, Options { stall: Some(64 << 10), ..Options::plain() });
    let d = Daemon::start_configured("registry_timeout = \"2s\"\n", |_| {});
    let reference = format!("{}/stall/busybox:1", proxy.host());
    let (out, took) = ctl_within(&d, &["pull", &reference], Duration::from_secs(20));
    let out = out.unwrap_or_else(|| panic!("the pull still hung after {took:?}"));
    let err = common::text(&out.stderr);
    assert!(!out.status.success(), "the pull succeeded");
    eprintln!("the stalled pull failed after {took:?}");
    let expected = format!("pull {reference}: blob sha256:");
    assert!(err.contains(&expected), "the error does not say what stalled: {err}");
    assert!(err.contains("no data for 2s (registry_timeout) after "), "the error does not say it stalled: {err}");
    // Then the layer was tried again, as after any broken connection.
    let blob_requests = proxy.stats.blob_requests.load(Ordering::SeqCst);
    assert!(blob_requests >= 3, "{blob_requests} blob requests: the stalled layer was not retried");
    let (status, _) = ctl_within(&d, &["status"], Duration::from_secs(5));
    assert!(status.is_some_and(|s| s.status.success()), "the daemon stopped answering:\n{}", d.log());
}

/// A copy of the busybox layout at `dir/NAME` with one more layer holding
/// `/NAME.txt` (its content: `content`), made by umoci, not by our code.
fn busybox_plus_file(dir: &Path, name: &str, content: &str) -> String {
    let busybox = common::daemon::busybox();
    let base = busybox.strip_prefix("oci:").unwrap().rsplit_once(':').unwrap().0;
    let layout = dir.join(name);
    let ok = std::process::Command::new("cp").arg("-a").arg(base).arg(&layout).status().unwrap();
    assert!(ok.success());
    let files = dir.join(format!("{name}-files"));
    fs::create_dir_all(&files).unwrap();
    fs::write(files.join(format!("{name}.txt")), content).unwrap();
    let tarball = dir.join(format!("{name}.tar"));
    let ok = std::process::Command::new("tar")
        .arg("-cf")
        .arg(&tarball)
        .arg("-C")
        .arg(&files)
        .arg(format!("{name}.txt"))
        .status()
        .unwrap();
    assert!(ok.success());
    let out = std::process::Command::new("umoci")
        .args(["raw", "add-layer", "--image"])
        .arg(format!("{}:latest", layout.display()))
        .arg(&tarball)
        .output()
        .unwrap();
    assert!(out.status.success(), "umoci raw add-layer: {}", common::text(&out.stderr));
    format!("oci:{}:latest", layout.display())
}

#[test]
fn prune_after_a_tag_moved_keeps_a_running_containers_layers() {
    if !common::require_root("prune_after_a_tag_moved_keeps_a_running_containers_layers") {
        return;
    }
    use supervisor::runtime::image::Store;
    let work = tempfile::tempdir().unwrap();
    let registry = common::registry::Registry::start(None);
    let image_a = busybox_plus_file(work.path(), "a", "from A\n");
    let image_b = busybox_plus_file(work.path(), "b", "from B\n");
    let tag = format!("{}/gc/app:t", registry.host());
    registry.push(&image_a, "gc/app:t", false);

    let d = Daemon::start();
    d.write_unit("app", &format!("[container]\nimage = \"{tag}\"\ncommand = [\"sh\", \"-c\", \"trap 'exit 0' TERM; while :; do sleep 1; done\"]\n"));
    let running = d.wait_state("app", "running");
    let digest_a = running["image_digest"].as_str().unwrap().to_string();
    let store = Store::open(&d.dir.path().join("state")).unwrap();
    let lower_dirs = store.image(&tag).unwrap().expect("A is recorded").layer_dirs;
    assert_eq!(lower_dirs.len(), 2);

    // The tag moves to B and is pulled again while A's container runs.
    registry.push(&image_b, "gc/app:t", false);
    let pulled = d.ctl(&["pull", &tag]);
    assert!(pulled.status.success(), "pull: {}", common::text(&pulled.stderr));
    let pruned = d.ctl(&["prune"]);
    assert!(pruned.status.success(), "prune: {}", common::text(&pruned.stderr));
    for dir in &lower_dirs {
        assert!(dir.is_dir(), "prune removed {} under the running container", dir.display());
    }
    let cat = d.ctl(&["exec", "app", "--", "cat", "/a.txt"]);
    assert_eq!(common::text(&cat.stdout), "from A\n", "{}", common::text(&cat.stderr));
    // Nor may an offline prune (which cannot know what runs) remove it.
    let offline = crate::common::daemon::ctl(
        &d.socket(),
        &["--store", d.dir.path().join("state").to_str().unwrap(), "prune", "--units", d.units().to_str().unwrap()],
    );
    assert!(!offline.status.success(), "an offline prune ran beside the daemon");
    assert!(common::text(&offline.stderr).contains("a running supervisord uses the store"));
    assert!(lower_dirs.iter().all(|d| d.is_dir()));

    // A restart keeps the image it ran (a restart never changes image);
    // an edit resolves the tag anew and runs B, and A stays as what a
    // rollback returns to, until a later update succeeds.
    let edit = |sleep: u32, before: &serde_json::Value| {
        let command = format!("trap 'exit 0' TERM; while :; do sleep {sleep}; done");
        d.write_unit(
            "app",
            &format!(
                "[container]\nimage = \"{tag}\"\ncommand = [\"sh\", \"-c\", {command:?}]\n[update]\nmin_healthy = \"0s\"\n"
            ),
        );
        d.wait_for("app", "the update done", 30, |u| {
            u.is_some_and(|u| u["state"] == "running" && u["update_state"].is_null() && u["pid"] != before["pid"])
        })
        .expect("running")
    };
    assert!(d.ctl(&["restart", "app"]).status.success());
    let restarted = d
        .wait_for("app", "restarted", 30, |u| u.is_some_and(|u| u["state"] == "running" && u["pid"] != running["pid"]))
        .expect("running");
    assert_eq!(restarted["image_digest"], running["image_digest"], "a restart changed image: {restarted}");
    let updated = edit(2, &restarted);
    assert_ne!(updated["image_digest"].as_str(), Some(digest_a.as_str()), "the edit did not take B: {updated}");
    assert_eq!(updated["previous_image_id"].as_str(), Some(digest_a.as_str()), "{updated}");
    let pruned = d.ctl(&["prune"]);
    let said = common::text(&pruned.stdout);
    assert!(pruned.status.success() && !said.contains(&digest_a), "prune removed the rollback image: {said}");
    assert!(lower_dirs.iter().all(|d| d.is_dir()));
    // Once another update succeeded, nothing returns to A: it goes.
    edit(3, &updated);
    let pruned = d.ctl(&["prune"]);
    let said = common::text(&pruned.stdout);
    assert!(pruned.status.success() && said.contains(&digest_a), "prune: {said}{}", common::text(&pruned.stderr));
    assert!(!lower_dirs[1].exists(), "A's own layer is still there");
    assert!(lower_dirs[0].is_dir(), "the busybox layer B shares was removed");
    let cat = d.ctl(&["exec", "app", "--", "cat", "/b.txt"]);
    assert_eq!(common::text(&cat.stdout), "from B\n", "{}", common::text(&cat.stderr));
}

#[test]
fn max_image_size_from_the_config_bounds_a_pull() {
    if !common::require_root("max_image_size_from_the_config_bounds_a_pull") {
        return;
    }
    // busybox alone unpacks to over a megabyte.
    let d = Daemon::start_configured("max_image_size = \"1M\"\n", |_| {});
    let out = d.ctl(&["pull", &common::daemon::busybox()]);
    let err = common::text(&out.stderr);
    assert!(!out.status.success(), "the pull succeeded");
    assert!(err.contains("unpacks to more than the limit of 1048576 bytes (max_image_size)"), "{err}");
    let layers = d.dir.path().join("state/images/layers");
    assert_eq!(fs::read_dir(&layers).unwrap().count(), 0, "a layer was kept");
}

#[test]
fn a_sparse_file_is_unpacked_sparse() {
    if !common::require_root("a_sparse_file_is_unpacked_sparse") {
        return;
    }
    use std::os::unix::fs::MetadataExt;
    use supervisor::runtime::image::{PullOptions, Quiet, Store};
    use supervisor::units::values::reference::ImageSource;
    let dir = tempfile::tempdir().unwrap();
    // 1 GiB apparent, 4 KiB of data at its start: GNU tar writes an `S` entry.
    let files = dir.path().join("files");
    fs::create_dir(&files).unwrap();
    fs::write(files.join("sparse"), "data at the start\n").unwrap();
    let f = fs::OpenOptions::new().write(true).open(files.join("sparse")).unwrap();
    f.set_len(1 << 30).unwrap();
    drop(f);
    let tarball = dir.path().join("sparse.tar");
    let ok = std::process::Command::new("tar")
        .args(["--sparse", "--format=gnu", "--owner=0", "--group=0", "-cf"])
        .arg(&tarball)
        .arg("-C")
        .arg(&files)
        .arg("sparse")
        .status()
        .unwrap();
    assert!(ok.success());
    assert!(fs::metadata(&tarball).unwrap().len() < 1 << 20, "GNU tar did not write a sparse entry");
    let layout = layout_with_layer(dir.path(), "sparse", fs::File::open(&tarball).unwrap(), false);
    let store = Store::open(&dir.path().join("state")).unwrap();
    let source = ImageSource::parse(&format!("oci:{}:sparse", layout.display()), Path::new("/")).unwrap();
    let image = store.pull(&source, &PullOptions::default(), &Quiet).unwrap();
    let file = image.layer_dirs[0].join("sparse");
    let meta = fs::metadata(&file).unwrap();
    assert_eq!(meta.len(), 1 << 30, "apparent size");
    assert!(meta.blocks() * 512 < 1 << 20, "{} bytes written for a sparse file", meta.blocks() * 512);
    let mut start = String::new();
    fs::File::open(&file).unwrap().take(18).read_to_string(&mut start).unwrap();
    assert_eq!(start, "data at the start\n");
}

/// A tmpfs of `size` mounted at a new directory, unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(parent: &Path, size: &str) -> Tmpfs {
        let dir = parent.join("tmpfs");
        fs::create_dir(&dir).unwrap();
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&dir)
            .status()
            .unwrap();
        assert!(ok.success(), "mount tmpfs");
        Tmpfs(dir)
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn a_pull_stops_before_filling_the_stores_filesystem() {
    if !common::require_root("a_pull_stops_before_filling_the_stores_filesystem") {
        return;
    }
    use supervisor::runtime::image::{ImageError, PullOptions, Quiet, Store};
    use supervisor::units::values::reference::ImageSource;
    let dir = tempfile::tempdir().unwrap();
    // 200 MiB of zeros: a few hundred kilobytes gzipped.
    const SIZE: u64 = 200 << 20;
    let tar = io::Cursor::new(header("zeros", tar::EntryType::Regular, SIZE))
        .chain(io::repeat(0).take(SIZE))
        .chain(io::Cursor::new(vec![0; 1024]));
    let layout = layout_with_layer(dir.path(), "big", tar, true);
    let fs_dir = Tmpfs::mount(dir.path(), "128M");
    let store = Store::open(&fs_dir.0).unwrap();
    let source = ImageSource::parse(&format!("oci:{}:big", layout.display()), Path::new("/")).unwrap();
    let err = store.pull(&source, &PullOptions::default(), &Quiet).unwrap_err();
    assert!(matches!(err, ImageError::Limit { .. }), "{err}");
    let message = err.to_string();
    assert!(message.contains("would leave less than the reserve of"), "{message}");
    let free = nix::sys::statvfs::statvfs(&fs_dir.0).unwrap();
    assert!(free.blocks_available() * free.fragment_size() > 100 << 20, "the failed pull left its files behind");
}
