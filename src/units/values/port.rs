//! Published ports, `docker run -p` syntax: `[host_ip:][host_port:]container_port[/proto]`,
//! where ports may be ranges of equal length (`8000-8003:8000-8003`). An IPv6
//! host address (in brackets, `[::1]:8080:80`) is read, to be refused by
//! name while only IPv4 is built. Without a host port the kernel picks one,
//! as Docker does.

use std::fmt;
use std::net::IpAddr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Tcp,
    Udp,
}

/// An inclusive range of ports; a single port has `start == end`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PortRange {
    pub start: u16,
    pub end: u16,
}

impl PortRange {
    pub fn count(self) -> u32 {
        u32::from(self.end - self.start) + 1
    }

    pub fn overlaps(self, other: PortRange) -> bool {
        self.start <= other.end && other.start <= self.end
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.start == self.end { write!(f, "{}", self.start) } else { write!(f, "{}-{}", self.start, self.end) }
    }
}

/// One `ports` entry.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PortMapping {
    /// The host address to listen on; `None` means every address.
    pub host_ip: Option<IpAddr>,
    /// `None`: an ephemeral port chosen at start.
    pub host_port: Option<PortRange>,
    pub container_port: PortRange,
    pub protocol: Protocol,
}

impl PortMapping {
    pub fn parse(input: &str) -> Result<PortMapping, String> {
        let s = input.trim();
        let (rest, protocol) = match s.rsplit_once('/') {
            Some((r, "tcp")) => (r, Protocol::Tcp),
            Some((r, "udp")) => (r, Protocol::Udp),
            Some((_, p)) => {
                return Err(format!("{input:?}: unknown protocol {p:?} (use \"tcp\" or \"udp\")"));
            }
            None => (s, Protocol::Tcp),
        };
        // Split off a bracketed IPv6 address first; its colons are not separators.
        let (ip_text, ports) = if let Some(after) = rest.strip_prefix('[') {
            let (ip, tail) =
                after.split_once(']').ok_or_else(|| format!("{input:?}: missing ']' after the IPv6 address"))?;
            let tail = tail.strip_prefix(':').ok_or_else(|| format!("{input:?}: expected ':' after ']'"))?;
            (Some(ip), tail)
        } else {
            (None, rest)
        };
        let fields: Vec<&str> = ports.split(':').collect();
        let (ip_text, host, container) = match (ip_text, fields.as_slice()) {
            (None, [c]) => (None, None, *c),
            (None, [h, c]) => (None, Some(*h), *c),
            (None, [ip, h, c]) => (Some(*ip), Some(*h), *c),
            (Some(ip), [h, c]) => (Some(ip), Some(*h), *c),
            _ => {
                return Err(format!(
                    "{input:?} is not a port mapping: use [host_ip:][host_port:]container_port[/tcp|/udp], like \"8080:80\""
                ));
            }
        };
        let host_ip = match ip_text {
            None | Some("") => None,
            Some(ip) => Some(ip.parse::<IpAddr>().map_err(|_| format!("{input:?}: {ip:?} is not an IP address"))?),
        };
        // Refused here, where `validate` sees it, rather than at start:
        // only IPv4 networking is built (docs/network.md).
        if let Some(ip @ IpAddr::V6(_)) = host_ip {
            return Err(format!(
                "{input:?}: {ip} is an IPv6 address, and only IPv4 is supported: give an IPv4 host address or none"
            ));
        }
        let host_port = match host {
            None | Some("") => None,
            Some(h) => Some(parse_range(h, input)?),
        };
        let container_port = parse_range(container, input)?;
        if let Some(h) = host_port
            && h.count() != container_port.count()
        {
            return Err(format!(
                "{input:?}: the host range {h} and the container range {container_port} have different lengths"
            ));
        }
        Ok(PortMapping { host_ip, host_port, container_port, protocol })
    }

