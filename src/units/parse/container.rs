//! `[container]`: what runs (image, command, environment, user) and how it
//! meets the host (ports, mounts, network). Its security keys are in
//! [`super::security`].

use std::collections::BTreeMap;
use std::path::Path;

use toml::de::DeValue;

use super::keys::{Section, a_type, names_sorted, scalar_text};
use super::security::{capabilities, devices, sysctls, ulimits};
use super::{Cx, ParseInput, Span, UnitSpans};
use crate::units::diag::Source;
use crate::units::envfile::parse_env_file;
use crate::units::model::{Container, Network, PullPolicy, Seccomp};
use crate::units::suggest::did_you_mean;
use crate::units::values::mounts::{Tmpfs, Volume};
use crate::units::values::names::{check_dns_label, check_env_name, check_hostname, check_user};
use crate::units::values::path::{clean_absolute, host_path};
use crate::units::values::port::PortMapping;
use crate::units::values::reference::ImageSource;

/// `None` when the section is missing or has an error (always reported).
pub(super) fn parse_container(
    cx: &mut Cx<'_>,
    s: &Section<'_, '_>,
    input: &ParseInput<'_>,
    spans: &mut UnitSpans,
    doc_span: Span,
    misplaced: bool,
) -> Option<Container> {
    if !s.present() {
        if misplaced {
            return None;
        }
        cx.error(doc_span.start..doc_span.start, "missing section [container]: a unit needs at least image = \"...\"");
        return None;
    }
    s.check_keys(cx);
    let base = input.base_dir;
    let image = image(cx, s, base);
    let pull = s
        .choice(
            cx,
            "pull",
            &[("missing", PullPolicy::Missing), ("always", PullPolicy::Always), ("never", PullPolicy::Never)],
        )
        .unwrap_or(PullPolicy::Missing);
    let (entrypoint, command) = entrypoint_and_command(cx, s);
    let env = env(cx, s);
    let (env_file, env_file_vars) = env_file(cx, s, input);
    let workdir = s.string_with(cx, "workdir", clean_absolute);
    let user = s.string_with(cx, "user", |u| check_user(u).map(|_| u.to_string()));
    let hostname = s
        .string_with(cx, "hostname", |h| check_hostname(h).map(|_| h.to_string()))
        .unwrap_or_else(|| input.name.to_string());
    let read_only = s.bool(cx, "read_only").unwrap_or(false);
    let ports = ports(cx, s, spans);
    let (volumes, tmpfs) = mounts(cx, s, base);
    let network = network(cx, s, input.name, spans);
    let aliases = names_sorted(
        s.string_list(cx, "aliases", |a| check_dns_label(a).map(|_| a.to_string()).map_err(|e| format!("alias {e}")))
            .unwrap_or_default(),
    );
    check_bridge_only(cx, s, &network, !ports.is_empty(), !aliases.is_empty());
    let (cap_add, cap_drop) = capabilities(cx, s);
    let no_new_privileges = s.bool(cx, "no_new_privileges").unwrap_or(true);
    let seccomp = s
        .choice(cx, "seccomp", &[("default", Seccomp::Default), ("unconfined", Seccomp::Unconfined)])
        .unwrap_or(Seccomp::Default);
    let privileged = s.bool(cx, "privileged").unwrap_or(false);
    let devices = devices(cx, s);
    let sysctls = sysctls(cx, s, network == Network::Host);
    let ulimits = ulimits(cx, s);
    let notify = s.bool(cx, "notify").unwrap_or(false);

    Some(Container {
        image: image?,
        pull,
        entrypoint,
        command,
        env,
        env_file,
        env_file_vars,
        workdir,
        user,
        hostname,
        read_only,
        ports,
        volumes,
        tmpfs,
        network,
        aliases: aliases.into_iter().map(|(a, _)| a).collect(),
        cap_add,
        cap_drop,
        no_new_privileges,
        seccomp,
        privileged,
        devices,
        sysctls,
        ulimits,
        notify,
    })
}

fn image(cx: &mut Cx<'_>, s: &Section<'_, '_>, base: &Path) -> Option<ImageSource> {
    let image = s.string_with(cx, "image", |v| ImageSource::parse(v, base));
    if s.get("image").is_none() {
        let at = s.table.and_then(|t| t.iter().next()).map_or(0..0, |(k, _)| k.span());
        cx.error(at, "missing key \"image\" in [container]: name the image to run, like image = \"nginx:1.27\"");
    }
    image
}

type Argv = Option<Vec<String>>;

fn entrypoint_and_command(cx: &mut Cx<'_>, s: &Section<'_, '_>) -> (Argv, Argv) {
    let argv = |v: &DeValue<'_>| -> Option<Result<Vec<String>, String>> {
        let items = v.as_array()?;
        let mut out = Vec::new();
        for item in items.iter() {
            match item.get_ref().as_str() {
                Some(a) if a.contains('\0') => return Some(Err("an argument contains a NUL byte".into())),
                Some(a) => out.push(a.to_string()),
                None => return Some(Err(format!("arguments must be strings, found {}", a_type(item.get_ref())))),
            }
        }
        Some(Ok(out))
    };
    let argv_expected = r#"an array of strings, like ["nginx", "-g", "daemon off;"]"#;
    let entrypoint = s.typed(cx, "entrypoint", argv_expected, argv);
    let command = s.typed(cx, "command", argv_expected, |v| {
        argv(v).map(|r| {
            r.and_then(|a| {
                if a.is_empty() { Err("must not be empty: leave it out to use the image's Cmd".into()) } else { Ok(a) }
            })
        })
    });
    (entrypoint, command)
}

