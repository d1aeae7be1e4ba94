//! `GET /v1/units/NAME/top`: the processes of the unit's container (its
//! cgroup's), as `docker top` lists them.

use std::path::Path;

use tokio::net::UnixStream;

use super::{Control, ask, http};
use crate::runtime::cgroups::Cgroup;
use crate::runtime::procs::processes;
use crate::supervisor::engine::Command;

pub(super) async fn top(stream: &mut UnixStream, control: &Control, name: &str) -> std::io::Result<()> {
    let Some(found) = ask(control, |tx| Command::Inspect(name.to_string(), tx)).await else {
        return http::error(stream, 500, "the supervisor is shutting down").await;
    };
    let Some(v) = found else {
        return http::error(stream, 404, &format!("no unit named {name:?}")).await;
    };
    let Ok(cgroup) = serde_json::from_value::<Cgroup>(v["cgroup"].clone()) else {
        return http::error(stream, 409, &format!("{name} has no container")).await;
    };
    super::blocking(stream, 500, move || {
        let pids = cgroup.procs().map_err(|e| e.to_string())?;
        Ok::<_, String>(processes(Path::new("/proc"), &pids))
    })
    .await
}
