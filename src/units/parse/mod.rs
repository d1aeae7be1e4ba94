//! From the text of one unit file to a normalized [`Unit`], in two stages:
//! the TOML parser gives a table whose every key and value carries its byte
//! span, then this module walks it section by section, checking each value
//! with the grammars of `values/` and collecting every error with its
//! location (not only the first), before it builds the `Unit`.
//!
//! `keys` is the typed access to a section's keys that every section uses;
//! the other files are the sections: `container` (with `security`),
//! `health`, `update`, and the small ones in `sections`.

mod container;
mod health;
mod keys;
mod sections;
mod security;
mod update;

use std::ops::Range;
use std::path::Path;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use self::container::parse_container;
use self::health::parse_health;
use self::keys::{Section, a_type};
use self::sections::{parse_logs, parse_resources, parse_restart, parse_stop, parse_unit_section};
use self::update::parse_update;
use super::diag::{Diagnostic, Source};
use super::model::Unit;
use super::schema;
use super::suggest::did_you_mean;

type Span = Range<usize>;
type Value<'i> = Spanned<DeValue<'i>>;

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
    let update = parse_update(&mut cx, &sec("update"), container.as_ref());

    if !cx.diags.is_empty() {
        cx.diags.sort_by_key(|d| (d.line, d.column));
        return Err(cx.diags);
    }
    // The container is Some whenever no error was reported.
    match container {
        Some(container) => Ok(Parsed {
            unit: Unit {
                name: input.name.to_string(),
                unit,
                container,
                resources,
                restart,
                stop,
                health,
                logs,
                update,
            },
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
