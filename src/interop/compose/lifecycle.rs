//! A service's life: `restart`, `healthcheck`, `depends_on`, the limits
//! (`deploy.resources.limits`, `mem_limit`, `cpus`, `pids_limit`), how it
//! stops (`stop_signal`, `stop_grace_period`) and its `logging`.
//!
//! Where Docker's defaults differ from the units' (restart `no` against
//! `always`; an unhealthy container only reported against restarted), the
//! unit says Docker's value, so the service behaves as it did.

use super::render::{Draft, Tv};
use super::words::compose_size;
use super::yaml::{Node, Value};
use super::{Cx, Project};
use crate::units::values::duration::parse_duration;
use crate::units::values::signal::Signal;
use crate::units::values::size::format_size;

const MIN_MEMORY: u64 = 6 << 20;

pub(crate) fn key(
    cx: &mut Cx<'_>,
    proj: &Project<'_>,
    d: &mut Draft,
    service: &str,
    key: &str,
    value: &Node,
    path: &str,
) {
    match key {
        "restart" => restart(cx, d, value, path),
        "healthcheck" => healthcheck(cx, d, value, path),
        "depends_on" => depends_on(cx, proj, d, service, value, path),
        "deploy" => deploy(cx, d, value, path),
        "mem_limit" => memory(cx, d, value, path),
        "cpus" => cpus(cx, d, value, path),
        "pids_limit" => pids(cx, d, value, path),
        "stop_signal" => {
            let Some(sig) = cx.text(value, path) else { return };
            match Signal::parse(&sig) {
                Ok(_) => d.set("stop", "signal", Tv::str(sig)),
                Err(e) => cx.drop(value.line, path, e),
            }
        }
        "stop_grace_period" => {
            if let Some(t) = duration(cx, value, path) {
                d.set("stop", "timeout", Tv::str(t));
            }
        }
        _ => logging(cx, d, value, path),
    }
}

/// Whether a `healthcheck:` has a probe of its own (so `service_healthy`
/// waits for it).
pub(crate) fn has_probe(h: &Node) -> bool {
    let disabled = h.get("disable").and_then(|n| n.scalar()?.as_bool()) == Some(true);
    let none = h.get("test").and_then(|t| t.seq()?.first()?.scalar().map(|s| s.text == "NONE")) == Some(true);
    !disabled && !none && h.get("test").is_some_and(|t| !t.is_null())
}

/// After every key: Docker's defaults where they differ from the units'.
pub(crate) fn finish(d: &mut Draft) {
    if d.get("restart", "policy").is_none() {
        d.set_noted(
            "restart",
            "policy",
            Tv::str("no"),
            Some("Compose's default (no restart: key); units default to \"always\".".into()),
        );
    }
    let own_probe = ["exec", "http", "tcp"].iter().any(|k| d.get("health", k).is_some());
    if own_probe && d.get("health", "on_unhealthy").is_none() {
        d.set_noted(
            "health",
            "on_unhealthy",
            Tv::str("none"),
            Some("Docker only reports an unhealthy container; \"restart\" would restart it.".into()),
        );
    }
}

/// A duration as Compose writes it (`1m30s`; a bare number is seconds).
fn duration(cx: &mut Cx<'_>, value: &Node, path: &str) -> Option<String> {
    let text = cx.text(value, path)?;
    let text = if !text.is_empty() && text.chars().all(|c| c.is_ascii_digit()) { format!("{text}s") } else { text };
    match parse_duration(&text) {
        Ok(_) => Some(text),
        Err(e) => {
            cx.drop(value.line, path, e);
            None
        }
    }
}

