//! Updates on trial: what succeeds, what rolls back and to what, and how
//! a rolled-back unit follows its file afterwards.

use super::*;
use crate::supervisor::policy::update::{UpdateError, UpdateState};

fn cmd(word: &str) -> String {
    format!("[container]\nimage = \"busybox\"\ncommand = [\"{word}\"]\n")
}

fn checked(word: &str) -> String {
    format!("{}[health]\nexec = [\"check\"]\ninterval = \"1s\"\nretries = 1\non_unhealthy = \"none\"\n", cmd(word))
}

fn command(h: &Harness, name: &str) -> Vec<String> {
    let r = h.core.record(name).unwrap();
    r.config.as_ref().unwrap().unit.container.command.clone().unwrap()
}

fn status(h: &Harness, name: &str) -> crate::supervisor::policy::status::UnitStatus {
    h.core.status().into_iter().find(|s| s.name == name).unwrap()
}

/// The update steps on the events stream so far.
fn updates(h: &Harness) -> Vec<String> {
    h.log
        .iter()
        .filter_map(|a| match a {
            Action::Emit(e) => e.update.clone().map(|u| format!("{u}: {}", e.reason.clone().unwrap_or_default())),
            _ => None,
        })
        .collect()
}

/// `a` runs `old`, then its file says `new`: the old container is stopped
/// and the new one asked for.
fn edited(old: &str, new: &str) -> Harness {
    let mut h = Harness::with(&[("a", old)]);
    h.run("a");
    h.files(&[("a", new)]);
    h.exit_stopped();
    assert_eq!(h.state("a"), State::Starting, "the new container is asked for");
    h
}

#[test]
fn an_edit_to_a_command_that_exits_rolls_back_to_the_old_config_and_image() {
    let mut h = edited(&cmd("serve"), &cmd("broken"));
    assert_eq!(h.pins["a"], None, "an edit resolves its image anew");
    assert_eq!(status(&h, "a").update_state, Some(UpdateState::InProgress));
    h.tag = "sha256:moved".into();
    h.run("a");
    h.advance(secs(1));
    h.exit("a", 1);
    assert_eq!(command(&h, "a"), ["serve"], "back to the previous config");
    assert_eq!(h.state("a"), State::Starting, "and its container asked for at once");
    assert_eq!(h.pins["a"].as_deref(), Some("sha256:0"), "with the exact image it ran");
    h.run("a");
    let s = status(&h, "a");
    assert_eq!(s.update_state, Some(UpdateState::RolledBack));
    assert_eq!(s.update_error.as_deref(), Some("exited 1"));
    assert_eq!(s.image_id.as_deref(), Some("sha256:0"));
    assert_eq!(updates(&h), ["started: the unit file changed", "rolled-back: exited 1"]);
    // The file is as it was: reading it again changes nothing.
    let mark = h.mark();
    assert_eq!(steps(&h.reload(false)), [("a", "keep")]);
    assert!(h.since(mark).is_empty(), "{:?}", h.since(mark));
    assert_eq!(status(&h, "a").update_state, Some(UpdateState::RolledBack));
}

#[test]
fn a_new_config_that_never_gets_healthy_rolls_back_after_healthy_within() {
    let mut h = edited(&checked("serve"), &checked("sick"));
    h.probe("a", true);
    h.run("a");
    h.probe("a", false);
    h.advance(secs(59));
    assert_eq!(status(&h, "a").update_state, Some(UpdateState::InProgress), "still within its 60s");
    h.advance(secs(1));
    assert_eq!(h.state("a"), State::Stopping, "the new container is stopped");
    let error = status(&h, "a").update_error.unwrap();
    assert_eq!(error, "not healthy within 1m: health unhealthy (last probe: connection refused)");
    h.exit_stopped();
    assert_eq!(command(&h, "a"), ["serve"]);
    assert_eq!(h.state("a"), State::Starting);
}

