//! What a service sees of the world: `environment`, `env_file`, `ports`,
//! `volumes` (and the top-level `volumes:`), `tmpfs`.
//!
//! Relative host paths are made absolute against the Compose file's
//! directory, since the unit files are written elsewhere and a unit's
//! relative paths would be relative to the unit file.

use std::collections::BTreeMap;
use std::path::{Component, PathBuf};

use super::render::{Draft, Tv};
use super::service::pairs;
use super::words::compose_size;
use super::yaml::{Node, Value};
use super::{Cx, Project};
use crate::units::diag::Source as Text;
use crate::units::envfile::parse_env_file;
use crate::units::values::mounts::Tmpfs;
use crate::units::values::names::check_volume_name;
use crate::units::values::port::PortMapping;

pub(crate) fn key(cx: &mut Cx<'_>, proj: &Project<'_>, d: &mut Draft, key: &str, value: &Node, path: &str) {
    match key {
        "environment" => environment(cx, proj, d, value, path),
        "env_file" => env_file(cx, proj, d, value, path),
        "ports" => ports(cx, d, value, path),
        "volumes" => volumes(cx, proj, d, value, path),
        _ => tmpfs(cx, d, value, path),
    }
}

fn environment(cx: &mut Cx<'_>, proj: &Project<'_>, d: &mut Draft, value: &Node, path: &str) {
    let mut table = Vec::new();
    for (name, v, line) in pairs(cx, value, path) {
        let p = format!("{path}.{name}");
        let v = match v {
            Some(v) => v,
            None => match proj.env.get(&name) {
                // `- NAME` (or `NAME:`) passes the variable through from
                // where compose runs; a unit's environment is fixed.
                Some(v) => {
                    cx.note(
                        line,
                        &p,
                        "no value here: the value it has now, where import runs, is written into the unit",
                    );
                    v.clone()
                }
                None => {
                    cx.note(line, &p, "no value here and not set where import runs: left unset, as Compose does");
                    continue;
                }
            },
        };
        if let Err(e) = crate::units::values::names::check_env_name(&name) {
            cx.drop(line, &p, e);
            continue;
        }
        table.retain(|(k, _): &(String, Tv)| *k != name);
        table.push((name, Tv::Str(v)));
    }
    // Over what later env_files put there before (environment: wins).
    let mut all = env_table(d);
    all.retain(|(k, _)| !table.iter().any(|(n, _)| n == k));
    all.extend(table);
    d.set("container", "env", Tv::Table(all));
}

fn env_table(d: &Draft) -> Vec<(String, Tv)> {
    match d.get("container", "env") {
        Some(Tv::Table(t)) => t.clone(),
        _ => Vec::new(),
    }
}

fn env_file(cx: &mut Cx<'_>, proj: &Project<'_>, d: &mut Draft, value: &Node, path: &str) {
    let items: Vec<&Node> = match &value.value {
        Value::Seq(items) => items.iter().collect(),
        _ => vec![value],
    };
    let mut files = Vec::new();
    for (i, item) in items.into_iter().enumerate() {
        let p = format!("{path}[{i}]");
        let file = match item.map() {
            Some(entries) => {
                for (k, _) in entries {
                    if k.text != "path" && k.text != "required" {
                        cx.drop(k.line, &format!("{p}.{}", k.text), "not an env_file key");
                    }
                }
                if item.get("required").and_then(|r| r.scalar()?.as_bool()) == Some(false) {
                    cx.drop(item.line, &format!("{p}.required"), "a unit's env_file must exist");
                }
                match item.get("path") {
                    Some(n) => cx.text(n, &format!("{p}.path")),
                    None => {
                        cx.error(item.line, &p, "an env_file entry needs path:");
                        None
                    }
                }
            }
            None => cx.text(item, &p),
        };
        if let Some(f) = file {
            files.push((absolute(proj, &f), item.line, p));
        }
    }
    let mut files = files.into_iter();
    if let Some((first, _, _)) = files.next() {
        d.set_noted(
            "container",
            "env_file",
            Tv::str(first.to_string_lossy()),
            Some("Read literally: NAME=value lines, no quotes removed, no ${...} expanded.".into()),
        );
    }
    // A unit has one env_file: the others' variables are written into
    // env, later files over earlier ones, under what environment: sets.
    let mut extra: Vec<(String, Tv)> = Vec::new();
    for (file, line, p) in files {
        let text = match (proj.read_file)(&file) {
            Ok(t) => t,
            Err(e) => {
                cx.error(line, &p, e);
                continue;
            }
        };
        let source = Text { path: &file, text: &text };
        match parse_env_file(&source) {
            Ok(vars) => {
                cx.note(line, &p, "a unit has one env_file: these values are written into env (as they are now)");
                for (k, v) in vars {
                    extra.retain(|(n, _)| *n != k);
                    extra.push((k, Tv::Str(v)));
                }
            }
            Err(errors) => {
                for e in errors {
                    cx.error(line, &p, e.to_string());
                }
            }
        }
    }
    if !extra.is_empty() {
        let mut all = env_table(d);
        extra.retain(|(k, _)| !all.iter().any(|(n, _)| n == k));
        all.extend(extra);
        d.set("container", "env", Tv::Table(all));
    }
}

