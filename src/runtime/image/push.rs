//! `push`: an image of the store to a registry, by the OCI distribution
//! API, through the pull's client (its authentication, timeouts,
//! redirect rules and retries; a token is asked for
//! `repository:NAME:pull,push`).
//!
//! The config blob, then the layers (several at once), then the manifest:
//! each blob the registry has already (`HEAD`) is skipped; one that
//! another repository of the same registry is known to hold (the image was
//! pulled from there, or pushed there before) is mounted from it
//! (`POST .../uploads/?mount=&from=`; a registry that answers with an
//! upload session instead gets the blob uploaded into it); any other is
//! uploaded: in one `PUT` up to `chunk_size` bytes, in `PATCH`es of
//! `chunk_size` bytes and a closing `PUT` when larger (no request bigger
//! than that, for proxies that bound a request's body). A chunk whose
//! transfer breaks is followed by a look at the session (`GET`: how far it
//! got), and the upload goes on from there; a single `PUT` that breaks,
//! or a session that cannot say, sends the blob again from its start, in
//! a new session. The
//! manifest is sent last, as the store's bytes: its digest at the
//! destination is the image ID. The store holds one platform's manifest
//! of a multi-platform image (the one pulled): that image is what is
//! pushed, never the index.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::digest::Digest;
use super::error::{ImageError, Result};
use super::manifest::{Descriptor, Manifest, OCI_MANIFEST};
use super::pull::Progress;
use super::registry::{Registry, header, redirect_target};
use super::registry_options::RegistryOptions;
use super::registry_request::{Body, Method};
use super::store::{Store, write_atomic};
use super::transfer::{Failure, LAYER_TRIES, tried};
use crate::names::percent_encode as query;
use crate::names::reference::ImageRef;

/// How to push.
#[derive(Debug, Clone)]
pub struct PushOptions {
    pub registry: RegistryOptions,
    /// Blobs up to this size go in one request; larger ones in chunks of
    /// this size.
    pub chunk_size: u64,
    /// Blobs sent at once.
    pub concurrency: usize,
    /// The pause after a blob's transfer first breaks; it doubles after.
    pub retry_pause: Duration,
}

/// 64 MiB: most layers go in one request; a chunk stays under the body
/// limits that proxies in front of registries commonly set (100 MB).
pub const CHUNK_SIZE: u64 = 64 << 20;

impl Default for PushOptions {
    fn default() -> Self {
        PushOptions {
            registry: RegistryOptions::default(),
            chunk_size: CHUNK_SIZE,
            concurrency: 4,
            retry_pause: Duration::from_secs(1),
        }
    }
}

/// How a blob came to be at the destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Pushed {
    /// The registry had it.
    Present,
    /// Mounted from another repository of the registry.
    Mounted,
    Uploaded,
}

/// One blob of a push.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PushedBlob {
    pub digest: Digest,
    pub size: u64,
    pub how: Pushed,
    /// The repository it was mounted from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// The `PATCH` requests that carried it (0: one `PUT`, or not sent).
    #[serde(default)]
    pub chunks: u32,
}

/// What a push did.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PushReport {
    /// The store's reference pushed.
    pub reference: String,
    /// Where to: `registry/repository:tag`.
    pub destination: String,
    /// The manifest's digest: the image ID, here and there.
    pub manifest_digest: Digest,
    /// The config first, then the layers.
    pub blobs: Vec<PushedBlob>,
}

/// Where an image was pushed (`images/pushed/<manifest hex>.json`): the
/// repositories its blobs may be mounted from.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct PushedTo {
    repositories: BTreeSet<(String, String)>,
}

