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

#[cfg(test)]
mod tests {
    use std::path::Path;

    use oci_spec::runtime::Spec;

    use super::super::Plan;

    #[test]
    fn a_plan_survives_the_trip_to_the_spawn_helper() {
        let json = r#"{"ociVersion": "1.0.2", "process": {"user": {"uid": 0, "gid": 0}, "args": ["sh"], "cwd": "/",
            "capabilities": {"bounding": ["CAP_CHOWN", "CAP_KILL"]}},
            "root": {"path": "rootfs"}, "mounts": [{"destination": "/data", "type": "bind", "source": "/d",
            "options": ["rbind", "ro", "rprivate"]}], "linux": {"namespaces": [{"type": "mount"}, {"type": "pid"}]}}"#;
        let spec: Spec = serde_json::from_str(json).unwrap();
        let plan = Plan::from_spec(&spec, Path::new("/b"))
            .unwrap()
            .with_overlay(vec!["/l1".into(), "/l2".into()], "/u".into(), "/w".into())
            .with_default_seccomp();
        let back: Plan = serde_json::from_slice(&serde_json::to_vec(&plan).unwrap()).unwrap();
        assert_eq!(back, plan);
        assert!(back.process.seccomp.is_some_and(|f| !f.is_empty()));
    }
}
