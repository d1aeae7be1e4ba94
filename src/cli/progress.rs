//! Pull and push progress as `supervisorctl` shows it: bars on a terminal,
//! a line per layer (blob) otherwise, from a transfer of its own or from
//! the JSON lines of the daemon's (`pull`, `load`, `push`).

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::Mutex;
use std::time::Instant;

use crate::runtime::image::manifest::Descriptor;
use crate::runtime::image::{Digest, Progress, Pushed};

pub fn human_size(bytes: u64) -> String {
    let mut v = bytes as f64;
    for unit in ["B", "kB", "MB", "GB"] {
        if v < 1000.0 {
            return format!("{v:.1}{unit}");
        }
        v /= 1000.0;
    }
    format!("{v:.1}TB")
}

/// Pull progress: a live line per layer on a terminal, a line per finished
/// layer otherwise.
pub struct Reporter {
    tty: bool,
    /// A push's: blobs sent, not layers fetched.
    push: bool,
    start: Instant,
    state: Mutex<BTreeMap<Digest, (u64, u64, String)>>,
}

impl Reporter {
    pub fn new(tty: bool) -> Reporter {
        Reporter { tty, push: false, start: Instant::now(), state: Mutex::new(BTreeMap::new()) }
    }

    /// A push's progress: a line per blob.
    pub fn pushing(tty: bool) -> Reporter {
        Reporter { push: true, ..Reporter::new(tty) }
    }

    fn draw(&self, state: &BTreeMap<Digest, (u64, u64, String)>, first: bool) {
        let mut err = std::io::stderr().lock();
        if !first {
            let _ = write!(err, "\x1b[{}A", state.len());
        }
        for (d, (done, size, status)) in state {
            let pct = if *size > 0 { done * 100 / size } else { 100 };
            let bar: String = (0..20).map(|i| if i * 5 < pct { '#' } else { '.' }).collect();
            let _ = writeln!(
                err,
                "\x1b[2K{} [{bar}] {:>9} / {:<9} {status}",
                &d.hex()[..12],
                human_size(*done),
                human_size(*size)
            );
        }
    }

    pub fn finish(&self) {
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let total: u64 = state.values().map(|s| s.0).sum();
        let (what, done) = if self.push { ("blobs", "sent") } else { ("layers", "fetched") };
        let secs = self.start.elapsed().as_secs_f64();
        errln!("{} {what}, {} {done} in {secs:.1}s", state.len(), human_size(total));
    }
}

impl Progress for Reporter {
    fn resolved(&self, reference: &str, manifest: &Digest, layers: &[Descriptor]) {
        errln!("{reference}: {manifest}, {} {}", layers.len(), if self.push { "blobs" } else { "layers" });
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        for l in layers {
            state.insert(l.digest.clone(), (0, l.size, "waiting".to_string()));
        }
        if self.tty {
            self.draw(&state, true);
        }
    }

    fn layer_bytes(&self, layer: &Digest, bytes: u64) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(s) = state.get_mut(layer) {
            // A blob sent again after a broken transfer counts once.
            s.0 = s.0.saturating_add(bytes).min(s.1);
            s.2 = if self.push { "pushing" } else { "pulling" }.to_string();
        }
        if self.tty {
            self.draw(&state, false);
        }
    }

    fn layer_done(&self, layer: &Digest, cached: bool) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let status = if cached { "already in the store" } else { "done" };
        if let Some(s) = state.get_mut(layer) {
            s.2 = status.to_string();
            if cached {
                s.0 = 0;
            }
        }
        if self.tty {
            self.draw(&state, false);
        } else {
            let size = state.get(layer).map_or(0, |s| s.1);
            errln!("layer {} ({}): {status}", layer, human_size(size));
        }
    }

    fn blob_pushed(&self, blob: &Digest, how: Pushed, from: Option<&str>) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let status = match how {
            Pushed::Present => "already in the registry".to_string(),
            Pushed::Mounted => format!("mounted from {}", from.unwrap_or("another repository")),
            Pushed::Uploaded => "pushed".to_string(),
        };
        if let Some(s) = state.get_mut(blob) {
            s.2 = status.clone();
            if how != Pushed::Uploaded {
                s.0 = 0;
            }
        }
        if self.tty {
            self.draw(&state, false);
        } else {
            let size = state.get(blob).map_or(0, |s| s.1);
            errln!("blob {} ({}): {status}", blob, human_size(size));
        }
    }
}

