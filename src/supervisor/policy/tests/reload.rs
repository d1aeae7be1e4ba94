//! Reload: the plan's classes and how each is carried out; invalid edits
//! keep the last good config; edits that meet a pull, a start or a stop.

use super::*;
use crate::supervisor::policy::Phase;

const OTHER: &str = "[container]\nimage = \"busybox\"\ncommand = [\"sleep\", \"2000\"]\n";

#[test]
fn each_class_of_change_is_carried_out_as_planned() {
    let mut h = Harness::with(&[("keep", PLAIN), ("conf", PLAIN), ("live", PLAIN), ("new", PLAIN), ("gone", PLAIN)]);
    h.run_all();
    let mark = h.mark();
    let s = h.files(&[
        ("keep", &format!("# only a comment\n{PLAIN}")),
        ("conf", &unit("[restart]\npolicy = \"no\"\n")),
        ("live", &unit("[resources]\nmemory = \"64M\"\n")),
        ("new", OTHER),
        ("bad", "[container\n"),
        ("born", PLAIN),
    ]);
    assert_eq!(
        steps(&s),
        [
            ("bad", "invalid"),
            ("born", "start"),
            ("conf", "update"),
            ("gone", "remove"),
            ("keep", "keep"),
            ("live", "live-update"),
            ("new", "restart")
        ]
    );
    assert_eq!(h.since(mark), ["update conf", "update live live", "signal new", "signal gone", "start born"]);
}

#[test]
fn a_dry_run_changes_nothing() {
    let mut h = Harness::with(&[("a", PLAIN)]);
    h.run("a");
    h.write(&[("a", OTHER), ("b", PLAIN)]);
    let mark = h.mark();
    let s = h.reload(true);
    assert_eq!(steps(&s), [("a", "restart"), ("b", "start")]);
    assert!(h.since(mark).is_empty());
    assert!(h.core.record("b").is_none());
    // The same plan is what a reload then does.
    assert_eq!(h.reload(false), s);
}

#[test]
fn a_reload_with_nothing_changed_touches_nothing() {
    let mut h = Harness::with(&[("a", PLAIN), ("b", PLAIN)]);
    h.run_all();
    let mark = h.mark();
    let s = h.files(&[("a", PLAIN), ("b", PLAIN)]);
    assert_eq!(steps(&s), [("a", "keep"), ("b", "keep")]);
    assert!(h.log[mark..].is_empty(), "{:?}", &h.log[mark..]);
}

#[test]
fn an_invalid_edit_of_a_running_unit_keeps_it_running_on_its_last_good_config() {
    let mut h = Harness::with(&[("a", PLAIN)]);
    h.run("a");
    let mark = h.mark();
    h.files(&[("a", "[container]\nimage = \"busybox\"\nmemroy = 1\n")]);
    assert_eq!(h.state("a"), State::Running);
    assert!(h.since(mark).is_empty());
    let s = &h.core.status()[0];
    assert!(s.error.as_deref().is_some_and(|e| e.contains("a.toml:3:1")), "{s:?}");
    assert_eq!(
        h.core.record("a").unwrap().config.as_ref().unwrap().unit.container.command.as_deref().map(|c| c[1].as_str()),
        Some("1000")
    );
    // Mended: the error goes, and an unchanged config keeps the container.
    let s = h.files(&[("a", PLAIN)]);
    assert_eq!(steps(&s), [("a", "keep")]);
    assert_eq!(h.core.status()[0].error, None);
}

#[test]
fn an_invalid_edit_during_backoff_restarts_it_on_its_last_good_config() {
    let mut h = Harness::with(&[("a", PLAIN)]);
    h.run("a");
    h.exit("a", 1);
    h.files(&[("a", "[container\n")]);
    assert_eq!(h.state("a"), State::Backoff);
    h.advance(ms(100));
    let unit = h.log.iter().rev().find_map(|a| match a {
        Action::Start { unit, .. } => Some(unit.clone()),
        _ => None,
    });
    assert_eq!(unit.unwrap().unit.container.command.unwrap()[1], "1000");
}

#[test]
fn a_restart_edit_stops_the_old_container_before_the_new_one_starts() {
    let mut h = Harness::with(&[("a", PLAIN)]);
    h.run("a");
    h.files(&[("a", OTHER)]);
    assert_eq!(h.state("a"), State::Stopping);
    assert_eq!(h.reason("a"), "configuration changed");
    assert_eq!(h.history(), ["start a", "signal a"], "never two containers at once");
    h.exit_stopped();
    assert_eq!(h.history(), ["start a", "signal a", "start a"]);
    assert_eq!(h.generation("a"), 2);
}

