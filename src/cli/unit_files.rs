//! `supervisorctl apply`, `remove` and `cat`: unit files in a running
//! supervisord's unit directory, over the control path (its socket, or an
//! appliance's). Each file is checked here first, alone, so that its
//! errors name the file the operator has; the daemon checks it again
//! against its whole directory, writes it only if it is good, and
//! reloads.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use serde_json::Value;

use super::client::{Client, encode};
use super::control::{fail, print_json, print_plan};
use crate::units::Diagnostic;
use crate::units::diag::Source;
use crate::units::dir::{MAX_FILE_SIZE, list_unit_files, unit_name};
use crate::units::parse::{ParseInput, parse_unit};

pub fn apply(client: &Client, paths: &[PathBuf], dry_run: bool, json: bool) -> ExitCode {
    let mut files = Vec::new();
    for path in paths {
        if path.is_dir() {
            match list_unit_files(path) {
                Ok(found) if found.is_empty() => return fail(format!("{}: no unit files (*.toml)", path.display())),
                Ok(found) => files.extend(found),
                Err(e) => return fail(format!("{}: {e}", path.display())),
            }
        } else {
            files.push(path.clone());
        }
    }
    let mut units: BTreeMap<String, String> = BTreeMap::new();
    let mut errors: Vec<Diagnostic> = Vec::new();
    for file in &files {
        match check(file) {
            Ok((name, _)) if units.contains_key(&name) => {
                errors.push(Diagnostic::whole_file(file, format!("unit {name:?} is given twice")));
            }
            Ok((name, text)) => {
                units.insert(name, text);
            }
            Err(found) => errors.extend(found),
        }
    }
    if !errors.is_empty() {
        super::validate::print_diagnostics(&errors.iter().collect::<Vec<_>>());
        return fail("nothing applied");
    }
    let body = serde_json::json!({ "units": units }).to_string();
    let target = if dry_run { "/v1/apply?dry_run=1" } else { "/v1/apply" };
    answer(client.request_with("POST", target, body.as_bytes()), json, |step| {
        step["action"] != "keep" || step["unit"].as_str().is_some_and(|u| units.contains_key(u))
    })
}

pub fn remove(client: &Client, names: &[String], dry_run: bool, json: bool) -> ExitCode {
    let list: Vec<String> = names.iter().map(|n| encode(n)).collect();
    let target = format!("/v1/remove?units={}{}", list.join(","), if dry_run { "&dry_run=1" } else { "" });
    answer(client.request("POST", &target), json, |step| step["action"] != "keep")
}

pub fn cat(client: &Client, name: &str) -> ExitCode {
    match client.request("GET", &format!("/v1/units/{}/file", encode(name))) {
        Ok(r) if r.status == 200 => {
            super::out(&r.body);
            ExitCode::SUCCESS
        }
        Ok(r) => fail(r.error()),
        Err(e) => fail(e),
    }
}

/// Prints an edit's plan (the steps `shown` keeps), or the daemon's
/// reasons for refusing it.
fn answer(response: Result<super::client::Response, String>, json: bool, shown: impl Fn(&Value) -> bool) -> ExitCode {
    let r = match response {
        Ok(r) => r,
        Err(e) => return fail(e),
    };
    let v = r.json().unwrap_or(Value::Null);
    if r.status == 422 {
        for e in v["errors"].as_array().into_iter().flatten().filter_map(Value::as_str) {
            errln!("{e}");
        }
        return fail("refused by supervisord: nothing applied");
    }
    if r.status != 200 {
        return fail(r.error());
    }
    if json {
        print_json(&v);
    } else {
        print_plan(&v, shown);
    }
    ExitCode::SUCCESS
}

/// One file checked alone: its unit name and text, or its errors. What it
/// refers to on the daemon's side (an `env_file` path) is read here only
/// if it exists here too; the daemon checks it.
fn check(file: &Path) -> Result<(String, String), Vec<Diagnostic>> {
    let name = unit_name(file).map_err(|e| vec![Diagnostic::whole_file(file, e)])?;
    let text = read(file).map_err(|e| vec![Diagnostic::whole_file(file, e)])?;
    let base = file.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let input = ParseInput {
        name: &name,
        source: Source { path: file, text: &text },
        base_dir: base,
        read_file: &|p| if p.exists() { read(p) } else { Ok(String::new()) },
    };
    parse_unit(&input)?;
    Ok((name, text))
}

/// A file of the operator's: a regular file of at most [`MAX_FILE_SIZE`],
/// UTF-8. (Who may write it matters on the daemon's side, where it is
/// written as root's.)
fn read(path: &Path) -> Result<String, String> {
    let meta = std::fs::metadata(path).map_err(|e| format!("cannot read: {e}"))?;
    if !meta.is_file() {
        return Err("cannot read: not a regular file".into());
    }
    if meta.len() > MAX_FILE_SIZE {
        return Err(format!("file is too large ({} bytes; the limit is {MAX_FILE_SIZE})", meta.len()));
    }
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read: {e}"))?;
    String::from_utf8(bytes).map_err(|_| "the file is not valid UTF-8 (TOML files must be UTF-8)".into())
}
