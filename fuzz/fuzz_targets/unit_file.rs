//! Arbitrary bytes as a unit file. The checks are in `supervisor::fuzzing::unit_file`, which
//! `tests/fuzz_corpus.rs` replays on stable.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| supervisor::fuzzing::unit_file(data));
