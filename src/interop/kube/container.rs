//! One unit as one Kubernetes container: what maps to a container field
//! is written there, what does not is handed to [`Notes`] (an annotation
//! and a warning naming the key).

use std::collections::BTreeMap;
use std::time::Duration;

use super::objects::{
    Capabilities, Container, ContainerPort, ExecAction, HttpGet, NameValue, Probe, Resources, SeccompProfile,
    SecurityContext, TcpSocket,
};
use super::pod::{Notes, PodVolumes, seconds_up};
use super::{Kind, Options, Source};
use crate::units::model::{OnUnhealthy, Probe as UnitProbe, PullPolicy, Seccomp};
use crate::units::values::duration::format_duration;
use crate::units::values::mounts::VolumeSource;
use crate::units::values::port::Protocol;
use crate::units::values::reference::ImageSource;
use crate::units::values::signal::Signal;
use crate::units::values::size::format_size;

/// The container of `src`, and its published ports (each container port
/// with the host port it is published on, if any).
pub(super) fn container(
    src: &Source<'_>,
    opts: &Options<'_>,
    notes: &mut Notes<'_>,
    volumes: &mut PodVolumes,
) -> (Container, Vec<(ContainerPort, Option<u16>)>) {
    let c = &src.unit.container;
    let (command, args) = command(src, notes);
    let published = ports(src, opts.kind, notes);
    let mut out = Container {
        name: src.unit.name.clone(),
        image: image(src, opts, notes),
        image_pull_policy: match c.pull {
            PullPolicy::Missing => "IfNotPresent",
            PullPolicy::Always => "Always",
            PullPolicy::Never => "Never",
        },
        command,
        args,
        working_dir: c.workdir.clone(),
        env: c.environment().into_iter().map(|(name, value)| NameValue { name, value }).collect(),
        ports: published.iter().map(|(p, _)| p.clone()).collect(),
        resources: resources(src, notes),
        security_context: security(src, notes),
        ..Container::default()
    };
    for v in &c.volumes {
        let mount = match &v.source {
            VolumeSource::Bind(path) => volumes.bind(path),
            VolumeSource::Named(name) => volumes.named(name, notes),
        };
        out.volume_mounts.push(mount.at(&v.target, v.read_only));
    }
    for t in &c.tmpfs {
        let read_only = t.flags.iter().any(|f| f == "ro");
        let other: Vec<&String> = t.flags.iter().filter(|f| *f != "ro").collect();
        if t.mode.is_some() || !other.is_empty() {
            let mut opts: Vec<String> = t.mode.map(|m| format!("mode={m:o}")).into_iter().collect();
            opts.extend(other.into_iter().cloned());
            notes.lost(
                "[container] tmpfs",
                "tmpfs-options",
                format!("{}:{}", t.target, opts.join(",")),
                format!("an emptyDir takes no mount options ({} on {})", opts.join(","), t.target),
            );
        }
        out.volume_mounts.push(volumes.tmpfs(t.size).at(&t.target, read_only));
    }
    probes(src, notes, &mut out);
    lost_keys(src, opts, notes);
    (out, published)
}

/// The image reference a cluster can pull: an override, a registry
/// reference (pinned by the digest the store has, if any), or for a local
/// source a `localhost/NAME:TAG` that the image must be loaded under.
fn image(src: &Source<'_>, opts: &Options<'_>, notes: &mut Notes<'_>) -> String {
    if let Some(image) = opts.overrides.get(&src.unit.name) {
        return image.clone();
    }
    let source = &src.unit.container.image;
    let (path, tag) = match source {
        ImageSource::Registry(r) => {
            let mut r = r.clone();
            if r.digest.is_none() {
                r.digest = (opts.digest)(source);
            }
            return r.to_string();
        }
        ImageSource::OciLayout { path, tag } | ImageSource::OciArchive { path, tag } => (path, tag.clone()),
        ImageSource::DockerArchive { image: Some(image), .. } => {
            let named = if image.contains(':') { image.clone() } else { format!("{image}:latest") };
            notes.note("[container] image", format!("{source} is no registry reference: written as {named:?}"));
            return named;
        }
        ImageSource::DockerArchive { path, image: None } | ImageSource::Dir { path } => (path, None),
    };
    let base = path.rsplit('/').find(|s| !s.is_empty()).unwrap_or("image");
    let base = base.strip_suffix(".tar").unwrap_or(base);
    let base: String = base
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || "._-".contains(c) { c.to_ascii_lowercase() } else { '-' })
        .collect();
    let named = format!("localhost/{base}:{}", tag.unwrap_or_else(|| "latest".into()));
    notes.lost(
        "[container] image",
        "image",
        source.to_string(),
        format!(
            "{source} is no registry reference: written as {named:?}; load the image into the cluster's nodes under \
             that name, or give one with --image {}=REF",
            src.unit.name
        ),
    );
    named
}