/// `path` relative to the Compose file's directory, `..` and `.` resolved
/// by their names (as Compose does); `~` is the home directory.
fn absolute(proj: &Project<'_>, path: &str) -> PathBuf {
    let joined = match path.strip_prefix('~') {
        Some(rest) if rest.is_empty() || rest.starts_with('/') => {
            let home = proj.env.get("HOME").cloned().unwrap_or_else(|| "/root".into());
            PathBuf::from(format!("{home}{rest}"))
        }
        _ => proj.base_dir.join(path),
    };
    let mut out = PathBuf::new();
    for c in joined.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            c => out.push(c),
        }
    }
    out
}

fn ports(cx: &mut Cx<'_>, d: &mut Draft, value: &Node, path: &str) {
    let Some(items) = value.seq() else {
        cx.error(value.line, path, format!("expected a list, found {}", value.kind()));
        return;
    };
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let p = format!("{path}[{i}]");
        let port = match item.map() {
            Some(entries) => long_port(cx, item, entries, &p),
            None => cx.text(item, &p),
        };
        let Some(port) = port else { continue };
        match PortMapping::parse(&port) {
            Ok(_) => out.push(port),
            Err(e) => cx.drop(item.line, &p, e),
        }
    }
    d.set("container", "ports", Tv::strs(out));
}

/// A port in the long syntax, as the short one.
fn long_port(cx: &mut Cx<'_>, item: &Node, entries: &[(super::yaml::Key, Node)], p: &str) -> Option<String> {
    let mut target = None;
    let mut published = None;
    let mut host_ip = None;
    let mut protocol = None;
    for (k, v) in entries {
        let kp = format!("{p}.{}", k.text);
        match k.text.as_str() {
            "target" => target = cx.text(v, &kp),
            "published" => published = v.scalar().map(|s| s.text.clone()),
            "host_ip" => host_ip = cx.text(v, &kp),
            "protocol" => protocol = cx.text(v, &kp),
            "mode" => {
                if cx.text(v, &kp).as_deref() != Some("host") {
                    cx.note(k.line, &kp, "published on this host (there is no swarm ingress)");
                }
            }
            "name" | "app_protocol" => cx.drop(k.line, &kp, "a unit's ports have no names or application protocols"),
            _ => cx.drop(k.line, &kp, "not a port key"),
        }
    }
    let Some(target) = target else {
        cx.error(item.line, p, "a port needs target:");
        return None;
    };
    let mut s = String::new();
    if let Some(ip) = host_ip {
        s += &format!("{ip}:");
        if published.is_none() {
            s += ":";
        }
    }
    if let Some(publ) = published.filter(|x| !x.is_empty()) {
        s += &format!("{publ}:");
    }
    s += &target;
    if let Some(proto) = protocol {
        s += &format!("/{proto}");
    }
    Some(s)
}

