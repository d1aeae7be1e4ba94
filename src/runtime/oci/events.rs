//! `events`: runc's event stream of a container, one JSON object a line:
//! `{"type":"stats","id":ID,"data":{...}}` (its cgroup's statistics, in
//! runc's shape) every interval, and `{"type":"oom","id":ID}` each time the
//! kernel's OOM killer strikes in it; `--stats` is one stats object.

use std::path::Path;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::{OciError, Status, loaded};
use crate::runtime::cgroups::{Cgroup, RuncStats};

/// How often the OOM count is looked at between two stats.
const OOM_TICK: Duration = Duration::from_millis(100);

#[derive(Debug, Serialize)]
pub struct Event {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<RuncStats>,
}

/// The container's cgroup, which it must still have.
fn cgroup(root: &Path, id: &str) -> Result<Cgroup, OciError> {
    let (dir, record) = loaded(root, id)?;
    let state = dir.state(&record);
    match dir.container(&record).filter(|_| state.status != Status::Stopped) {
        Some(c) => Ok(c.cgroup),
        None => Err(OciError::WrongState { id: id.into(), status: state.status, op: "events", wanted: "running" }),
    }
}

/// `events --stats`: one stats event.
pub fn stats_event(root: &Path, id: &str) -> Result<Event, OciError> {
    let cg = cgroup(root, id)?;
    Ok(Event { kind: "stats", id: id.into(), data: Some(cg.runc_stats()) })
}

/// `events`: hands each event to `emit` (false: stop) until the container
/// stops: stats every `interval`, and an `oom` event when its OOM-kill
/// count rises.
pub fn events(root: &Path, id: &str, interval: Duration, mut emit: impl FnMut(Event) -> bool) -> Result<(), OciError> {
    let cg = cgroup(root, id)?;
    let mut ooms = cg.oom_kills();
    let mut next_stats = Instant::now();
    loop {
        // Stopped, or deleted already: the stream ends with it.
        let (dir, record) = match loaded(root, id) {
            Ok(loaded) => loaded,
            Err(OciError::NotFound(_)) => return Ok(()),
            Err(e) => return Err(e),
        };
        if dir.state(&record).status == Status::Stopped {
            return Ok(());
        }
        let now_ooms = cg.oom_kills();
        if now_ooms > ooms {
            ooms = now_ooms;
            if !emit(Event { kind: "oom", id: id.into(), data: None }) {
                return Ok(());
            }
        }
        if Instant::now() >= next_stats {
            next_stats += interval;
            if !emit(Event { kind: "stats", id: id.into(), data: Some(cg.runc_stats()) }) {
                return Ok(());
            }
        }
        let left = next_stats.saturating_duration_since(Instant::now());
        std::thread::sleep(left.min(OOM_TICK));
    }
}
