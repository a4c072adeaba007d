#!/usr/bin/env python3
"""CreateBucket latency: a standalone node vs a 3-node cluster (issue 12).

Starts the given `tessera` binary on loopback (fresh temp dirs), then times
N sequential CreateBucket calls with boto3: on a standalone node, and on a
3-node cluster through the Raft leader and through a follower. Prints
mean / p50 / p99 in ms.

    tools/bucket-create-measure.py [--bin target/debug/tessera] [-n 100]
"""
import argparse, json, os, socket, statistics, subprocess, sys, tempfile, time

import boto3, botocore
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
import urllib.request

AK, SK = "MEASUREROOTKEY000001", "measure-root-secret-key-000000000000001"
SECRET = "the measurement cluster's secret"


def free_port():
    while True:
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        u.bind(("127.0.0.1", 0))
        port = u.getsockname()[1]
        t = socket.socket()
        try:
            t.bind(("127.0.0.1", port))
            return port
        except OSError:
            pass
        finally:
            t.close()
            u.close()


def start(binary, tmp, name, cluster=None, join=None):
    d = os.path.join(tmp, name)
    os.makedirs(d)
    s3, admin = free_port(), free_port()
    args = [binary, "server", "--address", f"127.0.0.1:{s3}", "--admin-address", f"127.0.0.1:{admin}", "--threads", "2"]
    if cluster:
        args += ["--cluster-address", f"127.0.0.1:{cluster}"]
    if join:
        args += ["--join", f"127.0.0.1:{join}"]
    args.append(d)
    env = dict(os.environ, TESSERA_ACCESS_KEY=AK, TESSERA_SECRET_KEY=SK, TESSERA_CLUSTER_SECRET=SECRET)
    p = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=open(os.path.join(tmp, name + ".log"), "w"))
    for line in p.stdout:
        if line.startswith(b"tessera: listening"):
            break
    return p, s3, admin


def admin_json(port, path):
    url = f"http://127.0.0.1:{port}{path}"
    empty = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    req = AWSRequest(method="GET", url=url, headers={"x-amz-content-sha256": empty})
    SigV4Auth(Credentials(AK, SK), "s3", "us-east-1").add_auth(req)
    with urllib.request.urlopen(urllib.request.Request(url, headers=dict(req.headers))) as r:
        return json.loads(r.read())


def client(port):
    cfg = botocore.config.Config(retries={"max_attempts": 1}, s3={"addressing_style": "path"})
    return boto3.client("s3", endpoint_url=f"http://127.0.0.1:{port}", aws_access_key_id=AK,
                        aws_secret_access_key=SK, region_name="us-east-1", config=cfg)


def measure(port, n, prefix):
    c = client(port)
    c.create_bucket(Bucket=f"{prefix}-warm")
    out = []
    for i in range(n):
        t = time.perf_counter()
        c.create_bucket(Bucket=f"{prefix}-{i}")
        out.append((time.perf_counter() - t) * 1000)
    out.sort()
    return statistics.mean(out), out[len(out) // 2], out[min(len(out) - 1, int(len(out) * 0.99))]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default="target/debug/tessera")
    ap.add_argument("-n", type=int, default=100)
    a = ap.parse_args()
    procs = []
    try:
        with tempfile.TemporaryDirectory(prefix="tessera-bucket-measure-") as tmp:
            p, s3, _ = start(a.bin, tmp, "alone")
            procs.append(p)
            r = measure(s3, a.n, "alone")
            print(f"standalone node:        mean {r[0]:.2f} ms  p50 {r[1]:.2f} ms  p99 {r[2]:.2f} ms  ({a.n} creates)")
            ca, cb, cc = free_port(), free_port(), free_port()
            nodes = [start(a.bin, tmp, "a", ca), start(a.bin, tmp, "b", cb, ca), start(a.bin, tmp, "c", cc, ca)]
            procs += [n[0] for n in nodes]
            deadline = time.time() + 60
            while True:
                st = [admin_json(n[2], "/admin/v1/cluster")["raft"] for n in nodes]
                if all(len(s.get("voters", [])) == 3 and s.get("leader") for s in st):
                    break
                assert time.time() < deadline, st
                time.sleep(0.2)
            leader = next(n for n, s in zip(nodes, st) if s["role"] == "leader")
            follower = next(n for n, s in zip(nodes, st) if s["role"] == "follower")
            r = measure(leader[1], a.n, "leader")
            print(f"3 nodes, on the leader: mean {r[0]:.2f} ms  p50 {r[1]:.2f} ms  p99 {r[2]:.2f} ms  ({a.n} creates)")
            r = measure(follower[1], a.n, "follower")
            print(f"3 nodes, on a follower: mean {r[0]:.2f} ms  p50 {r[1]:.2f} ms  p99 {r[2]:.2f} ms  ({a.n} creates)")
    finally:
        for p in procs:
            p.kill()
            p.wait()


if __name__ == "__main__":
    sys.exit(main())
