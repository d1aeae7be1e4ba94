//! A unit plus its image config gives the container's OCI runtime spec,
//! with Docker's rules: the unit's `entrypoint`/`command` replace the
//! image's as `docker run --entrypoint` and trailing arguments do; the
//! environment is the image's, then the unit's; user names are looked up in
//! the image's `/etc/passwd` and `/etc/group`; Docker's default
//! capabilities, masked and read-only paths; limits from `[resources]`.
//!
//! Pure: the caller reads the image's passwd and group (inside the image's
//! root, never following a link out of it), knows our own rlimits, and
//! resolves host device numbers.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use oci_spec::runtime::Spec;
use serde_json::json;

use crate::runtime::image::ImageConfig;
use crate::units::model::{Network, Unit};
use crate::units::values::capability::ALL_CAPABILITIES;
use crate::units::values::mounts::VolumeSource;

/// Looks up a host device: its kind (`'c'` or `'b'`), major and minor.
pub type DeviceLookup<'a> = &'a dyn Fn(&str) -> std::io::Result<(char, u64, u64)>;

/// Why a unit and its image give no spec.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("user {0:?} is not in the image's /etc/passwd")]
    UnknownUser(String),
    #[error("user {0:?}: malformed /etc/passwd entry")]
    MalformedUser(String),
    #[error("group {0:?} is not in the image's /etc/group")]
    UnknownGroup(String),
    #[error("nothing to run: the image has no Entrypoint or Cmd, and the unit sets no command")]
    NothingToRun,
    #[error("cap_add {0}: the supervisor itself does not have it, so no container can")]
    CapabilityNotHeld(String),
    #[error("ulimit {name}: the hard limit {hard} is above the supervisor's own ({ours}); a container never gets more")]
    UlimitAboveOurs { name: String, hard: String, ours: u64 },
    #[error("network = \"unit:{0}\": unit {0:?} is not running")]
    JoinedNotRunning(String),
    #[error("device {path}: {source}")]
    Device {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("internal error building the runtime spec: {0}")]
    Internal(#[source] serde_json::Error),
}

/// What building a spec needs besides the unit and the image config.
pub struct SpecContext<'a> {
    /// The container's root filesystem (the mounted overlay).
    pub rootfs: &'a Path,
    /// The image's `/etc/passwd` and `/etc/group`, if it has them.
    pub passwd: Option<&'a str>,
    pub group: Option<&'a str>,
    /// Where named volumes live: `<volumes>/<name>/_data`.
    pub volumes: &'a Path,
    /// Our own hard limit per rlimit name (`nofile`, ...): a container may
    /// never get more.
    pub hard_limits: &'a BTreeMap<String, u64>,
    /// Host devices: path to (`'c'` or `'b'`, major, minor).
    pub device: DeviceLookup<'a>,
    /// The network namespace to join (`network = "unit:NAME"`).
    pub join_network: Option<&'a Path>,
    /// The capabilities the supervisor holds (`None`: all). A container
    /// can get no others: `privileged` and `cap_add = ["ALL"]` mean all of
    /// these, as Docker gives "all the daemon has".
    pub own_caps: Option<&'a [String]>,
}

/// Docker's default capabilities.
pub const DEFAULT_CAPABILITIES: [&str; 14] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// The paths Docker hides and makes read-only in every container.
pub const MASKED_PATHS: [&str; 12] = [
    "/proc/asound",
    "/proc/acpi",
    "/proc/interrupts",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];
pub const READONLY_PATHS: [&str; 5] = ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"];

const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// A user resolved to ids.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
    pub home: String,
}

