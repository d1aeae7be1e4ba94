//! docs/units.md `[health]` and docs/supervisor.md "Action": what an
//! unhealthy container's unit does.

use crate::common::daemon::{Daemon, alive};
use crate::common::{self, text};
use crate::root_only;

use super::support::{poll, sh_unit};

/// A service that runs and whose own probe always fails.
fn unhealthy(extra: &str) -> String {
    format!(
        "{}[health]\nexec = \"exit 1\"\ninterval = \"200ms\"\nretries = 1\n{extra}",
        sh_unit("trap 'exit 0' TERM; sleep 100000 & wait")
    )
}

#[test]
fn on_unhealthy_stop_stops_the_container_and_marks_the_unit_failed() {
    root_only!("on_unhealthy_stop_stops_the_container_and_marks_the_unit_failed");
    let d = Daemon::start();
    let name = common::unique_name("us");
    d.write_unit(&name, &unhealthy("on_unhealthy = \"stop\"\n"));
    let running = poll("running with a pid", 30, || d.unit(&name).filter(|u| u["pid"].is_i64()));
    let pid = running["pid"].as_i64().unwrap();
    let u = d.wait_state(&name, "failed");
    assert!(!alive(pid), "the unhealthy container still runs: {u}");
    assert!(u["pid"].is_null(), "{u}");
    assert_eq!(u["restarts"], 0, "stop means no restart: {u}");
    // And it stays so: a second of probe intervals later, the restart
    // policy ("always") has not brought it back.
    std::thread::sleep(std::time::Duration::from_secs(1));
    let later = d.unit(&name).unwrap();
    assert_eq!((&later["state"], &later["generation"]), (&u["state"], &u["generation"]), "{later}");
    assert_eq!(d.ctl(&["status", &name]).status.code(), Some(3), "{}", text(&d.ctl(&["status", &name]).stdout));
}

#[test]
fn unhealthy_restarts_count_toward_the_restart_limit() {
    root_only!("unhealthy_restarts_count_toward_the_restart_limit");
    let d = Daemon::start();
    let name = common::unique_name("ul");
    // Policy "no" as well: an unhealthy restart is the health check's, and
    // still counts as a failure.
    d.write_unit(&name, &unhealthy("[restart]\npolicy = \"no\"\ndelay = \"100ms\"\nlimit = 2\n"));
    let u = d.wait_for(&name, "failed", 60, |u| u.is_some_and(|u| u["state"] == "failed")).unwrap();
    assert_eq!(u["restarts"], 2, "{u}");
    assert_eq!(u["generation"], 3, "the first run and two restarts: {u}");
    assert!(u["reason"].as_str().is_some_and(|r| r.contains("restart limit")), "{u}");
    assert!(u["pid"].is_null(), "{u}");
}
