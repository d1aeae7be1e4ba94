//! `verify` and the crash-safety sweeps on hand-made stores, corrupted by
//! hand; no root needed (the layers' files are the caller's own).

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use super::*;
use crate::names::reference::ImageSource;
use crate::runtime::image::export::seed_volume;

/// An OCI layout with one uncompressed layer of `files` (owned by the
/// caller), tagged `t`; its source.
fn layout(dir: &Path, files: &[(&str, &[u8])]) -> ImageSource {
    let mut b = tar::Builder::new(Vec::new());
    let (uid, gid) = (nix::unistd::geteuid().as_raw().into(), nix::unistd::getegid().as_raw().into());
    for (path, data) in files {
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_uid(uid);
        h.set_gid(gid);
        h.set_mtime(1_700_000_000);
        b.append_data(&mut h, path, *data).unwrap();
    }
    let layer = b.into_inner().unwrap();
    fs::create_dir_all(dir.join("blobs/sha256")).unwrap();
    let put = |bytes: &[u8]| {
        let d = Digest::of(bytes);
        fs::write(dir.join("blobs/sha256").join(d.hex()), bytes).unwrap();
        (d, bytes.len())
    };
    let (layer_digest, layer_size) = put(&layer);
    let config = format!(
        r#"{{"architecture":"amd64","os":"linux","config":{{}},"rootfs":{{"type":"layers","diff_ids":["{layer_digest}"]}}}}"#
    );
    let (config_digest, config_size) = put(config.as_bytes());
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{config_digest}","size":{config_size}}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{layer_digest}","size":{layer_size}}}]}}"#
    );
    let (m, msize) = put(manifest.as_bytes());
    fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    fs::write(
        dir.join("index.json"),
        format!(
            r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{m}","size":{msize},"annotations":{{"org.opencontainers.image.ref.name":"t"}}}}]}}"#
        ),
    )
    .unwrap();
    ImageSource::parse(&format!("oci:{}:t", dir.display()), Path::new("/")).unwrap()
}

fn no_containers(state: &Path) -> Containers {
    Containers { layers: state.join("containers"), run_dir: None, daemon_units: None }
}

fn objects(problems: &[Problem]) -> Vec<String> {
    problems.iter().map(|p| p.to_string()).collect()
}

#[test]
fn a_whole_store_verifies_clean() {
    let t = tempfile::tempdir().unwrap();
    let store = Store::open(&t.path().join("state")).unwrap();
    store.pull(&layout(&t.path().join("a"), &[("f", b"a")]), &PullOptions::default(), &Quiet).unwrap();
    assert_eq!(store.verify(&no_containers(&t.path().join("state"))).unwrap(), Vec::new());
}

