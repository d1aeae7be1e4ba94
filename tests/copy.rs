//! `supervisorctl cp` and `commit` end to end: a real daemon, a real
//! container, the real client.

#[macro_use]
mod common;

use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::{Command, Stdio};

use common::daemon::{Daemon, busybox};
use common::text;

fn unit(script: &str) -> String {
    format!(
        "[container]\nimage = \"{}\"\ncommand = [\"sh\", \"-c\", {:?}]\n",
        busybox(),
        format!("trap 'exit 0' TERM; {script}")
    )
}

/// `supervisorctl ARGS` with `input` on its standard input.
fn ctl_with_input(d: &Daemon, args: &[&str], input: &[u8]) -> std::process::Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_supervisorctl"))
        .arg("--socket")
        .arg(d.socket())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input).unwrap();
    child.wait_with_output().unwrap()
}

fn ok(out: &std::process::Output, what: &str) {
    assert!(out.status.success(), "{what}: {}", text(&out.stderr));
}

/// A file of the container, read by a command run in it.
fn cat(d: &Daemon, unit: &str, path: &str) -> String {
    let out = d.ctl(&["exec", unit, "--", "cat", path]);
    ok(&out, &format!("cat {path}"));
    text(&out.stdout)
}

fn names_in_tar(bytes: &[u8]) -> Vec<String> {
    let mut a = tar::Archive::new(bytes);
    a.entries().unwrap().map(|e| String::from_utf8_lossy(&e.unwrap().path_bytes()).into_owned()).collect()
}

