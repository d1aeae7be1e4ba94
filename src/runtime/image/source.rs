//! Where image content comes from. A [`Fetcher`] hands out manifests and
//! blobs; the puller verifies every digest, whatever the source, so local
//! files get the same checks as a registry's responses.
//!
//! Local sources: an OCI image layout directory, a tar of one
//! (`oci-archive:`, read in place through the tar's entry offsets, never
//! extracted), and `docker save` output (`docker-archive:`), whose
//! `manifest.json` is turned into an OCI manifest (its layers are plain tars
//! whose digests are the config's diff IDs).

use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::config::ImageConfig;
use super::digest::Digest;
use super::error::{ImageError, Result};
use super::manifest::{DOCKER_MANIFEST, Descriptor, Index};

/// A manifest or index as fetched.
pub struct Fetched {
    pub bytes: Vec<u8>,
    pub content_type: Option<String>,
    /// The digest the source names it by, which its bytes must have.
    pub digest: Option<Digest>,
}

pub type BlobReader<'a> = Box<dyn Read + Send + 'a>;

/// A source of manifests and blobs.
pub trait Fetcher: Sync {
    /// How errors and progress name the source.
    fn name(&self) -> String;
    /// The manifest or index the reference names.
    fn top(&self) -> Result<Fetched>;
    /// A manifest (from an index) by digest.
    fn manifest(&self, digest: &Digest) -> Result<Fetched>;
    /// A blob's bytes; the caller checks their digest and size.
    fn blob(&self, desc: &Descriptor) -> Result<BlobReader<'_>>;
}

/// Files by their path inside a layout: a directory, or a tar read in place.
trait Files: Sync {
    fn open(&self, rel: &str) -> Result<(BlobReader<'_>, u64)>;
    fn describe(&self) -> String;
}

struct DirFiles(PathBuf);

impl Files for DirFiles {
    fn open(&self, rel: &str) -> Result<(BlobReader<'_>, u64)> {
        let path = self.0.join(rel);
        let file = File::open(&path).map_err(ImageError::io("open", &path))?;
        let len = file.metadata().map_err(ImageError::io("stat", &path))?.len();
        Ok((Box::new(file), len))
    }
    fn describe(&self) -> String {
        self.0.display().to_string()
    }
}

/// A tar archive indexed once: entry name to (offset, size).
struct TarFiles {
    path: PathBuf,
    entries: HashMap<String, (u64, u64)>,
}

impl TarFiles {
    fn index(path: &Path) -> Result<TarFiles> {
        let file = File::open(path).map_err(ImageError::io("open", path))?;
        let mut archive = tar::Archive::new(file);
        let mut entries = HashMap::new();
        let bad = |e: std::io::Error| ImageError::Source {
            source_name: path.display().to_string(),
            message: format!("not a readable tar archive: {e}"),
        };
        for entry in archive.entries_with_seek().map_err(bad)? {
            let entry = entry.map_err(bad)?;
            if entry.header().entry_type().is_file() {
                let name = String::from_utf8_lossy(&entry.path_bytes()).trim_start_matches("./").to_string();
                entries.insert(name, (entry.raw_file_position(), entry.size()));
            }
        }
        Ok(TarFiles { path: path.to_path_buf(), entries })
    }
}

impl Files for TarFiles {
    fn open(&self, rel: &str) -> Result<(BlobReader<'_>, u64)> {
        let &(offset, size) = self.entries.get(rel).ok_or_else(|| ImageError::Source {
            source_name: self.describe(),
            message: format!("{rel} is missing from the archive"),
        })?;
        let mut file = File::open(&self.path).map_err(ImageError::io("open", &self.path))?;
        file.seek(SeekFrom::Start(offset)).map_err(ImageError::io("seek", &self.path))?;
        Ok((Box::new(file.take(size)), size))
    }
    fn describe(&self) -> String {
        self.path.display().to_string()
    }
}

fn read_all(files: &dyn Files, rel: &str, max: u64) -> Result<Vec<u8>> {
    let (mut r, len) = files.open(rel)?;
    if len > max {
        return Err(ImageError::Source {
            source_name: files.describe(),
            message: format!("{rel} is too large ({len} bytes)"),
        });
    }
    let mut buf = Vec::with_capacity(len as usize);
    r.read_to_end(&mut buf)
        .map_err(|e| ImageError::Source { source_name: files.describe(), message: format!("{rel}: {e}") })?;
    Ok(buf)
}

/// Manifests and configs are small; refuse to buffer anything that is not.
const MAX_DOCUMENT: u64 = 4 << 20;
const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// An OCI image layout, as a directory or inside a tar.
pub struct OciLayout {
    files: Box<dyn Files>,
    tag: Option<String>,
}

impl OciLayout {
    pub fn dir(path: &Path, tag: Option<&str>) -> OciLayout {
        OciLayout { files: Box::new(DirFiles(path.to_path_buf())), tag: tag.map(String::from) }
    }

