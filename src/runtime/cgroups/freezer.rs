//! Freezing a container's processes (`pause`/`resume`): v1's freezer
//! controller (`freezer.state`), v2's `cgroup.freeze`. Both are
//! asynchronous: [`Cgroup::freeze`] returns once the kernel reports the
//! whole cgroup frozen.

use std::time::{Duration, Instant};

use super::{Cgroup, CgroupError, Result, read, write};

/// How long a freeze may take before it is undone and reported.
const FREEZE_TIMEOUT: Duration = Duration::from_secs(5);

impl Cgroup {
    /// Whether its processes are frozen.
    pub fn frozen(&self) -> bool {
        match self {
            Cgroup::V1(_) => self
                .v1("freezer")
                .and_then(|d| read(&d.join("freezer.state")).ok())
                .is_some_and(|s| s.trim() == "FROZEN"),
            Cgroup::V2(dir) => {
                read(&dir.join("cgroup.events")).is_ok_and(|events| events.lines().any(|l| l.trim() == "frozen 1"))
            }
        }
    }

    /// Freezes every process of it; returns once all are frozen.
    pub fn freeze(&self) -> Result<()> {
        self.set_frozen(true)?;
        let deadline = Instant::now() + FREEZE_TIMEOUT;
        while !self.frozen() {
            if Instant::now() >= deadline {
                let _ = self.set_frozen(false);
                return Err(CgroupError::FreezeTimeout);
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        Ok(())
    }

    /// Lets its processes run again.
    pub fn thaw(&self) -> Result<()> {
        self.set_frozen(false)
    }

    fn set_frozen(&self, frozen: bool) -> Result<()> {
        match self {
            Cgroup::V1(_) => {
                let dir = self.v1("freezer").ok_or(CgroupError::ControllerNotMounted("freezer"))?;
                write(&dir.join("freezer.state"), if frozen { "FROZEN" } else { "THAWED" })
            }
            Cgroup::V2(dir) => write(&dir.join("cgroup.freeze"), if frozen { "1" } else { "0" }),
        }
    }
}
