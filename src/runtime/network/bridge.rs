//! The bridge network: one host bridge whose address is the containers'
//! gateway, a veth pair per container (its peer made directly inside the
//! container's network namespace as `eth0`), addresses from the persisted
//! pool, outbound traffic masqueraded by one nftables table of our own,
//! and names: one hosts file for every container on the bridge, rewritten
//! in place when a container comes or goes (one write per change, not one
//! per container), bind-mounted read-only as `/etc/hosts`.

use std::collections::BTreeMap;
use std::io::Write;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Instant;

use super::conntrack;
use super::ipam::{Pool, Subnet};
use super::netlink::{Netlink, index};
use super::nft::nft;
use super::ports::{self, Publish, Published};
use super::saved_pool::SavedPool;
use super::{NetPlan, NetworkError};
use crate::runtime::reaper::Reaper;

/// The name a container answers to on the bridge.
#[derive(Debug, Clone, Copy)]
pub struct Naming<'a> {
    /// The unit's name.
    pub name: &'a str,
    pub aliases: &'a [String],
    /// In the hosts file now; false: a unit's second container, named
    /// once the unit's traffic moves to it.
    pub listed: bool,
}

/// A unit's traffic moved ([`Bridge::switch`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Switched {
    /// When the kernel committed the moved ports (new connections go to
    /// the new container from then on), or the call ended when there were
    /// none to move.
    pub at: Instant,
    /// The ports now published to the new container, `0.0.0.0:8080->80/tcp`.
    pub ports: Vec<String>,
}

/// The bridge's name and subnet.
#[derive(Debug, Clone)]
pub struct Config {
    pub name: String,
    pub subnet: Subnet,
}

pub struct Bridge {
    config: Config,
    index: u32,
    netlink: Netlink,
    pool: SavedPool,
    dir: PathBuf,
    /// Holder (a container's runtime name) -> the name it answers to.
    names: Mutex<BTreeMap<String, Named>>,
    /// Holder -> its published ports (with the sockets that hold them).
    published: Mutex<BTreeMap<String, Vec<Published>>>,
    rules_lock: tokio::sync::Mutex<()>,
    next_veth: AtomicU32,
    /// `net.ipv4.ip_forward` as we found it.
    forward_was: Option<String>,
    reaper: Reaper,
}

const FORWARD: &str = "/proc/sys/net/ipv4/ip_forward";

fn table(bridge: &str) -> String {
    format!("supervisor_{bridge}")
}

/// Deletes the host's conntrack flows of the freed `address`
/// ([`conntrack`]): a client must not be sent to a container that left.
async fn forget_flows(address: Ipv4Addr) {
    match tokio::task::spawn_blocking(move || conntrack::forget(address)).await {
        Ok(Ok(0)) | Err(_) => {}
        Ok(Ok(n)) => tracing::debug!("network: forgot {n} conntrack flows of {address}"),
        Ok(Err(e)) => tracing::warn!("network: the conntrack flows of {address} are left: {e}"),
    }
}