/// The daemon's progress lines of a pull, load or push, handed to a [`Reporter`]
/// as they come; the last line is the outcome (`{KEY: ...}` or
/// `{"error": ...}`).
pub struct Lines<'a> {
    reporter: &'a Reporter,
    key: &'static str,
    pending: Vec<u8>,
    outcome: Option<Result<serde_json::Value, String>>,
}

impl<'a> Lines<'a> {
    pub fn new(reporter: &'a Reporter, key: &'static str) -> Lines<'a> {
        Lines { reporter, key, pending: Vec::new(), outcome: None }
    }

    /// Takes the next bytes of the stream.
    pub fn feed(&mut self, chunk: &[u8]) {
        self.pending.extend_from_slice(chunk);
        while let Some(i) = self.pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.pending.drain(..=i).collect();
            let Ok(v) = serde_json::from_slice::<serde_json::Value>(&line) else { continue };
            self.line(&v);
        }
    }

    fn line(&mut self, v: &serde_json::Value) {
        let digest = |x: &serde_json::Value| Digest::parse(x["digest"].as_str().unwrap_or(""));
        if let Some(r) = v.get("resolved") {
            let layers: Vec<Descriptor> = serde_json::from_value(r["layers"].clone()).unwrap_or_default();
            if let Ok(m) = Digest::parse(r["manifest"].as_str().unwrap_or("")) {
                self.reporter.resolved(r["reference"].as_str().unwrap_or(""), &m, &layers);
            }
        } else if let Some(b) = v.get("layer_bytes") {
            if let Ok(d) = digest(b) {
                self.reporter.layer_bytes(&d, b["bytes"].as_u64().unwrap_or(0));
            }
        } else if let Some(l) = v.get("layer_done") {
            if let Ok(d) = digest(l) {
                self.reporter.layer_done(&d, l["cached"].as_bool().unwrap_or(false));
            }
        } else if let Some(p) = v.get("blob_pushed") {
            let how = serde_json::from_value::<Pushed>(p["how"].clone());
            if let (Ok(d), Ok(how)) = (digest(p), how) {
                self.reporter.blob_pushed(&d, how, p["from"].as_str());
            }
        } else if let Some(value) = v.get(self.key) {
            self.outcome = Some(Ok(value.clone()));
        } else if let Some(e) = v.get("error") {
            self.outcome = Some(Err(e.as_str().unwrap_or("failed").to_string()));
        }
    }

    /// The outcome, once the stream has ended (`verb` names what ended
    /// without one).
    pub fn outcome(self, verb: &str) -> Result<serde_json::Value, String> {
        self.outcome.unwrap_or_else(|| Err(format!("supervisord ended the {verb} without an outcome")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pushs_lines_give_each_blob_its_outcome() {
        let reporter = Reporter::pushing(false);
        let mut lines = Lines::new(&reporter, "pushed");
        let (a, b) = (Digest::of(b"a"), Digest::of(b"b"));
        let layers = serde_json::json!([
            {"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": a, "size": 10},
            {"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": b, "size": 20},
        ]);
        let stream = [
            serde_json::json!({"resolved": {"reference": "r:5000/x:1", "manifest": Digest::of(b"m"), "layers": layers}}),
            // A blob sent twice (a broken transfer) counts once.
            serde_json::json!({"layer_bytes": {"digest": a, "bytes": 10}}),
            serde_json::json!({"layer_bytes": {"digest": a, "bytes": 10}}),
            serde_json::json!({"blob_pushed": {"digest": a, "how": "uploaded", "from": null}}),
            serde_json::json!({"blob_pushed": {"digest": b, "how": "mounted", "from": "one/app"}}),
            serde_json::json!({"pushed": {"destination": "r:5000/x:1"}}),
        ];
        let text: String = stream.iter().map(|v| format!("{v}\n")).collect();
        // Split anywhere: lines are put together again.
        let (head, tail) = text.as_bytes().split_at(17);
        lines.feed(head);
        lines.feed(tail);
        assert_eq!(lines.outcome("push").unwrap()["destination"], "r:5000/x:1");
        let state = reporter.state.lock().unwrap();
        assert_eq!(state[&a], (10, 10, "pushed".to_string()));
        assert_eq!(state[&b], (0, 20, "mounted from one/app".to_string()));
    }
}
