#!/usr/bin/env bash
# Two tessera binaries side by side in one run, so that a noisy machine
# (other builds on the same cores) weighs on both alike: each binary gets
# its own node and data dir, and the rounds alternate A, B, then B, A, ...:
# whichever runs second in a pair runs against the disk's write-behind of
# the first (1 MiB PUTs of one binary against itself: the second 0.91-0.97
# of the first, three rounds of three), so the order flips every round.
#
# usage: tools/ab.sh A_BINARY B_BINARY [--rounds N] [--secs S] [--conns "16 64"]
#                    [--size 4KiB] [--objects N] [--extra-a "server flags"] [--extra-b "..."]
#                    [--env-a "VAR=value ..."] [--env-b "..."] [--op get|put]
#   GETs of SIZE over OBJECTS keys (written once, untimed) with tessera-bench,
#   or PUTs of SIZE over OBJECTS keys (--op put). A and B may be the same
#   binary with different flags or environment (e.g. --env-a TESSERA_MD5_KERNEL=scalar).
#   Prints one line per (round, binary, conns) and the median req/s of each
#   binary per connection count with the ratio B/A.
# Ports: PORT_BASE (default 9470) and PORT_BASE+1; admin on those + 10. Needs target/release/tessera-bench.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
A=$1 B=$2; shift 2
ROUNDS=3 SECS=8 CONNS="16 64" SIZE=4KiB OBJECTS=1000 EXTRA_A="" EXTRA_B="" ENV_A="" ENV_B="" OP=get
while [ $# -gt 0 ]; do
  case "$1" in
    --rounds) ROUNDS=$2; shift 2 ;;
    --secs) SECS=$2; shift 2 ;;
    --conns) CONNS=$2; shift 2 ;;
    --size) SIZE=$2; shift 2 ;;
    --objects) OBJECTS=$2; shift 2 ;;
    --extra-a) EXTRA_A=$2; shift 2 ;;
    --extra-b) EXTRA_B=$2; shift 2 ;;
    --env-a) ENV_A=$2; shift 2 ;;
    --env-b) ENV_B=$2; shift 2 ;;
    --op) OP=$2; shift 2 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
BENCH=${BENCH:-target/release/tessera-bench}
PORT_BASE=${PORT_BASE:-9470}
export AWS_ACCESS_KEY_ID=ABBENCHACCESSKEY0001 AWS_SECRET_ACCESS_KEY=ab-bench-secret-key-0000000000000000000001
export TESSERA_ACCESS_KEY=$AWS_ACCESS_KEY_ID TESSERA_SECRET_KEY=$AWS_SECRET_ACCESS_KEY
. tools/lib.sh
work_dir ab
start() { # start NAME BINARY PORT EXTRA ENV
  # shellcheck disable=SC2086
  NODE_ENV=$5 start_node "$1" "$2" "$3" "http://127.0.0.1:$3/" --admin-address "127.0.0.1:$(($3 + 10))" $4
}
start a "$A" "$PORT_BASE" "$EXTRA_A" "$ENV_A"
start b "$B" $((PORT_BASE + 1)) "$EXTRA_B" "$ENV_B"
[ "$OP" = get ] && for n in a b; do
  port=$PORT_BASE; [ $n = b ] && port=$((PORT_BASE + 1))
  "$BENCH" --endpoint "http://127.0.0.1:$port" --progress 0s fill --bucket abbench --count "$OBJECTS" --size "$SIZE" --concurrency 16 >/dev/null
done
declare -A RES
for r in $(seq 1 "$ROUNDS"); do
  for c in $CONNS; do
    order="a b"; [ $((r % 2)) = 0 ] && order="b a"
    for n in $order; do
      port=$PORT_BASE; [ $n = b ] && port=$((PORT_BASE + 1))
      if [ "$OP" = get ]; then
        "$BENCH" --endpoint "http://127.0.0.1:$port" --progress 0s get --bucket abbench --size "$SIZE" --objects "$OBJECTS" \
          --skip-prefill --concurrency "$c" --duration "${SECS}s" --json "$WORK/r.json" >/dev/null || true
      else
        "$BENCH" --endpoint "http://127.0.0.1:$port" --progress 0s put --bucket abbench --size "$SIZE" --objects "$OBJECTS" \
          --concurrency "$c" --duration "${SECS}s" --json "$WORK/r.json" >/dev/null || true
      fi
      line=$(python3 -c "import json;d=json.load(open('$WORK/r.json'));o=d['ops']['$OP'];print(f\"{o['req_per_s']:.0f} {o['mb_per_s']:.1f} {o['latency_us']['p50']} {o['latency_us']['p99']} {o['errors_total']}\")")
      echo "round $r $n conns=$c req/s MB/s p50 p99 errors: $line"
      RES[$n,$c]="${RES[$n,$c]:-} ${line%% *}"
    done
  done
done
for c in $CONNS; do
  python3 - "$c" "${RES[a,$c]}" "${RES[b,$c]}" <<'PY'
import statistics, sys
c, a, b = sys.argv[1], [float(x) for x in sys.argv[2].split()], [float(x) for x in sys.argv[3].split()]
ma, mb = statistics.median(a), statistics.median(b)
print(f"conns={c}: A median {ma:.0f} req/s, B median {mb:.0f} req/s, B/A {mb/ma:.2f}")
PY
done
