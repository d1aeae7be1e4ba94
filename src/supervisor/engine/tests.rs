//! The engine loop with a fake backend, without root: events in, calls
//! out, in the order and at the times the loop makes them. Time is
//! tokio's paused clock, so timers fire as soon as the loop is idle.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use tokio::sync::{broadcast, mpsc, oneshot, watch};

use super::*;
use crate::supervisor::policy::lifecycle::{ExitInfo, State};
use crate::supervisor::policy::{ProbeLoop, StartOutcome, Started};
use crate::units::LoadedUnit;

/// What the loop asked of the backend.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Call {
    Start { name: String, generation: u64, command: Vec<String> },
    Signal { name: String, pid: i32, signal: i32 },
    KillAll { name: String },
    Freeze { name: String, frozen: bool },
    Update { name: String, resources: bool },
}

/// A backend that only tells the test what it was asked.
struct Fake {
    calls: mpsc::UnboundedSender<Call>,
}

impl Backend for Fake {
    fn start(&mut self, name: &str, generation: u64, start: Start, _events: &Events) {
        let command = start.unit.unit.container.command.unwrap_or_default();
        let _ = self.calls.send(Call::Start { name: name.into(), generation, command });
    }
    fn switch(&mut self, name: &str, _from: u64, to: u64, events: &Events) {
        let moved = crate::supervisor::policy::Moved { took: std::time::Duration::ZERO, ports: Vec::new() };
        let _ = events.send(Event::Switched { name: name.into(), to, result: Ok(moved) });
    }
    fn signal(&mut self, name: &str, pid: i32, signal: i32) -> std::io::Result<()> {
        let _ = self.calls.send(Call::Signal { name: name.into(), pid, signal });
        Ok(())
    }
    fn kill_all(&mut self, name: &str, _generation: u64) {
        let _ = self.calls.send(Call::KillAll { name: name.into() });
    }
    /// A unit named `nofreezer` stands for a host without the freezer;
    /// one named `slow` for a process stuck in the kernel: its freeze is
    /// done when the test sends [`Event::Frozen`].
    fn freeze(&mut self, name: &str, generation: u64, events: &Events) {
        let _ = self.calls.send(Call::Freeze { name: name.into(), frozen: true });
        let result = match name {
            "slow" => return,
            "nofreezer" => {
                let source = crate::runtime::cgroups::CgroupError::ControllerNotMounted("freezer");
                Err(FreezeError::Cgroup { name: name.into(), source })
            }
            _ => Ok(()),
        };
        let _ = events.send(Event::Frozen { name: name.into(), generation, result });
    }
    fn thaw(&mut self, name: &str, _generation: u64) -> Result<(), FreezeError> {
        let _ = self.calls.send(Call::Freeze { name: name.into(), frozen: false });
        Ok(())
    }
    fn end_tasks(&mut self, _name: &str, _generation: u64) {}
    fn probe(&mut self, _name: &str, _generation: u64, _probe: Option<ProbeLoop>, _events: &Events) {}
    fn update(&mut self, name: &str, _generation: u64, _unit: &LoadedUnit, resources: bool) {
        let _ = self.calls.send(Call::Update { name: name.into(), resources });
    }
    fn inspect(&self, _name: &str, _generation: u64) -> serde_json::Value {
        serde_json::json!({ "usage": null, "cgroup": null })
    }

    fn cgroup(&self, _name: &str, _generation: u64) -> Option<crate::runtime::cgroups::Cgroup> {
        None
    }

    fn dropped_lines(&self, _name: &str) -> u64 {
        0
    }
}

/// A running engine on a unit directory, with the fake's calls.
struct Loop {
    dir: tempfile::TempDir,
    tx: mpsc::UnboundedSender<Event>,
    calls: mpsc::UnboundedReceiver<Call>,
    events: broadcast::Sender<StateEvent>,
    env_files: watch::Receiver<BTreeSet<std::path::PathBuf>>,
    task: tokio::task::JoinHandle<()>,
}

const PLAIN: &str = "[container]\nimage = \"busybox\"\ncommand = [\"sleep\", \"1000\"]\n";

impl Loop {
    async fn start(files: &[(&str, &str)]) -> Loop {
        Loop::counting(files, crate::supervisor::metrics::Counters::default()).await
    }

