//! Random sequences of events against the invariants every sequence must
//! keep: one container per unit at most, held units never start, a
//! dependent never starts before its requirement is ready, shutdown stops
//! dependents before their requirements, removed units end with no
//! container, every wanted unit ends running or says what it waits for, and
//! a paused container is neither signalled nor probed until it is thawed.

use proptest::prelude::*;

use super::*;
use crate::supervisor::policy::Record;
use crate::supervisor::policy::events::OpError;
use crate::units::graph::dependencies;

const NAMES: [&str; 5] = ["a", "b", "c", "d", "e"];

/// The unit files: `a` has a health check, `b` requires it, `c` starts
/// after `b` and restarts on failure only, `d` lives in `a`'s network,
/// `e` stands alone and never restarts. Variant 1 changes the command
/// (a restart), 2 the memory limit (live), 3 is not valid TOML.
fn file(name: &str, variant: u8) -> String {
    let body = match name {
        "a" => unit("[health]\nexec = [\"true\"]\nretries = 1\n"),
        "b" => with_unit("requires = [\"a\"]", ""),
        "c" => with_unit("after = [\"b\"]", "[restart]\npolicy = \"on-failure\"\nlimit = 3\n"),
        "d" => PLAIN.replace("[container]\n", "[container]\nnetwork = \"unit:a\"\n"),
        _ => unit("[restart]\npolicy = \"no\"\n"),
    };
    match variant {
        1 => body.replace("1000", "2000"),
        2 => format!("{body}[resources]\nmemory = \"64M\"\n"),
        3 => "[container\n".into(),
        _ => body,
    }
}

#[derive(Debug, Clone)]
enum Ev {
    /// Which files exist (a bit each) and their variants.
    Reload(u8, [u8; 5]),
    Run(usize),
    Exit(usize, i32),
    FailStart(usize),
    Probe(usize, bool),
    Op(u8, usize),
    /// `pause` (true) or `unpause`.
    Pause(usize, bool),
    Advance(u64),
    Shutdown,
}

fn event() -> impl Strategy<Value = Ev> {
    prop_oneof![
        2 => (any::<u8>(), prop::array::uniform5(0u8..4)).prop_map(|(m, v)| Ev::Reload(m, v)),
        6 => (0..5usize).prop_map(Ev::Run),
        3 => (0..5usize, prop_oneof![Just(0), Just(1), Just(137)]).prop_map(|(i, c)| Ev::Exit(i, c)),
        1 => (0..5usize).prop_map(Ev::FailStart),
        3 => (0..5usize, any::<bool>()).prop_map(|(i, ok)| Ev::Probe(i, ok)),
        2 => (0..3u8, 0..5usize).prop_map(|(o, i)| Ev::Op(o, i)),
        2 => (0..5usize, any::<bool>()).prop_map(|(i, p)| Ev::Pause(i, p)),
        3 => (1..20_000u64).prop_map(Ev::Advance),
        1 => Just(Ev::Shutdown),
    ]
}

fn has_container(h: &Harness, name: &str) -> bool {
    h.containers.contains_key(name)
}

fn starting(h: &Harness, name: &str) -> bool {
    h.core.record(name).and_then(Record::run).is_some_and(|r| r.running().is_none())
}

fn running(h: &Harness, name: &str) -> bool {
    h.core.record(name).and_then(Record::run).is_some_and(|r| r.running().is_some())
}

/// The containers frozen now, by unit and generation.
type Frozen = std::collections::BTreeSet<(String, u64)>;

fn apply(h: &mut Harness, ev: &Ev, frozen: &mut Frozen) {
    match *ev {
        // Refused (not running, not paused, on trial) is fine: the
        // invariants are what counts.
        Ev::Pause(i, pause) => {
            let done = if pause { h.pause(NAMES[i]) } else { h.unpause(NAMES[i]) };
            let key = done.is_ok().then(|| (NAMES[i].to_string(), h.generation(NAMES[i])));
            match key {
                Some(key) if pause => frozen.insert(key),
                Some(key) => frozen.remove(&key),
                None => false,
            };
        }
        Ev::Reload(mask, variants) => {
            let files: Vec<(String, String)> = NAMES
                .iter()
                .enumerate()
                .filter(|(i, _)| mask & (1 << i) != 0)
                .map(|(i, n)| (n.to_string(), file(n, variants[i])))
                .collect();
            let refs: Vec<(&str, &str)> = files.iter().map(|(n, b)| (n.as_str(), b.as_str())).collect();
            h.files(&refs);
        }
        Ev::Run(i) if starting(h, NAMES[i]) => h.run(NAMES[i]),
        Ev::Exit(i, code) if has_container(h, NAMES[i]) => h.exit(NAMES[i], code),
        Ev::FailStart(i) if starting(h, NAMES[i]) => h.fail_start(NAMES[i], "no such image"),
        Ev::Probe(i, ok) if running(h, NAMES[i]) => h.probe(NAMES[i], ok),
        Ev::Op(o, i) if h.core.record(NAMES[i]).is_some_and(|r| r.config.is_some()) => {
            let op = [Op::Start, Op::Stop, Op::Restart][o as usize];
            match h.op(op, &[NAMES[i]]) {
                Ok(_) => {}
                // As Docker's: a paused container is unpaused, not started.
                Err(OpError::Paused(_)) if op == Op::Start => {}
                Err(e) => panic!("{op:?} {}: {e}", NAMES[i]),
            }
        }
        Ev::Advance(n) => h.advance(ms(n)),
        Ev::Shutdown if !h.core.shutting_down() => h.shutdown(),
        _ => {}
    }
}

