//! `supervisorctl pull|images|rmi|prune|export|verify`, on a store directory.
//!
//! These work without a daemon, on `--store DIR` (the daemon's
//! `--state-dir`, same layout), safely beside a running daemon thanks to
//! the store's locks: this is how an appliance image is seeded at build
//! time.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Mutex;
use std::time::Instant;

use super::client::{Client, encode};
use crate::runtime::image::manifest::Descriptor;
use crate::runtime::image::verify::{Containers, Report};
use crate::runtime::image::{Digest, ImageError, ImageRecord, Progress, PullOptions, RegistryOptions, Store};
use crate::units::load_dir;
use crate::units::values::reference::ImageSource;

/// Where images live and how to reach registries.
pub struct StoreArgs {
    pub store: PathBuf,
    pub authfile: PathBuf,
    pub insecure: Vec<String>,
}

fn open(args: &StoreArgs) -> Result<Store, String> {
    Store::open(&args.store).map_err(|e| e.to_string())
}

fn source(reference: &str) -> Result<ImageSource, String> {
    let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/"));
    ImageSource::parse(reference, &cwd)
}

fn fail(message: impl std::fmt::Display) -> ExitCode {
    eprintln!("supervisorctl: {message}");
    ExitCode::from(1)
}

pub fn pull(args: &StoreArgs, reference: &str) -> ExitCode {
    let run = || -> Result<(), String> {
        let src = source(reference)?;
        let store = open(args)?;
        let registry = RegistryOptions { insecure: args.insecure.clone(), ..RegistryOptions::default() }
            .with_auth_file(&args.authfile)
            .map_err(|e| e.to_string())?;
        let options = PullOptions { registry, ..PullOptions::default() };
        let reporter = Reporter::new(std::io::stderr().is_terminal());
        let image = store.pull(&src, &options, &reporter).map_err(|e: ImageError| e.to_string())?;
        reporter.finish();
        println!("{}", src);
        println!("digest: {}", image.record.manifest_digest);
        Ok(())
    };
    run().map_or_else(fail, |()| ExitCode::SUCCESS)
}

pub fn images(args: &StoreArgs, json: bool) -> ExitCode {
    let run = || -> Result<(), String> {
        let records = open(args)?.list().map_err(|e| e.to_string())?;
        if json {
            println!("{}", serde_json::to_string_pretty(&records).map_err(|e| e.to_string())?);
            return Ok(());
        }
        print_records(&records);
        Ok(())
    };
    run().map_or_else(fail, |()| ExitCode::SUCCESS)
}

fn print_records(records: &[ImageRecord]) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{:<60} {:<19} {:<12} {:>10}", "REFERENCE", "DIGEST", "PLATFORM", "SIZE");
    for r in records {
        let short = &r.manifest_digest.as_str()[..19];
        let _ = writeln!(out, "{:<60} {short:<19} {:<12} {:>10}", r.reference, r.platform, human_size(r.size));
    }
}

/// `images`, as the running supervisord serves it.
pub fn images_via(client: &Client, json: bool) -> ExitCode {
    let run = || -> Result<(), String> {
        let r = client.request("GET", "/v1/images")?;
        if r.status != 200 {
            return Err(r.error());
        }
        if json {
            print!("{}", String::from_utf8_lossy(&r.body));
            return Ok(());
        }
        let records: Vec<ImageRecord> =
            serde_json::from_slice(&r.body).map_err(|e| format!("bad answer from supervisord: {e}"))?;
        print_records(&records);
        Ok(())
    };
    run().map_or_else(fail, |()| ExitCode::SUCCESS)
}

