//! What a registry or an image archive controls: layer tar streams,
//! manifests, indexes and configs, the `WWW-Authenticate` challenge, and
//! the operator's `auth.json`.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use base64::Engine as _;

use crate::runtime::image::config::ImageConfig;
use crate::runtime::image::guard::TarLimits;
use crate::runtime::image::manifest::{
    DOCKER_LIST, DOCKER_MANIFEST, Document, OCI_INDEX, OCI_MANIFEST, Platform, layer_compression, parse_document,
    select_platform,
};
use crate::runtime::image::registry::parse_challenge;
use crate::runtime::image::registry_options::parse_auth_file;
use crate::runtime::image::space::Budget;
use crate::runtime::image::unpack::unpack_layer;

const CANARY: &[u8] = b"outside the layer: never written\n";

/// A scratch directory, removed (whatever modes the layer left in it)
/// when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Scratch {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("supervisor-fuzz-{}-{n}", std::process::id()));
        // A leftover of a killed run of this pid.
        let _ = remove_all(&dir);
        std::fs::create_dir(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = remove_all(&self.0);
    }
}

/// `rm -rf` of a tree whose directories may have no write or search bit
/// (a layer's own modes): they are opened up first, never through a link.
fn remove_all(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::symlink_metadata(path)?;
    if meta.is_dir() {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700))?;
        for entry in std::fs::read_dir(path)? {
            remove_all(&entry?.path())?;
        }
        std::fs::remove_dir(path)
    } else {
        std::fs::remove_file(path)
    }
}

fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()).unwrap_or_default())
        .collect();
    names.sort();
    names
}

/// An uncompressed layer unpacked into `scratch/root` as a pull does it
/// (the daemon's limits, a 16 MiB budget): whether it is refused or
/// not, nothing is written outside `root`. Beside it, `outside/canary` must
/// keep its content, its mode and its single link (a hard link to it from
/// the layer, or a write through a symbolic link, would change them), and
/// nothing else may appear in `scratch`.
pub fn tar_layer(data: &[u8]) {
    let scratch = Scratch::new();
    let root = scratch.0.join("root");
    let outside = scratch.0.join("outside");
    let canary = outside.join("canary");
    std::fs::create_dir(&root).unwrap_or_else(|e| panic!("create {}: {e}", root.display()));
    std::fs::create_dir(&outside).unwrap_or_else(|e| panic!("create {}: {e}", outside.display()));
    std::fs::write(&canary, CANARY).unwrap_or_else(|e| panic!("write {}: {e}", canary.display()));
    let before = std::fs::symlink_metadata(&canary).unwrap_or_else(|e| panic!("stat {}: {e}", canary.display()));

    let budget = Budget::with_memory("fuzz", 16 << 20, &root, 1 << 20);
    let mut attempt = budget.attempt();
    let mut input = data;
    let _ = unpack_layer(&mut input, &root, "fuzz", TarLimits::default(), &mut attempt);
    drop(attempt);
    assert_eq!(budget.memory_used(), 0, "directory memory not given back");

    assert_eq!(names_in(&scratch.0), ["outside", "root"], "the layer wrote beside its directory");
    assert_eq!(names_in(&outside), ["canary"], "the layer wrote beside its directory");
    let after = std::fs::symlink_metadata(&canary).unwrap_or_else(|e| panic!("stat {}: {e}", canary.display()));
    assert!(after.is_file(), "the file outside the layer was replaced");
    assert_eq!(after.nlink(), 1, "the layer made a hard link to a file outside it");
    assert_eq!((after.mode(), after.uid(), after.gid()), (before.mode(), before.uid(), before.gid()));
    assert_eq!(std::fs::read(&canary).ok().as_deref(), Some(CANARY), "the layer wrote to a file outside it");
}

const CONTENT_TYPES: [Option<&str>; 5] =
    [None, Some(OCI_MANIFEST), Some(OCI_INDEX), Some(DOCKER_MANIFEST), Some(DOCKER_LIST)];

/// A manifest or index, as each content type a registry may send with it:
/// an accepted manifest prints to JSON that reads as the same manifest,
/// its layers' media types are judged, and the platform chosen from an
/// accepted index is one of its entries.
pub fn image_manifest(data: &[u8]) {
    for content_type in CONTENT_TYPES {
        match parse_document(data, content_type) {
            Ok(Document::Manifest(m)) => {
                for layer in &m.layers {
                    let _ = layer_compression(&layer.media_type);
                }
                let printed = serde_json::to_vec(&m).unwrap_or_else(|e| panic!("print manifest: {e}"));
                let Ok(Document::Manifest(again)) = parse_document(&printed, content_type) else {
                    panic!("printed manifest not read back as one: {}", String::from_utf8_lossy(&printed));
                };
                assert_eq!(serde_json::to_value(&again).ok(), serde_json::to_value(&m).ok());
            }
            Ok(Document::Index(index)) => {
                for platform in [Platform::host(), Platform { architecture: "".into(), os: "".into(), variant: None }] {
                    if let Ok(chosen) = select_platform(&index, &platform) {
                        assert!(index.manifests.contains(chosen), "chosen descriptor not in the index");
                    }
                }
            }
            Err(e) => {
                let _ = e.to_string();
            }
        }
    }
}

/// An image config: what is accepted prints to JSON that reads as the
/// same config, and its healthcheck's durations convert.
pub fn image_config(data: &[u8]) {
    let Ok(config) = ImageConfig::parse(data) else { return };
    if let Some(h) = &config.config.healthcheck {
        let _ = (h.test(), h.interval(), h.timeout(), h.start_period(), h.start_interval());
    }
    let printed = serde_json::to_vec(&config).unwrap_or_else(|e| panic!("print config: {e}"));
    let again = ImageConfig::parse(&printed)
        .unwrap_or_else(|e| panic!("printed config refused: {e}: {}", String::from_utf8_lossy(&printed)));
    assert_eq!(again, config, "printed config read differently");
}

/// A token for a challenge's parameter printed back: a key of lowercase
/// letters, digits, `_` and `-`.
fn is_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

/// A registry's `WWW-Authenticate` value: parsing never panics, and a
/// challenge of plain parameters printed back as `Scheme k="v", ...` parses
/// to the same scheme and parameters.
pub fn www_authenticate(data: &[u8]) {
    let Ok(s) = std::str::from_utf8(data) else { return };
    let (scheme, params) = parse_challenge(s);
    let plain = !scheme.is_empty()
        && scheme.bytes().all(|b| b.is_ascii_alphanumeric())
        && params.iter().all(|(k, v)| is_token(k) && !v.contains('"'));
    if plain {
        let printed: Vec<String> = params.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
        let printed = format!("{scheme} {}", printed.join(", "));
        assert_eq!(parse_challenge(&printed), (scheme, params), "{printed:?} read differently");
    }
}

/// An `auth.json`: credentials accepted print back (as base64 of
/// `user:password` by host) to a file that reads as the same credentials.
pub fn auth_json(data: &[u8]) {
    let path = Path::new("auth.json");
    let Ok(credentials) = parse_auth_file(data, path) else { return };
    let auths: BTreeMap<&str, serde_json::Value> = credentials
        .iter()
        .map(|(host, (user, pass))| {
            let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
            (host.as_str(), serde_json::json!({ "auth": auth }))
        })
        .collect();
    let printed = serde_json::json!({ "auths": auths }).to_string();
    let again = parse_auth_file(printed.as_bytes(), path).unwrap_or_else(|e| panic!("printed auth.json refused: {e}"));
    assert_eq!(again, credentials, "printed auth.json read differently: {printed}");
}
