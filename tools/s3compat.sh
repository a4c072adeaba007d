#!/usr/bin/env bash
# Runs the ceph/s3-tests compatibility suite against a fresh tessera node
# with the suite's fixture identities (main = root, alt and tenant from a
# users file, and the two IAM account roots of test_iam.py / test_sts.py,
# `[iam root]` and `[iam alt root]`, as accounts of the users file). Needs a checkout of ceph/s3-tests and its venv (see
# ../shared/tools/s3compat/README.md):
#
#   S3TESTS_DIR=/work/s3-tests S3TESTS_VENV=/work/s3tests-venv tools/s3compat.sh [run options]
#
# Options after the script name go to s3compat's `run` (e.g. --files "...",
# -k EXPR, --out DIR). TESSERA_EXTRA_ARGS adds server flags. The node's log
# is left in $TMP/tessera1.log. The node's key service holds the suite's two
# KMS keys (`--kms-key testkey-1 --kms-key testkey-2`), named in its config
# as kms_keyid / kms_keyid2 (through S3_KMS_KEYID / S3_KMS_KEYID2). A
# lifecycle day lasts S3_LC_DEBUG_INTERVAL seconds (default 10) on the node
# and in the suite's config. CLUSTER=N (3 or 4) runs the suite through the
# first node of an N-node cluster on loopback instead (same identities on
# every node; nodes i > 1 on ports port+10*(i-1)). TESSERA_BIN runs that
# binary instead of building one.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
runner="${S3COMPAT_RUNNER:-$root/../shared/tools/s3compat/run}"
port="${S3_PORT:-8000}"
tmp="$(mktemp -d)"
bin="${TESSERA_BIN:-}"
if [ -z "$bin" ]; then
  cargo build --release -q --bin tessera --manifest-path "$root/Cargo.toml"
  bin="$root/target/release/tessera"
fi
cat > "$tmp/users" <<USERS
NOPQRSTUVWXYZABCDEFG nopqrstuvwxyzabcdefghijklmnabcdefghijklm 56789abcdef0123456789abcdef0123456789abcdef0123456789abcdef01234 john.doe
HIJKLMNOPQRSTUVWXYZA opqrstuvwxyzabcdefghijklmnopqrstuvwxyzab testx\$9876543210abcdef0123456789abcdef0123456789abcdef0123456789abcdef testx\$tenanteduser
AAAAAAAAAAAAAAAAAAaa aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa RGW11111111111111111 iam-root
BBBBBBBBBBBBBBBBBBbb bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb RGW22222222222222222 iam-alt-root
USERS
chmod 600 "$tmp/users"
# The suite's lifecycle tests count days of lc_debug_interval seconds; the
# node's lifecycle day is made the same length.
lc_day="${S3_LC_DEBUG_INTERVAL:-10}"
export S3_LC_DEBUG_INTERVAL="$lc_day"
export TESSERA_ACCESS_KEY=0555b35654ad1656d804 \
  TESSERA_SECRET_KEY='h7GhxuBLTrlhVUyxSPUKUV8r/2EI4ngqJxD7iBdBYLhwluN30JaT3Q==' \
  TESSERA_ROOT_USER_ID=testid TESSERA_ROOT_DISPLAY_NAME='M. Tester' \
  TESSERA_CLUSTER_SECRET="the s3compat cluster's secret, 32+ bytes"
nodes="${CLUSTER:-1}"
pids=()
start_node() { # index, extra args...
  local i=$1; shift
  local p=$((port + 10 * (i - 1)))
  "$bin" server --address "127.0.0.1:$p" --users "$tmp/users" \
    --kms-key testkey-1 --kms-key testkey-2 --lifecycle-day-secs "$lc_day" "$@" ${TESSERA_EXTRA_ARGS:-} "$tmp/data$i" \
    > "$tmp/tessera$i.out" 2> "$tmp/tessera$i.log" &
  pids+=($!)
}
if [ "$nodes" -gt 1 ]; then
  for i in $(seq "$nodes"); do
    join=(); [ "$i" -gt 1 ] && join=(--join "127.0.0.1:$((port + 2))")
    start_node "$i" --admin-address "127.0.0.1:$((port + 10 * (i - 1) + 1))" --cluster-address "127.0.0.1:$((port + 10 * (i - 1) + 2))" "${join[@]}"
    sleep 1
  done
else
  start_node 1
fi
# The nodes' data can be gigabytes: removed at exit (their logs stay).
trap 'kill "${pids[@]}" 2>/dev/null; wait "${pids[@]}" 2>/dev/null || true; rm -rf "$tmp"/data*' EXIT
for _ in $(seq 100); do grep -q listening "$tmp/tessera1.out" 2>/dev/null && break; sleep 0.1; done
if [ "$nodes" -gt 1 ]; then
  # Every node placed (a layout of N nodes, none pending) before the suite starts.
  for _ in $(seq 300); do
    grep -h "following layout" "$tmp/tessera1.log" 2>/dev/null | tail -1 | grep -q "nodes=$nodes pending=0" && break
    sleep 0.2
  done
  grep -h "following layout" "$tmp/tessera1.log" | tail -1
  sleep 1
fi
echo "tessera (pids ${pids[*]}) on port $port, logs $tmp/tessera*.log"
S3_KMS_KEYID="${S3_KMS_KEYID:-testkey-1}" S3_KMS_KEYID2="${S3_KMS_KEYID2:-testkey-2}" "$runner" --port "$port" "$@"
