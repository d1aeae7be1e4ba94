//! Linux capability names, written with or without `CAP_`, in any case, as
//! `docker run --cap-add` accepts them; `ALL` stands for every capability.

use crate::units::suggest::did_you_mean;

/// Every capability of Linux 6.x, in number order.
pub const ALL_CAPABILITIES: [&str; 41] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

/// Normalizes a capability name to `CAP_X`, or `ALL`.
pub fn parse_capability(input: &str) -> Result<String, String> {
    let upper = input.trim().to_ascii_uppercase();
    if upper == "ALL" {
        return Ok(upper);
    }
    let full = if upper.starts_with("CAP_") { upper } else { format!("CAP_{upper}") };
    if ALL_CAPABILITIES.contains(&full.as_str()) {
        Ok(full)
    } else {
        let hint = did_you_mean(&full, ALL_CAPABILITIES);
        Err(format!("unknown capability {input:?}{hint}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spellings() {
        assert_eq!(parse_capability("NET_ADMIN").unwrap(), "CAP_NET_ADMIN");
        assert_eq!(parse_capability("cap_net_admin").unwrap(), "CAP_NET_ADMIN");
        assert_eq!(parse_capability("all").unwrap(), "ALL");
        assert_eq!(parse_capability("BPF").unwrap(), "CAP_BPF");
    }

    #[test]
    fn unknown_with_hint() {
        let msg = parse_capability("NET_ADMN").unwrap_err();
        assert!(msg.contains("did you mean \"CAP_NET_ADMIN\""), "{msg}");
        assert_eq!(parse_capability("").unwrap_err().to_string(), "unknown capability \"\"");
        assert_eq!(parse_capability("CAP_").unwrap_err().to_string(), "unknown capability \"CAP_\"");
    }

    /// The list, in order, is the kernel's: each name at its number, as
    /// the kernel's UAPI header (linux-libc-dev) defines them.
    #[test]
    fn the_list_is_the_kernels() {
        let header = "/usr/include/linux/capability.h";
        let text = std::fs::read_to_string(header)
            .unwrap_or_else(|e| panic!("{header}: {e} (scripts/install-deps.sh installs gcc, which brings it)"));
        let mut kernel: Vec<(u32, &str)> = text
            .lines()
            .filter_map(|l| {
                let mut w = l.split_whitespace();
                let (Some("#define"), Some(name), Some(n)) = (w.next(), w.next(), w.next()) else { return None };
                Some((n.parse().ok()?, name.strip_prefix("CAP_").map(|_| name)?))
            })
            .collect();
        kernel.sort();
        let names: Vec<&str> = kernel.iter().map(|(_, n)| *n).collect();
        let numbers: Vec<u32> = kernel.iter().map(|(n, _)| *n).collect();
        assert_eq!(numbers, (0..41).collect::<Vec<u32>>(), "{kernel:?}");
        assert_eq!(names, ALL_CAPABILITIES);
    }
}
