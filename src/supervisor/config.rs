//! The global configuration file (`/etc/supervisor/supervisord.toml`).
//! Every key is optional; command-line flags override it. A missing file
//! at the default path means the defaults; a missing file named by
//! `--config`, an unknown key or a bad value is an error naming the file,
//! line and key.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::runtime::cgroups::{self, CgroupError, Manager};

/// How often units with `auto = "registry"` look for a new image, unless
/// the file says otherwise.
pub const DEFAULT_AUTO_UPDATE_INTERVAL: Duration = Duration::from_secs(3600);

/// The run directory of the host's supervisor.
pub const DEFAULT_RUN_DIR: &str = "/run/supervisor";

const CGROUP_SUBTREE: &str = "supervisor";

/// Where the containers of the supervisor (or `run-unit`) whose run
/// directory is `run_dir` get their cgroups: `supervisor/<unit>`, one level
/// deeper for any run directory but the default (see
/// [`crate::runtime::cgroups::instance`]).
pub fn cgroups_for(run_dir: &Path) -> Result<Manager, CgroupError> {
    Manager::for_host(CGROUP_SUBTREE, cgroup_instance(run_dir).as_deref())
}

/// After the supervisor of `run_dir` died and its leftovers are cleaned
/// up: the directory of its cgroups, if it had one of its own and it is
/// empty (from the cgroup the supervisor ran in).
pub fn remove_cgroup_instance(run_dir: &Path) {
    if let Some(instance) = cgroup_instance(run_dir) {
        cgroups::remove_empty_instance(CGROUP_SUBTREE, &instance);
    }
}

/// The directory of its own under `supervisor/` that the containers of
/// `run_dir` get; none for the default run directory.
pub fn cgroup_instance(run_dir: &Path) -> Option<String> {
    cgroups::instance(run_dir, Path::new(DEFAULT_RUN_DIR))
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Directory of unit files.
    pub units: Option<PathBuf>,
    /// Images, volumes and container layers.
    pub state_dir: Option<PathBuf>,
    /// Control socket and runtime state.
    pub run_dir: Option<PathBuf>,
    /// Unit logs.
    pub log_dir: Option<PathBuf>,
    /// Registries (HOST[:PORT]) reached over plain HTTP.
    #[serde(default)]
    pub insecure_registries: Vec<String>,
    /// Registry credentials (auth.json).
    pub authfile: Option<PathBuf>,
    /// How long a registry transfer may go without receiving a byte
    /// before it fails (and is retried) [default: 30s].
    #[serde(default, deserialize_with = "duration")]
    pub registry_timeout: Option<std::time::Duration>,
    /// Most bytes of file content one image may unpack to [default: 32G].
    #[serde(default, deserialize_with = "size")]
    pub max_image_size: Option<u64>,
    /// How often units with `[update] auto = "registry"` compare their tag
    /// in the registry with the image they run; `None` (`"0s"` in the file)
    /// turns the timer off, leaving `supervisorctl update`. An `Option`
    /// rather than a zero, so no caller can arm a timer of zero.
    #[serde(default = "default_auto_update_interval", deserialize_with = "interval_or_off")]
    pub auto_update_interval: Option<Duration>,
    /// A group (name or number) whose members may use the control socket
    /// (mode 0660); without it the socket is root's alone (0600).
    pub socket_group: Option<String>,
    /// A group (name or number) whose members may read the unit logs:
    /// the log directory is then 0750 and the logs 0640 with this group
    /// (Debian's `adm` is the usual one); without it they are root's alone.
    pub log_group: Option<String>,
    /// The bridge network (used by the network code).
    #[serde(default)]
    pub network: Network,
    /// Kernel modules to load at start (with their dependencies, from
    /// `/lib/modules/<release>/modules.dep`): what an appliance's bare
    /// kernel needs for containers.
    #[serde(default)]
    pub modules: Vec<String>,
    /// A virtio-serial port (by name) to serve the control protocol on:
    /// the appliance's control path from outside the VM.
    pub control_port: Option<String>,
    /// The host's own network interface, for an appliance with no one else
    /// to configure it.
    pub uplink: Option<Uplink>,
    /// Where to serve Prometheus metrics (`ADDRESS:PORT`); none: nowhere.
    #[serde(default, deserialize_with = "listen_address")]
    pub metrics: Option<std::net::SocketAddr>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            units: None,
            state_dir: None,
            run_dir: None,
            log_dir: None,
            insecure_registries: Vec::new(),
            authfile: None,
            registry_timeout: None,
            max_image_size: None,
            auto_update_interval: default_auto_update_interval(),
            socket_group: None,
            log_group: None,
            network: Network::default(),
            modules: Vec::new(),
            control_port: None,
            uplink: None,
            metrics: None,
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Uplink {
    /// The interface [default: the first ethernet interface].
    pub interface: Option<String>,
    /// `ADDRESS/PREFIX`.
    pub address: String,
    pub gateway: Option<std::net::Ipv4Addr>,
}

/// What is wrong with the configuration file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}:{line}:{column}: {message}", path.display())]
    Parse { path: PathBuf, line: usize, column: usize, message: String },
    #[error("uplink.address: {0:?} is not ADDRESS/PREFIX (like 10.0.2.15/24)")]
    UplinkAddress(String),
    #[error("socket_group: no group named {0:?}")]
    NoGroup(String),
    #[error("log_group: no group named {0:?}")]
    NoLogGroup(String),
}

