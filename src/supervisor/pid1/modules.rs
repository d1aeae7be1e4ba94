//! Kernel modules for an init without modprobe: the modules the global
//! config lists (`modules = [...]`) and their dependencies, in an order
//! where each comes after what it needs, from the kernel's own
//! `modules.dep`, loaded with `finit_module(2)`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// A module's name as the kernel knows it: the file name without `.ko`
/// (and a compression suffix), `-` as `_`.
pub fn module_name(path: &str) -> String {
    let file = path.rsplit('/').next().unwrap_or(path);
    let stem = file.split(".ko").next().unwrap_or(file);
    stem.replace('-', "_")
}

/// `modules.dep` read: name to (path, direct and indirect dependencies).
pub fn parse_dep(text: &str) -> BTreeMap<String, (String, Vec<String>)> {
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let Some((path, deps)) = line.split_once(':') else { continue };
        let deps = deps.split_whitespace().map(module_name).collect();
        out.insert(module_name(path), (path.trim().to_string(), deps));
    }
    out
}

/// The files to load for `wanted`, each after its dependencies, none
/// twice. Names `builtin` (built into the kernel) are skipped; a name
/// neither there nor in `dep` is an error for that name alone.
pub fn load_order(
    dep: &BTreeMap<String, (String, Vec<String>)>,
    builtin: &BTreeSet<String>,
    wanted: &[String],
) -> (Vec<String>, Vec<String>) {
    fn visit(
        name: &str,
        dep: &BTreeMap<String, (String, Vec<String>)>,
        seen: &mut BTreeSet<String>,
        out: &mut Vec<String>,
    ) {
        if !seen.insert(name.to_string()) {
            return;
        }
        let Some((path, deps)) = dep.get(name) else { return };
        for d in deps {
            visit(d, dep, seen, out);
        }
        out.push(path.clone());
    }
    let (mut seen, mut out, mut unknown) = (BTreeSet::new(), Vec::new(), Vec::new());
    for w in wanted {
        let name = module_name(w);
        if builtin.contains(&name) {
            continue;
        }
        if !dep.contains_key(&name) {
            unknown.push(w.clone());
            continue;
        }
        visit(&name, dep, &mut seen, &mut out);
    }
    (out, unknown)
}

/// Loads `wanted` and their dependencies from `/lib/modules/<release>`.
/// Nothing here is fatal: a module that is there already (EEXIST) is
/// fine, one whose hardware is absent (ENODEV, e.g. crc32c-intel on a CPU
/// without SSE4.2) is logged, as is any other failure.
pub fn load(wanted: &[String]) {
    if wanted.is_empty() {
        return;
    }
    let release = nix::sys::utsname::uname().map(|u| u.release().to_string_lossy().into_owned()).unwrap_or_default();
    let dir = PathBuf::from("/lib/modules").join(&release);
    let dep = match std::fs::read_to_string(dir.join("modules.dep")) {
        Ok(t) => parse_dep(&t),
        Err(e) => {
            tracing::warn!("modules: {}/modules.dep: {e}", dir.display());
            return;
        }
    };
    let builtin: BTreeSet<String> =
        std::fs::read_to_string(dir.join("modules.builtin")).unwrap_or_default().lines().map(module_name).collect();
    let (order, unknown) = load_order(&dep, &builtin, wanted);
    for u in unknown {
        tracing::warn!("modules: {u}: not a module of kernel {release}");
    }
    // Each module waits only for those it needs: independent ones load
    // side by side (under TCG, mostly the time of checking signatures
    // and relocating, which the kernel does outside its module lock).
    let jobs: Vec<(String, Vec<String>)> = order
        .iter()
        .map(|rel| {
            let needs = dep.get(&module_name(rel)).map(|(_, d)| d.clone()).unwrap_or_default();
            (module_name(rel), needs)
        })
        .collect();
    let paths: BTreeMap<String, PathBuf> = order.iter().map(|rel| (module_name(rel), dir.join(rel))).collect();
    let loaded = std::sync::atomic::AtomicUsize::new(0);
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(4);
    run_after(&jobs, threads, |name| match paths.get(name).map_or(Err(nix::errno::Errno::ENOENT), |p| finit(p)) {
        Ok(()) => {
            loaded.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        Err(nix::errno::Errno::EEXIST) => {}
        Err(e) => tracing::warn!("modules: {name}: {e}"),
    });
    tracing::info!("modules: loaded {}", loaded.into_inner());
}

/// Runs `run` for every job on `threads` threads, each job once every job
/// of `jobs` it names as needed has run (names not among the jobs are
/// taken as there). When nothing can start and nothing runs (a cycle in a
/// broken `modules.dep`), the first job left starts anyway, as one after
/// another would have; a job whose `run` panics counts as run. So this
/// always returns: PID 1 must not hang at boot over a module.
pub fn run_after(jobs: &[(String, Vec<String>)], threads: usize, run: impl Fn(&str) + Sync) {
    use std::sync::{Condvar, Mutex, PoisonError};
    struct State<'a> {
        started: Vec<bool>,
        done: BTreeSet<&'a str>,
        running: usize,
    }
    let names: BTreeSet<&str> = jobs.iter().map(|(n, _)| n.as_str()).collect();
    let state = Mutex::new(State { started: vec![false; jobs.len()], done: BTreeSet::new(), running: 0 });
    let changed = Condvar::new();
    /// Marks its job done however `run` ends.
    struct Finish<'s, 'a> {
        state: &'s Mutex<State<'a>>,
        changed: &'s Condvar,
        name: &'a str,
    }
    impl Drop for Finish<'_, '_> {
        fn drop(&mut self) {
            let mut st = self.state.lock().unwrap_or_else(PoisonError::into_inner);
            st.done.insert(self.name);
            st.running -= 1;
            self.changed.notify_all();
        }
    }
    let work = || {
        let mut st = state.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            if st.started.iter().all(|s| *s) {
                return;
            }
            let ready = jobs.iter().enumerate().position(|(i, (_, needs))| {
                !st.started[i] && needs.iter().all(|n| !names.contains(n.as_str()) || st.done.contains(n.as_str()))
            });
            let next = ready.or_else(|| (st.running == 0).then(|| st.started.iter().position(|s| !*s)).flatten());
            let Some(i) = next else {
                st = changed.wait(st).unwrap_or_else(PoisonError::into_inner);
                continue;
            };
            st.started[i] = true;
            st.running += 1;
            drop(st);
            {
                let _finish = Finish { state: &state, changed: &changed, name: &jobs[i].0 };
                let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(&jobs[i].0)));
            }
            st = state.lock().unwrap_or_else(PoisonError::into_inner);
        }
    };
    std::thread::scope(|s| {
        for _ in 1..threads.max(1) {
            s.spawn(work);
        }
        work();
    });
}

