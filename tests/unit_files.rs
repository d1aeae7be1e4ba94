//! The unit file format as a user meets it: a corpus of invalid files with
//! the exact message and location each must produce, sets of files with
//! cross-unit errors, and files that are broken in every way a file can be.

use std::fs;
use std::path::{Path, PathBuf};

use supervisor::units::{Diagnostic, load_dir, load_files};

fn short(d: &Diagnostic) -> String {
    let name = d.file.file_name().unwrap().to_string_lossy();
    match (d.line, d.column) {
        (Some(l), Some(c)) => format!("{name}:{l}:{c}: {}", d.message),
        _ => format!("{name}: {}", d.message),
    }
}

fn corpus(dir: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    assert!(files.len() > 40, "the corpus in {dir} is missing");
    files
}

/// Each file ends with `# expect: FILE:LINE:COL: MESSAGE` comments: every
/// error it must produce, in order, and no other.
#[test]
fn invalid_corpus_gives_exact_messages_and_locations() {
    let mut failures = Vec::new();
    for path in corpus("tests/units/invalid") {
        let text = fs::read_to_string(&path).unwrap();
        let expected: Vec<String> =
            text.lines().filter_map(|l| l.strip_prefix("# expect: ")).map(str::to_string).collect();
        assert!(!expected.is_empty(), "{} has no expectations", path.display());
        let set = load_files(std::slice::from_ref(&path));
        let actual: Vec<String> = set.errors.iter().map(short).collect();
        if actual != expected {
            failures.push(format!("{}:\n  expected {expected:#?}\n  actual   {actual:#?}", path.display()));
        }
        assert!(set.units.is_empty(), "{} was accepted", path.display());
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn cross_unit_sets_give_exact_errors() {
    for case in ["cycle", "missing-dependency", "port-conflict", "names-and-ignored", "good"] {
        let dir = Path::new("tests/units/sets").join(case);
        let expected: Vec<String> =
            fs::read_to_string(dir.join("expect.txt")).unwrap().lines().map(str::to_string).collect();
        let set = load_dir(&dir).unwrap();
        let actual: Vec<String> = set.errors.iter().map(short).collect();
        assert_eq!(actual, expected, "{case}");
    }
}

#[test]
fn cross_unit_errors_make_exactly_those_units_invalid() {
    let names = |case: &str| -> Vec<String> {
        load_dir(&Path::new("tests/units/sets").join(case)).unwrap().units.iter().map(|u| u.unit.name.clone()).collect()
    };
    assert_eq!(names("cycle"), ["d"]);
    assert_eq!(names("port-conflict"), ["a"]);
    assert_eq!(names("good"), ["db", "web"]);
    assert_eq!(names("missing-dependency"), Vec::<String>::new());
    // Hidden, backup, swap and non-.toml files are not units.
    assert_eq!(names("names-and-ignored"), ["ok"]);
}

#[test]
fn one_bad_file_never_hides_the_good_ones() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("good.toml"), "[container]\nimage = \"busybox\"\n").unwrap();
    fs::write(dir.path().join("bad.toml"), "[container\n").unwrap();
    let set = load_dir(dir.path()).unwrap();
    assert_eq!(set.units.len(), 1);
    assert_eq!(set.units[0].unit.name, "good");
    assert_eq!(set.errors.len(), 1);
    assert!(set.errors[0].file.ends_with("bad.toml"));
    assert!(set.files.contains_key("bad"), "an invalid unit still exists by name");
}

