#!/usr/bin/env bash
# SSE throughput on this machine: 1 MiB PUT and GET against two buckets of
# one node in the same run, one plain and one with default encryption
# (SSE-S3, or SSE-KMS with --kms), phases interleaved plain/encrypted so
# both see the machine in the same state; prints the encrypted/plain ratio.
#
# usage: tools/sse-measure.sh [--secs S] [--concurrency N] [--rounds R] [--kms]
# (NODE_ARGS="--cache-size 0" passes extra server flags, e.g. to measure
# the disk path without the hot-object cache.)
# Needs: a release build (cargo build --release -p tessera-node -p tessera-bench)
# and python3 with boto3 (S3TESTS_VENV=/work/s3tests-venv has it) for
# PutBucketEncryption.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
SECS=20
CONC=16
ROUNDS=2
ALGO=AES256
while [ $# -gt 0 ]; do
  case "$1" in
    --secs) SECS="$2"; shift 2 ;;
    --concurrency) CONC="$2"; shift 2 ;;
    --rounds) ROUNDS="$2"; shift 2 ;;
    --kms) ALGO=aws:kms; shift ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
NODE=target/release/tessera
BENCH=target/release/tessera-bench
PY=${S3TESTS_VENV:-/work/s3tests-venv}/bin/python
[ -x "$NODE" ] && [ -x "$BENCH" ] || { echo "build first: cargo build --release -p tessera-node -p tessera-bench" >&2; exit 2; }
export AWS_ACCESS_KEY_ID=MEASUREACCESSKEY0001 AWS_SECRET_ACCESS_KEY=measure-secret-key-0000000000000000000001
export TESSERA_ACCESS_KEY=$AWS_ACCESS_KEY_ID TESSERA_SECRET_KEY=$AWS_SECRET_ACCESS_KEY
PORT=${PORT:-9311}
EP=http://127.0.0.1:$PORT
. tools/lib.sh
work_dir sse-measure
# shellcheck disable=SC2086
start_node data "$NODE" "$PORT" "$EP/" --admin-address off --kms-key measure-key ${NODE_ARGS:-}
"$PY" - "$EP" "$ALGO" <<'PY'
import sys, boto3
ep, algo = sys.argv[1], sys.argv[2]
s3 = boto3.client("s3", endpoint_url=ep, region_name="us-east-1")
for b in ("plain", "sealed"):
    s3.create_bucket(Bucket=b)
rule = {"SSEAlgorithm": algo}
if algo == "aws:kms":
    rule["KMSMasterKeyID"] = "measure-key"
s3.put_bucket_encryption(Bucket="sealed", ServerSideEncryptionConfiguration={"Rules": [{"ApplyServerSideEncryptionByDefault": rule}]})
s3.put_object(Bucket="sealed", Key="probe", Body=b"x")
assert s3.head_object(Bucket="sealed", Key="probe")["ServerSideEncryption"] == algo
PY
bench() { # bench LABEL WORKLOAD BUCKET
  local label=$1 w=$2 b=$3
  "$BENCH" --endpoint "$EP" --progress 0s --json "$WORK/$label.json" "$w" --bucket "$b" --size 1MiB \
    --concurrency "$CONC" --duration "${SECS}s" --objects 200 > "$WORK/$label.txt"
}
for round in $(seq 1 "$ROUNDS"); do
  for w in put get; do
    for b in plain sealed; do
      bench "$w-$b-$round" "$w" "$b"
    done
  done
done
"$PY" - "$WORK" "$ROUNDS" "$ALGO" "$CONC" "$SECS" <<'PY'
import json, sys
work, rounds, algo, conc, secs = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
print(f"1 MiB objects, concurrency {conc}, {secs} s per phase, {rounds} round(s); encrypted bucket: default {algo}")
print(f"{'op':4} {'bucket':7} {'round':>5} {'req/s':>8} {'MB/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'errors':>6}")
tot = {}
for r in range(1, rounds + 1):
    for w in ("put", "get"):
        for b in ("plain", "sealed"):
            o = json.load(open(f"{work}/{w}-{b}-{r}.json"))["ops"][w]
            lat = o["latency_us"]
            errs = sum(o["errors"].values()) if isinstance(o["errors"], dict) else o["errors"]
            print(f"{w:4} {b:7} {r:>5} {o['req_per_s']:>8.1f} {o['mb_per_s']:>8.1f} {lat['p50']/1000:>8.2f} {lat['p99']/1000:>8.2f} {errs:>6}")
            tot.setdefault((w, b), []).append(o["mb_per_s"])
for w in ("put", "get"):
    p, s = sum(tot[(w, "plain")]), sum(tot[(w, "sealed")])
    print(f"{w}: encrypted/plain throughput = {s / p:.2f}")
PY
