//! The one reaper: a single `waitpid(-1)` loop owns every child's exit
//! (containers, helpers, and, as PID 1 or subreaper, every orphan) and
//! hands it to whoever registered the pid. Nothing else may wait for
//! children: two waiters race, and the loser sees ECHILD or, worse, a
//! recycled pid.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::oneshot;

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Code(i32),
    Signal(i32),
}

impl Exit {
    /// The shell's view: the code, or 128 + the signal.
    pub fn status(self) -> i32 {
        match self {
            Exit::Code(c) => c,
            Exit::Signal(s) => 128 + s,
        }
    }
}

/// How long an exit nobody waited for is kept for a late watcher.
const UNCLAIMED_FOR: Duration = Duration::from_secs(2);

#[derive(Default)]
struct Table {
    waiting: HashMap<i32, oneshot::Sender<Exit>>,
    /// Exits reaped before their pid was watched (a process started with
    /// `std::process::Command` may end before `watch` is called), briefly.
    unclaimed: HashMap<i32, (Exit, Instant)>,
}

#[derive(Clone, Default)]
pub struct Reaper {
    table: Arc<Mutex<Table>>,
    task: Option<Arc<tokio::task::AbortHandle>>,
}

impl Reaper {
    /// Starts reaping on the current tokio runtime. Must be called before
    /// the first child is made, so that no SIGCHLD is missed.
    pub fn start() -> std::io::Result<Reaper> {
        let mut sigchld = signal(SignalKind::child())?;
        let mut reaper = Reaper::default();
        let r = reaper.clone();
        let task = tokio::spawn(async move {
            loop {
                r.reap();
                if sigchld.recv().await.is_none() {
                    return;
                }
            }
        });
        reaper.task = Some(Arc::new(task.abort_handle()));
        Ok(reaper)
    }

    /// Stops reaping (a new reaper takes over).
    pub fn stop(&self) {
        if let Some(t) = &self.task {
            t.abort();
        }
    }

    /// Registers `pid`: its exit is sent to the receiver. Register right
    /// after the process is made: an exit reaped up to a moment before is
    /// still handed over (pids are not reused that fast).
    pub fn watch(&self, pid: i32) -> oneshot::Receiver<Exit> {
        let (tx, rx) = oneshot::channel();
        let mut t = self.table.lock().unwrap_or_else(|e| e.into_inner());
        match t.unclaimed.remove(&pid) {
            Some((exit, _)) => {
                let _ = tx.send(exit);
            }
            None => {
                t.waiting.insert(pid, tx);
            }
        }
        rx
    }

    /// Reaps every child that has ended.
    fn reap(&self) {
        loop {
            let (pid, exit) = match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(pid, code)) => (pid, Exit::Code(code)),
                Ok(WaitStatus::Signaled(pid, sig, _)) => (pid, Exit::Signal(sig as i32)),
                Ok(WaitStatus::StillAlive) | Err(nix::errno::Errno::ECHILD) => return,
                Ok(_) | Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => {
                    tracing::error!("waitpid: {e}");
                    return;
                }
            };
            let mut t = self.table.lock().unwrap_or_else(|e| e.into_inner());
            match t.waiting.remove(&pid.as_raw()) {
                Some(tx) => {
                    let _ = tx.send(exit);
                }
                None => {
                    let now = Instant::now();
                    t.unclaimed.retain(|_, (_, at)| now.duration_since(*at) < UNCLAIMED_FOR);
                    t.unclaimed.insert(pid.as_raw(), (exit, now));
                }
            }
        }
    }
}
