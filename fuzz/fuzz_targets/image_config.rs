//! An image config blob. The checks are in `supervisor::fuzzing::image_config`, which
//! `tests/fuzz_corpus.rs` replays on stable.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| supervisor::fuzzing::image_config(data));
