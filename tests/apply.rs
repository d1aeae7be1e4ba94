//! Units managed over the control path, as root with a real daemon:
//! `supervisorctl apply`, `remove` and `cat`, and what they refuse.

mod common;

use std::fs;

use common::daemon::{Daemon, alive, busybox};
use common::text;

fn sleeper(extra: &str) -> String {
    format!(
        "{extra}[container]\nimage = \"{}\"\ncommand = [\"sh\", \"-c\", \"trap 'exit 0' TERM; sleep 100000 & wait\"]\n",
        busybox()
    )
}

#[test]
fn apply_writes_checked_files_and_remove_takes_them_away() {
    root_only!("apply_writes_checked_files_and_remove_takes_them_away");
    let d = Daemon::start();
    let (db, web) = (common::unique_name("apdb"), common::unique_name("apweb"));
    let mine = tempfile::tempdir().unwrap();
    let write = |name: &str, body: &str| {
        let p = mine.path().join(format!("{name}.toml"));
        fs::write(&p, body).unwrap();
        p.to_str().unwrap().to_string()
    };

    // Two new units at once, one requiring the other: both start.
    let db_text = sleeper("");
    let web_text = sleeper(&format!("[unit]\nrequires = [\"{db}\"]\n"));
    write(&db, &db_text);
    write(&web, &web_text);
    let out = d.ctl(&["apply", mine.path().to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let printed = text(&out.stdout);
    assert!(printed.contains(&format!("{db}: start -> running")), "{printed}");
    assert!(printed.contains(&format!("{web}: start -> running")), "{printed}");
    let pid = d.wait_state(&web, "running")["pid"].clone();
    // Written into the daemon's unit directory, as given; `cat` shows it.
    assert_eq!(fs::read_to_string(d.units().join(format!("{web}.toml"))).unwrap(), web_text);
    let cat = d.ctl(&["cat", &web]);
    assert!(cat.status.success(), "{}", text(&cat.stderr));
    assert_eq!(text(&cat.stdout), web_text);

    // A file that does not parse is refused here, with its line; nothing
    // is sent, the running unit keeps its container.
    let bad = write(&web, &format!("{web_text}memroy = \"1G\"\n"));
    let out = d.ctl(&["apply", &bad]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains(&format!("{bad}:6:1")) && err.contains("memroy") && err.contains("nothing applied"), "{err}");
    assert_eq!(fs::read_to_string(d.units().join(format!("{web}.toml"))).unwrap(), web_text);

    // One that parses but does not load in the daemon's directory (it
    // requires a unit that is not there) is refused by the daemon, which
    // names its own file and line.
    let bad = write(&web, &sleeper("[unit]\nrequires = [\"nothere\"]\n"));
    let out = d.ctl(&["apply", &bad]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    let theirs = d.units().join(format!("{web}.toml"));
    assert!(err.contains(&format!("{}:2:", theirs.display())) && err.contains("nothere"), "{err}");
    assert!(err.contains("refused by supervisord: nothing applied"), "{err}");
    assert_eq!(fs::read_to_string(&theirs).unwrap(), web_text);
    assert_eq!(d.unit(&web).unwrap()["pid"], pid);

    // A dry run says what an edit would do and does nothing.
    let edited = write(&web, &web_text.replace("100000", "200000"));
    let out = d.ctl(&["apply", "--dry-run", &edited]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), format!("{web}: restart\n"));
    assert_eq!(fs::read_to_string(&theirs).unwrap(), web_text);
    assert_eq!(d.unit(&web).unwrap()["pid"], pid);

    // Applied, the unit restarts with it.
    let out = d.ctl(&["apply", &edited]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), format!("{web}: restart -> running\n"));
    let now = d.wait_state(&web, "running");
    assert_ne!(now["pid"], pid);
    assert!(!alive(pid.as_i64().unwrap()), "the old container still runs");

    // What a remaining unit requires cannot be removed alone.
    let out = d.ctl(&["remove", &db]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains(&format!("{web}.toml")) && err.contains(&db), "{err}");
    assert!(d.units().join(format!("{db}.toml")).exists());

    // Both together: stopped, their files and containers gone.
    let out = d.ctl(&["remove", &web, &db]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let printed = text(&out.stdout);
    assert!(printed.contains(&format!("{web}: remove -> removed")), "{printed}");
    assert!(printed.contains(&format!("{db}: remove -> removed")), "{printed}");
    assert!(!d.units().join(format!("{web}.toml")).exists());
    assert!(d.unit(&web).is_none() && d.unit(&db).is_none());
    assert!(!alive(now["pid"].as_i64().unwrap()));
    // Nothing of the edits is left in the directory.
    assert_eq!(fs::read_dir(d.units()).unwrap().count(), 0);

    // Unknown units and names that are not unit names.
    let out = d.ctl(&["remove", &db]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains(&format!("no unit file {}", d.units().join(format!("{db}.toml")).display())));
    let out = d.ctl(&["cat", "../etc"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("unit name \"../etc\""), "{}", text(&out.stderr));
}
