//! `supervisorctl` verbs that talk to a running supervisord.

use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use serde_json::Value;

use super::client::{Client, encode};

pub(super) fn fail(message: impl std::fmt::Display) -> ExitCode {
    errln!("supervisorctl: {message}");
    ExitCode::from(1)
}

pub(super) fn print_json(v: &Value) {
    outln!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
}

fn paint(text: &str, state: &str, color: bool) -> String {
    if !color {
        return text.to_string();
    }
    let code = match state {
        "running" => "32",
        "failed" | "invalid" | "backoff" => "31",
        "inactive" | "exited" => "2",
        _ => "33",
    };
    format!("\x1b[{code}m{text}\x1b[0m")
}

fn clock(d: Duration) -> String {
    let s = d.as_secs();
    format!("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}

fn time_of(v: &Value) -> Option<SystemTime> {
    v.as_str().and_then(|s| humantime::parse_rfc3339_weak(s).ok())
}

/// One line of `status` for a unit's status object.
pub fn status_line(u: &Value, width: usize, now: SystemTime, color: bool) -> String {
    let name = u["name"].as_str().unwrap_or("?");
    let state = u["state"].as_str().unwrap_or("?");
    let since = time_of(&u["since"]).and_then(|t| now.duration_since(t).ok()).unwrap_or_default();
    let reason = u["reason"].as_str();
    let mut detail = match state {
        "running" => {
            let uptime = time_of(&u["started_at"]).and_then(|t| now.duration_since(t).ok()).unwrap_or_default();
            let mut d = format!("pid {}, uptime {}", u["pid"], clock(uptime));
            if let Some(h) = u["health"].as_str() {
                d.push_str(&format!(", {h}"));
            }
            if let Some(s) = u["notify_status"].as_str() {
                d.push_str(&format!(", status {s:?}"));
            }
            d
        }
        "paused" => {
            let mut d = format!("pid {}, paused for {}", u["pid"], clock(since));
            if let Some(h) = u["health"].as_str() {
                d.push_str(&format!(", {h} when paused"));
            }
            d
        }
        "backoff" => {
            let retry = time_of(&u["next_retry"]).and_then(|t| t.duration_since(now).ok()).unwrap_or_default();
            let mut d = reason.unwrap_or("exited").to_string();
            // The current error (an edit that made the file invalid, a
            // failed pull) as `status --json` has it.
            if let Some(e) = u["error"].as_str().filter(|e| !d.contains(e)) {
                d = format!("{d}; {e}");
            }
            format!("{d}, retry in {:.1}s", retry.as_secs_f64())
        }
        "invalid" => u["error"].as_str().unwrap_or("invalid").to_string(),
        _ => {
            let mut d = reason.map(String::from).unwrap_or_default();
            if let Some(s) = u["notify_status"].as_str() {
                d = if d.is_empty() { format!("status {s:?}") } else { format!("{d}, status {s:?}") };
            }
            if let Some(e) = u["error"].as_str() {
                d = if d.is_empty() || d.contains(e) { e.to_string() } else { format!("{d}; {e}") };
            }
            if !d.is_empty() {
                d.push_str(", ");
            }
            d.push_str(&format!("since {} ago", clock(since)));
            d
        }
    };
    match (u["update_state"].as_str(), u["update_error"].as_str()) {
        (Some("in-progress"), _) => detail.push_str(", update in progress"),
        (Some("rolled-back"), Some(e)) => {
            detail.push_str(&format!(", update failed: {e}, running the previous config"))
        }
        (Some("rolled-back"), None) => detail.push_str(", rolled back, running the previous config"),
        // A new image that failed (back on the image that ran, the file's
        // config), or rollback = false (the failed config stays).
        (_, Some(e)) => detail.push_str(&format!(", update failed: {e}")),
        _ => {}
    }
    // A running unit whose file went bad still says so.
    if let (Some(e), "running") = (u["error"].as_str(), state) {
        detail.push_str(&format!("; file error: {e}"));
    }
    let restarts = u["restarts"].as_u64().unwrap_or(0);
    if restarts > 0 {
        detail.push_str(&format!(", restarts {restarts}"));
    }
    if let Some(image) = u["image"].as_str() {
        detail.push_str(&format!(", image {image}"));
    }
    let tag = state.to_uppercase();
    format!("{name:<width$}  {}  {detail}", paint(&format!("{tag:<8}"), state, color))
}

pub fn status(client: &Client, units: &[String], json: bool) -> ExitCode {
    let r = match client.request("GET", "/v1/units") {
        Ok(r) if r.status == 200 => r,
        Ok(r) => return fail(r.error()),
        Err(e) => return fail(e),
    };
    let Ok(Value::Array(all)) = r.json() else { return fail("bad answer from supervisord") };
    for u in units {
        if !all.iter().any(|v| v["name"] == u.as_str()) {
            errln!("supervisorctl: no unit named {u:?}");
            return ExitCode::from(4);
        }
    }
    let list: Vec<&Value> =
        all.iter().filter(|v| units.is_empty() || units.iter().any(|u| v["name"] == u.as_str())).collect();
    if json {
        print_json(&Value::Array(list.iter().map(|v| (*v).clone()).collect()));
    } else {
        // An appliance without a data disk loses everything at power-off.
        if let Ok(boot) = client.request("GET", "/v1/boot").and_then(|r| r.json())
            && boot["pid1"] == true
            && boot["data_disk"].is_null()
        {
            errln!("note: no data disk: units, images, volumes and logs are in RAM, gone at power-off");
        }
        let width = list.iter().filter_map(|v| v["name"].as_str()).map(str::len).max().unwrap_or(4);
        let color = super::stdout_color();
        let now = SystemTime::now();
        for u in &list {
            outln!("{}", status_line(u, width, now, color));
        }
    }
    if list.iter().all(|v| v["state"] == "running") { ExitCode::SUCCESS } else { ExitCode::from(3) }
}

pub fn op(client: &Client, verb: &str, units: &[String], no_block: bool, json: bool) -> ExitCode {
    let mut code = ExitCode::SUCCESS;
    let mut out = Vec::new();
    for u in units {
        let target = format!("/v1/units/{}/{verb}{}", encode(u), if no_block { "?no_block=1" } else { "" });
        let r = match client.request("POST", &target) {
            Ok(r) => r,
            Err(e) => return fail(e),
        };
        let v = r.json().unwrap_or(Value::Null);
        // Refused (an unknown, invalid or paused unit): an error, not a
        // status.
        if r.status == 404 || r.status >= 500 || v["state"].is_null() {
            errln!("supervisorctl: {}", r.error());
            code = ExitCode::from(1);
            continue;
        }
        if r.status != 200 {
            code = ExitCode::from(1);
        }
        if json {
            out.push(v);
        } else {
            let state = v["state"].as_str().unwrap_or("?");
            let mut line = format!("{u}: {state}");
            if let Some(reason) = v["reason"].as_str().or(v["error"].as_str()) {
                if state != "running" {
                    line.push_str(&format!(" ({reason})"));
                }
            }
            if r.status == 200 { outln!("{line}") } else { errln!("supervisorctl: {line}") }
        }
    }
    if json {
        print_json(&Value::Array(out));
    }
    code
}

pub fn reload(client: &Client, dry_run: bool, json: bool) -> ExitCode {
    let target = if dry_run { "/v1/reload?dry_run=1" } else { "/v1/reload" };
    let r = match client.request("POST", target) {
        Ok(r) => r,
        Err(e) => return fail(e),
    };
    let Ok(v) = r.json() else { return fail("bad answer from supervisord") };
    if r.status != 200 && r.status != 422 {
        return fail(r.error());
    }
    if json {
        print_json(&v);
    } else {
        print_plan(&v, |_| true);
    }
    if r.status == 422 { ExitCode::from(1) } else { ExitCode::SUCCESS }
}

/// A reload's (or an edit's) plan, one line per unit that `shown` keeps:
/// `UNIT: ACTION[ -> STATE]`, and its error on the next line.
pub fn print_plan(v: &Value, shown: impl Fn(&Value) -> bool) {
    for step in v["plan"].as_array().into_iter().flatten().filter(|s| shown(s)) {
        let unit = step["unit"].as_str().unwrap_or("?");
        let action = step["action"].as_str().unwrap_or("?");
        let mut line = format!("{unit}: {action}");
        if let Some(s) = step["state"].as_str() {
            line.push_str(&format!(" -> {s}"));
        }
        if let Some(e) = step["error"].as_str() {
            line.push_str(&format!("\n  {e}"));
        }
        outln!("{line}");
    }
}

/// A GET answered 200 with JSON, or the exit of a failed one (printed).
fn get_json(client: &Client, target: &str) -> Result<Value, ExitCode> {
    let r = match client.request("GET", target) {
        Ok(r) if r.status == 200 => r,
        Ok(r) => return Err(fail(r.error())),
        Err(e) => return Err(fail(e)),
    };
    r.json().map_err(|_| fail("bad answer from supervisord"))
}

pub fn boot(client: &Client, json: bool) -> ExitCode {
    let v = match get_json(client, "/v1/boot") {
        Ok(v) => v,
        Err(code) => return code,
    };
    if json {
        print_json(&v);
        return ExitCode::SUCCESS;
    }
    out!("{}", boot_table(&v));
    ExitCode::SUCCESS
}

/// `boot`'s table: each step, when (seconds since the kernel started) and
/// how long after the step before it.
pub fn boot_table(v: &Value) -> String {
    let mut out = format!("{:<26}  {:>9}  {:>9}\n", "since the kernel started", "at", "after");
    let mut last: Option<f64> = None;
    for p in v["phases"].as_array().into_iter().flatten() {
        let (Some(phase), Some(at)) = (p["phase"].as_str(), p["at"].as_f64()) else { continue };
        let after = last.map_or(String::new(), |l| format!("+{:.3}s", (at - l) / 1000.0));
        out.push_str(&format!("{:<26}  {:>8.3}s  {after:>9}\n", phase.replace('_', " "), at / 1000.0));
        last = Some(at);
    }
    out
}

pub fn kill(client: &Client, signal: &str, unit: &str) -> ExitCode {
    match client.request("POST", &format!("/v1/units/{}/kill?signal={}", encode(unit), encode(signal))) {
        Ok(r) if r.status == 200 => ExitCode::SUCCESS,
        Ok(r) => fail(r.error()),
        Err(e) => fail(e),
    }
}

pub fn inspect(client: &Client, unit: &str) -> ExitCode {
    match client.request("GET", &format!("/v1/units/{}", encode(unit))) {
        Ok(r) if r.status == 200 => match r.json() {
            Ok(v) => {
                print_json(&v);
                ExitCode::SUCCESS
            }
            Err(e) => fail(e),
        },
        Ok(r) => fail(r.error()),
        Err(e) => fail(e),
    }
}

pub fn logs(client: &Client, unit: &str, follow: bool, tail: Option<usize>, since: Option<&str>) -> ExitCode {
    let mut target = format!("/v1/units/{}/logs?", encode(unit));
    if follow {
        target.push_str("follow=1&");
    }
    if let Some(n) = tail {
        target.push_str(&format!("tail={n}&"));
    }
    if let Some(s) = since {
        target.push_str(&format!("since={}&", encode(s)));
    }
    let r = client.stream(&target, &mut |chunk| super::out(chunk));
    match r {
        Ok(None) => ExitCode::SUCCESS,
        Ok(Some(resp)) => fail(resp.error()),
        Err(e) => fail(e),
    }
}

pub fn events(client: &Client, json: bool) -> ExitCode {
    let mut pending = Vec::new();
    let r = client.stream("/v1/events", &mut |chunk| {
        pending.extend_from_slice(chunk);
        while let Some(i) = pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = pending.drain(..=i).collect();
            let text = if json {
                String::from_utf8_lossy(&line).into_owned()
            } else {
                match serde_json::from_slice::<Value>(&line) {
                    Ok(v) if v["update"].is_string() => format!(
                        "{} {} update {}{}\n",
                        v["time"].as_str().unwrap_or(""),
                        v["unit"].as_str().unwrap_or("?"),
                        v["update"].as_str().unwrap_or("?"),
                        v["reason"].as_str().map(|r| format!(" ({r})")).unwrap_or_default()
                    ),
                    Ok(v) => format!(
                        "{} {} {} -> {}{}\n",
                        v["time"].as_str().unwrap_or(""),
                        v["unit"].as_str().unwrap_or("?"),
                        v["old"].as_str().unwrap_or("?"),
                        v["new"].as_str().unwrap_or("?"),
                        v["reason"].as_str().map(|r| format!(" ({r})")).unwrap_or_default()
                    ),
                    Err(_) => continue,
                }
            };
            super::out(text.as_bytes());
        }
    });
    match r {
        Ok(None) => ExitCode::SUCCESS,
        Ok(Some(resp)) => fail(resp.error()),
        Err(e) => fail(e),
    }
}

pub fn volumes(client: &Client, json: bool) -> ExitCode {
    let v = match get_json(client, "/v1/volumes") {
        Ok(v) => v,
        Err(code) => return code,
    };
    if json {
        print_json(&v);
        return ExitCode::SUCCESS;
    }
    outln!("{:<24} {:<24} PATH", "NAME", "USED BY");
    for vol in v.as_array().into_iter().flatten() {
        let users: Vec<&str> = vol["used_by"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
        outln!(
            "{:<24} {:<24} {}",
            vol["name"].as_str().unwrap_or("?"),
            if users.is_empty() { "-".to_string() } else { users.join(",") },
            vol["path"].as_str().unwrap_or("")
        );
    }
    ExitCode::SUCCESS
}

pub fn volume_rm(client: &Client, name: &str) -> ExitCode {
    match client.request("DELETE", &format!("/v1/volumes/{}", encode(name))) {
        Ok(r) if r.status == 200 => {
            outln!("removed {name}");
            ExitCode::SUCCESS
        }
        Ok(r) => fail(r.error()),
        Err(e) => fail(e),
    }
}

pub fn power(client: &Client, verb: &str) -> ExitCode {
    match client.request("POST", &format!("/v1/{verb}")) {
        Ok(r) if r.status == 200 => ExitCode::SUCCESS,
        Ok(r) => fail(r.error()),
        Err(e) => fail(e),
    }
}

/// `exec`: the command runs in the unit's container, entered from this
/// process (root, like the socket) with the state supervisord recorded in
/// its run directory. Exits with the command's code; 126/127 when it
/// cannot be run. It never gets our terminal: pipes we relay, or with -t a
/// pseudo-terminal of its own (see `runtime::container::exec`).
pub fn exec(client: &Client, unit: &str, interactive: bool, tty: bool, command: Vec<String>) -> ExitCode {
    use crate::runtime::container::{exec, reexec_protected};
    let pid = match client.request("GET", &format!("/v1/units/{}", encode(unit))) {
        Ok(r) if r.status == 200 => {
            let v = r.json().unwrap_or(Value::Null);
            if v["status"]["state"] != "running" {
                errln!("supervisorctl: {unit} is {}, not running", v["status"]["state"].as_str().unwrap_or("?"));
                return ExitCode::from(126);
            }
            v["status"]["pid"].as_i64()
        }
        Ok(r) => {
            errln!("supervisorctl: {}", r.error());
            return ExitCode::from(126);
        }
        Err(e) => {
            errln!("supervisorctl: {e}");
            return ExitCode::from(126);
        }
    };
    if !interactive && tty {
        // Without -i the command gets no input, as with docker exec.
        if let Ok(null) = std::fs::File::open("/dev/null") {
            let _ = nix::unistd::dup2_stdin(&null);
        }
    }
    let run_dir = super::client::run_dir(&client.socket);
    let result = running_record(&run_dir, unit, pid).and_then(|state| {
        reexec_protected()?;
        exec(&state, command, tty, interactive, None)
    });
    match result {
        Ok(code) => ExitCode::from(code.clamp(0, 255) as u8),
        Err(e) => {
            errln!("supervisorctl: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

/// The record of `unit`'s running container, whose first process is
/// `pid`: the unit's own name's, or, after a start-first update, that of
/// the second container the traffic moved to (`web.7`).
fn running_record(
    run_dir: &std::path::Path,
    unit: &str,
    pid: Option<i64>,
) -> Result<crate::runtime::container::ContainerState, crate::runtime::container::RuntimeError> {
    use crate::runtime::container::ContainerState;
    let own = ContainerState::load(run_dir, unit);
    if own.as_ref().is_ok_and(|s| pid.is_none_or(|p| i64::from(s.pid) == p)) {
        return own;
    }
    let instance = |file: &str| {
        let generation = file.strip_suffix(".json")?.strip_prefix(unit)?.strip_prefix('.')?;
        generation.bytes().all(|b| b.is_ascii_digit()).then(|| file.trim_end_matches(".json").to_string())
    };
    let entries = std::fs::read_dir(run_dir.join("containers")).into_iter().flatten().flatten();
    for name in entries.filter_map(|e| instance(&e.file_name().to_string_lossy())) {
        match ContainerState::load(run_dir, &name) {
            Ok(s) if pid.is_some_and(|p| i64::from(s.pid) == p) => return Ok(s),
            _ => {}
        }
    }
    own
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn boot_prints_each_step_with_the_time_since_the_one_before() {
        let v = json!({"clock": "CLOCK_BOOTTIME", "phases": [
            {"phase": "started", "at": 2012.5},
            {"phase": "control_path", "at": 2100.25},
            {"phase": "all_units_ran", "at": 3400.0},
        ]});
        assert_eq!(
            boot_table(&v),
            "since the kernel started           at      after\n\
             started                        2.013s           \n\
             control path                   2.100s    +0.088s\n\
             all units ran                  3.400s    +1.300s\n"
        );
    }

    #[test]
    fn exec_finds_the_container_the_units_traffic_moved_to() {
        use crate::runtime::container::ContainerState;
        let dir = tempfile::tempdir().unwrap();
        let record = |name: &str, pid: i32| -> ContainerState {
            serde_json::from_value(json!({
                "name": name, "pid": pid, "start_time": 0, "cgroup": {"V2": "/sys/fs/cgroup/x"}, "dir": "/x",
                "process": {"uid": 0, "gid": 0, "additional_gids": [], "caps": null, "no_new_privileges": true,
                    "seccomp": null, "cwd": "/", "env": []},
            }))
            .unwrap()
        };
        for (name, pid) in [("web", 10), ("web.7", 20), ("webs.7", 30), ("web.x", 40)] {
            record(name, pid).save(dir.path()).unwrap();
        }
        let found = |pid| running_record(dir.path(), "web", pid).map(|s| s.name);
        assert_eq!(found(Some(10)).unwrap(), "web");
        assert_eq!(found(None).unwrap(), "web");
        assert_eq!(found(Some(20)).unwrap(), "web.7");
        // Another unit's, or no container of the unit: the unit's own.
        assert_eq!(found(Some(30)).unwrap(), "web");
        assert_eq!(found(Some(40)).unwrap(), "web");
        ContainerState::remove(dir.path(), "web");
        assert_eq!(found(Some(20)).unwrap(), "web.7");
        assert!(found(Some(99)).unwrap_err().to_string().contains("not running"));
    }

    #[test]
    fn status_lines_read_like_supervisorctl() {
        let now = humantime::parse_rfc3339("2026-11-23T10:00:00Z").unwrap();
        let running = json!({"name": "web", "state": "running", "pid": 123, "started_at": "2026-11-23T09:58:57Z",
            "since": "2026-11-23T09:58:57Z", "restarts": 0, "image": "docker.io/library/nginx:latest", "health": null});
        assert_eq!(
            status_line(&running, 5, now, false),
            "web    RUNNING   pid 123, uptime 0:01:03, image docker.io/library/nginx:latest"
        );
        let backoff = json!({"name": "db", "state": "backoff", "reason": "exited 137 (oom-killed)",
            "next_retry": "2026-11-23T10:00:03.2Z", "since": "2026-11-23T09:59:59Z", "restarts": 2, "image": null});
        assert_eq!(
            status_line(&backoff, 2, now, false),
            "db  BACKOFF   exited 137 (oom-killed), retry in 3.2s, restarts 2"
        );
        // The current error of --json, not only the last exit.
        let mut edited = backoff.clone();
        edited["error"] = json!("/etc/units.d/db.toml:4:1: unknown key \"memroy\"");
        assert_eq!(
            status_line(&edited, 2, now, false),
            "db  BACKOFF   exited 137 (oom-killed); /etc/units.d/db.toml:4:1: unknown key \"memroy\", retry in 3.2s, restarts 2"
        );
        let invalid = json!({"name": "x", "state": "invalid", "error": "/etc/units.d/x.toml:3:1: unknown key",
            "since": "2026-11-23T09:59:59Z", "restarts": 0});
        assert_eq!(status_line(&invalid, 1, now, false), "x  INVALID   /etc/units.d/x.toml:3:1: unknown key");
    }

    #[test]
    fn status_lines_say_an_update_failed_and_what_runs() {
        let now = humantime::parse_rfc3339("2026-11-23T10:00:00Z").unwrap();
        let mut web = json!({"name": "web", "state": "running", "pid": 812, "started_at": "2026-11-23T09:59:53Z",
            "since": "2026-11-23T09:59:53Z", "restarts": 0, "health": "healthy", "update_state": "rolled-back",
            "update_error": "not healthy within 1m: health starting (last probe: connection refused)"});
        assert_eq!(
            status_line(&web, 3, now, false),
            "web  RUNNING   pid 812, uptime 0:00:07, healthy, update failed: not healthy within 1m: health starting \
             (last probe: connection refused), running the previous config"
        );
        web["update_state"] = json!("in-progress");
        web["update_error"] = Value::Null;
        assert_eq!(
            status_line(&web, 3, now, false),
            "web  RUNNING   pid 812, uptime 0:00:07, healthy, update in progress"
        );
        web["update_state"] = json!("rolled-back");
        assert_eq!(
            status_line(&web, 3, now, false),
            "web  RUNNING   pid 812, uptime 0:00:07, healthy, rolled back, running the previous config"
        );
        // A failed image update, or rollback = false: the line says it failed.
        web["update_state"] = Value::Null;
        web["update_error"] = json!("exited 1");
        web["state"] = json!("backoff");
        web["reason"] = json!("exited 1");
        web["next_retry"] = json!("2026-11-23T10:00:01Z");
        assert_eq!(status_line(&web, 3, now, false), "web  BACKOFF   exited 1, retry in 1.0s, update failed: exited 1");
    }
}
