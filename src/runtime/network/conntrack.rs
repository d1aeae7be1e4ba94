//! The host's connection tracking, through ctnetlink: a container that
//! leaves the bridge takes its flows with it.
//!
//! conntrack keeps a flow after its container is gone: a SYN that reached
//! a published port between the container's death and the removal of its
//! rules stays `SYN_SENT [UNREPLIED]` for two minutes, DNATed to the gone
//! address, and a client that uses the same source port again meanwhile
//! sends its new connection there (bench/update.sh met it as 2 s client
//! timeouts after stop-first updates). So when the address of a container
//! that published ports is freed, the flows whose answers come from it are
//! deleted, as Docker does on an endpoint's removal and kube-proxy does for
//! a service's gone endpoints; all but closed TCP ones, which the kernel
//! already replaces when a SYN reuses their tuple ([`flow`]).
//!
//! One dump, filtered in the kernel (`CTA_FILTER`, Linux 5.8; it still
//! walks the whole table), then one delete per flow found, by its original
//! tuple and its ID as the kernel reported them. The ID matters: a client reusing a source
//! port reopens a flow in TIME_WAIT as a new one with the same tuple
//! (DNATed to the container serving now), and a delete by tuple alone
//! would remove that live flow instead (caught by bench/update.sh: a
//! request stalled at each old container's cleanup).

use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, OwnedFd};

use nix::sys::socket::{
    AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol, SockType, bind, recv, send, setsockopt, socket,
    sockopt,
};
use nix::sys::time::TimeVal;

const NFNL_SUBSYS_CTNETLINK: u16 = 1;
const IPCTNL_MSG_CT_GET: u16 = 1;
const IPCTNL_MSG_CT_DELETE: u16 = 2;
const CTA_TUPLE_ORIG: u16 = 1;
const CTA_TUPLE_REPLY: u16 = 2;
const CTA_PROTOINFO: u16 = 4;
const CTA_ID: u16 = 12;
const CTA_PROTOINFO_TCP: u16 = 1;
const CTA_PROTOINFO_TCP_STATE: u16 = 1;
const TCP_TIME_WAIT: u8 = 7;
const TCP_CLOSE: u8 = 8;
const CTA_FILTER: u16 = 25;
const CTA_TUPLE_IP: u16 = 1;
const CTA_IP_V4_SRC: u16 = 1;
const CTA_FILTER_ORIG_FLAGS: u16 = 1;
const CTA_FILTER_REPLY_FLAGS: u16 = 2;
/// The kernel's `CTA_FILTER_F_CTA_IP_SRC`: match the tuple's source
/// address.
const FILTER_IP_SRC: u32 = 1;
const NLA_F_NESTED: u16 = 1 << 15;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_DUMP: u16 = 0x300;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const AF_INET: u8 = libc::AF_INET as u8;

/// Deletes the flows whose answers come from the container at `address`
/// (connections to it, through its published ports too), but closed TCP
/// ones ([`flow`]). How many there were.
pub fn forget(address: Ipv4Addr) -> std::io::Result<usize> {
    let sock = open()?;
    let flows = dump(&sock, address)?;
    // Without acknowledgements: no round trip per flow. A flow gone
    // meanwhile (its timeout, a reopen) only queues an ENOENT that nobody
    // reads.
    for (seq, flow) in (1u32..).zip(&flows) {
        let msg = message(IPCTNL_MSG_CT_DELETE, NLM_F_REQUEST, seq, flow);
        send(sock.as_raw_fd(), &msg, MsgFlags::empty())?;
    }
    Ok(flows.len())
}

fn open() -> std::io::Result<OwnedFd> {
    let sock = socket(AddressFamily::Netlink, SockType::Raw, SockFlag::SOCK_CLOEXEC, SockProtocol::NetlinkNetFilter)?;
    bind(sock.as_raw_fd(), &NetlinkAddr::new(0, 0))?;
    // A dump that never ends must not hold up the container's stop.
    setsockopt(&sock, sockopt::ReceiveTimeout, &TimeVal::new(5, 0))?;
    Ok(sock)
}

/// The flows answered from `address` (their reply tuple's source), each
/// as the attributes that delete it ([`flow`]).
fn dump(sock: &OwnedFd, address: Ipv4Addr) -> std::io::Result<Vec<Vec<u8>>> {
    let msg = message(IPCTNL_MSG_CT_GET, NLM_F_REQUEST | NLM_F_DUMP, 0, &dump_filter(address));
    send(sock.as_raw_fd(), &msg, MsgFlags::empty())?;
    let mut flows = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = recv(sock.as_raw_fd(), &mut buf, MsgFlags::empty())?;
        for (kind, body) in messages(&buf[..n]) {
            match kind {
                NLMSG_DONE => return Ok(flows),
                NLMSG_ERROR => match error_code(body) {
                    0 => return Ok(flows),
                    e => return Err(std::io::Error::from_raw_os_error(-e)),
                },
                // A flow: nfgenmsg (4 bytes), then its attributes.
                _ => flows.extend(body.get(4..).and_then(flow)),
            }
        }
    }
}

