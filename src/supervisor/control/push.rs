//! `POST /v1/images/push`: an image of the daemon's store to a registry,
//! its progress streamed to the client as JSON lines (as a pull's). Root
//! only: it sends the store's content out, with the daemon's credentials.

use tokio::net::UnixStream;

use super::Control;
use super::http::{self, Request};
use super::peer::Peer;
use super::pull::with_progress;
use crate::names::reference::ImageRef;
use crate::runtime::image::PushOptions;
use crate::units::values::reference::ImageSource;

pub(super) async fn push(stream: &mut UnixStream, control: &Control, req: &Request, peer: Peer) -> std::io::Result<()> {
    if peer != Peer::Root {
        return http::error(stream, 403, "only root may push: it sends the store's images out").await;
    }
    let (Some(reference), Some(dest)) = (req.query.get("reference"), req.query.get("dest")) else {
        return http::error(stream, 400, "push needs ?reference=&dest=").await;
    };
    // The store's name of the image, as `pull` recorded it.
    let reference = match ImageSource::parse(reference, std::path::Path::new("/")) {
        Ok(s) => s.to_string(),
        Err(e) => return http::error(stream, 400, &format!("{reference}: {e}")).await,
    };
    let dest = match ImageRef::parse(dest) {
        Ok(d) => d,
        Err(e) => return http::error(stream, 400, &format!("{dest}: {e}")).await,
    };
    let mut options = PushOptions { registry: control.pull.registry.clone(), ..PushOptions::default() };
    if let Some(size) = req.query.get("chunk_size") {
        match size.parse::<u64>() {
            Ok(n) if n > 0 => options.chunk_size = n,
            _ => return http::error(stream, 400, &format!("chunk_size {size:?}: a number of bytes above 0")).await,
        }
    }
    let store = control.store.clone();
    with_progress(stream, move |progress| {
        let report = store.push(&reference, &dest, &options, progress)?;
        Ok(serde_json::json!({"pushed": report}))
    })
    .await
}
