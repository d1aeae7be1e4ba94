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
    let mut loaded = 0;
    for rel in order {
        match finit(&dir.join(&rel)) {
            Ok(()) => loaded += 1,
            Err(nix::errno::Errno::EEXIST) => {}
            Err(e) => tracing::warn!("modules: {}: {e}", module_name(&rel)),
        }
    }
    tracing::info!("modules: loaded {loaded}");
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
