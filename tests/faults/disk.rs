//! Full disks (issue 15 item 2), the state and run directories' parts:
//! each on a small tmpfs, filled while the daemon works. The unit that
//! cannot start says which filesystem is full, nothing half-made is
//! left, the units already running keep running, and the unit starts by
//! itself once there is room again.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest as _, Sha256};

use crate::common;
use crate::common::daemon::{Daemon, busybox};

/// A tmpfs mounted on a directory; unmounted (lazily: a container may
/// still hold it) when dropped, even by a failed test.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(path: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(path).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size},mode=0700"), "tmpfs"])
            .arg(path)
            .output()
            .unwrap();
        assert!(out.status.success(), "mount tmpfs on {}: {}", path.display(), common::text(&out.stderr));
        Tmpfs(path.to_path_buf())
    }

    fn resize(&self, size: &str) {
        let out = Command::new("mount").args(["-o", &format!("remount,size={size}")]).arg(&self.0).output().unwrap();
        assert!(out.status.success(), "remount {}: {}", self.0.display(), common::text(&out.stderr));
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// A daemon whose directory `flag` (`--state-dir`, `--run-dir`) is a
/// tmpfs of `size`, mounted before it starts.
fn daemon_on_tmpfs(flag: &str, size: &str) -> (Daemon, Tmpfs) {
    let mut mounted = None;
    let d = Daemon::start_with(|c| {
        let args: Vec<_> = c.get_args().map(|a| a.to_os_string()).collect();
        let at = args.iter().position(|a| a == flag).expect(flag);
        mounted = Some(Tmpfs::mount(Path::new(&args[at + 1]), size));
    });
    (d, mounted.unwrap())
}

fn hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// Writes `bytes` as a blob of the layout at `dir`; its descriptor.
fn blob(dir: &Path, media_type: &str, bytes: &[u8]) -> serde_json::Value {
    let hex = hex(bytes);
    std::fs::write(dir.join("blobs/sha256").join(&hex), bytes).unwrap();
    serde_json::json!({"mediaType": media_type, "digest": format!("sha256:{hex}"), "size": bytes.len()})
}

/// An OCI layout (tag `big`) of one gzip layer: the host's static busybox
/// as /bin/busybox, `random` bytes that do not compress, and `repeated`
/// bytes that do (a random 4 KiB block again and again, so that they are
/// written, not left as holes). Its blob is small; it unpacks large.
fn big_image(dir: &Path, random: usize, repeated: usize) -> String {
    std::fs::create_dir_all(dir.join("blobs/sha256")).unwrap();
    let mut state = 0x9e3779b97f4a7c15u64;
    let mut noise = |n: usize| {
        (0..n)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect::<Vec<u8>>()
    };
    let block = noise(4096);
    let files = [
        ("bin/busybox", std::fs::read("/usr/bin/busybox").expect("a static busybox in /usr/bin")),
        ("random", noise(random)),
        ("repeated", block.iter().copied().cycle().take(repeated).collect()),
    ];
    let header = |kind, size: usize| {
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(kind);
        h.set_mode(0o755);
        h.set_size(size as u64);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_700_000_000);
        h
    };
    let mut tar = tar::Builder::new(Vec::new());
    tar.append_data(&mut header(tar::EntryType::Directory, 0), "bin/", std::io::empty()).unwrap();
    for (path, content) in &files {
        tar.append_data(&mut header(tar::EntryType::Regular, content.len()), path, &content[..]).unwrap();
    }
    let layer = tar.into_inner().unwrap();
    let diff_id = format!("sha256:{}", hex(&layer));
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&layer).unwrap();
    let layer = blob(dir, "application/vnd.oci.image.layer.v1.tar+gzip", &gz.finish().unwrap());
    let config = serde_json::json!({
        "architecture": "amd64", "os": "linux", "config": {},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
    });
    let config = blob(dir, "application/vnd.oci.image.config.v1+json", config.to_string().as_bytes());
    let manifest = serde_json::json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": config, "layers": [layer],
    });
    let mut manifest = blob(dir, "application/vnd.oci.image.manifest.v1+json", manifest.to_string().as_bytes());
    manifest["annotations"] = serde_json::json!({"org.opencontainers.image.ref.name": "big"});
    let index = serde_json::json!({"schemaVersion": 2, "manifests": [manifest]});
    std::fs::write(dir.join("index.json"), index.to_string()).unwrap();
    std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    format!("oci:{}:big", dir.display())
}

/// A unit of `image` that sleeps (with busybox at `shell`); its retries
/// come quickly.
fn sleeper(image: &str, shell: &str) -> String {
    format!(
        "[container]\nimage = \"{image}\"\ncommand = [\"{shell}\", \"sh\", \"-c\", \"trap 'exit 0' TERM; sleep 100000 & wait\"]\n\
         [restart]\ndelay = \"200ms\"\nmax_delay = \"1s\"\n"
    )
}

