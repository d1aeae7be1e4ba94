//! Everything a unit's container needs before its process is created: the
//! image (from the store, pulled by the unit's policy), a fresh writable
//! layer, volumes (named ones seeded from the image), and the runtime spec
//! built from unit and image. Shared by the daemon and `runtime run-unit`.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use super::spec::{SpecContext, build, rlimit_name};
use crate::runtime::cgroups::Resources;
use crate::runtime::container::bundle::resources;
use crate::runtime::container::helper::{SpawnRequest, apply_default_seccomp};
use crate::runtime::container::plan::{OverlayPlan, Plan, from_spec, rlimit_resource};
use crate::runtime::image::export::seed_from_layers;
use crate::runtime::image::{Image, Progress, PullOptions, Store};
use crate::units::model::{Network, PullPolicy, Seccomp, Unit};
use crate::units::values::limits::ULIMIT_NAMES;
use crate::units::values::mounts::VolumeSource;
use crate::units::values::signal::Signal;

/// A container ready to be created.
pub struct Prepared {
    /// For the spawn helper (`cgroup` still unset).
    pub request: SpawnRequest,
    /// The plan the request makes (for an in-process start).
    pub plan: Plan,
    /// The cgroup limits.
    pub resources: Resources,
    /// The signal that asks it to stop: the unit's, the image's, SIGTERM.
    pub stop_signal: i32,
    /// The image's digest (its manifest's), for status and inspect.
    pub image_digest: String,
}

/// The image of `unit`, from the store or pulled, as its policy says.
pub fn image(unit: &Unit, store: &Store, options: &PullOptions, progress: &dyn Progress) -> Result<Image, String> {
    let reference = unit.container.image.to_string();
    let stored = match store.image(&reference) {
        Ok(image) => image,
        // Recorded with its blobs but without (some of) its layers (a
        // seeded appliance store): made from the blobs, no source needed.
        Err(_) if unit.container.pull != PullPolicy::Always => {
            store.restore(&reference, options, progress).map_err(|e| e.to_string())?
        }
        Err(_) => None,
    };
    match (unit.container.pull, stored) {
        (PullPolicy::Missing | PullPolicy::Never, Some(image)) => Ok(image),
        (PullPolicy::Never, None) => Err(format!("{reference}: not in the store, and pull = \"never\"")),
        _ => store.pull(&unit.container.image, options, progress).map_err(|e| e.to_string()),
    }
}

/// Whether `unit`'s image must be fetched before it can start (for the
/// `pulling` state).
pub fn needs_pull(unit: &Unit, store: &Store) -> bool {
    let reference = unit.container.image.to_string();
    unit.container.pull == PullPolicy::Always || store.image(&reference).ok().flatten().is_none()
}

/// The container directory of `name`: its writable layer and mount point.
pub fn container_dir(state_dir: &Path, name: &str) -> PathBuf {
    state_dir.join("containers").join(name)
}

/// What no retry can mend: a unit asking for what is not built. Checked
/// before any start, so that such a unit is `failed` at once instead of
/// retried by its restart policy.
pub fn unsupported(unit: &Unit) -> Result<(), String> {
    if let (Some(p), false) = (unit.container.ports.first(), unit.container.network == Network::Bridge) {
        return Err(format!("ports = [\"{p}\"]: ports are published on the bridge network only"));
    }
    Ok(())
}

