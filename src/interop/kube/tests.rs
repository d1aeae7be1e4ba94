//! The mapping, unit by unit, against hand-written YAML.

use std::collections::BTreeMap;
use std::path::Path;

use super::*;
use crate::units::diag::Source as Text;
use crate::units::parse::{ParseInput, parse_unit};

fn unit(name: &str, toml: &str) -> Unit {
    let env = |_: &Path| -> Result<String, String> { Ok("FROM_FILE=1\nSHARED=file\n".into()) };
    let input = ParseInput {
        name,
        source: Text { path: Path::new("/u/x.toml"), text: toml },
        base_dir: Path::new("/u"),
        read_file: &env,
    };
    match parse_unit(&input) {
        Ok(p) => p.unit,
        Err(e) => panic!("{name}: {e:?}"),
    }
}

fn gen_with(units: &[Unit], kind: Kind, overrides: &BTreeMap<String, String>) -> Output {
    let files: Vec<std::path::PathBuf> = units.iter().map(|u| format!("/u/{}.toml", u.name).into()).collect();
    let sources: Vec<Source<'_>> = units.iter().zip(&files).map(|(unit, file)| Source { unit, file }).collect();
    let digest = |s: &ImageSource| match s {
        ImageSource::Registry(r) if r.repository == "library/redis" => Some("sha256:abc".to_string()),
        _ => None,
    };
    let opts = Options { kind, state_dir: "/var/lib/supervisor", overrides, digest: &digest };
    generate(&sources, &opts).unwrap()
}

fn gen_kind(units: &[Unit], kind: Kind) -> Output {
    gen_with(units, kind, &BTreeMap::new())
}

fn keys(out: &Output) -> Vec<(String, bool)> {
    out.warnings.iter().map(|w| (w.key.clone(), w.lost)).collect()
}

#[track_caller]
fn contains(out: &Output, fragment: &str) {
    assert!(out.yaml.contains(fragment), "missing:\n{fragment}\nin:\n{}", out.yaml);
}

#[test]
fn a_plain_unit_is_a_pod_that_loses_nothing() {
    let u = unit(
        "web",
        r#"[container]
image = "nginx:1.27"
entrypoint = ["/docker-entrypoint.sh"]
command = ["nginx", "-g", "daemon off;"]
env = { B = "2", A = "1" }
workdir = "/srv"
user = "101:102"
read_only = true
ports = ["8080:80", "127.0.0.1:5353:53/udp"]
cap_add = ["NET_ADMIN"]
cap_drop = ["ALL"]
sysctls = { "net.core.somaxconn" = 1024 }
[resources]
cpus = 0.5
memory = "256M"
[stop]
timeout = "30s"
"#,
    );
    let out = gen_kind(&[u], Kind::Pod);
    assert_eq!(keys(&out), vec![], "{:?}", out.warnings);
    assert!(!out.lost());
    assert_eq!(
        out.yaml,
        r#"apiVersion: v1
kind: Pod
metadata:
  name: web
  labels:
    app.kubernetes.io/managed-by: supervisor
    app.kubernetes.io/name: web
spec:
  restartPolicy: Always
  terminationGracePeriodSeconds: 30
  securityContext:
    sysctls:
    - name: net.core.somaxconn
      value: "1024"
  containers:
  - name: web
    image: "docker.io/library/nginx:1.27"
    imagePullPolicy: IfNotPresent
    command:
    - /docker-entrypoint.sh
    args:
    - nginx
    - "-g"
    - "daemon off;"
    workingDir: /srv
    env:
    - name: A
      value: "1"
    - name: B
      value: "2"
    ports:
    - containerPort: 80
      hostPort: 8080
      protocol: TCP
    - containerPort: 53
      hostPort: 5353
      hostIP: "127.0.0.1"
      protocol: UDP
    resources:
      limits:
        cpu: "500m"
        memory: "256Mi"
      requests:
        cpu: "500m"
        memory: "256Mi"
    securityContext:
      runAsUser: 101
      runAsGroup: 102
      allowPrivilegeEscalation: false
      readOnlyRootFilesystem: true
      capabilities:
        add:
        - NET_ADMIN
        drop:
        - ALL
      seccompProfile:
        type: RuntimeDefault
"#
    );
}

