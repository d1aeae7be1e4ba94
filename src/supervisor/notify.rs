//! `notify = true`: the service says when it is ready, as systemd's
//! `Type=notify` services do. Each such container gets a datagram socket
//! of its own, `<run-dir>/notify/<container>/notify.sock` (the unit's
//! name, or a second container's `web.7` beside it), bind-mounted alone
//! at [`SOCKET`] with `NOTIFY_SOCKET` naming it. A datagram holds
//! newline-separated `KEY=VALUE` lines; `READY=1` makes the unit ready and
//! `STATUS=...` is shown in `status`.
//!
//! Only the container reaches its socket: on the host it sits in
//! directories that only root may enter (another local user cannot make
//! a unit ready), and the container sees the socket and nothing else of
//! the run directory (it cannot fill the host's `/run`).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::net::UnixDatagram;

/// `NOTIFY_SOCKET` in the container.
pub const SOCKET: &str = "/run/notify/notify.sock";
/// The socket's name in its directory on the host.
pub const SOCKET_FILE: &str = "notify.sock";

/// A notify socket that could not be made: the step, its path, the errno.
#[derive(Debug, thiserror::Error)]
#[error("notify socket: {op} {}: {source}", path.display())]
pub struct NotifyError {
    op: &'static str,
    path: PathBuf,
    #[source]
    source: std::io::Error,
}

/// Makes the socket of the container `name` (its runtime name: two
/// containers of a unit each have their own); its directory and the socket.
pub fn bind(run_dir: &Path, name: &str) -> Result<(PathBuf, Arc<UnixDatagram>), NotifyError> {
    let dir = run_dir.join("notify").join(name);
    remove(&dir);
    let err = |op, path: &Path| {
        let path = path.to_path_buf();
        move |source| NotifyError { op, path, source }
    };
    std::fs::create_dir_all(&dir).map_err(err("create", &dir))?;
    // Root's alone, whatever the umask: a local user who could reach the
    // socket could make the unit ready.
    for d in [dir.as_path(), dir.parent().unwrap_or(&dir)] {
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o700)).map_err(err("chmod", d))?;
    }
    let path = dir.join(SOCKET_FILE);
    let socket = UnixDatagram::bind(&path).map_err(err("bind", &path))?;
    // The service may run as any user of its image; the container reaches
    // the socket through its own mount of it, not through our directories.
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).map_err(err("chmod", &path))?;
    Ok((dir, Arc::new(socket)))
}

pub fn remove(dir: &Path) {
    let _ = std::fs::remove_dir_all(dir);
}

/// Parses one datagram: whether it says READY=1, and its STATUS= text.
pub fn parse(datagram: &[u8]) -> (bool, Option<String>) {
    let text = String::from_utf8_lossy(datagram);
    let mut ready = false;
    let mut status = None;
    for line in text.lines() {
        if line == "READY=1" {
            ready = true;
        } else if let Some(s) = line.strip_prefix("STATUS=") {
            status = Some(s.chars().take(256).collect());
        }
    }
    (ready, status)
}

/// Reads datagrams until the task is ended, handing each one's meaning on.
pub async fn listen(socket: &UnixDatagram, mut each: impl FnMut(bool, Option<String>)) {
    let mut buf = vec![0u8; 4096];
    loop {
        match socket.recv(&mut buf).await {
            Ok(n) => {
                let (ready, status) = parse(&buf[..n]);
                if ready || status.is_some() {
                    each(ready, status);
                }
            }
            Err(e) => {
                tracing::warn!("notify socket: {e}");
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::parse;

    #[test]
    fn datagrams_are_read_as_systemd_reads_them() {
        assert_eq!(parse(b"READY=1\nSTATUS=serving 3 clients\n"), (true, Some("serving 3 clients".into())));
        assert_eq!(parse(b"STATUS=loading"), (false, Some("loading".into())));
        assert_eq!(parse(b"READY=0\nWATCHDOG=1"), (false, None));
    }
}
