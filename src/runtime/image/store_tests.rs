//! Tests of the store's records, blobs and locks (store.rs).

use super::*;

fn record(reference: &str, manifest: &[u8]) -> ImageRecord {
    ImageRecord {
        reference: reference.into(),
        manifest_digest: Digest::of(manifest),
        config_digest: Digest::of(b"config"),
        platform: "linux/amd64".into(),
        layers: Vec::new(),
        size: 0,
        pulled: 0,
    }
}

#[test]
fn a_moved_reference_leaves_its_image_until_nothing_runs_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let (a, b) = (record("r:t", b"A"), record("r:t", b"B"));
    store.put_record(&a).unwrap();
    store.put_record(&a).unwrap();
    assert!(store.dangling().unwrap().is_empty(), "the same image again is no move");
    store.put_record(&b).unwrap();
    assert_eq!(store.record("r:t").unwrap(), Some(b.clone()));
    assert_eq!(store.dangling().unwrap(), vec![a.clone()]);
    let keep = BTreeSet::from(["r:t".to_string()]);
    // A container runs A: it stays.
    let removed = store.prune(&keep, &BTreeSet::from([a.manifest_digest.clone()])).unwrap();
    assert!(removed.images.is_empty());
    assert_eq!(store.dangling().unwrap().len(), 1);
    // No reference named, but a container runs it: stays too.
    let removed = store.prune(&BTreeSet::new(), &BTreeSet::from([b.manifest_digest.clone()])).unwrap();
    assert_eq!(removed.images, vec![format!("r:t@{}", a.manifest_digest)]);
    assert_eq!(store.record("r:t").unwrap(), Some(b.clone()));
    let removed = store.prune(&BTreeSet::new(), &BTreeSet::new()).unwrap();
    assert_eq!(removed.images, vec!["r:t".to_string()]);
}

#[test]
fn a_damaged_small_blob_is_replaced_when_it_is_stored_again() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let d = Digest::of(b"config");
    store.put_blob(&d, b"config").unwrap();
    fs::write(store.blob_path(&d), b"damaged").unwrap();
    assert!(matches!(store.read_blob(&d), Err(ImageError::DigestMismatch { .. })));
    store.put_blob(&d, b"config").unwrap();
    assert_eq!(store.read_blob(&d).unwrap(), b"config");
}

#[test]
fn an_offline_prune_is_locked_out_while_a_daemon_holds_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let daemon = store.hold_for_daemon().unwrap();
    let e = store.lock_out_daemon("prune").err().expect("refused").to_string();
    assert!(e.contains("a running supervisord uses the store"), "{e}");
    drop(daemon);
    let offline = store.lock_out_daemon("prune").unwrap();
    drop(offline);
    store.hold_for_daemon().unwrap();
}
