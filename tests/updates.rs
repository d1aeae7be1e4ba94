//! Safe updates end to end, as root: a real daemon, real containers
//! (busybox httpd), a real registry (Debian's docker-registry). An edit
//! or a new image that fails its trial goes back to what ran, the file on
//! disk untouched; `update` follows a moved tag; `rollback` goes one step
//! back; `prune` keeps the image a rollback needs.

mod common;

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::daemon::{Daemon, busybox};
use common::registry::Registry;
use common::text;
use serde_json::Value;

/// httpd on 8080 serving `content`, and a shell that stays (stopping at
/// once on SIGTERM).
fn server(content: &str) -> String {
    format!(
        "trap 'exit 0' TERM; mkdir -p /www; echo {content} > /www/index.html; httpd -p 8080 -h /www; while true; do sleep 1 & wait; done"
    )
}

/// A busybox unit running `script`, with short update windows.
fn unit(script: &str, update: &str, more: &str) -> String {
    format!(
        "[container]\nimage = \"{}\"\ncommand = [\"sh\", \"-c\", {script:?}]\n[restart]\ndelay = \"100ms\"\n[update]\n{update}\n{more}",
        busybox()
    )
}

/// What the unit's server answers, asked from inside its container.
fn served(d: &Daemon, name: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let out = d.ctl(&["exec", name, "--", "wget", "-q", "-O", "-", "http://127.0.0.1:8080/"]);
        if out.status.success() {
            return text(&out.stdout).trim().to_string();
        }
        assert!(Instant::now() < deadline, "{name} serves nothing: {}", text(&out.stderr));
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn rolled_back(d: &Daemon, name: &str, secs: u64) -> Value {
    d.wait_for(name, "rolled back and running", secs, |u| {
        u.is_some_and(|u| u["update_state"] == "rolled-back" && u["state"] == "running")
    })
    .unwrap()
}

/// `supervisorctl events`, read once it is ended.
struct Events(std::process::Child);

impl Events {
    fn start(d: &Daemon) -> Events {
        let child = Command::new(env!("CARGO_BIN_EXE_supervisorctl"))
            .arg("--socket")
            .arg(d.socket())
            .arg("events")
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        Events(child)
    }

    fn finish(mut self) -> String {
        let _ = self.0.kill();
        let mut out = String::new();
        self.0.stdout.take().unwrap().read_to_string(&mut out).unwrap();
        let _ = self.0.wait();
        out
    }
}

#[test]
fn an_edit_to_a_command_that_exits_rolls_back_and_serves_the_old_content() {
    root_only!("an_edit_to_a_command_that_exits_rolls_back_and_serves_the_old_content");
    let d = Daemon::start();
    let name = common::unique_name("ua");
    let windows = "healthy_within = \"5s\"\nmin_healthy = \"1s\"";
    d.write_unit(&name, &unit(&server("one"), windows, ""));
    let first = d.wait_state(&name, "running");
    assert!(first["update_state"].is_null() && first["update_error"].is_null(), "{first}");
    // Nothing to roll back to yet: refused, with the reason.
    let out = d.ctl(&["rollback", &name]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("has no previous config to roll back to"), "{}", text(&out.stderr));

    let events = Events::start(&d);
    let broken = unit("trap 'exit 0' TERM; echo broken; exit 1", windows, "");
    let file = d.write_unit(&name, &broken);
    let u = rolled_back(&d, &name, 30);
    assert_eq!(u["update_error"], "exited 1", "{u}");
    assert_ne!(u["pid"], first["pid"], "stop-first: the old container was replaced");
    assert_eq!(served(&d, &name), "one", "the previous config does not serve");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), broken, "the unit file was touched");
    let line = text(&d.ctl(&["status", &name]).stdout);
    assert!(line.contains("update failed: exited 1, running the previous config"), "{line}");
    d.wait_for(&name, "settled", 10, |u| u.is_some_and(|u| u["state"] == "running"));
    let log = events.finish();
    assert!(log.contains(&format!("{name} update started (the unit file changed)")), "{log}");
    assert!(log.contains(&format!("{name} update rolled-back (exited 1)")), "{log}");

    // It stays on the previous config until the file changes again.
    d.write_unit(&name, &unit(&server("two"), windows, ""));
    d.wait_for(&name, "updated", 30, |u| u.is_some_and(|u| u["update_state"].is_null() && u["state"] == "running"));
    assert_eq!(served(&d, &name), "two");
}

