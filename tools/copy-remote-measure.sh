#!/bin/bash
# CopyObject across nodes: a 3-node cluster on loopback (one data dir and
# one reactor per node); a SIZE_MIB object is written whose owner is node 2,
# then copied COPIES times, through node 1, to keys node 3 owns, so every
# copy reads its source over the cluster RPC (`copy_remote`). Prints each
# copy's seconds and MB/s, and the median.
# usage: tools/copy-remote-measure.sh [SIZE_MIB (default 256)] [COPIES (default 3)]
# BIN: dir of tessera (default target/release). Needs python3 with boto3.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
SIZE_MIB=${1:-256} COPIES=${2:-3}
BIN=${BIN:-target/release} P=${PORT_BASE:-23400}
OUT=$(mktemp -d /tmp/copy-remote-measure.XXXX)
export TESSERA_ACCESS_KEY=benchkey TESSERA_SECRET_KEY=benchsecret123456 TESSERA_CLUSTER_SECRET="copy-remote-measure secret 0123456789"
PIDS=""
trap 'kill $PIDS 2>/dev/null; wait 2>/dev/null; rm -rf "$OUT"' EXIT
for i in 1 2 3; do
  J=""; [ $i -gt 1 ] && J="--join 127.0.0.1:$((P+12))"
  $BIN/tessera server --address 127.0.0.1:$((P+10*i)) --admin-address 127.0.0.1:$((P+10*i+1)) \
    --cluster-address 127.0.0.1:$((P+10*i+2)) $J --threads 1 "$OUT/c$i" > "$OUT/c$i.log" 2>&1 &
  PIDS="$PIDS $!"; sleep 1
done
python3 - "$P" "$SIZE_MIB" "$COPIES" <<'EOF'
import json, os, statistics, sys, time, urllib.request
import boto3, botocore.auth, botocore.awsrequest, botocore.credentials
from botocore.config import Config
p, size_mib, copies = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
creds = botocore.credentials.Credentials(os.environ["TESSERA_ACCESS_KEY"], os.environ["TESSERA_SECRET_KEY"])
def admin(node, path):
    url = f"http://127.0.0.1:{p + 10 * node + 1}{path}"
    req = botocore.awsrequest.AWSRequest(method="GET", url=url)
    botocore.auth.S3SigV4Auth(creds, "s3", "us-east-1").add_auth(req)
    with urllib.request.urlopen(urllib.request.Request(url, headers=dict(req.headers.items())), timeout=10) as r:
        return json.load(r)
# Until every node has lanes over the three.
last = None
for _ in range(120):
    try:
        if all(admin(n, "/admin/v1/cluster").get("lanes") for n in (1, 2, 3)):
            break
    except Exception as e:
        last = e
    time.sleep(0.5)
else:
    sys.exit(f"the cluster did not form: {last}")
ids = {n: admin(n, "/admin/v1/cluster")["node"]["id"] for n in (1, 2, 3)}
def owned(prefix, node):
    for i in range(2000):
        k = f"{prefix}-{i}"
        if admin(1, f"/admin/v1/cluster/locate?bucket=xcm&key={k}")["owner"] == ids[node]:
            return k
    sys.exit("no such key")
s3 = boto3.client("s3", endpoint_url=f"http://127.0.0.1:{p + 10}", aws_access_key_id=creds.access_key,
                  aws_secret_access_key=creds.secret_key, region_name="us-east-1",
                  config=Config(retries={"max_attempts": 1}, read_timeout=600))
for _ in range(40):
    try:
        s3.create_bucket(Bucket="xcm")
        break
    except Exception:
        time.sleep(0.5)
time.sleep(2)
src = owned("src", 2)
body = os.urandom(size_mib << 20)
s3.put_object(Bucket="xcm", Key=src, Body=body)
secs = []
for c in range(copies):
    dst = owned(f"dst{c}", 3)
    t = time.monotonic()
    s3.copy_object(Bucket="xcm", Key=dst, CopySource=f"xcm/{src}")
    secs.append(time.monotonic() - t)
    assert s3.head_object(Bucket="xcm", Key=dst)["ContentLength"] == len(body)
    print(f"copy {c + 1}: {size_mib} MiB from node 2 to node 3 through node 1 in {secs[-1]:.2f} s, {len(body) / secs[-1] / 1e6:.0f} MB/s")
m = statistics.median(secs)
print(f"median: {m:.2f} s, {len(body) / m / 1e6:.0f} MB/s")
EOF
