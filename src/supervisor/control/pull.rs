//! `POST /v1/images/pull`: a pull into the daemon's store, its progress
//! streamed to the client as JSON lines.

use std::collections::BTreeMap;
use std::path::Path;

use tokio::io::AsyncWriteExt;
use tokio::net::UnixStream;
use tokio::sync::mpsc;

use super::peer::{Peer, local_path};
use super::{Control, http, json_line};
use crate::runtime::image::manifest::Descriptor;
use crate::runtime::image::{Digest, ImageError, Progress, Pushed};
use crate::units::values::reference::ImageSource;

/// Pull progress as JSON lines for the client's bars, through a bounded
/// channel, so that a slow client cannot make the daemon buffer without
/// limit; one that stops reading is dropped after [`http::WRITE_TIMEOUT`]
/// and the pull goes on without it. Byte counts are not waited for when
/// the channel is full: a pull holds the store, and a slow reader must not
/// hold up the units' pulls for a progress bar. They are added up and sent
/// with the next count that fits (or before the layer's `layer_done`), so
/// the client's totals stay right.
struct StreamProgress {
    tx: mpsc::Sender<serde_json::Value>,
    unsent: std::sync::Mutex<BTreeMap<String, u64>>,
}

/// Progress lines waiting for a slow client.
const PROGRESS_LINES: usize = 256;

fn layer_bytes_line(layer: &str, bytes: u64) -> serde_json::Value {
    serde_json::json!({"layer_bytes": {"digest": layer, "bytes": bytes}})
}

impl Progress for StreamProgress {
    fn resolved(&self, reference: &str, manifest: &Digest, layers: &[Descriptor]) {
        let _ = self.tx.blocking_send(
            serde_json::json!({"resolved": {"reference": reference, "manifest": manifest, "layers": layers}}),
        );
    }
    fn layer_bytes(&self, layer: &Digest, bytes: u64) {
        let key = layer.to_string();
        let mut unsent = self.unsent.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let total = unsent.remove(&key).unwrap_or(0).saturating_add(bytes);
        if let Err(mpsc::error::TrySendError::Full(_)) = self.tx.try_send(layer_bytes_line(&key, total)) {
            unsent.insert(key, total);
        }
    }
    fn layer_done(&self, layer: &Digest, cached: bool) {
        let key = layer.to_string();
        let owed = self.unsent.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(&key);
        if let Some(total) = owed {
            let _ = self.tx.blocking_send(layer_bytes_line(&key, total));
        }
        let _ = self.tx.blocking_send(serde_json::json!({"layer_done": {"digest": layer, "cached": cached}}));
    }
    fn blob_pushed(&self, blob: &Digest, how: Pushed, from: Option<&str>) {
        let key = blob.to_string();
        let owed = self.unsent.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(&key);
        if let Some(total) = owed {
            let _ = self.tx.blocking_send(layer_bytes_line(&key, total));
        }
        let _ = self.tx.blocking_send(serde_json::json!({"blob_pushed": {"digest": blob, "how": how, "from": from}}));
    }
}

/// A pull into the daemon's store, its progress streamed as JSON lines
/// and its outcome as the last line (`{"image": ...}` or `{"error": ...}`).
pub(super) async fn pull(
    stream: &mut UnixStream,
    control: &Control,
    reference: &str,
    peer: Peer,
) -> std::io::Result<()> {
    let source = match ImageSource::parse(reference, Path::new("/")) {
        Ok(s) => s,
        Err(e) => return http::error(stream, 400, &format!("{reference}: {e}")).await,
    };
    if peer != Peer::Root && local_path(&source) {
        let message =
            format!("{reference}: only root may pull from a local path (oci:, oci-archive:, docker-archive:, dir:)");
        return http::error(stream, 403, &message).await;
    }
    let (store, options, metrics) = (control.store.clone(), control.pull.clone(), control.metrics.clone());
    with_progress(stream, move |progress| {
        let pulled = store.pull(&source, &options, &metrics.counting(progress));
        metrics.pulled(pulled.is_ok());
        Ok(serde_json::json!({"image": pulled?.record}))
    })
    .await
}

/// Runs `work` on a blocking thread, its progress streamed as JSON lines
/// and its outcome as the last line (what it returns, or `{"error": ...}`).
pub(super) async fn with_progress(
    stream: &mut UnixStream,
    work: impl FnOnce(&dyn Progress) -> Result<serde_json::Value, ImageError> + Send + 'static,
) -> std::io::Result<()> {
    http::stream_head(stream, "application/x-ndjson").await?;
    let (tx, mut rx) = mpsc::channel(PROGRESS_LINES);
    let task = tokio::task::spawn_blocking(move || work(&StreamProgress { tx, unsent: Default::default() }));
    while let Some(v) = rx.recv().await {
        json_line(stream, &v).await?;
    }
    let last = match task.await {
        Ok(Ok(outcome)) => outcome,
        Ok(Err(e)) => serde_json::json!({"error": e.to_string()}),
        Err(e) => serde_json::json!({"error": e.to_string()}),
    };
    json_line(stream, &last).await?;
    stream.shutdown().await
}
