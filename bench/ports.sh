#!/usr/bin/env bash
# A published port against a direct connection to the container, in one
# run: TCP throughput (1 GiB of zeros into a busybox `nc` sink) and
# connection rate (sequential HTTP/1.0 requests to busybox httpd), each
# from the host, once through 127.0.0.1:<published port> (kernel DNAT,
# masquerade) and once to the container's own address on the bridge.
# Prints the medians and the ratios.
#
# Usage (as root): bench/ports.sh [RUNS]   (default 5)
# Needs: busybox-static (scripts/build-example-images.sh), jq, python3.
set -euo pipefail
runs=${1:-5}
cd "$(dirname "$0")/.."
work=$(mktemp -d /var/tmp/bench-ports.XXXXXX)
daemon=
cleanup() {
  [[ -n $daemon ]] && kill -TERM "$daemon" 2>/dev/null && wait "$daemon" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

scripts/build-example-images.sh >/dev/null
cargo build -q --release --bins
bin=$PWD/target/release
mkdir -p "$work/units"
cat > "$work/units/sink.toml" <<EOF
[container]
image = "oci:$PWD/units.example/images/busybox:latest"
command = ["sh", "-c", "mkdir -p /www; echo ok > /www/index.html; httpd -p 80 -h /www; while true; do nc -l -p 5001 > /dev/null; done"]
ports = ["15001:5001", "18081:80"]
[stop]
signal = "SIGKILL"
EOF
printf '[network]\nbridge = "svbench0"\nsubnet = "10.216.0.0/24"\n' > "$work/supervisord.toml"
export SUPERVISOR_SOCKET=$work/run/control.sock
SUPERVISOR_LOG=warn "$bin/supervisord" --units "$work/units" --state-dir "$work/state" --run-dir "$work/run" \
  --log-dir "$work/log" --config "$work/supervisord.toml" &
daemon=$!
until [[ $("$bin/supervisorctl" status --json sink 2>/dev/null | jq -r '.[0].state') == running ]]; do sleep 0.1; done
addr=$("$bin/supervisorctl" status --json sink | jq -r '.[0].address')
sleep 0.5

python3 - "$runs" "$addr" <<'PY'
import socket, statistics, sys, time
runs, addr = int(sys.argv[1]), sys.argv[2]
paths = {"published 127.0.0.1": ("127.0.0.1", 15001, 18081), "direct " + addr: (addr, 5001, 80)}

def throughput(host, port):
    data = bytes(1 << 20)
    time.sleep(0.2)  # the sink's nc listens again
    s = socket.create_connection((host, port))
    t = time.perf_counter()
    for _ in range(1024):
        s.sendall(data)
    s.shutdown(socket.SHUT_WR)
    s.recv(1)
    s.close()
    return 1024 / (time.perf_counter() - t)  # MiB/s

def rate(host, port, n=1000):
    t = time.perf_counter()
    for _ in range(n):
        s = socket.create_connection((host, port))
        s.sendall(b"GET / HTTP/1.0\r\n\r\n")
        while s.recv(4096):
            pass
        s.close()
    return n / (time.perf_counter() - t)

results = {}
for name, (host, tport, hport) in paths.items():
    for _ in range(2):  # warm up
        throughput(host, tport)
    tp = [throughput(host, tport) for _ in range(runs)]
    time.sleep(0.3)
    cr = [rate(host, hport) for _ in range(runs)]
    results[name] = (statistics.median(tp), statistics.median(cr))
    print(f"{name}: {results[name][0]:.0f} MiB/s, {results[name][1]:.0f} connections/s", file=sys.stderr)
(p_tp, p_cr), (d_tp, d_cr) = results.values()
print("| path | throughput (median) | connection rate (median) |")
print("| --- | --- | --- |")
for name, (tp, cr) in results.items():
    print(f"| {name} | {tp:.0f} MiB/s | {cr:.0f} /s |")
print(f"| published / direct | {p_tp / d_tp:.2f} | {p_cr / d_cr:.2f} |")
PY