#[test]
fn a_file_removed_during_a_pull_stops_the_container_once_it_exists_and_forgets_the_unit() {
    let mut h = Harness::with(&[("a", PLAIN)]);
    let g = h.generation("a");
    h.core.phase("a", g, Phase::Pulling);
    h.files(&[]);
    assert_eq!(h.state("a"), State::Stopping);
    h.run("a");
    assert_eq!(h.history(), ["start a", "signal a"]);
    h.exit_stopped();
    assert!(h.core.record("a").is_none());
}

#[test]
fn a_file_removed_during_a_start_that_then_fails_forgets_the_unit() {
    let mut h = Harness::with(&[("a", PLAIN)]);
    h.files(&[]);
    h.fail_start("a", "no such image");
    assert!(h.core.record("a").is_none());
    h.advance(secs(60));
    assert_eq!(h.history(), ["start a"], "no retry for a removed unit");
}

#[test]
fn an_edit_during_a_stop_is_what_starts_next() {
    let mut h = Harness::with(&[("a", PLAIN)]);
    h.run("a");
    h.op(Op::Restart, &["a"]).unwrap();
    assert_eq!(h.state("a"), State::Stopping);
    h.files(&[("a", OTHER)]);
    h.exit_stopped();
    let cmd = h.log.iter().rev().find_map(|a| match a {
        Action::Start { unit, .. } => unit.unit.container.command.clone(),
        _ => None,
    });
    assert_eq!(cmd.unwrap()[1], "2000");
}

#[test]
fn a_file_that_comes_back_while_its_container_stops_is_not_forgotten() {
    let mut h = Harness::with(&[("a", PLAIN)]);
    h.run("a");
    h.files(&[]);
    h.files(&[("a", PLAIN)]);
    h.exit_stopped();
    assert_eq!(h.state("a"), State::Starting);
}

#[test]
fn a_file_that_becomes_valid_starts_its_unit() {
    let mut h = Harness::with(&[("a", "[container\n")]);
    assert_eq!(h.state("a"), State::Invalid);
    let s = h.files(&[("a", PLAIN)]);
    assert_eq!(steps(&s), [("a", "start")]);
    assert_eq!(h.state("a"), State::Starting);
}

#[test]
fn a_new_config_is_a_new_chance_for_a_failed_unit() {
    let mut h = Harness::with(&[("a", &unit("[restart]\npolicy = \"no\"\n"))]);
    h.fail_start("a", "bad image");
    assert_eq!(h.state("a"), State::Failed);
    h.files(&[("a", &OTHER.replace("[container]", "[restart]\npolicy = \"no\"\n[container]"))]);
    assert_eq!(h.state("a"), State::Starting);
    assert_eq!(h.core.status()[0].error, None);
}

#[test]
fn a_config_only_edit_does_not_touch_an_exited_unit() {
    let mut h = Harness::with(&[("a", &unit("[restart]\npolicy = \"no\"\n"))]);
    h.run("a");
    h.exit("a", 0);
    let s = h.files(&[("a", &unit("[restart]\npolicy = \"no\"\n[stop]\ntimeout = \"3s\"\n"))]);
    assert_eq!(steps(&s), [("a", "update")]);
    assert_eq!(h.state("a"), State::Exited);
}

#[test]
fn the_start_order_follows_a_reload_that_adds_a_dependency() {
    let mut h = Harness::with(&[("a", PLAIN), ("b", PLAIN)]);
    h.run_all();
    h.files(&[("a", &with_unit("requires = [\"b\"]", "")), ("b", PLAIN)]);
    let order: Vec<String> = h.core.status().into_iter().map(|s| s.name).collect();
    assert_eq!(order, ["b", "a"]);
    assert_eq!(h.state("a"), State::Running, "an ordering edit does not restart");
}

#[test]
fn env_file_directories_follow_the_units() {
    let mut h = Harness::new();
    let dir = tempfile::tempdir().unwrap();
    let env = dir.path().join("web.env");
    std::fs::write(&env, "A=1\n").unwrap();
    h.files(&[("a", &PLAIN.replace("[container]\n", &format!("[container]\nenv_file = \"{}\"\n", env.display())))]);
    assert_eq!(h.core.env_file_dirs().into_iter().collect::<Vec<_>>(), [env]);
    h.run("a");
    h.files(&[]);
    h.exit_stopped();
    assert!(h.core.env_file_dirs().is_empty());
}