#[test]
fn an_edit_whose_probe_never_passes_rolls_back_after_healthy_within() {
    root_only!("an_edit_whose_probe_never_passes_rolls_back_after_healthy_within");
    let d = Daemon::start();
    let name = common::unique_name("ub");
    let windows = "healthy_within = \"3s\"\nmin_healthy = \"1s\"";
    d.write_unit(&name, &unit(&server("one"), windows, ""));
    d.wait_state(&name, "running");
    // Probed on a port nothing listens on; retries high enough that it
    // stays `starting`: only healthy_within ends it.
    let health = "[health]\nhttp = \"http://localhost:9/\"\ninterval = \"200ms\"\ntimeout = \"1s\"\nretries = 1000\n";
    let t0 = Instant::now();
    d.write_unit(&name, &unit(&server("two"), windows, health));
    let u = rolled_back(&d, &name, 30);
    assert!(t0.elapsed() >= Duration::from_secs(3), "rolled back after {:?}, before healthy_within", t0.elapsed());
    let e = u["update_error"].as_str().unwrap_or_default();
    assert!(e.starts_with("not healthy within 3s: health starting"), "{u}");
    assert!(u["health"].is_null(), "the previous config has no probe: {u}");
    assert_eq!(served(&d, &name), "one");
}

#[test]
fn a_container_that_dies_within_min_healthy_rolls_back() {
    root_only!("a_container_that_dies_within_min_healthy_rolls_back");
    let d = Daemon::start();
    let name = common::unique_name("uc");
    let windows = "healthy_within = \"5s\"\nmin_healthy = \"3s\"";
    d.write_unit(&name, &unit(&server("one"), windows, ""));
    d.wait_state(&name, "running");
    // Runs (so it passes healthy_within at once), and dies a second later.
    d.write_unit(&name, &unit("trap 'exit 0' TERM; sleep 1; exit 3", windows, ""));
    let u = rolled_back(&d, &name, 30);
    assert_eq!(u["update_error"], "exited 3", "{u}");
    assert_eq!(served(&d, &name), "one");
}

/// A copy of the busybox layout with one image per tag, each running
/// `script` as its command.
fn images(dir: &Path, tags: &[(&str, &str)]) -> String {
    let layout = dir.join("layout");
    let busybox = busybox();
    let from = busybox.trim_start_matches("oci:").trim_end_matches(":latest");
    let ok = Command::new("cp").arg("-a").arg(from).arg(&layout).status().unwrap();
    assert!(ok.success());
    for (tag, script) in tags {
        let image = format!("{}:latest", layout.display());
        let out = Command::new("umoci")
            .args(["config", "--image", &image, "--tag", tag])
            .args(["--config.cmd", "sh", "--config.cmd", "-c", "--config.cmd", script])
            .output()
            .unwrap();
        assert!(out.status.success(), "umoci config: {}", text(&out.stderr));
    }
    layout.display().to_string()
}

/// A unit following `reference` in its registry.
fn follower(reference: &str) -> String {
    format!(
        "[container]\nimage = \"{reference}\"\n[restart]\ndelay = \"100ms\"\n[update]\nauto = \"registry\"\nhealthy_within = \"5s\"\nmin_healthy = \"1s\"\n"
    )
}

fn image_id(d: &Daemon, name: &str) -> String {
    d.unit(name).unwrap()["image_id"].as_str().unwrap().to_string()
}

fn update(d: &Daemon, args: &[&str]) -> (bool, String, String) {
    let out = d.ctl(&[&["update"], args].concat());
    (out.status.success(), text(&out.stdout), text(&out.stderr))
}