#[test]
fn cp_copies_files_and_directories_both_ways_and_never_through_a_link_to_the_host() {
    root_only!("cp_copies_files_and_directories_both_ways_and_never_through_a_link_to_the_host");
    let d = Daemon::start();
    let host = tempfile::tempdir().unwrap();
    // A host directory the container names by its absolute path: the
    // container has a directory of that path too, and its own link to it.
    let shared = host.path().join("shared");
    std::fs::create_dir(&shared).unwrap();
    let name = common::unique_name("cp");
    let script = format!(
        "mkdir -p /srv/data/sub {shared}; echo hello > /srv/data/sub/file; chmod 640 /srv/data/sub/file; \
         chown 123:456 /srv/data/sub/file; ln -s /etc/passwd /leak; ln -s / /rootlink; ln -s {shared} /hostlink; \
         echo ready; sleep 100000 & wait",
        shared = shared.display()
    );
    d.write_unit(&name, &unit(&script));
    d.wait_log(&name, None, "ready");
    let container_passwd = cat(&d, &name, "/etc/passwd");
    assert_ne!(container_passwd, std::fs::read_to_string("/etc/passwd").unwrap(), "the test needs them to differ");

    // Out: a file to a new name, with its owner and mode.
    let out_file = host.path().join("out.txt");
    ok(&d.ctl(&["cp", &format!("{name}:/srv/data/sub/file"), out_file.to_str().unwrap()]), "cp out a file");
    assert_eq!(std::fs::read_to_string(&out_file).unwrap(), "hello\n");
    let m = std::fs::metadata(&out_file).unwrap();
    assert_eq!((m.mode() & 0o7777, m.uid(), m.gid()), (0o640, 123, 456));

    // Out: a directory into an existing one, under its own name.
    ok(&d.ctl(&["cp", &format!("{name}:/srv/data"), host.path().to_str().unwrap()]), "cp out a directory");
    assert_eq!(std::fs::read_to_string(host.path().join("data/sub/file")).unwrap(), "hello\n");

    // Out, through links: always the container's files.
    let leaked = host.path().join("passwd");
    ok(&d.ctl(&["cp", "-L", &format!("{name}:/leak"), leaked.to_str().unwrap()]), "cp -L out a link");
    assert_eq!(std::fs::read_to_string(&leaked).unwrap(), container_passwd);
    let via_root = host.path().join("passwd2");
    ok(&d.ctl(&["cp", &format!("{name}:/rootlink/etc/passwd"), via_root.to_str().unwrap()]), "cp out via a link");
    assert_eq!(std::fs::read_to_string(&via_root).unwrap(), container_passwd);
    // Without -L the link itself is copied, not what it names.
    let link = host.path().join("leak");
    ok(&d.ctl(&["cp", &format!("{name}:/leak"), link.to_str().unwrap()]), "cp out a link itself");
    assert_eq!(std::fs::read_link(&link).unwrap(), Path::new("/etc/passwd"));

    // Out as a tar stream.
    let out = d.ctl(&["cp", &format!("{name}:/srv/data"), "-"]);
    ok(&out, "cp out to -");
    let names = names_in_tar(&out.stdout);
    assert!(names.contains(&"data/".to_string()) && names.contains(&"data/sub/file".to_string()), "{names:?}");

    // In: a file into a directory, a directory as a new name.
    let in_file = host.path().join("in.txt");
    std::fs::write(&in_file, "from the host\n").unwrap();
    ok(&d.ctl(&["cp", in_file.to_str().unwrap(), &format!("{name}:/tmp/")]), "cp in a file");
    assert_eq!(cat(&d, &name, "/tmp/in.txt"), "from the host\n");
    let tree = host.path().join("tree");
    std::fs::create_dir_all(tree.join("a")).unwrap();
    std::fs::write(tree.join("a/b"), "deep\n").unwrap();
    std::fs::set_permissions(tree.join("a/b"), std::fs::Permissions::from_mode(0o604)).unwrap();
    std::os::unix::fs::chown(tree.join("a/b"), Some(7), Some(8)).unwrap();
    ok(&d.ctl(&["cp", tree.to_str().unwrap(), &format!("{name}:/srv/newdir")]), "cp in a directory");
    assert_eq!(cat(&d, &name, "/srv/newdir/a/b"), "deep\n");
    let st = d.ctl(&["exec", &name, "--", "stat", "-c", "%a %u %g", "/srv/newdir/a/b"]);
    assert_eq!(text(&st.stdout).trim(), "604 7 8");

    // In: a tar stream on standard input, into a directory.
    let mut tar = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(9);
    h.set_mode(0o600);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(1_700_000_000);
    h.set_cksum();
    tar.append_data(&mut h, "streamed.txt", &b"streamed\n"[..]).unwrap();
    let bytes = tar.into_inner().unwrap();
    ok(&ctl_with_input(&d, &["cp", "-", &format!("{name}:/tmp")], &bytes), "cp in from -");
    assert_eq!(cat(&d, &name, "/tmp/streamed.txt"), "streamed\n");

    // In, through a link that names a host directory: the container's
    // directory of that path gets the file, the host's stays empty.
    ok(&d.ctl(&["cp", in_file.to_str().unwrap(), &format!("{name}:/hostlink/")]), "cp in via a link");
    assert_eq!(cat(&d, &name, &format!("{}/in.txt", shared.display())), "from the host\n");
    assert_eq!(std::fs::read_dir(&shared).unwrap().count(), 0, "written into the host's directory");

    // Errors name what is wrong.
    let missing = d.ctl(&["cp", &format!("{name}:/no/such"), host.path().to_str().unwrap()]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(text(&missing.stderr).contains("no such file or directory"), "{}", text(&missing.stderr));
    let unknown = d.ctl(&["cp", "nosuchunit:/etc/passwd", host.path().to_str().unwrap()]);
    assert!(text(&unknown.stderr).contains("no unit named"), "{}", text(&unknown.stderr));
    let mut buf = String::new();
    std::fs::File::open(&out_file).unwrap().read_to_string(&mut buf).unwrap();
    assert_eq!(buf, "hello\n");
}

#[test]
fn commit_makes_an_image_that_a_unit_runs_with_the_containers_files() {
    root_only!("commit_makes_an_image_that_a_unit_runs_with_the_containers_files");
    let d = Daemon::start();
    let name = common::unique_name("cm");
    d.write_unit(
        &name,
        &unit("echo committed > /etc/motd-new; rm /etc/group; mkdir -p /srv/app; echo app > /srv/app/file; echo ready; sleep 100000 & wait"),
    );
    d.wait_log(&name, None, "ready");
    let reference = format!("localhost/{name}:v1");
    let cmd = r#"CMD ["sh", "-c", "cat /etc/motd-new /srv/app/file; echo env=$FROM_COMMIT; test -e /etc/group || echo no-group; echo up; sleep 100000 & wait"]"#;
    let out =
        d.ctl(&["commit", "-c", "ENV FROM_COMMIT=yes", "-c", cmd, "-c", "LABEL made=by-commit", &name, &reference]);
    ok(&out, "commit");
    let id = text(&out.stdout).trim().to_string();
    assert!(id.starts_with("sha256:"), "{id}");
    // The committed container was paused for the walk, and runs on.
    ok(&d.ctl(&["exec", &name, "--", "true"]), "exec after commit");
    let images: serde_json::Value = serde_json::from_slice(&d.ctl(&["images", "--json"]).stdout).unwrap();
    let listed = images.as_array().unwrap().iter().find(|i| i["reference"] == reference).cloned();
    assert_eq!(listed.as_ref().map(|i| i["manifest_digest"].clone()), Some(serde_json::json!(id)), "{images}");

    // A unit of the new image sees the container's files, its deletion,
    // and the config changes.
    let second = common::unique_name("cm2");
    d.write_unit(&second, &format!("[container]\nimage = \"{reference}\"\npull = \"never\"\n"));
    let log = d.wait_log(&second, None, "up");
    for want in ["committed", "app", "env=yes", "no-group"] {
        assert!(log.contains(want), "no {want:?} in the log of the committed image's unit:\n{log}");
    }
    let inspect = d.ctl(&["exec", &second, "--", "cat", "/srv/app/file"]);
    assert_eq!(text(&inspect.stdout), "app\n");

    // Errors: a change that is not an instruction, a unit that is not there.
    let bad = d.ctl(&["commit", "-c", "RUN make", &name, "localhost/x:1"]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(text(&bad.stderr).contains("RUN: not an instruction"), "{}", text(&bad.stderr));
    let unknown = d.ctl(&["commit", "nosuchunit", "localhost/x:1"]);
    assert!(text(&unknown.stderr).contains("no unit named"), "{}", text(&unknown.stderr));
}