/// Files broken in ways no editor makes: each gives an error on that file,
/// and none panics, hangs or reads without bound.
#[test]
fn hostile_files_are_errors_not_crashes() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    fs::write(d.join("garbage.toml"), (0..=255u8).cycle().take(4096).collect::<Vec<u8>>()).unwrap();
    fs::write(d.join("latin1.toml"), b"[unit]\ndescription = \"caf\xe9\"\n").unwrap();
    fs::write(d.join("huge.toml"), vec![b'#'; 10 << 20]).unwrap();
    let nested =
        format!("[container]\nimage = \"busybox\"\nenv = {{ A = {}{} }}\n", "[".repeat(5000), "]".repeat(5000));
    fs::write(d.join("nested.toml"), nested).unwrap();
    let tables: String = (0..5000).map(|i| format!("[t{i}.a.b.c]\n")).collect();
    fs::write(d.join("tables.toml"), tables).unwrap();
    std::os::unix::fs::symlink("loop-b.toml", d.join("loop-a.toml")).unwrap();
    std::os::unix::fs::symlink("loop-a.toml", d.join("loop-b.toml")).unwrap();
    std::os::unix::fs::symlink("nowhere.toml", d.join("dangling.toml")).unwrap();
    std::os::unix::fs::symlink("/dev/zero", d.join("zero.toml")).unwrap();
    fs::create_dir(d.join("adir.toml")).unwrap();
    let fifo = std::ffi::CString::new(d.join("fifo.toml").into_os_string().into_encoded_bytes()).unwrap();
    // SAFETY: mkfifo reads a valid NUL-terminated path and nothing else.
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o644) }, 0);

    let set = load_dir(d).unwrap();
    assert!(set.units.is_empty());
    let message = |name: &str| -> String {
        let errs: Vec<&Diagnostic> = set.errors.iter().filter(|e| e.file.ends_with(name)).collect();
        assert!(!errs.is_empty(), "no error for {name}: {:#?}", set.errors);
        errs.iter().map(|e| e.message.as_str()).collect::<Vec<_>>().join("\n")
    };
    assert!(message("garbage.toml").contains("not valid UTF-8"));
    let latin1 = set.errors.iter().find(|e| e.file.ends_with("latin1.toml")).unwrap();
    assert_eq!((latin1.line, latin1.column), (Some(2), Some(19)), "points at the bad byte");
    assert!(message("huge.toml").contains("too large"));
    assert!(message("nested.toml").contains("recursion"));
    assert!(message("tables.toml").contains("unknown section [t0]"));
    assert!(message("loop-a.toml").contains("symbolic link loop"));
    assert!(message("dangling.toml").contains("dangling symbolic link"));
    assert!(message("zero.toml").contains("not a regular file"));
    assert!(message("adir.toml").contains("not a regular file"));
    assert!(message("fifo.toml").contains("not a regular file"));
}

#[test]
fn unreadable_directory_is_an_error_of_the_call() {
    let err = load_dir(Path::new("/nonexistent/units.d")).expect_err("a missing directory is an error");
    assert_eq!(err.kind(), std::io::ErrorKind::NotFound, "{err}");
}

