//! `supervisorctl cp`: files between the host and a unit's running
//! container, with `docker cp`'s rules for what a destination means
//! (docs/api.md, "cp"). The daemon only packs a path into a tar and
//! extracts a tar into a directory; which name the copy takes is decided
//! here, from what is at the destination. What comes out of a container is
//! written into the host through `runtime::copy::extract`, which no entry
//! can leave.

use std::fs::File;
use std::io::{Seek, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use super::client::{Client, encode};
use super::control::fail;
use crate::runtime::copy::{Root, base_name, extract};

/// One side of a copy.
#[derive(Debug, PartialEq, Eq)]
pub enum Place {
    /// `-`: a tar on standard input or output.
    Stream,
    Host(PathBuf),
    /// `UNIT:PATH`.
    Unit(String, String),
}

/// `UNIT:PATH`, `-`, or a host path (one with a `:` is written `./a:b`, as
/// for `docker cp`).
pub fn place(arg: &str) -> Place {
    if arg == "-" {
        return Place::Stream;
    }
    match arg.split_once(':') {
        Some((unit, path)) if !unit.is_empty() && !unit.contains('/') && !unit.starts_with('.') => {
            let path = if path.starts_with('/') { path.to_string() } else { format!("/{path}") };
            Place::Unit(unit.to_string(), path)
        }
        _ => Place::Host(PathBuf::from(arg)),
    }
}

/// Where a copy goes: the existing directory it is extracted into and
/// the name its root takes there (empty: a directory's entries go
/// straight into it).
#[derive(Debug, PartialEq, Eq)]
pub struct Target {
    pub dir: String,
    pub name: String,
}

/// What is at a destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Found {
    Missing,
    Dir,
    File,
}

/// `docker cp`'s rules: `src` (its text, and whether it is a directory)
/// to `dest` (its text, and what is there). Paths are `/`-separated text.
pub fn target(src: &str, src_is_dir: bool, dest: &str, found: Found) -> Result<Target, String> {
    let contents = src_is_dir && (src.ends_with("/.") || src == ".");
    if src.ends_with('/') && !src_is_dir {
        return Err(format!("{src}: not a directory"));
    }
    let src_name = String::from_utf8_lossy(base_name(src).as_bytes()).into_owned();
    let (parent, last) = split(dest);
    match found {
        Found::Dir if contents => Ok(Target { dir: dest.to_string(), name: String::new() }),
        Found::Dir => Ok(Target { dir: dest.to_string(), name: src_name }),
        Found::File if src_is_dir => Err(format!("cannot copy a directory to a file: {dest}")),
        Found::File => Ok(Target { dir: parent, name: last }),
        Found::Missing if dest.ends_with('/') && !src_is_dir => {
            Err(format!("{dest}: no such directory (the destination directory must exist)"))
        }
        Found::Missing => Ok(Target { dir: parent, name: last }),
    }
}

/// A path's parent and last component (`/a/b/` → `/a`, `b`).
fn split(path: &str) -> (String, String) {
    let trimmed = path.trim_end_matches('/');
    match trimmed.rsplit_once('/') {
        Some(("", last)) if path.starts_with('/') => ("/".into(), last.into()),
        Some((parent, last)) => (parent.into(), last.into()),
        None => (".".into(), trimmed.into()),
    }
}

