//! A client of the OCI distribution API (v2): manifests and blobs over
//! HTTP(S), with the registry's own authentication flow.
//!
//! Authentication follows the registry's `WWW-Authenticate` challenge:
//! `Bearer` (fetch a token for `repository:NAME:pull` from the realm, with
//! Basic credentials if we have some, and reuse it until it expires) or
//! `Basic`. Credentials come from an `auth.json` (`{"auths": {"host":
//! {"auth": base64("user:pass")}}}`). Transient failures (connection
//! errors, 5xx, 429 with `Retry-After`) are retried with backoff; 401, 403
//! and 404 are errors that name the registry and repository.
//!
//! HTTPS with the system's trust roots is the default; plain HTTP is used
//! for loopback registries and for hosts named as insecure.
//!
//! This is a synchronous client (ureq) on purpose: a layer's body is read by
//! the single-pass verify-decompress-unpack pipeline as a plain `Read`, in
//! one thread per layer.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde::Deserialize;
use ureq::http::Response;

use super::digest::Digest;
use super::error::{ImageError, Result};
use super::manifest::{ACCEPT, Descriptor};
use super::source::{BlobReader, Fetched, Fetcher};
use crate::names::reference::ImageRef;

/// Where credentials and insecure hosts come from.
#[derive(Debug, Clone, Default)]
pub struct RegistryOptions {
    /// Registries (`host[:port]`) reached over plain HTTP.
    pub insecure: Vec<String>,
    /// Credentials by registry host.
    pub credentials: BTreeMap<String, (String, String)>,
}

impl RegistryOptions {
    /// Reads credentials from an `auth.json`; a missing file means none.
    pub fn with_auth_file(mut self, path: &Path) -> Result<RegistryOptions> {
        let text = match std::fs::read(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(self),
            Err(e) => return Err(ImageError::io("read", path)(e)),
        };
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
        let file: AuthFile = serde_json::from_slice(&text).map_err(|e| bad(e.to_string()))?;
        for (key, entry) in file.auths {
            let Some(auth) = entry.auth else { continue };
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(auth.trim())
                .map_err(|_| bad(format!("the auth of {key:?} is not base64")))?;
            let decoded = String::from_utf8(decoded).map_err(|_| bad(format!("the auth of {key:?} is not UTF-8")))?;
            let (user, pass) =
                decoded.split_once(':').ok_or_else(|| bad(format!("the auth of {key:?} is not user:password")))?;
            self.credentials.insert(normalize_host(&key), (user.to_string(), pass.to_string()));
        }
        Ok(self)
    }

    fn credentials_for(&self, registry: &str) -> Option<&(String, String)> {
        self.credentials.get(registry).or_else(|| {
            (registry == "docker.io")
                .then(|| ["index.docker.io", "registry-1.docker.io"].iter().find_map(|h| self.credentials.get(*h)))
                .flatten()
        })
    }
}

/// `https://index.docker.io/v1/` and `index.docker.io` name the same host.
fn normalize_host(key: &str) -> String {
    let k = key.strip_prefix("https://").or_else(|| key.strip_prefix("http://")).unwrap_or(key);
    k.split('/').next().unwrap_or(k).to_string()
}

