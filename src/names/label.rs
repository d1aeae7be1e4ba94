//! DNS labels: unit names, aliases and container ids.

/// The cgroup leaf supervisord moves itself into (on a cgroup v2 host where
/// it does not start in the root cgroup) beside its containers' cgroups,
/// which are named after their units. A unit of this name would share the
/// daemon's cgroup, and stopping it would kill the daemon: such a unit is
/// refused at validation.
pub const DAEMON_CGROUP_LEAF: &str = "supervisord";

/// A DNS label (RFC 1123): `[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?`. Unit names
/// and aliases are DNS labels because units resolve each other by name.
pub fn check_dns_label(s: &str) -> Result<(), String> {
    let ok = !s.is_empty()
        && s.len() <= 63
        && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-');
    if ok {
        Ok(())
    } else if s.len() > 63 {
        Err(format!("{s:?} is longer than 63 characters"))
    } else {
        Err(format!(
            "{s:?} is not a DNS label: use lowercase letters, digits and '-', starting and ending with a letter or digit"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_labels() {
        for ok in ["a", "web", "db-1", "0", "a0-b1", &"a".repeat(63)] {
            assert!(check_dns_label(ok).is_ok(), "{ok}");
        }
        for bad in ["", "-a", "a-", "Web", "a_b", "a.b", "é", &"a".repeat(64)] {
            assert!(check_dns_label(bad).is_err(), "{bad}");
        }
    }
}
