//! From an OCI runtime spec to a [`Plan`]: everything the container's first
//! process does between `clone` and `execve`, decided and checked in the
//! parent. The child then only makes system calls; nothing is parsed or
//! looked up after the clone. Pure, tested without root.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use nix::mount::MsFlags;
use nix::sched::CloneFlags;
use oci_spec::runtime::{LinuxNamespaceType, Spec};
use serde::{Deserialize, Serialize};

use super::hooks::InContainer;
use super::spec_fields::seccomp_profile;
pub(crate) use super::spec_fields::{capabilities, default_devices, parse_mount_options, rlimit_resource};
use crate::runtime::seccomp::default_filter;

/// A spec this runtime cannot run as it is written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error("config.json: {what} is not supported by this runtime")]
    Unsupported { what: String },
    #[error("config.json: {0}")]
    Invalid(String),
}

pub(crate) fn invalid(message: impl ToString) -> PlanError {
    PlanError::Invalid(message.to_string())
}

/// One mount, with its options split into flags and filesystem data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct MountPlan {
    /// Absolute path inside the container.
    pub(crate) destination: String,
    pub(crate) kind: String,
    /// The source: a host path for binds, a name otherwise.
    pub(crate) source: String,
    #[serde(with = "super::wire::ms_flags")]
    pub(crate) flags: MsFlags,
    /// Propagation to set after mounting (`MS_PRIVATE`, `MS_SLAVE`, ...).
    #[serde(with = "super::wire::ms_flags")]
    pub(crate) propagation: MsFlags,
    pub(crate) data: String,
    pub(crate) bind: bool,
}

/// A device node to make in the container's `/dev`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct DevicePlan {
    pub(crate) path: String,
    /// `'c'` or `'b'`.
    pub(crate) kind: char,
    pub(crate) major: u64,
    pub(crate) minor: u64,
    pub(crate) mode: u32,
    pub(crate) uid: u32,
    pub(crate) gid: u32,
}

/// A namespace to enter: its `CLONE_NEW*` flag and its path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct JoinPlan {
    pub(crate) flag: i32,
    pub(crate) path: PathBuf,
}

/// Capabilities by set, as `caps` names them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct CapsPlan {
    #[serde(with = "super::wire::caps_list")]
    pub(crate) bounding: Vec<caps::Capability>,
    #[serde(with = "super::wire::caps_list")]
    pub(crate) effective: Vec<caps::Capability>,
    #[serde(with = "super::wire::caps_list")]
    pub(crate) permitted: Vec<caps::Capability>,
    #[serde(with = "super::wire::caps_list")]
    pub(crate) inheritable: Vec<caps::Capability>,
    #[serde(with = "super::wire::caps_list")]
    pub(crate) ambient: Vec<caps::Capability>,
}

/// An overlay root filesystem, mounted in the container's own mount
/// namespace: nothing is left on the host if the supervisor dies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct OverlayPlan {
    /// Lower (read-only) layers, the base first.
    pub(crate) layers: Vec<PathBuf>,
    /// The container's writable layer and overlayfs' work directory, on
    /// one filesystem.
    pub(crate) upper: PathBuf,
    pub(crate) work: PathBuf,
}