fn env(cx: &mut Cx<'_>, s: &Section<'_, '_>) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    for (name, kspan, value) in s.map(cx, "env").unwrap_or_default() {
        if let Err(e) = check_env_name(&name) {
            cx.error(kspan, format!("invalid variable in \"env\" of [container]: {e}"));
            continue;
        }
        match scalar_text(value.get_ref()) {
            Some(Ok(text)) => {
                env.insert(name, text);
            }
            Some(Err(e)) => cx.error(value.span(), format!("invalid value of {name} in \"env\": {e}")),
            None => cx.error(
                value.span(),
                format!("the value of {name} in \"env\" must be a string, found {}", a_type(value.get_ref())),
            ),
        }
    }
    env
}

/// The `env_file` path and the variables read from it.
fn env_file(
    cx: &mut Cx<'_>,
    s: &Section<'_, '_>,
    input: &ParseInput<'_>,
) -> (Option<String>, BTreeMap<String, String>) {
    let env_file = s.string_with(cx, "env_file", |p| host_path(p, input.base_dir));
    let vars = env_file.as_ref().map_or_else(BTreeMap::new, |path| {
        let span = s.get("env_file").map_or(0..0, |v| v.span());
        match (input.read_file)(Path::new(path)) {
            Err(e) => {
                cx.error(span, format!("cannot read env_file {path:?}: {e}"));
                BTreeMap::new()
            }
            Ok(text) => match parse_env_file(&Source { path: Path::new(path), text: &text }) {
                Ok(vars) => vars,
                Err(errs) => {
                    cx.diags.extend(errs);
                    BTreeMap::new()
                }
            },
        }
    });
    (env_file, vars)
}

/// Sorted, with no two using the same host port; their spans go to `spans`.
fn ports(cx: &mut Cx<'_>, s: &Section<'_, '_>, spans: &mut UnitSpans) -> Vec<PortMapping> {
    let mut ports = s.string_list(cx, "ports", PortMapping::parse).unwrap_or_default();
    ports.sort_by(|a, b| a.0.cmp(&b.0));
    for (i, (p, span)) in ports.iter().enumerate() {
        if let Some((q, _)) = ports[..i].iter().find(|(q, _)| q.conflicts_with(p)) {
            cx.error(span.clone(), format!("port mapping {p} uses the same host port as {q}"));
        }
    }
    spans.ports = ports.iter().map(|(_, sp)| sp.clone()).collect();
    ports.into_iter().map(|(p, _)| p).collect()
}

/// `volumes` and `tmpfs`, each sorted by target; no target mounted twice.
fn mounts(cx: &mut Cx<'_>, s: &Section<'_, '_>, base: &Path) -> (Vec<Volume>, Vec<Tmpfs>) {
    let mut volumes = s.string_list(cx, "volumes", |v| Volume::parse(v, base)).unwrap_or_default();
    let mut tmpfs = s.string_list(cx, "tmpfs", Tmpfs::parse).unwrap_or_default();
    volumes.sort_by(|a, b| a.0.target.cmp(&b.0.target));
    tmpfs.sort_by(|a, b| a.0.target.cmp(&b.0.target));
    let mut targets: BTreeMap<String, ()> = BTreeMap::new();
    let mounts = volumes.iter().map(|(v, sp)| (&v.target, sp)).chain(tmpfs.iter().map(|(t, sp)| (&t.target, sp)));
    let mut by_pos: Vec<_> = mounts.collect();
    by_pos.sort_by_key(|(_, sp)| sp.start);
    for (target, span) in by_pos {
        if targets.insert(target.clone(), ()).is_some() {
            cx.error(span.clone(), format!("{target} is mounted twice (in volumes or tmpfs)"));
        }
    }
    (volumes.into_iter().map(|(v, _)| v).collect(), tmpfs.into_iter().map(|(t, _)| t).collect())
}

fn network(cx: &mut Cx<'_>, s: &Section<'_, '_>, unit_name: &str, spans: &mut UnitSpans) -> Network {
    spans.network = s.get("network").map(|v| v.span());
    s.string_with(cx, "network", |n| match n {
        "bridge" => Ok(Network::Bridge),
        "host" => Ok(Network::Host),
        "none" => Ok(Network::None),
        other => match other.strip_prefix("unit:") {
            Some(u) if u == unit_name => Err("a unit cannot join its own network".into()),
            Some(u) => check_dns_label(u).map(|_| Network::Unit(u.to_string())).map_err(|e| format!("unit name {e}")),
            None => Err(format!(
                "{other:?} is not a network mode: use \"bridge\", \"host\", \"none\" or \"unit:<name>\"{}",
                did_you_mean(other, ["bridge", "host", "none"])
            )),
        },
    })
    .unwrap_or(Network::Bridge)
}

/// Published ports and aliases exist only on the bridge.
fn check_bridge_only(cx: &mut Cx<'_>, s: &Section<'_, '_>, network: &Network, ports: bool, aliases: bool) {
    if *network == Network::Bridge {
        return;
    }
    let mode = serde_json::to_string(network).unwrap_or_default();
    for (key, has) in [("ports", ports), ("aliases", aliases)] {
        if has && let Some(span) = s.key_span(key) {
            cx.error(span, format!("{key:?} needs network = \"bridge\"; it has no meaning with network = {mode}"));
        }
    }
}
