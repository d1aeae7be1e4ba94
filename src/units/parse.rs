//! From the text of one unit file to a normalized [`Unit`], in two stages:
//! the TOML parser gives a table whose every key and value carries its byte
//! span, then this module walks it section by section, checking each value
//! with the grammars of `values/` and collecting every error with its
//! location (not only the first), before it builds the `Unit`.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::Path;
use std::time::Duration;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::diag::{Diagnostic, Source};
use super::envfile::parse_env_file;
use super::model::*;
use super::schema;
use super::suggest::{closest, did_you_mean};
use super::values::capability::parse_capability;
use super::values::duration::parse_duration;
use super::values::limits::{Ulimit, check_sysctl, check_ulimit_name, parse_limit_value};
use super::values::mounts::{Device, Tmpfs, Volume};
use super::values::names::{check_dns_label, check_env_name, check_hostname, check_user};
use super::values::path::{clean_absolute, host_path};
use super::values::port::PortMapping;
use super::values::reference::ImageSource;
use super::values::signal::Signal;
use super::values::size::parse_size;

type Span = Range<usize>;
type Value<'i> = Spanned<DeValue<'i>>;

/// Docker's smallest accepted memory limit.
const MIN_MEMORY: u64 = 6 << 20;
/// The kernel's smallest CFS quota is 1ms per 100ms period.
const MIN_NANO_CPUS: u64 = 10_000_000;

/// What parsing one file needs besides its text.
pub struct ParseInput<'a> {
    pub name: &'a str,
    pub source: Source<'a>,
    /// Relative paths in the file (env_file, local images, `./` binds) are
    /// relative to this directory.
    pub base_dir: &'a Path,
    /// Reads a file the unit refers to (its `env_file`).
    pub read_file: &'a dyn Fn(&Path) -> Result<String, String>,
}

/// A parsed unit and the locations of the values that other units' checks
/// (missing dependencies, cycles, port conflicts) point at.
#[derive(Debug, Clone)]
pub struct Parsed {
    pub unit: Unit,
    pub spans: UnitSpans,
}

#[derive(Debug, Clone, Default)]
pub struct UnitSpans {
    /// `after` and `requires` entries, each with its span.
    pub after: Vec<(String, Span)>,
    pub requires: Vec<(String, Span)>,
    pub network: Option<Span>,
    /// One span per entry of `unit.container.ports`, in the same order.
    pub ports: Vec<Span>,
}

/// Parses and validates one unit file.
pub fn parse_unit(input: &ParseInput<'_>) -> Result<Parsed, Vec<Diagnostic>> {
    let src = &input.source;
    let (doc, syntax) = DeTable::parse_recoverable(src.text);
    if !syntax.is_empty() {
        return Err(syntax
            .iter()
            .map(|e| {
                let span = e.span().unwrap_or(0..0);
                src.diagnostic(span, format!("TOML syntax error: {}", e.message().trim_end()))
            })
            .collect());
    }
    let mut cx = Cx { src, diags: Vec::new() };
    let root = doc.get_ref();
    check_top_level(&mut cx, root);
    let sec = |name: &'static str| Section::of(root, name);

    let mut spans = UnitSpans::default();
    let unit = parse_unit_section(&mut cx, &sec("unit"), &mut spans);
    // A non-table `container` was reported by check_top_level already.
    let container_misplaced = root.iter().any(|(k, _)| k.get_ref() == "container");
    let container = parse_container(&mut cx, &sec("container"), input, &mut spans, doc.span(), container_misplaced);
    let resources = parse_resources(&mut cx, &sec("resources"));
    let restart = parse_restart(&mut cx, &sec("restart"));
    let stop = parse_stop(&mut cx, &sec("stop"));
    let health = parse_health(&mut cx, &sec("health"));
    let logs = parse_logs(&mut cx, &sec("logs"));

    if !cx.diags.is_empty() {
        cx.diags.sort_by_key(|d| (d.line, d.column));
        return Err(cx.diags);
    }
    // The container is Some whenever no error was reported.
    match container {
        Some(container) => Ok(Parsed {
            unit: Unit { name: input.name.to_string(), unit, container, resources, restart, stop, health, logs },
            spans,
        }),
        None => Err(vec![src.diagnostic(0..0, "internal error: incomplete unit without a reported error")]),
    }
}

