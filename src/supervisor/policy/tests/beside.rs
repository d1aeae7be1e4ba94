//! Start-first updates: the new container beside the serving one, the
//! switchover once it passes, and a failure that never touches the old.

use super::*;
use crate::supervisor::policy::beside::DRAIN;
use crate::supervisor::policy::update::UpdateState;

fn web(word: &str, extra: &str) -> String {
    format!(
        "[container]\nimage = \"busybox\"\ncommand = [\"{word}\"]\nports = [\"8080:80\"]\n{extra}\
         [health]\nexec = [\"check\"]\ninterval = \"1s\"\nretries = 1\n\
         [update]\nstrategy = \"start-first\"\n"
    )
}

fn pid(h: &Harness, name: &str) -> Option<i32> {
    h.core.status().into_iter().find(|s| s.name == name).unwrap().pid
}

fn command(h: &Harness, name: &str) -> String {
    let r = h.core.record(name).unwrap();
    r.config.as_ref().unwrap().unit.container.command.clone().unwrap().join(" ")
}

/// `a` serves v1 (healthy), then its file says v2.
fn serving_then(new: &str) -> Harness {
    let mut h = Harness::with(&[("a", &web("v1", ""))]);
    h.run("a");
    h.probe("a", true);
    h.files(&[("a", new)]);
    h
}

#[test]
fn the_new_container_starts_beside_and_takes_the_traffic_once_it_passes() {
    let mut h = serving_then(&web("v2", ""));
    let old = pid(&h, "a");
    let mark = h.mark();
    assert_eq!(h.since(mark), Vec::<String>::new());
    assert_eq!(h.history(), ["start a", "start a+"], "the serving container is not stopped");
    h.run("a+");
    h.probe("a+", true);
    assert_eq!(pid(&h, "a"), old, "still the old one serving while the new one proves itself");
    let mark = h.mark();
    h.advance(secs(5));
    assert_eq!(h.since(mark), ["switch a"], "traffic moves");
    h.advance(DRAIN - ms(1));
    assert_eq!(h.since(mark), ["switch a"], "the old one answers what it accepted before the switch");
    h.advance(ms(1));
    assert_eq!(h.since(mark), ["switch a", "signal a"], "then it gets its stop signal");
    assert_ne!(pid(&h, "a"), old, "the new one serves");
    assert_eq!(h.state("a"), State::Running, "running throughout");
    h.exit_stopped();
    assert!(h.containers.keys().eq(["a"]), "{:?}", h.containers);
    let s = h.core.status().remove(0);
    assert_eq!((s.update_state, s.update_error), (None, None));
    assert_eq!(command(&h, "a"), "v2");
}

#[test]
fn a_new_container_that_fails_is_stopped_and_the_old_one_is_never_touched() {
    let mut h = serving_then(&web("v2", ""));
    let old = pid(&h, "a");
    h.run("a+");
    h.probe("a+", false);
    assert_eq!(h.since(0).iter().filter(|a| a.starts_with("signal")).collect::<Vec<_>>(), ["signal a"]);
    let s = h.core.status().remove(0);
    assert_eq!(s.update_error.as_deref(), Some("unhealthy: health unhealthy (last probe: connection refused)"));
    assert_eq!(s.update_state, Some(UpdateState::RolledBack));
    h.exit_stopped();
    assert_eq!(pid(&h, "a"), old, "the same pid serves");
    assert_eq!(command(&h, "a"), "v1");
    assert!(h.containers.keys().eq(["a"]), "{:?}", h.containers);
    assert!(!h.history().iter().any(|a| a == "switch a"));
}