#[test]
fn a_moved_tag_is_found_rolled_out_and_a_broken_image_is_rolled_back() {
    root_only!("a_moved_tag_is_found_rolled_out_and_a_broken_image_is_rolled_back");
    let registry = Registry::start(None);
    let d = Daemon::start();
    let layout = images(d.dir.path(), &[("v1", &server("one")), ("v2", &server("two")), ("bad", "exit 1")]);
    let name = common::unique_name("ud");
    let repo = format!("test/{name}:latest");
    let reference = format!("{}/{repo}", registry.host());
    registry.push(&format!("oci:{layout}:v1"), &repo, false);
    d.write_unit(&name, &follower(&reference));
    d.wait_state(&name, "running");
    let one = image_id(&d, &name);
    let (ok, out, err) = update(&d, &["--dry-run"]);
    assert!(ok && out.contains(&format!("{name}: up to date ({one})")), "{out}{err}");

    // The tag moves: --dry-run says so with both image IDs, and changes nothing.
    registry.push(&format!("oci:{layout}:v2"), &repo, false);
    let (ok, out, err) = update(&d, &["--dry-run", "--json"]);
    assert!(ok, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    let report = v["units"].as_array().unwrap().iter().find(|r| r["unit"] == name.as_str()).unwrap().clone();
    assert_eq!((report["outcome"].as_str(), report["running"].as_str()), (Some("available"), Some(one.as_str())));
    let two = report["registry"].as_str().unwrap().to_string();
    assert_ne!(two, one);
    assert_eq!(image_id(&d, &name), one, "--dry-run changed the image");

    // `update` rolls it out and waits for its trial.
    let (ok, out, err) = update(&d, &[&name]);
    assert!(ok && out.contains(&format!("{name}: updated {one} -> {two}")), "{out}{err}");
    let u = d.unit(&name).unwrap();
    assert_eq!((u["image_id"].as_str(), u["previous_image_id"].as_str()), (Some(two.as_str()), Some(one.as_str())));
    assert!(u["update_state"].is_null(), "{u}");
    assert_eq!(served(&d, &name), "two");

    // A broken image under the tag: rolled back to the image that ran.
    registry.push(&format!("oci:{layout}:bad"), &repo, false);
    let (ok, out, err) = update(&d, &[]);
    assert!(!ok && err.contains("failed its trial (exited 1); rolled back to"), "{out}{err}");
    // Its file's config with the image that ran: rolled back, and the
    // error says what failed.
    let u = d.unit(&name).unwrap();
    assert_eq!((u["image_id"].as_str(), u["update_error"].as_str()), (Some(two.as_str()), Some("exited 1")), "{u}");
    assert_eq!(u["update_state"], "rolled-back", "{u}");
    d.wait_state(&name, "running");
    assert_eq!(served(&d, &name), "two");
    // Not tried again while the tag names it.
    let (ok, out, err) = update(&d, &["--dry-run"]);
    assert!(ok && out.contains("(rolled back before)"), "{out}{err}");
    let (_, out, err) = update(&d, &[&name]);
    assert!(out.contains("was rolled back before; staying on"), "{out}{err}");
    assert_eq!(image_id(&d, &name), two);

    // A unit that does not follow its tag is named, not updated.
    let other = common::unique_name("un");
    d.write_unit(&other, &unit(&server("x"), "", ""));
    d.wait_for(&other, "loaded", 10, |u| u.is_some());
    let (ok, _, err) = update(&d, &[&other]);
    assert!(!ok && err.contains(&format!("{other} does not follow its image's tag")), "{err}");
}

#[test]
fn rollback_after_a_good_update_returns_to_the_previous_image_kept_by_prune() {
    root_only!("rollback_after_a_good_update_returns_to_the_previous_image_kept_by_prune");
    let mut registry = Registry::start(None);
    let d = Daemon::start();
    let layout = images(d.dir.path(), &[("v1", &server("one")), ("v2", &server("two"))]);
    let name = common::unique_name("ue");
    let repo = format!("test/{name}:latest");
    let reference = format!("{}/{repo}", registry.host());
    registry.push(&format!("oci:{layout}:v1"), &repo, false);
    d.write_unit(&name, &follower(&reference));
    d.wait_state(&name, "running");
    let one = image_id(&d, &name);
    registry.push(&format!("oci:{layout}:v2"), &repo, false);
    let (ok, out, err) = update(&d, &[]);
    assert!(ok, "{out}{err}");
    let two = image_id(&d, &name);
    assert_ne!(two, one);

    // prune keeps the image a rollback returns to, though no tag names it.
    let out = d.ctl(&["prune"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = d.ctl(&["rollback", &name]);
    assert!(out.status.success(), "{}{}", text(&out.stdout), text(&out.stderr));
    assert!(
        text(&out.stdout).contains(&format!("rolled back to the previous config (image {one})")),
        "{}",
        text(&out.stdout)
    );
    let u = d.unit(&name).unwrap();
    assert_eq!((u["image_id"].as_str(), u["update_state"].as_str()), (Some(one.as_str()), Some("rolled-back")));
    assert_eq!(served(&d, &name), "one");
    let line = text(&d.ctl(&["status", &name]).stdout);
    assert!(line.contains("rolled back, running the previous config"), "{line}");

    // A registry that is gone makes an error line, and nothing else.
    let pid = d.unit(&name).unwrap()["pid"].clone();
    registry.kill();
    let (ok, out, err) = update(&d, &[&name]);
    assert!(!ok && err.contains(&format!("{name}: check {reference} at its source")), "{out}{err}");
    let u = d.unit(&name).unwrap();
    assert_eq!((&u["pid"], u["state"].as_str(), u["image_id"].as_str()), (&pid, Some("running"), Some(one.as_str())));
}

#[test]
fn the_timer_rolls_out_a_moved_tag_every_auto_update_interval() {
    root_only!("the_timer_rolls_out_a_moved_tag_every_auto_update_interval");
    let registry = Registry::start(None);
    let d = Daemon::start_configured("auto_update_interval = \"1s\"\n", |_| {});
    let layout = images(d.dir.path(), &[("v1", &server("one")), ("v2", &server("two"))]);
    let name = common::unique_name("ut");
    let repo = format!("test/{name}:latest");
    registry.push(&format!("oci:{layout}:v1"), &repo, false);
    d.write_unit(&name, &follower(&format!("{}/{repo}", registry.host())));
    d.wait_state(&name, "running");
    let one = image_id(&d, &name);
    registry.push(&format!("oci:{layout}:v2"), &repo, false);
    let u = d
        .wait_for(&name, "on the new image", 30, |u| {
            u.is_some_and(|u| u["image_id"] != one.as_str() && u["previous_image_id"] == one.as_str())
        })
        .unwrap();
    d.wait_for(&name, "through its trial", 30, |u| u.is_some_and(|u| u["update_state"].is_null()));
    assert_eq!(served(&d, &name), "two", "{u}");
    assert!(d.log().contains(&format!("{name}: auto-update: rolling out")), "{}", d.log());
}
