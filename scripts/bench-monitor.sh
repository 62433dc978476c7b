#!/usr/bin/env bash
# Monitor catch-up speed (issue #6): fill a release `ledger` with N entries (256 B,
# random), then time `ledger-monitor --once` rebuilding the whole tree from the entry
# bundles and comparing every tile, on the same cores as the server. Prints entries/s
# and the ratio to the machine's single-core SHA-256 rate over 256-byte entries measured
# by `ledger-load` in the same run.
#   scripts/bench-monitor.sh              # 10,000,000 entries
#   ENTRIES=1000000 scripts/bench-monitor.sh
set -euo pipefail
cd "$(dirname "$0")/.."
ENTRIES=${ENTRIES:-10000000}
PORT=${PORT:-18310}
T=${CARGO_TARGET_DIR:-target}/release
cargo build --release -p ledger -p ledger-monitor >&2
D=$(mktemp -d /tmp/monitor-bench.XXXXXX)
PID=
trap '[ -n "$PID" ] && kill "$PID" 2>/dev/null; rm -rf "$D"' EXIT
"$T/ledger" --data-dir "$D/ledger" --listen "127.0.0.1:$PORT" --no-embedded-tsa > "$D/out" 2> "$D/err" &
PID=$!
for _ in $(seq 200); do grep -q "ledger listening" "$D/out" 2>/dev/null && break; sleep 0.1; done
echo "== git $(git rev-parse --short HEAD), $(nproc) cores, $(date -u +%F)"
"$T/ledger-load" --url "http://127.0.0.1:$PORT/artifacts" --fsync-dir "$D" fill --entries "$ENTRIES" | tee "$D/fill"
grep -o "vkey [^ ]*" "$D/out" | head -1 | cut -d' ' -f2 > "$D/log.vkey"
echo "{\"state_dir\": \"state\", \"logs\": [{\"url\": \"http://127.0.0.1:$PORT/artifacts\", \"vkey\": \"log.vkey\"}]}" > "$D/monitor.json"
start=$(date +%s.%N)
"$T/ledger-monitor" --config "$D/monitor.json" --once
end=$(date +%s.%N)
rate=$(echo "$ENTRIES / ($end - $start)" | bc -l)
sha=$(grep -o "([0-9]* hashes/s of 256 B" "$D/fill" | grep -o "[0-9]*" | head -1)
printf "monitor catch-up: %d entries in %.2f s = %.0f entries/s; SHA-256 of 256 B entries, one core: %s/s; ratio %.3f\n" \
  "$ENTRIES" "$(echo "$end - $start" | bc -l)" "$rate" "$sha" "$(echo "$rate / $sha" | bc -l)"
