#!/bin/bash
# Bucket notification throughput and lag under a steady PUT load (4 KiB,
# 16 connections, tessera-bench), one node on loopback, a counting webhook
# receiver (tools/notify-receiver.py, prints events/s and lag per second).
# usage: tools/notify-measure.sh MODE DURATION
#   MODE 0: no notification configured; 1: every PUT notifies the
#   receiver; 2: configured, receiver down (events only queued: the write
#   path's cost alone).
# BIN: dir of tessera and tessera-bench (default target/release);
# PY: a python with boto3 (to configure the bucket). Logs in $OUT.
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
BIN=${BIN:-$HERE/../target/release}
PY=${PY:-python3}
OUT=${OUT:-/tmp/notify-measure}
mkdir -p $OUT
D=$(mktemp -d $OUT/data.XXXX)
RP=$((20000 + RANDOM % 10000)); SP=$((30000 + RANDOM % 10000)); AP=$((40000 + RANDOM % 10000))
export TESSERA_ACCESS_KEY=benchkey TESSERA_SECRET_KEY=benchsecret123456
export AWS_ACCESS_KEY_ID=benchkey AWS_SECRET_ACCESS_KEY=benchsecret123456
RPID=
if [ "$1" != 2 ]; then python3 $HERE/notify-receiver.py $RP > $OUT/recv.$1.log 2>&1 & RPID=$!; fi
$BIN/tessera server --address 127.0.0.1:$SP --admin-address 127.0.0.1:$AP --notify-webhook bench=http://127.0.0.1:$RP/ $D > $OUT/node.$1.log 2>&1 &
NPID=$!
sleep 2
$PY - <<PY
import boto3
s3 = boto3.client("s3", endpoint_url="http://127.0.0.1:$SP", aws_access_key_id="benchkey", aws_secret_access_key="benchsecret123456", region_name="us-east-1")
s3.create_bucket(Bucket="nbench")
if "$1" != "0":
    s3.put_bucket_notification_configuration(Bucket="nbench", NotificationConfiguration={"QueueConfigurations": [{"Id": "all", "QueueArn": "arn:tessera:sqs::bench:webhook", "Events": ["s3:ObjectCreated:*"]}]})
print(s3.get_bucket_notification_configuration(Bucket="nbench").get("QueueConfigurations"))
PY
$BIN/tessera-bench --endpoint http://127.0.0.1:$SP --progress 0s put --bucket nbench --size 4KiB --concurrency 16 --duration $2 > $OUT/bench.$1.log 2>&1
T_END=$(date +%s); P=unknown
# drain: wait until the queue is empty
for i in $(seq 1 60); do
  [ "$1" = 2 ] && break
  P=$(curl -s http://127.0.0.1:$AP/metrics | awk '/^tessera_notify_pending_events/ {s+=$2} END {print s+0}')
  [ "$P" = "0" ] && break
  sleep 1
done
echo "drained after $(( $(date +%s) - T_END ))s (pending=$P)"
curl -s http://127.0.0.1:$AP/metrics | grep -E "^tessera_notify|tessera_requests_total\{op=\"PutObject\"" 
kill $NPID; wait $NPID 2>/dev/null
sleep 1; [ -n "$RPID" ] && kill $RPID
cat $OUT/bench.$1.log | tail -8
tail -3 $OUT/recv.$1.log
rm -rf $D