fn restart(cx: &mut Cx<'_>, d: &mut Draft, value: &Node, path: &str) {
    let text = match &value.value {
        Value::Scalar(s) if s.as_bool() == Some(false) => "no".to_string(),
        _ => match cx.text(value, path) {
            Some(t) => t,
            None => return,
        },
    };
    match text.as_str() {
        "no" | "always" => d.set("restart", "policy", Tv::str(text.clone())),
        "unless-stopped" => {
            d.set("restart", "policy", Tv::str("always"));
            cx.note(value.line, path, "\"always\": a unit stopped by an operator stays stopped (across reloads) until started, as unless-stopped");
        }
        _ => match text.strip_prefix("on-failure") {
            Some("") => d.set("restart", "policy", Tv::str("on-failure")),
            Some(n) => match n.strip_prefix(':').and_then(|n| n.parse::<u32>().ok()) {
                Some(n) => {
                    d.set("restart", "policy", Tv::str("on-failure"));
                    d.set("restart", "limit", Tv::Int(n.into()));
                }
                None => cx.error(value.line, path, format!("{text:?} is not on-failure[:N]")),
            },
            None => cx.error(value.line, path, format!("{text:?} is not no, always, on-failure[:N] or unless-stopped")),
        },
    }
}

fn healthcheck(cx: &mut Cx<'_>, d: &mut Draft, value: &Node, path: &str) {
    let Some(entries) = cx.map(value, path) else { return };
    let disabled = value.get("disable").and_then(|n| cx.bool(n, &format!("{path}.disable"))) == Some(true);
    for (k, v) in entries {
        let p = format!("{path}.{}", k.text);
        match k.text.as_str() {
            "disable" => {}
            _ if disabled => cx.note(k.line, &p, "disable: true: the health check is off"),
            "test" => test(cx, d, v, &p),
            "interval" | "timeout" | "start_period" | "start_interval" => {
                if let Some(t) = duration(cx, v, &p) {
                    d.set("health", &k.text, Tv::str(t));
                }
            }
            "retries" => match cx.text(v, &p).and_then(|t| t.parse::<i64>().ok()) {
                Some(n) if (1..=1000).contains(&n) => d.set("health", "retries", Tv::Int(n)),
                _ => cx.drop(v.line, &p, "retries must be 1 to 1000"),
            },
            _ => cx.drop(k.line, &p, "not a healthcheck key"),
        }
    }
    if disabled || d.get("health", "disable").is_some() {
        for k in ["exec", "interval", "timeout", "retries", "start_period", "start_interval"] {
            d.remove("health", k);
        }
        d.set("health", "disable", Tv::Bool(true));
    }
}

fn test(cx: &mut Cx<'_>, d: &mut Draft, v: &Node, p: &str) {
    match &v.value {
        Value::Seq(_) => {
            let Some(words) = cx.texts(v, p) else { return };
            match words.split_first() {
                Some((first, [])) if first == "NONE" => d.set("health", "disable", Tv::Bool(true)),
                Some((first, rest)) if first == "CMD" && !rest.is_empty() => {
                    d.set("health", "exec", Tv::strs(rest.iter().cloned()));
                }
                Some((first, [cmd])) if first == "CMD-SHELL" => d.set("health", "exec", Tv::str(cmd.clone())),
                _ => cx.error(v.line, p, "test must be [\"CMD\", args...], [\"CMD-SHELL\", command] or [\"NONE\"]"),
            }
        }
        _ => {
            if let Some(cmd) = cx.text(v, p) {
                d.set("health", "exec", Tv::str(cmd));
            }
        }
    }
}

