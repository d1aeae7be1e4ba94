//! The nft edge: our table is written as one `nft -f -` transaction
//! (Debian's `nftables`); nothing else of the host's rules is touched.

use std::io::Write;
use std::time::Instant;

use super::NetworkError;
use crate::runtime::reaper::{Exit, Reaper};

/// Runs `nft -f -` on `script`; the moment the kernel committed it. Its
/// exit comes from the reaper: a wait of our own would race it.
///
/// With `--echo`, nft prints what it added once the kernel has committed
/// the transaction, so the first byte on its stdout is the moment the new
/// rules apply; its exit comes 10-20 ms later (closing its netlink socket
/// waits for the replaced rules' RCU grace period), which says nothing of
/// when traffic moved.
pub async fn nft(reaper: &Reaper, script: &str) -> Result<Instant, NetworkError> {
    use tokio::io::AsyncReadExt;
    let err_file = tempfile_in_memory().map_err(NetworkError::NftPipe)?;
    let mut child = std::process::Command::new("nft")
        .args(["--echo", "-f", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(err_file.try_clone().map_err(NetworkError::NftPipe)?)
        .spawn()
        .map_err(NetworkError::NftStart)?;
    let exit = reaper.watch(child.id() as i32);
    // A rule change is short and rare, and a switchover's is what traffic
    // waits for: it does not queue behind busy containers (on two busy
    // cores, the commit came 10-65 ms after the spawn at nice 0, 9-26 ms
    // at -10). Best effort: without CAP_SYS_NICE it runs at ours.
    // SAFETY: setpriority on our own child's pid; no memory is involved.
    unsafe { libc::setpriority(libc::PRIO_PROCESS, child.id(), -10) };
    let stdout = match child.stdout.take() {
        Some(o) => Some(tokio::net::unix::pipe::Receiver::from_owned_fd(o.into()).map_err(NetworkError::NftPipe)?),
        None => None,
    };
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(script.as_bytes()).map_err(NetworkError::NftPipe)?;
    }
    drop(child);
    // Read to the end: a table large enough to fill the pipe would block
    // nft's echo otherwise.
    let mut committed = None;
    if let Some(mut out) = stdout {
        let mut buf = [0u8; 8192];
        while out.read(&mut buf).await.is_ok_and(|n| n > 0) {
            committed.get_or_insert_with(Instant::now);
        }
    }
    match exit.await {
        Ok(Exit::Code(0)) => Ok(committed.unwrap_or_else(Instant::now)),
        other => {
            use std::io::{Read, Seek};
            let mut f = err_file;
            let mut text = String::new();
            let _ = f.rewind().and_then(|()| f.read_to_string(&mut text));
            Err(NetworkError::Nft { stderr: text.trim().to_string(), exit: format!("{other:?}") })
        }
    }
}

/// An anonymous file for a child's stderr.
fn tempfile_in_memory() -> std::io::Result<std::fs::File> {
    use nix::sys::memfd::{MFdFlags, memfd_create};
    Ok(memfd_create("nft-stderr", MFdFlags::MFD_CLOEXEC)?.into())
}
