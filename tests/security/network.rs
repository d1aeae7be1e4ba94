//! Unpublished ports and the control API (docs/security.md, "Unpublished
//! ports" and "Control API").

use std::net::{Ipv4Addr, UdpSocket};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::daemon::{Daemon, busybox};
use crate::common::{self, text};

/// A unit running `script` under sh (stopping at once on SIGTERM), with
/// extra `[container]` lines.
fn unit(script: &str, extra: &str) -> String {
    format!(
        "[container]\nimage = \"{}\"\ncommand = [\"sh\", \"-c\", {:?}]\n{extra}",
        busybox(),
        format!("trap 'exit 0' TERM; {script}")
    )
}

fn config_value(d: &Daemon, key: &str) -> String {
    let conf = std::fs::read_to_string(d.dir.path().join("supervisord.toml")).unwrap();
    let prefix = format!("{key} = ");
    conf.lines().find_map(|l| l.strip_prefix(prefix.as_str())).unwrap().trim_matches('"').to_string()
}

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().unwrap();
    assert!(out.status.success(), "ip {args:?}: {}", text(&out.stderr));
}

/// A network namespace of the test's own, linked by a veth pair either to
/// the host (another machine) or to a bridge (a peer on the containers'
/// segment).
struct Peer {
    ns: String,
    link: String,
    _network: Option<common::HostLock>,
}

impl Peer {
    fn new() -> Peer {
        let network = common::network_user();
        let ns = common::unique_name("so");
        let link = common::unique_name("sv");
        ip(&["netns", "add", &ns]);
        ip(&["link", "add", &link, "type", "veth", "peer", "name", "eth0", "netns", &ns]);
        Peer { ns, link, _network: network }
    }

    fn run(&self, args: &[&str]) -> std::process::Output {
        Command::new("ip").args(["netns", "exec", &self.ns]).args(args).output().unwrap()
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["link", "del", &self.link]).status();
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).status();
    }
}

