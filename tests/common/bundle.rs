//! An OCI bundle of the busybox fixture, driven through
//! `supervisor-runtime` as an engine drives runc: what the `oci_*` tests
//! share. Each test file adds the constructors and verbs of its own.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use oci_spec::runtime::Spec;
use serde_json::{Value, json};

pub struct Bundle {
    pub dir: tempfile::TempDir,
    pub path: PathBuf,
}

impl Bundle {
    /// The busybox fixture running `sh -c script` with `PATH=/bin`, and a
    /// host directory `/shared` (the bundle's `shared/`, writable by
    /// anyone: an exec may run unprivileged) to see what it did; its spec
    /// edited by `edit`, which also gets the bundle's directory.
    pub fn busybox(script: &str, edit: impl FnOnce(&mut Value, &Path)) -> Bundle {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bundle");
        std::fs::create_dir_all(path.join("shared")).unwrap();
        std::fs::set_permissions(path.join("shared"), std::fs::Permissions::from_mode(0o777)).unwrap();
        let base = super::fixtures().join("unpacked/base");
        let ok = Command::new("cp").arg("-a").arg(base).arg(path.join("rootfs")).status().unwrap();
        assert!(ok.success());
        let mut spec = serde_json::to_value(Spec::default()).unwrap();
        spec["root"]["path"] = json!("rootfs");
        spec["process"]["args"] = json!(["/bin/sh", "-c", script]);
        spec["process"]["env"] = json!(["PATH=/bin"]);
        spec["process"]["terminal"] = json!(false);
        spec["mounts"].as_array_mut().unwrap().push(json!({
            "destination": "/shared", "type": "bind", "source": path.join("shared"), "options": ["rbind", "rw"]
        }));
        edit(&mut spec, &path);
        std::fs::write(path.join("config.json"), serde_json::to_vec_pretty(&spec).unwrap()).unwrap();
        Bundle { dir, path }
    }

    pub fn shared(&self, name: &str) -> PathBuf {
        self.path.join("shared").join(name)
    }

    /// The runtime's `--root`.
    pub fn root(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    /// `supervisor-runtime --root ROOT args...`.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_supervisor-runtime"));
        c.arg("--root").arg(self.root()).args(args);
        c
    }

    /// Its output, through files (a created container holds pipes open).
    pub fn runtime(&self, args: &[&str]) -> Output {
        super::output_via_files(&mut self.command(args))
    }

    /// Its standard output, which must have succeeded.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.runtime(args);
        assert!(out.status.success(), "{args:?}: {}", super::text(&out.stderr));
        super::text(&out.stdout)
    }

    /// The OCI state of container `id`.
    pub fn state(&self, id: &str) -> Value {
        serde_json::from_str(&self.ok(&["state", id])).unwrap()
    }
}
