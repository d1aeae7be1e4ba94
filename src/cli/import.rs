//! `supervisorctl import compose FILE [--out DIR] [--project NAME] [--force]`:
//! reads the Compose file, the `.env` beside it and the environment, has
//! `interop::compose` translate it, prints every note on stderr and
//! writes the unit files, all or none.
//!
//! Exit status: 0 when everything was carried, 2 when something was not
//! (each such key named on stderr with its line), 1 on an error (nothing
//! written).

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::interop::compose::{self, Input, Kind, UnitText};
use crate::units::dir::{read_text, unit_file};

const CARRIED: u8 = 0;
const ERROR: u8 = 1;
const DROPPED: u8 = 2;

/// Compose files larger than this are refused unread.
const MAX_COMPOSE_SIZE: u64 = 4 << 20;

pub fn compose(file: &Path, out: Option<&Path>, project: Option<&str>, force: bool) -> ExitCode {
    let fail = |message: String| {
        errln!("supervisorctl: {message}");
        ExitCode::from(ERROR)
    };
    let text = match read_compose(file) {
        Ok(t) => t,
        Err(e) => return fail(format!("{}: {e}", file.display())),
    };
    let base_dir = match std::fs::canonicalize(file) {
        Ok(p) => p.parent().map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("/")),
        Err(e) => return fail(format!("{}: {e}", file.display())),
    };
    // Compose's rule: the environment wins over the .env file.
    let mut env = BTreeMap::new();
    let dotenv = base_dir.join(".env");
    match std::fs::read_to_string(&dotenv) {
        Ok(t) => match compose::parse_dotenv(&t) {
            Ok(vars) => env.extend(vars),
            Err((line, e)) => return fail(format!("{}:{line}: {e}", dotenv.display())),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return fail(format!("{}: {e}", dotenv.display())),
    }
    env.extend(std::env::vars());
    let out_dir = out.map_or_else(|| PathBuf::from("."), Path::to_path_buf);
    let out_abs = std::path::absolute(&out_dir).unwrap_or_else(|_| out_dir.clone());
    let read_file = |p: &Path| read_text(p).map(|t| t.to_string()).map_err(|d| d.to_string());
    let imported = compose::import(&Input {
        file,
        text: &text,
        base_dir: &base_dir,
        env: &env,
        project,
        out_dir: &out_abs,
        read_file: &read_file,
    });
    for note in &imported.notes {
        errln!("{note}");
    }
    if imported.failed() {
        let errors = imported.notes.iter().filter(|n| n.kind == Kind::Error).count();
        return fail(format!(
            "{}: {errors} error{}: nothing written",
            file.display(),
            if errors == 1 { "" } else { "s" }
        ));
    }
    if let Err(e) = write_all(&out_dir, &imported.units, force) {
        return fail(e);
    }
    for u in &imported.units {
        outln!("{}", unit_file(&out_dir, &u.name).display());
    }
    if imported.dropped() {
        let n = imported.notes.iter().filter(|n| n.kind == Kind::Dropped).count();
        errln!("supervisorctl: {n} key{} not carried (listed above)", if n == 1 { "" } else { "s" });
        ExitCode::from(DROPPED)
    } else {
        ExitCode::from(CARRIED)
    }
}

fn read_compose(file: &Path) -> Result<String, String> {
    let meta = std::fs::metadata(file).map_err(|e| format!("cannot read: {e}"))?;
    if !meta.is_file() {
        return Err("cannot read: not a regular file".into());
    }
    if meta.len() > MAX_COMPOSE_SIZE {
        return Err(format!("too large ({} bytes; the limit is {MAX_COMPOSE_SIZE})", meta.len()));
    }
    let bytes = std::fs::read(file).map_err(|e| format!("cannot read: {e}"))?;
    String::from_utf8(bytes).map_err(|_| "not UTF-8 text".into())
}

/// Writes every unit or none: refused when a file exists (unless
/// `force`), each written to a hidden temporary name (which the daemon's
/// watcher ignores), then all renamed into place.
fn write_all(dir: &Path, units: &[UnitText], force: bool) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    if !force {
        let existing: Vec<String> = units
            .iter()
            .map(|u| unit_file(dir, &u.name))
            .filter(|p| p.exists())
            .map(|p| p.display().to_string())
            .collect();
        if !existing.is_empty() {
            return Err(format!(
                "{} exist{}: nothing written (--force replaces them)",
                existing.join(", "),
                if existing.len() == 1 { "s" } else { "" }
            ));
        }
    }
    let mut temps: Vec<(PathBuf, PathBuf)> = Vec::new();
    let cleanup = |temps: &[(PathBuf, PathBuf)]| {
        for (t, _) in temps {
            let _ = std::fs::remove_file(t);
        }
    };
    for u in units {
        let temp = dir.join(format!(".{}.toml.import-{}", u.name, std::process::id()));
        // 0644 whatever the umask: a unit file others can write is refused.
        let written =
            std::fs::OpenOptions::new().write(true).create_new(true).mode(0o644).open(&temp).and_then(|mut f| {
                use std::os::unix::fs::PermissionsExt;
                f.set_permissions(std::fs::Permissions::from_mode(0o644))?;
                f.write_all(u.text.as_bytes())?;
                f.sync_all()
            });
        if let Err(e) = written {
            let _ = std::fs::remove_file(&temp);
            cleanup(&temps);
            return Err(format!("{}: {e}: nothing written", temp.display()));
        }
        temps.push((temp, unit_file(dir, &u.name)));
    }
    for (i, (temp, path)) in temps.iter().enumerate() {
        if let Err(e) = std::fs::rename(temp, path) {
            cleanup(&temps[i..]);
            let done: Vec<String> = temps[..i].iter().map(|(_, p)| p.display().to_string()).collect();
            return Err(format!(
                "{}: {e} (written before it: {})",
                path.display(),
                if done.is_empty() { "none".into() } else { done.join(", ") }
            ));
        }
    }
    Ok(())
}
