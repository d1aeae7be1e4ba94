//! A client of the OCI distribution API (v2): manifests and blobs over
//! HTTP(S), with the registry's own authentication flow.
//!
//! Authentication follows the registry's `WWW-Authenticate` challenge:
//! `Bearer` (fetch a token for `repository:NAME:pull` from the realm, with
//! Basic credentials if we have some, and reuse it until it expires) or
//! `Basic`. Credentials come from an `auth.json` (see
//! [`super::registry_options`]). Transient failures (connection
//! errors, 5xx, 429 with `Retry-After`) are retried with backoff; 401, 403
//! and 404 are errors that name the registry and repository.
//!
//! HTTPS with the system's trust roots is the default; plain HTTP is used
//! for loopback registries and for hosts named as insecure.
//!
//! Registries are untrusted: a transfer that receives nothing for the
//! configured timeout fails (a per-read timeout, since a total one would
//! cut off a large layer on a slow link) and is retried like any broken
//! connection; redirects are followed here, not by ureq, so that none goes
//! from HTTPS to plain HTTP; credentials go to a token realm over plain
//! HTTP only for a registry that is itself reached over plain HTTP.
//!
//! This is a synchronous client (ureq) on purpose: a layer's body is read by
//! the single-pass verify-decompress-unpack pipeline as a plain `Read`, in
//! one thread per layer.

use std::collections::BTreeMap;
use std::io::Read;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use base64::Engine as _;
use serde::Deserialize;
use ureq::http::Response;

use super::digest::Digest;
use super::error::{ImageError, Result};
use super::manifest::{ACCEPT, Descriptor};
use super::registry_options::{RegistryOptions, is_loopback, normalize_host};
use super::registry_request::{Body, Method, reason, scopes};
use super::source::{BlobReader, Fetched, Fetcher};
use crate::names::reference::ImageRef;

