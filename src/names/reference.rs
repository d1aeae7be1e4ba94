//! Image references: the OCI distribution grammar with Docker's normalization
//! (`nginx` is `docker.io/library/nginx:latest`), plus the local sources that
//! skopeo names (`oci:`, `oci-archive:`, `docker-archive:`, `dir:`).
//!
//! This is validation and normalization only; pulling is the runtime's job.

use std::fmt;
use std::path::Path;

use super::path::host_path;

pub const DEFAULT_REGISTRY: &str = "docker.io";
const MAX_NAME: usize = 255;

/// A registry reference, normalized.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ImageRef {
    /// `docker.io`, `ghcr.io`, `localhost:5000`, `[::1]:5000`.
    pub registry: String,
    /// `library/nginx`.
    pub repository: String,
    /// `None` only when a digest pins the image (the digest wins over a tag).
    pub tag: Option<String>,
    /// `sha256:<hex>`.
    pub digest: Option<String>,
}

/// Where an image comes from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ImageSource {
    Registry(ImageRef),
    /// `oci:/path/layout[:tag]`: an OCI image layout directory.
    OciLayout {
        path: String,
        tag: Option<String>,
    },
    /// `oci-archive:/path/file.tar[:tag]`: a tar of an OCI image layout.
    OciArchive {
        path: String,
        tag: Option<String>,
    },
    /// `docker-archive:/path/file.tar[:name:tag]`: the `docker save` format.
    DockerArchive {
        path: String,
        image: Option<String>,
    },
    /// `dir:/path/rootfs`: a prepared root filesystem, used read-only.
    Dir {
        path: String,
    },
}

impl ImageSource {
    /// Parses an `image` value; relative paths of local sources are resolved
    /// against `base`, the unit file's directory.
    pub fn parse(input: &str, base: &Path) -> Result<ImageSource, String> {
        if input.trim() != input {
            return Err(format!("{input:?}: remove the spaces around the image"));
        }
        let s = input;
        let local = |rest: &str| -> Result<(String, Option<String>), String> {
            // The optional tag follows the last ':' when no '/' comes after it.
            let (path, tag) = match rest.rsplit_once(':') {
                Some((p, t)) if !t.contains('/') && !p.is_empty() => (p, Some(t)),
                _ => (rest, None),
            };
            if let Some(t) = tag {
                check_tag(t).map_err(|e| format!("{input:?}: {e}"))?;
            }
            let path = host_path(path, base).map_err(|e| format!("{input:?}: {e}"))?;
            if tag.is_none() && path.rsplit('/').next().is_some_and(|last| last.contains(':')) {
                // PATH:TAG is split at the last ':', so such a path would
                // read back as another path and a tag.
                return Err(format!("{input:?}: name a tag (PATH:TAG) when the file name contains ':'"));
            }
            Ok((path, tag.map(str::to_string)))
        };
        if let Some(rest) = s.strip_prefix("oci:") {
            let (path, tag) = local(rest)?;
            Ok(ImageSource::OciLayout { path, tag })
        } else if let Some(rest) = s.strip_prefix("oci-archive:") {
            let (path, tag) = local(rest)?;
            Ok(ImageSource::OciArchive { path, tag })
        } else if let Some(rest) = s.strip_prefix("docker-archive:") {
            // docker-archive:PATH[:NAME:TAG]; the name may contain ':' itself.
            let (path, image) = match rest.split_once(".tar:") {
                Some((p, image)) => (format!("{p}.tar"), Some(image)),
                None => (rest.to_string(), None),
            };
            if let Some(i) = image {
                ImageRef::parse(i).map_err(|e| format!("{input:?}: {e}"))?;
            }
            let path = host_path(&path, base).map_err(|e| format!("{input:?}: {e}"))?;
            Ok(ImageSource::DockerArchive { path, image: image.map(str::to_string) })
        } else if let Some(rest) = s.strip_prefix("dir:") {
            let path = host_path(rest, base).map_err(|e| format!("{input:?}: {e}"))?;
            Ok(ImageSource::Dir { path })
        } else if let Some((scheme, _)) = s
            .split_once(':')
            .filter(|(p, _)| ["docker", "containers-storage", "docker-daemon", "ostree", "sif"].contains(p))
        {
            Err(format!(
                "{input:?}: the {scheme:?} transport is not supported; use a registry reference (\"nginx:1.27\") or oci:, oci-archive:, docker-archive:, dir:"
            ))
        } else {
            ImageRef::parse(s).map(ImageSource::Registry)
        }
    }
}

