//! Start-first updates: the new container starts beside the serving one
//! (its own address, the same volumes), and only once it has passed its
//! trial does the unit's traffic move to it in one step ([`Action::Switch`]:
//! published ports and the unit's name on the bridge); then the old one is
//! stopped. A new container that fails is stopped, and the serving one
//! was never touched.
//!
//! Start-first needs a container of its own network: a unit on the host's
//! network would bind its ports twice, and a unit that joins another's
//! network, or that others join (`network = "unit:..."`), shares one
//! namespace that cannot move. Those units update stop-first, and the
//! daemon's log says so.

use super::events::new_run;
use super::lifecycle::ExitInfo;
use super::record::Life;
use super::{Action, Core, Level, Moved, Now, StartOutcome, Timer};
use crate::units::model::{Network, Strategy};

/// How long the old container keeps running after its traffic moved,
/// before its stop signal: long enough for the requests it accepted just
/// before the switch (Kubernetes leaves endpoint changes a similar moment
/// before a pod's SIGTERM matters).
pub const DRAIN: std::time::Duration = std::time::Duration::from_secs(1);

impl Core {
    /// Whether `name`'s trial (begun, its config the new one) goes
    /// start-first; notes why not when the unit asks for it and cannot.
    pub(super) fn settle_strategy(&mut self, name: &str) {
        let Some(r) = self.records.get(name) else { return };
        let Some(unit) = r.config.as_ref() else { return };
        if r.trial.is_none() || unit.unit.update.strategy != Strategy::StartFirst {
            return;
        }
        let joined = self
            .records
            .values()
            .any(|o| o.config.as_ref().is_some_and(|u| u.unit.container.network == Network::Unit(name.to_string())));
        let from = r.trial.as_ref().map(|t| &t.from.config.unit.container).expect("on trial");
        let new = &unit.unit.container;
        let why_not = match &new.network {
            Network::Host => Some("it uses the host's network, where two containers would bind the same ports"),
            Network::Unit(_) => Some("it joins another unit's network, which two containers cannot share"),
            _ if joined => Some("other units join its network, which cannot move to a new container"),
            _ if from.network != new.network => Some("its network changes"),
            // The switchover moves the published ports as they are.
            _ if from.ports != new.ports => Some("its published ports change"),
            _ => None,
        };
        let beside = why_not.is_none();
        if let Some(why) = why_not {
            let message = format!("start-first update done stop-first: {why}");
            self.pending.push(Action::Note { name: name.into(), level: Level::Warn, message });
        }
        if let Some(t) = self.records.get_mut(name).and_then(|r| r.trial.as_mut()) {
            t.beside = beside;
        }
    }

    /// The file went back to what the serving container runs while a
    /// trial of another config was on: the trial ends, nothing to do.
    pub(super) fn back_to_serving(&mut self, name: &str, now: Now) {
        let Some(r) = self.records.get_mut(name) else { return };
        let (Some(t), Some(unit)) = (r.trial.as_ref(), r.config.as_ref()) else { return };
        let from = &t.from;
        let serving_is_from = r.run().is_some_and(|run| {
            !run.stopping && run.restart_hash == from.config.hashes.restart && run.image.as_ref() == Some(&from.image)
        });
        if unit.hashes.restart != from.config.hashes.restart || !serving_is_from {
            return;
        }
        r.image = Some(from.image.clone());
        r.trial = None;
        self.update_event(name, "abandoned", "the unit file is back to the running config".into(), now);
    }

    /// Its serving container stays while a start-first trial runs beside
    /// it (its config is the old one: it would otherwise be stopped).
    pub(super) fn keeps_beside(&self, name: &str) -> bool {
        let r = &self.records[name];
        r.trial.as_ref().is_some_and(|t| t.beside)
            && r.wants(self.shutting_down)
            && r.run().is_some_and(|run| !run.restart && !run.stopping)
    }