/// What deletes the flow whose attributes are `attrs` and nothing else:
/// its original tuple and its ID, whole as the kernel sent them. None for
/// a closed TCP flow (TIME_WAIT, CLOSE): a SYN on its tuple already makes
/// the kernel drop it and look the connection up anew, and a delete racing
/// that reopen makes the kernel drop the SYN.
fn flow(attrs: &[u8]) -> Option<Vec<u8>> {
    if matches!(tcp_state(attrs), Some(TCP_TIME_WAIT | TCP_CLOSE)) {
        return None;
    }
    let mut out = attribute(attrs, CTA_TUPLE_ORIG)?.to_vec();
    out.extend(attribute(attrs, CTA_ID)?);
    Some(out)
}

/// The TCP state of a flow (`CTA_PROTOINFO` / `CTA_PROTOINFO_TCP` /
/// `CTA_PROTOINFO_TCP_STATE`), if it is TCP.
fn tcp_state(attrs: &[u8]) -> Option<u8> {
    let info = attribute(attrs, CTA_PROTOINFO)?;
    let tcp = attribute(info.get(4..)?, CTA_PROTOINFO_TCP)?;
    attribute(tcp.get(4..)?, CTA_PROTOINFO_TCP_STATE)?.get(4).copied()
}

/// The attributes that ask for the flows whose reply tuple has the source
/// `address`.
fn dump_filter(address: Ipv4Addr) -> Vec<u8> {
    let ip = attr(CTA_IP_V4_SRC, &address.octets());
    let tuple = attr(CTA_TUPLE_REPLY | NLA_F_NESTED, &attr(CTA_TUPLE_IP | NLA_F_NESTED, &ip));
    let mut flags = attr(CTA_FILTER_ORIG_FLAGS, &0u32.to_ne_bytes());
    flags.extend(attr(CTA_FILTER_REPLY_FLAGS, &FILTER_IP_SRC.to_ne_bytes()));
    let mut out = tuple;
    out.extend(attr(CTA_FILTER | NLA_F_NESTED, &flags));
    out
}

/// A ctnetlink message of `kind` for IPv4: the netlink header, nfgenmsg,
/// and `attrs`.
fn message(kind: u16, flags: u16, seq: u32, attrs: &[u8]) -> Vec<u8> {
    let len = 16 + 4 + attrs.len();
    let mut out = Vec::with_capacity(len);
    out.extend((len as u32).to_ne_bytes());
    out.extend(((NFNL_SUBSYS_CTNETLINK << 8) | kind).to_ne_bytes());
    out.extend(flags.to_ne_bytes());
    out.extend(seq.to_ne_bytes());
    out.extend(0u32.to_ne_bytes());
    // nfgenmsg: family, version (NFNETLINK_V0), resource id (big endian).
    out.extend([AF_INET, 0, 0, 0]);
    out.extend(attrs);
    out
}

/// One netlink attribute, padded to 4 bytes.
fn attr(kind: u16, payload: &[u8]) -> Vec<u8> {
    let len = 4 + payload.len();
    let mut out = Vec::with_capacity(len.next_multiple_of(4));
    out.extend((len as u16).to_ne_bytes());
    out.extend(kind.to_ne_bytes());
    out.extend(payload);
    out.resize(len.next_multiple_of(4), 0);
    out
}

/// The netlink messages in a datagram: each one's type and what follows
/// its header. A truncated or malformed one ends the list.
fn messages(mut buf: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    std::iter::from_fn(move || {
        let len = u32::from_ne_bytes(buf.get(..4)?.try_into().ok()?) as usize;
        let kind = u16::from_ne_bytes(buf.get(4..6)?.try_into().ok()?);
        let body = buf.get(16..len)?;
        buf = buf.get(len.next_multiple_of(4)..).unwrap_or_default();
        Some((kind, body))
    })
}