/// Tries of one request (a connection refused or reset, 429, 5xx).
const TRIES: u32 = 5;
/// Manifests and indexes are a few kilobytes.
const MAX_MANIFEST: u64 = 4 << 20;
/// Redirects followed for one request (ureq's and curl's default is 10).
const MAX_REDIRECTS: u32 = 10;
/// The longest a token is reused, whatever the token service says.
const MAX_TOKEN_LIFE: u64 = 24 * 3600;
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
    /// What a token is asked for besides the challenge's scope:
    /// `repository:NAME:pull`, or for a push `repository:NAME:pull,push`
    /// and `repository:OTHER:pull` for each repository a blob may be
    /// mounted from.
    scopes: Vec<String>,
    /// `pull`, or `push`: what a transfer's error says it was.
    verb: &'static str,
    /// Reached over plain HTTP (loopback, or named insecure).
    plain: bool,
    timeout: Duration,
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
            .timeout_per_read(Some(options.timeout))
            .timeout_per_write(Some(options.timeout))
            .max_redirects(0)
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
            scopes: vec![format!("repository:{}:pull", reference.repository)],
            verb: "pull",
            plain,
            timeout: options.timeout,
        }
    }

    /// A client that pushes to `reference`'s repository, and may mount
    /// blobs from each of `mount_from` (repositories of the same registry).
    pub fn for_push(reference: &ImageRef, options: &RegistryOptions, mount_from: &[String]) -> Registry {
        let mut r = Registry::new(reference, options);
        r.scopes = std::iter::once(format!("repository:{}:pull,push", reference.repository))
            .chain(mount_from.iter().map(|m| format!("repository:{m}:pull")))
            .collect();
        r.verb = "push";
        r
    }

    pub(super) fn registry(&self) -> &str {
        &self.registry
    }

    pub(super) fn repository(&self) -> &str {
        &self.repository
    }

    /// `/v2/<repository>/<path>` on the registry.
    pub(super) fn url(&self, path: &str) -> String {
        format!("{}/v2/{}/{path}", self.base, self.repository)
    }

    /// What a failed request says: a stall is named as one.
    fn describe(&self, url: &str, e: &ureq::Error) -> String {
        if matches!(e, ureq::Error::Timeout(_)) || matches!(e, ureq::Error::Io(io) if is_stall(io)) {
            self.stalled()
        } else {
            format!("{}: {e}", shown(url))
        }
    }

    fn stalled(&self) -> String {
        format!("no data for {} (registry_timeout)", humantime::format_duration(self.timeout))
    }

    /// A transfer of `what` that failed `attempts` times, the last with `fault`.
    pub(super) fn gave_up(&self, what: &str, fault: String, attempts: u32) -> ImageError {
        ImageError::Transfer {
            verb: self.verb,
            source_name: self.reference.to_string(),
            what: what.to_string(),
            fault,
            attempts,
        }
    }

    pub(super) fn error(&self, message: impl Into<String>) -> ImageError {
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
        let url = self.url(path);
        let headers: Vec<(&str, &str)> = accept.map(|a| ("Accept", a)).into_iter().collect();
        self.send(Method::Get, url, &headers, &mut Body::Empty, &[], what)
    }

    /// One request to `url`, authenticating, following redirects and
    /// retrying as needed. Returns a 2xx response, or one whose status is
    /// in `also`. A request whose body is a stream (`Body::Stream`) is
    /// tried once: its failure is the caller's to retry, from the start.
    pub(super) fn send(
        &self,
        method: Method,
        mut url: String,
        headers: &[(&str, &str)],
        body: &mut Body<'_>,
        also: &[u16],
        what: &str,
    ) -> Result<Response<ureq::Body>> {
        // A stream is spent by its first sending: nothing sends it again
        // (not a retry, a redirect, nor the answer to a challenge).
        let streamed = matches!(body, Body::Stream(..));
        let tries = if streamed { 1 } else { TRIES };
        let mut authenticated = false;
        let mut attempt = 0;
        let mut redirects = 0;
        loop {
            // Only the registry sees its credentials: a redirect goes to
            // blob storage elsewhere (with a signed URL), as ureq does, and
            // an upload's Location may name another origin.
            let auth = if redirects == 0 && self.own_origin(&url) { self.auth_header() } else { None };
            let retry_in = match method.call(&self.agent, &url, headers, auth.as_deref(), body) {
                Err(e) => {
                    if attempt + 1 >= tries {
                        return Err(self.gave_up(what, self.describe(&url, &e), attempt + 1));
                    }
                    backoff(attempt)
                }
                Ok(resp) => match resp.status().as_u16() {
                    s if also.contains(&s) => return Ok(resp),
                    200..=299 => return Ok(resp),
                    s @ (301 | 302 | 303 | 307 | 308) if streamed => {
                        let to = header(&resp, "location").unwrap_or_default();
                        return Err(self.error(format!(
                            "{what}: {}: HTTP {s} to {:?}: an upload is not sent after a redirect",
                            shown(&url),
                            shown(&to)
                        )));
                    }
                    301 | 302 | 303 | 307 | 308 => {
                        let location = header(&resp, "location")
                            .ok_or_else(|| self.error(format!("{}: a redirect without a Location", shown(&url))))?;
                        redirects += 1;
                        if redirects > MAX_REDIRECTS {
                            return Err(self.error(format!("{}: more than {MAX_REDIRECTS} redirects", shown(&url))));
                        }
                        url = redirect_target(&url, &location)
                            .map_err(|m| self.error(format!("{}: {m}", shown(&url))))?;
                        continue;
                    }
                    // A challenge is answered only for the registry itself:
                    // one from where a redirect led (blob storage, or a host
                    // an open redirect names) would be handed the
                    // registry's credentials.
                    401 if !authenticated && self.own_origin(&url) => {
                        authenticated = true;
                        let challenge = header(&resp, "www-authenticate").unwrap_or_default();
                        self.authenticate(&challenge)?;
                        if streamed {
                            // A token that expired during a long push: renewed,
                            // and the caller sends the body again from its start.
                            let fault = format!("{}: HTTP 401, the authentication renewed", shown(&url));
                            return Err(self.gave_up(what, fault, 1));
                        }
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
                    s @ (429 | 500..=599) if attempt + 1 < tries => {
                        match (s, header(&resp, "retry-after").and_then(|v| retry_after(&v, SystemTime::now()))) {
                            (429, Some(after)) => after,
                            _ => backoff(attempt),
                        }
                    }
                    s @ (429 | 500..=599) => {
                        let fault = format!("{}: HTTP {s}{}", shown(&url), reason(resp));
                        return Err(self.gave_up(what, fault, attempt + 1));
                    }
                    s => return Err(self.error(format!("{what}: {}: HTTP {s}{}", shown(&url), reason(resp)))),
                },
            };
            attempt += 1;
            std::thread::sleep(retry_in);
        }
    }

    /// Whether `url` is on the registry itself (scheme, host and port).
    fn own_origin(&self, url: &str) -> bool {
        url.strip_prefix(self.base.as_str()).is_some_and(|rest| rest.starts_with('/'))
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
                check_realm(realm, self.plain, basic.is_some()).map_err(|m| self.error(m))?;
                let mut req = self.agent.get(realm);
                if let Some(service) = params.get("service") {
                    req = req.query("service", service);
                }
                for scope in scopes(params.get("scope"), &self.repository, &self.scopes) {
                    req = req.query("scope", &scope);
                }
                if let Some(b) = &basic {
                    req = req.header("Authorization", b);
                }
                let mut resp = req.call().map_err(|e| self.error(format!("a token: {}", self.describe(realm, &e))))?;
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
                Auth::Bearer { token, expires: token_expiry(Instant::now(), t.expires_in) }
            }
            _ => return Err(self.error(format!("unsupported authentication challenge {challenge:?}"))),
        };
        *self.auth.lock().unwrap_or_else(|e| e.into_inner()) = new;
        Ok(())
    }

    /// A manifest, its request and its body tried [`TRIES`] times: a
    /// body that breaks or stalls is fetched again.
    fn fetch_manifest(&self, reference: &str, expected: Option<&Digest>) -> Result<Fetched> {
        let what = format!("manifest {reference}");
        let mut attempt = 1;
        loop {
            let mut resp = self.get(&format!("manifests/{reference}"), Some(ACCEPT), &what)?;
            let content_type = header(&resp, "content-type");
            match resp.body_mut().with_config().limit(MAX_MANIFEST).read_to_vec() {
                Ok(bytes) => return Ok(Fetched { bytes, content_type, digest: expected.cloned() }),
                // Over the limit: the same again would be too.
                Err(e @ ureq::Error::BodyExceedsLimit(_)) => return Err(self.error(format!("{what}: {e}"))),
                Err(e) if attempt >= TRIES => return Err(self.gave_up(&what, self.describe(&what, &e), attempt)),
                Err(_) => {
                    std::thread::sleep(backoff(attempt - 1));
                    attempt += 1;
                }
            }
        }
    }
}

