//! Manifests, indexes and descriptors, in their OCI and Docker schema 2
//! forms (the JSON is the same shape; only media types differ), and the
//! choice of one platform from an index.

use serde::{Deserialize, Serialize};

use super::digest::Digest;
use super::error::{ImageError, Result};

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// What a registry is asked for, in order of preference.
pub const ACCEPT: &str = "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.docker.distribution.manifest.v2+json";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    #[serde(default)]
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<std::collections::BTreeMap<String, String>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Platform {
    pub architecture: String,
    pub os: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

impl Platform {
    /// The platform of this host, named as images name it.
    pub fn host() -> Platform {
        let (architecture, variant) = match std::env::consts::ARCH {
            "x86_64" => ("amd64", None),
            "aarch64" => ("arm64", Some("v8")),
            "arm" => ("arm", Some("v7")),
            "x86" => ("386", None),
            "powerpc64" => ("ppc64le", None),
            other => (other, None),
        };
        Platform { architecture: architecture.into(), os: "linux".into(), variant: variant.map(String::from) }
    }

    /// Whether an image built for `other` runs here. A missing variant on
    /// either side matches (arm64 images often leave it out).
    pub fn accepts(&self, other: &Platform) -> bool {
        self.os == other.os
            && self.architecture == other.architecture
            && match (&self.variant, &other.variant) {
                (Some(a), Some(b)) => a == b,
                _ => true,
            }
    }
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        self.variant.as_ref().map_or(Ok(()), |v| write!(f, "/{v}"))
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    #[serde(default)]
    pub schema_version: u32,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub media_type: String,
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Index {
    #[serde(default)]
    pub media_type: String,
    pub manifests: Vec<Descriptor>,
}

/// A fetched manifest document: either one image, or an index of them.
pub enum Document {
    Manifest(Manifest),
    Index(Index),
}

/// Parses a manifest or an index; `content_type` is the registry's header,
/// when there is one.
pub fn parse_document(bytes: &[u8], content_type: Option<&str>) -> Result<Document> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Probe {
        #[serde(default)]
        media_type: String,
        #[serde(default)]
        schema_version: u32,
        manifests: Option<serde_json::Value>,
    }
    let bad = |e: serde_json::Error| ImageError::Invalid(format!("malformed manifest: {e}"));
    let probe: Probe = serde_json::from_slice(bytes).map_err(bad)?;
    let media = if probe.media_type.is_empty() { content_type.unwrap_or_default() } else { &probe.media_type };
    let media = media.split(';').next().unwrap_or_default().trim();
    if probe.schema_version == 1 || media.contains("distribution.manifest.v1") {
        return Err(ImageError::SchemaOne);
    }
    match media {
        OCI_INDEX | DOCKER_LIST => Ok(Document::Index(serde_json::from_slice(bytes).map_err(bad)?)),
        OCI_MANIFEST | DOCKER_MANIFEST => Ok(Document::Manifest(serde_json::from_slice(bytes).map_err(bad)?)),
        "" if probe.manifests.is_some() => Ok(Document::Index(serde_json::from_slice(bytes).map_err(bad)?)),
        "" => Ok(Document::Manifest(serde_json::from_slice(bytes).map_err(bad)?)),
        other => Err(ImageError::MediaType(other.to_string())),
    }
}

/// The entry of `index` for `platform`, or an error listing what it has.
pub fn select_platform<'a>(index: &'a Index, platform: &Platform) -> Result<&'a Descriptor> {
    let images = index.manifests.iter().filter(|d| d.media_type != "application/vnd.oci.image.index.v1+json");
    let mut available = Vec::new();
    for d in images {
        match &d.platform {
            Some(p) if platform.accepts(p) => return Ok(d),
            Some(p) => available.push(p.to_string()),
            None => available.push("unknown".into()),
        }
    }
    // A single entry without a platform (common in OCI layouts) is taken.
    if let [only] = index.manifests.as_slice()
        && only.platform.is_none()
    {
        return Ok(only);
    }
    Err(ImageError::NoPlatform { wanted: platform.to_string(), available: available.join(", ") })
}

/// How a layer blob is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

pub fn layer_compression(media_type: &str) -> Result<Compression> {
    match media_type {
        "application/vnd.oci.image.layer.v1.tar"
        | "application/vnd.oci.image.layer.nondistributable.v1.tar"
        | "application/vnd.docker.image.rootfs.diff.tar" => Ok(Compression::None),
        "application/vnd.oci.image.layer.v1.tar+gzip"
        | "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
        | "application/vnd.docker.image.rootfs.diff.tar.gzip"
        | "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip" => Ok(Compression::Gzip),
        "application/vnd.oci.image.layer.v1.tar+zstd" | "application/vnd.docker.image.rootfs.diff.tar.zstd" => {
            Ok(Compression::Zstd)
        }
        other => Err(ImageError::MediaType(other.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn desc(arch: &str, variant: Option<&str>) -> Descriptor {
        Descriptor {
            media_type: OCI_MANIFEST.into(),
            digest: Digest::of(arch.as_bytes()),
            size: 1,
            platform: Some(Platform {
                architecture: arch.into(),
                os: "linux".into(),
                variant: variant.map(String::from),
            }),
            annotations: None,
        }
    }

    #[test]
    fn platform_choice() {
        let index =
            Index { media_type: OCI_INDEX.into(), manifests: vec![desc("arm64", Some("v8")), desc("amd64", None)] };
        let amd64 = Platform { architecture: "amd64".into(), os: "linux".into(), variant: None };
        assert_eq!(select_platform(&index, &amd64).unwrap().digest, Digest::of(b"amd64"));
        let arm64 = Platform { architecture: "arm64".into(), os: "linux".into(), variant: Some("v8".into()) };
        assert_eq!(select_platform(&index, &arm64).unwrap().digest, Digest::of(b"arm64"));
        let s390 = Platform { architecture: "s390x".into(), os: "linux".into(), variant: None };
        let msg = select_platform(&index, &s390).unwrap_err().to_string();
        assert_eq!(msg, "no image for linux/s390x in the index; it has: linux/arm64/v8, linux/amd64");
    }

    #[test]
    fn documents_and_media_types() {
        let m = br#"{"schemaVersion":2,"config":{"mediaType":"x","digest":"sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855","size":0},"layers":[]}"#;
        assert!(matches!(parse_document(m, Some(DOCKER_MANIFEST)).unwrap(), Document::Manifest(_)));
        assert!(matches!(parse_document(m, None).unwrap(), Document::Manifest(_)));
        assert!(matches!(parse_document(br#"{"schemaVersion":2,"manifests":[]}"#, None).unwrap(), Document::Index(_)));
        assert!(matches!(parse_document(br#"{"schemaVersion":1}"#, None), Err(ImageError::SchemaOne)));
        assert_eq!(layer_compression("application/vnd.oci.image.layer.v1.tar+zstd").unwrap(), Compression::Zstd);
        assert_eq!(
            layer_compression("application/x-foo").unwrap_err().to_string(),
            "unsupported media type \"application/x-foo\""
        );
    }
}
