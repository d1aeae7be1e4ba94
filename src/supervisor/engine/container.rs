//! One container's task, from start to nothing left: wait for a start
//! permit, bind a notify unit's socket, start (pull, prepare, spawn),
//! report it, copy its output to the log, wait for its exit, clean up,
//! wait for the copy to end, report the exit.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

use super::backend::{Events, LiveSet};
use super::wire::{Event, StartPhase};
use crate::runtime::reaper::Exit;
use crate::supervisor::logs::{self, Hub, Limits};
use crate::supervisor::notify;
use crate::supervisor::policy::lifecycle::ExitInfo;
use crate::supervisor::policy::{Join, StartOutcome, Started};
use crate::supervisor::starter::{self, Env};
use crate::units::Unit;

/// What every container task shares.
pub(super) struct Parts {
    pub env: Arc<Env>,
    pub hub: Hub,
    pub log_dir: PathBuf,
    pub starts: Arc<Semaphore>,
    pub live: LiveSet,
}

pub(super) async fn run(
    parts: Parts,
    name: String,
    generation: u64,
    (unit, join, image, instance): (Unit, Option<Join>, Option<String>, Option<String>),
    limits: Arc<Limits>,
    tx: Events,
) {
    let Parts { env, hub, log_dir, starts, live } = parts;
    let failed = |e: String| {
        let _ = tx.send(Event::Started { name: name.clone(), generation, outcome: StartOutcome::Failed(e) });
        live.remove(&name, generation);
    };
    // A notify unit's socket exists before its container does.
    // A second container of the unit has its own socket (binding wipes
    // the directory: the serving container's must stay).
    let runtime_name = instance.clone().unwrap_or_else(|| name.clone());
    let notify = match unit.container.notify {
        true => match notify::bind(&env.run_dir, &runtime_name) {
            Ok(n) => Some(n),
            Err(e) => return failed(e.to_string()),
        },
        false => None,
    };
    let notify_dir = notify.as_ref().map(|(dir, _)| dir.clone());
    let join = join.map(|j| starter::Join { pid: j.pid, address: j.address });
    let phase = {
        let (name, tx) = (name.clone(), tx.clone());
        move |phase| {
            let _ = tx.send(Event::Phase { name: name.clone(), generation, phase });
        }
    };
    let pulling = {
        let phase = phase.clone();
        move || phase(StartPhase::Pulling)
    };
    // The turn (a permit of `starts`) first: hundreds of units waiting for
    // theirs hold only their request, not the start's state. The start
    // gives it back when done (and while it pulls): this task goes on to
    // wait for the exit.
    // Boxed: a future is as large as its largest state, and the start's
    // (the prepared plan and spec) would otherwise stay reserved in every
    // container's task for as long as the container runs.
    let Some(turn) = starter::Turn::wait(starts).await else {
        return failed("the supervisor is shutting down".into());
    };
    let request = starter::Request { unit, image, notify_dir, join, instance };
    let starting = move || phase(StartPhase::Starting);
    let start = Box::pin(starter::start(env.clone(), turn, request, pulling, starting));
    let result = start.await.map_err(|e| e.to_string());
    let started = match result {
        Ok(s) => s,
        Err(e) => {
            if let Some((dir, _)) = &notify {
                notify::remove(dir);
            }
            return failed(e);
        }
    };
    let starter::Started {
        container,
        stop_signal,
        image_digest,
        image_health,
        exit,
        stdout,
        stderr,
        veth,
        address,
        ports,
    } = started;
    let pid = container.pid();
    let notify_task = notify.as_ref().map(|(_, socket)| {
        let (tx, name, socket) = (tx.clone(), name.clone(), socket.clone());
        tokio::spawn(async move {
            notify::listen(&socket, |ready, status| {
                let _ = tx.send(Event::Notify { name: name.clone(), generation, ready, status });
            })
            .await
        })
        .abort_handle()
    });
    // The loop's copy of the cgroup (for kill_all, live limits, inspect);
    // the container keeps its own until it is destroyed.
    live.with(&name, generation, |l| {
        l.cgroup = Some(container.cgroup().clone());
        l.tasks.extend(notify_task);
    });
    let log_path = logs::log_path(&log_dir, &name);
    // The output is read even when the log cannot be opened: a container
    // whose pipe is left to fill would block (or die of SIGPIPE).
    // Shared with the unit's other container, if one runs.
    let writer = hub.writer(&name, log_path, limits);
    let copy = tokio::spawn(logs::copy(name.clone(), stdout, stderr, writer, hub));
    let started = Started { pid, stop_signal, image_digest, image_health, address, ports };
    let _ = tx.send(Event::Started { name: name.clone(), generation, outcome: StartOutcome::Running(started) });
    // The exit, then nothing of the container left.
    let status = exit.await.unwrap_or(Exit::Signal(libc::SIGKILL));
    // Boxed too, for the same reason as the start: the clean-up's futures
    // (the bridge's, the runtime's) are only made once the container ended.
    let oom = Box::pin(starter::finish(&env, container, veth.as_deref())).await;
    Box::pin(drain(&name, copy)).await;
    if let Some((dir, _)) = &notify {
        notify::remove(dir);
    }
    live.remove(&name, generation);
    let exit = match status {
        Exit::Code(c) => ExitInfo::code(c, oom, SystemTime::now()),
        Exit::Signal(s) => ExitInfo::signal(s, oom, SystemTime::now()),
    };
    let _ = tx.send(Event::Exited { name, generation, exit });
}

