#!/usr/bin/env bash
# Compares ledger binaries on single-entry submissions by interleaving their runs: the
# machine drifts by ±10% from one minute to the next, so runs of one binary after the other
# measure the drift as much as the binaries. Each run starts a fresh data directory, warms up
# for 4 s, then measures 8 s of `ledger-load single`.
#   scripts/bench-ab.sh ROUNDS BIN...        e.g. scripts/bench-ab.sh 4 /tmp/ledger-old /tmp/ledger-new
#   CLIENTS=128 scripts/bench-ab.sh 2 BIN    other concurrency
#   FILL=1000000 scripts/bench-ab.sh 3 BIN   measure on a log of FILL entries (past its first WALs)
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 2 ] || { echo "usage: $0 ROUNDS BIN..." >&2; exit 2; }
ROUNDS=$1; shift
PORT=${PORT:-18095}
CLIENTS=${CLIENTS:-64}
T=${CARGO_TARGET_DIR:-target}/release
cargo build --release -p ledger --bin ledger-load >&2
PID=
trap '[ -n "$PID" ] && kill $PID 2>/dev/null || true' EXIT
for r in $(seq "$ROUNDS"); do
  for B in "$@"; do
    D=$(mktemp -d /tmp/ledger-ab.XXXXXX)
    "$B" --data-dir "$D" --listen 127.0.0.1:$PORT > "$D/server.out" 2> "$D/server.err" &
    PID=$!
    for _ in $(seq 100); do grep -q listening "$D/server.out" 2>/dev/null && break; sleep 0.1; done
    LOAD="$T/ledger-load --url http://127.0.0.1:$PORT/artifacts --fsync-dir $D --no-machine"
    if [ -n "${FILL:-}" ]; then $LOAD fill --entries "$FILL" --batch 4096 --clients 4 > /dev/null; sleep 3; fi
    $LOAD single --clients "$CLIENTS" --seconds 4 > /dev/null
    echo "round $r $B: $($LOAD single --clients "$CLIENTS" --seconds 8 | grep -o '[0-9]* requests/s')"
    kill $PID; wait $PID 2>/dev/null || true; PID=
    rm -rf "$D"
  done
done
