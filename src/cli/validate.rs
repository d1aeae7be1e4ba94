//! `supervisorctl validate [--json] [PATH...]`.
//!
//! A directory is checked as one set of units (the cross-unit checks run on
//! it). A file is checked in the context of its directory, since it may
//! name its siblings in `requires`, but only its own errors are reported.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use serde::Serialize;

use crate::units::dir::{list_unit_files, load_files};
use crate::units::{Diagnostic, LoadedUnit};

#[derive(Serialize)]
struct Report<'a> {
    units: Vec<&'a LoadedUnit>,
    errors: Vec<&'a Diagnostic>,
}

/// Exit statuses of `validate`.
const VALID: u8 = 0;
const INVALID: u8 = 1;
const UNREADABLE: u8 = 2;

pub fn run(paths: &[PathBuf], json: bool) -> ExitCode {
    let mut status = VALID;
    let mut sets = Vec::new();
    for path in paths {
        match check_path(path) {
            Ok(set) => sets.push(set),
            Err(message) => {
                errln!("supervisorctl: {}: {message}", path.display());
                status = UNREADABLE;
            }
        }
    }
    let units: Vec<&LoadedUnit> = sets.iter().flat_map(|(u, _)| u).collect();
    let errors: Vec<&Diagnostic> = sets.iter().flat_map(|(_, e)| e).collect();

    print_diagnostics(&errors);
    let mut stderr = std::io::stderr().lock();
    let invalid_files = {
        let mut files: Vec<&Path> = errors.iter().map(|e| e.unit_file.as_deref().unwrap_or(&e.file)).collect();
        files.sort();
        files.dedup();
        files.len()
    };
    if json {
        let report = Report { units: units.clone(), errors: errors.clone() };
        match serde_json::to_string_pretty(&report) {
            Ok(s) => outln!("{s}"),
            Err(e) => errln!("supervisorctl: cannot write JSON: {e}"),
        }
    } else if !units.is_empty() || (invalid_files == 0 && status == VALID) {
        let names: Vec<&str> = units.iter().map(|u| u.unit.name.as_str()).collect();
        outln!(
            "{} valid unit{}{}",
            names.len(),
            if names.len() == 1 { "" } else { "s" },
            if names.is_empty() { String::new() } else { format!(": {}", names.join(", ")) }
        );
    }
    if invalid_files > 0 {
        let _ = writeln!(stderr, "{invalid_files} invalid file{}", if invalid_files == 1 { "" } else { "s" });
        status = status.max(INVALID);
    }
    ExitCode::from(status)
}

/// Writes each diagnostic to stderr: with its source line and a caret for
/// a person at a terminal, one line each for logs and scripts.
pub(super) fn print_diagnostics(errors: &[&Diagnostic]) {
    let color = super::stderr_color();
    let mut stderr = std::io::stderr().lock();
    for e in errors {
        let text =
            if std::io::IsTerminal::is_terminal(&std::io::stderr()) { e.render(color) } else { format!("{e}\n") };
        let _ = stderr.write_all(text.as_bytes());
    }
}

/// Loads what `path` names: the units and errors to report.
fn check_path(path: &Path) -> Result<(Vec<LoadedUnit>, Vec<Diagnostic>), String> {
    let meta = std::fs::metadata(path).map_err(|e| format!("cannot read: {e}"))?;
    if meta.is_dir() {
        let files = list_unit_files(path).map_err(|e| format!("cannot read the directory: {e}"))?;
        if files.is_empty() {
            errln!("supervisorctl: {}: no unit files (*.toml)", path.display());
        }
        let set = load_files(&files);
        return Ok((set.units, set.errors));
    }
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let mut files = list_unit_files(dir).unwrap_or_default();
    let canonical = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
    let me = canonical(path);
    files.retain(|f| canonical(f) != me);
    files.push(path.to_path_buf());
    let set = load_files(&files);
    let units = set.units.into_iter().filter(|u| u.file == path).collect();
    let errors = set.errors.into_iter().filter(|e| e.unit_file.as_deref() == Some(path)).collect();
    Ok((units, errors))
}
