#!/usr/bin/env bash
# SelectObjectContent against a plain GET plus client-side filtering of the
# same object, on one node with --threads 1 (GB/s per core). The rows are
# those of select/examples/scan.rs (CSV, JSON LINES, Parquet/snappy); the
# filter keeps `k < 1` (1%) or `k < 50` (50%). Requests are signed by curl
# (--aws-sigv4); the client filter is select/examples/getfilter.rs (one
# thread, the same code as tests/tests/select_measure.rs's GET side).
#
#   tools/select-vs-get.sh [MIB]       # object size in MiB of CSV (default 64)
#   SVG_BIN=/path/to/tessera SVG_FORMATS="parquet" tools/select-vs-get.sh 64
#                                      # another build (A/B), some formats only
#
# Each time is the best of 3. select GB/s = object bytes / SelectObjectContent
# wall time (output read and discarded); GET+filter GB/s = object bytes /
# (GET wall time + client filter time).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
. "$root/tools/lib.sh"
mib="${1:-64}"
target="${CARGO_TARGET_DIR:-$root/target}"
bin="${SVG_BIN:-$target/release/tessera}"
[ -n "${SVG_BIN:-}" ] || cargo build --release -q --locked --bin tessera --manifest-path "$root/Cargo.toml"
cargo build --release -q --locked -p tessera-select --example getfilter --manifest-path "$root/Cargo.toml"
work_dir select-vs-get
port=$((40000 + RANDOM % 20000))
key=svgkey secret=svgsecret1234567890
NODE_ENV="TESSERA_ACCESS_KEY=$key TESSERA_SECRET_KEY=$secret" \
  start_node node "$bin" "$port" "http://127.0.0.1:$port/" --admin-address off --threads 1
url="http://127.0.0.1:$port"
sig=(--aws-sigv4 "aws:amz:us-east-1:s3" --user "$key:$secret" -s -S -f)
"$target/release/examples/getfilter" gen "$WORK" "$mib"
curl "${sig[@]}" -H "x-amz-content-sha256: $(printf '' | sha256sum | cut -d' ' -f1)" -X PUT "$url/measure" -o /dev/null
for f in d.csv d.json d.parquet; do
  curl "${sig[@]}" -H "x-amz-content-sha256: UNSIGNED-PAYLOAD" -T "$WORK/$f" "$url/measure/$f" -o /dev/null
done

select_once() { # KEY LIMIT -> seconds
  local expr input body
  case $1 in
    d.csv) expr="SELECT * FROM S3Object s WHERE CAST(s.k AS INT) &lt; $2"; input="<CSV><FileHeaderInfo>USE</FileHeaderInfo></CSV>" ;;
    d.json) expr="SELECT * FROM S3Object s WHERE s.k &lt; $2"; input="<JSON><Type>LINES</Type></JSON>" ;;
    *) expr="SELECT * FROM S3Object s WHERE s.k &lt; $2"; input="<Parquet/>" ;;
  esac
  body="<SelectObjectContentRequest xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Expression>$expr</Expression><ExpressionType>SQL</ExpressionType><InputSerialization>$input</InputSerialization><OutputSerialization><CSV/></OutputSerialization></SelectObjectContentRequest>"
  # curl signs `select=` (the canonical form of the bare `select`).
  curl "${sig[@]}" -H "x-amz-content-sha256: $(printf %s "$body" | sha256sum | cut -d' ' -f1)" -H "Content-Type: application/xml" \
    -X POST --data-binary "$body" "$url/measure/$1?select=&select-type=2" -o /dev/null -w "%{time_total}"
}
best() { sort -g | head -1; }

echo "$mib MiB of CSV rows; node --threads 1; best of 3"
printf "%-8s %4s %9s %12s %8s %9s %16s\n" format sel select_s "select GB/s" get_s filter_s "GET+filter GB/s"
for fmt in ${SVG_FORMATS:-csv json parquet}; do
  f="d.$fmt"
  size=$(stat -c %s "$WORK/$f")
  g=$(for _ in 1 2 3; do curl "${sig[@]}" -H "x-amz-content-sha256: UNSIGNED-PAYLOAD" "$url/measure/$f" -o /dev/null -w "%{time_total}\n"; done | best)
  for limit in 1 50; do
    s=$(for _ in 1 2 3; do select_once "$f" "$limit"; echo; done | best)
    c=$(for _ in 1 2 3; do "$target/release/examples/getfilter" filter "$WORK/$f" "$limit" | cut -d' ' -f2; done | best)
    awk -v k="${f#d.}" -v l="$limit" -v s="$s" -v g="$g" -v c="$c" -v n="$size" \
      'BEGIN { printf "%-8s %3s%% %9.3f %12.3f %8.3f %9.3f %16.3f\n", k, l, s, n / 1e9 / s, g, c, n / 1e9 / (g + c) }'
  done
done
