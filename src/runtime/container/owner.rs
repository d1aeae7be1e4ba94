//! Who owns the containers of a run directory. A supervisord holds its
//! `supervisord.lock` exclusively: one daemon per run directory, since
//! each takes whatever containers it finds there at its start for an
//! earlier one's leftovers and removes them. `runtime run-unit` holds it
//! shared (several may run side by side, no daemon beside them), and
//! `runtime cleanup` exclusively: the containers of a live owner are not
//! leftovers.

use std::fs::File;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};

/// The held lock; released when dropped (or when its process dies: the
/// file is opened close-on-exec, so no container inherits it).
pub type Owner = Flock<File>;

#[derive(Debug, thiserror::Error)]
pub enum OwnerError {
    #[error("open {}: {source}", path.display())]
    Open {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the run directory {} is in use by {holder} ({source})", run_dir.display())]
    Busy {
        run_dir: PathBuf,
        /// Who may hold it, as the caller's message names it.
        holder: &'static str,
        #[source]
        source: nix::errno::Errno,
    },
}

/// Takes `run_dir`'s lock at once, or says who has it: `exclusive` for a
/// daemon and for `cleanup`, shared for `run-unit`.
pub fn own(run_dir: &Path, exclusive: bool) -> Result<Owner, OwnerError> {
    let path = run_dir.join("supervisord.lock");
    let open = |path: &Path| {
        let file = File::options().create(true).truncate(false).write(true).mode(0o600).open(path)?;
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        Ok(file)
    };
    let file = open(&path).map_err(|source| OwnerError::Open { path: path.clone(), source })?;
    let how = if exclusive { FlockArg::LockExclusiveNonblock } else { FlockArg::LockSharedNonblock };
    let holder = if exclusive { "a supervisord or a runtime run-unit" } else { "a supervisord" };
    Flock::lock(file, how).map_err(|(_, source)| OwnerError::Busy { run_dir: run_dir.to_path_buf(), holder, source })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_exclusive_owner_or_any_number_of_shared_ones() {
        let dir = tempfile::tempdir().unwrap();
        let a = own(dir.path(), false).unwrap();
        let b = own(dir.path(), false).unwrap();
        let e = own(dir.path(), true).unwrap_err();
        assert!(e.to_string().contains("is in use by a supervisord or a runtime run-unit"), "{e}");
        drop((a, b));
        let daemon = own(dir.path(), true).unwrap();
        assert!(own(dir.path(), false).unwrap_err().to_string().contains("in use by a supervisord ("));
        drop(daemon);
        own(dir.path(), true).unwrap();
    }
}