/// A URL as errors and logs show it: without its query, which for blob
/// storage (a redirect, an upload's `Location`) is a signature that
/// grants access to whoever reads it.
fn shown(url: &str) -> &str {
    url.split_once('?').map_or(url, |(path, _)| path)
}

pub(super) fn header(resp: &Response<ureq::Body>, name: &str) -> Option<String> {
    resp.headers().get(name).and_then(|v| v.to_str().ok()).map(String::from)
}

/// The pause before try `attempt + 2`: 200 ms, doubling, at most 12.8 s.
pub(super) fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(200 << attempt.min(6))
}

/// The longest `Retry-After` honoured: a registry asking for more is
/// tried again after this (and the tries stay bounded).
const MAX_RETRY_AFTER: Duration = Duration::from_secs(30);

/// A `Retry-After` as a pause, at most [`MAX_RETRY_AFTER`]: seconds, or
/// an HTTP date (RFC 9110 10.2.3). A date already past (a registry whose
/// clock is behind ours) and what is neither are left to the usual
/// backoff, so that the tries never come without a pause.
fn retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    let pause = match value.parse::<u64>() {
        Ok(secs) => Duration::from_secs(secs),
        Err(_) => httpdate::parse_http_date(value).ok()?.duration_since(now).ok()?,
    };
    Some(pause.min(MAX_RETRY_AFTER))
}