/// Everything the container's first process will do, decided before it
/// exists. Built once from a spec ([`Plan::from_spec`]), adjusted by the
/// caller, then given to [`super::Container`] (in this process, or sent to
/// the `runtime spawn` helper as it is).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    /// The root filesystem; with `overlay`, the (empty) mount point.
    pub(crate) rootfs: PathBuf,
    pub(crate) overlay: Option<OverlayPlan>,
    pub(crate) readonly_root: bool,
    /// Namespaces to create with `clone` (never CLONE_NEWCGROUP: that one is
    /// unshared after the process is in its cgroup).
    #[serde(with = "super::wire::clone_flags")]
    pub(crate) clone_flags: CloneFlags,
    pub(crate) cgroup_namespace: bool,
    pub(crate) hostname: Option<String>,
    pub(crate) mounts: Vec<MountPlan>,
    pub(crate) devices: Vec<DevicePlan>,
    pub(crate) masked: Vec<String>,
    pub(crate) readonly: Vec<String>,
    pub(crate) sysctls: BTreeMap<String, String>,
    pub(crate) rlimits: Vec<(i32, u64, u64)>,
    pub(crate) process: ProcessPlan,
    /// Start a new session (containers that are not in the foreground).
    pub(crate) new_session: bool,
    /// The interface the runtime put in the new network namespace, to
    /// configure before the program runs (bridge networking).
    pub(crate) network: Option<crate::runtime::network::NetPlan>,
    /// Enter this network namespace (another container's) instead of a
    /// new one.
    pub(crate) join_network: Option<PathBuf>,
    /// The other namespaces entered by path (`linux.namespaces[].path`):
    /// the pid namespace by the parent before the clone (it applies to
    /// children), the others by the child.
    #[serde(default)]
    pub(crate) join: Vec<JoinPlan>,
    /// With a new user namespace (`CLONE_NEWUSER` in the flags): its uid
    /// and gid maps (container id, host id, size), written by the parent
    /// before the child goes on.
    #[serde(default)]
    pub(crate) uid_map: Vec<(u32, u32, u32)>,
    #[serde(default)]
    pub(crate) gid_map: Vec<(u32, u32, u32)>,
    /// A user namespace entered by path instead: the process that clones
    /// the container enters it first, so that the namespaces made for the
    /// container are owned by it.
    #[serde(default)]
    pub(crate) join_user: Option<PathBuf>,
    /// `process.oomScoreAdj`, written before anything else.
    #[serde(default)]
    pub(crate) oom_score_adj: Option<i32>,
    /// `linux.rootfsPropagation`, set on `/` once it is the root.
    #[serde(default = "no_flags", with = "super::wire::ms_flags")]
    pub(crate) root_propagation: MsFlags,
    /// The spec gives SELinux labels (`process.selinuxLabel`,
    /// `linux.mountLabel`): applied nowhere, so only a host without SELinux
    /// may run it (as runc and crun ignore labels there).
    #[serde(default)]
    pub(crate) selinux_labels: bool,
    /// A pseudo-terminal for its stdio (`process.terminal`), made in the
    /// container and handed to the engine's console socket; its size.
    #[serde(default)]
    pub(crate) terminal: Option<Option<(u16, u16)>>,
    /// The spec's hooks that involve the first process.
    #[serde(default)]
    pub(crate) hooks: InContainer,
}

fn no_flags() -> MsFlags {
    MsFlags::empty()
}

/// What a process in the container runs as and runs: the container's first
/// process, and every process `exec` starts in it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ProcessPlan {
    pub(crate) uid: u32,
    pub(crate) gid: u32,
    pub(crate) additional_gids: Vec<u32>,
    pub(crate) caps: Option<CapsPlan>,
    pub(crate) no_new_privileges: bool,
    /// A seccomp filter (classic BPF: code, jt, jf, k), or none.
    pub(crate) seccomp: Option<Vec<(u16, u8, u8, u32)>>,
    pub(crate) cwd: String,
    pub(crate) args: Vec<String>,
    pub(crate) env: Vec<String>,
    /// Descriptors 3 to 3+N-1 that stay open in the program (an engine's
    /// `--preserve-fds N`, systemd's LISTEN_FDS style); every other one
    /// closes on exec.
    #[serde(default)]
    pub(crate) preserve_fds: u32,
}

