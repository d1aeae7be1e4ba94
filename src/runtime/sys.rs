//! The calls of the daemon's own process setup that neither std nor `nix`
//! wraps safely, each behind a safe function with a narrow signature, so
//! that `unsafe` stays inside the runtime. Code elsewhere uses `nix`.

use std::io;

#[derive(Debug, thiserror::Error)]
pub enum SysError {
    #[error("count our threads in /proc/self/task: {0}")]
    Threads(#[source] io::Error),
    #[error("set {key}: {threads} threads run, and the environment may change only while one does")]
    NotSingleThreaded { key: String, threads: usize },
}

/// Sets the environment variable `key` of this process, only while it has
/// a single thread (read from `/proc/self/task`, so /proc must be mounted):
/// another thread could read the environment at the same time.
pub fn set_env_single_threaded(key: &str, value: &str) -> Result<(), SysError> {
    let threads = std::fs::read_dir("/proc/self/task").map_err(SysError::Threads)?.count();
    if threads != 1 {
        return Err(SysError::NotSingleThreaded { key: key.to_string(), threads });
    }
    // SAFETY: this is the only thread (counted just above), and only it
    // could start another, so nothing reads or writes the environment
    // while it changes.
    unsafe { std::env::set_var(key, value) };
    Ok(())
}

/// Caps glibc's malloc arenas at `max` (`M_ARENA_MAX`); whether glibc
/// took it.
pub fn limit_malloc_arenas(max: i32) -> bool {
    // SAFETY: mallopt takes two integers and only tunes the allocator,
    // under the allocator's own lock.
    unsafe { libc::mallopt(libc::M_ARENA_MAX, max) == 1 }
}

/// Sends signal number `signal` to `pid`. Unlike nix's `kill`, any number
/// the kernel takes goes, real-time signals (`SIGRTMIN+3`) included: a
/// unit's stop signal may be one.
pub fn kill(pid: i32, signal: i32) -> io::Result<()> {
    // SAFETY: kill(2) takes two integers and touches no memory of ours.
    match unsafe { libc::kill(pid, signal) } {
        0 => Ok(()),
        _ => Err(io::Error::last_os_error()),
    }
}

/// Freezes the file system of `dir` (`FIFREEZE`): everything is written
/// out and its journal left clean, as an unmount would, and every later
/// write waits. The last step before `reboot(2)`, for a file system that
/// cannot be unmounted while this process holds files on it.
pub fn freeze_fs(dir: &std::fs::File) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    // _IOWR('X', 119, int), from linux/fs.h.
    const FIFREEZE: libc::c_ulong = 0xc004_5877;
    let mut unused: libc::c_int = 0;
    // SAFETY: FIFREEZE reads no argument (an int-sized one is given all
    // the same) and acts on the file system of the open descriptor.
    match unsafe { libc::ioctl(dir.as_raw_fd(), FIFREEZE, &mut unused) } {
        0 => Ok(()),
        _ => Err(io::Error::last_os_error()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_environment_is_not_changed_while_other_threads_run() {
        // The test harness runs this test on a thread of its own.
        let e = set_env_single_threaded("SUPERVISOR_SYS_TEST", "1").unwrap_err();
        assert!(matches!(e, SysError::NotSingleThreaded { threads, .. } if threads > 1), "{e}");
        assert!(std::env::var_os("SUPERVISOR_SYS_TEST").is_none());
        assert!(limit_malloc_arenas(8));
    }

    #[test]
    fn kill_reports_the_errno() {
        // Signal 0 only checks: we exist; pid 0x7ffffff0 does not.
        kill(std::process::id() as i32, 0).unwrap();
        assert_eq!(kill(0x7fff_fff0, 0).unwrap_err().raw_os_error(), Some(libc::ESRCH));
    }
}
