#!/usr/bin/env bash
# 1 MiB GETs from disk on one node, one data dir (fresh each run), at each
# reactor count, beside fio's ceiling for the same reads on the same
# filesystem (io_uring, O_DIRECT, 1 MiB random read at qd16 and qd1).
# While the GETs run, perf counts the node's io_uring requests that went to
# the kernel's async worker pool (io-wq), the reads the block layer split,
# and the file reads the node submitted (io_uring READ requests, less the
# 8-byte eventfd reads by which one reactor wakes another, "wakeups"):
# divided by the GETs served, that is the disk reads per GET ("reads/GET").
# (Counted with the wakeups, two reactors seemed to read 6.4-7.5 times per
# 1 MiB GET against one reactor's 5: every read the node makes of its
# files is block-aligned O_DIRECT, so a READ that returns 8 bytes is one.)
#
# usage: tools/disk-read-measure.sh [--dir DIR] [--secs S] [--threads "1 2"]
#                                   [--rounds N] [--no-fio] [--size SZ]
#                                   [--cache-size SZ] [--conc N]
#   --dir DIR      where the data dirs and fio's file go (default /tmp; use
#                  the data disk)
#   --secs S       seconds per GET run (default 15)
#   --threads L    reactor counts (default "1 2")
#   --rounds N     runs per reactor count (default 2), each on a fresh dir
#   --size SZ      object size (default 1MiB; 2000 objects)
#   --cache-size SZ  the node's --cache-size (default: the node's own, 256MiB;
#                  0 makes every GET cold: read from disk)
#   --conc N       connections (default 16)
#   --thp-ab       each round twice: the node with transparent huge pages
#                  (TESSERA_THP=1, as before issue 17's fix), then without
# Needs a release build (target/release/tessera and tessera-bench), fio and
# perf (both optional: their rows are skipped when missing).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
DIR=/tmp SECS=15 THREADS="1 2" ROUNDS=2 FIO=1 MODES=default SIZE=1MiB CACHE="" CONC=16
while [ $# -gt 0 ]; do
  case "$1" in
    --dir) DIR="$2"; shift 2 ;;
    --secs) SECS="$2"; shift 2 ;;
    --threads) THREADS="$2"; shift 2 ;;
    --rounds) ROUNDS="$2"; shift 2 ;;
    --no-fio) FIO=0; shift ;;
    --size) SIZE="$2"; shift 2 ;;
    --cache-size) CACHE="$2"; shift 2 ;;
    --conc) CONC="$2"; shift 2 ;;
    --thp-ab) MODES="thp default"; shift ;;
    -h|--help) sed -n "2,27p" "$0"; exit 0 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
NODE=${NODE:-target/release/tessera}
BENCH=${BENCH:-target/release/tessera-bench}
WORK=$(mktemp -d "$DIR/disk-read-measure.XXXX")
PORT=${PORT_BASE:-9470}
export TESSERA_ACCESS_KEY=benchkey TESSERA_SECRET_KEY=benchsecret123456
export AWS_ACCESS_KEY_ID=benchkey AWS_SECRET_ACCESS_KEY=benchsecret123456
NODE_PID=""
cleanup() { [ -n "$NODE_PID" ] && kill "$NODE_PID" 2>/dev/null; wait 2>/dev/null; rm -rf "$WORK"; }
trap cleanup EXIT
echo "== $(nproc) cores, $(uname -r), $(df -T "$WORK" | awk 'NR==2{print $2" on "$1}'), $(git rev-parse --short HEAD)"

if [ "$FIO" = 1 ] && command -v fio >/dev/null; then
  fio --name=prep --filename="$WORK/fio" --size=2G --rw=write --bs=1M --direct=1 --ioengine=io_uring --iodepth=16 >/dev/null
  for qd in 16 1; do
    cmd=(fio --name=ceiling --filename="$WORK/fio" --size=2G --rw=randread --bs=1M --iodepth=$qd
      --direct=1 --ioengine=io_uring --runtime="$SECS" --time_based --output-format=json)
    "${cmd[@]}" --output="$WORK/fio.json" >/dev/null
    echo "fio: $(python3 -c "import json,sys; j=json.load(open(sys.argv[1]))['jobs'][0]['read']; print(f\"{j['iops']:.0f} reads/s, {j['bw_bytes']/1e6:.0f} MB/s, p90 {j['clat_ns']['percentile']['90.000000']/1e6:.1f} ms\")" "$WORK/fio.json")   # ${cmd[*]}"
  done
  rm -f "$WORK/fio" "$WORK/fio.json"
