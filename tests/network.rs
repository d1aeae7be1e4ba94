//! The bridge network, as root: real bridges, veths, addresses, names and
//! nftables masquerading, each test daemon on a bridge and /24 of its own.

mod common;

use std::process::Command;
use std::time::Duration;

use common::daemon::{Daemon, busybox};
use common::text;
use serde_json::Value;

/// A unit running `script` under sh (stopping at once on SIGTERM), with
/// extra `[container]` lines.
fn unit(script: &str, extra: &str) -> String {
    format!(
        "[container]\nimage = \"{}\"\ncommand = [\"sh\", \"-c\", {:?}]\n{extra}",
        busybox(),
        format!("trap 'exit 0' TERM; {script}")
    )
}

fn sh(d: &Daemon, name: &str, script: &str) -> std::process::Output {
    d.ctl(&["exec", name, "--", "sh", "-c", script])
}

fn bridge_of(d: &Daemon) -> String {
    let conf = std::fs::read_to_string(d.dir.path().join("supervisord.toml")).unwrap();
    conf.lines().find_map(|l| l.strip_prefix("bridge = ")).unwrap().trim_matches('"').to_string()
}

#[test]
fn containers_get_an_address_and_find_each_other_by_name_across_restarts() {
    root_only!("containers_get_an_address_and_find_each_other_by_name_across_restarts");
    let d = Daemon::start();
    let (a, b) = (common::unique_name("na"), common::unique_name("nb"));
    d.write_unit(
        &a,
        &unit(
            "mkdir -p /www; echo hello-from-$HOSTNAME > /www/index.html; httpd -p 8080 -h /www; sleep 100000 & wait",
            "aliases = [\"web\"]\n",
        ),
    );
    d.write_unit(&b, &unit("sleep 100000 & wait", ""));
    let ua = d.wait_state(&a, "running");
    d.wait_state(&b, "running");
    let addr = ua["address"].as_str().expect("an address").to_string();

    // eth0 with the address, a default route through the bridge.
    let out = text(&sh(&d, &a, "ip -4 -o addr show eth0; ip route; ls /sys/class/net").stdout);
    assert!(out.contains(&format!("inet {addr}/24")), "{out}");
    assert!(out.contains("default via "), "{out}");
    assert!(out.contains("eth0") && out.contains("lo"), "{out}");
    // IPv4 only: no IPv6 on the container's interface or on its ports of
    // the bridge (nothing for the bridge to flood to every container).
    let out = text(&sh(&d, &a, "cat /proc/sys/net/ipv6/conf/eth0/disable_ipv6; ip -6 -o addr show eth0").stdout);
    assert_eq!(out.trim(), "1", "{out}");
    let ports: Vec<_> = std::fs::read_dir(format!("/sys/class/net/{}/brif", bridge_of(&d)))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(ports.len(), 2, "{ports:?}");
    for port in ports {
        let v = std::fs::read_to_string(format!("/proc/sys/net/ipv6/conf/{port}/disable_ipv6")).unwrap();
        assert_eq!(v.trim(), "1", "{port}");
    }

    // b reaches a by name and by alias.
    let fetch = |host: &str| {
        let mut last = String::new();
        for _ in 0..50 {
            let o = sh(&d, &b, &format!("wget -q -O - http://{host}:8080/"));
            last = format!("{}{}", text(&o.stdout), text(&o.stderr));
            if o.status.success() {
                return text(&o.stdout);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("{host}: {last}");
    };
    assert_eq!(fetch(&a).trim(), format!("hello-from-{a}"));
    assert_eq!(fetch("web").trim(), format!("hello-from-{a}"));

    // a restarts with a new address; the name follows it.
    assert!(d.ctl(&["restart", &a]).status.success());
    let again = d.wait_state(&a, "running");
    assert_ne!(again["address"], ua["address"], "a new address was expected after a restart");
    assert_eq!(fetch(&a).trim(), format!("hello-from-{a}"));
}

#[test]
fn none_has_only_loopback_and_host_shares_the_hosts_interfaces() {
    root_only!("none_has_only_loopback_and_host_shares_the_hosts_interfaces");
    let d = Daemon::start();
    let (none, host) = (common::unique_name("nn"), common::unique_name("nh"));
    d.write_unit(&none, &unit("sleep 100000 & wait", "network = \"none\"\n"));
    d.write_unit(&host, &unit("sleep 100000 & wait", "network = \"host\"\n"));
    let u = d.wait_state(&none, "running");
    assert!(u["address"].is_null());
    d.wait_state(&host, "running");
    assert_eq!(text(&sh(&d, &none, "ls /sys/class/net").stdout).split_whitespace().collect::<Vec<_>>(), ["lo"]);
    let seen = text(&sh(&d, &host, "ls /sys/class/net").stdout);
    assert!(seen.split_whitespace().any(|i| i == bridge_of(&d)), "host network sees the host's links: {seen}");
}

/// A network namespace acting as another machine, linked to the host by a
/// veth pair: its address, and the host's on that link.
struct Outside {
    ns: String,
    link: String,
    _network: Option<common::HostLock>,
}

impl Outside {
    fn new(n: u8) -> (Outside, String, String) {
        let network = common::network_user();
        let ns = common::unique_name("to");
        let link = common::unique_name("tv");
        let (host, peer) = (format!("10.251.{n}.1"), format!("10.251.{n}.2"));
        let run = |args: &[&str]| {
            let st = Command::new("ip").args(args).status().unwrap();
            assert!(st.success(), "ip {args:?}");
        };
        run(&["netns", "add", &ns]);
        run(&["link", "add", &link, "type", "veth", "peer", "name", "eth0", "netns", &ns]);
        run(&["addr", "add", &format!("{host}/30"), "dev", &link]);
        run(&["link", "set", &link, "up"]);
        run(&["-n", &ns, "addr", "add", &format!("{peer}/30"), "dev", "eth0"]);
        run(&["-n", &ns, "link", "set", "eth0", "up"]);
        run(&["-n", &ns, "link", "set", "lo", "up"]);
        (Outside { ns, link, _network: network }, host, peer)
    }
}

impl Drop for Outside {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["link", "del", &self.link]).status();
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).status();
    }
}

