//! `supervisorctl validate` and `supervisord --check` as a user runs them:
//! exit codes scripts can trust, errors on stderr, JSON on stdout.

mod common;

use common::text;

use std::fs;
use std::process::{Command, Output};

fn ctl(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_supervisorctl")).args(args).output().unwrap()
}

#[test]
fn the_examples_are_valid() {
    let out = ctl(&["validate", "units.example"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "3 valid units: db, web, worker\n");
}

#[test]
fn a_reader_that_went_away_ends_the_output_quietly() {
    // `supervisorctl validate --json | head -c0`: the pipe's reader is
    // gone before anything is written.
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let out = Command::new(env!("CARGO_BIN_EXE_supervisorctl"))
        .args(["validate", "--json", "units.example"])
        .stdout(writer)
        .stderr(std::process::Stdio::piped())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stderr), "");
    // An error into a closed pipe (`... 2>&1 | head -1`): the exit code
    // still says what happened, with no panic.
    let dir = tempfile::tempdir().unwrap();
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let out = Command::new(env!("CARGO_BIN_EXE_supervisorctl"))
        .arg("--socket")
        .arg(dir.path().join("none.sock"))
        .arg("status")
        .stdout(std::process::Stdio::null())
        .stderr(writer)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn invalid_files_exit_1_with_located_errors() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("ok.toml"), "[container]\nimage = \"busybox\"\n").unwrap();
    fs::write(dir.path().join("web.toml"), "[container]\nimage = \"busybox\"\n\n[resources]\nmemroy = \"1G\"\n")
        .unwrap();
    let out = ctl(&["validate", dir.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    let expected = format!(
        "{}:5:1: unknown key \"memroy\" in [resources], did you mean \"memory\"?\n1 invalid file\n",
        dir.path().join("web.toml").display()
    );
    // Not a terminal: one line per error, no source excerpt, no color.
    assert_eq!(err, expected);
    assert_eq!(text(&out.stdout), "1 valid unit: ok\n");
}

#[test]
fn unreadable_paths_and_bad_usage_exit_2() {
    let out = ctl(&["validate", "/nonexistent/units.d"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("/nonexistent/units.d: cannot read"));
    assert_eq!(text(&out.stdout), "");
    // 2 wins over 1 when both happen.
    let out = ctl(&["validate", "tests/units/invalid/unknown-key.toml", "/nonexistent"]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(ctl(&["validate", "--bogus"]).status.code(), Some(2));
    assert_eq!(ctl(&["frobnicate"]).status.code(), Some(2));
}

#[test]
fn json_shows_normalized_units_and_errors() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(
        dir.path().join("web.toml"),
        "[container]\nimage = \"nginx\"\n[resources]\nmemory = \"1024M\"\n[update]\nmin_healthy = \"10000ms\"\n",
    )
    .unwrap();
    fs::write(dir.path().join("bad.toml"), "[container]\nimage = \"busybox\"\nports = [\"99999:80\"]\n").unwrap();
    let out = ctl(&["validate", "--json", dir.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let units = v["units"].as_array().unwrap();
    assert_eq!(units.len(), 1);
    assert_eq!(units[0]["name"], "web");
    assert_eq!(units[0]["container"]["image"], "docker.io/library/nginx:latest");
    assert_eq!(units[0]["resources"]["memory"], 1u64 << 30);
    assert_eq!(units[0]["restart"]["policy"], "always");
    assert_eq!(
        units[0]["update"],
        serde_json::json!({
            "strategy": "stop-first", "healthy_within": "1m", "min_healthy": "10s", "rollback": true, "auto": "never"
        })
    );
    assert_eq!(units[0]["hash"].as_str().unwrap().len(), 64);
    for class in ["live", "config", "restart"] {
        assert_eq!(units[0]["hashes"][class].as_str().unwrap().len(), 64);
    }
    let errors = v["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0]["file"], dir.path().join("bad.toml").to_str().unwrap());
    assert_eq!((errors[0]["line"].as_u64(), errors[0]["column"].as_u64()), (Some(3), Some(10)));
    assert!(errors[0]["message"].as_str().unwrap().contains("\"99999\" is not a port number"));
}

#[test]
fn a_file_is_checked_in_the_context_of_its_directory() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    fs::write(d.join("web.toml"), "[unit]\nrequires = [\"db\"]\n[container]\nimage = \"busybox\"\n").unwrap();
    // db exists (so web's dependency is fine) but is itself invalid: its
    // error is not web's.
    fs::write(d.join("db.toml"), "[container]\nimage = 1\n").unwrap();
    let out = ctl(&["validate", d.join("web.toml").to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "1 valid unit: web\n");
    // Without db.toml, the missing dependency is web's error.
    fs::remove_file(d.join("db.toml")).unwrap();
    let out = ctl(&["validate", d.join("web.toml").to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("web.toml:2:13: unknown unit \"db\""), "{}", text(&out.stderr));
}

#[test]
fn env_file_errors_count_against_their_unit() {
    let out = ctl(&["validate", "tests/units/invalid/bad-env-file.toml"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("bad.env.txt:2:1: \"BARE\" has no value"));
}

#[test]
fn works_without_root_and_without_a_daemon() {
    // Run as nobody, on a copy nobody can read, with no daemon anywhere.
    if !common::require_root("works_without_root_and_without_a_daemon") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("units");
    assert!(Command::new("cp").arg("-r").arg("units.example").arg(&copy).status().unwrap().success());
    assert!(Command::new("chmod").args(["-R", "a+rX"]).arg(dir.path()).status().unwrap().success());
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", env!("CARGO_BIN_EXE_supervisorctl"), "validate"])
        .arg(&copy)
        .env("SUPERVISOR_SOCKET", "/nonexistent/control.sock")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "3 valid units: db, web, worker\n");
}

#[test]
fn supervisord_check_prints_the_start_order() {
    let out =
        Command::new(env!("CARGO_BIN_EXE_supervisord")).args(["--check", "--units", "units.example"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "start step 1: db, web\nstart step 2: worker\n");
    let out = Command::new(env!("CARGO_BIN_EXE_supervisord"))
        .args(["--check", "--units", "tests/units/sets/cycle"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("dependency cycle: a -> b -> c -> a"));
}
