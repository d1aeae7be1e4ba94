//! One Compose service into one unit file: the walk over the service's
//! keys (each one carried, or reported), and the keys of `[container]`
//! that need no more than a line or two. Storage and environment are in
//! `storage`, the lifecycle (restart, health, ordering, limits, stop,
//! logs) in `lifecycle`.

use super::render::{Draft, Tv};
use super::words::shell_split;
use super::yaml::{Node, Value};
use super::{Cx, Project, lifecycle, storage};
use crate::units::values::capability::parse_capability;
use crate::units::values::names::{check_hostname, check_user};

/// `line`: the service's key.
pub(crate) fn translate(
    cx: &mut Cx<'_>,
    proj: &Project<'_>,
    service: &str,
    line: usize,
    node: &Node,
    path: &str,
) -> Option<Draft> {
    let entries = cx.map(node, path)?;
    let mut d = Draft::default();
    d.header.push(format!("Service {service:?} of {}, by supervisorctl import compose.", cx.file.display()));
    let unit = &proj.units[service];
    if unit != service {
        // Services find each other by service name: keep that name.
        if crate::names::check_dns_label(service).is_ok() {
            d.set_noted(
                "container",
                "aliases",
                Tv::strs([service]),
                Some("The service's name, by which the other services reach it.".into()),
            );
        } else {
            cx.note(
                line,
                path,
                format!("other services cannot reach this one as {service:?} (not a DNS label): use {unit:?}"),
            );
        }
    }
    if entries.iter().any(|(k, _)| k.text == "build") && entries.iter().all(|(k, _)| k.text != "image") {
        let line = entries.iter().find(|(k, _)| k.text == "build").map_or(line, |(k, _)| k.line);
        cx.error(line, &format!("{path}.build"), "build: is refused: units run images, they do not build them; build and push the image, then name it in image:");
        return None;
    }
    for (key, value) in entries {
        let k = key.text.as_str();
        let p = format!("{path}.{k}");
        let line = key.line;
        match k {
            "image" => {
                if let Some(image) = cx.text(value, &p) {
                    d.set("container", "image", Tv::str(image));
                }
            }
            "build" => cx.error(
                line,
                &p,
                "build: is refused: units run images, they do not build them; remove build: to run the image named in image:",
            ),
            "command" | "entrypoint" => command(cx, &mut d, k, value, &p),
            "environment" | "env_file" | "ports" | "volumes" | "tmpfs" => storage::key(cx, proj, &mut d, k, value, &p),
            "restart" | "healthcheck" | "depends_on" | "deploy" | "mem_limit" | "cpus" | "pids_limit" | "stop_signal"
            | "stop_grace_period" | "logging" => lifecycle::key(cx, proj, &mut d, service, k, value, &p),
            "user" => checked(cx, &mut d, value, &p, "user", check_user),
            "working_dir" => checked(cx, &mut d, value, &p, "workdir", |s| {
                if s.starts_with('/') { Ok(()) } else { Err(format!("{s:?} is not an absolute path")) }
            }),
            "hostname" => checked(cx, &mut d, value, &p, "hostname", check_hostname),
            "read_only" | "privileged" => {
                if let Some(b) = cx.bool(value, &p) {
                    d.set("container", k, Tv::Bool(b));
                }
            }
            "cap_add" | "cap_drop" => capabilities(cx, &mut d, k, value, &p),
            "sysctls" => sysctls(cx, &mut d, value, &p),
            "ulimits" => ulimits(cx, &mut d, value, &p),
            "network_mode" => network_mode(cx, proj, &mut d, value, &p),
            "labels" => labels(cx, &mut d, value, &p),
            "devices" => {
                if let Some(list) = cx.texts(value, &p) {
                    d.set("container", "devices", Tv::strs(list));
                }
            }
            "security_opt" => security_opt(cx, &mut d, value, &p),
            "pull_policy" => pull_policy(cx, &mut d, value, &p),
            "container_name" => cx.drop(line, &p, "the unit's name is the container's name (and its host name)"),
            "expose" => cx.note(line, &p, "every port of a unit is reachable from the other units on the bridge: nothing to write"),
            "links" => links(cx, value, &p),
            "networks" => networks(cx, &mut d, value, &p),
            "init" => cx.drop(line, &p, "units have no init process of their own: the service is PID 1 of its container, which the supervisor reaps and signals"),
            "tty" | "stdin_open" => cx.drop(line, &p, "units run without a terminal or standard input (supervisorctl exec -it gives one)"),
            "profiles" => cx.note(line, &p, "every service is imported, whatever its profiles"),
            "platform" => cx.drop(line, &p, "images are pulled for the host's platform"),
            "extra_hosts" | "dns" | "dns_search" | "dns_opt" | "domainname" | "mac_address" => {
                cx.drop(line, &p, "units get /etc/hosts (every unit by name) and /etc/resolv.conf from the supervisor")
            }
            "shm_size" | "ipc" | "pid" | "cgroup" | "cgroup_parent" | "userns_mode" | "isolation" | "runtime" => {
                cx.drop(line, &p, "units have no such setting")
            }
            "mem_reservation" | "memswap_limit" | "mem_swappiness" | "cpu_shares" | "cpu_quota" | "cpu_period"
            | "cpuset" | "cpu_count" | "cpu_percent" | "blkio_config" | "oom_score_adj" | "oom_kill_disable"
            | "storage_opt" | "device_cgroup_rules" => {
                cx.drop(line, &p, "[resources] has cpus, memory and pids only")
            }
            "scale" => cx.drop(line, &p, "a unit is one container"),
            "configs" | "secrets" => cx.drop(line, &p, "units have no configs or secrets: mount the file with a bind volume instead"),
            _ if k.starts_with("x-") => {}
            _ => cx.drop(line, &p, "not a service key that import compose knows"),
        }
    }
    if d.get("container", "image").is_none() {
        cx.error(line, path, "no image: (a unit runs an image)");
        return None;
    }
    lifecycle::finish(&mut d);
    Some(d)
}

