//! `POST /v1/images/load[?name=REF]`: an image archive (an OCI archive or
//! `docker save` output) as the request body, received into the store's
//! `tmp/` as it comes and loaded from there, its progress streamed back as
//! a pull's is. Root only: what is loaded is verified as a pull's content
//! is, but it takes the names it carries, and so replaces images units run.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

use super::Control;
use super::http::{self, Request};
use super::peer::Peer;
use super::pull::with_progress;
use crate::runtime::image::ImageError;
use crate::runtime::image::load::{Upload, loaded_reference};

/// How long the archive may stop coming before the load is given up (and
/// what came of it removed).
const IDLE: Duration = Duration::from_secs(60);

/// One load at a time: each checks the free space for its own archive
/// only, so two at once could take the reserve between them.
static LOADS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(1);

pub(super) async fn load(stream: &mut UnixStream, control: &Control, req: Request, peer: Peer) -> std::io::Result<()> {
    if peer != Peer::Root {
        return http::error(stream, 403, "only root may load images").await;
    }
    let length = req.upload.unwrap_or(req.body.len() as u64);
    let name = req.query.get("name").filter(|n| !n.is_empty()).cloned();
    if let Some(Err(e)) = name.as_deref().map(loaded_reference) {
        return http::error(stream, 400, &format!("name: {e}")).await;
    }
    let Ok(one) = LOADS.try_acquire() else {
        return http::error(stream, 409, "another load is in progress: try again when it has ended").await;
    };
    let store = control.store.clone();
    let upload = match tokio::task::spawn_blocking(move || store.upload(length)).await {
        Ok(Ok(upload)) => upload,
        Ok(Err(e @ ImageError::NoSpace { .. })) => return http::error(stream, 507, &e.to_string()).await,
        Ok(Err(e)) => return http::error(stream, 500, &e.to_string()).await,
        Err(e) => return http::error(stream, 500, &e.to_string()).await,
    };
    if let Err((status, message)) = receive(stream, &upload, &req.body, length).await {
        tracing::warn!("load: {message}");
        drop((upload, one));
        return http::error(stream, status, &message).await;
    }
    let (store, options) = (control.store.clone(), control.pull.clone());
    with_progress(stream, move |progress| {
        let loaded = store.load(upload.path(), name.as_deref(), &options, progress);
        // Done before the answer goes out: a client that has it may load
        // the next archive at once.
        drop(upload);
        drop(one);
        let images = loaded?;
        let records: Vec<_> = images.into_iter().map(|i| i.record).collect();
        for r in &records {
            tracing::info!("loaded {} ({})", r.reference, r.manifest_digest);
        }
        Ok(serde_json::json!({ "images": records }))
    })
    .await
}

/// Copies the archive (`first`, what came with the request head, then the
/// rest of its `length` bytes) into the upload; a status and message when
/// that fails.
async fn receive(stream: &mut UnixStream, upload: &Upload, first: &[u8], length: u64) -> Result<(), (u16, String)> {
    let failed_write = |e: std::io::Error| match upload.write_error(e) {
        e @ ImageError::NoSpace { .. } => (507, e.to_string()),
        e => (500, e.to_string()),
    };
    let file = upload.file().try_clone().map_err(failed_write)?;
    let mut file = tokio::fs::File::from_std(file);
    file.write_all(first).await.map_err(failed_write)?;
    let mut received = first.len() as u64;
    let mut buf = vec![0u8; 1 << 16];
    while received < length {
        let want = buf.len().min(usize::try_from(length - received).unwrap_or(usize::MAX));
        let n = match tokio::time::timeout(IDLE, stream.read(&mut buf[..want])).await {
            Err(_) => {
                let message = format!(
                    "the archive stopped coming: nothing for {}s after {received} of {length} bytes",
                    IDLE.as_secs()
                );
                return Err((408, message));
            }
            Ok(Err(e)) => return Err((400, format!("read the archive after {received} of {length} bytes: {e}"))),
            Ok(Ok(0)) => {
                return Err((400, format!("the client closed after {received} of the archive's {length} bytes")));
            }
            Ok(Ok(n)) => n,
        };
        file.write_all(&buf[..n]).await.map_err(failed_write)?;
        received += n as u64;
    }
    file.flush().await.map_err(failed_write)
}
