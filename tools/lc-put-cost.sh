#!/usr/bin/env bash
# What the lifecycle age index costs a PUT that overwrites a key in a
# versioned bucket. One node, two versioned buckets, the same overwrite
# load on each in turn, ROUNDS times:
#   lc-plain  no lifecycle configuration: no index entries;
#   lc-nc     a NoncurrentVersionExpiration rule: each PUT's commit also
#             puts the new version's `C` entry, deletes the demoted one's
#             and puts its `N` entry (noncurrent since now).
# Usage: tools/lc-put-cost.sh BIN BENCH [SECS] [ROUNDS] [SIZE] [CONC]
set -euo pipefail
BIN=$1; BENCH=$2; SECS=${3:-10}; ROUNDS=${4:-3}; SIZE=${5:-4KiB}; CONC=${6:-16}
PORT=${PORT:-19700}
DIR=$(mktemp -d /tmp/lcput.XXXX)
export TESSERA_ACCESS_KEY=lcput TESSERA_SECRET_KEY=lcput-secret-key-0123456789
export AWS_ACCESS_KEY_ID=$TESSERA_ACCESS_KEY AWS_SECRET_ACCESS_KEY=$TESSERA_SECRET_KEY AWS_DEFAULT_REGION=us-east-1
"$BIN" server --address 127.0.0.1:$PORT --admin-address 127.0.0.1:$((PORT + 1)) "$DIR/d" > "$DIR/log" 2>&1 &
PID=$!
trap 'kill $PID 2>/dev/null; wait $PID 2>/dev/null; rm -rf "$DIR"' EXIT
EP=http://127.0.0.1:$PORT
for _ in $(seq 1 50); do curl -s -o /dev/null $EP && break; sleep 0.2; done
rule() { printf '{"Rules":[{"ID":"r","Status":"Enabled","Filter":{"Prefix":""},%s}]}' "$1"; }
for b in lc-plain lc-nc; do
  aws --endpoint-url $EP s3api create-bucket --bucket $b > /dev/null
  aws --endpoint-url $EP s3api put-bucket-versioning --bucket $b --versioning-configuration Status=Enabled
done
aws --endpoint-url $EP s3api put-bucket-lifecycle-configuration --bucket lc-nc --lifecycle-configuration "$(rule '"NoncurrentVersionExpiration":{"NoncurrentDays":30}')"
echo "round bucket PUT/s p50_us p99_us"
for r in $(seq 1 "$ROUNDS"); do
  for b in lc-plain lc-nc; do
    "$BENCH" --endpoint $EP --progress 0s --csv "$DIR/$b.csv" put --bucket $b --objects 1000 --size "$SIZE" \
      --concurrency "$CONC" --duration "${SECS}s" > /dev/null || true
    # CSV: workload,op,ok,errors,req_per_s,mb_per_s,p50_us,p90_us,p99_us,...
    awk -F, -v r="$r" -v b="$b" 'NR == 2 { printf "%s %s %.0f %s %s\n", r, b, $5, $7, $9 }' "$DIR/$b.csv"
  done
done
