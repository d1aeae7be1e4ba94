//! Container networking (mechanism): the bridge, its addresses and names
//! (`bridge`, `ipam`), through netlink (`netlink`) and one nftables table
//! of our own. Published ports are next (issue 6).

pub mod bridge;
mod conntrack;
pub mod ipam;
pub mod netlink;
mod nft;
pub mod ports;
mod saved_pool;

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use ipam::{Subnet, mask};
use serde::{Deserialize, Serialize};

/// What failed in the network code: the operation, its object, and the
/// kernel's (or netlink's, or nft's) answer.
#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    #[error("netlink: {0}")]
    Connect(#[source] io::Error),
    /// A netlink request: `op` on `object` (`create the bridge` `sv0`).
    #[error("{op} {object}: {source}")]
    Netlink {
        op: &'static str,
        object: String,
        #[source]
        source: rtnetlink::Error,
    },
    #[error("the bridge {0} did not appear")]
    BridgeMissing(String),
    #[error("no interface {0}")]
    NoInterface(String),
    /// A switch to a container that is not on the bridge.
    #[error("switch to {0}: that container is not on the bridge")]
    NotAttached(String),
    #[error("nft: {0} (install Debian's nftables)")]
    NftStart(#[source] io::Error),
    #[error("nft: {0}")]
    NftPipe(#[source] io::Error),
    /// nft ran and refused the script: its stderr, and how it ended.
    #[error("nft: {stderr} ({exit})")]
    Nft { stderr: String, exit: String },
    #[error("{op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("the bridge subnet {subnet} overlaps the host's route {routes}: choose another [network] subnet")]
    SubnetOverlap { subnet: Subnet, routes: String },
    #[error("{0:?}: a subnet is ADDRESS/PREFIX")]
    SubnetSyntax(String),
    #[error("{text:?}: {address:?} is not an IPv4 address")]
    SubnetAddress { text: String, address: String },
    #[error("{0:?}: the prefix must be 8 to 30 (a bridge needs room for a gateway and containers)")]
    SubnetPrefix(String),
    #[error("{text:?}: host bits are set (the subnet is {subnet})")]
    SubnetHostBits { text: String, subnet: Subnet },
    #[error("no address left in {subnet} ({used} in use)")]
    AddressesExhausted { subnet: Subnet, used: usize },
    #[error("host port {address}/{protocol} is already in use by another program")]
    PortInUse { address: SocketAddr, protocol: &'static str },
    #[error("host address {0} is not an address of this host")]
    NotHostAddress(IpAddr),
    #[error("host port {address}/{protocol}: {source}")]
    Port {
        address: SocketAddr,
        protocol: &'static str,
        #[source]
        source: io::Error,
    },
}

impl NetworkError {
    fn io(op: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> NetworkError {
        let path = path.into();
        move |source| NetworkError::Io { op, path, source }
    }
}

/// What a container configures on the interface the runtime gives it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetPlan {
    /// Its name in the container (`eth0`).
    pub interface: String,
    pub address: Ipv4Addr,
    pub prefix: u8,
    pub gateway: Ipv4Addr,
}

/// The default bridge subnet: room for 65533 containers, and apart from
/// Docker's 172.17.0.0/16, Podman's 10.88.0.0/16 and the 10.89.x.0/24
/// networks Podman makes next.
pub const DEFAULT_SUBNET: &str = "10.213.0.0/16";

/// Routes of the host (`/proc/net/route`) that overlap `subnet`, other
/// than default routes and routes through `own_bridge`: a subnet that
/// collides with one would make containers unreachable or hijack the
/// host's traffic.
pub fn route_conflicts(proc_net_route: &str, subnet: &Subnet, own_bridge: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in proc_net_route.lines().skip(1) {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 8 || f[0] == own_bridge {
            continue;
        }
        // Addresses in network byte order, printed as a host-order hex
        // number: little-endian hosts show them byte-reversed.
        let parse = |h: &str| u32::from_str_radix(h, 16).ok().map(|v| std::net::Ipv4Addr::from(u32::from_be(v)));
        let (Some(dest), Some(m)) = (parse(f[1]), parse(f[7])) else { continue };
        let prefix = u32::from(m).leading_ones() as u8;
        if prefix == 0 || u32::from(m) != mask(prefix) {
            continue;
        }
        let route = Subnet { network: dest, prefix };
        if route.overlaps(subnet) {
            out.push(format!("{}/{} via {}", dest, prefix, f[0]));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROUTES: &str = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT
eth0\t00000000\t0101A8C0\t0003\t0\t0\t0\t00000000\t0\t0\t0
eth0\t0001A8C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0
docker0\t000011AC\t00000000\t0001\t0\t0\t0\t0000FFFF\t0\t0\t0
sv0\t0000D50A\t00000000\t0001\t0\t0\t0\t0000FFFF\t0\t0\t0
";

    #[test]
    fn overlapping_host_routes_are_found_and_ours_and_default_routes_are_not() {
        let ours = Subnet::parse(DEFAULT_SUBNET).unwrap();
        assert!(route_conflicts(ROUTES, &ours, "sv0").is_empty());
        assert_eq!(route_conflicts(ROUTES, &ours, "other"), ["10.213.0.0/16 via sv0"]);
        let clash = Subnet::parse("192.168.1.128/25").unwrap();
        assert_eq!(route_conflicts(ROUTES, &clash, "sv0"), ["192.168.1.0/24 via eth0"]);
        let docker = Subnet::parse("172.16.0.0/12").unwrap();
        assert_eq!(route_conflicts(ROUTES, &docker, "sv0"), ["172.17.0.0/16 via docker0"]);
    }

    #[test]
    fn this_hosts_routes_do_not_collide_with_the_default_subnet() {
        let routes = std::fs::read_to_string("/proc/net/route").unwrap_or_default();
        let found = route_conflicts(&routes, &Subnet::parse(DEFAULT_SUBNET).unwrap(), "");
        assert!(found.is_empty(), "{found:?}");
    }
}
