#!/bin/bash
# Runs one integration test many times, several at once (the load is what
# makes timing faults show), and counts the failures; each failure's
# output is kept in $OUT (default /tmp/repeat-test).
#
#   tools/repeat-test.sh GROUP FILTER RUNS AT_ONCE
#   e.g. tools/repeat-test.sh cluster_failover writes_go_on 240 6
#
# Uses target/debug/tessera (TESSERA_BIN to choose another) and builds the
# test group first.
set -euo pipefail
GROUP=$1; FILTER=$2; RUNS=$3; AT_ONCE=$4
ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT=${OUT:-/tmp/repeat-test}
BIN=${TESSERA_BIN:-$ROOT/target/debug/tessera}
cd "$ROOT"
TEST=$(cargo test --locked -p tessera-tests --test "$GROUP" --no-run --message-format=json 2>/dev/null \
  | grep -o '"executable":"[^"]*"' | tail -1 | cut -d'"' -f4)
mkdir -p "$OUT"; rm -f "$OUT"/fail-*.log
runs=0; fails=0
while [ "$runs" -lt "$RUNS" ]; do
  for ((j = 0; j < AT_ONCE; j++)); do
    (TESSERA_BIN=$BIN "$TEST" "$FILTER" --test-threads 1 > "$OUT/run-$j.log" 2>&1; echo $? > "$OUT/run-$j.rc") &
  done
  wait
  for ((j = 0; j < AT_ONCE; j++)); do
    runs=$((runs + 1))
    if [ "$(cat "$OUT/run-$j.rc")" != 0 ]; then fails=$((fails + 1)); cp "$OUT/run-$j.log" "$OUT/fail-$fails.log"; fi
  done
done
echo "$GROUP $FILTER: $runs runs, $fails failed (outputs: $OUT/fail-*.log)"
[ "$fails" = 0 ]
