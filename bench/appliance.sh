#!/usr/bin/env bash
# Boot to all units running, for the appliance VM built from the example
# units with a data disk (the layers unpacked on it at build time): qemu (TCG: KVM is not usable on these machines) is started, and
# the control path is asked every 100 ms until every unit runs. Prints each
# boot's figures and the medians: time to the control path answering and
# to every unit running, then powers the VM off (supervisorctl poweroff)
# and times that too. Beside the host's view, the guest's own timeline
# (`supervisorctl boot --json`, CLOCK_BOOTTIME in the VM): when /init
# started after the kernel's start, and how long from /init to all units
# running. No peer has an equivalent; the figure is ours alone.
#
# Usage (as root): bench/appliance.sh [BOOTS]   (default 5)
# Needs: qemu-system-x86, jq, and what packaging/appliance/build.sh needs.
set -euo pipefail
boots=${1:-5}
cd "$(dirname "$0")/.."
work=$(mktemp -d /var/tmp/bench-appliance.XXXXXX)
trap 'pkill -f "$work/boot.sh" 2>/dev/null || true; rm -rf "$work"' EXIT
scripts/build-example-images.sh >/dev/null 2>&1
cargo build -q --release --bins
APPLIANCE_CACHE=$PWD/target/appliance-cache SUPERVISOR_BIN=$PWD/target/release \
  packaging/appliance/build.sh --units units.example --out "$work" --data-disk 512M 2>/dev/null
ctl() { target/release/supervisorctl --socket "$work/control.sock" "$@"; }
now() { date +%s.%N; }
median() { sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
: >"$work/answer"; : >"$work/running"; : >"$work/off"; : >"$work/init"; : >"$work/units"
for ((i = 1; i <= boots; i++)); do
  start=$(now)
  CONSOLE=$work/console.log FORWARD="tcp:127.0.0.1:18765-:8080" "$work/boot.sh" </dev/null >/dev/null 2>&1 &
  qemu=$!
  until ctl status >/dev/null 2>&1 || [[ $? == 3 ]]; do sleep 0.1; done
  answered=$(now)
  until [[ $(ctl status --json 2>/dev/null | jq '[.[] | select(.state == "running")] | length') == 3 ]]; do sleep 0.1; done
  running=$(now)
  # The guest's clock: every phase's time since its kernel started (ms).
  for ((t = 0; ; t++)); do
    ctl boot --json >"$work/boot.json" && jq -e '.phases[] | select(.phase == "all_units_ran")' "$work/boot.json" >/dev/null && break
    ((t < 300)) || { echo "boot $i: no all_units_ran in the guest's timeline after 30 s" >&2; exit 1; }
    sleep 0.1
  done
  phase() { jq -r --arg p "$1" '.phases[] | select(.phase == $p) | .at / 1000' "$work/boot.json"; }
  init=$(phase started)
  units=$(awk -v a="$(phase all_units_ran)" -v s="$init" 'BEGIN { print a - s }')
  echo "$init" >>"$work/init"
  echo "$units" >>"$work/units"
  echo "boot $i (guest clock): /init at $init s, all units running $units s after it; $(jq -c '[.phases[] | [.phase, .at]]' "$work/boot.json")" >&2
  ctl poweroff >/dev/null
  wait "$qemu" || true
  off=$(now)
  grep -q "reboot: Power down" "$work/console.log" || { echo "boot $i: no clean power-off" >&2; exit 1; }
  awk -v s="$start" -v a="$answered" -v r="$running" -v o="$off" -v i="$i" \
    'BEGIN { printf "boot %d: control path %.2f s, all units running %.2f s, poweroff %.2f s\n", i, a - s, r - s, o - r }' >&2
  awk -v a="$answered" -v s="$start" 'BEGIN { print a - s }' >>"$work/answer"
  awk -v r="$running" -v s="$start" 'BEGIN { print r - s }' >>"$work/running"
  awk -v o="$off" -v r="$running" 'BEGIN { print o - r }' >>"$work/off"
done
echo "| qemu start to | median of $boots boots |"
echo "| --- | --- |"
printf '| control path answering | %.2f s |\n' "$(median <"$work/answer")"
printf '| all 3 example units running | %.2f s |\n' "$(median <"$work/running")"
printf '| poweroff to qemu gone | %.2f s |\n' "$(median <"$work/off")"
printf '| guest: kernel start to /init | %.2f s |\n' "$(median <"$work/init")"
printf '| guest: /init to all units running | %.2f s |\n' "$(median <"$work/units")"