impl Store {
    /// Pushes the image `reference` names in the store to `dest` (a tag:
    /// a digest is refused, since the manifest's own digest is what the
    /// registry stores it under).
    pub fn push(
        &self,
        reference: &str,
        dest: &ImageRef,
        options: &PushOptions,
        progress: &dyn Progress,
    ) -> Result<PushReport> {
        let Some(tag) = dest.tag.as_deref().filter(|_| dest.digest.is_none()) else {
            return Err(ImageError::Invalid(format!("push to {dest}: name a tag (REGISTRY/NAME:TAG), not a digest")));
        };
        // Shared: no garbage collection takes the blobs meanwhile.
        let _lock = self.lock_store(false)?;
        let record = self.record(reference)?.ok_or_else(|| ImageError::NotInStore(reference.to_string()))?;
        let manifest_bytes = self.read_blob(&record.manifest_digest)?;
        let manifest: Manifest = serde_json::from_slice(&manifest_bytes)
            .map_err(|e| ImageError::Invalid(format!("{reference}: stored manifest: {e}")))?;
        let blobs: Vec<&Descriptor> = std::iter::once(&manifest.config).chain(&manifest.layers).collect();
        let sources = self.mount_sources(dest, &blobs)?;
        let mount_from: Vec<String> =
            sources.values().flatten().cloned().collect::<BTreeSet<_>>().into_iter().collect();
        let registry = Registry::for_push(dest, &options.registry, &mount_from);
        let descriptors: Vec<Descriptor> = blobs.iter().map(|d| (*d).clone()).collect();
        progress.resolved(&dest.to_string(), &record.manifest_digest, &descriptors);
        let pushed = self.push_blobs(&registry, &blobs, &sources, options, progress)?;
        let media_type = if manifest.media_type.is_empty() { OCI_MANIFEST } else { &manifest.media_type };
        let what = format!("manifest {tag}");
        let resp = registry.send(
            Method::Put,
            registry.url(&format!("manifests/{tag}")),
            &[("Content-Type", media_type)],
            &mut Body::Bytes(&manifest_bytes),
            &[],
            &what,
        )?;
        if let Some(d) = header(&resp, "docker-content-digest")
            && d != record.manifest_digest.as_str()
        {
            return Err(registry.error(format!(
                "{what}: stored as {d}, not as the image's {} (the registry changed the manifest)",
                record.manifest_digest
            )));
        }
        self.note_pushed(&record.manifest_digest, dest)?;
        Ok(PushReport {
            reference: record.reference,
            destination: dest.to_string(),
            manifest_digest: record.manifest_digest,
            blobs: pushed,
        })
    }

