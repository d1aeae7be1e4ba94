//! Everything a unit's container needs before its process is created: the
//! image (from the store, pulled by the unit's policy), a fresh writable
//! layer, volumes (named ones seeded from the image), and the runtime spec
//! built from unit and image. Shared by the daemon and `runtime run-unit`.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use super::spec::{SpecContext, SpecError, build, rlimit_name};
use crate::names::reference::ImageSource;
use crate::runtime::cgroups::Resources;
use crate::runtime::container::{Plan, PlanError, hard_limit};
use crate::runtime::image::export::seed_volume;
use crate::runtime::image::{Digest, Image, ImageError, Progress, PullOptions, Store};
use crate::units::model::{Network, PullPolicy, Seccomp, Unit};
use crate::units::values::limits::ULIMIT_NAMES;
use crate::units::values::mounts::VolumeSource;
use crate::units::values::signal::Signal;

/// Why a unit's container cannot be prepared.
#[derive(Debug, thiserror::Error)]
pub enum PrepareError {
    #[error("{0}")]
    Image(#[from] ImageError),
    #[error("{reference}: not in the store, and pull = \"never\"")]
    NotStored { reference: String },
    /// The image a unit is pinned to (the one it ran, or rolls back to)
    /// has been removed from the store.
    #[error("image {digest} (the image this unit ran before, {reference}) is no longer in the store")]
    PinnedGone { digest: Digest, reference: String },
    #[error("ports = [\"{port}\"]: ports are published on the bridge network only")]
    PortsNeedBridge { port: String },
    #[error("{}: {source}", path.display())]
    Dir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("volume {name}: {source}")]
    Volume {
        name: String,
        #[source]
        source: std::io::Error,
    },
    #[error("volume {name}: {source}")]
    Seed {
        name: String,
        #[source]
        source: ImageError,
    },
    #[error("read our capabilities: {0}")]
    OwnCaps(#[source] caps::errors::CapsError),
    #[error(transparent)]
    Spec(#[from] SpecError),
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error("internal error adding the mount {destination}: {source}")]
    Mount {
        destination: String,
        #[source]
        source: oci_spec::OciSpecError,
    },
}

/// A container ready to be created.
pub struct Prepared {
    /// What its first process will do, built once.
    pub plan: Plan,
    /// Its directory: writable layer and mount point.
    pub dir: PathBuf,
    /// The cgroup limits.
    pub resources: Resources,
    /// The signal that asks it to stop: the unit's, the image's, SIGTERM.
    pub stop_signal: i32,
    /// The image's digest (its manifest's), for status and inspect.
    pub image_digest: String,
}

/// The image of `unit`, from the store or pulled, as its policy says.
/// With a `pin` (an image ID: the image the unit ran, or the one it rolls
/// back to) that very image is used whatever the policy says, and never
/// pulled: a tag may name another image by now. A `dir:` image is used in
/// place and has no ID to pin.
pub fn image(
    unit: &Unit,
    store: &Store,
    options: &PullOptions,
    progress: &dyn Progress,
    pin: Option<&Digest>,
) -> Result<Image, PrepareError> {
    let reference = unit.container.image.to_string();
    if let Some(digest) = pin.filter(|_| !is_dir(unit)) {
        let found = match store.image_by_digest(digest) {
            Ok(found) => found,
            // Recorded with its blobs but without (some of) its layers.
            Err(_) => store.restore_by_digest(digest, options, progress)?,
        };
        return found.ok_or_else(|| PrepareError::PinnedGone { digest: digest.clone(), reference });
    }
    let stored = match store.image(&reference) {
        Ok(image) => image,
        // Recorded with its blobs but without (some of) its layers (a
        // seeded appliance store): made from the blobs, no source needed.
        Err(_) if unit.container.pull != PullPolicy::Always => store.restore(&reference, options, progress)?,
        Err(_) => None,
    };
    match (unit.container.pull, stored) {
        (PullPolicy::Missing | PullPolicy::Never, Some(image)) => Ok(image),
        (PullPolicy::Never, None) => Err(PrepareError::NotStored { reference }),
        _ => Ok(store.pull(&unit.container.image, options, progress)?),
    }
}

/// Whether `unit`'s image must be fetched before it can start (for the
/// `pulling` state). A pinned image never is (see [`image`]).
pub fn needs_pull(unit: &Unit, store: &Store, pin: Option<&Digest>) -> bool {
    if pin.is_some() && !is_dir(unit) {
        return false;
    }
    let reference = unit.container.image.to_string();
    unit.container.pull == PullPolicy::Always || store.image(&reference).ok().flatten().is_none()
}

fn is_dir(unit: &Unit) -> bool {
    matches!(unit.container.image, ImageSource::Dir { .. })
}

/// The container directory of `name`: its writable layer and mount point.
pub fn container_dir(state_dir: &Path, name: &str) -> PathBuf {
    containers_dir(state_dir).join(name)
}

/// Where the containers' directories are (for `verify`).
pub fn containers_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("containers")
}

