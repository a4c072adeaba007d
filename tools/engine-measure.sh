#!/usr/bin/env bash
# Storage-engine figures on this machine, each node on a fresh temp dir:
#   - 4 KiB and 1 MiB PUT/GET (tessera-bench), and fsyncs per acknowledged
#     PUT at 64 writers (io_uring fsync submissions counted with perf);
#   - space amplification after a steady overwrite run (1 MiB objects over
#     a fixed key set, 64 MiB segments so compaction has segments to pick);
#   - disk bytes per empty object and restart time after N empty objects.
#
# usage: tools/engine-measure.sh [--before BIN] [--objects N] [--secs S]
#   --before BIN   also run the throughput figures with an older tessera
#                  binary (built from another commit), in the same run
#   --objects N    empty objects for the disk-use and restart figures (1000000)
#   --secs S       seconds per throughput phase (20)
#   --no-throughput  only the space and restart figures
# Needs: a release build (cargo build --release -p tessera-node -p tessera-bench),
# perf (for the fsync count; skipped without it).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
BEFORE=""
OBJECTS=1000000
SECS=20
THROUGHPUT=1
while [ $# -gt 0 ]; do
  case "$1" in
    --before) BEFORE="$2"; shift 2 ;;
    --objects) OBJECTS="$2"; shift 2 ;;
    --secs) SECS="$2"; shift 2 ;;
    --no-throughput) THROUGHPUT=0; shift ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
AFTER=target/release/tessera
BENCH=target/release/tessera-bench
[ -x "$AFTER" ] && [ -x "$BENCH" ] || { echo "build first: cargo build --release -p tessera-node -p tessera-bench" >&2; exit 2; }
export AWS_ACCESS_KEY_ID=MEASUREACCESSKEY0001 AWS_SECRET_ACCESS_KEY=measure-secret-key-0000000000000000000001
export TESSERA_ACCESS_KEY=$AWS_ACCESS_KEY_ID TESSERA_SECRET_KEY=$AWS_SECRET_ACCESS_KEY
PORT=${PORT:-9870}
EP=http://127.0.0.1:$PORT
WORK=$(mktemp -d /tmp/tessera-measure.XXXXXX)
PID=""
cleanup() { [ -n "$PID" ] && kill -9 "$PID" 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT

start() { # start BIN DIR [args...]
  local bin=$1 dir=$2; shift 2
  "$bin" server --address 127.0.0.1:$PORT "$@" "$dir" >>"$WORK/node.log" 2>&1 &
  PID=$!
  for _ in $(seq 1 3000); do
    curl -s -o /dev/null "$EP/" && return 0
    sleep 0.1
  done
  echo "node did not start; log:" >&2; tail -20 "$WORK/node.log" >&2; exit 1
}
stop() { kill -9 "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; PID=""; }
bench() { "$BENCH" --endpoint "$EP" --progress 0s "$@"; }

throughput() { # throughput LABEL BIN
  local label=$1 bin=$2 dir="$WORK/$1"
  echo "== $label: $bin"
  start "$bin" "$dir"
  if command -v perf >/dev/null 2>&1; then
    perf stat -x, -e io_uring:io_uring_submit_req --filter 'opcode == 3' -p "$PID" -o "$WORK/perf-$label" &
    local perf_pid=$!
    sleep 0.5
    bench put --bucket bench --size 4KiB --concurrency 64 --duration "${SECS}s" --json "$WORK/put4k-$label.json" | tee "$WORK/put4k-$label.txt"
    kill -INT $perf_pid; wait $perf_pid 2>/dev/null || true
    local fsyncs puts
    fsyncs=$(cut -d, -f1 "$WORK/perf-$label" | grep -E '^[0-9]+$' | head -1)
    puts=$(python3 -c "import json;print(json.load(open('$WORK/put4k-$label.json'))['ops']['put']['ok'])")
    echo "fsyncs: $fsyncs for $puts acknowledged 4 KiB PUTs at 64 writers: $(python3 -c "print(f'{$fsyncs/$puts:.3f}')") per PUT"
  else
    bench put --bucket bench --size 4KiB --concurrency 64 --duration "${SECS}s"
  fi
  bench get --bucket bench --size 4KiB --concurrency 64 --duration "${SECS}s" --objects 1000
  bench put --bucket bench --size 1MiB --concurrency 16 --duration "${SECS}s" --objects 200 --prefix big/
  bench get --bucket bench --size 1MiB --concurrency 16 --duration "${SECS}s" --objects 200 --prefix big/ --skip-prefill
  stop
  rm -rf "$dir"
}

if [ "$THROUGHPUT" = 1 ]; then
  # The older binary first when given: each runs on a machine in the same state.
  [ -n "$BEFORE" ] && throughput before "$BEFORE"
  throughput after "$AFTER"
fi

echo "== space amplification: 1 MiB overwrites over 256 keys, 64 MiB segments"
start "$AFTER" "$WORK/amp" --segment-size 64MiB
bench put --bucket bench --size 1MiB --concurrency 16 --duration 90s --objects 256 | tail -3
live=$((256 << 20))
for i in $(seq 1 90); do
  # Compaction removes files while du walks: ignore those.
  bytes=$( (du -sb "$WORK/amp" 2>/dev/null || true) | cut -f1)
  [ "$bytes" -le $((live * 3 / 2)) ] && break
  sleep 2
done
echo "live $live bytes, data dir $bytes bytes: amplification $(python3 -c "print(f'{$bytes/$live:.2f}')") (after ${i} checks, 2 s apart)"
stop
rm -rf "$WORK/amp"

echo "== $OBJECTS empty objects: disk use and restart time"
start "$AFTER" "$WORK/empty"
bench fill --bucket bench --count "$OBJECTS" --size 0 --concurrency 64 | tail -3
bytes=$( (du -sb "$WORK/empty" 2>/dev/null || true) | cut -f1)
echo "data dir $bytes bytes: $(python3 -c "print(f'{$bytes/$OBJECTS:.0f}')") bytes per empty object"
stop
t0=$(date +%s.%N)
start "$AFTER" "$WORK/empty"
t1=$(date +%s.%N)
echo "restart after kill -9 with $OBJECTS objects: serving after $(python3 -c "print(f'{$t1-$t0:.2f}')") s"
grep -E "shard opened|recovered|checkpoint" "$WORK/node.log" | tail -4 || true
# A clean stop (SIGTERM) writes a checkpoint, so the next start replays
# (almost) nothing: the restart an operator's upgrade sees.
kill -TERM "$PID"; wait "$PID" 2>/dev/null || true; PID=""
t0=$(date +%s.%N)
start "$AFTER" "$WORK/empty"
t1=$(date +%s.%N)
echo "restart after a clean stop with $OBJECTS objects: serving after $(python3 -c "print(f'{$t1-$t0:.2f}')") s"
echo "node RSS with $OBJECTS objects indexed: $(awk '/VmRSS/{print $2, $3}' /proc/$PID/status)"
stop
