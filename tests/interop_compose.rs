//! `supervisorctl import compose` against the real tools: a Compose project
//! of the kind the Docker tutorials teach, imported and run by a real
//! supervisord (as root); and our reading of interpolation and the short
//! syntaxes compared with Debian's `docker-compose config` (1.29) on the
//! same files, both outputs read by this test.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::daemon::Daemon;
use common::registry::Registry;

fn import(args: &[&str], cwd: &Path, env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_supervisorctl"));
    c.args(["import", "compose"]).args(args).current_dir(cwd);
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().unwrap()
}

fn write(dir: &Path, name: &str, text: &str) {
    if let Some(parent) = dir.join(name).parent() {
        std::fs::create_dir_all(parent).unwrap();
    }
    std::fs::write(dir.join(name), text).unwrap();
}

/// A web front end (busybox httpd), redis with a healthcheck and a named
/// volume, and a worker counting in redis; web and worker wait for redis
/// to be healthy; the registry, the published port and a greeting come
/// from `.env`.
const TUTORIAL: &str = r#"# The Docker tutorials' shape: a front end, a store, a worker.
services:
  web:
    image: ${REGISTRY}/library/busybox:${BUSYBOX_TAG:-1.36}
    command: ["httpd", "-f", "-p", "80", "-h", "/var/www"]
    ports:
      - "127.0.0.1:${WEB_PORT}:80"
    volumes:
      - ./www:/var/www:ro
    depends_on:
      redis:
        condition: service_healthy
    restart: unless-stopped
  redis:
    image: "${REGISTRY}/library/redis:7"
    command: ["--protected-mode", "no", "--dir", "/data"]
    volumes:
      - redis-data:/data
    healthcheck:
      test: ["CMD", "redis-cli", "ping"]
      interval: 1s
      timeout: 3s
      retries: 30
    restart: always
  worker:
    image: ${REGISTRY}/library/busybox:1.36
    environment:
      GREETING: ${GREETING}
    command:
      - sh
      - -c
      - |
        echo "$$GREETING"
        while printf 'INCR jobs\r\n' | nc -w 2 redis 6379; do sleep 1; done
        exit 1
    depends_on:
      redis:
        condition: service_healthy
    restart: on-failure
volumes:
  redis-data:
"#;

