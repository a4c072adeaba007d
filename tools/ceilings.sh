#!/usr/bin/env bash
# The hardware's ceilings and tessera against them, in one run on this machine:
#   disk     fio, io_uring + O_DIRECT, on the data dir's filesystem: 1 MiB
#            sequential write and read at queue depth 16, random read at
#            qd16 and qd1; 4 KiB write +
#            fdatasync at qd1 and with 8 jobs;
#   network  iperf3 over loopback;
#   HTTP     nginx (worker_processes = cores) serving a 4 KiB file from its
#            open file cache, driven by wrk at each connection count: the
#            request rate no S3 server can exceed here; and nginx reading
#            and discarding 4 KiB PUT bodies (wrk -s, a Lua script), the
#            rate no server can take 4 KiB uploads at (nothing stored),
#            and the same with 1 MiB bodies (MB/s no server can take
#            uploads at here while the client shares the cores);
#   hashing  MD5 and SHA-256 MB/s on one core with the node's crates
#            (tessera-bench hash; MD5 also multi-buffer, as the node hashes
#            concurrent uploads), and openssl speed for reference;
#   tessera  4 KiB and 1 MiB PUT and GET at each connection count
#            (tessera-bench), and wrk against a presigned GET of one 4 KiB
#            object beside tessera-bench sending the same presigned GETs.
# Every row prints the command it ran; the tables come out as markdown.
#
# usage: tools/ceilings.sh [--install] [--dir DIR] [--secs S] [--conns "16 64"]
#                          [--no-tessera] [--out FILE]
#   --install     apt-get install what is missing (fio iperf3 nginx-light wrk);
#                 without it a missing tool is named and its rows skipped
#   --dir DIR     where fio's files and the node's data dir go (default: a
#                 temp dir under $TMPDIR or /tmp); use the data disk
#   --secs S      seconds per measurement (default 10)
#   --conns LIST  connection counts for wrk and tessera-bench (default "16 64")
#   --no-tessera  only the ceilings
#   --out FILE    also write the markdown tables to FILE
# Ports: PORT_BASE (default 9410) .. PORT_BASE+4.
# Needs: a release build (cargo build --release -p tessera-node -p tessera-bench),
# python3 (to read fio's and iperf3's JSON).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
INSTALL=0
DIR=""
SECS=10
CONNS="16 64"
TESSERA=1
OUT=""
while [ $# -gt 0 ]; do
  case "$1" in
    --install) INSTALL=1; shift ;;
    --dir) DIR="$2"; shift 2 ;;
    --secs) SECS="$2"; shift 2 ;;
    --conns) CONNS="$2"; shift 2 ;;
    --no-tessera) TESSERA=0; shift ;;
    --out) OUT="$2"; shift 2 ;;
    -h|--help) sed -n '2,28p' "$0"; exit 0 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
CORES=$(nproc)
PORT_BASE=${PORT_BASE:-9410}
NODE_PORT=$PORT_BASE ADMIN_PORT=$((PORT_BASE + 1)) NGINX_PORT=$((PORT_BASE + 2)) IPERF_PORT=$((PORT_BASE + 3))
NODE=target/release/tessera
BENCH=target/release/tessera-bench
# fio's test files: 1 MiB rows over this much, 4 KiB sync rows over a quarter.
FIO_SIZE=${FIO_SIZE:-1G}
# Turns wrk and tessera-bench take at the same presigned GET.
ROUNDS=${ROUNDS:-3}
TIMER=()

WORK=$(mktemp -d "${DIR:-${TMPDIR:-/tmp}}/tessera-ceilings.XXXXXX")
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT
chmod 755 "$WORK"

ROWS=()      # ceiling rows: "what | figure | command"
TROWS=()     # tessera rows
log() { echo "$*" >&2; }
row() { ROWS+=("| $1 | $2 | \`$3\` |"); log "  => $2"; }
trow() { TROWS+=("| $1 | $2 | \`$3\` |"); } # trow LABEL "req/s | MB/s | p50 | p99 | errors" COMMAND
skip() { ROWS+=("| $1 | skipped: $2 not installed (--install) | |"); log "skip $1: $2 not installed"; }
run() { log "\$ $*"; "$@"; }

