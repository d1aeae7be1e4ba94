//! Packaging for hosts: the Debian package builds, installs into a fresh
//! dpkg root (this machine's own system is left alone), and what it
//! installs works there: `supervisorctl --help`, `man supervisorctl`, the
//! completions; it conflicts with Debian's unrelated `supervisor`; the
//! systemd unit passes `systemd-analyze verify`.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::text;

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(out.status.success(), "{cmd:?}: {}{}", text(&out.stdout), text(&out.stderr));
    text(&out.stdout)
}

/// The package, built from the binaries these tests were built with.
fn build_deb(out: &Path) -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let bin = Path::new(env!("CARGO_BIN_EXE_supervisorctl")).parent().unwrap();
    let deb = run(Command::new(root.join("packaging/deb/build.sh")).arg(out).env("SUPERVISOR_BIN", bin));
    PathBuf::from(deb.trim())
}

#[test]
fn the_debian_package_installs_and_its_commands_and_manual_work() {
    for tool in ["dpkg-deb", "dpkg", "man"] {
        assert!(common::have(tool), "{tool} is missing (scripts/install-deps.sh installs man-db)");
    }
    let t = tempfile::tempdir().unwrap();
    let deb = build_deb(&t.path().join("out"));
    let field = |f: &str| run(Command::new("dpkg-deb").arg("-f").arg(&deb).arg(f)).trim().to_string();
    assert_eq!(field("Package"), "supervisor-rs");
    assert_eq!(field("Conflicts"), "supervisor", "Debian's supervisor ships the same command names");
    assert_eq!(field("Replaces"), "supervisor");
    let contents = run(Command::new("dpkg-deb").arg("-c").arg(&deb));
    for path in [
        "./usr/sbin/supervisord",
        "./usr/bin/supervisorctl",
        "./usr/bin/supervisor-runtime",
        "./usr/share/man/man8/supervisor-runtime-create.8.gz",
        "./lib/systemd/system/supervisord.service",
        "./etc/units.d/",
        "./usr/share/man/man8/supervisorctl.8.gz",
        "./usr/share/man/man8/supervisorctl-status.8.gz",
        "./usr/share/man/man8/supervisord.8.gz",
        "./usr/share/bash-completion/completions/supervisorctl",
        "./usr/share/zsh/vendor-completions/_supervisorctl",
        "./usr/share/fish/vendor_completions.d/supervisord.fish",
    ] {
        assert!(contents.lines().any(|l| l.ends_with(path)), "{path} is not in the package:\n{contents}");
    }

    // A dpkg root of its own: dpkg's database, then the package.
    let root = t.path().join("root");
    for d in ["var/lib/dpkg/info", "var/lib/dpkg/updates", "var/lib/dpkg/triggers"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    std::fs::write(root.join("var/lib/dpkg/status"), "").unwrap();
    std::fs::write(root.join("var/lib/dpkg/available"), "").unwrap();
    // Its Depends (libc6) are this machine's, not in the new database.
    run(Command::new("dpkg").arg(format!("--root={}", root.display())).args(["--force-depends", "-i"]).arg(&deb));
    let listed = run(Command::new("dpkg").arg(format!("--root={}", root.display())).args(["-s", "supervisor-rs"]));
    assert!(listed.contains("Status: install ok installed"), "{listed}");

    let help = run(Command::new(root.join("usr/bin/supervisorctl")).arg("--help"));
    assert!(help.contains("status") && help.contains("restart"), "{help}");
    let version = run(Command::new(root.join("usr/bin/supervisor-runtime")).arg("--version"));
    assert!(version.starts_with("supervisor-runtime version "), "{version}");
    let help = run(Command::new(root.join("usr/sbin/supervisord")).arg("--help"));
    assert!(help.contains("--units"), "{help}");
    let page = run(Command::new("man")
        .args(["-P", "cat", "supervisorctl"])
        .env("MANPATH", root.join("usr/share/man"))
        .env("MANWIDTH", "100"));
    assert!(page.contains("supervisorctl") && page.contains("status"), "{page}");
    let page = run(Command::new("man")
        .args(["-P", "cat", "8", "supervisorctl-restart"])
        .env("MANPATH", root.join("usr/share/man")));
    assert!(page.contains("--no-block"), "{page}");
    let bash = std::fs::read_to_string(root.join("usr/share/bash-completion/completions/supervisorctl")).unwrap();
    assert!(bash.contains("complete") && bash.contains("supervisorctl"), "{bash}");
}

#[test]
fn the_systemd_unit_verifies() {
    if !common::have("systemd-analyze") {
        panic!("systemd-analyze is missing (the systemd package)");
    }
    // verify wants the program ExecStart names: a root where it exists,
    // with the unit in it.
    let t = tempfile::tempdir().unwrap();
    let root = t.path();
    let unit = Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/supervisord.service");
    std::fs::create_dir_all(root.join("usr/sbin")).unwrap();
    std::fs::create_dir_all(root.join("bin")).unwrap();
    std::fs::create_dir_all(root.join("etc/systemd/system")).unwrap();
    std::fs::copy(env!("CARGO_BIN_EXE_supervisord"), root.join("usr/sbin/supervisord")).unwrap();
    std::fs::copy("/bin/kill", root.join("bin/kill")).unwrap();
    std::fs::copy(&unit, root.join("etc/systemd/system/supervisord.service")).unwrap();
    // The standard targets the unit orders itself against, as installed.
    std::fs::create_dir_all(root.join("lib/systemd")).unwrap();
    run(Command::new("cp").arg("-a").arg("/lib/systemd/system").arg(root.join("lib/systemd/")));
    // Its Documentation= names the manual pages, which verify looks up.
    run(Command::new(env!("CARGO_BIN_EXE_supervisorctl")).arg("generate-docs").arg(root.join("man")));
    let out = Command::new("systemd-analyze")
        .env("MANPATH", root.join("man"))
        .arg(format!("--root={}", root.display()))
        .args(["verify", "supervisord.service"])
        .output()
        .unwrap();
    let said = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert!(out.status.success() && !said.contains("supervisord.service"), "systemd-analyze verify:\n{said}");
}
