#!/usr/bin/env bash
# Space amplification under a steady overwrite workload (issue 6): a node
# with small segments, OBJECTS keys written once, then overwritten at
# random for SECS seconds, then SETTLE seconds idle. Every 5 s it prints the
# data dir's size on disk (du), the live bytes the shards report
# (tessera_shard_live_bytes) and their ratio; at the end the highest ratio
# seen while writing (after the first 10 s) and the last one.
#
# usage: tools/amp.sh [BINARY] [--secs 60] [--settle 30] [--objects 2048]
#                     [--size 1MiB] [--conns 16] [--extra "server flags"]
#   default server flags: --segment-size 64MiB. Needs target/release/tessera-bench.
# Ports: PORT (default 9480) and PORT+10 (admin).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
BIN=target/release/tessera
if [ $# -gt 0 ] && [ "${1#--}" = "$1" ]; then BIN=$1; shift; fi
SECS=60 SETTLE=30 OBJECTS=2048 SIZE=1MiB CONNS=16 EXTRA="--segment-size 64MiB"
while [ $# -gt 0 ]; do
  case "$1" in
    --secs) SECS=$2; shift 2 ;;
    --settle) SETTLE=$2; shift 2 ;;
    --objects) OBJECTS=$2; shift 2 ;;
    --size) SIZE=$2; shift 2 ;;
    --conns) CONNS=$2; shift 2 ;;
    --extra) EXTRA=$2; shift 2 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
BENCH=${BENCH:-target/release/tessera-bench}
PORT=${PORT:-9480}
export AWS_ACCESS_KEY_ID=AMPBENCHACCESSKEY001 AWS_SECRET_ACCESS_KEY=amp-bench-secret-key-00000000000000000001
export TESSERA_ACCESS_KEY=$AWS_ACCESS_KEY_ID TESSERA_SECRET_KEY=$AWS_SECRET_ACCESS_KEY
. tools/lib.sh
work_dir amp
# shellcheck disable=SC2086
start_node data "$BIN" "$PORT" "http://127.0.0.1:$PORT/" --admin-address "127.0.0.1:$((PORT + 10))" $EXTRA
E="http://127.0.0.1:$PORT"
"$BENCH" --endpoint "$E" --progress 0s fill --bucket amp --count "$OBJECTS" --size "$SIZE" --concurrency 16 >/dev/null
sample() { # prints: du live ratio
  local du live
  du=$(du -sb "$WORK/data" | cut -f1)
  live=$(curl -s "http://127.0.0.1:$((PORT + 10))/metrics" \
    | awk '/^tessera_shard_live_bytes/ { s += $NF } END { printf "%.0f", s }')
  awk -v d="$du" -v l="$live" 'BEGIN { printf "%.0f %.0f %.2f\n", d, l, (l > 0 ? d / l : 0) }'
}
"$BENCH" --endpoint "$E" --progress 0s put --bucket amp --objects "$OBJECTS" --size "$SIZE" \
  --concurrency "$CONNS" --duration "${SECS}s" >"$WORK/bench.txt" 2>&1 &
BPID=$!
t=0 max=0
echo "t_s du_bytes live_bytes ratio"
while kill -0 "$BPID" 2>/dev/null; do
  sleep 5; t=$((t + 5))
  read -r du live ratio < <(sample)
  echo "$t $du $live $ratio"
  if [ "$t" -gt 10 ]; then max=$(awk -v a="$max" -v b="$ratio" 'BEGIN { print (b > a ? b : a) }'); fi
done
wait "$BPID" || { cat "$WORK/bench.txt" >&2; exit 1; }
for _ in $(seq 5 5 "$SETTLE"); do
  sleep 5; t=$((t + 5))
  read -r du live ratio < <(sample)
  echo "$t $du $live $ratio (idle)"
done
grep -A1 "^op " "$WORK/bench.txt" | head -2
echo "max ratio while writing: $max; last: $ratio"