fn volumes(cx: &mut Cx<'_>, proj: &Project<'_>, d: &mut Draft, value: &Node, path: &str) {
    let Some(items) = value.seq() else {
        cx.error(value.line, path, format!("expected a list, found {}", value.kind()));
        return;
    };
    let mut mounts = Vec::new();
    let mut tmpfs = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let p = format!("{path}[{i}]");
        let spec = match item.map() {
            Some(_) => long_volume(cx, item, &p),
            None => cx.text(item, &p).and_then(|t| short_volume(cx, item.line, &t, &p)),
        };
        match spec {
            Some(Mount::Volume { source, target, read_only }) => {
                let source = match source {
                    Source::Bind(host) => {
                        let abs = absolute(proj, &host);
                        if abs.to_string_lossy().contains(':') {
                            cx.drop(item.line, &p, "a host path with ':' cannot be written in a unit's volume");
                            continue;
                        }
                        abs.to_string_lossy().into_owned()
                    }
                    Source::Named(name) => match proj.volumes.get(&name) {
                        Some(actual) => actual.clone(),
                        None => {
                            cx.error(
                                item.line,
                                &p,
                                format!("named volume {name:?} is not declared in the top-level volumes:"),
                            );
                            continue;
                        }
                    },
                };
                mounts.push(format!("{source}:{target}{}", if read_only { ":ro" } else { "" }));
            }
            Some(Mount::Tmpfs(t)) => tmpfs.push(t),
            None => {}
        }
    }
    d.set("container", "volumes", Tv::strs(mounts));
    if !tmpfs.is_empty() {
        add_tmpfs(d, tmpfs);
    }
}

enum Source {
    Bind(String),
    Named(String),
}

enum Mount {
    Volume { source: Source, target: String, read_only: bool },
    Tmpfs(String),
}

fn source_of(text: &str) -> Source {
    if text.starts_with(['/', '.', '~']) { Source::Bind(text.to_string()) } else { Source::Named(text.to_string()) }
}

fn short_volume(cx: &mut Cx<'_>, line: usize, text: &str, p: &str) -> Option<Mount> {
    let parts: Vec<&str> = text.split(':').collect();
    let (source, target, mode) = match parts.as_slice() {
        [_] => {
            cx.drop(line, p, "an anonymous volume: units' volumes outlive their containers, so name it (NAME:PATH)");
            return None;
        }
        [s, t] => (*s, *t, ""),
        [s, t, m] => (*s, *t, *m),
        _ => {
            cx.error(line, p, format!("{text:?} is not SOURCE:TARGET[:MODE]"));
            return None;
        }
    };
    let mut read_only = false;
    for m in mode.split(',').filter(|m| !m.is_empty()) {
        match m {
            "ro" => read_only = true,
            "rw" => read_only = false,
            other => cx.drop(line, p, format!("the mode {other:?}: units' volumes are ro or rw only")),
        }
    }
    Some(Mount::Volume { source: source_of(source), target: target.to_string(), read_only })
}

fn long_volume(cx: &mut Cx<'_>, item: &Node, p: &str) -> Option<Mount> {
    let kind = item.get("type").and_then(|t| cx.text(t, &format!("{p}.type")));
    let target = item.get("target").and_then(|t| cx.text(t, &format!("{p}.target")));
    let source = item.get("source").and_then(|t| cx.text(t, &format!("{p}.source")));
    let read_only = item.get("read_only").and_then(|r| cx.bool(r, &format!("{p}.read_only"))).unwrap_or(false);
    let mut tmpfs_opts = Vec::new();
    for (k, v) in item.map().unwrap_or_default() {
        let kp = format!("{p}.{}", k.text);
        match k.text.as_str() {
            "type" | "target" | "source" | "read_only" => {}
            "tmpfs" => {
                for (tk, tv) in cx.map(v, &kp).unwrap_or_default() {
                    let tp = format!("{kp}.{}", tk.text);
                    match (tk.text.as_str(), cx.text(tv, &tp)) {
                        ("size", Some(s)) => match compose_size(&s) {
                            Ok(b) => tmpfs_opts.push(format!("size={b}")),
                            Err(e) => cx.drop(tv.line, &tp, e),
                        },
                        ("mode", Some(m)) => tmpfs_opts.push(format!("mode={m}")),
                        _ => cx.drop(tk.line, &tp, "a tmpfs has size and mode"),
                    }
                }
            }
            "bind" | "volume" => {
                for (bk, _) in cx.map(v, &kp).unwrap_or_default() {
                    let why = match bk.text.as_str() {
                        "create_host_path" => "a missing bind source is an error when the unit starts, never created",
                        "propagation" => "binds are private (rprivate)",
                        "nocopy" => "a new named volume is always seeded from the image",
                        _ => "units have no such mount option",
                    };
                    cx.drop(bk.line, &format!("{kp}.{}", bk.text), why);
                }
            }
            "consistency" => cx.drop(k.line, &kp, "has no meaning on Linux"),
            _ => cx.drop(k.line, &kp, "not a volume key"),
        }
    }
    let target = target.or_else(|| {
        cx.error(item.line, p, "a volume needs target:");
        None
    })?;
    match kind.as_deref() {
        Some("tmpfs") => {
            let mut t = target;
            if read_only {
                tmpfs_opts.push("ro".into());
            }
            if !tmpfs_opts.is_empty() {
                t += &format!(":{}", tmpfs_opts.join(","));
            }
            Some(Mount::Tmpfs(t))
        }
        Some("bind") | Some("volume") => {
            let Some(source) = source else {
                cx.drop(
                    item.line,
                    p,
                    "an anonymous volume: units' volumes outlive their containers, so give it a source",
                );
                return None;
            };
            let source = if kind.as_deref() == Some("bind") { Source::Bind(source) } else { Source::Named(source) };
            let source = match source {
                // A bind written without ./ is still a path.
                Source::Bind(s) if !s.starts_with(['/', '.', '~']) => Source::Bind(format!("./{s}")),
                s => s,
            };
            Some(Mount::Volume { source, target, read_only })
        }
        other => {
            cx.drop(
                item.line,
                p,
                format!("volumes of type {:?}: units mount binds, named volumes and tmpfs", other.unwrap_or("")),
            );
            None
        }
    }
}