#[test]
fn env_file_values_are_inlined_under_env() {
    let u = unit("a", "[container]\nimage = \"x\"\nenv_file = \"a.env\"\nenv = { SHARED = \"unit\" }\n");
    let out = gen_kind(&[u], Kind::Pod);
    contains(&out, "    env:\n    - name: FROM_FILE\n      value: \"1\"\n    - name: SHARED\n      value: unit\n");
    assert!(!out.yaml.contains("configMap") && !out.yaml.contains("secret"), "{}", out.yaml);
}

#[test]
fn registry_images_are_pinned_by_the_digest_given() {
    let u = unit("db", "[container]\nimage = \"redis:7\"\npull = \"always\"\n");
    let out = gen_kind(&[u], Kind::Pod);
    contains(&out, "    image: \"docker.io/library/redis:7@sha256:abc\"\n    imagePullPolicy: Always\n");
}

#[test]
fn local_images_become_localhost_names_or_the_override() {
    let u = unit("web", "[container]\nimage = \"oci:images/busybox:1.36\"\n");
    let out = gen_kind(std::slice::from_ref(&u), Kind::Pod);
    contains(&out, "    image: \"localhost/busybox:1.36\"\n");
    contains(&out, "    web.supervisor.io/image: \"oci:/u/images/busybox:1.36\"\n");
    assert_eq!(keys(&out), vec![("[container] image".to_string(), true)]);
    let overrides = BTreeMap::from([("web".to_string(), "registry.example/busybox:1".to_string())]);
    let out = gen_with(&[u], Kind::Pod, &overrides);
    contains(&out, "    image: \"registry.example/busybox:1\"\n");
    assert_eq!(keys(&out), vec![]);
}

#[test]
fn volumes_are_host_paths_in_a_pod_and_claims_in_a_deployment() {
    let u = unit(
        "db",
        "[container]\nimage = \"x\"\nvolumes = [\"/srv/a:/a:ro\", \"Data_1:/data\"]\ntmpfs = [\"/tmp:size=16M\", \"/run:mode=755,noexec\"]\n",
    );
    let out = gen_kind(std::slice::from_ref(&u), Kind::Pod);
    contains(
        &out,
        r#"    volumeMounts:
    - name: bind-0
      mountPath: /a
      readOnly: true
    - name: vol-data-1
      mountPath: /data
    - name: tmpfs-0
      mountPath: /run
    - name: tmpfs-1
      mountPath: /tmp
  volumes:
  - name: bind-0
    hostPath:
      path: /srv/a
  - name: vol-data-1
    hostPath:
      path: /var/lib/supervisor/volumes/Data_1
      type: DirectoryOrCreate
  - name: tmpfs-0
    emptyDir:
      medium: Memory
  - name: tmpfs-1
    emptyDir:
      medium: Memory
      sizeLimit: "16Mi"
"#,
    );
    contains(&out, "db.supervisor.io/tmpfs-options: \"/run:mode=755,noexec\"\n");
    let out = gen_kind(&[u], Kind::Deployment);
    contains(&out, "      - name: vol-data-1\n        persistentVolumeClaim:\n          claimName: data-1\n");
    contains(
        &out,
        r#"---
apiVersion: v1
kind: PersistentVolumeClaim
metadata:
  name: data-1
  labels:
    app.kubernetes.io/managed-by: supervisor
    app.kubernetes.io/name: Data_1
spec:
  accessModes:
  - ReadWriteOnce
  resources:
    requests:
      storage: "1Gi"
"#,
    );
}

