//! What the container's first process does between `clone` and `execve`:
//! mounts, device nodes, `pivot_root`, masked and read-only paths, host
//! name, limits, user, capabilities, `no_new_privs`, then the program.
//!
//! Every path inside the root filesystem is resolved with `openat2(2)` and
//! `RESOLVE_IN_ROOT`, so a symbolic link in the image resolves inside the
//! container's root, never to the host's files; mounts then target the
//! resolved directory through `/proc/self/fd/N`.

use std::ffi::CString;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{OFlag, OpenHow, ResolveFlag, openat, openat2};
use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::sys::stat::{Mode, SFlag, makedev, mkdirat, mknodat};
use nix::unistd::{Gid, Uid, chdir, pivot_root, sethostname, setresgid, setresuid};

use super::gate::Gate;
use super::init_error::InitError;
use super::plan::{MountPlan, Plan, ProcessPlan};

pub(super) type Result<T> = std::result::Result<T, InitError>;

pub(super) fn err(what: impl std::fmt::Display) -> impl FnOnce(Errno) -> InitError {
    move |e| InitError::Sys { op: what.to_string(), errno: e as i32 }
}

/// Runs the container's setup and execs its program; returns only with the
/// reason it could not.
pub(crate) fn run(plan: &Plan, go: OwnedFd, gate: Option<Gate>, console: Option<OwnedFd>) -> InitError {
    match setup(plan, go, gate, console) {
        Ok(never) => match never {},
        Err(e) => e,
    }
}

pub(crate) enum Never {}

fn setup(plan: &Plan, go: OwnedFd, gate: Option<Gate>, console: Option<OwnedFd>) -> Result<Never> {
    // Wait until the parent has put us in our cgroup (and networking).
    let mut byte = [0u8; 1];
    match nix::unistd::read(go.as_fd(), &mut byte) {
        Ok(1) => {}
        _ => return Err(InitError::Abandoned),
    }
    drop(go);
    // Docker's (runc's) umask for the container, not the daemon's 0077:
    // the device nodes and mount points made below, and the service's files.
    nix::sys::stat::umask(Mode::from_bits_truncate(0o022));
    if let Some(path) = &plan.join_network {
        // Opened before the root changes: the path is the host's.
        let fd = nix::fcntl::open(path, OFlag::O_RDONLY | OFlag::O_CLOEXEC, Mode::empty())
            .map_err(err(format!("open {}", path.display())))?;
        nix::sched::setns(fd, nix::sched::CloneFlags::CLONE_NEWNET)
            .map_err(err(format!("join the network namespace {}", path.display())))?;
    }
    if plan.cgroup_namespace {
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWCGROUP).map_err(err("unshare the cgroup namespace"))?;
    }
    if plan.new_session {
        nix::unistd::setsid().map_err(err("setsid"))?;
    }
    // Nothing mounted here may propagate back to the host.
    mount(None::<&str>, "/", None::<&str>, MsFlags::MS_REC | MsFlags::MS_PRIVATE, None::<&str>)
        .map_err(err("make mounts private"))?;
    match &plan.overlay {
        Some(o) => mount_overlay(&plan.rootfs, o)?,
        // pivot_root needs the new root to be a mount point.
        None => mount(Some(&plan.rootfs), &plan.rootfs, None::<&str>, MsFlags::MS_BIND | MsFlags::MS_REC, None::<&str>)
            .map_err(err(format!("bind the root filesystem {}", plan.rootfs.display())))?,
    }
    if plan.clone_flags.contains(nix::sched::CloneFlags::CLONE_NEWNET) {
        loopback_up()?;
        if let Some(net) = &plan.network {
            configure_interface(net)?;
        }
    }
    let root = openat(
        nix::fcntl::AT_FDCWD,
        &plan.rootfs,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(err(format!("open {}", plan.rootfs.display())))?;

    let mut dev_is_tmpfs = false;
    for m in &plan.mounts {
        mount_one(root.as_fd(), m)?;
        dev_is_tmpfs |= m.destination == "/dev" && m.kind == "tmpfs";
    }
    if dev_is_tmpfs {
        make_dev(root.as_fd(), plan)?;
    }

    chdir(&plan.rootfs).map_err(err("chdir to the root filesystem"))?;
    // pivot_root(".", "."): the old root ends up on top of the new one and
    // is detached at once, so nothing of the host stays reachable.
    pivot_root(".", ".").map_err(err("pivot_root"))?;
    umount2(".", MntFlags::MNT_DETACH).map_err(err("detach the old root"))?;
    chdir("/").map_err(err("chdir /"))?;

    for (name, value) in &plan.sysctls {
        let path = format!("/proc/sys/{}", name.replace('.', "/"));
        std::fs::write(&path, value).map_err(|e| InitError::io(format!("sysctl {name}"), &e))?;
    }
    for p in &plan.masked {
        mask(p)?;
    }
    for p in &plan.readonly {
        make_readonly(p)?;
    }
    if plan.readonly_root {
        mount(
            None::<&str>,
            "/",
            None::<&str>,
            MsFlags::MS_REMOUNT | MsFlags::MS_BIND | MsFlags::MS_RDONLY,
            None::<&str>,
        )
        .map_err(err("make the root read-only"))?;
    }
    if let Some(h) = &plan.hostname {
        sethostname(h).map_err(err("sethostname"))?;
    }
    for (resource, soft, hard) in &plan.rlimits {
        let lim = libc::rlimit { rlim_cur: *soft, rlim_max: *hard };
        // SAFETY: setrlimit reads one rlimit struct we own.
        if unsafe { libc::setrlimit(*resource as _, &lim) } != 0 {
            return Err(InitError::last_os(format!("setrlimit {resource}")));
        }
    }
    if let (Some(socket), Some(size)) = (console, plan.terminal) {
        super::console::attach(socket, size, plan.process.uid)?;
    }
    let never = process(&plan.process, gate)?;
    match never {}
}

