//! Registry faults (issue 15 item 3): a proxy in front of a real registry
//! stalls, resets, fails, throttles, lies about a blob's length or sends
//! one without end. Each pull's retries are bounded and counted, its
//! error names the registry and what happened, and the store holds
//! nothing half-made; a stuck pull holds no start permit.

use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::common;
use crate::common::daemon::{Daemon, busybox};
use crate::common::proxy::{Fault, Options, Proxy};
use crate::common::registry::Registry;
use supervisor::runtime::image::{ImageError, PullOptions, Quiet, RegistryOptions, Store};
use supervisor::units::values::reference::ImageSource;

/// A registry holding `t/base:v1`, the fixtures' one-layer busybox image
/// (about a megabyte compressed).
fn registry() -> Registry {
    let fx = common::fixtures();
    let registry = Registry::start(None);
    registry.push(&format!("oci:{}:base", fx.join("layout").display()), "t/base:v1", false);
    registry
}

/// Pulls `t/base:v1` through `proxy` into a new store under `dir`, with a
/// one-second registry timeout.
fn pull(dir: &Path, proxy: &Proxy) -> (Store, String, Result<(), ImageError>) {
    let store = Store::open(&dir.join(proxy.port.to_string())).unwrap();
    let reference = format!("{}/t/base:v1", proxy.host());
    let source = ImageSource::parse(&reference, Path::new("/")).unwrap();
    let registry = RegistryOptions { timeout: Duration::from_secs(1), ..RegistryOptions::default() };
    let options = PullOptions { registry, ..PullOptions::default() };
    let result = store.pull(&source, &options, &Quiet).map(|_| ());
    (store, reference, result)
}

/// Nothing half-made: no record, nothing in tmp, no blob or layer of the
/// image's one layer (its config may be kept: it is complete).
fn assert_nothing_half_made(store: &Store, reference: &str) {
    assert!(store.record(reference).unwrap().is_none(), "{reference} was recorded");
    let tmp: Vec<_> = std::fs::read_dir(store.root().join("tmp")).unwrap().collect();
    assert!(tmp.is_empty(), "leftovers in tmp: {tmp:?}");
    let layers: Vec<_> = std::fs::read_dir(store.root().join("layers")).map(|d| d.collect()).unwrap_or_default();
    assert!(layers.is_empty(), "a layer of a failed pull: {layers:?}");
    let blobs = walk_files(&store.root().join("blobs"));
    assert!(blobs.iter().all(|(_, size)| *size < 16 << 10), "a layer's blob of a failed pull: {blobs:?}");
}

fn walk_files(dir: &Path) -> Vec<(std::path::PathBuf, u64)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let m = e.metadata().unwrap();
        if m.is_dir() {
            out.extend(walk_files(&e.path()));
        } else {
            out.push((e.path(), m.len()));
        }
    }
    out
}

/// The error of a failed pull through `proxy`: it names the registry (the
/// reference) and the layer's blob, and says `fault` and `attempts`.
fn assert_error(err: &ImageError, proxy: &Proxy, fault: &str, attempts: u32) {
    let text = err.to_string();
    assert!(text.starts_with(&format!("pull {}/t/base:v1: blob sha256:", proxy.host())), "{text}");
    assert!(text.contains(fault), "not {fault:?}: {text}");
    assert!(text.ends_with(&format!(", {attempts} attempts")), "not {attempts} attempts: {text}");
}