have() { command -v "$1" >/dev/null 2>&1; }
# Debian's nginx lives in /usr/sbin, which may not be on a user's PATH.
NGINX=$(command -v nginx || { [ -x /usr/sbin/nginx ] && echo /usr/sbin/nginx; } || true)
if [ "$INSTALL" = 1 ]; then
  missing=()
  have fio || missing+=(fio)
  have iperf3 || missing+=(iperf3)
  [ -n "$NGINX" ] || missing+=(nginx-light)
  have wrk || missing+=(wrk)
  if [ ${#missing[@]} -gt 0 ]; then
    log "installing ${missing[*]}"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
  NGINX=$(command -v nginx || { [ -x /usr/sbin/nginx ] && echo /usr/sbin/nginx; } || true)
fi
json() { python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))" "$@"; }

log "== machine: $CORES cores, $(uname -r), data filesystem $(df -T "$WORK" | awk 'NR==2{print $2" on "$1}')"

# --- disk -----------------------------------------------------------------
fio_row() { # fio_row LABEL FIGURE-EXPR fio-args...
  local label=$1 expr=$2; shift 2
  local cmd=(fio --name=ceiling --directory="$WORK" --ioengine=io_uring --direct=1 --runtime="$SECS" --time_based
    --output-format=json "$@")
  run "${cmd[@]}" --output="$WORK/fio.json" >/dev/null
  row "$label" "$(json "$WORK/fio.json" "$expr")" "${cmd[*]}"
}
if have fio; then
  log "== disk (fio on $WORK)"
  BW="f\"{d['jobs'][0]['%s']['bw_bytes']/1e6:.0f} MB/s\""
  fio_row "disk: 1 MiB sequential write, qd16" "$(printf "$BW" write)" --rw=write --bs=1M --iodepth=16 --size="$FIO_SIZE" --filename=seq
  fio_row "disk: 1 MiB sequential read, qd16" "$(printf "$BW" read)" --rw=read --bs=1M --iodepth=16 --size="$FIO_SIZE" --filename=seq
  # Random 1 MiB reads: what a node serving 1 MiB GETs from disk can reach.
  RR="f\"{d['jobs'][0]['read']['iops']:.0f} reads/s, {d['jobs'][0]['read']['bw_bytes']/1e6:.0f} MB/s, p90 {d['jobs'][0]['read']['clat_ns']['percentile']['90.000000']/1e6:.1f} ms\""
  fio_row "disk: 1 MiB random read, qd16" "$RR" --rw=randread --bs=1M --iodepth=16 --size="$FIO_SIZE" --filename=seq
  fio_row "disk: 1 MiB random read, qd1" "$RR" --rw=randread --bs=1M --iodepth=1 --size="$FIO_SIZE" --filename=seq
  # With --fdatasync=1 every write is followed by its fdatasync: writes/s = syncs/s.
  SYNC="f\"{sum(j['write']['iops'] for j in d['jobs']):.0f} write+fdatasync/s, fdatasync p99 {d['jobs'][0]['sync']['lat_ns']['percentile']['99.000000']/1e3:.0f} µs\""
  fio_row "disk: 4 KiB write + fdatasync, qd1" "$SYNC" --rw=write --bs=4k --iodepth=1 --fdatasync=1 --size=256M --filename=sync1
  fio_row "disk: 4 KiB write + fdatasync, 8 jobs" "$SYNC" --rw=write --bs=4k --iodepth=1 --fdatasync=1 --size=64M --numjobs=8 --group_reporting
  rm -f "$WORK"/seq "$WORK"/sync1 "$WORK"/ceiling.*
else
  skip "disk" fio
fi

# --- network --------------------------------------------------------------
if have iperf3; then
  log "== network (iperf3 over loopback)"
  iperf3 -s -1 -p "$IPERF_PORT" >/dev/null 2>&1 &
  PIDS+=($!)
  sleep 0.5
  cmd=(iperf3 -c 127.0.0.1 -p "$IPERF_PORT" -t "$SECS" -J)
  run "${cmd[@]}" >"$WORK/iperf.json"
  row "network: TCP over loopback, 1 stream" "$(json "$WORK/iperf.json" "f\"{d['end']['sum_received']['bits_per_second']/8e6:.0f} MB/s\"")" "${cmd[*]}"
else
  skip "network" iperf3
fi

