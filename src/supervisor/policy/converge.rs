//! One step of every unit towards what it should be: which containers
//! may keep running, which stop (dependents first), which start
//! (dependencies first, once they are ready), and which units are done.

use std::collections::HashMap;
use std::time::Duration;

use super::events::new_run;
use super::lifecycle::State;
use super::record::{Life, Record, Rest};
use super::status::StateEvent;
use super::{Action, Core, Join, Level, Now, Timer};
use crate::units::graph::dependencies;
use crate::units::model::Network;

impl Core {
    /// Decides, and returns every action decided since the last call.
    pub fn converge(&mut self, now: Now) -> Vec<Action> {
        self.gate(now);
        let keep = self.keep();
        self.stops(&keep);
        self.forget_removed(now);
        self.starts(&keep, now);
        self.report(now);
        std::mem::take(&mut self.pending)
    }

    /// What a unit requires (the owner of a network it joins included:
    /// it lives in that container's namespace) and what it starts after.
    fn deps(&self, name: &str) -> (Vec<String>, Vec<String>) {
        match self.records.get(name).and_then(|r| r.config.as_ref()) {
            Some(u) => {
                let mut requires = u.unit.unit.requires.clone();
                if let Network::Unit(owner) = &u.unit.container.network {
                    if !requires.contains(owner) {
                        requires.push(owner.clone());
                    }
                }
                (requires, u.unit.unit.after.clone())
            }
            None => (Vec::new(), Vec::new()),
        }
    }

    /// Which containers may keep running: current, and every required
    /// unit keeps running too (dependencies come first in `order`).
    fn keep(&self) -> HashMap<String, bool> {
        let down = self.shutting_down;
        let mut keep: HashMap<String, bool> = HashMap::new();
        for name in &self.order {
            let (requires, _) = self.deps(name);
            let ok = (self.records[name].current(down) || self.keeps_beside(name))
                && requires
                    .iter()
                    .all(|r| keep.get(r).copied().unwrap_or(false) && self.records.get(r).is_some_and(Record::running));
            keep.insert(name.clone(), ok);
        }
        keep
    }

    /// Stops, dependents first: a unit stops once nothing that depends on
    /// it and is going down still has a container.
    fn stops(&mut self, keep: &HashMap<String, bool>) {
        let mut dependents: HashMap<String, Vec<String>> = HashMap::new();
        for r in self.records.values().filter(|r| r.run().is_some()) {
            for d in r.config.iter().flat_map(|u| dependencies(&u.unit)) {
                dependents.entry(d.to_string()).or_default().push(r.name.clone());
            }
        }
        let kept = |n: &String| keep.get(n).copied().unwrap_or(false);
        for name in self.order.clone().iter().rev() {
            let Some(run) = self.records[name].run() else { continue };
            if run.stopping || kept(name) {
                continue;
            }
            let blocked = dependents.get(name).is_some_and(|vs| {
                vs.iter().any(|v| v != name && !kept(v) && self.records.get(v).is_some_and(|x| x.run().is_some()))
            });
            if !blocked {
                let why = self.stop_reason(name, keep);
                self.stop(name, why);
            }
        }
    }

    fn stop_reason(&self, name: &str, keep: &HashMap<String, bool>) -> String {
        let r = &self.records[name];
        if self.shutting_down {
            return "shutdown".into();
        }
        if r.removed {
            return "unit file removed".into();
        }
        if r.held {
            return "stopped by operator".into();
        }
        if r.run().is_some_and(|x| x.restart) {
            return "restart by operator".into();
        }
        if !r.current(false) {
            return "configuration changed".into();
        }
        let (requires, _) = self.deps(name);
        for dep in requires {
            let Some(d) = self.records.get(&dep) else { return format!("requires {dep}, which has no unit file") };
            let st = d.state(false);
            if st != State::Running {
                return format!("requires {dep} ({st})");
            }
            if !keep.get(&dep).copied().unwrap_or(false) {
                // Running still, but about to be stopped itself.
                return format!("requires {dep} (stopping)");
            }
        }
        "stopped".into()
    }

    /// What `name` waits for before it may start, if anything.
    pub(super) fn waiting_for(&self, name: &str, keep: &HashMap<String, bool>) -> Option<String> {
        let down = self.shutting_down;
        let (requires, after) = self.deps(name);
        for d in &requires {
            match self.records.get(d) {
                Some(dep) if dep.ready() && keep.get(d).copied().unwrap_or(false) => {}
                Some(dep) => return Some(format!("requires {d} ({})", dep.describe(down))),
                None => return Some(format!("requires {d}, which has no unit file")),
            }
        }
        for d in &after {
            if let Some(dep) = self.records.get(d) {
                if dep.wants(down) && !dep.ready() {
                    return Some(format!("after {d} ({})", dep.describe(down)));
                }
            }
        }
        None
    }