/// What no retry can mend: a unit asking for what is not built. Checked
/// before any start, so that such a unit is `failed` at once instead of
/// retried by its restart policy.
pub fn unsupported(unit: &Unit) -> Result<(), PrepareError> {
    if let (Some(p), false) = (unit.container.ports.first(), unit.container.network == Network::Bridge) {
        return Err(PrepareError::PortsNeedBridge { port: p.to_string() });
    }
    Ok(())
}

/// Host files a container gets read-only: `(source, destination)`.
pub type HostFiles<'a> = &'a [(PathBuf, &'static str)];

/// Prepares `unit`'s container `name` (the unit's name, or a second
/// container's beside it) on `image`. `notify_dir`: the directory of
/// a notify unit's socket, mounted into the container; `files`: host
/// files mounted read-only (the bridge's hosts and resolv.conf).
pub fn prepare(
    unit: &Unit,
    name: &str,
    image: &Image,
    state_dir: &Path,
    notify_dir: Option<&Path>,
    files: HostFiles,
    join_network: Option<&Path>,
) -> Result<Prepared, PrepareError> {
    unsupported(unit)?;
    // Every start begins from the image: a fresh writable layer.
    let dir = container_dir(state_dir, name);
    if dir.exists() {
        fs::remove_dir_all(&dir).map_err(|source| PrepareError::Dir { path: dir.clone(), source })?;
    }
    let (upper, work, rootfs) = (dir.join("upper"), dir.join("work"), dir.join("rootfs"));
    for d in [&upper, &work, &rootfs] {
        fs::create_dir_all(d).map_err(|source| PrepareError::Dir { path: d.clone(), source })?;
    }
    // The writable layer's top is the container's `/`: 0755 as in Docker,
    // whatever the daemon's umask (0077), or a non-root user in the
    // container could not reach its own root.
    set_mode(&upper, 0o755).map_err(|source| PrepareError::Dir { path: upper.clone(), source })?;
    let volumes = state_dir.join("volumes");
    for v in &unit.container.volumes {
        match &v.source {
            // Missing sources are made, as docker run -v does.
            VolumeSource::Bind(p) => {
                create_dirs_open(Path::new(p)).map_err(|source| PrepareError::Volume { name: p.clone(), source })?
            }
            // A new named volume starts with the image's content at its
            // mount point, as Docker's do.
            // Seeded aside and renamed into place: a kill mid-seed leaves
            // no half-seeded volume to be taken for a seeded one.
            VolumeSource::Named(n) => {
                seed_volume(&image.layer_dirs, &v.target, &volumes.join(n))
                    .map_err(|source| PrepareError::Seed { name: n.clone(), source })?;
            }
        }
    }

    let text = |p: &str| image.read_file(p, 1 << 20).ok().flatten().map(|b| String::from_utf8_lossy(&b).into_owned());
    let (passwd, group) = (text("/etc/passwd"), text("/etc/group"));
    let limits = hard_limits();
    let own_caps: Vec<String> = caps::read(None, caps::CapSet::Permitted)
        .map_err(PrepareError::OwnCaps)?
        .iter()
        .map(|c| c.to_string())
        .collect();
    let ctx = SpecContext {
        rootfs: &rootfs,
        passwd: passwd.as_deref(),
        group: group.as_deref(),
        volumes: &volumes,
        hard_limits: &limits,
        device: &device,
        join_network,
        own_caps: Some(&own_caps),
    };
    let mut spec = build(unit, &image.config, &ctx)?;
    if let Some(dir) = notify_dir {
        add_notify_socket(&mut spec, dir)?;
    }
    for (source, dest) in files {
        add_bind(&mut spec, source, dest, &["rbind", "ro", "nosuid", "nodev", "noexec"])?;
    }
    let mut plan = Plan::from_spec(&spec, &dir)?.with_overlay(image.layer_dirs.clone(), upper, work);
    if unit.container.seccomp == Seccomp::Default && !unit.container.privileged {
        plan = plan.with_default_seccomp();
    }
    let resources = plan.resources(&spec)?;
    let image_signal = image.config.config.stop_signal.as_deref().and_then(|s| Signal::parse(s).ok());
    let stop_signal = unit.stop.signal.or(image_signal).unwrap_or(Signal::TERM).number();
    Ok(Prepared { plan, dir, resources, stop_signal, image_digest: image.record.manifest_digest.to_string() })
}

/// The notify socket alone (not its directory: the container must not
/// write into the host's run directory) mounted at [`super::notify::SOCKET`],
/// and `NOTIFY_SOCKET` naming it.
fn add_notify_socket(spec: &mut oci_spec::runtime::Spec, dir: &Path) -> Result<(), PrepareError> {
    let socket = dir.join(super::notify::SOCKET_FILE);
    add_bind(spec, &socket, super::notify::SOCKET, &["bind", "nosuid", "nodev", "noexec"])?;
    if let Some(process) = spec.process_mut() {
        let mut env = process.env().clone().unwrap_or_default();
        env.retain(|e| !e.starts_with("NOTIFY_SOCKET="));
        env.push(format!("NOTIFY_SOCKET={}", super::notify::SOCKET));
        process.set_env(Some(env));
    }
    Ok(())
}

/// A bind mount of the host's `source` at `dest`, unless the unit mounts
/// something there itself.
fn add_bind(
    spec: &mut oci_spec::runtime::Spec,
    source: &Path,
    dest: &str,
    options: &[&str],
) -> Result<(), PrepareError> {
    use oci_spec::runtime::MountBuilder;
    let mut mounts = spec.mounts().clone().unwrap_or_default();
    if mounts.iter().any(|m| m.destination() == Path::new(dest)) {
        return Ok(());
    }
    let mount = MountBuilder::default()
        .destination(dest)
        .typ("bind")
        .source(source)
        .options(options.iter().map(|o| o.to_string()).collect::<Vec<_>>())
        .build()
        .map_err(|source| PrepareError::Mount { destination: dest.to_string(), source })?;
    mounts.push(mount);
    spec.set_mounts(Some(mounts));
    Ok(())
}

/// Makes `path` and its missing parents as `docker run -v` does: each
/// directory made `0755`, whatever the daemon's umask (`0077`), so that
/// host users and services that could reach the parent still can.
fn create_dirs_open(path: &Path) -> std::io::Result<()> {
    let missing: Vec<&Path> = path.ancestors().take_while(|p| !p.as_os_str().is_empty() && !p.exists()).collect();
    for dir in missing.into_iter().rev() {
        match fs::create_dir(dir) {
            Ok(()) => set_mode(dir, 0o755)?,
            // Made meanwhile by someone else: theirs, as it is.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Our own hard limits, which no container may exceed.
fn set_mode(path: &Path, mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
}

fn hard_limits() -> BTreeMap<String, u64> {
    ULIMIT_NAMES.iter().filter_map(|name| Some((name.to_string(), hard_limit(&rlimit_name(name))?))).collect()
}

fn device(path: &str) -> std::io::Result<(char, u64, u64)> {
    let md = fs::metadata(path)?;
    let ft = md.file_type();
    let kind = if ft.is_char_device() {
        'c'
    } else if ft.is_block_device() {
        'b'
    } else {
        return Err(std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a device"));
    };
    Ok((kind, libc::major(md.rdev()).into(), libc::minor(md.rdev()).into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_bind_source_and_its_new_parents_are_made_0755_whatever_the_umask() {
        let t = tempfile::tempdir().unwrap();
        set_mode(t.path(), 0o700).unwrap();
        let old = nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o077));
        let made = create_dirs_open(&t.path().join("srv/data/app"));
        nix::sys::stat::umask(old);
        made.unwrap();
        let mode = |p: &str| fs::metadata(t.path().join(p)).unwrap().permissions().mode() & 0o7777;
        assert_eq!([mode("srv"), mode("srv/data"), mode("srv/data/app")], [0o755; 3]);
        // What was there is left as it was.
        assert_eq!(fs::metadata(t.path()).unwrap().permissions().mode() & 0o7777, 0o700);
        create_dirs_open(&t.path().join("srv/data/app")).unwrap();
    }
}
