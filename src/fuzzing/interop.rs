//! Compose files: what `supervisorctl import compose` reads from whoever
//! wrote the file (often a download).

use std::collections::BTreeMap;
use std::path::Path;

use crate::interop::compose::{Input, Kind, import, interpolate, parse_dotenv};

/// Arbitrary bytes as a Compose file (and, split at the first NUL, a
/// `.env` file and a value to interpolate): no panic, no hang; a failed
/// import writes no unit and says why; every unit it returns loads (it
/// was checked by the unit parser) and is named as a DNS label.
pub fn compose_file(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let (compose, dotenv) = text.split_once('\0').unwrap_or((text, ""));
    let env: BTreeMap<String, String> = parse_dotenv(dotenv).unwrap_or_default();
    let _ = interpolate(dotenv, &env);
    let out = import(&Input {
        file: Path::new("compose.yaml"),
        text: compose,
        base_dir: Path::new("/srv/app"),
        env: &env,
        project: None,
        out_dir: Path::new("/etc/units.d"),
        read_file: &|_| Ok("A=1\n".to_string()),
    });
    if out.failed() {
        assert!(out.units.is_empty(), "a failed import returned units");
        assert!(out.notes.iter().any(|n| n.kind == Kind::Error), "a failed import must say why");
    }
    for u in &out.units {
        assert!(crate::names::check_dns_label(&u.name).is_ok(), "unit name {:?}", u.name);
    }
    for n in &out.notes {
        let _ = n.to_string();
    }
}