#[test]
fn probes_map_to_liveness_readiness_and_startup() {
    let u = unit(
        "web",
        "[container]\nimage = \"x\"\n[health]\nhttp = \"http://localhost:8080/healthz\"\ninterval = \"10s\"\ntimeout = \"2s\"\nretries = 4\nstart_period = \"1m\"\nstart_interval = \"250ms\"\n",
    );
    let out = gen_kind(&[u], Kind::Pod);
    contains(
        &out,
        r#"    startupProbe:
      httpGet:
        path: /healthz
        port: 8080
      periodSeconds: 1
      timeoutSeconds: 2
      failureThreshold: 64
    livenessProbe:
      httpGet:
        path: /healthz
        port: 8080
      periodSeconds: 10
      timeoutSeconds: 2
      failureThreshold: 4
    readinessProbe:
"#,
    );
    // 250ms is rounded up: a note, nothing lost.
    assert_eq!(keys(&out), vec![("[health] start_interval".to_string(), false)]);
    let u = unit("db", "[container]\nimage = \"x\"\n[health]\nexec = \"redis-cli ping\"\non_unhealthy = \"stop\"\n");
    let out = gen_kind(&[u], Kind::Pod);
    contains(
        &out,
        "    readinessProbe:\n      exec:\n        command:\n        - /bin/sh\n        - \"-c\"\n        - \"redis-cli ping\"\n",
    );
    assert!(!out.yaml.contains("livenessProbe"), "{}", out.yaml);
    assert_eq!(keys(&out), vec![("[health] on_unhealthy".to_string(), true)]);
    let u = unit("db", "[container]\nimage = \"x\"\n[health]\ntcp = 6379\non_unhealthy = \"none\"\n");
    let out = gen_kind(&[u], Kind::Pod);
    contains(&out, "    readinessProbe:\n      tcpSocket:\n        port: 6379\n");
    assert!(!out.yaml.contains("livenessProbe") && !out.lost(), "{}", out.yaml);
}

#[test]
fn what_kubernetes_cannot_say_is_annotated_and_warned() {
    let u = unit(
        "db",
        r#"[unit]
description = "store"
requires = ["x"]
[container]
image = "x"
user = "redis"
devices = ["/dev/fuse"]
ulimits = { nofile = 1024 }
notify = true
[resources]
pids = 256
[stop]
signal = "SIGQUIT"
[restart]
limit = 10
[logs]
max_files = 5
"#,
    );
    let out = gen_kind(&[u], Kind::Pod);
    contains(
        &out,
        r#"  annotations:
    db.supervisor.io/description: store
    db.supervisor.io/devices: "/dev/fuse:/dev/fuse:rwm"
    db.supervisor.io/logs: "max_size=10M,max_files=5"
    db.supervisor.io/notify: "true"
    db.supervisor.io/pids: "256"
    db.supervisor.io/requires: x
    db.supervisor.io/restart-limit: "10"
    db.supervisor.io/stop-signal: SIGQUIT
    db.supervisor.io/ulimits: "nofile=1024:1024"
    db.supervisor.io/user: redis
"#,
    );
    let mut lost: Vec<String> = out.warnings.iter().filter(|w| w.lost).map(|w| w.key.clone()).collect();
    lost.sort();
    assert_eq!(
        lost,
        [
            "[container] devices",
            "[container] notify",
            "[container] ulimits",
            "[container] user",
            "[logs]",
            "[resources] pids",
            "[restart] limit",
            "[stop] signal",
            "[unit] requires"
        ]
    );
    assert!(out.warnings.iter().all(|w| w.file == "/u/db.toml"));
    assert!(out.warnings[0].to_string().starts_with("/u/db.toml: ["), "{}", out.warnings[0]);
}

