#!/usr/bin/env bash
# CPU per single-entry request, per thread of the server: a fresh server, 3 s of warm-up, then
# 6 s of `ledger-load single --clients 64`, reading each thread's utime+stime from
# /proc/<pid>/task/*/stat before and after. Shows where a request's CPU goes (HTTP workers,
# sequencer, RocksDB's flush thread) on a machine whose two cores also run the load generator.
#   scripts/cpu-per-request.sh [BIN]        BIN defaults to the release `ledger`
#   CLIENTS=128 scripts/cpu-per-request.sh  other concurrency
set -euo pipefail
cd "$(dirname "$0")/.."
T=${CARGO_TARGET_DIR:-target}/release
cargo build --release -p ledger --bins >&2
B=${1:-$T/ledger}
PORT=${PORT:-18096}
CLIENTS=${CLIENTS:-64}
TCK=$(getconf CLK_TCK)
D=$(mktemp -d /tmp/ledger-cpu.XXXXXX)
"$B" --data-dir "$D" --listen 127.0.0.1:$PORT > "$D/server.out" 2> "$D/server.err" &
PID=$!
trap 'kill $PID 2>/dev/null || true; rm -rf "$D"' EXIT
for _ in $(seq 100); do grep -q listening "$D/server.out" 2>/dev/null && break; sleep 0.1; done
LOAD="$T/ledger-load --url http://127.0.0.1:$PORT/artifacts --fsync-dir $D"
$LOAD --no-machine single --clients "$CLIENTS" --seconds 3 > /dev/null
# tid, thread name, utime+stime in clock ticks (the name may hold spaces: fields counted
# from the end of the ")" that closes it).
snap() {
  for t in /proc/$PID/task/*; do
    s=$(cat "$t/stat"); rest=${s##*) }; set -- $rest
    echo "$(basename "$t") $(tr ' ' _ < "$t/comm") $((${12} + ${13}))"
  done | sort
}
snap > "$D/before"
OUT=$($LOAD single --clients "$CLIENTS" --seconds 6)
snap > "$D/after"
echo "$OUT"
RATE=$(echo "$OUT" | grep -o '[0-9]* requests/s' | head -1 | cut -d' ' -f1)
join "$D/before" "$D/after" | awk -v rate="$RATE" -v tck="$TCK" '
  { d = ($5 - $3) / tck; if (d > 0) { cpu[$2] += d; n[$2]++ } }
  END {
    for (k in cpu) {
      total += cpu[k]
      printf "%-20s %2d thread(s) %6.1f%% of a core  %6.2f us/request\n", k, n[k], 100 * cpu[k] / 6, 1e6 * cpu[k] / (rate * 6)
    }
    printf "%-20s             %6.1f%% of a core  %6.2f us/request\n", "server total", 100 * total / 6, 1e6 * total / (rate * 6)
  }'
