#!/bin/bash
# One large object replicated A -> B on loopback: the time it takes and
# the source's resident memory (tessera_process_resident_memory_bytes,
# sampled every 0.2 s) before and during the replication, to show the body
# is streamed, not read whole.
# usage: tools/repl-big-measure.sh SIZE_MIB   (e.g. 1100: over the old 1 GiB limit)
# BIN: dir of tessera (default target/release); logs in $OUT; EXTRA_A: more
# flags for the source, e.g. --test-replication-multipart-threshold-bytes=67108864
# to send the object as a multipart upload (over 5 GiB otherwise).
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
BIN=${BIN:-$HERE/../target/release}
OUT=${OUT:-/tmp/repl-big}
MIB=$1
mkdir -p $OUT
DA=$(mktemp -d $OUT/a.XXXX); DB=$(mktemp -d $OUT/b.XXXX)
BP=$((20000 + RANDOM % 10000)); AP=$((30000 + RANDOM % 10000))
export TESSERA_ACCESS_KEY=benchkey TESSERA_SECRET_KEY=benchsecret123456
export AWS_ACCESS_KEY_ID=benchkey AWS_SECRET_ACCESS_KEY=benchsecret123456 AWS_DEFAULT_REGION=us-east-1
$BIN/tessera server --address 127.0.0.1:$BP --admin-address 127.0.0.1:$((BP + 1)) $DB > $OUT/b.log 2>&1 &
BPID=$!
$BIN/tessera server --address 127.0.0.1:$AP --admin-address 127.0.0.1:$((AP + 1)) \
  --replication-target site=http://127.0.0.1:$BP,benchkey,benchsecret123456 ${EXTRA_A:-} $DA > $OUT/a.log 2>&1 &
APID=$!
sleep 2
A="aws --endpoint-url http://127.0.0.1:$AP s3api"; B="aws --endpoint-url http://127.0.0.1:$BP s3api"
for c in "$A" "$B"; do
  $c create-bucket --bucket big > /dev/null
  $c put-bucket-versioning --bucket big --versioning-configuration Status=Enabled
done
$A put-bucket-replication --bucket big --replication-configuration '{"Role":"r","Rules":[{"ID":"all","Priority":1,"Status":"Enabled","Filter":{"Prefix":""},"DeleteMarkerReplication":{"Status":"Disabled"},"Destination":{"Bucket":"arn:aws:s3:::big"}}]}'
ADMIN=http://127.0.0.1:$((AP + 1))
metric() { curl -s $ADMIN/metrics | awk -v m="^$1[{ ]" '$0 ~ m {s+=$2} END {printf "%.0f", s}'; }
# Keep the destination down while A takes the object, so the replication
# is measured alone.
kill -STOP $BPID
head -c $((MIB << 20)) /dev/urandom > $OUT/body
aws --endpoint-url http://127.0.0.1:$AP s3 cp $OUT/body s3://big/obj --only-show-errors
RSS0=$(metric tessera_process_resident_memory_bytes)
kill -CONT $BPID
T0=$(date +%s.%N); PEAK=$RSS0
for i in $(seq 1 3000); do
  R=$(metric tessera_process_resident_memory_bytes); [ "$R" -gt "$PEAK" ] && PEAK=$R
  S=$(metric tessera_replication_sent_total); F=$(metric tessera_replication_failed_total)
  [ "$S" -ge 1 ] || [ "$F" -ge 1 ] && break
  sleep 0.2
done
T1=$(date +%s.%N)
echo "status: $($A head-object --bucket big --key obj --query ReplicationStatus --output text); sent $S failed $F; multipart attempts $(metric tessera_replication_multipart_attempts_total)"
echo "ETag source $($A head-object --bucket big --key obj --query ETag --output text) destination $($B head-object --bucket big --key obj --query ETag --output text)"
awk -v t0=$T0 -v t1=$T1 -v r0=$RSS0 -v p=$PEAK -v mib=$MIB 'BEGIN {
  printf "%d MiB replicated in %.1fs (%.0f MiB/s); source RSS before %.0f MiB, peak during %.0f MiB (+%.0f MiB)\n", mib, t1-t0, mib/(t1-t0), r0/1048576, p/1048576, (p-r0)/1048576 }'
$B get-object --bucket big --key obj $OUT/back > /dev/null && cmp -s $OUT/body $OUT/back && echo "destination bytes identical" || echo "destination bytes DIFFER"
kill $APID $BPID; wait $APID $BPID 2>/dev/null
rm -rf $DA $DB $OUT/body $OUT/back