#[test]
fn a_new_container_that_exits_or_never_starts_leaves_the_old_one_serving() {
    let mut h = serving_then(&web("v2", ""));
    let old = pid(&h, "a");
    h.run("a+");
    h.exit("a+", 1);
    assert_eq!((pid(&h, "a"), command(&h, "a")), (old, "v1".to_string()));
    assert_eq!(h.core.status()[0].update_error.as_deref(), Some("exited 1"));

    let mut h = serving_then(&web("v2", ""));
    h.fail_start("a+", "pull busybox: not found");
    assert_eq!(command(&h, "a"), "v1");
    assert_eq!(h.core.status()[0].update_error.as_deref(), Some("start failed: pull busybox: not found"));
}

#[test]
fn a_failed_switchover_fails_the_update_and_keeps_the_old_one() {
    let mut h = serving_then(&web("v2", ""));
    let old = pid(&h, "a");
    h.switch_result = Err("nft: no such table".into());
    h.run("a+");
    h.probe("a+", true);
    h.advance(secs(5) + DRAIN);
    assert_eq!(h.core.status()[0].update_error.as_deref(), Some("moving its traffic failed: nft: no such table"));
    h.exit_stopped();
    assert_eq!((pid(&h, "a"), command(&h, "a")), (old, "v1".to_string()));
}

#[test]
fn a_new_container_not_healthy_in_time_is_stopped_beside() {
    let mut h = serving_then(&web("v2", ""));
    h.run("a+");
    h.advance(secs(60));
    let error = h.core.status()[0].update_error.clone().unwrap();
    assert!(error.starts_with("not healthy within 1m: health starting"), "{error}");
    assert_eq!(command(&h, "a"), "v1");
}

#[test]
fn dependents_keep_running_through_a_start_first_update() {
    let dependent = "[unit]\nrequires = [\"a\"]\n[container]\nimage = \"busybox\"\ncommand = [\"client\"]\n";
    let mut h = Harness::with(&[("a", &web("v1", "")), ("b", dependent)]);
    h.run("a");
    h.probe("a", true);
    h.run("b");
    h.files(&[("a", &web("v2", "")), ("b", dependent)]);
    h.run("a+");
    h.probe("a+", true);
    h.advance(secs(5) + DRAIN);
    h.exit_stopped();
    assert_eq!(h.history(), ["start a", "start b", "start a+", "switch a", "signal a"], "b is never stopped");
    assert_eq!(h.state("b"), State::Running);
}

