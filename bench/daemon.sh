#!/usr/bin/env bash
# Many units at once, and the latency of an edit, beside podman:
#
#   ours     N busybox `sleep` unit files, supervisord started on an empty
#            state directory: time until every unit is running, and
#            supervisord's RSS then; for the first count, the time from
#            a file edit to the new container running (stop signal
#            SIGKILL, so no stop timeout is in it) and the shutdown time.
#   podman   `podman run -d --network none busybox sleep` of PODMAN_N
#            containers one after another (its own storage root, the same
#            image imported from the same OCI layout): total time, and the
#            memory of its per-container processes (conmon).
#
# Usage (as root): bench/daemon.sh [COUNTS...]   (default: 100 500)
#        PODMAN_N=100 (podman's count; 0 skips it)
# Needs: podman, jq, busybox-static (scripts/build-example-images.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
counts=("${@:-100}")
[[ $# -eq 0 ]] && counts=(100 500)
podman_n=${PODMAN_N:-100}
work=$(mktemp -d /var/tmp/bench-daemon.XXXXXX)
cleanup() {
  [[ -n ${daemon:-} ]] && kill -TERM "$daemon" 2>/dev/null && wait "$daemon" 2>/dev/null
  if [[ -n ${podman_ready:-} ]]; then
    "${podman[@]}" rm -af -t0 >/dev/null 2>&1 || true
    "${podman[@]}" rmi -af >/dev/null 2>&1 || true
    umount -R "$work/podman/overlay" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

scripts/build-example-images.sh >/dev/null
cargo build -q --release --bins
bin=$PWD/target/release
image="oci:$PWD/units.example/images/busybox:latest"
now() { date +%s.%N; }
ms() { echo "($2 - $1) * 1000" | bc -l | xargs printf '%.0f'; }

declare -A took rss
for n in "${counts[@]}"; do
  dir=$work/ours-$n
  mkdir -p "$dir/units"
  for i in $(seq 1 "$n"); do
    printf '[container]\nimage = "%s"\ncommand = ["sleep", "100000"]\n[stop]\nsignal = "SIGKILL"\n' \
      "$image" > "$dir/units/s$i.toml"
  done
  export SUPERVISOR_SOCKET=$dir/run/control.sock
  : > "$dir/supervisord.toml"
  t0=$(now)
  SUPERVISOR_LOG=warn "$bin/supervisord" --units "$dir/units" --state-dir "$dir/state" --run-dir "$dir/run" \
    --log-dir "$dir/log" --config "$dir/supervisord.toml" &
  daemon=$!
  until [[ $("$bin/supervisorctl" status --json 2>/dev/null | jq '[.[] | select(.state == "running")] | length') == "$n" ]]; do
    sleep 0.05
  done
  t1=$(now)
  took[$n]=$(ms "$t0" "$t1")
  rss[$n]=$(awk '/^VmRSS/{print $2}' "/proc/$daemon/status")
  echo "ours: $n units running after ${took[$n]} ms; supervisord RSS $((rss[$n] / 1024)) MB" >&2
  if [[ $n == "${counts[0]}" ]]; then
    # Edit latency, from the daemon's own event times (a status poll
    # would measure itself): file renamed into place -> new container
    # running.
    ev=$dir/events.ndjson
    "$bin/supervisorctl" events --json >> "$ev" &
    events=$!
    sleep 0.3
    lat=()
    for k in 1 2 3 4 5; do
      t0=$(now)
      printf '[container]\nimage = "%s"\ncommand = ["sleep", "%s"]\n[stop]\nsignal = "SIGKILL"\n' \
        "$image" "$((100000 + k))" > "$dir/units/s1.toml.tmp"
      mv "$dir/units/s1.toml.tmp" "$dir/units/s1.toml"
      until [[ $(jq -c 'select(.unit == "s1" and .new == "running")' "$ev" | wc -l) -ge $k ]]; do sleep 0.02; done
      t1=$(date -d "$(jq -r 'select(.unit == "s1" and .new == "running") | .time' "$ev" | sed -n "${k}p")" +%s.%N)
      lat+=("$(ms "$t0" "$t1")")
    done
    kill "$events"
    edit=$(printf '%s\n' "${lat[@]}" | sort -n | sed -n 3p)
    echo "ours: edit to new container running: ${lat[*]} ms (median $edit)" >&2
  fi
  t0=$(now)
  kill -TERM "$daemon"
  wait "$daemon"
  daemon=
  shutdown_ms=$(ms "$t0" "$(now)")
  echo "ours: SIGTERM to every unit stopped and exit: $shutdown_ms ms" >&2
  rm -rf "$dir"
done

if [[ $podman_n -gt 0 ]]; then
  cat > "$work/containers.conf" <<'CONF'
[containers]
default_ulimits = ["nofile=1024:1024", "nproc=4096:4096"]
[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
CONF
  export CONTAINERS_CONF=$work/containers.conf
  podman=(podman --root "$work/podman" --runroot "$work/podman-run" --storage-driver overlay)
  podman_ready=1
  "${podman[@]}" pull -q "$image" > /dev/null
  pimage=$("${podman[@]}" images -q | head -1)
  t0=$(now)
  for i in $(seq 1 "$podman_n"); do
    "${podman[@]}" run -d --network none "$pimage" sleep 100000 > /dev/null
  done
  t1=$(now)
  podman_ms=$(ms "$t0" "$t1")
  conmon_rss=0
  for p in $(pgrep -x conmon); do
    conmon_rss=$((conmon_rss + $(awk '/^VmRSS/{print $2}' "/proc/$p/status")))
  done
  echo "podman: $podman_n containers running after $podman_ms ms; conmon RSS total $((conmon_rss / 1024)) MB" >&2
fi

echo
echo "| count | ours: all running | ours: supervisord RSS | podman run -d ($podman_n) | ratio (podman $podman_n / ours) |"
echo "| --- | --- | --- | --- | --- |"
for n in "${counts[@]}"; do
  if [[ $podman_n -gt 0 ]]; then
    ratio=$(echo "$podman_ms / ${took[$n]}" | bc -l | xargs printf '%.1f')
    echo "| $n | ${took[$n]} ms | $((rss[$n] / 1024)) MB | $podman_ms ms, conmon $((conmon_rss / 1024)) MB | ${ratio}x |"
  else
    echo "| $n | ${took[$n]} ms | $((rss[$n] / 1024)) MB | - | - |"
  fi
done
echo
echo "edit to running (median of 5, ${counts[0]} units): $edit ms"
