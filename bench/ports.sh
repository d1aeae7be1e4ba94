#!/usr/bin/env bash
# A published port against a direct connection to the container, in one
# run: TCP throughput (iperf3, Debian's, server in a container of its own)
# and connection rate (wrk, Debian's, against busybox httpd, a new
# connection per request), each from a client in another network
# namespace routed to the host (an outside machine), once through the
# host's address and the published port (kernel DNAT in prerouting) and
# once to the container's own address on the bridge (routed by the host). The two paths alternate within
# each round; prints the throughput medians, the best connection rates, the
# ratios, and every round.
#
# Usage (as root): bench/ports.sh [ROUNDS]   (default 5)
# Needs: iperf3, wrk, jq (apt-get install iperf3 wrk jq), the example images
# (built offline here, plus an iperf3 image from Debian's packages).
set -euo pipefail
rounds=${1:-5}
cd "$(dirname "$0")/.."
for tool in iperf3 wrk jq; do
  command -v "$tool" >/dev/null || { echo "bench/ports.sh: $tool is missing: apt-get install $tool" >&2; exit 1; }
done
work=$(mktemp -d /var/tmp/bench-ports.XXXXXX)
daemon=
cleanup() {
  for ns in $(ip netns list | awk '/^svbench-/ { print $1 }'); do ip netns del "$ns"; done
  [[ -n $daemon ]] && kill -TERM "$daemon" 2>/dev/null && wait "$daemon" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

images=$PWD/units.example/images
scripts/build-example-images.sh >/dev/null 2>&1
IMAGES=iperf3 scripts/build-example-images.sh >/dev/null 2>&1
cargo build -q --release --bins
bin=$PWD/target/release
mkdir -p "$work/units"
cat > "$work/units/iperf.toml" <<EOF2
[container]
image = "oci:$images/iperf3:latest"
ports = ["15201:5201"]
EOF2
cat > "$work/units/web.toml" <<EOF2
[container]
image = "oci:$images/busybox:latest"
command = ["sh", "-c", "mkdir -p /www; echo ok > /www/index.html; exec httpd -f -p 80 -h /www"]
ports = ["18081:80"]
EOF2
printf '[network]\nbridge = "svbench0"\nsubnet = "10.216.0.0/24"\n' > "$work/supervisord.toml"
export SUPERVISOR_SOCKET=$work/run/control.sock
SUPERVISOR_LOG=warn "$bin/supervisord" --units "$work/units" --state-dir "$work/state" --run-dir "$work/run" \
  --log-dir "$work/log" --config "$work/supervisord.toml" &
daemon=$!
address() { "$bin/supervisorctl" status --json "$1" 2>/dev/null | jq -r 'if .[0].state == "running" then .[0].address else empty end'; }
until [[ -n $(address iperf) && -n $(address web) ]]; do sleep 0.1; done
iperf=$(address iperf) web=$(address web)
# httpd closes first (`Connection: close`), so every connection used to
# leave a TIME_WAIT in the web container: tens of thousands per run, which
# slowed whichever path came later in a run (the direct path more: the
# published path's masquerade picks client ports around them), so a
# median measured that history, not the path. The container's network
# namespace keeps no TIME_WAIT instead (tcp_max_tw_buckets = 0: a closed
# connection's socket goes at once, as if its TIME_WAIT had run out), for
# both paths alike; a fresh client namespace per measurement keeps the
# client side clean too.
web_pid=$("$bin/supervisorctl" status --json web | jq -r '.[0].pid')
# The direct path is closed by default: the bridge's forward filter lets
# in only answers and published (DNATed) connections (docs/network.md).
# The bench opens it for its own clients (10.217.0.0/16), ahead of that
# filter in its chain, so the path can be measured at all.
nft insert rule ip supervisor_svbench0 forward ip saddr 10.217.0.0/16 oifname svbench0 accept
nsenter -t "$web_pid" -n sysctl -qw net.ipv4.tcp_max_tw_buckets=0

# Each measurement runs from a network namespace of its own, routed to
# the host over a veth (another machine, as far as the host can tell),
# made fresh for it: every connection leaves a TIME_WAIT on one side and a
# conntrack entry on the host, and tens of thousands of them per run would
# slow whichever measurement came later for that reason alone.
n=0
client() {
  local n=$1 ns=svbench-$1
  ip netns add "$ns"
  ip link add "svb$n" type veth peer name eth0 netns "$ns"
  ip addr add "10.217.$n.1/30" dev "svb$n"
  ip link set "svb$n" up
  ip -n "$ns" addr add "10.217.$n.2/30" dev eth0
  ip -n "$ns" link set eth0 up
  ip -n "$ns" link set lo up
  ip -n "$ns" route add default via "10.217.$n.1"
  # httpd closes first, so each connection leaves a TIME_WAIT in the
  # container; a client port used again while its old connection waits
  # there meets a reset and a 1 s SYN retry. Masquerading (the published
  # path) picks ports around those, a direct client does not: so every
  # measurement gets a client address of its own and more ports than it
  # opens connections.
  ip netns exec "$ns" sysctl -qw net.ipv4.ip_local_port_range="1024 65000"
  echo "$ns 10.217.$n.1"
}
# `measure throughput|rate published|direct`: one figure, MiB/s received
# over 5 s (iperf3's own) or connections/s over 3 s (wrk, a new connection
# per request).
measure() {
  local ns host
  n=$((n + 1)) # here: client runs in a subshell
  read -r ns host < <(client "$n")
  local target port
  case $1-$2 in
    throughput-published) target=$host port=15201 ;;
    throughput-direct) target=$iperf port=5201 ;;
    rate-published) target=$host port=18081 ;;
    rate-direct) target=$web port=80 ;;
  esac
  if [[ $1 == throughput ]]; then
    ip netns exec "$ns" iperf3 -c "$target" -p "$port" -t 5 -J | jq '.end.sum_received.bits_per_second / 8 / 1048576'
  else
    ip netns exec "$ns" wrk -t 2 -c 16 -d 3s -H 'Connection: close' "http://$target:$port/" | awk '/^Requests\/sec/ { print $2 }'
  fi
  ip netns del "$ns"
}
median() { sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

measure throughput published >/dev/null; measure rate published >/dev/null  # warm up
: > "$work/p-tp"; : > "$work/d-tp"; : > "$work/p-cr"; : > "$work/d-cr"
for ((i = 0; i < rounds; i++)); do
  if ((i % 2 == 0)); then order=(published direct); else order=(direct published); fi
  for what in throughput rate; do
    for path in "${order[@]}"; do
      measure "$what" "$path" >> "$work/${path:0:1}-$([[ $what == throughput ]] && echo tp || echo cr)"
    done
  done
done
p_tp=$(median < "$work/p-tp") d_tp=$(median < "$work/d-tp")
p_cr=$(median < "$work/p-cr") d_cr=$(median < "$work/d-cr")
echo "| path | throughput (iperf3, median of $rounds) | connection rate (wrk, median of $rounds) |"
echo "| --- | --- | --- |"
printf '| published, the host'\''s address | %.0f MiB/s | %.0f /s |\n' "$p_tp" "$p_cr"
printf '| direct, the container'\''s address | %.0f MiB/s | %.0f /s |\n' "$d_tp" "$d_cr"
awk -v a="$p_tp" -v b="$d_tp" -v c="$p_cr" -v d="$d_cr" 'BEGIN { printf "| published / direct | %.2f | %.2f |\n", a / b, c / d }'
echo "(rounds: throughput published $(paste -sd' ' "$work/p-tp"), direct $(paste -sd' ' "$work/d-tp");" \
  "connections published $(paste -sd' ' "$work/p-cr"), direct $(paste -sd' ' "$work/d-cr"))" >&2
