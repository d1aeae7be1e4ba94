#!/usr/bin/env bash
# Runs the decision core's and the engine loop's tests as an unprivileged
# user (nobody), to show they need no root: policy is tested without
# privileges. As root only (it switches user); CI runs it after the suite.
set -euo pipefail
cd "$(dirname "$0")/.."

bin=$(cargo test --locked --lib --no-run --message-format=json 2>/dev/null |
  jq -r 'select(.reason == "compiler-artifact" and .profile.test and .target.kind == ["lib"]) | .executable')
[[ -x $bin ]] || { echo "test-unprivileged: no library test binary" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp "$bin" "$work/tests"
chown -R 65534:65534 "$work"
chmod 0755 "$work"
cd "$work"
TMPDIR="$work" setpriv --reuid=65534 --regid=65534 --clear-groups -- ./tests supervisor::policy supervisor::engine
