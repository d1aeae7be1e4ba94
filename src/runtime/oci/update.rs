//! `update`: a running (or created, or paused) container's limits changed
//! in place, as `runc update` does for its engines (containerd's runc shim
//! sends the whole OCI `LinuxResources` object on stdin; a person gives
//! flags). Only what is given changes.

use std::path::Path;

use oci_spec::runtime::LinuxResources;

use super::{OciError, Status, loaded};
use crate::runtime::cgroups::Update;

/// The changes a `LinuxResources` object asks for. What `update` cannot
/// change is refused by name, never dropped.
pub fn resources_update(r: &LinuxResources) -> Result<Update, OciError> {
    let refuse = |what: &'static str| Err(OciError::UpdateUnsupported(what));
    if r.block_io().is_some() {
        return refuse("blockIO");
    }
    if r.hugepage_limits().as_ref().is_some_and(|h| !h.is_empty()) {
        return refuse("hugepageLimits");
    }
    if r.network().is_some() {
        return refuse("network");
    }
    if r.rdma().as_ref().is_some_and(|h| !h.is_empty()) {
        return refuse("rdma");
    }
    if r.unified().as_ref().is_some_and(|h| !h.is_empty()) {
        return refuse("unified");
    }
    if r.devices().as_ref().is_some_and(|h| !h.is_empty()) {
        return refuse("devices");
    }
    let mut u = Update::default();
    if let Some(m) = r.memory() {
        if m.kernel().is_some() || m.kernel_tcp().is_some() || m.swappiness().is_some() {
            return refuse("memory.kernel, memory.kernelTCP or memory.swappiness");
        }
        if m.disable_oom_killer().is_some() {
            return refuse("memory.disableOOMKiller");
        }
        (u.memory, u.memory_swap, u.memory_reservation) = (m.limit(), m.swap(), m.reservation());
    }
    if let Some(c) = r.cpu() {
        if c.realtime_period().is_some() || c.realtime_runtime().is_some() {
            return refuse("cpu.realtimePeriod or cpu.realtimeRuntime");
        }
        if c.idle().is_some() || c.burst().is_some() {
            return refuse("cpu.idle or cpu.burst");
        }
        // 0 is what a Go engine sends for "not given".
        u.cpu_shares = c.shares().filter(|s| *s > 0);
        u.cpu_quota = c.quota().filter(|q| *q != 0);
        u.cpu_period = c.period().filter(|p| *p > 0);
        u.cpuset_cpus = c.cpus().clone().filter(|s| !s.is_empty());
        u.cpuset_mems = c.mems().clone().filter(|s| !s.is_empty());
    }
    if let Some(p) = r.pids() {
        u.pids = Some(p.limit());
    }
    Ok(u)
}

/// `update`: writes `u` to the cgroup of container `id`.
pub fn update(root: &Path, id: &str, u: &Update) -> Result<(), OciError> {
    let (dir, record) = loaded(root, id)?;
    let state = dir.state(&record);
    let container = dir.container(&record).filter(|_| state.status != Status::Stopped);
    let Some(container) = container else {
        return Err(OciError::WrongState { id: id.into(), status: state.status, op: "update", wanted: "running" });
    };
    Ok(container.cgroup.update(u)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<Update, OciError> {
        resources_update(&serde_json::from_str(json).unwrap())
    }

    #[test]
    fn a_resources_object_becomes_the_changes_it_asks_for() {
        let u = parse(
            r#"{"memory": {"limit": 67108864, "swap": 134217728},
                "cpu": {"shares": 512, "quota": 20000, "period": 100000, "cpus": "0"},
                "pids": {"limit": 30}}"#,
        )
        .unwrap();
        assert_eq!(
            u,
            Update {
                memory: Some(64 << 20),
                memory_swap: Some(128 << 20),
                cpu_shares: Some(512),
                cpu_quota: Some(20_000),
                cpu_period: Some(100_000),
                cpuset_cpus: Some("0".into()),
                pids: Some(30),
                ..Update::default()
            }
        );
        // What a Go engine sends for fields it leaves out.
        assert!(
            parse(r#"{"cpu": {"shares": 0, "quota": 0, "period": 0, "cpus": "", "mems": ""}}"#).unwrap().is_empty()
        );
    }

    #[test]
    fn what_update_cannot_change_is_refused_by_name() {
        let e = parse(r#"{"blockIO": {"weight": 10}}"#).unwrap_err();
        assert_eq!(e.to_string(), "update: linux.resources.blockIO cannot be changed by this runtime");
        let e = parse(r#"{"memory": {"swappiness": 10}}"#).unwrap_err();
        assert!(e.to_string().contains("swappiness"), "{e}");
        // Empty lists are nothing asked.
        assert!(parse(r#"{"hugepageLimits": [], "devices": []}"#).unwrap().is_empty());
    }
}
