//! `pause` and `unpause`: a frozen container is held as it is (no probes,
//! no restart policy), thawed before any stop, and dropped with its
//! container when a changed unit replaces it.

use super::*;
use crate::supervisor::policy::OpError;

fn checked(extra: &str) -> String {
    unit(&format!("[health]\nexec = [\"pg_isready\"]\ninterval = \"1s\"\nretries = 2\n{extra}"))
}

/// The probe loops asked for `name`, as `Some(interval)` or `None` (ended).
fn probe_loops(h: &Harness, name: &str, from: usize) -> Vec<Option<Duration>> {
    h.log[from..]
        .iter()
        .filter_map(|a| match a {
            Action::Probe { name: n, probe, .. } if n == name => Some(probe.as_ref().map(|p| p.check.interval)),
            _ => None,
        })
        .collect()
}

#[test]
fn pause_makes_a_running_unit_paused_and_unpause_makes_it_running() {
    let mut h = Harness::with(&[("a", PLAIN)]);
    h.run("a");
    h.pause("a").unwrap();
    assert_eq!(h.state("a"), State::Paused);
    assert_eq!(h.reason("a"), "paused by operator");
    let status = &h.core.status()[0];
    assert_eq!(status.state.name(), "paused");
    assert!(status.pid.is_some(), "a paused unit still has its container");
    h.pause("a").unwrap();
    assert_eq!(h.state("a"), State::Paused, "pausing twice is no error");
    h.unpause("a").unwrap();
    assert_eq!(h.state("a"), State::Running);
    assert_eq!(h.unpause("a"), Err(OpError::NotPaused("a".into())));
    assert_eq!(h.history(), ["start a"], "nothing was stopped or started");
}

#[test]
fn only_a_running_unit_can_be_paused() {
    let mut h = Harness::with(&[("a", PLAIN), ("b", PLAIN)]);
    h.run("a");
    let err = h.pause("b").unwrap_err();
    assert_eq!(err.to_string(), "b is starting: only a running unit can be paused");
    h.op(Op::Stop, &["a"]).unwrap();
    assert_eq!(h.pause("a").unwrap_err().to_string(), "a is stopping: only a running unit can be paused");
    h.exit_stopped();
    assert_eq!(h.pause("a").unwrap_err().to_string(), "a is inactive: only a running unit can be paused");
    assert_eq!(h.pause("zz"), Err(OpError::Unknown("zz".into())));
    assert_eq!(h.unpause("a"), Err(OpError::NotPaused("a".into())));
}

#[test]
fn a_paused_unit_is_not_restarted_by_its_failing_probes() {
    let mut h = Harness::with(&[("a", &checked("[restart]\npolicy = \"always\"\n"))]);
    h.run("a");
    h.probe("a", true);
    let mark = h.mark();
    h.pause("a").unwrap();
    assert_eq!(probe_loops(&h, "a", mark), [None], "its probe loop ends");
    // Results that were on their way when it froze.
    for _ in 0..5 {
        h.advance(secs(1));
        h.probe("a", false);
    }
    h.advance(secs(600));
    assert_eq!(h.state("a"), State::Paused);
    assert_eq!(h.core.status()[0].health.as_deref(), Some("healthy"), "the health it had");
    let r = h.core.record("a").unwrap();
    assert!(r.run().unwrap().running().unwrap().health.as_ref().unwrap().1.failures() == 0);
    assert_eq!(h.history(), ["start a"]);
    let mark = h.mark();
    h.unpause("a").unwrap();
    assert_eq!(probe_loops(&h, "a", mark), [Some(secs(1))], "its probes run again");
    // Probes count again once it runs.
    h.probe("a", false);
    h.probe("a", false);
    assert_eq!(h.state("a"), State::Stopping);
}

#[test]
fn a_paused_unit_killed_from_outside_is_not_restarted() {
    let mut h = Harness::with(&[("a", &unit("[restart]\npolicy = \"always\"\n"))]);
    h.run("a");
    h.pause("a").unwrap();
    h.exit_with("a", ExitInfo::signal(libc::SIGKILL, false, h.now.wall));
    h.advance(secs(600));
    assert_eq!(h.state("a"), State::Exited);
    assert_eq!(h.reason("a"), "killed by SIGKILL while paused");
    assert_eq!(h.history(), ["start a"]);
    // A start is the operator's new chance.
    h.op(Op::Start, &["a"]).unwrap();
    assert_eq!(h.state("a"), State::Starting);
}

#[test]
fn stopping_a_paused_unit_thaws_it_before_its_stop_signal() {
    let mut h = Harness::with(&[("a", PLAIN)]);
    h.run("a");
    h.pause("a").unwrap();
    h.op(Op::Stop, &["a"]).unwrap();
    assert_eq!(h.history(), ["start a", "thaw a", "signal a"]);
    assert_eq!(h.state("a"), State::Stopping);
    h.exit_stopped();
    assert_eq!(h.state("a"), State::Inactive);
}