#[test]
fn a_stalled_blob_is_retried_a_bounded_number_of_times_and_leaves_nothing() {
    crate::root_only!("a_stalled_blob_is_retried_a_bounded_number_of_times_and_leaves_nothing");
    let registry = registry();
    let dir = tempfile::tempdir().unwrap();
    let proxy = Proxy::start(registry.port, Options::layers(1000, Fault::Stall(50_000)));
    let started = Instant::now();
    let (store, reference, result) = pull(dir.path(), &proxy);
    let err = result.unwrap_err();
    assert_error(&err, &proxy, "no data for 1s (registry_timeout) after 50.0 kB of ", 3);
    assert_eq!(proxy.stats.layer_requests.load(Ordering::SeqCst), 3);
    // Three timeouts of a second and pauses of 1 s and 2 s between them.
    assert!(started.elapsed() >= Duration::from_secs(6), "no backoff: {:?}", started.elapsed());
    assert_nothing_half_made(&store, &reference);

    // A stall once: the second try completes the pull.
    let proxy = Proxy::start(registry.port, Options::layers(1, Fault::Stall(50_000)));
    let (store, reference, result) = pull(dir.path(), &proxy);
    result.unwrap();
    assert_eq!(proxy.stats.layer_requests.load(Ordering::SeqCst), 2);
    assert!(store.record(&reference).unwrap().is_some());
}

#[test]
fn a_connection_reset_mid_blob_is_retried_and_named() {
    crate::root_only!("a_connection_reset_mid_blob_is_retried_and_named");
    let registry = registry();
    let dir = tempfile::tempdir().unwrap();
    let proxy = Proxy::start(registry.port, Options::layers(1000, Fault::Reset(200_000)));
    let (store, reference, result) = pull(dir.path(), &proxy);
    let err = result.unwrap_err();
    assert_error(&err, &proxy, "the registry closed or reset the connection", 3);
    // What came before the reset, less what the reset threw away unread.
    assert!(err.to_string().contains(" kB of 1.1 MB"), "{err}");
    assert_eq!(proxy.stats.layer_requests.load(Ordering::SeqCst), 3);
    assert_nothing_half_made(&store, &reference);

    let proxy = Proxy::start(registry.port, Options::layers(2, Fault::Reset(200_000)));
    let (_, _, result) = pull(dir.path(), &proxy);
    result.unwrap();
    assert_eq!(proxy.stats.layer_requests.load(Ordering::SeqCst), 3);
}

#[test]
fn server_errors_on_a_blob_are_retried_with_backoff_then_named() {
    crate::root_only!("server_errors_on_a_blob_are_retried_with_backoff_then_named");
    let registry = registry();
    let dir = tempfile::tempdir().unwrap();
    let proxy = Proxy::start(registry.port, Options::layers(1000, Fault::Status(503)));
    let started = Instant::now();
    let (store, reference, result) = pull(dir.path(), &proxy);
    let err = result.unwrap_err();
    // The request's own tries: 5, after pauses of 0.2, 0.4, 0.8, 1.6 s.
    assert_error(&err, &proxy, "HTTP 503", 5);
    assert_eq!(proxy.stats.layer_requests.load(Ordering::SeqCst), 5);
    assert!(started.elapsed() >= Duration::from_millis(3000), "no backoff: {:?}", started.elapsed());
    assert_nothing_half_made(&store, &reference);

    let proxy = Proxy::start(registry.port, Options::layers(2, Fault::Status(500)));
    let (_, _, result) = pull(dir.path(), &proxy);
    result.unwrap();
    assert_eq!(proxy.stats.layer_requests.load(Ordering::SeqCst), 3);
}

#[test]
fn too_many_requests_waits_as_retry_after_says() {
    crate::root_only!("too_many_requests_waits_as_retry_after_says");
    let registry = registry();
    let dir = tempfile::tempdir().unwrap();
    // Twice 429 with Retry-After: 1, then the blob.
    let proxy = Proxy::start(registry.port, Options::layers(2, Fault::Status(429)));
    let started = Instant::now();
    let (_, _, result) = pull(dir.path(), &proxy);
    result.unwrap();
    assert_eq!(proxy.stats.layer_requests.load(Ordering::SeqCst), 3);
    assert!(started.elapsed() >= Duration::from_secs(2), "Retry-After was not honoured: {:?}", started.elapsed());

    // Always 429: five tries, each after the second it asks for.
    let proxy = Proxy::start(registry.port, Options::layers(1000, Fault::Status(429)));
    let started = Instant::now();
    let (store, reference, result) = pull(dir.path(), &proxy);
    assert_error(&result.unwrap_err(), &proxy, "HTTP 429", 5);
    assert_eq!(proxy.stats.layer_requests.load(Ordering::SeqCst), 5);
    assert!(started.elapsed() >= Duration::from_secs(4), "{:?}", started.elapsed());
    assert_nothing_half_made(&store, &reference);
}

