#!/usr/bin/env bash
# Lifecycle pass cost on one node: OLD objects (1%) due, NEW ones (99%) not.
# Usage: tools/lifecycle-measure.sh BIN BENCH [index|full|nc-index|nc-full] [TOTAL]
# Prints the node's "lifecycle applied" lines (elapsed_ms, visited per
# bucket and shard pass) once the old objects are due.
# nc-*: a versioned bucket, every key written twice (one noncurrent version
# each), and a NoncurrentVersionExpiration rule of 4 days instead.
set -euo pipefail
BIN=$1; BENCH=$2; MODE=${3:-index}; TOTAL=${4:-1000000}
OLD=$((TOTAL / 100)); NEW=$((TOTAL - OLD))
DAY=60          # a lifecycle "day" of 60 s; the rule says 4 days = 240 s
PORT=${PORT:-19600}
DIR=$(mktemp -d /tmp/lcmeasure.XXXX)
export TESSERA_ACCESS_KEY=lcmeasure TESSERA_SECRET_KEY=lcmeasure-secret-key
export AWS_ACCESS_KEY_ID=$TESSERA_ACCESS_KEY AWS_SECRET_ACCESS_KEY=$TESSERA_SECRET_KEY AWS_DEFAULT_REGION=us-east-1
EXTRA=(); case $MODE in full|nc-full) EXTRA=(--lifecycle-full-walk) ;; esac
NC=0; case $MODE in nc-*) NC=1 ;; esac
# Each key written once, or twice (nc-*: the first write becomes noncurrent).
fill() { for _ in $(seq 1 $((NC + 1))); do "$BENCH" --endpoint $EP fill --bucket lcmeasure --count "$1" --prefix "$2" --size 0 --concurrency 64 > /dev/null; done; }
"$BIN" server --address 127.0.0.1:$PORT --admin-address 127.0.0.1:$((PORT + 1)) --lifecycle-day-secs $DAY "${EXTRA[@]}" "$DIR/d" > "$DIR/log" 2>&1 &
PID=$!
trap 'kill $PID 2>/dev/null; wait $PID 2>/dev/null; rm -rf "$DIR"' EXIT
sleep 2
EP=http://127.0.0.1:$PORT
aws --endpoint-url $EP s3api create-bucket --bucket lcmeasure > /dev/null
[ $NC = 1 ] && aws --endpoint-url $EP s3api put-bucket-versioning --bucket lcmeasure --versioning-configuration Status=Enabled
T0=$(date +%s)
fill $OLD old/
sleep 40
fill $NEW new/
T1=$(date +%s)
echo "filled $OLD old + $NEW new in $((T1 - T0)) s" >&2
RULE='"Expiration":{"Days":4}'
[ $NC = 1 ] && RULE='"NoncurrentVersionExpiration":{"NoncurrentDays":4}'
aws --endpoint-url $EP s3api put-bucket-lifecycle-configuration --bucket lcmeasure --lifecycle-configuration \
  '{"Rules":[{"ID":"four-days","Status":"Enabled","Filter":{"Prefix":""},'"$RULE"'}]}'
# Old objects (noncurrent versions) are due at T0+240 s (plus the old
# fill), the first new ones at T0+281 s (nc-*: T0+280 s plus a fill).
WAIT=$((T0 + 275 - $(date +%s))); [ $WAIT -gt 0 ] && sleep $WAIT
grep "lifecycle applied" "$DIR/log" | sed 's/\x1b\[[0-9;]*m//g'
curl -s http://127.0.0.1:$((PORT + 1))/metrics | grep '^tessera_lifecycle_visited_entries_total'
