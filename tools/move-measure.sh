#!/bin/bash
# Time to move keys to a node that joins a cluster holding data (issue 12,
# `handover`): fills COUNT objects of SIZE into a one-node cluster, starts
# a second node joining it, and prints how long until the layout of two
# was followed and until the move was over (`layout.moving` gone on both),
# and what the new node moved in (`moved_here`). GETS=SECS also runs a GET
# load of that many seconds through both nodes from the moment both follow
# the layout of two, the move under way (tessera-bench's summary follows). DECOM=1 then
# decommissions node 2 and times its keys' way to the others (FROM=1, or
# FROM=3: lanes of four shrink to three, and the records striped over
# four are striped again over three, timed too; FROM=2: lanes of three
# write every record whole, then go; DEAD=1 kills node 2 first and
# decommissions it once another node acts for it, not from three).
# FROM=2 or FROM=3 starts that many nodes instead of one and times a third
# node's join (lanes form, 2+1) or a fourth's (lanes grow to 2+2): the
# move, then the heal of the members that lacked the old owners' records
# (`layout.stale` empty) and the re-striping of the old records
# (`lanes.restripe`). FROM=4 (or more) times a fifth node's join: it takes
# one member's place in three lanes and is healed into them; with DECOM=1
# node 2 then leaves and staying nodes take its lane positions (healed). One data dir and NODE_THREADS reactors (default 1)
# per node, on loopback.
# usage: tools/move-measure.sh COUNT SIZE   (e.g. 20000 4KiB)
# BIN: dir of tessera (default target/release); BENCH: tessera-bench (default $BIN/tessera-bench).
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
BIN=${BIN:-$HERE/../target/release}
BENCH=${BENCH:-$BIN/tessera-bench}
COUNT=$1; SIZE=$2
OUT=$(mktemp -d /tmp/move-measure.XXXX)
export TESSERA_ACCESS_KEY=benchkey TESSERA_SECRET_KEY=benchsecret123456 TESSERA_CLUSTER_SECRET="move-measure secret 0123456789"
export AWS_ACCESS_KEY_ID=benchkey AWS_SECRET_ACCESS_KEY=benchsecret123456
P=$((20000 + RANDOM % 20000))
node() { # index [join]
  local i=$1 j=""
  [ $i -gt 1 ] && j="--join 127.0.0.1:$((P+12))"
  $BIN/tessera server --address 127.0.0.1:$((P+10*i)) --admin-address 127.0.0.1:$((P+10*i+1)) \
    --cluster-address 127.0.0.1:$((P+10*i+2)) $j --threads ${NODE_THREADS:-1} $OUT/n$i > $OUT/n$i.log 2>&1 &
  PIDS="${PIDS:-} $!"
}
status() { $BIN/tessera admin cluster --endpoint http://127.0.0.1:$((P+10*$1+1)) 2>/dev/null || echo '{}'; }
# Exit 0 when node $1 follows a layout of $2 nodes, none pending, and (MOVED=1) no move under way.
layout_is() {
  status $1 | python3 -c '
import json, sys
l = json.load(sys.stdin).get("layout") or {}
ok = len(l.get("nodes", [])) == int(sys.argv[1]) and not l.get("pending")
sys.exit(0 if ok and (not sys.argv[2] or l.get("moving") is None) else 1)' $2 "${MOVED:-}"
}
now() { date +%s.%N; }
FROM=${FROM:-1}; NEW=$((FROM + 1))
all_follow() { # nodes [MOVED=1]
  for i in $(seq $1); do layout_is $i $1 || return 1; done
}
for i in $(seq $FROM); do node $i; done
for _ in $(seq 300); do all_follow $FROM && break; sleep 0.2; done
echo "== fill $COUNT x $SIZE into $FROM node(s)"
sleep 2 # lanes made on every node
$BENCH --endpoint http://127.0.0.1:$((P+10)) --progress 0s fill --bucket mvbench --size $SIZE --count $COUNT \
  --concurrency 16 > $OUT/fill.out 2>&1 || { cat $OUT/fill.out; KEEP=1; }
tail -3 $OUT/fill.out
t0=$(now)
node $NEW
for _ in $(seq 600); do all_follow $NEW && break; sleep 0.1; done
t1=$(now)
if [ -n "${GETS:-}" ]; then
  EPS=$(for i in $(seq $NEW); do printf 'http://127.0.0.1:%d,' $((P+10*i)); done)
  $BENCH --endpoint ${EPS%,} --progress 0s get --bucket mvbench \
    --size $SIZE --objects $COUNT --skip-prefill --concurrency 16 --duration ${GETS}s > $OUT/gets.out 2>&1 &
  G=$!
fi
for _ in $(seq 36000); do MOVED=1 all_follow $NEW && break; sleep 0.1; done
t2=$(now)
echo "layout of $NEW followed $(echo "$t1 - $t0" | bc) s after node $NEW started; move over $(echo "$t2 - $t1" | bc) s later"
status $NEW | python3 -c '
import json, sys
m = json.load(sys.stdin)["moved_here"]
span = float(sys.argv[1])
k, b = m["keys"], m["bytes"] / 1e6
print(f"node {sys.argv[2]} moved in {k} keys, {b:.1f} MB of bodies: {k / span:.0f} keys/s, {b / span:.1f} MB/s over the move")' $(echo "$t2 - $t1" | bc) $NEW
if [ $NEW -ge 3 ]; then
  # Lanes: the newcomer healed into every old owner's lanes, the old
  # records striped again in the lanes' new shape.
  lanes_done() {
    for i in $(seq $NEW); do
      status $i | python3 -c '
import json, sys
c = json.load(sys.stdin)
ok = not c["layout"].get("stale") and c["lanes"]["restripe"]["running"] == 0 and c["lanes"]["restripe"]["examined_records"] > 0
sys.exit(0 if ok else 1)' || return 1
    done
  }
  for _ in $(seq 36000); do lanes_done && break; sleep 0.1; done
  t5=$(now)
  for i in $(seq $NEW); do
    status $i | python3 -c '
import json, sys
c = json.load(sys.stdin)["lanes"]
h, r = c["heal"], c["restripe"]
hr, hb, hv = h["rebuilt_records"], h["bytes"] / 1e6, h["verified_records"]
rr, re = r["restriped_records"], r["examined_records"]
print(f"node {sys.argv[1]}: heal rebuilt {hr} records ({hb:.1f} MB), verified {hv}; restriped {rr} of {re} records")' $i
  done
  echo "newcomer healed and old records restriped $(echo "$t5 - $t2" | bc) s after the move"
fi
if [ -n "${GETS:-}" ]; then wait $G; tail -8 $OUT/gets.out; fi
if [ -n "${DECOM:-}" ]; then
  # And back: node 2 decommissioned, its keys move to the others; from 4
  # nodes to 3 the records striped over four are then striped over three.
  restripe_counts() { # node -> "examined restriped"
    status $1 | python3 -c '
import json, sys
r = (json.load(sys.stdin).get("lanes") or {}).get("restripe") or {}
print(r.get("examined_records", 0), r.get("restriped_records", 0))'
  }
  declare -A before_ex before_rr
  moved_before=0
  for i in $(seq $NEW); do
    [ $i -eq 2 ] && continue
    read -r before_ex[$i] before_rr[$i] < <(restripe_counts $i)
    moved_before=$((moved_before + $(status $i | python3 -c 'import json, sys; print(json.load(sys.stdin)["moved_here"]["keys"])')))
  done
  id2=$(status 2 | python3 -c 'import json, sys; print(json.load(sys.stdin)["node"]["id"])')
  if [ -n "${DEAD:-}" ]; then
    # Node 2 dies first; its keys then move from the node acting for it.
    pid2=$(echo $PIDS | cut -d' ' -f2)
    kill -9 $pid2; PIDS=$(echo $PIDS | sed "s/\b$pid2\b//")
    td=$(now)
    for _ in $(seq 6000); do
      status 1 | python3 -c '
import json, sys
t = (json.load(sys.stdin).get("layout") or {}).get("takeovers") or []
sys.exit(0 if any(r["owner"] == sys.argv[1] and r["acting"] != sys.argv[1] for r in t) else 1)' $id2 && break
      sleep 0.1
    done
    echo "node 2 killed; another node acts for it $(echo "$(now) - $td" | bc) s later"
  fi
  v_before=$(status 1 | python3 -c 'import json, sys; print(json.load(sys.stdin)["layout"]["version"])')
  t3=$(now)
  $BIN/tessera admin decommission --node $id2 --endpoint http://127.0.0.1:$((P+11)) || KEEP=1
  # A newer layout, the move over, and (past four nodes) the staying
  # nodes that took node 2's lane positions healed.
  for _ in $(seq 36000); do
    status 1 | python3 -c '
import json, sys
l = json.load(sys.stdin).get("layout") or {}
sys.exit(0 if l.get("version", 0) > int(sys.argv[1]) and l.get("moving") is None and not l.get("stale") else 1)' $v_before && break
    sleep 0.1
  done
  t4=$(now)
  moved=0
  for i in $(seq $NEW); do
    [ $i -eq 2 ] && continue
    moved=$((moved + $(status $i | python3 -c 'import json, sys; print(json.load(sys.stdin)["moved_here"]["keys"])')))
  done
  echo "decommission of node 2 over $(echo "$t4 - $t3" | bc) s after the command: $((moved - moved_before)) keys moved to the others"
  if [ $NEW -eq 4 ]; then
    walked() {
      for i in 1 3 4; do
        status $i | python3 -c '
import json, sys
r = json.load(sys.stdin)["lanes"]["restripe"]
sys.exit(0 if r["running"] == 0 and r["examined_records"] > int(sys.argv[1]) else 1)' ${before_ex[$i]} || return 1
      done
    }
    for _ in $(seq 36000); do walked && break; sleep 0.1; done
    t6=$(now)
    rr=0
    for i in 1 3 4; do read -r _ r < <(restripe_counts $i); rr=$((rr + r - before_rr[$i])); done
    echo "lanes of three: $rr records striped again over three $(echo "$t6 - $t4" | bc) s after the move"
  fi
fi
for p in $PIDS; do kill -0 $p 2>/dev/null || { echo "a node (pid $p) died during the run: logs in $OUT"; KEEP=1; }; done
kill $PIDS; wait 2>/dev/null
[ -n "${KEEP:-}" ] && echo "kept $OUT" || rm -rf $OUT