    /// Started with the daemon's metrics counters.
    async fn counting(files: &[(&str, &str)], counters: crate::supervisor::metrics::Counters) -> Loop {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), files);
        let (tx, rx) = mpsc::unbounded_channel();
        let (calls_tx, calls) = mpsc::unbounded_channel();
        let (events, _) = broadcast::channel(256);
        let (env_tx, env_files) = watch::channel(BTreeSet::new());
        let engine =
            Engine::new(dir.path().to_path_buf(), Fake { calls: calls_tx }, tx.clone(), events.clone(), env_tx)
                .with_metrics(counters);
        let (ready_tx, ready) = oneshot::channel();
        let task = tokio::spawn(engine.run(rx, ready_tx));
        ready.await.unwrap();
        Loop { dir, tx, calls, events, env_files, task }
    }

    async fn call(&mut self) -> Call {
        tokio::time::timeout(Duration::from_secs(3600), self.calls.recv()).await.expect("a call").expect("open")
    }

    /// No call comes while the loop has nothing left to do.
    async fn no_call(&mut self) {
        let status = self.status().await;
        assert!(self.calls.try_recv().is_err(), "unexpected call; status {status:?}");
    }

    fn send(&self, e: Event) {
        self.tx.send(e).unwrap();
    }

    fn started(&self, name: &str, generation: u64, pid: i32) {
        let started = Started {
            pid,
            stop_signal: libc::SIGTERM,
            image_digest: "sha256:0".into(),
            image_health: None,
            address: None,
            ports: vec![],
        };
        self.send(Event::Started { name: name.into(), generation, outcome: StartOutcome::Running(started) });
    }

    fn exited(&self, name: &str, generation: u64, code: i32) {
        self.send(Event::Exited {
            name: name.into(),
            generation,
            exit: ExitInfo::code(code, false, std::time::SystemTime::now()),
        });
    }

    async fn ask<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> Command) -> T {
        let (tx, rx) = oneshot::channel();
        self.send(Event::Command(make(tx)));
        rx.await.unwrap()
    }

    async fn status(&self) -> Vec<(String, State)> {
        self.ask(Command::Status).await.into_iter().map(|s| (s.name, s.state)).collect()
    }

    async fn state(&self, name: &str) -> State {
        self.status().await.into_iter().find(|(n, _)| n == name).map(|(_, s)| s).unwrap()
    }

    fn edit(&self, files: &[(&str, &str)]) {
        write(self.dir.path(), files);
        self.send(Event::Rescan);
    }
}

fn write(dir: &Path, files: &[(&str, &str)]) {
    for e in std::fs::read_dir(dir).unwrap() {
        std::fs::remove_file(e.unwrap().path()).unwrap();
    }
    for (name, body) in files {
        std::fs::write(dir.join(format!("{name}.toml")), body).unwrap();
    }
}

fn start(name: &str, generation: u64, n: &str) -> Call {
    Call::Start { name: name.into(), generation, command: vec!["sleep".into(), n.into()] }
}

fn signal(name: &str, pid: i32) -> Call {
    Call::Signal { name: name.into(), pid, signal: libc::SIGTERM }
}

#[tokio::test(start_paused = true)]
async fn the_units_of_the_directory_are_started_at_once() {
    let mut l = Loop::start(&[("a", PLAIN), ("b", PLAIN)]).await;
    assert_eq!(l.call().await, start("a", 1, "1000"));
    assert_eq!(l.call().await, start("b", 1, "1000"));
    l.started("a", 1, 10);
    assert_eq!(l.state("a").await, State::Running);
    assert_eq!(l.state("b").await, State::Starting);
}

#[tokio::test(start_paused = true)]
async fn an_edit_during_a_pull_starts_the_new_config_only_after_the_old_container_is_gone() {
    let mut l = Loop::start(&[("a", PLAIN)]).await;
    assert_eq!(l.call().await, start("a", 1, "1000"));
    l.send(Event::Phase { name: "a".into(), generation: 1, phase: StartPhase::Pulling });
    assert_eq!(l.state("a").await, State::Pulling);
    l.edit(&[("a", &PLAIN.replace("1000", "2000"))]);
    assert_eq!(l.state("a").await, State::Stopping);
    l.no_call().await;
    l.started("a", 1, 10);
    assert_eq!(l.call().await, signal("a", 10));
    l.exited("a", 1, 143);
    assert_eq!(l.call().await, start("a", 2, "2000"));
}

