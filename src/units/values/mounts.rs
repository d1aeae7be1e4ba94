//! `volumes`, `tmpfs` and `devices` entries, in `docker run` syntax.

use std::fmt;
use std::path::Path;

use super::names::check_volume_name;
use super::path::{clean_absolute, host_path};
use super::size::{format_size, parse_size};

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum VolumeSource {
    /// A host path, bind-mounted.
    Bind(String),
    /// A named volume under the state directory, created on first use.
    Named(String),
}

/// `src:dst[:ro|:rw]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Volume {
    pub source: VolumeSource,
    pub target: String,
    pub read_only: bool,
}

impl Volume {
    /// Parses a volume. An absolute source (or one starting with `./` or
    /// `../`, relative to `base`, as compose reads it) is a bind mount;
    /// anything else names a volume.
    pub fn parse(input: &str, base: &Path) -> Result<Volume, String> {
        let fields: Vec<&str> = input.split(':').collect();
        let (src, dst, mode) = match fields.as_slice() {
            [s, d] => (*s, *d, None),
            [s, d, m] => (*s, *d, Some(*m)),
            [_] => {
                return Err(format!(
                    "{input:?}: a volume needs a source and a target, like \"/srv/data:/data\" or \"cache:/var/cache\""
                ));
            }
            _ => return Err(format!("{input:?}: expected src:dst or src:dst:ro")),
        };
        let read_only = match mode {
            None | Some("rw") => false,
            Some("ro") => true,
            Some(m) => return Err(format!("{input:?}: unknown mode {m:?} (use \"ro\" or \"rw\")")),
        };
        let source = if src.starts_with('/') || src.starts_with("./") || src.starts_with("../") {
            VolumeSource::Bind(host_path(src, base).map_err(|e| format!("{input:?}: {e}"))?)
        } else {
            check_volume_name(src).map_err(|e| format!("{input:?}: {e}"))?;
            VolumeSource::Named(src.to_string())
        };
        let target = clean_absolute(dst).map_err(|e| format!("{input:?}: target {e}"))?;
        if target == "/" {
            return Err(format!("{input:?}: cannot mount over the container's root"));
        }
        Ok(Volume { source, target, read_only })
    }
}

impl fmt::Display for Volume {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let src = match &self.source {
            VolumeSource::Bind(p) | VolumeSource::Named(p) => p,
        };
        let mode = if self.read_only { "ro" } else { "rw" };
        write!(f, "{src}:{}:{mode}", self.target)
    }
}

/// `/path[:size=64M,mode=1777,noexec,...]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Tmpfs {
    pub target: String,
    pub size: Option<u64>,
    pub mode: Option<u32>,
    /// Flags among `ro rw exec noexec suid nosuid dev nodev`, sorted.
    pub flags: Vec<String>,
}

const TMPFS_FLAGS: [&str; 8] = ["ro", "rw", "exec", "noexec", "suid", "nosuid", "dev", "nodev"];

impl Tmpfs {
    pub fn parse(input: &str) -> Result<Tmpfs, String> {
        let (path, opts) = input.split_once(':').unwrap_or((input, ""));
        let target = clean_absolute(path).map_err(|e| format!("{input:?}: {e}"))?;
        if target == "/" {
            return Err(format!("{input:?}: cannot mount a tmpfs over the container's root"));
        }
        let mut t = Tmpfs { target, size: None, mode: None, flags: Vec::new() };
        for opt in opts.split(',').filter(|o| !o.is_empty()) {
            match opt.split_once('=') {
                Some(("size", v)) => t.size = Some(parse_size(v).map_err(|e| format!("{input:?}: {e}"))?),
                Some(("mode", v)) => {
                    let mode = u32::from_str_radix(v, 8)
                        .ok()
                        .filter(|m| *m <= 0o7777)
                        .ok_or_else(|| format!("{input:?}: mode {v:?} is not an octal mode like 1777"))?;
                    t.mode = Some(mode);
                }
                None if TMPFS_FLAGS.contains(&opt) => t.flags.push(opt.to_string()),
                _ => {
                    return Err(format!(
                        "{input:?}: unknown tmpfs option {opt:?} (use size=, mode=, ro, noexec, nosuid, nodev, ...)"
                    ));
                }
            }
        }
        t.flags.sort();
        t.flags.dedup();
        Ok(t)
    }
}

