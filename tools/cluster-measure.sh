#!/bin/bash
# PUT and GET through a 3-node cluster on loopback (one data dir and one
# reactor per node; the bench spreads its connections over the three nodes,
# so about 2/3 of requests are forwarded to their key's owner) against one
# node with 3 data dirs and 2 reactors, same total disks. Prints
# tessera-bench's summary lines. ONE=1 sends every request to node 1 instead;
# NODE_THREADS=N gives each cluster node N reactors (default 1); NO_SINGLE=1
# skips the single node (to compare two builds' clusters).
# usage: tools/cluster-measure.sh SIZE SECS CONC   (e.g. 4KiB 10 16)
# BIN: dir of tessera (default target/release); BENCH: tessera-bench (default $BIN/tessera-bench).
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
BIN=${BIN:-$HERE/../target/release}
BENCH=${BENCH:-$BIN/tessera-bench}
SIZE=$1; SECS=$2; CONC=$3
OUT=$(mktemp -d /tmp/cluster-measure.XXXX)
export TESSERA_ACCESS_KEY=benchkey TESSERA_SECRET_KEY=benchsecret123456 TESSERA_CLUSTER_SECRET="cluster-measure secret 0123456789"
export AWS_ACCESS_KEY_ID=benchkey AWS_SECRET_ACCESS_KEY=benchsecret123456
P=$((20000 + RANDOM % 20000))
bench() { # endpoint label
  for op in put get; do
    echo "== $2 $op $SIZE c=$CONC"
    $BENCH --endpoint http://$1 --progress 0s $op --bucket cmbench --size $SIZE --objects 2000 \
      --concurrency $CONC --duration ${SECS}s 2>&1 | tail -8
  done
}
# one node, 3 dirs
if [ -z "${NO_SINGLE:-}" ]; then
$BIN/tessera server --address 127.0.0.1:$P --admin-address 127.0.0.1:$((P+1)) --threads 2 $OUT/s1 $OUT/s2 $OUT/s3 > $OUT/single.log 2>&1 &
S=$!; sleep 2
bench 127.0.0.1:$P single
kill $S; wait $S 2>/dev/null
fi
# three nodes, one dir each
for i in 1 2 3; do
  J=""; [ $i -gt 1 ] && J="--join 127.0.0.1:$((P+12))"
  $BIN/tessera server --address 127.0.0.1:$((P+10*i)) --admin-address 127.0.0.1:$((P+10*i+1)) \
    --cluster-address 127.0.0.1:$((P+10*i+2)) $J --threads ${NODE_THREADS:-1} $OUT/c$i > $OUT/c$i.log 2>&1 &
  PIDS="${PIDS:-} $!"; sleep 1
done
sleep 6
grep -h "following layout" $OUT/c1.log | tail -1
if [ -n "${ONE:-}" ]; then
  bench 127.0.0.1:$((P+10)) cluster3-via-node1
else
  bench "127.0.0.1:$((P+10)),http://127.0.0.1:$((P+20)),http://127.0.0.1:$((P+30))" cluster3
fi
kill $PIDS; wait 2>/dev/null
rm -rf $OUT