#[tokio::test(start_paused = true)]
async fn a_crash_during_a_stop_is_not_restarted() {
    let mut l = Loop::start(&[("a", PLAIN)]).await;
    l.call().await;
    l.started("a", 1, 10);
    let answer = l.ask(|tx| Command::Op(Op::Stop, vec!["a".into()], tx)).await.unwrap();
    assert_eq!(answer, [("a".to_string(), 1)]);
    assert_eq!(l.call().await, signal("a", 10));
    l.exited("a", 1, 139);
    assert_eq!(l.state("a").await, State::Inactive);
    tokio::time::sleep(Duration::from_secs(600)).await;
    l.no_call().await;
}

#[tokio::test(start_paused = true)]
async fn a_reload_is_answered_while_a_slow_start_goes_on() {
    let mut l = Loop::start(&[("a", PLAIN)]).await;
    l.call().await;
    write(l.dir.path(), &[("a", &format!("{PLAIN}[resources]\nmemory = \"64M\"\n"))]);
    let steps = l.ask(|tx| Command::Reload(false, tx)).await.unwrap();
    assert_eq!(steps["a"].name(), "live-update");
    assert_eq!(l.call().await, Call::Update { name: "a".into(), resources: true });
    assert_eq!(l.state("a").await, State::Starting, "not restarted: it keeps starting");
    l.started("a", 1, 10);
    assert_eq!(l.state("a").await, State::Running);
    l.no_call().await;
}

#[tokio::test(start_paused = true)]
async fn a_container_that_ignores_its_stop_signal_is_killed_after_the_timeout() {
    let mut l = Loop::start(&[("a", &format!("{PLAIN}[stop]\ntimeout = \"7s\"\n"))]).await;
    l.call().await;
    l.started("a", 1, 10);
    l.ask(|tx| Command::Op(Op::Stop, vec!["a".into()], tx)).await.unwrap();
    assert_eq!(l.call().await, signal("a", 10));
    let before = tokio::time::Instant::now();
    assert_eq!(l.call().await, Call::KillAll { name: "a".into() });
    assert_eq!(before.elapsed(), Duration::from_secs(7));
}

#[tokio::test(start_paused = true)]
async fn a_crashed_container_is_started_again_after_its_backoff() {
    let mut l = Loop::start(&[("a", &format!("{PLAIN}[restart]\ndelay = \"3s\"\n"))]).await;
    l.call().await;
    l.started("a", 1, 10);
    l.exited("a", 1, 1);
    assert_eq!(l.state("a").await, State::Backoff);
    let before = tokio::time::Instant::now();
    assert_eq!(l.call().await, start("a", 2, "1000"));
    // The delay, and up to a tenth more of jitter.
    let waited = before.elapsed();
    assert!(waited >= Duration::from_secs(3) && waited < Duration::from_millis(3300), "{waited:?}");
}

#[tokio::test(start_paused = true)]
async fn kill_signals_the_running_container_or_says_why_not() {
    let mut l = Loop::start(&[("a", PLAIN), ("b", PLAIN)]).await;
    l.call().await;
    l.call().await;
    l.started("a", 1, 10);
    l.ask(|tx| Command::Kill("a".into(), libc::SIGHUP, tx)).await.unwrap();
    assert_eq!(l.call().await, Call::Signal { name: "a".into(), pid: 10, signal: libc::SIGHUP });
    let err = l.ask(|tx| Command::Kill("b".into(), libc::SIGHUP, tx)).await.unwrap_err();
    assert_eq!(err.to_string(), "b is not running");
    let err = l.ask(|tx| Command::Kill("zz".into(), libc::SIGHUP, tx)).await.unwrap_err();
    assert_eq!(err.to_string(), "no unit named \"zz\"");
}

