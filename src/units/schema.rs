//! The keys each section accepts, for unknown-key errors and suggestions.

pub const SECTIONS: [(&str, &[&str]); 8] = [
    ("unit", &["description", "after", "requires", "ready_timeout"]),
    (
        "container",
        &[
            "image",
            "pull",
            "entrypoint",
            "command",
            "env",
            "env_file",
            "workdir",
            "user",
            "hostname",
            "read_only",
            "ports",
            "volumes",
            "tmpfs",
            "network",
            "aliases",
            "cap_add",
            "cap_drop",
            "no_new_privileges",
            "seccomp",
            "privileged",
            "devices",
            "sysctls",
            "ulimits",
            "notify",
        ],
    ),
    ("resources", &["cpus", "memory", "pids"]),
    ("restart", &["policy", "delay", "max_delay", "reset_after", "limit"]),
    ("stop", &["signal", "timeout"]),
    (
        "health",
        &[
            "exec",
            "http",
            "tcp",
            "disable",
            "interval",
            "timeout",
            "retries",
            "start_period",
            "start_interval",
            "on_unhealthy",
        ],
    ),
    ("logs", &["max_size", "max_files"]),
    ("update", &["strategy", "healthy_within", "min_healthy", "rollback", "auto"]),
];

/// The keys of `section`.
pub fn keys(section: &str) -> &'static [&'static str] {
    SECTIONS.iter().find(|(s, _)| *s == section).map_or(&[], |(_, k)| k)
}

/// The section that has `key`, if exactly one does.
pub fn section_of(key: &str) -> Option<&'static str> {
    let mut owners = SECTIONS.iter().filter(|(_, keys)| keys.contains(&key));
    match (owners.next(), owners.next()) {
        (Some((s, _)), None) => Some(s),
        _ => None,
    }
}