struct Cx<'a> {
    src: &'a Source<'a>,
    diags: Vec<Diagnostic>,
}

impl Cx<'_> {
    fn error(&mut self, span: Span, message: impl Into<String>) {
        self.diags.push(self.src.diagnostic(span, message));
    }
}

fn check_top_level(cx: &mut Cx<'_>, root: &DeTable<'_>) {
    let names = schema::SECTIONS.map(|(s, _)| s);
    for (key, value) in root.iter() {
        let k = key.get_ref().as_ref();
        let known = names.contains(&k);
        match (known, value.get_ref()) {
            (true, DeValue::Table(_)) => {}
            (true, other) => cx.error(key.span(), format!("{k:?} must be a section [{k}], found {}", a_type(other))),
            (false, _) => {
                let message = match schema::section_of(k) {
                    Some(s) => format!("key {k:?} must be inside a section: put it under [{s}]"),
                    None => format!("unknown section [{k}]{}", did_you_mean(k, names)),
                };
                cx.error(key.span(), message);
            }
        }
    }
}

/// One section of the file (possibly absent) and typed access to its keys.
struct Section<'a, 'i> {
    name: &'static str,
    table: Option<&'a DeTable<'i>>,
}

impl<'a, 'i> Section<'a, 'i> {
    fn of(root: &'a DeTable<'i>, name: &'static str) -> Self {
        let table = root.iter().find(|(k, _)| k.get_ref() == name).and_then(|(_, v)| v.get_ref().as_table());
        Section { name, table }
    }

    fn present(&self) -> bool {
        self.table.is_some()
    }

    /// Reports keys the section does not have, with a suggestion.
    fn check_keys(&self, cx: &mut Cx<'_>) {
        let Some(t) = self.table else { return };
        let known = schema::keys(self.name);
        for (key, _) in t.iter() {
            let k = key.get_ref().as_ref();
            if known.contains(&k) {
                continue;
            }
            let message = match (closest(k, known.iter().copied()), schema::section_of(k)) {
                (Some(near), _) => format!("unknown key {k:?} in [{}], did you mean {near:?}?", self.name),
                (None, Some(other)) => format!("{k:?} belongs in [{other}], not in [{}]", self.name),
                (None, None) => format!("unknown key {k:?} in [{}] (known keys: {})", self.name, known.join(", ")),
            };
            cx.error(key.span(), message);
        }
    }

    fn get(&self, key: &str) -> Option<&'a Value<'i>> {
        self.table?.iter().find(|(k, _)| k.get_ref() == key).map(|(_, v)| v)
    }

    fn key_span(&self, key: &str) -> Option<Span> {
        self.table?.iter().find(|(k, _)| k.get_ref() == key).map(|(k, _)| k.span())
    }