    /// Starts the new container of each start-first trial whose serving
    /// container runs, once its dependencies are ready.
    pub(super) fn starts_beside(&mut self, keep: &std::collections::HashMap<String, bool>, now: Now) {
        for name in self.order.clone() {
            let r = &self.records[&name];
            // After the containers of an earlier trial are gone: two
            // containers of a unit at most.
            let due = r.trial.as_ref().is_some_and(|t| t.beside && t.generation.is_none())
                && r.next.is_none()
                && r.leaving.is_empty()
                && r.running();
            if !due || self.waiting_for(&name, keep).is_some() {
                continue;
            }
            let r = self.records.get_mut(&name).expect("listed");
            let unit = r.config.clone().expect("on trial");
            r.generation += 1;
            let generation = r.generation;
            let image = r.image.clone();
            r.next = Some(new_run(generation, &unit, image.clone()));
            let unit = Box::new(unit);
            self.pending.push(Action::Start { name: name.clone(), generation, unit, join: None, image, beside: true });
            self.trial_started(&name, generation, now);
        }
    }

    /// A start beside the serving container ended.
    pub(super) fn started_beside(&mut self, name: &str, generation: u64, outcome: StartOutcome, now: Now) {
        let r = self.records.get_mut(name).expect("known");
        if r.find(generation).is_none() {
            return;
        }
        match outcome {
            StartOutcome::Running(s) => {
                let Some(run) = r.now_running(generation, s, now) else { return };
                if run.stopping {
                    // Its trial ended while it started.
                    return self.stop_generation(name, generation);
                }
                self.start_probes(name, generation);
            }
            StartOutcome::Failed(err) => {
                self.pending.push(Action::Note { name: name.into(), level: Level::Error, message: err.clone() });
                self.exited_beside(name, generation, ExitInfo::start_error(err, now.wall));
            }
        }
    }

    /// A container beside the serving one ended: the new one of a trial
    /// (its gate reads the exit) or one being stopped.
    pub(super) fn exited_beside(&mut self, name: &str, generation: u64, exit: ExitInfo) {
        let r = self.records.get_mut(name).expect("known");
        self.pending.push(Action::EndTasks { name: name.into(), generation });
        if r.next.as_ref().is_some_and(|n| n.generation == generation) {
            r.next = None;
            r.record(exit);
        }
        r.leaving.retain(|l| l.generation != generation);
    }

    /// The drain after a switchover is over: the old container stops.
    pub fn drained(&mut self, name: &str, generation: u64) {
        let Some(r) = self.records.get(name) else { return };
        if r.leaving.iter().any(|l| l.generation == generation && !l.stopping) {
            self.stop_generation(name, generation);
        }
    }

    /// Moves the new container beside to the leaving ones, and stops it.
    pub(super) fn drop_next(&mut self, name: &str) {
        let r = self.records.get_mut(name).expect("known");
        if let Some(next) = r.next.take() {
            let generation = next.generation;
            r.leaving.push(next);
            self.stop_generation(name, generation);
        }
    }

    /// The switchover the core asked for is done (or failed): the new
    /// container serves, and the old one is stopped.
    pub fn switched(&mut self, name: &str, to: u64, result: Result<Moved, String>, now: Now) {
        let Some(r) = self.records.get_mut(name) else { return };
        let on_trial = r.trial.as_ref().is_some_and(|t| t.switching && t.generation == Some(to));
        if !on_trial || r.next.as_ref().is_none_or(|n| n.generation != to) {
            // The trial ended while its traffic moved (the new container
            // failed meanwhile): the traffic goes back to the one serving.
            if let (Ok(_), Some(serving)) = (&result, r.run().map(|s| s.generation).filter(|g| *g != to)) {
                self.pending.push(Action::Switch { name: name.into(), from: to, to: serving });
            }
            return;
        }
        let moved = match result {
            Ok(moved) => moved,
            Err(e) => return self.trial_failed(name, format!("moving its traffic failed: {e}"), now),
        };
        let mut next = r.next.take().expect("checked");
        if let Some(running) = next.running_mut() {
            running.container.ports = moved.ports;
        }
        let old = std::mem::replace(&mut r.life, Life::Active(next));
        if let Life::Active(old) = old {
            // New connections go to the new container from now on; the
            // old one gets its stop signal after DRAIN, so that requests
            // it accepted just before the switch are answered (a server
            // that does not drain on its stop signal would drop them).
            let generation = old.generation;
            r.leaving.push(old);
            let timer = Timer::Drained { name: name.to_string(), generation };
            self.pending.push(Action::Timer { after: DRAIN, timer });
        }
        let message = format!("traffic moved to the new container in {} ms", moved.took.as_millis());
        self.pending.push(Action::Note { name: name.into(), level: Level::Info, message });
        self.trial_passed(name, now);
    }
}
