# Shared by the bench scripts (sourced): run ours and the peers in
# alternation, so that a machine that slows down or speeds up during a run
# (another job, thermal limits, a cache warming) moves every tool's
# figures alike instead of whichever ran last.
#
#   alternate ROUNDS NAME PREPARE COMMAND [NAME PREPARE COMMAND]...
#
# Runs each COMMAND once per round, in an order that rotates from round to
# round (A B C, B C A, C A B, ...), after its PREPARE (not timed; "" for
# none). One untimed warm-up run of each comes first. Every COMMAND is run
# the same way (`bash -c`, output discarded) and timed around it with
# bash's clock, so each carries the same fixed overhead. Keeps each run's
# milliseconds in "$BENCH_WORK/NAME.ms" and prints, for every tool, the
# median and, against the first (ours), the ratio of medians; the range
# goes to stderr.
# A run that fails stops the script: a figure of a failed run means
# nothing.

# crun 1.8 refuses hybrid cgroup hosts while a controller is left on the
# cgroup2 mount (here: hugetlb): moves hugetlb to a v1 hierarchy
# (idempotent, and harmless to the others).
crun_on_hybrid() {
  if [[ -n $(cat /sys/fs/cgroup/unified/cgroup.controllers 2>/dev/null) ]]; then
    echo "== moving the hugetlb controller to a v1 hierarchy, for crun" >&2
    mkdir -p /sys/fs/cgroup/hugetlb
    mount -t cgroup -o hugetlb cgroup /sys/fs/cgroup/hugetlb
  fi
}

median() { sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

alternate() {
  local rounds=$1
  shift
  local names=() prepares=() commands=()
  while (($#)); do
    names+=("$1") prepares+=("$2") commands+=("$3")
    shift 3
  done
  local n=${#names[@]} i k r t0 t1
  for ((i = 0; i < n; i++)); do
    : >"$BENCH_WORK/${names[i]}.ms"
    [[ -n ${prepares[i]} ]] && bash -c "${prepares[i]}" >/dev/null 2>&1
    bash -c "${commands[i]}" >/dev/null 2>&1 || { echo "${names[i]}: the warm-up run failed: ${commands[i]}" >&2; exit 1; }
  done
  for ((r = 0; r < rounds; r++)); do
    for ((k = 0; k < n; k++)); do
      i=$(((r + k) % n))
      [[ -n ${prepares[i]} ]] && bash -c "${prepares[i]}" >/dev/null 2>&1
      t0=$EPOCHREALTIME
      bash -c "${commands[i]}" >/dev/null 2>&1 || { echo "${names[i]}: run $((r + 1)) failed: ${commands[i]}" >&2; exit 1; }
      t1=$EPOCHREALTIME
      awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f\n", (b - a) * 1000 }' >>"$BENCH_WORK/${names[i]}.ms"
    done
  done
  local ours
  ours=$(median <"$BENCH_WORK/${names[0]}.ms")
  printf '%-14s %12s   %s\n' tool "median" "ours is"
  for ((i = 0; i < n; i++)); do
    local m
    m=$(median <"$BENCH_WORK/${names[i]}.ms")
    if ((i == 0)); then
      printf '%-14s %9.2f ms   -\n' "${names[i]}" "$m"
    else
      awk -v name="${names[i]}" -v m="$m" -v o="$ours" \
        'BEGIN { printf "%-14s %9.2f ms   %.2fx %s\n", name, m, (m >= o ? m / o : o / m), (m >= o ? "faster" : "slower") }'
    fi
  done
  for ((i = 0; i < n; i++)); do
    sort -g "$BENCH_WORK/${names[i]}.ms" | awk -v name="${names[i]}" -v r="$rounds" \
      '{ v[NR] = $1 } END { printf "%s: %d runs, alternating; min %.2f, max %.2f ms\n", name, r, v[1], v[NR] }' >&2
  done
}
