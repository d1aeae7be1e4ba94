//! `supervisord runtime run --bundle DIR ID`: run an OCI bundle in the
//! foreground, as `crun run` and `runc run` do, so that one bundle can run
//! under all three for comparisons. The spec is the whole truth.

use std::path::Path;

use nix::sys::signal::Signal;
use oci_spec::runtime::Spec;

use super::signals::Forwarding;
use super::{Container, Plan, RuntimeError, Setup, Stdio};
use crate::runtime::cgroups::Manager;

/// Runs the bundle and returns the container's exit code (128 + N when a
/// signal N ended it).
pub fn run_bundle(bundle: &Path, id: &str) -> Result<i32, RuntimeError> {
    // The container is cloned from this process: from a protected form of it.
    super::reexec_protected()?;
    crate::names::check_dns_label(id).map_err(|reason| RuntimeError::Id { reason })?;
    let config = bundle.join("config.json");
    let spec = Spec::load(&config).map_err(|source| RuntimeError::LoadSpec { path: config.clone(), source })?;
    let plan = Plan::from_spec(&spec, bundle)?;
    plan.check_host(selinux_enabled())?;
    if spec.hooks().is_some() {
        return Err(RuntimeError::Plan(super::PlanError::Unsupported {
            what: "hooks here (supervisor-runtime runs them)".into(),
        }));
    }
    if plan.terminal() {
        return Err(RuntimeError::Plan(super::PlanError::Unsupported {
            what: "process.terminal = true here (supervisor-runtime create --console-socket takes it)".into(),
        }));
    }
    let resources = plan.resources(&spec)?;
    let cgroups = Manager::for_host("supervisor-runtime", None)?;
    let setup = Setup { name: id, cgroups: &cgroups, resources: &resources, run_dir: None, dir: None };
    let signals = [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP, Signal::SIGQUIT, Signal::SIGUSR1, Signal::SIGUSR2];
    let forwarding = Forwarding::each(&signals)?;
    let (container, _) = Container::create(&setup, &plan, Stdio::Inherit)?;
    forwarding.started(container.pid());
    let result = container.wait();
    let destroyed = container.destroy();
    if destroyed.oom_killed {
        eprintln!(
            "supervisord: {id}: the kernel's OOM killer killed a process of the container (memory limit reached)"
        );
    }
    match destroyed.error {
        Some(e) => Err(e),
        None => result,
    }
}

/// Whether the host enforces SELinux (its filesystem is mounted), where a
/// spec's labels would have to be applied.
pub fn selinux_enabled() -> bool {
    std::path::Path::new("/sys/fs/selinux/enforce").exists()
}
