#!/usr/bin/env bash
# Reproduces the figures in BENCHMARKS.md: starts a release ledger on loopback with a fresh
# data directory, drives it with ledger-load, and audits/measures storage with ledger fsck.
# Every ledger-load run first prints the machine's own SHA-256 and fsync rates.
#   scripts/bench.sh            # all steps (needs ~3 GB of disk for the 10M-entry tree)
#   BIG=1000000 scripts/bench.sh  # a smaller "large" tree
set -euo pipefail
cd "$(dirname "$0")/.."
BIG=${BIG:-10000000}
PORT=${PORT:-18080}
T=${CARGO_TARGET_DIR:-target}/release
cargo build --release -p ledger --bins >&2
D=$(mktemp -d /tmp/ledger-bench.XXXXXX)
L=http://127.0.0.1:$PORT/artifacts
LOAD="$T/ledger-load --url $L --fsync-dir $D"

start() {
  "$T/ledger" --data-dir "$D" --listen 127.0.0.1:$PORT "$@" > "$D/server.out" 2> "$D/server.err" &
  PID=$!
  for _ in $(seq 100); do grep -q "listening" "$D/server.out" 2>/dev/null && return; sleep 0.1; done
  echo "ledger did not start" >&2; cat "$D/server.err" >&2; exit 1
}
stop() { kill "$PID"; wait "$PID" 2>/dev/null || true; }
trap 'kill $PID 2>/dev/null || true' EXIT

echo "== git $(git rev-parse --short HEAD), $(nproc) cores, $(date -u +%F)"
start
echo "== HTTP ceiling: GET checkpoint, 64 clients"
$LOAD checkpoint --clients 64 --seconds 10
echo "== single-entry submissions, 64 keep-alive clients, 256-byte entries"
$LOAD --no-machine single --clients 64 --seconds 10
echo "== latency at a fixed 5,000 submissions/s (open loop)"
$LOAD --no-machine rate --rate 5000 --seconds 10
echo "== batch endpoint, 4 clients x 4096 entries"
$LOAD --no-machine batch --clients 4 --batch 4096 --seconds 10
stop
rm -rf "$D"; mkdir -p "$D"

echo "== scaling, on a fresh log: append 2M entries from 100k, then 2M more from $BIG"
start --cache-bytes $((2 << 30))
$LOAD --no-machine fill --entries 100000 --batch 4096 --clients 4
$LOAD fill --entries 2000000 --batch 4096 --clients 4
$LOAD --no-machine fill --entries $((BIG - 2100000)) --batch 16384 --clients 3
$LOAD fill --entries 2000000 --batch 4096 --clients 4
echo "== inclusion proofs at the large tree, 64 clients (2 GiB block cache; first run warms it)"
$LOAD --no-machine proofs --clients 64 --seconds 10
$LOAD proofs --clients 64 --seconds 10
$LOAD --no-machine checkpoint --clients 64 --seconds 5
stop
echo "== storage (after compaction) and full audit"
"$T/ledger" fsck --data-dir "$D" --compact
du -sh "$D/db"
echo "== append rate on the compacted large log (no compaction backlog from the fill)"
start --cache-bytes $((2 << 30))
$LOAD fill --entries 2000000 --batch 4096 --clients 4
stop
rm -rf "$D"
