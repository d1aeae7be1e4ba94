//! `POST /v1/units/NAME/commit`: the unit's container's writable layer as
//! a new image on top of the image it runs (`runtime::image::commit`),
//! recorded under the name given, with `--change` edits of its config.
//! Root only: it writes into the store an image that units may run.
//!
//! A running container is frozen (its cgroup's freezer) while its layer
//! is packed, as `docker commit` pauses it by default, so the layer is one
//! moment of its files; `"pause": false` packs it as it runs. A container
//! that was frozen already (paused by an operator) stays so. A unit with
//! no container (stopped, exited: its writable layer is gone with it) has
//! nothing to commit.

use tokio::net::UnixStream;

use super::http::{self, Request};
use super::peer::Peer;
use super::{Control, ask};
use crate::runtime::cgroups::Cgroup;
use crate::runtime::image::Digest;
use crate::runtime::image::change::{self, Change};
use crate::runtime::image::commit::Commit;
use crate::runtime::image::load::loaded_reference;
use crate::supervisor::engine::Command;
use crate::supervisor::prepare::container_dir;

/// The files the daemon mounts into a container (made in its writable
/// layer when the image has none): never part of a committed layer, as
/// Docker leaves out the files it bind-mounts.
const RUNTIME_FILES: &[&str] = &["/etc/hosts", "/etc/resolv.conf", "/etc/hostname"];

/// One commit at a time: each walks a whole layer and holds a frozen
/// container meanwhile.
static COMMITS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(1);

#[derive(serde::Deserialize)]
struct Asked {
    reference: String,
    #[serde(default)]
    changes: Vec<String>,
    #[serde(default = "yes")]
    pause: bool,
}

fn yes() -> bool {
    true
}

pub(super) async fn commit(
    stream: &mut UnixStream,
    control: &Control,
    name: &str,
    req: &Request,
    peer: Peer,
) -> std::io::Result<()> {
    if peer != Peer::Root {
        return http::error(stream, 403, "only root may commit a container into an image").await;
    }
    let asked: Asked = match serde_json::from_slice(&req.body) {
        Ok(a) => a,
        Err(e) => return http::error(stream, 400, &format!("commit: {e}")).await,
    };
    let reference = match loaded_reference(&asked.reference) {
        Ok(r) => r,
        Err(e) => return http::error(stream, 400, &format!("commit: {e}")).await,
    };
    let changes: Vec<Change> = match asked.changes.iter().map(|c| change::parse(c)).collect() {
        Ok(c) => c,
        Err(e) => return http::error(stream, 400, &format!("--change {e}")).await,
    };
    let Ok(_one) = COMMITS.acquire().await else { return http::error(stream, 500, "shutting down").await };
    let v = match ask(control, |tx| Command::Inspect(name.to_string(), tx)).await {
        Some(Some(v)) => v,
        Some(None) => return http::error(stream, 404, &format!("no unit named {name:?}")).await,
        None => return http::error(stream, 500, "the supervisor is shutting down").await,
    };
    let (Some(runtime_name), Some(image_id)) = (v["runtime_name"].as_str(), v["status"]["image_id"].as_str()) else {
        return http::error(stream, 409, &format!("{name} has no container")).await;
    };
    let Ok(digest) = Digest::parse(image_id) else {
        return http::error(stream, 500, &format!("{name}: image ID {image_id:?}")).await;
    };
    let running = v["status"]["pid"].is_i64();
    let cgroup = serde_json::from_value::<Cgroup>(v["cgroup"].clone()).ok().filter(|_| running && asked.pause);
    let upper = container_dir(&control.state_dir, runtime_name).join("upper");
    let (store, options, unit) = (control.store.clone(), control.pull.clone(), name.to_string());
    super::blocking(stream, 500, move || {
        let base = store.image_by_digest(&digest).map_err(|e| e.to_string())?.ok_or_else(|| {
            format!("{unit}: its image {digest} is not in the store (a dir: image cannot be committed)")
        })?;
        // Frozen by us only if it was not already; thawed when this ends,
        // however it ends (a panic in the packing too: a container left
        // frozen is a service down).
        let frozen = match &cgroup {
            Some(c) if !c.frozen() => {
                c.freeze().map_err(|e| format!("{unit}: pause: {e}"))?;
                Some(Thaw { cgroup: c, unit: &unit })
            }
            _ => None,
        };
        let commit = Commit {
            upper: &upper,
            base: &base,
            reference: &reference,
            changes: &changes,
            excluded: RUNTIME_FILES,
            created_by: "supervisorctl commit",
        };
        let made = store.commit(&commit, &options);
        drop(frozen);
        let image = made.map_err(|e| format!("{unit}: commit: {e}"))?;
        tracing::info!("committed {unit} as {} ({})", image.record.reference, image.record.manifest_digest);
        let layer = image.record.layers.last().map(|l| l.digest.to_string());
        Ok::<_, String>(serde_json::json!({
            "unit": unit,
            "reference": image.record.reference,
            "id": image.record.manifest_digest,
            "layer": layer,
            "size": image.record.size,
        }))
    })
    .await
}

/// Thaws a cgroup this commit froze, when dropped.
struct Thaw<'a> {
    cgroup: &'a Cgroup,
    unit: &'a str,
}

impl Drop for Thaw<'_> {
    fn drop(&mut self) {
        if let Err(e) = self.cgroup.thaw() {
            tracing::error!("{}: resume after commit: {e}", self.unit);
        }
    }
}
