//! Images by ID against Debian's docker-registry, as root: the moved-tag
//! check of auto-update asks the registry which image a tag names now
//! (comparable with what a pull records, indexes included, without
//! fetching a blob), and a unit pinned to an image ID gets that image
//! whatever its tag names and its pull policy says, or a clear error once
//! the store no longer has it.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::atomic::Ordering;

use common::proxy::{Options, Proxy};
use common::registry::Registry;
use supervisor::runtime::image::{ImageError, PullOptions, Quiet, Store, remote_digest};
use supervisor::supervisor::prepare::{PrepareError, image, needs_pull};
use supervisor::units::diag::Source;
use supervisor::units::model::Unit;
use supervisor::units::parse::{ParseInput, parse_unit};
use supervisor::units::values::reference::ImageSource;

fn src(s: &str) -> ImageSource {
    ImageSource::parse(s, Path::new("/")).unwrap()
}

fn unit(image: &str, pull: &str) -> Unit {
    let text = format!("[container]\nimage = \"{image}\"\npull = \"{pull}\"\n");
    let input = ParseInput {
        name: "web",
        source: Source { path: Path::new("web.toml"), text: &text },
        base_dir: Path::new("/etc/units.d"),
        read_file: &|_| Err("no files here".into()),
    };
    parse_unit(&input).unwrap_or_else(|e| panic!("{text}\n{e:#?}")).unit
}

/// Pushes the fixture layout's `tag` as `test/app:v1`.
fn push(registry: &Registry, fx: &Path, tag: &str) {
    registry.push(&format!("oci:{}:{tag}", fx.join("layout").display()), "test/app:v1", tag == "multi");
}

#[test]
fn a_moved_tag_is_seen_by_its_image_id_without_fetching_a_blob() {
    root_only!("a_moved_tag_is_seen_by_its_image_id_without_fetching_a_blob");
    let fx = common::fixtures();
    let registry = Registry::start(None);
    let proxy = Proxy::start(registry.port, Options::plain());
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let app = src(&format!("{}/test/app:v1", proxy.host()));
    let options = PullOptions::default();
    let blobs = || proxy.stats.blob_requests.load(Ordering::SeqCst);

    let mut seen = Vec::new();
    for tag in ["layered", "base", "multi"] {
        push(&registry, &fx, tag);
        let before = blobs();
        let remote = remote_digest(&app, &options).unwrap_or_else(|e| panic!("{tag}: {e}"));
        assert_eq!(blobs(), before, "{tag}: the check fetched a blob");
        let pulled = store.pull(&app, &options, &Quiet).unwrap().record.manifest_digest;
        assert_eq!(remote, pulled, "{tag}: the registry's answer is not the image a pull records");
        seen.push(remote);
    }
    assert_ne!(seen[0], seen[1], "pushing another image under the tag went unseen");
    // An index resolves to this host's manifest, as a pull does: the
    // fixture's amd64 image is `layered`.
    assert_eq!(seen[2], seen[0], "the index's digest, not the platform's manifest");

    // Errors name the image and its registry.
    let nope = src(&format!("{}/test/nope:v1", registry.host()));
    let e = remote_digest(&nope, &options).unwrap_err();
    assert!(matches!(&e, ImageError::Check { source, .. } if matches!(**source, ImageError::NotFound { .. })), "{e}");
    let text = e.to_string();
    assert!(text.starts_with(&format!("check {nope} at its source: ")) && text.contains("test/nope"), "{text}");
}

#[test]
fn a_pinned_unit_gets_its_image_whatever_the_tag_names_until_it_is_pruned() {
    root_only!("a_pinned_unit_gets_its_image_whatever_the_tag_names_until_it_is_pruned");
    let fx = common::fixtures();
    let mut registry = Registry::start(None);
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let reference = format!("{}/test/app:v1", registry.host());
    let options = PullOptions::default();
    push(&registry, &fx, "layered");
    let ran = store.pull(&src(&reference), &options, &Quiet).unwrap().record.manifest_digest;
    push(&registry, &fx, "base");
    let now = store.pull(&src(&reference), &options, &Quiet).unwrap().record.manifest_digest;
    assert_ne!(ran, now);
    // Nothing is fetched for a pinned unit, whatever its pull policy.
    registry.kill();

    for pull in ["always", "missing", "never"] {
        let web = unit(&reference, pull);
        assert!(!needs_pull(&web, &store, Some(&ran)), "pull = {pull}: a pinned image is never pulled");
        let pinned = image(&web, &store, &options, &Quiet, Some(&ran)).unwrap_or_else(|e| panic!("pull = {pull}: {e}"));
        assert_eq!(pinned.record.manifest_digest, ran, "pull = {pull}");
        assert!(pinned.layer_dirs.iter().all(|d| d.is_dir()));
    }
    // Unpinned, the tag's image as before; `always` would pull.
    let web = unit(&reference, "missing");
    assert_eq!(image(&web, &store, &options, &Quiet, None).unwrap().record.manifest_digest, now);
    assert!(needs_pull(&unit(&reference, "always"), &store, None));

    // A prune that keeps the pinned ID keeps it, dangling as it is.
    store.prune(&BTreeSet::from([reference.clone()]), &BTreeSet::from([ran.clone()])).unwrap();
    assert_eq!(image(&web, &store, &options, &Quiet, Some(&ran)).unwrap().record.manifest_digest, ran);
    // One that does not: the start fails and says which image is gone.
    store.prune(&BTreeSet::from([reference.clone()]), &BTreeSet::new()).unwrap();
    let e = image(&web, &store, &options, &Quiet, Some(&ran)).unwrap_err();
    assert!(matches!(e, PrepareError::PinnedGone { .. }), "{e}");
    assert_eq!(
        e.to_string(),
        format!("image {ran} (the image this unit ran before, {reference}) is no longer in the store")
    );
}
