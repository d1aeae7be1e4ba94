//! The netlink edge (rtnetlink, pinned: its API changes often). Every
//! call is a narrow function; nothing here knows about containers.

use std::net::{IpAddr, Ipv4Addr};

use rtnetlink::packet_route::link::{InfoData, InfoVeth, LinkAttribute};
use rtnetlink::{Handle, LinkBridge, LinkMessageBuilder, LinkUnspec, LinkVeth};

use super::NetworkError;

/// A netlink connection whose socket lives in our network namespace.
#[derive(Clone)]
pub struct Netlink {
    handle: Handle,
}

fn err(op: &'static str, object: &str) -> impl FnOnce(rtnetlink::Error) -> NetworkError {
    let object = object.to_string();
    move |source| NetworkError::Netlink { op, object, source }
}

/// Success, or the thing was there already (EEXIST).
fn exists_ok(r: Result<(), rtnetlink::Error>) -> Result<(), rtnetlink::Error> {
    match r {
        Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -libc::EEXIST => Ok(()),
        other => other,
    }
}

/// An interface's index in our network namespace (if_nametoindex asks a
/// socket of ours; /sys/class/net shows the namespace sysfs was mounted
/// in, which need not be ours).
pub fn index(name: &str) -> Option<u32> {
    nix::net::if_::if_nametoindex(name).ok().filter(|i| *i != 0)
}

impl Netlink {
    /// Opens the connection; its task runs on the current tokio runtime.
    pub fn open() -> Result<Netlink, NetworkError> {
        let (connection, handle, _) = rtnetlink::new_connection().map_err(NetworkError::Connect)?;
        tokio::spawn(connection);
        Ok(Netlink { handle })
    }

    /// Makes the bridge `name` (or keeps it), with `address/prefix` and
    /// the MAC address `mac`, up.
    ///
    /// The MAC is always set, never left to the kernel: a bridge without
    /// one takes the lowest of its ports', so it changes as containers come
    /// and go, and a container that learnt the old one for its gateway
    /// loses every packet it sends through the host (answers through a
    /// published port too) until its ARP entry is probed again.
    pub async fn bridge(&self, name: &str, address: Ipv4Addr, prefix: u8, mac: [u8; 6]) -> Result<u32, NetworkError> {
        if index(name).is_none() {
            self.handle
                .link()
                .add(LinkBridge::new(name).address(mac.to_vec()).build())
                .execute()
                .await
                .map_err(err("create the bridge", name))?;
        }
        let idx = index(name).ok_or_else(|| NetworkError::BridgeMissing(name.to_string()))?;
        // A bridge of an earlier run keeps its MAC when it has ours
        // (setting it again would flush the host's ARP entries on it).
        if self.mac_of(idx, name).await?.as_deref() != Some(&mac[..]) {
            self.handle
                .link()
                .set(LinkUnspec::new_with_index(idx).address(mac.to_vec()).build())
                .execute()
                .await
                .map_err(err("set the MAC address of", name))?;
        }
        // An address kept from an earlier run is fine.
        self.add_address(idx, name, address, prefix).await?;
        self.up(idx, name).await?;
        Ok(idx)
    }

    /// The MAC address of the interface `idx`.
    async fn mac_of(&self, idx: u32, name: &str) -> Result<Option<Vec<u8>>, NetworkError> {
        use futures_core::Stream;
        let mut links = std::pin::pin!(self.handle.link().get().match_index(idx).execute());
        while let Some(link) = std::future::poll_fn(|cx| links.as_mut().poll_next(cx)).await {
            let link = link.map_err(err("read", name))?;
            if let Some(mac) = link.attributes.into_iter().find_map(|a| match a {
                LinkAttribute::Address(mac) => Some(mac),
                _ => None,
            }) {
                return Ok(Some(mac));
            }
        }
        Ok(None)
    }

    async fn up(&self, idx: u32, name: &str) -> Result<(), NetworkError> {
        self.handle
            .link()
            .set(LinkUnspec::new_with_index(idx).up().build())
            .execute()
            .await
            .map_err(err("bring up", name))
    }

    /// Adds `address/prefix` to the interface, unless it has it already.
    async fn add_address(&self, idx: u32, name: &str, address: Ipv4Addr, prefix: u8) -> Result<(), NetworkError> {
        exists_ok(self.handle.address().add(idx, IpAddr::V4(address), prefix).execute().await)
            .map_err(err("address", &format!("{address}/{prefix} on {name}")))
    }

    /// A veth pair: `host` on the bridge `bridge` (up), and its peer
    /// created directly in the network namespace of `pid` as `peer` with
    /// the MAC address `mac` (down: the container configures it).
    pub async fn veth_into(
        &self,
        host: &str,
        bridge: u32,
        pid: u32,
        peer: &str,
        mac: [u8; 6],
    ) -> Result<(), NetworkError> {
        let peer_msg =
            LinkMessageBuilder::<LinkUnspec>::new().name(peer).address(mac.to_vec()).setns_by_pid(pid).build();
        let msg = LinkVeth::new(host, peer)
            .set_info_data(InfoData::Veth(InfoVeth::Peer(peer_msg)))
            .controller(bridge)
            .up()
            .build();
        self.handle.link().add(msg).execute().await.map_err(err("create the veth pair", host))
    }

    /// The host's uplink: `name` up with `address/prefix`, and the
    /// default route through `gateway` (kept if already there).
    pub async fn uplink(
        &self,
        name: &str,
        address: Ipv4Addr,
        prefix: u8,
        gateway: Option<Ipv4Addr>,
    ) -> Result<(), NetworkError> {
        let idx = index(name).ok_or_else(|| NetworkError::NoInterface(name.to_string()))?;
        self.up(idx, name).await?;
        self.add_address(idx, name, address, prefix).await?;
        if let Some(gw) = gateway {
            let route = rtnetlink::RouteMessageBuilder::<Ipv4Addr>::new().gateway(gw).output_interface(idx).build();
            exists_ok(self.handle.route().add(route).execute().await)
                .map_err(err("default route via", &format!("{gw} on {name}")))?;
        }
        Ok(())
    }

    /// Deletes the interface `name`, if there.
    pub async fn delete(&self, name: &str) -> Result<(), NetworkError> {
        let Some(idx) = index(name) else { return Ok(()) };
        match self.handle.link().del(idx).execute().await {
            Ok(()) => Ok(()),
            Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -libc::ENODEV => Ok(()),
            Err(e) => Err(err("delete", name)(e)),
        }
    }
}
