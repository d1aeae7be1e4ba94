#!/usr/bin/env bash
# Sets up and runs the supervisor on units.example/ from a fresh checkout:
# installs the tools, builds the example images offline, builds the
# binaries, checks the units the way supervisord loads them, and runs the
# example database in a container of our own runtime.
#
# The daemon that keeps every unit running is not built yet (issue 5): the
# units are checked with `supervisord --check`, and the database runs with
# `supervisord runtime run-unit` (one unit, in the foreground) and answers
# through `supervisord runtime exec`. web and worker need the bridge network
# (issue 6) for their published port and for reaching db by name.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh
scripts/build-example-images.sh
cargo build --release --locked --bins
bin=$PWD/target/release
$bin/supervisorctl validate units.example
$bin/supervisord --check --units units.example

state=$(mktemp -d /var/tmp/supervisor-example.XXXXXX)
run=$state/run
trap '$bin/supervisord --run-dir "$run" runtime cleanup >/dev/null; rm -rf "$state"' EXIT
echo "== starting db (redis) from units.example/db.toml"
$bin/supervisord --state-dir "$state" --run-dir "$run" runtime run-unit units.example/db.toml >/dev/null &
db=$!
for _ in $(seq 100); do
  answer=$($bin/supervisord --run-dir "$run" runtime exec db -- redis-cli ping 2>/dev/null || true)
  [[ $answer == PONG ]] && break
  sleep 0.1
done
echo "db answers: ${answer:-nothing}"
$bin/supervisord --run-dir "$run" runtime exec db -- redis-cli incr visits
echo "== stopping db (SIGTERM: redis saves, then exits)"
kill -TERM "$db"
wait "$db" && echo "db stopped cleanly"
[[ $answer == PONG ]]
