//! Unit files written as Kubernetes objects (`supervisorctl generate
//! kube`): a Pod per unit (valid as a kubelet static pod: it references no
//! Secret, ConfigMap or ServiceAccount, and `env_file` values are inlined),
//! or a Deployment per unit with a Service for its ports and a
//! PersistentVolumeClaim per named volume. Units that join another's
//! network (`network = "unit:NAME"`) are containers of NAME's Pod.
//!
//! What Kubernetes cannot say is never dropped silently: it is written as
//! an annotation `UNIT.supervisor.io/KEY` on the object, and returned as a
//! [`Warning`] naming the unit file and the key (docs/interop.md lists
//! them all). Images are written as the caller resolves them: the
//! `digest` function (the CLI looks in the image store) pins registry
//! references, `overrides` replace a unit's image outright.
//!
//! `container` maps one unit to a container, `pod` assembles a Pod's
//! spec from its units, `objects` holds the serialized types.

mod container;
mod objects;
mod pod;
#[cfg(test)]
mod tests;
mod yaml;

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use crate::units::Unit;
use crate::units::model::Network;
use crate::units::values::reference::ImageSource;

use self::objects::{
    ClaimResources, ClaimSpec, DeploymentSpec, Metadata, Object, PodTemplate, RollingUpdate, Selector, ServicePort,
    ServiceSpec, Strategy,
};
use self::yaml::to_yaml;

/// What to write for each group of units.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Pod,
    Deployment,
}

/// A unit and the file it was read from (named in warnings).
#[derive(Debug, Clone, Copy)]
pub struct Source<'a> {
    pub unit: &'a Unit,
    pub file: &'a Path,
}

/// Everything besides the units that decides the output.
pub struct Options<'a> {
    pub kind: Kind,
    /// The supervisor's state directory: named volumes of a Pod are
    /// `hostPath`s under `STATE_DIR/volumes/NAME`.
    pub state_dir: &'a str,
    /// The image a unit's container runs, by unit name, instead of its own
    /// (`--image UNIT=REF`).
    pub overrides: &'a BTreeMap<String, String>,
    /// The manifest digest (`sha256:...`) the store holds for a registry
    /// image, to pin it; `None` leaves the tag.
    pub digest: &'a dyn Fn(&ImageSource) -> Option<String>,
}

/// A key of a unit file that Kubernetes does not carry (`lost`), or a
/// translation worth knowing that loses nothing (`lost == false`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    pub file: String,
    /// `[section] key`, as in the unit file.
    pub key: String,
    pub message: String,
    pub lost: bool,
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = if self.lost { "not carried" } else { "note" };
        write!(f, "{}: {}: {what}: {}", self.file, self.key, self.message)
    }
}

/// The YAML (documents separated by `---`) and what it could not say.
#[derive(Debug, Clone)]
pub struct Output {
    pub yaml: String,
    pub warnings: Vec<Warning>,
}

impl Output {
    /// Whether any key was lost (`generate kube` exits 2 then).
    pub fn lost(&self) -> bool {
        self.warnings.iter().any(|w| w.lost)
    }
}

/// The label every object's selector uses.
pub const NAME_LABEL: &str = "app.kubernetes.io/name";
/// The label that says who wrote the object.
pub const MANAGED_LABEL: &str = "app.kubernetes.io/managed-by";
/// The domain of our annotations: `UNIT.supervisor.io/KEY`.
pub const ANNOTATION_DOMAIN: &str = "supervisor.io";
/// What a PersistentVolumeClaim asks for: unit files give no size.
pub const CLAIM_SIZE: &str = "1Gi";