fn depends_on(cx: &mut Cx<'_>, proj: &Project<'_>, d: &mut Draft, service: &str, value: &Node, path: &str) {
    let deps: Vec<(String, Option<&Node>, usize)> = match &value.value {
        Value::Seq(items) => items
            .iter()
            .enumerate()
            .filter_map(|(i, n)| Some((cx.text(n, &format!("{path}[{i}]"))?, None, n.line)))
            .collect(),
        Value::Map(entries) => entries.iter().map(|(k, v)| (k.text.clone(), Some(v), k.line)).collect(),
        Value::Scalar(_) => {
            cx.error(value.line, path, format!("expected a list or a mapping, found {}", value.kind()));
            return;
        }
    };
    let mut requires = Vec::new();
    let mut after = Vec::new();
    for (dep, config, line) in deps {
        let p = format!("{path}.{dep}");
        let Some(unit) = proj.units.get(&dep) else {
            cx.error(line, &p, format!("no service {dep:?} in this file"));
            continue;
        };
        let mut condition = "service_started".to_string();
        let mut required = true;
        for (k, v) in config.and_then(Node::map).unwrap_or_default() {
            let kp = format!("{p}.{}", k.text);
            match k.text.as_str() {
                "condition" => condition = cx.text(v, &kp).unwrap_or_default(),
                "required" => required = cx.bool(v, &kp).unwrap_or(true),
                "restart" => {
                    if cx.bool(v, &kp) == Some(true) {
                        cx.note(
                            k.line,
                            &kp,
                            format!(
                                "carried by requires: {service} is stopped while {dep} is, and started again after it"
                            ),
                        );
                    }
                }
                _ => cx.drop(k.line, &kp, "not a depends_on key"),
            }
        }
        match condition.as_str() {
            "service_completed_successfully" => {
                cx.drop(line, &p, format!("a unit waits for what it requires to run, not to have exited: written as after = [{unit:?}] (start order only)"));
                after.push(unit.clone());
                continue;
            }
            "service_healthy" if !proj.healthy.contains(&dep) => cx.note(
                line,
                &p,
                format!("{dep} has no healthcheck here: its image's HEALTHCHECK gates the start if it has one, else running is enough"),
            ),
            "service_healthy" => {}
            "service_started" if proj.healthy.contains(&dep) => cx.note(
                line,
                &p,
                format!("requires also waits for {dep}'s healthcheck to pass (Compose: only for it to start)"),
            ),
            "service_started" => {}
            other => {
                cx.error(line, &p, format!("{other:?} is not a depends_on condition"));
                continue;
            }
        }
        if required {
            requires.push(unit.clone());
        } else {
            cx.note(
                line,
                &p,
                format!("required: false: written as after = [{unit:?}], which waits for {dep} only when it is to run"),
            );
            after.push(unit.clone());
        }
    }
    if !requires.is_empty() {
        d.set_noted(
            "unit",
            "requires",
            Tv::strs(requires),
            Some("depends_on: starts once these run (and are healthy, with a health check); stops while they are stopped.".into()),
        );
    }
    if !after.is_empty() {
        d.set("unit", "after", Tv::strs(after));
    }
}

fn deploy(cx: &mut Cx<'_>, d: &mut Draft, value: &Node, path: &str) {
    let Some(entries) = cx.map(value, path) else { return };
    for (k, v) in entries {
        let p = format!("{path}.{}", k.text);
        match k.text.as_str() {
            "resources" => {
                for (rk, rv) in cx.map(v, &p).unwrap_or_default() {
                    let rp = format!("{p}.{}", rk.text);
                    match rk.text.as_str() {
                        "limits" => {
                            for (lk, lv) in cx.map(rv, &rp).unwrap_or_default() {
                                let lp = format!("{rp}.{}", lk.text);
                                match lk.text.as_str() {
                                    "cpus" => cpus(cx, d, lv, &lp),
                                    "memory" => memory(cx, d, lv, &lp),
                                    "pids" => pids(cx, d, lv, &lp),
                                    _ => cx.drop(lk.line, &lp, "[resources] has cpus, memory and pids only"),
                                }
                            }
                        }
                        "reservations" => cx.drop(rk.line, &rp, "units reserve nothing: there is no scheduler"),
                        _ => cx.drop(rk.line, &rp, "not a resources key"),
                    }
                }
            }
            "replicas" if v.scalar().is_some_and(|s| s.text == "1") => {}
            "replicas" => cx.drop(k.line, &p, "a unit is one container"),
            "restart_policy" => restart_policy(cx, d, v, &p),
            _ => cx.drop(k.line, &p, "a swarm setting: units run on this host only"),
        }
    }
}

