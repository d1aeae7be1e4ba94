//! Every state a unit can be in, and every way into it.

use super::*;
use crate::supervisor::policy::Phase;

#[test]
fn a_new_unit_is_started_and_runs() {
    let mut h = Harness::with(&[("a", PLAIN)]);
    assert_eq!(h.history(), ["start a"]);
    assert_eq!(h.state("a"), State::Starting);
    h.run("a");
    assert_eq!(h.state("a"), State::Running);
    let s = &h.core.status()[0];
    assert_eq!((s.pid, s.generation, s.restarts), (Some(101), 1, 0));
    assert_eq!(s.started_at, Some(h.now.wall));
}

#[test]
fn a_start_goes_through_pulling_and_starting() {
    let mut h = Harness::with(&[("a", PLAIN)]);
    let g = h.generation("a");
    h.core.phase("a", g, Phase::Pulling);
    h.converge();
    assert_eq!(h.state("a"), State::Pulling);
    h.core.phase("a", g, Phase::Starting);
    h.converge();
    assert_eq!(h.state("a"), State::Starting);
}

#[test]
fn a_file_that_never_parsed_is_invalid_and_nothing_starts() {
    let h = Harness::with(&[("a", "[container]\nimage = \"busybox\"\nmemroy = 1\n")]);
    assert_eq!(h.state("a"), State::Invalid);
    assert!(h.history().is_empty());
    let s = &h.core.status()[0];
    assert!(s.error.as_deref().is_some_and(|e| e.contains("a.toml:3:1") && e.contains("memroy")), "{s:?}");
}

#[test]
fn a_clean_exit_with_no_policy_is_exited() {
    let mut h = Harness::with(&[("a", &unit("[restart]\npolicy = \"no\"\n"))]);
    h.run("a");
    h.exit("a", 0);
    assert_eq!(h.state("a"), State::Exited);
    assert_eq!(h.reason("a"), "exited 0");
    assert_eq!(h.core.status()[0].exit_code, Some(0));
    h.advance(secs(3600));
    assert_eq!(h.history(), ["start a"], "an exited unit stays so");
}

#[test]
fn a_failure_under_always_backs_off_then_starts_a_new_generation() {
    let mut h = Harness::with(&[("a", PLAIN)]);
    h.run("a");
    h.exit("a", 3);
    assert_eq!(h.state("a"), State::Backoff);
    let s = &h.core.status()[0];
    assert_eq!(s.next_retry, Some(h.now.wall + ms(100)));
    assert_eq!((s.restarts, s.exit_code), (1, Some(3)));
    h.advance(ms(99));
    assert_eq!(h.state("a"), State::Backoff);
    h.advance(ms(1));
    assert_eq!(h.state("a"), State::Starting);
    assert_eq!(h.generation("a"), 2);
}

#[test]
fn a_failed_start_without_a_policy_to_retry_is_failed() {
    let mut h = Harness::with(&[("a", &unit("[restart]\npolicy = \"no\"\n"))]);
    h.fail_start("a", "busybox: not in the store, and pull = \"never\"");
    assert_eq!(h.state("a"), State::Failed);
    let s = &h.core.status()[0];
    assert_eq!(s.error.as_deref(), Some("busybox: not in the store, and pull = \"never\""));
    assert!(h.reason("a").starts_with("start failed: busybox"));
}

#[test]
fn a_failed_start_under_always_is_retried() {
    let mut h = Harness::with(&[("a", PLAIN)]);
    h.fail_start("a", "registry unreachable");
    assert_eq!(h.state("a"), State::Backoff);
    h.advance(ms(100));
    assert_eq!(h.history(), ["start a", "start a"]);
    h.run("a");
    assert_eq!(h.core.status()[0].error, None, "a good start clears the last start error");
}

#[test]
fn a_stop_asked_while_starting_is_sent_once_it_has_started() {
    let mut h = Harness::with(&[("a", PLAIN)]);
    h.op(Op::Stop, &["a"]).unwrap();
    assert_eq!(h.state("a"), State::Stopping);
    assert_eq!(h.history(), ["start a"], "no signal before there is a pid");
    h.run("a");
    assert_eq!(h.history(), ["start a", "signal a"]);
    assert_eq!(h.state("a"), State::Stopping);
    h.exit_stopped();
    assert_eq!(h.state("a"), State::Inactive);
    assert_eq!(h.reason("a"), "killed by SIGTERM");
}

#[test]
fn a_notify_unit_is_starting_until_ready() {
    let mut h = Harness::with(&[("a", &PLAIN.replace("[container]\n", "[container]\nnotify = true\n"))]);
    h.run("a");
    assert_eq!(h.state("a"), State::Starting);
    let g = h.generation("a");
    h.core.notified("a", g, false, Some("warming up".into()));
    h.converge();
    assert_eq!(h.state("a"), State::Starting);
    assert_eq!(h.core.status()[0].notify_status.as_deref(), Some("warming up"));
    h.core.notified("a", g, true, None);
    h.converge();
    assert_eq!(h.state("a"), State::Running);
    assert_eq!(h.core.status()[0].notify_status.as_deref(), Some("warming up"), "kept until replaced");
}

