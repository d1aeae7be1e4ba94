//! Published ports: kernel DNAT in our nftables table, and a bound socket
//! of ours on every published host port for as long as it is published.
//! Kernel DNAT alone cannot see that another program already has the port;
//! the held socket makes that a clear error at start, as Docker's proxy
//! does, and keeps the port from being taken while the unit runs.
//!
//! The table is a pure function of what is published ([`ruleset`]) and is
//! replaced whole, atomically, at every change: a rule is never left
//! behind or duplicated by a restart or a reload.

use std::net::{Ipv4Addr, SocketAddr, TcpListener, UdpSocket};

use serde::Serialize;

use super::NetworkError;
use super::ipam::Subnet;

/// One port to publish.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Publish {
    /// Listen on this host address only; none: every address.
    pub host_ip: Option<Ipv4Addr>,
    /// 0: a free port the kernel picks.
    pub host_port: u16,
    pub container_port: u16,
    pub udp: bool,
}

/// A socket that holds a published port.
#[derive(Debug)]
pub enum Held {
    Tcp(TcpListener),
    Udp(UdpSocket),
}

/// A published port, as it is.
#[derive(Debug, Serialize)]
pub struct Published {
    pub host_ip: Option<Ipv4Addr>,
    pub host_port: u16,
    pub container_ip: Ipv4Addr,
    pub container_port: u16,
    pub protocol: &'static str,
    #[serde(skip)]
    pub held: Option<Held>,
}

impl Published {
    /// `0.0.0.0:8080->80/tcp`, as `docker ps` shows it.
    pub fn describe(&self) -> String {
        let ip = self.host_ip.unwrap_or(Ipv4Addr::UNSPECIFIED);
        format!("{ip}:{}->{}/{}", self.host_port, self.container_port, self.protocol)
    }
}

/// Binds the host port of `p` (or a free one); the socket and the port.
pub fn hold(p: &Publish) -> Result<(Held, u16), NetworkError> {
    let address = SocketAddr::from((p.host_ip.unwrap_or(Ipv4Addr::UNSPECIFIED), p.host_port));
    let protocol = if p.udp { "udp" } else { "tcp" };
    let busy = |source: std::io::Error| match source.kind() {
        std::io::ErrorKind::AddrInUse => NetworkError::PortInUse { address, protocol },
        std::io::ErrorKind::AddrNotAvailable => NetworkError::NotHostAddress(address.ip()),
        _ => NetworkError::Port { address, protocol, source },
    };
    if p.udp {
        let s = UdpSocket::bind(address).map_err(busy)?;
        let port = s.local_addr().map_err(busy)?.port();
        Ok((Held::Udp(s), port))
    } else {
        let s = TcpListener::bind(address).map_err(busy)?;
        let port = s.local_addr().map_err(busy)?.port();
        Ok((Held::Tcp(s), port))
    }
}

