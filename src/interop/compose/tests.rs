//! The translation, snippet by snippet: each Compose snippet against the
//! unit keys written by hand, and the notes with their lines.

use std::collections::BTreeMap;
use std::path::Path;

use super::{Imported, Input, Kind, import};

fn run(yaml: &str) -> Imported {
    run_with(yaml, &[], None)
}

fn run_with(yaml: &str, env: &[(&str, &str)], project: Option<&str>) -> Imported {
    let env: BTreeMap<String, String> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    let read = |p: &Path| -> Result<String, String> {
        match p.to_str() {
            Some("/srv/app/app.env") => Ok("A=1\n".into()),
            Some("/srv/app/more.env") => Ok("B=2\nC=3\n".into()),
            Some("/srv/app/last.env") => Ok("C=4\nD=5\n".into()),
            _ => Err(format!("no file {}", p.display())),
        }
    };
    import(&Input {
        file: Path::new("compose.yaml"),
        text: yaml,
        base_dir: Path::new("/srv/app"),
        env: &env,
        project,
        out_dir: Path::new("/etc/units.d"),
        read_file: &read,
    })
}

/// The unit `name`'s text as TOML.
fn unit(out: &Imported, name: &str) -> toml::Table {
    let u = out.units.iter().find(|u| u.name == name).unwrap_or_else(|| panic!("no unit {name}: {:#?}", out.notes));
    toml::from_str(&u.text).unwrap_or_else(|e| panic!("{e}\n{}", u.text))
}

/// `[section] key` of the one service `web` of `yaml`, as TOML text.
fn key_of(yaml: &str, section: &str, key: &str) -> Option<String> {
    let out = run(yaml);
    assert!(!out.failed(), "{yaml}\n{:#?}", out.notes);
    let t = unit(&out, "web");
    t.get(section).and_then(|s| s.get(key)).map(show)
}

/// A TOML value as text, tables' keys sorted (the toml crate here has no
/// writer).
fn show(v: &toml::Value) -> String {
    match v {
        toml::Value::String(s) => format!("{s:?}"),
        toml::Value::Integer(n) => n.to_string(),
        toml::Value::Float(f) => format!("{f:?}"),
        toml::Value::Boolean(b) => b.to_string(),
        toml::Value::Array(items) => format!("[{}]", items.iter().map(show).collect::<Vec<_>>().join(", ")),
        toml::Value::Table(t) => {
            let inner: Vec<String> = t
                .iter()
                .map(|(k, v)| {
                    let key = if k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                        k.clone()
                    } else {
                        format!("{k:?}")
                    };
                    format!("{key} = {}", show(v))
                })
                .collect();
            format!("{{ {} }}", inner.join(", "))
        }
        other => panic!("{other:?}"),
    }
}

fn web(body: &str) -> String {
    let indented: String = body.lines().map(|l| format!("    {l}\n")).collect();
    format!("services:\n  web:\n    image: busybox\n{indented}volumes:\n  data:\n")
}

fn notes(out: &Imported, kind: Kind) -> Vec<String> {
    out.notes.iter().filter(|n| n.kind == kind).map(|n| n.to_string()).collect()
}

