//! The engine's seam to the world: containers, probes and the cgroup
//! files, behind one small trait. [`Real`] is the runtime; tests pass a
//! fake of their own to drive the loop without root.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;
use tokio::task::AbortHandle;

use super::wire::{Event, FreezeError};
use crate::runtime::cgroups::Cgroup;
use crate::supervisor::policy::{Join, ProbeLoop};
use crate::units::LoadedUnit;

pub type Events = mpsc::UnboundedSender<Event>;

/// What the engine needs done. Every call is quick: anything slow (a
/// pull, a spawn, a probe) runs in a task of its own and reports back as
/// an [`Event`] on `events`.
pub trait Backend: Send + 'static {
    /// Creates the container of `unit`; reports [`Event::Phase`], then
    /// [`Event::Started`], then [`Event::Exited`] once nothing of it is
    /// left (or [`Event::Started`] with the error).
    fn start(&mut self, name: &str, generation: u64, start: Start, events: &Events);
    /// Moves the unit's traffic from its container of `from` to the one
    /// of `to` (started beside it); reports [`Event::Switched`].
    fn switch(&mut self, name: &str, from: u64, to: u64, events: &Events);
    /// Sends a signal to the container's first process.
    fn signal(&mut self, name: &str, pid: i32, signal: i32) -> std::io::Result<()>;
    /// SIGKILL to every process of the container.
    fn kill_all(&mut self, name: &str, generation: u64);
    /// Freezes every process of the container; reports
    /// [`Event::Frozen`]. Off the loop: the freeze is done once every
    /// process has stopped, which a process stuck in the kernel (a dead
    /// NFS server, a slow disk) delays up to the freezer's timeout.
    fn freeze(&mut self, name: &str, generation: u64, events: &Events);
    /// Thaws every process of the container (one cgroup write).
    fn thaw(&mut self, name: &str, generation: u64) -> Result<(), FreezeError>;
    /// Ends the tasks that live beside the container (probe loop, notify
    /// listener).
    fn end_tasks(&mut self, name: &str, generation: u64);
    /// Replaces the container's probe loop (none: no loop); results come
    /// as [`Event::Probe`].
    fn probe(&mut self, name: &str, generation: u64, probe: Option<ProbeLoop>, events: &Events);
    /// Applies a changed config to the running container: log limits,
    /// and `[resources]` when `resources`.
    fn update(&mut self, name: &str, generation: u64, unit: &LoadedUnit, resources: bool);
    /// The container's cgroup and its usage, for `inspect`.
    fn inspect(&self, name: &str, generation: u64) -> serde_json::Value;
    /// The container's cgroup (none before it is made), for the metrics,
    /// which read it off the engine.
    fn cgroup(&self, name: &str, generation: u64) -> Option<Cgroup>;
    /// Lines of the unit's output that its log could not take (a full
    /// log file system), since the daemon started.
    fn dropped_lines(&self, name: &str) -> u64;
}

/// A container to start.
pub struct Start {
    pub unit: LoadedUnit,
    /// The container whose network it joins.
    pub join: Option<Join>,
    /// The image ID to run; none: the unit's reference, by its pull policy.
    pub image: Option<String>,
    /// A start-first update's new container, beside the serving one.
    pub beside: bool,
}

/// What lives as long as one container, by unit name and generation.
#[derive(Default)]
pub(super) struct Live {
    pub generation: u64,
    /// Its runtime name: the unit's, or an instance's (a start-first
    /// update's second container).
    pub runtime_name: String,
    pub cgroup: Option<Cgroup>,
    pub log_limits: Option<Arc<super::super::logs::Limits>>,
    pub probe: Option<AbortHandle>,
    /// Tasks that end with the container (the notify listener).
    pub tasks: Vec<AbortHandle>,
}

impl Live {
    pub fn end_tasks(&mut self) {
        for t in self.probe.take().into_iter().chain(self.tasks.drain(..)) {
            t.abort();
        }
    }
}

/// The containers' live parts, shared with their tasks.
#[derive(Clone, Default)]
/// A unit may have two containers at once (a start-first update), so
/// they go by name and generation.
pub(super) struct LiveSet(Arc<Mutex<HashMap<(String, u64), Live>>>);

impl LiveSet {
    /// Runs `f` on the live parts of `name`'s container of `generation`.
    pub fn with<T>(&self, name: &str, generation: u64, f: impl FnOnce(&mut Live) -> T) -> Option<T> {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        map.get_mut(&(name.to_string(), generation)).map(f)
    }

    pub fn insert(&self, name: &str, live: Live) {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(mut old) = map.insert((name.to_string(), live.generation), live) {
            old.end_tasks();
        }
    }

    /// Forgets `name`'s container of `generation`, ending its tasks.
    pub fn remove(&self, name: &str, generation: u64) {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(mut live) = map.remove(&(name.to_string(), generation)) {
            live.end_tasks();
        }
    }
}