/// `entrypoint` is Kubernetes' `command`, `command` its `args`.
fn command(src: &Source<'_>, notes: &mut Notes<'_>) -> (Option<Vec<String>>, Option<Vec<String>>) {
    let c = &src.unit.container;
    match (&c.entrypoint, &c.command) {
        // An empty command is no command to Kubernetes: the image's
        // Entrypoint would run. Run the unit's command alone instead.
        (Some(e), Some(cmd)) if e.is_empty() => (Some(cmd.clone()), None),
        (Some(e), None) if e.is_empty() => {
            notes.lost(
                "[container] entrypoint",
                "entrypoint",
                "[]".into(),
                "an empty entrypoint (run the image's Cmd alone) cannot be said without knowing the image's Cmd; \
                 give command too"
                    .into(),
            );
            (None, None)
        }
        (e, cmd) => (e.clone(), cmd.clone()),
    }
}

fn protocol(p: Protocol) -> &'static str {
    match p {
        Protocol::Tcp => "TCP",
        Protocol::Udp => "UDP",
    }
}

/// Each published port: container port (with `hostPort` and `hostIP` in a
/// Pod), and the host port it is published on.
fn ports(src: &Source<'_>, kind: Kind, notes: &mut Notes<'_>) -> Vec<(ContainerPort, Option<u16>)> {
    let mut out = Vec::new();
    for p in &src.unit.container.ports {
        if p.host_port.is_none() && kind == Kind::Pod {
            notes.lost(
                "[container] ports",
                "ports",
                p.to_string(),
                format!("{p}: a host port picked at start has no Pod equivalent; the port is declared, not published"),
            );
        }
        if let (Some(ip), Kind::Deployment) = (p.host_ip, kind) {
            notes.lost(
                "[container] ports",
                "ports",
                p.to_string(),
                format!("{p}: a Service has no host address to bind to; {ip} is not kept"),
            );
        }
        for i in 0..p.container_port.count() {
            let container_port = p.container_port.start + i as u16;
            let host_port = p.host_port.map(|h| h.start + i as u16);
            let pod = kind == Kind::Pod;
            out.push((
                ContainerPort {
                    container_port,
                    host_port: host_port.filter(|_| pod),
                    host_ip: p.host_ip.filter(|_| pod && host_port.is_some()).map(|ip| ip.to_string()),
                    protocol: protocol(p.protocol),
                },
                host_port,
            ));
        }
    }
    out
}

/// A Kubernetes quantity of bytes: binary suffixes where exact.
pub(super) fn quantity(bytes: u64) -> String {
    format_size(bytes)
        .replace('K', "Ki")
        .replace('M', "Mi")
        .replace('G', "Gi")
        .replace('T', "Ti")
        .replace('P', "Pi")
        .replace('E', "Ei")
}

fn resources(src: &Source<'_>, notes: &mut Notes<'_>) -> Option<Resources> {
    let r = &src.unit.resources;
    let mut limits = BTreeMap::new();
    if let Some(nano) = r.nano_cpus {
        let milli = nano.div_ceil(1_000_000);
        limits.insert("cpu", if milli % 1000 == 0 { (milli / 1000).to_string() } else { format!("{milli}m") });
    }
    if let Some(bytes) = r.memory {
        limits.insert("memory", quantity(bytes));
    }
    if let Some(pids) = r.pids {
        notes.lost(
            "[resources] pids",
            "pids",
            pids.to_string(),
            "a container's process limit is the node's (kubelet podPidsLimit), not the Pod's to set".into(),
        );
    }
    (!limits.is_empty()).then(|| Resources { requests: limits.clone(), limits })
}

