//! `supervisorctl push REF DEST`: an image of the store to a registry, by
//! the running supervisord (its store, its credentials) or on `--store
//! DIR` without one, with the progress of `pull`.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use super::client::{Client, encode};
use super::control::fail;
use super::images::StoreArgs;
use super::progress::{Lines, Reporter};
use crate::names::reference::ImageRef;
use crate::runtime::image::{PushOptions, PushReport, RegistryOptions, Store};
use crate::units::values::reference::ImageSource;
use crate::units::values::size::parse_size;

/// The store's name of the image (normalized as `pull` records it), the
/// destination, and the chunk size in bytes.
fn arguments(reference: &str, dest: &str, chunk_size: &str) -> Result<(String, ImageRef, u64), String> {
    let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/"));
    let reference = ImageSource::parse(reference, &cwd)?.to_string();
    let dest = ImageRef::parse(dest).map_err(|e| format!("{dest}: {e}"))?;
    if dest.digest.is_some() {
        return Err(format!("{dest}: push to a tag (REGISTRY/NAME:TAG), not a digest"));
    }
    let chunk = parse_size(chunk_size).map_err(|e| format!("--chunk-size: {e}"))?;
    if chunk == 0 {
        return Err("--chunk-size: must be above 0".to_string());
    }
    Ok((reference, dest, chunk))
}

fn print(report: &PushReport, json: bool) -> Result<(), String> {
    if json {
        outln!("{}", serde_json::to_string_pretty(report).map_err(|e| e.to_string())?);
    } else {
        outln!("{}", report.destination);
        outln!("digest: {}", report.manifest_digest);
    }
    Ok(())
}

/// `push` on a store directory, with `--authfile`'s credentials.
pub fn push(args: &StoreArgs, reference: &str, dest: &str, chunk_size: &str, json: bool) -> ExitCode {
    let run = || -> Result<(), String> {
        let (reference, dest, chunk_size) = arguments(reference, dest, chunk_size)?;
        let store = Store::open(&args.store).map_err(|e| e.to_string())?;
        let registry = RegistryOptions { insecure: args.insecure.clone(), ..RegistryOptions::default() }
            .with_auth_file(&args.authfile)
            .map_err(|e| e.to_string())?;
        let options = PushOptions { registry, chunk_size, ..PushOptions::default() };
        let reporter = Reporter::pushing(std::io::stderr().is_terminal());
        let report = store.push(&reference, &dest, &options, &reporter).map_err(|e| e.to_string())?;
        reporter.finish();
        print(&report, json)
    };
    run().map_or_else(fail, |()| ExitCode::SUCCESS)
}

/// `push` by the running supervisord, from its store.
pub fn push_via(client: &Client, reference: &str, dest: &str, chunk_size: &str, json: bool) -> ExitCode {
    let run = || -> Result<(), String> {
        let (reference, dest, chunk_size) = arguments(reference, dest, chunk_size)?;
        let reporter = Reporter::pushing(std::io::stderr().is_terminal());
        let mut lines = Lines::new(&reporter, "pushed");
        let target = format!(
            "/v1/images/push?reference={}&dest={}&chunk_size={chunk_size}",
            encode(&reference),
            encode(&dest.to_string())
        );
        if let Some(r) = client.stream_request("POST", &target, &mut |chunk| lines.feed(chunk))? {
            return Err(r.error());
        }
        let report: PushReport =
            serde_json::from_value(lines.outcome("push")?).map_err(|e| format!("bad answer from supervisord: {e}"))?;
        reporter.finish();
        print(&report, json)
    };
    run().map_or_else(fail, |()| ExitCode::SUCCESS)
}
