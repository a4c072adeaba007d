#!/usr/bin/env bash
# SelectObjectContent of two builds A/B at once, for noisy machines: both
# nodes (--threads 1) hold the objects of tools/select-vs-get.sh; requests
# alternate between A and B (and the GET+filter client, select/examples/
# getfilter.rs), best of N each, so load spikes hit both alike.
#
#   tools/select-ab.sh BIN_A BIN_B [N]         # N defaults to 7
#   FORMATS="parquet" MIB=64 tools/select-ab.sh ...
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
. "$root/tools/lib.sh"
a=$1 b=$2 n=${3:-7}
target="${CARGO_TARGET_DIR:-$root/target}"
cargo build --release -q --locked -p tessera-select --example getfilter --manifest-path "$root/Cargo.toml"
gf="$target/release/examples/getfilter"
work_dir select-ab
key=svgkey secret=svgsecret1234567890
pa=$((40000 + RANDOM % 10000)); pb=$((50000 + RANDOM % 10000))
NODE_ENV="TESSERA_ACCESS_KEY=$key TESSERA_SECRET_KEY=$secret" start_node A "$a" "$pa" "http://127.0.0.1:$pa/" --admin-address off --threads 1
NODE_ENV="TESSERA_ACCESS_KEY=$key TESSERA_SECRET_KEY=$secret" start_node B "$b" "$pb" "http://127.0.0.1:$pb/" --admin-address off --threads 1
sig=(--aws-sigv4 "aws:amz:us-east-1:s3" --user "$key:$secret" -s -S -f)
"$gf" gen "$WORK" "${MIB:-64}"
for p in $pa $pb; do
  curl "${sig[@]}" -H "x-amz-content-sha256: $(printf '' | sha256sum | cut -d' ' -f1)" -X PUT "http://127.0.0.1:$p/measure" -o /dev/null
  for f in d.csv d.json d.parquet; do
    curl "${sig[@]}" -H "x-amz-content-sha256: UNSIGNED-PAYLOAD" -T "$WORK/$f" "http://127.0.0.1:$p/measure/$f" -o /dev/null
  done
done
sel() { # PORT FMT LIMIT -> seconds
  local expr input body
  case $2 in
    csv) expr="SELECT * FROM S3Object s WHERE CAST(s.k AS INT) &lt; $3"; input="<CSV><FileHeaderInfo>USE</FileHeaderInfo></CSV>" ;;
    json) expr="SELECT * FROM S3Object s WHERE s.k &lt; $3"; input="<JSON><Type>LINES</Type></JSON>" ;;
    *) expr="SELECT * FROM S3Object s WHERE s.k &lt; $3"; input="<Parquet/>" ;;
  esac
  body="<SelectObjectContentRequest xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Expression>$expr</Expression><ExpressionType>SQL</ExpressionType><InputSerialization>$input</InputSerialization><OutputSerialization><CSV/></OutputSerialization></SelectObjectContentRequest>"
  curl "${sig[@]}" -H "x-amz-content-sha256: $(printf %s "$body" | sha256sum | cut -d' ' -f1)" -H "Content-Type: application/xml" \
    -X POST --data-binary "$body" "http://127.0.0.1:$1/measure/d.$2?select=&select-type=2" -o /dev/null -w "%{time_total}"
}
get() { curl "${sig[@]}" -H "x-amz-content-sha256: UNSIGNED-PAYLOAD" "http://127.0.0.1:$1/measure/d.$2" -o /dev/null -w "%{time_total}"; }
printf "%-8s %4s %9s %9s %7s %9s %9s\n" format sel A_s B_s B/A get_s filter_s
for fmt in ${FORMATS:-csv json parquet}; do
  g=$(for _ in $(seq $n); do get $pb $fmt; echo; done | sort -g | head -1)
  for l in 1 50; do
    ra=(); rb=(); rc=()
    for _ in $(seq $n); do ra+=("$(sel $pa $fmt $l)"); rb+=("$(sel $pb $fmt $l)"); rc+=("$("$gf" filter "$WORK/d.$fmt" $l | cut -d' ' -f2)"); done
    ba=$(printf "%s\n" "${ra[@]}" | sort -g | head -1); bb=$(printf "%s\n" "${rb[@]}" | sort -g | head -1); bc=$(printf "%s\n" "${rc[@]}" | sort -g | head -1)
    awk -v f=$fmt -v l=$l -v a=$ba -v b=$bb -v g=$g -v c=$bc 'BEGIN { printf "%-8s %3s%% %9.3f %9.3f %7.2f %9.3f %9.3f   GET+filter %.3f\n", f, l, a, b, b/a, g, c, g+c }'
  done
done
