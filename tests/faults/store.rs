//! The store killed mid-work and damaged by hand: a pull and a volume
//! seeding cut by `kill -9` of supervisord leave nothing half-made that a
//! successor would use, and `supervisorctl verify` names what is wrong and
//! repairs it (docs/reliability.md, "The store checked" and "Pulls and
//! volumes").

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use crate::common;
use crate::common::daemon::{Daemon, busybox};
use crate::common::proxy::{Options, Proxy};
use crate::common::registry::Registry;
use crate::common::{text, unique_name};
use crate::root_only;

/// A unit that sleeps in `image`, stopping at once on SIGTERM; `more`:
/// further `[container]` keys.
fn unit(image: &str, more: &str) -> String {
    format!(
        "[container]\nimage = \"{image}\"\ncommand = [\"sh\", \"-c\", {:?}]\n{more}",
        "trap 'exit 0' TERM; sleep 100000 & wait"
    )
}

/// A tar layer of `dirs` and `files` (owned by root, as in an image).
fn layer(dirs: &[String], files: impl Iterator<Item = (String, Vec<u8>)>) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let header = |kind, size: usize, mode| {
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(kind);
        h.set_size(size as u64);
        h.set_mode(mode);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_700_000_000);
        h
    };
    for d in dirs {
        b.append_data(&mut header(tar::EntryType::Directory, 0, 0o755), d, &[][..]).unwrap();
    }
    for (path, data) in files {
        b.append_data(&mut header(tar::EntryType::Regular, data.len(), 0o644), &path, &data[..]).unwrap();
    }
    b.into_inner().unwrap()
}

/// An OCI layout at `dir`, tagged `t`: busybox with `tar` as one more
/// (uncompressed) layer on top; its `oci:` reference.
fn busybox_plus(dir: &Path, tar: &[u8]) -> String {
    let base = crate::common::example_redis().parent().unwrap().join("busybox");
    let ok = std::process::Command::new("cp").arg("-a").arg(&base).arg(dir).status().unwrap();
    assert!(ok.success(), "cp -a {}", base.display());
    let blob = |d: &str| dir.join("blobs/sha256").join(d.trim_start_matches("sha256:"));
    let put = |bytes: &[u8]| {
        let d = common::sha256(bytes);
        fs::write(blob(&d), bytes).unwrap();
        (d, bytes.len())
    };
    let read = |d: &str| serde_json::from_slice::<serde_json::Value>(&fs::read(blob(d)).unwrap()).unwrap();
    let index = serde_json::from_slice::<serde_json::Value>(&fs::read(dir.join("index.json")).unwrap()).unwrap();
    let mut manifest = read(index["manifests"][0]["digest"].as_str().unwrap());
    let mut config = read(manifest["config"]["digest"].as_str().unwrap());
    let (layer, layer_size) = put(tar);
    config["rootfs"]["diff_ids"].as_array_mut().unwrap().push(layer.clone().into());
    config.as_object_mut().unwrap().remove("history");
    let (config_digest, config_size) = put(&serde_json::to_vec(&config).unwrap());
    manifest["config"]["digest"] = config_digest.into();
    manifest["config"]["size"] = config_size.into();
    manifest["layers"].as_array_mut().unwrap().push(serde_json::json!({
        "mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer, "size": layer_size,
    }));
    let (m, msize) = put(&serde_json::to_vec(&manifest).unwrap());
    let index = serde_json::json!({"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": m, "size": msize,
        "annotations": {"org.opencontainers.image.ref.name": "t"},
    }]});
    fs::write(dir.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
    format!("oci:{}:t", dir.display())
}

/// `n` bytes that do not compress (xorshift).
fn random_bytes(n: usize) -> Vec<u8> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut out = Vec::with_capacity(n + 8);
    while out.len() < n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(n);
    out
}

/// `supervisorctl --store STATE verify --run-dir RUN ARGS` of a daemon's
/// directory (offline: no supervisord may run on it).
fn verify_offline(dir: &Path, args: &[&str]) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_supervisorctl"))
        .arg("--store")
        .arg(dir.join("state"))
        .arg("verify")
        .arg("--run-dir")
        .arg(dir.join("run"))
        .args(args)
        .output()
        .unwrap()
}

fn entries(dir: &Path) -> Vec<PathBuf> {
    fs::read_dir(dir).map(|d| d.flatten().map(|e| e.path()).collect()).unwrap_or_default()
}