    /// Starts, dependencies first.
    fn starts(&mut self, keep: &HashMap<String, bool>, now: Now) {
        for name in self.order.clone() {
            let r = &self.records[&name];
            // A container still being stopped beside it may hold the
            // unit's runtime name (the old one after a switchover, with
            // its directory and record): the new one waits for its end.
            if r.run().is_some() || !r.wants(self.shutting_down) || !r.leaving.is_empty() {
                continue;
            }
            match self.waiting_for(&name, keep) {
                Some(w) => {
                    let r = self.records.get_mut(&name).expect("known");
                    r.reason = Some(w);
                    if r.waiting_since.is_none() {
                        r.waiting_since = Some(now.mono);
                        let after = r.config.as_ref().map_or(Duration::MAX, |u| u.unit.unit.ready_timeout);
                        self.pending.push(Action::Timer { after, timer: Timer::WaitTimeout { name: name.clone() } });
                    }
                }
                None => {
                    self.records.get_mut(&name).expect("known").waiting_since = None;
                    self.start(&name, now);
                }
            }
        }
        self.starts_beside(keep, now);
    }

    fn start(&mut self, name: &str, now: Now) {
        // The container whose network it joins (running: it is required).
        let join = |core: &Core, owner: &str| {
            let running = core.records.get(owner)?.run()?.running()?;
            Some(Join { pid: running.container.pid, address: running.container.address })
        };
        let r = &self.records[name];
        let unit = r.config.clone().expect("wanted units have a config");
        let join = match &unit.unit.container.network {
            Network::Unit(owner) => join(self, owner),
            _ => None,
        };
        let r = self.records.get_mut(name).expect("known");
        if let Err(err) = crate::supervisor::prepare::unsupported(&unit.unit) {
            let err = err.to_string();
            self.pending.push(Action::Note { name: name.into(), level: Level::Error, message: err.clone() });
            r.life = Life::Idle(Rest::Failed);
            r.reason = Some(format!("start failed: {err}"));
            r.start_error = Some(err.clone());
            if r.trial.is_some() {
                self.trial_failed(name, format!("start failed: {err}"), now);
            }
            return;
        }
        r.generation += 1;
        r.reason = None;
        let image = r.image.clone();
        r.life = Life::Active(new_run(r.generation, &unit, image.clone()));
        let generation = r.generation;
        let unit = Box::new(unit);
        self.pending.push(Action::Start { name: name.into(), generation, unit, join, image, beside: false });
        self.trial_started(name, generation, now);
    }

    /// Units whose file is gone and whose container is gone are done.
    fn forget_removed(&mut self, now: Now) {
        let gone: Vec<String> =
            self.records.values().filter(|r| r.removed && r.no_containers()).map(|r| r.name.clone()).collect();
        for name in gone {
            let r = self.records.remove(&name).expect("known");
            self.order.retain(|n| *n != name);
            self.emit(&r, r.reported, State::Inactive, true, now);
        }
    }

    /// Emits state changes since the last report ([`Core::converge`]
    /// does too): a caller that handles several events before deciding
    /// calls it between them, so that each event's changes are reported,
    /// in order, as if it had been decided on alone.
    pub fn report(&mut self, now: Now) {
        let down = self.shutting_down;
        let mut changes = Vec::new();
        for r in self.records.values_mut() {
            let state = r.state(down);
            if state != r.reported {
                changes.push((r.name.clone(), r.reported, state));
                r.reported = state;
                r.since = now.wall;
            }
        }
        for (name, old, new) in changes {
            let r = &self.records[&name];
            let event = state_event(r, old, new, false, now);
            self.pending.push(Action::Emit(event));
        }
    }

    fn emit(&mut self, r: &Record, old: State, new: State, removed: bool, now: Now) {
        self.pending.push(Action::Emit(state_event(r, old, new, removed, now)));
    }
}

fn state_event(r: &Record, old: State, new: State, removed: bool, now: Now) -> StateEvent {
    StateEvent {
        unit: r.name.clone(),
        old,
        new,
        reason: r.reason.clone(),
        time: now.wall,
        generation: r.generation,
        removed,
        update: None,
    }
}