impl Uplink {
    /// The address and prefix length.
    pub fn address(&self) -> Result<(std::net::Ipv4Addr, u8), ConfigError> {
        let bad = || ConfigError::UplinkAddress(self.address.clone());
        let (a, p) = self.address.split_once('/').ok_or_else(bad)?;
        let prefix: u8 = p.parse().ok().filter(|p| *p <= 32).ok_or_else(bad)?;
        Ok((a.parse().map_err(|_| bad())?, prefix))
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Network {
    pub bridge: Option<String>,
    pub subnet: Option<String>,
}

impl Config {
    /// Reads `path`; `explicit` when the operator named it.
    pub fn load(path: &Path, explicit: bool) -> Result<Config, ConfigError> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => return Ok(Config::default()),
            Err(source) => return Err(ConfigError::Read { path: path.to_path_buf(), source }),
        };
        toml::from_str(&text).map_err(|e| {
            let (line, column) = e.span().map_or((0, 0), |s| line_col(&text, s.start));
            ConfigError::Parse { path: path.to_path_buf(), line, column, message: e.message().to_string() }
        })
    }

    /// The socket group's id.
    pub fn socket_gid(&self) -> Result<Option<u32>, ConfigError> {
        let Some(g) = &self.socket_group else { return Ok(None) };
        gid(g).ok_or_else(|| ConfigError::NoGroup(g.clone())).map(Some)
    }

    /// The log group's id.
    pub fn log_gid(&self) -> Result<Option<u32>, ConfigError> {
        let Some(g) = &self.log_group else { return Ok(None) };
        gid(g).ok_or_else(|| ConfigError::NoLogGroup(g.clone())).map(Some)
    }
}

/// A group's id from its number or name.
fn gid(g: &str) -> Option<u32> {
    if let Ok(n) = g.parse::<u32>() {
        return Some(n);
    }
    match nix::unistd::Group::from_name(g) {
        Ok(Some(group)) => Some(group.gid.as_raw()),
        _ => None,
    }
}

fn duration<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<std::time::Duration>, D::Error> {
    let text = String::deserialize(d)?;
    let value = crate::units::values::duration::parse_duration(&text).map_err(serde::de::Error::custom)?;
    if value.is_zero() {
        return Err(serde::de::Error::custom("must be more than zero"));
    }
    Ok(Some(value))
}

fn default_auto_update_interval() -> Option<Duration> {
    Some(DEFAULT_AUTO_UPDATE_INTERVAL)
}