/// Becomes the process `p` describes: user and capabilities, working
/// directory, no_new_privs and seccomp, then `execve`. The container's
/// first process ends its setup here (with a `gate`, waiting there for
/// `start`), and `exec` runs only this.
pub(crate) fn process(p: &ProcessPlan, gate: Option<Gate>) -> Result<Never> {
    // An exec'd process too gets the container's umask, not the daemon's.
    nix::sys::stat::umask(Mode::from_bits_truncate(0o022));
    // Our runtime ignores SIGPIPE, and an ignored signal stays ignored
    // across execve: the program must die of a closed pipe as it would
    // anywhere else (exec relays its output through pipes).
    // SAFETY: SIG_DFL installs no handler; nothing in this process relies
    // on SIGPIPE being ignored between here and execve.
    unsafe { nix::sys::signal::signal(nix::sys::signal::Signal::SIGPIPE, nix::sys::signal::SigHandler::SigDfl) }
        .map_err(err("reset SIGPIPE"))?;
    // Installing a filter needs no_new_privs or CAP_SYS_ADMIN: without
    // no_new_privs it goes in while we are still privileged (it allows what
    // the rest of the setup calls), else last.
    let filter: Option<Vec<libc::sock_filter>> =
        p.seccomp.as_ref().map(|f| f.iter().map(|&(code, jt, jf, k)| libc::sock_filter { code, jt, jf, k }).collect());
    if let (Some(f), false) = (&filter, p.no_new_privileges) {
        crate::runtime::seccomp::install(f).map_err(|e| InitError::Seccomp { message: e.to_string() })?;
    }
    set_user_and_caps(p)?;
    chdir(p.cwd.as_str()).map_err(err(format!("chdir to the working directory {:?}", p.cwd)))?;
    if let Some(gate) = gate {
        gate.wait()?;
    }
    if p.no_new_privileges {
        nix::sys::prctl::set_no_new_privs().map_err(err("set no_new_privs"))?;
        if let Some(f) = &filter {
            crate::runtime::seccomp::install(f).map_err(|e| InitError::Seccomp { message: e.to_string() })?;
        }
    }
    exec(p)
}