    pub fn archive(path: &Path, tag: Option<&str>) -> Result<OciLayout> {
        Ok(OciLayout { files: Box::new(TarFiles::index(path)?), tag: tag.map(String::from) })
    }

    fn blob_path(digest: &Digest) -> String {
        format!("blobs/sha256/{}", digest.hex())
    }
}

impl Fetcher for OciLayout {
    fn name(&self) -> String {
        self.files.describe()
    }

    fn top(&self) -> Result<Fetched> {
        let index: Index =
            serde_json::from_slice(&read_all(&*self.files, "index.json", MAX_DOCUMENT)?).map_err(|e| {
                ImageError::Source { source_name: self.name(), message: format!("index.json is not an OCI index: {e}") }
            })?;
        let name_of = |d: &Descriptor| d.annotations.as_ref().and_then(|a| a.get(REF_NAME)).cloned();
        let chosen = match &self.tag {
            Some(tag) => index.manifests.iter().find(|d| name_of(d).as_deref() == Some(tag.as_str())),
            None if index.manifests.len() == 1 => index.manifests.first(),
            None => None,
        };
        let Some(desc) = chosen else {
            let tags: Vec<String> = index.manifests.iter().filter_map(name_of).collect();
            let wanted = self.tag.as_deref().map_or("an untagged image".to_string(), |t| format!("tag {t:?}"));
            return Err(ImageError::Source {
                source_name: self.name(),
                message: format!(
                    "no {wanted} in the layout; it has: {}",
                    if tags.is_empty() { "no tags".into() } else { tags.join(", ") }
                ),
            });
        };
        let bytes = read_all(&*self.files, &Self::blob_path(&desc.digest), MAX_DOCUMENT)?;
        Ok(Fetched { bytes, content_type: Some(desc.media_type.clone()), digest: Some(desc.digest.clone()) })
    }

    fn manifest(&self, digest: &Digest) -> Result<Fetched> {
        let bytes = read_all(&*self.files, &Self::blob_path(digest), MAX_DOCUMENT)?;
        Ok(Fetched { bytes, content_type: None, digest: Some(digest.clone()) })
    }

    fn blob(&self, desc: &Descriptor) -> Result<BlobReader<'_>> {
        Ok(self.files.open(&Self::blob_path(&desc.digest))?.0)
    }
}

/// `docker save` output: `manifest.json` naming a config file and layer tars.
pub struct DockerArchive {
    files: TarFiles,
    manifest: Vec<u8>,
    /// Blob digest to the file that holds it.
    paths: HashMap<Digest, String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct SavedImage {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

impl DockerArchive {
    /// Opens the archive. `image` picks one of several saved images by its
    /// `name:tag`. An archive that is also an OCI layout (`docker save` of
    /// Docker 25 and later) is read as one.
    pub fn open(path: &Path, image: Option<&str>) -> Result<Box<dyn Fetcher>> {
        let files = TarFiles::index(path)?;
        let src = |m: String| ImageError::Source { source_name: path.display().to_string(), message: m };
        if !files.entries.contains_key("manifest.json") {
            if files.entries.contains_key("index.json") {
                return Ok(Box::new(OciLayout { files: Box::new(files), tag: image.map(String::from) }));
            }
            return Err(src("not a docker-archive: manifest.json is missing".into()));
        }
        let saved: Vec<SavedImage> = serde_json::from_slice(&read_all(&files, "manifest.json", MAX_DOCUMENT)?)
            .map_err(|e| src(format!("manifest.json: {e}")))?;
        let chosen = match image {
            Some(want) => saved.iter().find(|s| s.repo_tags.iter().flatten().any(|t| same_image(t, want))),
            None if saved.len() == 1 => saved.first(),
            None => None,
        };
        let Some(chosen) = chosen else {
            let tags: Vec<&str> = saved.iter().flat_map(|s| s.repo_tags.iter().flatten()).map(String::as_str).collect();
            return Err(src(format!(
                "name the image to use (docker-archive:PATH:NAME:TAG); it has: {}",
                tags.join(", ")
            )));
        };
        let config_bytes = read_all(&files, &chosen.config, MAX_DOCUMENT)?;
        let config = ImageConfig::parse(&config_bytes)?;
        if config.rootfs.diff_ids.len() != chosen.layers.len() {
            return Err(src("the config's diff_ids and the saved layers differ in number".into()));
        }
        let mut paths = HashMap::new();
        let config_digest = Digest::of(&config_bytes);
        paths.insert(config_digest.clone(), chosen.config.clone());
        let mut layers = Vec::new();
        for (diff_id, layer) in config.rootfs.diff_ids.iter().zip(&chosen.layers) {
            let size =
                files.entries.get(layer.as_str()).map(|e| e.1).ok_or_else(|| src(format!("{layer} is missing")))?;
            paths.insert(diff_id.clone(), layer.clone());
            layers.push(serde_json::json!({
                "mediaType": "application/vnd.docker.image.rootfs.diff.tar", "digest": diff_id, "size": size
            }));
        }
        let manifest = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": DOCKER_MANIFEST,
            "config": { "mediaType": "application/vnd.docker.container.image.v1+json", "digest": config_digest, "size": config_bytes.len() },
            "layers": layers,
        }))
        .map_err(|e| src(e.to_string()))?;
        Ok(Box::new(DockerArchive { files, manifest, paths }))
    }
}