/// Resolves `user` (`uid`, `uid:gid`, `name`, `name:group`) with the
/// image's passwd and group files, as Docker does: a name must exist; a
/// numeric uid need not; supplementary groups are the groups that list the
/// user.
pub fn resolve_user(user: &str, passwd: Option<&str>, group: Option<&str>) -> Result<User, SpecError> {
    let (u, g) = match user.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (user, None),
    };
    let entries = |text: Option<&str>| -> Vec<Vec<String>> {
        text.unwrap_or_default()
            .lines()
            .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
            .map(|l| l.split(':').map(String::from).collect())
            .collect()
    };
    let users = entries(passwd);
    let groups = entries(group);
    let by_name = users.iter().find(|e| e.first().map(String::as_str) == Some(u));
    let by_uid = |uid: u32| users.iter().find(|e| e.get(2).and_then(|x| x.parse::<u32>().ok()) == Some(uid));
    let (uid, name, primary, home) = match u.parse::<u32>() {
        Ok(uid) => {
            let e = by_uid(uid);
            // Not in passwd: group 0, as runc (and so Docker) does.
            let gid = e.and_then(|e| e.get(3)?.parse().ok()).unwrap_or(0);
            (uid, e.and_then(|e| e.first().cloned()), gid, e.and_then(|e| e.get(5).cloned()))
        }
        Err(_) => {
            let e = by_name.ok_or_else(|| SpecError::UnknownUser(u.to_string()))?;
            let uid = e.get(2).and_then(|x| x.parse().ok()).ok_or_else(|| SpecError::MalformedUser(u.to_string()))?;
            let gid = e.get(3).and_then(|x| x.parse().ok()).unwrap_or(uid);
            (uid, Some(u.to_string()), gid, e.get(5).cloned())
        }
    };
    let gid = match g {
        None => primary,
        Some(g) => match g.parse::<u32>() {
            Ok(gid) => gid,
            Err(_) => groups
                .iter()
                .find(|e| e.first().map(String::as_str) == Some(g))
                .and_then(|e| e.get(2)?.parse().ok())
                .ok_or_else(|| SpecError::UnknownGroup(g.to_string()))?,
        },
    };
    let mut additional_gids: Vec<u32> = match (&name, g) {
        (Some(n), None) => groups
            .iter()
            .filter(|e| e.get(3).is_some_and(|m| m.split(',').any(|m| m == n)))
            .filter_map(|e| e.get(2)?.parse().ok())
            .filter(|x| *x != gid)
            .collect(),
        _ => Vec::new(),
    };
    additional_gids.sort_unstable();
    additional_gids.dedup();
    Ok(User { uid, gid, additional_gids, home: home.filter(|h| !h.is_empty()).unwrap_or_else(|| "/".into()) })
}

/// The command: `entrypoint ++ command`, Docker's way. A unit entrypoint
/// clears the image's Cmd, as `docker run --entrypoint` does.
pub fn command_line(unit: &Unit, image: &ImageConfig) -> Result<Vec<String>, SpecError> {
    let c = &unit.container;
    let (entrypoint, cmd) = match &c.entrypoint {
        Some(e) => (e.clone(), c.command.clone().unwrap_or_default()),
        None => (
            image.config.entrypoint.clone().unwrap_or_default(),
            c.command.clone().or_else(|| image.config.cmd.clone()).unwrap_or_default(),
        ),
    };
    let args: Vec<String> = entrypoint.into_iter().chain(cmd).collect();
    if args.is_empty() {
        return Err(SpecError::NothingToRun);
    }
    Ok(args)
}

/// The environment: the image's, then the unit's, with PATH, HOSTNAME and
/// HOME as Docker sets them when missing.
pub fn environment(unit: &Unit, image: &ImageConfig, home: &str) -> Vec<String> {
    let mut env: BTreeMap<String, String> = BTreeMap::new();
    let mut order: Vec<String> = Vec::new();
    let mut put = |k: &str, v: &str, env: &mut BTreeMap<String, String>| {
        if !env.contains_key(k) {
            order.push(k.to_string());
        }
        env.insert(k.to_string(), v.to_string());
    };
    put("PATH", DEFAULT_PATH, &mut env);
    put("HOSTNAME", &unit.container.hostname, &mut env);
    for kv in image.config.env.iter().flatten() {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        put(k, v, &mut env);
    }
    for (k, v) in unit.container.environment() {
        put(&k, &v, &mut env);
    }
    if !env.contains_key("HOME") {
        put("HOME", home, &mut env);
    }
    order.iter().map(|k| format!("{k}={}", env[k])).collect()
}

fn capabilities(unit: &Unit, own: Option<&[String]>) -> Result<Vec<String>, SpecError> {
    let c = &unit.container;
    let held = |cap: &str| own.is_none_or(|o| o.iter().any(|x| x == cap));
    if c.privileged || c.cap_add.iter().any(|x| x == "ALL") {
        return Ok(ALL_CAPABILITIES.iter().filter(|c| held(c)).map(|s| s.to_string()).collect());
    }
    if let Some(missing) = c.cap_add.iter().find(|cap| !held(cap)) {
        return Err(SpecError::CapabilityNotHeld(missing.clone()));
    }
    let mut caps: Vec<String> = if c.cap_drop.iter().any(|x| x == "ALL") {
        Vec::new()
    } else {
        DEFAULT_CAPABILITIES.iter().map(|s| s.to_string()).collect()
    };
    caps.retain(|x| !c.cap_drop.contains(x));
    for a in &c.cap_add {
        if !caps.contains(a) {
            caps.push(a.clone());
        }
    }
    caps.retain(|cap| held(cap));
    caps.sort_by_key(|c| ALL_CAPABILITIES.iter().position(|a| a == c));
    Ok(caps)
}

