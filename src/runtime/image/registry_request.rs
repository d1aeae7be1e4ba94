//! The requests the registry client sends (`registry.rs`): the methods,
//! the bodies (bytes sent again by each try, or a stream sent once), a
//! registry's error body as a message, and the scopes a token is asked for.

use std::io::Read;

use serde::Deserialize;
use ureq::http::Response;

/// The methods the client uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Method {
    Get,
    Head,
    Post,
    Put,
    Patch,
}

/// What a request sends.
pub(super) enum Body<'a> {
    Empty,
    /// Sent again by each try.
    Bytes(&'a [u8]),
    /// `length` bytes from a reader: tried once.
    Stream(&'a mut dyn Read, u64),
}

impl Method {
    pub(super) fn call(
        self,
        agent: &ureq::Agent,
        url: &str,
        headers: &[(&str, &str)],
        auth: Option<&str>,
        body: &mut Body<'_>,
    ) -> std::result::Result<Response<ureq::Body>, ureq::Error> {
        macro_rules! with_headers {
            ($req:expr) => {{
                let mut req = $req;
                for (k, v) in headers {
                    req = req.header(*k, *v);
                }
                if let Some(a) = auth {
                    req = req.header("Authorization", a);
                }
                req
            }};
        }
        let req = match self {
            Method::Get => return with_headers!(agent.get(url)).call(),
            Method::Head => return with_headers!(agent.head(url)).call(),
            Method::Post => with_headers!(agent.post(url)),
            Method::Put => with_headers!(agent.put(url)),
            Method::Patch => with_headers!(agent.patch(url)),
        };
        match body {
            Body::Empty => req.header("Content-Length", "0").send_empty(),
            Body::Bytes(b) => req.send(*b),
            Body::Stream(r, length) => {
                req.header("Content-Length", length.to_string()).send(ureq::SendBody::from_reader(&mut **r))
            }
        }
    }
}

/// What a registry's error body says (`{"errors": [{"code", "message"}]}`),
/// as `: CODE: message`; nothing when it says nothing readable.
pub(super) fn reason(mut resp: Response<ureq::Body>) -> String {
    #[derive(Deserialize)]
    struct Errors {
        errors: Vec<Entry>,
    }
    #[derive(Deserialize)]
    struct Entry {
        #[serde(default)]
        code: String,
        #[serde(default)]
        message: String,
    }
    let Ok(body) = resp.body_mut().with_config().limit(64 << 10).read_to_vec() else { return String::new() };
    let Ok(e) = serde_json::from_slice::<Errors>(&body) else { return String::new() };
    e.errors.iter().map(|e| format!(": {}: {}", e.code, e.message)).collect()
}

/// The scopes a token is asked for: the challenge's, then ours, each once
/// (a registry that challenged a HEAD for `pull` is asked for `push` too,
/// so that one token serves the whole push).
pub(super) fn scopes(challenge: Option<&String>, repository: &str, ours: &[String]) -> Vec<String> {
    let mut all: Vec<String> = challenge.into_iter().cloned().collect();
    if ours.is_empty() {
        all.push(format!("repository:{repository}:pull"));
    }
    for s in ours {
        if !all.contains(s) {
            all.push(s.clone());
        }
    }
    all
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_is_asked_for_the_challenges_scope_and_ours_once_each() {
        let push = ["repository:dst:pull,push".to_string(), "repository:src:pull".to_string()];
        let challenge = "repository:dst:pull".to_string();
        assert_eq!(
            scopes(Some(&challenge), "dst", &push),
            ["repository:dst:pull", "repository:dst:pull,push", "repository:src:pull"]
        );
        assert_eq!(scopes(Some(&push[0]), "dst", &push), push);
        assert_eq!(scopes(None, "x", &[]), ["repository:x:pull"]);
    }
}
