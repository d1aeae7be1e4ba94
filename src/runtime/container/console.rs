//! The container's terminal (`process.terminal`), as runc makes it for an
//! engine: a pseudo-terminal of the container's own devpts (opened once
//! its root is in place, so `tty` names it there), its master sent over
//! the engine's console socket (SCM_RIGHTS), its slave the first
//! process's controlling terminal and stdio.

use std::io::IoSlice;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};

use nix::fcntl::OFlag;
use nix::sys::socket::{ControlMessage, MsgFlags, sendmsg};
use nix::sys::stat::Mode;

use super::init::{Result, err};
use super::init_error::InitError;

/// Makes the terminal and hands its master to `socket` (connected to the
/// engine's console socket). `size` is rows and columns. The terminal
/// belongs to `uid`, the user the process will run as, as runc gives it:
/// a program that reopens its terminal (`/dev/tty`) may then do so.
pub(super) fn attach(socket: OwnedFd, size: Option<(u16, u16)>, uid: u32) -> Result<()> {
    let master = nix::fcntl::open("/dev/ptmx", OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC, Mode::empty())
        .map_err(err("open /dev/ptmx"))?;
    let unlock: libc::c_int = 0;
    // SAFETY: TIOCSPTLCK reads one int we own; TIOCGPTPEER takes flags and
    // returns a new descriptor of the slave (no path lookup), or -1.
    let slave = unsafe {
        if libc::ioctl(master.as_raw_fd(), libc::TIOCSPTLCK, &unlock) != 0 {
            return Err(InitError::last_os("unlock the pseudo-terminal"));
        }
        let fd = libc::ioctl(master.as_raw_fd(), libc::TIOCGPTPEER, libc::O_RDWR | libc::O_NOCTTY);
        if fd < 0 {
            return Err(InitError::last_os("open the pseudo-terminal's slave"));
        }
        OwnedFd::from_raw_fd(fd)
    };
    nix::unistd::fchown(&slave, Some(nix::unistd::Uid::from_raw(uid)), None)
        .map_err(err("give the terminal to the process's user"))?;
    if let Some((rows, cols)) = size {
        let ws = libc::winsize { ws_row: rows, ws_col: cols, ws_xpixel: 0, ws_ypixel: 0 };
        // SAFETY: TIOCSWINSZ reads one winsize we own.
        if unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &ws) } != 0 {
            return Err(InitError::last_os("set the terminal's size"));
        }
    }
    let fds = [master.as_raw_fd()];
    // runc sends the terminal's name as the message; engines read the
    // descriptor.
    sendmsg::<()>(
        socket.as_raw_fd(),
        &[IoSlice::new(b"/dev/ptmx")],
        &[ControlMessage::ScmRights(&fds)],
        MsgFlags::empty(),
        None,
    )
    .map_err(err("send the terminal to the console socket"))?;
    drop(master);
    drop(socket);
    // A session of its own, with this terminal as its controlling one.
    match nix::unistd::setsid() {
        Ok(_) | Err(nix::errno::Errno::EPERM) => {}
        Err(e) => return Err(err("setsid")(e)),
    }
    let _ = nix::unistd::dup2_stdin(slave.as_fd());
    let _ = nix::unistd::dup2_stdout(slave.as_fd());
    let _ = nix::unistd::dup2_stderr(slave.as_fd());
    // SAFETY: TIOCSCTTY takes an integer argument; fd 0 is the slave.
    if unsafe { libc::ioctl(0, libc::TIOCSCTTY, 0) } != 0 {
        return Err(InitError::last_os("make the terminal the controlling one"));
    }
    Ok(())
}
