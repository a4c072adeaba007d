#!/bin/bash
# Bucket replication throughput and lag under a steady PUT load
# (tessera-bench, 16 connections), two nodes on loopback: A replicates
# bucket rbench to B. Prints the PUT rate on A, how long the backlog took
# to drain after the load, entries and bytes replicated, the replication
# rate over load + drain, the mean lag (write to the remote's answer) and
# the largest backlog age seen during the load (sampled every second).
# usage: tools/repl-measure.sh SIZE DURATION   (e.g. 4KiB 10s, 1MiB 10s)
# BIN: dir of tessera and tessera-bench (default target/release);
# PY: a python with boto3 (to configure the buckets). Logs in $OUT.
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
BIN=${BIN:-$HERE/../target/release}
PY=${PY:-python3}
OUT=${OUT:-/tmp/repl-measure}
SIZE=$1; DUR=$2
mkdir -p $OUT
DA=$(mktemp -d $OUT/a.XXXX); DB=$(mktemp -d $OUT/b.XXXX)
BP=$((20000 + RANDOM % 10000)); AP=$((30000 + RANDOM % 10000))
export TESSERA_ACCESS_KEY=benchkey TESSERA_SECRET_KEY=benchsecret123456
export AWS_ACCESS_KEY_ID=benchkey AWS_SECRET_ACCESS_KEY=benchsecret123456
$BIN/tessera server --address 127.0.0.1:$BP --admin-address 127.0.0.1:$((BP + 1)) $DB > $OUT/b.log 2>&1 &
BPID=$!
$BIN/tessera server --address 127.0.0.1:$AP --admin-address 127.0.0.1:$((AP + 1)) \
  --replication-target site=http://127.0.0.1:$BP,benchkey,benchsecret123456 $DA > $OUT/a.log 2>&1 &
APID=$!
sleep 2
$PY - <<PY
import boto3
def c(p):
    return boto3.client("s3", endpoint_url=f"http://127.0.0.1:{p}", aws_access_key_id="benchkey", aws_secret_access_key="benchsecret123456", region_name="us-east-1")
for cl in (c($BP), c($AP)):
    cl.create_bucket(Bucket="rbench")
    cl.put_bucket_versioning(Bucket="rbench", VersioningConfiguration={"Status": "Enabled"})
c($AP).put_bucket_replication(Bucket="rbench", ReplicationConfiguration={"Role": "r", "Rules": [{"ID": "all", "Priority": 1,
    "Status": "Enabled", "Filter": {"Prefix": ""}, "DeleteMarkerReplication": {"Status": "Disabled"},
    "Destination": {"Bucket": "arn:aws:s3:::rbench"}}]})
PY
ADMIN=http://127.0.0.1:$((AP + 1))
metric() { curl -s $ADMIN/metrics | awk -v m="^$1[{ ]" '$0 ~ m {s+=$2} END {printf "%.0f", s}'; }
maxage() { curl -s $ADMIN/metrics | awk '/^tessera_replication_lag_milliseconds\{/ {if ($2>m) m=$2} END {printf "%d", m}'; }
( MAX=0; while kill -0 $APID 2>/dev/null; do a=$(maxage); [ "$a" -gt "$MAX" ] && MAX=$a; echo $MAX > $OUT/maxage; sleep 1; done ) &
SPID=$!
T0=$(date +%s.%N)
$BIN/tessera-bench --endpoint http://127.0.0.1:$AP --progress 0s put --bucket rbench --size $SIZE --concurrency 16 --duration $DUR > $OUT/bench.log 2>&1
T1=$(date +%s.%N)
for i in $(seq 1 600); do
  P=$(metric tessera_replication_pending_entries); S=$(metric tessera_replication_sent_total)
  [ "$P" = "0" ] && [ "$S" -gt 0 ] && break
  sleep 0.2
done
T2=$(date +%s.%N)
kill $SPID 2>/dev/null
SENT=$(metric tessera_replication_sent_total); BYTES=$(metric tessera_replication_sent_bytes_total)
LAGSUM=$(metric tessera_replication_lag_milliseconds_total); FAILED=$(metric tessera_replication_failed_total)
PUTS=$(curl -s $ADMIN/metrics | awk '/^tessera_requests_total\{op="PutObject",status="2/ {s+=$2} END {printf "%.0f", s}')
awk -v t0=$T0 -v t1=$T1 -v t2=$T2 -v n=$SENT -v b=$BYTES -v l=$LAGSUM -v f=$FAILED -v p=$PUTS -v m=$(cat $OUT/maxage) -v size=$SIZE 'BEGIN {
  printf "size %s: %d PUTs in %.1fs = %.0f PUT/s on A; backlog drained %.1fs after the load\n", size, p, t1-t0, p/(t1-t0), t2-t1;
  printf "replicated %d entries (%.1f MiB, %d failed) = %.0f entries/s, %.1f MiB/s over load + drain\n", n, b/1048576, f, n/(t2-t0), b/1048576/(t2-t0);
  printf "mean lag %.0f ms; largest backlog age seen during the load %d ms\n", (n ? l/n : 0), m }'
curl -s $ADMIN/admin/v1/replication > /dev/null
kill $APID $BPID; wait $APID $BPID 2>/dev/null
rm -rf $DA $DB
