//! An env_file's contents. The checks are in `supervisor::fuzzing::env_file`, which
//! `tests/fuzz_corpus.rs` replays on stable.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| supervisor::fuzzing::env_file(data));
