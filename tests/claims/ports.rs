//! docs/units.md `ports`: a host port picked at start, ranges, a host port
//! bound to 127.0.0.1 alone; and an IPv6 host address, which is not built,
//! refused when the file is validated.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::daemon::Daemon;
use crate::common::{self, text};
use crate::root_only;

use super::support::sh_unit;

/// The body of `GET /` at `addr`, or why not.
fn get(addr: SocketAddr) -> Result<String, String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"GET / HTTP/1.0\r\n\r\n").map_err(|e| e.to_string())?;
    let mut answer = String::new();
    s.read_to_string(&mut answer).map_err(|e| e.to_string())?;
    answer.split_once("\r\n\r\n").map(|(_, body)| body.trim().to_string()).ok_or(answer)
}

/// Retries `get` until it answers `want` (the rules may lag the state).
fn answers(addr: SocketAddr, want: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let got = get(addr);
        if got.as_deref() == Ok(want) {
            return;
        }
        assert!(Instant::now() < deadline, "{addr}: wanted {want:?}, got {got:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Two free consecutive TCP ports on the host.
fn free_pair() -> u16 {
    loop {
        let p = common::free_port();
        if p < u16::MAX && std::net::TcpListener::bind(("0.0.0.0", p + 1)).is_ok() {
            return p;
        }
    }
}

#[test]
fn a_picked_host_port_a_range_and_a_loopback_only_port_answer_where_they_should() {
    root_only!("a_picked_host_port_a_range_and_a_loopback_only_port_answer_where_they_should");
    let d = Daemon::start();
    let conf = std::fs::read_to_string(d.dir.path().join("supervisord.toml")).unwrap();
    // The bridge's address (the subnet's first): the host's, but not loopback.
    let subnet = conf.lines().find_map(|l| l.strip_prefix("subnet = ")).unwrap().trim_matches('"');
    let bridge_ip: std::net::Ipv4Addr = subnet.replace(".0/24", ".1").parse().unwrap();
    let (range, local) = (free_pair(), common::free_port());
    let name = common::unique_name("pr");
    let script = "trap 'exit 0' TERM; for p in 80 81 82 83; do mkdir -p /www/$p; echo port-$p > /www/$p/index.html; \
                  httpd -p $p -h /www/$p; done; sleep 100000 & wait";
    d.write_unit(
        &name,
        &format!("{}ports = [\"80\", \"{range}-{}:81-82\", \"127.0.0.1:{local}:83\"]\n", sh_unit(script), range + 1),
    );
    let u = d.wait_state(&name, "running");
    let shown: Vec<&str> = u["ports"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
    let picked: u16 = shown
        .iter()
        .find_map(|p| p.strip_prefix("0.0.0.0:").and_then(|r| r.strip_suffix("->80/tcp")))
        .unwrap_or_else(|| panic!("no picked host port for 80 in {shown:?}"))
        .parse()
        .unwrap();
    assert!(picked > 0);
    for want in [
        format!("0.0.0.0:{range}->81/tcp"),
        format!("0.0.0.0:{}->82/tcp", range + 1),
        format!("127.0.0.1:{local}->83/tcp"),
    ] {
        assert!(shown.contains(&want.as_str()), "{want} not in {shown:?}");
    }
    let inspect: Value = serde_json::from_slice(&d.ctl(&["inspect", &name]).stdout).unwrap();
    assert_eq!(inspect["status"]["ports"], u["ports"]);

    let at = |ip: std::net::Ipv4Addr, port: u16| SocketAddr::from((ip, port));
    let lo = std::net::Ipv4Addr::LOCALHOST;
    answers(at(lo, picked), "port-80");
    answers(at(lo, range), "port-81");
    answers(at(lo, range + 1), "port-82");
    answers(at(lo, local), "port-83");
    // Every address: the bridge's address answers too...
    answers(at(bridge_ip, picked), "port-80");
    answers(at(bridge_ip, range + 1), "port-82");
    // ...but not for the port bound to 127.0.0.1.
    let other = get(at(bridge_ip, local));
    assert!(other.is_err(), "{bridge_ip}:{local} answered though bound to 127.0.0.1: {other:?}");
}

#[test]
fn an_ipv6_host_address_is_refused_by_validate() {
    // No root: validation alone.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("web.toml");
    std::fs::write(&file, "[container]\nimage = \"busybox\"\nports = [\"8080:80\", \"[::1]:8443:443\"]\n").unwrap();
    std::fs::set_permissions(dir.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let out =
        std::process::Command::new(env!("CARGO_BIN_EXE_supervisorctl")).arg("validate").arg(&file).output().unwrap();
    let err = text(&out.stderr) + &text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains(&format!("{}:3:", file.display())) && err.contains("IPv6"), "{err}");
}
