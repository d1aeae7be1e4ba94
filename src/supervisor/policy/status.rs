//! What the core tells the world: a unit's status (for `status`) and its
//! changes of state (for `events` and for clients that wait).

use std::path::PathBuf;
use std::time::SystemTime;

use serde::Serialize;

use super::lifecycle::{State, opt_rfc3339, rfc3339};

/// One unit as `status` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct UnitStatus {
    pub name: String,
    pub state: State,
    #[serde(serialize_with = "rfc3339")]
    pub since: SystemTime,
    pub pid: Option<i32>,
    /// `starting`, `healthy`, `unhealthy`; null without a probe.
    pub health: Option<String>,
    /// The last `STATUS=` text of a notify unit.
    pub notify_status: Option<String>,
    pub restarts: u32,
    pub exit_code: Option<i32>,
    pub signal: Option<String>,
    pub oom_killed: bool,
    pub error: Option<String>,
    #[serde(serialize_with = "opt_rfc3339")]
    pub next_retry: Option<SystemTime>,
    /// Why it is in its state: what it waits for, how it last ended.
    pub reason: Option<String>,
    pub image: Option<String>,
    pub image_digest: Option<String>,
    /// The image ID (manifest digest) the running container uses, or the
    /// one its next start will use (a restart never changes image).
    pub image_id: Option<String>,
    /// The image a rollback would return to (kept by `prune`).
    pub previous_image_id: Option<String>,
    /// `in-progress` or `rolled-back`; null otherwise.
    pub update_state: Option<super::update::UpdateState>,
    /// Why the last update failed.
    pub update_error: Option<String>,
    /// Its address on the bridge network.
    pub address: Option<String>,
    /// Its published ports, `0.0.0.0:8080->80/tcp`.
    pub ports: Vec<String>,
    #[serde(serialize_with = "opt_rfc3339")]
    pub started_at: Option<SystemTime>,
    pub file: Option<PathBuf>,
    /// Held stopped by an operator until `start`.
    pub held: bool,
    /// The container generation (one more per start).
    pub generation: u64,
}

/// A change of state, for `events` and for clients that wait.
#[derive(Debug, Clone, Serialize)]
pub struct StateEvent {
    pub unit: String,
    pub old: State,
    pub new: State,
    pub reason: Option<String>,
    #[serde(serialize_with = "rfc3339")]
    pub time: SystemTime,
    pub generation: u64,
    /// The unit is gone (its file was removed).
    pub removed: bool,
    /// An update's step (`started`, `succeeded`, `rolled-back`, `failed`):
    /// the state is then unchanged.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub update: Option<String>,
}
