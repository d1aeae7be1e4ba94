//! Checks over the whole set of units: dependencies that name no unit,
//! dependency cycles (named, `a -> b -> a`), and host ports published twice.
//! Also the start order that the supervisor follows.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;
use std::path::PathBuf;

use super::diag::{Diagnostic, Source};
use super::dir::LoadedUnit;
use super::model::{Network, Unit};
use super::suggest::did_you_mean;

/// The units `u` must start after: `after`, `requires`, and the owner of
/// the network it joins.
pub fn dependencies(u: &Unit) -> BTreeSet<&str> {
    let mut deps: BTreeSet<&str> = u.unit.after.iter().chain(&u.unit.requires).map(String::as_str).collect();
    if let Network::Unit(owner) = &u.container.network {
        deps.insert(owner);
    }
    deps
}

fn edge_span(u: &LoadedUnit, dep: &str) -> Range<usize> {
    let s = &u.spans;
    let find = |list: &[(String, Range<usize>)]| list.iter().find(|(n, _)| n == dep).map(|(_, sp)| sp.clone());
    find(&s.requires).or_else(|| find(&s.after)).or_else(|| s.network.clone()).unwrap_or(0..0)
}

/// Returns the cross-unit errors and the names of the units they make
/// invalid.
pub fn cross_check<'s>(
    units: &[LoadedUnit],
    files: &BTreeMap<String, PathBuf>,
    source_of: &dyn Fn(&str) -> Option<Source<'s>>,
) -> (Vec<Diagnostic>, BTreeSet<String>) {
    let mut errors = Vec::new();
    let mut invalid = BTreeSet::new();
    let mut report = |name: &str, span: Range<usize>, msg: String, errors: &mut Vec<Diagnostic>| {
        if let Some(src) = source_of(name) {
            errors.push(src.diagnostic(span, msg));
        }
        invalid.insert(name.to_string());
    };

    // Dependencies on units that have no file.
    for u in units {
        for dep in dependencies(&u.unit) {
            if !files.contains_key(dep) {
                let hint = did_you_mean(dep, files.keys().map(String::as_str));
                let msg = format!("unknown unit {dep:?}: there is no {dep}.toml{hint}");
                report(&u.unit.name, edge_span(u, dep), msg, &mut errors);
            }
        }
    }

    // Cycles among the valid units.
    let by_name: BTreeMap<&str, &LoadedUnit> = units.iter().map(|u| (u.unit.name.as_str(), u)).collect();
    let edges: BTreeMap<&str, Vec<&str>> = by_name
        .iter()
        .map(|(n, u)| (*n, dependencies(&u.unit).into_iter().filter(|d| by_name.contains_key(d)).collect()))
        .collect();
    for component in strongly_connected(&edges) {
        let cyclic = component.len() > 1 || edges[component[0]].contains(&component[0]);
        if !cyclic {
            continue;
        }
        for start in &component {
            let path = shortest_cycle(&edges, &component, start);
            let msg = format!("dependency cycle: {}", path.join(" -> "));
            report(start, edge_span(by_name[start], path[1]), msg, &mut errors);
        }
    }

    // The same host port published by two units: the later name is refused.
    let mut published: Vec<&LoadedUnit> = Vec::new();
    for u in units {
        for (i, p) in u.unit.container.ports.iter().enumerate() {
            let clash = published
                .iter()
                .find_map(|o| o.unit.container.ports.iter().find(|q| q.conflicts_with(p)).map(|q| (o, q)));
            if let Some((other, q)) = clash {
                let span = u.spans.ports.get(i).cloned().unwrap_or(0..0);
                let msg = format!(
                    "{p}: the host port is already published by unit {:?} ({q} in {})",
                    other.unit.name,
                    other.file.display()
                );
                report(&u.unit.name, span, msg, &mut errors);
            }
        }
        published.push(u);
    }
    (errors, invalid)
}

/// Tarjan's algorithm; each component's names sorted.
fn strongly_connected<'a>(edges: &BTreeMap<&'a str, Vec<&'a str>>) -> Vec<Vec<&'a str>> {
    struct State<'a> {
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on_stack: BTreeSet<&'a str>,
        out: Vec<Vec<&'a str>>,
    }
    fn visit<'a>(v: &'a str, edges: &BTreeMap<&'a str, Vec<&'a str>>, st: &mut State<'a>) {
        let i = st.index.len();
        st.index.insert(v, i);
        st.low.insert(v, i);
        st.stack.push(v);
        st.on_stack.insert(v);
        for &w in &edges[v] {
            if !st.index.contains_key(w) {
                visit(w, edges, st);
                let lw = st.low[w];
                let lv = st.low.get_mut(v).expect("visited");
                *lv = (*lv).min(lw);
            } else if st.on_stack.contains(w) {
                let iw = st.index[w];
                let lv = st.low.get_mut(v).expect("visited");
                *lv = (*lv).min(iw);
            }
        }
        if st.low[v] == st.index[v] {
            let mut comp = Vec::new();
            while let Some(w) = st.stack.pop() {
                st.on_stack.remove(w);
                comp.push(w);
                if w == v {
                    break;
                }
            }
            comp.sort_unstable();
            st.out.push(comp);
        }
    }
    let mut st = State {
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        out: Vec::new(),
    };
    for &v in edges.keys() {
        if !st.index.contains_key(v) {
            visit(v, edges, &mut st);
        }
    }
    st.out
}

/// The shortest path `start -> ... -> start` inside one component.
fn shortest_cycle<'a>(edges: &BTreeMap<&'a str, Vec<&'a str>>, component: &[&'a str], start: &'a str) -> Vec<&'a str> {
    let mut prev: BTreeMap<&str, &str> = BTreeMap::new();
    let mut queue = std::collections::VecDeque::from([start]);
    while let Some(v) = queue.pop_front() {
        for &w in &edges[v] {
            if w == start {
                // Walk back from v to start, then read it forwards.
                let mut path = vec![v];
                let mut at = v;
                while at != start {
                    at = prev[at];
                    path.push(at);
                }
                path.reverse();
                path.push(start);
                return path;
            }
            if component.contains(&w) && !prev.contains_key(w) {
                prev.insert(w, v);
                queue.push_back(w);
            }
        }
    }
    vec![start, start]
}

/// Start order: groups of units that can start together, each group after
/// the ones before it. Only edges between the given units count.
pub fn start_order(units: &[&Unit]) -> Vec<Vec<String>> {
    let names: BTreeSet<&str> = units.iter().map(|u| u.name.as_str()).collect();
    let mut pending: BTreeMap<&str, BTreeSet<&str>> = units
        .iter()
        .map(|u| (u.name.as_str(), dependencies(u).into_iter().filter(|d| names.contains(d)).collect()))
        .collect();
    let mut order = Vec::new();
    while !pending.is_empty() {
        let ready: Vec<&str> = pending.iter().filter(|(_, d)| d.is_empty()).map(|(n, _)| *n).collect();
        if ready.is_empty() {
            // A cycle: cross_check refuses these, so callers never get here.
            order.push(pending.keys().map(|n| n.to_string()).collect());
            break;
        }
        for n in &ready {
            pending.remove(n);
        }
        for deps in pending.values_mut() {
            for n in &ready {
                deps.remove(n);
            }
        }
        order.push(ready.into_iter().map(String::from).collect());
    }
    order
}