/// `pull` by the running supervisord (into its store), with the same
/// progress as an offline pull.
pub fn pull_via(client: &Client, reference: &str) -> ExitCode {
    let run = || -> Result<(), String> {
        let src = source(reference)?;
        let reporter = Reporter::new(std::io::stderr().is_terminal());
        let mut pending = Vec::new();
        let mut outcome: Option<Result<serde_json::Value, String>> = None;
        let target = format!("/v1/images/pull?reference={}", encode(&src.to_string()));
        let mut each = |chunk: &[u8]| {
            pending.extend_from_slice(chunk);
            while let Some(i) = pending.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = pending.drain(..=i).collect();
                let Ok(v) = serde_json::from_slice::<serde_json::Value>(&line) else { continue };
                let digest = |x: &serde_json::Value| Digest::parse(x["digest"].as_str().unwrap_or(""));
                if let Some(r) = v.get("resolved") {
                    let layers: Vec<Descriptor> = serde_json::from_value(r["layers"].clone()).unwrap_or_default();
                    if let Ok(m) = Digest::parse(r["manifest"].as_str().unwrap_or("")) {
                        reporter.resolved(r["reference"].as_str().unwrap_or(""), &m, &layers);
                    }
                } else if let Some(b) = v.get("layer_bytes") {
                    if let Ok(d) = digest(b) {
                        reporter.layer_bytes(&d, b["bytes"].as_u64().unwrap_or(0));
                    }
                } else if let Some(l) = v.get("layer_done") {
                    if let Ok(d) = digest(l) {
                        reporter.layer_done(&d, l["cached"].as_bool().unwrap_or(false));
                    }
                } else if let Some(image) = v.get("image") {
                    outcome = Some(Ok(image.clone()));
                } else if let Some(e) = v.get("error") {
                    outcome = Some(Err(e.as_str().unwrap_or("pull failed").to_string()));
                }
            }
        };
        if let Some(r) = client.stream_request("POST", &target, &mut each)? {
            return Err(r.error());
        }
        let image = outcome.ok_or("supervisord ended the pull without an outcome")??;
        reporter.finish();
        println!("{src}");
        println!("digest: {}", image["manifest_digest"].as_str().unwrap_or("?"));
        Ok(())
    };
    run().map_or_else(fail, |()| ExitCode::SUCCESS)
}

pub fn rmi_via(client: &Client, reference: &str) -> ExitCode {
    let run = || -> Result<(), String> {
        let src = source(reference)?;
        let r = client.request("DELETE", &format!("/v1/images/{}", encode(&src.to_string())))?;
        if r.status != 200 {
            return Err(r.error());
        }
        let v = r.json()?;
        println!("removed {} ({} layers, {} blobs)", src, v["layers"], v["blobs"]);
        Ok(())
    };
    run().map_or_else(fail, |()| ExitCode::SUCCESS)
}

/// `prune` by the running supervisord: it keeps the images of every unit
/// it knows (the last good config of an invalid file included).
pub fn prune_via(client: &Client) -> ExitCode {
    let run = || -> Result<(), String> {
        let r = client.request("POST", "/v1/images/prune")?;
        if r.status != 200 {
            return Err(r.error());
        }
        let v = r.json()?;
        let images: Vec<&str> = v["images"].as_array().into_iter().flatten().filter_map(|i| i.as_str()).collect();
        for image in &images {
            println!("removed {image}");
        }
        println!("{} images, {} layers, {} blobs removed", images.len(), v["layers"], v["blobs"]);
        Ok(())
    };
    run().map_or_else(fail, |()| ExitCode::SUCCESS)
}

pub fn rmi(args: &StoreArgs, reference: &str) -> ExitCode {
    let run = || -> Result<(), String> {
        let src = source(reference)?;
        let store = open(args)?;
        let _no_daemon = store.lock_out_daemon("rmi").map_err(|e| e.to_string())?;
        let removed = store.remove(&src.to_string()).map_err(|e| e.to_string())?;
        println!("removed {} ({} layers, {} blobs)", src, removed.layers, removed.blobs);
        Ok(())
    };
    run().map_or_else(fail, |()| ExitCode::SUCCESS)
}

/// Keeps the images that the units in `units` name.
pub fn prune(args: &StoreArgs, units: &Path) -> ExitCode {
    let run = || -> Result<(), String> {
        let set = load_dir(units).map_err(|e| format!("{}: {e}", units.display()))?;
        if !set.errors.is_empty() {
            // An invalid file's image cannot be known, and its last good
            // configuration may still be running from it.
            return Err(format!(
                "{} has invalid unit files (see supervisorctl validate); not pruning, since their images cannot be known",
                units.display()
            ));
        }
        let keep: BTreeSet<String> = set.units.iter().map(|u| u.unit.container.image.to_string()).collect();
        let store = open(args)?;
        // Which images a live supervisord's containers run only it knows.
        let _no_daemon = store.lock_out_daemon("prune").map_err(|e| e.to_string())?;
        let removed = store.prune(&keep, &BTreeSet::new()).map_err(|e| e.to_string())?;
        for image in &removed.images {
            println!("removed {image}");
        }
        println!("{} images, {} layers, {} blobs removed", removed.images.len(), removed.layers, removed.blobs);
        Ok(())
    };
    run().map_or_else(fail, |()| ExitCode::SUCCESS)
}

