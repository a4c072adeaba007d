#!/bin/bash
# PUT and GET through a cluster of NODES nodes (default 3) on loopback (one
# data dir and one reactor per node; the bench spreads its connections over
# the nodes, so about (NODES-1)/NODES of requests are forwarded to their
# key's owner) against one node with NODES data dirs and 2 reactors, same
# total disks. Prints tessera-bench's summary lines. ONE=1 sends every
# request to node 1 instead; NODE_THREADS=N gives each cluster node N
# reactors (default 1); NO_SINGLE=1 skips the single node (to compare two
# builds' clusters); OPS=put runs only the PUTs (default "put get").
# usage: tools/cluster-measure.sh SIZE SECS CONC   (e.g. 4KiB 10 16)
# BIN: dir of tessera (default target/release); BENCH: tessera-bench (default $BIN/tessera-bench).
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
BIN=${BIN:-$HERE/../target/release}
BENCH=${BENCH:-$BIN/tessera-bench}
SIZE=$1; SECS=$2; CONC=$3
NODES=${NODES:-3}
OUT=$(mktemp -d /tmp/cluster-measure.XXXX)
export TESSERA_ACCESS_KEY=benchkey TESSERA_SECRET_KEY=benchsecret123456 TESSERA_CLUSTER_SECRET="cluster-measure secret 0123456789"
export AWS_ACCESS_KEY_ID=benchkey AWS_SECRET_ACCESS_KEY=benchsecret123456
P=$((20000 + RANDOM % 20000))
# CPU seconds (user + system) the processes $@ used so far; SYS=1: system only.
cpu() { for p in "$@"; do awk -v sys=${SYS:-} '{print (sys ? 0 : $14) + $15}' /proc/$p/stat; done | awk -v hz=$(getconf CLK_TCK) '{s += $1} END {printf "%.2f", s / hz}'; }
bench() { # endpoint label pids...
  local ep=$1 label=$2; shift 2
  for op in ${OPS:-put get}; do
    echo "== $label $op $SIZE c=$CONC"
    local before=$(cpu "$@") sys_before=$(SYS=1 cpu "$@")
    $BENCH --endpoint http://$ep --progress 0s $op --bucket cmbench --size $SIZE --objects 2000 \
      --concurrency $CONC --duration ${SECS}s > $OUT/bench.out 2>&1
    local after=$(cpu "$@") sys_after=$(SYS=1 cpu "$@")
    tail -8 $OUT/bench.out
    # The servers' CPU per operation (the GET phase's includes its prepare PUTs).
    awk -v op=$op -v c=$(echo "$after - $before" | bc) -v k=$(echo "$sys_after - $sys_before" | bc) \
      '$1 == op && $2 ~ /^[0-9]+$/ && $2 > 0 {printf "server cpu: %.1f s (%.1f s system), %.2f ms per %s\n", c, k, 1000 * c / $2, op}' $OUT/bench.out
  done
}
# one node, NODES dirs
if [ -z "${NO_SINGLE:-}" ]; then
$BIN/tessera server --address 127.0.0.1:$P --admin-address 127.0.0.1:$((P+1)) --threads 2 $(for i in $(seq $NODES); do echo $OUT/s$i; done) > $OUT/single.log 2>&1 &
S=$!; sleep 2
bench 127.0.0.1:$P single $S
kill $S; wait $S 2>/dev/null
fi
# NODES nodes, one dir each
for i in $(seq $NODES); do
  J=""; [ $i -gt 1 ] && J="--join 127.0.0.1:$((P+12))"
  $BIN/tessera server --address 127.0.0.1:$((P+10*i)) --admin-address 127.0.0.1:$((P+10*i+1)) \
    --cluster-address 127.0.0.1:$((P+10*i+2)) $J --threads ${NODE_THREADS:-1} $OUT/c$i > $OUT/c$i.log 2>&1 &
  PIDS="${PIDS:-} $!"; sleep 1
done
# Until every node follows a layout of all of them and (3 nodes or more)
# its shards are lanes over them.
for _ in $(seq 60); do
  n=0
  for i in $(seq $NODES); do
    $BIN/tessera admin cluster --endpoint http://127.0.0.1:$((P+10*i+1)) 2>/dev/null | python3 -c '
import json, sys
v = json.load(sys.stdin); l = v.get("layout") or {}
n = int(sys.argv[1])
lanes = v.get("lanes")
ok = len(l.get("nodes", [])) == n and not l.get("pending") and (n < 3 or bool(lanes))
sys.exit(0 if ok else 1)' $NODES && n=$((n+1))
  done
  [ $n -eq $NODES ] && break
  sleep 1
done
sleep 2
grep -h "following layout" $OUT/c1.log | tail -1
if [ -n "${ONE:-}" ]; then
  bench 127.0.0.1:$((P+10)) cluster$NODES-via-node1 $PIDS
else
  bench "$(for i in $(seq $NODES); do echo 127.0.0.1:$((P+10*i)); done | paste -sd, | sed 's|,|,http://|g')" cluster$NODES $PIDS
fi
# A node that died during the run keeps the logs (as KEEP=1 does).
for p in $PIDS; do kill -0 $p 2>/dev/null || { echo "a node (pid $p) died during the run: logs in $OUT"; KEEP=1; }; done
kill $PIDS; wait 2>/dev/null
[ -n "${KEEP:-}" ] && echo "kept $OUT" || rm -rf $OUT