impl ImageRef {
    /// Parses and normalizes a registry reference.
    pub fn parse(input: &str) -> Result<ImageRef, String> {
        if input.is_empty() {
            return Err("empty image reference".into());
        }
        let (name_tag, digest) = match input.split_once('@') {
            Some((n, d)) => (n, Some(check_digest(d).map_err(|e| format!("{input:?}: {e}"))?)),
            None => (input, None),
        };
        let (name, tag) = match name_tag.rsplit_once(':') {
            Some((n, t)) if !t.contains('/') => (n, Some(t)),
            _ => (name_tag, None),
        };
        if let Some(t) = tag {
            check_tag(t).map_err(|e| format!("{input:?}: {e}"))?;
        }
        let (registry, path) = match name.split_once('/') {
            Some((first, rest))
                if first.contains('.')
                    || first.contains(':')
                    || first == "localhost"
                    || first.chars().any(|c| c.is_ascii_uppercase()) =>
            {
                check_registry(first).map_err(|e| format!("{input:?}: {e}"))?;
                (first.to_string(), rest)
            }
            _ => (DEFAULT_REGISTRY.to_string(), name),
        };
        let registry = if registry == "index.docker.io" { DEFAULT_REGISTRY.into() } else { registry };
        for component in path.split('/') {
            check_path_component(component).map_err(|e| format!("{input:?}: {e}"))?;
        }
        let repository = if registry == DEFAULT_REGISTRY && !path.contains('/') {
            format!("library/{path}")
        } else {
            path.to_string()
        };
        // As Docker does, the limit applies to the normalized name.
        if registry.len() + 1 + repository.len() > MAX_NAME {
            return Err(format!("{input:?}: the name is longer than {MAX_NAME} characters"));
        }
        let tag = match (tag, &digest) {
            (_, Some(_)) => None,
            (Some(t), None) => Some(t.to_string()),
            (None, None) => Some("latest".to_string()),
        };
        Ok(ImageRef { registry, repository, tag, digest })
    }
}

fn check_registry(host: &str) -> Result<(), String> {
    let (h, port) = if let Some(rest) = host.strip_prefix('[') {
        let (ip, tail) = rest.split_once(']').ok_or("unclosed '[' in the registry address")?;
        ip.parse::<std::net::Ipv6Addr>().map_err(|_| format!("{ip:?} is not an IPv6 address"))?;
        (None, tail.strip_prefix(':'))
    } else {
        match host.split_once(':') {
            Some((h, p)) => (Some(h), Some(p)),
            None => (Some(host), None),
        }
    };
    if let Some(p) = port
        && !p.parse::<u16>().is_ok_and(|n| n > 0)
    {
        return Err(format!("registry port {p:?} is not a port number"));
    }
    if let Some(h) = h {
        let ok = !h.is_empty()
            && h.split('.').all(|c| {
                !c.is_empty()
                    && c.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                    && !c.starts_with('-')
                    && !c.ends_with('-')
            });
        if !ok {
            return Err(format!("{h:?} is not a registry host name"));
        }
    }
    Ok(())
}

/// `[a-z0-9]+(?:(?:[._]|__|[-]*)[a-z0-9]+)*`
fn check_path_component(c: &str) -> Result<(), String> {
    if c.chars().any(|ch| ch.is_ascii_uppercase()) {
        return Err(format!("repository name {c:?} must be lowercase"));
    }
    let b = c.as_bytes();
    let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    let mut ok = !b.is_empty() && alnum(b[0]) && alnum(b[b.len() - 1]);
    let mut i = 0;
    while ok && i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && !alnum(b[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|x| x == b'-');
    }
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{c:?} is not a valid repository name component (lowercase letters and digits, separated by '.', '_', '__' or '-')"
        ))
    }
}

/// `[\w][\w.-]{0,127}`
fn check_tag(t: &str) -> Result<(), String> {
    let word = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let ok = t.len() <= 128 && t.starts_with(word) && t.chars().all(|c| word(c) || c == '.' || c == '-');
    if ok { Ok(()) } else { Err(format!("{t:?} is not a valid tag (letters, digits, '_', '.', '-'; at most 128)")) }
}

