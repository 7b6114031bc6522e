#!/usr/bin/env bash
# Keeps the machine busy, as a loaded CI runner is: two CPU-bound processes
# per core (load about 2x the core count), to run tests under (README
# "Testing"). They stop when this script is killed (TERM, INT, HUP) or after
# SECONDS seconds, whichever comes first:
#
#   scripts/busy.sh [SECONDS]          default 3600
#   scripts/busy.sh 900 & busy=$!; go test -race -count=20 -run '^TestX$' ./pkg/; kill $busy
#
# PER_CORE changes how many spinners run per core (default 2).
set -euo pipefail
secs="${1:-3600}"
per_core="${PER_CORE:-2}"
cores=$(getconf _NPROCESSORS_ONLN 2>/dev/null || nproc)
pids=()
stop() {
  trap - EXIT INT TERM HUP
  if [ "${#pids[@]}" -gt 0 ]; then kill "${pids[@]}" 2>/dev/null || true; fi
  wait 2>/dev/null || true
}
trap stop EXIT
trap 'exit 0' INT TERM HUP
for _ in $(seq $((cores * per_core))); do
  sh -c 'while :; do :; done' &
  pids+=($!)
done
echo "busy.sh: ${#pids[@]} spinners on $cores cores for ${secs}s (pids ${pids[*]})" >&2
sleep "$secs" &
pids+=($!)
wait $! || true
