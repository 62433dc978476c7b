#!/usr/bin/env bash
# Reproduces the witness figures in BENCHMARKS.md: a release `ledger-witness` on loopback
# with a fresh data directory per run, following 2,000 logs, driven by `witness-load` on
# the same two cores (each request advances one log by one checkpoint). The run starts
# and ends by measuring the machine's own Ed25519 verify and sign rates on one core: a
# witness does one verify (the log's signature) and one sign (its cosignature) per request,
# which bounds it at cores / (t_verify + t_sign).
#   scripts/bench-witness.sh
#   LOGS=500 CONNS="64 128" SECS=10 scripts/bench-witness.sh
set -euo pipefail
cd "$(dirname "$0")/.."
LOGS=${LOGS:-2000}
CONNS=${CONNS:-"64 128 256"}
SECS=${SECS:-10}
PORT=${PORT:-18090}
# Enough precomputed checkpoints per log for ~30,000 requests/s.
STEPS=${STEPS:-$((30000 * SECS / LOGS + 20))}
T=${CARGO_TARGET_DIR:-target}/release
# With the ledger in the same build: alone, the witness's feature set differs, and cargo
# would compile another RocksDB (~14 minutes on 2 cores) instead of reusing the ledger's.
cargo build --release -p ledger -p ledger-witness --bins >&2
D=$(mktemp -d /tmp/witness-bench.XXXXXX)
PID=
trap 'if [ -n "$PID" ]; then kill "$PID" 2>/dev/null || true; fi; rm -rf "$D"' EXIT
"$T/ledger-witness" keygen --name bench.example/witness --out "$D" > /dev/null 2>&1
"$T/witness-load" logs --logs "$LOGS" --seed 1 > "$D/logs"

start() {
  rm -rf "$D/data"
  "$T/ledger-witness" serve --key "$D/witness.key" --logs "$D/logs" --data-dir "$D/data" \
    --listen 127.0.0.1:$PORT "$@" > "$D/server.out" 2> "$D/server.err" &
  PID=$!
  for _ in $(seq 100); do grep -q "listening" "$D/server.out" 2>/dev/null && return; sleep 0.1; done
  echo "ledger-witness did not start" >&2; cat "$D/server.err" >&2; exit 1
}
stop() { kill "$PID"; wait "$PID" 2>/dev/null || true; PID=; }

echo "== git $(git rev-parse --short HEAD), $(nproc) cores, $(date -u +%F)"
"$T/witness-load" machine --fsync-dir "$D"
for C in $CONNS; do
  echo "== add-checkpoint, $LOGS logs, $C keep-alive connections, ${SECS}s"
  start
  "$T/witness-load" run --url http://127.0.0.1:$PORT --logs "$LOGS" --seed 1 --steps "$STEPS" \
    --connections "$C" --seconds "$SECS" --witness-vkey "$D/witness.vkey" --server-pid "$PID"
  stop
done
echo "== the same with no group-commit interval (--commit-interval-us 0), 128 connections"
start --commit-interval-us 0
"$T/witness-load" run --url http://127.0.0.1:$PORT --logs "$LOGS" --seed 1 --steps "$STEPS" \
  --connections 128 --seconds "$SECS" --witness-vkey "$D/witness.vkey" --server-pid "$PID"
stop
"$T/witness-load" machine
