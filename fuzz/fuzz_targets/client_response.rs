//! An answer as supervisorctl reads it, and the chunked framing. The checks are in `supervisor::fuzzing::client_response`, which
//! `tests/fuzz_corpus.rs` replays on stable.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| supervisor::fuzzing::client_response(data));