/// Host files a container gets read-only: `(source, destination)`.
pub type HostFiles<'a> = &'a [(PathBuf, &'static str)];

/// Prepares `unit`'s container on `image`. `notify_dir`: the directory of
/// a notify unit's socket, mounted into the container; `files`: host
/// files mounted read-only (the bridge's hosts and resolv.conf).
pub fn prepare(
    unit: &Unit,
    image: &Image,
    state_dir: &Path,
    notify_dir: Option<&Path>,
    files: HostFiles,
    join_network: Option<&Path>,
) -> Result<Prepared, String> {
    unsupported(unit)?;
    let name = &unit.name;
    // Every start begins from the image: a fresh writable layer.
    let dir = container_dir(state_dir, name);
    if dir.exists() {
        fs::remove_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    let (upper, work, rootfs) = (dir.join("upper"), dir.join("work"), dir.join("rootfs"));
    for d in [&upper, &work, &rootfs] {
        fs::create_dir_all(d).map_err(|e| format!("{}: {e}", d.display()))?;
    }
    let volumes = state_dir.join("volumes");
    for v in &unit.container.volumes {
        match &v.source {
            // Missing sources are made, as docker run -v does.
            VolumeSource::Bind(p) => fs::create_dir_all(p).map_err(|e| format!("volume {p}: {e}"))?,
            // A new named volume starts with the image's content at its
            // mount point, as Docker's do.
            VolumeSource::Named(n) => {
                let data = volumes.join(n).join("_data");
                let new = !data.exists();
                fs::create_dir_all(&data).map_err(|e| format!("volume {n}: {e}"))?;
                if new {
                    seed_from_layers(&image.layer_dirs, &v.target, &data).map_err(|e| format!("volume {n}: {e}"))?;
                }
            }
        }
    }

    let text = |p: &str| image.read_file(p, 1 << 20).ok().flatten().map(|b| String::from_utf8_lossy(&b).into_owned());
    let (passwd, group) = (text("/etc/passwd"), text("/etc/group"));
    let limits = hard_limits();
    let own_caps: Vec<String> = caps::read(None, caps::CapSet::Permitted)
        .map_err(|e| format!("read our capabilities: {e}"))?
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
    let mut plan = from_spec(&spec, &dir)?;
    plan.overlay = Some(OverlayPlan { layers: image.layer_dirs.clone(), upper: upper.clone(), work: work.clone() });
    let default_seccomp = unit.container.seccomp == Seccomp::Default && !unit.container.privileged;
    if default_seccomp {
        apply_default_seccomp(&mut plan);
    }
    let resources = resources(&spec, &plan).map_err(|e| e.to_string())?;
    let image_signal = image.config.config.stop_signal.as_deref().and_then(|s| Signal::parse(s).ok());
    let stop_signal = unit.stop.signal.or(image_signal).unwrap_or(Signal::TERM).number();
    Ok(Prepared {
        request: SpawnRequest {
            spec,
            dir,
            overlay: Some((image.layer_dirs.clone(), upper, work)),
            default_seccomp,
            cgroup: None,
            network: None,
        },
        plan,
        resources,
        stop_signal,
        image_digest: image.record.manifest_digest.to_string(),
    })
}

/// The notify socket's directory mounted at `/run/notify`, and
/// `NOTIFY_SOCKET` naming the socket in it.
fn add_notify_socket(spec: &mut oci_spec::runtime::Spec, dir: &Path) -> Result<(), String> {
    add_bind(spec, dir, super::notify::MOUNT, &["rbind", "nosuid", "nodev", "noexec"])?;
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
fn add_bind(spec: &mut oci_spec::runtime::Spec, source: &Path, dest: &str, options: &[&str]) -> Result<(), String> {
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
        .map_err(|e| e.to_string())?;
    mounts.push(mount);
    spec.set_mounts(Some(mounts));
    Ok(())
}

/// Our own hard limits, which no container may exceed.
fn hard_limits() -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for name in ULIMIT_NAMES {
        if let Some(r) = rlimit_resource(&rlimit_name(name)) {
            let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
            // SAFETY: getrlimit writes one rlimit struct we own.
            if unsafe { libc::getrlimit(r as _, &mut lim) } == 0 && lim.rlim_max != libc::RLIM_INFINITY {
                out.insert(name.to_string(), lim.rlim_max);
            }
        }
    }
    out
}

fn device(path: &str) -> Result<(char, u64, u64), String> {
    let md = fs::metadata(path).map_err(|e| e.to_string())?;
    let ft = md.file_type();
    let kind = if ft.is_char_device() {
        'c'
    } else if ft.is_block_device() {
        'b'
    } else {
        return Err("not a device".into());
    };
    Ok((kind, libc::major(md.rdev()).into(), libc::minor(md.rdev()).into()))
}