/// `wget` of `url` from `cmd`'s place until it answers with `want`, for
/// at most 10 s.
fn fetch_until(what: &str, cmd: &mut dyn FnMut() -> std::process::Output, want: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let o = cmd();
        if o.status.success() && text(&o.stdout).contains(want) {
            return;
        }
        assert!(Instant::now() < deadline, "{what}: {}{}", text(&o.stdout), text(&o.stderr));
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn an_outside_peer_reaches_published_ports_and_no_other() {
    if !common::require_root("an_outside_peer_reaches_published_ports_and_no_other") {
        return;
    }
    let _lock = common::host_lock();
    let d = Daemon::start();
    let subnet = config_value(&d, "subnet");
    let n = std::process::id() % 200;
    let (host_addr, peer_addr) = (format!("10.252.{n}.1"), format!("10.252.{n}.2"));
    // Another machine whose route to the containers' subnet is this host,
    // as a neighbour on a LAN can make it.
    let outside = Peer::new();
    ip(&["addr", "add", &format!("{host_addr}/30"), "dev", &outside.link]);
    ip(&["link", "set", &outside.link, "up"]);
    ip(&["-n", &outside.ns, "addr", "add", &format!("{peer_addr}/30"), "dev", "eth0"]);
    ip(&["-n", &outside.ns, "link", "set", "eth0", "up"]);
    ip(&["-n", &outside.ns, "link", "set", "lo", "up"]);
    ip(&["-n", &outside.ns, "route", "add", &subnet, "via", &host_addr]);

    let web = common::unique_name("sp");
    let published = common::free_port();
    d.write_unit(
        &web,
        &unit(
            "mkdir -p /pub /priv; echo published > /pub/index.html; echo private > /priv/index.html; \
             httpd -p 80 -h /pub; httpd -p 8081 -h /priv; sleep 100000 & wait",
            &format!("ports = [\"{published}:80\"]\n"),
        ),
    );
    let u = d.wait_state(&web, "running");
    let address = u["address"].as_str().unwrap().to_string();
    let outside_get = |url: String| outside.run(&["timeout", "3", "busybox", "wget", "-q", "-O", "-", url.as_str()]);
    // The published port answers from outside, through the host's address.
    fetch_until(
        "the published port from outside",
        &mut || outside_get(format!("http://{host_addr}:{published}/")),
        "published",
    );
    // The unpublished port listens (the host itself reaches it) ...
    fetch_until(
        "the unpublished port from the host",
        &mut || {
            Command::new("timeout")
                .args(["3", "busybox", "wget", "-q", "-O", "-"])
                .arg(format!("http://{address}:8081/"))
                .output()
                .unwrap()
        },
        "private",
    );
    // ... but not from outside, neither it nor the published container port
    // at the container's own address (only the DNAT of a published host
    // port leads in).
    for port in [8081, 80] {
        let o = outside_get(format!("http://{address}:{port}/"));
        assert!(!o.status.success(), "an outside peer reached the container port {port}: {}", text(&o.stdout));
    }
    drop(outside);
}

/// Sends a UDP datagram from the peer's namespace.
fn send_from(peer: &Peer, to: &str, port: u16, payload: &str) {
    let script = "import socket,sys\ns=socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n\
                  s.sendto(sys.argv[3].encode(), (sys.argv[1], int(sys.argv[2])))\n";
    let o = peer.run(&["python3", "-c", script, to, &port.to_string(), payload]);
    assert!(o.status.success(), "send to {to}:{port} from the peer: {}", text(&o.stderr));
}

#[test]
fn a_peer_on_the_bridge_cannot_reach_the_hosts_loopback() {
    if !common::require_root("a_peer_on_the_bridge_cannot_reach_the_hosts_loopback") {
        return;
    }
    let _lock = common::host_lock();
    let d = Daemon::start();
    let (bridge, subnet) = (config_value(&d, "bridge"), config_value(&d, "subnet"));
    let base: Ipv4Addr = subnet.split('/').next().unwrap().parse().unwrap();
    let gateway = Ipv4Addr::from(u32::from(base) + 1);
    let stranger = Ipv4Addr::from(u32::from(base) + 250);
    // A unit publishing a port on the host's loopback only.
    let web = common::unique_name("sl");
    let local_port = common::free_port();
    d.write_unit(
        &web,
        &unit(
            "mkdir -p /www; echo loopback-only > /www/index.html; httpd -p 80 -h /www; sleep 100000 & wait",
            &format!("ports = [\"127.0.0.1:{local_port}:80\"]\n"),
        ),
    );
    d.wait_state(&web, "running");

    // A peer on the containers' segment (what a container with CAP_NET_RAW
    // can forge) that routes 127.0.0.0/8 to the host, as in CVE-2020-8558.
    let peer = Peer::new();
    ip(&["link", "set", &peer.link, "master", &bridge]);
    ip(&["link", "set", &peer.link, "up"]);
    ip(&["-n", &peer.ns, "addr", "add", &format!("{stranger}/24"), "dev", "eth0"]);
    ip(&["-n", &peer.ns, "link", "set", "eth0", "up"]);
    let o = peer.run(&["sysctl", "-qw", "net.ipv4.conf.eth0.route_localnet=1"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    // Its lo stays down: no local route of its own for 127.0.0.0/8.
    ip(&["-n", &peer.ns, "route", "add", "127.0.0.0/8", "via", &gateway.to_string(), "dev", "eth0"]);

    // A service of the host on loopback only, and one on the bridge's
    // address: the second shows that the peer's datagrams arrive.
    let private = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    private.set_nonblocking(true).unwrap();
    let private_port = private.local_addr().unwrap().port();
    let open = UdpSocket::bind((gateway, 0)).unwrap();
    open.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    let open_port = open.local_addr().unwrap().port();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut arrived = 0;
    while arrived < 3 {
        // The datagram to loopback goes first, on the same path: once the
        // later one arrived, the first would have too.
        send_from(&peer, "127.0.0.1", private_port, "to-loopback");
        send_from(&peer, &gateway.to_string(), open_port, "to-bridge");
        let mut buf = [0u8; 64];
        if open.recv(&mut buf).is_ok() {
            arrived += 1;
        }
        let leaked = private.recv(&mut buf).ok().map(|n| text(&buf[..n]));
        assert_eq!(leaked, None, "a datagram from the bridge reached a service on the host's 127.0.0.1");
        assert!(Instant::now() < deadline, "nothing from the peer reached the bridge's address");
    }
    // Nor does a port published on 127.0.0.1 answer the peer.
    let o = peer.run(&["timeout", "3", "busybox", "wget", "-q", "-O", "-", &format!("http://127.0.0.1:{local_port}/")]);
    assert!(!o.status.success(), "a peer on the bridge reached a port published on 127.0.0.1: {}", text(&o.stdout));
    // While the host itself does.
    fetch_until(
        "the loopback port from the host",
        &mut || {
            Command::new("timeout")
                .args(["3", "busybox", "wget", "-q", "-O", "-", &format!("http://127.0.0.1:{local_port}/")])
                .output()
                .unwrap()
        },
        "loopback-only",
    );
    drop(peer);
}

/// One raw request on the control socket (or none, or half of one): the
/// open connection.
fn connect(d: &Daemon, request: &str) -> std::os::unix::net::UnixStream {
    use std::io::Write;
    let mut s = std::os::unix::net::UnixStream::connect(d.socket()).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    s
}

/// Everything the daemon sends until it closes the connection, and how
/// long that took; panics if it is still open after `secs`.
fn read_to_close(s: &mut std::os::unix::net::UnixStream, secs: u64) -> (String, Duration) {
    use std::io::Read;
    let start = Instant::now();
    s.set_read_timeout(Some(Duration::from_secs(secs))).unwrap();
    let mut out = Vec::new();
    match s.read_to_end(&mut out) {
        Ok(_) => (text(&out), start.elapsed()),
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => (text(&out), start.elapsed()),
        Err(e) => panic!("the connection is still open after {secs}s ({e}); it sent {:?}", text(&out)),
    }
}

fn sleeper(d: &Daemon, extra: &str) -> String {
    let name = common::unique_name("sc");
    d.write_unit(&name, &unit("sleep 100000 & wait", &format!("network = \"none\"\n{extra}")));
    d.wait_state(&name, "running");
    name
}

#[test]
fn a_huge_since_is_a_400_that_names_it_and_the_daemon_answers_after() {
    if !common::require_root("a_huge_since_is_a_400_that_names_it_and_the_daemon_answers_after") {
        return;
    }
    let d = Daemon::start();
    let name = sleeper(&d, "");
    let out = d.ctl(&["logs", "--since", "999999999999h", &name]);
    assert!(!out.status.success(), "{}", text(&out.stdout));
    assert!(text(&out.stderr).contains("since"), "the error does not name the argument: {}", text(&out.stderr));
    let mut raw = connect(&d, &format!("GET /v1/units/{name}/logs?since=999999999999h HTTP/1.1\r\n\r\n"));
    let (answer, _) = read_to_close(&mut raw, 10);
    assert!(answer.starts_with("HTTP/1.1 400 "), "{answer}");
    let status = d.ctl(&["status", &name]);
    assert!(status.status.success(), "{}", text(&status.stderr));
}

#[test]
fn a_silent_client_and_half_a_request_are_dropped_while_others_are_served() {
    if !common::require_root("a_silent_client_and_half_a_request_are_dropped_while_others_are_served") {
        return;
    }
    let d = Daemon::start();
    let mut silent = connect(&d, "");
    let mut half = connect(&d, "GET /v1/units HTTP/1.1\r\nHost: supervisord\r\n");
    let start = Instant::now();
    let status = d.ctl(&["status"]);
    assert!(status.status.success(), "{}", text(&status.stderr));
    // Under the 10 s the idle ones are given: it was not served after them.
    assert!(start.elapsed() < Duration::from_secs(8), "status waited {:?} behind idle clients", start.elapsed());
    // The daemon's read timeout is 10 s from the connection; 20 s is its bound here.
    for (what, conn) in [("silent", &mut silent), ("half a request", &mut half)] {
        let (answer, _) = read_to_close(conn, 20);
        assert!(answer.is_empty() || answer.starts_with("HTTP/1.1 408 "), "{what}: {answer}");
    }
}

/// The daemon's open sockets.
fn sockets(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .flatten()
        .filter(|e| std::fs::read_link(e.path()).is_ok_and(|l| l.to_string_lossy().starts_with("socket:")))
        .count()
}

#[test]
fn idle_connections_past_the_bound_neither_stop_a_client_nor_pile_up_in_the_daemon() {
    if !common::require_root("idle_connections_past_the_bound_neither_stop_a_client_nor_pile_up_in_the_daemon") {
        return;
    }
    const BOUND: usize = 64;
    let d = Daemon::start();
    let pid = d.child.as_ref().unwrap().id();
    let before = sockets(pid);
    let idle: Vec<_> = (0..BOUND + 36).map(|_| connect(&d, "")).collect();
    let socket = d.socket();
    let client = std::thread::spawn(move || {
        let start = Instant::now();
        (common::daemon::ctl(&socket, &["status", "--json"]), start.elapsed())
    });
    let mut most = 0;
    while !client.is_finished() {
        most = most.max(sockets(pid).saturating_sub(before));
        std::thread::sleep(Duration::from_millis(50));
    }
    let (status, took) = client.join().unwrap();
    assert!(status.status.success(), "{}", text(&status.stderr));
    // Served once the first idle ones were dropped (10 s), not after all.
    assert!(took < Duration::from_secs(25), "status took {took:?}");
    assert!(most <= BOUND + 2, "the daemon held {most} connections at once (bound {BOUND})");
    drop(idle);
}

#[test]
fn a_group_peer_cannot_pull_a_local_path_nor_read_env_file_values() {
    if !common::require_root("a_group_peer_cannot_pull_a_local_path_nor_read_env_file_values") {
        return;
    }
    let d = Daemon::start_configured("socket_group = \"65534\"\n", |_| {});
    open_the_way_to_the_socket(&d);
    let secret = "hunter2-0f9c";
    let env_file = d.dir.path().join("app.env");
    std::fs::write(&env_file, format!("API_TOKEN={secret}\n")).unwrap();
    let name = sleeper(&d, &format!("env_file = {:?}\n", env_file.display().to_string()));
    let rootfs = d.dir.path().join("rootfs");
    std::fs::create_dir_all(rootfs.join("bin")).unwrap();
    std::fs::write(rootfs.join("bin/hello"), "hello\n").unwrap();
    let as_member = |args: &[&str]| member(&d).args(args).output().unwrap();
    // Root sees the value; the member sees the name only.
    assert!(text(&d.ctl(&["inspect", &name]).stdout).contains(secret));
    let inspect = as_member(&["inspect", &name]);
    assert!(inspect.status.success(), "{}", text(&inspect.stderr));
    let shown = text(&inspect.stdout);
    assert!(!shown.contains(secret), "a group member read an env_file value: {shown}");
    assert!(shown.contains("API_TOKEN") && shown.contains("<from env_file>"), "{shown}");
    // A local path is refused to the member, whatever the path.
    let pull = as_member(&["pull", &format!("dir:{}", rootfs.display())]);
    assert!(!pull.status.success(), "a group member pulled a local path: {}", text(&pull.stdout));
    assert!(text(&pull.stderr).contains("only root"), "{}", text(&pull.stderr));
    let images = text(&d.ctl(&["images", "--json"]).stdout);
    assert!(!images.contains(&rootfs.display().to_string()), "{images}");
    // verify holds the store lock while it reads every blob: a member
    // calling it again and again would hold every pull back.
    let verify = as_member(&["verify"]);
    assert!(!verify.status.success(), "a group member ran verify: {}", text(&verify.stdout));
    assert!(text(&verify.stderr).contains("only root may verify"), "{}", text(&verify.stderr));
    assert!(d.ctl(&["verify"]).status.success(), "root's verify");
    // Unit files are root's: whoever writes them runs anything as root.
    let mine = tempfile::tempdir().unwrap();
    let unit = mine.path().join("member.toml");
    std::fs::write(&unit, format!("[container]\nimage = \"{}\"\n", busybox())).unwrap();
    std::fs::set_permissions(mine.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    for args in [vec!["apply", unit.to_str().unwrap()], vec!["remove", &name], vec!["cat", &name]] {
        let out = as_member(&args);
        assert!(!out.status.success(), "a group member ran {args:?}: {}", text(&out.stdout));
        assert!(text(&out.stderr).contains("only root may read or write unit files"), "{}", text(&out.stderr));
    }
    assert!(!d.units().join("member.toml").exists());
    assert!(d.units().join(format!("{name}.toml")).exists());
    // So are loaded images: they take the names they carry.
    let load = as_member(&["load", unit.to_str().unwrap()]);
    assert!(!load.status.success(), "a group member ran load: {}", text(&load.stdout));
    assert!(text(&load.stderr).contains("only root may load images"), "{}", text(&load.stderr));
    // A push sends the store's images out with the daemon's credentials.
    let push = as_member(&["push", &busybox(), "127.0.0.1:1/stolen/busybox:v1"]);
    assert!(!push.status.success(), "a group member ran push: {}", text(&push.stdout));
    assert!(text(&push.stderr).contains("only root may push"), "{}", text(&push.stderr));
    // cp reads the container's files or changes them, commit makes an
    // image that units run: root's too.
    let copies = [
        vec![format!("{name}:/etc/passwd"), "-".to_string()],
        vec![unit.display().to_string(), format!("{name}:/tmp/")],
    ];
    for args in copies {
        let out = as_member(&["cp", &args[0], &args[1]]);
        assert!(!out.status.success() && out.stdout.is_empty(), "a group member ran cp {args:?}");
        assert!(text(&out.stderr).contains("only root may copy files"), "{}", text(&out.stderr));
    }
    let commit = as_member(&["commit", &name, "localhost/member:1"]);
    assert!(!commit.status.success(), "a group member ran commit: {}", text(&commit.stdout));
    assert!(text(&commit.stderr).contains("only root may commit"), "{}", text(&commit.stderr));
}

/// `supervisorctl` as uid 65534 (a member of the test daemon's
/// `socket_group`, which must reach the socket through the test's
/// directories: see `open_the_way_to_the_socket`).
fn member(d: &Daemon) -> Command {
    let mut c = Command::new("setpriv");
    c.args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(env!("CARGO_BIN_EXE_supervisorctl"))
        .arg("--socket")
        .arg(d.socket())
        .current_dir("/");
    c
}

fn open_the_way_to_the_socket(d: &Daemon) {
    let mut dir = Some(d.dir.path().join("run"));
    while let Some(p) = dir {
        std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        if p == d.dir.path() {
            break;
        }
        dir = p.parent().map(std::path::Path::to_path_buf);
    }
}

/// Kills the member streams when the test ends, passed or not.
struct Streams(Vec<std::process::Child>);

impl Drop for Streams {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

#[test]
fn the_socket_group_cannot_take_every_connection_from_root() {
    if !common::require_root("the_socket_group_cannot_take_every_connection_from_root") {
        return;
    }
    let d = Daemon::start_configured("socket_group = \"65534\"\n", |_| {});
    open_the_way_to_the_socket(&d);
    // More endless streams than the group may hold, and than the whole
    // socket serves at once.
    let mut streams = Streams(Vec::new());
    for _ in 0..70 {
        let child = member(&d).arg("events").stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
        streams.0.push(child);
    }
    // Once the group's share is taken, a member is told so ...
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let out = member(&d).arg("status").output().unwrap();
        if !out.status.success() && text(&out.stderr).contains("other than root") {
            break;
        }
        assert!(Instant::now() < deadline, "members were never limited: {}", text(&out.stderr));
    }
    // ... while root is still served.
    let start = Instant::now();
    let out = d.ctl(&["status"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    // Behind the streams it would wait as long as they last.
    assert!(start.elapsed() < Duration::from_secs(10), "root waited {:?} behind the group's streams", start.elapsed());
    // Streams that end give their slots back.
    drop(streams);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !member(&d).arg("status").output().unwrap().status.success() {
        assert!(Instant::now() < deadline, "the ended streams' slots never came back");
    }
}
