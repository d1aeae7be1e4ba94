//! The module rules of `docs/design.md` (who may use whom), checked on the
//! source text so that a change breaking one fails `cargo test`.
//!
//! Every `.rs` file of the library is scanned, comments and string literals
//! blanked out, for the paths that reach another top-level module:
//! `crate::x` (in a `use`, a `use crate::{x, y}` group or an expression) and
//! a `super::super::...` chain that climbs out of the file's top-level module.

use std::path::{Path, PathBuf};

/// The leaf modules: the crate's shared vocabulary, importing nothing of it.
const LEAVES: &[&str] = &["names"];

enum Rule {
    /// May import only these top-level modules (besides itself).
    Only(&'static [&'static str]),
    /// Must not import these.
    Not(&'static [&'static str]),
}

/// Each top-level module's rule, and why (shown when it is broken).
const RULES: &[(&str, Rule, &str)] = &[
    ("units", Rule::Only(LEAVES), "units is pure: it may use only the leaf modules"),
    ("names", Rule::Only(&[]), "names is the leaf units and runtime share: it imports nothing of the crate"),
    (
        "runtime",
        Rule::Not(&["units", "supervisor", "health", "cli"]),
        "runtime is mechanism: it knows no unit files, policy, health checks or CLI",
    ),
    (
        "health",
        Rule::Not(&["supervisor", "units", "cli"]),
        "health runs probes: which ones, and what follows, is the supervisor's policy",
    ),
    ("supervisor", Rule::Not(&["cli"]), "the CLI calls the supervisor, never the other way round"),
    (
        "interop",
        Rule::Only(&["units", "names"]),
        "interop translates text: it reads unit files, never the runtime, the daemon or the CLI",
    ),
];

/// One path to another module: where it is and which top-level module it names.
#[derive(Debug, PartialEq)]
struct Import {
    line: usize,
    target: String,
    /// The source line, for the message.
    text: String,
}

/// A library file: its path and the module path it defines
/// (`src/units/parse/mod.rs` is `["units", "parse"]`).
struct SourceFile {
    path: PathBuf,
    module: Vec<String>,
}

fn library_files() -> Vec<SourceFile> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    let mut dirs = vec![src.clone()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("read {}: {e}", dir.display())) {
            let path = entry.unwrap().path();
            let relative = path.strip_prefix(&src).unwrap().to_path_buf();
            if path.is_dir() {
                // The binaries are crates of their own: `crate::` there is not the library.
                if relative != Path::new("bin") {
                    dirs.push(path);
                }
            } else if path.extension().is_some_and(|e| e == "rs") {
                let mut module: Vec<String> =
                    relative.with_extension("").iter().map(|c| c.to_string_lossy().into()).collect();
                if module.last().is_some_and(|m| m == "mod" || m == "lib") {
                    module.pop();
                }
                files.push(SourceFile { path, module });
            }
        }
    }
    files.sort_by(|a, b| a.path.cmp(&b.path));
    files
}

/// The text with comments and the contents of string and char literals
/// replaced by spaces (newlines kept, so offsets keep their line).
fn code_only(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let blank = |out: &mut String, c: char| out.push(if c == '\n' { '\n' } else { ' ' });
    let ident = |c: char| c.is_alphanumeric() || c == '_';
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        let start = i;
        if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            while i < chars.len() && !(chars[i] == '*' && chars.get(i + 1) == Some(&'/')) {
                i += 1;
            }
            i = (i + 2).min(chars.len());
        } else if c == 'r' && (next == Some('"') || next == Some('#')) && (i == 0 || !ident(chars[i - 1])) {
            // r"..." or r#"..."#: ends at a quote followed by as many '#'.
            let hashes = chars[i + 1..].iter().take_while(|&&h| h == '#').count();
            if chars.get(i + 1 + hashes) != Some(&'"') {
                out.push(c);
                i += 1;
                continue;
            }
            i += 2 + hashes;
            while i < chars.len() && !(chars[i] == '"' && chars[i + 1..].iter().take(hashes).all(|&h| h == '#')) {
                i += 1;
            }
            i = (i + 1 + hashes).min(chars.len());
        } else if c == '"' {
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                i += if chars[i] == '\\' { 2 } else { 1 };
            }
            i = (i + 1).min(chars.len());
        } else if c == '\'' && (next == Some('\\') || chars.get(i + 2) == Some(&'\'')) {
            // A char literal ('"', '\''), not a lifetime.
            i += 2;
            while i < chars.len() && chars[i] != '\'' {
                i += 1;
            }
            i = (i + 1).min(chars.len());
        } else {
            out.push(c);
            i += 1;
            continue;
        }
        for &skipped in &chars[start..i] {
            blank(&mut out, skipped);
        }
    }
    out
}

