//! A Pod's spec from its units (the network's owner first): the
//! containers, the volumes they share, and the pod-wide keys (restart
//! policy, grace period, sysctls, host network), with what does not fit
//! handed to [`Notes`].

use std::collections::BTreeMap;
use std::time::Duration;

use super::container::{container, quantity};
use super::objects::{
    ClaimRef, EmptyDir, HostPath, NameValue, PodSecurityContext, PodSpec, ServicePort, Volume, VolumeMount,
};
use super::{ANNOTATION_DOMAIN, Kind, Options, Source, Warning};
use crate::units::model::{Network, RestartPolicy};

/// Whole seconds, rounded up.
pub(super) fn seconds_up(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

/// Where one unit's untranslatable keys go: an annotation
/// `UNIT.supervisor.io/NAME` on the object, and a warning.
pub(super) struct Notes<'w> {
    unit: String,
    file: String,
    warnings: &'w mut Vec<Warning>,
    annotations: &'w mut BTreeMap<String, String>,
}

impl Notes<'_> {
    /// `key` (as the unit file spells it) is not carried: annotated as
    /// `annotation` with `value`, and warned about with `why`.
    pub fn lost(&mut self, key: &str, annotation: &str, value: String, why: String) {
        let name = format!("{}.{ANNOTATION_DOMAIN}/{annotation}", self.unit);
        // A key lost twice (two port entries) keeps every value.
        self.annotations.entry(name).and_modify(|v| *v = format!("{v} {value}")).or_insert(value);
        self.warnings.push(Warning { file: self.file.clone(), key: key.into(), message: why, lost: true });
    }

    /// A translation worth knowing that loses nothing.
    pub fn note(&mut self, key: &str, message: String) {
        self.warnings.push(Warning { file: self.file.clone(), key: key.into(), message, lost: false });
    }

    /// Kept as an annotation, with no meaning lost (a description).
    pub fn keep(&mut self, annotation: &str, value: String) {
        self.annotations.insert(format!("{}.{ANNOTATION_DOMAIN}/{annotation}", self.unit), value);
    }
}

/// A volume of the Pod, to be mounted.
pub(super) struct Mountable(String);

impl Mountable {
    pub fn at(&self, target: &str, read_only: bool) -> VolumeMount {
        VolumeMount { name: self.0.clone(), mount_path: target.to_string(), read_only: read_only.then_some(true) }
    }
}

/// The Pod's volumes, each made once however many containers mount it.
pub(super) struct PodVolumes {
    kind: Kind,
    state_dir: String,
    pub list: Vec<Volume>,
    /// Named volume -> its PersistentVolumeClaim (Deployments).
    pub claims: BTreeMap<String, String>,
    hosts: BTreeMap<String, String>,
    tmpfs: usize,
}

/// `name` as a DNS label (lowercase; `_` and `.` as `-`), if it can be one.
fn dns_label(name: &str) -> Option<String> {
    let s: String = name.chars().map(|c| if c == '_' || c == '.' { '-' } else { c.to_ascii_lowercase() }).collect();
    let ok = !s.is_empty()
        && s.len() <= 63
        && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-');
    ok.then_some(s)
}

impl PodVolumes {
    fn new(kind: Kind, state_dir: &str) -> PodVolumes {
        PodVolumes {
            kind,
            state_dir: state_dir.trim_end_matches('/').to_string(),
            list: Vec::new(),
            claims: BTreeMap::new(),
            hosts: BTreeMap::new(),
            tmpfs: 0,
        }
    }

    fn host(&mut self, path: &str, kind: Option<&'static str>, name: impl FnOnce(usize) -> String) -> Mountable {
        if let Some(n) = self.hosts.get(path) {
            return Mountable(n.clone());
        }
        let n = name(self.hosts.len());
        self.hosts.insert(path.to_string(), n.clone());
        self.list.push(Volume {
            name: n.clone(),
            host_path: Some(HostPath { path: path.to_string(), kind }),
            empty_dir: None,
            persistent_volume_claim: None,
        });
        Mountable(n)
    }

    pub fn bind(&mut self, path: &str) -> Mountable {
        self.host(path, None, |i| format!("bind-{i}"))
    }

    /// A named volume: a `hostPath` under the state directory in a Pod
    /// (where supervisord keeps it), a claim of its name in a Deployment.
    pub fn named(&mut self, name: &str, notes: &mut Notes<'_>) -> Mountable {
        let label = dns_label(name);
        let pod_name =
            |i: usize| label.as_ref().map_or(format!("vol-{i}"), |l| format!("vol-{l}").chars().take(63).collect());
        match self.kind {
            Kind::Pod => {
                let path = format!("{}/volumes/{name}", self.state_dir);
                if !self.hosts.contains_key(&path) {
                    notes.note(
                        "[container] volumes",
                        format!(
                            "volume {name:?} is the hostPath {path}: supervisord's copy on this machine; a new one \
                             starts empty, not with the image's files"
                        ),
                    );
                }
                self.host(&path, Some("DirectoryOrCreate"), pod_name)
            }
            Kind::Deployment => {
                let claim = label.clone().unwrap_or_else(|| format!("volume-{}", self.claims.len()));
                let volume_name = pod_name(self.claims.len());
                if !self.claims.contains_key(name) {
                    if claim != name {
                        notes.note(
                            "[container] volumes",
                            format!("volume {name:?} is the PersistentVolumeClaim {claim:?} (claims are DNS names)"),
                        );
                    }
                    self.claims.insert(name.to_string(), claim.clone());
                    self.list.push(Volume {
                        name: volume_name.clone(),
                        host_path: None,
                        empty_dir: None,
                        persistent_volume_claim: Some(ClaimRef { claim_name: claim }),
                    });
                    return Mountable(volume_name);
                }
                let claim = &self.claims[name];
                let existing = self
                    .list
                    .iter()
                    .find(|v| v.persistent_volume_claim.as_ref().is_some_and(|c| &c.claim_name == claim));
                Mountable(existing.map_or(volume_name, |v| v.name.clone()))
            }
        }
    }

