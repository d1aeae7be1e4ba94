//! docs/supervisor.md's lifecycle: `after` ordering and its reverse at
//! shutdown, stop signals, the backoff's cap and reset, one daemon per run
//! directory, SIGHUP, a unit file deleted and written anew, systemd's watchdog.

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::support::{Events, busybox_with, poll, sh_unit, sh_unit_on, shared_dir, shared_volume, time};
use crate::common::daemon::{Daemon, alive};
use crate::common::{self, text};
use crate::root_only;

fn pid(u: &Value) -> i64 {
    u["pid"].as_i64().unwrap_or_else(|| panic!("no pid: {u}"))
}

#[test]
fn after_orders_starts_and_shutdown_stops_in_reverse_one_at_a_time() {
    root_only!("after_orders_starts_and_shutdown_stops_in_reverse_one_at_a_time");
    let mut d = Daemon::start();
    let shared = shared_dir(&d);
    let (a, b, c) = (common::unique_name("oa"), common::unique_name("ob"), common::unique_name("oc"));
    // Each notes the start and the end of its stop; the stop takes a while,
    // so stops that overlap would show in the file.
    let body = |after: Option<&str>| {
        let unit = sh_unit(
            "trap 'echo stop-begin-$HOSTNAME >> /s/order; sleep 0.3; echo stop-end-$HOSTNAME >> /s/order; exit 0' TERM; \
             echo trapped-$HOSTNAME >> /s/order; sleep 100000 & wait",
        );
        let after = after.map(|x| format!("[unit]\nafter = [\"{x}\"]\n")).unwrap_or_default();
        format!("{after}{unit}{}", shared_volume(&shared))
    };
    let events = Events::follow(&d);
    // Written last first: the order must come from `after`.
    d.write_unit(&c, &body(Some(&b)));
    d.write_unit(&b, &body(Some(&a)));
    d.write_unit(&a, &body(None));
    let ours = |e: &Value| [&a, &b, &c].iter().any(|n| e["unit"] == n.as_str());
    let seen = events.all_until(60, ours, |e| e["unit"] == c.as_str() && e["new"] == "running");
    let steps: Vec<String> = seen.iter().map(|e| format!("{} {}", e["unit"].as_str().unwrap(), e["new"])).collect();
    let first = |n: &str, state: &str| {
        steps.iter().position(|s| *s == format!("{n} \"{state}\"")).unwrap_or_else(|| panic!("{n} {state}: {steps:#?}"))
    };
    assert!(first(&a, "running") < first(&b, "starting"), "{b} started before {a} ran: {steps:#?}\n{}", d.log());
    assert!(first(&b, "running") < first(&c, "starting"), "{c} started before {b} ran: {steps:#?}\n{}", d.log());
    let started: Vec<_> = [&a, &b, &c].iter().map(|n| time(&d.unit(n).unwrap()["started_at"])).collect();
    assert!(started[0] < started[1] && started[1] < started[2], "started_at: {started:?}\n{}", d.log());

    // A stop before its trap is set would take the whole stop timeout.
    poll("the traps set", 30, || {
        let order = std::fs::read_to_string(shared.join("order")).unwrap_or_default();
        [&a, &b, &c].iter().all(|n| order.contains(&format!("trapped-{n}\n"))).then_some(())
    });

    assert!(d.terminate(30).success(), "{}", d.log());
    let order = std::fs::read_to_string(shared.join("order")).unwrap();
    let at = |what: &str, n: &str| {
        let line = format!("{what}-{n}\n");
        order.find(&line).unwrap_or_else(|| panic!("no {line:?} in:\n{order}"))
    };
    assert!(at("stop-end", &c) < at("stop-begin", &b), "{b} was stopped before {c} had stopped:\n{order}");
    assert!(at("stop-end", &b) < at("stop-begin", &a), "{a} was stopped before {b} had stopped:\n{order}");
}

