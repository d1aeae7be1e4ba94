//! `sysctls` and `ulimits`.

use std::fmt;

use crate::units::suggest::did_you_mean;

/// Sysctls that are namespaced, and so may differ per container, as in
/// Docker's allow-list: IPC ones (`kernel.msg*`, `kernel.sem`, `kernel.shm*`,
/// `fs.mqueue.*`) and, unless the container shares the host's network,
/// `net.*`.
pub fn check_sysctl(name: &str, host_network: bool) -> Result<(), String> {
    const IPC: [&str; 8] = [
        "kernel.msgmax",
        "kernel.msgmnb",
        "kernel.msgmni",
        "kernel.sem",
        "kernel.shmall",
        "kernel.shmmax",
        "kernel.shmmni",
        "kernel.shm_rmid_forced",
    ];
    let well_formed = !name.is_empty()
        && name.split('.').all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-".contains(&b)));
    if !well_formed {
        return Err(format!("{name:?} is not a sysctl name (dot-separated, like \"net.core.somaxconn\")"));
    }
    if IPC.contains(&name) || name.starts_with("fs.mqueue.") {
        return Ok(());
    }
    if name.starts_with("net.") {
        if host_network {
            return Err(format!("sysctl {name:?} cannot be set with network = \"host\": it would change the host"));
        }
        return Ok(());
    }
    if name == "kernel.hostname" || name == "kernel.domainname" {
        return Err(format!("sysctl {name:?}: use the hostname key instead"));
    }
    Err(format!(
        "sysctl {name:?} is not namespaced: setting it would change the host (allowed: net.*, fs.mqueue.*, kernel.msg*, kernel.sem, kernel.shm*)"
    ))
}

/// Resource limits by their `ulimit -a` / Docker names.
pub const ULIMIT_NAMES: [&str; 16] = [
    "as",
    "core",
    "cpu",
    "data",
    "fsize",
    "locks",
    "memlock",
    "msgqueue",
    "nice",
    "nofile",
    "nproc",
    "rss",
    "rtprio",
    "rttime",
    "sigpending",
    "stack",
];

pub fn check_ulimit_name(name: &str) -> Result<(), String> {
    if ULIMIT_NAMES.contains(&name) {
        Ok(())
    } else {
        Err(format!("unknown ulimit {name:?}{}", did_you_mean(name, ULIMIT_NAMES)))
    }
}

/// One limit value; `None` is unlimited (`-1` or `"unlimited"`).
pub type LimitValue = Option<u64>;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ulimit {
    pub soft: LimitValue,
    pub hard: LimitValue,
}

pub fn parse_limit_value(s: &str) -> Result<LimitValue, String> {
    match s.trim() {
        "unlimited" | "infinity" | "-1" => Ok(None),
        v => v.parse::<u64>().map(Some).map_err(|_| format!("{s:?} is not a limit (a number, -1 or \"unlimited\")")),
    }
}

impl Ulimit {
    /// `"soft:hard"` or a single value for both.
    pub fn parse(s: &str) -> Result<Ulimit, String> {
        let (soft, hard) = match s.split_once(':') {
            Some((a, b)) => (parse_limit_value(a)?, parse_limit_value(b)?),
            None => {
                let v = parse_limit_value(s)?;
                (v, v)
            }
        };
        Ulimit::new(soft, hard)
    }

    pub fn new(soft: LimitValue, hard: LimitValue) -> Result<Ulimit, String> {
        let above = match (soft, hard) {
            (None, Some(_)) => true,
            (Some(s), Some(h)) => s > h,
            _ => false,
        };
        if above {
            return Err("the soft limit is above the hard limit".into());
        }
        Ok(Ulimit { soft, hard })
    }
}

impl fmt::Display for Ulimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let v = |x: LimitValue| x.map_or_else(|| "unlimited".to_string(), |n| n.to_string());
        write!(f, "{}:{}", v(self.soft), v(self.hard))
    }
}

impl serde::Serialize for Ulimit {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sysctls() {
        assert!(check_sysctl("net.core.somaxconn", false).is_ok());
        assert!(check_sysctl("kernel.shmmax", false).is_ok());
        assert!(check_sysctl("fs.mqueue.msg_max", true).is_ok());
        assert!(check_sysctl("net.core.somaxconn", true).unwrap_err().contains("host"));
        assert!(check_sysctl("kernel.panic", false).unwrap_err().contains("not namespaced"));
        assert_eq!(
            check_sysctl("vm.swappiness", false).unwrap_err().to_string(),
            "sysctl \"vm.swappiness\" is not namespaced: setting it would change the host (allowed: net.*, fs.mqueue.*, kernel.msg*, kernel.sem, kernel.shm*)"
        );
        assert!(check_sysctl("kernel.hostname", false).unwrap_err().contains("hostname key"));
        assert_eq!(
            check_sysctl("net..x", false).unwrap_err().to_string(),
            "\"net..x\" is not a sysctl name (dot-separated, like \"net.core.somaxconn\")"
        );
    }

    #[test]
    fn ulimits() {
        assert_eq!(Ulimit::parse("4096").unwrap().to_string(), "4096:4096");
        assert_eq!(Ulimit::parse("1024:4096").unwrap().to_string(), "1024:4096");
        assert_eq!(Ulimit::parse("-1").unwrap().to_string(), "unlimited:unlimited");
        assert_eq!(Ulimit::parse("1024:unlimited").unwrap().to_string(), "1024:unlimited");
        assert!(Ulimit::parse("4096:1024").unwrap_err().contains("above the hard"));
        assert_eq!(Ulimit::parse("unlimited:10").unwrap_err().to_string(), "the soft limit is above the hard limit");
        assert_eq!(
            Ulimit::parse("lots").unwrap_err().to_string(),
            "\"lots\" is not a limit (a number, -1 or \"unlimited\")"
        );
        assert!(check_ulimit_name("nofile").is_ok());
        assert!(check_ulimit_name("nofiles").unwrap_err().contains("did you mean \"nofile\""));
    }
}