# --- HTTP -----------------------------------------------------------------
wrk_figures() { # wrk_figures OUTPUT-FILE [row] -> "N req/s, ..." or a table row's figures
  python3 - "$@" <<'EOF'
import re, sys
t = open(sys.argv[1]).read()
rps = re.search(r"Requests/sec:\s+([\d.]+)", t)
rps = float(rps.group(1)) if rps else 0.0
mbs = re.search(r"Transfer/sec:\s+([\d.]+)(\w+)", t)
mbs = float(mbs.group(1)) * {"B": 1, "KB": 1024, "MB": 1024**2, "GB": 1024**3}.get(mbs.group(2), 0) / 1e6 if mbs else 0.0
unit = {"us": 1, "ms": 1e3, "s": 1e6, "m": 6e7}
p = {k: float(v) * unit.get(u, 0) for k, v, u in re.findall(r"^\s+(50|99)%\s+([\d.]+)(\w+)", t, re.M)}
errs = re.search(r"Non-2xx or 3xx responses: (\d+)", t)
errs = int(errs.group(1)) if errs else 0
if len(sys.argv) > 2:
    print(f"{rps:.0f} | {mbs:.1f} | {p.get('50', 0):.0f} | {p.get('99', 0):.0f} | {errs}")
else:
    print(f"{rps:.0f} req/s, {mbs:.1f} MB/s (with headers), p50 {p.get('50', 0):.0f} µs, p99 {p.get('99', 0):.0f} µs, {errs} non-2xx")
EOF
}
if [ -n "$NGINX" ] && have wrk; then
  log "== HTTP ceiling (nginx + wrk)"
  mkdir -p "$WORK/www" "$WORK/nginx-tmp"
  head -c 4096 /dev/urandom >"$WORK/www/4k"
  chmod -R a+rX "$WORK/www"
  cat >"$WORK/nginx.conf" <<EOF
worker_processes $CORES;
daemon off;
pid $WORK/nginx.pid;
error_log $WORK/nginx-error.log;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $WORK/nginx-tmp; proxy_temp_path $WORK/nginx-tmp;
  fastcgi_temp_path $WORK/nginx-tmp; uwsgi_temp_path $WORK/nginx-tmp; scgi_temp_path $WORK/nginx-tmp;
  open_file_cache max=16 inactive=60s; open_file_cache_valid 60s;
  sendfile on; tcp_nodelay on;
  keepalive_requests 100000000; keepalive_timeout 300s;
  server {
    listen 127.0.0.1:$NGINX_PORT reuseport; root $WORK/www;
    # Reads the body and throws it away, then answers 200.
    location = /put { client_max_body_size 2m; client_body_buffer_size 16k; return 200; }
  }
}
EOF
  cat >"$WORK/put4k.lua" <<'EOF'
wrk.method = "PUT"
wrk.body = string.rep("x", 4096)
wrk.headers["Content-Type"] = "application/octet-stream"
EOF
  sed 's/4096/1048576/' "$WORK/put4k.lua" >"$WORK/put1m.lua"
  "$NGINX" -p "$WORK" -c "$WORK/nginx.conf" 2>>"$WORK/nginx-error.log" &
  PIDS+=($!)
  sleep 1
  for c in $CONNS; do
    cmd=(wrk -t "$CORES" -c "$c" -d "${SECS}s" --latency "http://127.0.0.1:$NGINX_PORT/4k")
    run "${cmd[@]}" >"$WORK/wrk.txt"
    row "HTTP: nginx, 4 KiB file, $c connections" "$(wrk_figures "$WORK/wrk.txt")" "${cmd[*]}"
  done
  for c in $CONNS; do
    cmd=(wrk -t "$CORES" -c "$c" -d "${SECS}s" --latency -s "$WORK/put4k.lua" "http://127.0.0.1:$NGINX_PORT/put")
    run "${cmd[@]}" >"$WORK/wrk.txt"
    row "HTTP: nginx, 4 KiB PUT bodies read and discarded, $c connections" "$(wrk_figures "$WORK/wrk.txt")" "${cmd[*]}"
  done
  for c in $CONNS; do
    cmd=(wrk -t "$CORES" -c "$c" -d "${SECS}s" --latency -s "$WORK/put1m.lua" "http://127.0.0.1:$NGINX_PORT/put")
    run "${cmd[@]}" >"$WORK/wrk.txt"
    # wrk's Transfer/sec counts what it receives: the bodies sent are req/s x 1 MiB.
    figs=$(wrk_figures "$WORK/wrk.txt" | python3 -c "import sys; t = sys.stdin.read(); r = float(t.split()[0]); print(f'{r * 1048576 / 1e6:.0f} MB/s of bodies ({r:.0f} req/s), ' + t.split(', ', 2)[2].strip())")
    row "HTTP: nginx, 1 MiB PUT bodies read and discarded, $c connections" "$figs" "${cmd[*]}"
  done
  kill "${PIDS[-1]}" 2>/dev/null || true
