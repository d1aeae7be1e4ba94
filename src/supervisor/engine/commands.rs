//! Operator commands: answered from the core's records (and, for
//! `inspect`, the backend's cgroup figures); the ones that change
//! something go through the core like any other event.

use std::collections::BTreeMap;

use tokio::sync::oneshot;

use super::wire::{Command, FreezeError, KillError, PauseError, Rolled, UnitSample, UpdateTarget};
use super::{Backend, Engine, now};
use crate::supervisor::policy::{OpError, Record};
use crate::supervisor::unit_files;
use crate::units::model::{AutoUpdate, Network};
use crate::units::values::mounts::VolumeSource;
use crate::units::values::signal::Signal;

type PauseReply = oneshot::Sender<Result<(), PauseError>>;

/// The answers a freeze under way owes, by unit and generation.
pub(super) type Pausing = BTreeMap<(String, u64), Vec<PauseReply>>;

impl<B: Backend> Engine<B> {
    pub(super) fn command(&mut self, c: Command) {
        match c {
            Command::Status(reply) => {
                let _ = reply.send(self.core.status());
            }
            Command::Inspect(name, reply) => {
                let _ = reply.send(self.core.record(&name).map(|r| self.inspect(r)));
            }
            Command::Op(op, names, reply) => {
                let _ = reply.send(self.core.operate(op, &names));
            }
            Command::Kill(name, signal, reply) => {
                let result = match self.core.pid(&name) {
                    Ok(pid) => {
                        self.backend.signal(&name, pid, signal).map_err(|errno| KillError::Signal { name, errno })
                    }
                    Err(e) => Err(e.into()),
                };
                let _ = reply.send(result);
            }
            Command::Pause(name, true, reply) => self.pause(name, reply),
            Command::Pause(name, false, reply) => {
                let _ = reply.send(self.unpause(&name));
            }
            Command::Reload(dry_run, reply) => {
                let _ = reply.send(self.rescan(dry_run));
            }
            Command::Edit(edit, reply) => {
                let result = unit_files::check(&self.units_dir, &edit).and_then(|set| {
                    if !edit.dry_run {
                        unit_files::write(&self.units_dir, &edit)?;
                    }
                    Ok(self.reload_set(set, edit.dry_run))
                });
                let _ = reply.send(result);
            }
            Command::UnitFile(name, reply) => {
                let _ = reply.send(unit_files::read(&self.units_dir, &name));
            }
            Command::Volumes(reply) => {
                let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
                for r in self.core.records() {
                    for v in r.config.iter().flat_map(|u| u.unit.container.volumes.iter()) {
                        if let VolumeSource::Named(n) = &v.source {
                            out.entry(r.name.clone()).or_default().push(n.clone());
                        }
                    }
                }
                let _ = reply.send(out);
            }
            Command::Counts(reply) => {
                let _ = reply.send(self.core.counts());
            }
            Command::Rollback(name, reply) => {
                let result = self.core.rollback(&name, now()).map(|()| self.rolled(&name, true));
                let _ = reply.send(result);
            }
            Command::RollImage(name, image, reply) => {
                let result = self.core.roll_image(&name, &image, now()).map(|changed| self.rolled(&name, changed));
                let _ = reply.send(result);
            }
            Command::UpdateTargets(reply) => {
                let shutting_down = self.core.shutting_down();
                let targets = self
                    .core
                    .records()
                    .map(|r| {
                        let status = r.status(shutting_down);
                        UpdateTarget {
                            name: r.name.clone(),
                            image: r.config.as_ref().map(|u| u.unit.container.image.clone()),
                            auto: r.config.as_ref().is_some_and(|u| u.unit.update.auto == AutoUpdate::Registry),
                            image_id: status.image_id,
                            rejected: r.rejected_image.clone(),
                            in_progress: r.trial.is_some(),
                        }
                    })
                    .collect();
                let _ = reply.send(targets);
            }
            Command::Sample(reply) => {
                let _ = reply.send(self.sample());
            }
            Command::LogFiles(name, reply) => {
                let files = self.core.record(&name).map(|r| r.config.as_ref().map_or(1, |u| u.unit.logs.max_files));
                let _ = reply.send(files);
            }
        }
    }

