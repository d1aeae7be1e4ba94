//! What a probe is: the mechanism's own description, whoever chose it (a
//! unit's `[health]` or an image's `HEALTHCHECK`: that choice, the timings
//! and what to do when unhealthy are the supervisor's policy).

use serde::Serialize;

/// One way of asking a container whether its service works. Serialized as
/// the unit file writes it (`{"exec": [...]}`, `{"http": "..."}`,
/// `{"tcp": 80}`), which `inspect` shows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Probe {
    /// Run in the container; exit 0 is healthy.
    Exec(Vec<String>),
    /// GET from inside the container's network namespace; 2xx/3xx healthy.
    Http(String),
    /// A TCP connect to this port of the container.
    Tcp(u16),
}
