//! Restart policy and backoff: delay, doubling, cap, reset, limit.

use super::*;

fn crash_loop(policy: &str) -> Harness {
    Harness::with(&[("a", &unit(&format!("[restart]\n{policy}\n")))])
}

/// Runs `a`, lets it fail, and returns the delay before its next start.
fn fail_and_measure(h: &mut Harness) -> Duration {
    h.run("a");
    h.exit("a", 1);
    let until = match h.core.record("a").unwrap().rest() {
        Some(crate::supervisor::policy::Rest::Backoff { until, .. }) => until,
        other => panic!("not in backoff: {other:?}"),
    };
    let delay = until - h.now.mono;
    h.advance(delay);
    delay
}

#[test]
fn the_delay_doubles_up_to_the_maximum() {
    let mut h = crash_loop("delay = \"100ms\"\nmax_delay = \"1s\"");
    let delays: Vec<Duration> = (0..7).map(|_| fail_and_measure(&mut h)).collect();
    assert_eq!(delays, [ms(100), ms(200), ms(400), ms(800), secs(1), secs(1), secs(1)]);
}

#[test]
fn good_running_for_reset_after_starts_the_curve_again() {
    let mut h = crash_loop("delay = \"100ms\"\nreset_after = \"10s\"");
    assert_eq!(fail_and_measure(&mut h), ms(100));
    assert_eq!(fail_and_measure(&mut h), ms(200));
    h.run("a");
    h.advance(secs(10));
    h.exit("a", 1);
    h.advance(ms(100));
    assert_eq!(h.state("a"), State::Starting, "back to the first delay");
}

#[test]
fn running_just_short_of_reset_after_keeps_the_curve() {
    let mut h = crash_loop("delay = \"100ms\"\nreset_after = \"10s\"");
    fail_and_measure(&mut h);
    h.run("a");
    h.advance(ms(9999));
    h.exit("a", 1);
    h.advance(ms(100));
    assert_eq!(h.state("a"), State::Backoff);
    h.advance(ms(100));
    assert_eq!(h.state("a"), State::Starting);
}

#[test]
fn the_limit_allows_that_many_restarts_in_a_row_then_fails() {
    let mut h = crash_loop("limit = 2");
    fail_and_measure(&mut h);
    fail_and_measure(&mut h);
    h.run("a");
    h.exit("a", 1);
    assert_eq!(h.state("a"), State::Failed);
    assert_eq!(h.reason("a"), "restart limit reached; last: exited 1");
    assert_eq!(h.core.status()[0].restarts, 2);
    h.advance(secs(3600));
    assert_eq!(h.history().len(), 3, "a failed unit stays failed");
}

#[test]
fn failed_starts_count_towards_the_limit() {
    let mut h = crash_loop("limit = 1");
    h.fail_start("a", "pull failed");
    h.advance(ms(100));
    h.fail_start("a", "pull failed");
    assert_eq!(h.state("a"), State::Failed);
    assert_eq!(h.reason("a"), "restart limit reached; last: start failed: pull failed");
}

#[test]
fn on_failure_leaves_a_clean_exit_alone() {
    let mut h = crash_loop("policy = \"on-failure\"");
    h.run("a");
    h.exit("a", 0);
    assert_eq!(h.state("a"), State::Exited);
}

const T: std::time::SystemTime = std::time::SystemTime::UNIX_EPOCH;

#[test]
fn on_failure_restarts_a_non_zero_exit_a_signal_and_an_oom_kill() {
    for exit in [ExitInfo::code(1, false, T), ExitInfo::signal(libc::SIGSEGV, false, T), ExitInfo::code(0, true, T)] {
        let mut h = crash_loop("policy = \"on-failure\"");
        h.run("a");
        h.exit_with("a", exit.clone());
        assert_eq!(h.state("a"), State::Backoff, "{exit:?}");
    }
}

#[test]
fn always_restarts_a_clean_exit_too() {
    let mut h = crash_loop("policy = \"always\"");
    h.run("a");
    h.exit("a", 0);
    assert_eq!(h.state("a"), State::Backoff);
}

#[test]
fn no_never_restarts() {
    let mut h = crash_loop("policy = \"no\"");
    h.run("a");
    h.exit("a", 1);
    assert_eq!(h.state("a"), State::Exited);
    assert_eq!(h.core.status()[0].restarts, 0);
}

#[test]
fn the_restart_count_grows_with_each_restart() {
    let mut h = crash_loop("delay = \"1s\"");
    for _ in 0..3 {
        fail_and_measure(&mut h);
    }
    assert_eq!(h.core.status()[0].restarts, 3);
    assert_eq!(h.generation("a"), 4);
}

#[test]
fn an_operator_start_clears_a_failure_and_the_count_in_a_row() {
    let mut h = crash_loop("limit = 1");
    fail_and_measure(&mut h);
    h.run("a");
    h.exit("a", 1);
    assert_eq!(h.state("a"), State::Failed);
    h.op(Op::Start, &["a"]).unwrap();
    assert_eq!(h.state("a"), State::Starting);
    // One restart in a row is allowed again.
    h.run("a");
    h.exit("a", 1);
    assert_eq!(h.state("a"), State::Backoff);
}

#[test]
fn a_stop_asked_for_is_not_a_failure() {
    let mut h = crash_loop("limit = 1");
    h.run("a");
    h.op(Op::Restart, &["a"]).unwrap();
    h.exit_with("a", ExitInfo::code(137, false, h.now.wall));
    assert_eq!(h.state("a"), State::Starting);
    assert_eq!(h.core.status()[0].restarts, 0);
}