fn is_loopback(host: &str) -> bool {
    let h = host
        .rsplit_once(':')
        .filter(|(h, p)| !h.ends_with(':') && p.chars().all(|c| c.is_ascii_digit()))
        .map_or(host, |(h, _)| h);
    let h = h.trim_start_matches('[').trim_end_matches(']');
    h == "localhost" || h.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

const TRIES: u32 = 5;
const NO_CREDENTIALS: &str = " (no credentials for this registry in the auth file)";

enum Auth {
    None,
    Basic(String),
    Bearer { token: String, expires: Instant },
}

/// Manifests and blobs of one repository of one registry.
pub struct Registry {
    agent: ureq::Agent,
    /// As the reference names it: `docker.io`, `localhost:5000`.
    registry: String,
    repository: String,
    /// `https://registry-1.docker.io`, `http://127.0.0.1:5000`.
    base: String,
    credentials: Option<(String, String)>,
    auth: Mutex<Auth>,
    reference: ImageRef,
}

impl Registry {
    pub fn new(reference: &ImageRef, options: &RegistryOptions) -> Registry {
        let host = if reference.registry == "docker.io" { "registry-1.docker.io" } else { &reference.registry };
        let plain = is_loopback(host) || options.insecure.iter().any(|i| normalize_host(i) == reference.registry);
        let tls = ureq::tls::TlsConfig::builder().root_certs(ureq::tls::RootCerts::PlatformVerifier).build();
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(Duration::from_secs(30)))
            .timeout_recv_response(Some(Duration::from_secs(60)))
            .tls_config(tls)
            .user_agent(concat!("supervisor/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        Registry {
            agent,
            registry: reference.registry.clone(),
            repository: reference.repository.clone(),
            base: format!("{}://{host}", if plain { "http" } else { "https" }),
            credentials: options.credentials_for(&reference.registry).cloned(),
            auth: Mutex::new(Auth::None),
            reference: reference.clone(),
        }
    }

    fn error(&self, message: impl Into<String>) -> ImageError {
        ImageError::Registry { registry: self.registry.clone(), message: message.into() }
    }

    fn denied(&self, status: u16, hint: &str) -> ImageError {
        ImageError::Denied {
            registry: self.registry.clone(),
            repository: self.repository.clone(),
            status,
            hint: hint.to_string(),
        }
    }

    fn auth_header(&self) -> Option<String> {
        match &*self.auth.lock().unwrap_or_else(|e| e.into_inner()) {
            Auth::None => None,
            Auth::Basic(h) => Some(h.clone()),
            Auth::Bearer { token, expires } if Instant::now() < *expires => Some(format!("Bearer {token}")),
            Auth::Bearer { .. } => None,
        }
    }

    /// GET `/v2/<repository>/<path>`, authenticating and retrying as
    /// needed. Returns a 2xx response.
    fn get(&self, path: &str, accept: Option<&str>, what: &str) -> Result<Response<ureq::Body>> {
        let url = format!("{}/v2/{}/{path}", self.base, self.repository);
        let mut authenticated = false;
        let mut attempt = 0;
        loop {
            let mut req = self.agent.get(&url);
            if let Some(a) = accept {
                req = req.header("Accept", a);
            }
            if let Some(h) = self.auth_header() {
                req = req.header("Authorization", h);
            }
            let retry_in = match req.call() {
                Err(e) => {
                    if attempt + 1 >= TRIES {
                        return Err(self.error(format!("{url}: {e}")));
                    }
                    backoff(attempt)
                }
                Ok(resp) => match resp.status().as_u16() {
                    200..=299 => return Ok(resp),
                    401 if !authenticated => {
                        authenticated = true;
                        let challenge = header(&resp, "www-authenticate").unwrap_or_default();
                        self.authenticate(&challenge)?;
                        continue;
                    }
                    s @ (401 | 403) => {
                        let hint =
                            if self.credentials.is_none() { NO_CREDENTIALS } else { " (the credentials were refused)" };
                        return Err(self.denied(s, hint));
                    }
                    404 => {
                        return Err(ImageError::NotFound {
                            registry: self.registry.clone(),
                            repository: self.repository.clone(),
                            what: what.to_string(),
                        });
                    }
                    s @ (429 | 500..=599) if attempt + 1 < TRIES => {
                        let after = header(&resp, "retry-after").and_then(|v| v.trim().parse::<u64>().ok());
                        match (s, after) {
                            (429, Some(secs)) => Duration::from_secs(secs.min(30)),
                            _ => backoff(attempt),
                        }
                    }
                    s => return Err(self.error(format!("{url}: HTTP {s}"))),
                },
            };
            attempt += 1;
            std::thread::sleep(retry_in);
        }
    }

    /// Answers a 401 challenge: fetch a Bearer token, or use Basic.
    fn authenticate(&self, challenge: &str) -> Result<()> {
        let (scheme, params) = parse_challenge(challenge);
        let basic = self
            .credentials
            .as_ref()
            .map(|(u, p)| format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"))));
        let new = match scheme.to_ascii_lowercase().as_str() {
            "basic" => Auth::Basic(basic.ok_or_else(|| self.denied(401, NO_CREDENTIALS))?),
            "bearer" => {
                let realm = params.get("realm").ok_or_else(|| self.error("Bearer challenge without a realm"))?;
                let mut req = self.agent.get(realm);
                if let Some(service) = params.get("service") {
                    req = req.query("service", service);
                }
                let scope =
                    params.get("scope").cloned().unwrap_or_else(|| format!("repository:{}:pull", self.repository));
                req = req.query("scope", &scope);
                if let Some(b) = &basic {
                    req = req.header("Authorization", b);
                }
                let mut resp = req.call().map_err(|e| self.error(format!("token service {realm}: {e}")))?;
                let status = resp.status().as_u16();
                if status == 401 || status == 403 {
                    return Err(self.denied(status, " (by the token service)"));
                }
                if !(200..300).contains(&status) {
                    return Err(self.error(format!("token service {realm}: HTTP {status}")));
                }
                #[derive(Deserialize)]
                struct TokenResponse {
                    token: Option<String>,
                    access_token: Option<String>,
                    expires_in: Option<u64>,
                }
                let body = resp
                    .body_mut()
                    .with_config()
                    .limit(1 << 20)
                    .read_to_vec()
                    .map_err(|e| self.error(format!("token service: {e}")))?;
                let t: TokenResponse =
                    serde_json::from_slice(&body).map_err(|e| self.error(format!("token service answered: {e}")))?;
                let token = t.token.or(t.access_token).ok_or_else(|| self.error("token service gave no token"))?;
                // Tokens live at least 60 s by the spec; renew a little early.
                let life = Duration::from_secs(t.expires_in.unwrap_or(60).max(10));
                Auth::Bearer { token, expires: Instant::now() + life - Duration::from_secs(5) }
            }
            _ => return Err(self.error(format!("unsupported authentication challenge {challenge:?}"))),
        };
        *self.auth.lock().unwrap_or_else(|e| e.into_inner()) = new;
        Ok(())
    }

    fn fetch_manifest(&self, reference: &str, expected: Option<&Digest>) -> Result<Fetched> {
        let what = format!("manifest {reference}");
        let mut resp = self.get(&format!("manifests/{reference}"), Some(ACCEPT), &what)?;
        let content_type = header(&resp, "content-type");
        let bytes = resp
            .body_mut()
            .with_config()
            .limit(4 << 20)
            .read_to_vec()
            .map_err(|e| self.error(format!("{what}: {e}")))?;
        Ok(Fetched { bytes, content_type, digest: expected.cloned() })
    }
}

fn header(resp: &Response<ureq::Body>, name: &str) -> Option<String> {
    resp.headers().get(name).and_then(|v| v.to_str().ok()).map(String::from)
}

fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(200 << attempt.min(6))
}

/// `Bearer realm="https://auth",service="reg",scope="repository:x:pull"`.
fn parse_challenge(s: &str) -> (String, BTreeMap<String, String>) {
    let s = s.trim();
    let (scheme, rest) = s.split_once(' ').unwrap_or((s, ""));
    let mut params = BTreeMap::new();
    let mut rest = rest.trim();
    while let Some((key, after)) = rest.split_once('=') {
        let key = key.trim().trim_start_matches(',').trim().to_ascii_lowercase();
        let after = after.trim_start();
        let (value, tail) = if let Some(q) = after.strip_prefix('"') {
            match q.split_once('"') {
                Some((v, t)) => (v.to_string(), t),
                None => (q.to_string(), ""),
            }
        } else {
            match after.split_once(',') {
                Some((v, t)) => (v.trim().to_string(), t),
                None => (after.trim().to_string(), ""),
            }
        };
        params.insert(key, value);
        rest = tail.trim_start_matches(',').trim();
    }
    (scheme.to_string(), params)
}

impl Fetcher for Registry {
    fn name(&self) -> String {
        self.reference.to_string()
    }

    fn top(&self) -> Result<Fetched> {
        match (&self.reference.digest, &self.reference.tag) {
            (Some(d), _) => {
                let d = Digest::parse(d)?;
                self.fetch_manifest(d.as_str(), Some(&d))
            }
            (None, Some(t)) => self.fetch_manifest(t, None),
            (None, None) => self.fetch_manifest("latest", None),
        }
    }

    fn manifest(&self, digest: &Digest) -> Result<Fetched> {
        self.fetch_manifest(digest.as_str(), Some(digest))
    }

    fn blob(&self, desc: &Descriptor) -> Result<BlobReader<'_>> {
        let resp = self.get(&format!("blobs/{}", desc.digest), None, &format!("blob {}", desc.digest))?;
        Ok(Box::new(resp.into_body().into_reader()) as Box<dyn Read + Send>)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges() {
        let (s, p) = parse_challenge(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/nginx:pull""#,
        );
        assert_eq!(s, "Bearer");
        assert_eq!(p["realm"], "https://auth.docker.io/token");
        assert_eq!(p["service"], "registry.docker.io");
        assert_eq!(p["scope"], "repository:library/nginx:pull");
        let (s, p) = parse_challenge(r#"Basic realm="Registry Realm""#);
        assert_eq!((s.as_str(), p["realm"].as_str()), ("Basic", "Registry Realm"));
    }

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
        assert!(RegistryOptions::default().with_auth_file(&path).is_err());
    }
}