#[test]
fn each_damage_is_named_and_the_repair_leaves_a_store_that_pulls_again() {
    let t = tempfile::tempdir().unwrap();
    let state = t.path().join("state");
    let store = Store::open(&state).unwrap();
    let opts = PullOptions::default();
    let (a, b, c) = (
        layout(&t.path().join("a"), &[("fa", b"aaaa")]),
        layout(&t.path().join("b"), &[("fb", b"bbbb")]),
        layout(&t.path().join("c"), &[("fc", b"cccc")]),
    );
    let ia = store.pull(&a, &opts, &Quiet).unwrap();
    let ib = store.pull(&b, &opts, &Quiet).unwrap();
    store.pull(&c, &opts, &Quiet).unwrap();

    // A: a byte of its layer blob flipped. B: its layer directory gone.
    // C: its record truncated. And what killed pulls leave.
    let blob = store.blob_path(&ia.record.layers[0].digest);
    let mut bytes = fs::read(&blob).unwrap();
    bytes[100] ^= 1;
    fs::write(&blob, bytes).unwrap();
    fs::remove_dir_all(&ib.layer_dirs[0]).unwrap();
    let record = store.record_path(&c.to_string());
    let len = fs::metadata(&record).unwrap().len();
    fs::File::options().write(true).open(&record).unwrap().set_len(len / 2).unwrap();
    fs::write(store.root().join("tmp/blob-1-1"), b"partial").unwrap();
    fs::create_dir_all(store.root().join("tmp/layer-1-2/etc")).unwrap();

    let problems = store.verify(&no_containers(&state)).unwrap();
    let text = objects(&problems).join("\n");
    let has = |needle: &str| assert!(text.contains(needle), "no {needle:?} in:\n{text}");
    has(&format!("blob {}: content has digest", ia.record.layers[0].digest));
    has(&format!("image {a}: its layer blob {} is corrupt", ia.record.layers[0].digest));
    has(&format!("image {b}: 1 of its layer directories missing"));
    has(&format!("{}: an unreadable image record", record.display()));
    has("tmp/blob-1-1: left by an interrupted pull");
    has("tmp/layer-1-2: left by an interrupted pull");
    assert_eq!(problems.len(), 6, "{text}");

    let report = store.verify_report(&no_containers(&state), Some(&opts)).unwrap();
    assert!(report.clean(), "{report:?}");
    assert_eq!(report.problems, problems);
    assert!(report.repaired.iter().any(|l| l.contains(&format!("made the layers of {b} again"))), "{report:?}");
    // A and C are no longer recorded: their next use pulls them again.
    assert!(store.record(&a.to_string()).unwrap().is_none() && store.record(&c.to_string()).unwrap().is_none());
    assert!(store.image(&b.to_string()).unwrap().is_some_and(|i| i.layer_dirs[0].join("fb").is_file()));
    assert!(!blob.exists());
    assert_eq!(fs::read_dir(store.root().join("tmp")).unwrap().count(), 0);
    let again = store.pull(&a, &opts, &Quiet).unwrap();
    assert_eq!(fs::read(again.layer_dirs[0].join("fa")).unwrap(), b"aaaa");
    store.pull(&c, &opts, &Quiet).unwrap();
    assert_eq!(store.verify(&no_containers(&state)).unwrap(), Vec::new());
}

#[test]
fn a_record_that_does_not_match_its_manifest_is_named() {
    let t = tempfile::tempdir().unwrap();
    let state = t.path().join("state");
    let store = Store::open(&state).unwrap();
    let a = layout(&t.path().join("a"), &[("f", b"a")]);
    let image = store.pull(&a, &PullOptions::default(), &Quiet).unwrap();
    let mut record = image.record.clone();
    record.layers[0].diff_id = Digest::of(b"another layer");
    store.put_record(&record).unwrap();
    let problems = store.verify(&no_containers(&state)).unwrap();
    assert_eq!(
        objects(&problems),
        vec![format!(
            "image {a}: its record does not match its manifest and config; its record goes, so the next start pulls it again"
        )]
    );
}

#[test]
fn opening_the_store_sweeps_what_killed_pulls_left_unless_a_pull_runs() {
    let t = tempfile::tempdir().unwrap();
    let store = Store::open(t.path()).unwrap();
    let leftover = store.root().join("tmp/layer-99-0");
    fs::create_dir_all(leftover.join("usr/bin")).unwrap();
    {
        // A pull in progress (in this process or another) holds the lock
        // shared: its files are its own.
        let _pulling = store.lock_store(false).unwrap();
        Store::open(t.path()).unwrap();
        assert!(leftover.exists(), "the files of a pull in progress were swept");
    }
    // Opened as it is (for verify): left, and reported.
    Store::open_as_is(t.path()).unwrap();
    assert!(leftover.exists());
    Store::open(t.path()).unwrap();
    assert!(!leftover.exists());
}

#[test]
fn a_half_seeded_volume_is_seeded_again_and_a_seeded_one_left_alone() {
    let t = tempfile::tempdir().unwrap();
    let store = Store::open(&t.path().join("state")).unwrap();
    let image = store
        .pull(&layout(&t.path().join("a"), &[("data/one", b"1"), ("data/two", b"2")]), &PullOptions::default(), &Quiet)
        .unwrap();
    let volume = t.path().join("state/volumes/v");
    // What a seeding killed halfway leaves: never the volume's data.
    fs::create_dir_all(volume.join("_data.seeding")).unwrap();
    fs::write(volume.join("_data.seeding/one"), b"1").unwrap();
    {
        // Being seeded now (its lock held): not a leftover.
        let _seeding = crate::runtime::image::store::flock(&volume.join(".seed.lock"), true).unwrap();
        assert_eq!(check_volumes(&t.path().join("state/volumes")), Vec::new());
    }
    let problems = check_volumes(&t.path().join("state/volumes"));
    assert_eq!(problems.len(), 1);
    assert!(problems[0].to_string().contains("volume v: "), "{problems:?}");
    assert!(seed_volume(&image.layer_dirs, "/data", &volume).unwrap());
    let mut names: Vec<String> =
        fs::read_dir(volume.join("_data")).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    names.sort();
    assert_eq!(names, ["one", "two"]);
    assert!(!volume.join("_data.seeding").exists());
    // Seeded once: what the containers wrote stays.
    fs::remove_file(volume.join("_data/two")).unwrap();
    assert!(!seed_volume(&image.layer_dirs, "/data", &volume).unwrap());
    assert!(!volume.join("_data/two").exists());
    assert!(check_volumes(&t.path().join("state/volumes")).is_empty());
}