/// A duration where `"0s"` means off (`None`).
fn interval_or_off<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    let text = String::deserialize(d)?;
    let value = crate::units::values::duration::parse_duration(&text).map_err(serde::de::Error::custom)?;
    Ok((!value.is_zero()).then_some(value))
}

/// `ADDRESS:PORT` to listen on (`127.0.0.1:9101`, `[::1]:9101`): an IP
/// address, not a name (nothing is resolved at start), and a port.
fn listen_address<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<std::net::SocketAddr>, D::Error> {
    let text = String::deserialize(d)?;
    let addr: std::net::SocketAddr = text.parse().map_err(|_| {
        serde::de::Error::custom(format!(
            "{text:?} is not ADDRESS:PORT with an IP address (like \"127.0.0.1:9101\" or \"[::1]:9101\")"
        ))
    })?;
    if addr.port() == 0 {
        return Err(serde::de::Error::custom(format!("{text:?}: port 0 is no port a scraper can be told")));
    }
    Ok(Some(addr))
}

fn size<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    let text = String::deserialize(d)?;
    let value = crate::units::values::size::parse_size(&text).map_err(serde::de::Error::custom)?;
    if value == 0 {
        return Err(serde::de::Error::custom("must be more than zero"));
    }
    Ok(Some(value))
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_keys_are_named_with_their_line() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s.toml");
        std::fs::write(&p, "units = \"/u\"\ninsecure_registry = [\"x\"]\n").unwrap();
        let e = Config::load(&p, true).unwrap_err().to_string();
        assert!(e.contains("s.toml:2:1") && e.contains("insecure_registry"), "{e}");
        std::fs::write(&p, "units = \"/u\"\ninsecure_registries = [\"h:5000\"]\n[network]\nsubnet = \"10.1.0.0/16\"\n")
            .unwrap();
        let c = Config::load(&p, true).unwrap();
        assert_eq!(c.units.as_deref(), Some(Path::new("/u")));
        assert_eq!(c.insecure_registries, ["h:5000"]);
        assert!(Config::load(&dir.path().join("none.toml"), false).is_ok());
        std::fs::write(&p, "modules = [\"overlay\"]\ncontrol_port = \"ctl\"\n[uplink]\naddress = \"10.0.2.15/24\"\ngateway = \"10.0.2.2\"\n").unwrap();
        let c = Config::load(&p, true).unwrap();
        let up = c.uplink.unwrap();
        assert_eq!(up.address().unwrap(), ("10.0.2.15".parse().unwrap(), 24));
        assert_eq!(up.gateway, Some("10.0.2.2".parse().unwrap()));
        assert_eq!(c.modules, ["overlay"]);
        assert_eq!(
            Uplink { address: "10.0.2.15".into(), ..Uplink::default() }.address().unwrap_err().to_string(),
            "uplink.address: \"10.0.2.15\" is not ADDRESS/PREFIX (like 10.0.2.15/24)"
        );
        std::fs::write(&p, "[uplink]\naddress = \"10.0.2.15/24\"\ngateway = \"10.0.2\"\n").unwrap();
        assert!(Config::load(&p, true).unwrap_err().to_string().contains("s.toml:3:11"));
        let err = Config::load(&dir.path().join("none.toml"), true).unwrap_err().to_string();
        assert!(err.contains("none.toml: No such file or directory"), "{err}");
    }

    #[test]
    fn metrics_is_an_address_and_port() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s.toml");
        assert_eq!(Config::default().metrics, None);
        std::fs::write(&p, "units = \"/u\"\n").unwrap();
        assert_eq!(Config::load(&p, true).unwrap().metrics, None);
        std::fs::write(&p, "metrics = \"127.0.0.1:9101\"\n").unwrap();
        assert_eq!(Config::load(&p, true).unwrap().metrics, Some("127.0.0.1:9101".parse().unwrap()));
        std::fs::write(&p, "metrics = \"[::1]:9101\"\n").unwrap();
        assert_eq!(Config::load(&p, true).unwrap().metrics, Some("[::1]:9101".parse().unwrap()));
        for (text, expected) in [
            (
                "\nmetrics = \"localhost:9101\"\n",
                "s.toml:2:11: \"localhost:9101\" is not ADDRESS:PORT with an IP address (like \"127.0.0.1:9101\" or \"[::1]:9101\")",
            ),
            ("metrics = \"127.0.0.1\"\n", "s.toml:1:11: \"127.0.0.1\" is not ADDRESS:PORT"),
            ("metrics = \"127.0.0.1:0\"\n", "s.toml:1:11: \"127.0.0.1:0\": port 0 is no port a scraper can be told"),
            ("metrics = 9101\n", "s.toml:1:11: invalid type: integer `9101`, expected a string"),
        ] {
            std::fs::write(&p, text).unwrap();
            let e = Config::load(&p, true).unwrap_err().to_string();
            assert!(e.contains(expected), "{e}");
        }
    }

    #[test]
    fn log_group_by_name_or_number() {
        let group = |g: &str| Config { log_group: Some(g.into()), ..Config::default() }.log_gid();
        assert_eq!(group("root").unwrap(), Some(0));
        assert_eq!(group("4").unwrap(), Some(4));
        let e = group("no-such-group-here").unwrap_err().to_string();
        assert_eq!(e, "log_group: no group named \"no-such-group-here\"");
        assert_eq!(Config::default().log_gid().unwrap(), None);
    }

    #[test]
    fn image_limits_and_registry_timeout() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s.toml");
        std::fs::write(&p, "registry_timeout = \"2s\"\nmax_image_size = \"1G\"\n").unwrap();
        let c = Config::load(&p, true).unwrap();
        assert_eq!(c.registry_timeout, Some(std::time::Duration::from_secs(2)));
        assert_eq!(c.max_image_size, Some(1 << 30));
        let defaults = Config::load(&dir.path().join("none.toml"), false).unwrap();
        assert_eq!((defaults.registry_timeout, defaults.max_image_size), (None, None));
        for (text, key_line) in [
            ("\nregistry_timeout = \"30\"\n", "s.toml:2:"),
            ("max_image_size = \"lots\"\n", "s.toml:1:"),
            ("registry_timeout = \"0s\"\n", "s.toml:1:"),
        ] {
            std::fs::write(&p, text).unwrap();
            let e = Config::load(&p, true).unwrap_err().to_string();
            assert!(e.contains(key_line), "{e}");
        }
    }

    #[test]
    fn auto_update_interval_defaults_to_an_hour_and_0s_turns_it_off() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s.toml");
        let hour = Some(Duration::from_secs(3600));
        assert_eq!(Config::load(&dir.path().join("none.toml"), false).unwrap().auto_update_interval, hour);
        assert_eq!(Config::default().auto_update_interval, hour);
        std::fs::write(&p, "units = \"/u\"\n").unwrap();
        assert_eq!(Config::load(&p, true).unwrap().auto_update_interval, hour);
        std::fs::write(&p, "auto_update_interval = \"15m\"\n").unwrap();
        assert_eq!(Config::load(&p, true).unwrap().auto_update_interval, Some(Duration::from_secs(900)));
        std::fs::write(&p, "auto_update_interval = \"0s\"\n").unwrap();
        assert_eq!(Config::load(&p, true).unwrap().auto_update_interval, None);
        for (text, expected) in [
            ("\nauto_update_interval = \"60\"\n", "s.toml:2:24: \"60\" has no unit: write \"60s\" for seconds"),
            ("auto_update_interval = 3600\n", "s.toml:1:24: invalid type: integer `3600`, expected a string"),
            ("auto_update_intervall = \"1h\"\n", "s.toml:1:1: unknown field `auto_update_intervall`"),
        ] {
            std::fs::write(&p, text).unwrap();
            let e = Config::load(&p, true).unwrap_err().to_string();
            assert!(e.contains(expected), "{e}");
        }
    }
}
