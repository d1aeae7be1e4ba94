//! The serial relay's request framing. The checks are in `supervisor::fuzzing::serial_framing`, which
//! `tests/fuzz_corpus.rs` replays on stable.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| supervisor::fuzzing::serial_framing(data));
