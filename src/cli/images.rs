//! `supervisorctl pull|images|rmi|prune|export|verify`, on a store directory.
//!
//! These work without a daemon, on `--store DIR` (the daemon's
//! `--state-dir`, same layout), safely beside a running daemon thanks to
//! the store's locks: this is how an appliance image is seeded at build
//! time.

use std::collections::BTreeSet;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use super::client::{Client, encode};
use super::control::fail;
use super::progress::{Lines, Reporter, human_size};
use crate::runtime::image::load::loaded_reference;
use crate::runtime::image::source::ArchiveFormat;
use crate::runtime::image::verify::{Containers, Report};
use crate::runtime::image::{ImageError, ImageRecord, PullOptions, RegistryOptions, Store};
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
        outln!("{}", src);
        outln!("digest: {}", image.record.manifest_digest);
        Ok(())
    };
    run().map_or_else(fail, |()| ExitCode::SUCCESS)
}

pub fn images(args: &StoreArgs, json: bool) -> ExitCode {
    let run = || -> Result<(), String> {
        let records = open(args)?.list().map_err(|e| e.to_string())?;
        if json {
            outln!("{}", serde_json::to_string_pretty(&records).map_err(|e| e.to_string())?);
            return Ok(());
        }
        print_records(&records);
        Ok(())
    };
    run().map_or_else(fail, |()| ExitCode::SUCCESS)
}

fn print_records(records: &[ImageRecord]) {
    outln!("{:<60} {:<19} {:<12} {:>10}", "REFERENCE", "DIGEST", "PLATFORM", "SIZE");
    for r in records {
        let short = &r.manifest_digest.as_str()[..19];
        outln!("{:<60} {short:<19} {:<12} {:>10}", r.reference, r.platform, human_size(r.size));
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
            out!("{}", String::from_utf8_lossy(&r.body));
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
        let mut lines = Lines::new(&reporter, "image");
        let target = format!("/v1/images/pull?reference={}", encode(&src.to_string()));
        if let Some(r) = client.stream_request("POST", &target, &mut |chunk| lines.feed(chunk))? {
            return Err(r.error());
        }
        let image = lines.outcome("pull")?;
        reporter.finish();
        outln!("{src}");
        outln!("digest: {}", image["manifest_digest"].as_str().unwrap_or("?"));
        Ok(())
    };
    run().map_or_else(fail, |()| ExitCode::SUCCESS)
}

/// `load` offline: the images of an archive into the store.
pub fn load(args: &StoreArgs, file: &Path, name: Option<&str>) -> ExitCode {
    let run = || -> Result<(), String> {
        check_name(name)?;
        let store = open(args)?;
        let reporter = Reporter::new(std::io::stderr().is_terminal());
        let images = store.load(file, name, &PullOptions::default(), &reporter).map_err(|e| e.to_string())?;
        reporter.finish();
        for image in images {
            outln!("Loaded image: {}", image.record.reference);
        }
        Ok(())
    };
    run().map_or_else(fail, |()| ExitCode::SUCCESS)
}

/// `load` by the running supervisord: the archive streamed to it.
pub fn load_via(client: &Client, file: &Path, name: Option<&str>) -> ExitCode {
    let run = || -> Result<(), String> {
        check_name(name)?;
        let mut archive = std::fs::File::open(file).map_err(|e| format!("{}: {e}", file.display()))?;
        let meta = archive.metadata().map_err(|e| format!("{}: {e}", file.display()))?;
        if !meta.is_file() {
            // Its length is the request's: a pipe has none to give.
            return Err(format!("{}: not a regular file (save a stream to a file first)", file.display()));
        }
        let length = meta.len();
        let reporter = Reporter::new(std::io::stderr().is_terminal());
        let mut lines = Lines::new(&reporter, "images");
        let target = match name {
            Some(n) => format!("/v1/images/load?name={}", encode(n)),
            None => "/v1/images/load".to_string(),
        };
        if let Some(r) = client.upload(&target, &mut archive, length, &mut |chunk| lines.feed(chunk))? {
            return Err(r.error());
        }
        let images = lines.outcome("load")?;
        reporter.finish();
        for image in images.as_array().into_iter().flatten() {
            outln!("Loaded image: {}", image["reference"].as_str().unwrap_or("?"));
        }
        Ok(())
    };
    run().map_or_else(fail, |()| ExitCode::SUCCESS)
}

/// A name given to `load` must be an image reference with a tag.
fn check_name(name: Option<&str>) -> Result<(), String> {
    match name.map(loaded_reference) {
        Some(Err(e)) => Err(format!("--name: {e}")),
        _ => Ok(()),
    }
}

pub fn rmi_via(client: &Client, reference: &str) -> ExitCode {
    let run = || -> Result<(), String> {
        let src = source(reference)?;
        let r = client.request("DELETE", &format!("/v1/images/{}", encode(&src.to_string())))?;
        if r.status != 200 {
            return Err(r.error());
        }
        let v = r.json()?;
        outln!("removed {} ({} layers, {} blobs)", src, v["layers"], v["blobs"]);
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
            outln!("removed {image}");
        }
        outln!("{} images, {} layers, {} blobs removed", images.len(), v["layers"], v["blobs"]);
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
        outln!("removed {} ({} layers, {} blobs)", src, removed.layers, removed.blobs);
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
            outln!("removed {image}");
        }
        outln!("{} images, {} layers, {} blobs removed", removed.images.len(), removed.layers, removed.blobs);
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
            Ok(text) => outln!("{text}"),
            Err(e) => return fail(e),
        }
    } else {
        for p in &report.problems {
            outln!("{p}");
        }
        for line in &report.repaired {
            outln!("repaired: {line}");
        }
        if repair {
            for p in &report.remaining {
                outln!("not repaired: {p}");
            }
        }
        match (report.problems.len(), report.clean()) {
            (0, _) => errln!("the store is consistent"),
            (_, true) => errln!("{} problems found and repaired; the store is consistent", report.problems.len()),
            (n, false) if repair => errln!("{n} problems found, {} not repaired", report.remaining.len()),
            (n, false) => {
                errln!("{n} problems found (supervisorctl verify --repair removes what is half-made or corrupt)")
            }
        }
    }
    if report.clean() { ExitCode::SUCCESS } else { ExitCode::from(1) }
}

/// The formats of `save`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SaveFormat {
    /// A tar of an OCI image layout.
    OciArchive,
    /// `docker save`'s format.
    DockerArchive,
}

pub fn save(args: &StoreArgs, reference: &str, file: &Path, format: SaveFormat) -> ExitCode {
    let run = || -> Result<(), String> {
        let src = source(reference)?;
        let format = match format {
            SaveFormat::OciArchive => ArchiveFormat::Oci,
            SaveFormat::DockerArchive => ArchiveFormat::Docker,
        };
        open(args)?.save(&src.to_string(), file, format).map_err(|e| e.to_string())
    };
    run().map_or_else(fail, |()| ExitCode::SUCCESS)
}

pub fn export(args: &StoreArgs, reference: &str, dest: &Path) -> ExitCode {
    let run = || -> Result<(), String> {
        let src = source(reference)?;
        open(args)?.export(&src.to_string(), dest).map_err(|e| e.to_string())
    };
    run().map_or_else(fail, |()| ExitCode::SUCCESS)
}
