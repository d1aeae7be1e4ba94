//! Who is on the other end of the control socket, and what a peer that is
//! not root (a member of the optional `socket_group`) may not do: make the
//! root daemon open a path of its choosing, or read the values of units'
//! `env_file`s (docs/security.md, "Control API").

use crate::units::values::reference::ImageSource;

/// Who is asking: root, or a member of the socket's group, who may drive
/// the units but not make the root daemon open paths of their choosing
/// nor read the units' `env_file` secrets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Peer {
    Root,
    Group,
}

/// What `inspect` shows in place of each value read from a unit's
/// `env_file` to a peer that is not root.
pub const HIDDEN: &str = "<from env_file>";

/// An inspect answer for a peer that is not root: the variables of the
/// unit's `env_file` keep their names, not their values. (`env` of the
/// unit file itself is shown: the unit file is not a secret store.)
pub(super) fn hide_env_file(mut inspect: serde_json::Value) -> serde_json::Value {
    if let Some(vars) = inspect.pointer_mut("/unit/container/env_file_vars").and_then(|v| v.as_object_mut()) {
        for v in vars.values_mut() {
            *v = serde_json::json!(HIDDEN);
        }
    }
    inspect
}

/// Whether `source` makes the daemon open a local path (refused to peers
/// that are not root: the daemon would read files they cannot).
pub(super) fn local_path(source: &ImageSource) -> bool {
    !matches!(source, ImageSource::Registry(_))
}

/// Whether process `pid` has `gid` among its supplementary groups.
pub(super) fn in_group(pid: Option<i32>, gid: u32) -> bool {
    let Some(pid) = pid else { return false };
    let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else { return false };
    status
        .lines()
        .find_map(|l| l.strip_prefix("Groups:"))
        .is_some_and(|g| g.split_whitespace().any(|x| x.parse() == Ok(gid)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn a_peer_that_is_not_root_sees_the_names_of_env_file_variables_not_their_values() {
        let v = serde_json::json!({"unit": {"container": {
            "env": {"TZ": "UTC"},
            "env_file": "/etc/web.env",
            "env_file_vars": {"PASSWORD": "hunter2", "USER": "web"},
        }}});
        let hidden = hide_env_file(v);
        assert_eq!(
            hidden["unit"]["container"]["env_file_vars"],
            serde_json::json!({"PASSWORD": HIDDEN, "USER": HIDDEN})
        );
        assert_eq!(hidden["unit"]["container"]["env"]["TZ"], "UTC");
        // An invalid unit has no config: nothing to hide, nothing broken.
        assert_eq!(hide_env_file(serde_json::json!({"unit": null})), serde_json::json!({"unit": null}));
    }

    #[test]
    fn every_source_but_a_registry_is_a_local_path() {
        let parse = |s: &str| ImageSource::parse(s, Path::new("/")).unwrap();
        assert!(!local_path(&parse("docker.io/library/busybox:1.36")));
        for s in ["oci:/srv/layout:tag", "oci-archive:/srv/i.tar", "docker-archive:/srv/s.tar", "dir:/srv/rootfs"] {
            assert!(local_path(&parse(s)), "{s}");
        }
    }
}
