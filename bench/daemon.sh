#!/usr/bin/env bash
# Many units at once, and the latency of an edit, beside podman, for the
# same counts:
#
#   ours     N busybox `sleep` unit files, supervisord started on them:
#            time from its main to every unit running (its boot
#            timeline), and supervisord's RSS then;
#            for the first count, the time from a file edit to the new
#            container running (stop signal SIGKILL, so no stop timeout is
#            in it) and the shutdown time.
#   podman   `podman run -d --network none busybox sleep` of N containers
#            one after another (its own storage root): total time, and the
#            memory of its per-container processes (conmon).
#
# Both sides have the image in their store before the clock starts (ours:
# `supervisorctl --store` pull from the OCI layout; podman: `podman pull`
# from the same layout), so neither side's timing has an import in it.
# For each count, the two sides alternate for ROUNDS rounds (the first of
# each round switching) and each figure is the median of its rounds; the
# ratio compares the same count.
#
# Usage (as root): bench/daemon.sh [COUNTS...]   (default: 100 500)
#        ROUNDS=3 (rounds per count); PODMAN=0 skips podman
# Needs: podman, jq, busybox-static (scripts/build-example-images.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
counts=("${@:-100}")
[[ $# -eq 0 ]] && counts=(100 500)
rounds=${ROUNDS:-3}
with_podman=${PODMAN:-1}
work=$(mktemp -d /var/tmp/bench-daemon.XXXXXX)
cleanup() {
  [[ -n ${daemon:-} ]] && kill -TERM "$daemon" 2>/dev/null && wait "$daemon" 2>/dev/null
  if [[ -n ${podman_ready:-} ]]; then
    "${podman[@]}" rm -af -t0 >/dev/null 2>&1 || true
    "${podman[@]}" rmi -af >/dev/null 2>&1 || true
    umount -R "$work/podman/overlay" 2>/dev/null || true
  fi
  for m in "$work"/ours-*/run; do umount "$m" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

scripts/build-example-images.sh >/dev/null
cargo build -q --release --bins
bin=$PWD/target/release
image="oci:$PWD/units.example/images/busybox:latest"
now() { date +%s.%N; }
ms() { echo "($2 - $1) * 1000" | bc -l | xargs printf '%.0f\n'; }

median() { sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

# ours N FIRST: one round of ours with N units; FIRST also measures the
# edit latency and the shutdown. Appends to $work/ours-N.{ms,rss}.
ours() {
  local n=$1 first=$2 dir=$work/ours-$1
  mkdir -p "$dir/units" "$dir/run"
  # The run directory on a tmpfs, as /run is where it is used.
  mount -t tmpfs -o mode=0755 tmpfs "$dir/run"
  for i in $(seq 1 "$n"); do
    printf '[container]\nimage = "%s"\ncommand = ["sleep", "100000"]\n[stop]\nsignal = "SIGKILL"\n' \
      "$image" > "$dir/units/s$i.toml"
  done
  "$bin/supervisorctl" --store "$dir/state" pull "$image" > /dev/null 2>&1
  export SUPERVISOR_SOCKET=$dir/run/control.sock
  : > "$dir/supervisord.toml"
  local t0 t1
  SUPERVISOR_LOG=warn "$bin/supervisord" --units "$dir/units" --state-dir "$dir/state" --run-dir "$dir/run" \
    --log-dir "$dir/log" --config "$dir/supervisord.toml" &
  daemon=$!
  # Until its boot timeline has "all units ran": a small document, where
  # polling `status` would have the daemon list every unit 20 times a
  # second (and jq parse it) while it starts them. The figure is the
  # daemon's own, from its main to the last unit running.
  until [[ $("$bin/supervisorctl" boot --json 2>/dev/null) == *all_units_ran* ]]; do
    sleep 0.05
  done
  "$bin/supervisorctl" boot --json | jq '[.phases[] | {(.phase): .at}] | add | .all_units_ran - .started | round' >> "$work/ours-$n.ms"
  awk '/^VmRSS/{print $2}' "/proc/$daemon/status" >> "$work/ours-$n.rss"
  echo "ours: $n units running after $(tail -1 "$work/ours-$n.ms") ms; supervisord RSS $(($(tail -1 "$work/ours-$n.rss") / 1024)) MB" >&2
  if [[ $first == 1 ]]; then
    # Edit latency, from the daemon's own event times (a status poll
    # would measure itself): file renamed into place -> new container
    # running (a state change: the update events of its trial, which also
    # say "running", are not counted).
    local ev=$dir/events.ndjson k
    "$bin/supervisorctl" events --json >> "$ev" &
    local events=$!
    sleep 0.3 # for the stream to connect: it prints nothing until an event
    for k in 1 2 3 4 5; do
      t0=$(now)
      printf '[container]\nimage = "%s"\ncommand = ["sleep", "%s"]\n[stop]\nsignal = "SIGKILL"\n' \
        "$image" "$((100000 + k))" > "$dir/units/s1.toml.tmp"
      mv "$dir/units/s1.toml.tmp" "$dir/units/s1.toml"
      until [[ $(jq -c 'select(.unit == "s1" and .new == "running" and .update == null)' "$ev" | wc -l) -ge $k ]]; do sleep 0.02; done
      t1=$(date -d "$(jq -r 'select(.unit == "s1" and .new == "running" and .update == null) | .time' "$ev" | sed -n "${k}p")" +%s.%N)
      ms "$t0" "$t1" >> "$work/edit.ms"
    done
    kill "$events"
    echo "ours: edit to new container running: $(paste -sd' ' "$work/edit.ms") ms" >&2
  fi
  t0=$(now)
  kill -TERM "$daemon"
  wait "$daemon"
  daemon=
  if [[ $first == 1 ]]; then
    ms "$t0" "$(now)" >> "$work/shutdown-$n.ms"
    echo "ours: SIGTERM to every unit stopped and exit: $(tail -1 "$work/shutdown-$n.ms") ms" >&2
  fi
  umount "$dir/run"
  rm -rf "$dir"
}

# podman N: one round of N `podman run -d`; appends to $work/podman-N.{ms,rss}.
podman_round() {
  local n=$1 t0 t1 conmon_rss=0 p
  t0=$(now)
  for i in $(seq 1 "$n"); do
    "${podman[@]}" run -d --network none "$pimage" sleep 100000 > /dev/null
  done
  t1=$(now)
  ms "$t0" "$t1" >> "$work/podman-$n.ms"
  for p in $(pgrep -x conmon); do
    conmon_rss=$((conmon_rss + $(awk '/^VmRSS/{print $2}' "/proc/$p/status")))
  done
  echo "$conmon_rss" >> "$work/podman-$n.rss"
  echo "podman: $n containers running after $(tail -1 "$work/podman-$n.ms") ms; conmon RSS total $((conmon_rss / 1024)) MB" >&2
  "${podman[@]}" rm -af -t0 > /dev/null
}

if [[ $with_podman == 1 ]]; then
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
fi

for n in "${counts[@]}"; do
  for ((r = 0; r < rounds; r++)); do
    first=0
    [[ $n == "${counts[0]}" && $r == 0 ]] && first=1
    if [[ $with_podman == 1 && $((r % 2)) == 1 ]]; then podman_round "$n"; fi
    ours "$n" "$first"
    if [[ $with_podman == 1 && $((r % 2)) == 0 ]]; then podman_round "$n"; fi
  done
done

echo
echo "| count | ours: all running | ours: supervisord RSS | podman: N \`run -d\` | podman / ours |"
echo "| --- | --- | --- | --- | --- |"
for n in "${counts[@]}"; do
  o=$(median < "$work/ours-$n.ms") orss=$(median < "$work/ours-$n.rss")
  if [[ $with_podman == 1 ]]; then
    p=$(median < "$work/podman-$n.ms") prss=$(median < "$work/podman-$n.rss")
    ratio=$(echo "$p / $o" | bc -l | xargs printf '%.1f')
    echo "| $n | $o ms | $((orss / 1024)) MB | $p ms, conmon $((prss / 1024)) MB | ${ratio}x |"
  else
    echo "| $n | $o ms | $((orss / 1024)) MB | - | - |"
  fi
done
echo "(medians of $rounds rounds, the two sides alternating)"
echo
echo "edit to running (median of 5, ${counts[0]} units): $(median < "$work/edit.ms") ms;" \
  "SIGTERM to exit: $(median < "$work/shutdown-${counts[0]}.ms") ms"
