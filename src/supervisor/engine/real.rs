//! The engine's backend on the real runtime: containers through the
//! starter, probes through `health::probe`, signals and cgroup writes.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;

use super::backend::{Backend, Events, Live, LiveSet, Start};
use super::container;
use super::wire::{Event, FreezeError};
use crate::health::probe;
use crate::runtime::cgroups::{Cgroup, Usage};
use crate::supervisor::logs::{Hub, Limits};
use crate::supervisor::policy::{Moved, ProbeLoop};
use crate::supervisor::starter::{self, Env};
use crate::units::LoadedUnit;

/// Starts (pull, prepare, spawn) at once; more wait their turn.
const PARALLEL_STARTS: usize = 8;

pub struct Real {
    pub(super) env: Arc<Env>,
    pub(super) probes: Arc<probe::Env>,
    pub(super) hub: Hub,
    pub(super) log_dir: PathBuf,
    pub(super) starts: Arc<Semaphore>,
    pub(super) live: LiveSet,
}

impl Real {
    pub fn new(env: Arc<Env>, probes: Arc<probe::Env>, hub: Hub, log_dir: PathBuf) -> Real {
        Real { env, probes, hub, log_dir, starts: Arc::new(Semaphore::new(PARALLEL_STARTS)), live: LiveSet::default() }
    }
}

impl Backend for Real {
    fn start(&mut self, name: &str, generation: u64, start: Start, events: &Events) {
        let Start { unit, join, image, beside } = start;
        let instance = beside.then(|| starter::instance_name(name, generation));
        let limits = Limits::new(unit.unit.logs.max_size, unit.unit.logs.max_files);
        let runtime_name = instance.clone().unwrap_or_else(|| name.to_string());
        self.live.insert(name, Live { generation, runtime_name, log_limits: Some(limits.clone()), ..Live::default() });
        tokio::spawn(container::run(
            self.clone_parts(),
            name.to_string(),
            generation,
            (unit.unit, join, image, instance),
            limits,
            events.clone(),
        ));
    }

    fn switch(&mut self, name: &str, from: u64, to: u64, events: &Events) {
        // The core asks the moment the new container passed its trial:
        // what the switch took is from now to the kernel's commit.
        let asked = Instant::now();
        let runtime = |g| self.live.with(name, g, |l| l.runtime_name.clone());
        let (env, events, name) = (self.env.clone(), events.clone(), name.to_string());
        let names = runtime(from).zip(runtime(to));
        tokio::spawn(async move {
            let result = match names {
                Some((from, to)) => starter::switch(&env, &name, &from, &to)
                    .await
                    .map(|s| Moved { took: s.at.saturating_duration_since(asked), ports: s.ports })
                    .map_err(|e| e.to_string()),
                None => Err("one of its containers is gone".to_string()),
            };
            let _ = events.send(Event::Switched { name, to, result });
        });
    }

    fn signal(&mut self, _name: &str, pid: i32, signal: i32) -> std::io::Result<()> {
        // Our own child, not yet reaped: its exit would have ended the
        // container's record in the core, so the pid is not reused.
        crate::runtime::sys::kill(pid, signal)
    }

    fn kill_all(&mut self, name: &str, generation: u64) {
        if let Some(cg) = self.live.with(name, generation, |l| l.cgroup.clone()).flatten() {
            tokio::task::spawn_blocking(move || cg.kill_all());
        }
    }

    fn freeze(&mut self, name: &str, generation: u64, events: &Events) {
        let cgroup = self.live.with(name, generation, |l| l.cgroup.clone()).flatten();
        let (name, events) = (name.to_string(), events.clone());
        tokio::task::spawn_blocking(move || {
            let result = match cgroup {
                Some(cgroup) => cgroup.freeze().map_err(|source| FreezeError::Cgroup { name: name.clone(), source }),
                None => Err(FreezeError::NoCgroup(name.clone())),
            };
            let _ = events.send(Event::Frozen { name, generation, result });
        });
    }

