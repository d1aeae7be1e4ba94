//! Addresses for containers on the bridge: a subnet, its first address for
//! the bridge (the containers' gateway), the rest handed out one per
//! container and never twice at once. Freed addresses are not reused at
//! once: the next one is searched from after the last one handed out, so
//! a peer's stale ARP entry or conntrack state for a stopped container
//! does not reach its successor (as Docker's IPAM does). The pool is
//! plain data, persisted by the caller, so that it survives a supervisor
//! restart and what a crashed supervisor held can be reclaimed.

use std::collections::BTreeMap;
use std::io::Write;
use std::net::Ipv4Addr;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::NetworkError;

/// An IPv4 subnet, `10.213.0.0/16`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Subnet {
    pub network: Ipv4Addr,
    pub prefix: u8,
}

impl Subnet {
    pub fn parse(s: &str) -> Result<Subnet, NetworkError> {
        let (address, prefix) = s.split_once('/').ok_or_else(|| NetworkError::SubnetSyntax(s.to_string()))?;
        let addr: Ipv4Addr = address
            .parse()
            .map_err(|_| NetworkError::SubnetAddress { text: s.to_string(), address: address.to_string() })?;
        let prefix: u8 = prefix
            .parse()
            .ok()
            .filter(|p| (8..=30).contains(p))
            .ok_or_else(|| NetworkError::SubnetPrefix(s.to_string()))?;
        let net = Subnet { network: Ipv4Addr::from(u32::from(addr) & mask(prefix)), prefix };
        if net.network != addr {
            return Err(NetworkError::SubnetHostBits { text: s.to_string(), subnet: net });
        }
        Ok(net)
    }

    fn base(&self) -> u32 {
        u32::from(self.network)
    }

    fn size(&self) -> u32 {
        1u32 << (32 - self.prefix)
    }

    /// The bridge's address.
    pub fn gateway(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.base() + 1)
    }

    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & mask(self.prefix) == self.base()
    }

    /// Whether the two share any address.
    pub fn overlaps(&self, other: &Subnet) -> bool {
        let p = self.prefix.min(other.prefix);
        self.base() & mask(p) == other.base() & mask(p)
    }

    /// Addresses for containers: after the gateway, before broadcast.
    pub fn capacity(&self) -> u32 {
        self.size() - 3
    }
}

impl std::fmt::Display for Subnet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

impl TryFrom<String> for Subnet {
    type Error = NetworkError;
    fn try_from(s: String) -> Result<Subnet, NetworkError> {
        Subnet::parse(&s)
    }
}

impl From<Subnet> for String {
    fn from(s: Subnet) -> String {
        s.to_string()
    }
}

pub fn mask(prefix: u8) -> u32 {
    if prefix == 0 { 0 } else { u32::MAX << (32 - prefix) }
}

/// The addresses of one bridge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pool {
    pub subnet: Subnet,
    /// Who holds each address (a container's name).
    pub used: BTreeMap<Ipv4Addr, String>,
    /// The last address handed out.
    pub last: Option<Ipv4Addr>,
}

impl Pool {
    pub fn new(subnet: Subnet) -> Pool {
        Pool { subnet, used: BTreeMap::new(), last: None }
    }

    /// An address for `holder`: the next free one after the last handed
    /// out, wrapping around.
    pub fn allocate(&mut self, holder: &str) -> Result<Ipv4Addr, NetworkError> {
        let (first, count) = (self.subnet.base() + 2, self.subnet.capacity());
        let start = self.last.map_or(0, |l| (u32::from(l) - first + 1) % count);
        for i in 0..count {
            let ip = Ipv4Addr::from(first + (start + i) % count);
            if let std::collections::btree_map::Entry::Vacant(slot) = self.used.entry(ip) {
                slot.insert(holder.to_string());
                self.last = Some(ip);
                return Ok(ip);
            }
        }
        Err(NetworkError::AddressesExhausted { subnet: self.subnet, used: self.used.len() })
    }

