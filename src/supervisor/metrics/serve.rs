//! The metrics listener: plain HTTP/1.1 on TCP, `GET /metrics` and
//! nothing else (404 for another path, 405 for another method). It can
//! change nothing: the one thing it asks of the engine is a sample of the
//! unit records, on the channel `status` uses. Bounded like the control
//! socket: a request head of at most [`http::MAX_HEAD`] that must arrive
//! within [`http::READ_TIMEOUT`], answers written within
//! [`http::WRITE_TIMEOUT`], and at most [`MAX_CONNECTIONS`] at once (more
//! wait in the backlog).

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc, oneshot};

use super::{Counters, OPENMETRICS, PROMETHEUS_TEXT, Units, exposition, read};
use crate::supervisor::control::http;
use crate::supervisor::engine::{Command, Event, UnitSample};

/// Scrapes served at once: Prometheus scrapes one at a time, and a few
/// more leave room for a person with curl.
pub const MAX_CONNECTIONS: usize = 8;

/// How long one sample of the unit records serves scrapes. The engine is
/// asked at most once per this, however hard the listener is hammered,
/// and concurrent scrapes share one question: each is a pass of the
/// loop that every unit's events wait behind. Prometheus scrapes every
/// 15 s by default; a state a second old is as good.
pub const SAMPLE_REUSE: Duration = Duration::from_secs(1);

/// The last sample of the engine's records, and when it was taken.
type Cache = tokio::sync::Mutex<Option<(tokio::time::Instant, Arc<Vec<UnitSample>>)>>;

/// Why the listener could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error("metrics: listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// Binds the listener (in the daemon's runtime).
pub fn bind(addr: SocketAddr) -> Result<TcpListener, MetricsError> {
    let bound = std::net::TcpListener::bind(addr)
        .and_then(|l| l.set_nonblocking(true).map(|()| l))
        .and_then(TcpListener::from_std);
    bound.map_err(|source| MetricsError::Bind { addr, source })
}

/// The listener's task: serves scrapes on `addr` until aborted, or does
/// nothing without one. An address it cannot listen on is logged, not
/// fatal: the units matter more than their metrics (and an appliance's
/// init must not stop over them).
pub fn start(
    addr: Option<SocketAddr>,
    tx: mpsc::UnboundedSender<Event>,
    counters: Counters,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let Some(addr) = addr else { return };
        match bind(addr) {
            Ok(listener) => {
                tracing::info!("metrics on http://{addr}/metrics");
                serve(listener, tx, counters).await;
            }
            Err(e) => tracing::error!("{e}; the units run without it"),
        }
    })
}

/// Serves scrapes until the task is aborted.
pub async fn serve(listener: TcpListener, tx: mpsc::UnboundedSender<Event>, counters: Counters) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let cache = Arc::new(Cache::default());
    loop {
        let Ok(slot) = slots.clone().acquire_owned().await else { return };
        let stream = match listener.accept().await {
            Ok((s, _)) => s,
            Err(e) => {
                tracing::warn!("metrics listener: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let (tx, counters, cache) = (tx.clone(), counters.clone(), cache.clone());
        tokio::spawn(async move {
            let mut stream = stream;
            if let Err(e) = connection(&mut stream, &tx, &counters, &cache).await {
                tracing::debug!("metrics connection: {e}");
            }
            drop(slot);
        });
    }
}

async fn connection(
    stream: &mut TcpStream,
    tx: &mpsc::UnboundedSender<Event>,
    counters: &Counters,
    cache: &Cache,
) -> std::io::Result<()> {
    let request = match tokio::time::timeout(http::READ_TIMEOUT, http::read_request(stream)).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => return answer(stream, 400, &[], &format!("{e}\n")).await,
        Err(_) => {
            let message = format!("no whole request within {}s\n", http::READ_TIMEOUT.as_secs());
            return answer(stream, 408, &[], &message).await;
        }
    };
    if request.path != ["metrics"] {
        return answer(stream, 404, &[], "only /metrics is served here\n").await;
    }
    if request.method != "GET" {
        return answer(stream, 405, &[("Allow", "GET")], "only GET is served here\n").await;
    }
    // Prometheus asks for OpenMetrics first; a client that does not ask
    // for it (curl) gets Prometheus's own text format.
    let openmetrics = request.accept.as_deref().is_some_and(|a| a.contains("application/openmetrics-text"));
    let Some(units) = sample(tx, cache).await else {
        return answer(stream, 503, &[], "the supervisor is shutting down\n").await;
    };
    let counters = counters.clone();
    let body = tokio::task::spawn_blocking(move || {
        let proc = Path::new("/proc");
        let units = units
            .iter()
            .map(|u| {
                let reading = read(u, proc);
                (u.clone(), reading)
            })
            .collect();
        exposition(Units { units, now: SystemTime::now() }, &counters, openmetrics)
    })
    .await;
    match body {
        Ok(body) => {
            let kind = if openmetrics { OPENMETRICS } else { PROMETHEUS_TEXT };
            answer(stream, 200, &[("Content-Type", kind)], &body).await
        }
        Err(e) => answer(stream, 500, &[], &format!("{e}\n")).await,
    }
}

/// The unit records: the cached sample while it is younger than
/// [`SAMPLE_REUSE`], else a new one from the engine (the cache's lock is
/// held meanwhile, so scrapes that come together share it). None when
/// the engine is gone.
async fn sample(tx: &mpsc::UnboundedSender<Event>, cache: &Cache) -> Option<Arc<Vec<UnitSample>>> {
    let mut cached = cache.lock().await;
    if let Some((at, units)) = &*cached
        && at.elapsed() < SAMPLE_REUSE
    {
        return Some(units.clone());
    }
    let (reply, sample) = oneshot::channel();
    tx.send(Event::Command(Command::Sample(reply))).ok()?;
    let units = Arc::new(sample.await.ok()?);
    *cached = Some((tokio::time::Instant::now(), units.clone()));
    Some(units)
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        503 => "Service Unavailable",
        _ => "Internal Server Error",
    }
}

/// A whole answer, and the connection's end. Errors are plain text.
async fn answer(stream: &mut TcpStream, status: u16, headers: &[(&str, &str)], body: &str) -> std::io::Result<()> {
    let mut head = format!("HTTP/1.1 {status} {}\r\n", reason(status));
    if !headers.iter().any(|(k, _)| *k == "Content-Type") {
        head.push_str("Content-Type: text/plain; charset=utf-8\r\n");
    }
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str(&format!("Content-Length: {}\r\nConnection: close\r\n\r\n", body.len()));
    let write = async {
        stream.write_all(head.as_bytes()).await?;
        stream.write_all(body.as_bytes()).await?;
        stream.shutdown().await
    };
    match tokio::time::timeout(http::WRITE_TIMEOUT, write).await {
        Ok(done) => done,
        Err(_) => Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "the client stopped reading")),
    }
}
