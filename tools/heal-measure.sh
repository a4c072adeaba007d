#!/usr/bin/env bash
# Time to heal one dir's worth of data on a format 2 node (4 dirs, parity
# 2): fill COUNT objects of SIZE, stop, replace dir 1 with an empty dir,
# start with the heal unthrottled, poll `tessera admin heal` until it says
# healed. Release build: cargo build --release -p tessera-node -p tessera-bench
# Usage: tools/heal-measure.sh [COUNT] [SIZE]
set -euo pipefail
COUNT=${1:-1024}
SIZE=${2:-1MiB}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
T=${CARGO_TARGET_DIR:-$ROOT/target}/${PROFILE:-release}
BIN=$T/tessera
BENCH=$T/tessera-bench
W=$(mktemp -d /tmp/heal-measure.XXXXXX)
mkdir -p "$W"/d0 "$W"/d1 "$W"/d2 "$W"/d3
export TESSERA_ACCESS_KEY=AKIAHEALMEASURE00000 TESSERA_SECRET_KEY=healmeasuresecretsecretsecretsecret00000
export AWS_ACCESS_KEY_ID=$TESSERA_ACCESS_KEY AWS_SECRET_ACCESS_KEY=$TESSERA_SECRET_KEY
PORT=$((20000 + RANDOM % 20000)); APORT=$((PORT + 1))
PID=
cleanup() { [ -n "$PID" ] && kill "$PID" 2>/dev/null; wait 2>/dev/null; rm -rf "$W"; }
trap cleanup EXIT
start() {
  "$BIN" server --address 127.0.0.1:$PORT --admin-address 127.0.0.1:$APORT --threads 2 "$@" \
    "$W"/d0 "$W"/d1 "$W"/d2 "$W"/d3 >>"$W/log" 2>&1 &
  PID=$!
  for _ in $(seq 1 600); do
    curl -sf "http://127.0.0.1:$PORT/_tessera/health/ready" >/dev/null && return 0
    sleep 0.1
  done
  echo "node did not get ready"; tail -20 "$W/log"; exit 1
}
stop() { kill -TERM "$PID"; wait "$PID" || true; PID=; }
start --erasure
"$BENCH" --endpoint "http://127.0.0.1:$PORT" --progress 0s fill --bucket heal --size "$SIZE" --count "$COUNT" --concurrency 8 | tail -3
stop
echo "dir 1 before: $(du -sb "$W/d1" | cut -f1) bytes"
rm -rf "$W/d1"; mkdir "$W/d1"
T0=$(date +%s.%N)
start --heal-bytes-per-sec 0
while :; do
  R=$("$BIN" admin heal --endpoint "http://127.0.0.1:$APORT" 2>/dev/null || true)
  if echo "$R" | grep -q '"healed": *true'; then break; fi
  sleep 0.05
done
T1=$(date +%s.%N)
echo "healed in $(echo "$T1 - $T0" | bc) s (from the start command, node start included)"
echo "dir 1 after: $(du -sb "$W/d1" | cut -f1) bytes"
echo "$R" | python3 -c 'import json,sys; v=json.load(sys.stdin); h=[d["heal"] for d in v["disks"] if d.get("heal")]; print(json.dumps(h[0] if h else v))' 
grep -E "heal pass starts|disk healed" "$W/log" | head -2
grep -E "disk healed" "$W/log" | tail -1