/// `Bearer realm="https://auth",service="reg",scope="repository:x:pull"`.
pub(crate) fn parse_challenge(s: &str) -> (String, BTreeMap<String, String>) {
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
        let what = format!("blob {}", desc.digest);
        let resp = self.get(&format!("blobs/{}", desc.digest), None, &what)?;
        Ok(Box::new(StallNamed { inner: resp.into_body().into_reader(), stalled: self.stalled() })
            as Box<dyn Read + Send>)
    }
}

/// A blob's body, whose errors say what happened: a read timeout that
/// it stalled, an end before its length that the connection went.
struct StallNamed<R> {
    inner: R,
    stalled: String,
}

impl<R: Read> Read for StallNamed<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.inner.read(buf).map_err(|e| {
            let timeout = e
                .get_ref()
                .and_then(|i| i.downcast_ref::<ureq::Error>())
                .is_some_and(|u| matches!(u, ureq::Error::Timeout(_)));
            if timeout || is_stall(&e) {
                std::io::Error::new(std::io::ErrorKind::TimedOut, self.stalled.clone())
            } else if e.kind() == std::io::ErrorKind::UnexpectedEof {
                // ureq tells a reset from a close by neither.
                std::io::Error::new(e.kind(), "the registry closed or reset the connection")
            } else {
                e
            }
        })
    }
}

fn is_stall(e: &std::io::Error) -> bool {
    matches!(e.kind(), std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock)
}

/// Where a redirect from `from` to `location` goes, unless it is one we do
/// not follow: to another scheme than HTTP(S), or from HTTPS to plain
/// HTTP (a downgrade that would let anyone on the path serve the content).
pub(super) fn redirect_target(from: &str, location: &str) -> std::result::Result<String, String> {
    let scheme_of = |u: &str| u.split_once("://").map(|(s, _)| s.to_ascii_lowercase());
    let from_scheme = scheme_of(from).unwrap_or_default();
    let location = location.trim();
    let target = if location.contains("://") {
        location.to_string()
    } else if let Some(rest) = location.strip_prefix("//") {
        format!("{from_scheme}://{rest}")
    } else {
        let after_scheme = from.split_once("://").map_or(from, |(_, r)| r);
        let authority = after_scheme.split(['/', '?', '#']).next().unwrap_or(after_scheme);
        if location.starts_with('/') {
            format!("{from_scheme}://{authority}{location}")
        } else {
            let path = from.split(['?', '#']).next().unwrap_or(from);
            let dir = path.rsplit_once('/').map_or(path, |(d, _)| d);
            format!("{dir}/{location}")
        }
    };
    match (from_scheme.as_str(), scheme_of(&target).as_deref()) {
        (_, Some("https")) | ("http", Some("http")) => Ok(target),
        ("https", Some("http")) => Err(format!("refusing a redirect from HTTPS to plain HTTP ({target})")),
        _ => Err(format!("refusing a redirect to {target:?}")),
    }
}

/// Whether a token may be fetched from `realm`: credentials never go over
/// plain HTTP, unless the registry itself is reached that way (loopback,
/// or named in `insecure_registries`), where they would anyway.
fn check_realm(realm: &str, registry_plain: bool, with_credentials: bool) -> std::result::Result<(), String> {
    let scheme = realm.split_once("://").map(|(s, _)| s.to_ascii_lowercase());
    match scheme.as_deref() {
        Some("https") => Ok(()),
        Some("http") if registry_plain || !with_credentials => Ok(()),
        Some("http") => Err(format!(
            "token service {realm} is plain HTTP: not sending the registry's credentials to it (name the registry in insecure_registries to allow it)"
        )),
        _ => Err(format!("token service {realm:?} is not an HTTP(S) URL")),
    }
}

/// When a token given `expires_in` seconds at `now` stops being used:
/// 60 s when unsaid (the spec's minimum), at least 10 s and at most a day,
/// 5 s early; never an overflow, whatever the number.
fn token_expiry(now: Instant, expires_in: Option<u64>) -> Instant {
    let secs = expires_in.unwrap_or(60).clamp(10, MAX_TOKEN_LIFE);
    now.checked_add(Duration::from_secs(secs - 5)).unwrap_or(now)
}

#[cfg(test)]
#[path = "registry_tests.rs"]
mod tests;
