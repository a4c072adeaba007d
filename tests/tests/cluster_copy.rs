//! Copies and browser POST uploads across the nodes of a cluster (issue
//! 12): CopyObject and UploadPartCopy from a key another node owns (the
//! destination's owner reads it from the source's owner over the cluster
//! RPC, and checks the caller may read it), and a form upload sent to a
//! node that does not own the form's key (forwarded once its key is read).

use std::net::{SocketAddr, TcpListener};
use std::time::Duration;

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{
    BucketVersioningStatus, ChecksumAlgorithm, CompletedMultipartUpload, CompletedPart, ServerSideEncryption,
    VersioningConfiguration,
};
use aws_sdk_s3::Client;
use tessera_tests::cluster::{free_udp_port, node_opts, serves_layout_of, wait_for};
use tessera_tests::form::{expiration, v4_fields};
use tessera_tests::*;

const SECRET: &str = "the copy test cluster's secret, long enough";
const AK: &str = "AKIACLUSTERCOPYTEST1";
const SK: &str = "cluster-copy-test-secret-0123456789abcde";
const ALT_AK: &str = "AKIACLUSTERCOPYALT01";
const ALT_SK: &str = "cluster-copy-alt-secret-0123456789abcdef";
const BOUNDARY: &str = "----tesseraClusterFormBoundary";

fn free_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap()
}

fn start_node(cluster: SocketAddr, join: Option<SocketAddr>) -> Server {
    let mut opts = node_opts(cluster, join, SECRET);
    opts.args.push(format!("--address={}", free_addr()));
    opts.env.push(("TESSERA_ACCESS_KEY".to_string(), AK.to_string()));
    opts.env.push(("TESSERA_SECRET_KEY".to_string(), SK.to_string()));
    // Another account, the same on every node (accounts are each node's users file).
    opts.users = Some(format!("{ALT_AK} {ALT_SK} altcopyuser Alt\n"));
    let mut s = Server::start_with(opts);
    s.set_credentials(AK, SK);
    s
}

fn three_nodes() -> Vec<Server> {
    let (ca, cb, cc) = (free_udp_port(), free_udp_port(), free_udp_port());
    let nodes = vec![start_node(ca, None), start_node(cb, Some(ca)), start_node(cc, Some(ca))];
    // Lanes ready too: until every reactor's lanes follow the layout a
    // node answers object writes with 503 (cluster_buckets met one).
    wait_for("a layout of three nodes and its lanes on every node", Duration::from_secs(40), || {
        nodes.iter().all(|n| serves_layout_of(n, 3))
    });
    nodes
}

fn owner_of(server: &Server, bucket: &str, key: &str) -> String {
    let v = server.admin_json(&format!("/admin/v1/cluster/locate?bucket={bucket}&key={key}"));
    v["owner"].as_str().expect("an owner").to_string()
}

fn node_id(server: &Server) -> String {
    server.admin_json("/admin/v1/cluster")["node"]["id"].as_str().unwrap().to_string()
}

/// A key of `bucket` named `prefix-N` that `want` owns (or, with `not`,
/// that `want` does not own).
fn key_owned(server: &Server, bucket: &str, prefix: &str, want: &str, not: bool) -> String {
    (0..500)
        .map(|i| format!("{prefix}-{i}"))
        .find(|k| (owner_of(server, bucket, k) == want) != not)
        .expect("some key of that owner")
}

async fn body(c: &Client, bucket: &str, key: &str) -> Vec<u8> {
    let o = c.get_object().bucket(bucket).key(key).send().await.unwrap_or_else(|e| panic!("get {bucket}/{key}: {e:?}"));
    o.body.collect().await.unwrap().into_bytes().to_vec()
}

fn code<T: std::fmt::Debug, E: aws_sdk_s3::error::ProvideErrorMetadata, R>(r: Result<T, aws_sdk_s3::error::SdkError<E, R>>) -> String {
    use aws_sdk_s3::error::ProvideErrorMetadata;
    match r {
        Ok(x) => panic!("expected an error, got {x:?}"),
        Err(e) => e.code().unwrap_or("?").to_string(),
    }
}

