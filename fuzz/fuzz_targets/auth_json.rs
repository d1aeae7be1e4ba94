//! An auth.json. The checks are in `supervisor::fuzzing::auth_json`, which
//! `tests/fuzz_corpus.rs` replays on stable.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| supervisor::fuzzing::auth_json(data));