    /// The value of `key` converted by `conv`, which returns `None` when the
    /// TOML type is wrong (reported as "must be EXPECTED") and `Some(Err)`
    /// when the value is invalid.
    fn typed<T>(
        &self,
        cx: &mut Cx<'_>,
        key: &str,
        expected: &str,
        conv: impl FnOnce(&DeValue<'i>) -> Option<Result<T, String>>,
    ) -> Option<T> {
        let v = self.get(key)?;
        match conv(v.get_ref()) {
            Some(Ok(t)) => Some(t),
            Some(Err(e)) => {
                cx.error(v.span(), format!("invalid {key:?} in [{}]: {e}", self.name));
                None
            }
            None => {
                cx.error(
                    v.span(),
                    format!("{key:?} in [{}] must be {expected}, found {}", self.name, a_type(v.get_ref())),
                );
                None
            }
        }
    }

    fn string_with<T>(&self, cx: &mut Cx<'_>, key: &str, f: impl FnOnce(&str) -> Result<T, String>) -> Option<T> {
        self.typed(cx, key, "a string", |v| v.as_str().map(f))
    }

    fn string(&self, cx: &mut Cx<'_>, key: &str) -> Option<String> {
        self.string_with(
            cx,
            key,
            |s| {
                if s.contains('\0') { Err("contains a NUL byte".into()) } else { Ok(s.to_string()) }
            },
        )
    }

    fn bool(&self, cx: &mut Cx<'_>, key: &str) -> Option<bool> {
        self.typed(cx, key, "true or false", |v| v.as_bool().map(Ok))
    }

    fn duration(&self, cx: &mut Cx<'_>, key: &str) -> Option<Duration> {
        self.string_with(cx, key, parse_duration)
    }

    /// A duration that must be above zero.
    fn positive_duration(&self, cx: &mut Cx<'_>, key: &str) -> Option<Duration> {
        self.string_with(cx, key, |s| match parse_duration(s)? {
            Duration::ZERO => Err("must be longer than zero".into()),
            d => Ok(d),
        })
    }

    fn integer(&self, cx: &mut Cx<'_>, key: &str, min: i64, max: i64) -> Option<i64> {
        self.typed(cx, key, "an integer", |v| v.as_integer().map(|i| int_in(i, min, max)))
    }

    fn size(&self, cx: &mut Cx<'_>, key: &str) -> Option<u64> {
        self.typed(cx, key, r#"a size (a string like "256M", or a number of bytes)"#, |v| match v {
            DeValue::String(s) => Some(parse_size(s)),
            DeValue::Integer(i) => Some(int_in(i, 0, i64::MAX).map(|n| n as u64)),
            _ => None,
        })
    }

    /// One of `choices`, with a suggestion for a near miss.
    fn choice<T: Copy>(&self, cx: &mut Cx<'_>, key: &str, choices: &[(&str, T)]) -> Option<T> {
        self.string_with(cx, key, |s| {
            choices.iter().find(|(name, _)| *name == s).map(|(_, t)| *t).ok_or_else(|| {
                let names: Vec<&str> = choices.iter().map(|(n, _)| *n).collect();
                let hint = did_you_mean(s, names.iter().copied());
                let all = names.iter().map(|n| format!("{n:?}")).collect::<Vec<_>>().join(", ");
                format!("{s:?} is not one of {all}{hint}")
            })
        })
    }

