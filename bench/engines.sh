#!/usr/bin/env bash
# Our runtime under the engines that drive runc's command line, against
# the runtime each engine ships with, in alternation (bench/lib.sh):
#
#   podman run --rm busybox true     --runtime supervisor-runtime  vs crun
#   ctr run --rm busybox ID true     --runc-binary supervisor-runtime  vs runc
#
# podman (Debian's 4.3, with conmon) uses a storage root and a
# containers.conf of this script's own (cgroupfs, file events, ulimits
# this host allows); containerd (Debian's 1.6) is started with a config,
# state and socket of its own and stopped at the end. Both run the
# busybox image of units.example.
#
# Usage (as root): bench/engines.sh [RUNS]   (default 20)
# Needs: podman, containerd, ctr, skopeo, crun, runc. Moves hugetlb to a v1
# hierarchy on a hybrid host, as bench/run.sh does (crun needs it).
set -euo pipefail
runs=${1:-20}
cd "$(dirname "$0")/.."
work=$(mktemp -d /var/tmp/bench-engines.XXXXXX)
BENCH_WORK=$work
source bench/lib.sh

cargo build -q --release --bins
ours=$PWD/target/release/supervisor-runtime
crun_on_hybrid
image_dir=$PWD/units.example/images/busybox
[[ -f $image_dir/index.json ]] || scripts/build-example-images.sh

cat >"$work/containers.conf" <<'CONF'
[containers]
default_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]
[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
CONF
export CONTAINERS_CONF=$work/containers.conf
podman="podman --root $work/podman --runroot $work/podman-run"
$podman pull -q "oci:$image_dir:latest" >"$work/image"
image=$(cat "$work/image")

cat >"$work/containerd.toml" <<CONF
version = 2
root = "$work/containerd"
state = "$work/containerd-state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "$work/containerd.sock"
CONF
containerd --config "$work/containerd.toml" >"$work/containerd.log" 2>&1 &
containerd_pid=$!
# What podman's CNI network makes, removed after unless it was there.
had_bridge=$(ip -o link show cni-podman0 2>/dev/null || true)
had_tables=$(nft list tables 2>/dev/null || true)
cleanup() {
  $podman rm -af -t 0 >/dev/null 2>&1 || true
  $podman system reset -f >/dev/null 2>&1 || true
  kill "$containerd_pid" 2>/dev/null || true
  wait "$containerd_pid" 2>/dev/null || true
  rm -rf /run/containerd/runc/bench "$work"
  [[ -n $had_bridge ]] || ip link del cni-podman0 2>/dev/null || true
  for t in "ip filter" "ip nat" "ip6 nat"; do
    grep -qx "table $t" <<<"$had_tables" || nft delete table $t 2>/dev/null || true
  done
}
trap cleanup EXIT
ctr="ctr --address $work/containerd.sock --namespace bench"
for _ in $(seq 100); do $ctr version >/dev/null 2>&1 && break; sleep 0.1; done
skopeo copy -q "oci:$image_dir:latest" "oci-archive:$work/busybox.tar:docker.io/library/busybox:latest"
$ctr image import --base-name docker.io/library/busybox "$work/busybox.tar" >/dev/null

echo "== podman run --rm busybox true ($runs runs each)"
alternate "$runs" \
  ours "" "$podman --runtime $ours run --rm $image true" \
  crun "" "$podman --runtime /usr/bin/crun run --rm $image true"

echo "== ctr run --rm busybox true ($runs runs each)"
alternate "$runs" \
  ours "" "$ctr run --rm --runc-binary $ours docker.io/library/busybox:latest b\$\$ true" \
  runc "" "$ctr run --rm --runc-binary /usr/sbin/runc docker.io/library/busybox:latest b\$\$ true"
