//! A manifest or index, as each content type. The checks are in `supervisor::fuzzing::image_manifest`, which
//! `tests/fuzz_corpus.rs` replays on stable.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| supervisor::fuzzing::image_manifest(data));
