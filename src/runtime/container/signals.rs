//! Signals to a foreground runtime (`runtime run --bundle`, `runtime
//! run-unit`) are for its container. The handlers go in before the
//! container starts: a signal that comes while it starts must neither kill
//! us (orphaning it) nor be lost, and one that comes before its pid is
//! known is delivered, once, when it is. (A CI run once caught a
//! regression of this ordering.)

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicI32, Ordering};

use nix::fcntl::OFlag;
use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal, sigaction};
use nix::unistd::pipe2;

use super::RuntimeError;

/// The container's pid, once known.
static CONTAINER: AtomicI32 = AtomicI32::new(0);
/// A signal not yet delivered: it came before the pid was known.
static PENDING: AtomicI32 = AtomicI32::new(0);
/// Deliver every signal as this one (a stop signal, by number: it may be
/// a real-time one, which nix's `Signal` cannot name); 0: as itself.
static SEND_AS: AtomicI32 = AtomicI32::new(0);
/// The write end of the pipe that tells the waiter a stop was asked for.
static WAKE: AtomicI32 = AtomicI32::new(-1);

/// Sends the signal that came before the pid was known, if one did.
fn deliver(pid: i32) {
    // Whoever swaps the pending signal out sends it: the handler and
    // `started` can race, and the signal must go exactly once.
    let sig = PENDING.swap(0, Ordering::SeqCst);
    if sig != 0 {
        let _ = crate::runtime::sys::kill(pid, sig);
    }
}

extern "C" fn forward(sig: libc::c_int) {
    // SAFETY: reading this thread's errno location, to restore it before
    // returning: the interrupted code may be about to read errno.
    let saved = unsafe { *libc::__errno_location() };
    let send_as = SEND_AS.load(Ordering::SeqCst);
    let sig = if send_as != 0 { send_as } else { sig };
    let pid = CONTAINER.load(Ordering::SeqCst);
    if pid > 0 {
        // Known: straight to it, so that a second signal interrupting this
        // handler cannot overwrite this one.
        let _ = crate::runtime::sys::kill(pid, sig);
    } else {
        PENDING.store(sig, Ordering::SeqCst);
        // The pid may have become known meanwhile: `started` then missed it.
        let pid = CONTAINER.load(Ordering::SeqCst);
        if pid > 0 {
            deliver(pid);
        }
    }
    let wake = WAKE.load(Ordering::SeqCst);
    if wake >= 0 {
        // SAFETY: write(2) is async-signal-safe; `wake` is the pipe that
        // `Forwarding` owns while it is installed, and one byte of ours.
        unsafe { libc::write(wake, [1u8].as_ptr().cast(), 1) };
    }
    // SAFETY: as above; this thread's errno, as it was on entry.
    unsafe { *libc::__errno_location() = saved };
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
    pub fn stop(signals: &[Signal], stop: i32) -> Result<Forwarding, RuntimeError> {
        let (r, w) = pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK).map_err(|e| RuntimeError::sys("pipe", e))?;
        SEND_AS.store(stop, Ordering::SeqCst);
        install(signals)?;
        // Only once the handlers are ours: a failed install must not leave
        // a descriptor number that a later signal writes to.
        WAKE.store(w.as_raw_fd(), Ordering::SeqCst);
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
