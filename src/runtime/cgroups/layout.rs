//! Which cgroup hierarchies a host has, read from `/proc/self/mountinfo`:
//! unified (cgroup v2 only), legacy (v1 controllers, each on its own
//! hierarchy or co-mounted), or hybrid (v1 controllers plus a `cgroup2`
//! mount, often at `/sys/fs/cgroup/unified`, that holds no controller we
//! use). And where this process sits in each, from `/proc/self/cgroup`.
//! Both files are parameters, so tests run on fake trees.

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::CgroupError;

/// The v1 controllers we use.
/// The v1 controllers we use; cpuset, hugetlb, blkio, net_cls and net_prio
/// only for a spec that asks for their limits.
pub const V1_CONTROLLERS: [&str; 11] =
    ["memory", "cpu", "cpuacct", "cpuset", "pids", "freezer", "devices", "hugetlb", "blkio", "net_cls", "net_prio"];

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Layout {
    /// cgroup v2 only, mounted at `root`.
    Unified { root: PathBuf },
    /// v1 controllers by name to their mount points; `unified` is a
    /// hybrid host's cgroup2 mount, if any.
    Legacy { controllers: BTreeMap<String, PathBuf>, unified: Option<PathBuf> },
}

/// Parses `/proc/self/mountinfo`.
pub fn detect(mountinfo: &str) -> Result<Layout, CgroupError> {
    let mut controllers = BTreeMap::new();
    let mut unified = None;
    for line in mountinfo.lines() {
        let Some((left, right)) = line.split_once(" - ") else { continue };
        let Some(mount_point) = left.split(' ').nth(4) else { continue };
        let mut r = right.split(' ');
        let (fstype, _source, options) = (r.next().unwrap_or(""), r.next(), r.next().unwrap_or(""));
        let mount_point = PathBuf::from(unescape(mount_point));
        match fstype {
            "cgroup2" => unified = Some(mount_point),
            "cgroup" => {
                for opt in options.split(',') {
                    if V1_CONTROLLERS.contains(&opt) {
                        controllers.entry(opt.to_string()).or_insert_with(|| mount_point.clone());
                    }
                }
            }
            _ => {}
        }
    }
    match (controllers.is_empty(), unified) {
        (true, Some(root)) => Ok(Layout::Unified { root }),
        (false, unified) => {
            for needed in ["memory", "cpu", "pids"] {
                if !controllers.contains_key(needed) {
                    return Err(CgroupError::ControllerNotMounted(needed));
                }
            }
            Ok(Layout::Legacy { controllers, unified })
        }
        (true, None) => Err(CgroupError::NotMounted),
    }
}

/// mountinfo escapes spaces, tabs, newlines and backslashes as `\ooo`.
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c)) {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parses `/proc/self/cgroup`: controller (or `""` for v2) to path.
pub fn own_paths(proc_self_cgroup: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for line in proc_self_cgroup.lines() {
        let mut parts = line.splitn(3, ':');
        let (_, list, path) = (parts.next(), parts.next().unwrap_or(""), parts.next().unwrap_or("/"));
        if list.is_empty() {
            out.insert(String::new(), path.to_string());
        }
        for c in list.split(',').filter(|c| !c.is_empty()) {
            out.insert(c.to_string(), path.to_string());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
36 31 0:33 / /sys/fs/cgroup/devices rw,relatime - cgroup cgroup rw,devices
37 31 0:34 / /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup rw,freezer
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

    #[test]
    fn hybrid_host() {
        let Layout::Legacy { controllers, unified } = detect(HYBRID).unwrap() else { panic!("not legacy") };
        assert_eq!(controllers["memory"], PathBuf::from("/sys/fs/cgroup/memory"));
        assert_eq!(controllers["cpuacct"], PathBuf::from("/sys/fs/cgroup/cpuacct"));
        assert_eq!(unified, Some(PathBuf::from("/sys/fs/cgroup/unified")));
        assert!(!controllers.contains_key("name=systemd"));
    }

    #[test]
    fn comounted_v1_and_unified_v2() {
        let v1 = "32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n\
                  35 31 0:32 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n\
                  39 31 0:36 / /sys/fs/cgroup/pids rw - cgroup cgroup rw,pids\n";
        let Layout::Legacy { controllers, unified } = detect(v1).unwrap() else { panic!() };
        assert_eq!(controllers["cpu"], controllers["cpuacct"]);
        assert_eq!(unified, None);
        let v2 = "25 21 0:22 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n";
        assert_eq!(detect(v2).unwrap(), Layout::Unified { root: "/sys/fs/cgroup".into() });
        assert_eq!(
            detect("").unwrap_err().to_string(),
            "no cgroup filesystem is mounted (neither cgroup v1 nor cgroup2)"
        );
        assert!(detect("35 31 0:32 / /m rw - cgroup cgroup rw,memory\n").unwrap_err().to_string().contains("cpu"));
    }

    #[test]
    fn escaped_mount_points_and_own_paths() {
        let info = "25 21 0:22 / /mnt/my\\040cgroup rw - cgroup2 cgroup2 rw\n";
        assert_eq!(detect(info).unwrap(), Layout::Unified { root: "/mnt/my cgroup".into() });
        let own = own_paths("4:memory:/a/b\n1:cpu,cpuacct:/\n0::/user.slice\n");
        assert_eq!(own["memory"], "/a/b");
        assert_eq!(own["cpuacct"], "/");
        assert_eq!(own[""], "/user.slice");
    }
}