    /// A tmpfs: an `emptyDir` in memory, of its own.
    pub fn tmpfs(&mut self, size: Option<u64>) -> Mountable {
        let name = format!("tmpfs-{}", self.tmpfs);
        self.tmpfs += 1;
        self.list.push(Volume {
            name: name.clone(),
            host_path: None,
            empty_dir: Some(EmptyDir { medium: "Memory", size_limit: size.map(quantity) }),
            persistent_volume_claim: None,
        });
        Mountable(name)
    }
}

/// A Pod (or a Deployment's template) and what goes beside it.
pub(super) struct Built {
    pub spec: PodSpec,
    pub annotations: BTreeMap<String, String>,
    /// A Deployment's Service ports.
    pub service_ports: Vec<ServicePort>,
    /// Named volume -> claim.
    pub claims: BTreeMap<String, String>,
}

fn restart_policy(p: RestartPolicy) -> &'static str {
    match p {
        RestartPolicy::Always => "Always",
        RestartPolicy::OnFailure => "OnFailure",
        RestartPolicy::No => "Never",
    }
}

/// The Pod of `group` (its network's owner first).
pub(super) fn build(group: &[Source<'_>], opts: &Options<'_>, warnings: &mut Vec<Warning>) -> Built {
    let owner = group[0].unit;
    let mut annotations = BTreeMap::new();
    let mut volumes = PodVolumes::new(opts.kind, opts.state_dir);
    let mut spec = PodSpec { restart_policy: restart_policy(owner.restart.policy), ..PodSpec::default() };
    let mut service_ports: Vec<ServicePort> = Vec::new();
    let mut sysctls: BTreeMap<String, String> = BTreeMap::new();
    let mut grace = 0;
    for src in group {
        let u = src.unit;
        let mut notes = Notes {
            unit: u.name.clone(),
            file: src.file.display().to_string(),
            warnings,
            annotations: &mut annotations,
        };
        let (c, published) = container(src, opts, &mut notes, &mut volumes);
        spec.containers.push(c);
        for (p, host) in published {
            let port = host.unwrap_or(p.container_port);
            if !service_ports.iter().any(|s| s.port == port && s.protocol == p.protocol) {
                let name = format!("{}-{port}", p.protocol.to_ascii_lowercase());
                service_ports.push(ServicePort { name, protocol: p.protocol, port, target_port: p.container_port });
            }
        }
        let policy = restart_policy(u.restart.policy);
        if opts.kind == Kind::Deployment && policy != "Always" {
            notes.lost(
                "[restart] policy",
                "restart-policy",
                serde_json::to_value(u.restart.policy)
                    .ok()
                    .and_then(|v| v.as_str().map(String::from))
                    .unwrap_or_default(),
                format!("a Deployment's Pods always restart; written as Always, not {policy}"),
            );
        } else if policy != spec.restart_policy {
            notes.lost(
                "[restart] policy",
                "restart-policy",
                policy.to_string(),
                format!(
                    "a Pod has one restart policy, its network owner {:?}'s ({}); not {policy}",
                    owner.name, spec.restart_policy
                ),
            );
        }
        grace = grace.max(seconds_up(u.stop.timeout));
        for (k, v) in &u.container.sysctls {
            match sysctls.get(k) {
                Some(other) if other != v => notes.lost(
                    "[container] sysctls",
                    "sysctls",
                    format!("{k}={v}"),
                    format!("{k} is pod-wide and {:?} sets it to {other:?}", owner.name),
                ),
                _ => {
                    sysctls.insert(k.clone(), v.clone());
                }
            }
        }
        if src.unit.name == owner.name {
            match &u.container.network {
                Network::Host => spec.host_network = Some(true),
                Network::None => notes.lost(
                    "[container] network",
                    "network",
                    "none".into(),
                    "every Pod has a network; isolate it with a NetworkPolicy".into(),
                ),
                Network::Bridge | Network::Unit(_) => {}
            }
            if u.container.hostname != u.name {
                match dns_label(&u.container.hostname).filter(|l| *l == u.container.hostname) {
                    Some(h) => spec.hostname = Some(h),
                    None => notes.lost(
                        "[container] hostname",
                        "hostname",
                        u.container.hostname.clone(),
                        "a Pod's hostname is one DNS label".into(),
                    ),
                }
            }
        } else if u.container.hostname != u.name {
            notes.lost(
                "[container] hostname",
                "hostname",
                u.container.hostname.clone(),
                format!("the containers of a Pod share its hostname ({:?}'s)", owner.name),
            );
        }
    }
    if opts.kind == Kind::Deployment {
        spec.restart_policy = "Always";
    }
    spec.termination_grace_period_seconds = Some(grace);
    if !sysctls.is_empty() {
        let sysctls = sysctls.into_iter().map(|(name, value)| NameValue { name, value }).collect();
        spec.security_context = Some(PodSecurityContext { sysctls });
    }
    spec.volumes = volumes.list;
    Built { spec, annotations, service_ports, claims: volumes.claims }
}
