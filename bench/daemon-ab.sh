#!/usr/bin/env bash
# Two builds of ours side by side on N units (issue 21's figures for a
# change): the builds alternate (A B, B A, ...) for ROUNDS rounds, each
# round on a fresh state directory:
#
#   all running   supervisord started on N busybox `sleep` units (stop
#                 signal SIGKILL, run directory on a tmpfs): its boot
#                 timeline's `all_units_ran` minus `started`
#   RSS           supervisord's VmRSS then
#   edit          EDITS edits of one unit (a new command, written to a
#                 temporary file and renamed into place): from before the
#                 rename to the new container running, from the daemon's
#                 own event times, split into the time to the old
#                 container's `stopping`, its stop, and the new one's start
#   shutdown      SIGTERM to supervisord's exit
#
# Prints each round, then the medians of each build.
#
# Usage (as root): bench/daemon-ab.sh DIR_A DIR_B [N]   (N default 500)
#        DIR_* hold supervisord and supervisorctl (a target/release);
#        ROUNDS=3, EDITS=5
# Needs: jq, busybox-static (scripts/build-example-images.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
a=${1:?usage: bench/daemon-ab.sh DIR_A DIR_B [N]}
b=${2:?usage: bench/daemon-ab.sh DIR_A DIR_B [N]}
n=${3:-500}
rounds=${ROUNDS:-3}
edits=${EDITS:-5}
source bench/lib.sh
scripts/build-example-images.sh >/dev/null
image="oci:$PWD/units.example/images/busybox:latest"
work=$(mktemp -d /var/tmp/bench-daemon-ab.XXXXXX)
cleanup() {
  [[ -n ${daemon:-} ]] && kill -TERM "$daemon" 2>/dev/null && wait "$daemon" 2>/dev/null
  umount "$work/round/run" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
unit() { printf '[container]\nimage = "%s"\ncommand = ["sleep", "%s"]\n[stop]\nsignal = "SIGKILL"\n' "$image" "$1"; }
# Milliseconds from $1 to $2, both RFC 3339 times or seconds since the epoch.
secs() { [[ $1 == *T* ]] && date -d "$1" +%s.%N || echo "$1"; }
ms() { awk -v a="$(secs "$1")" -v b="$(secs "$2")" 'BEGIN { printf "%.0f\n", (b - a) * 1000 }'; }

# round NAME DIR: one round of build DIR; appends to $work/NAME.*.
round() {
  local name=$1 bin=$2 dir=$work/round
  mkdir -p "$dir/units" "$dir/run"
  mount -t tmpfs -o mode=0755 tmpfs "$dir/run"
  for i in $(seq 1 "$n"); do unit 100000 >"$dir/units/s$i.toml"; done
  "$bin/supervisorctl" --store "$dir/state" pull "$image" >/dev/null 2>&1
  export SUPERVISOR_SOCKET=$dir/run/control.sock
  : >"$dir/supervisord.toml"
  SUPERVISOR_LOG=warn "$bin/supervisord" --units "$dir/units" --state-dir "$dir/state" --run-dir "$dir/run" \
    --log-dir "$dir/log" --config "$dir/supervisord.toml" &
  daemon=$!
  until [[ $("$bin/supervisorctl" boot --json 2>/dev/null) == *all_units_ran* ]]; do sleep 0.05; done
  local boot rss
  boot=$("$bin/supervisorctl" boot --json | jq '[.phases[] | {(.phase): .at}] | add | .all_units_ran - .started | round')
  rss=$(awk '/^VmRSS/{print int($2 / 1024)}' "/proc/$daemon/status")
  echo "$boot" >>"$work/$name.boot"
  echo "$rss" >>"$work/$name.rss"
  local ev=$dir/events.ndjson k t0 line
  "$bin/supervisorctl" events --json >>"$ev" &
  local events=$!
  # The stream prints nothing until an event: a first edit's events show
  # that it is connected.
  local edited=()
  for k in $(seq 1 "$edits"); do
    sleep 0.2
    unit "$((100000 + k))" >"$dir/units/s1.toml.tmp"
    t0=$EPOCHREALTIME
    mv "$dir/units/s1.toml.tmp" "$dir/units/s1.toml"
    until [[ $(jq -c 'select(.unit == "s1" and .new == "running" and .update == null)' "$ev" | wc -l) -ge $k ]]; do
      sleep 0.02
    done
    # This edit's three changes: running -> stopping -> starting -> running.
    line=$(jq -r 'select(.unit == "s1" and .update == null) | .time' "$ev" | tail -3 | paste -sd' ')
    read -r stopping starting running <<<"$line"
    echo "$(ms "$t0" "$running") $(ms "$t0" "$stopping") $(ms "$stopping" "$starting") $(ms "$starting" "$running")" \
      >>"$work/$name.edit"
    edited+=("$(ms "$t0" "$running")")
  done
  kill "$events"
  t0=$EPOCHREALTIME
  kill -TERM "$daemon"
  wait "$daemon"
  daemon=
  local down
  down=$(ms "$t0" "$EPOCHREALTIME")
  echo "$down" >>"$work/$name.down"
  echo "$name: all running $boot ms, RSS $rss MB, edits ${edited[*]} ms, shutdown $down ms" >&2
  umount "$dir/run"
  rm -rf "$dir"
}

for ((r = 0; r < rounds; r++)); do
  if ((r % 2 == 0)); then round A "$a" && round B "$b"; else round B "$b" && round A "$a"; fi
done

col() { awk -v c="$1" '{ print $c }' "$2" | median; }
echo "$n units, $rounds rounds, $edits edits each (medians; ms unless said)"
printf '%-4s %-40s %12s %8s %10s %12s %8s %8s %10s\n' build dir "all running" "RSS MB" edit "to stopping" stop start shutdown
for name in A B; do
  dir=$a
  [[ $name == B ]] && dir=$b
  printf '%-4s %-40s %12s %8s %10s %12s %8s %8s %10s\n' "$name" "$dir" \
    "$(median <"$work/$name.boot")" "$(median <"$work/$name.rss")" \
    "$(col 1 "$work/$name.edit")" "$(col 2 "$work/$name.edit")" "$(col 3 "$work/$name.edit")" \
    "$(col 4 "$work/$name.edit")" "$(median <"$work/$name.down")"
done
