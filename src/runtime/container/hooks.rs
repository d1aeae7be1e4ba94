//! The runtime spec's hooks. Each hook is a program given the container's
//! state (the OCI state JSON) on its stdin, run in the listed order, and
//! killed when its `timeout` passes.
//!
//! In the runtime's namespaces, as programs of the host: `createRuntime`
//! and `prestart` (by `create`, while the container's first process waits
//! before `pivot_root` for them: see [`InContainer::pause`]), `poststart`
//! (by `start`, once it passed its gate) and `poststop` (by `delete`, once
//! it is gone).
//!
//! In the container's namespaces, run by its first process: `createContainer`
//! after its mounts and before `pivot_root` (the path is the host's, as the
//! spec says: the host's root is still there), and `startContainer` once
//! `start` opened its gate, just before its program (the path is the
//! container's). They run as runc runs them: with the container's pid as
//! seen inside it, `startContainer` as the container's user, with its
//! capabilities.

use std::io::Write;
use std::os::fd::AsFd;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use oci_spec::runtime::{Hook, Hooks};
use serde::{Deserialize, Serialize};

use super::process::{Woke, pidfd, watch};

/// The hook points, as the spec names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Point {
    CreateRuntime,
    Prestart,
    CreateContainer,
    StartContainer,
    Poststart,
    Poststop,
}

