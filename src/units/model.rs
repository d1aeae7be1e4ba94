//! The normalized unit: desired state as pure data, every default applied
//! and every value in its canonical form, so that two files that mean the
//! same thing produce equal values (and equal hashes).

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

use super::values::duration::format_duration;
use super::values::limits::Ulimit;
use super::values::mounts::{Device, Tmpfs, Volume};
use super::values::port::PortMapping;
use super::values::reference::ImageSource;
use super::values::signal::Signal;

/// One unit file, validated and normalized.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Unit {
    /// The file stem: a DNS label.
    pub name: String,
    pub unit: UnitSection,
    pub container: Container,
    pub resources: Resources,
    pub restart: Restart,
    pub stop: Stop,
    pub health: Health,
    pub logs: Logs,
    pub update: UpdatePolicy,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UnitSection {
    pub description: Option<String>,
    /// Start after these units; stop before them.
    pub after: Vec<String>,
    /// These must be running (or healthy, with a health check) first. They
    /// are start-ordered too: `requires` implies `after`.
    pub requires: Vec<String>,
    #[serde(serialize_with = "dur")]
    pub ready_timeout: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PullPolicy {
    Missing,
    Always,
    Never,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Network {
    Bridge,
    Host,
    None,
    /// Join another unit's network namespace.
    Unit(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Seccomp {
    Default,
    Unconfined,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Container {
    pub image: ImageSource,
    pub pull: PullPolicy,
    /// `None`: the image's Entrypoint. `Some([])` clears it.
    pub entrypoint: Option<Vec<String>>,
    /// `None`: the image's Cmd.
    pub command: Option<Vec<String>>,
    /// Variables of the unit file itself; they override `env_file`'s.
    pub env: BTreeMap<String, String>,
    pub env_file: Option<String>,
    /// The contents of `env_file` as read at load time.
    pub env_file_vars: BTreeMap<String, String>,
    pub workdir: Option<String>,
    pub user: Option<String>,
    /// Defaults to the unit name.
    pub hostname: String,
    pub read_only: bool,
    pub ports: Vec<PortMapping>,
    pub volumes: Vec<Volume>,
    pub tmpfs: Vec<Tmpfs>,
    pub network: Network,
    pub aliases: Vec<String>,
    pub cap_add: Vec<String>,
    pub cap_drop: Vec<String>,
    pub no_new_privileges: bool,
    pub seccomp: Seccomp,
    pub privileged: bool,
    pub devices: Vec<Device>,
    pub sysctls: BTreeMap<String, String>,
    pub ulimits: BTreeMap<String, Ulimit>,
    pub notify: bool,
}

impl Container {
    /// The environment the unit asks for: `env_file` first, `env` over it,
    /// as `docker run --env-file f -e K=V` merges them.
    pub fn environment(&self) -> BTreeMap<String, String> {
        let mut all = self.env_file_vars.clone();
        all.extend(self.env.iter().map(|(k, v)| (k.clone(), v.clone())));
        all
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Resources {
    /// CPU quota in billionths of a CPU, as Docker's NanoCpus.
    #[serde(rename = "cpus", serialize_with = "nano_cpus")]
    pub nano_cpus: Option<u64>,
    /// Hard memory limit in bytes.
    pub memory: Option<u64>,
    pub pids: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RestartPolicy {
    No,
    OnFailure,
    Always,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Restart {
    pub policy: RestartPolicy,
    #[serde(serialize_with = "dur")]
    pub delay: Duration,
    #[serde(serialize_with = "dur")]
    pub max_delay: Duration,
    #[serde(serialize_with = "dur")]
    pub reset_after: Duration,
    /// 0: retry forever; N: `failed` after N failures in a row.
    pub limit: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Stop {
    /// `None`: the image's StopSignal, else SIGTERM.
    pub signal: Option<Signal>,
    #[serde(serialize_with = "dur")]
    pub timeout: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Probe {
    /// Run in the container; exit 0 is healthy. A string in the file becomes
    /// `["/bin/sh", "-c", string]`, as Docker's CMD-SHELL.
    Exec(Vec<String>),
    /// GET from inside the container's network namespace; 2xx/3xx healthy.
    Http(String),
    /// A TCP connect to this port of the container.
    Tcp(u16),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OnUnhealthy {
    Restart,
    Stop,
    None,
}

/// `[health]`. With a probe of the unit's own, every timing has its
/// (Docker) default. Without one, the image's HEALTHCHECK applies and the
/// timings given here override it (`None`: the image's value).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Health {
    pub probe: Option<Probe>,
    /// Turn off the image's HEALTHCHECK.
    pub disable: bool,
    #[serde(serialize_with = "opt_dur")]
    pub interval: Option<Duration>,
    #[serde(serialize_with = "opt_dur")]
    pub timeout: Option<Duration>,
    pub retries: Option<u32>,
    #[serde(serialize_with = "opt_dur")]
    pub start_period: Option<Duration>,
    /// Time between probes during the start period, until the first
    /// success; `None`: the interval. Left out of the JSON (and so of the
    /// hash) when not given.
    #[serde(serialize_with = "opt_dur", skip_serializing_if = "Option::is_none")]
    pub start_interval: Option<Duration>,
    /// Default `restart` for the unit's own probe, `none` for the image's.
    pub on_unhealthy: OnUnhealthy,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Logs {
    pub max_size: u64,
    pub max_files: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Strategy {
    /// Stop the old container, then start the new one.
    StopFirst,
    /// Start the new container beside the old one and move traffic once it
    /// is healthy.
    StartFirst,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AutoUpdate {
    Never,
    /// Follow the image's tag in its registry.
    Registry,
}

/// `[update]`: how a change that replaces the unit's container is rolled
/// out, and what proves it good (docs/updates.md).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UpdatePolicy {
    pub strategy: Strategy,
    /// From the new container's start until it is first running (healthy
    /// with a probe, ready with `notify`).
    #[serde(serialize_with = "dur")]
    pub healthy_within: Duration,
    /// From then on, how long it must stay so for the update to succeed.
    #[serde(serialize_with = "dur")]
    pub min_healthy: Duration,
    /// Go back to the last good config and image when an update fails.
    pub rollback: bool,
    pub auto: AutoUpdate,
}

impl Default for UpdatePolicy {
    fn default() -> Self {
        UpdatePolicy {
            strategy: Strategy::StopFirst,
            healthy_within: Duration::from_secs(60),
            min_healthy: Duration::from_secs(5),
            rollback: true,
            auto: AutoUpdate::Never,
        }
    }
}

impl serde::Serialize for Network {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Network::Bridge => s.serialize_str("bridge"),
            Network::Host => s.serialize_str("host"),
            Network::None => s.serialize_str("none"),
            Network::Unit(u) => s.collect_str(&format_args!("unit:{u}")),
        }
    }
}

fn dur<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format_duration(*d))
}

fn opt_dur<S: serde::Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => dur(d, s),
        None => s.serialize_none(),
    }
}

fn nano_cpus<S: serde::Serializer>(n: &Option<u64>, s: S) -> Result<S::Ok, S::Error> {
    match n {
        Some(n) => s.serialize_f64(*n as f64 / 1e9),
        None => s.serialize_none(),
    }
}
