//! Identity of a unit's desired state. The hash is taken over the canonical
//! JSON of the normalized unit, so files that differ only in comments,
//! layout, key order or the spelling of equal values (`"1024M"`, `"1G"`)
//! hash the same, and any change of meaning changes it.
//!
//! One hash per class of keys tells the supervisor what a change needs:
//! `live` (`[resources]`: a cgroup write), `config` (description, ordering,
//! `[restart]`, `[stop]`, `[health]`, `[logs]`, `[update]`: no touch of the
//! container), `restart` (`[container]`, including the contents of
//! `env_file`). `[update]` says how the next update is rolled out and judged,
//! so changing it alone replaces nothing; the core reads it when a restart
//! class change (or a new image) comes.

use serde::Serialize;
use sha2::{Digest, Sha256};

use super::model::Unit;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Hashes {
    /// The whole unit.
    pub unit: String,
    pub live: String,
    pub config: String,
    pub restart: String,
}

/// What a change from `old` to `new` needs, the strongest class first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Change {
    None,
    /// Only description, ordering, restart, stop, health, logs or update
    /// changed.
    Config,
    /// `[resources]` changed (and maybe config): apply live.
    Live,
    /// The container must be stopped and started anew.
    Restart,
}

impl Hashes {
    pub fn of(unit: &Unit) -> Hashes {
        let config = (&unit.unit, &unit.restart, &unit.stop, &unit.health, &unit.logs, &unit.update);
        let live = digest(&unit.resources);
        let config = digest(&config);
        let restart = digest(&unit.container);
        let unit = digest(&(&live, &config, &restart));
        Hashes { unit, live, config, restart }
    }

    pub fn change_to(&self, new: &Hashes) -> Change {
        if self.restart != new.restart {
            Change::Restart
        } else if self.live != new.live {
            Change::Live
        } else if self.config != new.config {
            Change::Config
        } else {
            Change::None
        }
    }
}

fn digest(value: &impl Serialize) -> String {
    // Serializing plain data (strings, numbers, sorted maps) cannot fail.
    let bytes = serde_json::to_vec(value).unwrap_or_default();
    let sum = Sha256::digest(&bytes);
    sum.iter().map(|b| format!("{b:02x}")).collect()
}