else
  skip "HTTP" "nginx or wrk"
fi

# --- hashing --------------------------------------------------------------
log "== hashing"
if [ -x "$BENCH" ]; then
  cmd=("$BENCH" hash --duration 2s)
  log "\$ ${cmd[*]}"
  while read -r name krate size unit rate; do
    if [ "$name" = md5x ]; then
      # The node's multi-buffer MD5: $size uploads' 1 MiB bodies side by side.
      row "hash: md5 multi-buffer ($krate, as the node), $size 1 MiB bodies at once, 1 core" "$rate MB/s" "${cmd[*]}"
      continue
    fi
    row "hash: $name ($krate, as the node), $size $unit messages, 1 core" "$rate MB/s" "${cmd[*]}"
  done < <("${cmd[@]}" | tail -n +2)
fi
if have openssl; then
  for alg in md5 sha256; do
    cmd=(openssl speed -seconds 2 -bytes 16384 -evp "$alg")
    run "${cmd[@]}" >"$WORK/openssl.txt" 2>/dev/null
    # The last field of the result line: kB/s (1000 bytes) for 16 KiB blocks.
    rate=$(awk -v a="$alg" 'tolower($1)==a {v=$NF} END {sub("k","",v); printf "%.0f", v/1000}' "$WORK/openssl.txt")
    row "hash: $alg (openssl, reference), 16 KiB blocks, 1 core" "$rate MB/s" "${cmd[*]}"
  done
fi