/// The attribute `kind` among `attrs`, whole (header and padding
/// included): it goes back to the kernel as it came.
fn attribute(mut attrs: &[u8], kind: u16) -> Option<&[u8]> {
    while attrs.len() >= 4 {
        let len = u16::from_ne_bytes(attrs[..2].try_into().ok()?) as usize;
        let this = u16::from_ne_bytes(attrs[2..4].try_into().ok()?) & !NLA_F_NESTED;
        if len < 4 || len > attrs.len() {
            return None;
        }
        let whole = &attrs[..len.next_multiple_of(4).min(attrs.len())];
        if this == kind {
            return Some(whole);
        }
        attrs = &attrs[whole.len()..];
    }
    None
}

/// The errno of an NLMSG_ERROR's body (0: an acknowledgement).
fn error_code(body: &[u8]) -> i32 {
    body.get(..4).and_then(|b| b.try_into().ok()).map(i32::from_ne_bytes).unwrap_or(-libc::EPROTO)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dump_asks_for_the_flows_answered_from_one_address() {
        let f = dump_filter(Ipv4Addr::new(10, 213, 0, 7));
        // CTA_TUPLE_REPLY { CTA_TUPLE_IP { CTA_IP_V4_SRC 10.213.0.7 } }
        assert_eq!(&f[..4], [16, 0, 2, 0x80]);
        assert_eq!(&f[4..8], [12, 0, 1, 0x80]);
        assert_eq!(&f[8..16], [8, 0, 1, 0, 10, 213, 0, 7]);
        // CTA_FILTER { ORIG_FLAGS 0, REPLY_FLAGS IP_SRC }
        assert_eq!(&f[16..20], [20, 0, 25, 0x80]);
        assert_eq!(&f[20..28], [8, 0, 1, 0, 0, 0, 0, 0]);
        assert_eq!(&f[28..36], [8, 0, 2, 0, 1, 0, 0, 0]);
        assert_eq!(f.len(), 36);
    }

    #[test]
    fn a_message_has_the_ctnetlink_header_and_its_length() {
        let m = message(IPCTNL_MSG_CT_DELETE, NLM_F_REQUEST, 7, &[1, 2, 3, 4]);
        assert_eq!(m.len(), 24);
        assert_eq!(u32::from_ne_bytes(m[..4].try_into().unwrap()), 24);
        assert_eq!(u16::from_ne_bytes(m[4..6].try_into().unwrap()), 0x102);
        assert_eq!(u16::from_ne_bytes(m[6..8].try_into().unwrap()), 1);
        assert_eq!(u32::from_ne_bytes(m[8..12].try_into().unwrap()), 7);
        assert_eq!(&m[16..], [2, 0, 0, 0, 1, 2, 3, 4]);
    }

    #[test]
    fn a_flows_original_tuple_is_found_whole_and_bad_lengths_end_the_search() {
        let orig = attr(CTA_TUPLE_ORIG | NLA_F_NESTED, &attr(CTA_TUPLE_IP | NLA_F_NESTED, &[10, 0, 0, 1, 9]));
        let mut attrs = attr(7, &[1, 2, 3]);
        attrs.extend(&orig);
        assert_eq!(attribute(&attrs, CTA_TUPLE_ORIG), Some(&orig[..]));
        // No ID, no delete: by its tuple alone, a live flow reopened on
        // the same tuple would go instead.
        assert_eq!(flow(&attrs), None);
        let id = attr(CTA_ID, &77u32.to_be_bytes());
        attrs.extend(&id);
        assert_eq!(flow(&attrs), Some([orig.clone(), id.clone()].concat()));
        // A closed TCP flow is the kernel's to reopen: left alone.
        let state = |s: u8| {
            let tcp = attr(CTA_PROTOINFO_TCP | NLA_F_NESTED, &attr(CTA_PROTOINFO_TCP_STATE, &[s]));
            attr(CTA_PROTOINFO | NLA_F_NESTED, &tcp)
        };
        for (s, deleted) in [(1, true), (3, true), (TCP_TIME_WAIT, false), (TCP_CLOSE, false)] {
            let with = [attrs.clone(), state(s)].concat();
            assert_eq!(flow(&with).is_some(), deleted, "state {s}");
        }
        assert_eq!(attribute(&attrs, CTA_TUPLE_REPLY), None);
        assert_eq!(attribute(&[255, 0, 1, 0], CTA_TUPLE_ORIG), None);
        assert_eq!(attribute(&[2, 0, 1, 0, 0, 0], CTA_TUPLE_ORIG), None);
        let two = [message(0, 0, 1, &attrs), message(NLMSG_DONE, 0, 2, &[])].concat();
        let kinds: Vec<u16> = messages(&two).map(|(k, _)| k).collect();
        assert_eq!(kinds, [0x100, 0x103]);
        assert_eq!(messages(&two[..10]).count(), 0);
    }
}
