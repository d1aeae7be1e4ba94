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

use crate::runtime::seccomp::default_filter;

/// A spec this runtime cannot run as it is written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error("config.json: {what} is not supported by this runtime")]
    Unsupported { what: String },
    #[error("config.json: {0}")]
    Invalid(String),
}

fn invalid(message: impl ToString) -> PlanError {
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
    /// A pseudo-terminal for its stdio (`process.terminal`), made in the
    /// container and handed to the engine's console socket; its size.
    #[serde(default)]
    pub(crate) terminal: Option<Option<(u16, u16)>>,
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

/// The devices every container has (the runtime spec's "default devices").
pub(crate) fn default_devices() -> Vec<DevicePlan> {
    [("null", 1, 3), ("zero", 1, 5), ("full", 1, 7), ("random", 1, 8), ("urandom", 1, 9), ("tty", 5, 0)]
        .into_iter()
        .map(|(n, major, minor)| DevicePlan {
            path: format!("/dev/{n}"),
            kind: 'c',
            major,
            minor,
            mode: 0o666,
            uid: 0,
            gid: 0,
        })
        .collect()
}

/// Splits mount options into flags, propagation and data, as mount(8) does.
pub(crate) fn parse_mount_options(options: &[String]) -> (MsFlags, MsFlags, String, bool) {
    let mut flags = MsFlags::empty();
    let mut propagation = MsFlags::empty();
    let mut data = Vec::new();
    let mut bind = false;
    for o in options {
        let (set, clear) = match o.as_str() {
            "ro" => (MsFlags::MS_RDONLY, MsFlags::empty()),
            "rw" => (MsFlags::empty(), MsFlags::MS_RDONLY),
            "nosuid" => (MsFlags::MS_NOSUID, MsFlags::empty()),
            "suid" => (MsFlags::empty(), MsFlags::MS_NOSUID),
            "nodev" => (MsFlags::MS_NODEV, MsFlags::empty()),
            "dev" => (MsFlags::empty(), MsFlags::MS_NODEV),
            "noexec" => (MsFlags::MS_NOEXEC, MsFlags::empty()),
            "exec" => (MsFlags::empty(), MsFlags::MS_NOEXEC),
            "sync" => (MsFlags::MS_SYNCHRONOUS, MsFlags::empty()),
            "async" => (MsFlags::empty(), MsFlags::MS_SYNCHRONOUS),
            "dirsync" => (MsFlags::MS_DIRSYNC, MsFlags::empty()),
            "noatime" => (MsFlags::MS_NOATIME, MsFlags::empty()),
            "atime" => (MsFlags::empty(), MsFlags::MS_NOATIME),
            "nodiratime" => (MsFlags::MS_NODIRATIME, MsFlags::empty()),
            "diratime" => (MsFlags::empty(), MsFlags::MS_NODIRATIME),
            "relatime" => (MsFlags::MS_RELATIME, MsFlags::empty()),
            "norelatime" => (MsFlags::empty(), MsFlags::MS_RELATIME),
            "strictatime" => (MsFlags::MS_STRICTATIME, MsFlags::empty()),
            "nostrictatime" => (MsFlags::empty(), MsFlags::MS_STRICTATIME),
            "bind" => {
                bind = true;
                (MsFlags::MS_BIND, MsFlags::empty())
            }
            "rbind" => {
                bind = true;
                (MsFlags::MS_BIND | MsFlags::MS_REC, MsFlags::empty())
            }
            "private" | "rprivate" | "shared" | "rshared" | "slave" | "rslave" | "unbindable" | "runbindable" => {
                let p = match o.trim_start_matches('r') {
                    "private" => MsFlags::MS_PRIVATE,
                    "shared" => MsFlags::MS_SHARED,
                    "slave" => MsFlags::MS_SLAVE,
                    _ => MsFlags::MS_UNBINDABLE,
                };
                propagation |= p;
                if o.starts_with('r') {
                    propagation |= MsFlags::MS_REC;
                }
                continue;
            }
            other => {
                data.push(other.to_string());
                continue;
            }
        };
        flags.insert(set);
        flags.remove(clear);
    }
    (flags, propagation, data.join(","), bind)
}

pub(crate) fn capabilities(set: &Option<oci_spec::runtime::Capabilities>) -> Result<Vec<caps::Capability>, PlanError> {
    let mut out: Vec<caps::Capability> = Vec::new();
    for c in set.iter().flatten() {
        let name = c.to_string();
        let name = if name.starts_with("CAP_") { name } else { format!("CAP_{}", name.to_uppercase()) };
        out.push(name.parse().map_err(|_| invalid(format!("unknown capability {name}")))?);
    }
    out.sort_by_key(|c| c.index());
    Ok(out)
}

/// The resource number of an rlimit named as the runtime spec names it
/// (`RLIMIT_NOFILE`).
pub(crate) fn rlimit_resource(name: &str) -> Option<i32> {
    Some(match name {
        "RLIMIT_AS" => libc::RLIMIT_AS,
        "RLIMIT_CORE" => libc::RLIMIT_CORE,
        "RLIMIT_CPU" => libc::RLIMIT_CPU,
        "RLIMIT_DATA" => libc::RLIMIT_DATA,
        "RLIMIT_FSIZE" => libc::RLIMIT_FSIZE,
        "RLIMIT_LOCKS" => libc::RLIMIT_LOCKS,
        "RLIMIT_MEMLOCK" => libc::RLIMIT_MEMLOCK,
        "RLIMIT_MSGQUEUE" => libc::RLIMIT_MSGQUEUE,
        "RLIMIT_NICE" => libc::RLIMIT_NICE,
        "RLIMIT_NOFILE" => libc::RLIMIT_NOFILE,
        "RLIMIT_NPROC" => libc::RLIMIT_NPROC,
        "RLIMIT_RSS" => libc::RLIMIT_RSS,
        "RLIMIT_RTPRIO" => libc::RLIMIT_RTPRIO,
        "RLIMIT_RTTIME" => libc::RLIMIT_RTTIME,
        "RLIMIT_SIGPENDING" => libc::RLIMIT_SIGPENDING,
        "RLIMIT_STACK" => libc::RLIMIT_STACK,
        _ => return None,
    } as i32)
}

/// An OCI seccomp profile as a filter. Calls this architecture does not
/// have are skipped (as libseccomp does); other architectures' calls are
/// refused outright (the filter kills them).
fn seccomp_profile(profile: &oci_spec::runtime::LinuxSeccomp) -> Result<Vec<(u16, u8, u8, u32)>, PlanError> {
    use crate::runtime::seccomp::{ArgCmp, ArgOp, Rule, action, profile_filter, syscall_number};
    let name = |v: serde_json::Result<serde_json::Value>| {
        v.ok().and_then(|v| v.as_str().map(String::from)).unwrap_or_default()
    };
    if profile.flags().as_ref().is_some_and(|f| !f.is_empty()) || profile.listener_path().is_some() {
        return Err(invalid("seccomp flags and listenerPath are not supported by this runtime"));
    }
    if let Some(archs) = profile.architectures()
        && !archs.is_empty()
        && !archs.iter().any(|a| name(serde_json::to_value(a)) == "SCMP_ARCH_X86_64")
    {
        return Err(invalid("the seccomp profile does not cover SCMP_ARCH_X86_64"));
    }
    let default =
        action(&name(serde_json::to_value(profile.default_action())), profile.default_errno_ret()).map_err(invalid)?;
    let mut rules = Vec::new();
    for call in profile.syscalls().iter().flatten() {
        let act = action(&name(serde_json::to_value(call.action())), call.errno_ret()).map_err(invalid)?;
        let mut args = Vec::new();
        for a in call.args().iter().flatten() {
            let op = match name(serde_json::to_value(a.op())).as_str() {
                "SCMP_CMP_EQ" => ArgOp::Eq,
                "SCMP_CMP_NE" => ArgOp::Ne,
                "SCMP_CMP_LT" => ArgOp::Lt,
                "SCMP_CMP_LE" => ArgOp::Le,
                "SCMP_CMP_GT" => ArgOp::Gt,
                "SCMP_CMP_GE" => ArgOp::Ge,
                "SCMP_CMP_MASKED_EQ" => ArgOp::MaskedEq,
                other => return Err(invalid(format!("the seccomp operator {other:?} is not supported"))),
            };
            let index =
                u8::try_from(a.index()).map_err(|_| invalid(format!("seccomp argument index {}", a.index())))?;
            args.push(ArgCmp { index, op, value: a.value(), value_two: a.value_two().unwrap_or(0) });
        }
        for n in call.names() {
            if let Some(nr) = syscall_number(n) {
                rules.push(Rule { nr, args: args.clone(), action: act });
            }
        }
    }
    let program = profile_filter(&rules, default).map_err(invalid)?;
    Ok(program.iter().map(|i| (i.code, i.jt, i.jf, i.k)).collect())
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
    if spec.hooks().is_some() {
        return unsupported("hooks");
    }
    let process = spec.process().as_ref().ok_or_else(|| invalid("no process"))?;
    if process.apparmor_profile().is_some() || process.selinux_label().is_some() {
        return unsupported("an AppArmor profile or SELinux label");
    }
    if process.oom_score_adj().is_some() || process.scheduler().is_some() || process.io_priority().is_some() {
        return unsupported("oomScoreAdj, scheduler or ioPriority");
    }
    let args = process.args().clone().unwrap_or_default();
    if args.is_empty() {
        return Err(invalid("process.args is empty"));
    }
    let root = spec.root().as_ref().ok_or_else(|| invalid("no root"))?;
    let rootfs = if root.path().is_absolute() { root.path().clone() } else { bundle.join(root.path()) };
    let linux = spec.linux().as_ref().ok_or_else(|| invalid("no linux section"))?;
    if linux.uid_mappings().as_ref().is_some_and(|m| !m.is_empty())
        || linux.gid_mappings().as_ref().is_some_and(|m| !m.is_empty())
    {
        return unsupported("a user namespace (uidMappings)");
    }
    if linux.intel_rdt().is_some() || linux.personality().is_some() || linux.time_offsets().is_some() {
        return unsupported("intelRdt, personality or timeOffsets");
    }
    if linux.mount_label().is_some() {
        return unsupported("mountLabel");
    }
    if let Some(p) = linux.rootfs_propagation()
        && !p.is_empty()
        && p != "private"
        && p != "rprivate"
    {
        return unsupported(&format!("rootfsPropagation {p:?}"));
    }

    let mut clone_flags = CloneFlags::empty();
    let mut cgroup_namespace = false;
    let mut join_network = None;
    for ns in linux.namespaces().iter().flatten() {
        if let Some(path) = ns.path() {
            // Another container's network (a pod): the only namespace
            // joined by path so far.
            if ns.typ() != LinuxNamespaceType::Network {
                return unsupported("joining a namespace other than the network by path");
            }
            join_network = Some(path.clone());
            continue;
        }
        match ns.typ() {
            LinuxNamespaceType::Mount => clone_flags |= CloneFlags::CLONE_NEWNS,
            LinuxNamespaceType::Pid => clone_flags |= CloneFlags::CLONE_NEWPID,
            LinuxNamespaceType::Uts => clone_flags |= CloneFlags::CLONE_NEWUTS,
            LinuxNamespaceType::Ipc => clone_flags |= CloneFlags::CLONE_NEWIPC,
            LinuxNamespaceType::Network => clone_flags |= CloneFlags::CLONE_NEWNET,
            LinuxNamespaceType::Cgroup => cgroup_namespace = true,
            other => return unsupported(&format!("the {other:?} namespace")),
        }
    }
    if !clone_flags.contains(CloneFlags::CLONE_NEWNS) {
        return unsupported("a container without a mount namespace");
    }
    let hostname = spec.hostname().clone().filter(|h| !h.is_empty());
    if hostname.is_some() && !clone_flags.contains(CloneFlags::CLONE_NEWUTS) {
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
        terminal: process
            .terminal()
            .unwrap_or(false)
            .then(|| process.console_size().as_ref().map(|b| (b.height() as u16, b.width() as u16))),
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

    /// The interface the caller puts in the container's network namespace
    /// before it lets the container run, configured by the container's init.
    /// Whether its stdio is a terminal (which needs an engine's console
    /// socket to hand it to).
    pub fn terminal(&self) -> bool {
        self.terminal.is_some()
    }

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
    fn unsupported_fields_are_errors() {
        let base = r#"{"ociVersion": "1.0.2", "process": {"user": {"uid": 0, "gid": 0}, "args": ["sh"], "cwd": "/"},
                       "root": {"path": "rootfs"}, "linux": {"namespaces": [{"type": "mount"}] EXTRA }}"#;
        for (extra, what) in [
            (r#", "uidMappings": [{"containerID": 0, "hostID": 1000, "size": 1}]"#, "user namespace"),
            (r#", "seccomp": {"defaultAction": "SCMP_ACT_NOTIFY"}"#, "SCMP_ACT_NOTIFY"),
            (r#", "personality": {"domain": "LINUX32"}"#, "personality"),
        ] {
            let spec: Spec = serde_json::from_str(&base.replace("EXTRA", extra)).unwrap();
            let err = from_spec(&spec, Path::new("/b")).unwrap_err().to_string();
            assert!(err.contains(what) && err.contains("not supported"), "{what}: {err}");
        }
        let spec: Spec = serde_json::from_str(&base.replace("EXTRA", "").replace("1.0.2", "2.0.0")).unwrap();
        assert!(from_spec(&spec, Path::new("/b")).unwrap_err().to_string().contains("ociVersion"));
    }
}
