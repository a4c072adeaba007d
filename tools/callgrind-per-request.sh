#!/usr/bin/env bash
# Instructions per request from valgrind's callgrind: repeatable where
# wall-clock figures are not (a machine shared with other builds).
# Starts BINARY under callgrind (instrumentation off), writes the key space with
# tessera-bench, then collects exactly COUNT GETs (signed in a header), COUNT
# presigned GETs (signed in the query, as wrk sends them) and COUNT PUTs of
# SIZE (separately, C connections each: --concurrency C) and prints the
# instructions of the node's process per request.
#
# usage: tools/callgrind-per-request.sh BINARY [--count 2000] [--size 4KiB]
#                                       [--objects 100] [--concurrency 4] [--threads 2]
#                                       [--server-args "..."] [--keep DIR]
#   --keep DIR  keep the profiles (DIR/GET.out, DIR/PRESIGNED-GET.out,
#               DIR/PUT.out) for callgrind_annotate
# Needs valgrind (apt-get install valgrind), a C compiler and
# target/release/tessera-bench. valgrind cannot follow io_uring's shared
# rings, so the node runs with io_uring refused (tools/valgrind/no_uring.c,
# preloaded): monoio's epoll driver, files on the shards' I/O threads. The
# counts are of that driver; compare binaries with the same script.
# Port: PORT (default 9460), admin PORT+1.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
BIN=$1; shift
COUNT=2000 SIZE=4KiB OBJECTS=100 CONC=4 THREADS=2 SERVER_ARGS="" KEEP=""
while [ $# -gt 0 ]; do
  case "$1" in
    --count) COUNT=$2; shift 2 ;;
    --size) SIZE=$2; shift 2 ;;
    --objects) OBJECTS=$2; shift 2 ;;
    --concurrency) CONC=$2; shift 2 ;;
    --threads) THREADS=$2; shift 2 ;;
    --server-args) SERVER_ARGS=$2; shift 2 ;;
    --keep) KEEP=$2; shift 2 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
BENCH=${BENCH:-target/release/tessera-bench}
PORT=${PORT:-9460}
export AWS_ACCESS_KEY_ID=CGBENCHACCESSKEY0001 AWS_SECRET_ACCESS_KEY=cg-bench-secret-key-000000000000000000001
export TESSERA_ACCESS_KEY=$AWS_ACCESS_KEY_ID TESSERA_SECRET_KEY=$AWS_SECRET_ACCESS_KEY
WORK=$(mktemp -d "${TMPDIR:-/tmp}/tessera-cg.XXXXXX")
PID=""
cleanup() { [ -n "$PID" ] && kill "$PID" 2>/dev/null; [ -n "$PID" ] && wait "$PID" 2>/dev/null; rm -rf "$WORK"; }
trap cleanup EXIT
cc -shared -fPIC -O2 -o "$WORK/no_uring.so" tools/valgrind/no_uring.c -ldl
# shellcheck disable=SC2086
LD_PRELOAD="$WORK/no_uring.so" valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$WORK/cg.%p" \
  "$BIN" server --address "127.0.0.1:$PORT" --admin-address "127.0.0.1:$((PORT + 1))" --threads "$THREADS" \
  $SERVER_ARGS "$WORK/node" >"$WORK/node.log" 2>&1 &
PID=$!
for _ in $(seq 1 600); do curl -s -o /dev/null "http://127.0.0.1:$PORT/" && break; sleep 0.2; done
EP=http://127.0.0.1:$PORT
"$BENCH" --endpoint "$EP" --progress 0s fill --bucket cgbench --count "$OBJECTS" --size "$SIZE" --concurrency "$CONC" >/dev/null
measure() { # measure NAME bench-args...: instructions per request of the node
  local name=$1; shift
  callgrind_control -z "$PID" >/dev/null
  callgrind_control -i on "$PID" >/dev/null
  "$BENCH" --endpoint "$EP" --progress 0s "$@" --count "$COUNT" --concurrency "$CONC" >/dev/null
  callgrind_control -i off "$PID" >/dev/null
  callgrind_control -d "$name" "$PID" >/dev/null
  sleep 1
  local ir
  ir=$(cat "$WORK"/cg."$PID"* 2>/dev/null | awk '/^totals:/ {s += $2} END {print s + 0}')
  if [ -n "$KEEP" ]; then mkdir -p "$KEEP" && cat "$WORK"/cg."$PID".* >"$KEEP/$name.out"; fi
  rm -f "$WORK"/cg."$PID"*
  echo "$name: $((ir / COUNT)) instructions per request ($ir over $COUNT requests, $SIZE, $CONC connections, $THREADS reactors)"
}
measure GET get --bucket cgbench --size "$SIZE" --objects "$OBJECTS" --skip-prefill
# The GETs wrk sends with a presigned URL: the signature in the query.
measure PRESIGNED-GET get --bucket cgbench --size "$SIZE" --objects "$OBJECTS" --skip-prefill --presigned
measure PUT put --bucket cgbench --size "$SIZE" --objects "$OBJECTS"