/// `command` or `entrypoint`: a list, or a string split as a shell would.
fn command(cx: &mut Cx<'_>, d: &mut Draft, key: &str, value: &Node, path: &str) {
    let words = match &value.value {
        Value::Seq(_) => cx.texts(value, path),
        Value::Scalar(s) if s.is_null() => Some(Vec::new()),
        Value::Scalar(s) => match shell_split(&s.text) {
            Ok(w) => Some(w),
            Err(e) => {
                cx.error(value.line, path, e);
                None
            }
        },
        Value::Map(_) => cx.texts(value, path),
    };
    let Some(words) = words else { return };
    if key == "command" && words.is_empty() {
        cx.note(value.line, path, "an empty command: the image's Cmd is used");
        return;
    }
    d.set("container", key, Tv::strs(words));
}

/// A string key checked with the unit grammar's own check.
fn checked(
    cx: &mut Cx<'_>,
    d: &mut Draft,
    value: &Node,
    path: &str,
    key: &str,
    check: impl Fn(&str) -> Result<(), String>,
) {
    let Some(text) = cx.text(value, path) else { return };
    match check(&text) {
        Ok(()) => d.set("container", key, Tv::str(text)),
        Err(e) => cx.drop(value.line, path, e),
    }
}

fn capabilities(cx: &mut Cx<'_>, d: &mut Draft, key: &str, value: &Node, path: &str) {
    let Some(list) = cx.texts(value, path) else { return };
    let mut kept = Vec::new();
    for (i, cap) in list.into_iter().enumerate() {
        match parse_capability(&cap) {
            Ok(_) => kept.push(cap),
            Err(e) => cx.drop(value.seq().map_or(value.line, |s| s[i].line), &format!("{path}[{i}]"), e),
        }
    }
    d.set("container", key, Tv::strs(kept));
}

