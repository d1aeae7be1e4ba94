//! Where a registry client's credentials, insecure hosts and timeout come
//! from: the global config and an `auth.json` (`{"auths": {"host":
//! {"auth": base64("user:pass")}}}`).

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use base64::Engine as _;
use serde::Deserialize;

use super::error::{ImageError, Result};

/// Where credentials and insecure hosts come from.
#[derive(Debug, Clone)]
pub struct RegistryOptions {
    /// Registries (`host[:port]`) reached over plain HTTP.
    pub insecure: Vec<String>,
    /// Credentials by registry host.
    pub credentials: BTreeMap<String, (String, String)>,
    /// How long a connection may go without a byte before it fails.
    pub timeout: Duration,
}

/// Long enough for a congested link or a registry's slow start of a large
/// blob, short enough that a hung registry is noticed and retried.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

impl Default for RegistryOptions {
    fn default() -> Self {
        RegistryOptions { insecure: Vec::new(), credentials: BTreeMap::new(), timeout: DEFAULT_TIMEOUT }
    }
}

impl RegistryOptions {
    /// Reads credentials from an `auth.json`; a missing file means none.
    pub fn with_auth_file(mut self, path: &Path) -> Result<RegistryOptions> {
        let text = match std::fs::read(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(self),
            Err(e) => return Err(ImageError::io("read", path)(e)),
        };
        self.credentials.extend(parse_auth_file(&text, path)?);
        Ok(self)
    }

    pub(super) fn credentials_for(&self, registry: &str) -> Option<&(String, String)> {
        self.credentials.get(registry).or_else(|| {
            (registry == "docker.io")
                .then(|| ["index.docker.io", "registry-1.docker.io"].iter().find_map(|h| self.credentials.get(*h)))
                .flatten()
        })
    }
}

/// The credentials of an `auth.json`'s text, by normalized host; `path`
/// names the file in errors.
pub(crate) fn parse_auth_file(text: &[u8], path: &Path) -> Result<BTreeMap<String, (String, String)>> {
    #[derive(Deserialize)]
    struct AuthFile {
        #[serde(default)]
        auths: BTreeMap<String, Entry>,
    }
    #[derive(Deserialize)]
    struct Entry {
        auth: Option<String>,
    }
    let bad = |m: String| ImageError::Invalid(format!("{}: {m}", path.display()));
    let file: AuthFile = serde_json::from_slice(text).map_err(|e| bad(e.to_string()))?;
    let mut credentials = BTreeMap::new();
    for (key, entry) in file.auths {
        let Some(auth) = entry.auth else { continue };
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(auth.trim())
            .map_err(|_| bad(format!("the auth of {key:?} is not base64")))?;
        let decoded = String::from_utf8(decoded).map_err(|_| bad(format!("the auth of {key:?} is not UTF-8")))?;
        let (user, pass) =
            decoded.split_once(':').ok_or_else(|| bad(format!("the auth of {key:?} is not user:password")))?;
        credentials.insert(normalize_host(&key), (user.to_string(), pass.to_string()));
    }
    Ok(credentials)
}

/// `https://index.docker.io/v1/` and `index.docker.io` name the same host.
pub(super) fn normalize_host(key: &str) -> String {
    let k = key.strip_prefix("https://").or_else(|| key.strip_prefix("http://")).unwrap_or(key);
    k.split('/').next().unwrap_or(k).to_string()
}

/// Whether `host` (`name[:port]`) is this machine: a registry reached over
/// plain HTTP without being named insecure.
pub(super) fn is_loopback(host: &str) -> bool {
    let h = host
        .rsplit_once(':')
        .filter(|(h, p)| !h.ends_with(':') && p.chars().all(|c| c.is_ascii_digit()))
        .map_or(host, |(h, _)| h);
    let h = h.trim_start_matches('[').trim_end_matches(']');
    h == "localhost" || h.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts() {
        for h in ["localhost", "localhost:5000", "127.0.0.1:5000", "127.1.2.3", "[::1]:5000", "::1"] {
            assert!(is_loopback(h), "{h}");
        }
        for h in ["registry-1.docker.io", "10.0.0.1:5000", "ghcr.io"] {
            assert!(!is_loopback(h), "{h}");
        }
    }

    #[test]
    fn auth_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("auth.json");
        let auth = base64::engine::general_purpose::STANDARD.encode("me:secret");
        std::fs::write(&path, format!(r#"{{"auths":{{"https://index.docker.io/v1/":{{"auth":"{auth}"}},"127.0.0.1:5000":{{"auth":"{auth}"}}}}}}"#)).unwrap();
        let o = RegistryOptions::default().with_auth_file(&path).unwrap();
        assert_eq!(o.credentials_for("docker.io"), Some(&("me".into(), "secret".into())));
        assert_eq!(o.credentials_for("127.0.0.1:5000").map(|c| c.0.as_str()), Some("me"));
        assert_eq!(o.credentials_for("ghcr.io"), None);
        assert!(
            RegistryOptions::default().with_auth_file(&dir.path().join("none.json")).unwrap().credentials.is_empty()
        );
        std::fs::write(&path, r#"{"auths":{"x":{"auth":"!!"}}}"#).unwrap();
        let err = RegistryOptions::default().with_auth_file(&path).unwrap_err().to_string();
        assert!(err.contains("auth.json: the auth of \"x\" is not base64"), "{err}");
    }
}