    /// Each blob, with up to `options.concurrency` at once; the config first.
    fn push_blobs(
        &self,
        registry: &Registry,
        blobs: &[&Descriptor],
        sources: &BTreeMap<Digest, Vec<String>>,
        options: &PushOptions,
        progress: &dyn Progress,
    ) -> Result<Vec<PushedBlob>> {
        let next = AtomicUsize::new(0);
        let done: Mutex<Vec<Option<PushedBlob>>> = Mutex::new(vec![None; blobs.len()]);
        let first_error: Mutex<Option<ImageError>> = Mutex::new(None);
        let workers = options.concurrency.clamp(1, blobs.len().max(1));
        std::thread::scope(|s| {
            for _ in 0..workers {
                s.spawn(|| {
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(desc) = blobs.get(i) else { break };
                        if first_error.lock().unwrap_or_else(|e| e.into_inner()).is_some() {
                            break;
                        }
                        let from = sources.get(&desc.digest).and_then(|f| f.first()).map(String::as_str);
                        match self.push_blob(registry, desc, from, options, progress) {
                            Ok(blob) => {
                                progress.blob_pushed(&blob.digest, blob.how, blob.from.as_deref());
                                done.lock().unwrap_or_else(|e| e.into_inner())[i] = Some(blob);
                            }
                            Err(e) => {
                                first_error.lock().unwrap_or_else(|e| e.into_inner()).get_or_insert(e);
                            }
                        }
                    }
                });
            }
        });
        if let Some(e) = first_error.into_inner().unwrap_or_else(|e| e.into_inner()) {
            return Err(e);
        }
        Ok(done.into_inner().unwrap_or_else(|e| e.into_inner()).into_iter().flatten().collect())
    }

    /// One blob: skipped if there, mounted from `from` if it may be, else
    /// uploaded; a broken transfer is tried again from the start.
    fn push_blob(
        &self,
        registry: &Registry,
        desc: &Descriptor,
        from: Option<&str>,
        options: &PushOptions,
        progress: &dyn Progress,
    ) -> Result<PushedBlob> {
        let what = format!("blob {}", desc.digest);
        let blob = |how, from: Option<&str>, chunks| PushedBlob {
            digest: desc.digest.clone(),
            size: desc.size,
            how,
            from: from.map(String::from),
            chunks,
        };
        let url = registry.url(&format!("blobs/{}", desc.digest));
        let head = registry.send(Method::Head, url, &[], &mut Body::Empty, &[404], &what)?;
        if head.status().is_success() {
            return Ok(blob(Pushed::Present, None, 0));
        }
        let path = self.blob_path(&desc.digest);
        let dest = format!("{}/{}", registry.registry(), registry.repository());
        tried("push", &dest, &what, options.retry_pause, || {
            let start = match from {
                Some(repo) => format!("blobs/uploads/?mount={}&from={}", query(desc.digest.as_str()), query(repo)),
                None => "blobs/uploads/".to_string(),
            };
            let start_url = registry.url(&start);
            let resp =
                registry.send(Method::Post, start_url.clone(), &[], &mut Body::Empty, &[], &what).map_err(retry)?;
            if from.is_some() && resp.status().as_u16() == 201 {
                return Ok(blob(Pushed::Mounted, from, 0));
            }
            let location = header(&resp, "location")
                .ok_or_else(|| registry.error(format!("{what}: an upload session without a Location")))?;
            let mut location = redirect_target(&start_url, &location).map_err(|m| registry.error(m))?;
            let min_chunk = header(&resp, "oci-chunk-min-length").and_then(|v| v.trim().parse::<u64>().ok());
            let chunk = options.chunk_size.max(min_chunk.unwrap_or(0)).max(1);
            let mut file = File::open(&path).map_err(ImageError::io("open", &path))?;
            let mut closing: &mut dyn Read = &mut std::io::empty();
            let mut closing_len = 0;
            let mut whole;
            let mut chunks = 0;
            if desc.size <= chunk {
                whole = Counted { inner: (&mut file).take(desc.size), digest: &desc.digest, progress };
                (closing, closing_len) = (&mut whole, desc.size);
            } else {
                let mut offset = 0;
                let mut resumed = 0;
                while offset < desc.size {
                    let len = chunk.min(desc.size - offset);
                    file.seek(SeekFrom::Start(offset)).map_err(ImageError::io("seek", &path))?;
                    let mut part = Counted { inner: (&mut file).take(len), digest: &desc.digest, progress };
                    let range = format!("{offset}-{}", offset + len - 1);
                    let headers = [("Content-Type", "application/octet-stream"), ("Content-Range", range.as_str())];
                    let sent = registry.send(
                        Method::Patch,
                        location.clone(),
                        &headers,
                        &mut Body::Stream(&mut part, len),
                        &[],
                        &what,
                    );
                    match sent {
                        Ok(resp) => {
                            if let Some(next) = header(&resp, "location") {
                                location = redirect_target(&location, &next).map_err(|m| registry.error(m))?;
                            }
                            offset += len;
                            chunks += 1;
                        }
                        // A broken chunk: the session says how far it got,
                        // and the upload goes on from there.
                        Err(ImageError::Transfer { .. }) if resumed < LAYER_TRIES => {
                            resumed += 1;
                            std::thread::sleep(options.retry_pause);
                            (location, offset) = upload_status(registry, &location, &what)?;
                        }
                        Err(e) => return Err(retry(e)),
                    }
                }
            }
            let sep = if location.contains('?') { '&' } else { '?' };
            let put = format!("{location}{sep}digest={}", query(desc.digest.as_str()));
            let headers = [("Content-Type", "application/octet-stream")];
            registry
                .send(Method::Put, put, &headers, &mut Body::Stream(closing, closing_len), &[], &what)
                .map_err(retry)?;
            Ok(blob(Pushed::Uploaded, None, chunks))
        })
    }

    /// For each of `blobs`, the repositories of `dest`'s registry (but
    /// `dest`'s own) known to hold it: where an image with it was pulled
    /// from or pushed to. Only these are asked `pull` of in the token's
    /// scope: not every repository of the registry the store has seen.
    fn mount_sources(&self, dest: &ImageRef, blobs: &[&Descriptor]) -> Result<BTreeMap<Digest, Vec<String>>> {
        let mut sources: BTreeMap<Digest, Vec<String>> = BTreeMap::new();
        for record in self.list()? {
            let mut repos: BTreeSet<(String, String)> = self.pushed_to(&record.manifest_digest).repositories;
            if let Ok(r) = ImageRef::parse(&record.reference) {
                repos.insert((r.registry, r.repository));
            }
            let here = repos.into_iter().filter(|(reg, repo)| *reg == dest.registry && *repo != dest.repository);
            let here: Vec<String> = here.map(|(_, repo)| repo).collect();
            let blobs = std::iter::once(&record.config_digest).chain(record.layers.iter().map(|l| &l.digest));
            for blob in blobs {
                let known = sources.entry(blob.clone()).or_default();
                for repo in &here {
                    if !known.contains(repo) {
                        known.push(repo.clone());
                    }
                }
            }
        }
        sources.retain(|d, v| !v.is_empty() && blobs.iter().any(|b| b.digest == *d));
        Ok(sources)
    }

    fn pushed_path(&self, manifest: &Digest) -> std::path::PathBuf {
        self.root().join("pushed").join(format!("{}.json", manifest.hex()))
    }

    /// Where the image was pushed; nothing when unknown or unreadable
    /// (a hint for mounts, not a record anything depends on).
    fn pushed_to(&self, manifest: &Digest) -> PushedTo {
        std::fs::read(self.pushed_path(manifest)).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default()
    }

    /// Remembers that the image was pushed to `dest`'s repository.
    fn note_pushed(&self, manifest: &Digest, dest: &ImageRef) -> Result<()> {
        let mut pushed = self.pushed_to(manifest);
        if !pushed.repositories.insert((dest.registry.clone(), dest.repository.clone())) {
            return Ok(());
        }
        let path = self.pushed_path(manifest);
        let dir = self.root().join("pushed");
        std::fs::create_dir_all(&dir).map_err(ImageError::io("create", &dir))?;
        let bytes = serde_json::to_vec(&pushed).map_err(|e| ImageError::Invalid(e.to_string()))?;
        write_atomic(&self.tmp_dir(), &path, &bytes)
    }
}