fn security(src: &Source<'_>, notes: &mut Notes<'_>) -> SecurityContext {
    let c = &src.unit.container;
    let mut s = SecurityContext::default();
    if let Some(user) = &c.user {
        let (u, g) = user.split_once(':').map_or((user.as_str(), None), |(u, g)| (u, Some(g)));
        match (u.parse::<u32>(), g.map(str::parse::<u32>)) {
            (Ok(u), None) => s.run_as_user = Some(u),
            (Ok(u), Some(Ok(g))) => (s.run_as_user, s.run_as_group) = (Some(u), Some(g)),
            _ => notes.lost(
                "[container] user",
                "user",
                user.clone(),
                format!(
                    "{user:?}: runAsUser and runAsGroup take numbers only; the image's user runs unless you write the \
                     numeric uid:gid"
                ),
            ),
        }
    }
    if c.privileged {
        s.privileged = Some(true);
    } else if c.no_new_privileges {
        // Kubernetes refuses allowPrivilegeEscalation: false beside privileged.
        s.allow_privilege_escalation = Some(false);
    }
    if c.read_only {
        s.read_only_root_filesystem = Some(true);
    }
    let strip = |caps: &[String]| -> Vec<String> {
        caps.iter().map(|c| c.strip_prefix("CAP_").unwrap_or(c).to_string()).collect()
    };
    if !c.cap_add.is_empty() || !c.cap_drop.is_empty() {
        s.capabilities = Some(Capabilities { add: strip(&c.cap_add), drop: strip(&c.cap_drop) });
    }
    let unconfined = c.privileged || c.seccomp == Seccomp::Unconfined;
    s.seccomp_profile = SeccompProfile { kind: if unconfined { "Unconfined" } else { "RuntimeDefault" } };
    s
}

/// Probe seconds: Kubernetes counts whole seconds, at least 1.
fn probe_seconds(d: Duration, key: &str, notes: &mut Notes<'_>) -> u64 {
    let s = seconds_up(d).max(1);
    if Duration::from_secs(s) != d {
        notes.note(key, format!("{} is rounded up to {s}s: probe timings are whole seconds", format_duration(d)));
    }
    s
}

fn probes(src: &Source<'_>, notes: &mut Notes<'_>, out: &mut Container) {
    let h = &src.unit.health;
    let Some(probe) = &h.probe else {
        if h.interval.is_some() || h.timeout.is_some() || h.retries.is_some() || h.start_period.is_some() {
            notes.lost(
                "[health]",
                "health",
                "image HEALTHCHECK".into(),
                "timings for the image's HEALTHCHECK: Kubernetes does not run an image's HEALTHCHECK; write a probe \
                 (exec, http or tcp) to have one"
                    .into(),
            );
        }
        return;
    };
    let mut base = Probe::default();
    match probe {
        UnitProbe::Exec(cmd) => base.exec = Some(ExecAction { command: cmd.clone() }),
        UnitProbe::Tcp(port) => base.tcp_socket = Some(TcpSocket { port: *port }),
        UnitProbe::Http(url) => base.http_get = Some(http_get(url, &src.unit.container.hostname, notes)),
    }
    base.period_seconds = probe_seconds(h.interval.unwrap_or(Duration::from_secs(30)), "[health] interval", notes);
    base.timeout_seconds = probe_seconds(h.timeout.unwrap_or(Duration::from_secs(30)), "[health] timeout", notes);
    base.failure_threshold = u64::from(h.retries.unwrap_or(3));
    let start_period = h.start_period.unwrap_or_default();
    if !start_period.is_zero() {
        let every = h.start_interval.or(h.interval).unwrap_or(Duration::from_secs(30));
        let period = probe_seconds(every, "[health] start_interval", notes);
        // Failures in the start period do not count, then `retries` do.
        let threshold = seconds_up(start_period).div_ceil(period) + base.failure_threshold;
        out.startup_probe = Some(Probe { period_seconds: period, failure_threshold: threshold, ..base.clone() });
    }
    match h.on_unhealthy {
        OnUnhealthy::Restart => out.liveness_probe = Some(base.clone()),
        OnUnhealthy::None => {}
        OnUnhealthy::Stop => notes.lost(
            "[health] on_unhealthy",
            "on-unhealthy",
            "stop".into(),
            "Kubernetes restarts a container that fails its livenessProbe or leaves it running; it never stops \
             it: written as a readinessProbe only"
                .into(),
        ),
    }
    out.readiness_probe = Some(base);
}

/// `http://HOST[:PORT][/PATH]`. The unit's probe runs in the container's
/// network namespace; kubelet's runs from the node to the Pod's address,
/// which is the same place for `localhost` and the container's host name.
fn http_get(url: &str, hostname: &str, notes: &mut Notes<'_>) -> HttpGet {
    let rest = url.strip_prefix("http://").unwrap_or(url);
    let (authority, path) = rest.find('/').map_or((rest, "/"), |i| (&rest[..i], &rest[i..]));
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || authority.starts_with('[') => (h, p.parse::<u16>().unwrap_or(80)),
        _ => (authority, 80),
    };
    let own = ["localhost", "127.0.0.1", "[::1]", hostname].contains(&host);
    if !own {
        notes.note(
            "[health] http",
            format!("{url}: kubelet probes {host} from the node, not from inside the Pod's network namespace"),
        );
    }
    HttpGet { host: (!own).then(|| host.to_string()), path: path.to_string(), port }
}

