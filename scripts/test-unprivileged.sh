#!/usr/bin/env bash
# Runs the decision core's and the engine loop's tests as an unprivileged
# user (nobody), to show they need no root: policy is tested without
# privileges. As root only (it switches user); CI runs it after the suite.
# A test that skips says why in a file (docs/testing.md), printed at the
# end and added to the caller's SUPERVISOR_TEST_SKIPS file when it has one.
# Arguments are more test filters (for example to try the summary).
set -euo pipefail
cd "$(dirname "$0")/.."

bin=$(cargo test --locked --lib --no-run --message-format=json 2>/dev/null |
  jq -r 'select(.reason == "compiler-artifact" and .profile.test and .target.kind == ["lib"]) | .executable')
[[ -x $bin ]] || { echo "test-unprivileged: no library test binary" >&2; exit 1; }
work=$(mktemp -d)
outer_skips=${SUPERVISOR_TEST_SKIPS:-}
summary() {
  local rc=$?
  if [[ -s $work/skips ]]; then
    echo "Skipped tests as nobody ($(wc -l <"$work/skips")):"
    sed 's/^/  /' "$work/skips"
    if [[ -n $outer_skips ]]; then sed 's/$/ (as nobody)/' "$work/skips" >>"$outer_skips"; fi
  else
    echo "Skipped tests as nobody: none"
  fi
  rm -rf "$work"
  exit "$rc"
}
trap summary EXIT
cp "$bin" "$work/tests"
chown -R 65534:65534 "$work"
chmod 0755 "$work"
cd "$work"
TMPDIR="$work" SUPERVISOR_TEST_SKIPS="$work/skips" setpriv --reuid=65534 --regid=65534 --clear-groups -- \
  ./tests "$@" supervisor::policy supervisor::engine
