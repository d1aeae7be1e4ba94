//! Small grammars of Compose values: a command string split as a shell
//! would, sizes as Docker writes them, and service names made unit names.

use crate::names::check_dns_label;

/// Splits a command line as POSIX `sh` (and Python's `shlex`, which
/// Compose uses) would, without expansions: quotes and backslashes.
pub fn shell_split(s: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => word.push(c),
                        None => return Err(format!("{s:?}: unterminated single quote")),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c @ ('"' | '\\' | '$' | '`')) => word.push(c),
                            Some('\n') => {}
                            Some(c) => {
                                word.push('\\');
                                word.push(c);
                            }
                            None => return Err(format!("{s:?}: unterminated double quote")),
                        },
                        Some(c) => word.push(c),
                        None => return Err(format!("{s:?}: unterminated double quote")),
                    }
                }
            }
            '\\' => {
                in_word = true;
                match chars.next() {
                    Some('\n') => {}
                    Some(c) => word.push(c),
                    None => word.push('\\'),
                }
            }
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    Ok(words)
}

/// A size as Compose takes it (`mem_limit`, `memory`, `shm_size`, log
/// `max-size`): bytes, or a number with `b`, `k`/`kb`, `m`/`mb`, `g`/`gb`
/// (1024-based, any case), into bytes.
pub fn compose_size(s: &str) -> Result<u64, String> {
    let t = s.trim().to_ascii_lowercase();
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let multiplier: u64 = match unit.trim() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        "t" | "tb" | "tib" => 1 << 40,
        other => return Err(format!("{s:?}: unknown size unit {other:?} (use b, k, m or g)")),
    };
    let value: f64 = number.parse().map_err(|_| format!("{s:?} is not a size"))?;
    let bytes = value * multiplier as f64;
    if !bytes.is_finite() || bytes < 0.0 || bytes > u64::MAX as f64 {
        return Err(format!("{s:?} is out of range"));
    }
    Ok(bytes as u64)
}

/// A unit name for a service: lowercase, `_`, `.` and spaces as `-`,
/// other characters left out, at most 63 bytes. `None` when nothing is left.
pub fn unit_name(service: &str, project: Option<&str>) -> Option<String> {
    let full = match project {
        Some(p) => format!("{p}-{service}"),
        None => service.to_string(),
    };
    let mut name = String::new();
    for c in full.chars() {
        match c {
            'a'..='z' | '0'..='9' => name.push(c),
            'A'..='Z' => name.push(c.to_ascii_lowercase()),
            '-' | '_' | '.' | ' ' if !name.is_empty() && !name.ends_with('-') => name.push('-'),
            _ => {}
        }
    }
    name.truncate(63);
    let name = name.trim_end_matches('-').to_string();
    check_dns_label(&name).ok().map(|()| name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_like_a_shell() {
        let table: [(&str, &[&str]); 8] = [
            ("redis-server --appendonly yes", &["redis-server", "--appendonly", "yes"]),
            ("sh -c 'echo $HOME; exit 1'", &["sh", "-c", "echo $HOME; exit 1"]),
            (r#"echo "a \"b\" c" d"#, &["echo", "a \"b\" c", "d"]),
            (r"a\ b c", &["a b", "c"]),
            ("  spaced   out  ", &["spaced", "out"]),
            ("''", &[""]),
            ("x''y", &["xy"]),
            ("", &[]),
        ];
        for (input, want) in table {
            assert_eq!(shell_split(input).unwrap(), want, "{input}");
        }
        assert!(shell_split("echo 'open").is_err());
        assert!(shell_split("echo \"open").is_err());
    }

    #[test]
    fn sizes() {
        assert_eq!(compose_size("512"), Ok(512));
        assert_eq!(compose_size("2b"), Ok(2));
        assert_eq!(compose_size("64k"), Ok(64 << 10));
        assert_eq!(compose_size("1024kb"), Ok(1 << 20));
        assert_eq!(compose_size("300m"), Ok(300 << 20));
        assert_eq!(compose_size("300M"), Ok(300 << 20));
        assert_eq!(compose_size("1.5g"), Ok(3 << 29));
        assert_eq!(compose_size("1gb"), Ok(1 << 30));
        assert!(compose_size("ten").is_err());
        assert!(compose_size("10 parsecs").is_err());
        assert!(compose_size("1e400").is_err());
    }

    #[test]
    fn unit_names() {
        assert_eq!(unit_name("web", None).as_deref(), Some("web"));
        assert_eq!(unit_name("My_Service.v2", None).as_deref(), Some("my-service-v2"));
        assert_eq!(unit_name("web", Some("shop")).as_deref(), Some("shop-web"));
        assert_eq!(unit_name("__x__", None).as_deref(), Some("x"));
        assert_eq!(unit_name("é", None), None);
        assert_eq!(unit_name(&"a".repeat(80), None).unwrap().len(), 63);
    }
}