fi

for t in $THREADS; do
  for r in $(seq "$ROUNDS"); do
  for mode in $MODES; do
    D="$WORK/data-$t-$r"
    THP=""; [ "$mode" = thp ] && THP=1
    TESSERA_THP=$THP "$NODE" server --address 127.0.0.1:$PORT --admin-address 127.0.0.1:$((PORT + 1)) --threads "$t" ${CACHE:+--cache-size "$CACHE"} "$D" >"$WORK/node.log" 2>&1 &
    NODE_PID=$!
    for _ in $(seq 50); do (exec 3<>/dev/tcp/127.0.0.1/$PORT) 2>/dev/null && break; sleep 0.1; done
    get=(get --bucket drm --objects 2000 --size "$SIZE" --concurrency "$CONC")
    cmd=("$BENCH" --endpoint http://127.0.0.1:$PORT --progress 1s "${get[@]}" --duration "${SECS}s" --skip-prefill)
    # Prefill (untimed), then the timed run with perf attached.
    "$BENCH" --endpoint http://127.0.0.1:$PORT --progress 0s "${get[@]}" --count 1 >/dev/null 2>&1
    PERF=()
    if command -v perf >/dev/null; then
      # opcode 22 is IORING_OP_READ: the node's file reads (sockets use
      # RECV/SEND) and the reactors' eventfd reads (8 bytes each); each
      # filter applies to the event before it.
      PERF=(perf stat -x, -e io_uring:io_uring_queue_async_work,io_uring:io_uring_complete,block:block_split
        -e io_uring:io_uring_submit_req --filter 'opcode == 22'
        -e io_uring:io_uring_complete --filter 'res == 8' -p "$NODE_PID" -o "$WORK/perf.txt" --)
    fi
    out=$("${PERF[@]}" "${cmd[@]}" 2>&1)
    summary=$(echo "$out" | grep -E '^get ' | tr -s ' ')
    per_sec=$(echo "$out" | grep -E '^\[get' | awk '{print $3}' | paste -sd' ')
    counts=""
    if [ -f "$WORK/perf.txt" ]; then
      # The second io_uring_complete line is the filtered one (the wakeups).
      counts=$(awk -F, '/io_uring|block/{split($3,a,":"); n=a[2]; if (n=="io_uring_submit_req") n="read_requests"; if (n=="io_uring_complete" && seen++) n="wakeups"; printf "%s=%s ", n, $1}' "$WORK/perf.txt")
      reads=$(awk -F, '/io_uring_submit_req/{r=$1} /io_uring_complete/{if (c++) w=$1} END{print r - w}' "$WORK/perf.txt")
      ok=$(echo "$summary" | awk '{print $2}')
      [ -n "$reads" ] && [ -n "$ok" ] && [ "$ok" -gt 0 ] 2>/dev/null && counts="$counts reads/GET=$(awk -v r="$reads" -v o="$ok" 'BEGIN{printf "%.2f", r/o}')"
      rm -f "$WORK/perf.txt"
    fi
    echo "size=$SIZE cache=${CACHE:-default} conc=$CONC threads=$t round=$r ${THP:+TESSERA_THP=1 }(ok errors req/s MB/s p50 p90 p99 p99.9 max µs): $summary"
    echo "  per second: $per_sec | $counts | rss $(awk '/VmRSS/{print $2}' /proc/$NODE_PID/status) kB"
    echo "  # ${THP:+TESSERA_THP=1 }$NODE server --threads $t ${CACHE:+--cache-size $CACHE }DIR; ${cmd[*]}"
    kill "$NODE_PID"; wait "$NODE_PID" 2>/dev/null || true; NODE_PID=""
    rm -rf "$D"
  done
  done
done
