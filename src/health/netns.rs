//! Sockets made inside a container's network namespace. A socket belongs
//! to the namespace it was created in, wherever it is used afterwards: one
//! dedicated thread enters the container's namespace, makes the socket,
//! and returns to ours; the probe then connects it from tokio like any
//! other. (`setns` changes only the calling thread; the dedicated thread
//! keeps tokio's threads out of it.)

use std::os::fd::{AsFd, OwnedFd};
use std::sync::mpsc;

use nix::fcntl::{OFlag, open};
use nix::sched::{CloneFlags, setns};
use nix::sys::socket::{AddressFamily, SockFlag, SockType, socket};
use nix::sys::stat::Mode;
use tokio::sync::oneshot;

type Request = (i32, bool, oneshot::Sender<Result<OwnedFd, String>>);

/// The thread's handle; cheap to clone.
#[derive(Clone)]
pub struct Factory {
    tx: mpsc::Sender<Request>,
}

impl Factory {
    pub fn start() -> std::io::Result<Factory> {
        let (tx, rx) = mpsc::channel::<Request>();
        let home = open("/proc/thread-self/ns/net", OFlag::O_RDONLY | OFlag::O_CLOEXEC, Mode::empty())?;
        std::thread::Builder::new().name("netns-sockets".into()).spawn(move || {
            for (pid, v6, reply) in rx {
                let (result, home_again) = make(&home, pid, v6);
                let _ = reply.send(result);
                if !home_again {
                    // A thread stuck in a container's namespace must not
                    // make more sockets: every later probe fails instead.
                    tracing::error!("netns-sockets: cannot return to our network namespace; http and tcp probes stop");
                    return;
                }
            }
        })?;
        Ok(Factory { tx })
    }

    /// A non-blocking TCP socket in the network namespace of `pid`.
    pub async fn tcp_socket(&self, pid: i32, v6: bool) -> Result<OwnedFd, String> {
        let (tx, rx) = oneshot::channel();
        self.tx.send((pid, v6, tx)).map_err(|_| "the socket thread is gone".to_string())?;
        rx.await.map_err(|_| "the socket thread is gone".to_string())?
    }
}

/// The socket, and whether the thread is back in our namespace.
fn make(home: &OwnedFd, pid: i32, v6: bool) -> (Result<OwnedFd, String>, bool) {
    let path = format!("/proc/{pid}/ns/net");
    let theirs = match open(path.as_str(), OFlag::O_RDONLY | OFlag::O_CLOEXEC, Mode::empty()) {
        Ok(fd) => fd,
        Err(e) => return (Err(format!("open {path}: {e}")), true),
    };
    if let Err(e) = setns(theirs.as_fd(), CloneFlags::CLONE_NEWNET) {
        return (Err(format!("enter the container's network: {e}")), true);
    }
    let family = if v6 { AddressFamily::Inet6 } else { AddressFamily::Inet };
    let fd = socket(family, SockType::Stream, SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC, None);
    // Back home before anything else, whatever happened.
    let home_again = setns(home.as_fd(), CloneFlags::CLONE_NEWNET).is_ok();
    (fd.map_err(|e| format!("socket: {e}")), home_again)
}
