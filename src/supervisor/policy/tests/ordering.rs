//! Ordering and readiness gating across dependency chains.

use super::*;

fn web_requires_db() -> Harness {
    Harness::with(&[("db", PLAIN), ("web", &with_unit("requires = [\"db\"]", ""))])
}

#[test]
fn a_dependent_waits_until_its_requirement_runs() {
    let mut h = web_requires_db();
    assert_eq!(h.history(), ["start db"]);
    assert_eq!(h.state("web"), State::Waiting);
    assert_eq!(h.reason("web"), "requires db (starting)");
    h.run("db");
    assert_eq!(h.history(), ["start db", "start web"]);
}

#[test]
fn a_chain_starts_in_order_one_link_at_a_time() {
    let mut h = Harness::with(&[
        ("c", &with_unit("requires = [\"b\"]", "")),
        ("b", &with_unit("requires = [\"a\"]", "")),
        ("a", PLAIN),
    ]);
    assert_eq!(h.history(), ["start a"]);
    h.run("a");
    assert_eq!(h.history(), ["start a", "start b"]);
    h.run("b");
    assert_eq!(h.history(), ["start a", "start b", "start c"]);
    assert_eq!(h.core.status().iter().map(|s| s.name.as_str()).collect::<Vec<_>>(), ["a", "b", "c"]);
}

#[test]
fn after_orders_without_requiring() {
    let mut h = Harness::with(&[("db", PLAIN), ("web", &with_unit("after = [\"db\"]", ""))]);
    assert_eq!(h.history(), ["start db"]);
    assert_eq!(h.reason("web"), "after db (starting)");
    h.run("db");
    assert_eq!(h.history(), ["start db", "start web"]);
}

#[test]
fn after_does_not_wait_for_a_unit_that_will_not_run() {
    let mut h = Harness::new();
    h.files(&[("db", &unit("[restart]\npolicy = \"no\"\n")), ("web", &with_unit("after = [\"db\"]", ""))]);
    h.fail_start("db", "no image");
    assert_eq!(h.state("db"), State::Failed);
    assert_eq!(h.history(), ["start db", "start web"]);
}

#[test]
fn after_does_not_wait_for_a_held_unit() {
    let mut h = Harness::with(&[("db", PLAIN)]);
    h.run("db");
    h.op(Op::Stop, &["db"]).unwrap();
    h.exit_stopped();
    h.files(&[("db", PLAIN), ("web", &with_unit("after = [\"db\"]", ""))]);
    assert_eq!(h.since(0).last().map(String::as_str), Some("start web"));
}

#[test]
fn requires_waits_for_a_held_requirement_and_says_so() {
    let mut h = Harness::with(&[("db", PLAIN)]);
    h.op(Op::Stop, &["db"]).unwrap();
    h.files(&[("db", PLAIN), ("web", &with_unit("requires = [\"db\"]", ""))]);
    h.run_all();
    h.exit_stopped();
    assert_eq!(h.state("web"), State::Waiting);
    assert_eq!(h.reason("web"), "requires db (inactive)");
}

#[test]
fn a_diamond_starts_the_top_once_both_sides_run() {
    let mut h = Harness::with(&[
        ("base", PLAIN),
        ("left", &with_unit("requires = [\"base\"]", "")),
        ("right", &with_unit("requires = [\"base\"]", "")),
        ("top", &with_unit("requires = [\"left\", \"right\"]", "")),
    ]);
    h.run("base");
    assert_eq!(h.history(), ["start base", "start left", "start right"]);
    h.run("left");
    assert_eq!(h.state("top"), State::Waiting);
    assert_eq!(h.reason("top"), "requires right (starting)");
    h.run("right");
    assert_eq!(h.history().last().map(String::as_str), Some("start top"));
}

#[test]
fn a_requirement_that_crashes_stops_its_dependents_until_it_is_back() {
    let mut h = web_requires_db();
    h.run_all();
    h.exit("db", 1);
    assert_eq!(h.state("db"), State::Backoff);
    assert_eq!(h.state("web"), State::Stopping);
    assert_eq!(h.reason("web"), "requires db (backoff)");
    h.exit_stopped();
    assert_eq!(h.state("web"), State::Waiting);
    h.advance(ms(100));
    h.run("db");
    assert_eq!(h.state("web"), State::Starting);
    assert_eq!(h.history(), ["start db", "start web", "signal web", "start db", "start web"]);
}

