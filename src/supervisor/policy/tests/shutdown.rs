//! Shutdown: every unit stopped, dependents before their requirements,
//! independent units at once, and nothing started any more.

use super::*;

fn three_tiers() -> Harness {
    let mut h = Harness::with(&[
        ("db", PLAIN),
        ("api", &with_unit("requires = [\"db\"]", "")),
        ("web", &with_unit("requires = [\"api\"]", "")),
        ("cron", PLAIN),
    ]);
    h.run_all();
    h
}

#[test]
fn shutdown_stops_in_reverse_dependency_order() {
    let mut h = three_tiers();
    let mark = h.mark();
    h.shutdown();
    let mut signalled = h.since(mark);
    signalled.sort();
    assert_eq!(signalled, ["signal cron", "signal web"], "the leaves first, together");
    h.exit("web", 0);
    assert_eq!(h.since(mark).last().map(String::as_str), Some("signal api"));
    h.exit("api", 0);
    assert_eq!(h.since(mark).last().map(String::as_str), Some("signal db"));
    assert!(!h.core.all_stopped());
    h.exit_stopped();
    assert!(h.core.all_stopped());
    assert_eq!(h.core.status().iter().filter(|s| s.state != State::Inactive).count(), 0);
}

#[test]
fn a_unit_starting_at_shutdown_is_stopped_once_started() {
    let mut h = Harness::with(&[("a", PLAIN)]);
    h.shutdown();
    assert_eq!(h.state("a"), State::Stopping);
    assert_eq!(h.reason("a"), "shutdown");
    h.run("a");
    assert_eq!(h.history(), ["start a", "signal a"]);
    h.exit_stopped();
    assert!(h.core.all_stopped());
}

#[test]
fn nothing_starts_during_shutdown() {
    let mut h = Harness::with(&[("a", PLAIN), ("b", PLAIN)]);
    h.run("a");
    h.exit("a", 1);
    h.shutdown();
    h.advance(secs(60));
    h.files(&[("a", PLAIN), ("b", PLAIN), ("c", PLAIN)]);
    assert_eq!(h.history(), ["start a", "start b"]);
    h.run("b");
    h.exit_stopped();
    assert!(h.core.all_stopped());
}

#[test]
fn a_requirement_that_ignores_its_stop_signal_is_killed_after_its_timeout() {
    let mut h =
        Harness::with(&[("db", &unit("[stop]\ntimeout = \"1s\"\n")), ("web", &with_unit("requires = [\"db\"]", ""))]);
    h.run_all();
    let m = h.mark();
    h.shutdown();
    h.exit("web", 0);
    h.advance(secs(1));
    assert_eq!(h.since(m), ["signal web", "signal db", "kill db"]);
}

#[test]
fn a_shutdown_with_nothing_running_is_done_at_once() {
    let mut h = Harness::with(&[("a", "[container\n")]);
    h.shutdown();
    assert!(h.core.all_stopped());
}

#[test]
fn a_pod_member_stops_before_the_owner_of_its_network() {
    let mut h = Harness::with(&[
        ("app", PLAIN),
        ("side", &PLAIN.replace("[container]\n", "[container]\nnetwork = \"unit:app\"\n")),
    ]);
    h.run_all();
    let m = h.mark();
    h.shutdown();
    assert_eq!(h.since(m), ["signal side"]);
    h.exit("side", 0);
    assert_eq!(h.since(m), ["signal side", "signal app"]);
}