/// How long the exit waits for the output still in the pipes to reach the
/// log once every process of the container is gone. The pipes then hold at
/// most their buffers, written in well under this; a longer wait means a
/// process that inherited the pipe escaped the container.
const DRAIN: Duration = Duration::from_secs(5);

/// Waits for the copy of the output to end before the exit is reported:
/// a restart opens a new writer on the same log file, and two writers
/// would cut each other's records (the torn-tail cut, a failed write's
/// cut-back, a rotation). An escaped holder of the pipe cannot hold the
/// restart: after [`DRAIN`] the copy is aborted (between batches: a
/// record is written whole or not at all), and awaited so that its
/// writer is closed before the exit is reported.
async fn drain(name: &str, mut copy: JoinHandle<()>) {
    if tokio::time::timeout(DRAIN, &mut copy).await.is_ok() {
        return;
    }
    tracing::warn!("{name}: its output is still open {DRAIN:?} after its exit (a process escaped?); no longer logged");
    copy.abort();
    let _ = copy.await;
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::*;

    /// Set when dropped: the copy task's future (and its writer) is gone.
    struct Dropped(Arc<AtomicBool>);

    impl Drop for Dropped {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_exit_waits_for_the_copy_to_end() {
        let done = Arc::new(AtomicBool::new(false));
        let flag = done.clone();
        // Output still draining after the exit, for less than the bound.
        let copy = tokio::spawn(async move {
            tokio::time::sleep(DRAIN / 2).await;
            flag.store(true, Ordering::SeqCst);
        });
        drain("u", copy).await;
        assert!(done.load(Ordering::SeqCst));
    }

    #[tokio::test(start_paused = true)]
    async fn a_copy_held_open_past_the_bound_is_ended_before_the_exit() {
        let gone = Arc::new(AtomicBool::new(false));
        let guard = Dropped(gone.clone());
        let copy = tokio::spawn(async move {
            let _guard = guard;
            std::future::pending::<()>().await;
        });
        let start = tokio::time::Instant::now();
        drain("u", copy).await;
        assert!(start.elapsed() >= DRAIN && start.elapsed() < DRAIN * 2, "{:?}", start.elapsed());
        assert!(gone.load(Ordering::SeqCst), "the copy still runs after the exit");
    }
}
