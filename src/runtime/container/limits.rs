//! The cgroup limits a spec asks for, and our own rlimits (which no
//! container may exceed).

use oci_spec::runtime::{LinuxDeviceType, Spec};

use super::plan::{Plan, PlanError, rlimit_resource};
use crate::runtime::cgroups::{DeviceRule, Resources};

impl Plan {
    /// The cgroup limits of `spec` (the one this plan was built from); the
    /// ones we cannot apply are errors.
    pub fn resources(&self, spec: &Spec) -> Result<Resources, PlanError> {
        let unsupported = |w: &str| Err(PlanError::Unsupported { what: format!("linux.resources.{w}") });
        let mut r = Resources::default();
        let Some(res) = spec.linux().as_ref().and_then(|l| l.resources().as_ref()) else { return Ok(r) };
        if res.rdma().as_ref().is_some_and(|r| !r.is_empty()) {
            return unsupported("rdma");
        }
        if let Some(b) = res.block_io() {
            let blkio = &mut r.extra.blkio;
            blkio.weight = b.weight();
            blkio.leaf_weight = b.leaf_weight();
            for d in b.weight_device().iter().flatten() {
                blkio.weight_device.push((d.major(), d.minor(), d.weight(), d.leaf_weight()));
            }
            for (kind, list) in [
                ("read_bps", b.throttle_read_bps_device()),
                ("write_bps", b.throttle_write_bps_device()),
                ("read_iops", b.throttle_read_iops_device()),
                ("write_iops", b.throttle_write_iops_device()),
            ] {
                for d in list.iter().flatten() {
                    blkio.throttle.push((kind, d.major(), d.minor(), d.rate()));
                }
            }
        }
        if let Some(n) = res.network() {
            r.extra.net_class_id = n.class_id();
            r.extra.net_priorities =
                n.priorities().iter().flatten().map(|p| (p.name().clone(), p.priority())).collect();
        }
        for h in res.hugepage_limits().iter().flatten() {
            r.extra.hugetlb.insert(h.page_size().clone(), h.limit().max(0) as u64);
        }
        if res.unified().as_ref().is_some_and(|u| !u.is_empty()) {
            return unsupported("unified");
        }
        if let Some(m) = res.memory() {
            r.memory = m.limit().filter(|l| *l > 0).map(|l| l as u64);
            // The spec's swap is memory and swap together (-1: unbounded).
            r.swap = match (m.swap(), r.memory) {
                (Some(s), _) if s < 0 => Some(u64::MAX),
                (Some(s), Some(l)) if s as u64 > l => Some(s as u64 - l),
                (Some(s), None) if s > 0 => return unsupported("memory.swap without memory.limit"),
                _ => None,
            };
            r.extra.memory_reservation = m.reservation().filter(|r| *r > 0).map(|r| r as u64);
            r.extra.swappiness = m.swappiness();
            r.extra.kernel_memory = m.kernel().filter(|k| *k != 0);
            r.extra.kernel_tcp = m.kernel_tcp().filter(|k| *k != 0);
            r.extra.disable_oom_killer = m.disable_oom_killer().unwrap_or(false);
        }
        if let Some(c) = res.cpu() {
            r.cpu_quota = c.quota().filter(|q| *q > 0).map(|q| q as u64);
            r.cpu_period = c.period();
            r.extra.cpu_shares = c.shares().filter(|s| *s > 0);
            r.extra.cpus = c.cpus().clone().filter(|s| !s.is_empty());
            r.extra.mems = c.mems().clone().filter(|s| !s.is_empty());
            r.extra.rt_period = c.realtime_period().filter(|p| *p > 0);
            r.extra.rt_runtime = c.realtime_runtime().filter(|r| *r != 0);
            if c.idle().is_some_and(|i| i != 0) || c.burst().is_some() {
                return unsupported("cpu.idle or cpu.burst");
            }
        }
        if let Some(p) = res.pids() {
            r.pids = (p.limit() > 0).then_some(p.limit() as u64);
        }
        if let Some(devices) = res.devices() {
            let mut rules = Vec::new();
            for d in devices {
                let kind = match d.typ() {
                    None | Some(LinuxDeviceType::A) => 'a',
                    Some(LinuxDeviceType::B) => 'b',
                    Some(_) => 'c',
                };
                rules.push(DeviceRule {
                    allow: d.allow(),
                    kind,
                    major: d.major().map(|m| m as u64),
                    minor: d.minor().map(|m| m as u64),
                    access: d.access().clone().unwrap_or_else(|| "rwm".into()),
                });
            }
            // The devices every container has stay usable, and its pty.
            // (A FIFO is no device: no rule.)
            for dev in self.devices.iter().filter(|d| d.kind != 'p') {
                rules.push(DeviceRule {
                    allow: true,
                    kind: dev.kind,
                    major: Some(dev.major),
                    minor: Some(dev.minor),
                    access: "rwm".into(),
                });
            }
            rules.push(DeviceRule { allow: true, kind: 'c', major: Some(136), minor: None, access: "rwm".into() });
            rules.push(DeviceRule { allow: true, kind: 'c', major: Some(5), minor: Some(2), access: "rwm".into() });
            r.devices = Some(rules);
        }
        Ok(r)
    }
}

/// Our own hard limit of the rlimit named as the runtime spec names it
/// (`RLIMIT_NOFILE`); none when unlimited or unknown.
pub fn hard_limit(name: &str) -> Option<u64> {
    let resource = rlimit_resource(name)?;
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit(2) writes one rlimit struct that we own and that
    // lives across the call.
    let ok = unsafe { libc::getrlimit(resource as _, &mut lim) } == 0;
    (ok && lim.rlim_max != libc::RLIM_INFINITY).then_some(lim.rlim_max)
}
