//! `GET /v1/units/NAME/diff`: what the unit's container changed in its root
//! filesystem (its overlay upper directory against its image's layers), as
//! `docker diff` shows it.

use tokio::net::UnixStream;

use super::{Control, ask, http};
use crate::runtime::image::Digest;
use crate::runtime::image::diff::changes;
use crate::supervisor::engine::Command;
use crate::supervisor::prepare::container_dir;

/// The files the daemon mounts into a container (made in its writable
/// layer when the image has none): see `starter`'s bind mounts.
const RUNTIME_FILES: &[&str] = &["/etc/hosts", "/etc/resolv.conf"];

/// One walk at a time: each holds a descriptor per directory level.
static WALKS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(1);

pub(super) async fn diff(stream: &mut UnixStream, control: &Control, name: &str) -> std::io::Result<()> {
    let Ok(_walk) = WALKS.acquire().await else {
        return http::error(stream, 500, "the supervisor is shutting down").await;
    };
    let Some(found) = ask(control, |tx| Command::Inspect(name.to_string(), tx)).await else {
        return http::error(stream, 500, "the supervisor is shutting down").await;
    };
    let Some(v) = found else {
        return http::error(stream, 404, &format!("no unit named {name:?}")).await;
    };
    let (Some(runtime_name), Some(image_id)) = (v["runtime_name"].as_str(), v["status"]["image_id"].as_str()) else {
        return http::error(stream, 409, &format!("{name} has no container")).await;
    };
    let Ok(digest) = Digest::parse(image_id) else {
        return http::error(stream, 500, &format!("{name}: image ID {image_id:?}")).await;
    };
    let upper = container_dir(&control.state_dir, runtime_name).join("upper");
    let store = control.store.clone();
    let name = name.to_string();
    super::blocking(stream, 500, move || {
        let image = store
            .image_by_digest(&digest)
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("{name}: its image {digest} is no longer in the store"))?;
        changes(&upper, &image.layer_dirs, RUNTIME_FILES).map_err(|e| format!("{name}: {e}"))
    })
    .await
}