    /// An array whose elements are converted by `conv` (same contract as
    /// [`Section::typed`]); each bad element is reported at its own span.
    fn list<T>(
        &self,
        cx: &mut Cx<'_>,
        key: &str,
        expected: &str,
        mut conv: impl FnMut(&DeValue<'i>) -> Option<Result<T, String>>,
    ) -> Option<Vec<(T, Span)>> {
        let v = self.get(key)?;
        let Some(items) = v.get_ref().as_array() else {
            cx.error(
                v.span(),
                format!("{key:?} in [{}] must be an array of {expected}, found {}", self.name, a_type(v.get_ref())),
            );
            return None;
        };
        let mut out = Vec::new();
        let mut ok = true;
        for item in items.iter() {
            match conv(item.get_ref()) {
                Some(Ok(t)) => out.push((t, item.span())),
                Some(Err(e)) => {
                    ok = false;
                    cx.error(item.span(), format!("invalid entry in {key:?} of [{}]: {e}", self.name));
                }
                None => {
                    ok = false;
                    cx.error(
                        item.span(),
                        format!(
                            "entries of {key:?} in [{}] must be {expected}, found {}",
                            self.name,
                            a_type(item.get_ref())
                        ),
                    );
                }
            }
        }
        ok.then_some(out)
    }

    fn string_list<T>(
        &self,
        cx: &mut Cx<'_>,
        key: &str,
        mut f: impl FnMut(&str) -> Result<T, String>,
    ) -> Option<Vec<(T, Span)>> {
        self.list(cx, key, "strings", |v| v.as_str().map(&mut f))
    }

    /// A table of `name = value` (inline or as a `[section.key]` table).
    fn map(&self, cx: &mut Cx<'_>, key: &str) -> Option<Vec<(String, Span, &'a Value<'i>)>> {
        let v = self.get(key)?;
        match v.get_ref().as_table() {
            Some(t) => Some(t.iter().map(|(k, v)| (k.get_ref().to_string(), k.span(), v)).collect()),
            None => {
                cx.error(
                    v.span(),
                    format!(
                        "{key:?} in [{}] must be a table like {{ NAME = \"value\" }}, found {}",
                        self.name,
                        a_type(v.get_ref())
                    ),
                );
                None
            }
        }
    }
}

fn a_type(v: &DeValue<'_>) -> &'static str {
    match v {
        DeValue::String(_) => "a string",
        DeValue::Integer(_) => "an integer",
        DeValue::Float(_) => "a float",
        DeValue::Boolean(_) => "a boolean",
        DeValue::Datetime(_) => "a date-time",
        DeValue::Array(_) => "an array",
        DeValue::Table(_) => "a table",
    }
}

fn int_in(i: &toml::de::DeInteger<'_>, min: i64, max: i64) -> Result<i64, String> {
    match i64::from_str_radix(i.as_str(), i.radix()) {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        Ok(n) if max == i64::MAX => Err(format!("{n} is below the minimum of {min}")),
        Ok(n) => Err(format!("{n} is out of range ({min} to {max})")),
        Err(_) => Err(format!("{} is out of range ({min} to {max})", i.as_str())),
    }
}

/// Integers, floats and booleans where a string is meant (env values,
/// sysctls) are taken as their TOML text, as compose does.
fn scalar_text(v: &DeValue<'_>) -> Option<Result<String, String>> {
    let text = match v {
        DeValue::String(s) => s.to_string(),
        DeValue::Integer(i) => {
            i64::from_str_radix(i.as_str(), i.radix()).map_or_else(|_| i.as_str().to_string(), |n| n.to_string())
        }
        DeValue::Float(f) => f.as_str().to_string(),
        DeValue::Boolean(b) => b.to_string(),
        _ => return None,
    };
    Some(if text.contains('\0') { Err("contains a NUL byte".into()) } else { Ok(text) })
}

/// Sorts, removes duplicates, and keeps the first span of each name.
fn names_sorted(mut list: Vec<(String, Span)>) -> Vec<(String, Span)> {
    list.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.start.cmp(&b.1.start)));
    list.dedup_by(|a, b| a.0 == b.0);
    list
}

fn parse_unit_section(cx: &mut Cx<'_>, s: &Section<'_, '_>, spans: &mut UnitSpans) -> UnitSection {
    s.check_keys(cx);
    let description = s.string(cx, "description");
    let label = |x: &str| check_dns_label(x).map(|_| x.to_string()).map_err(|e| format!("unit name {e}"));
    spans.after = names_sorted(s.string_list(cx, "after", label).unwrap_or_default());
    spans.requires = names_sorted(s.string_list(cx, "requires", label).unwrap_or_default());
    let ready_timeout = s.duration(cx, "ready_timeout").unwrap_or(Duration::from_secs(300));
    UnitSection {
        description,
        after: spans.after.iter().map(|(n, _)| n.clone()).collect(),
        requires: spans.requires.iter().map(|(n, _)| n.clone()).collect(),
        ready_timeout,
    }
}

