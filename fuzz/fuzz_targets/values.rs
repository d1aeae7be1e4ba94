//! Arbitrary strings through each value grammar; the first byte picks one.
//! Whatever a grammar accepts must print in a form it accepts again, as the
//! same value (normalization is idempotent).
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use supervisor::units::values::{capability, duration, limits, mounts, names, path, port, reference, signal, size};

fuzz_target!(|data: &[u8]| {
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
});