fn check_digest(d: &str) -> Result<String, String> {
    let (alg, hex) =
        d.split_once(':').ok_or_else(|| format!("digest {d:?} has no algorithm (expected sha256:<hex>)"))?;
    let len = match alg {
        "sha256" => 64,
        "sha512" => 128,
        _ => return Err(format!("unsupported digest algorithm {alg:?} (use sha256 or sha512)")),
    };
    if hex.len() != len || !hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
        return Err(format!("digest {d:?}: {alg} needs {len} lowercase hex digits"));
    }
    Ok(d.to_string())
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

impl fmt::Display for ImageSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let with = |f: &mut fmt::Formatter<'_>, scheme: &str, path: &str, suffix: &Option<String>| {
            write!(f, "{scheme}:{path}")?;
            suffix.as_ref().map_or(Ok(()), |s| write!(f, ":{s}"))
        };
        match self {
            ImageSource::Registry(r) => r.fmt(f),
            ImageSource::OciLayout { path, tag } => with(f, "oci", path, tag),
            ImageSource::OciArchive { path, tag } => with(f, "oci-archive", path, tag),
            ImageSource::DockerArchive { path, image } => with(f, "docker-archive", path, image),
            ImageSource::Dir { path } => write!(f, "dir:{path}"),
        }
    }
}

impl serde::Serialize for ImageSource {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(s: &str) -> String {
        ImageSource::parse(s, Path::new("/etc/units.d")).unwrap().to_string()
    }

    #[test]
    fn docker_normalization() {
        assert_eq!(norm("nginx"), "docker.io/library/nginx:latest");
        assert_eq!(norm("nginx:1.27-alpine"), "docker.io/library/nginx:1.27-alpine");
        assert_eq!(norm("docker.io/library/nginx"), "docker.io/library/nginx:latest");
        assert_eq!(norm("index.docker.io/nginx"), "docker.io/library/nginx:latest");
        assert_eq!(norm("user/app"), "docker.io/user/app:latest");
        assert_eq!(norm("ghcr.io/org/app:v1"), "ghcr.io/org/app:v1");
        assert_eq!(norm("localhost/app"), "localhost/app:latest");
        assert_eq!(norm("localhost:5000/app"), "localhost:5000/app:latest");
        assert_eq!(norm("127.0.0.1:5000/a/b/c:t"), "127.0.0.1:5000/a/b/c:t");
        assert_eq!(norm("[::1]:5000/app"), "[::1]:5000/app:latest");
        assert_eq!(norm("a__b-c---d/x_y.z"), "docker.io/a__b-c---d/x_y.z:latest");
        let d = "sha256:".to_string() + &"a".repeat(64);
        assert_eq!(norm(&format!("nginx@{d}")), format!("docker.io/library/nginx@{d}"));
        // A digest pins the image: the tag is dropped.
        assert_eq!(norm(&format!("nginx:1.27@{d}")), format!("docker.io/library/nginx@{d}"));
    }

    #[test]
    fn local_sources() {
        assert_eq!(norm("oci:/img/layout:v1"), "oci:/img/layout:v1");
        assert_eq!(norm("oci:/img/layout"), "oci:/img/layout");
        assert_eq!(norm("oci:images/busybox:latest"), "oci:/etc/units.d/images/busybox:latest");
        assert_eq!(norm("oci-archive:/a/b.tar:t"), "oci-archive:/a/b.tar:t");
        assert_eq!(norm("docker-archive:/a/saved.tar"), "docker-archive:/a/saved.tar");
        assert_eq!(norm("docker-archive:/a/saved.tar:nginx:1"), "docker-archive:/a/saved.tar:nginx:1");
        assert_eq!(norm("dir:/srv/rootfs/"), "dir:/srv/rootfs");
    }

    #[test]
    fn bad_references() {
        let base = Path::new("/");
        for bad in [
            "",
            "Nginx",
            "nginx:",
            "nginx:-x",
            "nginx@sha256:abc",
            "nginx@md5:abcd",
            "a//b",
            "-a",
            "a-",
            "a..b",
            "a/b/",
            "localhost:99999/x",
            "bad_host.io:x/y",
            "docker://nginx",
            "oci:",
            "dir:",
            &format!("nginx:{}", "t".repeat(129)),
            &format!("{}/x", "a".repeat(256)),
            &"a".repeat(240),
        ] {
            assert!(ImageSource::parse(bad, base).is_err(), "{bad:?} accepted");
        }
        let msg = ImageSource::parse("docker.io/Library/nginx", base).unwrap_err();
        assert!(msg.contains("must be lowercase"), "{msg}");
        let msg = ImageSource::parse("docker://nginx", base).unwrap_err();
        assert!(msg.contains("not supported"), "{msg}");
    }
}