#[test]
fn the_stop_timeout_kills_all_of_a_container_that_does_not_end() {
    let mut h = Harness::with(&[("a", &unit("[stop]\ntimeout = \"2s\"\n"))]);
    h.run("a");
    h.op(Op::Stop, &["a"]).unwrap();
    h.advance(ms(1999));
    assert_eq!(h.history(), ["start a", "signal a"]);
    h.advance(ms(1));
    assert_eq!(h.history(), ["start a", "signal a", "kill a"]);
}

#[test]
fn a_container_that_ends_in_time_is_not_killed() {
    let mut h = Harness::with(&[("a", PLAIN)]);
    h.run("a");
    h.op(Op::Stop, &["a"]).unwrap();
    h.exit_stopped();
    h.advance(secs(60));
    assert_eq!(h.history(), ["start a", "signal a"]);
}

#[test]
fn the_signal_is_the_units_stop_signal_as_the_start_reported_it() {
    let mut h = Harness::with(&[("a", PLAIN)]);
    let g = h.generation("a");
    let started = Started {
        pid: 42,
        stop_signal: libc::SIGQUIT,
        image_digest: "sha256:1".into(),
        image_health: None,
        address: None,
        ports: vec![],
    };
    h.core.started("a", g, StartOutcome::Running(started), h.now);
    h.converge();
    h.op(Op::Stop, &["a"]).unwrap();
    let signal = h.log.iter().find_map(|a| match a {
        Action::Signal { pid, signal, .. } => Some((*pid, *signal)),
        _ => None,
    });
    assert_eq!(signal, Some((42, libc::SIGQUIT)));
}

#[test]
fn events_of_an_older_container_change_nothing() {
    let mut h = Harness::with(&[("a", PLAIN)]);
    h.run("a");
    h.exit("a", 1);
    h.advance(ms(100));
    h.run("a");
    assert_eq!(h.generation("a"), 2);
    h.core.exited("a", 1, ExitInfo::code(9, false, h.now.wall), h.now);
    h.core.started("a", 1, StartOutcome::Failed("late".into()), h.now);
    h.converge();
    assert_eq!(h.state("a"), State::Running);
    assert_eq!(h.core.status()[0].error, None);
}

#[test]
fn a_backoff_timer_of_an_older_generation_does_not_start_it() {
    let mut h = Harness::with(&[("a", &unit("[restart]\ndelay = \"10s\"\nmax_delay = \"10s\"\n"))]);
    h.run("a");
    h.exit("a", 1);
    // The operator starts it at once; it fails again, a new backoff.
    h.op(Op::Start, &["a"]).unwrap();
    h.run("a");
    h.exit("a", 1);
    h.core.backoff_over("a", 1, h.now);
    h.converge();
    assert_eq!(h.state("a"), State::Backoff, "the first backoff's timer is stale");
}

#[test]
fn every_change_of_state_is_emitted_once_with_its_reason() {
    let mut h = Harness::with(&[("a", &unit("[restart]\npolicy = \"no\"\n"))]);
    h.run("a");
    h.exit("a", 2);
    let changes: Vec<(State, State, Option<String>)> = h
        .log
        .iter()
        .filter_map(|a| match a {
            Action::Emit(e) => Some((e.old, e.new, e.reason.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(
        changes,
        [
            (State::Inactive, State::Starting, None),
            (State::Starting, State::Running, None),
            (State::Running, State::Exited, Some("exited 2".into())),
        ]
    );
}

#[test]
fn an_oom_kill_and_a_signal_are_reported_as_such() {
    let mut h = Harness::with(&[("a", &unit("[restart]\npolicy = \"no\"\n"))]);
    h.run("a");
    h.exit_with("a", ExitInfo::signal(libc::SIGKILL, true, h.now.wall));
    let s = &h.core.status()[0];
    assert_eq!((s.signal.as_deref(), s.oom_killed, s.exit_code), (Some("SIGKILL"), true, None));
    assert_eq!(h.reason("a"), "killed by SIGKILL (oom-killed)");
}

#[test]
fn a_removed_unit_is_stopped_then_forgotten() {
    let mut h = Harness::with(&[("a", PLAIN), ("b", PLAIN)]);
    h.run_all();
    h.files(&[("b", PLAIN)]);
    assert_eq!(h.state("a"), State::Stopping);
    assert_eq!(h.reason("a"), "unit file removed");
    h.exit_stopped();
    assert!(h.core.record("a").is_none());
    let last = h.log.iter().rev().find_map(|a| match a {
        Action::Emit(e) if e.unit == "a" => Some((e.new, e.removed)),
        _ => None,
    });
    assert_eq!(last, Some((State::Inactive, true)));
}

#[test]
fn a_unit_without_a_container_and_without_a_file_is_forgotten_at_once() {
    let mut h = Harness::with(&[("a", "not toml [")]);
    assert_eq!(h.state("a"), State::Invalid);
    h.files(&[]);
    assert!(h.core.record("a").is_none());
}