/// The runtime spec's name of a ulimit (`nofile` is `RLIMIT_NOFILE`).
pub fn rlimit_name(ulimit: &str) -> String {
    format!("RLIMIT_{}", ulimit.to_uppercase())
}

/// Builds the spec.
pub fn build(unit: &Unit, image: &ImageConfig, ctx: &SpecContext<'_>) -> Result<Spec, SpecError> {
    let c = &unit.container;
    let user_text =
        c.user.clone().or_else(|| image.config.user.clone().filter(|u| !u.is_empty())).unwrap_or_else(|| "0".into());
    let user = resolve_user(&user_text, ctx.passwd, ctx.group)?;
    let args = command_line(unit, image)?;
    let env = environment(unit, image, &user.home);
    let cwd = c
        .workdir
        .clone()
        .or_else(|| image.config.working_dir.clone().filter(|w| !w.is_empty()))
        .unwrap_or_else(|| "/".into());

    let caps = capabilities(unit, ctx.own_caps)?;
    // Since Docker 23, a non-root user gets no effective or permitted
    // capabilities; the bounding set still limits what setuid can give.
    let (effective, permitted) = if user.uid == 0 { (caps.clone(), caps.clone()) } else { (Vec::new(), Vec::new()) };

    let mut rlimits = Vec::new();
    for (name, limit) in &c.ulimits {
        let ours = ctx.hard_limits.get(name).copied();
        let want = |v: Option<u64>| v.unwrap_or(u64::MAX);
        if let Some(ours) = ours
            && want(limit.hard) > ours
        {
            return Err(SpecError::UlimitAboveOurs {
                name: name.clone(),
                hard: limit.hard.map_or("unlimited".to_string(), |h| h.to_string()),
                ours,
            });
        }
        rlimits.push(json!({ "type": rlimit_name(name), "soft": want(limit.soft), "hard": want(limit.hard) }));
    }

    let mut mounts = vec![
        json!({"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]}),
        json!({"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]}),
        json!({"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", if c.privileged { "rw" } else { "ro" }]}),
        json!({"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup", "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]}),
        json!({"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]}),
    ];
    for v in &c.volumes {
        let source = match &v.source {
            VolumeSource::Bind(p) => PathBuf::from(p),
            VolumeSource::Named(n) => ctx.volumes.join(n).join("_data"),
        };
        mounts.push(json!({
            "destination": v.target, "type": "bind", "source": source,
            "options": ["rbind", if v.read_only { "ro" } else { "rw" }, "rprivate"]
        }));
    }
    for t in &c.tmpfs {
        let mut options = vec!["nosuid".to_string(), "nodev".to_string()];
        if let Some(s) = t.size {
            options.push(format!("size={s}"));
        }
        if let Some(m) = t.mode {
            options.push(format!("mode={m:o}"));
        }
        options.extend(t.flags.iter().cloned());
        mounts.push(json!({"destination": t.target, "type": "tmpfs", "source": "tmpfs", "options": options}));
    }

    let mut namespaces = vec![
        json!({"type": "pid"}),
        json!({"type": "mount"}),
        json!({"type": "uts"}),
        json!({"type": "ipc"}),
        json!({"type": "cgroup"}),
    ];
    match (&c.network, ctx.join_network) {
        (Network::Host, _) => {}
        (Network::Unit(owner), None) => {
            return Err(SpecError::JoinedNotRunning(owner.clone()));
        }
        (Network::Unit(_), Some(path)) => namespaces.push(json!({"type": "network", "path": path})),
        (Network::Bridge | Network::None, _) => namespaces.push(json!({"type": "network"})),
    }

    let mut devices = Vec::new();
    // As Docker's defaults: making any device node is allowed, using one
    // is not, but for the standard ones and those the unit names.
    let mut device_rules = vec![
        json!({"allow": false, "access": "rwm"}),
        json!({"allow": true, "type": "c", "access": "m"}),
        json!({"allow": true, "type": "b", "access": "m"}),
    ];
    for d in &c.devices {
        let (kind, major, minor) =
            (ctx.device)(&d.host).map_err(|source| SpecError::Device { path: d.host.clone(), source })?;
        devices.push(json!({"path": d.container, "type": kind.to_string(), "major": major, "minor": minor, "fileMode": 0o666, "uid": 0, "gid": 0}));
        device_rules.push(
            json!({"allow": true, "type": kind.to_string(), "major": major, "minor": minor, "access": d.permissions}),
        );
    }
    if c.privileged {
        device_rules = vec![json!({"allow": true, "access": "rwm"})];
    }

    let r = &unit.resources;
    let mut resources = json!({"devices": device_rules});
    if let Some(m) = r.memory {
        resources["memory"] = json!({"limit": m, "swap": m});
    }
    if let Some(n) = r.nano_cpus {
        let period: u64 = 100_000;
        resources["cpu"] = json!({"quota": n * period / 1_000_000_000, "period": period});
    }
    if let Some(p) = r.pids {
        resources["pids"] = json!({"limit": p});
    }

    let spec = json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": false,
            "user": {"uid": user.uid, "gid": user.gid, "additionalGids": user.additional_gids},
            "args": args,
            "env": env,
            "cwd": cwd,
            "capabilities": {"bounding": caps, "effective": effective, "permitted": permitted, "inheritable": [], "ambient": []},
            "rlimits": rlimits,
            "noNewPrivileges": c.no_new_privileges,
        },
        "root": {"path": ctx.rootfs, "readonly": c.read_only},
        "hostname": c.hostname,
        "mounts": mounts,
        "linux": {
            "namespaces": namespaces,
            "devices": devices,
            "resources": resources,
            "sysctl": c.sysctls,
            "maskedPaths": if c.privileged { Vec::new() } else { MASKED_PATHS.to_vec() },
            "readonlyPaths": if c.privileged { Vec::new() } else { READONLY_PATHS.to_vec() },
        },
    });
    serde_json::from_value(spec).map_err(SpecError::Internal)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::units::diag::Source;
    use crate::units::parse::{ParseInput, parse_unit};
    use serde_json::Value;

    fn unit(text: &str) -> Unit {
        let input = ParseInput {
            name: "web",
            source: Source { path: Path::new("web.toml"), text },
            base_dir: Path::new("/etc/units.d"),
            read_file: &|_| Err("none".into()),
        };
        parse_unit(&input).unwrap().unit
    }

    fn image(json: &str) -> ImageConfig {
        ImageConfig::parse(json.as_bytes()).unwrap()
    }

    const NGINX: &str = r#"{"architecture":"amd64","os":"linux","config":{"Entrypoint":["/docker-entrypoint.sh"],
        "Cmd":["nginx","-g","daemon off;"],"Env":["PATH=/usr/sbin:/usr/bin","NGINX_VERSION=1.27"],"WorkingDir":"/srv",
        "User":"nginx"},"rootfs":{"type":"layers","diff_ids":[]}}"#;
    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\nnginx:x:101:101:nginx:/var/cache/nginx:/sbin/nologin\n";
    const GROUP: &str = "root:x:0:\nnginx:x:101:\nwww:x:33:nginx,other\nlog:x:4:nginx\n";

    fn spec(unit_text: &str, image_json: &str, limits: &BTreeMap<String, u64>) -> Result<Value, SpecError> {
        let no_device =
            |p: &str| if p == "/dev/fuse" { Ok(('c', 10, 229)) } else { Err(std::io::Error::other("no such device")) };
        let ctx = SpecContext {
            rootfs: Path::new("/run/supervisor/web/rootfs"),
            passwd: Some(PASSWD),
            group: Some(GROUP),
            volumes: Path::new("/var/lib/supervisor/volumes"),
            hard_limits: limits,
            device: &no_device,
            join_network: None,
            own_caps: None,
        };
        build(&unit(unit_text), &image(image_json), &ctx).map(|s| serde_json::to_value(s).unwrap())
    }

    #[test]
    fn docker_merge_rules() {
        let limits = BTreeMap::new();
        let s = spec("[container]\nimage = \"nginx\"\n", NGINX, &limits).unwrap();
        assert_eq!(s["process"]["args"], json!(["/docker-entrypoint.sh", "nginx", "-g", "daemon off;"]));
        assert_eq!(s["process"]["cwd"], "/srv");
        assert_eq!(s["process"]["user"], json!({"uid": 101, "gid": 101, "additionalGids": [4, 33]}));
        let env: Vec<&str> = s["process"]["env"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
        assert_eq!(env, ["PATH=/usr/sbin:/usr/bin", "HOSTNAME=web", "NGINX_VERSION=1.27", "HOME=/var/cache/nginx"]);
        // A non-root user gets no effective capabilities, only the bounding set.
        assert_eq!(s["process"]["capabilities"]["bounding"].as_array().unwrap().len(), 14);
        assert_eq!(s["process"]["capabilities"]["effective"], json!([]));
        assert_eq!(s["process"]["noNewPrivileges"], true);
        // Docker's list (moby's oci/defaults.go), written out here rather
        // than read from the constant under test.
        let masked = [
            "/proc/asound",
            "/proc/acpi",
            "/proc/interrupts",
            "/proc/kcore",
            "/proc/keys",
            "/proc/latency_stats",
            "/proc/timer_list",
            "/proc/timer_stats",
            "/proc/sched_debug",
            "/proc/scsi",
            "/sys/firmware",
            "/sys/devices/virtual/powercap",
        ];
        assert_eq!(s["linux"]["maskedPaths"], json!(masked));
        assert_eq!(
            s["linux"]["readonlyPaths"],
            json!(["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"])
        );

        // command replaces Cmd only; entrypoint replaces Entrypoint and clears Cmd.
        let s = spec("[container]\nimage = \"nginx\"\ncommand = [\"nginx\", \"-t\"]\n", NGINX, &limits).unwrap();
        assert_eq!(s["process"]["args"], json!(["/docker-entrypoint.sh", "nginx", "-t"]));
        let s = spec("[container]\nimage = \"nginx\"\nentrypoint = [\"/bin/sh\"]\n", NGINX, &limits).unwrap();
        assert_eq!(s["process"]["args"], json!(["/bin/sh"]));
        let s =
            spec("[container]\nimage = \"nginx\"\nentrypoint = []\ncommand = [\"true\"]\n", NGINX, &limits).unwrap();
        assert_eq!(s["process"]["args"], json!(["true"]));
        let err = spec("[container]\nimage = \"x\"\nentrypoint = []\n", NGINX, &limits).unwrap_err().to_string();
        assert!(err.contains("nothing to run"), "{err}");

        // The unit's env, user and workdir win.
        let s = spec(
            "[container]\nimage = \"nginx\"\nenv = { NGINX_VERSION = \"2\", X = \"y\" }\nuser = \"0:www\"\nworkdir = \"/\"\n",
            NGINX,
            &limits,
        )
        .unwrap();
        let env: Vec<&str> = s["process"]["env"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
        assert!(env.contains(&"NGINX_VERSION=2") && env.contains(&"X=y") && env.contains(&"HOME=/root"), "{env:?}");
        assert_eq!(s["process"]["user"], json!({"uid": 0, "gid": 33, "additionalGids": []}));
        assert_eq!(s["process"]["cwd"], "/");
        assert_eq!(s["process"]["capabilities"]["effective"].as_array().unwrap().len(), 14);
    }

    #[test]
    fn users_groups_and_errors() {
        assert_eq!(
            resolve_user("1000", None, None).unwrap(),
            User { uid: 1000, gid: 0, additional_gids: vec![], home: "/".into() }
        );
        assert_eq!(resolve_user("0", Some(PASSWD), None).unwrap().home, "/root");
        assert_eq!(
            resolve_user("nginx:0", Some(PASSWD), Some(GROUP)).unwrap(),
            User { uid: 101, gid: 0, additional_gids: vec![], home: "/var/cache/nginx".into() }
        );
        assert!(
            resolve_user("nobody", Some(PASSWD), Some(GROUP))
                .unwrap_err()
                .to_string()
                .contains("not in the image's /etc/passwd")
        );
        assert!(resolve_user("nginx:nope", Some(PASSWD), Some(GROUP)).unwrap_err().to_string().contains("/etc/group"));
    }

    #[test]
    fn privileges_mounts_limits_and_network() {
        let limits = BTreeMap::from([("nofile".to_string(), 4096u64)]);
        let text = "[container]\nimage = \"x\"\ncommand = [\"sh\"]\ncap_drop = [\"ALL\"]\ncap_add = [\"NET_ADMIN\"]\n\
            volumes = [\"/srv:/data:ro\", \"cache:/cache\"]\ntmpfs = [\"/tmp:size=1M,mode=1777\"]\ndevices = [\"/dev/fuse\"]\n\
            ulimits = { nofile = 1024 }\nnetwork = \"host\"\n[resources]\ncpus = 0.5\nmemory = \"64M\"\npids = 100\n";
        let s = spec(text, r#"{"rootfs":{"type":"layers","diff_ids":[]}}"#, &limits).unwrap();
        assert_eq!(s["process"]["capabilities"]["bounding"], json!(["CAP_NET_ADMIN"]));
        let mounts = s["mounts"].as_array().unwrap();
        let find = |d: &str| mounts.iter().find(|m| m["destination"] == d).unwrap().clone();
        assert_eq!(find("/data")["source"], "/srv");
        assert!(find("/data")["options"].as_array().unwrap().contains(&json!("ro")));
        assert_eq!(find("/cache")["source"], "/var/lib/supervisor/volumes/cache/_data");
        assert_eq!(find("/tmp")["options"], json!(["nosuid", "nodev", "size=1048576", "mode=1777"]));
        assert_eq!(s["linux"]["devices"][0]["major"], 10);
        assert_eq!(s["linux"]["resources"]["cpu"], json!({"quota": 50000, "period": 100000}));
        assert_eq!(s["linux"]["resources"]["memory"]["limit"], 64 << 20);
        assert_eq!(s["linux"]["resources"]["pids"]["limit"], 100);
        assert_eq!(s["process"]["rlimits"], json!([{"type": "RLIMIT_NOFILE", "soft": 1024, "hard": 1024}]));
        let ns: Vec<&str> =
            s["linux"]["namespaces"].as_array().unwrap().iter().map(|n| n["type"].as_str().unwrap()).collect();
        assert!(!ns.contains(&"network"), "host network shares the host's namespace: {ns:?}");

        let over = "[container]\nimage = \"x\"\ncommand = [\"sh\"]\nulimits = { nofile = 100000 }\n";
        let err = spec(over, r#"{"rootfs":{"type":"layers","diff_ids":[]}}"#, &limits).unwrap_err().to_string();
        assert!(err.contains("above the supervisor's own (4096)"), "{err}");

        let s = spec(
            "[container]\nimage = \"x\"\ncommand = [\"sh\"]\nprivileged = true\n",
            r#"{"rootfs":{"type":"layers","diff_ids":[]}}"#,
            &limits,
        )
        .unwrap();
        // Every capability of the kernel, 0 to 40 (the list is checked
        // against the kernel's header in units::values::capability).
        let bounding: std::collections::BTreeSet<&str> =
            s["process"]["capabilities"]["bounding"].as_array().unwrap().iter().filter_map(|c| c.as_str()).collect();
        assert_eq!(bounding.len(), 41, "{bounding:?}");
        assert_eq!(bounding, ALL_CAPABILITIES.into_iter().collect());
        assert_eq!(s["linux"]["maskedPaths"], json!([]));
    }

    #[test]
    fn containers_get_only_capabilities_we_hold() {
        let limits = BTreeMap::new();
        let own: Vec<String> =
            ALL_CAPABILITIES.iter().filter(|c| **c != "CAP_SYS_RESOURCE").map(|s| s.to_string()).collect();
        let no_device = |_: &str| Err(std::io::Error::other("none"));
        let build_with = |text: &str| {
            let ctx = SpecContext {
                rootfs: Path::new("/r"),
                passwd: None,
                group: None,
                volumes: Path::new("/v"),
                hard_limits: &limits,
                device: &no_device,
                join_network: None,
                own_caps: Some(&own),
            };
            build(&unit(text), &image(r#"{"rootfs":{"type":"layers","diff_ids":[]}}"#), &ctx)
                .map(|s| serde_json::to_value(s).unwrap())
        };
        let s = build_with("[container]\nimage = \"x\"\ncommand = [\"sh\"]\nprivileged = true\n").unwrap();
        let bounding = s["process"]["capabilities"]["bounding"].as_array().unwrap().clone();
        assert_eq!(bounding.len(), 40, "all 41 but the one we lack: {bounding:?}");
        assert!(!bounding.contains(&json!("CAP_SYS_RESOURCE")));
        let err =
            build_with("[container]\nimage = \"x\"\ncommand = [\"sh\"]\ncap_add = [\"SYS_RESOURCE\"]\n").unwrap_err();
        let err = err.to_string();
        assert!(err.contains("cap_add CAP_SYS_RESOURCE: the supervisor itself does not have it"), "{err}");
    }
}