impl fmt::Display for Tmpfs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut opts: Vec<String> = Vec::new();
        if let Some(size) = self.size {
            opts.push(format!("size={}", format_size(size)));
        }
        if let Some(mode) = self.mode {
            opts.push(format!("mode={mode:o}"));
        }
        opts.extend(self.flags.iter().cloned());
        if opts.is_empty() { f.write_str(&self.target) } else { write!(f, "{}:{}", self.target, opts.join(",")) }
    }
}

/// `host_path[:container_path][:permissions]`, permissions a subset of `rwm`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Device {
    pub host: String,
    pub container: String,
    /// Canonical order: a subset of "rwm".
    pub permissions: String,
}

impl Device {
    pub fn parse(input: &str) -> Result<Device, String> {
        let fields: Vec<&str> = input.split(':').collect();
        let is_perms = |s: &str| !s.is_empty() && s.chars().all(|c| "rwm".contains(c));
        let (host, container, perms) = match fields.as_slice() {
            [h] => (*h, *h, "rwm"),
            [h, p] if is_perms(p) => (*h, *h, *p),
            [h, c] => (*h, *c, "rwm"),
            [h, c, p] => (*h, *c, *p),
            _ => return Err(format!("{input:?}: expected host_path[:container_path][:rwm]")),
        };
        if !is_perms(perms) {
            return Err(format!("{input:?}: permissions {perms:?} must be letters of \"rwm\""));
        }
        let host = clean_absolute(host).map_err(|e| format!("{input:?}: {e}"))?;
        let container = clean_absolute(container).map_err(|e| format!("{input:?}: {e}"))?;
        if !container.starts_with("/dev/") {
            return Err(format!("{input:?}: the container path must be under /dev"));
        }
        let permissions = "rwm".chars().filter(|c| perms.contains(*c)).collect();
        Ok(Device { host, container, permissions })
    }
}

impl fmt::Display for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.host, self.container, self.permissions)
    }
}

macro_rules! serialize_as_string {
    ($($t:ty),*) => {$(
        impl serde::Serialize for $t {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }
    )*};
}
serialize_as_string!(Volume, Tmpfs, Device);

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = "/etc/units.d";

    fn vol(s: &str) -> Result<Volume, String> {
        Volume::parse(s, Path::new(BASE))
    }

    #[test]
    fn volumes() {
        let v = vol("/srv/www:/usr/share/nginx/html:ro").unwrap();
        assert_eq!(v.source, VolumeSource::Bind("/srv/www".into()));
        assert!(v.read_only);
        let v = vol("web-cache:/var/cache/nginx").unwrap();
        assert_eq!(v.source, VolumeSource::Named("web-cache".into()));
        assert!(!v.read_only);
        assert_eq!(vol("./data:/data:rw").unwrap().to_string(), "/etc/units.d/data:/data:rw");
        assert_eq!(vol("/a/:/b/./c/").unwrap().to_string(), "/a:/b/c:rw");
    }

    #[test]
    fn bad_volumes() {
        for bad in ["/data", "a:b", "/a:/b:rx", "/a:/", "bad name:/x", "/a:/b:ro:x", "x/y:/z"] {
            assert!(vol(bad).is_err(), "{bad:?} accepted");
        }
        assert!(vol("/data").unwrap_err().contains("needs a source and a target"));
    }

    #[test]
    fn tmpfs() {
        assert_eq!(Tmpfs::parse("/run").unwrap().to_string(), "/run");
        let t = Tmpfs::parse("/tmp:size=64M,mode=1777,noexec").unwrap();
        assert_eq!(t.size, Some(64 << 20));
        assert_eq!(t.mode, Some(0o1777));
        assert_eq!(t.to_string(), "/tmp:size=64M,mode=1777,noexec");
        for bad in ["tmp", "/", "/t:size=big", "/t:mode=999", "/t:bogus"] {
            assert!(Tmpfs::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn devices() {
        assert_eq!(Device::parse("/dev/fuse").unwrap().to_string(), "/dev/fuse:/dev/fuse:rwm");
        assert_eq!(Device::parse("/dev/sda:r").unwrap().to_string(), "/dev/sda:/dev/sda:r");
        assert_eq!(Device::parse("/dev/sda:/dev/xvda:mr").unwrap().to_string(), "/dev/sda:/dev/xvda:rm");
        for bad in ["dev/fuse", "/dev/a:/dev/b:x", "/dev/a:/etc/b", "/dev/a:/dev/b:r:w"] {
            assert!(Device::parse(bad).is_err(), "{bad:?} accepted");
        }
    }
}
