#!/usr/bin/env bash
# The long form of the storage engine's deterministic simulation
# (io/tests/sim.rs): N seeds from START, in chunks run as separate
# processes, JOBS at a time. Chunks keep memory bounded: a simulated power
# cut abandons the tasks of the cut runtime, and the test process keeps
# about 200 KB per seed it ran (see ARCHITECTURE.md, simulation).
#
# usage: tools/sim-long.sh [--seeds N] [--start S] [--chunk C] [--jobs J]
#   defaults: --seeds 1000000 --start 0 --chunk 5000 --jobs <cores>
# Prints each chunk's result; exits 1 if any seed failed (replay one with
# TESSERA_SIM_SEED=<seed> cargo test --release -p tessera-io --test sim).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
SEEDS=1000000
START=0
CHUNK=5000
JOBS=$(nproc)
while [ $# -gt 0 ]; do
  case "$1" in
    --seeds) SEEDS="$2"; shift 2 ;;
    --start) START="$2"; shift 2 ;;
    --chunk) CHUNK="$2"; shift 2 ;;
    --jobs) JOBS="$2"; shift 2 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
cargo test --release -p tessera-io --test sim --no-run 2>&1 | tail -1
BIN=$(cargo test --release -p tessera-io --test sim --no-run --message-format=json 2>/dev/null \
  | python3 -c 'import json,sys
for l in sys.stdin:
    m = json.loads(l)
    if m.get("reason") == "compiler-artifact" and m.get("target", {}).get("name") == "sim" and m.get("executable"):
        print(m["executable"])')
[ -x "$BIN" ] || { echo "could not find the sim test binary" >&2; exit 2; }
OUT=$(mktemp -d /tmp/tessera-sim.XXXXXX)
started=$(date +%s)
chunk() { # chunk FIRST COUNT
  if TESSERA_SIM_START=$1 TESSERA_SIM_SEEDS=$2 "$BIN" >"$OUT/$1.log" 2>&1; then
    echo "seeds $1..$(( $1 + $2 - 1 )): ok"
  else
    echo "seeds $1..$(( $1 + $2 - 1 )): FAILED ($(grep -o 'failing seeds[^"]*' "$OUT/$1.log" | head -1); log $OUT/$1.log)"
    return 1
  fi
}
export -f chunk
export BIN OUT
end=$((START + SEEDS))
status=0
seq "$START" "$CHUNK" $((end - 1)) \
  | xargs -P "$JOBS" -I{} bash -c 'n='"$CHUNK"'; e='"$end"'; [ $(( {} + n )) -gt $e ] && n=$(( e - {} )); chunk {} $n' \
  || status=1
echo "$SEEDS seeds from $START in $(( $(date +%s) - started )) s; logs in $OUT"
exit $status