#[test]
fn copies_read_sources_other_nodes_own() {
    let mut nodes = three_nodes();
    let ids: Vec<String> = nodes.iter().map(node_id).collect();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let clients: Vec<Client> = nodes.iter().map(|n| n.client()).collect();
    nodes[0].set_credentials(ALT_AK, ALT_SK);
    let alt = nodes[0].client();
    nodes[0].set_credentials(AK, SK);
    let c = &clients[0];
    rt.block_on(async {
        ok(c.create_bucket().bucket("xcopy").send().await, "create xc");
        ok(c.create_bucket().bucket("xvers").send().await, "create xv");
        ok(alt.create_bucket().bucket("xaltb").send().await, "create xalt");
        let on = VersioningConfiguration::builder().status(BucketVersioningStatus::Enabled).build();
        ok(c.put_bucket_versioning().bucket("xvers").versioning_configuration(on).send().await, "versioning");
    });
    wait_for("the buckets on every node", Duration::from_secs(10), || {
        rt.block_on(async {
            for cl in &clients {
                if cl.head_bucket().bucket("xvers").send().await.is_err() {
                    return false;
                }
                // Another account's bucket: 403 here once it exists, 404 before.
                let alt = cl.head_bucket().bucket("xaltb").send().await;
                if alt.is_err_and(|e| e.raw_response().is_none_or(|r| r.status().as_u16() == 404)) {
                    return false;
                }
            }
            true
        })
    });
    // Sources owned by node 1, destinations by node 2; requests sent to node 0.
    let src_small = key_owned(&nodes[0], "xcopy", "small", &ids[1], false);
    let src_big = key_owned(&nodes[0], "xcopy", "big", &ids[1], false);
    let dst_small = key_owned(&nodes[0], "xcopy", "dsmall", &ids[2], false);
    let dst_big = key_owned(&nodes[0], "xcopy", "dbig", &ids[2], false);
    let small = random_bytes(70_001, 1);
    let big = random_bytes(6 * 1024 * 1024 + 123, 2);

    rt.block_on(async {
        // A small object, its metadata carried over.
        let put = c
            .put_object()
            .bucket("xcopy")
            .key(&src_small)
            .content_type("text/x-small")
            .metadata("colour", "teal")
            .body(ByteStream::from(small.clone()))
            .send()
            .await
            .expect("put small");
        let r = c.copy_object().bucket("xcopy").key(&dst_small).copy_source(format!("xcopy/{src_small}")).send().await;
        let r = r.unwrap_or_else(|e| panic!("copy small across nodes: {e:?}"));
        assert_eq!(r.copy_object_result().unwrap().e_tag(), put.e_tag(), "a copy's ETag is the MD5 of the same bytes");
        assert_eq!(body(&clients[1], "xcopy", &dst_small).await, small);
        let h = clients[2].head_object().bucket("xcopy").key(&dst_small).send().await.expect("head copy");
        assert_eq!(h.content_type(), Some("text/x-small"));
        assert_eq!(h.metadata().and_then(|m| m.get("colour")).map(String::as_str), Some("teal"));

        // A multi-MiB object with a SHA-256 checksum: the checksum carries over.
        let put = c
            .put_object()
            .bucket("xcopy")
            .key(&src_big)
            .checksum_algorithm(ChecksumAlgorithm::Sha256)
            .body(ByteStream::from(big.clone()))
            .send()
            .await
            .expect("put big");
        let r = c.copy_object().bucket("xcopy").key(&dst_big).copy_source(format!("xcopy/{src_big}")).send().await;
        let r = r.unwrap_or_else(|e| panic!("copy big across nodes: {e:?}"));
        let cr = r.copy_object_result().unwrap();
        assert_eq!(cr.e_tag(), put.e_tag());
        assert_eq!(cr.checksum_sha256(), put.checksum_sha256(), "the source's checksum carries over");
        assert_eq!(body(&clients[0], "xcopy", &dst_big).await, big);

        // Encrypted sources across nodes, read a few pieces ahead: an SSE-C
        // source travels sealed and is opened here with the request's key;
        // an SSE-S3 source is opened by its owner.
        let raw = [7u8; 32];
        let (ck, cmd5) = (b64(&raw), b64(&md5_bytes(&raw)));
        let src_c = key_owned(&nodes[0], "xcopy", "ssec", &ids[1], false);
        let src_s = key_owned(&nodes[0], "xcopy", "sses3", &ids[1], false);
        let dst_enc = key_owned(&nodes[0], "xcopy", "denc", &ids[2], false);
        let put_c = c.put_object().bucket("xcopy").key(&src_c).sse_customer_algorithm("AES256").sse_customer_key(&ck);
        put_c.sse_customer_key_md5(&cmd5).body(ByteStream::from(big.clone())).send().await.expect("put sse-c");
        let r = c.copy_object().bucket("xcopy").key(&dst_enc).copy_source(format!("xcopy/{src_c}"));
        let r = r.copy_source_sse_customer_algorithm("AES256").copy_source_sse_customer_key(&ck).copy_source_sse_customer_key_md5(&cmd5);
        r.send().await.unwrap_or_else(|e| panic!("copy an SSE-C source across nodes: {e:?}"));
        assert_eq!(body(&clients[1], "xcopy", &dst_enc).await, big);
        let put_s = c.put_object().bucket("xcopy").key(&src_s).server_side_encryption(ServerSideEncryption::Aes256);
        put_s.body(ByteStream::from(small.clone())).send().await.expect("put sse-s3");
        let r = c.copy_object().bucket("xcopy").key(&dst_enc).copy_source(format!("xcopy/{src_s}")).send().await;
        r.unwrap_or_else(|e| panic!("copy an SSE-S3 source across nodes: {e:?}"));
        assert_eq!(body(&clients[2], "xcopy", &dst_enc).await, small);

        // A condition on the source is checked across nodes too.
        let r = c
            .copy_object()
            .bucket("xcopy")
            .key(&dst_small)
            .copy_source(format!("xcopy/{src_small}"))
            .copy_source_if_match("\"00000000000000000000000000000000\"")
            .send()
            .await;
        assert_eq!(code(r), "PreconditionFailed");
        let missing = key_owned(&nodes[0], "xcopy", "missing", &ids[1], false);
        let r = c.copy_object().bucket("xcopy").key(&dst_small).copy_source(format!("xcopy/{missing}")).send().await;
        assert_eq!(code(r), "NoSuchKey");

        // UploadPartCopy with ranges of a source on another node.
        let up = c.create_multipart_upload().bucket("xcopy").key(&dst_small).send().await.expect("create upload");
        let id = up.upload_id().unwrap();
        let first = 1000..1000 + 5 * 1024 * 1024;
        let mut parts = Vec::new();
        for (n, range) in [(1, first.clone()), (2, 0..1000)] {
            let r = c
                .upload_part_copy()
                .bucket("xcopy")
                .key(&dst_small)
                .upload_id(id)
                .part_number(n)
                .copy_source(format!("xcopy/{src_big}"))
                .copy_source_range(format!("bytes={}-{}", range.start, range.end - 1))
                .send()
                .await
                .unwrap_or_else(|e| panic!("upload part copy {n}: {e:?}"));
            parts.push(CompletedPart::builder().part_number(n).e_tag(r.copy_part_result().unwrap().e_tag().unwrap()).build());
        }
        let done = CompletedMultipartUpload::builder().set_parts(Some(parts)).build();
        ok(c.complete_multipart_upload().bucket("xcopy").key(&dst_small).upload_id(id).multipart_upload(done).send().await, "complete");
        let mut want = big[first].to_vec();
        want.extend_from_slice(&big[..1000]);
        assert_eq!(body(&clients[2], "xcopy", &dst_small).await, want);

        // A version named of a versioned source.
        let vsrc = key_owned(&nodes[0], "xvers", "vsrc", &ids[2], false);
        let vdst = key_owned(&nodes[0], "xvers", "vdst", &ids[1], false);
        let v1 = c.put_object().bucket("xvers").key(&vsrc).body(ByteStream::from_static(b"version one")).send().await.unwrap();
        c.put_object().bucket("xvers").key(&vsrc).body(ByteStream::from_static(b"version two")).send().await.unwrap();
        let v1 = v1.version_id().unwrap().to_string();
        let r = c
            .copy_object()
            .bucket("xvers")
            .key(&vdst)
            .copy_source(format!("xvers/{vsrc}?versionId={v1}"))
            .send()
            .await
            .unwrap_or_else(|e| panic!("copy a version across nodes: {e:?}"));
        assert_eq!(r.copy_source_version_id(), Some(v1.as_str()));
        assert_eq!(body(c, "xvers", &vdst).await, b"version one");
        let r = c.copy_object().bucket("xvers").key(&vdst).copy_source(format!("xvers/{vsrc}")).send().await.unwrap();
        assert!(r.copy_source_version_id().is_some_and(|v| v != v1));
        assert_eq!(body(c, "xvers", &vdst).await, b"version two");

        // Another account may not read the source: AccessDenied, while a
        // copy of its own object across nodes works.
        let adst = key_owned(&nodes[0], "xaltb", "adst", &ids[1], true);
        let r = alt.copy_object().bucket("xaltb").key(&adst).copy_source(format!("xcopy/{src_small}")).send().await;
        assert_eq!(code(r), "AccessDenied");
        let asrc = key_owned(&nodes[0], "xaltb", "asrc", &owner_of(&nodes[0], "xaltb", &adst), true);
        alt.put_object().bucket("xaltb").key(&asrc).body(ByteStream::from_static(b"mine")).send().await.expect("alt put");
        alt.copy_object().bucket("xaltb").key(&adst).copy_source(format!("xaltb/{asrc}")).send().await.expect("alt copies its own");
        assert_eq!(body(&alt, "xaltb", &adst).await, b"mine");
    });

}