/// Entries of a mapping, or of a list of `NAME=value` strings, with lines.
/// A list entry without `=` has no value (None).
pub(crate) fn pairs(cx: &mut Cx<'_>, value: &Node, path: &str) -> Vec<(String, Option<String>, usize)> {
    match &value.value {
        Value::Map(entries) => entries
            .iter()
            .map(|(k, v)| {
                let text = v.scalar().map(|s| s.text.clone());
                if v.map().is_some() || v.seq().is_some() {
                    cx.error(
                        v.line,
                        &format!("{path}.{}", k.text),
                        format!("expected a single value, found {}", v.kind()),
                    );
                }
                (k.text.clone(), text, k.line)
            })
            .collect(),
        Value::Seq(items) => items
            .iter()
            .enumerate()
            .filter_map(|(i, n)| {
                let text = cx.text(n, &format!("{path}[{i}]"))?;
                Some(match text.split_once('=') {
                    Some((k, v)) => (k.to_string(), Some(v.to_string()), n.line),
                    None => (text, None, n.line),
                })
            })
            .collect(),
        Value::Scalar(_) => {
            cx.error(value.line, path, format!("expected a mapping or a list, found {}", value.kind()));
            Vec::new()
        }
    }
}

fn sysctls(cx: &mut Cx<'_>, d: &mut Draft, value: &Node, path: &str) {
    let host = matches!(d.get("container", "network"), Some(Tv::Str(n)) if n == "host");
    let mut table = Vec::new();
    for (name, v, line) in pairs(cx, value, path) {
        let p = format!("{path}.{name}");
        match crate::units::values::limits::check_sysctl(&name, host) {
            Ok(()) => table.push((name, Tv::str(v.unwrap_or_default()))),
            Err(e) => cx.drop(line, &p, e),
        }
    }
    d.set("container", "sysctls", Tv::Table(table));
}

fn ulimits(cx: &mut Cx<'_>, d: &mut Draft, value: &Node, path: &str) {
    let Some(entries) = cx.map(value, path) else { return };
    let mut table = Vec::new();
    for (k, v) in entries {
        let p = format!("{path}.{}", k.text);
        if let Err(e) = crate::units::values::limits::check_ulimit_name(&k.text) {
            cx.drop(k.line, &p, e);
            continue;
        }
        let number = |cx: &mut Cx<'_>, n: &Node, p: &str| -> Option<i64> {
            let t = cx.text(n, p)?;
            let parsed = t.parse::<i64>().ok();
            if parsed.is_none() {
                cx.error(n.line, p, format!("{t:?} is not a number"));
            }
            parsed
        };
        let limit = match &v.value {
            Value::Map(_) => {
                let soft = v.get("soft").and_then(|n| number(cx, n, &format!("{p}.soft")));
                let hard = v.get("hard").and_then(|n| number(cx, n, &format!("{p}.hard")));
                match (soft, hard) {
                    (Some(s), Some(h)) => Tv::Table(vec![("soft".into(), Tv::Int(s)), ("hard".into(), Tv::Int(h))]),
                    _ => {
                        cx.error(v.line, &p, "a ulimit mapping needs soft: and hard:");
                        continue;
                    }
                }
            }
            _ => match number(cx, v, &p) {
                Some(n) => Tv::Int(n),
                None => continue,
            },
        };
        table.push((k.text.clone(), limit));
    }
    d.set("container", "ulimits", Tv::Table(table));
}

fn network_mode(cx: &mut Cx<'_>, proj: &Project<'_>, d: &mut Draft, value: &Node, path: &str) {
    let Some(mode) = cx.text(value, path) else { return };
    let network = match mode.as_str() {
        "host" | "none" | "bridge" => mode.clone(),
        "default" => "bridge".into(),
        _ => match mode.strip_prefix("service:") {
            Some(s) => match proj.units.get(s) {
                Some(unit) => format!("unit:{unit}"),
                None => {
                    cx.error(value.line, path, format!("no service {s:?} in this file"));
                    return;
                }
            },
            None => {
                cx.drop(
                    value.line,
                    path,
                    format!("{mode:?}: units join host, none, the bridge, or another unit (service:NAME)"),
                );
                return;
            }
        },
    };
    d.set("container", "network", Tv::str(network));
}

fn labels(cx: &mut Cx<'_>, d: &mut Draft, value: &Node, path: &str) {
    let pairs = pairs(cx, value, path);
    if pairs.is_empty() {
        return;
    }
    let mut lines = vec!["Labels of the service (units have no labels; kept here for people):".to_string()];
    for (k, v, _) in pairs {
        lines.push(format!("  {k} = {}", v.unwrap_or_default()));
    }
    d.header.push(lines.join("\n"));
    cx.note(value.line, path, "units have no labels: kept as a comment at the top of the unit file");
}

