//! The container's network setup from inside it, before its program runs:
//! `lo` up, and the address and default route of its end of a veth pair
//! (IPv4 only).

use std::os::fd::OwnedFd;

use super::init::Result;
use super::init_error::InitError;

/// Brings up `lo` in the container's new network namespace.
pub(crate) fn loopback_up() -> Result<()> {
    // SAFETY: plain socket(2) and ioctl(2) calls on a zeroed ifreq that we
    // own and whose name we fill in.
    unsafe {
        let sock = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if sock < 0 {
            return Err(InitError::last_os("bring up lo: socket"));
        }
        let mut req: libc::ifreq = std::mem::zeroed();
        req.ifr_name[0] = b'l' as libc::c_char;
        req.ifr_name[1] = b'o' as libc::c_char;
        let ok = libc::ioctl(sock, libc::SIOCGIFFLAGS, &mut req) == 0 && {
            req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
            libc::ioctl(sock, libc::SIOCSIFFLAGS, &req) == 0
        };
        let e = std::io::Error::last_os_error();
        libc::close(sock);
        if ok { Ok(()) } else { Err(InitError::io("bring up lo", &e)) }
    }
}

fn sockaddr_in(ip: std::net::Ipv4Addr) -> libc::sockaddr {
    let sin = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: 0,
        sin_addr: libc::in_addr { s_addr: u32::from(ip).to_be() },
        sin_zero: [0; 8],
    };
    // SAFETY: sockaddr_in and sockaddr have the same size; the kernel reads
    // the family to know which it is.
    unsafe { std::mem::transmute::<libc::sockaddr_in, libc::sockaddr>(sin) }
}

/// The container's end of its veth pair (already in our namespace, down):
/// its address, up, and the default route through the bridge. ioctls, not
/// netlink: a few calls, no socket protocol to speak.
pub(super) fn configure_interface(net: &crate::runtime::network::NetPlan) -> Result<()> {
    let fail = |what: &str| InitError::last_os(format!("{what} on {}", net.interface));
    let name = net.interface.as_bytes();
    if name.len() >= libc::IFNAMSIZ {
        return Err(InitError::InterfaceName(net.interface.clone()));
    }
    // The bridge network is IPv4 only: no IPv6 on the interface, set while
    // it is down, so that it never sends (duplicate address detection,
    // router and multicast listener messages, which the bridge floods to
    // every container) and drops what others send at once. `lo` keeps ::1.
    // A kernel without IPv6 has no such file.
    let sysctl = format!("/proc/sys/net/ipv6/conf/{}/disable_ipv6", net.interface);
    match std::fs::write(&sysctl, "1") {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(InitError::io(format!("disable IPv6 on {}", net.interface), &e));
        }
        _ => {}
    }
    // SAFETY: plain socket(2) and ioctl(2) calls on zeroed structures we
    // own, whose fields we fill in; results are checked.
    unsafe {
        let sock = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if sock < 0 {
            return Err(fail("socket"));
        }
        let sock = <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(sock);
        let fd = std::os::fd::AsRawFd::as_raw_fd(&sock);
        let mut req: libc::ifreq = std::mem::zeroed();
        for (i, b) in name.iter().enumerate() {
            req.ifr_name[i] = *b as libc::c_char;
        }
        req.ifr_ifru.ifru_addr = sockaddr_in(net.address);
        if libc::ioctl(fd, libc::SIOCSIFADDR, &req) != 0 {
            return Err(fail("set the address"));
        }
        let mask = std::net::Ipv4Addr::from(crate::runtime::network::ipam::mask(net.prefix));
        req.ifr_ifru.ifru_netmask = sockaddr_in(mask);
        if libc::ioctl(fd, libc::SIOCSIFNETMASK, &req) != 0 {
            return Err(fail("set the netmask"));
        }
        if libc::ioctl(fd, libc::SIOCGIFFLAGS, &mut req) != 0 {
            return Err(fail("read the flags"));
        }
        req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
        if libc::ioctl(fd, libc::SIOCSIFFLAGS, &req) != 0 {
            return Err(fail("bring up"));
        }
        let mut route: libc::rtentry = std::mem::zeroed();
        route.rt_dst = sockaddr_in(std::net::Ipv4Addr::UNSPECIFIED);
        route.rt_genmask = sockaddr_in(std::net::Ipv4Addr::UNSPECIFIED);
        route.rt_gateway = sockaddr_in(net.gateway);
        route.rt_flags = libc::RTF_UP | libc::RTF_GATEWAY;
        if libc::ioctl(fd, libc::SIOCADDRT, &route) != 0 {
            return Err(fail("add the default route"));
        }
    }
    Ok(())
}
