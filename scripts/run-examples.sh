#!/usr/bin/env bash
# Sets up and runs the supervisor on units.example/ from a fresh checkout:
# installs the tools, builds the example images offline, builds the
# binaries, checks the units, and starts supervisord on them (state, run
# and log directories of its own under /var/tmp, so nothing of the host's
# /etc or /var is touched). It then shows `supervisorctl status`, asks the
# database PING through `supervisorctl exec`, and, on a terminal, keeps
# running until Ctrl-C (which stops every unit in reverse order).
#
# worker reaches db by name on the bridge network (sv0, 10.213.0.0/16 by
# default; removed again when supervisord stops); web answers on the
# host's port 8080.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh
scripts/build-example-images.sh
cargo build --release --locked --bins
bin=$PWD/target/release
$bin/supervisorctl validate units.example
$bin/supervisord --check --units units.example

work=$(mktemp -d /var/tmp/supervisor-example.XXXXXX)
export SUPERVISOR_SOCKET=$work/run/control.sock
ctl=$bin/supervisorctl
$bin/supervisord --units units.example --state-dir "$work/state" --run-dir "$work/run" \
  --log-dir "$work/log" --config "$work/supervisord.toml" 2> "$work/supervisord.log" &
daemon=$!
: > "$work/supervisord.toml"
stop() {
  kill -TERM "$daemon" 2>/dev/null || true
  wait "$daemon" && echo "supervisord stopped every unit and exited"
  rm -rf "$work"
}
trap stop EXIT

for _ in $(seq 300); do
  [[ $($ctl status --json 2>/dev/null | jq -r '[.[] | .state] | join(",")') == running,running,running ]] && break
  sleep 0.1
done
$ctl status || true
answer=$($ctl exec db -- redis-cli ping || true)
echo "db answers: ${answer:-nothing}"
$ctl exec db -- redis-cli incr visits
page=$(busybox wget -q -O - http://127.0.0.1:8080/ || true)
echo "web answers on 127.0.0.1:8080: ${page:-nothing}"
echo "== supervisord's log so far"
cat "$work/supervisord.log"
if [[ -t 0 ]]; then
  echo
  echo "supervisord runs on units.example; in another shell, try:"
  echo "  SUPERVISOR_SOCKET=$SUPERVISOR_SOCKET $ctl status"
  echo "  SUPERVISOR_SOCKET=$SUPERVISOR_SOCKET $ctl logs -f db"
  echo "Ctrl-C stops it."
  wait "$daemon" || true
fi
[[ $answer == PONG && -n $page ]]