    /// Frees what `holder` held.
    pub fn release(&mut self, holder: &str) {
        self.used.retain(|_, h| h != holder);
    }

    /// Frees every address whose holder `alive` does not know (what a
    /// supervisor that died left); what was freed.
    pub fn reclaim(&mut self, alive: impl Fn(&str) -> bool) -> Vec<(Ipv4Addr, String)> {
        let gone: Vec<(Ipv4Addr, String)> =
            self.used.iter().filter(|(_, h)| !alive(h)).map(|(ip, h)| (*ip, h.clone())).collect();
        for (ip, _) in &gone {
            self.used.remove(ip);
        }
        gone
    }

    /// The pool saved at `path` for `subnet`; a new one when there is none,
    /// or it is for another subnet, or unreadable (then why, to log: its
    /// holders are gone with the supervisor that wrote it, only the cursor
    /// is lost).
    pub fn load(path: &Path, subnet: Subnet) -> (Pool, Option<String>) {
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return (Pool::new(subnet), None),
            Err(e) => return (Pool::new(subnet), Some(format!("read {}: {e}", path.display()))),
        };
        match serde_json::from_slice::<Pool>(&bytes) {
            Ok(p) if p.subnet == subnet => (p, None),
            Ok(_) => (Pool::new(subnet), None),
            Err(e) => (Pool::new(subnet), Some(format!("{}: {e}", path.display()))),
        }
    }

    /// Replaces the pool at `path` so that a crash (of the supervisor or of
    /// the machine) at any point leaves the old pool or the new one, whole:
    /// a temporary file written and synced, renamed over it, the directory
    /// synced.
    pub fn save(&self, path: &Path) -> Result<(), NetworkError> {
        let tmp = path.with_extension("json.tmp");
        let bytes =
            serde_json::to_vec(self).map_err(std::io::Error::other).map_err(NetworkError::io("encode", path))?;
        let mut f = std::fs::File::create(&tmp).map_err(NetworkError::io("create", &tmp))?;
        f.write_all(&bytes).map_err(NetworkError::io("write", &tmp))?;
        f.sync_all().map_err(NetworkError::io("sync", &tmp))?;
        drop(f);
        std::fs::rename(&tmp, path).map_err(NetworkError::io("rename to", path))?;
        let dir = path.parent().unwrap_or(Path::new("."));
        std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(NetworkError::io("sync", dir))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subnets_are_checked() {
        let s = Subnet::parse("10.213.0.0/16").unwrap();
        assert_eq!(s.gateway(), Ipv4Addr::new(10, 213, 0, 1));
        assert_eq!(s.capacity(), 65533);
        assert!(Subnet::parse("10.213.0.1/16").unwrap_err().to_string().contains("host bits"));
        assert!(matches!(Subnet::parse("10.213.0.0/31"), Err(NetworkError::SubnetPrefix(_))));
        assert!(matches!(Subnet::parse("10.213.0.0"), Err(NetworkError::SubnetSyntax(_))));
        assert!(matches!(Subnet::parse("10.213.0/16"), Err(NetworkError::SubnetAddress { .. })));
        assert!(s.overlaps(&Subnet::parse("10.213.7.0/24").unwrap()));
        assert!(!s.overlaps(&Subnet::parse("10.88.0.0/16").unwrap()));
        assert!(!s.overlaps(&Subnet::parse("172.17.0.0/16").unwrap()));
        assert!(s.contains(Ipv4Addr::new(10, 213, 255, 254)));
    }

    #[test]
    fn addresses_are_never_given_twice_and_not_reused_at_once() {
        let mut p = Pool::new(Subnet::parse("192.168.50.0/29").unwrap());
        // .2 to .6: five addresses.
        let ips: Vec<Ipv4Addr> = (0..5).map(|i| p.allocate(&format!("c{i}")).unwrap()).collect();
        let host = |n| Ipv4Addr::new(192, 168, 50, n);
        assert_eq!(ips, [host(2), host(3), host(4), host(5), host(6)]);
        assert!(p.allocate("c5").unwrap_err().to_string().contains("no address left"));
        p.release("c1");
        p.release("c3");
        // After .6 comes .3 (the first free one, wrapping), then .5.
        assert_eq!(p.allocate("x").unwrap(), Ipv4Addr::new(192, 168, 50, 3));
        assert_eq!(p.allocate("y").unwrap(), Ipv4Addr::new(192, 168, 50, 5));
        // Who holds what, whole: each holder one address, each address one
        // holder, the released ones gone.
        let held: Vec<(Ipv4Addr, &str)> = p.used.iter().map(|(ip, h)| (*ip, h.as_str())).collect();
        assert_eq!(held, [(host(2), "c0"), (host(3), "x"), (host(4), "c2"), (host(5), "y"), (host(6), "c4")]);
    }

    #[test]
    fn a_pool_survives_a_round_trip_and_reclaims_the_dead() {
        let mut p = Pool::new(Subnet::parse("10.213.0.0/16").unwrap());
        p.allocate("web").unwrap();
        let db = p.allocate("db").unwrap();
        let text = serde_json::to_string(&p).unwrap();
        let mut back: Pool = serde_json::from_str(&text).unwrap();
        assert_eq!(back, p);
        let freed = back.reclaim(|h| h == "db");
        assert_eq!(freed.len(), 1);
        assert_eq!(back.used.values().collect::<Vec<_>>(), ["db"]);
        assert_eq!(back.used.keys().next(), Some(&db));
        // The cursor survives: the next address is after db's.
        assert_eq!(back.allocate("n").unwrap(), Ipv4Addr::new(10, 213, 0, 4));
    }

    #[test]
    fn a_pool_saved_is_read_back_and_a_torn_or_foreign_one_starts_anew() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sv0.json");
        let subnet = Subnet::parse("10.213.0.0/16").unwrap();
        assert_eq!(Pool::load(&path, subnet), (Pool::new(subnet), None));
        let mut p = Pool::new(subnet);
        p.allocate("web").unwrap();
        p.save(&path).unwrap();
        assert_eq!(Pool::load(&path, subnet), (p.clone(), None));
        assert!(!path.with_extension("json.tmp").exists());
        let other = Subnet::parse("10.88.0.0/16").unwrap();
        assert_eq!(Pool::load(&path, other).0, Pool::new(other));
        std::fs::write(&path, &serde_json::to_vec(&p).unwrap()[..20]).unwrap();
        let (torn, why) = Pool::load(&path, subnet);
        assert_eq!(torn, Pool::new(subnet));
        assert!(why.is_some_and(|w| w.contains("sv0.json")));
        // A leftover temporary file of a crash is written over.
        std::fs::write(path.with_extension("json.tmp"), "{").unwrap();
        p.save(&path).unwrap();
        assert_eq!(Pool::load(&path, subnet).0, p);
    }

    /// What each life of a supervisor killed with SIGKILL does to the pool:
    /// reads it, frees what the dead held, hands out addresses to its
    /// containers, saves it, and dies without releasing any. (One save per
    /// life: each syncs, milliseconds apiece.)
    #[test]
    fn two_hundred_crashes_do_not_exhaust_a_small_pool() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sv0.json");
        // Five addresses, four containers per life.
        let subnet = Subnet::parse("192.168.50.0/29").unwrap();
        let mut seen = std::collections::BTreeSet::new();
        for life in 0..200 {
            let (mut pool, why) = Pool::load(&path, subnet);
            assert_eq!(why, None, "life {life}");
            pool.reclaim(|_| false);
            for c in 0..4 {
                let ip = pool.allocate(&format!("c{c}")).unwrap_or_else(|e| panic!("life {life}: {e}"));
                seen.insert(ip);
            }
            pool.save(&path).unwrap();
        }
        // The cursor survives the crashes: every address got its turn.
        assert_eq!(seen.len(), 5);
    }
}