fn security_opt(cx: &mut Cx<'_>, d: &mut Draft, value: &Node, path: &str) {
    let Some(list) = cx.texts(value, path) else { return };
    for (i, opt) in list.iter().enumerate() {
        let line = value.seq().map_or(value.line, |s| s[i].line);
        let p = format!("{path}[{i}]");
        let (name, arg) = opt.split_once([':', '=']).unwrap_or((opt, ""));
        match (name, arg) {
            ("no-new-privileges", "" | "true") => d.set("container", "no_new_privileges", Tv::Bool(true)),
            ("no-new-privileges", "false") => d.set("container", "no_new_privileges", Tv::Bool(false)),
            ("seccomp", "unconfined") => d.set("container", "seccomp", Tv::str("unconfined")),
            ("seccomp", _) => {
                cx.drop(line, &p, "a seccomp profile of one's own: units have the default filter or none")
            }
            _ => cx.drop(line, &p, "units have no such security option (no AppArmor or SELinux labels)"),
        }
    }
}

fn pull_policy(cx: &mut Cx<'_>, d: &mut Draft, value: &Node, path: &str) {
    let Some(policy) = cx.text(value, path) else { return };
    let pull = match policy.as_str() {
        "always" => "always",
        "never" => "never",
        "missing" | "if_not_present" => "missing",
        _ => {
            cx.drop(value.line, path, format!("{policy:?}: units pull always, never or when missing"));
            return;
        }
    };
    d.set("container", "pull", Tv::str(pull));
}

fn links(cx: &mut Cx<'_>, value: &Node, path: &str) {
    let Some(list) = cx.texts(value, path) else { return };
    for (i, link) in list.iter().enumerate() {
        let line = value.seq().map_or(value.line, |s| s[i].line);
        match link.split_once(':') {
            Some((_, alias)) => cx.drop(
                line,
                &format!("{path}[{i}]"),
                format!("the alias {alias:?}: a unit is reached by its name (and its aliases)"),
            ),
            None => cx.note(line, &format!("{path}[{i}]"), "units reach each other by name: nothing to write"),
        }
    }
}

/// `networks:`: the default network is the bridge; its aliases are kept.
fn networks(cx: &mut Cx<'_>, d: &mut Draft, value: &Node, path: &str) {
    let names: Vec<(String, Option<&Node>, usize)> = match &value.value {
        Value::Seq(items) => items.iter().filter_map(|n| Some((n.scalar()?.text.clone(), None, n.line))).collect(),
        Value::Map(entries) => entries.iter().map(|(k, v)| (k.text.clone(), Some(v), k.line)).collect(),
        Value::Scalar(_) => Vec::new(),
    };
    for (i, (name, config, line)) in names.into_iter().enumerate() {
        let p = format!("{path}.{name}");
        if i > 0 {
            cx.drop(line, &p, "units are on one network: the bridge");
            continue;
        }
        if name != "default" {
            cx.note(line, &p, "the units' bridge network stands for it");
        }
        for (k, _) in config.and_then(Node::map).unwrap_or_default() {
            if k.text != "aliases" {
                cx.drop(
                    k.line,
                    &format!("{p}.{}", k.text),
                    "units get their address from the bridge's pool; only aliases are kept",
                );
            }
        }
        let Some(aliases) = config.and_then(|c| c.get("aliases")) else { continue };
        let Some(list) = cx.texts(aliases, &format!("{p}.aliases")) else { continue };
        let mut all: Vec<String> = match d.get("container", "aliases") {
            Some(Tv::List(l)) => {
                l.iter().filter_map(|t| if let Tv::Str(s) = t { Some(s.clone()) } else { None }).collect()
            }
            _ => Vec::new(),
        };
        for a in list {
            match crate::names::check_dns_label(&a) {
                Ok(()) if !all.contains(&a) => all.push(a),
                Ok(()) => {}
                Err(e) => cx.drop(aliases.line, &format!("{p}.aliases"), e),
            }
        }
        d.set("container", "aliases", Tv::strs(all));
    }
}