#[test]
fn a_form_upload_reaches_the_node_that_owns_its_key() {
    let nodes = three_nodes();
    let ids: Vec<String> = nodes.iter().map(node_id).collect();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let clients: Vec<Client> = nodes.iter().map(|n| n.client()).collect();
    rt.block_on(async { ok(clients[0].create_bucket().bucket("xcopy").send().await, "create xcopy") });
    wait_for("the bucket on every node", Duration::from_secs(10), || {
        rt.block_on(async {
            for cl in &clients {
                if cl.head_bucket().bucket("xcopy").send().await.is_err() {
                    return false;
                }
            }
            true
        })
    });
    // A form upload sent to node 0 for a key node 1 owns.
    let key = key_owned(&nodes[0], "xcopy", "form/up", &ids[1], false);
    let policy = format!(
        r#"{{"expiration":"{}","conditions":[{{"bucket":"xcopy"}},["starts-with","$key","form/"],["starts-with","$Content-Type","text/"],["starts-with","$x-amz-meta-colour",""],{{"x-amz-algorithm":"AWS4-HMAC-SHA256"}},["starts-with","$x-amz-credential",""],["starts-with","$x-amz-date",""]]}}"#,
        expiration(Duration::from_secs(600))
    );
    let file = random_bytes(300_000, 3);
    let mut fields: Vec<(String, String)> = vec![
        ("key".into(), key.clone()),
        ("Content-Type".into(), "text/x-form".into()),
        ("x-amz-meta-colour".into(), "amber".into()),
    ];
    fields.extend(v4_fields(&nodes[0], &policy));
    let post = |fields: &[(String, String)], file: &[u8], key_after: Option<&str>| {
        let mut out = Vec::new();
        for (n, v) in fields {
            out.extend_from_slice(format!("--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{n}\"\r\n\r\n{v}\r\n").as_bytes());
        }
        out.extend_from_slice(
            format!("--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.txt\"\r\nContent-Type: application/octet-stream\r\n\r\n").as_bytes(),
        );
        out.extend_from_slice(file);
        if let Some(k) = key_after {
            out.extend_from_slice(format!("\r\n--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"key\"\r\n\r\n{k}").as_bytes());
        }
        out.extend_from_slice(format!("\r\n--{BOUNDARY}--\r\n").as_bytes());
        let req = nodes[0]
            .raw_request("POST", "/xcopy")
            .header("Content-Type", &format!("multipart/form-data; boundary={BOUNDARY}"))
            .body(out);
        nodes[0].send(&req)
    };
    let r = post(&fields, &file, None);
    assert_eq!(r.status, 204, "form upload through a node that does not own the key: {}", String::from_utf8_lossy(&r.body));
    rt.block_on(async {
        assert_eq!(body(&clients[2], "xcopy", &key).await, file);
        let h = clients[1].head_object().bucket("xcopy").key(&key).send().await.expect("head form upload");
        assert_eq!(h.content_type(), Some("text/x-form"));
        assert_eq!(h.metadata().and_then(|m| m.get("colour")).map(String::as_str), Some("amber"));
    });
    // The owner checks the policy: a field it does not allow is refused there.
    let mut bad = fields.clone();
    bad[1].1 = "image/png".into();
    let r = post(&bad, b"x", None);
    assert_eq!(r.status, 403, "{}", String::from_utf8_lossy(&r.body));
    // A key only after the file: the form has no key (as on one node).
    let r = post(&fields[1..], b"x", Some(&key));
    assert_eq!(r.status, 400, "{}", String::from_utf8_lossy(&r.body));
    assert!(String::from_utf8_lossy(&r.body).contains("InvalidArgument"), "{}", String::from_utf8_lossy(&r.body));
}