#[test]
fn a_unit_joining_a_network_is_a_container_of_its_pod() {
    let db = unit("db", "[container]\nimage = \"x\"\nports = [\"6379:6379\"]\n[stop]\ntimeout = \"5s\"\n");
    let side = unit(
        "metrics",
        "[container]\nimage = \"y\"\nnetwork = \"unit:db\"\n[stop]\ntimeout = \"20s\"\n[restart]\npolicy = \"no\"\n",
    );
    let out = gen_kind(&[side.clone(), db.clone()], Kind::Pod);
    assert_eq!(out.yaml.matches("kind: Pod").count(), 1, "{}", out.yaml);
    contains(&out, "  name: db\n");
    contains(&out, "  terminationGracePeriodSeconds: 20\n  containers:\n  - name: db\n");
    contains(&out, "  - name: metrics\n    image: \"docker.io/library/y:latest\"\n");
    // One restart policy per Pod: the owner's.
    contains(&out, "  restartPolicy: Always\n");
    assert_eq!(keys(&out), vec![("[restart] policy".to_string(), true)]);
    // Without its owner, it cannot be written.
    let files = [std::path::PathBuf::from("/u/metrics.toml")];
    let sources = [Source { unit: &side, file: &files[0] }];
    let opts = Options { kind: Kind::Pod, state_dir: "/s", overrides: &BTreeMap::new(), digest: &|_| None };
    let err = generate(&sources, &opts).unwrap_err();
    assert!(err.contains("\"db\", which is not among the units given"), "{err}");
}

#[test]
fn a_deployment_has_a_service_for_its_ports_and_only_restarts_always() {
    let u = unit(
        "web",
        "[container]\nimage = \"x\"\nports = [\"8080:80\", \"9000-9001:9000-9001/udp\"]\n[restart]\npolicy = \"on-failure\"\n[update]\nstrategy = \"start-first\"\nmin_healthy = \"10s\"\n",
    );
    let out = gen_kind(&[u], Kind::Deployment);
    contains(
        &out,
        r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels:
    app.kubernetes.io/managed-by: supervisor
    app.kubernetes.io/name: web
  annotations:
    web.supervisor.io/restart-policy: on-failure
    web.supervisor.io/rollback: "true"
spec:
  replicas: 1
  selector:
    matchLabels:
      app.kubernetes.io/name: web
  strategy:
    type: RollingUpdate
    rollingUpdate:
      maxSurge: 1
      maxUnavailable: 0
  minReadySeconds: 10
  progressDeadlineSeconds: 60
  template:
    metadata:
      labels:
        app.kubernetes.io/name: web
    spec:
      restartPolicy: Always
"#,
    );
    contains(
        &out,
        "        ports:\n        - containerPort: 80\n          protocol: TCP\n        - containerPort: 9000\n",
    );
    assert!(!out.yaml.contains("hostPort"), "{}", out.yaml);
    contains(
        &out,
        r#"---
apiVersion: v1
kind: Service
metadata:
  name: web
  labels:
    app.kubernetes.io/managed-by: supervisor
    app.kubernetes.io/name: web
spec:
  selector:
    app.kubernetes.io/name: web
  ports:
  - name: tcp-8080
    protocol: TCP
    port: 8080
    targetPort: 80
  - name: udp-9000
    protocol: UDP
    port: 9000
    targetPort: 9000
  - name: udp-9001
"#,
    );
    assert_eq!(keys(&out), vec![("[update] rollback".to_string(), true), ("[restart] policy".to_string(), true)]);
}

#[test]
fn privileged_units_do_not_say_allow_privilege_escalation() {
    let u = unit("p", "[container]\nimage = \"x\"\nprivileged = true\nnetwork = \"host\"\n");
    let out = gen_kind(&[u], Kind::Pod);
    contains(&out, "      privileged: true\n      seccompProfile:\n        type: Unconfined\n");
    contains(&out, "spec:\n  hostNetwork: true\n");
    assert!(!out.yaml.contains("allowPrivilegeEscalation"), "{}", out.yaml);
}

#[test]
fn output_is_deterministic_and_ordered_by_unit() {
    let a = unit("a", "[container]\nimage = \"x\"\n");
    let b = unit("b", "[container]\nimage = \"x\"\n");
    let one = gen_kind(&[b.clone(), a.clone()], Kind::Pod);
    let two = gen_kind(&[a, b], Kind::Pod);
    assert_eq!(one.yaml, two.yaml);
    assert!(one.yaml.find("name: a").unwrap() < one.yaml.find("name: b").unwrap());
    assert_eq!(one.yaml.matches("\n---\n").count(), 1);
}
