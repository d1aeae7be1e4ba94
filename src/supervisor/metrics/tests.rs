//! The exposition as a scraper reads it, from made-up samples and
//! readings (no daemon, no root), and the readings from a made-up cgroup
//! and `/proc`.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use super::*;
use crate::health::Health;
use crate::runtime::cgroups::Cgroup;
use crate::supervisor::engine::UnitSample;
use crate::supervisor::policy::lifecycle::State;
use crate::supervisor::policy::update::UpdateState;

const NOW: Duration = Duration::from_secs(1_800_000_000);

fn sample(name: &str, state: State) -> UnitSample {
    UnitSample {
        name: name.into(),
        state,
        health: None,
        restarts: 0,
        last_exit_code: None,
        oom_kills: 0,
        started_at: None,
        update_state: None,
        cgroup: None,
        netns_pid: None,
    }
}

fn units() -> Units {
    let web = UnitSample {
        health: Some(Health::Healthy),
        restarts: 3,
        last_exit_code: Some(137),
        oom_kills: 1,
        started_at: Some(SystemTime::UNIX_EPOCH + NOW - Duration::from_secs(90)),
        ..sample("web", State::Running)
    };
    let reading = Reading {
        cpu_seconds: Some(1.5),
        memory_bytes: Some(1000),
        memory_limit_bytes: Some(2048),
        pids: Some(2),
        network: Some((10, 20)),
    };
    let db = UnitSample { update_state: Some(UpdateState::RolledBack), ..sample("db", State::Failed) };
    Units { units: vec![(web, reading), (db, Reading::default())], now: SystemTime::UNIX_EPOCH + NOW }
}

fn lines(text: &str) -> Vec<&str> {
    text.lines().collect()
}

#[test]
fn every_unit_has_one_series_per_state_and_its_figures() {
    let text = exposition(units(), &Counters::default(), true);
    let l = lines(&text);
    for want in [
        "supervisor_unit_state{unit=\"web\",state=\"running\"} 1",
        "supervisor_unit_state{unit=\"web\",state=\"failed\"} 0",
        "supervisor_unit_state{unit=\"db\",state=\"failed\"} 1",
        "supervisor_units{state=\"running\"} 1",
        "supervisor_units{state=\"failed\"} 1",
        "supervisor_units{state=\"inactive\"} 0",
        "# TYPE supervisor_unit_restarts counter",
        "supervisor_unit_restarts_total{unit=\"web\"} 3",
        "supervisor_unit_restarts_total{unit=\"db\"} 0",
        "supervisor_unit_oom_kills_total{unit=\"web\"} 1",
        "supervisor_unit_last_exit_code{unit=\"web\"} 137",
        "supervisor_unit_health{unit=\"web\",health=\"healthy\"} 1",
        "supervisor_unit_health{unit=\"web\",health=\"unhealthy\"} 0",
        "supervisor_unit_update_state{unit=\"db\",state=\"rolled-back\"} 1",
        "supervisor_unit_update_state{unit=\"web\",state=\"in-progress\"} 0",
        "supervisor_unit_uptime_seconds{unit=\"web\"} 90.0",
        "# UNIT supervisor_unit_cpu_seconds seconds",
        "supervisor_unit_cpu_seconds_total{unit=\"web\"} 1.5",
        "supervisor_unit_memory_bytes{unit=\"web\"} 1000",
        "supervisor_unit_memory_limit_bytes{unit=\"web\"} 2048",
        "supervisor_unit_pids{unit=\"web\"} 2",
        "supervisor_unit_network_receive_bytes_total{unit=\"web\"} 10",
        "supervisor_unit_network_transmit_bytes_total{unit=\"web\"} 20",
        "supervisor_build_info{version=\"0.1.0\"} 1",
    ] {
        assert!(l.contains(&want), "no {want:?} in:\n{text}");
    }
    let states = l.iter().filter(|x| x.starts_with("supervisor_unit_state{unit=\"web\"")).count();
    assert_eq!(states, State::ALL.len());
    // Nothing is made up for a unit without a container, health or exit.
    for absent in
        ["_health{unit=\"db\"", "_exit_code{unit=\"db\"", "_memory_bytes{unit=\"db\"", "_uptime_seconds{unit=\"db\""]
    {
        assert!(!text.contains(absent), "{absent} in:\n{text}");
    }
    assert_eq!(l.last(), Some(&"# EOF"));
}

#[test]
fn the_daemon_counts_passes_pulls_and_reloads() {
    let counters = Counters::default();
    counters.reconciled(Duration::from_millis(2));
    counters.pulled(true);
    counters.counting(&crate::runtime::image::Quiet).layer_bytes(&digest(), 100);
    counters.reloaded(SystemTime::UNIX_EPOCH + Duration::from_secs(1000));
    let empty = Units { units: Vec::new(), now: SystemTime::UNIX_EPOCH + NOW };
    let text = exposition(empty, &counters, true);
    let l = lines(&text);
    for want in [
        "supervisor_reconcile_duration_seconds_count 1",
        "supervisor_reconcile_duration_seconds_bucket{le=\"0.001\"} 0",
        "supervisor_reconcile_duration_seconds_bucket{le=\"0.0025\"} 1",
        "supervisor_image_pulls_total{result=\"success\"} 1",
        "supervisor_image_pulls_total{result=\"failure\"} 0",
        "supervisor_image_pulled_bytes_total 100",
        "supervisor_last_reload_success_timestamp_seconds 1000.0",
        "supervisor_units{state=\"running\"} 0",
    ] {
        assert!(l.contains(&want), "no {want:?} in:\n{text}");
    }
    assert!(!text.contains("supervisor_unit_state"), "{text}");
}