/// Keys with no container field: each is an annotation and a warning.
fn lost_keys(src: &Source<'_>, opts: &Options<'_>, notes: &mut Notes<'_>) {
    let u = src.unit;
    let c = &u.container;
    if let Some(d) = &u.unit.description {
        notes.keep("description", d.clone());
    }
    for (key, names) in [("requires", &u.unit.requires), ("after", &u.unit.after)] {
        if !names.is_empty() {
            notes.lost(
                &format!("[unit] {key}"),
                key,
                names.join(","),
                format!(
                    "Kubernetes starts containers and Pods without waiting for others ({}): the service must retry \
                     until they answer",
                    names.join(", ")
                ),
            );
        }
    }
    if u.unit.ready_timeout != Duration::from_secs(300) {
        let v = format_duration(u.unit.ready_timeout);
        notes.lost("[unit] ready_timeout", "ready-timeout", v, "no start ordering to time out".into());
    }
    if !c.aliases.is_empty() {
        notes.lost(
            "[container] aliases",
            "aliases",
            c.aliases.join(","),
            "more names on the network need a Service each; write them by hand".into(),
        );
    }
    if !c.devices.is_empty() {
        let v: Vec<String> = c.devices.iter().map(ToString::to_string).collect();
        notes.lost(
            "[container] devices",
            "devices",
            v.join(","),
            "host devices reach a Pod through a device plugin, not a field".into(),
        );
    }
    if !c.ulimits.is_empty() {
        let v: Vec<String> = c.ulimits.iter().map(|(k, l)| format!("{k}={l}")).collect();
        notes.lost(
            "[container] ulimits",
            "ulimits",
            v.join(","),
            "rlimits are the container runtime's defaults on the node".into(),
        );
    }
    if c.notify {
        notes.lost(
            "[container] notify",
            "notify",
            "true".into(),
            "readiness by READY=1 on NOTIFY_SOCKET: Kubernetes has only probes".into(),
        );
    }
    if let Some(sig) = u.stop.signal.filter(|s| *s != Signal::TERM) {
        notes.lost(
            "[stop] signal",
            "stop-signal",
            sig.to_string(),
            format!("Kubernetes stops with the image's STOPSIGNAL (else SIGTERM), not {sig}: bake it into the image"),
        );
    }
    let r = &u.restart;
    let defaults = [
        ("delay", r.delay, Duration::from_millis(100)),
        ("max_delay", r.max_delay, Duration::from_secs(60)),
        ("reset_after", r.reset_after, Duration::from_secs(10)),
    ];
    for (key, value, default) in defaults {
        if value != default {
            notes.lost(
                &format!("[restart] {key}"),
                &format!("restart-{}", key.replace('_', "-")),
                format_duration(value),
                "the kubelet's restart backoff is its own (10s doubling to 5m)".into(),
            );
        }
    }
    if r.limit != 0 {
        notes.lost(
            "[restart] limit",
            "restart-limit",
            r.limit.to_string(),
            "Kubernetes restarts without a limit".into(),
        );
    }
    if u.logs.max_size != 10 << 20 || u.logs.max_files != 3 {
        notes.lost(
            "[logs]",
            "logs",
            format!("max_size={},max_files={}", format_size(u.logs.max_size), u.logs.max_files),
            "log rotation is the kubelet's (containerLogMaxSize, containerLogMaxFiles)".into(),
        );
    }
    update_keys(src, opts, notes);
}

/// `[update]`: a Deployment's strategy carries most of it; a Pod none.
fn update_keys(src: &Source<'_>, opts: &Options<'_>, notes: &mut Notes<'_>) {
    use crate::units::model::{AutoUpdate, UpdatePolicy};
    let up = &src.unit.update;
    if up.auto == AutoUpdate::Registry {
        notes.lost(
            "[update] auto",
            "auto-update",
            "registry".into(),
            "Kubernetes does not follow a tag: pin images and roll them out".into(),
        );
    }
    match opts.kind {
        Kind::Deployment if up.rollback => notes.lost(
            "[update] rollback",
            "rollback",
            "true".into(),
            "a failed rollout stays as it is in Kubernetes until `kubectl rollout undo`".into(),
        ),
        Kind::Pod if *up != UpdatePolicy { auto: up.auto, ..UpdatePolicy::default() } => notes.lost(
            "[update]",
            "update",
            format!(
                "strategy={},healthy_within={},min_healthy={},rollback={}",
                serde_json::to_value(up.strategy).ok().and_then(|v| v.as_str().map(String::from)).unwrap_or_default(),
                format_duration(up.healthy_within),
                format_duration(up.min_healthy),
                up.rollback
            ),
            "a Pod is replaced as a whole when its file changes; --kind deployment carries the strategy".into(),
        ),
        _ => {}
    }
}
