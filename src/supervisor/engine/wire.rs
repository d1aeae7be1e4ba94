//! What reaches the engine, on its one channel: events from the watcher,
//! the containers, the probes and the timers, and operator commands with
//! where their answers go.

use std::collections::BTreeMap;

use tokio::sync::oneshot;

use super::super::policy::lifecycle::{ExitInfo, State};
use super::super::policy::reload::Step;
use super::super::policy::status::UnitStatus;
use super::super::policy::update::UpdateError;
use super::super::policy::{Op, OpError, StartOutcome, Timer};
use super::super::unit_files::{Edit, EditError};
use crate::health::ProbeResult;

pub enum Event {
    /// Read the unit directory again (a settled file event, SIGHUP).
    Rescan,
    /// A health probe's result.
    Probe {
        name: String,
        generation: u64,
        result: ProbeResult,
    },
    /// A message on a notify unit's socket.
    Notify {
        name: String,
        generation: u64,
        ready: bool,
        status: Option<String>,
    },
    /// A timer the core asked for has fired.
    Timer(Timer),
    /// A start reached a new phase.
    Phase {
        name: String,
        generation: u64,
        phase: StartPhase,
    },
    /// A start ended: the container runs, or the error.
    Started {
        name: String,
        generation: u64,
        outcome: StartOutcome,
    },
    /// A freeze asked by `pause` is done (every process stopped), or
    /// failed.
    Frozen {
        name: String,
        generation: u64,
        result: Result<(), FreezeError>,
    },
    /// A container ended, and nothing of it is left.
    Exited {
        name: String,
        generation: u64,
        exit: ExitInfo,
    },
    /// A unit's traffic moved to its container of `to` (how long it
    /// took), or could not.
    Switched {
        name: String,
        to: u64,
        result: Result<super::super::policy::Moved, String>,
    },
    Command(Command),
    /// Stop every unit in reverse order; the sender hears when all are.
    Shutdown(oneshot::Sender<()>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartPhase {
    Pulling,
    Starting,
}

/// Why the unit directory could not be read.
#[derive(Debug, thiserror::Error)]
#[error("{}: {source}", dir.display())]
pub struct ReloadError {
    pub dir: std::path::PathBuf,
    #[source]
    pub source: std::io::Error,
}

/// What an operator asks, with where the answer goes.
pub enum Command {
    Status(oneshot::Sender<Vec<UnitStatus>>),
    Inspect(String, oneshot::Sender<Option<serde_json::Value>>),
    /// Start, stop or restart units; the answer is each unit's generation
    /// (a restart waits for a newer one) or the first unknown name.
    Op(Op, Vec<String>, oneshot::Sender<Result<Vec<(String, u64)>, OpError>>),
    Kill(String, i32, oneshot::Sender<Result<(), KillError>>),
    /// `pause` (true) or `unpause` (false) a unit: its container frozen or
    /// thawed before the answer.
    Pause(String, bool, oneshot::Sender<Result<(), PauseError>>),
    Reload(bool, oneshot::Sender<Result<BTreeMap<String, Step>, ReloadError>>),
    /// `apply` and `remove`: unit files written into (or removed from) the
    /// unit directory once checked, then reloaded as any edit; or, with
    /// `dry_run`, only the plan.
    Edit(Edit, oneshot::Sender<Result<BTreeMap<String, Step>, EditError>>),
    /// `cat`: a unit's file as the daemon reads it now.
    UnitFile(String, oneshot::Sender<Result<Option<String>, EditError>>),
    /// Names of the named volumes each unit uses.
    Volumes(oneshot::Sender<BTreeMap<String, Vec<String>>>),
    /// A unit's log directory record limits (for `logs`).
    LogFiles(String, oneshot::Sender<Option<u32>>),
    /// How many units are in each state (systemd's STATUS= line).
    Counts(oneshot::Sender<BTreeMap<State, usize>>),
    /// `rollback`: back to the unit's previous good config and image.
    Rollback(String, oneshot::Sender<Result<Rolled, UpdateError>>),
    /// A new image (by ID, in the store already) for a unit that follows
    /// its tag.
    RollImage(String, String, oneshot::Sender<Result<Rolled, UpdateError>>),
    /// What image auto-update needs to know of every unit.
    UpdateTargets(oneshot::Sender<Vec<UpdateTarget>>),
    /// Every unit as the metrics show it; its cgroup and network figures
    /// are read by the asker, off the engine.
    Sample(oneshot::Sender<Vec<UnitSample>>),
}

/// One unit for the metrics, from its record: no file is read for it.
#[derive(Debug, Clone)]
pub struct UnitSample {
    pub name: String,
    pub state: State,
    /// None: no probe (or no running container).
    pub health: Option<crate::health::Health>,
    pub restarts: u32,
    /// The last exit's code, or 128 + the signal that ended it (as a
    /// shell reports it); none before the first exit or after a failed
    /// start.
    pub last_exit_code: Option<i32>,
    pub oom_kills: u64,
    /// When the running container started.
    pub started_at: Option<std::time::SystemTime>,
    pub update_state: Option<super::super::policy::update::UpdateState>,
    /// The container's cgroup, from its creation to its removal.
    pub cgroup: Option<crate::runtime::cgroups::Cgroup>,
    /// The running container's first process, whose network namespace
    /// is the unit's own (none on the host's network: its counters would
    /// be the host's).
    pub netns_pid: Option<i32>,
}

/// What a rollback or a new image did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rolled {
    /// False: nothing to do (it runs that image, or that image failed its
    /// trial before).
    pub changed: bool,
    /// A trial began: its outcome comes as an update event. Otherwise the
    /// unit did not run, and takes the change at its next start.
    pub trial: bool,
}

/// One unit as image auto-update sees it.
#[derive(Debug, Clone)]
pub struct UpdateTarget {
    pub name: String,
    /// None: its unit file is invalid.
    pub image: Option<crate::units::values::reference::ImageSource>,
    /// `auto = "registry"`.
    pub auto: bool,
    /// The image ID it runs (or its next start runs).
    pub image_id: Option<String>,
    /// An image of its tag whose update failed and was rolled back: not
    /// tried again.
    pub rejected: Option<String>,
    pub in_progress: bool,
}

/// Why a container could not be frozen or thawed.
#[derive(Debug, thiserror::Error)]
pub enum FreezeError {
    #[error("{0}: its container has no cgroup (yet)")]
    NoCgroup(String),
    #[error("{name}: {source}")]
    Cgroup {
        name: String,
        #[source]
        source: crate::runtime::cgroups::CgroupError,
    },
}

/// Why `pause` or `unpause` failed. Cloned: one freeze answers every
/// `pause` of the unit that came while it was under way.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PauseError {
    #[error(transparent)]
    Unit(#[from] OpError),
    #[error(transparent)]
    Freeze(std::sync::Arc<FreezeError>),
}

impl From<FreezeError> for PauseError {
    fn from(e: FreezeError) -> Self {
        PauseError::Freeze(std::sync::Arc::new(e))
    }
}

/// Why `kill` failed.
#[derive(Debug, thiserror::Error)]
pub enum KillError {
    #[error(transparent)]
    Unit(#[from] OpError),
    #[error("{name}: {errno}")]
    Signal { name: String, errno: std::io::Error },
}
