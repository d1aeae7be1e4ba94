//! Tests of the decision core, without root or daemon: a harness plays
//! the engine (it carries out the actions in its head: containers that
//! start when told, timers that fire when the clock passes them) and the
//! unit files are real files read by the real parser.

mod beside;
mod health;
mod operator;
mod ordering;
mod pause;
mod properties;
mod reload;
mod restart;
mod shutdown;
mod states;
mod update;

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime};

use super::lifecycle::{ExitInfo, State};
use super::reload::Step;
use super::{Action, Core, Now, Op, StartOutcome, Started, Timer};
use crate::health::ProbeResult;
use crate::units::load_files;

/// A plain unit: a container that sleeps.
pub const PLAIN: &str = "[container]\nimage = \"busybox\"\ncommand = [\"sleep\", \"1000\"]\n";

/// `PLAIN` with more TOML after it.
pub fn unit(extra: &str) -> String {
    format!("{PLAIN}{extra}")
}

/// A unit with a `[unit]` section.
pub fn with_unit(unit_section: &str, extra: &str) -> String {
    format!("[unit]\n{unit_section}\n{PLAIN}{extra}")
}

/// The engine, played by the test.
pub struct Harness {
    pub core: Core,
    pub now: Now,
    dir: tempfile::TempDir,
    /// Timers asked for and not yet fired: when they are due.
    timers: Vec<(Instant, Timer)>,
    /// Every action carried out, in order.
    pub log: Vec<Action>,
    /// Containers asked for: name to generation (until they exit); a
    /// start-first update's new container is `name+` until its traffic
    /// moves, the old one `name-` from then.
    pub containers: BTreeMap<String, u64>,
    /// What the switchovers asked for report.
    pub switch_result: Result<super::Moved, String>,
    /// The image ID each container asked for was pinned to.
    pub pins: BTreeMap<String, Option<String>>,
    /// The image ID the units' tag names in the store now: what a start
    /// without a pin runs.
    pub tag: String,
    pub next_pid: i32,
}