/// The web console's object operations reach the key's owner: a request
/// under the admin listener's `/console/s3/` prefix for a key another node
/// owns is proxied to that node (signed for the console's `Host`, checked
/// there) and its answer relayed with the console's headers; a bad
/// signature is refused by the owner all the same.
#[test]
fn console_object_operations_reach_the_node_that_owns_the_key() {
    use std::time::SystemTime;
    let nodes = three_nodes();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async { ok(nodes[0].client().create_bucket().bucket("console-cl").send().await, "create bucket") });
    let other = node_id(&nodes[1]);
    let key = key_owned(&nodes[0], "console-cl", "via-console", &other, false);
    let admin = nodes[0].admin_addr().expect("an admin listener");
    let host = admin.to_string();
    let send = |method: &str, path: &str, body: Vec<u8>, secret: &str| {
        let mut req = RawRequest::new(method, path).header("Host", &host).body(body).sign(AK, secret, SystemTime::now());
        req.target = format!("/console/s3{path}");
        let mut c = RawConn::connect(admin);
        c.send(&req.to_bytes()).expect("send");
        c.read_response_for(method)
    };
    let data = random_bytes(300 * 1024 + 3, 9);
    let path = format!("/console-cl/{key}");
    // (A cluster just formed answers 503, "joining its storage", until
    // every node's lanes follow the layout: the test waits that out.)
    let started = std::time::Instant::now();
    let r = loop {
        let r = send("PUT", &path, data.clone(), SK);
        if r.status != 503 || started.elapsed() > Duration::from_secs(20) {
            break r;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(r.status, 200, "a console PUT of a key node 1 owns, through node 0: {}", r.body_text());
    assert!(r.header("content-security-policy").is_some_and(|v| v.starts_with("sandbox")), "the console's headers on a relayed answer");
    assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
    rt.block_on(async { assert_eq!(body(&nodes[2].client(), "console-cl", &key).await, data, "stored on its owner") });
    let r = send("GET", &path, vec![], SK);
    assert_eq!((r.status, r.body == data), (200, true), "a console GET through node 0");
    let r = send("GET", &path, vec![], "not-the-secret-key-0123456789abcdefghij");
    assert_eq!(r.status, 403, "a bad signature, checked by the owner: {}", r.body_text());
    let r = send("DELETE", &path, vec![], SK);
    assert_eq!(r.status, 204, "{}", r.body_text());
    let r = send("GET", &path, vec![], SK);
    assert_eq!(r.status, 404, "deleted through the console: {}", r.body_text());
}
