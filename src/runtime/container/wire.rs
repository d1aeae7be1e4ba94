//! The plan crosses a process boundary (to the `runtime spawn` helper):
//! flag sets go as their bits, capabilities by name.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

pub mod ms_flags {
    use super::*;
    use nix::mount::MsFlags;
    pub fn serialize<S: Serializer>(f: &MsFlags, s: S) -> Result<S::Ok, S::Error> {
        f.bits().serialize(s)
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<MsFlags, D::Error> {
        Ok(MsFlags::from_bits_retain(Deserialize::deserialize(d)?))
    }
}

pub mod clone_flags {
    use super::*;
    use nix::sched::CloneFlags;
    pub fn serialize<S: Serializer>(f: &CloneFlags, s: S) -> Result<S::Ok, S::Error> {
        f.bits().serialize(s)
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<CloneFlags, D::Error> {
        Ok(CloneFlags::from_bits_retain(Deserialize::deserialize(d)?))
    }
}

pub mod caps_list {
    use super::*;
    pub fn serialize<S: Serializer>(v: &[caps::Capability], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(v.iter().map(|c| c.to_string()))
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<caps::Capability>, D::Error> {
        let names: Vec<String> = Deserialize::deserialize(d)?;
        names
            .iter()
            .map(|n| n.parse().map_err(|_| serde::de::Error::custom(format!("unknown capability {n}"))))
            .collect()
    }
}