/// Our whole table for a bridge: masquerading out of the subnet, and
/// DNAT for every published port, from outside (prerouting) and from the
/// host itself (output, 127.0.0.1 included: the bridge gets
/// `route_localnet`, and such connections are masqueraded to the bridge's
/// address); a container reaching a published port through the host
/// (hairpin) is masqueraded too, so that the answer comes back the same way.
///
/// And filters, so that the host does not route what was never published:
/// `forward` lets into the bridge from elsewhere only answers (to what the
/// containers opened) and connections a published port's DNAT led there
/// (a peer that routes the subnet through this host reaches nothing else,
/// as with Docker 28); `input` drops what comes in from the bridge for
/// 127.0.0.0/8 unless it belongs to a DNATed connection: `route_localnet`
/// would otherwise hand the host's loopback-only services to any container
/// that forges such a packet (CVE-2020-8558, fixed the same way by
/// kube-proxy). For the same reason, prerouting never DNATs a packet sent to
/// 127.0.0.0/8: a port published on 127.0.0.1 is the host's alone.
pub fn ruleset(table: &str, bridge: &str, subnet: Subnet, published: &[&Published]) -> String {
    let (mut from_outside, mut from_host) = (String::new(), String::new());
    for p in published {
        let only = p.host_ip.map(|ip| format!("ip daddr {ip} ")).unwrap_or_default();
        let rule = format!(
            "fib daddr type local {only}{} dport {} dnat to {}:{}\n",
            p.protocol, p.host_port, p.container_ip, p.container_port
        );
        from_host.push_str(&format!("\t\t{rule}"));
        if !p.host_ip.is_some_and(|ip| ip.is_loopback()) {
            from_outside.push_str(&format!("\t\tip daddr != 127.0.0.0/8 {rule}"));
        }
    }
    format!(
        "table ip {table}\ndelete table ip {table}\ntable ip {table} {{\n\
         \tchain postrouting {{\n\t\ttype nat hook postrouting priority srcnat; policy accept;\n\
         \t\tip saddr {subnet} oifname != \"{bridge}\" masquerade\n\
         \t\toifname \"{bridge}\" ip saddr 127.0.0.0/8 masquerade\n\
         \t\toifname \"{bridge}\" ip saddr {subnet} ct status dnat masquerade\n\t}}\n\
         \tchain prerouting {{\n\t\ttype nat hook prerouting priority dstnat; policy accept;\n{from_outside}\t}}\n\
         \tchain output {{\n\t\ttype nat hook output priority -100; policy accept;\n{from_host}\t}}\n\
         \tchain forward {{\n\t\ttype filter hook forward priority filter; policy accept;\n\
         \t\toifname \"{bridge}\" iifname != \"{bridge}\" ct state established,related accept\n\
         \t\toifname \"{bridge}\" iifname != \"{bridge}\" ct status dnat accept\n\
         \t\toifname \"{bridge}\" iifname != \"{bridge}\" drop\n\t}}\n\
         \tchain input {{\n\t\ttype filter hook input priority filter; policy accept;\n\
         \t\tiifname \"{bridge}\" ip daddr 127.0.0.0/8 ct status dnat accept\n\
         \t\tiifname \"{bridge}\" ip daddr 127.0.0.0/8 drop\n\t}}\n}}\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_has_one_dnat_per_published_port_in_each_direction() {
        let web = Published {
            host_ip: None,
            host_port: 8080,
            container_ip: Ipv4Addr::new(10, 213, 0, 2),
            container_port: 80,
            protocol: "tcp",
            held: None,
        };
        let dns = Published {
            host_ip: Some(Ipv4Addr::LOCALHOST),
            host_port: 5353,
            container_ip: Ipv4Addr::new(10, 213, 0, 3),
            container_port: 53,
            protocol: "udp",
            held: None,
        };
        let text = ruleset("supervisor_sv0", "sv0", Subnet::parse("10.213.0.0/16").unwrap(), &[&web, &dns]);
        assert_eq!(text.matches("fib daddr type local tcp dport 8080 dnat to 10.213.0.2:80").count(), 2);
        assert_eq!(text.matches("ip daddr != 127.0.0.0/8 fib daddr type local tcp dport 8080").count(), 1);
        // Published on loopback: the host's alone (output), never DNATed
        // from outside (prerouting).
        assert_eq!(text.matches("ip daddr 127.0.0.1 udp dport 5353 dnat to 10.213.0.3:53").count(), 1);
        let prerouting = text.split("chain prerouting").nth(1).unwrap().split("chain output").next().unwrap();
        assert!(!prerouting.contains("5353"), "{prerouting}");
        assert!(text.starts_with("table ip supervisor_sv0\ndelete table ip supervisor_sv0\n"));
        assert_eq!(web.describe(), "0.0.0.0:8080->80/tcp");
        let empty = ruleset("t", "sv0", Subnet::parse("10.213.0.0/16").unwrap(), &[]);
        assert!(!empty.contains("dnat to"));
        // Nothing routed into the bridge but answers and published ports;
        // nothing from it to the host's loopback but DNATed connections.
        assert!(empty.contains("oifname \"sv0\" iifname != \"sv0\" ct status dnat accept"));
        assert!(empty.contains("oifname \"sv0\" iifname != \"sv0\" drop"));
        assert!(empty.contains("iifname \"sv0\" ip daddr 127.0.0.0/8 drop"));
    }

    #[test]
    fn a_port_taken_by_another_program_is_a_clear_error() {
        let taken = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = taken.local_addr().unwrap().port();
        let p = Publish { host_ip: Some(Ipv4Addr::LOCALHOST), host_port: port, container_port: 80, udp: false };
        let e = hold(&p).unwrap_err().to_string();
        assert!(e.contains("already in use") && e.contains(&port.to_string()), "{e}");
        let (_, picked) = hold(&Publish { host_port: 0, ..p }).unwrap();
        assert_ne!(picked, 0);
    }
}
