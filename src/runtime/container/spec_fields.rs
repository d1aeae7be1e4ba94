//! How the runtime spec's fields read, one by one, for the plan: mount
//! options, capabilities, rlimit names, the default devices, and a seccomp
//! profile as a filter. Pure.

use nix::mount::MsFlags;

use super::plan::{DevicePlan, PlanError, invalid};

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
pub(crate) fn seccomp_profile(profile: &oci_spec::runtime::LinuxSeccomp) -> Result<Vec<(u16, u8, u8, u32)>, PlanError> {
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