/// Writes `units` as Kubernetes objects. Fails only when a unit joins
/// the network of a unit that is not among them.
pub fn generate(units: &[Source<'_>], opts: &Options<'_>) -> Result<Output, String> {
    let mut warnings = Vec::new();
    let mut docs = Vec::new();
    let mut claims: BTreeMap<String, String> = BTreeMap::new();
    for group in groups(units)? {
        let pod = pod::build(&group, opts, &mut warnings);
        for (volume, claim) in &pod.claims {
            claims.entry(claim.clone()).or_insert_with(|| volume.clone());
        }
        let name = group[0].unit.name.clone();
        let labels = labels(&name);
        match opts.kind {
            Kind::Pod => {
                let metadata = Metadata { name: Some(name), labels, annotations: pod.annotations };
                docs.push(to_yaml(&Object { api_version: "v1", kind: "Pod", metadata, spec: pod.spec })?);
            }
            Kind::Deployment => {
                let selector = BTreeMap::from([(NAME_LABEL.to_string(), name.clone())]);
                let template = PodTemplate {
                    metadata: Metadata { name: None, labels: selector.clone(), annotations: BTreeMap::new() },
                    spec: pod.spec,
                };
                let update = &group[0].unit.update;
                let start_first = update.strategy == crate::units::model::Strategy::StartFirst;
                let spec = DeploymentSpec {
                    replicas: 1,
                    selector: Selector { match_labels: selector.clone() },
                    strategy: Strategy {
                        kind: if start_first { "RollingUpdate" } else { "Recreate" },
                        rolling_update: start_first.then_some(RollingUpdate { max_surge: 1, max_unavailable: 0 }),
                    },
                    min_ready_seconds: Some(update.min_healthy.as_secs()).filter(|s| *s > 0),
                    progress_deadline_seconds: Some(pod::seconds_up(update.healthy_within).max(1)),
                    template,
                };
                let metadata = Metadata { name: Some(name.clone()), labels, annotations: pod.annotations };
                docs.push(to_yaml(&Object { api_version: "apps/v1", kind: "Deployment", metadata, spec })?);
                if !pod.service_ports.is_empty() {
                    let service = service(&name, selector, pod.service_ports, &group[0], &mut warnings);
                    docs.push(to_yaml(&service)?);
                }
            }
        }
    }
    for (claim, volume) in claims {
        let metadata = Metadata { name: Some(claim), labels: labels(&volume), annotations: BTreeMap::new() };
        let spec = ClaimSpec {
            access_modes: vec!["ReadWriteOnce"],
            resources: ClaimResources { requests: BTreeMap::from([("storage", CLAIM_SIZE.to_string())]) },
        };
        docs.push(to_yaml(&Object { api_version: "v1", kind: "PersistentVolumeClaim", metadata, spec })?);
    }
    Ok(Output { yaml: docs.join("---\n"), warnings })
}

fn labels(name: &str) -> BTreeMap<String, String> {
    BTreeMap::from([(NAME_LABEL.to_string(), name.to_string()), (MANAGED_LABEL.to_string(), "supervisor".to_string())])
}

/// A Service for a Deployment's published ports. Its name must be a
/// DNS-1035 label (start with a letter), which a unit name need not be.
fn service(
    name: &str,
    selector: BTreeMap<String, String>,
    ports: Vec<ServicePort>,
    owner: &Source<'_>,
    warnings: &mut Vec<Warning>,
) -> Object<ServiceSpec> {
    let service_name = if name.starts_with(|c: char| c.is_ascii_lowercase()) {
        name.to_string()
    } else {
        let renamed: String = format!("svc-{name}").chars().take(63).collect();
        warnings.push(Warning {
            file: owner.file.display().to_string(),
            key: "[container] ports".into(),
            message: format!(
                "a Service name must start with a letter: the Service of {name:?} is {renamed:?}, so other units reach \
                 it by that name"
            ),
            lost: false,
        });
        renamed
    };
    Object {
        api_version: "v1",
        kind: "Service",
        metadata: Metadata { name: Some(service_name), labels: labels(name), annotations: BTreeMap::new() },
        spec: ServiceSpec { selector, ports },
    }
}

/// The units of each Pod: a unit that owns its network first, then the
/// units that join it (`network = "unit:NAME"`, followed through chains),
/// by name. Pods in the order of their first unit's name.
fn groups<'a>(units: &[Source<'a>]) -> Result<Vec<Vec<Source<'a>>>, String> {
    let by_name: BTreeMap<&str, &Source<'a>> = units.iter().map(|s| (s.unit.name.as_str(), s)).collect();
    let mut groups: BTreeMap<&str, Vec<Source<'a>>> = BTreeMap::new();
    for s in by_name.values() {
        let mut root = s.unit.name.as_str();
        let mut seen = vec![root];
        while let Network::Unit(owner) =
            &by_name.get(root).map(|s| &s.unit.container.network).unwrap_or(&Network::Bridge)
        {
            if !by_name.contains_key(owner.as_str()) {
                return Err(format!(
                    "{}: unit {root:?} joins the network of {owner:?}, which is not among the units given: name it too",
                    by_name[root].file.display()
                ));
            }
            if seen.contains(&owner.as_str()) {
                return Err(format!("{}: network cycle through {owner:?}", s.file.display()));
            }
            seen.push(owner);
            root = owner;
        }
        groups.entry(root).or_default().push(**s);
    }
    Ok(groups
        .into_iter()
        .map(|(root, mut members)| {
            // The owner first: it holds the Pod's name and pod-wide keys.
            members.sort_by_key(|s| (s.unit.name != root, s.unit.name.clone()));
            members
        })
        .collect())
}