#[test]
fn a_removed_file_and_a_shutdown_thaw_a_paused_unit_too() {
    let mut h = Harness::with(&[("a", PLAIN), ("b", PLAIN)]);
    h.run_all();
    h.pause("a").unwrap();
    h.pause("b").unwrap();
    h.files(&[("b", PLAIN)]);
    assert_eq!(h.history(), ["start a", "start b", "thaw a", "signal a"]);
    h.exit_stopped();
    let mark = h.mark();
    h.shutdown();
    assert_eq!(h.since(mark), ["thaw b", "signal b"]);
}

#[test]
fn restart_of_a_paused_unit_thaws_stops_and_starts_an_unpaused_one() {
    let mut h = Harness::with(&[("a", PLAIN)]);
    h.run("a");
    h.pause("a").unwrap();
    h.op(Op::Restart, &["a"]).unwrap();
    h.exit_stopped();
    h.run("a");
    assert_eq!(h.history(), ["start a", "thaw a", "signal a", "start a"]);
    assert_eq!(h.state("a"), State::Running);
}

#[test]
fn start_of_a_paused_unit_says_to_unpause_it() {
    let mut h = Harness::with(&[("a", PLAIN)]);
    h.run("a");
    h.pause("a").unwrap();
    assert_eq!(h.op(Op::Start, &["a"]), Err(OpError::Paused("a".into())));
    assert_eq!(h.state("a"), State::Paused);
}

#[test]
fn a_reload_that_keeps_the_container_keeps_it_paused() {
    let mut h = Harness::with(&[("a", &checked(""))]);
    h.run("a");
    h.pause("a").unwrap();
    let s = h.files(&[("a", &checked(""))]);
    assert_eq!(steps(&s), [("a", "keep")]);
    assert_eq!(h.state("a"), State::Paused);
    // A live update and a new [health] apply to the frozen container; its
    // probe loop waits for the unpause.
    let mark = h.mark();
    let edited = checked("").replace("interval = \"1s\"", "interval = \"5s\"") + "[resources]\nmemory = \"64M\"\n";
    let s = h.files(&[("a", &edited)]);
    assert_eq!(steps(&s), [("a", "live-update")]);
    assert_eq!(h.state("a"), State::Paused);
    assert_eq!(h.since(mark), ["update a live"]);
    assert!(probe_loops(&h, "a", mark).is_empty(), "no probe loop while paused");
    let mark = h.mark();
    h.unpause("a").unwrap();
    assert_eq!(probe_loops(&h, "a", mark), [Some(secs(5))], "the new check runs from the unpause");
}

#[test]
fn a_changed_unit_replaces_the_paused_container_with_a_running_one() {
    let mut h = Harness::with(&[("a", PLAIN)]);
    h.run("a");
    h.pause("a").unwrap();
    let s = h.files(&[("a", &PLAIN.replace("1000", "5"))]);
    assert_eq!(steps(&s), [("a", "restart")]);
    h.exit_stopped();
    h.run("a");
    assert_eq!(h.history(), ["start a", "thaw a", "signal a", "start a"]);
    assert_eq!(h.state("a"), State::Running, "the pause went with its container");
}

#[test]
fn a_paused_requirement_keeps_its_running_dependents_and_holds_new_ones() {
    let web = with_unit("requires = [\"db\"]", "");
    let mut h = Harness::with(&[("db", PLAIN), ("web", &web)]);
    h.run_all();
    h.pause("db").unwrap();
    assert_eq!(h.state("web"), State::Running, "a running dependent is not stopped");
    h.op(Op::Restart, &["web"]).unwrap();
    h.exit_stopped();
    assert_eq!(h.state("web"), State::Waiting);
    assert_eq!(h.reason("web"), "requires db (paused)");
    h.unpause("db").unwrap();
    h.run_all();
    assert_eq!(h.state("web"), State::Running);
}

#[test]
fn a_unit_whose_update_is_on_trial_cannot_be_paused() {
    let mut h = Harness::with(&[("a", &unit("[update]\nhealthy_within = \"1m\"\nmin_healthy = \"10s\"\n"))]);
    h.run("a");
    h.files(&[("a", &unit("[update]\nhealthy_within = \"1m\"\nmin_healthy = \"10s\"\n").replace("1000", "5"))]);
    h.exit_stopped();
    h.run("a");
    assert_eq!(h.pause("a"), Err(OpError::Updating("a".into())));
    h.advance(secs(11));
    h.pause("a").unwrap();
    assert_eq!(h.state("a"), State::Paused);
}
