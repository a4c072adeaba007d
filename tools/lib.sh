# Shared pieces of the measurement scripts in tools/: a work dir removed on
# exit, nodes started in it and stopped on exit. Source it after `set -euo
# pipefail`:
#
#   . "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
#   work_dir NAME                 # sets WORK=$TMPDIR/tessera-NAME.XXXXXX, cleaned on exit
#   start_node NAME BIN PORT PROBE_URL [server args...]
#       starts `BIN server --address 127.0.0.1:PORT <args> $WORK/NAME`, logs to
#       $WORK/NAME.log, waits until PROBE_URL answers (curl; CURL_OPTS for extra
#       options such as --cacert), exits with the log's tail if it never does.
#       NODE_ENV="VAR=value ..." sets the node's environment.
#       The node's pid is appended to NODE_PIDS; all are stopped on exit.

NODE_PIDS=()
WORK=""

_tools_cleanup() {
  for p in "${NODE_PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${NODE_PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  [ -n "$WORK" ] && rm -rf "$WORK"
  return 0
}
trap _tools_cleanup EXIT

work_dir() {
  WORK=$(mktemp -d "${TMPDIR:-/tmp}/tessera-$1.XXXXXX")
}

start_node() {
  local name=$1 bin=$2 port=$3 probe=$4
  shift 4
  # shellcheck disable=SC2086
  env ${NODE_ENV:-} "$bin" server --address "127.0.0.1:$port" "$@" "$WORK/$name" >"$WORK/$name.log" 2>&1 &
  NODE_PIDS+=($!)
  for _ in $(seq 1 600); do
    # shellcheck disable=SC2086
    curl -s -o /dev/null ${CURL_OPTS:-} "$probe" && return 0
    sleep 0.1
  done
  echo "node $name did not start:" >&2
  tail -5 "$WORK/$name.log" >&2
  exit 1
}
