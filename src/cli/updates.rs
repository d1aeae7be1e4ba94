//! `supervisorctl rollback` and `supervisorctl update`: they ask
//! supervisord, which waits for the trial of what they changed, and print
//! one line per unit.

use std::process::ExitCode;

use serde_json::Value;

use super::client::{Client, encode};
use super::control::fail;

fn print_json(v: &Value) {
    outln!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
}

pub fn rollback(client: &Client, unit: &str, no_block: bool, json: bool) -> ExitCode {
    let target = format!("/v1/units/{}/rollback{}", encode(unit), if no_block { "?no_block=1" } else { "" });
    let r = match client.request("POST", &target) {
        Ok(r) => r,
        Err(e) => return fail(e),
    };
    let v = match r.json() {
        Ok(v) if v.get("outcome").is_some() => v,
        // Refused: the daemon's message (nothing to roll back to, an
        // update in progress, no such unit).
        _ => return fail(r.error()),
    };
    if json {
        print_json(&v);
    } else {
        let line = rollback_line(unit, &v);
        if r.status == 409 { errln!("supervisorctl: {line}") } else { outln!("{line}") }
    }
    if r.status == 409 { ExitCode::from(1) } else { ExitCode::SUCCESS }
}

fn rollback_line(unit: &str, v: &Value) -> String {
    let image = v["status"]["image_id"].as_str().unwrap_or("?");
    let reason = v["reason"].as_str().unwrap_or("unknown");
    match v["outcome"].as_str().unwrap_or("?") {
        "succeeded" => format!("{unit}: rolled back to the previous config (image {image})"),
        "taken" => format!("{unit}: not running; its next start runs the previous config (image {image})"),
        "in-progress" => format!("{unit}: rollback in progress (image {image})"),
        "rolled-back" => format!("{unit}: rollback failed: {reason}; back on the config it ran (image {image})"),
        other => format!("{unit}: rollback {other}: {reason}"),
    }
}

pub fn update(client: &Client, units: &[String], dry_run: bool, no_block: bool, json: bool) -> ExitCode {
    let mut query = Vec::new();
    if !units.is_empty() {
        let names: Vec<String> = units.iter().map(|u| encode(u)).collect();
        query.push(format!("units={}", names.join(",")));
    }
    if dry_run {
        query.push("dry_run=1".into());
    }
    if no_block {
        query.push("no_block=1".into());
    }
    let target = if query.is_empty() { "/v1/update".to_string() } else { format!("/v1/update?{}", query.join("&")) };
    let r = match client.request("POST", &target) {
        Ok(r) if r.status == 200 => r,
        Ok(r) => return fail(r.error()),
        Err(e) => return fail(e),
    };
    let Ok(v) = r.json() else { return fail("bad answer from supervisord") };
    let reports = v["units"].as_array().cloned().unwrap_or_default();
    let bad = |r: &Value| matches!(r["outcome"].as_str(), Some("error" | "rolled-back" | "failed"));
    if json {
        print_json(&v);
    } else {
        if reports.is_empty() {
            outln!("no unit has auto = \"registry\"");
        }
        for report in &reports {
            let line = update_line(report);
            if bad(report) { errln!("supervisorctl: {line}") } else { outln!("{line}") }
        }
    }
    if reports.iter().any(bad) { ExitCode::from(1) } else { ExitCode::SUCCESS }
}

/// One unit's line of `update`.
pub fn update_line(r: &Value) -> String {
    let unit = r["unit"].as_str().unwrap_or("?");
    let from = r["running"].as_str().unwrap_or("no image yet");
    let to = r["registry"].as_str().unwrap_or("?");
    let message = r["message"].as_str();
    let before = if r["rejected_before"] == true { " (rolled back before)" } else { "" };
    match r["outcome"].as_str().unwrap_or("?") {
        "up-to-date" => format!("{unit}: up to date ({from})"),
        "available" => format!("{unit}: {from} -> {to}{before}"),
        "rejected" => format!("{unit}: {to} was rolled back before; staying on {from}"),
        "updated" => match message {
            Some(m) => format!("{unit}: updated {from} -> {to} ({m})"),
            None => format!("{unit}: updated {from} -> {to}"),
        },
        "in-progress" => format!("{unit}: updating {from} -> {to} (in progress)"),
        "rolled-back" => format!("{unit}: {to} failed its trial ({}); rolled back to {from}", message.unwrap_or("?")),
        "failed" => format!("{unit}: update to {to} failed: {} (rollback = false: it stays)", message.unwrap_or("?")),
        _ => format!("{unit}: {}", message.unwrap_or("error")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn update_lines_name_both_images_and_what_happened() {
        let (a, b) = ("sha256:aaa", "sha256:bbb");
        let line = |outcome: &str, extra: Value| {
            let mut v =
                json!({"unit": "web", "outcome": outcome, "running": a, "registry": b, "rejected_before": false});
            for (k, x) in extra.as_object().unwrap() {
                v[k] = x.clone();
            }
            update_line(&v)
        };
        assert_eq!(line("up-to-date", json!({"registry": a})), "web: up to date (sha256:aaa)");
        assert_eq!(line("available", json!({})), "web: sha256:aaa -> sha256:bbb");
        assert_eq!(
            line("available", json!({"rejected_before": true})),
            "web: sha256:aaa -> sha256:bbb (rolled back before)"
        );
        assert_eq!(line("updated", json!({})), "web: updated sha256:aaa -> sha256:bbb");
        assert_eq!(
            line("rolled-back", json!({"message": "exited 1"})),
            "web: sha256:bbb failed its trial (exited 1); rolled back to sha256:aaa"
        );
        assert_eq!(
            line("error", json!({"message": "web does not follow its image's tag"})),
            "web: web does not follow its image's tag"
        );
    }

    #[test]
    fn a_failed_rollback_says_why_and_where_it_is() {
        let v = json!({"outcome": "rolled-back", "reason": "exited 1", "status": {"image_id": "sha256:aaa"}});
        assert_eq!(
            rollback_line("web", &v),
            "web: rollback failed: exited 1; back on the config it ran (image sha256:aaa)"
        );
        let v = json!({"outcome": "succeeded", "reason": "healthy", "status": {"image_id": "sha256:bbb"}});
        assert_eq!(rollback_line("web", &v), "web: rolled back to the previous config (image sha256:bbb)");
    }
}