/// A unit is root-equivalent: a file, env file or directory that others
/// could write makes the unit invalid, and says why.
#[test]
fn files_others_can_write_are_refused() {
    use std::os::unix::fs::PermissionsExt;
    let chmod = |p: &Path, m: u32| fs::set_permissions(p, fs::Permissions::from_mode(m)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    chmod(d, 0o755);
    let body = "[container]\nimage = \"busybox\"\n";
    for name in ["good", "bad"] {
        fs::write(d.join(format!("{name}.toml")), body).unwrap();
        chmod(&d.join(format!("{name}.toml")), 0o644);
    }
    chmod(&d.join("bad.toml"), 0o664);
    fs::write(d.join("app.env"), "A=1\n").unwrap();
    chmod(&d.join("app.env"), 0o646);
    fs::write(d.join("env.toml"), format!("{body}env_file = \"app.env\"\n")).unwrap();
    chmod(&d.join("env.toml"), 0o644);
    let set = load_dir(d).unwrap();
    assert_eq!(set.units.iter().map(|u| u.unit.name.as_str()).collect::<Vec<_>>(), ["good"]);
    let errors: Vec<String> = set.errors.iter().map(short).collect();
    assert_eq!(errors.len(), 2, "{errors:#?}");
    assert!(
        errors[0].starts_with("bad.toml: refused: it is group-writable (mode 0664), and a unit is root-equivalent")
    );
    assert!(errors[1].starts_with("env.toml:3:12: cannot read env_file"), "{errors:#?}");
    assert!(errors[1].contains("app.env\": refused: it is world-writable (mode 0646)"), "{errors:#?}");
    assert!(set.files.contains_key("bad"), "a refused unit is still known by name");

    // The directory: every unit in it.
    chmod(d, 0o777);
    let set = load_dir(d).unwrap();
    assert!(set.units.is_empty());
    assert_eq!(set.errors.len(), 3);
    let msg = format!(
        "good.toml: refused: the directory {} that holds this unit file can be written by others: it is group- and world-writable (mode 0777)",
        d.display()
    );
    assert!(set.errors.iter().map(short).any(|e| e.starts_with(&msg)), "{:#?}", set.errors);

    // A unit file that is a link into a directory others can write: they
    // can replace the file it points to, so it is refused too.
    chmod(d, 0o755);
    let elsewhere = dir.path().join("elsewhere");
    fs::create_dir(&elsewhere).unwrap();
    fs::write(elsewhere.join("linked.toml"), body).unwrap();
    chmod(&elsewhere.join("linked.toml"), 0o644);
    std::os::unix::fs::symlink(elsewhere.join("linked.toml"), d.join("linked.toml")).unwrap();
    chmod(&elsewhere, 0o755);
    let set = load_dir(d).unwrap();
    assert!(set.units.iter().any(|u| u.unit.name == "linked"), "{:#?}", set.errors);
    chmod(&elsewhere, 0o777);
    let set = load_dir(d).unwrap();
    assert!(!set.units.iter().any(|u| u.unit.name == "linked"));
    let msg = format!(
        "linked.toml: refused: the directory {} that holds the file this unit file links to can be written by others",
        elsewhere.display()
    );
    assert!(set.errors.iter().map(short).any(|e| e.starts_with(&msg)), "{:#?}", set.errors);
}

/// A unit as a rescan test compares it: name, hash, command, env file.
type Seen = (String, String, Option<Vec<String>>, Vec<(String, String)>);

/// The daemon's rescans parse only the files whose text changed: what
/// they load must be what a fresh load of the directory gives, after any
/// edit, including two writes of a file within one time stamp and an edit
/// of an `env_file` (whose unit's text does not change).
#[test]
fn a_rescan_that_keeps_parses_loads_what_a_fresh_load_does() {
    use supervisor::units::{ParseCache, load_dir_cached};
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let unit = |cmd: &str| format!("[container]\nimage = \"busybox\"\ncommand = [\"sleep\", \"{cmd}\"]\n");
    fs::write(d.join("a.toml"), unit("1")).unwrap();
    fs::write(d.join("b.toml"), "[container\n").unwrap();
    fs::write(d.join("c.toml"), "[container]\nimage = \"busybox\"\nenv_file = \"c.env\"\n").unwrap();
    fs::write(d.join("c.env"), "GREETING=hello\n").unwrap();
    let mut cache = ParseCache::default();
    let seen = |cache: &mut ParseCache| {
        let cached = load_dir_cached(d, cache).unwrap();
        let fresh = load_dir(d).unwrap();
        let view = |s: &supervisor::units::UnitSet| {
            let units: Vec<Seen> = s
                .units
                .iter()
                .map(|u| {
                    let env = u.unit.container.env_file_vars.clone().into_iter().collect();
                    (u.unit.name.clone(), u.hash.clone(), u.unit.container.command.clone(), env)
                })
                .collect();
            (units, s.errors.iter().map(short).collect::<Vec<_>>())
        };
        assert_eq!(view(&cached), view(&fresh));
        view(&cached)
    };
    let (units, errors) = seen(&mut cache);
    assert_eq!(units.iter().map(|u| u.0.as_str()).collect::<Vec<_>>(), ["a", "c"]);
    assert_eq!(errors.len(), 1, "{errors:?}");
    // a and b are kept; c read its env file, so it is parsed every time.
    assert_eq!(cache.len(), 2);
    // Two writes in a row, of the same length: no time stamp tells them
    // apart, the text does.
    fs::write(d.join("a.toml"), unit("2")).unwrap();
    let (units, _) = seen(&mut cache);
    assert_eq!(units[0].2.as_deref(), Some(&["sleep".to_string(), "2".to_string()][..]));
    fs::write(d.join("a.toml"), unit("3")).unwrap();
    let (units, _) = seen(&mut cache);
    assert_eq!(units[0].2.as_deref(), Some(&["sleep".to_string(), "3".to_string()][..]));
    // The env file changes, its unit's file does not.
    fs::write(d.join("c.env"), "GREETING=bye\n").unwrap();
    let (units, _) = seen(&mut cache);
    assert_eq!(units[1].3, [("GREETING".to_string(), "bye".to_string())]);
    // The broken file mended, then a file removed: its parse is dropped.
    fs::write(d.join("b.toml"), unit("4")).unwrap();
    let (units, errors) = seen(&mut cache);
    assert_eq!(units.iter().map(|u| u.0.as_str()).collect::<Vec<_>>(), ["a", "b", "c"]);
    assert!(errors.is_empty(), "{errors:?}");
    fs::remove_file(d.join("a.toml")).unwrap();
    let (units, _) = seen(&mut cache);
    assert_eq!(units.iter().map(|u| u.0.as_str()).collect::<Vec<_>>(), ["b", "c"]);
    assert_eq!(cache.len(), 1);
}