/// `/etc/resolv.conf` for containers: the host's, without the loopback
/// resolvers a container cannot reach.
pub fn resolv_conf(host: &str) -> String {
    let mut out = String::new();
    for line in host.lines() {
        let mut words = line.split_whitespace();
        if words.next() == Some("nameserver") {
            let loopback =
                words.next().and_then(|a| a.parse::<std::net::IpAddr>().ok()).is_some_and(|a| a.is_loopback());
            if loopback {
                continue;
            }
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// The name (and aliases) a container on the bridge answers to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Named {
    /// The unit's name: a second container of a unit (an instance) carries
    /// it too, unlisted until the unit's traffic moves to it.
    pub name: String,
    pub address: Ipv4Addr,
    pub aliases: Vec<String>,
    /// In the hosts file.
    pub listed: bool,
}

/// The hosts file's entries of `holders`: the listed ones, by name.
pub fn listed(holders: &BTreeMap<String, Named>) -> BTreeMap<String, (Ipv4Addr, Vec<String>)> {
    holders.values().filter(|n| n.listed).map(|n| (n.name.clone(), (n.address, n.aliases.clone()))).collect()
}

/// Moves what `from` publishes to `to`, whose address is `address`: the
/// same host ports and their held sockets (the port is never free for
/// another program to take in between), the new container's address.
/// False when `from` published nothing.
pub fn move_ports(published: &mut BTreeMap<String, Vec<Published>>, from: &str, to: &str, address: Ipv4Addr) -> bool {
    if from == to {
        return false;
    }
    let Some(mut ports) = published.remove(from) else { return false };
    for p in &mut ports {
        p.container_ip = address;
    }
    published.entry(to.to_string()).or_default().extend(ports);
    true
}

/// Moves the unit's name from `from` to `to` (listed from now on, with
/// the aliases `to` was attached with); `from` keeps no entry. False when
/// `to` is not on the bridge.
pub fn move_name(names: &mut BTreeMap<String, Named>, from: &str, to: &str) -> bool {
    if !names.contains_key(to) {
        return false;
    }
    if from != to {
        names.remove(from);
    }
    if let Some(n) = names.get_mut(to) {
        n.listed = true;
    }
    true
}

/// The hosts file for `names`.
pub fn hosts(names: &BTreeMap<String, (Ipv4Addr, Vec<String>)>) -> String {
    let mut out = String::from("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n");
    for (name, (ip, aliases)) in names {
        out.push_str(&format!("{ip}\t{name}"));
        for a in aliases {
            out.push(' ');
            out.push_str(a);
        }
        out.push('\n');
    }
    out
}

/// A MAC address from an IPv4 address (locally administered, as Docker
/// does): a new container on an old address does not fight a stale ARP
/// entry with a new MAC, and the bridge's, from its gateway address, stays
/// the same across runs.
pub fn mac(ip: Ipv4Addr) -> [u8; 6] {
    let o = ip.octets();
    [0x02, 0x53, o[0], o[1], o[2], o[3]]
}

/// Writes `text` over `path` in place: the bind mounts in running
/// containers keep seeing the same file.
fn write_in_place(path: &Path, text: &str) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mut f = std::fs::OpenOptions::new().create(true).write(true).truncate(false).open(path)?;
    // Read by any user in the containers, whatever the daemon's umask.
    f.set_permissions(std::fs::Permissions::from_mode(0o644))?;
    f.write_all(text.as_bytes())?;
    f.set_len(text.len() as u64)
}

impl Bridge {
    /// Sets the bridge up (or takes over the one an earlier run left).
    /// Nothing runs on it yet: every address is free.
    pub async fn setup(
        config: Config,
        state_dir: &Path,
        run_dir: &Path,
        reaper: Reaper,
    ) -> Result<Bridge, NetworkError> {
        let routes = std::fs::read_to_string("/proc/net/route").unwrap_or_default();
        let clash = super::route_conflicts(&routes, &config.subnet, &config.name);
        if !clash.is_empty() {
            return Err(NetworkError::SubnetOverlap { subnet: config.subnet, routes: clash.join(", ") });
        }
        let netlink = Netlink::open()?;
        let gateway = config.subnet.gateway();
        let index = netlink.bridge(&config.name, gateway, config.subnet.prefix, mac(gateway)).await?;
        let dir = run_dir.join("network").join(&config.name);
        std::fs::create_dir_all(&dir).map_err(NetworkError::io("create", &dir))?;
        // What ip_forward was before the first of us turned it on: kept in
        // the run dir, so a successor of a crashed supervisor still knows.
        let was_path = dir.join("ip_forward.was");
        let forward_was = match std::fs::read_to_string(&was_path) {
            Ok(was) => Some(was),
            Err(_) => {
                let was = std::fs::read_to_string(FORWARD).ok();
                if let Some(was) = was.as_deref().filter(|w| w.trim() != "1") {
                    std::fs::write(&was_path, was).map_err(NetworkError::io("write", &was_path))?;
                }
                was
            }
        };
        std::fs::write(FORWARD, "1").map_err(NetworkError::io("write", FORWARD))?;
        nft(&reaper, &ports::ruleset(&table(&config.name), &config.name, config.subnet, &[])).await?;
        // Connections from the host to 127.0.0.1 of a published port are
        // routed out of the bridge (then masqueraded).
        let localnet = format!("/proc/sys/net/ipv4/conf/{}/route_localnet", config.name);
        std::fs::write(&localnet, "1").map_err(NetworkError::io("write", &localnet))?;
        let pool_dir = state_dir.join("network");
        std::fs::create_dir_all(&pool_dir).map_err(NetworkError::io("create", &pool_dir))?;
        let pool_path = pool_dir.join(format!("{}.json", config.name));
        let (mut pool, unreadable) = Pool::load(&pool_path, config.subnet);
        if let Some(why) = unreadable {
            tracing::warn!("network: the address pool starts anew: {why}");
        }
        // What an earlier supervisor held is free: its containers are gone
        // (the daemon's start killed what was left of them).
        for (ip, holder) in pool.reclaim(|_| false) {
            tracing::info!("network: reclaimed {ip} of {holder}, a container an earlier supervisor left");
            forget_flows(ip).await;
        }
        let resolv = resolv_conf(&std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default());
        let resolv_path = dir.join("resolv.conf");
        write_in_place(&resolv_path, &resolv).map_err(NetworkError::io("write", &resolv_path))?;
        let bridge = Bridge {
            config,
            index,
            netlink,
            pool: SavedPool::new(pool, pool_path),
            dir,
            names: Mutex::new(BTreeMap::new()),
            published: Mutex::new(BTreeMap::new()),
            rules_lock: tokio::sync::Mutex::new(()),
            next_veth: AtomicU32::new(0),
            forward_was,
            reaper,
        };
        bridge.pool.save().await;
        bridge.write_hosts();
        Ok(bridge)
    }

    pub fn name(&self) -> &str {
        &self.config.name
    }

    /// The hosts file every container on the bridge mounts.
    pub fn hosts_path(&self) -> PathBuf {
        self.dir.join("hosts")
    }

    pub fn resolv_path(&self) -> PathBuf {
        self.dir.join("resolv.conf")
    }

    fn write_hosts(&self) {
        // Written under the lock: two writers in place would mix.
        let names = self.names.lock().unwrap_or_else(|e| e.into_inner());
        if let Err(e) = write_in_place(&self.hosts_path(), &hosts(&listed(&names))) {
            tracing::warn!("network: cannot write {}: {e}", self.hosts_path().display());
        }
    }

    /// An address for `holder` and its published ports (held from now
    /// on, and in the table), and what its container will configure.
    pub async fn reserve(&self, holder: &str, publish: &[Publish]) -> Result<(NetPlan, Vec<String>), NetworkError> {
        let ip = self.pool.update(|p| p.allocate(holder))?;
        self.pool.save().await;
        let mut held = Vec::new();
        for p in publish {
            match ports::hold(p) {
                Ok((socket, port)) => held.push(Published {
                    host_ip: p.host_ip,
                    host_port: port,
                    container_ip: ip,
                    container_port: p.container_port,
                    protocol: if p.udp { "udp" } else { "tcp" },
                    held: Some(socket),
                }),
                Err(e) => {
                    self.unreserve(holder).await;
                    return Err(e);
                }
            }
        }
        let described = held.iter().map(Published::describe).collect();
        if !held.is_empty() {
            self.published.lock().unwrap_or_else(|e| e.into_inner()).insert(holder.to_string(), held);
            if let Err(e) = self.apply_rules().await {
                self.unreserve(holder).await;
                return Err(e);
            }
        }
        let plan = NetPlan {
            interface: "eth0".into(),
            address: ip,
            prefix: self.config.subnet.prefix,
            gateway: self.config.subnet.gateway(),
        };
        Ok((plan, described))
    }

    /// Our table as the published ports now say. One change at a time:
    /// each nft run replaces the whole table, so a text made before
    /// another change must not be applied after it.
    async fn apply_rules(&self) -> Result<(), NetworkError> {
        let _one = self.rules_lock.lock().await;
        let text = {
            let published = self.published.lock().unwrap_or_else(|e| e.into_inner());
            let all: Vec<&Published> = published.values().flatten().collect();
            ports::ruleset(&table(&self.config.name), &self.config.name, self.config.subnet, &all)
        };
        nft(&self.reaper, &text).await.map(drop)
    }

    /// Frees what `holder` reserved: its ports (rules and sockets) and its
    /// address.
    pub async fn unreserve(&self, holder: &str) {
        let had_ports = self.published.lock().unwrap_or_else(|e| e.into_inner()).remove(holder).is_some();
        if had_ports {
            if let Err(e) = self.apply_rules().await {
                tracing::error!("network: {e}");
            }
        }
        let address = self.pool_address(holder);
        self.pool.update(|p| p.release(holder));
        self.pool.save().await;
        // Its rules are gone: no new flow can reach the address. Only a
        // published port brings clients whose source ports come again;
        // the dump walks the whole table, which a crash-looping fleet
        // without ports should not pay for at every exit.
        if let Some(address) = address.filter(|_| had_ports) {
            forget_flows(address).await;
        }
    }

    /// Puts the container `pid` on the bridge with `plan`'s address and
    /// names it (and its aliases) in the hosts file (unless `naming` is
    /// unlisted: a unit's second container, until [`Bridge::switch`]); the
    /// host end's name.
    pub async fn attach(
        &self,
        holder: &str,
        naming: &Naming<'_>,
        pid: u32,
        plan: &NetPlan,
    ) -> Result<String, NetworkError> {
        let n = self.next_veth.fetch_add(1, Ordering::Relaxed);
        let host = format!("sv{:x}{n:x}", std::process::id() & 0xffff);
        self.netlink.veth_into(&host, self.index, pid, &plan.interface, mac(plan.address)).await?;
        // A container may reach its own published port through the host;
        // and its port of the bridge, like the container's end, has no
        // IPv6 (the network is IPv4 only), so that it sends nothing the
        // bridge would flood to every container.
        for (file, value) in [
            (format!("/sys/class/net/{host}/brport/hairpin_mode"), "1"),
            (format!("/proc/sys/net/ipv6/conf/{host}/disable_ipv6"), "1"),
        ] {
            if let Err(e) = std::fs::write(&file, value) {
                tracing::debug!("network: {file}: {e}");
            }
        }
        self.add_name(holder, plan.address, naming);
        Ok(host)
    }

    /// Names `holder` at `address` as `naming` says: also a container that
    /// shares another's network.
    pub fn add_name(&self, holder: &str, address: Ipv4Addr, naming: &Naming<'_>) {
        let named =
            Named { name: naming.name.to_string(), address, aliases: naming.aliases.to_vec(), listed: naming.listed };
        self.names.lock().unwrap_or_else(|e| e.into_inner()).insert(holder.to_string(), named);
        if naming.listed {
            self.write_hosts();
        }
    }

    /// Moves a unit's traffic from the container `from` to the container
    /// `to` (both attached): its published ports, in one nft transaction
    /// (new connections go to `to`; established ones keep their DNAT to
    /// `from` in conntrack), and its name and aliases in the hosts file.
    /// `to` owns them from then on: `from`'s [`Bridge::detach`] frees only
    /// its address. When the ports moved, and where to.
    pub async fn switch(&self, from: &str, to: &str) -> Result<Switched, NetworkError> {
        let address = {
            let names = self.names.lock().unwrap_or_else(|e| e.into_inner());
            names.get(to).map(|n| n.address).ok_or_else(|| NetworkError::NotAttached(to.to_string()))?
        };
        // Held across the move and its nft run: a reserve or detach of
        // another unit applies its text after ours, made from the moved
        // ports.
        let one = self.rules_lock.lock().await;
        let (moved, text) = {
            let mut published = self.published.lock().unwrap_or_else(|e| e.into_inner());
            let moved = move_ports(&mut published, from, to, address);
            let all: Vec<&Published> = published.values().flatten().collect();
            (moved, ports::ruleset(&table(&self.config.name), &self.config.name, self.config.subnet, &all))
        };
        let mut committed = None;
        if moved {
            match nft(&self.reaper, &text).await {
                Ok(at) => committed = Some(at),
                Err(e) => {
                    // The table is as it was: so is the map.
                    let mut published = self.published.lock().unwrap_or_else(|e| e.into_inner());
                    if let Some(back) = self.pool_address(from) {
                        move_ports(&mut published, to, from, back);
                    }
                    return Err(e);
                }
            }
        }
        drop(one);
        {
            let mut names = self.names.lock().unwrap_or_else(|e| e.into_inner());
            move_name(&mut names, from, to);
        }
        self.write_hosts();
        let ports = {
            let published = self.published.lock().unwrap_or_else(|e| e.into_inner());
            published.get(to).map(|p| p.iter().map(Published::describe).collect()).unwrap_or_default()
        };
        Ok(Switched { at: committed.unwrap_or_else(Instant::now), ports })
    }

    /// The address the pool gave `holder`.
    fn pool_address(&self, holder: &str) -> Option<Ipv4Addr> {
        self.pool.read(|p| p.used.iter().find(|(_, h)| h.as_str() == holder).map(|(ip, _)| *ip))
    }

    /// Takes `holder` off the bridge: its name, its address, its veth.
    pub async fn detach(&self, holder: &str, host_veth: Option<&str>) {
        self.names.lock().unwrap_or_else(|e| e.into_inner()).remove(holder);
        self.write_hosts();
        if let Some(v) = host_veth {
            // Usually gone with the container's namespace already.
            if let Err(e) = self.netlink.delete(v).await {
                tracing::warn!("network: {e}");
            }
        }
        self.unreserve(holder).await;
    }

    /// Removes the bridge and our nft table, and puts ip_forward back.
    pub async fn teardown(&self) {
        if let Err(e) = self.netlink.delete(&self.config.name).await {
            tracing::warn!("network: {e}");
        }
        let t = table(&self.config.name);
        if let Err(e) = nft(&self.reaper, &format!("table ip {t}\ndelete table ip {t}\n")).await {
            tracing::warn!("network: {e}");
        }
        if let Some(was) = &self.forward_was {
            if was.trim() != "1" {
                let _ = std::fs::write(FORWARD, was.trim());
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
        if index(&self.config.name).is_some() {
            tracing::warn!("network: the bridge {} is still there", self.config.name);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolv_conf_drops_loopback_resolvers() {
        let host = "# generated\nnameserver 127.0.0.53\nnameserver 10.0.0.2\nnameserver ::1\nsearch lan\n";
        assert_eq!(resolv_conf(host), "# generated\nnameserver 10.0.0.2\nsearch lan\n");
    }

    #[test]
    fn hosts_names_every_container_and_its_aliases() {
        let mut names = BTreeMap::new();
        names.insert("db".to_string(), (Ipv4Addr::new(10, 213, 0, 2), vec!["database".to_string()]));
        names.insert("web".to_string(), (Ipv4Addr::new(10, 213, 0, 3), vec![]));
        let text = hosts(&names);
        assert!(text.starts_with("127.0.0.1\tlocalhost\n"));
        assert!(text.contains("10.213.0.2\tdb database\n10.213.0.3\tweb\n"), "{text}");
        assert_eq!(mac(Ipv4Addr::new(10, 213, 0, 2)), [2, 0x53, 10, 213, 0, 2]);
        let text = ports::ruleset(&table("sv0"), "sv0", Subnet::parse("10.213.0.0/16").unwrap(), &[]);
        assert!(text.contains("ip saddr 10.213.0.0/16 oifname != \"sv0\" masquerade"));
    }

    fn port(host_port: u16, ip: Ipv4Addr) -> Published {
        Published { host_ip: None, host_port, container_ip: ip, container_port: 80, protocol: "tcp", held: None }
    }

    #[test]
    fn a_switch_moves_the_ports_to_the_new_address_in_one_ruleset() {
        let (old, new) = (Ipv4Addr::new(10, 213, 0, 2), Ipv4Addr::new(10, 213, 0, 9));
        let mut published = BTreeMap::new();
        published.insert("web".to_string(), vec![port(8080, old), port(8443, old)]);
        published.insert("db".to_string(), vec![port(5432, Ipv4Addr::new(10, 213, 0, 3))]);
        assert!(move_ports(&mut published, "web", "web.2", new));
        assert!(!published.contains_key("web"));
        let all: Vec<&Published> = published.values().flatten().collect();
        let text = ports::ruleset("t", "sv0", Subnet::parse("10.213.0.0/16").unwrap(), &all);
        // Both ports to the new container, none left to the old; the other
        // unit's untouched.
        assert_eq!(text.matches("tcp dport 8080 dnat to 10.213.0.9:80").count(), 2, "{text}");
        assert_eq!(text.matches("tcp dport 8443 dnat to 10.213.0.9:80").count(), 2, "{text}");
        assert!(!text.contains("10.213.0.2"), "{text}");
        assert_eq!(text.matches("dnat to 10.213.0.3:80").count(), 2, "{text}");
        // A container without ports moves nothing; nor a move to itself.
        assert!(!move_ports(&mut published, "web", "web.3", old));
        assert!(!move_ports(&mut published, "web.2", "web.2", old));
        assert_eq!(published["web.2"].len(), 2);
    }

    #[test]
    fn an_instance_is_unnamed_until_the_switch_and_then_answers_to_the_units_name() {
        let named = |address, aliases: &[&str], listed| Named {
            name: "web".into(),
            address,
            aliases: aliases.iter().map(|a| a.to_string()).collect(),
            listed,
        };
        let (old, new) = (Ipv4Addr::new(10, 213, 0, 2), Ipv4Addr::new(10, 213, 0, 9));
        let mut names = BTreeMap::new();
        names.insert("web".to_string(), named(old, &["www"], true));
        // The new config's aliases come with the new container.
        names.insert("web.2".to_string(), named(new, &["www", "site"], false));
        let before = hosts(&listed(&names));
        assert!(before.contains("10.213.0.2\tweb www\n") && !before.contains("10.213.0.9"), "{before}");
        assert!(!before.contains("web.2"), "{before}");
        assert!(!move_name(&mut names, "web", "web.7"), "a switch to a container not attached");
        assert!(move_name(&mut names, "web", "web.2"));
        let after = hosts(&listed(&names));
        assert!(after.contains("10.213.0.9\tweb www site\n"), "{after}");
        assert!(!after.contains("10.213.0.2") && !after.contains("web.2"), "{after}");
        assert_eq!(after.matches("\tweb").count(), 1, "{after}");
        assert!(move_name(&mut names, "web.2", "web.2"), "a move to itself keeps the name");
        assert_eq!(hosts(&listed(&names)), after);
    }
}
