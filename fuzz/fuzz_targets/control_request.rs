//! A control API request as the daemon reads it. The checks are in `supervisor::fuzzing::control_request`, which
//! `tests/fuzz_corpus.rs` replays on stable.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| supervisor::fuzzing::control_request(data));
