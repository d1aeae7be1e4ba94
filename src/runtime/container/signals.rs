//! Signals to a foreground runtime (`runtime run --bundle`, `runtime
//! run-unit`) are for its container. The handlers go in before the
//! container starts: a signal that comes while it starts must neither kill
//! us (orphaning it) nor be lost, and one that comes before its pid is
//! known is delivered, once, when it is. (A CI run once caught a
//! regression of this ordering.)

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicI32, Ordering};

use nix::fcntl::OFlag;
use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal, kill, sigaction};
use nix::unistd::{Pid, pipe2};

use super::RuntimeError;

/// The container's pid, once known.
static CONTAINER: AtomicI32 = AtomicI32::new(0);
/// A signal not yet delivered: it came before the pid was known.
static PENDING: AtomicI32 = AtomicI32::new(0);
/// Deliver every signal as this one (a stop signal); 0: as itself.
static SEND_AS: AtomicI32 = AtomicI32::new(0);
/// The write end of the pipe that tells the waiter a stop was asked for.
static WAKE: AtomicI32 = AtomicI32::new(-1);

fn deliver(pid: i32) {
    // Whoever swaps the pending signal out sends it: the handler and
    // `started` can race, and the signal must go exactly once.
    let sig = PENDING.swap(0, Ordering::SeqCst);
    if let (true, Ok(sig)) = (sig != 0, Signal::try_from(sig)) {
        let _ = kill(Pid::from_raw(pid), sig);
    }
}

extern "C" fn forward(sig: libc::c_int) {
    let send_as = SEND_AS.load(Ordering::SeqCst);
    PENDING.store(if send_as != 0 { send_as } else { sig }, Ordering::SeqCst);
    let pid = CONTAINER.load(Ordering::SeqCst);
    if pid > 0 {
        deliver(pid);
    }
    let wake = WAKE.load(Ordering::SeqCst);
    if wake >= 0 {
        // SAFETY: write(2) is async-signal-safe; `wake` is the pipe that
        // `Forwarding` owns while it is installed, and one byte of ours.
        unsafe { libc::write(wake, [1u8].as_ptr().cast(), 1) };
    }
}

/// The handlers, installed; the container they forward to is given by
/// [`Forwarding::started`].
pub struct Forwarding {
    /// Readable once a stop was asked for (with [`Forwarding::stop`]).
    stop_requested: Option<(OwnedFd, OwnedFd)>,
}

fn install(signals: &[Signal]) -> Result<(), RuntimeError> {
    let action = SigAction::new(SigHandler::Handler(forward), SaFlags::SA_RESTART, SigSet::empty());
    for &sig in signals {
        // SAFETY: the handler only touches atomics and calls kill(2) and
        // write(2), which are async-signal-safe.
        unsafe { sigaction(sig, &action) }.map_err(|e| RuntimeError::sys("install a signal handler", e))?;
    }
    Ok(())
}

impl Forwarding {
    /// Each of `signals` goes to the container as itself (as crun and runc
    /// forward them).
    pub fn each(signals: &[Signal]) -> Result<Forwarding, RuntimeError> {
        install(signals)?;
        Ok(Forwarding { stop_requested: None })
    }

    /// Each of `signals` asks the container to stop: `stop` goes to it, and
    /// [`Forwarding::stop_requested`] becomes readable, for the stop
    /// escalation.
    pub fn stop(signals: &[Signal], stop: Signal) -> Result<Forwarding, RuntimeError> {
        let (r, w) = pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK).map_err(|e| RuntimeError::sys("pipe", e))?;
        WAKE.store(w.as_raw_fd(), Ordering::SeqCst);
        SEND_AS.store(stop as i32, Ordering::SeqCst);
        install(signals)?;
        Ok(Forwarding { stop_requested: Some((r, w)) })
    }

    /// The container runs as `pid`: what came before goes to it now.
    pub fn started(&self, pid: i32) {
        CONTAINER.store(pid, Ordering::SeqCst);
        deliver(pid);
    }

    /// Readable once a stop was asked for.
    pub fn stop_requested(&self) -> Option<BorrowedFd<'_>> {
        self.stop_requested.as_ref().map(|(r, _)| r.as_fd())
    }
}

impl Drop for Forwarding {
    fn drop(&mut self) {
        // The pipe closes with us: the handler must not write to it after.
        WAKE.store(-1, Ordering::SeqCst);
        CONTAINER.store(0, Ordering::SeqCst);
    }
}
