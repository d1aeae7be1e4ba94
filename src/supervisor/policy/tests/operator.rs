//! The operator's verbs: stop holds a unit across reloads, start and
//! restart give it a new chance.

use super::*;
use crate::supervisor::policy::OpError;

#[test]
fn stop_holds_a_unit_inactive() {
    let mut h = Harness::with(&[("a", PLAIN)]);
    h.run("a");
    h.op(Op::Stop, &["a"]).unwrap();
    assert_eq!(h.reason("a"), "stopped by operator");
    h.exit_stopped();
    assert_eq!(h.state("a"), State::Inactive);
    assert!(h.core.status()[0].held);
}

#[test]
fn a_hold_survives_a_reload_that_would_restart_the_unit() {
    let mut h = Harness::with(&[("a", PLAIN)]);
    h.run("a");
    h.op(Op::Stop, &["a"]).unwrap();
    h.exit_stopped();
    let s = h.files(&[("a", &PLAIN.replace("1000", "5"))]);
    assert_eq!(steps(&s), [("a", "restart")]);
    assert_eq!(h.state("a"), State::Inactive);
    assert_eq!(h.history(), ["start a", "signal a"]);
}

#[test]
fn a_hold_survives_a_reload_while_the_container_still_stops() {
    let mut h = Harness::with(&[("a", PLAIN)]);
    h.run("a");
    h.op(Op::Stop, &["a"]).unwrap();
    h.files(&[("a", &PLAIN.replace("1000", "5"))]);
    h.exit_stopped();
    assert_eq!(h.state("a"), State::Inactive);
    assert_eq!(h.history(), ["start a", "signal a"]);
}

#[test]
fn start_ends_the_hold() {
    let mut h = Harness::with(&[("a", PLAIN)]);
    h.op(Op::Stop, &["a"]).unwrap();
    h.run("a");
    h.exit_stopped();
    let g = h.op(Op::Start, &["a"]).unwrap();
    assert_eq!(g, [("a".to_string(), 1)]);
    assert_eq!(h.state("a"), State::Starting);
    assert!(!h.core.status()[0].held);
}

#[test]
fn restart_stops_then_starts_a_new_generation() {
    let mut h = Harness::with(&[("a", PLAIN)]);
    h.run("a");
    let g = h.op(Op::Restart, &["a"]).unwrap();
    assert_eq!(g, [("a".to_string(), 1)], "the generation a client waits to see passed");
    assert_eq!(h.reason("a"), "restart by operator");
    h.exit_stopped();
    assert_eq!(h.generation("a"), 2);
    assert_eq!(h.history(), ["start a", "signal a", "start a"]);
}

#[test]
fn restart_while_starting_restarts_once_it_has_started() {
    let mut h = Harness::with(&[("a", PLAIN)]);
    h.op(Op::Restart, &["a"]).unwrap();
    assert_eq!(h.state("a"), State::Stopping);
    h.run("a");
    h.exit_stopped();
    assert_eq!(h.history(), ["start a", "signal a", "start a"]);
}

#[test]
fn restart_of_a_unit_without_a_container_starts_it() {
    let mut h = Harness::with(&[("a", &unit("[restart]\npolicy = \"no\"\n"))]);
    h.run("a");
    h.exit("a", 0);
    h.op(Op::Restart, &["a"]).unwrap();
    assert_eq!(h.state("a"), State::Starting);
}

#[test]
fn stop_during_backoff_holds_it_and_the_timer_then_does_nothing() {
    let mut h = Harness::with(&[("a", PLAIN)]);
    h.run("a");
    h.exit("a", 1);
    h.op(Op::Stop, &["a"]).unwrap();
    assert_eq!(h.state("a"), State::Inactive);
    h.advance(secs(10));
    assert_eq!(h.history(), ["start a"]);
}

#[test]
fn start_of_a_failed_unit_starts_it_anew() {
    let mut h = Harness::with(&[("a", &unit("[restart]\npolicy = \"no\"\n"))]);
    h.fail_start("a", "oops");
    h.op(Op::Start, &["a"]).unwrap();
    assert_eq!(h.state("a"), State::Starting);
}

#[test]
fn an_unknown_unit_is_refused_and_nothing_changes() {
    let mut h = Harness::with(&[("a", PLAIN)]);
    let err = h.op(Op::Stop, &["a", "nope"]).unwrap_err();
    assert_eq!(err, OpError::Unknown("nope".into()));
    assert_eq!(err.to_string(), "no unit named \"nope\"");
    assert!(!h.core.status()[0].held, "all or nothing");
}

#[test]
fn a_unit_whose_file_never_loaded_cannot_be_started() {
    let mut h = Harness::with(&[("a", "[container\n")]);
    let err = h.op(Op::Start, &["a"]).unwrap_err().to_string();
    assert!(err.starts_with("a: its unit file is invalid: "), "{err}");
}

#[test]
fn kill_finds_the_running_pid_or_says_why_not() {
    let mut h = Harness::with(&[("a", PLAIN), ("b", PLAIN)]);
    h.run("a");
    assert_eq!(h.core.pid("a"), Ok(101));
    assert_eq!(h.core.pid("b").unwrap_err().to_string(), "b is not running");
    assert_eq!(h.core.pid("c"), Err(OpError::Unknown("c".into())));
}

#[test]
fn holding_a_requirement_stops_its_dependents_first() {
    let mut h = Harness::with(&[("db", PLAIN), ("web", &with_unit("requires = [\"db\"]", ""))]);
    h.run_all();
    let m = h.mark();
    h.op(Op::Stop, &["db"]).unwrap();
    assert_eq!(h.since(m), ["signal web"]);
    assert_eq!(h.reason("web"), "requires db (stopping)");
    h.exit("web", 0);
    assert_eq!(h.since(m), ["signal web", "signal db"]);
    h.exit_stopped();
    assert_eq!(h.state("web"), State::Waiting);
    assert_eq!(h.reason("web"), "requires db (inactive)");
    h.op(Op::Start, &["db"]).unwrap();
    h.run_all();
    assert_eq!(h.state("web"), State::Running);
}

#[test]
fn a_held_unit_is_inactive_even_with_a_failure_behind_it() {
    let mut h = Harness::with(&[("a", &unit("[restart]\npolicy = \"no\"\n"))]);
    h.fail_start("a", "oops");
    h.op(Op::Stop, &["a"]).unwrap();
    assert_eq!(h.state("a"), State::Inactive);
}

#[test]
fn a_dependent_two_links_away_says_which_requirement_goes_down() {
    let mut h = Harness::with(&[
        ("db", PLAIN),
        ("app", &with_unit("requires = [\"db\"]", "")),
        ("web", &with_unit("requires = [\"app\"]", "")),
    ]);
    h.run_all();
    h.op(Op::Stop, &["db"]).unwrap();
    assert_eq!(h.reason("web"), "requires app (stopping)");
    h.exit("web", 0);
    assert_eq!(h.reason("app"), "requires db (stopping)");
}