/// `verify [--repair]` on a store no supervisord uses; `run_dir`: where
/// the containers' records are, if they are to be checked.
pub fn verify(args: &StoreArgs, run_dir: Option<&Path>, repair: bool, json: bool) -> ExitCode {
    let run = || -> Result<Report, String> {
        // As it is: a sweep would hide what killed pulls left.
        let store = Store::open_as_is(&args.store).map_err(|e| e.to_string())?;
        // A running supervisord's pulls and containers are in flight:
        // through it, it knows which (`verify` without --store).
        let _no_daemon = store.lock_out_daemon("verify").map_err(|e| e.to_string())?;
        let containers = Containers {
            layers: crate::supervisor::prepare::containers_dir(&args.store),
            run_dir: run_dir.map(Path::to_path_buf),
            daemon_units: None,
        };
        let options = if repair {
            let registry = RegistryOptions { insecure: args.insecure.clone(), ..RegistryOptions::default() }
                .with_auth_file(&args.authfile)
                .map_err(|e| e.to_string())?;
            Some(PullOptions { registry, ..PullOptions::default() })
        } else {
            None
        };
        store.verify_report(&containers, options.as_ref()).map_err(|e| e.to_string())
    };
    match run() {
        Ok(report) => print_report(&report, repair, json),
        Err(e) => fail(e),
    }
}

/// `verify [--repair]` by the running supervisord.
pub fn verify_via(client: &Client, repair: bool, json: bool) -> ExitCode {
    let run = || -> Result<Report, String> {
        let target = if repair { "/v1/images/verify?repair=true" } else { "/v1/images/verify" };
        let r = client.request("POST", target)?;
        if r.status != 200 {
            return Err(r.error());
        }
        serde_json::from_slice(&r.body).map_err(|e| format!("bad answer from supervisord: {e}"))
    };
    match run() {
        Ok(report) => print_report(&report, repair, json),
        Err(e) => fail(e),
    }
}

/// One line per problem; with a repair, what it did and what is left.
/// Exit 0 only when the store is consistent (after the repair, if any).
fn print_report(report: &Report, repair: bool, json: bool) -> ExitCode {
    if json {
        match serde_json::to_string_pretty(report) {
            Ok(text) => println!("{text}"),
            Err(e) => return fail(e),
        }
    } else {
        let mut out = std::io::stdout().lock();
        for p in &report.problems {
            let _ = writeln!(out, "{p}");
        }
        for line in &report.repaired {
            let _ = writeln!(out, "repaired: {line}");
        }
        if repair {
            for p in &report.remaining {
                let _ = writeln!(out, "not repaired: {p}");
            }
        }
        match (report.problems.len(), report.clean()) {
            (0, _) => eprintln!("the store is consistent"),
            (_, true) => eprintln!("{} problems found and repaired; the store is consistent", report.problems.len()),
            (n, false) if repair => eprintln!("{n} problems found, {} not repaired", report.remaining.len()),
            (n, false) => {
                eprintln!("{n} problems found (supervisorctl verify --repair removes what is half-made or corrupt)")
            }
        }
    }
    if report.clean() { ExitCode::SUCCESS } else { ExitCode::from(1) }
}

pub fn export(args: &StoreArgs, reference: &str, dest: &Path) -> ExitCode {
    let run = || -> Result<(), String> {
        let src = source(reference)?;
        open(args)?.export(&src.to_string(), dest).map_err(|e| e.to_string())
    };
    run().map_or_else(fail, |()| ExitCode::SUCCESS)
}

fn human_size(bytes: u64) -> String {
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
struct Reporter {
    tty: bool,
    start: Instant,
    state: Mutex<BTreeMap<Digest, (u64, u64, &'static str)>>,
}

impl Reporter {
    fn new(tty: bool) -> Reporter {
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

    fn finish(&self) {
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let total: u64 = state.values().map(|s| s.0).sum();
        eprintln!(
            "{} layers, {} fetched in {:.1}s",
            state.len(),
            human_size(total),
            self.start.elapsed().as_secs_f64()
        );
    }
}

impl Progress for Reporter {
    fn resolved(&self, reference: &str, manifest: &Digest, layers: &[Descriptor]) {
        eprintln!("{reference}: {manifest}, {} layers", layers.len());
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
            eprintln!("layer {} ({}): {status}", layer, human_size(size));
        }
    }
}
