//! Health checks as policy: which check runs, and what unhealthy does.

use super::*;
use crate::runtime::image::config::Healthcheck;
use crate::units::model::OnUnhealthy;

fn probes(h: &Harness, name: &str) -> Vec<Option<crate::supervisor::policy::health::Check>> {
    h.log
        .iter()
        .filter_map(|a| match a {
            Action::Probe { name: n, probe, .. } if n == name => Some(probe.as_ref().map(|p| p.check.clone())),
            _ => None,
        })
        .collect()
}

fn checked(extra: &str) -> String {
    unit(&format!("[health]\nexec = [\"pg_isready\"]\ninterval = \"1s\"\nretries = 2\n{extra}"))
}

#[test]
fn a_running_unit_with_a_check_gets_a_probe_loop_with_its_timings() {
    let mut h = Harness::with(&[("a", &checked(""))]);
    assert!(probes(&h, "a").is_empty(), "no probe before it runs");
    h.run("a");
    let p = probes(&h, "a");
    let check = p[0].as_ref().unwrap();
    assert_eq!((check.interval, check.retries, check.from_image), (secs(1), 2, false));
    assert_eq!(h.core.status()[0].health.as_deref(), Some("starting"));
}

#[test]
fn a_unit_without_a_check_gets_no_probe_loop_and_no_health() {
    let mut h = Harness::with(&[("a", PLAIN)]);
    h.run("a");
    assert_eq!(probes(&h, "a").len(), 1);
    assert!(probes(&h, "a")[0].is_none());
    assert_eq!(h.core.status()[0].health, None);
}

#[test]
fn the_images_healthcheck_applies_and_only_reports() {
    let mut h = Harness::with(&[("a", PLAIN)]);
    let g = h.generation("a");
    let image_health = Healthcheck {
        test: vec!["CMD".into(), "true".into()],
        interval: 0,
        timeout: 0,
        start_period: 0,
        start_interval: 0,
        retries: 1,
    };
    let started = Started {
        pid: 7,
        stop_signal: libc::SIGTERM,
        image_digest: "sha256:1".into(),
        image_health: Some(image_health),
        address: None,
        ports: vec![],
    };
    h.core.started("a", g, StartOutcome::Running(started), h.now);
    h.converge();
    let check = probes(&h, "a")[0].clone().unwrap();
    assert!(check.from_image);
    assert_eq!(check.on_unhealthy, OnUnhealthy::None);
    h.probe("a", false);
    assert_eq!(h.core.status()[0].health.as_deref(), Some("unhealthy"));
    assert_eq!(h.state("a"), State::Running);
}

#[test]
fn failures_in_the_start_period_do_not_count() {
    let mut h = Harness::with(&[("a", &checked("start_period = \"10s\"\n"))]);
    h.run("a");
    for _ in 0..5 {
        h.advance(secs(1));
        h.probe("a", false);
    }
    assert_eq!(h.core.status()[0].health.as_deref(), Some("starting"));
    h.advance(secs(6));
    h.probe("a", false);
    h.probe("a", false);
    assert_eq!(h.state("a"), State::Stopping);
}

#[test]
fn unhealthy_with_restart_stops_it_and_backs_off_as_a_failure() {
    let mut h = Harness::with(&[("a", &checked("").replace("[health]", "[restart]\npolicy = \"no\"\n[health]"))]);
    h.run("a");
    h.probe("a", true);
    h.probe("a", false);
    assert_eq!(h.state("a"), State::Running);
    h.probe("a", false);
    assert_eq!(h.state("a"), State::Stopping);
    assert_eq!(h.reason("a"), "unhealthy: connection refused");
    h.exit_stopped();
    // Restarted though its policy is "no": on_unhealthy asks for it.
    assert_eq!(h.state("a"), State::Backoff);
    assert_eq!(h.reason("a"), "unhealthy, then killed by SIGTERM");
}

#[test]
fn unhealthy_with_stop_leaves_it_failed() {
    let mut h = Harness::with(&[("a", &checked("on_unhealthy = \"stop\"\n"))]);
    h.run("a");
    h.probe("a", false);
    h.probe("a", false);
    h.exit_stopped();
    assert_eq!(h.state("a"), State::Failed);
    assert_eq!(h.reason("a"), "unhealthy, then killed by SIGTERM; on_unhealthy = \"stop\"");
}

#[test]
fn results_that_come_after_the_stop_are_ignored() {
    let mut h = Harness::with(&[("a", &checked(""))]);
    h.run("a");
    h.op(Op::Stop, &["a"]).unwrap();
    h.probe("a", true);
    let r = h.core.record("a").unwrap();
    let tracker = &r.run().unwrap().running().unwrap().health.as_ref().unwrap().1;
    assert!(tracker.results.is_empty());
}

#[test]
fn a_health_edit_restarts_the_probe_loop_without_restarting_the_container() {
    let mut h = Harness::with(&[("a", &checked(""))]);
    h.run("a");
    let s = h.files(&[("a", &checked("").replace("interval = \"1s\"", "interval = \"5s\""))]);
    assert_eq!(steps(&s), [("a", "update")]);
    let p = probes(&h, "a");
    assert_eq!(p.len(), 2);
    assert_eq!(p[1].as_ref().unwrap().interval, secs(5));
    assert_eq!(h.history(), ["start a", "update a"]);
}

#[test]
fn health_shows_in_status_as_it_changes() {
    let mut h = Harness::with(&[("a", &checked("on_unhealthy = \"none\"\n"))]);
    h.run("a");
    h.probe("a", true);
    assert_eq!(h.core.status()[0].health.as_deref(), Some("healthy"));
    h.probe("a", false);
    h.probe("a", false);
    assert_eq!(h.core.status()[0].health.as_deref(), Some("unhealthy"));
    let notes: Vec<&str> = h
        .log
        .iter()
        .filter_map(|a| match a {
            Action::Note { message, .. } if message.starts_with("health") => Some(message.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(notes, ["health healthy (ok)", "health unhealthy (connection refused)"]);
}

#[test]
fn a_container_kept_after_a_stop_asked_while_starting_is_still_probed() {
    let mut h = Harness::with(&[("db", &checked("")), ("web", &with_unit("requires = [\"db\"]", ""))]);
    // Stopped, then started again, while its image is still pulled.
    h.op(Op::Stop, &["db"]).unwrap();
    h.op(Op::Start, &["db"]).unwrap();
    h.run("db");
    assert_eq!(h.state("db"), State::Running);
    assert!(probes(&h, "db").last().unwrap().is_some(), "its check runs");
    assert_eq!(h.reason("web"), "requires db (running, health starting)");
    h.probe("db", true);
    assert_eq!(h.state("web"), State::Starting);
}
