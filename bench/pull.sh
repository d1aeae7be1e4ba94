#!/usr/bin/env bash
# Cold pull and unpack of a ~100 MB, 5-layer image from a loopback registry:
#
#   ours      supervisorctl --store DIR pull REF
#   skopeo    skopeo copy docker://REF oci:DIR + umoci unpack (a rootfs)
#   podman    podman pull REF (its own storage root, overlay driver)
#
# the same image from the same registry in the same run, each cold (its
# store emptied before every run, outside the timing), in alternation
# (bench/lib.sh: one run of each per round, the order rotating). Prints
# each one's median and our speed-up over it.
#
# Not quite the same work: `umoci unpack` also writes an mtree manifest of
# the unpacked rootfs (bundle/sha256_*.mtree, for `umoci repack`), which
# costs it a walk and a hash of every file; ours and podman write none.
# podman's pull includes its own image-store bookkeeping (and its overlay
# layers), ours its records.
#
# Usage (as root): bench/pull.sh [RUNS]     (default 5)
# Needs: docker-registry, skopeo, umoci, podman, jq, busybox-static.
set -euo pipefail
runs=${1:-5}
cd "$(dirname "$0")/.."
work=$(mktemp -d /var/tmp/bench-pull.XXXXXX)
pid=
cleanup() {
  [[ -n $pid ]] && kill "$pid" 2>/dev/null
  podman --root "$work/podman" --runroot "$work/podman-run" rmi -af >/dev/null 2>&1 || true
  umount -R "$work/podman/overlay" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
BENCH_WORK=$work
source bench/lib.sh

cargo build -q --release --bins
ctl=$PWD/target/release/supervisorctl

echo "== building the image: busybox + 4 layers of 25 MiB of random data" >&2
layout=$work/src
umoci init --layout "$layout"
umoci new --image "$layout:big"
mkdir -p "$work/root/bin"
install -m 0755 /bin/busybox "$work/root/bin/busybox"
ln -s busybox "$work/root/bin/sh"
umoci insert --image "$layout:big" "$work/root" /
for i in 1 2 3 4; do
  mkdir -p "$work/l$i"
  for f in $(seq 1 25); do head -c 1048576 /dev/urandom >"$work/l$i/blob$f.bin"; done
  umoci insert --image "$layout:big" "$work/l$i" "/data/layer$i"
done
umoci config --image "$layout:big" --os linux --architecture amd64 --config.cmd /bin/sh

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat >"$work/registry.yml" <<YML
version: 0.1
log: {level: error}
storage: {filesystem: {rootdirectory: $work/registry}}
http: {addr: 127.0.0.1:$port}
YML
docker-registry serve "$work/registry.yml" >/dev/null 2>&1 &
pid=$!
for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.1; done
ref=127.0.0.1:$port/bench/big:latest
skopeo copy -q --dest-tls-verify=false "oci:$layout:big" "docker://$ref"
size=$(du -sb "$work/registry" | cut -f1)
echo "== image: $((size / 1000000)) MB in the registry; $runs cold runs each" >&2

cat >"$work/containers.conf" <<'CONF'
[containers]
default_ulimits = ["nofile=1024:1024"]
[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
CONF
export CONTAINERS_CONF=$work/containers.conf
podman=(podman --root "$work/podman" --runroot "$work/podman-run" --storage-driver overlay)

# Each PREPARE ends with `sync`: what the previous run wrote is on disk
# before the next one starts, so no tool's figure carries another's
# writeback (ours makes each layer durable with syncfs(2), which would
# otherwise also flush the 200 MB the run before it left dirty).
alternate "$runs" \
  ours "rm -rf $work/store; sync" "$ctl --store $work/store pull $ref" \
  skopeo+umoci "rm -rf $work/oci $work/bundle; sync" \
  "skopeo copy -q --src-tls-verify=false docker://$ref oci:$work/oci:big && umoci unpack --image $work/oci:big $work/bundle" \
  podman "${podman[*]} rmi -af; sync" "${podman[*]} pull -q --tls-verify=false $ref"