#[test]
fn a_requirement_restarted_for_a_new_config_stops_its_dependents_first() {
    let mut h = web_requires_db();
    h.run_all();
    let m = h.mark();
    h.files(&[("db", &PLAIN.replace("1000", "2000")), ("web", &with_unit("requires = [\"db\"]", ""))]);
    assert_eq!(h.since(m), ["signal web"], "db waits for web to be gone");
    h.exit("web", 143);
    assert_eq!(h.since(m), ["signal web", "signal db"]);
    h.exit_stopped();
    h.run_all();
    assert_eq!(h.since(m), ["signal web", "signal db", "start db", "start web"]);
}

#[test]
fn a_requirement_removed_while_its_dependent_waits_leaves_it_waiting_with_the_reason() {
    let mut h = web_requires_db();
    assert_eq!(h.state("web"), State::Waiting);
    // db's file goes; web's file is then invalid (it names a unit that
    // has no file) and web keeps its last good config.
    h.files(&[("web", &with_unit("requires = [\"db\"]", ""))]);
    assert_eq!(h.state("db"), State::Stopping);
    h.run("db");
    h.exit_stopped();
    assert!(h.core.record("db").is_none());
    assert_eq!(h.state("web"), State::Waiting);
    assert_eq!(h.reason("web"), "requires db, which has no unit file");
    let s = h.core.status().into_iter().find(|s| s.name == "web").unwrap();
    assert!(s.error.is_some_and(|e| e.contains("unknown unit \"db\"")));
}

#[test]
fn a_dependent_waits_for_a_healthy_requirement() {
    let mut h = Harness::with(&[
        ("db", &unit("[health]\nexec = [\"true\"]\ninterval = \"1s\"\n")),
        ("web", &with_unit("requires = [\"db\"]", "")),
    ]);
    h.run("db");
    assert_eq!(h.reason("web"), "requires db (running, health starting)");
    h.probe("db", false);
    assert_eq!(h.reason("web"), "requires db (running, health starting (last probe: connection refused))");
    h.probe("db", true);
    assert_eq!(h.history(), ["start db", "start web"]);
}

#[test]
fn a_requirement_that_turns_unhealthy_and_is_restarted_takes_its_dependents_down_first() {
    let mut h = Harness::with(&[
        ("db", &unit("[health]\nexec = [\"true\"]\nretries = 1\n")),
        ("web", &with_unit("requires = [\"db\"]", "")),
    ]);
    h.run("db");
    h.probe("db", true);
    h.run("web");
    h.probe("db", false);
    assert_eq!(h.reason("db"), "unhealthy: connection refused");
    // db's own stop is decided by its health; web goes down too.
    assert_eq!(h.since(0)[2..], ["signal db", "signal web"]);
    h.exit_stopped();
    assert_eq!(h.state("db"), State::Backoff);
    assert_eq!(h.state("web"), State::Waiting);
}

#[test]
fn a_requirement_unhealthy_with_no_action_keeps_its_running_dependents() {
    let mut h = Harness::with(&[
        ("db", &unit("[health]\nexec = [\"true\"]\nretries = 1\non_unhealthy = \"none\"\n")),
        ("web", &with_unit("requires = [\"db\"]", "")),
    ]);
    h.run("db");
    h.probe("db", true);
    h.run("web");
    h.probe("db", false);
    assert_eq!(h.core.status()[0].health.as_deref(), Some("unhealthy"));
    assert_eq!(h.state("web"), State::Running);
    assert_eq!(h.history(), ["start db", "start web"]);
}

#[test]
fn past_its_ready_timeout_a_waiting_unit_reports_what_it_waits_for() {
    let mut h = Harness::with(&[("db", PLAIN), ("web", &with_unit("requires = [\"db\"]\nready_timeout = \"5s\"", ""))]);
    h.advance(secs(4));
    assert_eq!(h.core.status()[1].error, None);
    h.advance(secs(1));
    assert_eq!(h.core.status()[1].error.as_deref(), Some("not started after 5s: requires db (starting)"));
    h.run("db");
    assert_eq!(h.state("web"), State::Starting);
}

#[test]
fn a_unit_joining_anothers_network_starts_with_its_pid_and_address() {
    let mut h = Harness::with(&[
        ("app", PLAIN),
        ("side", &PLAIN.replace("[container]\n", "[container]\nnetwork = \"unit:app\"\n")),
    ]);
    assert_eq!(h.history(), ["start app"], "the network's owner is required");
    h.run("app");
    let join = h.log.iter().find_map(|a| match a {
        Action::Start { name, join, .. } if name == "side" => Some(*join),
        _ => None,
    });
    assert_eq!(join, Some(Some(crate::supervisor::policy::Join { pid: 101, address: None })));
}

#[test]
fn independent_units_start_together() {
    let h = Harness::with(&[("a", PLAIN), ("b", PLAIN), ("c", PLAIN)]);
    assert_eq!(h.history(), ["start a", "start b", "start c"]);
}
