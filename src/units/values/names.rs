//! Names: unit names (DNS labels), host names, environment variable names,
//! users, named volumes.

/// Unit names are DNS labels; the grammar is shared with the runtime.
pub use crate::names::check_dns_label;

/// A host name: dot-separated labels of letters, digits and '-', at most 64
/// bytes (the kernel's limit for `sethostname`).
pub fn check_hostname(s: &str) -> Result<(), String> {
    if s.is_empty() || s.len() > 64 {
        return Err(format!("{s:?} must be 1 to 64 characters long"));
    }
    for label in s.split('.') {
        let ok = !label.is_empty()
            && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-');
        if !ok {
            return Err(format!(
                "{s:?} is not a host name: use letters, digits, '-' and '.', with no label starting or ending in '-'"
            ));
        }
    }
    Ok(())
}

/// An environment variable name. Docker accepts any name without '='; we
/// also refuse whitespace, control characters and a leading digit, which no
/// shell can reference.
pub fn check_env_name(s: &str) -> Result<(), String> {
    let ok = !s.is_empty()
        && !s.starts_with(|c: char| c.is_ascii_digit())
        && s.bytes().all(|b| b.is_ascii_graphic() && b != b'=');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{s:?} is not an environment variable name: use letters, digits and '_', not starting with a digit"
        ))
    }
}

/// A named volume, as Docker names them: `[a-zA-Z0-9][a-zA-Z0-9_.-]*`.
pub fn check_volume_name(s: &str) -> Result<(), String> {
    let ok = s.len() <= 255
        && s.starts_with(|c: char| c.is_ascii_alphanumeric())
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{s:?} is not a volume name: use letters, digits, '_', '.' and '-', starting with a letter or digit (a bind mount needs an absolute host path)"
        ))
    }
}

/// `user` as `docker run -u` takes it: `uid`, `uid:gid`, `name` or
/// `name:group`. Names are resolved in the image's `/etc/passwd` at start.
pub fn check_user(s: &str) -> Result<(), String> {
    let part_ok = |p: &str| {
        !p.is_empty()
            && p.len() <= 32
            && p.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
            && (!p.bytes().all(|b| b.is_ascii_digit()) || p.parse::<u32>().is_ok_and(|n| n < u32::MAX))
    };
    let mut parts = s.split(':');
    let user = parts.next().unwrap_or_default();
    let group = parts.next();
    if parts.next().is_none() && part_ok(user) && group.is_none_or(part_ok) {
        Ok(())
    } else {
        Err(format!(
            "{s:?} is not a user: use a user name or uid, optionally followed by ':' and a group name or gid, like \"101:101\" or \"nginx\""
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostnames() {
        assert!(check_hostname("web").is_ok());
        assert!(check_hostname("web.example.com").is_ok());
        assert!(check_hostname("Web-1").is_ok());
        for bad in ["", "a..b", "-a", "a b", &"a".repeat(65)] {
            assert!(check_hostname(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn env_names() {
        for ok in ["PATH", "_x", "spring.profiles", "a1"] {
            assert!(check_env_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "1A", "A=B", "A B", "A\n"] {
            assert!(check_env_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn users() {
        for ok in ["0", "101:101", "nginx", "nginx:www-data", "app_user"] {
            assert!(check_user(ok).is_ok(), "{ok}");
        }
        for bad in ["", ":", "a:", ":1", "a:b:c", "a b", "4294967295", "99999999999"] {
            assert!(check_user(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn volume_names() {
        assert!(check_volume_name("web-cache").is_ok());
        assert!(check_volume_name("data_1.v2").is_ok());
        assert_eq!(
            check_volume_name("-x").unwrap_err().to_string(),
            "\"-x\" is not a volume name: use letters, digits, '_', '.' and '-', starting with a letter or digit (a bind mount needs an absolute host path)"
        );
        assert_eq!(
            check_volume_name("a/b").unwrap_err().to_string(),
            "\"a/b\" is not a volume name: use letters, digits, '_', '.' and '-', starting with a letter or digit (a bind mount needs an absolute host path)"
        );
        assert_eq!(
            check_volume_name("").unwrap_err().to_string(),
            "\"\" is not a volume name: use letters, digits, '_', '.' and '-', starting with a letter or digit (a bind mount needs an absolute host path)"
        );
    }
}