/// Every file under `dir` with its size.
fn files(dir: &Path) -> Vec<(PathBuf, u64)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let m = e.metadata().unwrap();
        if m.is_dir() {
            out.extend(files(&e.path()));
        } else {
            out.push((e.path(), m.len()));
        }
    }
    out
}

#[test]
fn a_full_state_directory_fails_the_pull_cleanly_and_the_unit_starts_once_there_is_room() {
    crate::root_only!("a_full_state_directory_fails_the_pull_cleanly_and_the_unit_starts_once_there_is_room");
    let work = tempfile::tempdir().unwrap();
    // A 6 MB blob (it fits) that unpacks to 6 + 30 MB (it does not).
    let image = big_image(work.path(), 6 << 20, 30 << 20);
    let (d, tmpfs) = daemon_on_tmpfs("--state-dir", "20m");
    let state = tmpfs.0.clone();
    let (small, big) = (common::unique_name("ds"), common::unique_name("db"));
    d.write_unit(&small, &sleeper(&busybox(), "/bin/busybox"));
    let before = d.wait_state(&small, "running")["pid"].clone();

    d.write_unit(&big, &sleeper(&image, "/bin/busybox"));
    let u = d.wait_for(&big, "failing for want of space", 60, |u| u.is_some_and(|u| !u["error"].is_null())).unwrap();
    let err = u["error"].as_str().unwrap();
    let store = state.join("images");
    let says = format!("no space left on the filesystem of {} (mounted at {})", store.display(), state.display());
    assert!(err.contains(&says), "{err}");

    // Nothing half-made: no record of the image, nothing in tmp, and every
    // blob is whole (its content has its name's digest).
    assert!(!common::text(&d.ctl(&["images"]).stdout).contains(&image), "the image was recorded");
    let tmp: Vec<_> = std::fs::read_dir(store.join("tmp")).unwrap().collect();
    assert!(tmp.is_empty(), "leftovers in tmp: {tmp:?}");
    for (path, _) in files(&store.join("blobs")) {
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(path.file_name().unwrap().to_string_lossy(), hex(&bytes), "a partial blob");
    }
    // The unit that ran before still runs, the same process.
    let u = d.unit(&small).unwrap();
    assert_eq!((&u["state"], &u["pid"]), (&serde_json::json!("running"), &before), "{u}");

    // Room again: the unit's own retries start it, nobody asks.
    tmpfs.resize("200m");
    d.wait_for(&big, "running once there is room", 60, |u| u.is_some_and(|u| u["state"] == "running"));
    assert_eq!(d.unit(&small).unwrap()["pid"], before);
}

#[test]
fn a_full_run_directory_fails_a_start_clearly_and_harms_nothing_running() {
    crate::root_only!("a_full_run_directory_fails_a_start_clearly_and_harms_nothing_running");
    let (d, tmpfs) = daemon_on_tmpfs("--run-dir", "8m");
    let run = tmpfs.0.clone();
    let (first, second) = (common::unique_name("rd"), common::unique_name("re"));
    d.write_unit(&first, &sleeper(&busybox(), "/bin/busybox"));
    let before = d.wait_state(&first, "running")["pid"].clone();

    // Fill the run directory's filesystem to the last byte.
    let fill = run.join("fill");
    let mut f = std::fs::File::create(&fill).unwrap();
    let chunk = vec![1u8; 1 << 20];
    loop {
        match f.write(&chunk) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) => {
                assert_eq!(e.raw_os_error(), Some(libc::ENOSPC), "{e}");
                break;
            }
        }
    }
    drop(f);

    d.write_unit(&second, &sleeper(&busybox(), "/bin/busybox"));
    let u = d.wait_for(&second, "failing for want of space", 30, |u| u.is_some_and(|u| !u["error"].is_null())).unwrap();
    let err = u["error"].as_str().unwrap();
    let says = format!(
        "no space left on the filesystem of the run directory {} (mounted at {})",
        run.display(),
        run.display()
    );
    assert!(err.contains(&says), "{err}");
    assert!(u["pid"].is_null(), "{u}");
    // status answers, and what ran still runs.
    let u = d.unit(&first).unwrap();
    assert_eq!((&u["state"], &u["pid"]), (&serde_json::json!("running"), &before), "{u}");

    std::fs::remove_file(&fill).unwrap();
    d.wait_for(&second, "running once there is room", 30, |u| u.is_some_and(|u| u["state"] == "running"));
    assert_eq!(d.unit(&first).unwrap()["pid"], before);
}
