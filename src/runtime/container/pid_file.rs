//! The pid file an engine reads (`--pid-file`): the container's first
//! process's from `create`, an exec'd process's from `exec`.

use std::path::Path;

use super::RuntimeError;

/// A pid file, written whole (a temporary name, then renamed) through a
/// descriptor of its directory opened beforehand: so `exec` can write it
/// from inside the container's mount namespace.
pub struct PidFile {
    dir: std::os::fd::OwnedFd,
    name: std::ffi::OsString,
    path: std::path::PathBuf,
}

impl PidFile {
    pub fn open(path: &Path) -> Result<PidFile, RuntimeError> {
        use nix::fcntl::OFlag;
        let parent = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        let name = path
            .file_name()
            .ok_or_else(|| RuntimeError::io("write the pid file", path, std::io::ErrorKind::InvalidInput.into()))?;
        let dir = nix::fcntl::open(
            parent,
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )
        .map_err(|e| RuntimeError::io("open", parent, e.into()))?;
        Ok(PidFile { dir, name: name.to_owned(), path: path.to_path_buf() })
    }

    pub fn write(&self, pid: i32) -> Result<(), RuntimeError> {
        use nix::fcntl::OFlag;
        use nix::sys::stat::Mode;
        let mut tmp = self.name.clone();
        tmp.push(".tmp");
        let failed = |e: nix::errno::Errno| RuntimeError::io("write the pid file", &self.path, e.into());
        let flags = OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_TRUNC | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW;
        let fd =
            nix::fcntl::openat(&self.dir, tmp.as_os_str(), flags, Mode::from_bits_truncate(0o644)).map_err(failed)?;
        nix::unistd::write(&fd, pid.to_string().as_bytes()).map_err(failed)?;
        nix::fcntl::renameat(&self.dir, tmp.as_os_str(), &self.dir, self.name.as_os_str()).map_err(failed)
    }
}