/// Mounts the image's layers and the container's writable layer. Each layer
/// is named as `/proc/self/fd/N` of a descriptor opened here, so that even
/// a long list fits in the one page of mount options.
fn mount_overlay(target: &Path, o: &super::plan::OverlayPlan) -> Result<()> {
    let mut fds = Vec::new();
    for layer in o.layers.iter().rev() {
        let fd =
            openat(nix::fcntl::AT_FDCWD, layer, OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty())
                .map_err(err(format!("open layer {}", layer.display())))?;
        fds.push(fd);
    }
    let lower: Vec<String> = fds.iter().map(|fd| fd_path(fd).to_string_lossy().into_owned()).collect();
    // A single layer still needs an overlay: the writable layer goes on top.
    let data = format!("lowerdir={},upperdir={},workdir={}", lower.join(":"), o.upper.display(), o.work.display());
    if data.len() >= 4096 {
        return Err(InitError::TooManyLayers(o.layers.len()));
    }
    mount(Some("overlay"), target, Some("overlay"), MsFlags::empty(), Some(data.as_str()))
        .map_err(err(format!("mount the overlay root filesystem on {}", target.display())))
}

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
fn configure_interface(net: &crate::runtime::network::NetPlan) -> Result<()> {
    let fail = |what: &str| InitError::last_os(format!("{what} on {}", net.interface));
    let name = net.interface.as_bytes();
    if name.len() >= libc::IFNAMSIZ {
        return Err(InitError::InterfaceName(net.interface.clone()));
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

/// Opens (making directories, and the last component as a file when
/// `file`) `path` inside the root, with links resolved inside the root.
/// Each prefix of the path is resolved from the root, as a path in the
/// container is: a link met partway, absolute (`/var/run -> /run`) or
/// relative, leads where it leads in the container, never out of it.
pub(super) fn open_in_root(root: BorrowedFd<'_>, path: &str, file: bool) -> Result<OwnedFd> {
    let how = |flags: OFlag| OpenHow::new().flags(flags | OFlag::O_CLOEXEC).resolve(ResolveFlag::RESOLVE_IN_ROOT);
    let comps: Vec<&str> = path.split('/').filter(|c| !c.is_empty() && *c != ".").collect();
    let mut cur = openat2(root, ".", how(OFlag::O_PATH | OFlag::O_DIRECTORY)).map_err(err("open the root"))?;
    for (i, c) in comps.iter().enumerate() {
        let last = i + 1 == comps.len();
        let prefix = comps[..=i].join("/");
        let next = openat2(root, prefix.as_str(), how(OFlag::O_PATH));
        // What is missing is made in `cur`, the resolved parent; never
        // through a link (O_EXCL, O_NOFOLLOW; mkdir makes no link's target).
        cur = match next {
            Ok(fd) => fd,
            Err(Errno::ENOENT) if last && file => {
                let flags = OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_WRONLY;
                let fd = openat2(cur.as_fd(), *c, how(flags).mode(Mode::from_bits_truncate(0o644)))
                    .map_err(err(format!("create {path}")))?;
                drop(fd);
                openat2(cur.as_fd(), *c, how(OFlag::O_PATH | OFlag::O_NOFOLLOW)).map_err(err(format!("open {path}")))?
            }
            Err(Errno::ENOENT) => {
                mkdirat(cur.as_fd(), *c, Mode::from_bits_truncate(0o755)).map_err(err(format!("mkdir {path}")))?;
                openat2(cur.as_fd(), *c, how(OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW))
                    .map_err(err(format!("open {path}")))?
            }
            Err(e) => return Err(err(format!("open {path} in the root filesystem"))(e)),
        };
    }
    Ok(cur)
}

pub(super) fn fd_path(fd: &OwnedFd) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

fn mount_one(root: BorrowedFd<'_>, m: &MountPlan) -> Result<()> {
    let is_file = m.bind && std::fs::metadata(&m.source).map(|md| !md.is_dir()).unwrap_or(false);
    if m.bind && !Path::new(&m.source).exists() {
        return Err(InitError::NoMountSource { destination: m.destination.clone(), path: m.source.clone() });
    }
    let target = open_in_root(root, &m.destination, is_file)?;
    let at = fd_path(&target);
    let what = format!("mount {} on {}", m.kind, m.destination);
    if m.kind == "cgroup" || m.kind == "cgroup2" {
        return super::cgroup_mounts::mount_cgroups(root, &at, m);
    }
    let data = (!m.data.is_empty()).then_some(m.data.as_str());
    if m.bind {
        mount(Some(m.source.as_str()), &at, None::<&str>, m.flags & (MsFlags::MS_BIND | MsFlags::MS_REC), None::<&str>)
            .map_err(err(&what))?;
    } else {
        mount(Some(m.source.as_str()), &at, Some(m.kind.as_str()), m.flags, data).map_err(err(&what))?;
    }
    // The descriptor still names the directory under the new mount: what
    // follows applies to the mount, so resolve the destination again.
    let extra = m.flags & !(MsFlags::MS_BIND | MsFlags::MS_REC);
    if (m.bind && !extra.is_empty()) || !m.propagation.is_empty() {
        let mounted = open_in_root(root, &m.destination, is_file)?;
        let at = fd_path(&mounted);
        if m.bind && !extra.is_empty() {
            // Bind mounts take flags like ro only on a remount.
            mount(None::<&str>, &at, None::<&str>, MsFlags::MS_REMOUNT | MsFlags::MS_BIND | extra, None::<&str>)
                .map_err(err(format!("{what} (remount)")))?;
            if m.flags.contains(MsFlags::MS_REC) {
                // The remount changed the top mount only: the mounts
                // below it (a tmpfs mounted in a read-only volume) get
                // the same flags, where the kernel can (Linux 5.12+).
                set_attributes_recursively(&mounted, extra).map_err(err(format!("{what} (recursively)")))?;
            }
        }
        if !m.propagation.is_empty() {
            mount(None::<&str>, &at, None::<&str>, m.propagation, None::<&str>)
                .map_err(err(format!("{what} (propagation)")))?;
        }
    }
    Ok(())
}

/// `struct mount_attr` of mount_setattr(2) (linux/mount.h).
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

const MOUNT_ATTR_RDONLY: u64 = 0x1;
const MOUNT_ATTR_NOSUID: u64 = 0x2;
const MOUNT_ATTR_NODEV: u64 = 0x4;
const MOUNT_ATTR_NOEXEC: u64 = 0x8;
const AT_RECURSIVE: libc::c_uint = 0x8000;

/// The mount_setattr(2) attributes of mount flags (the ones it can set).
fn mount_attributes(flags: MsFlags) -> u64 {
    [
        (MsFlags::MS_RDONLY, MOUNT_ATTR_RDONLY),
        (MsFlags::MS_NOSUID, MOUNT_ATTR_NOSUID),
        (MsFlags::MS_NODEV, MOUNT_ATTR_NODEV),
        (MsFlags::MS_NOEXEC, MOUNT_ATTR_NOEXEC),
    ]
    .into_iter()
    .filter(|(f, _)| flags.contains(*f))
    .fold(0, |acc, (_, a)| acc | a)
}

fn mount_setattr(fd: libc::c_int, flags: libc::c_uint, attr: Option<&MountAttr>) -> std::result::Result<(), Errno> {
    let (ptr, size) = match attr {
        Some(a) => (a as *const MountAttr, std::mem::size_of::<MountAttr>()),
        None => (std::ptr::null(), 0),
    };
    // SAFETY: mount_setattr(2) reads `size` bytes at `ptr` (a MountAttr we
    // own, or null with size 0) and the empty path; `fd` is ours.
    let rc = unsafe { libc::syscall(libc::SYS_mount_setattr, fd, c"".as_ptr(), flags, ptr, size) };
    if rc == 0 { Ok(()) } else { Err(Errno::last()) }
}

/// Sets `flags` (ro, nosuid, nodev, noexec) on the mount `fd` names and on
/// every mount below it. Without mount_setattr (Linux before 5.12) the top
/// mount keeps them alone, as before; [`recursive_readonly`] tells.
fn set_attributes_recursively(fd: &OwnedFd, flags: MsFlags) -> std::result::Result<(), Errno> {
    let attr = MountAttr { attr_set: mount_attributes(flags), attr_clr: 0, propagation: 0, userns_fd: 0 };
    if attr.attr_set == 0 {
        return Ok(());
    }
    match mount_setattr(fd.as_raw_fd(), libc::AT_EMPTY_PATH as libc::c_uint | AT_RECURSIVE, Some(&attr)) {
        Err(Errno::ENOSYS) => Ok(()),
        other => other,
    }
}

/// Whether the kernel makes read-only volumes read-only recursively
/// (it has mount_setattr(2)).
pub fn recursive_readonly() -> bool {
    // An invalid descriptor: EBADF (or EINVAL) where the call exists.
    mount_setattr(-1, 0, None) != Err(Errno::ENOSYS)
}

/// The default and requested device nodes, and the standard links.
fn make_dev(root: BorrowedFd<'_>, plan: &Plan) -> Result<()> {
    let dev = open_in_root(root, "/dev", false)?;
    let dev = openat(dev.as_fd(), ".", OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty())
        .map_err(err("open /dev"))?;
    for d in &plan.devices {
        let rel = d.path.strip_prefix("/dev/").ok_or_else(|| InitError::DeviceOutsideDev(d.path.clone()))?;
        if let Some((parent, _)) = rel.rsplit_once('/') {
            open_in_root(root, &format!("/dev/{parent}"), false)?;
        }
        let kind = if d.kind == 'b' { SFlag::S_IFBLK } else { SFlag::S_IFCHR };
        mknodat(dev.as_fd(), rel, kind, Mode::from_bits_truncate(d.mode & 0o777), makedev(d.major, d.minor))
            .map_err(err(format!("mknod {}", d.path)))?;
        nix::sys::stat::fchmodat(
            dev.as_fd(),
            rel,
            Mode::from_bits_truncate(d.mode & 0o7777),
            nix::sys::stat::FchmodatFlags::FollowSymlink,
        )
        .map_err(err(format!("chmod {}", d.path)))?;
        nix::unistd::fchownat(
            dev.as_fd(),
            rel,
            Some(Uid::from_raw(d.uid)),
            Some(Gid::from_raw(d.gid)),
            nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
        )
        .map_err(err(format!("chown {}", d.path)))?;
    }
    for (link, target) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
        ("ptmx", "pts/ptmx"),
        ("core", "/proc/kcore"),
    ] {
        match nix::unistd::symlinkat(target, dev.as_fd(), link) {
            Ok(()) | Err(Errno::EEXIST) => {}
            Err(e) => return Err(err(format!("symlink /dev/{link}"))(e)),
        }
    }
    Ok(())
}

/// Hides `path`: /dev/null over a file, an empty read-only tmpfs over a
/// directory.
fn mask(path: &str) -> Result<()> {
    match std::fs::symlink_metadata(path) {
        Err(_) => Ok(()),
        Ok(md) if md.is_dir() => mount(Some("tmpfs"), path, Some("tmpfs"), MsFlags::MS_RDONLY, Some("size=0"))
            .map_err(err(format!("mask {path}"))),
        Ok(_) => mount(Some("/dev/null"), path, None::<&str>, MsFlags::MS_BIND, None::<&str>)
            .map_err(err(format!("mask {path}"))),
    }
}

fn make_readonly(path: &str) -> Result<()> {
    if std::fs::symlink_metadata(path).is_err() {
        return Ok(());
    }
    mount(Some(path), path, None::<&str>, MsFlags::MS_BIND | MsFlags::MS_REC, None::<&str>)
        .map_err(err(format!("bind {path}")))?;
    mount(
        None::<&str>,
        path,
        None::<&str>,
        MsFlags::MS_REMOUNT | MsFlags::MS_BIND | MsFlags::MS_RDONLY | MsFlags::MS_REC,
        None::<&str>,
    )
    .map_err(err(format!("make {path} read-only")))
}

/// Drops the bounding set (which needs CAP_SETPCAP, so first), switches to
/// the container's user keeping capabilities across the switch, then sets
/// the other capability sets.
fn set_user_and_caps(plan: &ProcessPlan) -> Result<()> {
    use caps::CapSet;
    let to_set = |v: &[caps::Capability]| v.iter().copied().collect::<caps::CapsHashSet>();
    if let Some(c) = &plan.caps {
        let keep = to_set(&c.bounding);
        for cap in caps::all() {
            if !keep.contains(&cap) {
                caps::drop(None, CapSet::Bounding, cap)
                    .map_err(InitError::caps(format!("drop {cap} from the bounding set")))?;
            }
        }
    }
    nix::sys::prctl::set_keepcaps(true).map_err(err("keep capabilities"))?;
    nix::unistd::setgroups(&plan.additional_gids.iter().map(|g| Gid::from_raw(*g)).collect::<Vec<_>>())
        .map_err(err("setgroups"))?;
    let (uid, gid) = (Uid::from_raw(plan.uid), Gid::from_raw(plan.gid));
    setresgid(gid, gid, gid).map_err(err(format!("setgid {}", plan.gid)))?;
    setresuid(uid, uid, uid).map_err(err(format!("setuid {}", plan.uid)))?;
    nix::sys::prctl::set_keepcaps(false).map_err(err("stop keeping capabilities"))?;
    if let Some(c) = &plan.caps {
        // Effective first (a subset of what is permitted now), permitted last.
        caps::set(None, CapSet::Effective, &to_set(&c.effective))
            .map_err(InitError::caps("set effective capabilities"))?;
        caps::set(None, CapSet::Inheritable, &to_set(&c.inheritable))
            .map_err(InitError::caps("set inheritable capabilities"))?;
        caps::set(None, CapSet::Permitted, &to_set(&c.permitted))
            .map_err(InitError::caps("set permitted capabilities"))?;
        caps::clear(None, CapSet::Ambient).map_err(InitError::caps("clear ambient capabilities"))?;
        // The kernel keeps ambient within permitted and inheritable; a spec
        // asking for more (crun's own default spec does) gets what the
        // kernel allows, as crun and runc give it.
        for cap in c.ambient.iter().filter(|cap| c.inheritable.contains(cap) && c.permitted.contains(cap)) {
            caps::raise(None, CapSet::Ambient, *cap).map_err(InitError::caps(format!("raise ambient {cap}")))?;
        }
    } else if plan.uid != 0 {
        caps::clear(None, CapSet::Effective).map_err(InitError::caps("clear capabilities"))?;
    }
    Ok(())
}

/// Finds the program on the container's PATH and executes it.
fn exec(plan: &ProcessPlan) -> Result<Never> {
    let program = &plan.args[0];
    let path = if program.contains('/') {
        PathBuf::from(program)
    } else {
        let search = plan
            .env
            .iter()
            .find_map(|e| e.strip_prefix("PATH="))
            .unwrap_or("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
        search
            .split(':')
            .map(|dir| Path::new(dir).join(program))
            .find(|p| std::fs::metadata(p).is_ok_and(|m| m.is_file()))
            .ok_or_else(|| InitError::NotOnPath { program: program.clone(), search: search.to_string() })?
    };
    let c = |s: &str| CString::new(s).map_err(|_| InitError::NulByte { program: program.clone() });
    let args: Vec<CString> = plan.args.iter().map(|a| c(a)).collect::<Result<_>>()?;
    let env: Vec<CString> = plan.env.iter().map(|a| c(a)).collect::<Result<_>>()?;
    let file = c(&path.to_string_lossy())?;
    // Every descriptor but stdio and those preserved closes on exec (the
    // error pipe already does).
    let first = 3u32.saturating_add(plan.preserve_fds);
    // SAFETY: close_range(2) with integer arguments only changes flags of
    // our own descriptors; nothing in this process uses them after exec.
    unsafe { libc::syscall(libc::SYS_close_range, first, u32::MAX, libc::CLOSE_RANGE_CLOEXEC) };
    let e = nix::unistd::execve(&file, &args, &env).unwrap_err();
    Err(InitError::Exec { program: program.clone(), errno: e as i32 })
}