#[test]
fn the_exit_history_keeps_the_last_five() {
    let mut h = crash_loop("delay = \"1ms\"\nmax_delay = \"1ms\"");
    for code in 1..=7 {
        h.run("a");
        h.exit("a", code);
        h.advance(ms(1));
    }
    let codes: Vec<i32> = h.core.record("a").unwrap().history.iter().filter_map(|e| e.exit_code).collect();
    assert_eq!(codes, [3, 4, 5, 6, 7]);
}

#[test]
fn the_jitter_of_the_event_lengthens_the_delay_by_up_to_a_tenth() {
    let mut h = crash_loop("delay = \"1s\"\nmax_delay = \"1m\"");
    h.run("a");
    h.now.jitter = 0.5;
    h.exit("a", 1);
    h.advance(ms(1049));
    assert_eq!(h.state("a"), State::Backoff);
    h.advance(ms(1));
    assert_eq!(h.state("a"), State::Starting);
}

/// When the delay each unit's backoff gives it ends, or None if not in backoff.
fn retry_at(h: &Harness, name: &str) -> Option<std::time::Instant> {
    match h.core.record(name).unwrap().rest() {
        Some(crate::supervisor::policy::Rest::Backoff { until, .. }) => Some(until),
        _ => None,
    }
}

#[test]
fn a_fleet_crashing_at_once_is_restarted_at_a_bounded_pace() {
    use crate::supervisor::policy::lifecycle::Pace;
    let names: Vec<String> = (0..40).map(|i| format!("u{i:02}")).collect();
    let body = unit("[restart]\ndelay = \"100ms\"\n");
    let files: Vec<(&str, &str)> = names.iter().map(|n| (n.as_str(), body.as_str())).collect();
    let mut h = Harness::with(&files);
    h.run_all();
    let t0 = h.now.mono;
    for n in &names {
        h.exit(n, 1);
    }
    // Every own delay (100 ms and up to a tenth of jitter) is over: the
    // first BURST restart at once, the others wait for a turn each.
    h.advance(ms(111));
    let waiting: Vec<&String> = names.iter().filter(|n| retry_at(&h, n).is_some()).collect();
    assert_eq!(waiting.len(), 40 - Pace::BURST as usize, "{waiting:?}");
    let mut at: Vec<Duration> = waiting.iter().map(|n| retry_at(&h, n).unwrap() - t0).collect();
    at.sort();
    assert!(at[0] >= ms(100) + Pace::INTERVAL, "{at:?}");
    for w in at.windows(2) {
        assert_eq!(w[1] - w[0], Pace::INTERVAL, "{at:?}");
    }
    // Each starts at its turn, not again held back.
    h.advance(at[at.len() - 1] - (h.now.mono - t0));
    assert!(names.iter().all(|n| retry_at(&h, n).is_none()), "still waiting after the last turn");
}

#[test]
fn a_unit_at_a_long_max_delay_holds_back_no_other_restart() {
    // The pace's turns are taken when a unit's own delay is over, in time
    // order; taken at the exit, a unit due in a minute would book a turn a
    // minute ahead and every other restart would wait behind it.
    let slow = unit("[restart]\ndelay = \"1s\"\nmax_delay = \"60s\"\n");
    let quick = unit("[restart]\ndelay = \"100ms\"\n");
    let mut h = Harness::with(&[("slow", &slow), ("quick", &quick)]);
    h.run_all();
    for _ in 0..8 {
        h.exit("slow", 1);
        let until = retry_at(&h, "slow").expect("slow in backoff");
        h.advance(until - h.now.mono);
        h.run("slow");
    }
    h.exit("slow", 1);
    assert!(retry_at(&h, "slow").unwrap() - h.now.mono >= secs(60));
    let t0 = h.now.mono;
    h.exit("quick", 1);
    h.advance(ms(111));
    assert_eq!(retry_at(&h, "quick"), None, "quick still waits at {:?}", h.now.mono - t0);
    assert_ne!(h.state("quick"), crate::supervisor::policy::State::Backoff);
}

#[test]
fn one_unit_alone_keeps_its_own_backoff_under_the_pace() {
    // The doubling test above, with the fleet's pace in force: unchanged.
    let mut h = crash_loop("delay = \"100ms\"\nmax_delay = \"1s\"");
    let delays: Vec<Duration> = (0..12).map(|_| fail_and_measure(&mut h)).collect();
    assert_eq!(delays[..5], [ms(100), ms(200), ms(400), ms(800), secs(1)]);
    assert!(delays[5..].iter().all(|d| *d == secs(1)), "{delays:?}");
}

#[test]
fn oom_kills_are_counted_past_the_history_and_held_across_clean_exits() {
    let mut h = crash_loop("delay = \"100ms\"\nmax_delay = \"100ms\"");
    const { assert!(super::super::HISTORY < 7) };
    for _ in 0..7 {
        h.run("a");
        let exit = ExitInfo::signal(9, true, h.now.wall);
        h.exit_with("a", exit);
        h.advance(ms(100));
    }
    h.run("a");
    h.exit("a", 0);
    let r = h.core.record("a").unwrap();
    assert_eq!(r.oom_kills, 7, "more than the exits history keeps");
    assert_eq!(r.restarts, 8);
}
