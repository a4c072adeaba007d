#!/usr/bin/env bash
# TLS against plain HTTP in one run: one release binary, two nodes with the
# same flags (one with --tls-cert/--tls-key), rounds alternating plain, TLS,
# plain, TLS, ... so a noisy machine weighs on both alike. Workloads, each
# with tessera-bench: GET 4 KiB, GET 1 MiB, PUT 1 MiB.
#
# usage: tools/tls-measure.sh [--rounds N] [--secs S] [--conns C] [--threads T]
#   Prints one line per (round, workload, node) and per workload the median
#   req/s and MB/s of each node with the ratio TLS/plain.
# Needs target/release/tessera and target/release/tessera-bench
# (cargo build --release -p tessera-node -p tessera-bench) and openssl.
# Ports: PORT_BASE (default 9480) and PORT_BASE+1; admin on those + 10.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROUNDS=3 SECS=8 CONNS=16 THREADS=""
while [ $# -gt 0 ]; do
  case "$1" in
    --rounds) ROUNDS=$2; shift 2 ;;
    --secs) SECS=$2; shift 2 ;;
    --conns) CONNS=$2; shift 2 ;;
    --threads) THREADS="--threads $2"; shift 2 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
BIN=${TESSERA:-target/release/tessera}
BENCH=${BENCH:-target/release/tessera-bench}
PORT_BASE=${PORT_BASE:-9480}
export AWS_ACCESS_KEY_ID=TLSBENCHACCESSKEY001 AWS_SECRET_ACCESS_KEY=tls-bench-secret-key-00000000000000000001
export TESSERA_ACCESS_KEY=$AWS_ACCESS_KEY_ID TESSERA_SECRET_KEY=$AWS_SECRET_ACCESS_KEY
. tools/lib.sh
work_dir tls
# A throwaway CA and a localhost certificate (ECDSA P-256, as most ACME certs).
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 -subj /CN=tls-measure-ca \
  -keyout "$WORK/ca.key" -out "$WORK/ca.pem" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=localhost \
  -keyout "$WORK/key.pem" -out "$WORK/req.csr" 2>/dev/null
printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' >"$WORK/ext"
openssl x509 -req -in "$WORK/req.csr" -CA "$WORK/ca.pem" -CAkey "$WORK/ca.key" -CAcreateserial -days 1 \
  -extfile "$WORK/ext" -out "$WORK/cert.pem" 2>/dev/null
start() { # start NAME PORT SCHEME EXTRA
  # shellcheck disable=SC2086
  CURL_OPTS="--cacert $WORK/ca.pem" start_node "$1" "$BIN" "$2" "$3://localhost:$2/" \
    --admin-address "127.0.0.1:$(($2 + 10))" $THREADS $4
}
start plain "$PORT_BASE" http ""
start tls $((PORT_BASE + 1)) https "--tls-cert $WORK/cert.pem --tls-key $WORK/key.pem"
endpoint() { if [ "$1" = plain ]; then echo "http://localhost:$PORT_BASE"; else echo "https://localhost:$((PORT_BASE + 1))"; fi; }
for n in plain tls; do
  for size in 4KiB 1MiB; do
    "$BENCH" --endpoint "$(endpoint $n)" --ca-cert "$WORK/ca.pem" --progress 0s fill --bucket "tls-$(echo $size | tr A-Z a-z)" --count 200 \
      --size "$size" --concurrency 16 >/dev/null
  done
done
declare -A RES
run() { # run ROUND WORKLOAD NODE
  local op size args
  case "$2" in
    get4k) op=get size=4KiB args="get --bucket tls-4kib --objects 200 --skip-prefill" ;;
    get1m) op=get size=1MiB args="get --bucket tls-1mib --objects 200 --skip-prefill" ;;
    put1m) op=put size=1MiB args="put --bucket tls-put --objects 200" ;;
  esac
  # shellcheck disable=SC2086
  "$BENCH" --endpoint "$(endpoint "$3")" --ca-cert "$WORK/ca.pem" --progress 0s $args --size "$size" \
    --concurrency "$CONNS" --duration "${SECS}s" --json "$WORK/r.json" >/dev/null || true
  local line
  line=$(python3 -c "import json;d=json.load(open('$WORK/r.json'));o=d['ops']['$op'];print(f\"{o['req_per_s']:.0f} {o['mb_per_s']:.1f} {o['latency_us']['p50']} {o['latency_us']['p99']} {o['errors_total']}\")")
  echo "round $1 $2 $3 conns=$CONNS req/s MB/s p50_us p99_us errors: $line"
  RES[$2,$3]="${RES[$2,$3]:-} ${line%% *}"
}
for r in $(seq 1 "$ROUNDS"); do
  for w in get4k get1m put1m; do
    for n in plain tls; do run "$r" "$w" "$n"; done
  done
done
for w in get4k get1m put1m; do
  python3 - "$w" "${RES[$w,plain]}" "${RES[$w,tls]}" <<'PY'
import statistics, sys
w, a, b = sys.argv[1], [float(x) for x in sys.argv[2].split()], [float(x) for x in sys.argv[3].split()]
ma, mb = statistics.median(a), statistics.median(b)
print(f"{w}: plain median {ma:.0f} req/s, TLS median {mb:.0f} req/s, TLS/plain {mb/ma:.2f}")
PY
done
