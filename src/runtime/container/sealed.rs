//! Our own program as a sealed in-memory copy, for every process that runs
//! it inside a container: the container's first process until it executes
//! its program, and `exec`'s joining process until it does. Such a process
//! shows our program as `/proc/PID/exe`, and executing `/proc/self/exe`
//! runs it: were that the host's file, a process of the container could
//! open it and, once it is no longer being executed, write it (runc's
//! CVE-2019-5736). A sealed memfd can be neither written, grown nor
//! shrunk, by anyone.
//!
//! The daemon makes one copy when it starts ([`sealed_self`]) and starts
//! every spawn and exec helper from it; foreground commands re-execute
//! themselves from a copy ([`reexec_from_sealed_copy`]) before they create
//! anything.

use std::ffi::CString;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::sync::OnceLock;

use nix::fcntl::{FcntlArg, SealFlag, fcntl};
use nix::sys::memfd::{MFdFlags, memfd_create};

use super::RuntimeError;

/// The seals that make a copy immutable, this one included.
fn seals() -> SealFlag {
    SealFlag::F_SEAL_SEAL | SealFlag::F_SEAL_SHRINK | SealFlag::F_SEAL_GROW | SealFlag::F_SEAL_WRITE
}

/// A new sealed copy of the program this process runs.
fn copy_of_self() -> Result<OwnedFd, RuntimeError> {
    let copy = memfd_create("supervisord", MFdFlags::MFD_CLOEXEC | MFdFlags::MFD_ALLOW_SEALING)
        .map_err(|e| RuntimeError::sys("memfd_create", e))?;
    let mut copy = std::fs::File::from(copy);
    let mut me = std::fs::File::open("/proc/self/exe").map_err(|e| RuntimeError::io("open", "/proc/self/exe", e))?;
    std::io::copy(&mut me, &mut copy).map_err(|e| RuntimeError::io("copy", "/proc/self/exe", e))?;
    fcntl(&copy, FcntlArg::F_ADD_SEALS(seals()))
        .map_err(|e| RuntimeError::sys("seal the copy of /proc/self/exe", e))?;
    Ok(copy.into())
}

/// Whether this process already runs from a sealed copy. Asked of the
/// kernel, not of the environment, so that no caller can skip the copy.
pub(crate) fn runs_sealed() -> bool {
    let Ok(me) = std::fs::File::open("/proc/self/exe") else { return false };
    fcntl(&me, FcntlArg::F_GET_SEALS).is_ok_and(|s| SealFlag::from_bits_truncate(s).contains(seals()))
}

/// A path that executes a sealed copy of our program, made on the first
/// call and kept open (close-on-exec) while we live: `/proc/self/fd/N`,
/// which a child resolves to its inherited copy of the descriptor when it
/// executes it. One copy for every helper the daemon starts: starting a
/// container pays for no copy.
pub fn sealed_self() -> Result<PathBuf, RuntimeError> {
    static COPY: OnceLock<OwnedFd> = OnceLock::new();
    let fd = match COPY.get() {
        Some(fd) => fd,
        None => {
            let made = copy_of_self()?;
            COPY.get_or_init(|| made)
        }
    };
    Ok(PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd())))
}

/// Re-executes this program, with the same arguments and environment, from
/// a sealed in-memory copy of itself, unless it already runs from one.
/// Callers do this before anything they would have to undo.
pub fn reexec_from_sealed_copy() -> Result<(), RuntimeError> {
    if runs_sealed() {
        return Ok(());
    }
    let copy = copy_of_self()?;
    let c = |b: &[u8]| CString::new(b).map_err(|_| RuntimeError::NulByte);
    let args: Vec<CString> = std::env::args_os().map(|a| c(a.as_bytes())).collect::<Result<_, _>>()?;
    let env: Vec<CString> =
        std::env::vars_os().map(|(k, v)| c(&[k.as_bytes(), b"=", v.as_bytes()].concat())).collect::<Result<_, _>>()?;
    // Only returns on failure.
    let Err(e) = nix::unistd::fexecve(&copy, &args, &env);
    Err(RuntimeError::sys("re-execute from the sealed copy", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_copy_is_sealed_and_the_test_binary_is_not() {
        assert!(!runs_sealed(), "a test binary runs from its file");
        let path = sealed_self().unwrap();
        assert_eq!(sealed_self().unwrap(), path, "one copy per process");
        let copy = std::fs::OpenOptions::new().read(true).open(&path).unwrap();
        let got = SealFlag::from_bits_truncate(fcntl(&copy, FcntlArg::F_GET_SEALS).unwrap());
        assert!(got.contains(seals()), "{got:?}");
        let mine = std::fs::read("/proc/self/exe").unwrap();
        assert_eq!(std::fs::read(&path).unwrap().len(), mine.len());
        // Sealed against writes: even root cannot change it.
        let w = std::fs::OpenOptions::new().write(true).open(&path);
        assert!(w.is_err() || std::io::Write::write_all(&mut w.unwrap(), b"x").is_err());
    }
}
