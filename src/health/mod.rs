//! Health checks: is a running container's service working?
//!
//! `check` decides which probe applies to a unit (its own `[health]`, or
//! the image's Docker `HEALTHCHECK`) with Docker's timings; `tracker` is
//! Docker's health state machine (pure); `probe` runs one probe against a
//! running container (`exec` through the runtime's exec, `http` and `tcp`
//! from a socket made inside the container's network namespace). What is
//! done with the results (restart, stop, readiness of dependents) is the
//! supervisor's.

pub mod check;
pub mod netns;
pub mod probe;
pub mod tracker;

pub use check::{Check, Probe, effective};
pub use tracker::{Health, ProbeResult, Tracker};
