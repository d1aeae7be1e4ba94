#!/usr/bin/env bash
# Updates under load through a published port: UPDATES start-first updates
# (goal: no failed request; the time from the new container passing its
# trial to its traffic moved, goal under 50 ms), then ROUNDS stop-first
# updates of the same unit, whose downtime is the comparison. A client in
# another network namespace (an outside machine, as far as the host can
# tell) hammers the host's address and the published port with a new
# connection per request, from 4 threads, throughout (bench/load.py).
#
# Usage (as root): bench/update.sh [UPDATES] [ROUNDS]   (default 20 and 5)
# Needs: jq, python3, the example images (built offline here).
set -euo pipefail
updates=${1:-20}
rounds=${2:-5}
cd "$(dirname "$0")/.."
command -v jq >/dev/null || { echo "bench/update.sh: jq is missing: apt-get install jq" >&2; exit 1; }
work=$(mktemp -d /var/tmp/bench-update.XXXXXX)
daemon= load=
cleanup() {
  [[ -n $load ]] && touch "$work/stop" && { kill "$load" 2>/dev/null || true; }
  ip netns del svbench-upd 2>/dev/null || true
  ip link del svbupd 2>/dev/null || true
  [[ -n $daemon ]] && kill -TERM "$daemon" 2>/dev/null && wait "$daemon" 2>/dev/null
  rm -rf "$work"
  true
}
trap cleanup EXIT

scripts/build-example-images.sh >/dev/null 2>&1
cargo build -q --release --bins
bin=$PWD/target/release
images=$PWD/units.example/images
mkdir -p "$work/units"
# `web VERSION STRATEGY`: busybox httpd answering VERSION, healthy once it
# answers; min_healthy = "0s": a trial passes at its first healthy probe,
# so what is timed after it is the switchover alone.
web() {
  cat > "$work/units/web.toml.tmp" <<EOF2
[container]
image = "oci:$images/busybox:latest"
command = ["sh", "-c", "mkdir -p /www; echo $1 > /www/index.html; exec httpd -f -p 80 -h /www"]
ports = ["18082:80"]
[health]
exec = ["wget", "-q", "-O", "/dev/null", "http://127.0.0.1/"]
interval = "200ms"
[stop]
timeout = "5s"
[update]
strategy = "$2"
min_healthy = "0s"
healthy_within = "30s"
EOF2
  mv "$work/units/web.toml.tmp" "$work/units/web.toml"
}
web v0 start-first
printf '[network]\nbridge = "svbupd0"\nsubnet = "10.218.0.0/24"\n' > "$work/supervisord.toml"
export SUPERVISOR_SOCKET=$work/run/control.sock
SUPERVISOR_LOG=info "$bin/supervisord" --units "$work/units" --state-dir "$work/state" --run-dir "$work/run" \
  --log-dir "$work/log" --config "$work/supervisord.toml" 2> "$work/daemon.log" &
daemon=$!
status() { "$bin/supervisorctl" status --json web 2>/dev/null | jq -c '.[0]' || echo '{}'; }
until [[ $(status | jq -r '.state + .health') == runninghealthy ]]; do sleep 0.1; done

# httpd closes first, so each connection leaves a TIME_WAIT in the
# container, and a client port used again while it waits meets a reset and
# a 1 s SYN retry (see ports.sh): a timeout of the client's that says
# nothing of the update. Each serving container's namespace keeps none, set
# as soon as it serves.
no_time_wait() { nsenter -t "$(status | jq -r .pid)" -n sysctl -qw net.ipv4.tcp_max_tw_buckets=0; }
no_time_wait
# The client's namespace, routed to the host over a veth. Its address is
# new each run: the host's conntrack keeps an earlier run's flows for up to
# 2 minutes, and those its stop-first rounds left unanswered (SYNs DNATed
# to a container just killed) would catch a client port used again and
# send it to that container's gone address.
net=10.219.$((RANDOM % 250))
ip netns add svbench-upd
ip link add svbupd type veth peer name eth0 netns svbench-upd
ip addr add $net.1/30 dev svbupd
ip link set svbupd up
ip -n svbench-upd addr add $net.2/30 dev eth0
ip -n svbench-upd link set eth0 up
ip -n svbench-upd link set lo up
ip -n svbench-upd route add default via $net.1
ip netns exec svbench-upd sysctl -qw net.ipv4.ip_local_port_range="1024 65000"

# `update VERSION STRATEGY`: edits the unit and waits until the new
# container serves and the update is over.
update() {
  local before
  before=$(status | jq -r .pid)
  web "$1" "$2"
  local deadline=$((SECONDS + 60))
  until s=$(status) && [[ $(jq -r '.pid != '"$before"' and .state == "running" and .update_state == null' <<< "$s") == true ]]; do
    ((SECONDS < deadline)) || { echo "bench/update.sh: update to $1 did not end: $s" >&2; exit 1; }
    sleep 0.05
  done
  [[ $(jq -r '.update_error // empty' <<< "$s") == "" ]] || { echo "bench/update.sh: update to $1 failed: $s" >&2; exit 1; }
  no_time_wait
}
# `load START|STOP`: the client, in the background, until told to stop.
load_start() { rm -f "$work/stop"; ip netns exec svbench-upd python3 bench/load.py $net.1 18082 "$work/stop" 4 > "$work/load.json" & load=$!; sleep 0.5; }
load_stop() { touch "$work/stop"; wait "$load"; load=; cat "$work/load.json"; }

load_start
for ((i = 1; i <= updates; i++)); do update "s$i" start-first; done
sleep 0.5
# Not in $(...): a subshell cannot wait for the client.
load_stop > "$work/start-first"
start_first=$(cat "$work/start-first")
moved=$(grep -o 'traffic moved to the new container in [0-9]* ms' "$work/daemon.log" | awk '{ print $(NF - 1) }')
median() { sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

: > "$work/stop-first"
web "s$updates" stop-first # an [update] edit: the container is kept
for ((i = 1; i <= rounds; i++)); do
  load_start
  update "f$i" stop-first
  sleep 0.5
  load_stop >> "$work/stop-first"
done

echo "| strategy | updates | requests | failed | downtime (first to last failed request) | longest time between two answers | traffic moved after the trial passed |"
echo "| --- | --- | --- | --- | --- | --- | --- |"
jq -r --arg n "$updates" --arg med "$(median <<< "$moved")" --arg max "$(sort -g <<< "$moved" | tail -1)" \
  '"| start-first | \($n) | \(.requests) | \(.failures) | \(.failing_ms) ms | \(.longest_gap_ms) ms | median \($med) ms, max \($max) ms |"' <<< "$start_first"
jq -rs --arg n "$rounds" '"| stop-first | \($n) | \(map(.requests) | add) | \(map(.failures) | add) | median \(map(.failing_ms) | sort | .[length / 2 | floor]) ms (max \(map(.failing_ms) | max) ms) | median \(map(.longest_gap_ms) | sort | .[length / 2 | floor]) ms | - |"' "$work/stop-first"
echo "(moved ms: $(paste -sd' ' <<< "$moved"); start-first failures: $(jq -c .first_failures <<< "$start_first");" \
  "stop-first rounds: $(jq -c '{failures, failing_ms, longest_gap_ms, first_failures}' "$work/stop-first" | paste -sd' '))" >&2