    /// Starts the freeze of the unit's container (`pause`); the answer
    /// waits for [`Event::Frozen`], so that the loop goes on meanwhile and
    /// a freeze the kernel refused changes nothing.
    fn pause(&mut self, name: String, reply: PauseReply) {
        let generation = match self.core.to_pause(&name) {
            Ok(Some(generation)) => generation,
            Ok(None) => {
                let _ = reply.send(Ok(()));
                return;
            }
            Err(e) => {
                let _ = reply.send(Err(e.into()));
                return;
            }
        };
        // A second `pause` while the freeze is under way has its answer.
        let waiting = self.pausing.entry((name.clone(), generation)).or_default();
        waiting.push(reply);
        if waiting.len() == 1 {
            self.backend.freeze(&name, generation, &self.tx);
        }
    }

    /// The freeze of `name`'s container of `generation` is done: the core
    /// holds it paused, unless it was stopped (or ended) meanwhile, and
    /// then it is thawed again, for its stop signal to reach it.
    pub(super) fn frozen(&mut self, name: String, generation: u64, result: Result<(), FreezeError>) {
        let answer = match result {
            Err(e) => Err(PauseError::from(e)),
            Ok(()) if self.core.paused(&name, generation) => Ok(()),
            Ok(()) => {
                if let Err(e) = self.backend.thaw(&name, generation) {
                    tracing::warn!("cannot thaw it after a pause that came too late: {e}");
                }
                Err(OpError::NotRunning(name.clone()).into())
            }
        };
        for reply in self.pausing.remove(&(name, generation)).unwrap_or_default() {
            let _ = reply.send(answer.clone());
        }
    }

    /// Thaws the unit's container (`unpause`), then tells the core.
    fn unpause(&mut self, name: &str) -> Result<(), PauseError> {
        let generation = self.core.to_unpause(name)?;
        self.backend.thaw(name, generation)?;
        self.core.unpaused(name, generation);
        Ok(())
    }

    /// Every unit for the metrics, in start order.
    fn sample(&self) -> Vec<UnitSample> {
        let shutting_down = self.core.shutting_down();
        self.core
            .status()
            .into_iter()
            .filter_map(|status| {
                let r = self.core.record(&status.name)?;
                let running = r.run().and_then(|x| x.running());
                let host_network = r.config.as_ref().is_some_and(|u| u.unit.container.network == Network::Host);
                let last_exit = r.history.back();
                let signal = last_exit.and_then(|e| e.signal.as_deref()).and_then(|s| Signal::parse(s).ok());
                Some(UnitSample {
                    state: r.state(shutting_down),
                    health: running.and_then(|x| x.health.as_ref()).map(|(_, t)| t.status),
                    restarts: r.restarts,
                    last_exit_code: last_exit.and_then(|e| e.exit_code).or_else(|| signal.map(|s| 128 + s.number())),
                    oom_kills: r.oom_kills,
                    started_at: status.started_at,
                    update_state: status.update_state,
                    cgroup: r.run().and_then(|run| self.backend.cgroup(&r.name, run.generation)),
                    netns_pid: status.pid.filter(|_| !host_network),
                    name: status.name,
                })
            })
            .collect()
    }

    fn rolled(&self, name: &str, changed: bool) -> Rolled {
        Rolled { changed, trial: changed && self.core.record(name).is_some_and(|r| r.trial.is_some()) }
    }

    fn inspect(&self, r: &Record) -> serde_json::Value {
        let live = match r.run() {
            Some(run) => self.backend.inspect(&r.name, run.generation),
            None => serde_json::json!({ "usage": null, "cgroup": null, "runtime_name": null }),
        };
        let health = r.run().and_then(|x| x.running()).and_then(|x| x.health.as_ref());
        serde_json::json!({
            "status": r.status(self.core.shutting_down()),
            "unit": r.config,
            "usage": live["usage"],
            "last_exits": r.history,
            "cgroup": live["cgroup"],
            "runtime_name": live["runtime_name"],
            "logs": { "dropped_lines": self.backend.dropped_lines(&r.name) },
            "health": health.map(|(check, t)| serde_json::json!({
                "status": t.status,
                "failing_streak": t.failures(),
                "check": check,
                "results": t.results,
            })),
        })
    }
}