#[test]
fn a_tutorial_project_runs_under_supervisord() {
    root_only!("a_tutorial_project_runs_under_supervisord");
    let redis = common::example_redis();
    let busybox = redis.parent().unwrap().join("busybox");
    let registry = Registry::start(None);
    registry.push(&format!("oci:{}:latest", busybox.display()), "library/busybox:1.36", false);
    registry.push(&format!("oci:{}:latest", redis.display()), "library/redis:7", false);

    let project = tempfile::tempdir().unwrap();
    let port = common::free_port();
    write(project.path(), "compose.yaml", TUTORIAL);
    write(
        project.path(),
        ".env",
        &format!("REGISTRY={}\nWEB_PORT={port}\nGREETING=\"hello from .env\"\n", registry.host()),
    );
    write(project.path(), "www/index.html", "served by the imported web unit\n");

    let daemon = Daemon::start();
    let units = daemon.units();
    let units_arg = units.to_str().unwrap();
    let out = import(&["compose.yaml", "--out", units_arg], project.path(), &[]);
    let stderr = common::text(&out.stderr);
    // unless-stopped is carried with a note: nothing was dropped.
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("compose.yaml:13: services.web.restart: note:"), "{stderr}");
    let written: BTreeSet<String> = common::text(&out.stdout).lines().map(str::to_string).collect();
    let want: BTreeSet<String> =
        ["redis", "web", "worker"].iter().map(|u| units.join(format!("{u}.toml")).display().to_string()).collect();
    assert_eq!(written, want);
    let validate = daemon.ctl(&["validate", units_arg]);
    assert!(validate.status.success(), "{}", common::text(&validate.stderr));

    // Importing again without --force would replace them: refused.
    let again = import(&["compose.yaml", "--out", units_arg], project.path(), &[]);
    assert_eq!(again.status.code(), Some(1));
    assert!(common::text(&again.stderr).contains("--force"), "{}", common::text(&again.stderr));

    let reload = daemon.ctl(&["reload"]);
    assert!(reload.status.success(), "{}", common::text(&reload.stderr));
    let redis_up = daemon.wait_for("redis", "healthy", 60, |u| u.is_some_and(|u| u["health"] == "healthy"));
    let web = daemon.wait_state("web", "running");
    let worker = daemon.wait_state("worker", "running");
    // Both waited for redis to be healthy (service_healthy).
    let since = |v: &serde_json::Value| v["since"].as_str().unwrap_or_default().to_string();
    let healthy_at = redis_up.as_ref().map(since).unwrap();
    assert!(since(&web) >= healthy_at && since(&worker) >= healthy_at, "{web}\n{worker}\n{redis_up:?}");

    // web answers on its published port with the bind-mounted page.
    let addr = format!("127.0.0.1:{port}").parse().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let body = loop {
        match common::http::get(addr) {
            Ok(b) => break b,
            Err(e) => assert!(Instant::now() < deadline, "web on {addr}: {e}\n{}", daemon.log()),
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(body, "served by the imported web unit");

    // The worker got its greeting through .env and reaches redis by its
    // service name: redis answers its INCR.
    daemon.wait_log("worker", None, "hello from .env");
    daemon.wait_log("worker", None, ":2");
    // And the count is in redis, read from inside the worker's container
    // (a bulk reply: "$1", then the number).
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let got = daemon.ctl(&["exec", "worker", "--", "sh", "-c", "printf 'GET jobs\\r\\n' | nc -w 2 redis 6379"]);
        let count = common::text(&got.stdout);
        if count.lines().nth(1).and_then(|n| n.trim().parse::<u32>().ok()).is_some_and(|n| n >= 2) {
            break;
        }
        assert!(Instant::now() < deadline, "GET jobs: {count:?} {}", common::text(&got.stderr));
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Ports as (host_ip, host_port, container_port, protocol), one per port
/// of a range, from the short syntax.
fn short_ports(spec: &str) -> Vec<(String, String, u32, String)> {
    let (rest, proto) = spec.rsplit_once('/').unwrap_or((spec, "tcp"));
    let parts: Vec<&str> = rest.split(':').collect();
    let (ip, host, target) = match parts.as_slice() {
        [t] => ("", "", *t),
        [h, t] => ("", *h, *t),
        [ip, h, t] => (*ip, *h, *t),
        _ => panic!("{spec}"),
    };
    let range = |r: &str| -> Vec<u32> {
        let (a, b) = r.split_once('-').unwrap_or((r, r));
        (a.parse().unwrap()..=b.parse().unwrap()).collect()
    };
    let targets = range(target);
    let hosts: Vec<String> = if host.is_empty() {
        vec![String::new(); targets.len()]
    } else {
        range(host).iter().map(u32::to_string).collect()
    };
    targets.into_iter().zip(hosts).map(|(t, h)| (ip.to_string(), h, t, proto.to_string())).collect()
}

/// The same from docker-compose's output (strings or long mappings).
fn compose_ports(v: &serde_json::Value) -> Vec<(String, String, u32, String)> {
    match v {
        serde_json::Value::String(s) => short_ports(s),
        serde_json::Value::Number(n) => short_ports(&n.to_string()),
        serde_json::Value::Object(m) => {
            let text = |k: &str| match m.get(k) {
                Some(serde_json::Value::String(s)) => s.clone(),
                Some(serde_json::Value::Number(n)) => n.to_string(),
                _ => String::new(),
            };
            let proto = if text("protocol").is_empty() { "tcp".into() } else { text("protocol") };
            vec![(text("host_ip"), text("published"), text("target").parse().unwrap(), proto)]
        }
        other => panic!("{other}"),
    }
}

fn scalar(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// docker-compose 1.29 writes `$` back as `$$` so that its output can be
/// read again; the value meant has one.
fn unescape(s: &str) -> String {
    s.replace("$$", "$")
}

/// Interpolation and short-syntax edge cases. A default that holds
/// `${...}` is left out: docker-compose 1.29 does not expand it, Compose v2
/// and we do (docs/interop.md).
const EDGES: &str = r#"services:
  web:
    image: "busybox:${TAG:-1.36}"
    command: ["sh", "-c", "echo $$HOME ${GREETING} ${EMPTY:-was empty} ${EMPTY-kept empty}"]
    ports:
      - "8080:80"
      - "127.0.0.1:${PORT}:81/udp"
      - 9000-9001:9000-9001
      - "82"
      - "127.0.0.1::83"
      - ${PORT}:84
    environment:
      - PLAIN=1
      - FROM_DOTENV=${GREETING-x}
      - FROM_ENV=${OVERRIDDEN}
      - PASSED
      - DOLLARS=a$$b
    volumes:
      - ./www:/var/www:ro
      - ../up:/up
      - data:/data
  db:
    image: redis
    environment:
      X: "${EMPTY:-dflt}"
      Y: "${EMPTY-dflt}"
      Z: 5
      W: ${UNSET_TOO:-}
volumes:
  data:
"#;

#[test]
fn interpolation_and_short_syntax_read_as_docker_compose_reads_them() {
    let dir = tempfile::tempdir().unwrap();
    let project = dir.path().join("proj");
    write(&project, "docker-compose.yml", EDGES);
    write(&project, ".env", "PORT=5353\nGREETING=hello world\nEMPTY=\nOVERRIDDEN=from .env\n");
    let env = [("OVERRIDDEN", "from the environment"), ("PASSED", "passed through")];

    let mut dc = Command::new("docker-compose");
    dc.args(["--ansi", "never", "config"]).current_dir(&project);
    for (k, v) in env {
        dc.env(k, v);
    }
    let dc = dc.output().expect("docker-compose (apt-get install docker-compose; scripts/install-deps.sh)");
    assert!(dc.status.success(), "docker-compose config: {}", common::text(&dc.stderr));
    // Its YAML read by PyYAML (docker-compose's own dependency), as JSON.
    let mut py = Command::new("python3")
        .args(["-c", "import sys, json, yaml; json.dump(yaml.safe_load(sys.stdin), sys.stdout)"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3");
    std::io::Write::write_all(py.stdin.as_mut().unwrap(), &dc.stdout).unwrap();
    let py = py.wait_with_output().unwrap();
    assert!(py.status.success());
    let theirs: serde_json::Value = serde_json::from_slice(&py.stdout).unwrap();

    let out_dir = dir.path().join("units");
    let ours = import(&["docker-compose.yml", "--out", out_dir.to_str().unwrap()], &project, &env);
    assert_eq!(ours.status.code(), Some(0), "{}", common::text(&ours.stderr));
    let unit = |name: &str| -> toml::Table {
        toml::from_str(&std::fs::read_to_string(out_dir.join(format!("{name}.toml"))).unwrap()).unwrap()
    };

    for name in ["web", "db"] {
        let svc = &theirs["services"][name];
        let ours = unit(name);
        let c = &ours["container"];
        assert_eq!(c["image"].as_str().unwrap(), svc["image"].as_str().unwrap(), "{name} image");

        let their_env: BTreeMap<String, String> =
            svc["environment"].as_object().unwrap().iter().map(|(k, v)| (k.clone(), unescape(&scalar(v)))).collect();
        let our_env: BTreeMap<String, String> =
            c["env"].as_table().unwrap().iter().map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string())).collect();
        assert_eq!(our_env, their_env, "{name} environment");

        if name == "web" {
            let their_cmd: Vec<String> =
                svc["command"].as_array().unwrap().iter().map(|v| unescape(v.as_str().unwrap())).collect();
            let our_cmd: Vec<String> =
                c["command"].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_string()).collect();
            assert_eq!(our_cmd, their_cmd, "command");
            let mut their_ports: Vec<_> = svc["ports"].as_array().unwrap().iter().flat_map(compose_ports).collect();
            let mut our_ports: Vec<_> =
                c["ports"].as_array().unwrap().iter().flat_map(|p| short_ports(p.as_str().unwrap())).collect();
            their_ports.sort();
            our_ports.sort();
            assert_eq!(our_ports, their_ports, "ports");
            let their_vols: BTreeSet<String> = svc["volumes"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_str().unwrap().trim_end_matches(":rw").to_string())
                .collect();
            let our_vols: BTreeSet<String> =
                c["volumes"].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_string()).collect();
            assert_eq!(our_vols, their_vols, "volumes");
        }
    }
}

#[test]
fn exit_codes_say_what_was_carried() {
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("units");
    let out_arg = out_dir.to_str().unwrap();
    write(dir.path(), "all.yaml", "services:\n  web:\n    image: busybox\n    restart: always\n");
    write(dir.path(), "some.yaml", "services:\n  web:\n    image: busybox\n    init: true\n    stdin_open: true\n");
    write(dir.path(), "bad.yaml", "services:\n  web:\n    image: busybox\n  db:\n    build: ./db\n");

    // An error: nothing written, the line named.
    let bad = import(&["bad.yaml", "--out", out_arg], dir.path(), &[]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(common::text(&bad.stderr).contains("bad.yaml:5: services.db.build: error: build: is refused"));
    assert!(!out_dir.join("web.toml").exists());

    // Something not carried: written, each key named, exit 2.
    let some = import(&["some.yaml", "--out", out_arg], dir.path(), &[]);
    let stderr = common::text(&some.stderr);
    assert_eq!(some.status.code(), Some(2), "{stderr}");
    let lines: Vec<&str> = stderr.lines().filter(|l| l.contains("not carried:")).collect();
    assert_eq!(lines.len(), 2, "{stderr}");
    assert!(lines[0].starts_with("some.yaml:4: services.web.init: not carried: "), "{stderr}");
    assert!(lines[1].starts_with("some.yaml:5: services.web.stdin_open: not carried: "), "{stderr}");
    let text = std::fs::read_to_string(out_dir.join("web.toml")).unwrap();
    assert!(!text.contains("init") && !text.contains("stdin"), "{text}");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(out_dir.join("web.toml")).unwrap().permissions().mode() & 0o777, 0o644);

    // Everything carried, over the old file with --force: exit 0, no
    // temporary file left.
    let all = import(&["all.yaml", "--out", out_arg, "--force"], dir.path(), &[]);
    assert_eq!(all.status.code(), Some(0), "{}", common::text(&all.stderr));
    let text = std::fs::read_to_string(out_dir.join("web.toml")).unwrap();
    assert!(text.contains("policy = \"always\""), "{text}");
    let names: Vec<String> =
        std::fs::read_dir(&out_dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    assert_eq!(names, ["web.toml"]);
}
