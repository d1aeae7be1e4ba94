//! The fuzz entry points: one function per target, taking the fuzzer's
//! bytes, calling the parser the daemon or `supervisorctl` uses on
//! untrusted input and asserting what must hold of its answer (no panic,
//! bounded output, a round trip where the parser has a printer).
//!
//! The cargo-fuzz targets under `fuzz/` and the stable replay of their
//! corpora (`tests/fuzz_corpus.rs`) call these same functions, so that CI
//! checks every committed input without nightly. An assertion that breaks
//! panics: that is how both report a finding. Nothing of the crate calls
//! this module (tests/module_rules.rs checks it).

mod images;
mod interop;
mod units;
mod wire;

pub use images::{auth_json, image_config, image_manifest, tar_layer, www_authenticate};
pub use interop::compose_file;
pub use units::{env_file, unit_file, values};
pub use wire::{client_response, control_request, serial_framing};

/// A target: it panics when its input breaks what must hold.
pub type Target = fn(&[u8]);

/// Every target by the name of its directory under `fuzz/corpus/`.
pub const TARGETS: &[(&str, Target)] = &[
    ("unit_file", unit_file),
    ("values", values),
    ("env_file", env_file),
    ("tar_layer", tar_layer),
    ("image_manifest", image_manifest),
    ("image_config", image_config),
    ("www_authenticate", www_authenticate),
    ("auth_json", auth_json),
    ("control_request", control_request),
    ("client_response", client_response),
    ("serial_framing", serial_framing),
    ("compose_file", compose_file),
];