#[test]
fn a_wrong_content_length_is_a_broken_transfer() {
    crate::root_only!("a_wrong_content_length_is_a_broken_transfer");
    let registry = registry();
    let dir = tempfile::tempdir().unwrap();
    // Shorter than the blob: the body ends early.
    let proxy = Proxy::start(registry.port, Options::layers(1000, Fault::Length(-1000)));
    let (store, reference, result) = pull(dir.path(), &proxy);
    let err = result.unwrap_err();
    assert_error(&err, &proxy, "the body ended after ", 3);
    assert_eq!(proxy.stats.layer_requests.load(Ordering::SeqCst), 3);
    assert_nothing_half_made(&store, &reference);

    // Longer: the connection closes before the length said.
    let proxy = Proxy::start(registry.port, Options::layers(1000, Fault::Length(1000)));
    let (store, reference, result) = pull(dir.path(), &proxy);
    let err = result.unwrap_err();
    assert_error(&err, &proxy, " after ", 3);
    assert_eq!(proxy.stats.layer_requests.load(Ordering::SeqCst), 3);
    assert_nothing_half_made(&store, &reference);

    // Once wrong, then right: the pull completes.
    let proxy = Proxy::start(registry.port, Options::layers(1, Fault::Length(-1000)));
    let (_, _, result) = pull(dir.path(), &proxy);
    result.unwrap();
    assert_eq!(proxy.stats.layer_requests.load(Ordering::SeqCst), 2);
}

#[test]
fn a_blob_that_never_ends_is_cut_at_its_size_and_not_retried() {
    crate::root_only!("a_blob_that_never_ends_is_cut_at_its_size_and_not_retried");
    let registry = registry();
    let dir = tempfile::tempdir().unwrap();
    let proxy = Proxy::start(registry.port, Options::layers(1000, Fault::Endless));
    let started = Instant::now();
    let (store, reference, result) = pull(dir.path(), &proxy);
    let text = result.unwrap_err().to_string();
    assert!(text.starts_with(&format!("pull {}/t/base:v1: blob sha256:", proxy.host())), "{text}");
    assert!(text.contains("the source sent more than its "), "{text}");
    // The same request would send the same: one try.
    assert_eq!(proxy.stats.layer_requests.load(Ordering::SeqCst), 1);
    assert!(started.elapsed() < Duration::from_secs(20), "{:?}", started.elapsed());
    assert_nothing_half_made(&store, &reference);
}

#[test]
fn a_stalled_manifest_is_retried() {
    crate::root_only!("a_stalled_manifest_is_retried");
    let registry = registry();
    let dir = tempfile::tempdir().unwrap();
    let stalled = Options { manifests: Some((1000, Fault::Stall(10))), ..Options::plain() };
    let proxy = Proxy::start(registry.port, stalled);
    let (store, reference, result) = pull(dir.path(), &proxy);
    let text = result.unwrap_err().to_string();
    assert!(text.starts_with(&format!("pull {}/t/base:v1: manifest v1: no data for 1s", proxy.host())), "{text}");
    assert!(text.ends_with(", 5 attempts"), "{text}");
    assert_eq!(proxy.stats.manifest_requests.load(Ordering::SeqCst), 5);
    assert_nothing_half_made(&store, &reference);

    let once = Options { manifests: Some((1, Fault::Reset(10))), ..Options::plain() };
    let proxy = Proxy::start(registry.port, once);
    let (_, _, result) = pull(dir.path(), &proxy);
    result.unwrap();
    assert_eq!(proxy.stats.manifest_requests.load(Ordering::SeqCst), 2);
}

