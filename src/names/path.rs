//! Paths: absolute paths cleaned lexically, and host paths that may be
//! relative to a base directory (the unit file's, as docker compose reads them).

use std::path::Path;

/// Cleans an absolute path lexically: `//a/./b/../c/` becomes `/a/c`.
pub fn clean_absolute(s: &str) -> Result<String, String> {
    if !s.starts_with('/') {
        return Err(format!("{s:?} is not an absolute path (it must start with '/')"));
    }
    if s.chars().any(char::is_control) {
        return Err(format!("{s:?} contains a control character"));
    }
    let mut parts: Vec<&str> = Vec::new();
    for part in s.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    Ok(format!("/{}", parts.join("/")))
}

/// A host path: absolute, or relative to `base` (the unit file's directory).
pub fn host_path(s: &str, base: &Path) -> Result<String, String> {
    if s.is_empty() {
        return Err("empty path".into());
    }
    if s.starts_with('/') {
        return clean_absolute(s);
    }
    let base = base.to_str().ok_or_else(|| format!("the unit directory {base:?} is not UTF-8"))?;
    let joined = format!("{}/{s}", base.trim_end_matches('/'));
    if joined.starts_with('/') {
        clean_absolute(&joined)
    } else {
        // A relative unit directory (e.g. `validate units.example`): keep
        // the path relative to the working directory, but clean.
        clean_absolute(&format!("/{joined}")).map(|p| p[1..].to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cleaning() {
        assert_eq!(clean_absolute("/").unwrap(), "/");
        assert_eq!(clean_absolute("//a/./b/../c/").unwrap(), "/a/c");
        assert_eq!(clean_absolute("/../..").unwrap(), "/");
        assert_eq!(
            clean_absolute("a/b").unwrap_err().to_string(),
            "\"a/b\" is not an absolute path (it must start with '/')"
        );
        assert_eq!(
            clean_absolute("").unwrap_err().to_string(),
            "\"\" is not an absolute path (it must start with '/')"
        );
        assert_eq!(clean_absolute("/a\0b").unwrap_err().to_string(), "\"/a\\0b\" contains a control character");
        assert_eq!(clean_absolute("/a\u{6}b").unwrap_err().to_string(), "\"/a\\u{6}b\" contains a control character");
    }

    #[test]
    fn host_paths() {
        assert_eq!(host_path("/srv//www", Path::new("/etc/units.d")).unwrap(), "/srv/www");
        assert_eq!(host_path("./web.env", Path::new("/etc/units.d")).unwrap(), "/etc/units.d/web.env");
        assert_eq!(host_path("../x", Path::new("/etc/units.d/")).unwrap(), "/etc/x");
        assert_eq!(host_path("images/bb", Path::new("units.example")).unwrap(), "units.example/images/bb");
        assert_eq!(host_path("", Path::new("/")).unwrap_err().to_string(), "empty path");
    }
}
