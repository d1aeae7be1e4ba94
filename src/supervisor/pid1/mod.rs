//! What an init must do that a service need not: the basic filesystems,
//! loopback, the hostname, a console for our log, and the way out
//! (stop everything, sync, unmount, `reboot(2)`).

use std::path::Path;

use nix::mount::{MntFlags, MsFlags, mount, umount2};

use super::control::Power;

pub mod data_disk;
pub mod modules;
pub mod power_button;
pub mod serial;

pub fn is_pid1() -> bool {
    std::process::id() == 1
}

/// Whether `path` is a mount point (by /proc/self/mountinfo).
fn mounted(path: &str) -> bool {
    std::fs::read_to_string("/proc/self/mountinfo").is_ok_and(|m| m.lines().any(|l| l.split(' ').nth(4) == Some(path)))
}

/// Leaves the initramfs's root for a bind mount of it, as the kernel
/// refuses `pivot_root(2)` (EINVAL) to a process whose root is the
/// initial rootfs, and so to every container cloned from it: bind `/`
/// onto a directory in it, move that mount over `/`, chroot into it. A
/// no-op on any other root. Runs before anything else is mounted (and
/// before logging: what happened is returned, to be logged).
pub fn leave_initramfs() -> Option<String> {
    let proc_was_mounted = Path::new("/proc/self").exists();
    if !proc_was_mounted {
        let _ = std::fs::create_dir_all("/proc");
        if let Err(e) = mount(Some("proc"), "/proc", Some("proc"), MsFlags::empty(), None::<&str>) {
            return Some(format!("mount proc: {e}"));
        }
    }
    let on_rootfs = std::fs::read_to_string("/proc/self/mountinfo").is_ok_and(|m| {
        m.lines().any(|l| {
            // ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS... - FSTYPE SOURCE SUPER
            let point = l.split(' ').nth(4);
            let fstype = l.split(" - ").nth(1).and_then(|r| r.split(' ').next());
            point == Some("/") && fstype == Some("rootfs")
        })
    });
    if !proc_was_mounted {
        let _ = umount2("/proc", MntFlags::MNT_DETACH);
    }
    if !on_rootfs {
        return None;
    }
    let new_root = "/.root";
    let escape = || -> nix::Result<()> {
        let _ = std::fs::create_dir(new_root);
        mount(Some("/"), new_root, None::<&str>, MsFlags::MS_BIND, None::<&str>)?;
        nix::unistd::chdir(new_root)?;
        mount(Some("."), "/", None::<&str>, MsFlags::MS_MOVE, None::<&str>)?;
        nix::unistd::chroot(".")?;
        nix::unistd::chdir("/")
    };
    Some(match escape() {
        Ok(()) => "left the initramfs root for a bind mount of it".to_string(),
        Err(e) => format!("leave the initramfs root: {e} (containers cannot pivot_root)"),
    })
}

/// Mounts what is missing of /proc, /sys, /dev, /dev/pts, /run, /tmp and
/// the cgroup filesystem; errors are logged, never fatal.
pub fn mount_basics() {
    let try_mount = |src: &str, target: &str, fstype: &str, flags: MsFlags, data: Option<&str>| {
        let _ = std::fs::create_dir_all(target);
        if let Err(e) = mount(Some(src), target, Some(fstype), flags, data) {
            tracing::warn!("mount {fstype} on {target}: {e}");
        }
    };
    let base = MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC | MsFlags::MS_NODEV;
    if !Path::new("/proc/self").exists() {
        try_mount("proc", "/proc", "proc", base, None);
    }
    if !mounted("/sys") {
        try_mount("sysfs", "/sys", "sysfs", base, None);
    }
    if !mounted("/dev") {
        try_mount("devtmpfs", "/dev", "devtmpfs", MsFlags::MS_NOSUID, Some("mode=0755"));
    }
    if !mounted("/dev/pts") {
        try_mount(
            "devpts",
            "/dev/pts",
            "devpts",
            MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
            Some("newinstance,ptmxmode=0666,mode=0620"),
        );
    }
    // Only over empty directories: a PID 1 of a pid namespace on a full
    // system must not hide the host's.
    let empty = |p: &str| std::fs::read_dir(p).map_or(true, |mut d| d.next().is_none());
    for (target, mode) in [("/run", "0755"), ("/tmp", "1777")] {
        if !mounted(target) && empty(target) {
            try_mount("tmpfs", target, "tmpfs", MsFlags::MS_NOSUID | MsFlags::MS_NODEV, Some(&format!("mode={mode}")));
        }
    }
    if !mounted("/sys/fs/cgroup") {
        // A pure v2 host: the appliance's kernel is.
        try_mount("cgroup2", "/sys/fs/cgroup", "cgroup2", base, Some("nsdelegate"));
    }
}

/// Our stderr goes to /dev/console when it is not open (the kernel gives
/// init no descriptors when the initramfs has no /dev/console).
pub fn console() {
    use std::os::fd::AsFd;
    if nix::fcntl::fcntl(std::io::stderr().as_fd(), nix::fcntl::FcntlArg::F_GETFD).is_ok() {
        return;
    }
    if let Ok(c) = std::fs::OpenOptions::new().read(true).write(true).open("/dev/console") {
        let _ = nix::unistd::dup2_stdin(&c);
        let _ = nix::unistd::dup2_stdout(&c);
        let _ = nix::unistd::dup2_stderr(&c);
    }
}

/// The hostname from /etc/hostname, and `lo` up.
pub fn host_setup() {
    if let Ok(name) = std::fs::read_to_string("/etc/hostname") {
        let name = name.trim();
        if !name.is_empty() {
            if let Err(e) = nix::unistd::sethostname(name) {
                tracing::warn!("set the hostname to {name:?}: {e}");
            }
        }
    }
    if let Err(e) = crate::runtime::container::loopback_up() {
        tracing::warn!("{e}");
    }
    // Ctrl-Alt-Del sends us SIGINT instead of an immediate reboot.
    if let Err(e) = nix::sys::reboot::set_cad_enabled(false) {
        tracing::warn!("disable ctrl-alt-del: {e}");
    }
}

/// Syncs, unmounts what can be (PID 1 owns its mount namespace), and
/// powers off or reboots (in a pid namespace: ends it). Returns only
/// if `reboot(2)` fails.
pub fn power(what: Power) {
    nix::unistd::sync();
    // Opened before the unmounts detach it, frozen after them.
    let data = data_disk::open_for_freeze();
    if let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") {
        let points: Vec<&str> = info.lines().filter_map(|l| l.split(' ').nth(4)).collect();
        for p in points.iter().rev() {
            if *p != "/" {
                let _ = umount2(*p, MntFlags::MNT_DETACH);
            }
        }
    }
    // "/" itself is left alone: on an appliance it is the initramfs, and a
    // read-only remount would reach the filesystem's superblock, which a
    // PID 1 of a pid namespace shares with its host.
    nix::unistd::sync();
    if let Some(data) = &data {
        match crate::runtime::sys::freeze_fs(data) {
            Ok(()) => tracing::info!("data disk: written out and frozen"),
            Err(e) => tracing::error!("data disk: cannot freeze it: {e} (its journal is replayed at the next boot)"),
        }
    }
    let how = match what {
        Power::Off => nix::sys::reboot::RebootMode::RB_POWER_OFF,
        Power::Reboot => nix::sys::reboot::RebootMode::RB_AUTOBOOT,
    };
    let Err(e) = nix::sys::reboot::reboot(how);
    tracing::error!("reboot(2): {e}");
}