/// Builds the plan of a bundle's spec. The spec is the whole truth: none of
/// our defaults are added (beyond the devices the runtime spec requires),
/// and a field we do not support is an error, never silently ignored.
pub(crate) fn from_spec(spec: &Spec, bundle: &Path) -> Result<Plan, PlanError> {
    let unsupported = |what: &str| Err(invalid(format!("{what} is not supported by this runtime")));
    let version = spec.version();
    if !(version.starts_with("1.0")
        || version.starts_with("1.1")
        || version.starts_with("1.2")
        || version.starts_with("1.3"))
    {
        return Err(invalid(format!("ociVersion {version} is not supported (1.0 to 1.3 are)")));
    }
    // No process: a container that can be created, never started (the
    // spec makes `process` required only by `start`).
    let nothing;
    let process = match spec.process() {
        Some(p) => p,
        None => {
            nothing = {
                let mut p = oci_spec::runtime::Process::default();
                p.set_terminal(Some(false));
                p
            };
            &nothing
        }
    };
    if process.apparmor_profile().is_some() {
        return unsupported("an AppArmor profile");
    }
    if process.scheduler().is_some() || process.io_priority().is_some() {
        return unsupported("scheduler or ioPriority");
    }
    let args = if spec.process().is_some() { process.args().clone().unwrap_or_default() } else { Vec::new() };
    if args.is_empty() && spec.process().is_some() {
        return Err(invalid("process.args is empty"));
    }
    let root = spec.root().as_ref().ok_or_else(|| invalid("no root"))?;
    let rootfs = if root.path().is_absolute() { root.path().clone() } else { bundle.join(root.path()) };
    let linux = spec.linux().as_ref().ok_or_else(|| invalid("no linux section"))?;
    let id_map = |m: &Option<Vec<oci_spec::runtime::LinuxIdMapping>>| -> Vec<(u32, u32, u32)> {
        m.iter().flatten().map(|m| (m.container_id(), m.host_id(), m.size())).collect()
    };
    let (uid_map, gid_map) = (id_map(linux.uid_mappings()), id_map(linux.gid_mappings()));
    if linux.intel_rdt().is_some() || linux.personality().is_some() || linux.time_offsets().is_some() {
        return unsupported("intelRdt, personality or timeOffsets");
    }
    let root_propagation = match linux.rootfs_propagation().as_deref() {
        None | Some("") => MsFlags::empty(),
        Some(p) => match parse_mount_options(&[p.to_string()]) {
            (_, propagation, _, _) if !propagation.is_empty() => propagation,
            _ => return Err(invalid(format!("rootfsPropagation {p:?} is not a propagation"))),
        },
    };

    let mut clone_flags = CloneFlags::empty();
    let mut cgroup_namespace = false;
    let mut join_network = None;
    let mut join = Vec::new();
    let mut join_user = None;
    for ns in linux.namespaces().iter().flatten() {
        if let Some(path) = ns.path() {
            // An existing namespace (a pod's, or one the engine made).
            let flag = match ns.typ() {
                LinuxNamespaceType::Network => {
                    join_network = Some(path.clone());
                    continue;
                }
                LinuxNamespaceType::User => {
                    join_user = Some(path.clone());
                    continue;
                }
                LinuxNamespaceType::Mount => CloneFlags::CLONE_NEWNS,
                LinuxNamespaceType::Pid => CloneFlags::CLONE_NEWPID,
                LinuxNamespaceType::Uts => CloneFlags::CLONE_NEWUTS,
                LinuxNamespaceType::Ipc => CloneFlags::CLONE_NEWIPC,
                LinuxNamespaceType::Cgroup => CloneFlags::CLONE_NEWCGROUP,
                other => return unsupported(&format!("joining the {other:?} namespace by path")),
            };
            join.push(JoinPlan { flag: flag.bits(), path: path.clone() });
            continue;
        }
        match ns.typ() {
            LinuxNamespaceType::Mount => clone_flags |= CloneFlags::CLONE_NEWNS,
            LinuxNamespaceType::Pid => clone_flags |= CloneFlags::CLONE_NEWPID,
            LinuxNamespaceType::Uts => clone_flags |= CloneFlags::CLONE_NEWUTS,
            LinuxNamespaceType::Ipc => clone_flags |= CloneFlags::CLONE_NEWIPC,
            LinuxNamespaceType::Network => clone_flags |= CloneFlags::CLONE_NEWNET,
            LinuxNamespaceType::Cgroup => cgroup_namespace = true,
            LinuxNamespaceType::User => clone_flags |= CloneFlags::CLONE_NEWUSER,
            other => return unsupported(&format!("the {other:?} namespace")),
        }
    }
    let user_namespace = clone_flags.contains(CloneFlags::CLONE_NEWUSER);
    if user_namespace && (uid_map.is_empty() || gid_map.is_empty()) {
        return Err(invalid("a new user namespace needs uidMappings and gidMappings"));
    }
    if !user_namespace && (!uid_map.is_empty() || !gid_map.is_empty()) {
        return Err(invalid("uidMappings and gidMappings need a new user namespace"));
    }
    // Without a mount namespace of its own the container's mounts and
    // pivot_root would be the host's: refused (an existing one is fine).
    let joins_mount = join.iter().any(|j| j.flag == CloneFlags::CLONE_NEWNS.bits());
    if !clone_flags.contains(CloneFlags::CLONE_NEWNS) && !joins_mount {
        return unsupported("a container without a mount namespace");
    }
    let joins_uts = join.iter().any(|j| j.flag == CloneFlags::CLONE_NEWUTS.bits());
    let hostname = spec.hostname().clone().filter(|h| !h.is_empty());
    if hostname.is_some() && !clone_flags.contains(CloneFlags::CLONE_NEWUTS) && !joins_uts {
        return Err(invalid("hostname needs a UTS namespace"));
    }

    let mut mounts = Vec::new();
    for m in spec.mounts().iter().flatten() {
        let destination = m.destination().to_string_lossy().into_owned();
        if !destination.starts_with('/') {
            return Err(invalid(format!("mount destination {destination:?} is not absolute")));
        }
        let options = m.options().clone().unwrap_or_default();
        let (flags, propagation, data, bind_opt) = parse_mount_options(&options);
        let kind = m.typ().clone().unwrap_or_else(|| if bind_opt { "bind".into() } else { "none".into() });
        let bind = bind_opt || kind == "bind";
        let mut source = m.source().as_ref().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| kind.clone());
        if bind && !source.starts_with('/') {
            source = bundle.join(&source).to_string_lossy().into_owned();
        }
        let known = ["proc", "sysfs", "tmpfs", "devpts", "mqueue", "cgroup", "cgroup2", "bind", "none"];
        if !bind && !known.contains(&kind.as_str()) {
            return unsupported(&format!("a mount of type {kind:?}"));
        }
        mounts.push(MountPlan {
            destination,
            kind,
            source,
            flags: if bind { flags | MsFlags::MS_BIND } else { flags },
            propagation,
            data,
            bind,
        });
    }

    let mut devices = default_devices();
    for d in linux.devices().iter().flatten() {
        let kind = match d.typ() {
            oci_spec::runtime::LinuxDeviceType::C | oci_spec::runtime::LinuxDeviceType::U => 'c',
            oci_spec::runtime::LinuxDeviceType::P => 'p',
            oci_spec::runtime::LinuxDeviceType::B => 'b',
            other => return unsupported(&format!("a device of type {other:?}")),
        };
        let path = d.path().to_string_lossy().into_owned();
        devices.retain(|x| x.path != path);
        devices.push(DevicePlan {
            path,
            kind,
            major: d.major() as u64,
            minor: d.minor() as u64,
            mode: d.file_mode().unwrap_or(0o666),
            uid: d.uid().unwrap_or(0),
            gid: d.gid().unwrap_or(0),
        });
    }

    let mut rlimits = Vec::new();
    for r in process.rlimits().iter().flatten() {
        let name = r.typ().to_string();
        let name = if name.starts_with("RLIMIT_") { name } else { format!("RLIMIT_{}", name.to_uppercase()) };
        let res = rlimit_resource(&name).ok_or_else(|| invalid(format!("unknown rlimit {name}")))?;
        rlimits.push((res, r.soft(), r.hard()));
    }

    let caps = match process.capabilities() {
        None => None,
        Some(c) => Some(CapsPlan {
            bounding: capabilities(c.bounding())?,
            effective: capabilities(c.effective())?,
            permitted: capabilities(c.permitted())?,
            inheritable: capabilities(c.inheritable())?,
            ambient: capabilities(c.ambient())?,
        }),
    };
    let seccomp = match linux.seccomp() {
        None => None,
        Some(profile) => Some(seccomp_profile(profile)?),
    };
    let user = process.user();
    let cwd = process.cwd().to_string_lossy().into_owned();
    if !cwd.starts_with('/') {
        return Err(invalid(format!("process.cwd {cwd:?} is not absolute")));
    }
    Ok(Plan {
        rootfs,
        overlay: None,
        readonly_root: root.readonly().unwrap_or(false),
        clone_flags,
        cgroup_namespace,
        hostname,
        mounts,
        devices,
        masked: linux.masked_paths().clone().unwrap_or_default(),
        readonly: linux.readonly_paths().clone().unwrap_or_default(),
        sysctls: linux.sysctl().iter().flatten().map(|(k, v)| (k.clone(), v.clone())).collect(),
        rlimits,
        process: ProcessPlan {
            uid: user.uid(),
            gid: user.gid(),
            additional_gids: user.additional_gids().clone().unwrap_or_default(),
            caps,
            no_new_privileges: process.no_new_privileges().unwrap_or(false),
            seccomp,
            cwd,
            args,
            env: process.env().clone().unwrap_or_default(),
            preserve_fds: 0,
        },
        new_session: false,
        network: None,
        join_network,
        join,
        uid_map,
        gid_map,
        join_user,
        oom_score_adj: process.oom_score_adj(),
        root_propagation,
        selinux_labels: process.selinux_label().is_some() || linux.mount_label().is_some(),
        terminal: process
            .terminal()
            .unwrap_or(false)
            .then(|| process.console_size().as_ref().map(|b| (b.height() as u16, b.width() as u16))),
        hooks: InContainer::of(spec.hooks().as_ref()),
    })
}

