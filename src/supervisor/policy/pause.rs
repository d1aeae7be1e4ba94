//! `pause` and `unpause`: an operator's intent on a running container,
//! as `held` is on a stopped unit. A paused container is frozen (the
//! cgroup freezer: the engine does it between [`Core::to_pause`] and
//! [`Core::paused`], and answers the operator with its error if the
//! kernel refuses). While paused:
//!
//! - its state is `paused`; its probe loop is ended, and a result that
//!   was on its way is not counted, so its health stays what it was;
//! - nothing of the restart policy acts on it: a probe cannot fail it,
//!   and if it is killed while frozen (from outside) it stays `exited`;
//! - every stop (an operator's `stop` or `restart`, a removed file, a
//!   changed `[container]`, a dependency going down, shutdown) thaws it
//!   first ([`super::Action::Thaw`], then the stop signal), so it stops
//!   within its stop timeout as any container does. A new container
//!   (after a restart or a changed unit) starts unpaused: the pause was
//!   of the container, and goes with it;
//! - a reload that keeps its container (unchanged, or a live update)
//!   keeps it paused.
//!
//! A paused unit is not ready: a dependent that has not started waits for
//! its `unpause`; one that runs keeps running.

use super::events::OpError;
use super::lifecycle::State;
use super::{Action, Core, ProbeLoop};

impl Core {
    /// The container of `name` that `pause` is to freeze; none when it is
    /// paused already (pausing twice is no error). Refused for a unit
    /// that is not running, or whose update is on trial (its verdict
    /// needs it to run).
    pub fn to_pause(&self, name: &str) -> Result<Option<u64>, OpError> {
        let r = self.records.get(name).ok_or_else(|| OpError::Unknown(name.into()))?;
        match r.state(self.shutting_down) {
            State::Paused => return Ok(None),
            State::Running => {}
            state => return Err(OpError::CannotPause { name: name.into(), state }),
        }
        if r.trial.is_some() || r.next.is_some() {
            return Err(OpError::Updating(name.into()));
        }
        Ok(r.run().map(|run| run.generation))
    }

    /// The container of `name` that `unpause` is to thaw.
    pub fn to_unpause(&self, name: &str) -> Result<u64, OpError> {
        let r = self.records.get(name).ok_or_else(|| OpError::Unknown(name.into()))?;
        r.run()
            .filter(|run| run.paused && !run.stopping)
            .map(|run| run.generation)
            .ok_or(OpError::NotPaused(name.into()))
    }

    /// `name`'s container of `generation` is frozen: its probe loop
    /// ends. False when the freeze came too late: the container is being
    /// stopped, or is gone (the engine thaws it again).
    pub fn paused(&mut self, name: &str, generation: u64) -> bool {
        let Some(r) = self.records.get_mut(name) else { return false };
        if !r.serving(generation) {
            return false;
        }
        let Some(run) = r.run_mut() else { return false };
        if run.stopping || run.running().is_none() {
            return false;
        }
        run.paused = true;
        r.reason = Some("paused by operator".into());
        self.pending.push(Action::Probe { name: name.into(), generation, probe: None });
        true
    }

    /// `name`'s container of `generation` is thawed: its probe loop
    /// starts again, with the health it had (no new start period).
    pub fn unpaused(&mut self, name: &str, generation: u64) {
        let Some(r) = self.records.get_mut(name) else { return };
        if !r.serving(generation) {
            return;
        }
        let hostname = r.config.as_ref().map(|u| u.unit.container.hostname.clone()).unwrap_or_default();
        let Some(run) = r.run_mut() else { return };
        if !std::mem::take(&mut run.paused) {
            return;
        }
        let probe = run.running().and_then(|x| {
            let (check, _) = x.health.as_ref()?;
            Some(ProbeLoop { check: check.clone(), pid: x.container.pid, hostname })
        });
        r.reason = None;
        if probe.is_some() {
            self.pending.push(Action::Probe { name: name.into(), generation, probe });
        }
    }
}
