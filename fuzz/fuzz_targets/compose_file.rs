//! A Compose file (and a `.env` after a NUL). The checks are in
//! `supervisor::fuzzing::compose_file`, which `tests/fuzz_corpus.rs`
//! replays on stable.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| supervisor::fuzzing::compose_file(data));
