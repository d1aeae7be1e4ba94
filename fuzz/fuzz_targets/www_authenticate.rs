//! A registry's WWW-Authenticate challenge. The checks are in `supervisor::fuzzing::www_authenticate`, which
//! `tests/fuzz_corpus.rs` replays on stable.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| supervisor::fuzzing::www_authenticate(data));