fn parse_container(
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
    let image = s.string_with(cx, "image", |v| ImageSource::parse(v, base));
    if s.get("image").is_none() {
        let at = s.table.and_then(|t| t.iter().next()).map_or(0..0, |(k, _)| k.span());
        cx.error(at, "missing key \"image\" in [container]: name the image to run, like image = \"nginx:1.27\"");
    }
    let pull = s
        .choice(
            cx,
            "pull",
            &[("missing", PullPolicy::Missing), ("always", PullPolicy::Always), ("never", PullPolicy::Never)],
        )
        .unwrap_or(PullPolicy::Missing);

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

    let env_file = s.string_with(cx, "env_file", |p| host_path(p, base));
    let env_file_vars = env_file.as_ref().map_or_else(BTreeMap::new, |path| {
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

    let workdir = s.string_with(cx, "workdir", clean_absolute);
    let user = s.string_with(cx, "user", |u| check_user(u).map(|_| u.to_string()));
    let hostname = s
        .string_with(cx, "hostname", |h| check_hostname(h).map(|_| h.to_string()))
        .unwrap_or_else(|| input.name.to_string());
    let read_only = s.bool(cx, "read_only").unwrap_or(false);

    let mut ports = s.string_list(cx, "ports", PortMapping::parse).unwrap_or_default();
    ports.sort_by(|a, b| a.0.cmp(&b.0));
    for (i, (p, span)) in ports.iter().enumerate() {
        if let Some((q, _)) = ports[..i].iter().find(|(q, _)| q.conflicts_with(p)) {
            cx.error(span.clone(), format!("port mapping {p} uses the same host port as {q}"));
        }
    }
    spans.ports = ports.iter().map(|(_, sp)| sp.clone()).collect();
    let ports: Vec<PortMapping> = ports.into_iter().map(|(p, _)| p).collect();

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

    let network_value = s.get("network");
    spans.network = network_value.map(|v| v.span());
    let network = s
        .string_with(cx, "network", |n| match n {
            "bridge" => Ok(Network::Bridge),
            "host" => Ok(Network::Host),
            "none" => Ok(Network::None),
            other => match other.strip_prefix("unit:") {
                Some(u) if u == input.name => Err("a unit cannot join its own network".into()),
                Some(u) => {
                    check_dns_label(u).map(|_| Network::Unit(u.to_string())).map_err(|e| format!("unit name {e}"))
                }
                None => Err(format!(
                    "{other:?} is not a network mode: use \"bridge\", \"host\", \"none\" or \"unit:<name>\"{}",
                    did_you_mean(other, ["bridge", "host", "none"])
                )),
            },
        })
        .unwrap_or(Network::Bridge);

    let aliases = names_sorted(
        s.string_list(cx, "aliases", |a| check_dns_label(a).map(|_| a.to_string()).map_err(|e| format!("alias {e}")))
            .unwrap_or_default(),
    );
    if network != Network::Bridge {
        let mode = serde_json::to_string(&network).unwrap_or_default();
        for key in ["ports", "aliases"] {
            let has = match key {
                "ports" => !ports.is_empty(),
                _ => !aliases.is_empty(),
            };
            if has && let Some(span) = s.key_span(key) {
                cx.error(span, format!("{key:?} needs network = \"bridge\"; it has no meaning with network = {mode}"));
            }
        }
    }

    let caps = |cx: &mut Cx<'_>, key: &str| {
        let mut list = s.string_list(cx, key, parse_capability).unwrap_or_default();
        list.sort_by(|a, b| a.0.cmp(&b.0));
        list.dedup_by(|a, b| a.0 == b.0);
        list
    };
    let cap_add = caps(cx, "cap_add");
    let cap_drop = caps(cx, "cap_drop");
    for (cap, span) in &cap_add {
        if cap != "ALL" && cap_drop.iter().any(|(d, _)| d == cap) {
            cx.error(span.clone(), format!("{cap} is both in cap_add and cap_drop"));
        }
    }
    let no_new_privileges = s.bool(cx, "no_new_privileges").unwrap_or(true);
    let seccomp = s
        .choice(cx, "seccomp", &[("default", Seccomp::Default), ("unconfined", Seccomp::Unconfined)])
        .unwrap_or(Seccomp::Default);
    let privileged = s.bool(cx, "privileged").unwrap_or(false);
    let mut devices: Vec<Device> =
        s.string_list(cx, "devices", Device::parse).unwrap_or_default().into_iter().map(|(d, _)| d).collect();
    devices.sort_by(|a, b| a.container.cmp(&b.container));

    let mut sysctls = BTreeMap::new();
    for (name, kspan, value) in s.map(cx, "sysctls").unwrap_or_default() {
        if let Err(e) = check_sysctl(&name, network == Network::Host) {
            cx.error(kspan, format!("invalid entry in \"sysctls\" of [container]: {e}"));
            continue;
        }
        match scalar_text(value.get_ref()) {
            Some(Ok(text)) => {
                sysctls.insert(name, text);
            }
            _ => cx.error(value.span(), format!("the value of sysctl {name} must be a string or a number")),
        }
    }

    let mut ulimits = BTreeMap::new();
    for (name, kspan, value) in s.map(cx, "ulimits").unwrap_or_default() {
        if let Err(e) = check_ulimit_name(&name) {
            cx.error(kspan, format!("invalid entry in \"ulimits\" of [container]: {e}"));
            continue;
        }
        match ulimit_value(value.get_ref()) {
            Ok(u) => {
                ulimits.insert(name, u);
            }
            Err(e) => cx.error(value.span(), format!("invalid ulimit {name}: {e}")),
        }
    }
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
        volumes: volumes.into_iter().map(|(v, _)| v).collect(),
        tmpfs: tmpfs.into_iter().map(|(t, _)| t).collect(),
        network,
        aliases: aliases.into_iter().map(|(a, _)| a).collect(),
        cap_add: cap_add.into_iter().map(|(c, _)| c).collect(),
        cap_drop: cap_drop.into_iter().map(|(c, _)| c).collect(),
        no_new_privileges,
        seccomp,
        privileged,
        devices,
        sysctls,
        ulimits,
        notify,
    })
}