#[test]
fn a_new_container_its_health_check_restarts_rolls_back_at_once() {
    let restarting = |w: &str| format!("{}[health]\nexec = [\"check\"]\nretries = 1\n", cmd(w));
    let mut h = edited(&restarting("serve"), &restarting("sick"));
    h.run("a");
    h.probe("a", false);
    assert_eq!(
        status(&h, "a").update_error.as_deref(),
        Some("unhealthy: health unhealthy (last probe: connection refused)")
    );
    h.exit_stopped();
    assert_eq!(command(&h, "a"), ["serve"]);
    assert_eq!(h.state("a"), State::Starting, "the old config at once, not after a backoff");
}

#[test]
fn a_container_that_dies_within_min_healthy_rolls_back() {
    let mut h = edited(&cmd("serve"), &cmd("flaky"));
    h.run("a");
    h.advance(secs(4));
    assert_eq!(status(&h, "a").update_state, Some(UpdateState::InProgress), "5s not yet over");
    h.exit_with("a", ExitInfo::signal(libc::SIGSEGV, false, h.now.wall));
    assert_eq!(command(&h, "a"), ["serve"]);
    assert_eq!(status(&h, "a").update_error.as_deref(), Some("killed by SIGSEGV"));
}

#[test]
fn a_health_check_that_fails_within_min_healthy_rolls_back() {
    let mut h = edited(&checked("serve"), &checked("flaky"));
    h.run("a");
    h.probe("a", true);
    h.advance(secs(2));
    h.probe("a", false);
    assert_eq!(command(&h, "a"), ["serve"]);
    let error = status(&h, "a").update_error.unwrap();
    assert!(error.starts_with("not healthy for 5s: health unhealthy"), "{error}");
}

#[test]
fn a_failed_start_of_the_new_config_rolls_back() {
    let mut h = edited(&cmd("serve"), &cmd("missing"));
    h.fail_start("a", "exec missing: no such file");
    assert_eq!(command(&h, "a"), ["serve"]);
    assert_eq!(h.state("a"), State::Starting, "no backoff: the old config is known good");
    assert_eq!(status(&h, "a").update_error.as_deref(), Some("start failed: exec missing: no such file"));
}

#[test]
fn an_update_that_stays_healthy_for_min_healthy_succeeds_and_can_be_rolled_back() {
    let mut h = edited(&checked("v1"), &checked("v2"));
    h.tag = "sha256:2".into();
    h.run("a");
    h.probe("a", true);
    h.advance(secs(4));
    assert_eq!(status(&h, "a").update_state, Some(UpdateState::InProgress));
    h.advance(secs(1));
    let s = status(&h, "a");
    assert_eq!((s.update_state, s.update_error), (None, None));
    assert_eq!(s.previous_image_id.as_deref(), Some("sha256:0"), "kept for a rollback");
    assert_eq!(updates(&h), ["started: the unit file changed", "succeeded: healthy"]);

    // One step back, through the same trial.
    h.core.rollback("a", h.now).unwrap();
    h.converge();
    h.exit_stopped();
    assert_eq!(command(&h, "a"), ["v1"]);
    assert_eq!(h.pins["a"].as_deref(), Some("sha256:0"));
    h.run("a");
    h.probe("a", true);
    h.advance(secs(5));
    let s = status(&h, "a");
    assert_eq!(s.update_state, Some(UpdateState::RolledBack), "it runs another config than its file's");
    assert_eq!(s.previous_image_id.as_deref(), Some("sha256:2"), "a second rollback would return to v2");
    // The file (v2) is not applied again until it changes.
    assert_eq!(steps(&h.reload(false)), [("a", "keep")]);
}

#[test]
fn rollback_is_refused_without_a_previous_config_and_during_a_trial() {
    let mut h = Harness::with(&[("a", &cmd("v1"))]);
    h.run("a");
    assert_eq!(h.core.rollback("a", h.now), Err(UpdateError::NoPrevious("a".into())));
    assert_eq!(h.core.rollback("b", h.now), Err(UpdateError::Unknown("b".into())));
    h.files(&[("a", &cmd("v2"))]);
    assert_eq!(h.core.rollback("a", h.now), Err(UpdateError::InProgress("a".into())));
}

