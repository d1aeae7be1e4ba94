//! Each unit value grammar (the first byte picks one). The checks are in `supervisor::fuzzing::values`, which
//! `tests/fuzz_corpus.rs` replays on stable.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| supervisor::fuzzing::values(data));