/// The top-level modules a file at `depth` (its module path's length)
/// reaches: through `crate::`, or through `super::` chains that climb to the
/// crate root. (A `super` inside an inline module such as `mod tests` is
/// counted as if at file level: stricter, never laxer.)
fn imports(text: &str, depth: usize) -> Vec<Import> {
    let code = code_only(text);
    let line_of = |at: usize| code[..at].matches('\n').count() + 1;
    let starts_path = |at: usize| !code[..at].ends_with(|c: char| c.is_alphanumeric() || c == '_' || c == ':');
    let mut found = Vec::new();
    for (at, _) in code.match_indices("crate::") {
        if starts_path(at) {
            found.extend(named(&code, at + "crate::".len()));
        }
    }
    for (at, _) in code.match_indices("super::") {
        if !starts_path(at) {
            continue;
        }
        let climbs = code[at..].split("super::").skip(1).take_while(|rest| rest.is_empty()).count() + 1;
        if climbs >= depth {
            found.extend(named(&code, at + climbs * "super::".len()));
        }
    }
    let lines: Vec<&str> = text.lines().collect();
    let import = |(at, target)| {
        let line = line_of(at);
        Import { line, target, text: lines.get(line - 1).map_or("", |l| l.trim()).to_string() }
    };
    found.into_iter().map(import).collect()
}

/// The module(s) named at `at`: `x` of `x::...`, or each item's first name
/// in a `{x, y::z}` group; with their offsets.
fn named(code: &str, at: usize) -> Vec<(usize, String)> {
    let name_at = |at: usize| {
        let rest = &code[at..];
        let skipped = rest.len() - rest.trim_start().len();
        let name: String = rest.trim_start().chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
        (at + skipped, name)
    };
    if !code[at..].starts_with('{') {
        return vec![name_at(at)];
    }
    let mut items = Vec::new();
    let (mut nesting, mut item_start) = (0, at + 1);
    for (i, c) in code[at..].char_indices() {
        match c {
            '{' => nesting += 1,
            '}' | ',' if nesting == 1 => {
                items.push(name_at(item_start));
                item_start = at + i + 1;
                if c == '}' {
                    break;
                }
            }
            '}' => nesting -= 1,
            _ => {}
        }
    }
    items.into_iter().filter(|(_, name)| !name.is_empty()).collect()
}

/// What a module may not import, given its rule.
fn forbidden(module: &str, target: &str) -> Option<&'static str> {
    let (_, rule, why) = RULES.iter().find(|(m, _, _)| *m == module)?;
    let broken = match rule {
        Rule::Only(allowed) => !allowed.contains(&target),
        Rule::Not(denied) => denied.contains(&target),
    };
    broken.then_some(*why)
}

/// Every (file, import) of the library, with the importing top-level module.
fn all_imports() -> Vec<(SourceFile, Vec<Import>)> {
    library_files()
        .into_iter()
        .map(|f| {
            let text = std::fs::read_to_string(&f.path).unwrap_or_else(|e| panic!("read {}: {e}", f.path.display()));
            let found = imports(&text, f.module.len());
            (f, found)
        })
        .collect()
}

#[test]
fn every_module_imports_only_what_its_rule_allows() {
    let scanned = all_imports();
    assert!(scanned.len() >= 80, "only {} files found under src/: is the walk broken?", scanned.len());
    let mut broken = Vec::new();
    for (file, found) in &scanned {
        let Some(module) = file.module.first() else { continue };
        for import in found.iter().filter(|i| &i.target != module) {
            if let Some(why) = forbidden(module, &import.target) {
                let path = file.path.strip_prefix(env!("CARGO_MANIFEST_DIR")).unwrap_or(&file.path).display();
                broken.push(format!(
                    "{path}:{}: `{}`: {module} must not import {} ({why})",
                    import.line, import.text, import.target
                ));
            }
        }
    }
    assert!(broken.is_empty(), "module rules broken (see docs/design.md):\n{}", broken.join("\n"));
}

