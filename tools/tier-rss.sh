#!/usr/bin/env bash
# Peak memory (VmHWM) of a node that transitions one large object to a
# tier (another node), serves a GET of it read through the tier, and
# restores it (RestoreObject copies it back).
# Usage: tools/tier-rss.sh BIN [SIZE_MIB]
# Prints the source node's peak RSS after the PUT, after the transition,
# (restarted, so the peak is the GET's own) after one whole GET of the
# transitioned object, and (restarted again) after its restore.
set -euo pipefail
BIN=$1; MIB=${2:-512}
PORT=${PORT:-19800}
DIR=$(mktemp -d /tmp/tierrss.XXXX)
export TESSERA_ACCESS_KEY=tierrss TESSERA_SECRET_KEY=tierrss-secret-key-0123456789
export AWS_ACCESS_KEY_ID=$TESSERA_ACCESS_KEY AWS_SECRET_ACCESS_KEY=$TESSERA_SECRET_KEY AWS_DEFAULT_REGION=us-east-1
T=127.0.0.1:$((PORT + 10)); S=127.0.0.1:$PORT
"$BIN" server --address $T --admin-address 127.0.0.1:$((PORT + 11)) "$DIR/tier" > "$DIR/tier.log" 2>&1 &
TPID=$!
"$BIN" server --address $S --admin-address 127.0.0.1:$((PORT + 1)) --lifecycle-day-secs 1 \
  --tier "COLD=http://$T/archive,$TESSERA_ACCESS_KEY,$TESSERA_SECRET_KEY" "$DIR/src" > "$DIR/src.log" 2>&1 &
SPID=$!
trap 'kill $TPID $SPID 2>/dev/null; wait 2>/dev/null; rm -rf "$DIR"' EXIT
for ep in $T $S; do for _ in $(seq 1 50); do curl -s -o /dev/null http://$ep && break; sleep 0.2; done; done
hwm() { awk '/VmHWM/ { printf "%d MiB", $2 / 1024 }' /proc/$SPID/status; }
# Restarts the source node (its peak RSS starts over) and waits for it.
restart_src() {
  kill $SPID; wait $SPID 2>/dev/null || true
  "$BIN" server --address $S --admin-address 127.0.0.1:$((PORT + 1)) --lifecycle-day-secs 1 \
    --tier "COLD=http://$T/archive,$TESSERA_ACCESS_KEY,$TESSERA_SECRET_KEY" "$DIR/src" >> "$DIR/src.log" 2>&1 &
  SPID=$!
  for _ in $(seq 1 50); do curl -s -o /dev/null http://$S && break; sleep 0.2; done
  echo "peak RSS after a restart: $(hwm)"
}
aws --endpoint-url http://$T s3api create-bucket --bucket archive > /dev/null
aws --endpoint-url http://$S s3api create-bucket --bucket src > /dev/null
head -c $((MIB << 20)) /dev/urandom > "$DIR/obj"
aws --endpoint-url http://$S s3 cp "$DIR/obj" s3://src/big --only-show-errors
echo "peak RSS after the PUT of $MIB MiB: $(hwm)"
aws --endpoint-url http://$S s3api put-bucket-lifecycle-configuration --bucket src --lifecycle-configuration \
  '{"Rules":[{"ID":"cold","Status":"Enabled","Filter":{"Prefix":""},"Transitions":[{"Days":1,"StorageClass":"COLD"}]}]}'
T0=$(date +%s.%N)
until aws --endpoint-url http://$S s3api head-object --bucket src --key big --query StorageClass --output text 2>/dev/null | grep -q COLD; do
  sleep 0.5
done
echo "transitioned in $(echo "$(date +%s.%N) - $T0" | bc) s; peak RSS: $(hwm)"
# Restarted, so the GET's peak is its own; one whole GET (no ranges).
restart_src
T0=$(date +%s.%N)
aws --endpoint-url http://$S s3api get-object --bucket src --key big "$DIR/back" > /dev/null
cmp "$DIR/obj" "$DIR/back" && echo "one GET read through in $(echo "$(date +%s.%N) - $T0" | bc) s, bytes identical; peak RSS: $(hwm)"
# Restarted again, so the restore's peak is its own.
restart_src
T0=$(date +%s.%N)
aws --endpoint-url http://$S s3api restore-object --bucket src --key big --restore-request Days=3600 > /dev/null
echo "restored in $(echo "$(date +%s.%N) - $T0" | bc) s; peak RSS: $(hwm)"
aws --endpoint-url http://$S s3api get-object --bucket src --key big "$DIR/back" > /dev/null
cmp "$DIR/obj" "$DIR/back" && echo "the restored copy's bytes are identical"