# --- tessera --------------------------------------------------------------
if [ "$TESSERA" = 1 ]; then
  [ -x "$NODE" ] && [ -x "$BENCH" ] || { log "build first: cargo build --release -p tessera-node -p tessera-bench"; exit 2; }
  export AWS_ACCESS_KEY_ID=CEILINGACCESSKEY0001 AWS_SECRET_ACCESS_KEY=ceiling-secret-key-000000000000000000001
  export TESSERA_ACCESS_KEY=$AWS_ACCESS_KEY_ID TESSERA_SECRET_KEY=$AWS_SECRET_ACCESS_KEY
  EP=http://127.0.0.1:$NODE_PORT
  log "== tessera ($NODE on $EP, data in $WORK/node)"
  "$NODE" server --address "127.0.0.1:$NODE_PORT" --admin-address "127.0.0.1:$ADMIN_PORT" "$WORK/node" >"$WORK/node.log" 2>&1 &
  NODE_PID=$!
  PIDS+=($NODE_PID)
  for _ in $(seq 1 300); do
    curl -s -o /dev/null "$EP/" && break
    sleep 0.1
  done
  # Something else answering on the port would be measured instead: refuse.
  kill -0 "$NODE_PID" 2>/dev/null || { log "the node exited (port $NODE_PORT taken?):"; tail -5 "$WORK/node.log" >&2; exit 1; }
  bench() { # bench LABEL bench-args... : one row from the JSON result
    local label=$1; shift
    local cmd=("$BENCH" --endpoint "$EP" --progress 0s "$@")
    log "\$ ${cmd[*]} --json $WORK/r.json"
    "${TIMER[@]}" "${cmd[@]}" --json "$WORK/r.json" >/dev/null || log "  (some requests failed)"
    local figs
    figs=$(json "$WORK/r.json" "' | '.join([f\"{o['req_per_s']:.0f} | {o['mb_per_s']:.1f} | {o['latency_us']['p50']} | {o['latency_us']['p99']} | {o['errors_total']}\" for o in d['ops'].values()])")
    if [ ${#TIMER[@]} -gt 0 ]; then
      label="$label (client CPU $(cpu_us_per_req "$(json "$WORK/r.json" "sum(o['ok'] for o in d['ops'].values())")") µs/req)"
    fi
    trow "$label" "$figs" "${cmd[*]}"
    log "  => $figs"
  }
  for c in $CONNS; do
    bench "PUT 4 KiB, $c conns" put --bucket ceil --size 4KiB --objects 10000 --concurrency "$c" --duration "${SECS}s"
    bench "GET 4 KiB, $c conns" get --bucket ceil --size 4KiB --objects 10000 --concurrency "$c" --duration "${SECS}s"
    bench "PUT 1 MiB, $c conns" put --bucket ceil --size 1MiB --objects 200 --prefix big/ --concurrency "$c" --duration "${SECS}s"
    bench "GET 1 MiB, $c conns" get --bucket ceil --size 1MiB --objects 200 --prefix big/ --concurrency "$c" --duration "${SECS}s"
  done
  if have wrk; then
    log "== the client: wrk and tessera-bench, the same presigned GET of one 4 KiB object"
    run "$BENCH" --endpoint "$EP" --progress 0s fill --bucket ceil --count 1 --size 4KiB --prefix wrk/ --concurrency 1 >/dev/null
    URL=$("$BENCH" --endpoint "$EP" presign --bucket ceil --key wrk/0000000000 --expires 1h)
    # On a shared machine the load changes from second to second: the two
    # clients take turns, ROUNDS times, and the ratio is of their totals. The
    # client's own CPU time per request (GNU time) shows which one costs more.
    TIMER=()
    [ -x /usr/bin/time ] && TIMER=(/usr/bin/time -f "%U %S" -o "$WORK/cpu")
    cpu_us_per_req() { # cpu_us_per_req REQUESTS: the client's µs of CPU per request
      [ ${#TIMER[@]} -gt 0 ] && awk -v n="$1" '{printf "%.1f", ($1 + $2) * 1e6 / (n > 0 ? n : 1)}' "$WORK/cpu" || echo "?"
    }
    for c in $CONNS; do
      wsum=0 bsum=0
      for round in $(seq 1 "$ROUNDS"); do
        cmd=(wrk -t "$CORES" -c "$c" -d "${SECS}s" --latency "URL")
        log "\$ ${cmd[*]}   (URL from: $BENCH presign --bucket ceil --key wrk/0000000000)"
        "${TIMER[@]}" wrk -t "$CORES" -c "$c" -d "${SECS}s" --latency "$URL" >"$WORK/wrk.txt"
        w=$(wrk_figures "$WORK/wrk.txt" row)
        wrps=$(echo "$w" | awk '{print $1}')
        trow "wrk, presigned GET 4 KiB, $c conns, round $round (client CPU $(cpu_us_per_req $((wrps * SECS))) µs/req)" "$w" "${cmd[*]}"
        log "  => $w"
        bench "tessera-bench, presigned GET 4 KiB, $c conns, round $round" get --bucket ceil --size 4KiB --objects 1 --prefix wrk/ --skip-prefill --presigned --concurrency "$c" --duration "${SECS}s"
        brps=$(json "$WORK/r.json" "f\"{d['ops']['get']['req_per_s']:.0f}\"")
        wsum=$((wsum + wrps)) bsum=$((bsum + brps))
      done
      TROWS+=("| **tessera-bench / wrk**, $c conns, $ROUNDS rounds | **$(python3 -c "print(f'{$bsum/max($wsum,1):.2f}')")** | | | | | |")
    done
  fi
fi

{
  echo
  echo "Ceilings on $(hostname) ($CORES cores, $(date -u +%Y-%m-%dT%H:%MZ)), ${SECS} s per row:"
  echo
  echo "| ceiling | figure | command |"
  echo "|---|---|---|"
  printf '%s\n' "${ROWS[@]}"
  if [ ${#TROWS[@]} -gt 0 ]; then
    echo
    echo "tessera in the same run (req/s, MB/s = 10^6 B/s, latency µs):"
    echo
    echo "| workload | req/s | MB/s | p50 | p99 | errors | command |"
    echo "|---|---|---|---|---|---|---|"
    printf '%s\n' "${TROWS[@]}"
  fi
} | tee ${OUT:+"$OUT"}