fn restart_policy(cx: &mut Cx<'_>, d: &mut Draft, v: &Node, p: &str) {
    for (k, val) in cx.map(v, p).unwrap_or_default() {
        let kp = format!("{p}.{}", k.text);
        match k.text.as_str() {
            "condition" => match cx.text(val, &kp).as_deref() {
                Some("none") => d.set("restart", "policy", Tv::str("no")),
                Some("on-failure") => d.set("restart", "policy", Tv::str("on-failure")),
                Some("any") => d.set("restart", "policy", Tv::str("always")),
                _ => cx.error(val.line, &kp, "condition must be none, on-failure or any"),
            },
            "max_attempts" => match cx.text(val, &kp).and_then(|t| t.parse::<u32>().ok()) {
                Some(n) => d.set("restart", "limit", Tv::Int(n.into())),
                None => cx.error(val.line, &kp, "max_attempts must be a number"),
            },
            "delay" => {
                if let Some(t) = duration(cx, val, &kp) {
                    d.set("restart", "delay", Tv::str(t.clone()));
                    if parse_duration(&t).is_ok_and(|x| x.as_secs() > 60) {
                        d.set("restart", "max_delay", Tv::str(t));
                    }
                }
            }
            "window" => {
                if let Some(t) = duration(cx, val, &kp) {
                    d.set("restart", "reset_after", Tv::str(t));
                }
            }
            _ => cx.drop(k.line, &kp, "not a restart_policy key"),
        }
    }
    if d.get("restart", "policy").is_none() {
        d.set("restart", "policy", Tv::str("always"));
    }
}

fn memory(cx: &mut Cx<'_>, d: &mut Draft, value: &Node, path: &str) {
    let Some(text) = cx.text(value, path) else { return };
    match compose_size(&text) {
        Ok(0) => cx.note(value.line, path, "0: no limit"),
        Ok(b) if b < MIN_MEMORY => {
            cx.drop(value.line, path, format!("{text:?} is below the smallest memory limit, 6M"))
        }
        Ok(b) => d.set("resources", "memory", Tv::str(format_size(b))),
        Err(e) => cx.drop(value.line, path, e),
    }
}

fn cpus(cx: &mut Cx<'_>, d: &mut Draft, value: &Node, path: &str) {
    let Some(text) = cx.text(value, path) else { return };
    match text.parse::<f64>() {
        Ok(0.0) => cx.note(value.line, path, "0: no limit"),
        Ok(c) if (0.01..=1e6).contains(&c) => d.set("resources", "cpus", Tv::Float(c)),
        _ => cx.drop(value.line, path, format!("{text:?}: cpus must be a number from 0.01")),
    }
}

fn pids(cx: &mut Cx<'_>, d: &mut Draft, value: &Node, path: &str) {
    let Some(text) = cx.text(value, path) else { return };
    match text.parse::<i64>() {
        Ok(n) if n <= 0 => cx.note(value.line, path, format!("{n}: no limit")),
        Ok(n) => d.set("resources", "pids", Tv::Int(n)),
        Err(_) => cx.error(value.line, path, format!("{text:?} is not a number")),
    }
}

fn logging(cx: &mut Cx<'_>, d: &mut Draft, value: &Node, path: &str) {
    let Some(entries) = cx.map(value, path) else { return };
    for (k, v) in entries {
        let p = format!("{path}.{}", k.text);
        match k.text.as_str() {
            "driver" => match cx.text(v, &p).as_deref() {
                Some("json-file" | "local") | None => {}
                Some(other) => {
                    cx.drop(v.line, &p, format!("{other:?}: a unit's output goes to its log file (supervisorctl logs)"))
                }
            },
            "options" => {
                for (ok, ov) in cx.map(v, &p).unwrap_or_default() {
                    let op = format!("{p}.{}", ok.text);
                    match (ok.text.as_str(), cx.text(ov, &op)) {
                        ("max-size", Some(s)) => match compose_size(&s) {
                            Ok(b) if b >= 4096 => d.set("logs", "max_size", Tv::str(format_size(b))),
                            Ok(_) => cx.drop(ov.line, &op, "below the smallest log size, 4k"),
                            Err(e) => cx.drop(ov.line, &op, e),
                        },
                        ("max-file", Some(n)) => match n.parse::<i64>() {
                            Ok(n) if (1..=1000).contains(&n) => d.set("logs", "max_files", Tv::Int(n)),
                            _ => cx.drop(ov.line, &op, "max-file must be 1 to 1000"),
                        },
                        _ => cx.drop(ok.line, &op, "[logs] has max_size and max_files only"),
                    }
                }
            }
            _ => cx.drop(k.line, &p, "not a logging key"),
        }
    }
}