/// A unit of `image` that sleeps; its retries come quickly.
fn sleeper(image: &str) -> String {
    format!(
        "[container]\nimage = \"{image}\"\ncommand = [\"sh\", \"-c\", \"trap 'exit 0' TERM; sleep 100000 & wait\"]\n\
         [restart]\ndelay = \"200ms\"\nmax_delay = \"1s\"\n"
    )
}

#[test]
fn a_stuck_pull_holds_no_start_permit() {
    crate::root_only!("a_stuck_pull_holds_no_start_permit");
    let registry = registry();
    // Another image (its layers are not the stuck one's, whose lock the
    // stuck pull holds), from another registry.
    let other_image = format!("oci:{}:latest", common::example_redis().parent().unwrap().join("busybox").display());
    registry.push(&other_image, "t/other:v1", false);
    let stuck = Proxy::start(registry.port, Options::layers(1000, Fault::Stall(50_000)));
    let other = Proxy::start(registry.port, Options::plain());
    // A timeout longer than the test waits: the stuck pulls stay stuck.
    let d = Daemon::start_configured("registry_timeout = \"60s\"\n", |_| {});
    // More stuck pulls than starts may run at once (8).
    let stuck_units: Vec<String> = (0..9).map(|_| common::unique_name("rs")).collect();
    for name in &stuck_units {
        d.write_unit(name, &sleeper(&format!("{}/t/base:v1", stuck.host())));
    }
    for name in &stuck_units {
        d.wait_state(name, "pulling");
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    // One transfer of the layer; the other pulls wait for its lock.
    while stuck.stats.layer_requests.load(Ordering::SeqCst) < 1 {
        assert!(Instant::now() < deadline, "the stuck pull did not begin:\n{}", d.log());
        std::thread::sleep(Duration::from_millis(50));
    }
    // An image in the store already (a local layout), and one from
    // another registry, start and run meanwhile.
    let (local, remote) = (common::unique_name("rl"), common::unique_name("rr"));
    d.write_unit(&local, &sleeper(&busybox()));
    d.write_unit(&remote, &sleeper(&format!("{}/t/other:v1", other.host())));
    d.wait_for(&local, "running while pulls are stuck", 20, |u| u.is_some_and(|u| u["state"] == "running"));
    d.wait_for(&remote, "running while pulls are stuck", 20, |u| u.is_some_and(|u| u["state"] == "running"));
    for name in &stuck_units {
        assert_eq!(d.unit(name).unwrap()["state"], "pulling", "{name}");
    }
    // The stuck transfers end (the proxy goes), so that the daemon's
    // shutdown need not wait for their timeout.
    drop(stuck);
}

#[test]
fn a_failing_registry_shows_in_status_and_the_unit_retries_by_itself() {
    crate::root_only!("a_failing_registry_shows_in_status_and_the_unit_retries_by_itself");
    let registry = registry();
    // Ten 503s: the first start's five tries fail, the second's too, the
    // third start pulls.
    let proxy = Proxy::start(registry.port, Options::layers(10, Fault::Status(503)));
    let d = Daemon::start();
    let name = common::unique_name("rf");
    d.write_unit(&name, &sleeper(&format!("{}/t/base:v1", proxy.host())));
    let u = d.wait_for(&name, "showing the registry's error", 30, |u| u.is_some_and(|u| !u["error"].is_null()));
    let err = u.unwrap()["error"].as_str().unwrap().to_string();
    assert!(err.starts_with(&format!("pull {}/t/base:v1: blob sha256:", proxy.host())), "{err}");
    assert!(err.contains("HTTP 503, 5 attempts"), "{err}");
    let u = d.wait_for(&name, "running once the registry answers", 60, |u| u.is_some_and(|u| u["state"] == "running"));
    assert_eq!(proxy.stats.layer_requests.load(Ordering::SeqCst), 11, "{u:?}");
    let store = d.dir.path().join("state/images/tmp");
    let tmp: Vec<_> = std::fs::read_dir(&store).map(|d| d.collect()).unwrap_or_default();
    assert!(tmp.is_empty(), "leftovers in {}: {tmp:?}", store.display());
}