/// A ulimit: `4096` (soft and hard), `"1024:4096"`, or `{ soft = 1024, hard = 4096 }`.
fn ulimit_value(v: &DeValue<'_>) -> Result<Ulimit, String> {
    let one = |v: &DeValue<'_>| -> Result<Option<u64>, String> {
        match v {
            DeValue::Integer(i) => match int_in(i, -1, i64::MAX)? {
                -1 => Ok(None),
                n => Ok(Some(n as u64)),
            },
            DeValue::String(s) => parse_limit_value(s),
            other => Err(format!("expected a number or \"unlimited\", found {}", a_type(other))),
        }
    };
    match v {
        DeValue::String(s) => Ulimit::parse(s),
        DeValue::Table(t) => {
            let mut soft = None;
            let mut hard = None;
            for (k, val) in t.iter() {
                match k.get_ref().as_ref() {
                    "soft" => soft = Some(one(val.get_ref())?),
                    "hard" => hard = Some(one(val.get_ref())?),
                    other => return Err(format!("unknown key {other:?} (use soft and hard)")),
                }
            }
            match (soft, hard) {
                (Some(s), Some(h)) => Ulimit::new(s, h),
                _ => Err("a table needs both soft and hard".into()),
            }
        }
        other => one(other).and_then(|n| Ulimit::new(n, n)),
    }
}

fn parse_resources(cx: &mut Cx<'_>, s: &Section<'_, '_>) -> Resources {
    s.check_keys(cx);
    let nano_cpus = s.typed(cx, "cpus", "a number of CPUs, like 0.5", |v| {
        let cpus = match v {
            DeValue::Float(f) => f.as_str().parse::<f64>().ok().filter(|x| x.is_finite()),
            DeValue::Integer(i) => i64::from_str_radix(i.as_str(), i.radix()).ok().map(|n| n as f64),
            _ => return None,
        };
        Some(match cpus {
            Some(c) if c > 0.0 && c <= 1e6 => {
                let nanos = (c * 1e9).round() as u64;
                if nanos < MIN_NANO_CPUS { Err(format!("{c} is below the minimum of 0.01 CPUs")) } else { Ok(nanos) }
            }
            _ => Err("must be a number of CPUs above zero, like 0.5 or 2".into()),
        })
    });
    let memory = s.size(cx, "memory").and_then(|m| {
        if m < MIN_MEMORY {
            cx.error(
                s.get("memory").map_or(0..0, |v| v.span()),
                "invalid \"memory\" in [resources]: the minimum is 6M",
            );
            None
        } else {
            Some(m)
        }
    });
    let pids = s.integer(cx, "pids", 1, i64::MAX).map(|n| n as u64);
    Resources { nano_cpus, memory, pids }
}