impl Plan {
    /// The plan of `spec`, whose relative paths resolve in `dir`. The spec
    /// is the whole truth: none of our defaults are added (beyond the
    /// devices the runtime spec requires), and a field we do not support is
    /// an error, never silently ignored.
    pub fn from_spec(spec: &Spec, dir: &Path) -> Result<Plan, PlanError> {
        from_spec(spec, dir)
    }

    /// The root filesystem as an overlay of `layers` (lowest first) under
    /// the writable `upper` (with overlayfs' `work` beside it).
    pub fn with_overlay(mut self, layers: Vec<PathBuf>, upper: PathBuf, work: PathBuf) -> Plan {
        self.overlay = Some(OverlayPlan { layers, upper, work });
        self
    }

    /// The default seccomp filter, derived from the process's capabilities.
    pub fn with_default_seccomp(mut self) -> Plan {
        let caps: Vec<String> =
            self.process.caps.iter().flat_map(|c| c.bounding.iter().map(|b| b.to_string())).collect();
        self.process.seccomp = Some(default_filter(&caps).iter().map(|i| (i.code, i.jt, i.jf, i.k)).collect());
        self
    }

    /// Refuses what this host cannot honour: SELinux labels on a host with
    /// SELinux enabled (`selinux_enabled`), which we would not apply.
    pub fn check_host(&self, selinux_enabled: bool) -> Result<(), PlanError> {
        if self.selinux_labels && selinux_enabled {
            return Err(PlanError::Unsupported { what: "SELinux labels (selinuxLabel, mountLabel)".into() });
        }
        Ok(())
    }