#[test]
fn outbound_traffic_is_masqueraded_and_nothing_is_left_behind() {
    root_only!("outbound_traffic_is_masqueraded_and_nothing_is_left_behind");
    let _lock = common::host_lock();
    let (outside, host_addr, peer) = Outside::new((std::process::id() % 200) as u8);
    // A server on the other machine that answers with who is asking.
    let server = "import socket\ns=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\ns.bind(('0.0.0.0', 9000)); s.listen(8)\nwhile True:\n    c, a = s.accept(); c.recv(1024); c.sendall(('HTTP/1.0 200 OK\\r\\n\\r\\n' + a[0] + '\\n').encode()); c.close()\n";
    let mut srv = Command::new("nsenter")
        .arg(format!("--net=/run/netns/{}", outside.ns))
        .args(["python3", "-c", server])
        .spawn()
        .unwrap();

    let mut d = Daemon::start();
    let bridge = bridge_of(&d);
    let name = common::unique_name("nm");
    d.write_unit(&name, &unit("sleep 100000 & wait", ""));
    let u = d.wait_state(&name, "running");
    let mut seen = String::new();
    for _ in 0..50 {
        let o = sh(&d, &name, &format!("wget -q -O - http://{peer}:9000/"));
        seen = text(&o.stdout);
        if o.status.success() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    srv.kill().unwrap();
    srv.wait().unwrap();
    assert_eq!(seen.trim(), host_addr, "the container ({}) was not masqueraded", u["address"]);

    // Start/stop cycles leave no veth on the bridge; shutdown removes the
    // bridge and our table.
    for _ in 0..3 {
        assert!(d.ctl(&["restart", &name]).status.success());
    }
    assert!(d.ctl(&["stop", &name]).status.success());
    let ports = text(&Command::new("ip").args(["-o", "link", "show", "master", &bridge]).output().unwrap().stdout);
    assert!(ports.trim().is_empty(), "veths left on {bridge}: {ports}");
    assert!(d.terminate(30).success());
    let links = text(&Command::new("ip").args(["-o", "link"]).output().unwrap().stdout);
    assert!(!links.contains(&format!(": {bridge}:")), "the bridge {bridge} is left");
    let tables = text(&Command::new("nft").args(["list", "tables"]).output().unwrap().stdout);
    assert!(!tables.contains(&format!("supervisor_{bridge}")), "{tables}");
    drop(outside);
}

#[test]
fn a_containers_gateway_stays_reachable_when_another_container_leaves() {
    root_only!("a_containers_gateway_stays_reachable_when_another_container_leaves");
    let d = Daemon::start();
    let bridge = bridge_of(&d);
    let mac = || std::fs::read_to_string(format!("/sys/class/net/{bridge}/address")).unwrap().trim().to_string();
    let before = mac();
    let (a, b) = (common::unique_name("ga"), common::unique_name("gb"));
    d.write_unit(&b, &unit("sleep 100000 & wait", ""));
    d.wait_state(&b, "running");
    d.write_unit(&a, &unit("sleep 100000 & wait", ""));
    d.wait_state(&a, "running");
    // `a` sends to the host through its gateway (nothing listens on port 1:
    // refused at once when the packets get there, a timeout when they are
    // lost), and shows the MAC it learnt for it.
    let reach = || {
        let script = "gw=$(ip route | awk '/default/ { print $3 }'); nc -w 3 $gw 1 </dev/null 2>&1; \
                      awk -v gw=$gw '$1 == gw { print \"learnt\", $4 }' /proc/net/arp";
        text(&sh(&d, &a, script).stdout)
    };
    let first = reach();
    assert!(first.contains("refused"), "{first}");
    assert!(first.contains(&format!("learnt {before}")), "the bridge's MAC was {before}: {first}");

    // A bridge without a MAC of its own takes its lowest port's, so it
    // changed when `b`'s veth went, and `a`, which learnt it, lost its
    // traffic (every answer through a published port too).
    assert!(std::fs::remove_file(d.units().join(format!("{b}.toml"))).is_ok());
    d.wait_for(&b, "gone", 30, |u| u.is_none());
    let ports = text(&Command::new("ip").args(["-o", "link", "show", "master", &bridge]).output().unwrap().stdout);
    assert_eq!(ports.lines().count(), 1, "only a's veth is left on {bridge}: {ports}");
    assert_eq!(mac(), before, "the bridge's MAC changed");
    let after = reach();
    assert!(after.contains("refused"), "{after}");
}

#[test]
fn the_hosts_and_resolv_files_are_the_bridges() {
    root_only!("the_hosts_and_resolv_files_are_the_bridges");
    let d = Daemon::start();
    let name = common::unique_name("nr");
    d.write_unit(&name, &unit("sleep 100000 & wait", ""));
    let u = d.wait_state(&name, "running");
    let hosts = text(&sh(&d, &name, "cat /etc/hosts").stdout);
    assert!(hosts.contains(&format!("{}\t{name}", u["address"].as_str().unwrap())), "{hosts}");
    let resolv = text(&sh(&d, &name, "cat /etc/resolv.conf").stdout);
    let host_resolv = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    for line in resolv.lines() {
        assert!(host_resolv.contains(line), "{line:?} is not the host's");
        assert!(!line.contains("127.0.0."), "a loopback resolver reached the container: {resolv}");
    }
    // Read-only in the container.
    let write = sh(&d, &name, "echo x >> /etc/hosts");
    assert_eq!(write.status.code(), Some(1), "{}", text(&write.stderr));
    assert!(text(&write.stderr).contains("Read-only file system"), "{}", text(&write.stderr));
    assert_eq!(text(&sh(&d, &name, "cat /etc/hosts").stdout), hosts);
    let v: Value = serde_json::from_slice(&d.ctl(&["status", "--json", &name]).stdout).unwrap();
    assert_eq!(v[0]["address"], u["address"]);
}

const UDP_ECHO: &str = r#"#include <netinet/in.h>
#include <sys/socket.h>
int main(void) {
    int s = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_port = htons(53);
    if (bind(s, (struct sockaddr *)&a, sizeof a) < 0) return 1;
    for (;;) {
        char buf[512];
        struct sockaddr_in from;
        socklen_t len = sizeof from;
        int n = recvfrom(s, buf, sizeof buf, 0, (struct sockaddr *)&from, &len);
        if (n > 0) sendto(s, buf, n, 0, (struct sockaddr *)&from, len);
    }
}
"#;

#[test]
fn published_ports_answer_from_outside_from_the_host_and_from_containers() {
    root_only!("published_ports_answer_from_outside_from_the_host_and_from_containers");
    let _lock = common::host_lock();
    let (outside, host_addr, _peer) = Outside::new((std::process::id() % 200) as u8 + 1);
    let d = Daemon::start();
    let bin = common::compile_static(d.dir.path(), "udpecho", UDP_ECHO);
    let (tcp, udp) = (common::free_port(), common::free_port());
    let (web, client) = (common::unique_name("pw"), common::unique_name("pc"));
    d.write_unit(
        &web,
        &unit(
            "mkdir -p /www; echo published > /www/index.html; httpd -p 80 -h /www; /opt/bin/udpecho & wait",
            &format!("ports = [\"{tcp}:80\", \"{udp}:53/udp\"]\nvolumes = [\"{}:/opt/bin:ro\"]\n", bin.display()),
        ),
    );
    d.write_unit(&client, &unit("sleep 100000 & wait", ""));
    let u = d.wait_state(&web, "running");
    d.wait_state(&client, "running");
    let mut shown: Vec<&str> = u["ports"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
    shown.sort();
    let mut want = [format!("0.0.0.0:{tcp}->80/tcp"), format!("0.0.0.0:{udp}->53/udp")];
    want.sort();
    assert_eq!(shown, want);

    let get = |cmd: &mut Command| {
        let mut last = String::new();
        for _ in 0..50 {
            let o = cmd.output().unwrap();
            last = format!("{}{}", text(&o.stdout), text(&o.stderr));
            if o.status.success() && text(&o.stdout).contains("published") {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("{cmd:?}: {last}");
    };
    let url = |host: &str| format!("http://{host}:{tcp}/");
    // From another machine (a network namespace routed to the host).
    get(Command::new("ip").args(["netns", "exec", &outside.ns, "busybox", "wget", "-q", "-O", "-", &url(&host_addr)]));
    // From the host, at 127.0.0.1 and at its own address.
    get(Command::new("busybox").args(["wget", "-q", "-O", "-", &url("127.0.0.1")]));
    get(Command::new("busybox").args(["wget", "-q", "-O", "-", &url(&host_addr)]));
    // From a container, through the host's address (hairpin).
    get(Command::new(env!("CARGO_BIN_EXE_supervisorctl")).arg("--socket").arg(d.socket()).args([
        "exec",
        &client,
        "--",
        "wget",
        "-q",
        "-O",
        "-",
        &url(&host_addr),
    ]));
    // UDP through the published port.
    let echo = "import socket,sys\ns=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(1)\nfor i in range(20):\n    s.sendto(b'ping', ('127.0.0.1', int(sys.argv[1])))\n    try:\n        print(s.recvfrom(64)[0].decode()); break\n    except OSError: pass\n";
    let o = Command::new("python3").args(["-c", echo, &udp.to_string()]).output().unwrap();
    assert_eq!(text(&o.stdout).trim(), "ping", "{}", text(&o.stderr));

    // Stopping it removes its rules and frees its ports; start/stop
    // cycles never duplicate a rule.
    let bridge = bridge_of(&d);
    let rules = || {
        let o = Command::new("nft").args(["list", "table", "ip", &format!("supervisor_{bridge}")]).output().unwrap();
        text(&o.stdout).matches("dnat to").count()
    };
    assert_eq!(rules(), 4);
    // The flows of a container that left are not left in the host's
    // conntrack (the UDP one above is there until then): a client that
    // uses a source port again must not be sent to the gone address.
    // Closed TCP flows stay (the kernel reopens them on a new SYN).
    let flows_of = |address: &str| {
        let table = std::fs::read_to_string("/proc/net/nf_conntrack").unwrap();
        let open = |l: &&str| !l.contains(" TIME_WAIT ") && !l.contains(" CLOSE ");
        table.lines().filter(|l| l.contains(&format!("src={address} "))).filter(open).count()
    };
    let address = u["address"].as_str().expect("an address").to_string();
    assert!(flows_of(&address) >= 1, "the flows to {address} are not in conntrack");
    for _ in 0..3 {
        assert!(d.ctl(&["restart", &web]).status.success());
    }
    assert_eq!(flows_of(&address), 0, "flows to {address} are left");
    assert_eq!(rules(), 4);
    assert!(d.ctl(&["stop", &web]).status.success());
    assert_eq!(rules(), 0);
    std::net::TcpListener::bind(("0.0.0.0", tcp)).expect("the published port is free again");
    std::net::UdpSocket::bind(("0.0.0.0", udp)).expect("the published UDP port is free again");
}

#[test]
fn a_unit_can_join_another_units_network_like_a_pod() {
    root_only!("a_unit_can_join_another_units_network_like_a_pod");
    let d = Daemon::start();
    let (a, side, c) = (common::unique_name("pa"), common::unique_name("ps"), common::unique_name("pq"));
    d.write_unit(
        &a,
        &unit("mkdir -p /www; echo from-a > /www/index.html; httpd -p 8080 -h /www; sleep 100000 & wait", ""),
    );
    d.write_unit(&side, &unit("sleep 100000 & wait", &format!("network = \"unit:{a}\"\n")));
    d.write_unit(&c, &unit("sleep 100000 & wait", ""));
    let ua = d.wait_state(&a, "running");
    let us = d.wait_state(&side, "running");
    d.wait_state(&c, "running");
    assert!(time_after(&us, &ua), "the joining unit started before the one it joins");
    let addr = ua["address"].as_str().unwrap();
    // The sidecar sees a's interface and reaches a's server on localhost.
    let out = text(&sh(&d, &side, "ip -4 -o addr show eth0; wget -q -O - http://localhost:8080/").stdout);
    assert!(out.contains(&format!("inet {addr}/")) && out.contains("from-a"), "{out}");
    // Others find the sidecar by its name, at the shared address.
    let hosts = text(&sh(&d, &c, "cat /etc/hosts").stdout);
    assert!(hosts.contains(&format!("{addr}\t{side}")), "{hosts}");
    // When a restarts, the sidecar (in a's old namespace) restarts with it.
    assert!(d.ctl(&["restart", &a]).status.success());
    let again = d
        .wait_for(&side, "restarted", 30, |u| u.is_some_and(|u| u["state"] == "running" && u["pid"] != us["pid"]))
        .unwrap();
    let new_addr = d.unit(&a).unwrap()["address"].as_str().unwrap().to_string();
    let out = text(&sh(&d, &side, "ip -4 -o addr show eth0").stdout);
    assert!(out.contains(&format!("inet {new_addr}/")), "{out} {again}");
}

fn time_after(later: &Value, earlier: &Value) -> bool {
    let t = |v: &Value| humantime::parse_rfc3339_weak(v["started_at"].as_str().unwrap()).unwrap();
    t(later) >= t(earlier)
}

#[test]
fn units_publishing_ports_at_once_all_get_their_rules() {
    root_only!("units_publishing_ports_at_once_all_get_their_rules");
    let d = Daemon::start();
    let names: Vec<String> = (0..6).map(|_| common::unique_name("pr")).collect();
    // Six different free ports: held while they are picked.
    let picked: Vec<std::net::TcpListener> =
        (0..6).map(|_| std::net::TcpListener::bind("0.0.0.0:0").unwrap()).collect();
    let ports: Vec<u16> = picked.iter().map(|l| l.local_addr().unwrap().port()).collect();
    drop(picked);
    for (n, port) in names.iter().zip(&ports) {
        d.write_unit(n, &unit("sleep 100000 & wait", &format!("ports = [\"{port}:80\"]\n")));
    }
    for n in &names {
        d.wait_state(n, "running");
    }
    let table = format!("supervisor_{}", bridge_of(&d));
    let listed = text(&Command::new("nft").args(["list", "table", "ip", &table]).output().unwrap().stdout);
    // Each port twice: from outside (prerouting) and from the host (output).
    assert_eq!(listed.matches("dnat to").count(), 12, "{listed}");
}

/// Puts ip_forward back to what it was, however the test ends.
struct Forwarding(String);

impl Drop for Forwarding {
    fn drop(&mut self) {
        let _ = std::fs::write("/proc/sys/net/ipv4/ip_forward", &self.0);
    }
}

#[test]
fn a_thousand_start_stop_cycles_and_a_crash_leave_the_hosts_network_as_it_was() {
    root_only!("a_thousand_start_stop_cycles_and_a_crash_leave_the_hosts_network_as_it_was");
    let _quiet = common::network_quiet();
    let _forwarding = Forwarding(std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap());
    // Off, so that putting it back is seen.
    std::fs::write("/proc/sys/net/ipv4/ip_forward", "0").unwrap();
    let before = common::host_network();

    let mut d = Daemon::start();
    let units: Vec<String> = (0..4).map(|_| common::unique_name("lk")).collect();
    let base = 20000 + (std::process::id() % 2000) as u16 * 4;
    for (i, name) in units.iter().enumerate() {
        let port = base + i as u16;
        let extra = format!("ports = [\"{port}:80\", \"{port}:53/udp\"]\n");
        d.write_unit(name, &unit("sleep 100000 & wait", &extra));
    }
    // A pod member on the first unit's network, cycled with it.
    let pod = common::unique_name("lp");
    d.write_unit(&pod, &unit("sleep 100000 & wait", &format!("network = \"unit:{}\"\n", units[0])));
    for name in units.iter().chain([&pod]) {
        d.wait_state(name, "running");
    }
    let mut args = vec!["restart"];
    args.extend(units.iter().map(String::as_str));
    let cycles = 1000 / units.len();
    for i in 0..cycles {
        let out = d.ctl(&args);
        assert!(out.status.success(), "restart {i}: {}{}", text(&out.stderr), d.log());
    }
    for name in units.iter().chain([&pod]) {
        d.wait_state(name, "running");
    }
    let gens: Vec<u64> = units.iter().map(|n| d.unit(n).unwrap()["generation"].as_u64().unwrap()).collect();
    assert!(gens.iter().all(|g| *g as usize > cycles), "generations {gens:?} after {cycles} restarts each");

    // A crash: the containers, their veths and our table stay behind...
    let mut child = d.child.take().unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    assert_ne!(common::host_network(), before);
    // ...until the next supervisor starts (and shuts down cleanly).
    d.spawn();
    for name in units.iter().chain([&pod]) {
        d.wait_state(name, "running");
    }
    assert!(d.terminate(60).success(), "{}", d.log());
    let after = common::host_network();
    let gone: Vec<&str> = before.lines().filter(|l| !after.lines().any(|a| a == *l)).collect();
    let new: Vec<&str> = after.lines().filter(|l| !before.lines().any(|b| b == *l)).collect();
    assert_eq!(after, before, "the host's network changed: gone {gone:#?}, new {new:#?}");
}