/// Where an upload session is (`GET` of its location: 204 with `Range:
/// 0-LAST`): its location and the offset of the next byte. Whatever goes
/// wrong is the transfer's, to be tried again from the blob's start.
fn upload_status(registry: &Registry, location: &str, what: &str) -> Result<(String, u64), Failure> {
    let resp = registry
        .send(Method::Get, location.to_string(), &[], &mut Body::Empty, &[], what)
        .map_err(|e| Failure::Transfer(format!("resuming the upload: {e}")))?;
    let next = header(&resp, "range").as_deref().and_then(next_offset);
    let next = next.ok_or_else(|| Failure::Transfer("resuming the upload: no Range in the session's status".into()))?;
    let location = match header(&resp, "location") {
        Some(l) => redirect_target(location, &l).map_err(Failure::Transfer)?,
        None => location.to_string(),
    };
    Ok((location, next))
}

/// The offset after `0-LAST` (a `Range` of an upload session). `0-0` is
/// read as nothing received (distribution says it for an empty session):
/// a session that holds one byte is then sent that byte again, which it
/// refuses, and the blob starts afresh.
fn next_offset(range: &str) -> Option<u64> {
    let range = range.trim();
    let last = range.strip_prefix("bytes=").unwrap_or(range).strip_prefix("0-")?.parse::<u64>().ok()?;
    Some(if last == 0 { 0 } else { last + 1 })
}