impl Harness {
    pub fn new() -> Harness {
        Harness {
            core: Core::new(),
            now: Now {
                mono: Instant::now(),
                wall: SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000),
                jitter: 0.0,
            },
            dir: tempfile::tempdir().unwrap(),
            timers: Vec::new(),
            log: Vec::new(),
            containers: BTreeMap::new(),
            pins: BTreeMap::new(),
            switch_result: Ok(super::Moved {
                took: Duration::from_millis(3),
                ports: vec!["0.0.0.0:8080->80/tcp".into()],
            }),
            tag: "sha256:0".into(),
            next_pid: 100,
        }
    }

    /// A harness with these unit files loaded.
    pub fn with(files: &[(&str, &str)]) -> Harness {
        let mut h = Harness::new();
        h.files(files);
        h
    }

    /// Makes the unit directory exactly `files`, and reloads.
    pub fn files(&mut self, files: &[(&str, &str)]) -> BTreeMap<String, Step> {
        self.write(files);
        self.reload(false)
    }

    pub fn write(&mut self, files: &[(&str, &str)]) {
        for e in std::fs::read_dir(self.dir.path()).unwrap() {
            std::fs::remove_file(e.unwrap().path()).unwrap();
        }
        for (name, body) in files {
            std::fs::write(self.dir.path().join(format!("{name}.toml")), body).unwrap();
        }
    }

    pub fn reload(&mut self, dry_run: bool) -> BTreeMap<String, Step> {
        let mut paths: Vec<_> = std::fs::read_dir(self.dir.path()).unwrap().map(|e| e.unwrap().path()).collect();
        paths.sort();
        let steps = self.core.reload(load_files(&paths), dry_run, self.now);
        self.converge();
        steps
    }

    /// One converge; its actions carried out (timers noted, containers
    /// asked for recorded) and returned.
    pub fn converge(&mut self) -> Vec<Action> {
        let actions = self.core.converge(self.now);
        let mut switches = Vec::new();
        for a in &actions {
            match a {
                Action::Start { name, generation, image, beside, .. } => {
                    let key = if *beside { format!("{name}+") } else { name.clone() };
                    self.pins.insert(key.clone(), image.clone());
                    let old = self.containers.insert(key.clone(), *generation);
                    assert!(old.is_none(), "{key}: a second container (generation {generation}) beside {old:?}");
                }
                Action::Timer { after, timer } => self.timers.push((self.now.mono + *after, timer.clone())),
                Action::Switch { name, to, .. } => switches.push((name.clone(), *to)),
                _ => {}
            }
        }
        self.log.extend(actions.iter().cloned());
        for (name, to) in switches {
            if self.switch_result.is_ok() {
                let old = self.containers.remove(&name);
                let new = self.containers.remove(&format!("{name}+")).expect("a new container");
                self.containers.insert(name.clone(), new);
                self.containers.extend(old.map(|g| (format!("{name}-"), g)));
                let pin = self.pins.remove(&format!("{name}+")).flatten();
                self.pins.insert(name.clone(), pin);
            }
            self.core.switched(&name, to, self.switch_result.clone(), self.now);
            self.converge();
        }
        actions
    }

    pub fn state(&self, name: &str) -> State {
        self.core.state(name).unwrap_or_else(|| panic!("no unit {name}"))
    }

    pub fn reason(&self, name: &str) -> String {
        self.core.record(name).and_then(|r| r.reason.clone()).unwrap_or_default()
    }

    pub fn generation(&self, name: &str) -> u64 {
        self.containers.get(name).copied().unwrap_or_else(|| panic!("{name} has no container"))
    }

    /// The container of `key` runs (`name`, `name+`: see `containers`).
    pub fn run(&mut self, key: &str) {
        let generation = self.generation(key);
        let name = unit_of(key);
        self.next_pid += 1;
        let started = Started {
            pid: self.next_pid,
            stop_signal: libc::SIGTERM,
            image_digest: self.pins.get(key).cloned().flatten().unwrap_or_else(|| self.tag.clone()),
            image_health: None,
            address: None,
            ports: Vec::new(),
        };
        self.core.started(name, generation, StartOutcome::Running(started), self.now);
        self.converge();
    }

    /// Runs every unit that has a container asked for and not yet
    /// running, until none is left (dependents start as their
    /// requirements run).
    pub fn run_all(&mut self) {
        loop {
            let pending: Vec<String> = self
                .containers
                .iter()
                .filter(|(k, g)| self.container(k, **g).is_some_and(|r| r.running().is_none()))
                .map(|(k, _)| k.clone())
                .collect();
            if pending.is_empty() {
                return;
            }
            for n in pending {
                self.run(&n);
            }
        }
    }

    /// The start of `name` failed.
    pub fn fail_start(&mut self, key: &str, error: &str) {
        let generation = self.containers.remove(key).expect("a container was asked for");
        self.core.started(unit_of(key), generation, StartOutcome::Failed(error.into()), self.now);
        self.converge();
    }

    /// The container of `name` ended with `code`.
    pub fn exit(&mut self, name: &str, code: i32) {
        self.exit_with(name, ExitInfo::code(code, false, self.now.wall));
    }

    pub fn exit_with(&mut self, key: &str, exit: ExitInfo) {
        let generation = self.containers.remove(key).expect("a container to end");
        self.core.exited(unit_of(key), generation, exit, self.now);
        self.converge();
    }

    /// Ends every container that was sent its stop signal, until none is
    /// left (requirements stop after their dependents).
    pub fn exit_stopped(&mut self) {
        loop {
            let stopping: Vec<String> = self
                .containers
                .iter()
                .filter(|(k, g)| self.container(k, **g).is_some_and(|r| r.stopping))
                .map(|(k, _)| k.clone())
                .collect();
            if stopping.is_empty() {
                return;
            }
            for n in stopping {
                self.exit_with(&n, ExitInfo::signal(libc::SIGTERM, false, self.now.wall));
            }
        }
    }

    /// Moves the clock on, firing the timers that come due, in order.
    pub fn advance(&mut self, d: Duration) {
        let end = self.now.mono + d;
        loop {
            self.timers.sort_by_key(|(t, _)| *t);
            let Some(i) = self.timers.iter().position(|(t, _)| *t <= end) else { break };
            let (due, timer) = self.timers.remove(i);
            let step = due.saturating_duration_since(self.now.mono);
            self.now = self.now.after(step);
            self.fire(timer);
        }
        let rest = end.saturating_duration_since(self.now.mono);
        self.now = self.now.after(rest);
    }

    fn fire(&mut self, timer: Timer) {
        match timer {
            Timer::Backoff { name, generation } => self.core.backoff_over(&name, generation, self.now),
            Timer::StopTimeout { name, generation } => self.core.stop_timeout(&name, generation),
            Timer::WaitTimeout { name } => self.core.wait_timeout(&name, self.now),
            Timer::Update { .. } => {}
            Timer::Drained { name, generation } => self.core.drained(&name, generation),
        }
        self.converge();
    }

    pub fn op(&mut self, op: Op, names: &[&str]) -> Result<Vec<(String, u64)>, super::OpError> {
        let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        let r = self.core.operate(op, &names);
        self.converge();
        r
    }

    /// `pause` as the engine does it: the container to freeze, frozen,
    /// then the core told.
    pub fn pause(&mut self, name: &str) -> Result<(), super::OpError> {
        if let Some(generation) = self.core.to_pause(name)? {
            self.core.paused(name, generation);
        }
        self.converge();
        Ok(())
    }

    pub fn unpause(&mut self, name: &str) -> Result<(), super::OpError> {
        let generation = self.core.to_unpause(name)?;
        self.core.unpaused(name, generation);
        self.converge();
        Ok(())
    }

    pub fn probe(&mut self, key: &str, healthy: bool) {
        let generation = self.generation(key);
        let name = unit_of(key);
        let result = ProbeResult {
            time: self.now.wall,
            healthy,
            exit_code: Some(if healthy { 0 } else { 1 }),
            http_status: None,
            output: if healthy { "ok".into() } else { "connection refused".into() },
        };
        self.core.probed(name, generation, result, self.now);
        self.converge();
    }

    /// The core's container of `key`'s unit and `generation`.
    fn container(&self, key: &str, generation: u64) -> Option<&super::Run> {
        self.core.record(unit_of(key))?.find(generation)
    }

    pub fn shutdown(&mut self) {
        self.core.shutdown();
        self.converge();
    }

    /// The actions logged since `from`, by kind and unit: `start a`,
    /// `signal a`, `kill a`.
    pub fn since(&self, from: usize) -> Vec<String> {
        self.log[from..].iter().filter_map(describe).collect()
    }

    /// Every start, stop signal and kill so far.
    pub fn history(&self) -> Vec<String> {
        self.since(0)
    }

    pub fn mark(&self) -> usize {
        self.log.len()
    }
}

/// The unit of a container key (`a`, `a+`, `a-`).
pub fn unit_of(key: &str) -> &str {
    key.trim_end_matches(['+', '-'])
}

/// An action as the tests name it; state events and notes are left out.
pub fn describe(a: &Action) -> Option<String> {
    match a {
        Action::Start { name, beside: true, .. } => Some(format!("start {name}+")),
        Action::Start { name, .. } => Some(format!("start {name}")),
        Action::Switch { name, .. } => Some(format!("switch {name}")),
        Action::Signal { name, .. } => Some(format!("signal {name}")),
        Action::KillAll { name, .. } => Some(format!("kill {name}")),
        Action::Thaw { name, .. } => Some(format!("thaw {name}")),
        Action::Update { name, resources, .. } => {
            Some(format!("update {name}{}", if *resources { " live" } else { "" }))
        }
        _ => None,
    }
}

pub fn steps(s: &BTreeMap<String, Step>) -> Vec<(&str, &str)> {
    s.iter().map(|(n, s)| (n.as_str(), s.name())).collect()
}

pub fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

pub fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}
