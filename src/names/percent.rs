//! Percent-encoding of the values put into URLs: the control socket's
//! paths and queries, the registry API's query values.

/// Percent-encodes a URL query or path value (`sha256:ab` is
/// `sha256%3Aab`, `library/nginx` is `library%2Fnginx`): every byte but
/// RFC 3986's unreserved ones. For the control socket's paths and the
/// registry API's query values alike.
pub fn percent_encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_encoding_keeps_only_unreserved_bytes() {
        assert_eq!(percent_encode("sha256:ab12"), "sha256%3Aab12");
        assert_eq!(percent_encode("library/nginx"), "library%2Fnginx");
        assert_eq!(percent_encode("a-b_c.d~é"), "a-b_c.d~%C3%A9");
    }
}