    /// The OCI state its `createContainer` and `startContainer` hooks read
    /// (the container sets its `pid` and `status`).
    pub fn set_hook_state(&mut self, state: serde_json::Map<String, serde_json::Value>) {
        self.hooks.state = state;
    }

    /// Whether the container is in a user namespace of its own or joined
    /// (its root is not the host's).
    pub(crate) fn user_namespace(&self) -> bool {
        self.clone_flags.contains(CloneFlags::CLONE_NEWUSER) || self.join_user.is_some()
    }

    /// Whether its stdio is a terminal (which needs an engine's console
    /// socket to hand it to).
    pub fn terminal(&self) -> bool {
        self.terminal.is_some()
    }

    /// The interface the caller puts in the container's network namespace
    /// before it lets the container run, configured by the container's init.
    pub fn set_network(&mut self, network: Option<crate::runtime::network::NetPlan>) {
        self.network = network;
    }

    /// The address the container will have on the network, if any.
    pub fn address(&self) -> Option<std::net::Ipv4Addr> {
        self.network.as_ref().map(|n| n.address)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(o: &[&str]) -> (MsFlags, MsFlags, String, bool) {
        parse_mount_options(&o.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn mount_options() {
        let (f, p, d, b) = opts(&["nosuid", "strictatime", "mode=755", "size=65536k"]);
        assert_eq!(f, MsFlags::MS_NOSUID | MsFlags::MS_STRICTATIME);
        assert_eq!((p, d.as_str(), b), (MsFlags::empty(), "mode=755,size=65536k", false));
        let (f, p, _, b) = opts(&["rbind", "ro", "rprivate"]);
        assert_eq!(f, MsFlags::MS_BIND | MsFlags::MS_REC | MsFlags::MS_RDONLY);
        assert_eq!(p, MsFlags::MS_PRIVATE | MsFlags::MS_REC);
        assert!(b);
        let (f, _, _, _) = opts(&["ro", "rw"]);
        assert!(!f.contains(MsFlags::MS_RDONLY));
    }

    #[test]
    fn a_crun_style_spec() {
        let json = r#"{
          "ociVersion": "1.0.0",
          "process": {"terminal": false, "user": {"uid": 0, "gid": 0}, "args": ["sh"], "env": ["PATH=/bin"], "cwd": "/",
            "capabilities": {"bounding": ["CAP_CHOWN", "CAP_KILL"], "effective": ["CAP_KILL"], "permitted": ["CAP_CHOWN", "CAP_KILL"]},
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}], "noNewPrivileges": true},
          "root": {"path": "rootfs", "readonly": true},
          "hostname": "box",
          "mounts": [{"destination": "/proc", "type": "proc", "source": "proc"},
                     {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
                     {"destination": "/data", "type": "bind", "source": "data", "options": ["rbind", "ro"]}],
          "linux": {"namespaces": [{"type": "pid"}, {"type": "mount"}, {"type": "uts"}, {"type": "cgroup"}],
                    "maskedPaths": ["/proc/kcore"], "readonlyPaths": ["/proc/sys"],
                    "devices": [{"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229}]}
        }"#;
        let spec: Spec = serde_json::from_str(json).unwrap();
        let plan = from_spec(&spec, Path::new("/b")).unwrap();
        assert_eq!(plan.rootfs, PathBuf::from("/b/rootfs"));
        assert!(plan.readonly_root && plan.process.no_new_privileges && plan.cgroup_namespace);
        assert_eq!(plan.clone_flags, CloneFlags::CLONE_NEWPID | CloneFlags::CLONE_NEWNS | CloneFlags::CLONE_NEWUTS);
        assert_eq!(plan.mounts[2].source, "/b/data");
        assert!(plan.mounts[2].bind);
        assert_eq!(plan.devices.len(), 7);
        assert_eq!(plan.rlimits, vec![(libc::RLIMIT_NOFILE as i32, 1024, 1024)]);
        let caps = plan.process.caps.unwrap();
        assert_eq!(caps.bounding, vec![caps::Capability::CAP_CHOWN, caps::Capability::CAP_KILL]);
        assert_eq!(caps.effective, vec![caps::Capability::CAP_KILL]);
    }

    #[test]
    fn user_namespace_and_namespaces_by_path() {
        let json = r#"{"ociVersion": "1.2.0", "process": {"user": {"uid": 0, "gid": 0}, "args": ["sh"], "cwd": "/"},
          "root": {"path": "rootfs"},
          "linux": {"namespaces": [{"type": "user"}, {"type": "mount"}, {"type": "pid", "path": "/proc/7/ns/pid"},
                                   {"type": "ipc", "path": "/proc/7/ns/ipc"}],
                    "uidMappings": [{"containerID": 0, "hostID": 1000, "size": 2000}],
                    "gidMappings": [{"containerID": 0, "hostID": 1000, "size": 3000}],
                    "rootfsPropagation": "rshared"}
        }"#;
        let spec: Spec = serde_json::from_str(json).unwrap();
        let plan = from_spec(&spec, Path::new("/b")).unwrap();
        assert_eq!(plan.clone_flags, CloneFlags::CLONE_NEWUSER | CloneFlags::CLONE_NEWNS);
        assert_eq!((plan.uid_map.clone(), plan.gid_map.clone()), (vec![(0, 1000, 2000)], vec![(0, 1000, 3000)]));
        let joined: Vec<(i32, &str)> = plan.join.iter().map(|j| (j.flag, j.path.to_str().unwrap())).collect();
        assert_eq!(joined, vec![(libc::CLONE_NEWPID, "/proc/7/ns/pid"), (libc::CLONE_NEWIPC, "/proc/7/ns/ipc")]);
        assert_eq!(plan.root_propagation, MsFlags::MS_SHARED | MsFlags::MS_REC);
        let no_maps = json.replace(r#""uidMappings""#, r#""x""#);
        let spec: Spec = serde_json::from_str(&no_maps).unwrap();
        assert!(from_spec(&spec, Path::new("/b")).unwrap_err().to_string().contains("needs uidMappings"));
        // A user namespace joined by path: entered, not made; no maps of ours.
        let joined = json.replace(r#"{"type": "user"}"#, r#"{"type": "user", "path": "/proc/7/ns/user"}"#);
        let without_maps = joined.replace(r#""uidMappings""#, r#""x""#).replace(r#""gidMappings""#, r#""y""#);
        let plan = from_spec(&serde_json::from_str(&without_maps).unwrap(), Path::new("/b")).unwrap();
        assert_eq!(plan.clone_flags, CloneFlags::CLONE_NEWNS);
        assert_eq!(plan.join_user.as_deref(), Some(Path::new("/proc/7/ns/user")));
        assert!(plan.user_namespace());
        let err = from_spec(&serde_json::from_str(&joined).unwrap(), Path::new("/b")).unwrap_err();
        assert!(err.to_string().contains("need a new user namespace"), "{err}");
    }

    #[test]
    fn unsupported_fields_are_errors() {
        let base = r#"{"ociVersion": "1.0.2", "process": {"user": {"uid": 0, "gid": 0}, "args": ["sh"], "cwd": "/"},
                       "root": {"path": "rootfs"}, "linux": {"namespaces": [{"type": "mount"}] EXTRA }}"#;
        for (extra, what) in [
            (r#", "seccomp": {"defaultAction": "SCMP_ACT_NOTIFY"}"#, "SCMP_ACT_NOTIFY"),
            (r#", "personality": {"domain": "LINUX32"}"#, "personality"),
        ] {
            let spec: Spec = serde_json::from_str(&base.replace("EXTRA", extra)).unwrap();
            let err = from_spec(&spec, Path::new("/b")).unwrap_err().to_string();
            assert!(err.contains(what) && err.contains("not supported"), "{what}: {err}");
        }
        let maps_alone = r#", "uidMappings": [{"containerID": 0, "hostID": 1000, "size": 1}]"#;
        let spec: Spec = serde_json::from_str(&base.replace("EXTRA", maps_alone)).unwrap();
        assert!(from_spec(&spec, Path::new("/b")).unwrap_err().to_string().contains("need a new user namespace"));
        let spec: Spec = serde_json::from_str(&base.replace("EXTRA", "").replace("1.0.2", "2.0.0")).unwrap();
        assert!(from_spec(&spec, Path::new("/b")).unwrap_err().to_string().contains("ociVersion"));
    }
}