/// The fuzz entry points may call anything (that is their job), and
/// nothing may call them: they are test code compiled into the library
/// only so that the fuzz crate and `tests/fuzz_corpus.rs` share them.
#[test]
fn nothing_imports_the_fuzz_entry_points() {
    let mut broken = Vec::new();
    for (file, found) in &all_imports() {
        if file.module.first().is_some_and(|m| m == "fuzzing") {
            continue;
        }
        for import in found.iter().filter(|i| i.target == "fuzzing") {
            let path = file.path.strip_prefix(env!("CARGO_MANIFEST_DIR")).unwrap_or(&file.path).display();
            broken.push(format!("{path}:{}: `{}`", import.line, import.text));
        }
    }
    assert!(broken.is_empty(), "the fuzz entry points are for fuzzing only:\n{}", broken.join("\n"));
}

/// The scan must see the edges the design has; otherwise the rule test
/// would pass on a scanner that finds nothing.
#[test]
fn the_scan_finds_the_imports_the_design_has() {
    let scanned = all_imports();
    let edge = |from: &str, to: &str| {
        scanned
            .iter()
            .any(|(f, found)| f.module.first().is_some_and(|m| m == from) && found.iter().any(|i| i.target == to))
    };
    for (from, to) in [
        ("supervisor", "runtime"),
        ("supervisor", "units"),
        ("supervisor", "health"),
        ("units", "names"),
        ("runtime", "names"),
        ("health", "runtime"),
        ("cli", "supervisor"),
    ] {
        assert!(edge(from, to), "no import {from} -> {to} found: the scanner misses imports");
    }
    let count: usize = scanned.iter().map(|(_, found)| found.len()).sum();
    assert!(count >= 100, "only {count} crate paths found");
}

#[test]
fn every_form_of_path_is_seen_and_comments_and_strings_are_not() {
    let text = r#"
use crate::runtime::image;
use crate::{health, units::model::{Unit, Probe}};
use super::super::supervisor::x;
// use crate::cli;
/* crate::cli */
fn f() { let _ = crate::timefmt::now(); let s = "crate::cli"; let c = '"'; let t = r"crate::cli"; }
fn g<'a>() { super::sibling(); }
"#;
    let at = |found: Vec<Import>| found.into_iter().map(|i| (i.line, i.target)).collect::<Vec<_>>();
    let s = |x: &str| x.to_string();
    assert_eq!(
        at(imports(text, 2)),
        [(2, s("runtime")), (3, s("health")), (3, s("units")), (7, s("timefmt")), (4, s("supervisor"))]
    );
    // One level deeper, super::super:: stays inside the top-level module.
    assert_eq!(at(imports(text, 3)).len(), 4);
    assert_eq!(forbidden("runtime", "units"), Some(RULES[2].2));
    assert_eq!(forbidden("units", "names"), None);
    assert!(forbidden("units", "timefmt").is_some());
}

/// What the decision core must not touch: it is pure (docs/architecture.md).
/// I/O, the clock, threads, tasks and signals belong to the engine loop.
const IMPURE: &[&str] = &[
    "tokio",
    "std::fs",
    "fs::",
    "std::process",
    "::now(",
    "std::thread",
    "nix::",
    "libc::kill",
    "std::net::Tcp",
    "std::io",
];

#[test]
fn the_decision_core_does_no_io_and_reads_no_clock() {
    let core: Vec<SourceFile> = library_files()
        .into_iter()
        .filter(|f| f.module.starts_with(&["supervisor".to_string(), "policy".to_string()]))
        .filter(|f| f.module.get(2).is_none_or(|m| m != "tests"))
        .collect();
    assert!(core.len() >= 6, "only {} files of supervisor/policy found", core.len());
    let mut found = Vec::new();
    for f in &core {
        let text = std::fs::read_to_string(&f.path).unwrap();
        // Inline test modules (at the end of a file) may make files.
        let code = code_only(&text);
        let code = code.split("#[cfg(test)]").next().unwrap_or_default();
        for (n, line) in code.lines().enumerate() {
            for word in IMPURE.iter().filter(|w| line.contains(*w)) {
                let path = f.path.strip_prefix(env!("CARGO_MANIFEST_DIR")).unwrap_or(&f.path).display();
                found.push(format!("{path}:{}: `{}` uses {word}", n + 1, line.trim()));
            }
        }
    }
    assert!(found.is_empty(), "the decision core must stay pure:\n{}", found.join("\n"));
}