/// `nginx:1` and `docker.io/library/nginx:1` name the same image.
fn same_image(a: &str, b: &str) -> bool {
    use crate::names::reference::ImageRef;
    match (ImageRef::parse(a), ImageRef::parse(b)) {
        (Ok(x), Ok(y)) => x == y,
        _ => a == b,
    }
}

impl Fetcher for DockerArchive {
    fn name(&self) -> String {
        self.files.describe()
    }

    fn top(&self) -> Result<Fetched> {
        Ok(Fetched { bytes: self.manifest.clone(), content_type: Some(DOCKER_MANIFEST.into()), digest: None })
    }

    fn manifest(&self, digest: &Digest) -> Result<Fetched> {
        Err(ImageError::Source {
            source_name: self.name(),
            message: format!("no manifest {digest} in a docker-archive"),
        })
    }

    fn blob(&self, desc: &Descriptor) -> Result<BlobReader<'_>> {
        let rel = self.paths.get(&desc.digest).ok_or_else(|| ImageError::Source {
            source_name: self.name(),
            message: format!("no blob {}", desc.digest),
        })?;
        Ok(self.files.open(rel)?.0)
    }
}

/// The format of an image archive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArchiveFormat {
    /// A tar of an OCI image layout (`oci-archive:`).
    Oci,
    /// `docker save` output (`docker-archive:`), also when it is an OCI
    /// layout as well (Docker 25 and later).
    Docker,
}

/// What an archive holds: its format, and the names each of its images
/// carries (in the archive's order; an image may have none).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchiveContents {
    pub format: ArchiveFormat,
    pub images: Vec<Vec<String>>,
}

/// Reads what the archive at `path` holds, without reading its blobs.
/// An OCI image's name is its `org.opencontainers.image.ref.name` when that
/// is a name (`example.com/app:v1`, as podman and skopeo write it); a bare
/// tag (`v1`, as `oci-archive:FILE:v1` writes it) names no image.
pub fn archive_contents(path: &Path) -> Result<ArchiveContents> {
    let files = TarFiles::index(path)?;
    let src = |m: String| ImageError::Source { source_name: path.display().to_string(), message: m };
    if files.entries.contains_key("manifest.json") {
        let saved: Vec<SavedImage> = serde_json::from_slice(&read_all(&files, "manifest.json", MAX_DOCUMENT)?)
            .map_err(|e| src(format!("manifest.json: {e}")))?;
        let images = saved.into_iter().map(|s| s.repo_tags.unwrap_or_default()).collect();
        return Ok(ArchiveContents { format: ArchiveFormat::Docker, images });
    }
    if !files.entries.contains_key("index.json") {
        return Err(src("neither an oci-archive (no index.json) nor a docker-archive (no manifest.json)".into()));
    }
    let index: Index = serde_json::from_slice(&read_all(&files, "index.json", MAX_DOCUMENT)?)
        .map_err(|e| src(format!("index.json is not an OCI index: {e}")))?;
    let images = index
        .manifests
        .iter()
        .map(|d| {
            let name = d.annotations.as_ref().and_then(|a| a.get(REF_NAME));
            name.filter(|n| n.contains(['/', ':'])).cloned().into_iter().collect()
        })
        .collect();
    Ok(ArchiveContents { format: ArchiveFormat::Oci, images })
}

/// The fetcher of the image of `contents` that `name` (one of its names in
/// the archive, as written there) picks; None picks the only image.
pub fn archive_fetcher(path: &Path, format: ArchiveFormat, name: Option<&str>) -> Result<Box<dyn Fetcher>> {
    match format {
        ArchiveFormat::Oci => Ok(Box::new(OciLayout::archive(path, name)?)),
        ArchiveFormat::Docker => DockerArchive::open(path, name),
    }
}