impl std::fmt::Display for Point {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str(match self {
            Point::CreateRuntime => "createRuntime",
            Point::Prestart => "prestart",
            Point::CreateContainer => "createContainer",
            Point::StartContainer => "startContainer",
            Point::Poststart => "poststart",
            Point::Poststop => "poststop",
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum HookError {
    #[error("{point} hook {}: cannot run it: {source}", path.display())]
    Spawn {
        point: Point,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{point} hook {}: {status}", path.display())]
    Failed { point: Point, path: PathBuf, status: String },
    #[error("{point} hook {}: still running after its timeout of {seconds} s: killed", path.display())]
    Timeout { point: Point, path: PathBuf, seconds: i64 },
}

/// The hooks of `point` in `hooks`, in the listed order.
pub fn of(hooks: &Hooks, point: Point) -> &[Hook] {
    let list = match point {
        Point::CreateRuntime => hooks.create_runtime(),
        Point::Prestart => hooks.prestart(),
        Point::CreateContainer => hooks.create_container(),
        Point::StartContainer => hooks.start_container(),
        Point::Poststart => hooks.poststart(),
        Point::Poststop => hooks.poststop(),
    };
    list.as_deref().unwrap_or_default()
}

/// Runs the hooks of `point` in order, each given `state` (JSON) on its
/// stdin; stops at the first that fails.
pub fn run(hooks: &Hooks, point: Point, state: &[u8]) -> Result<(), HookError> {
    of(hooks, point).iter().try_for_each(|h| run_one(h, point, state))
}

/// Runs every hook of `point` whatever the others do (`poststart` and
/// `poststop`: a failure is a warning); the failures.
pub fn run_all(hooks: &Hooks, point: Point, state: &[u8]) -> Vec<HookError> {
    of(hooks, point).iter().filter_map(|h| run_one(h, point, state).err()).collect()
}

/// The hooks the container's first process runs itself, and what it
/// gives them; part of its [`super::Plan`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct InContainer {
    /// Wait before `pivot_root` until the parent has run the hooks of the
    /// runtime's namespace that come first (`createRuntime`, `prestart`):
    /// a byte on the start gate's `ready` pipe, then one more on `go`.
    pub(crate) pause: bool,
    pub(crate) create_container: Vec<Hook>,
    pub(crate) start_container: Vec<Hook>,
    /// The container's OCI state; the process sets `pid` and `status`.
    pub(crate) state: serde_json::Map<String, serde_json::Value>,
}

impl InContainer {
    /// Those of `hooks` (a spec's).
    pub(crate) fn of(hooks: Option<&Hooks>) -> InContainer {
        let Some(h) = hooks else { return InContainer::default() };
        InContainer {
            pause: !of(h, Point::CreateRuntime).is_empty() || !of(h, Point::Prestart).is_empty(),
            create_container: of(h, Point::CreateContainer).to_vec(),
            start_container: of(h, Point::StartContainer).to_vec(),
            state: serde_json::Map::new(),
        }
    }

    /// Runs the hooks of `point` (`createContainer` or `startContainer`)
    /// from inside the container, `status` the state's.
    pub(crate) fn run(&self, point: Point, status: &str) -> Result<(), HookError> {
        let list = match point {
            Point::CreateContainer => &self.create_container,
            Point::StartContainer => &self.start_container,
            _ => return Ok(()),
        };
        if list.is_empty() {
            return Ok(());
        }
        let mut state = self.state.clone();
        state.insert("pid".into(), std::process::id().into());
        state.insert("status".into(), status.into());
        let bytes = serde_json::to_vec(&state).unwrap_or_default();
        list.iter().try_for_each(|h| run_one(h, point, &bytes))
    }
}

fn run_one(hook: &Hook, point: Point, state: &[u8]) -> Result<(), HookError> {
    let path = hook.path().clone();
    let args = hook.args().clone().unwrap_or_default();
    let mut command = Command::new(&path);
    // args[0] is argv[0], as for execv; the spec's env is the whole
    // environment.
    if let Some((first, rest)) = args.split_first() {
        command.arg0(first).args(rest);
    }
    command.env_clear();
    for pair in hook.env().iter().flatten() {
        if let Some((k, v)) = pair.split_once('=') {
            command.env(k, v);
        }
    }
    // Its output goes where ours goes (the engine's log); stdin is the state.
    command.stdin(Stdio::piped());
    let mut child = command.spawn().map_err(|source| HookError::Spawn { point, path: path.clone(), source })?;
    if let Some(mut stdin) = child.stdin.take() {
        // A hook that does not read its stdin closes it: not a failure.
        let _ = stdin.write_all(state);
    }
    let deadline = hook.timeout().filter(|t| *t > 0).map(|t| Instant::now() + Duration::from_secs(t as u64));
    if let (Some(deadline), Ok(fd)) = (deadline, pidfd(nix::unistd::Pid::from_raw(child.id() as i32)))
        && watch(fd.as_fd(), None, Some(deadline)) == Woke::TimedOut
    {
        let _ = child.kill();
        let _ = child.wait();
        return Err(HookError::Timeout { point, path, seconds: hook.timeout().unwrap_or(0) });
    }
    let status = child.wait().map_err(|source| HookError::Spawn { point, path: path.clone(), source })?;
    if status.success() {
        return Ok(());
    }
    let status = match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited with status {code}"),
        (None, Some(signal)) => format!("killed by signal {signal}"),
        _ => status.to_string(),
    };
    Err(HookError::Failed { point, path, status })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hooks(json: &str) -> Hooks {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn hooks_run_in_order_with_the_state_on_stdin_and_stop_at_the_first_failure() {
        let t = tempfile::tempdir().unwrap();
        let out = t.path().join("out");
        let o = out.display();
        let h = hooks(&format!(
            r#"{{"prestart": [
                {{"path": "/bin/sh", "args": ["sh", "-c", "echo one: $(cat) >> {o}"]}},
                {{"path": "/bin/sh", "args": ["sh", "-c", "echo two $X >> {o}"], "env": ["X=from-env"]}},
                {{"path": "/bin/false", "args": ["false"]}},
                {{"path": "/bin/sh", "args": ["sh", "-c", "echo never >> {o}"]}}
            ]}}"#
        ));
        let err = run(&h, Point::Prestart, br#"{"id":"c1"}"#).unwrap_err();
        assert!(matches!(&err, HookError::Failed { point: Point::Prestart, .. }), "{err}");
        assert_eq!(err.to_string(), "prestart hook /bin/false: exited with status 1");
        assert_eq!(std::fs::read_to_string(&out).unwrap(), "one: {\"id\":\"c1\"}\ntwo from-env\n");
        // A hook point without hooks, or without a list, runs nothing.
        run(&h, Point::Poststart, b"{}").unwrap();
    }

    #[test]
    fn warnings_do_not_stop_the_others_and_a_timeout_kills() {
        let t = tempfile::tempdir().unwrap();
        let out = t.path().join("out");
        let o = out.display();
        let h = hooks(&format!(
            r#"{{"poststop": [
                {{"path": "/nonexistent/hook"}},
                {{"path": "/bin/sleep", "args": ["sleep", "30"], "timeout": 1}},
                {{"path": "/bin/sh", "args": ["sh", "-c", "echo ran >> {o}"]}}
            ]}}"#
        ));
        let started = Instant::now();
        let errors = run_all(&h, Point::Poststop, b"{}");
        assert!(started.elapsed() < Duration::from_secs(10));
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(matches!(errors[0], HookError::Spawn { .. }));
        assert_eq!(errors[1].to_string(), "poststop hook /bin/sleep: still running after its timeout of 1 s: killed");
        assert_eq!(std::fs::read_to_string(&out).unwrap(), "ran\n");
    }
}