/// The requirements of `r` as its config says, the network's owner
/// included.
fn requires(r: &Record) -> Vec<String> {
    let Some(u) = &r.config else { return vec![] };
    let mut out = u.unit.unit.requires.clone();
    if let crate::units::model::Network::Unit(owner) = &u.unit.container.network {
        out.push(owner.clone());
    }
    out
}

/// Checks the invariants over the actions of one event; `before` is the
/// core as the actions were decided (the records they were decided on).
fn check(h: &Harness, from: usize, frozen: &mut Frozen) -> Result<(), TestCaseError> {
    for a in &h.log[from..] {
        match a {
            Action::Thaw { name, generation } => {
                prop_assert!(frozen.remove(&(name.clone(), *generation)), "{name}: thawed, but not paused");
            }
            Action::Signal { name, generation, .. } | Action::KillAll { name, generation } => {
                prop_assert!(!frozen.contains(&(name.clone(), *generation)), "{name}: signalled while frozen");
            }
            Action::Probe { name, generation, probe: Some(_) } => {
                prop_assert!(!frozen.contains(&(name.clone(), *generation)), "{name}: probed while frozen");
            }
            _ => {}
        }
    }
    // A frozen container that ended (killed from outside) is no more.
    frozen.retain(|(name, g)| h.containers.get(name) == Some(g));
    for a in &h.log[from..] {
        match a {
            Action::Start { name, .. } => {
                let r = h.core.record(name).unwrap();
                prop_assert!(!r.held, "{name}: a held unit was started");
                prop_assert!(!h.core.shutting_down(), "{name}: started during shutdown");
                for dep in requires(r) {
                    let ready = h.core.record(&dep).is_some_and(Record::ready);
                    prop_assert!(ready, "{name} started before its requirement {dep} was ready");
                }
            }
            Action::Signal { name, .. } if h.core.shutting_down() => {
                for other in h.core.records() {
                    let depends = other.config.as_ref().is_some_and(|u| dependencies(&u.unit).contains(name.as_str()));
                    prop_assert!(
                        !(depends && other.run().is_some() && other.name != *name),
                        "{name} was stopped at shutdown while its dependent {} still had a container",
                        other.name
                    );
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// Lets everything settle with nothing failing: containers start and
/// run, probes pass, stops complete, timers fire.
fn settle(h: &mut Harness) {
    for _ in 0..20 {
        h.run_all();
        let running: Vec<String> = NAMES.iter().filter(|n| running(h, n)).map(|n| n.to_string()).collect();
        for n in running {
            h.probe(&n, true);
        }
        h.exit_stopped();
        h.advance(secs(120));
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn random_event_sequences_keep_the_invariants(events in prop::collection::vec(event(), 1..60)) {
        let all: Vec<(String, String)> = NAMES.iter().map(|n| (n.to_string(), file(n, 0))).collect();
        let refs: Vec<(&str, &str)> = all.iter().map(|(n, b)| (n.as_str(), b.as_str())).collect();
        let mut h = Harness::new();
        h.files(&refs);
        // The harness itself refuses a second container for a unit.
        let mut frozen = Frozen::new();
        for ev in &events {
            let from = h.mark();
            apply(&mut h, ev, &mut frozen);
            check(&h, from, &mut frozen)?;
        }
        let from = h.mark();
        settle(&mut h);
        check(&h, from, &mut frozen)?;
        for r in h.core.records() {
            prop_assert!(!r.removed, "{}: removed, yet still known after settling", r.name);
            if h.core.shutting_down() {
                prop_assert!(r.run().is_none(), "{}: a container left after shutdown", r.name);
                continue;
            }
            if r.held {
                prop_assert!(r.run().is_none(), "{}: held, yet it has a container", r.name);
            }
            if r.wants(false) && !r.running() {
                let reason = r.reason.clone().unwrap_or_default();
                prop_assert!(
                    reason.starts_with("requires ") || reason.starts_with("after "),
                    "{}: wanted and valid but {:?}, reason {reason:?}", r.name, r.state(false)
                );
            }
            if matches!(r.state(false), State::Backoff | State::Failed | State::Exited) {
                prop_assert!(r.reason.is_some(), "{}: {:?} without a reason", r.name, r.state(false));
            }
        }
        if h.core.shutting_down() {
            prop_assert!(h.core.all_stopped());
        }
    }
}
