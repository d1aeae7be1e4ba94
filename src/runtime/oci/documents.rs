//! The two documents the runtime prints rather than acts on: `spec` (a
//! default `config.json`, as `runc spec` writes one) and `features` (the
//! runtime spec's features document: what this runtime understands).

use oci_spec::runtime::Spec;
use serde_json::{Value, json};

use super::SPEC_VERSION;

/// A bundle's default `config.json`: a shell in the usual namespaces,
/// Docker's default capabilities and masked paths, rootfs `rootfs`.
pub fn default_spec() -> Spec {
    let mut spec = Spec::default();
    spec.set_version(SPEC_VERSION.to_string());
    spec.set_hostname(Some("supervisor-runtime".to_string()));
    if let Some(process) = spec.process_mut() {
        // No console socket without an engine: stdio is the caller's.
        process.set_terminal(Some(false));
    }
    spec
}

/// Mount options `create` understands (flags and propagation; the rest is
/// passed to the filesystem as data).
const MOUNT_OPTIONS: &[&str] = &[
    "async",
    "atime",
    "bind",
    "dev",
    "diratime",
    "dirsync",
    "exec",
    "noatime",
    "nodev",
    "nodiratime",
    "noexec",
    "norelatime",
    "nostrictatime",
    "nosuid",
    "private",
    "rbind",
    "relatime",
    "rprivate",
    "rshared",
    "rslave",
    "runbindable",
    "ro",
    "rw",
    "shared",
    "slave",
    "strictatime",
    "suid",
    "sync",
    "unbindable",
];

/// The features document (runtime-spec `features.md`).
pub fn features() -> Value {
    let capabilities: Vec<String> =
        caps::all().into_iter().map(|c| c.to_string()).collect::<std::collections::BTreeSet<_>>().into_iter().collect();
    json!({
        "ociVersionMin": "1.0.0",
        "ociVersionMax": "1.3.0",
        "hooks": ["createRuntime", "prestart", "poststart", "poststop"],
        "mountOptions": MOUNT_OPTIONS,
        "linux": {
            "namespaces": ["cgroup", "ipc", "mount", "network", "pid", "user", "uts"],
            "capabilities": capabilities,
            "cgroup": { "v1": true, "v2": true, "systemd": false, "systemdUser": false, "rdma": false },
            "seccomp": {
                "enabled": true,
                "actions": ["SCMP_ACT_ALLOW", "SCMP_ACT_ERRNO", "SCMP_ACT_KILL", "SCMP_ACT_KILL_PROCESS",
                            "SCMP_ACT_KILL_THREAD", "SCMP_ACT_LOG", "SCMP_ACT_TRACE", "SCMP_ACT_TRAP"],
                "operators": ["SCMP_CMP_EQ", "SCMP_CMP_GE", "SCMP_CMP_GT", "SCMP_CMP_LE", "SCMP_CMP_LT",
                              "SCMP_CMP_MASKED_EQ", "SCMP_CMP_NE"],
                "archs": ["SCMP_ARCH_X86", "SCMP_ARCH_X86_64", "SCMP_ARCH_X32"],
            },
            "apparmor": { "enabled": false },
            "selinux": { "enabled": false },
            "intelRdt": { "enabled": false },
        },
        "annotations": {
            "org.opencontainers.runtime-spec.features.version": SPEC_VERSION,
            "io.github.supervisor.runtime.version": env!("CARGO_PKG_VERSION"),
        },
    })
}