#[test]
fn a_restart_or_a_crash_restart_reuses_the_image_it_runs() {
    let mut h = Harness::with(&[("a", &cmd("serve"))]);
    assert_eq!(h.pins["a"], None, "the first start resolves the tag");
    h.run("a");
    h.tag = "sha256:moved".into();
    h.exit("a", 1);
    h.advance(secs(1));
    assert_eq!(h.pins["a"].as_deref(), Some("sha256:0"), "the crash restart keeps its image");
    h.run("a");
    h.op(Op::Restart, &["a"]).unwrap();
    h.exit_stopped();
    assert_eq!(h.pins["a"].as_deref(), Some("sha256:0"), "so does an operator's restart");
}

#[test]
fn a_new_image_is_rolled_out_on_trial_and_a_broken_one_is_rolled_back_and_not_tried_again() {
    let mut h = Harness::with(&[("a", &cmd("serve"))]);
    h.run("a");
    assert_eq!(h.core.roll_image("a", "sha256:0", h.now), Ok(false), "it runs that image");
    assert_eq!(h.core.roll_image("a", "sha256:bad", h.now), Ok(true));
    h.converge();
    h.exit_stopped();
    assert_eq!(h.pins["a"].as_deref(), Some("sha256:bad"));
    h.run("a");
    h.exit("a", 2);
    assert_eq!(h.pins["a"].as_deref(), Some("sha256:0"), "back to the image it ran");
    h.run("a");
    let s = status(&h, "a");
    assert_eq!(s.update_error.as_deref(), Some("exited 2"));
    assert_eq!(s.update_state, Some(UpdateState::RolledBack), "the image went back");
    assert_eq!(h.core.roll_image("a", "sha256:bad", h.now), Ok(false), "a rejected image is not tried again");
    assert_eq!(h.core.roll_image("a", "sha256:good", h.now), Ok(true));
    h.converge();
    h.exit_stopped();
    h.run("a");
    h.advance(secs(5));
    let s = status(&h, "a");
    assert_eq!((s.image_id.as_deref(), s.previous_image_id.as_deref()), (Some("sha256:good"), Some("sha256:0")));
}

#[test]
fn after_a_rollback_the_next_edit_of_the_file_is_followed() {
    let mut h = edited(&cmd("v1"), &cmd("v2"));
    h.run("a");
    h.exit("a", 1);
    h.run("a");
    assert_eq!(status(&h, "a").update_state, Some(UpdateState::RolledBack));
    // A fixed v3: a new trial, from v1.
    h.files(&[("a", &cmd("v3"))]);
    h.exit_stopped();
    assert_eq!(command(&h, "a"), ["v3"]);
    h.run("a");
    h.advance(secs(5));
    let s = status(&h, "a");
    assert_eq!((s.update_state, s.update_error), (None, None));
    assert_eq!(
        h.core.record("a").unwrap().previous.as_ref().unwrap().config.unit.container.command,
        Some(vec!["v1".to_string()])
    );
}

#[test]
fn a_file_put_back_to_the_running_config_ends_the_rolled_back_state() {
    let mut h = edited(&cmd("v1"), &cmd("v2"));
    h.run("a");
    h.exit("a", 1);
    h.run("a");
    let mark = h.mark();
    assert_eq!(steps(&h.files(&[("a", &cmd("v1"))])), [("a", "keep")]);
    assert!(h.since(mark).is_empty(), "the running container is kept");
    assert_eq!(status(&h, "a").update_state, None);
    assert_eq!(status(&h, "a").update_error, None);
}

#[test]
fn a_unit_that_is_not_running_takes_an_edit_without_a_trial() {
    let mut h = Harness::with(&[("a", &cmd("v1"))]);
    h.run("a");
    h.op(Op::Stop, &["a"]).unwrap();
    h.exit_stopped();
    h.files(&[("a", &cmd("v2"))]);
    h.op(Op::Start, &["a"]).unwrap();
    h.run("a");
    h.exit("a", 1);
    assert_eq!(command(&h, "a"), ["v2"], "nothing to roll back to");
    assert_eq!(h.state("a"), State::Backoff);
    assert_eq!(status(&h, "a").update_state, None);
}

