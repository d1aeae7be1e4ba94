//! Unit files, their value grammars and `env_file` contents: what an
//! unprivileged user who may write a unit directory controls.

use std::collections::BTreeMap;
use std::path::Path;

use crate::units::Hashes;
use crate::units::diag::Source;
use crate::units::envfile::parse_env_file;
use crate::units::parse::{ParseInput, parse_unit};
use crate::units::values::{capability, duration, limits, mounts, names, path, port, reference, signal, size};

/// Arbitrary bytes as a unit file: parsing must never panic or hang,
/// every diagnostic must render, and every accepted unit must hash.
pub fn unit_file(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let input = ParseInput {
        name: "fuzz",
        source: Source { path: Path::new("fuzz.toml"), text },
        base_dir: Path::new("/etc/units.d"),
        read_file: &|_| Ok("A=1\n".to_string()),
    };
    match parse_unit(&input) {
        Ok(parsed) => {
            let _ = Hashes::of(&parsed.unit);
            let _ = serde_json::to_string(&parsed.unit);
        }
        Err(errors) => {
            assert!(!errors.is_empty(), "a refused unit file must say why");
            for e in errors {
                let _ = e.render(true);
            }
        }
    }
}

/// Arbitrary strings through each value grammar; the first byte picks one.
/// Whatever a grammar accepts must print in a form it accepts again, as
/// the same value (normalization is idempotent).
pub fn values(data: &[u8]) {
    let Some((&pick, rest)) = data.split_first() else { return };
    let Ok(s) = std::str::from_utf8(rest) else { return };
    let base = Path::new("/etc/units.d");
    match pick % 12 {
        0 => {
            if let Ok(n) = size::parse_size(s) {
                assert_eq!(size::parse_size(&size::format_size(n)), Ok(n));
            }
        }
        1 => {
            if let Ok(d) = duration::parse_duration(s) {
                assert_eq!(duration::parse_duration(&duration::format_duration(d)), Ok(d));
            }
        }
        2 => {
            if let Ok(sig) = signal::Signal::parse(s) {
                assert_eq!(signal::Signal::parse(&sig.to_string()), Ok(sig));
            }
        }
        3 => {
            if let Ok(c) = capability::parse_capability(s) {
                assert_eq!(capability::parse_capability(&c), Ok(c));
            }
        }
        4 => {
            if let Ok(p) = port::PortMapping::parse(s) {
                assert_eq!(port::PortMapping::parse(&p.to_string()), Ok(p));
            }
        }
        5 => {
            if let Ok(v) = mounts::Volume::parse(s, base) {
                assert_eq!(mounts::Volume::parse(&v.to_string(), base), Ok(v));
            }
        }
        6 => {
            if let Ok(t) = mounts::Tmpfs::parse(s) {
                assert_eq!(mounts::Tmpfs::parse(&t.to_string()), Ok(t));
            }
        }
        7 => {
            if let Ok(d) = mounts::Device::parse(s) {
                assert_eq!(mounts::Device::parse(&d.to_string()), Ok(d));
            }
        }
        8 => {
            if let Ok(r) = reference::ImageSource::parse(s, base) {
                assert_eq!(reference::ImageSource::parse(&r.to_string(), base), Ok(r));
            }
        }
        9 => {
            if let Ok(u) = limits::Ulimit::parse(s) {
                assert_eq!(limits::Ulimit::parse(&u.to_string()), Ok(u));
            }
        }
        10 => {
            if let Ok(p) = path::clean_absolute(s) {
                assert_eq!(path::clean_absolute(&p), Ok(p));
            }
        }
        _ => {
            let _ = names::check_dns_label(s);
            let _ = names::check_hostname(s);
            let _ = names::check_user(s);
            let _ = names::check_env_name(s);
            let _ = limits::check_sysctl(s, false);
        }
    }
}

/// An `env_file`'s contents: every diagnostic renders with a line, and
/// what is accepted, printed back as `NAME=value` lines, reads as the
/// same variables.
pub fn env_file(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let path = Path::new("fuzz.env");
    match parse_env_file(&Source { path, text }) {
        Ok(vars) => {
            let printed: String = vars.iter().map(|(k, v)| format!("{k}={v}\n")).collect();
            let again: BTreeMap<String, String> = parse_env_file(&Source { path, text: &printed })
                .unwrap_or_else(|e| panic!("printed variables refused: {:?}", e.first().map(|d| &d.message)));
            assert_eq!(again, vars, "printed variables read differently");
        }
        Err(errors) => {
            assert!(!errors.is_empty(), "a refused env file must say why");
            for e in errors {
                assert!(e.line.is_some(), "an env file error without a line: {}", e.message);
                let _ = e.render(true);
            }
        }
    }
}