#[test]
fn container_layers_and_records_are_checked_against_each_other() {
    let t = tempfile::tempdir().unwrap();
    let (layers, run) = (t.path().join("containers"), t.path().join("run"));
    for name in ["recorded", "orphan", "known", "starting"] {
        fs::create_dir_all(layers.join(name).join("upper")).unwrap();
    }
    let me = std::process::id() as i32;
    let record = |name: &str, pid: i32, start_time: u64| -> ContainerState {
        serde_json::from_value(serde_json::json!({
            "name": name, "pid": pid, "start_time": start_time,
            "cgroup": {"V2": "/sys/fs/cgroup/none"}, "dir": layers.join(name),
            "process": {"uid": 0, "gid": 0, "additional_gids": [], "caps": null, "no_new_privileges": true,
                        "seccomp": null, "cwd": "/", "env": []},
        }))
        .unwrap()
    };
    // Field 22 of /proc/self/stat, counted after the command's ')'.
    let stat = fs::read_to_string("/proc/self/stat").unwrap();
    let start: u64 = stat[stat.rfind(')').unwrap() + 1..].split_whitespace().nth(19).unwrap().parse().unwrap();
    record("recorded", me, start).save(&run).unwrap();
    record("gone", me, start + 1).save(&run).unwrap();
    fs::write(run.join("containers/torn.json"), b"{\"name\": ").unwrap();
    // Killed while being made: a pending record, pid 0, owns its layer.
    record("starting", 0, 0).save_pending(&run).unwrap();

    // Offline, no supervisord: a live one is left for the next one's start
    // to remove, as is a dead one's record; the orphan layer goes.
    let offline = Containers { layers: layers.clone(), run_dir: Some(run.clone()), daemon_units: None };
    let problems = check_containers(&offline, None);
    let text = objects(&problems).join("\n");
    for needle in [
        &format!("container recorded: pid {me} still runs, with no supervisord"),
        "container gone: its record",
        "container torn: its record",
        "container orphan: writable layer",
        "container known: writable layer",
        "container starting: its record",
    ] {
        assert!(text.contains(needle), "no {needle:?} in:\n{text}");
    }
    assert!(!text.contains("container starting: writable layer"), "{text}");
    assert_eq!(problems.len(), 6, "{text}");
    let removable: BTreeSet<&str> = problems
        .iter()
        .filter(|p| p.repair.is_some())
        .map(|p| p.object.strip_prefix("container ").unwrap_or(&p.object))
        .collect();
    assert_eq!(removable, BTreeSet::from(["torn", "orphan", "known"]));

    // Through a supervisord: the layers of units it knows are its own.
    let view = DaemonView { units: BTreeSet::from(["known".to_string()]), ..DaemonView::default() };
    let text = objects(&check_containers(&offline, Some(&view))).join("\n");
    assert!(text.contains("container orphan: writable layer") && !text.contains("container known"), "{text}");
    assert!(!text.contains("still runs"), "{text}");
    // A second container of a known unit (a start-first update), its layer
    // made before its record: the unit's too.
    fs::create_dir_all(layers.join("known.7/upper")).unwrap();
    let text = objects(&check_containers(&offline, Some(&view))).join("\n");
    assert!(!text.contains("container known.7"), "{text}");
}

