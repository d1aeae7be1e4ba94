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
pub fn ruleset(table: &str, bridge: &str, subnet: Subnet, published: &[&Published]) -> String {
    let mut dnat = String::new();
    for p in published {
        let only = p.host_ip.map(|ip| format!("ip daddr {ip} ")).unwrap_or_default();
        dnat.push_str(&format!(
            "\t\tfib daddr type local {only}{} dport {} dnat to {}:{}\n",
            p.protocol, p.host_port, p.container_ip, p.container_port
        ));
    }
    format!(
        "table ip {table}\ndelete table ip {table}\ntable ip {table} {{\n\
         \tchain postrouting {{\n\t\ttype nat hook postrouting priority srcnat; policy accept;\n\
         \t\tip saddr {subnet} oifname != \"{bridge}\" masquerade\n\
         \t\toifname \"{bridge}\" ip saddr 127.0.0.0/8 masquerade\n\
         \t\toifname \"{bridge}\" ip saddr {subnet} ct status dnat masquerade\n\t}}\n\
         \tchain prerouting {{\n\t\ttype nat hook prerouting priority dstnat; policy accept;\n{dnat}\t}}\n\
         \tchain output {{\n\t\ttype nat hook output priority -100; policy accept;\n{dnat}\t}}\n}}\n"
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
        assert_eq!(text.matches("ip daddr 127.0.0.1 udp dport 5353 dnat to 10.213.0.3:53").count(), 2);
        assert!(text.starts_with("table ip supervisor_sv0\ndelete table ip supervisor_sv0\n"));
        assert_eq!(web.describe(), "0.0.0.0:8080->80/tcp");
        let empty = ruleset("t", "sv0", Subnet::parse("10.213.0.0/16").unwrap(), &[]);
        assert!(!empty.contains("dnat to"));
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
