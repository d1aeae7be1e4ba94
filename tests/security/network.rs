//! Unpublished ports and the control API (docs/security.md, "Unpublished
//! ports" and "Control API").

use std::net::{Ipv4Addr, UdpSocket};
use std::process::Command;
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
