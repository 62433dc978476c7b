#!/usr/bin/env bash
# Reproduces the "cost of access control" figures in BENCHMARKS.md: the same release
# `ledger` without and with --access-config (API-token authentication, a Cedar decision and
# an access-audit record per request), driven by `ledger-load` on the same cores. Appends
# wait for their audit record to be durable before they run; reads queue theirs. Each line
# is prefixed with the configuration; compare the rates as ratios. The first `ledger-load`
# run of each configuration also prints the machine's SHA-256 and fsync rates.
#   scripts/bench-access.sh
#   CLIENTS=16 SECS=5 scripts/bench-access.sh
set -euo pipefail
cd "$(dirname "$0")/.."
CLIENTS=${CLIENTS:-64}
SECS=${SECS:-10}
PORT=${PORT:-18280}
T=${CARGO_TARGET_DIR:-target}/release
cargo build --release --workspace --bins >&2
D=$(mktemp -d /tmp/access-bench.XXXXXX)
PID=
trap '[ -n "$PID" ] && kill "$PID" 2>/dev/null; rm -rf "$D"' EXIT

start() { # data-dir, extra ledger arguments...
  local dir=$1
  shift
  "$T/ledger" --data-dir "$dir" --listen "127.0.0.1:$PORT" "$@" > "$D/out" 2> "$D/err" &
  PID=$!
  for _ in $(seq 200); do
    grep -q "ledger listening" "$D/out" 2>/dev/null && return
    sleep 0.1
  done
  cat "$D/err" >&2
  exit 1
}

stop() {
  kill "$PID"
  wait "$PID" 2>/dev/null || true
  PID=
}

run() { # label, extra ledger-load arguments...
  local label=$1
  shift
  local url="http://127.0.0.1:$PORT/artifacts"
  "$T/ledger-load" --url "$url" --fsync-dir "$D" "$@" single --clients "$CLIENTS" --seconds "$SECS" |
    sed "s/^/$label: /"
  "$T/ledger-load" --url "$url" --no-machine "$@" checkpoint --clients "$CLIENTS" --seconds "$SECS" |
    sed "s/^/$label: /"
}

echo "== git $(git rev-parse --short HEAD), $(nproc) cores, $(date -u +%F)"
start "$D/open"
run open
stop

# An admin token made offline; limits far above what two cores can send, so the figures
# are the cost of the checks and the audit records, not of a rate limit.
"$T/ledger" token --data-dir "$D/guarded" create --principal bench --role admin > "$D/token" 2> /dev/null
echo '{"limits": {"requests_per_second": 1e9, "burst": 1e9}}' > "$D/access.json"
start "$D/guarded" --access-config "$D/access.json"
run guarded --token-file "$D/token"
stop