pub fn cp(client: &Client, src: &str, dest: &str, follow: bool) -> ExitCode {
    let result = match (place(src), place(dest)) {
        (Place::Unit(unit, path), Place::Stream) => out_to_stream(client, &unit, &path, follow),
        (Place::Unit(unit, path), Place::Host(dest)) => out_to_host(client, &unit, &path, &dest, follow),
        (Place::Stream, Place::Unit(unit, path)) => in_from_stream(client, &unit, &path),
        (Place::Host(src), Place::Unit(unit, path)) => in_from_host(client, &src, &unit, &path, follow),
        (Place::Unit(..), Place::Unit(..)) => Err("copying between containers is not supported".into()),
        _ => Err("one of SRC and DEST must be UNIT:PATH".into()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(e),
    }
}

fn archive_target(unit: &str, path: &str, follow: bool, name: Option<&str>) -> String {
    let mut t = format!("/v1/units/{}/archive?path={}", encode(unit), encode(path));
    if follow {
        t.push_str("&follow=1");
    }
    if let Some(n) = name {
        t.push_str(&format!("&name={}", encode(n)));
    }
    t
}

/// What is at `path` in the unit's container; None when nothing.
fn stat_in(client: &Client, unit: &str, path: &str, follow: bool) -> Result<Option<serde_json::Value>, String> {
    let mut t = format!("/v1/units/{}/stat?path={}", encode(unit), encode(path));
    if follow {
        t.push_str("&follow=1");
    }
    let r = client.request("GET", &t)?;
    match r.status {
        200 => r.json().map(Some),
        404 if r.error().contains("no such file or directory") => Ok(None),
        _ => Err(r.error()),
    }
}

fn out_to_stream(client: &Client, unit: &str, path: &str, follow: bool) -> Result<(), String> {
    let mut body = match client.download(&archive_target(unit, path, follow, None))? {
        Ok(b) => b,
        Err(r) => return Err(r.error()),
    };
    let mut stdout = std::io::stdout().lock();
    std::io::copy(&mut body, &mut stdout).map_err(|e| format!("{unit}:{path}: {e}"))?;
    stdout.flush().map_err(|e| format!("standard output: {e}"))
}

fn out_to_host(client: &Client, unit: &str, path: &str, dest: &Path, follow: bool) -> Result<(), String> {
    let Some(st) = stat_in(client, unit, path, follow)? else {
        return Err(format!("{unit}:{path}: no such file or directory"));
    };
    let src_is_dir = st["kind"] == "directory";
    let found = match std::fs::metadata(dest) {
        Ok(m) if m.is_dir() => Found::Dir,
        Ok(_) => Found::File,
        Err(_) => Found::Missing,
    };
    let dest_text = dest.to_string_lossy();
    let t = target(path, src_is_dir, &dest_text, found)?;
    let dir = Path::new(&t.dir);
    if !dir.is_dir() {
        return Err(format!("{}: no such directory", dir.display()));
    }
    let mut body = match client.download(&archive_target(unit, path, follow, Some(&t.name)))? {
        Ok(b) => b,
        Err(r) => return Err(r.error()),
    };
    let made = extract(dir, &mut body).map_err(|e| format!("copy {unit}:{path} to {}: {e}", dest.display()))?;
    if made.devices_left_out > 0 {
        eprintln!(
            "supervisorctl: {unit}:{path}: {} device nodes left out (a container's are not made on the host)",
            made.devices_left_out
        );
    }
    Ok(())
}

/// An anonymous file in the temporary directory, for a tar whose length
/// must be known before it is sent.
fn spool() -> Result<File, String> {
    let dir = std::env::temp_dir();
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .mode(0o600)
        .custom_flags(libc::O_TMPFILE)
        .open(&dir)
        .map_err(|e| format!("a temporary file in {}: {e}", dir.display()))
}

fn send(client: &Client, unit: &str, dir: &str, mut tar: File) -> Result<(), String> {
    let length = tar.stream_position().map_err(|e| e.to_string())?;
    tar.rewind().map_err(|e| e.to_string())?;
    let target = format!("/v1/units/{}/archive?path={}", encode(unit), encode(dir));
    let r = client.send_body("PUT", &target, &mut tar, length)?;
    if r.status == 200 { Ok(()) } else { Err(r.error()) }
}

fn in_from_stream(client: &Client, unit: &str, path: &str) -> Result<(), String> {
    match stat_in(client, unit, path, true)? {
        Some(st) if st["kind"] == "directory" => {}
        Some(_) => return Err(format!("{unit}:{path}: not a directory (a tar from standard input goes into one)")),
        None => return Err(format!("{unit}:{path}: no such directory")),
    }
    let mut tar = spool()?;
    std::io::copy(&mut std::io::stdin().lock(), &mut tar).map_err(|e| format!("standard input: {e}"))?;
    send(client, unit, path, tar)
}

fn in_from_host(client: &Client, src: &Path, unit: &str, path: &str, follow: bool) -> Result<(), String> {
    let meta = if follow { std::fs::metadata(src) } else { std::fs::symlink_metadata(src) };
    let meta = meta.map_err(|e| format!("{}: {e}", src.display()))?;
    let found = match stat_in(client, unit, path, true)? {
        Some(st) if st["kind"] == "directory" => Found::Dir,
        Some(_) => Found::File,
        None => Found::Missing,
    };
    let src_text = src.to_string_lossy();
    let t = target(&src_text, meta.is_dir(), path, found)?;
    // The host's files, packed as the daemon packs a container's: the
    // host's root is the root here.
    let absolute = std::path::absolute(src).map_err(|e| format!("{}: {e}", src.display()))?;
    let host = Root::at(Path::new("/"), "host").map_err(|e| e.to_string())?;
    let mut tar = spool()?;
    let text = absolute.to_string_lossy();
    host.pack(&text, follow, t.name.as_bytes(), &mut tar).map_err(|e| e.to_string())?;
    send(client, unit, &t.dir, tar)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn places_are_unit_paths_streams_or_host_paths() {
        assert_eq!(place("web:/etc/motd"), Place::Unit("web".into(), "/etc/motd".into()));
        assert_eq!(place("web:tmp"), Place::Unit("web".into(), "/tmp".into()));
        assert_eq!(place("-"), Place::Stream);
        assert_eq!(place("./a:b"), Place::Host("./a:b".into()));
        assert_eq!(place("/x/a:b"), Place::Host("/x/a:b".into()));
    }

    #[test]
    fn destinations_mean_what_docker_cp_says() {
        let t = |dir: &str, name: &str| Ok(Target { dir: dir.into(), name: name.into() });
        // A file: into a directory under its own name, over a file, or as
        // a new file named by the destination.
        assert_eq!(target("/etc/motd", false, "/tmp", Found::Dir), t("/tmp", "motd"));
        assert_eq!(target("/etc/motd", false, "/tmp/x", Found::File), t("/tmp", "x"));
        assert_eq!(target("/etc/motd", false, "/tmp/new", Found::Missing), t("/tmp", "new"));
        assert_eq!(target("motd", false, "new", Found::Missing), t(".", "new"));
        assert_eq!(target("/motd", false, "/new", Found::Missing), t("/", "new"));
        assert!(target("/etc/motd", false, "/tmp/new/", Found::Missing).unwrap_err().contains("must exist"));
        assert!(target("/etc/motd/", false, "/tmp", Found::Dir).unwrap_err().contains("not a directory"));
        // A directory: into one under its own name, its contents with
        // `/.`, or as a new directory; never over a file.
        assert_eq!(target("/srv/data", true, "/tmp", Found::Dir), t("/tmp", "data"));
        assert_eq!(target("/srv/data/", true, "/tmp", Found::Dir), t("/tmp", "data"));
        assert_eq!(target("/srv/data/.", true, "/tmp", Found::Dir), t("/tmp", ""));
        assert_eq!(target("/srv/data", true, "/tmp/copy", Found::Missing), t("/tmp", "copy"));
        assert_eq!(target("/srv/data/.", true, "/tmp/copy", Found::Missing), t("/tmp", "copy"));
        assert!(target("/srv/data", true, "/tmp/x", Found::File).unwrap_err().contains("directory to a file"));
    }
}
