//! The normalized unit: documented defaults, and every key of the format
//! accepted in its Docker-like forms.

use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};
use supervisor::units::Unit;
use supervisor::units::diag::Source;
use supervisor::units::model::{AutoUpdate, Strategy, UpdatePolicy};
use supervisor::units::parse::{ParseInput, parse_unit};

fn parse(name: &str, text: &str) -> Unit {
    let env_file = |p: &Path| -> Result<String, String> {
        assert_eq!(p, Path::new("/etc/units.d/web.env"));
        Ok("FROM_FILE=1\nTZ=Europe/Paris\n".into())
    };
    let input = ParseInput {
        name,
        source: Source { path: Path::new("unit.toml"), text },
        base_dir: Path::new("/etc/units.d"),
        read_file: &env_file,
    };
    match parse_unit(&input) {
        Ok(p) => p.unit,
        Err(e) => panic!("{e:#?}"),
    }
}

fn json(u: &Unit) -> Value {
    serde_json::to_value(u).unwrap()
}

#[test]
fn a_minimal_unit_gets_every_documented_default() {
    let u = json(&parse("app", "[container]\nimage = \"busybox\"\n"));
    assert_eq!(
        u,
        json!({
            "name": "app",
            "unit": { "description": null, "after": [], "requires": [], "ready_timeout": "5m" },
            "container": {
                "image": "docker.io/library/busybox:latest",
                "pull": "missing",
                "entrypoint": null,
                "command": null,
                "env": {},
                "env_file": null,
                "env_file_vars": {},
                "workdir": null,
                "user": null,
                "hostname": "app",
                "read_only": false,
                "ports": [],
                "volumes": [],
                "tmpfs": [],
                "network": "bridge",
                "aliases": [],
                "cap_add": [],
                "cap_drop": [],
                "no_new_privileges": true,
                "seccomp": "default",
                "privileged": false,
                "devices": [],
                "sysctls": {},
                "ulimits": {},
                "notify": false
            },
            "resources": { "cpus": null, "memory": null, "pids": null },
            "restart": { "policy": "always", "delay": "100ms", "max_delay": "1m", "reset_after": "10s", "limit": 0 },
            "stop": { "signal": null, "timeout": "10s" },
            "health": {
                "probe": null, "disable": false, "interval": null, "timeout": null,
                "retries": null, "start_period": null, "on_unhealthy": "none"
            },
            "logs": { "max_size": 10485760, "max_files": 3 },
            "update": {
                "strategy": "stop-first", "healthy_within": "1m", "min_healthy": "5s", "rollback": true, "auto": "never"
            }
        })
    );
}

