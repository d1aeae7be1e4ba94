//! Replays every committed fuzz input (`fuzz/corpus/<target>/` and
//! `fuzz/regressions/<target>/`) through the entry points the cargo-fuzz
//! targets call, on stable and without libFuzzer, so that CI sees a
//! regression of any parser of untrusted input. No root needed: as
//! another user, a layer's device nodes and owners fail as errors.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

use supervisor::fuzzing::TARGETS;

fn inputs(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut files: Vec<PathBuf> =
        entries.map(|e| e.unwrap_or_else(|e| panic!("read {}: {e}", dir.display())).path()).collect();
    files.retain(|p| p.is_file());
    files.sort();
    files
}

#[test]
fn every_corpus_and_regression_input_passes_its_target() {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    // libFuzzer's own report of a failure is not ours to read here.
    let quiet = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let mut failed = Vec::new();
    let mut counts = Vec::new();
    for (target, run) in TARGETS {
        let mut files = inputs(&fuzz.join("corpus").join(target));
        files.extend(inputs(&fuzz.join("regressions").join(target)));
        counts.push((*target, files.len()));
        for file in files {
            let data = std::fs::read(&file).unwrap_or_else(|e| panic!("read {}: {e}", file.display()));
            if let Err(panic) = catch_unwind(AssertUnwindSafe(|| run(&data))) {
                let why = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                failed.push(format!("{target}: {}: {why}", file.strip_prefix(&fuzz).unwrap_or(&file).display()));
            }
        }
    }
    std::panic::set_hook(quiet);
    assert!(failed.is_empty(), "fuzz inputs that fail their target:\n{}", failed.join("\n"));
    // A target without inputs would pass by checking nothing.
    let empty: Vec<&str> = counts.iter().filter(|(_, n)| *n == 0).map(|(t, _)| *t).collect();
    assert!(empty.is_empty(), "targets without a corpus under fuzz/corpus/: {empty:?}");
}

#[test]
fn every_target_has_a_cargo_fuzz_binary() {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/Cargo.toml");
    let text = std::fs::read_to_string(&manifest).unwrap_or_else(|e| panic!("read {}: {e}", manifest.display()));
    for (target, _) in TARGETS {
        assert!(text.contains(&format!("name = \"{target}\"")), "fuzz/Cargo.toml has no [[bin]] {target}");
    }
}
