//! A layer's tar stream unpacked into a scratch directory: nothing written outside it. The checks are in `supervisor::fuzzing::tar_layer`, which
//! `tests/fuzz_corpus.rs` replays on stable.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| supervisor::fuzzing::tar_layer(data));