fn tmpfs(cx: &mut Cx<'_>, d: &mut Draft, value: &Node, path: &str) {
    let Some(list) = cx.texts(value, path) else { return };
    let mut kept = Vec::new();
    for (i, t) in list.into_iter().enumerate() {
        let line = value.seq().map_or(value.line, |s| s[i].line);
        match Tmpfs::parse(&t) {
            Ok(_) => kept.push(t),
            Err(e) => cx.drop(line, &format!("{path}[{i}]"), e),
        }
    }
    add_tmpfs(d, kept);
}

fn add_tmpfs(d: &mut Draft, more: Vec<String>) {
    let mut all = match d.get("container", "tmpfs") {
        Some(Tv::List(l)) => l.clone(),
        _ => Vec::new(),
    };
    all.extend(more.into_iter().map(Tv::Str));
    d.set("container", "tmpfs", Tv::List(all));
}

/// The top-level `volumes:`: each declared volume's name in the units.
pub(crate) fn top_volumes(cx: &mut Cx<'_>, node: &Node, prefix: Option<&str>, out: &mut BTreeMap<String, String>) {
    let Some(entries) = cx.map(node, "volumes") else { return };
    for (key, v) in entries {
        let p = format!("volumes.{}", key.text);
        let mut name = None;
        let mut external = false;
        for (k, val) in v.map().unwrap_or_default() {
            let kp = format!("{p}.{}", k.text);
            match k.text.as_str() {
                "name" => name = cx.text(val, &kp),
                "external" => match val.map() {
                    Some(_) => {
                        external = true;
                        name = val.get("name").and_then(|n| cx.text(n, &format!("{kp}.name")));
                    }
                    None => external = cx.bool(val, &kp).unwrap_or(false),
                },
                "driver" if val.scalar().is_some_and(|s| s.text == "local") => {}
                "driver" | "driver_opts" => {
                    cx.drop(k.line, &kp, "units' named volumes are directories of the supervisor's state")
                }
                "labels" => cx.drop(k.line, &kp, "volumes have no labels"),
                _ => cx.drop(k.line, &kp, "not a volume key"),
            }
        }
        if !v.is_null() && v.map().is_none() {
            cx.error(v.line, &p, format!("expected a mapping, found {}", v.kind()));
        }
        let actual = match (name, prefix) {
            (Some(n), _) => n,
            (None, Some(pre)) if !external => format!("{pre}_{}", key.text),
            (None, _) => key.text.clone(),
        };
        if external {
            cx.note(
                key.line,
                &p,
                format!(
                    "external: the volume {actual:?} is made empty (and seeded from the image) if it does not exist"
                ),
            );
        }
        match check_volume_name(&actual) {
            Ok(()) => {
                out.insert(key.text.clone(), actual);
            }
            Err(e) => cx.error(key.line, &p, e),
        }
    }
}
