//! The image configuration: what the runtime and the supervisor need to run
//! an image (Entrypoint, Cmd, Env, ...), Docker's Healthcheck included.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::digest::Digest;
use super::error::{ImageError, Result};

/// The parts of an image config we use, as stored in the config blob.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ImageConfig {
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub os: String,
    #[serde(default)]
    pub config: RunConfig,
    pub rootfs: RootFs,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RootFs {
    #[serde(rename = "type", default)]
    pub kind: String,
    pub diff_ids: Vec<Digest>,
}

/// The `config` object: defaults for running the image.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RunConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exposed_ports: Option<BTreeMap<String, serde_json::Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cmd: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volumes: Option<BTreeMap<String, serde_json::Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_signal: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthcheck: Option<Healthcheck>,
}

/// Docker's HEALTHCHECK, as its config records it (durations in ns).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Healthcheck {
    #[serde(default)]
    pub test: Vec<String>,
    #[serde(default)]
    pub interval: u64,
    #[serde(default)]
    pub timeout: u64,
    #[serde(default)]
    pub start_period: u64,
    /// Docker 25's `--health-start-interval`.
    #[serde(default)]
    pub start_interval: u64,
    #[serde(default)]
    pub retries: u32,
}

/// A health check test, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HealthTest {
    /// `["NONE"]`: the image disables health checks.
    None,
    /// `["CMD", args...]`.
    Exec(Vec<String>),
    /// `["CMD-SHELL", command]`: run with `/bin/sh -c`.
    Shell(String),
}

impl Healthcheck {
    pub fn test(&self) -> Option<HealthTest> {
        match self.test.split_first() {
            Some((k, _)) if k == "NONE" => Some(HealthTest::None),
            Some((k, args)) if k == "CMD" && !args.is_empty() => Some(HealthTest::Exec(args.to_vec())),
            Some((k, [cmd])) if k == "CMD-SHELL" => Some(HealthTest::Shell(cmd.clone())),
            _ => None,
        }
    }

    /// A zero duration means "Docker's default" in the image config.
    pub fn interval(&self) -> Option<Duration> {
        (self.interval > 0).then(|| Duration::from_nanos(self.interval))
    }
    pub fn timeout(&self) -> Option<Duration> {
        (self.timeout > 0).then(|| Duration::from_nanos(self.timeout))
    }
    pub fn start_period(&self) -> Option<Duration> {
        (self.start_period > 0).then(|| Duration::from_nanos(self.start_period))
    }
    pub fn start_interval(&self) -> Option<Duration> {
        (self.start_interval > 0).then(|| Duration::from_nanos(self.start_interval))
    }
}

impl ImageConfig {
    pub fn parse(bytes: &[u8]) -> Result<ImageConfig> {
        serde_json::from_slice(bytes).map_err(|e| ImageError::Invalid(format!("malformed image config: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_config_with_healthcheck() {
        let raw = br#"{"architecture":"amd64","os":"linux","config":{"Env":["PATH=/bin"],"Cmd":["sh"],
            "ExposedPorts":{"80/tcp":{}},"StopSignal":"SIGQUIT","Healthcheck":{"Test":["CMD-SHELL","wget -q localhost"],
            "Interval":5000000000,"Retries":2}},"rootfs":{"type":"layers","diff_ids":[
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"]}}"#;
        let c = ImageConfig::parse(raw).unwrap();
        assert_eq!(c.config.cmd.as_deref(), Some(&["sh".to_string()][..]));
        assert_eq!(c.config.stop_signal.as_deref(), Some("SIGQUIT"));
        let h = c.config.healthcheck.unwrap();
        assert_eq!(h.test(), Some(HealthTest::Shell("wget -q localhost".into())));
        assert_eq!(h.interval(), Some(Duration::from_secs(5)));
        assert_eq!(h.timeout(), None);
        assert_eq!(c.rootfs.diff_ids.len(), 1);
    }
}