#[test]
fn without_openmetrics_the_prometheus_text_format() {
    let text = exposition(units(), &Counters::default(), false);
    let l = lines(&text);
    assert!(l.contains(&"# TYPE supervisor_unit_restarts_total counter"), "{text}");
    assert!(l.contains(&"supervisor_unit_restarts_total{unit=\"web\"} 3"), "{text}");
    assert!(!text.contains("# EOF"), "{text}");
}

fn digest() -> crate::runtime::image::Digest {
    crate::runtime::image::Digest::parse(&format!("sha256:{}", "a".repeat(64))).unwrap()
}

#[test]
fn readings_come_from_the_cgroup_and_the_network_namespace() {
    let dir = tempfile::tempdir().unwrap();
    let cg = dir.path().join("cg");
    std::fs::create_dir(&cg).unwrap();
    for (file, text) in [
        ("cpu.stat", "usage_usec 2500000\nuser_usec 2000000\n"),
        ("memory.current", "10485760\n"),
        ("memory.stat", "anon 1\ninactive_file 4194304\n"),
        ("memory.max", "268435456\n"),
        ("pids.current", "3\n"),
    ] {
        std::fs::write(cg.join(file), text).unwrap();
    }
    let proc = dir.path().join("proc");
    std::fs::create_dir_all(proc.join("42/net")).unwrap();
    std::fs::write(
        proc.join("42/net/dev"),
        "Inter-|   Receive                                                |  Transmit\n \
         face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n    \
         lo:     500       5    0    0    0     0          0         0      500       5    0    0    0     0       0          0\n  \
         eth0:    1234      10    0    0    0     0          0         0     5678      20    0    0    0     0       0          0\n",
    )
    .unwrap();
    let unit =
        UnitSample { cgroup: Some(Cgroup::V2(cg.clone())), netns_pid: Some(42), ..sample("web", State::Running) };
    let r = read(&unit, &proc);
    assert_eq!(
        r,
        Reading {
            cpu_seconds: Some(2.5),
            memory_bytes: Some(6 << 20),
            memory_limit_bytes: Some(256 << 20),
            pids: Some(3),
            network: Some((1234, 5678)),
        }
    );
    std::fs::write(cg.join("memory.max"), "max\n").unwrap();
    let host = UnitSample { netns_pid: None, ..unit };
    let r = read(&host, &proc);
    assert_eq!((r.memory_limit_bytes, r.network), (None, None));
    let gone = read(&sample("x", State::Exited), &PathBuf::from("/nonexistent"));
    assert_eq!(gone, Reading::default());
}

/// A scraper that hammers the listener asks the engine at most once per
/// [`serve::SAMPLE_REUSE`]: 40 scrapes, 8 at once, against an engine
/// that counts its `Sample`s; a later state is seen once the sample is
/// older than that.
#[tokio::test]
async fn scrapes_share_the_engines_sample_however_many_come() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use crate::supervisor::engine::{Command, Event};

    let listener = serve::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let asked = Arc::new(AtomicU32::new(0));
    let counted = asked.clone();
    tokio::spawn(async move {
        while let Some(event) = rx.recv().await {
            if let Event::Command(Command::Sample(reply)) = event {
                let n = counted.fetch_add(1, Ordering::SeqCst);
                let state = if n == 0 { State::Running } else { State::Exited };
                let _ = reply.send(vec![sample("web", state)]);
            }
        }
    });
    let server = tokio::spawn(serve(listener, tx, Counters::default()));
    let scrape = || async move {
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
        let mut text = String::new();
        s.read_to_string(&mut text).await.unwrap();
        text
    };
    let began = std::time::Instant::now();
    let mut texts = Vec::new();
    for _ in 0..5 {
        let batch: Vec<_> = (0..8).map(|_| tokio::spawn(scrape())).collect();
        for b in batch {
            texts.push(b.await.unwrap());
        }
    }
    let took = began.elapsed();
    let asks = asked.load(Ordering::SeqCst);
    let bound = took.as_secs() as u32 / serve::SAMPLE_REUSE.as_secs() as u32 + 1;
    assert!(asks <= bound, "{asks} samples for 40 scrapes in {took:?}");
    assert!(texts.iter().all(|t| t.starts_with("HTTP/1.1 200") && t.contains("unit=\"web\"")));
    // A sample older than SAMPLE_REUSE is taken again.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !scrape().await.contains("supervisor_unit_state{unit=\"web\",state=\"exited\"} 1") {
        assert!(std::time::Instant::now() < deadline, "the new state is never scraped");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    server.abort();
}
