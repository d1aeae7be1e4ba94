//! Arbitrary bytes as a unit file: parsing must never panic or hang, every
//! diagnostic must render, and every accepted unit must hash.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use supervisor::units::Hashes;
use supervisor::units::diag::Source;
use supervisor::units::parse::{ParseInput, parse_unit};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let input = ParseInput {
        name: "fuzz",
        source: Source { path: Path::new("fuzz.toml"), text },
        base_dir: Path::new("/etc/units.d"),
        read_file: &|_| Ok("A=1\n".to_string()),
    };
    match parse_unit(&input) {
        Ok(parsed) => {
            let _ = Hashes::of(&parsed.unit);
            let _ = serde_json::to_string(&parsed.unit);
        }
        Err(errors) => {
            assert!(!errors.is_empty());
            for e in errors {
                let _ = e.render(true);
            }
        }
    }
});