fn parse_restart(cx: &mut Cx<'_>, s: &Section<'_, '_>) -> Restart {
    s.check_keys(cx);
    let policy = s.string_with(cx, "policy", |p| match p {
        "no" => Ok(RestartPolicy::No),
        "on-failure" => Ok(RestartPolicy::OnFailure),
        "always" => Ok(RestartPolicy::Always),
        "unless-stopped" => {
            Err(r#""unless-stopped" is what "always" means here: an operator's stop is always respected"#.into())
        }
        other => Err(format!(
            r#"{other:?} is not one of "no", "on-failure", "always"{}"#,
            did_you_mean(other, ["no", "on-failure", "always"])
        )),
    });
    let delay = s.positive_duration(cx, "delay").unwrap_or(Duration::from_millis(100));
    let max_delay = s.positive_duration(cx, "max_delay").unwrap_or(Duration::from_secs(60));
    if delay > max_delay
        && let Some(v) = s.get("delay").or_else(|| s.get("max_delay"))
    {
        cx.error(v.span(), "[restart] delay is longer than max_delay");
    }
    let reset_after = s.duration(cx, "reset_after").unwrap_or(Duration::from_secs(10));
    let limit = s.integer(cx, "limit", 0, i64::from(u32::MAX)).map_or(0, |n| n as u32);
    Restart { policy: policy.unwrap_or(RestartPolicy::Always), delay, max_delay, reset_after, limit }
}

fn parse_stop(cx: &mut Cx<'_>, s: &Section<'_, '_>) -> Stop {
    s.check_keys(cx);
    let signal = s.typed(cx, "signal", r#"a signal name like "SIGTERM" or a number"#, |v| match v {
        DeValue::String(name) => Some(Signal::parse(name)),
        DeValue::Integer(i) => Some(
            i64::from_str_radix(i.as_str(), i.radix())
                .ok()
                .and_then(Signal::from_number)
                .ok_or_else(|| format!("{} is not a signal number (1-31, 34-64)", i.as_str())),
        ),
        _ => None,
    });
    let timeout = s.duration(cx, "timeout").unwrap_or(Duration::from_secs(10));
    Stop { signal, timeout }
}

fn parse_health(cx: &mut Cx<'_>, s: &Section<'_, '_>) -> Health {
    s.check_keys(cx);
    let exec = s.typed(cx, "exec", r#"an array of strings, or a string run by /bin/sh -c"#, |v| match v {
        DeValue::String(cmd) if cmd.trim().is_empty() => Some(Err("the command is empty".into())),
        DeValue::String(cmd) => Some(Ok(vec!["/bin/sh".to_string(), "-c".to_string(), cmd.to_string()])),
        DeValue::Array(items) => {
            let argv: Option<Vec<String>> = items.iter().map(|i| i.get_ref().as_str().map(str::to_string)).collect();
            Some(match argv {
                None => Err("arguments must be strings".into()),
                Some(a) if a.is_empty() => Err("the command is empty".into()),
                Some(a) => Ok(a),
            })
        }
        _ => None,
    });
    let http = s.string_with(cx, "http", check_http_url);
    let tcp = s.integer(cx, "tcp", 1, 65535).map(|p| p as u16);
    let probes: Vec<(Probe, &str)> = [
        exec.map(|e| (Probe::Exec(e), "exec")),
        http.map(|h| (Probe::Http(h), "http")),
        tcp.map(|t| (Probe::Tcp(t), "tcp")),
    ]
    .into_iter()
    .flatten()
    .collect();
    if probes.len() > 1
        && let Some(span) = s.key_span(probes[1].1)
    {
        cx.error(span, "[health] takes exactly one probe: exec, http or tcp");
    }
    let disable = s.bool(cx, "disable").unwrap_or(false);
    let probe = probes.into_iter().next().map(|(p, _)| p);
    let interval = s.positive_duration(cx, "interval");
    let timeout = s.positive_duration(cx, "timeout");
    let retries = s.integer(cx, "retries", 1, 1000).map(|n| n as u32);
    let start_period = s.duration(cx, "start_period");
    let on_unhealthy = s.choice(
        cx,
        "on_unhealthy",
        &[("restart", OnUnhealthy::Restart), ("stop", OnUnhealthy::Stop), ("none", OnUnhealthy::None)],
    );
    if disable
        && let Some(span) =
            s.table.and_then(|t| t.iter().find(|(k, _)| k.get_ref() != "disable")).map(|(k, _)| k.span())
    {
        cx.error(span, "[health] disable = true turns health checks off: remove the other keys, or the disable key");
    }
    let own = probe.is_some();
    let default = |d: Option<Duration>, secs: u64| if own { Some(d.unwrap_or(Duration::from_secs(secs))) } else { d };
    Health {
        disable,
        interval: default(interval, 30),
        timeout: default(timeout, 30),
        retries: if own { Some(retries.unwrap_or(3)) } else { retries },
        start_period: default(start_period, 0),
        on_unhealthy: on_unhealthy.unwrap_or(if own { OnUnhealthy::Restart } else { OnUnhealthy::None }),
        probe,
    }
}