#[test]
fn keys_compose_users_write() {
    let table: &[(&str, &str, &str, &str)] = &[
        (
            "command: redis-server --appendonly yes",
            "container",
            "command",
            r#"["redis-server", "--appendonly", "yes"]"#,
        ),
        ("command: [\"sh\", \"-c\", \"echo $$HOME\"]", "container", "command", r#"["sh", "-c", "echo $HOME"]"#),
        ("entrypoint: /bin/tini -- run", "container", "entrypoint", r#"["/bin/tini", "--", "run"]"#),
        ("entrypoint: [\"/e.sh\"]", "container", "entrypoint", r#"["/e.sh"]"#),
        ("entrypoint: []", "container", "entrypoint", "[]"),
        ("environment:\n  - A=1\n  - B=x=y", "container", "env", r#"{ A = "1", B = "x=y" }"#),
        ("environment:\n  A: 1\n  B: true\n  C: ''", "container", "env", r#"{ A = "1", B = "true", C = "" }"#),
        ("env_file: ./app.env", "container", "env_file", r#""/srv/app/app.env""#),
        (
            "ports:\n  - 8080:80\n  - \"127.0.0.1:5353:53/udp\"\n  - 9000-9001:9000-9001\n  - 80",
            "container",
            "ports",
            r#"["8080:80", "127.0.0.1:5353:53/udp", "9000-9001:9000-9001", "80"]"#,
        ),
        (
            "ports:\n  - target: 80\n    published: 8080\n    protocol: udp\n  - target: 81\n    host_ip: 127.0.0.1\n    published: \"8081\"\n    mode: host",
            "container",
            "ports",
            r#"["8080:80/udp", "127.0.0.1:8081:81"]"#,
        ),
        ("ports:\n  - target: 80\n    host_ip: 127.0.0.1", "container", "ports", r#"["127.0.0.1::80"]"#),
        (
            "volumes:\n  - ./www:/var/www:ro\n  - data:/data\n  - /etc/x:/x:rw\n  - ../up:/up",
            "container",
            "volumes",
            r#"["/srv/app/www:/var/www:ro", "data:/data", "/etc/x:/x", "/srv/up:/up"]"#,
        ),
        (
            "volumes:\n  - type: bind\n    source: ./conf\n    target: /conf\n    read_only: true\n  - type: volume\n    source: data\n    target: /d",
            "container",
            "volumes",
            r#"["/srv/app/conf:/conf:ro", "data:/d"]"#,
        ),
        (
            "volumes:\n  - type: tmpfs\n    target: /cache\n    tmpfs:\n      size: 64m",
            "container",
            "tmpfs",
            r#"["/cache:size=67108864"]"#,
        ),
        ("tmpfs: /run", "container", "tmpfs", r#"["/run"]"#),
        ("tmpfs:\n  - /run\n  - /tmp:size=16M", "container", "tmpfs", r#"["/run", "/tmp:size=16M"]"#),
        ("restart: always", "restart", "policy", r#""always""#),
        ("restart: \"no\"", "restart", "policy", r#""no""#),
        ("restart: no", "restart", "policy", r#""no""#),
        ("restart: unless-stopped", "restart", "policy", r#""always""#),
        ("restart: on-failure", "restart", "policy", r#""on-failure""#),
        ("restart: on-failure:5", "restart", "limit", "5"),
        ("hostname: x", "restart", "policy", r#""no""#),
        ("healthcheck:\n  test: [\"CMD\", \"redis-cli\", \"ping\"]", "health", "exec", r#"["redis-cli", "ping"]"#),
        (
            "healthcheck:\n  test: [\"CMD-SHELL\", \"curl -f localhost || exit 1\"]",
            "health",
            "exec",
            r#""curl -f localhost || exit 1""#,
        ),
        ("healthcheck:\n  test: wget -q localhost", "health", "exec", r#""wget -q localhost""#),
        ("healthcheck:\n  test: [\"CMD\", \"true\"]", "health", "on_unhealthy", r#""none""#),
        ("healthcheck:\n  test: [\"NONE\"]", "health", "disable", "true"),
        ("healthcheck:\n  disable: true\n  interval: 5s", "health", "disable", "true"),
        (
            "healthcheck:\n  test: [\"CMD\", \"true\"]\n  interval: 1m30s\n  timeout: 10s\n  retries: 5\n  start_period: 40s\n  start_interval: 1s",
            "health",
            "interval",
            r#""1m30s""#,
        ),
        ("healthcheck:\n  test: [\"CMD\", \"true\"]\n  retries: 5", "health", "retries", "5"),
        (
            "deploy:\n  resources:\n    limits:\n      cpus: '0.50'\n      memory: 50M\n      pids: 100",
            "resources",
            "memory",
            r#""50M""#,
        ),
        ("deploy:\n  resources:\n    limits:\n      cpus: '0.50'", "resources", "cpus", "0.5"),
        ("deploy:\n  resources:\n    limits:\n      pids: 100", "resources", "pids", "100"),
        ("mem_limit: 1g", "resources", "memory", r#""1G""#),
        ("mem_limit: 268435456", "resources", "memory", r#""256M""#),
        ("cpus: 1.5", "resources", "cpus", "1.5"),
        ("cpus: 2", "resources", "cpus", "2.0"),
        ("pids_limit: 64", "resources", "pids", "64"),
        ("stop_signal: SIGQUIT", "stop", "signal", r#""SIGQUIT""#),
        ("stop_grace_period: 1m30s", "stop", "timeout", r#""1m30s""#),
        ("user: \"1000:1000\"", "container", "user", r#""1000:1000""#),
        ("working_dir: /app", "container", "workdir", r#""/app""#),
        ("hostname: front", "container", "hostname", r#""front""#),
        ("read_only: true", "container", "read_only", "true"),
        ("privileged: true", "container", "privileged", "true"),
        ("cap_add: [NET_ADMIN]", "container", "cap_add", r#"["NET_ADMIN"]"#),
        ("cap_drop:\n  - ALL", "container", "cap_drop", r#"["ALL"]"#),
        ("sysctls:\n  net.core.somaxconn: 1024", "container", "sysctls", r#"{ "net.core.somaxconn" = "1024" }"#),
        ("sysctls:\n  - net.ipv4.tcp_syncookies=0", "container", "sysctls", r#"{ "net.ipv4.tcp_syncookies" = "0" }"#),
        (
            "ulimits:\n  nproc: 65535\n  nofile:\n    soft: 20000\n    hard: 40000",
            "container",
            "ulimits",
            "{ nofile = { hard = 40000, soft = 20000 }, nproc = 65535 }",
        ),
        ("network_mode: host", "container", "network", r#""host""#),
        ("network_mode: none", "container", "network", r#""none""#),
        (
            "logging:\n  driver: json-file\n  options:\n    max-size: 10m\n    max-file: \"3\"",
            "logs",
            "max_size",
            r#""10M""#,
        ),
        ("logging:\n  options:\n    max-file: \"5\"", "logs", "max_files", "5"),
        ("security_opt:\n  - no-new-privileges:false", "container", "no_new_privileges", "false"),
        ("pull_policy: always", "container", "pull", r#""always""#),
        ("devices:\n  - /dev/fuse", "container", "devices", r#"["/dev/fuse"]"#),
        ("deploy:\n  restart_policy:\n    condition: on-failure\n    max_attempts: 3", "restart", "limit", "3"),
    ];
    for (snippet, section, key, want) in table {
        let got = key_of(&web(snippet), section, key);
        assert_eq!(got.as_deref(), Some(*want), "{snippet}\n{:#?}", run(&web(snippet)));
    }
}

#[test]
fn nothing_dropped_means_no_drop_notes() {
    let out = run(&web("ports: [\"80:80\"]\nrestart: always"));
    assert!(!out.dropped() && !out.failed(), "{:#?}", out.notes);
}

#[test]
fn depends_on_forms() {
    let yaml = "services:
  web:
    image: busybox
    depends_on:
      db:
        condition: service_healthy
      cache:
        condition: service_started
      migrate:
        condition: service_completed_successfully
  worker:
    image: busybox
    depends_on: [db]
  db:
    image: redis
    healthcheck:
      test: [\"CMD\", \"redis-cli\", \"ping\"]
  cache:
    image: redis
  migrate:
    image: busybox
";
    let out = run(yaml);
    assert!(!out.failed(), "{:#?}", out.notes);
    let web = unit(&out, "web");
    assert_eq!(show(&web["unit"]["requires"]), r#"["db", "cache"]"#);
    assert_eq!(show(&web["unit"]["after"]), r#"["migrate"]"#);
    assert_eq!(show(&unit(&out, "worker")["unit"]["requires"]), r#"["db"]"#);
    let dropped = notes(&out, Kind::Dropped);
    assert_eq!(dropped.len(), 1, "{dropped:#?}");
    assert!(dropped[0].starts_with("compose.yaml:9: services.web.depends_on.migrate: not carried: "), "{}", dropped[0]);
    // The list form on a service with a healthcheck: requires waits for it.
    assert!(
        notes(&out, Kind::Note).iter().any(|n| n.starts_with("compose.yaml:13: services.worker.depends_on.db: note:"))
    );
}

#[test]
fn dropped_keys_are_named_with_their_lines() {
    let yaml = "services:
  web:
    image: busybox
    container_name: front
    init: true
    ports:
      - \"[::1]:80:80\"
    volumes:
      - /anonymous
      - ./x:/x:z
    logging:
      driver: syslog
    deploy:
      replicas: 3
      resources:
        reservations:
          memory: 1g
    future_key: 1
networks:
  front: {}
";
    let out = run(yaml);
    assert!(!out.failed(), "{:#?}", out.notes);
    let lines: Vec<(usize, &str)> =
        out.notes.iter().filter(|n| n.kind == Kind::Dropped).map(|n| (n.line, n.path.as_str())).collect();
    assert_eq!(
        lines,
        [
            (4, "services.web.container_name"),
            (5, "services.web.init"),
            (7, "services.web.ports[0]"),
            (9, "services.web.volumes[0]"),
            (10, "services.web.volumes[1]"),
            (12, "services.web.logging.driver"),
            (14, "services.web.deploy.replicas"),
            (16, "services.web.deploy.resources.reservations"),
            (18, "services.web.future_key"),
            (19, "networks"),
        ]
    );
    let first = out.notes.iter().find(|n| n.kind == Kind::Dropped).unwrap().to_string();
    assert!(first.starts_with("compose.yaml:4: services.web.container_name: not carried: "), "{first}");
    // What could be carried still is.
    assert_eq!(show(&unit(&out, "web")["container"]["volumes"]), r#"["/srv/app/x:/x"]"#);
}

#[test]
fn interpolation_with_the_env_given() {
    let yaml = "services:
  web:
    image: \"busybox:${TAG:-latest}\"
    ports:
      - \"${PORT}:80\"
    environment:
      GREETING: \"cost $$5 ${MISSING}\"
      PASSED:
      EMPTIED: ${MISSING:-}
";
    let out = run_with(yaml, &[("PORT", "8081"), ("PASSED", "from env")], None);
    assert!(!out.failed(), "{:#?}", out.notes);
    let t = unit(&out, "web");
    assert_eq!(t["container"]["image"].as_str(), Some("busybox:latest"));
    assert_eq!(show(&t["container"]["ports"]), r#"["8081:80"]"#);
    assert_eq!(t["container"]["env"]["GREETING"].as_str(), Some("cost $5 "));
    assert_eq!(t["container"]["env"]["PASSED"].as_str(), Some("from env"));
    // Interpolated to nothing is an empty value, not a pass-through.
    assert_eq!(t["container"]["env"]["EMPTIED"].as_str(), Some(""));
    assert!(notes(&out, Kind::Note).iter().any(|n| n.starts_with("compose.yaml:7:") && n.contains("MISSING")));

    let out = run("services:\n  web:\n    image: ${IMAGE:?set IMAGE}\n");
    assert!(out.failed() && out.units.is_empty());
    assert_eq!(notes(&out, Kind::Error), ["compose.yaml:3: services.web.image: error: IMAGE: set IMAGE"]);
}

#[test]
fn an_operator_that_is_not_ascii_is_invalid_not_a_panic() {
    // Found by the compose_file fuzz target: the operator after the name
    // was taken to be one byte long, and `˛` is two.
    let out = run("services:\n  web:\n    image: busybox\n    environment:\n      Y: \"${EMPTY\u{2db}flt}\"\n");
    assert!(out.failed() && out.units.is_empty());
    let errors = notes(&out, Kind::Error);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].starts_with("compose.yaml:5: services.web.environment.Y: error: invalid interpolation format"),
        "{errors:?}"
    );
}

#[test]
fn names_projects_and_volumes() {
    let yaml = "name: shop
services:
  web_front:
    image: busybox
    volumes: [data:/d]
    network_mode: service:db
  db:
    image: redis
volumes:
  data:
  ext:
    external: true
";
    let out = run(yaml);
    assert!(!out.failed(), "{:#?}", out.notes);
    let names: Vec<&str> = out.units.iter().map(|u| u.name.as_str()).collect();
    assert_eq!(names, ["shop-web-front", "shop-db"]);
    let web = unit(&out, "shop-web-front");
    assert_eq!(show(&web["container"]["volumes"]), r#"["shop_data:/d"]"#);
    assert_eq!(web["container"]["network"].as_str(), Some("unit:shop-db"));
    assert_eq!(show(&unit(&out, "shop-db")["container"]["aliases"]), r#"["db"]"#);
    assert!(
        notes(&out, Kind::Note).iter().any(|n| n.starts_with("compose.yaml:3: services.web_front: note: unit name"))
    );

    let out = run_with(yaml, &[], Some("Other"));
    assert!(out.units.iter().any(|u| u.name == "other-db"), "{:#?}", out.units);
}

#[test]
fn refusals() {
    let cases = [
        ("services:\n  web:\n    build: .\n", "compose.yaml:3: services.web.build: error: build: is refused"),
        (
            "services:\n  web:\n    image: x\n    build: .\n",
            "compose.yaml:4: services.web.build: error: build: is refused",
        ),
        ("services:\n  web:\n    command: x\n", "compose.yaml:2: services.web: error: no image:"),
        (
            "services:\n  web:\n    image: x\n    volumes: [nope:/x]\n",
            "compose.yaml:4: services.web.volumes[0]: error: named volume",
        ),
        (
            "services:\n  web:\n    image: x\n    depends_on: [ghost]\n",
            "compose.yaml:4: services.web.depends_on.ghost: error: no service",
        ),
        ("services:\n  a_b:\n    image: x\n  a-b:\n    image: x\n", "compose.yaml:4: services.a-b: error: services"),
        ("volumes: {}\n", "compose.yaml:1: error: no services:"),
        ("services: [\n", "compose.yaml:"),
        (
            "services:\n  web:\n    image: x\n    ports: \"80\"\n",
            "compose.yaml:4: services.web.ports: error: expected a list",
        ),
    ];
    for (yaml, want) in cases {
        let out = run(yaml);
        assert!(out.failed() && out.units.is_empty(), "{yaml}");
        let errors = notes(&out, Kind::Error);
        assert!(errors.iter().any(|e| e.starts_with(want)), "{yaml}\nwant {want}\n{errors:#?}");
    }
}

#[test]
fn hostile_files_do_not_panic() {
    let mut bomb = String::from("x-a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 1..10 {
        let p = i - 1;
        bomb += &format!("x-a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n");
    }
    bomb += "services:\n  web:\n    image: x\n    command: *a9\n";
    let deep = format!("services: {}{}", "[".repeat(10_000), "]".repeat(10_000));
    let inputs = [
        bomb,
        deep,
        "\u{0}\u{1}garbage".to_string(),
        "services: 3".to_string(),
        "services:\n  web: [1, 2]".to_string(),
        "services:\n  web:\n    image: [x]\n    ports: [{}]\n    volumes: [{type: volume}]\n".to_string(),
        "services:\n  web:\n    image: x\n    healthcheck: {test: []}\n    ulimits: {nofile: {}}\n".to_string(),
        "services:\n  web:\n    image: x\n    environment: 3\n    depends_on: 4\n    deploy: [1]\n".to_string(),
        "- 1\n- 2\n".to_string(),
        "services:\n  ? [a]\n  : 1\n".to_string(),
    ];
    for input in inputs {
        let out = run(&input);
        assert!(out.failed(), "{input:.200}: {:#?}", out.units);
    }
}

#[test]
fn env_files_beyond_the_first_are_written_into_env() {
    for body in [
        "env_file: [app.env, more.env, last.env]\nenvironment:\n  D: from environment",
        "environment:\n  D: from environment\nenv_file: [app.env, more.env, last.env]",
    ] {
        let out = run(&web(body));
        assert!(!out.failed() && !out.dropped(), "{:#?}", out.notes);
        let t = unit(&out, "web");
        assert_eq!(t["container"]["env_file"].as_str(), Some("/srv/app/app.env"));
        assert_eq!(show(&t["container"]["env"]), r#"{ B = "2", C = "4", D = "from environment" }"#, "{body}");
    }
    let out = run(&web("env_file: [app.env, nowhere.env]"));
    assert!(notes(&out, Kind::Error).iter().any(|e| e.contains("nowhere.env")), "{:#?}", out.notes);
}

#[test]
fn every_written_unit_loads() {
    // The env_file is read through the reader given (validation).
    let out = run(&web("env_file: app.env\nhealthcheck:\n  test: [\"CMD\", \"true\"]"));
    assert!(!out.failed(), "{:#?}", out.notes);
    let out = run(&web("env_file: missing.env"));
    assert!(out.failed());
    let error = &notes(&out, Kind::Error)[0];
    assert!(error.starts_with("compose.yaml:2: services.web: error: ") && error.contains("missing.env"), "{error}");
}