#[tokio::test(start_paused = true)]
async fn shutdown_stops_dependents_first_and_ends_the_loop_when_all_are_gone() {
    let web = format!("[unit]\nrequires = [\"db\"]\n{PLAIN}");
    let mut l = Loop::start(&[("db", PLAIN), ("web", &web)]).await;
    assert_eq!(l.call().await, start("db", 1, "1000"));
    l.started("db", 1, 10);
    assert_eq!(l.call().await, start("web", 1, "1000"));
    l.started("web", 1, 11);
    let (done_tx, mut done) = oneshot::channel();
    l.send(Event::Shutdown(done_tx));
    assert_eq!(l.call().await, signal("web", 11));
    l.no_call().await;
    l.exited("web", 1, 0);
    assert_eq!(l.call().await, signal("db", 10));
    assert_eq!(done.try_recv(), Err(oneshot::error::TryRecvError::Empty), "shutdown answered before db ended");
    l.exited("db", 1, 0);
    done.await.unwrap();
    l.task.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn state_changes_are_broadcast_as_they_happen() {
    let mut l = Loop::start(&[("a", PLAIN)]).await;
    let mut rx = l.events.subscribe();
    l.call().await;
    l.started("a", 1, 10);
    let e = rx.recv().await.unwrap();
    assert_eq!((e.unit.as_str(), e.old, e.new, e.generation), ("a", State::Starting, State::Running, 1));
    l.edit(&[]);
    let e = rx.recv().await.unwrap();
    assert_eq!((e.new, e.reason.as_deref()), (State::Stopping, Some("unit file removed")));
    l.exited("a", 1, 0);
    let e = rx.recv().await.unwrap();
    assert_eq!((e.new, e.removed), (State::Inactive, true));
    assert!(l.status().await.is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_directory_that_cannot_be_read_keeps_every_unit_as_it_is() {
    let mut l = Loop::start(&[("a", PLAIN)]).await;
    l.call().await;
    l.started("a", 1, 10);
    let dir = l.dir.path().to_path_buf();
    std::fs::rename(&dir, dir.with_extension("gone")).unwrap();
    let err = l.ask(|tx| Command::Reload(false, tx)).await.unwrap_err();
    assert!(err.to_string().starts_with(&dir.display().to_string()), "{err}");
    assert_eq!(l.state("a").await, State::Running);
    l.no_call().await;
    std::fs::rename(dir.with_extension("gone"), &dir).unwrap();
}

#[tokio::test(start_paused = true)]
async fn the_env_files_to_watch_follow_the_units() {
    let env_dir = tempfile::tempdir().unwrap();
    let env = env_dir.path().join("a.env");
    std::fs::write(&env, "A=1\n").unwrap();
    let body = PLAIN.replace("[container]\n", &format!("[container]\nenv_file = \"{}\"\n", env.display()));
    let mut l = Loop::start(&[("a", &body)]).await;
    assert_eq!(l.env_files.borrow_and_update().iter().collect::<Vec<_>>(), [&env]);
    l.call().await;
}

#[tokio::test(start_paused = true)]
async fn rollback_and_new_images_are_answered_by_the_core_and_a_trial_replaces_the_container() {
    let follows = format!("{PLAIN}[update]\nauto = \"registry\"\n");
    let mut l = Loop::start(&[("a", &follows), ("b", PLAIN)]).await;
    l.call().await;
    l.call().await;
    l.started("a", 1, 10);
    let err = l.ask(|tx| Command::Rollback("a".into(), tx)).await.unwrap_err();
    assert!(err.to_string().starts_with("a has no previous config to roll back to"), "{err}");
    let err = l.ask(|tx| Command::Rollback("zz".into(), tx)).await.unwrap_err();
    assert_eq!(err.to_string(), "no unit named \"zz\"");
    // The image it runs: nothing to do.
    let same = l.ask(|tx| Command::RollImage("a".into(), "sha256:0".into(), tx)).await.unwrap();
    assert_eq!(same, Rolled { changed: false, trial: false });
    let new = l.ask(|tx| Command::RollImage("a".into(), "sha256:1".into(), tx)).await.unwrap();
    assert_eq!(new, Rolled { changed: true, trial: true });
    assert_eq!(l.call().await, signal("a", 10), "stop-first: the old container is stopped");
    let targets = l.ask(Command::UpdateTargets).await;
    let a = targets.iter().find(|t| t.name == "a").unwrap();
    assert!(a.auto && a.in_progress && a.rejected.is_none(), "{a:?}");
    let b = targets.iter().find(|t| t.name == "b").unwrap();
    assert!(!b.auto && !b.in_progress, "{b:?}");
    let err = l.ask(|tx| Command::RollImage("a".into(), "sha256:2".into(), tx)).await.unwrap_err();
    assert!(err.to_string().contains("an update is in progress"), "{err}");
}

#[tokio::test(start_paused = true)]
async fn pause_freezes_before_it_answers_and_a_stop_thaws_before_its_signal() {
    let mut l = Loop::start(&[("a", PLAIN), ("b", PLAIN), ("nofreezer", PLAIN)]).await;
    for _ in 0..3 {
        l.call().await;
    }
    l.started("a", 1, 10);
    l.started("nofreezer", 1, 12);
    l.ask(|tx| Command::Pause("a".into(), true, tx)).await.unwrap();
    assert_eq!(l.call().await, Call::Freeze { name: "a".into(), frozen: true });
    assert_eq!(l.state("a").await, State::Paused);
    // Twice is no error, and freezes nothing more.
    l.ask(|tx| Command::Pause("a".into(), true, tx)).await.unwrap();
    let err = l.ask(|tx| Command::Pause("b".into(), true, tx)).await.unwrap_err();
    assert_eq!(err.to_string(), "b is starting: only a running unit can be paused");
    let err = l.ask(|tx| Command::Pause("nofreezer".into(), true, tx)).await.unwrap_err();
    assert_eq!(err.to_string(), "nofreezer: the cgroup v1 freezer controller is not mounted");
    assert_eq!(l.call().await, Call::Freeze { name: "nofreezer".into(), frozen: true });
    assert_eq!(l.state("nofreezer").await, State::Running, "a refused freeze changes nothing");
    let err = l.ask(|tx| Command::Pause("nofreezer".into(), false, tx)).await.unwrap_err();
    assert_eq!(err.to_string(), "nofreezer is not paused");
    let err = l.ask(|tx| Command::Kill("a".into(), libc::SIGHUP, tx)).await.unwrap_err();
    assert_eq!(err.to_string(), "a is paused: unpause it first");
    l.no_call().await;
    l.ask(|tx| Command::Op(Op::Stop, vec!["a".into()], tx)).await.unwrap();
    assert_eq!(l.call().await, Call::Freeze { name: "a".into(), frozen: false });
    assert_eq!(l.call().await, signal("a", 10));
    l.exited("a", 1, 143);
    assert_eq!(l.state("a").await, State::Inactive);
}

#[tokio::test(start_paused = true)]
async fn a_slow_freeze_does_not_hold_the_loop_and_a_stop_meanwhile_thaws_it_again() {
    let mut l = Loop::start(&[("slow", PLAIN)]).await;
    l.call().await;
    l.started("slow", 1, 10);
    let (tx, first) = oneshot::channel();
    l.send(Event::Command(Command::Pause("slow".into(), true, tx)));
    assert_eq!(l.call().await, Call::Freeze { name: "slow".into(), frozen: true });
    // The loop answers while the kernel freezes; a second pause waits
    // for the same freeze.
    assert_eq!(l.state("slow").await, State::Running);
    let (tx, second) = oneshot::channel();
    l.send(Event::Command(Command::Pause("slow".into(), true, tx)));
    l.no_call().await;
    // Stopped meanwhile: its signal goes out, and once the freeze is
    // done it is thawed again, so that the signal reaches it.
    l.ask(|tx| Command::Op(Op::Stop, vec!["slow".into()], tx)).await.unwrap();
    assert_eq!(l.call().await, signal("slow", 10));
    l.send(Event::Frozen { name: "slow".into(), generation: 1, result: Ok(()) });
    assert_eq!(l.call().await, Call::Freeze { name: "slow".into(), frozen: false });
    for answer in [first, second] {
        assert_eq!(answer.await.unwrap().unwrap_err().to_string(), "slow is not running");
    }
    assert_eq!(l.state("slow").await, State::Stopping);
    l.exited("slow", 1, 143);
    assert_eq!(l.state("slow").await, State::Inactive);
}

#[tokio::test(start_paused = true)]
async fn unpause_thaws_and_the_unit_runs_again() {
    let mut l = Loop::start(&[("a", PLAIN)]).await;
    l.call().await;
    l.started("a", 1, 10);
    l.ask(|tx| Command::Pause("a".into(), true, tx)).await.unwrap();
    assert_eq!(l.call().await, Call::Freeze { name: "a".into(), frozen: true });
    l.ask(|tx| Command::Pause("a".into(), false, tx)).await.unwrap();
    assert_eq!(l.call().await, Call::Freeze { name: "a".into(), frozen: false });
    assert_eq!(l.state("a").await, State::Running);
    let err = l.ask(|tx| Command::Pause("a".into(), false, tx)).await.unwrap_err();
    assert_eq!(err.to_string(), "a is not paused");
    l.no_call().await;
}

#[tokio::test(start_paused = true)]
async fn the_metrics_sample_has_each_unit_and_the_loop_counts_its_passes_and_reloads() {
    let counters = crate::supervisor::metrics::Counters::default();
    let mut l = Loop::counting(&[("a", PLAIN)], counters.clone()).await;
    assert_eq!(l.call().await, start("a", 1, "1000"));
    l.started("a", 1, 10);
    // Killed by SIGKILL: reported as a shell would, 128 + 9.
    l.send(Event::Exited {
        name: "a".into(),
        generation: 1,
        exit: ExitInfo::signal(9, true, std::time::SystemTime::now()),
    });
    let sample = l.ask(Command::Sample).await;
    assert_eq!(sample.len(), 1);
    let a = &sample[0];
    assert_eq!((a.name.as_str(), a.state, a.restarts, a.oom_kills), ("a", State::Backoff, 1, 1));
    assert_eq!(a.last_exit_code, Some(137));
    assert_eq!((a.netns_pid, a.started_at, a.health), (None, None, None));
    let text = crate::supervisor::metrics::exposition(
        crate::supervisor::metrics::Units { units: Vec::new(), now: std::time::SystemTime::now() },
        &counters,
        true,
    );
    // The first reading of the directory, and one pass per event since.
    let count = text.lines().find_map(|l| l.strip_prefix("supervisor_reconcile_duration_seconds_count "));
    assert!(count.and_then(|c| c.parse::<u64>().ok()).is_some_and(|c| c >= 3), "{text}");
    let reload = text.lines().find_map(|l| l.strip_prefix("supervisor_last_reload_success_timestamp_seconds "));
    assert!(reload.and_then(|t| t.parse::<f64>().ok()).is_some_and(|t| t > 1.7e9), "{text}");
}

#[tokio::test(start_paused = true)]
async fn a_burst_of_reports_is_decided_on_once_and_each_change_is_still_reported() {
    let counters = crate::supervisor::metrics::Counters::default();
    let mut l = Loop::counting(&[("a", PLAIN), ("b", PLAIN), ("c", PLAIN)], counters.clone()).await;
    for name in ["a", "b", "c"] {
        assert_eq!(l.call().await, start(name, 1, "1000"));
    }
    let passes = || {
        let text = crate::supervisor::metrics::exposition(
            crate::supervisor::metrics::Units { units: Vec::new(), now: std::time::SystemTime::now() },
            &counters,
            true,
        );
        text.lines()
            .find_map(|l| l.strip_prefix("supervisor_reconcile_duration_seconds_count "))
            .and_then(|c| c.parse::<u64>().ok())
            .expect("the pass count")
    };
    let before = passes();
    let mut events = l.events.subscribe();
    // Four reports queued before the loop runs again: a starts and ends
    // within the burst.
    l.started("a", 1, 10);
    l.started("b", 1, 11);
    l.started("c", 1, 12);
    l.exited("a", 1, 1);
    assert_eq!(l.state("b").await, State::Running);
    // One pass for the four reports, one for the status command.
    assert_eq!(passes() - before, 2);
    let mut seen = Vec::new();
    while let Ok(e) = events.try_recv() {
        seen.push(format!("{} {}->{}", e.unit, e.old, e.new));
    }
    // a's running is reported though it exited in the same burst; the
    // changes come in the order of the reports.
    assert_eq!(
        seen[..4],
        ["a starting->running", "b starting->running", "c starting->running", "a running->backoff"],
        "{seen:?}"
    );
}