/// Waits (at most `secs`) until `what` holds.
fn poll(secs: u64, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !cond() {
        assert!(Instant::now() < deadline, "not {what} after {secs}s");
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Waits until the unit runs: at most five minutes, since a pull or a
/// seeding of thousands of files on a loaded 2-core machine is slow (a
/// deadline, not a sleep: it returns as soon as the unit runs).
fn wait_running(d: &Daemon, name: &str) {
    d.wait_for(name, "running", 300, |u| u.is_some_and(|u| u["state"] == "running"));
}

/// SIGKILL to the daemon, and its exit reaped.
fn kill_9(d: &mut Daemon) {
    let mut child = d.child.take().expect("running");
    child.kill().unwrap();
    child.wait().unwrap();
}

/// Regular files below `dir`.
fn count_files(dir: &Path) -> usize {
    entries(dir)
        .iter()
        .map(|p| match fs::symlink_metadata(p) {
            Ok(m) if m.is_dir() => count_files(p),
            Ok(m) if m.is_file() => 1,
            _ => 0,
        })
        .sum()
}

#[test]
fn kill_9_during_a_large_pull_leaves_nothing_half_made_and_the_successor_runs_the_unit() {
    root_only!("kill_9_during_a_large_pull_leaves_nothing_half_made_and_the_successor_runs_the_unit");
    const SIZE: usize = 32 << 20;
    const STALL_AT: usize = 8 << 20;
    let fx = tempfile::tempdir().unwrap();
    let big = layer(&["big/".into()], std::iter::once(("big/data".to_string(), random_bytes(SIZE))));
    let layout = busybox_plus(&fx.path().join("big"), &big);
    let registry = Registry::start(None);
    registry.push(&layout, "t/big:v1", false);
    let proxy = Proxy::start(registry.port, Options { stall: Some(STALL_AT), ..Options::plain() });

    let mut d = Daemon::start();
    let name = unique_name("pull");
    d.write_unit(&name, &unit(&format!("{}/t/big:v1", proxy.host()), ""));
    // Stalled in the middle of the big layer: its partial blob is there.
    let tmp = d.dir.path().join("state/images/tmp");
    poll(60, "stalled mid-blob", || {
        entries(&tmp).iter().any(|p| fs::metadata(p).is_ok_and(|m| m.is_file() && m.len() >= (STALL_AT / 2) as u64))
    });
    kill_9(&mut d);
    assert!(!entries(&tmp).is_empty(), "the kill left nothing to recover from");
    drop(proxy);

    // The successor, on the same directories, from the registry itself.
    d.write_unit(&name, &unit(&format!("{}/t/big:v1", registry.host()), ""));
    d.spawn();
    wait_running(&d, &name);
    let left = entries(&tmp);
    assert!(left.is_empty(), "images/tmp still holds what the killed pull left: {left:?}");
    let v = d.ctl(&["verify"]);
    assert!(v.status.success(), "verify through the daemon: {}{}", text(&v.stdout), text(&v.stderr));
    d.terminate(30);
    let v = verify_offline(d.dir.path(), &[]);
    assert!(v.status.success(), "verify --store: {}{}", text(&v.stdout), text(&v.stderr));
}

#[test]
fn kill_9_during_volume_seeding_leaves_no_half_seeded_volume_and_the_successor_seeds_it_whole() {
    root_only!("kill_9_during_volume_seeding_leaves_no_half_seeded_volume_and_the_successor_seeds_it_whole");
    const DIRS: usize = 10;
    const FILES: usize = 10_000;
    let fx = tempfile::tempdir().unwrap();
    let mut dirs = vec!["seed/".to_string()];
    dirs.extend((0..DIRS).map(|i| format!("seed/d{i}/")));
    let files = (0..FILES).map(|i| (format!("seed/d{}/f{i}", i % DIRS), format!("{i}\n").into_bytes()));
    let image = busybox_plus(&fx.path().join("many"), &layer(&dirs, files));

    let mut d = Daemon::start();
    let (name, vol) = (unique_name("seed"), unique_name("vol"));
    // Pulled first, so that the daemon's work is the seeding alone.
    let pulled = d.ctl(&["pull", &image]);
    assert!(pulled.status.success(), "{}", text(&pulled.stderr));
    let volume = d.dir.path().join("state/volumes").join(&vol);
    d.write_unit(&name, &unit(&image, &format!("volumes = [\"{vol}:/seed\"]\n")));
    // Seeding: files are being copied into the volume.
    poll(60, "seeding", || entries(&volume).iter().any(|p| p.is_dir() && count_files(p) > 0));
    kill_9(&mut d);
    let seeded_at_kill: usize = entries(&volume).iter().filter(|p| p.is_dir()).map(|p| count_files(p)).sum();
    assert!(seeded_at_kill < FILES, "the seeding ended before the kill: nothing shown");

    d.spawn();
    wait_running(&d, &name);
    assert_eq!(count_files(&volume.join("_data")), FILES, "the volume is not whole after the successor's start");
    d.terminate(30);
    let v = verify_offline(d.dir.path(), &[]);
    assert!(v.status.success(), "verify --store: {}{}", text(&v.stdout), text(&v.stderr));
}

/// The record file of `reference` in the store at `state`.
fn record_file(state: &Path, reference: &str) -> PathBuf {
    let refs = state.join("images/refs");
    entries(&refs)
        .into_iter()
        .find(|p| {
            let v: serde_json::Value = serde_json::from_slice(&fs::read(p).unwrap()).unwrap();
            v["reference"] == reference
        })
        .unwrap_or_else(|| panic!("no record of {reference}"))
}

fn top_layer(record: &Path) -> (String, String) {
    let v: serde_json::Value = serde_json::from_slice(&fs::read(record).unwrap()).unwrap();
    let top = v["layers"].as_array().unwrap().last().unwrap().clone();
    let hex = |k: &str| top[k].as_str().unwrap().trim_start_matches("sha256:").to_string();
    (hex("digest"), hex("diff_id"))
}

#[test]
fn verify_names_each_damage_and_the_repair_lets_the_units_pull_again_and_run() {
    root_only!("verify_names_each_damage_and_the_repair_lets_the_units_pull_again_and_run");
    let fx = tempfile::tempdir().unwrap();
    let with = |n: &str| busybox_plus(&fx.path().join(n), &layer(&[], std::iter::once((n.to_string(), vec![1; 4096]))));
    let (a, b, c) = (busybox(), with("b"), with("c"));
    let mut d = Daemon::start();
    d.terminate(30);
    let state = d.dir.path().join("state");
    for image in [&a, &b, &c] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_supervisorctl"))
            .arg("--store")
            .arg(&state)
            .args(["pull", image])
            .output()
            .unwrap();
        assert!(out.status.success(), "pull {image}: {}", text(&out.stderr));
    }
    assert!(verify_offline(d.dir.path(), &[]).status.success(), "a fresh store is not consistent");

    // A's record truncated, B's top layer directory removed, a byte of C's
    // top layer blob flipped.
    // (Each record found before any is damaged: a truncated one cannot be
    // read to tell whose it is.)
    let record_a = record_file(&state, &a);
    let (_, b_diff) = top_layer(&record_file(&state, &b));
    let (c_blob, _) = top_layer(&record_file(&state, &c));
    let len = fs::metadata(&record_a).unwrap().len();
    fs::File::options().write(true).open(&record_a).unwrap().set_len(len / 2).unwrap();
    fs::remove_dir_all(state.join("images/layers").join(&b_diff)).unwrap();
    let c_path = state.join("images/blobs/sha256").join(&c_blob);
    let mut bytes = fs::read(&c_path).unwrap();
    bytes[600] ^= 0x20;
    fs::write(&c_path, bytes).unwrap();

    let v = verify_offline(d.dir.path(), &[]);
    let out = text(&v.stdout);
    assert_eq!(v.status.code(), Some(1), "{out}{}", text(&v.stderr));
    for needle in [
        format!("{}: an unreadable image record", record_a.display()),
        format!("image {b}: 1 of its layer directories missing"),
        format!("blob sha256:{c_blob}: content has digest"),
        format!("image {c}: its layer blob sha256:{c_blob} is corrupt"),
    ] {
        assert!(out.contains(&needle), "no {needle:?} in:\n{out}");
    }

    let r = verify_offline(d.dir.path(), &["--repair"]);
    assert!(r.status.success(), "{}{}", text(&r.stdout), text(&r.stderr));
    let out = text(&r.stdout);
    assert!(out.contains(&format!("repaired: removed {}", record_a.display())), "{out}");
    assert!(out.contains(&format!("repaired: removed {}", c_path.display())), "{out}");
    assert!(out.contains(&format!("made the layers of {b} again")), "{out}");
    assert!(verify_offline(d.dir.path(), &[]).status.success(), "still inconsistent after the repair");

    // A and C are pulled again at their units' start; B has its layer.
    d.spawn();
    let names: Vec<String> = [&a, &b, &c]
        .iter()
        .map(|image| {
            let name = unique_name("vf");
            d.write_unit(&name, &unit(image, ""));
            name
        })
        .collect();
    for name in &names {
        wait_running(&d, name);
    }
    assert!(fs::read(&c_path).is_ok_and(|b| common::sha256(&b) == format!("sha256:{c_blob}")));
    let v = d.ctl(&["verify"]);
    assert!(v.status.success(), "verify through the daemon: {}{}", text(&v.stdout), text(&v.stderr));
}
