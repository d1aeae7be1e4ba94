//! Health checks: is a running container's service working?
//!
//! The mechanism only: `check` says what a probe is; `tracker` is Docker's
//! health state machine (pure); `probe` runs one probe against a running
//! container (`exec` through the runtime's exec, `http` and `tcp` from a
//! socket made inside the container's network namespace). Which check
//! applies to a unit, with what timings, and what is done with the results
//! (restart, stop, readiness of dependents) is the supervisor's
//! (`supervisor::health_policy`).

pub mod check;
pub mod netns;
pub mod probe;
pub mod tracker;

pub use check::Probe;
pub use tracker::{Health, ProbeResult, Tracker};
