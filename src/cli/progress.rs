//! Pull progress as `supervisorctl` shows it: bars on a terminal, a line
//! per layer otherwise, from a pull of its own or from the JSON lines of
//! the daemon's (`pull`, `load`).

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::Mutex;
use std::time::Instant;

use crate::runtime::image::manifest::Descriptor;
use crate::runtime::image::{Digest, Progress};

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
    start: Instant,
    state: Mutex<BTreeMap<Digest, (u64, u64, &'static str)>>,
}

impl Reporter {
    pub fn new(tty: bool) -> Reporter {
        Reporter { tty, start: Instant::now(), state: Mutex::new(BTreeMap::new()) }
    }

    fn draw(&self, state: &BTreeMap<Digest, (u64, u64, &'static str)>, first: bool) {
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
        errln!("{} layers, {} fetched in {:.1}s", state.len(), human_size(total), self.start.elapsed().as_secs_f64());
    }
}

impl Progress for Reporter {
    fn resolved(&self, reference: &str, manifest: &Digest, layers: &[Descriptor]) {
        errln!("{reference}: {manifest}, {} layers", layers.len());
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        for l in layers {
            state.insert(l.digest.clone(), (0, l.size, "waiting"));
        }
        if self.tty {
            self.draw(&state, true);
        }
    }

    fn layer_bytes(&self, layer: &Digest, bytes: u64) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(s) = state.get_mut(layer) {
            s.0 += bytes;
            s.2 = "pulling";
        }
        if self.tty {
            self.draw(&state, false);
        }
    }

    fn layer_done(&self, layer: &Digest, cached: bool) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let status = if cached { "already in the store" } else { "done" };
        if let Some(s) = state.get_mut(layer) {
            s.2 = status;
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
}

/// The daemon's progress lines of a pull or load, handed to a [`Reporter`]
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
