#!/usr/bin/env bash
# Start-to-exit latency of one busybox `true` container, the same OCI bundle
# (crun's default spec: pid, net, ipc, uts, mount and cgroup namespaces,
# /proc, /dev, /sys, masked paths, capabilities, no_new_privs) run by:
#
#   ours   supervisord runtime run --bundle B ID
#   crun   crun run --bundle B ID
#   runc   runc run --bundle B ID
#
# in alternation (bench/lib.sh: one run of each per round, the order
# rotating); prints each one's median and our ratio.
#
# crun 1.8 refuses hybrid cgroup hosts while a controller is left on the
# cgroup2 mount (here: hugetlb); this script moves hugetlb to a v1
# hierarchy first (idempotent, and harmless to the others).
#
# Usage (as root): bench/run.sh [RUNS]   (default 200)
# Needs: crun, runc, jq, busybox-static.
set -euo pipefail
runs=${1:-200}
cd "$(dirname "$0")/.."
work=$(mktemp -d /var/tmp/bench-run.XXXXXX)
trap 'rm -rf "$work"' EXIT
BENCH_WORK=$work
source bench/lib.sh

cargo build -q --release --bins
ours=$PWD/target/release/supervisord

crun_on_hybrid

bundle=$work/bundle
mkdir -p "$bundle/rootfs/bin"
install -m 0755 /bin/busybox "$bundle/rootfs/bin/busybox"
for a in sh true; do ln -s busybox "$bundle/rootfs/bin/$a"; done
(cd "$bundle" && crun spec)
jq '.process.terminal = false | .process.args = ["/bin/true"]' "$bundle/config.json" >"$bundle/c.json"
mv "$bundle/c.json" "$bundle/config.json"

for tool in "$ours runtime" crun runc; do
  $tool run --bundle "$bundle" check-$$ || { echo "$tool cannot run the bundle" >&2; exit 1; }
done

alternate "$runs" \
  ours "" "$ours runtime run --bundle $bundle bench-ours" \
  crun "" "crun run --bundle $bundle bench-crun" \
  runc "" "runc run --bundle $bundle bench-runc"