/// A transfer that failed is tried again from the blob's start; anything
/// else is final.
fn retry(e: ImageError) -> Failure {
    match e {
        ImageError::Transfer { fault, .. } => Failure::Transfer(fault),
        e => Failure::Other(e),
    }
}

/// A blob's bytes as they are sent, reported.
struct Counted<'a, R> {
    inner: R,
    digest: &'a Digest,
    progress: &'a dyn Progress,
}

impl<R: Read> Read for Counted<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.progress.layer_bytes(self.digest, n as u64);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_upload_sessions_range_gives_the_next_offset() {
        assert_eq!(next_offset("0-1023"), Some(1024));
        assert_eq!(next_offset("bytes=0-4"), Some(5));
        assert_eq!(next_offset("0-0"), Some(0));
        assert_eq!(next_offset("5-9"), None);
        assert_eq!(next_offset("0-x"), None);
    }

    #[test]
    fn mount_sources_are_the_repositories_of_the_same_registry_an_image_came_from_or_went_to() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let layer = Digest::of(b"layer");
        let record = super::super::store::ImageRecord {
            reference: "r.example:5000/src/app:v1".into(),
            manifest_digest: Digest::of(b"manifest"),
            config_digest: Digest::of(b"config"),
            platform: "linux/amd64".into(),
            layers: vec![super::super::store::LayerRecord {
                digest: layer.clone(),
                diff_id: Digest::of(b"diff"),
                media_type: "application/vnd.oci.image.layer.v1.tar".into(),
                size: 5,
            }],
            size: 5,
            pulled: 0,
        };
        store.put_record(&record).unwrap();
        // Another image of the same registry, with a blob of its own.
        let unrelated = super::super::store::ImageRecord {
            reference: "r.example:5000/secret/db:v1".into(),
            manifest_digest: Digest::of(b"manifest 2"),
            config_digest: Digest::of(b"config 2"),
            ..record.clone()
        };
        store.put_record(&unrelated).unwrap();
        let descriptor = |digest: &Digest| Descriptor {
            media_type: String::new(),
            digest: digest.clone(),
            size: 5,
            platform: None,
            annotations: None,
        };
        let (config, layer_desc) = (descriptor(&record.config_digest), descriptor(&layer));
        let blobs = [&config, &layer_desc];
        let dest = ImageRef::parse("r.example:5000/one/app:v1").unwrap();
        let sources = store.mount_sources(&dest, &blobs).unwrap();
        assert_eq!(sources[&layer], ["secret/db", "src/app"], "both hold the shared layer");
        assert_eq!(sources[&record.config_digest], ["src/app"]);
        assert_eq!(sources.len(), 2, "secret/db's own config is not this image's: {sources:?}");
        // Pushed to one/app: a push to two/app may mount from either.
        store.note_pushed(&record.manifest_digest, &dest).unwrap();
        let two = ImageRef::parse("r.example:5000/two/app:v1").unwrap();
        assert_eq!(store.mount_sources(&two, &blobs).unwrap()[&record.config_digest], ["one/app", "src/app"]);
        // Another registry's repositories are no source; nor is dest itself.
        let other = ImageRef::parse("other.example/src/app:v1").unwrap();
        assert!(store.mount_sources(&other, &blobs).unwrap().is_empty());
        assert_eq!(store.mount_sources(&dest, &blobs).unwrap()[&record.config_digest], ["src/app"]);
    }
}