#[test]
fn a_seeding_under_way_is_kept_by_the_repair() {
    let t = tempfile::tempdir().unwrap();
    let state = t.path().join("state");
    let store = Store::open(&state).unwrap();
    let volume = state.join("volumes/v");
    fs::create_dir_all(volume.join(VOLUME_SEEDING)).unwrap();
    let problems = check_volumes(&state.join("volumes"));
    assert_eq!(problems.len(), 1, "{problems:?}");
    // A start began seeding it between the check and the repair.
    {
        let _seeding = crate::runtime::image::store::flock(&volume.join(VOLUME_LOCK), true).unwrap();
        let done = store.repair(&problems, &no_containers(&state), &PullOptions::default()).unwrap();
        assert!(volume.join(VOLUME_SEEDING).is_dir(), "{done:?}");
        assert!(done.iter().any(|l| l.contains("being seeded now")), "{done:?}");
    }
    let done = store.repair(&problems, &no_containers(&state), &PullOptions::default()).unwrap();
    assert!(!volume.join(VOLUME_SEEDING).exists(), "{done:?}");
}

#[test]
fn an_image_a_container_runs_keeps_its_record_through_a_repair() {
    let t = tempfile::tempdir().unwrap();
    let state = t.path().join("state");
    let store = Store::open(&state).unwrap();
    let opts = PullOptions::default();
    let a = layout(&t.path().join("a"), &[("fa", b"aaaa")]);
    let image = store.pull(&a, &opts, &Quiet).unwrap();
    let blob = store.blob_path(&image.record.layers[0].digest);
    let mut bytes = fs::read(&blob).unwrap();
    bytes[100] ^= 1;
    fs::write(&blob, bytes).unwrap();

    let view = DaemonView {
        units: BTreeSet::from(["web".to_string()]),
        running: BTreeMap::from([(image.record.manifest_digest.hex().to_string(), vec!["web".to_string()])]),
        starting: BTreeMap::from([(a.to_string(), vec!["new".to_string()])]),
    };
    let containers = Containers { daemon_units: Some(AskDaemon::fixed(view)), ..no_containers(&state) };
    let report = store.verify_report(&containers, Some(&opts)).unwrap();
    let text = objects(&report.problems).join("\n");
    let line = report.problems.iter().find(|p| p.object == format!("image {a}")).expect(&text);
    assert!(line.problem.contains("in use by unit web, unit new: stop them and run verify --repair again"), "{text}");
    assert_eq!(line.repair, None, "{text}");
    // Its record and layers stay for the running container (a prune keeps them).
    assert!(store.record(&a.to_string()).unwrap().is_some(), "{report:?}");
    assert!(image.layer_dirs[0].join("fa").is_file());
    assert!(!report.clean(), "{report:?}");

    // Once it is stopped, the repair drops the record as for any other.
    let report = store.verify_report(&no_containers(&state), Some(&opts)).unwrap();
    assert!(report.clean(), "{report:?}");
    assert!(store.record(&a.to_string()).unwrap().is_none());
}

#[test]
fn a_unit_the_daemon_learns_of_during_the_check_keeps_its_layer() {
    let t = tempfile::tempdir().unwrap();
    let state = t.path().join("state");
    let store = Store::open(&state).unwrap();
    let (layers, run) = (state.join("containers"), t.path().join("run"));
    fs::create_dir_all(layers.join("late/upper")).unwrap();
    fs::create_dir_all(run.join("containers")).unwrap();
    // Unknown when the check asks; added (by a reload) before the removal.
    let added = Arc::new(AtomicBool::new(false));
    let seen = added.clone();
    let ask = AskDaemon(Arc::new(move || {
        let units = if seen.load(Ordering::SeqCst) { BTreeSet::from(["late".to_string()]) } else { BTreeSet::new() };
        Some(DaemonView { units, ..DaemonView::default() })
    }));
    let containers = Containers { layers: layers.clone(), run_dir: Some(run), daemon_units: Some(ask) };
    let problems = store.verify(&containers).unwrap();
    assert!(objects(&problems).join("\n").contains("container late: writable layer"), "{problems:?}");
    added.store(true, Ordering::SeqCst);
    let done = store.repair(&problems, &containers, &PullOptions::default()).unwrap();
    assert!(layers.join("late/upper").is_dir(), "{done:?}");
    assert!(done.iter().any(|l| l.contains("unit late is known to the supervisor now")), "{done:?}");
}