fn finit(path: &Path) -> Result<(), nix::errno::Errno> {
    let file = std::fs::File::open(path).map_err(|e| nix::errno::Errno::from_raw(e.raw_os_error().unwrap_or(0)))?;
    nix::kmod::finit_module(&file, c"", nix::kmod::ModuleInitFlags::empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEP: &str = "\
kernel/fs/overlayfs/overlay.ko:
kernel/net/bridge/br_netfilter.ko: kernel/net/bridge/bridge.ko kernel/net/802/stp.ko kernel/net/llc/llc.ko
kernel/net/bridge/bridge.ko: kernel/net/802/stp.ko kernel/net/llc/llc.ko
kernel/net/802/stp.ko: kernel/net/llc/llc.ko
kernel/net/llc/llc.ko:
kernel/net/netfilter/nft-masq.ko.xz: kernel/net/netfilter/nf_nat.ko
kernel/net/netfilter/nf_nat.ko:
";

    #[test]
    fn names_drop_the_directory_suffixes_and_dashes() {
        assert_eq!(module_name("kernel/net/netfilter/nft-masq.ko.xz"), "nft_masq");
        assert_eq!(module_name("crc32c-intel"), "crc32c_intel");
        assert_eq!(module_name("overlay"), "overlay");
    }

    #[test]
    fn each_job_runs_once_after_what_it_needs_and_independent_ones_side_by_side() {
        use std::sync::Mutex;
        use std::sync::atomic::{AtomicUsize, Ordering};
        let dep = parse_dep(DEP);
        let wanted: Vec<String> = ["br_netfilter", "overlay", "nft-masq"].iter().map(|s| s.to_string()).collect();
        let (order, _) = load_order(&dep, &BTreeSet::new(), &wanted);
        let mut jobs: Vec<(String, Vec<String>)> =
            order.iter().map(|p| (module_name(p), dep[&module_name(p)].1.clone())).collect();
        // A need that is not a job (built in) is taken as there.
        jobs[0].1.push("builtin_one".into());
        let done = Mutex::new(Vec::new());
        let (running, most) = (AtomicUsize::new(0), AtomicUsize::new(0));
        run_after(&jobs, 3, |name| {
            let now = running.fetch_add(1, Ordering::SeqCst) + 1;
            most.fetch_max(now, Ordering::SeqCst);
            {
                let done = done.lock().unwrap();
                let needs = &jobs.iter().find(|(n, _)| n == name).unwrap().1;
                for n in needs.iter().filter(|n| *n != "builtin_one") {
                    assert!(done.contains(n), "{name} ran before {n}");
                }
            }
            // Long enough for the other threads to take what is ready.
            std::thread::sleep(std::time::Duration::from_millis(30));
            running.fetch_sub(1, Ordering::SeqCst);
            done.lock().unwrap().push(name.to_string());
        });
        let mut done = done.into_inner().unwrap();
        assert_eq!(done.len(), jobs.len());
        done.sort();
        done.dedup();
        assert_eq!(done.len(), jobs.len(), "a job ran twice");
        // llc, overlay and nf_nat need nothing: they ran at once.
        assert!(most.load(Ordering::SeqCst) >= 2, "nothing ran side by side");
    }

    #[test]
    fn a_cycle_or_a_panic_does_not_hang_the_boot() {
        use std::sync::Mutex;
        // a needs b, b needs a (a broken modules.dep); c needs a.
        let jobs: Vec<(String, Vec<String>)> =
            vec![("a".into(), vec!["b".into()]), ("b".into(), vec!["a".into()]), ("c".into(), vec!["a".into()])];
        let ran = Mutex::new(Vec::new());
        run_after(&jobs, 2, |name| {
            ran.lock().unwrap().push(name.to_string());
            assert_ne!(name, "a", "a module's load panics");
        });
        let mut ran = ran.into_inner().unwrap();
        ran.sort();
        assert_eq!(ran, ["a", "b", "c"]);
    }

    #[test]
    fn dependencies_come_first_and_once() {
        let dep = parse_dep(DEP);
        let builtin = BTreeSet::from(["veth".to_string()]);
        let wanted: Vec<String> =
            ["br_netfilter", "bridge", "veth", "nft-masq", "nosuch"].iter().map(|s| s.to_string()).collect();
        let (order, unknown) = load_order(&dep, &builtin, &wanted);
        let names: Vec<String> = order.iter().map(|p| module_name(p)).collect();
        assert_eq!(names, ["llc", "stp", "bridge", "br_netfilter", "nf_nat", "nft_masq"]);
        assert_eq!(unknown, ["nosuch"]);
    }
}
