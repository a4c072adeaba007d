"""Captures requests botocore builds, without sending them (before-send hook).

Writes one raw HTTP/1.1 request per file: request line, headers, blank line, body
(with HTTP Transfer-Encoding framing NOT applied: the aws-chunked body as botocore
hands it to urllib3).
"""
import io, os, sys
import botocore.session
from botocore.config import Config
from botocore.awsrequest import AWSResponse

OUT = sys.argv[1]
AK = "AKIAIOSFODNN7EXAMPLE"
SK = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"

class FakeRaw(io.BytesIO):
    def stream(self, *a, **k):
        yield self.read()

captured = {}

def before_send(request, **kwargs):
    body = request.body
    if body is None:
        data = b""
    elif isinstance(body, (bytes, bytearray)):
        data = bytes(body)
    elif isinstance(body, str):
        data = body.encode()
    else:
        data = body.read()
    captured["req"] = (request.method, request.url, list(request.headers.items()), data)
    raw = FakeRaw(b"")
    return AWSResponse(request.url, 200, {"ETag": '"x"'}, raw)

def client(endpoint, **cfg):
    s = botocore.session.get_session()
    c = s.create_client("s3", region_name="us-east-1", endpoint_url=endpoint,
                        aws_access_key_id=AK, aws_secret_access_key=SK,
                        config=Config(s3={"addressing_style": "path"}, **cfg))
    c.meta.events.register("before-send", before_send)
    return c

def write(name, note):
    method, url, headers, body = captured.pop("req")
    from urllib.parse import urlsplit
    u = urlsplit(url)
    target = u.path + ("?" + u.query if u.query else "")
    lines = [f"{method} {target} HTTP/1.1", f"Host: {u.netloc}"]
    for k, v in headers:
        if isinstance(v, bytes):
            v = v.decode()
        lines.append(f"{k}: {v}")
    head = ("\r\n".join(lines) + "\r\n\r\n").encode()
    with open(os.path.join(OUT, name + ".http"), "wb") as f:
        f.write(head + body)
    print(f"| {name} | {note} |")  # the table of README.md

import botocore
ver = f"botocore {botocore.__version__}"
https = client("https://localhost:9000")
http = client("http://localhost:9000")

body = b"Hello from botocore! " * 200
https.put_object(Bucket="bucket", Key="dir/hello world+plus=eq.txt", Body=body)
write("put-unsigned-trailer-crc32", f"{ver}; default config over https: STREAMING-UNSIGNED-PAYLOAD-TRAILER, CRC32 trailer")

https.put_object(Bucket="bucket", Key="empty", Body=b"")
write("put-unsigned-trailer-empty", f"{ver}; empty body over https")

https.upload_part(Bucket="bucket", Key="big/obj", UploadId="abc123", PartNumber=2, Body=b"x" * 70000)
write("upload-part-unsigned-trailer", f"{ver}; UploadPart over https, 70000 bytes")

https.put_object(Bucket="bucket", Key="sha", Body=b"checksum me", ChecksumAlgorithm="SHA256")
write("put-unsigned-trailer-sha256", f"{ver}; ChecksumAlgorithm=SHA256 over https")

http.put_object(Bucket="bucket", Key="caf\u00e9/\u00fcber ~k\u00e9y", Body=b"plain http body")
write("put-signed-payload-http", f"{ver}; over http: signed payload sha256, checksum in header")

https.get_object(Bucket="bucket", Key="a b/c%d/=x&y?z", Range="bytes=0-9")
write("get-special-key", f"{ver}; GetObject with reserved characters in the key")

https.list_objects_v2(Bucket="bucket", Prefix="photos/2024 summer/", Delimiter="/", MaxKeys=10, StartAfter="photos/\u00e9t\u00e9")
write("list-objects-v2", f"{ver}; ListObjectsV2 with encoded query parameters")

https.delete_objects(Bucket="bucket", Delete={"Objects": [{"Key": "a"}, {"Key": "b"}]})
write("delete-objects", f"{ver}; DeleteObjects (POST ?delete with body)")

url = https.generate_presigned_url("get_object", Params={"Bucket": "bucket", "Key": "presigned/k\u00e9y file.txt"}, ExpiresIn=3600)
with open(os.path.join(OUT, "presigned-get.url"), "w") as f:
    f.write(url + "\n")
print("done", ver)

v4 = client("https://localhost:9000", signature_version="s3v4")
url = v4.generate_presigned_url("get_object", Params={"Bucket": "bucket", "Key": "presigned/k\u00e9y file+1.txt", "ResponseContentDisposition": "attachment; filename=\"a b.txt\""}, ExpiresIn=3600)
with open(os.path.join(OUT, "presigned-v4-get.url"), "w") as f:
    f.write(url + "\n")
url = v4.generate_presigned_url("put_object", Params={"Bucket": "bucket", "Key": "up/load.bin"}, ExpiresIn=604800)
with open(os.path.join(OUT, "presigned-v4-put.url"), "w") as f:
    f.write(url + "\n")

v2 = client("http://localhost:9000", signature_version="s3")
v2.put_object(Bucket="bucket", Key="v2/obj key.txt", Body=b"v2 body", ContentType="text/plain", Metadata={"Color": "blue", "shape": "round  box"})
write("v2-put", f"{ver}; signature_version=s3 (SigV2 header)")
v2.get_object_acl(Bucket="bucket", Key="v2/obj key.txt", VersionId="3/L4kqtJl40Nr8X8gdRQBpUMLUo")
write("v2-get-acl", f"{ver}; SigV2 with ?acl&versionId sub-resources")
v2.get_object(Bucket="bucket", Key="v2/x", ResponseContentType="text/csv", Range="bytes=1-2")
write("v2-get-response-override", f"{ver}; SigV2 with response-content-type override")
v2.list_objects(Bucket="bucket", Prefix="p/", Marker="m")
write("v2-list", f"{ver}; SigV2 ListObjects: plain query params are not sub-resources")
print("more done")
