//! Names and references that more than one layer reads: the image-reference
//! grammar (the unit file's `image`, the runtime's pulls and local sources),
//! DNS labels (unit names, container ids) and host paths.
//!
//! A leaf: it imports nothing else of the crate, so `units` and `runtime`
//! can both use it without either knowing the other.

pub mod label;
pub mod path;
pub mod reference;

pub use label::check_dns_label;
pub use reference::{ImageRef, ImageSource};

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
    #[test]
    fn percent_encoding_keeps_only_unreserved_bytes() {
        assert_eq!(super::percent_encode("sha256:ab12"), "sha256%3Aab12");
        assert_eq!(super::percent_encode("library/nginx"), "library%2Fnginx");
        assert_eq!(super::percent_encode("a-b_c.d~é"), "a-b_c.d~%C3%A9");
    }
}
