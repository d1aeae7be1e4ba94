//! A container's cgroup where an OCI runtime spec's `cgroupsPath` puts it
//! (the cgroupfs driver's reading, as runc and crun have it): an absolute
//! path is below each hierarchy's root, a relative one below the cgroup of
//! the runtime itself; none at all is `/supervisor-runtime/<id>`.

use std::collections::BTreeMap;
use std::path::{Component, Path};

use super::manager::enable_controllers;
use super::{CgroupError, Layout, Manager, Result};

/// The manager (made in the cgroup's parent) and the name under it of the
/// cgroup `cgroups_path` names.
/// `own` is the runtime's own place (`/proc/self/cgroup`).
pub fn for_spec(
    layout: &Layout,
    own: &BTreeMap<String, String>,
    cgroups_path: Option<&str>,
    id: &str,
) -> Result<(Manager, String)> {
    let given = cgroups_path.filter(|p| !p.is_empty());
    let path = given.map_or_else(|| format!("/supervisor-runtime/{id}"), str::to_string);
    let bad = |why: &str| Err(CgroupError::SpecPath { path: path.clone(), why: why.to_string() });
    if path.contains(':') {
        return bad(
            "a systemd unit (slice:prefix:name) needs the systemd cgroup driver, which this runtime does not have",
        );
    }
    let components: Vec<&str> = Path::new(&path)
        .components()
        .filter_map(|c| match c {
            Component::Normal(n) => n.to_str(),
            _ => None,
        })
        .collect();
    if Path::new(&path).components().any(|c| matches!(c, Component::ParentDir)) {
        return bad("'..' is not allowed");
    }
    if components.is_empty() {
        return bad("it names the root cgroup");
    }
    let (leaf, parents) = components.split_last().expect("not empty");
    let absolute = path.starts_with('/');
    // The directory the container's cgroup is made in, in one hierarchy.
    let parent = |mount: &Path, key: &str| {
        let own_path = if absolute { "/" } else { own.get(key).map_or("/", String::as_str) };
        parents.iter().fold(mount.join(own_path.trim_start_matches('/')), |dir, c| dir.join(c))
    };
    let manager = match layout {
        Layout::Legacy { controllers, .. } => {
            Manager::V1(controllers.iter().map(|(c, mount)| (c.clone(), parent(mount, c))).collect())
        }
        Layout::Unified { root } => {
            // Each level from ours (or the root) down to the parent hands
            // the controllers on.
            let mut dir = parent(root, "");
            let mut levels = vec![dir.clone()];
            for _ in parents {
                dir = dir.parent().map(Path::to_path_buf).unwrap_or_default();
                levels.push(dir.clone());
            }
            for level in levels.iter().rev() {
                std::fs::create_dir_all(level).map_err(|source| CgroupError::Io {
                    op: "create",
                    path: level.clone(),
                    source,
                })?;
                enable_controllers(level)?;
            }
            Manager::V2(parent(root, ""))
        }
    };
    Ok((manager, leaf.to_string()))
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::runtime::cgroups::Cgroup;

    fn legacy() -> Layout {
        let controllers = [("memory", "/cg/memory"), ("pids", "/cg/pids")]
            .into_iter()
            .map(|(c, m)| (c.to_string(), PathBuf::from(m)))
            .collect();
        Layout::Legacy { controllers, unified: None }
    }

    fn own() -> BTreeMap<String, String> {
        [("memory", "/engine"), ("pids", "/engine")].into_iter().map(|(c, p)| (c.into(), p.into())).collect()
    }

    fn cgroup(path: Option<&str>) -> Cgroup {
        let (manager, name) = for_spec(&legacy(), &own(), path, "c1").unwrap();
        manager.open(&name)
    }

    #[test]
    fn absolute_paths_start_at_each_hierarchy_root_and_relative_ones_at_ours() {
        let dirs = |c: Cgroup| c.paths();
        assert_eq!(
            dirs(cgroup(Some("/libpod_parent/libpod-c1"))),
            [PathBuf::from("/cg/memory/libpod_parent/libpod-c1"), PathBuf::from("/cg/pids/libpod_parent/libpod-c1")]
        );
        assert_eq!(
            dirs(cgroup(Some("k8s/pod1/c1"))),
            [PathBuf::from("/cg/memory/engine/k8s/pod1/c1"), PathBuf::from("/cg/pids/engine/k8s/pod1/c1")]
        );
        assert_eq!(
            dirs(cgroup(None)),
            [PathBuf::from("/cg/memory/supervisor-runtime/c1"), PathBuf::from("/cg/pids/supervisor-runtime/c1")]
        );
    }

    #[test]
    fn systemd_paths_parents_and_the_root_are_refused() {
        for (path, why) in
            [("system.slice:libpod:c1", "systemd cgroup driver"), ("/a/../../etc", "'..'"), ("/", "root cgroup")]
        {
            let e = for_spec(&legacy(), &own(), Some(path), "c1").unwrap_err().to_string();
            assert!(e.contains(path) && e.contains(why), "{path}: {e}");
        }
    }
}