    fn thaw(&mut self, name: &str, generation: u64) -> Result<(), FreezeError> {
        let cgroup = self.live.with(name, generation, |l| l.cgroup.clone()).flatten();
        let cgroup = cgroup.ok_or_else(|| FreezeError::NoCgroup(name.to_string()))?;
        cgroup.thaw().map_err(|source| FreezeError::Cgroup { name: name.to_string(), source })
    }

    fn end_tasks(&mut self, name: &str, generation: u64) {
        self.live.with(name, generation, Live::end_tasks);
    }

    fn probe(&mut self, name: &str, generation: u64, probe: Option<ProbeLoop>, events: &Events) {
        // Only for a container that is still there: a loop nobody can
        // abort would probe a pid that may be reused.
        let probes = self.probes.clone();
        self.live.with(name, generation, |l| {
            if let Some(old) = l.probe.take() {
                old.abort();
            }
            // An exec probe enters the container by its runtime name: a
            // start-first update's second container has its own.
            let target = (name.to_string(), l.runtime_name.clone());
            l.probe = probe.map(|p| probe_loop(probes, target, generation, p, events.clone()));
        });
    }

    fn update(&mut self, name: &str, generation: u64, unit: &LoadedUnit, resources: bool) {
        let Some((cgroup, limits)) = self.live.with(name, generation, |l| (l.cgroup.clone(), l.log_limits.clone()))
        else {
            return;
        };
        if let Some(limits) = limits {
            limits.set(unit.unit.logs.max_size, unit.unit.logs.max_files);
        }
        if let (true, Some(cg)) = (resources, cgroup) {
            let r = starter::live_resources(&unit.unit);
            let name = name.to_string();
            tokio::task::spawn_blocking(move || {
                if let Err(err) = cg.set(&r) {
                    tracing::error!("{name}: cannot apply the new [resources]: {err}");
                }
            });
        }
    }

    fn inspect(&self, name: &str, generation: u64) -> serde_json::Value {
        let (cgroup, runtime_name) =
            self.live.with(name, generation, |l| (l.cgroup.clone(), Some(l.runtime_name.clone()))).unwrap_or_default();
        let usage: Option<Usage> = cgroup.as_ref().map(Cgroup::usage);
        serde_json::json!({ "usage": usage, "cgroup": cgroup, "runtime_name": runtime_name })
    }

    fn cgroup(&self, name: &str, generation: u64) -> Option<Cgroup> {
        self.live.with(name, generation, |l| l.cgroup.clone()).flatten()
    }

    fn dropped_lines(&self, name: &str) -> u64 {
        self.hub.dropped(name)
    }
}

impl Real {
    fn clone_parts(&self) -> container::Parts {
        container::Parts {
            env: self.env.clone(),
            hub: self.hub.clone(),
            log_dir: self.log_dir.clone(),
            starts: self.starts.clone(),
            live: self.live.clone(),
        }
    }
}

/// Probes the container every interval until aborted.
fn probe_loop(
    env: Arc<probe::Env>,
    (name, runtime_name): (String, String),
    generation: u64,
    p: ProbeLoop,
    events: Events,
) -> tokio::task::AbortHandle {
    tokio::spawn(async move {
        let c = p.check;
        let start = tokio::time::Instant::now();
        // Spread the first probes of many units over up to a second (or
        // the first wait), instead of a burst.
        let spread = c.next_probe_in(Duration::ZERO, false).min(Duration::from_secs(1));
        let h = name.bytes().fold(0xcbf29ce484222325u64, |h, b| (h ^ b as u64).wrapping_mul(0x100000001b3));
        tokio::time::sleep(spread.mul_f64((h % 1000) as f64 / 1000.0)).await;
        let mut started_up = false;
        loop {
            let target = probe::Target { name: &runtime_name, pid: p.pid, hostname: &p.hostname };
            let result = probe::run(&env, &target, &c.probe, c.timeout).await;
            started_up |= result.healthy;
            if events.send(Event::Probe { name: name.clone(), generation, result }).is_err() {
                return;
            }
            tokio::time::sleep(c.next_probe_in(start.elapsed(), started_up)).await;
        }
    })
    .abort_handle()
}