#[test]
fn a_unit_others_join_or_on_the_host_network_updates_stop_first() {
    let joiner = "[container]\nimage = \"busybox\"\nnetwork = \"unit:a\"\n";
    let mut h = Harness::with(&[("a", &web("v1", "")), ("j", joiner)]);
    h.run_all();
    h.probe("a", true);
    h.files(&[("a", &web("v2", "")), ("j", joiner)]);
    h.exit_stopped();
    assert!(h.history().iter().all(|a| a != "start a+"), "{:?}", h.history());
    assert!(h.history().iter().any(|a| a == "signal a"), "stopped first");
    let notes: Vec<String> = h
        .log
        .iter()
        .filter_map(|a| match a {
            Action::Note { message, .. } if message.contains("stop-first") => Some(message.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(
        notes,
        ["start-first update done stop-first: other units join its network, which cannot move to a new container"]
    );
}

#[test]
fn a_shutdown_during_a_start_first_trial_stops_both_containers() {
    let mut h = serving_then(&web("v2", ""));
    h.run("a+");
    h.shutdown();
    h.exit_stopped();
    assert!(h.containers.is_empty(), "{:?}", h.containers);
    assert!(h.core.all_stopped());
}

#[test]
fn traffic_moved_after_the_trial_failed_goes_back_to_the_serving_container() {
    let mut h = serving_then(&web("v2", ""));
    let serving = h.generation("a");
    h.run("a+");
    let to = h.generation("a+");
    // The new container's trial ends (it died), and then a switchover to
    // it is reported done (asked for just before its end).
    h.core.exited("a", to, ExitInfo::code(1, false, h.now.wall), h.now);
    h.converge();
    h.core.switched("a", to, Ok(crate::supervisor::policy::Moved { took: ms(2), ports: vec![] }), h.now);
    let back: Vec<(u64, u64)> = h
        .core
        .converge(h.now)
        .iter()
        .filter_map(|a| match a {
            Action::Switch { from, to, .. } => Some((*from, *to)),
            _ => None,
        })
        .collect();
    assert_eq!(back, [(to, serving)]);
}

#[test]
fn an_edit_of_the_published_ports_updates_stop_first() {
    let mut h = serving_then(&web("v2", "").replace("8080:80", "8081:80"));
    h.exit_stopped();
    assert!(h.history().iter().all(|a| a != "start a+"), "{:?}", h.history());
    assert_eq!(h.history(), ["start a", "signal a", "start a"]);
}

#[test]
fn a_restart_after_a_switchover_waits_for_the_old_container_to_end() {
    let mut h = serving_then(&web("v2", ""));
    h.run("a+");
    h.probe("a+", true);
    h.advance(secs(5) + DRAIN);
    assert!(h.containers.contains_key("a-"), "the old one is being stopped");
    // The new one crashes while the old one is still stopping: no start
    // under the unit's name beside it until it is gone.
    h.exit("a", 1);
    h.advance(secs(2));
    assert!(!h.containers.contains_key("a"), "started beside the leaving one: {:?}", h.containers);
    h.exit_stopped();
    assert!(h.containers.contains_key("a"), "started once the old one ended: {:?}", h.containers);
}

#[test]
fn an_edit_during_a_start_first_trial_replaces_its_new_container() {
    let mut h = serving_then(&web("v2", ""));
    let serving = pid(&h, "a");
    h.run("a+");
    let mark = h.mark();
    h.files(&[("a", &web("v3", ""))]);
    assert_eq!(h.since(mark), ["signal a"], "the v2 container beside is stopped");
    h.exit_stopped();
    assert_eq!(command(&h, "a"), "v3");
    h.run("a+");
    h.probe("a+", true);
    h.advance(secs(5) + DRAIN);
    h.exit_stopped();
    assert_ne!(pid(&h, "a"), serving);
    assert_eq!(h.core.status()[0].update_state, None);
    assert!(h.containers.keys().eq(["a"]), "{:?}", h.containers);
}

#[test]
fn a_file_put_back_during_a_start_first_trial_ends_it_and_keeps_the_serving_container() {
    let mut h = serving_then(&web("v2", ""));
    let serving = pid(&h, "a");
    h.run("a+");
    h.files(&[("a", &web("v1", ""))]);
    h.exit_stopped();
    assert!(h.containers.keys().eq(["a"]), "{:?}", h.containers);
    assert_eq!(pid(&h, "a"), serving);
    let s = h.core.status().remove(0);
    assert_eq!((s.update_state, s.image_id.as_deref()), (None, Some("sha256:0")));
}

#[test]
fn a_start_first_update_pins_the_image_its_new_container_ran() {
    let mut h = serving_then(&web("v2", ""));
    h.tag = "sha256:2".into();
    h.run("a+");
    h.probe("a+", true);
    h.advance(secs(5) + DRAIN);
    h.exit_stopped();
    h.tag = "sha256:moved".into();
    h.exit("a", 1);
    h.advance(secs(1));
    assert_eq!(h.pins["a"].as_deref(), Some("sha256:2"), "the crash restart keeps the image");
}

#[test]
fn a_live_edit_during_a_start_first_trial_reaches_the_new_container() {
    let mut h = serving_then(&web("v2", ""));
    h.run("a+");
    let next = h.generation("a+");
    let mark = h.mark();
    h.files(&[("a", &format!("{}[resources]\nmemory = \"64M\"\n", web("v2", "")))]);
    let updated: Vec<u64> = h.log[mark..]
        .iter()
        .filter_map(|a| match a {
            Action::Update { generation, resources: true, .. } => Some(*generation),
            _ => None,
        })
        .collect();
    assert!(updated.contains(&next), "{updated:?}");
}
