#!/usr/bin/env bash
# Reproduces the "waiting for an attested checkpoint" figures in BENCHMARKS.md: a release
# `ledger` asking two release `ledger-witness` servers (quorum: both) and a standalone
# `ledger tsa` on loopback, driven by `ledger-load attested` on the same two cores: a
# closed loop of plain `add`, then the same load with `?wait=attested`. The added latency
# is bounded below by the attestation cadence (--attest-interval-ms), so each cadence in
# INTERVALS is measured. The run also prints the machine's SHA-256 and fsync rates.
#   scripts/bench-attest.sh
#   INTERVALS="1000 100" CLIENTS=16 SECS=10 scripts/bench-attest.sh
set -euo pipefail
cd "$(dirname "$0")/.."
INTERVALS=${INTERVALS:-"1000 250 100"}
CLIENTS=${CLIENTS:-16}
SECS=${SECS:-10}
BASE=${PORT:-18180}
T=${CARGO_TARGET_DIR:-target}/release
cargo build --release -p ledger -p ledger-witness --bins >&2
D=$(mktemp -d /tmp/attest-bench.XXXXXX)
PIDS=()
trap 'for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$D"' EXIT

wait_for() { # file pattern
  for _ in $(seq 100); do grep -q "$2" "$1" 2>/dev/null && return; sleep 0.1; done
  echo "no '$2' in $1" >&2; exit 1
}

# One log (origin and key) per cadence: witnesses remember each log, so a fresh ledger
# reusing a key would be a fork to them.
: > "$D/logs"
for I in $INTERVALS; do
  "$T/ledger" keygen --origin "bench.example/artifacts-$I" --name artifacts --out-dir "$D/keys-$I" > /dev/null 2>&1
  echo "log $(cat "$D/keys-$I/artifacts.vkey")" >> "$D/logs"
done
for i in 1 2; do
  "$T/ledger-witness" keygen --name "w$i.bench" --out "$D/w$i" > /dev/null 2>&1
  "$T/ledger-witness" serve --key "$D/w$i/witness.key" --logs "$D/logs" --data-dir "$D/w$i/data" \
    --listen "127.0.0.1:$((BASE + i))" > "$D/w$i.out" 2> "$D/w$i.err" &
  PIDS+=($!)
  wait_for "$D/w$i.out" listening
done
"$T/ledger" tsa-keygen --dir "$D/tsa" > /dev/null 2>&1
"$T/ledger" tsa --key "$D/tsa/tsa.key" --cert "$D/tsa/tsa.pem" --listen "127.0.0.1:$((BASE + 3))" \
  > "$D/tsa.out" 2> "$D/tsa.err" &
PIDS+=($!)
wait_for "$D/tsa.out" listening
cat > "$D/trust.policy" <<POLICY
witness w1 $(cat "$D/w1/witness.vkey") http://127.0.0.1:$((BASE + 1))
witness w2 $(cat "$D/w2/witness.vkey") http://127.0.0.1:$((BASE + 2))
group both all w1 w2
quorum both
POLICY

echo "== git $(git rev-parse --short HEAD), $(nproc) cores, $(date -u +%F)"
first=1
for I in $INTERVALS; do
  rm -rf "$D/ledger"
  mkdir -p "$D/ledger"
  cp -r "$D/keys-$I" "$D/ledger/keys"
  "$T/ledger" --data-dir "$D/ledger" --listen "127.0.0.1:$BASE" --log "artifacts=bench.example/artifacts-$I" --witness-policy "$D/trust.policy" \
    --tsa-url "http://127.0.0.1:$((BASE + 3))/tsa" --tsa-roots "$D/tsa/tsa-root.pem" \
    --attest-interval-ms "$I" > "$D/ledger.out" 2> "$D/ledger.err" &
  LP=$!
  PIDS+=($LP)
  wait_for "$D/ledger.out" "ledger listening"
  echo "== --attest-interval-ms $I, two witnesses (quorum both) and an RFC 3161 authority, $CLIENTS clients, ${SECS}s each"
  machine=(--no-machine)
  if [ -n "$first" ]; then machine=(--fsync-dir "$D"); first=; fi
  "$T/ledger-load" --url "http://127.0.0.1:$BASE/artifacts" "${machine[@]}" attested \
    --clients "$CLIENTS" --seconds "$SECS"
  curl -s "http://127.0.0.1:$BASE/metrics" | grep -E '^attest_(published|failed_rounds)_total|^attest_round_seconds_(sum|count)' || true
  kill "$LP"
  wait "$LP" 2>/dev/null || true
done