#[test]
fn the_stop_signal_key_and_the_images_stopsignal_are_what_stop_sends() {
    root_only!("the_stop_signal_key_and_the_images_stopsignal_are_what_stop_sends");
    let d = Daemon::start();
    let image = busybox_with(d.dir.path(), "stopsig", &["--config.stopsignal", "SIGUSR2"]);
    let script = "for s in TERM USR1 USR2; do trap \"echo got-$s; exit 0\" $s; done; echo up; sleep 100000 & wait";
    let (key, from_image, both) = (common::unique_name("sk"), common::unique_name("si"), common::unique_name("sb"));
    d.write_unit(&key, &format!("{}[stop]\nsignal = \"SIGUSR1\"\n", sh_unit(script)));
    d.write_unit(&from_image, &sh_unit_on(&image, script));
    d.write_unit(&both, &format!("{}[stop]\nsignal = \"usr1\"\n", sh_unit_on(&image, script)));
    for (name, expected) in [(&key, "got-USR1"), (&from_image, "got-USR2"), (&both, "got-USR1")] {
        d.wait_state(name, "running");
        d.wait_log(name, None, "stdout up");
        let out = d.ctl(&["stop", name]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        let log = d.wait_log(name, None, "got-");
        assert!(log.contains(expected) && log.matches("got-").count() == 1, "{name}: wanted {expected}:\n{log}");
        let u = d.unit(name).unwrap();
        assert_eq!((u["exit_code"].as_i64(), &u["signal"]), (Some(0), &Value::Null), "{u}");
    }
}

#[test]
fn backoff_is_capped_at_max_delay_and_reset_after_a_long_enough_run() {
    root_only!("backoff_is_capped_at_max_delay_and_reset_after_a_long_enough_run");
    let d = Daemon::start();
    let shared = shared_dir(&d);
    let name = common::unique_name("bo");
    let events = Events::follow(&d);
    // Runs 1-6 fail at once; run 7 lasts past reset_after, then fails;
    // run 8 fails at once; run 9 stays.
    let script = "trap 'exit 0' TERM; n=$(cat /s/n 2>/dev/null || echo 0); n=$((n+1)); echo $n > /s/n; \
                  if [ $n -eq 7 ]; then sleep 2; fi; if [ $n -ge 9 ]; then sleep 100000 & wait; fi; exit 1";
    d.write_unit(
        &name,
        &format!(
            "{}{}[restart]\npolicy = \"always\"\ndelay = \"100ms\"\nmax_delay = \"1s\"\nreset_after = \"1s\"\n",
            sh_unit(script),
            shared_volume(&shared)
        ),
    );
    // Each wait in backoff, by the daemon's own clock: from the event that
    // enters backoff to the one that leaves it.
    let mut delays = Vec::new();
    while delays.len() < 8 {
        let entered = events.until(&name, 60, |e| e["new"] == "backoff");
        let left = events.until(&name, 60, |e| e["old"] == "backoff");
        let (from, to) = (time(&entered.last().unwrap()["time"]), time(&left.last().unwrap()["time"]));
        delays.push(to.duration_since(from).unwrap());
    }
    let ms = |n: usize| delays[n - 1].as_millis();
    let shown: Vec<u128> = (1..=8).map(ms).collect();
    // A timer never fires early; it may fire late on a loaded machine.
    assert!(ms(1) >= 100 && ms(2) >= 200 && ms(3) >= 400 && ms(4) >= 800, "no doubling: {shown:?} ms");
    // Uncapped, the 5th and 6th would be 1.6 s and 3.2 s.
    assert!((1000..1500).contains(&ms(5)) && (1000..1500).contains(&ms(6)), "not capped at 1s: {shown:?} ms");
    // After the 2 s run the count starts again: 100 ms, then 200 ms (not 1 s).
    assert!((100..600).contains(&ms(7)), "not reset after a run past reset_after: {shown:?} ms");
    assert!((200..700).contains(&ms(8)), "{shown:?} ms");
    let u = d.wait_state(&name, "running");
    assert_eq!(u["restarts"], 8, "{u}");
}

#[test]
fn a_second_supervisord_on_the_same_run_directory_is_refused_and_the_first_is_unharmed() {
    root_only!("a_second_supervisord_on_the_same_run_directory_is_refused_and_the_first_is_unharmed");
    let d = Daemon::start();
    let name = common::unique_name("sl");
    d.write_unit(&name, &sh_unit("trap 'exit 0' TERM; sleep 100000 & wait"));
    let before = d.wait_state(&name, "running");
    let log = std::fs::File::create(d.dir.path().join("second.log")).unwrap();
    let mut second = d.command().stderr(log).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(st) = second.try_wait().unwrap() {
            break st;
        }
        if Instant::now() > deadline {
            let _ = second.kill();
            let _ = second.wait();
            panic!("a second supervisord on the same run directory kept running");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let err = std::fs::read_to_string(d.dir.path().join("second.log")).unwrap();
    assert_eq!(status.code(), Some(1), "{err}");
    let run = d.dir.path().join("run");
    let said = format!("the run directory {} is in use by a supervisord or a runtime run-unit", run.display());
    assert!(err.contains(&said) && err.contains("one supervisord per run directory"), "{err}");
    // The first still answers on its socket, and its container was not
    // taken for a leftover.
    let after = d.unit(&name).unwrap();
    assert_eq!((&after["state"], &after["pid"]), (&before["state"], &before["pid"]), "{after}");
    assert!(alive(pid(&after)));
    assert!(run.join(format!("containers/{name}.json")).exists(), "the state record is gone");
    // Nor does `runtime cleanup` take them for leftovers.
    let out = Command::new(env!("CARGO_BIN_EXE_supervisord"))
        .arg("--run-dir")
        .arg(&run)
        .args(["runtime", "cleanup"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    assert!(text(&out.stderr).contains("its containers are not leftovers; stop it first"), "{}", text(&out.stderr));
    assert_eq!(d.unit(&name).unwrap()["pid"], before["pid"]);
    assert!(alive(pid(&before)), "cleanup killed the daemon's container");
    let out = d.ctl(&["restart", &name]);
    assert!(out.status.success(), "{}", text(&out.stderr));
}

/// A bind mount over a unit file: the file changes, and inotify says
/// nothing (mounts make no inotify events), so only a reload sees it.
struct BindMount(std::path::PathBuf);

impl Drop for BindMount {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn sighup_reads_the_unit_directory_again() {
    root_only!("sighup_reads_the_unit_directory_again");
    let d = Daemon::start();
    let name = common::unique_name("hu");
    let file = d.write_unit(&name, &sh_unit("trap 'exit 0' TERM; echo config-one; sleep 100000 & wait"));
    let first = d.wait_state(&name, "running");
    let other = d.dir.path().join("other.toml");
    std::fs::write(&other, sh_unit("trap 'exit 0' TERM; echo config-two; sleep 100000 & wait")).unwrap();
    let st = std::process::Command::new("mount").arg("--bind").arg(&other).arg(&file).status().unwrap();
    assert!(st.success());
    let _mount = BindMount(file);
    // SAFETY: kill(2) of the test's own child.
    unsafe { libc::kill(d.child.as_ref().unwrap().id() as i32, libc::SIGHUP) };
    d.wait_for(&name, "restarted with the new file", 30, |u| {
        u.is_some_and(|u| u["state"] == "running" && u["pid"] != first["pid"])
    });
    d.wait_log(&name, None, "config-two");
    assert!(d.unit(&name).unwrap()["error"].is_null());
}

#[test]
fn a_unit_file_deleted_and_written_anew_runs_the_new_content() {
    root_only!("a_unit_file_deleted_and_written_anew_runs_the_new_content");
    let d = Daemon::start();
    let name = common::unique_name("dr");
    let file = d.write_unit(&name, &sh_unit("trap 'exit 0' TERM; echo first-file; sleep 100000 & wait"));
    let first = d.wait_state(&name, "running");
    // At once, as `rm x.toml && cp new.toml x.toml` does.
    std::fs::remove_file(&file).unwrap();
    d.write_unit(&name, &sh_unit("trap 'exit 0' TERM; echo second-file; sleep 100000 & wait"));
    let second = d
        .wait_for(&name, "running the new file", 30, |u| {
            u.is_some_and(|u| u["state"] == "running" && u["pid"] != first["pid"])
        })
        .unwrap();
    d.wait_log(&name, None, "second-file");
    assert!(!alive(pid(&first)));
    // After the removal was seen, as a deploy tool that deletes then writes.
    std::fs::remove_file(&file).unwrap();
    d.wait_for(&name, "removed", 30, |u| u.is_none());
    d.write_unit(&name, &sh_unit("trap 'exit 0' TERM; echo third-file; sleep 100000 & wait"));
    let third = d
        .wait_for(&name, "running the third file", 30, |u| {
            u.is_some_and(|u| u["state"] == "running" && u["pid"] != second["pid"])
        })
        .unwrap();
    d.wait_log(&name, None, "third-file");
    assert!(alive(pid(&third)) && !alive(pid(&second)));
}

#[test]
fn the_watchdog_is_pinged_at_half_of_watchdog_usec() {
    root_only!("the_watchdog_is_pinged_at_half_of_watchdog_usec");
    let sock_dir = tempfile::tempdir().unwrap();
    let path = sock_dir.path().join("notify");
    let sock = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let _d = Daemon::start_with(|c| {
        c.env("NOTIFY_SOCKET", &path).env("WATCHDOG_USEC", "1000000").env_remove("WATCHDOG_PID");
    });
    // Pings over 3 s, after the first one.
    let mut buf = [0u8; 4096];
    let mut pings = Vec::new();
    let mut first: Option<Instant> = None;
    while first.is_none_or(|f| f.elapsed() < Duration::from_secs(3)) {
        let n = sock.recv(&mut buf).unwrap_or_else(|e| panic!("no ping: {e}; pings so far: {}", pings.len()));
        if String::from_utf8_lossy(&buf[..n]).lines().any(|l| l == "WATCHDOG=1") {
            let now = Instant::now();
            first.get_or_insert(now);
            pings.push(now);
        }
    }
    let gaps: Vec<u128> = pings.windows(2).map(|w| (w[1] - w[0]).as_millis()).collect();
    // Every 500 ms: 6 pings in 3 s; a loaded machine may delay some.
    assert!((4..=8).contains(&gaps.len()), "pings every {gaps:?} ms");
    let mean = gaps.iter().sum::<u128>() / gaps.len() as u128;
    assert!((400..=700).contains(&mean), "pings every {gaps:?} ms (mean {mean})");
    assert!(gaps.iter().all(|g| *g < 1000), "a gap past WATCHDOG_USEC would have systemd kill us: {gaps:?} ms");
}
