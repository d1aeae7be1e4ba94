//! `supervisord runtime run --bundle DIR ID`: run an OCI bundle in the
//! foreground, as `crun run` and `runc run` do, so that one bundle can run
//! under all three for comparisons. The spec is the whole truth.

use std::path::Path;
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::Duration;

use oci_spec::runtime::{LinuxDeviceType, Spec};

use super::RuntimeError;
use super::plan::{Plan, from_spec};
use super::spawn::{Stdio, spawn, wait_exit};
use crate::runtime::cgroups::{DeviceRule, Manager, Resources};

/// The container's pid, for the signal handlers that forward to it.
static CONTAINER: AtomicI32 = AtomicI32::new(0);
/// A signal that came before the container's pid was known.
static PENDING: AtomicI32 = AtomicI32::new(0);

extern "C" fn forward(sig: libc::c_int) {
    let pid = CONTAINER.load(Ordering::SeqCst);
    if pid > 0 {
        // SAFETY: kill(2) is async-signal-safe.
        unsafe { libc::kill(pid, sig) };
    } else {
        PENDING.store(sig, Ordering::SeqCst);
    }
}

/// Runs the bundle and returns the container's exit code (128 + N when a
/// signal N ended it).
pub fn run_bundle(bundle: &Path, id: &str) -> Result<i32, RuntimeError> {
    crate::names::check_dns_label(id).map_err(|e| RuntimeError::Spec(format!("container id {e}")))?;
    let config = bundle.join("config.json");
    let spec = Spec::load(&config).map_err(|e| RuntimeError::Spec(format!("{}: {e}", config.display())))?;
    let plan = from_spec(&spec, bundle).map_err(RuntimeError::Spec)?;
    let resources = resources(&spec, &plan)?;
    let cgroup = Manager::for_host("supervisor-runtime").and_then(|m| m.create(id)).map_err(RuntimeError::Cgroup)?;
    let result = (|| {
        cgroup.set(&resources).map_err(RuntimeError::Cgroup)?;
        // The handlers go in before the container starts: a signal that
        // comes while it starts must neither kill us (orphaning it) nor be
        // lost; one that comes before its pid is known is sent after.
        for sig in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP, libc::SIGQUIT, libc::SIGUSR1, libc::SIGUSR2] {
            // SAFETY: installs a handler that only touches atomics and calls kill(2).
            unsafe { libc::signal(sig, forward as *const () as libc::sighandler_t) };
        }
        let pid = spawn(&plan, Some(&cgroup), Stdio::Inherit)?.pid;
        CONTAINER.store(pid.as_raw(), Ordering::SeqCst);
        let early = PENDING.swap(0, Ordering::SeqCst);
        if early != 0 {
            // SAFETY: kill(2) of the container we just started.
            unsafe { libc::kill(pid.as_raw(), early) };
        }
        wait_exit(pid)
    })();
    if cgroup.oom_kills() > 0 {
        eprintln!(
            "supervisord: {id}: the kernel's OOM killer killed a process of the container (memory limit reached)"
        );
    }
    // The pid namespace's init is gone, so the kernel killed the rest; make
    // sure of it, then remove the cgroup.
    let _ = cgroup.kill_all();
    cgroup.remove(Duration::from_secs(5)).map_err(RuntimeError::Cgroup)?;
    result
}

/// The cgroup limits of the spec; the ones we cannot apply are errors.
pub(crate) fn resources(spec: &Spec, plan: &Plan) -> Result<Resources, RuntimeError> {
    let unsupported =
        |w: &str| Err(RuntimeError::Spec(format!("config.json: linux.resources.{w} is not supported by this runtime")));
    let mut r = Resources::default();
    let Some(res) = spec.linux().as_ref().and_then(|l| l.resources().as_ref()) else { return Ok(r) };
    if res.block_io().is_some()
        || res.hugepage_limits().as_ref().is_some_and(|h| !h.is_empty())
        || res.network().is_some()
        || res.rdma().is_some()
    {
        return unsupported("blockIO, hugepageLimits, network or rdma");
    }
    if res.unified().as_ref().is_some_and(|u| !u.is_empty()) {
        return unsupported("unified");
    }
    if let Some(m) = res.memory() {
        r.memory = m.limit().filter(|l| *l > 0).map(|l| l as u64);
        if m.swap().is_some_and(|s| s > 0 && Some(s) != m.limit()) {
            return unsupported("memory.swap (other than equal to the limit)");
        }
    }
    if let Some(c) = res.cpu() {
        r.cpu_quota = c.quota().filter(|q| *q > 0).map(|q| q as u64);
        r.cpu_period = c.period();
        if c.cpus().is_some() || c.mems().is_some() || c.realtime_runtime().is_some() {
            return unsupported("cpu.cpus, cpu.mems or realtime");
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
        for dev in &plan.devices {
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