#[test]
fn a_job_that_runs_to_completion_is_a_successful_update() {
    let job = |w: &str| format!("{}[restart]\npolicy = \"no\"\n", cmd(w));
    let mut h = edited(&job("v1"), &job("v2"));
    h.run("a");
    h.exit("a", 0);
    assert_eq!(command(&h, "a"), ["v2"]);
    assert_eq!(h.state("a"), State::Exited);
    assert_eq!(status(&h, "a").update_error, None);
}

#[test]
fn a_notify_unit_must_send_ready_within_healthy_within() {
    let notify = |w: &str| format!("{}notify = true\n", cmd(w));
    let mut h = edited(&notify("v1"), &notify("v2"));
    h.run("a");
    h.advance(secs(60));
    assert_eq!(status(&h, "a").update_error.as_deref(), Some("not ready within 1m: no READY=1"));
    assert_eq!(command(&h, "a"), ["v1"]);
}

#[test]
fn an_operator_stop_during_a_trial_keeps_the_new_config_unjudged() {
    let mut h = edited(&cmd("v1"), &cmd("v2"));
    h.run("a");
    h.op(Op::Stop, &["a"]).unwrap();
    h.exit_stopped();
    assert_eq!(command(&h, "a"), ["v2"]);
    assert_eq!(status(&h, "a").update_state, None);
}

#[test]
fn with_rollback_off_a_failed_update_stays_on_the_new_config_under_its_restart_policy() {
    let no = |w: &str| format!("{}[update]\nrollback = false\n", cmd(w));
    let mut h = edited(&no("v1"), &no("v2"));
    h.run("a");
    h.exit("a", 1);
    assert_eq!(command(&h, "a"), ["v2"]);
    assert_eq!(h.state("a"), State::Backoff);
    let s = status(&h, "a");
    assert_eq!((s.update_state, s.update_error.as_deref()), (None, Some("exited 1")));
    assert_eq!(updates(&h), ["started: the unit file changed", "failed: exited 1"]);
}

#[test]
fn the_windows_come_from_the_new_config() {
    let quick = |w: &str| format!("{}[update]\nhealthy_within = \"10s\"\nmin_healthy = \"0s\"\n", checked(w));
    let mut h = edited(&quick("v1"), &quick("v2"));
    h.run("a");
    h.advance(secs(10));
    assert_eq!(status(&h, "a").update_error.as_deref(), Some("not healthy within 10s: health starting"));
    h.exit_stopped();
    h.run("a");
    h.files(&[("a", &quick("v3"))]);
    h.exit_stopped();
    h.run("a");
    h.probe("a", true);
    assert_eq!(status(&h, "a").update_state, None, "min_healthy = 0s: healthy is enough");
    assert_eq!(command(&h, "a"), ["v3"]);
}

#[test]
fn a_reload_during_an_operators_rollback_does_not_undo_it() {
    let mut h = edited(&cmd("v1"), &cmd("v2"));
    h.run("a");
    h.advance(secs(5));
    h.core.rollback("a", h.now).unwrap();
    h.converge();
    h.exit_stopped();
    assert_eq!(command(&h, "a"), ["v1"]);
    // Another unit's file appears: everything is read again.
    h.files(&[("a", &cmd("v2")), ("b", &cmd("other"))]);
    assert_eq!(command(&h, "a"), ["v1"], "the rollback was undone by a reload");
    h.run("a");
    h.advance(secs(5));
    assert_eq!(status(&h, "a").update_state, Some(UpdateState::RolledBack));
}

#[test]
fn a_trial_ended_by_an_operators_stop_says_so() {
    let mut h = edited(&cmd("v1"), &cmd("v2"));
    h.run("a");
    h.op(Op::Stop, &["a"]).unwrap();
    assert_eq!(updates(&h), ["started: the unit file changed", "abandoned: stopped by operator"]);
}