/// `http://host[:port][/path]`, normalized (lowercase host, `/` path).
fn check_http_url(url: &str) -> Result<String, String> {
    let lower = url.to_ascii_lowercase();
    let rest = if lower.starts_with("https://") {
        return Err("https is not supported by the http probe; use plain http (the probe never leaves the container's network) or tcp".into());
    } else if lower.starts_with("http://") {
        &url[7..]
    } else {
        return Err(format!("{url:?} is not an http URL, like \"http://localhost:8080/healthz\""));
    };
    let (authority, path) = rest.find(['/', '?']).map_or((rest, "/"), |i| (&rest[..i], &rest[i..]));
    let (host, port) = if let Some(b) = authority.strip_prefix('[') {
        let (ip, tail) = b.split_once(']').ok_or_else(|| format!("{url:?}: unclosed '['"))?;
        (format!("[{ip}]"), tail.strip_prefix(':'))
    } else {
        match authority.split_once(':') {
            Some((h, p)) => (h.to_string(), Some(p)),
            None => (authority.to_string(), None),
        }
    };
    if host.is_empty() || host.contains('@') || (!host.starts_with('[') && check_hostname(&host).is_err()) {
        return Err(format!("{url:?}: {host:?} is not a host name"));
    }
    if let Some(p) = port
        && !p.parse::<u16>().is_ok_and(|n| n > 0)
    {
        return Err(format!("{url:?}: {p:?} is not a port number"));
    }
    if path.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("{url:?}: the path contains whitespace"));
    }
    let path = if path.starts_with('?') { format!("/{path}") } else { path.to_string() };
    let port = port.map(|p| format!(":{p}")).unwrap_or_default();
    Ok(format!("http://{}{port}{path}", host.to_ascii_lowercase()))
}

fn parse_logs(cx: &mut Cx<'_>, s: &Section<'_, '_>) -> Logs {
    s.check_keys(cx);
    let max_size = s.size(cx, "max_size").unwrap_or(10 << 20);
    if max_size < 4096
        && let Some(v) = s.get("max_size")
    {
        cx.error(v.span(), "invalid \"max_size\" in [logs]: the minimum is 4k");
    }
    let max_files = s.integer(cx, "max_files", 1, 1000).map_or(3, |n| n as u32);
    Logs { max_size, max_files }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_urls() {
        assert_eq!(check_http_url("http://localhost:8080/healthz").unwrap(), "http://localhost:8080/healthz");
        assert_eq!(check_http_url("HTTP://LocalHost").unwrap(), "http://localhost/");
        assert_eq!(check_http_url("http://127.0.0.1?x=1").unwrap(), "http://127.0.0.1/?x=1");
        assert_eq!(check_http_url("http://[::1]:80/").unwrap(), "http://[::1]:80/");
        for bad in ["https://x/", "ftp://x", "http://", "http://a:0/", "http://a b/", "http://u@h/", "localhost:80"] {
            assert!(check_http_url(bad).is_err(), "{bad:?} accepted");
        }
    }
}