    /// True when both would need the same host port on a shared address.
    pub fn conflicts_with(&self, other: &PortMapping) -> bool {
        let (Some(a), Some(b)) = (self.host_port, other.host_port) else {
            return false;
        };
        let ip_clash = match (self.host_ip, other.host_ip) {
            (None, _) | (_, None) => true,
            (Some(x), Some(y)) => x == y || x.is_unspecified() || y.is_unspecified(),
        };
        self.protocol == other.protocol && ip_clash && a.overlaps(b)
    }
}

fn parse_range(s: &str, input: &str) -> Result<PortRange, String> {
    let port = |p: &str| -> Result<u16, String> {
        match p.parse::<u16>() {
            Ok(0) | Err(_) => Err(format!("{input:?}: {p:?} is not a port number (1-65535)")),
            Ok(n) => Ok(n),
        }
    };
    let range = match s.split_once('-') {
        None => {
            let p = port(s)?;
            PortRange { start: p, end: p }
        }
        Some((a, b)) => PortRange { start: port(a)?, end: port(b)? },
    };
    if range.start > range.end {
        return Err(format!("{input:?}: the range {s:?} ends before it starts"));
    }
    Ok(range)
}

impl fmt::Display for PortMapping {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.host_ip {
            Some(IpAddr::V6(ip)) => write!(f, "[{ip}]:")?,
            Some(ip) => write!(f, "{ip}:")?,
            None => {}
        }
        match self.host_port {
            Some(h) => write!(f, "{h}:")?,
            None if self.host_ip.is_some() => f.write_str(":")?,
            None => {}
        }
        let proto = match self.protocol {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        };
        write!(f, "{}/{proto}", self.container_port)
    }
}

impl serde::Serialize for PortMapping {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn canon(s: &str) -> String {
        PortMapping::parse(s).unwrap().to_string()
    }

    #[test]
    fn docker_forms() {
        assert_eq!(canon("8080:80"), "8080:80/tcp");
        assert_eq!(canon("8080:80/tcp"), "8080:80/tcp");
        assert_eq!(canon("127.0.0.1:5353:53/udp"), "127.0.0.1:5353:53/udp");
        assert_eq!(canon("80"), "80/tcp");
        assert_eq!(canon("127.0.0.1::80"), "127.0.0.1::80/tcp");
        assert_eq!(canon("8000-8003:8000-8003"), "8000-8003:8000-8003/tcp");
        let m = PortMapping::parse("0.0.0.0:1:65535").unwrap();
        assert_eq!(m.host_port, Some(PortRange { start: 1, end: 1 }));
    }

    #[test]
    fn rejects_bad_mappings() {
        for bad in [
            "",
            "0:80",
            "8080:0",
            "65536:80",
            "8080:80/sctp",
            "a:80",
            "1.2.3:80:80",
            "8000-8003:80",
            "8003-8000:8003-8000",
            "1:2:3:4",
            "[::1:80:80",
            "[::1]80:80",
            ":80:80:",
        ] {
            assert!(PortMapping::parse(bad).is_err(), "{bad:?} accepted");
        }
        for v6 in ["[::1]:8080:80", "[::]:53:53/udp", "[fe80::1]::80"] {
            let msg = PortMapping::parse(v6).unwrap_err();
            assert!(msg.contains("only IPv4 is supported"), "{v6}: {msg}");
        }
        let msg = PortMapping::parse("8000-8003:9000-9001").unwrap_err();
        assert!(msg.contains("different lengths"), "{msg}");
    }

    #[test]
    fn conflicts() {
        let p = |s| PortMapping::parse(s).unwrap();
        assert!(p("8080:80").conflicts_with(&p("8080:81")));
        assert!(p("0.0.0.0:8080:80").conflicts_with(&p("127.0.0.1:8080:80")));
        assert!(p("8000-8010:8000-8010").conflicts_with(&p("8005:80")));
        assert!(!p("8080:80").conflicts_with(&p("8080:80/udp")));
        assert!(!p("127.0.0.1:8080:80").conflicts_with(&p("127.0.0.2:8080:80")));
        assert!(!p("80").conflicts_with(&p("80")));
    }
}
