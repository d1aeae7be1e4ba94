#!/usr/bin/env bash
# Runs every fuzz target (or the ones named) for SECONDS each, one after
# the other in one process each (the machine's cores are shared), then
# minimizes each corpus and prints executions and coverage per target.
#
#   fuzz/run.sh SECONDS [TARGET...]
#
# Needs nightly and cargo-fuzz (`cargo install cargo-fuzz`); CI does not:
# it replays the committed inputs on stable (tests/fuzz_corpus.rs).
# New inputs go into fuzz/corpus/<target>/; a crash or a failed check is
# written to fuzz/artifacts/<target>/: fix it, and commit the input under
# fuzz/regressions/<target>/. FUZZ_LOGS=DIR keeps each target's libFuzzer log.
# Do not pause a run (SIGSTOP, to measure something else): -timeout is
# wall-clock time, so the input under way is reported as a timeout.
set -euo pipefail
seconds=${1:?usage: fuzz/run.sh SECONDS [TARGET...]}
shift
cd "$(dirname "$0")"
if [ $# -gt 0 ]; then
  targets=("$@")
else
  mapfile -t targets < <(cargo +nightly fuzz list)
fi
cargo +nightly fuzz build -O -a
logs=${FUZZ_LOGS:-$(mktemp -d)}
mkdir -p "$logs"
[ -n "${FUZZ_LOGS:-}" ] || trap 'rm -rf "$logs"' EXIT
summary=()
failed=0
for t in "${targets[@]}"; do
  mkdir -p "corpus/$t"
  dirs=("corpus/$t")
  [ -d "regressions/$t" ] && dirs+=("regressions/$t")
  # A layer needs room for its headers and a few files; the other inputs
  # are small. -malloc_limit_mb flags any single allocation over it.
  max_len=16384
  [ "$t" = tar_layer ] && max_len=262144
  echo "== $t: ${seconds}s"
  status=ok
  if ! cargo +nightly fuzz run -O -a "$t" "${dirs[@]}" -- \
    -max_total_time="$seconds" -max_len="$max_len" -timeout=10 -rss_limit_mb=2048 -malloc_limit_mb=512 \
    -print_final_stats=1 2>"$logs/$t.log"; then
    status="FAILED (see fuzz/artifacts/$t/)"
    failed=1
    tail -40 "$logs/$t.log"
  fi
  last=$(grep -E '^#[0-9]+' "$logs/$t.log" | tail -1 || true)
  execs=$(grep -E '^stat::number_of_executed_units' "$logs/$t.log" | awk '{print $2}' || true)
  cov=$(sed -nE 's/.* cov: ([0-9]+).*/\1/p' <<<"$last")
  ft=$(sed -nE 's/.* ft: ([0-9]+).*/\1/p' <<<"$last")
  # When coverage last grew (a NEW input; a REDUCE only shortens one):
  # a run whose last new input came early has plateaued.
  grown=$(grep -E '^#[0-9]+.*NEW ' "$logs/$t.log" | tail -1 | sed -nE 's/^#([0-9]+).*/\1/p' || true)
  if [ "$status" = ok ]; then
    cargo +nightly fuzz cmin -O -a "$t" "corpus/$t" -- -max_len="$max_len" -timeout=10 >/dev/null 2>&1 || true
  fi
  summary+=("$(printf '%-18s execs %-10s cov %-6s ft %-6s last new at #%-10s corpus %-5s %s' \
    "$t" "${execs:-?}" "${cov:-?}" "${ft:-?}" "${grown:-?}" "$(ls "corpus/$t" | wc -l)" "$status")")
done
echo
echo "== $(date -u +%F) commit $(git rev-parse --short HEAD 2>/dev/null || echo '?'), ${seconds}s per target"
printf '%s\n' "${summary[@]}"
exit $failed