#[test]
fn every_key_in_its_docker_forms() {
    let u = parse(
        "web",
        r#"
[unit]
description = "Public web front end"
after = ["db", "cache"]
requires = ["db"]
ready_timeout = "2m"

[container]
image = "nginx:1.27-alpine"
pull = "always"
entrypoint = ["/docker-entrypoint.sh"]
command = ["nginx", "-g", "daemon off;"]
env = { TZ = "UTC", WORKERS = 4, DEBUG = false }
env_file = "web.env"
workdir = "/srv/./app/"
user = "101:101"
hostname = "www"
read_only = true
ports = ["8080:80", "127.0.0.1:5353:53/udp", "9000-9001:9000-9001", "80"]
volumes = ["/srv/www:/usr/share/nginx/html:ro", "web-cache:/var/cache/nginx", "./conf:/etc/nginx/conf.d"]
tmpfs = ["/run", "/tmp:size=64M,mode=1777"]
network = "bridge"
aliases = ["www", "front"]
cap_add = ["net_admin", "CAP_SYS_TIME"]
cap_drop = ["ALL"]
no_new_privileges = false
seccomp = "unconfined"
privileged = false
devices = ["/dev/fuse", "/dev/sda:/dev/xvda:r"]
sysctls = { "net.core.somaxconn" = 1024, "kernel.shmmax" = "68719476736" }
ulimits = { nofile = 4096, nproc = "512:1024", core = { soft = 0, hard = -1 } }
notify = true

[resources]
cpus = 1.5
memory = "256M"
pids = 512

[restart]
policy = "on-failure"
delay = "1s"
max_delay = "5m"
reset_after = "30s"
limit = 5

[stop]
signal = "QUIT"
timeout = "1m30s"

[health]
exec = "wget -qO- http://127.0.0.1/healthz"
interval = "5s"
timeout = "2s"
retries = 5
start_period = "10s"
on_unhealthy = "stop"

[logs]
max_size = "1M"
max_files = 10

[update]
strategy = "stop-first"
healthy_within = "90s"
min_healthy = "0s"
rollback = false
auto = "registry"
"#,
    );
    let c = &u.container;
    assert_eq!(c.image.to_string(), "docker.io/library/nginx:1.27-alpine");
    assert_eq!(c.entrypoint.as_deref(), Some(&["/docker-entrypoint.sh".to_string()][..]));
    assert_eq!(c.env["WORKERS"], "4");
    assert_eq!(c.env["DEBUG"], "false");
    assert_eq!(c.env_file.as_deref(), Some("/etc/units.d/web.env"));
    // The unit's env wins over the env file's, as with docker run --env-file -e.
    let env = c.environment();
    assert_eq!((env["TZ"].as_str(), env["FROM_FILE"].as_str()), ("UTC", "1"));
    assert_eq!(c.workdir.as_deref(), Some("/srv/app"));
    let ports: Vec<String> = c.ports.iter().map(|p| p.to_string()).collect();
    assert_eq!(ports, ["80/tcp", "8080:80/tcp", "9000-9001:9000-9001/tcp", "127.0.0.1:5353:53/udp"]);
    let volumes: Vec<String> = c.volumes.iter().map(|v| v.to_string()).collect();
    assert_eq!(
        volumes,
        [
            "/etc/units.d/conf:/etc/nginx/conf.d:rw",
            "/srv/www:/usr/share/nginx/html:ro",
            "web-cache:/var/cache/nginx:rw"
        ]
    );
    let tmpfs: Vec<String> = c.tmpfs.iter().map(|t| t.to_string()).collect();
    assert_eq!(tmpfs, ["/run", "/tmp:size=64M,mode=1777"]);
    assert_eq!(c.aliases, ["front", "www"]);
    assert_eq!(c.cap_add, ["CAP_NET_ADMIN", "CAP_SYS_TIME"]);
    assert_eq!(c.cap_drop, ["ALL"]);
    let devices: Vec<String> = c.devices.iter().map(|d| d.to_string()).collect();
    assert_eq!(devices, ["/dev/fuse:/dev/fuse:rwm", "/dev/sda:/dev/xvda:r"]);
    assert_eq!(c.sysctls["net.core.somaxconn"], "1024");
    assert_eq!(c.ulimits["nproc"].to_string(), "512:1024");
    assert_eq!(c.ulimits["core"].to_string(), "0:unlimited");
    assert!(c.notify && c.read_only && !c.no_new_privileges);

    let j = json(&u);
    assert_eq!(j["unit"]["after"], json!(["cache", "db"]));
    assert_eq!(j["resources"], json!({ "cpus": 1.5, "memory": 268435456, "pids": 512 }));
    assert_eq!(
        j["restart"],
        json!({ "policy": "on-failure", "delay": "1s", "max_delay": "5m", "reset_after": "30s", "limit": 5 })
    );
    assert_eq!(j["stop"], json!({ "signal": "SIGQUIT", "timeout": "1m30s" }));
    assert_eq!(
        j["health"],
        json!({
            "probe": { "exec": ["/bin/sh", "-c", "wget -qO- http://127.0.0.1/healthz"] },
            "disable": false, "interval": "5s", "timeout": "2s", "retries": 5,
            "start_period": "10s", "on_unhealthy": "stop"
        })
    );
    assert_eq!(j["logs"], json!({ "max_size": 1048576, "max_files": 10 }));
    // min_healthy may be zero: the update is then decided the moment the
    // new container is first healthy.
    assert_eq!(
        j["update"],
        json!({
            "strategy": "stop-first", "healthy_within": "1m30s", "min_healthy": "0s", "rollback": false,
            "auto": "registry"
        })
    );
    assert_eq!(
        u.update,
        UpdatePolicy {
            strategy: Strategy::StopFirst,
            healthy_within: Duration::from_secs(90),
            min_healthy: Duration::ZERO,
            rollback: false,
            auto: AutoUpdate::Registry,
        }
    );
}

#[test]
fn health_defaults_depend_on_whose_probe_it_is() {
    let own = json(&parse("a", "[container]\nimage = \"x\"\n[health]\nhttp = \"http://localhost:8080/healthz\"\n"));
    assert_eq!(
        own["health"],
        json!({
            "probe": { "http": "http://localhost:8080/healthz" }, "disable": false, "interval": "30s",
            "timeout": "30s", "retries": 3, "start_period": "0s", "on_unhealthy": "restart"
        })
    );
    // No probe of its own: the image's HEALTHCHECK applies, reporting only,
    // with just the given timings overridden.
    let image = json(&parse("a", "[container]\nimage = \"x\"\n[health]\ninterval = \"10s\"\n"));
    assert_eq!(image["health"]["interval"], "10s");
    assert_eq!(image["health"]["retries"], Value::Null);
    assert_eq!(image["health"]["on_unhealthy"], "none");
    let off = json(&parse("a", "[container]\nimage = \"x\"\n[health]\ndisable = true\n"));
    assert_eq!(off["health"]["disable"], true);
}

#[test]
fn local_image_sources_resolve_against_the_unit_directory() {
    let image = |s: &str| parse("a", &format!("[container]\nimage = {s:?}\n")).container.image.to_string();
    assert_eq!(image("oci:images/busybox:latest"), "oci:/etc/units.d/images/busybox:latest");
    assert_eq!(image("oci-archive:/srv/img.tar"), "oci-archive:/srv/img.tar");
    assert_eq!(image("docker-archive:/srv/saved.tar"), "docker-archive:/srv/saved.tar");
    assert_eq!(image("dir:/srv/rootfs"), "dir:/srv/rootfs");
}

#[test]
fn other_network_modes() {
    let net = |s: &str| {
        json(&parse("a", &format!("[container]\nimage = \"x\"\nnetwork = {s:?}\n")))["container"]["network"].clone()
    };
    assert_eq!(net("host"), "host");
    assert_eq!(net("none"), "none");
    assert_eq!(net("unit:db"), "unit:db");
}
