//! The tests of `logs.rs`: rotation, torn records, a failing log, and a
//! unit's containers sharing one log.

use super::*;

#[test]
fn rotation_keeps_whole_lines_and_the_newest_files() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("u.log");
    let mut w = Writer::open(path.clone(), Limits::new(100, 3)).unwrap();
    for i in 0..40 {
        w.write_record(format!("line {i:04} ....................\n").as_bytes()).unwrap();
    }
    let mut names: Vec<String> =
        fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    names.sort();
    assert_eq!(names, ["u.log", "u.log.1", "u.log.2"]);
    let mut seen = Vec::new();
    for f in ["u.log.2", "u.log.1", "u.log"] {
        let text = fs::read_to_string(dir.path().join(f)).unwrap();
        assert!(text.len() <= 100, "{f} is {} bytes", text.len());
        for l in text.lines() {
            assert!(l.starts_with("line ") && l.ends_with('.'), "split line {l:?}");
            seen.push(l[5..9].parse::<u32>().unwrap());
        }
    }
    // The newest lines, in order, none missing.
    assert_eq!(*seen.last().unwrap(), 39);
    assert!(seen.windows(2).all(|w| w[1] == w[0] + 1), "{seen:?}");
    let last = tail(dir.path(), "u", Some(3), None, 3);
    assert_eq!(last.len(), 3);
    assert!(String::from_utf8_lossy(&last[2]).starts_with("line 0039"));
}

#[tokio::test]
async fn long_lines_are_cut_into_pieces() {
    let mut data = vec![b'x'; MAX_LINE * 2 + 10];
    data.extend_from_slice(b"\nshort\nlast");
    let mut lines = Lines::new("stdout", &data[..]);
    let mut sizes = Vec::new();
    while lines.ready().await {
        assert!(lines.take(|l| sizes.push(l.len())));
    }
    assert_eq!(sizes, [MAX_LINE, MAX_LINE, 10, 5, 4]);
}

#[test]
fn a_half_record_left_by_a_crash_is_cut_at_the_next_open() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("u.log");
    fs::write(&path, "2026-11-30T12:00:00.000000Z stdout whole\n2026-11-30T12:00:00.000001Z stdout ha").unwrap();
    let mut w = Writer::open(path.clone(), Limits::new(1 << 20, 3)).unwrap();
    w.write_record(b"2026-11-30T12:00:01.000000Z stdout next\n").unwrap();
    let text = fs::read_to_string(&path).unwrap();
    assert_eq!(text, "2026-11-30T12:00:00.000000Z stdout whole\n2026-11-30T12:00:01.000000Z stdout next\n");
    // No whole line at all: nothing is kept.
    fs::write(&path, "2026-11-30T12:00:00.0000").unwrap();
    drop(Writer::open(path.clone(), Limits::new(1 << 20, 3)).unwrap());
    assert_eq!(fs::read(&path).unwrap(), b"");
}

#[test]
fn a_log_that_cannot_be_written_resumes_once_it_can() {
    let dir = tempfile::tempdir().unwrap();
    // The log's directory cannot be made while a file has its name.
    let blocker = dir.path().join("logs");
    fs::write(&blocker, "").unwrap();
    let path = blocker.join("u.log");
    let mut w = Writer::closed(path.clone(), Limits::new(1 << 20, 3));
    assert!(w.write_record(b"lost\n").is_err());
    fs::remove_file(&blocker).unwrap();
    w.write_record(b"kept\n").unwrap();
    assert_eq!(fs::read_to_string(&path).unwrap(), "kept\n");
}

#[tokio::test]
async fn lines_the_log_cannot_take_are_drained_and_counted() {
    use std::os::fd::OwnedFd;
    let dir = tempfile::tempdir().unwrap();
    let blocker = dir.path().join("logs");
    fs::write(&blocker, "").unwrap();
    let hub = Hub::default();
    let writer = hub.writer("u", blocker.join("u.log"), Limits::new(1 << 20, 3));
    let (out_r, out_w): (OwnedFd, OwnedFd) = nix::unistd::pipe().unwrap();
    let (err_r, err_w): (OwnedFd, OwnedFd) = nix::unistd::pipe().unwrap();
    drop(err_w);
    let task = tokio::spawn(copy("u".into(), File::from(out_r), File::from(err_r), writer, hub.clone()));
    // More than a pipe holds: the writer would block if nobody read.
    let producer = std::thread::spawn(move || {
        let mut out = File::from(out_w);
        for i in 0..20_000 {
            writeln!(out, "line {i:05} of the flood").unwrap();
        }
    });
    task.await.unwrap();
    producer.join().unwrap();
    assert_eq!(hub.dropped("u"), 20_000);
    assert_eq!(hub.dropped("other"), 0);
}

/// Two containers of one unit (a start-first update) write the unit's
/// one log at once, through rotations: every record is whole, none is
/// lost, each container's in its order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_containers_of_a_unit_share_its_log_and_their_lines_interleave_whole() {
    use std::os::fd::OwnedFd;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("u.log");
    let hub = Hub::default();
    // Each container with its own limits (a [logs] edit changes the
    // new one's): each record rotates by its container's.
    let (old_limits, new_limits) = (Limits::new(1 << 20, 50), Limits::new(1 << 20, 50));
    let first = hub.writer("u", path.clone(), old_limits.clone());
    let second = hub.writer("u", path.clone(), new_limits.clone());
    assert!(Arc::ptr_eq(&first.writer, &second.writer), "one writer per unit while its containers run");
    new_limits.set(64 * 1024, 50);
    let mut tasks = Vec::new();
    let mut producers = Vec::new();
    for (who, writer) in [("old", first), ("new", second)] {
        let (out_r, out_w): (OwnedFd, OwnedFd) = nix::unistd::pipe().unwrap();
        let (err_r, err_w): (OwnedFd, OwnedFd) = nix::unistd::pipe().unwrap();
        drop(err_w);
        tasks.push(tokio::spawn(copy("u".into(), File::from(out_r), File::from(err_r), writer, hub.clone())));
        producers.push(std::thread::spawn(move || {
            let mut out = File::from(out_w);
            for i in 0..5_000 {
                writeln!(out, "{who} {i:05} {}", "x".repeat(i % 200)).unwrap();
            }
        }));
    }
    for p in producers {
        p.join().unwrap();
    }
    for t in tasks {
        t.await.unwrap();
    }
    let mut next = HashMap::from([("old", 0usize), ("new", 0usize)]);
    for record in tail(dir.path(), "u", None, None, 50) {
        let text = String::from_utf8(record).unwrap();
        let mut words = text.trim_end_matches('\n').split(' ');
        let (_, stream) = (words.next(), words.next());
        let (who, i, pad) = (words.next().unwrap(), words.next().unwrap(), words.next().unwrap_or(""));
        assert_eq!(stream, Some("stdout"), "{text:?}");
        let i: usize = i.parse().unwrap_or_else(|_| panic!("cut record {text:?}"));
        let count = next.get_mut(who).unwrap_or_else(|| panic!("cut record {text:?}"));
        assert_eq!((i, pad.len()), (*count, *count % 200), "{text:?}");
        *count += 1;
    }
    assert_eq!(next, HashMap::from([("old", 5_000), ("new", 5_000)]));
    assert!(dir.path().join("u.log.1").exists(), "the test meant to rotate");
    // Both copies ended: the writer is closed, a restart opens anew.
    assert!(hub.writers.lock().unwrap().get("u").is_none_or(|w| w.strong_count() == 0));
}
