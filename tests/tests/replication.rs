//! Bucket replication between two real nodes on loopback: the configuration
//! API with S3's validation; puts, overwrites, delete markers, version
//! deletes and multipart objects arriving with their version ids, ETags and
//! metadata; `x-amz-replication-status` on both sides; a backlog built while
//! the destination is down surviving a kill -9 of the source and draining
//! once both are up; two nodes replicating to each other without a loop;
//! SSE-S3 and SSE-KMS objects replicated decrypted and encrypted again at
//! the destination, SSE-C ones FAILED; and a replica header refused
//! without s3:ReplicateObject.

use std::net::{SocketAddr, TcpListener};
use std::time::{Duration, Instant};

use aws_sdk_s3::types::{
    BucketVersioningStatus, ServerSideEncryption, CompletedMultipartUpload, CompletedPart, DeleteMarkerReplication,
    DeleteMarkerReplicationStatus, Destination, ExistingObjectReplication, ExistingObjectReplicationStatus,
    ReplicationConfiguration, ReplicationRule, ReplicationRuleFilter, ReplicationRuleStatus, VersioningConfiguration,
};
use aws_sdk_s3::Client;
use tessera_tests::*;

const DEADLINE: Duration = Duration::from_secs(60);
const AK: &str = "AKIAREPLICATIONTEST1";
const SK: &str = "replication-test-secret-0123456789abcdef";

fn free_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap()
}

/// A node on `addr` with fixed root credentials, replicating to `remote`
/// (as target `site`) when given.
fn node(addr: SocketAddr, remote: Option<SocketAddr>) -> Server {
    node_with(addr, remote, &[])
}

/// `node` with more flags.
fn node_with(addr: SocketAddr, remote: Option<SocketAddr>, extra: &[&str]) -> Server {
    let mut args = vec![format!("--address={addr}"), "--threads=2".to_string()];
    args.extend(extra.iter().map(|a| a.to_string()));
    if let Some(r) = remote {
        args.push(format!("--replication-target=site=http://{r},{AK},{SK}"));
    }
    let env = vec![("TESSERA_ACCESS_KEY".to_string(), AK.to_string()), ("TESSERA_SECRET_KEY".to_string(), SK.to_string())];
    let mut s = Server::start_with(ServerOpts { args, env, ..Default::default() });
    s.set_credentials(AK, SK);
    s
}

async fn versioned_bucket(s3: &Client, name: &str) {
    ok(s3.create_bucket().bucket(name).send().await, "create bucket");
    let v = VersioningConfiguration::builder().status(BucketVersioningStatus::Enabled).build();
    ok(s3.put_bucket_versioning().bucket(name).versioning_configuration(v).send().await, "versioning");
}

fn config(dest: &str, prefix: &str) -> ReplicationConfiguration {
    config_existing(dest, prefix, false)
}

/// `config`, with ExistingObjectReplication Enabled when `existing`.
fn config_existing(dest: &str, prefix: &str, existing: bool) -> ReplicationConfiguration {
    let mut rule = ReplicationRule::builder()
        .id("all")
        .priority(1)
        .status(ReplicationRuleStatus::Enabled)
        .filter(ReplicationRuleFilter::builder().prefix(prefix).build())
        .delete_marker_replication(DeleteMarkerReplication::builder().status(DeleteMarkerReplicationStatus::Enabled).build())
        .destination(Destination::builder().bucket(dest).build().unwrap());
    if existing {
        let on = ExistingObjectReplication::builder().status(ExistingObjectReplicationStatus::Enabled).build().unwrap();
        rule = rule.existing_object_replication(on);
    }
    let rule = rule.build().unwrap();
    ReplicationConfiguration::builder().role("arn:aws:iam::1:role/replication").rules(rule).build().unwrap()
}

async fn replicate(s3: &Client, bucket: &str, dest: &str) {
    ok(s3.put_bucket_replication().bucket(bucket).replication_configuration(config(dest, "")).send().await, "put replication");
}

/// Waits until metric `name` (summed over labels) is `want`.
fn wait_metric(srv: &Server, name: &str, want: f64) {
    let start = Instant::now();
    loop {
        let got = metric_total(&srv.scrape_metrics(), name);
        if got == want {
            return;
        }
        assert!(start.elapsed() < DEADLINE, "{name} is {got}, not {want}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Waits until `n` entries were settled (sent, or failed for good) and
/// nothing is pending: the pending gauge alone may still be 0 from before
/// the worker saw the last writes.
fn wait_drained(srv: &Server, n: f64) {
    let start = Instant::now();
    loop {
        let m = srv.scrape_metrics();
        let settled = metric_total(&m, "tessera_replication_sent_total") + metric_total(&m, "tessera_replication_failed_total");
        if settled >= n && metric_total(&m, "tessera_replication_pending_entries") == 0.0 {
            return;
        }
        assert!(start.elapsed() < DEADLINE, "{settled} of {n} entries settled: {}", admin_json(srv, "/admin/v1/replication"));
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Every version of a bucket: (key, version id, ETag or "marker", latest).
async fn versions(s3: &Client, bucket: &str) -> Vec<(String, String, String, bool)> {
    let out = ok(s3.list_object_versions().bucket(bucket).send().await, "list versions");
    let mut v: Vec<_> = out
        .versions()
        .iter()
        .map(|v| {
            let (k, id, e) = (v.key().unwrap_or_default(), v.version_id().unwrap_or_default(), v.e_tag().unwrap_or_default());
            (k.to_string(), id.to_string(), e.to_string(), v.is_latest().unwrap_or(false))
        })
        .chain(out.delete_markers().iter().map(|m| {
            let (k, id) = (m.key().unwrap_or_default(), m.version_id().unwrap_or_default());
            (k.to_string(), id.to_string(), "marker".to_string(), m.is_latest().unwrap_or(false))
        }))
        .collect();
    v.sort();
    v
}

async fn status_of(s3: &Client, bucket: &str, key: &str, version: &str) -> Option<String> {
    let h = ok(s3.head_object().bucket(bucket).key(key).version_id(version).send().await, "head");
    h.replication_status().map(|s| s.as_str().to_string())
}

/// `GET path` on the admin listener, signed by the root: its JSON.
fn admin_json(srv: &Server, path: &str) -> serde_json::Value {
    admin_call(srv, "GET", path)
}

/// `method path` on the admin listener, signed by the root: its JSON.
fn admin_call(srv: &Server, method: &str, path: &str) -> serde_json::Value {
    let addr = srv.admin_addr().expect("admin address");
    let req = RawRequest::new(method, path).header("Host", &addr.to_string()).sign(AK, SK, std::time::SystemTime::now());
    let mut c = RawConn::connect(addr);
    c.send(&req.to_bytes()).expect("send");
    let r = c.read_response_for(method);
    assert_eq!(r.status, 200, "{}", r.body_text());
    serde_json::from_slice(&r.body).expect("JSON")
}

async fn put(s3: &Client, bucket: &str, key: &str, body: &[u8]) -> String {
    let out = ok(s3.put_object().bucket(bucket).key(key).body(bytestream(body)).send().await, "put");
    out.version_id().unwrap_or_default().to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn configuration_api_validates_and_persists() {
    let mut srv = node(free_addr(), Some(free_addr()));
    let s3 = srv.client();
    ok(s3.create_bucket().bucket("src").send().await, "create");
    let r = s3.put_bucket_replication().bucket("src").replication_configuration(config("arn:aws:s3:::dst", "")).send().await;
    assert_s3_error(r, 400, "InvalidRequest");
    let v = VersioningConfiguration::builder().status(BucketVersioningStatus::Enabled).build();
    ok(s3.put_bucket_versioning().bucket("src").versioning_configuration(v).send().await, "versioning");
    assert_s3_error(s3.get_bucket_replication().bucket("src").send().await, 404, "ReplicationConfigurationNotFoundError");
    let bad = s3.put_bucket_replication().bucket("src").replication_configuration(config("dst", "")).send().await;
    assert_s3_error(bad, 400, "InvalidArgument");
    let unknown = config("arn:tessera:s3::nowhere:dst", "");
    assert_s3_error(s3.put_bucket_replication().bucket("src").replication_configuration(unknown).send().await, 400, "InvalidArgument");
    // A Filter without Priority: S3's V2 schema requires one.
    let body = "<ReplicationConfiguration><Role>r</Role><Rule><Status>Enabled</Status><Filter/>\
        <DeleteMarkerReplication><Status>Disabled</Status></DeleteMarkerReplication>\
        <Destination><Bucket>arn:aws:s3:::dst</Bucket></Destination></Rule></ReplicationConfiguration>";
    let raw = srv.sign(srv.raw_request("PUT", "/src?replication").body(body.as_bytes().to_vec()));
    srv.send(&raw).assert_error(400, "InvalidArgument");

    ok(s3.put_bucket_replication().bucket("src").replication_configuration(config("arn:tessera:s3::site:dst", "logs/")).send().await, "put");
    srv.restart();
    let s3 = srv.client();
    let got = ok(s3.get_bucket_replication().bucket("src").send().await, "get after restart");
    let c = got.replication_configuration().expect("configuration");
    assert_eq!(c.role(), "arn:aws:iam::1:role/replication");
    let rule = &c.rules()[0];
    assert_eq!((rule.id(), rule.priority(), rule.destination().map(|d| d.bucket())), (Some("all"), Some(1), Some("arn:tessera:s3::site:dst")));
    assert_eq!(rule.filter().and_then(|f| f.prefix()), Some("logs/"));
    ok(s3.delete_bucket_replication().bucket("src").send().await, "delete");
    assert_s3_error(s3.get_bucket_replication().bucket("src").send().await, 404, "ReplicationConfigurationNotFoundError");
}

#[tokio::test(flavor = "multi_thread")]
async fn puts_overwrites_deletes_and_multipart_replicate_with_version_ids() {
    let b_addr = free_addr();
    let dst = node(b_addr, None);
    let src = node(free_addr(), Some(b_addr));
    let (a, b) = (src.client(), dst.client());
    versioned_bucket(&b, "dst").await;
    versioned_bucket(&a, "src").await;
    replicate(&a, "src", "arn:aws:s3:::dst").await;

    let v1 = put(&a, "src", "k1", b"first").await;
    let out = ok(
        a.put_object()
            .bucket("src")
            .key("k1")
            .body(bytestream(b"second"))
            .content_type("text/plain")
            .metadata("colour", "blue")
            .tagging("t=1")
            .send()
            .await,
        "overwrite",
    );
    let v2 = out.version_id().unwrap().to_string();
    let gone = put(&a, "src", "k3", b"removed later").await;
    ok(a.delete_object().bucket("src").key("k3").version_id(&gone).send().await, "version delete");
    // Multipart: two parts (5 MiB and 1 MiB).
    let parts = [random_bytes(5 << 20, 1), random_bytes(1 << 20, 2)];
    let up = ok(a.create_multipart_upload().bucket("src").key("big").send().await, "create upload");
    let id = up.upload_id().unwrap();
    let mut done = Vec::new();
    for (i, p) in parts.iter().enumerate() {
        let n = i as i32 + 1;
        let r = ok(a.upload_part().bucket("src").key("big").upload_id(id).part_number(n).body(bytestream(p)).send().await, "part");
        done.push(CompletedPart::builder().part_number(n).e_tag(r.e_tag().unwrap()).build());
    }
    let mpu = CompletedMultipartUpload::builder().set_parts(Some(done)).build();
    ok(a.complete_multipart_upload().bucket("src").key("big").upload_id(id).multipart_upload(mpu).send().await, "complete");
    let del = ok(a.delete_object().bucket("src").key("k1").send().await, "delete marker");
    let marker = del.version_id().unwrap().to_string();

    wait_drained(&src, 6.0);
    let (va, vb) = (versions(&a, "src").await, versions(&b, "dst").await);
    assert_eq!(va, vb, "the destination holds the same versions, ids, ETags and latest flags");
    assert!(va.iter().any(|v| v.1 == marker && v.2 == "marker"), "{va:?}");
    assert!(!vb.iter().any(|v| v.1 == gone), "the version deleted on the source is gone on the destination");
    assert_eq!(vb.iter().filter(|v| v.0 == "k1").count(), 3, "{vb:?}");
    let big = ok(b.get_object().bucket("dst").key("big").send().await, "get big");
    assert_eq!(big.e_tag(), Some(multipart_etag(&parts).as_str()));
    assert_eq!(big.replication_status().map(|s| s.as_str()), Some("REPLICA"));
    assert_eq!(read_body(big).await, [parts[0].clone(), parts[1].clone()].concat());
    let k1 = ok(b.get_object().bucket("dst").key("k1").version_id(&v2).send().await, "get k1");
    assert_eq!(k1.content_type(), Some("text/plain"));
    assert_eq!(k1.metadata().and_then(|m| m.get("colour")).map(String::as_str), Some("blue"));
    assert_eq!(k1.tag_count(), Some(1));
    let src_head = ok(a.head_object().bucket("src").key("k1").version_id(&v2).send().await, "head src");
    assert_eq!(k1.last_modified(), src_head.last_modified(), "mtime kept");
    assert_eq!(read_body(k1).await, b"second");
    assert_eq!(status_of(&a, "src", "k1", &v1).await.as_deref(), Some("COMPLETED"));
    assert_eq!(status_of(&a, "src", "big", &va.iter().find(|v| v.0 == "big").unwrap().1).await.as_deref(), Some("COMPLETED"));
    assert_eq!(status_of(&b, "dst", "k1", &v1).await.as_deref(), Some("REPLICA"));
    let m = src.scrape_metrics();
    assert_eq!(metric_total(&m, "tessera_replication_failed_total"), 0.0);
    assert_eq!(metric_total(&m, "tessera_replication_sent_total"), 6.0, "put, put, put, version delete, multipart, marker");
}

/// The source's versions of `src` are the destination's of `dst`, and every
/// `step`-th of `ids` is COMPLETED there and a REPLICA here.
async fn all_replicated(src: &Server, dst: &Server, ids: &[(String, String)], step: usize) {
    let (a, b) = (src.client(), dst.client());
    assert_eq!(versions(&a, "src").await, versions(&b, "dst").await);
    for (k, v) in ids.iter().step_by(step) {
        assert_eq!(status_of(&a, "src", k, v).await.as_deref(), Some("COMPLETED"), "{k}");
        assert_eq!(status_of(&b, "dst", k, v).await.as_deref(), Some("REPLICA"), "{k}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn backlog_survives_destination_outage_and_source_kill9() {
    let b_addr = free_addr();
    let mut dst = node(b_addr, None);
    let mut src = node(free_addr(), Some(b_addr));
    let a = src.client();
    versioned_bucket(&dst.client(), "dst").await;
    versioned_bucket(&a, "src").await;
    replicate(&a, "src", "arn:aws:s3:::dst").await;
    dst.stop();

    const N: usize = 60;
    let mut ids = Vec::new();
    for i in 0..N {
        let body = if i % 10 == 0 { random_bytes(1 << 20, i as u64) } else { format!("object {i}").into_bytes() };
        ids.push((format!("obj-{i:03}"), put(&a, "src", &format!("obj-{i:03}"), &body).await));
    }
    wait_metric(&src, "tessera_replication_pending_entries", N as f64);
    assert_eq!(status_of(&a, "src", &ids[0].0, &ids[0].1).await.as_deref(), Some("PENDING"));
    // The backlog is visible: the admin call and the retry counter.
    let start = Instant::now();
    while metric_total(&src.scrape_metrics(), "tessera_replication_retries_total") < 2.0 {
        assert!(start.elapsed() < DEADLINE, "no retries counted");
        std::thread::sleep(Duration::from_millis(100));
    }
    let admin = admin_json(&src, "/admin/v1/replication");
    assert_eq!(admin["pending_entries"], N as u64, "{admin}");
    assert!(admin["pending_bytes"].as_u64().unwrap() >= 6 << 20, "{admin}");
    assert!(!admin["last_errors"].as_array().unwrap().is_empty(), "{admin}");

    // kill -9 of the source with the whole backlog queued, the
    // destination back, the source restarted: everything arrives.
    src.kill9();
    dst.start_again();
    src.start_again();
    wait_drained(&src, N as f64);
    all_replicated(&src, &dst, &ids, 7).await;
}

/// kill -9 of the destination while replication is sending: the writes it
/// took but had not acknowledged, and those it never got, are sent again
/// once it is back (a re-send is idempotent: the replica keeps the
/// source's version id), and both sides end with the same versions.
#[tokio::test(flavor = "multi_thread")]
async fn a_destination_killed_mid_backlog_loses_nothing() {
    let b_addr = free_addr();
    let mut dst = node(b_addr, None);
    let src = node(free_addr(), Some(b_addr));
    let a = src.client();
    versioned_bucket(&dst.client(), "dst").await;
    versioned_bucket(&a, "src").await;
    replicate(&a, "src", "arn:aws:s3:::dst").await;
    const N: usize = 120;
    let mut ids = Vec::new();
    let mut killed_with_sent = None;
    for i in 0..N {
        let body = if i % 8 == 0 { random_bytes(1 << 20, i as u64) } else { random_bytes(4096, i as u64) };
        ids.push((format!("obj-{i:03}"), put(&a, "src", &format!("obj-{i:03}"), &body).await));
        if i == N / 2 {
            // Mid-stream: the source is sending what the writes queued.
            killed_with_sent = Some(metric_total(&src.scrape_metrics(), "tessera_replication_sent_total"));
            dst.kill9();
        }
    }
    let sent_before = killed_with_sent.unwrap();
    dst.start_again();
    wait_drained(&src, N as f64);
    all_replicated(&src, &dst, &ids, 5).await;
    eprintln!("destination killed after {sent_before} of {N} versions were sent; all {N} arrived after its restart");
}

#[tokio::test(flavor = "multi_thread")]
async fn two_sites_replicating_to_each_other_do_not_loop() {
    let (a_addr, b_addr) = (free_addr(), free_addr());
    let sa = node(a_addr, Some(b_addr));
    let sb = node(b_addr, Some(a_addr));
    let (a, b) = (sa.client(), sb.client());
    versioned_bucket(&a, "shared").await;
    versioned_bucket(&b, "shared").await;
    replicate(&a, "shared", "arn:aws:s3:::shared").await;
    replicate(&b, "shared", "arn:aws:s3:::shared").await;
    put(&a, "shared", "from-a", b"a").await;
    put(&b, "shared", "from-b", b"b").await;
    ok(a.delete_object().bucket("shared").key("from-b").send().await, "delete on a");
    let start = Instant::now();
    loop {
        let (va, vb) = (versions(&a, "shared").await, versions(&b, "shared").await);
        if va == vb && va.len() == 3 {
            break;
        }
        assert!(start.elapsed() < DEADLINE, "sites never converged: {va:?} vs {vb:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
    // Give a loop the time to show itself: nothing more is sent.
    std::thread::sleep(Duration::from_secs(2));
    wait_metric(&sa, "tessera_replication_pending_entries", 0.0);
    wait_metric(&sb, "tessera_replication_pending_entries", 0.0);
    assert_eq!(metric_total(&sa.scrape_metrics(), "tessera_replication_sent_total"), 2.0, "a sent its put and its marker");
    assert_eq!(metric_total(&sb.scrape_metrics(), "tessera_replication_sent_total"), 1.0, "b sent its put");
    assert_eq!(versions(&a, "shared").await.len(), 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn encrypted_objects_replicate_encrypted_and_sse_c_stays_failed() {
    let kms = ["--kms-key", "replkey-1"];
    let b_addr = free_addr();
    let dst = node_with(b_addr, None, &kms);
    let src = node_with(free_addr(), Some(b_addr), &kms);
    let (a, b) = (src.client(), dst.client());
    versioned_bucket(&b, "dst").await;
    versioned_bucket(&a, "src").await;
    replicate(&a, "src", "arn:aws:s3:::dst").await;

    // 200 KiB + 3: several 64 KiB packages, the last one short.
    let s3_body = random_bytes(200 * 1024 + 3, 11);
    let put_s3 = a.put_object().bucket("src").key("sse-s3").server_side_encryption(ServerSideEncryption::Aes256);
    let v_s3 = ok(put_s3.body(bytestream(&s3_body)).send().await, "put sse-s3").version_id().unwrap().to_string();
    let kms_body = random_bytes(70 * 1024, 12);
    let put_kms = a.put_object().bucket("src").key("sse-kms").server_side_encryption(ServerSideEncryption::AwsKms).ssekms_key_id("replkey-1");
    let v_kms = ok(put_kms.body(bytestream(&kms_body)).send().await, "put sse-kms").version_id().unwrap().to_string();
    let raw = [7u8; 32];
    let put_c = a
        .put_object()
        .bucket("src")
        .key("sse-c")
        .sse_customer_algorithm("AES256")
        .sse_customer_key(b64(&raw))
        .sse_customer_key_md5(b64(&md5_bytes(&raw)));
    let v_c = ok(put_c.body(bytestream(b"customer keyed")).send().await, "put sse-c").version_id().unwrap().to_string();

    wait_drained(&src, 3.0);
    assert_eq!(status_of(&a, "src", "sse-s3", &v_s3).await.as_deref(), Some("COMPLETED"));
    assert_eq!(status_of(&a, "src", "sse-kms", &v_kms).await.as_deref(), Some("COMPLETED"));
    // S3 does not replicate SSE-C objects either: the key is the client's.
    let head_c = a.head_object().bucket("src").key("sse-c").version_id(&v_c).sse_customer_algorithm("AES256");
    let head_c = ok(head_c.sse_customer_key(b64(&raw)).sse_customer_key_md5(b64(&md5_bytes(&raw))).send().await, "head sse-c");
    assert_eq!(head_c.replication_status().map(|s| s.as_str()), Some("FAILED"));
    let m = src.scrape_metrics();
    assert_eq!(metric_total(&m, "tessera_replication_failed_total"), 1.0);
    assert_eq!(metric_total(&m, "tessera_replication_sent_total"), 2.0);

    let head = ok(b.head_object().bucket("dst").key("sse-s3").version_id(&v_s3).send().await, "head replica");
    assert_eq!(head.server_side_encryption(), Some(&ServerSideEncryption::Aes256), "the replica is encrypted at rest");
    assert_eq!(head.replication_status().map(|s| s.as_str()), Some("REPLICA"));
    let src_head = ok(a.head_object().bucket("src").key("sse-s3").version_id(&v_s3).send().await, "head source");
    assert_eq!(head.e_tag(), src_head.e_tag());
    let got = ok(b.get_object().bucket("dst").key("sse-s3").version_id(&v_s3).send().await, "get replica");
    assert_eq!(read_body(got).await, s3_body);

    let head = ok(b.head_object().bucket("dst").key("sse-kms").version_id(&v_kms).send().await, "head kms replica");
    assert_eq!(head.server_side_encryption(), Some(&ServerSideEncryption::AwsKms));
    assert!(head.ssekms_key_id().is_some_and(|k| k.contains("replkey-1")), "{:?}", head.ssekms_key_id());
    let got = ok(b.get_object().bucket("dst").key("sse-kms").version_id(&v_kms).send().await, "get kms replica");
    assert_eq!(read_body(got).await, kms_body);
    assert!(b.head_object().bucket("dst").key("sse-c").send().await.is_err(), "an SSE-C object was replicated");
}

#[tokio::test(flavor = "multi_thread")]
async fn replica_headers_need_replicate_permission() {
    let srv = node(free_addr(), None);
    let s3 = srv.client();
    versioned_bucket(&s3, "rep").await;
    let iam = srv.iam();
    let (_, key, secret) = iam::new_user(&iam, "writer").await;
    let policy = iam::allow(&["s3:PutObject", "s3:DeleteObject", "s3:DeleteObjectVersion"], &["arn:aws:s3:::rep/*"]);
    ok(iam.put_user_policy().user_name("writer").policy_name("w").policy_document(policy).send().await, "policy");
    let forged = "---------5Zz----------";
    let req = srv.raw_request("PUT", "/rep/k").header("x-tessera-replica-version", forged).body(b"x".to_vec());
    let r = srv.send(&req.sign(&key, &secret, std::time::SystemTime::now()));
    r.assert_error(403, "AccessDenied");
    let req = srv.raw_request("DELETE", "/rep/k").header("x-tessera-replica-version", forged);
    srv.send(&req.sign(&key, &secret, std::time::SystemTime::now())).assert_error(403, "AccessDenied");
    // The same user writes normally; the root (allowed everything) may
    // write a replica, which keeps the id it names.
    ok(srv.client_for(&key, &secret).put_object().bucket("rep").key("k").body(bytestream(b"x")).send().await, "plain put");
    let vid = "-ABCDEFGHIJKLMNOPQRSTV";
    let now_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis().to_string();
    let req = srv.raw_request("PUT", "/rep/r").header("x-tessera-replica-version", vid).header("x-tessera-replica-mtime", &now_ms);
    let r = srv.send(&srv.sign(req.body(b"y".to_vec())));
    assert_eq!(r.status, 200, "{}", r.body_text());
    assert_eq!(r.header("x-amz-version-id"), Some(vid));
    assert_eq!(status_of(&s3, "rep", "r", vid).await.as_deref(), Some("REPLICA"));

    // CompleteMultipartUpload with the header (a replica over a single
    // PUT's limit) needs s3:ReplicateObject too.
    let w = srv.client_for(&key, &secret);
    let up = ok(w.create_multipart_upload().bucket("rep").key("m").send().await, "create upload");
    let id = up.upload_id().unwrap().to_string();
    let part = ok(w.upload_part().bucket("rep").key("m").upload_id(&id).part_number(1).body(bytestream(b"z")).send().await, "part");
    let xml = format!("<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>{}</ETag></Part></CompleteMultipartUpload>", part.e_tag().unwrap());
    let complete = || srv.raw_request("POST", &format!("/rep/m?uploadId={id}")).header("x-tessera-replica-version", forged).body(xml.clone().into_bytes());
    srv.send(&complete().sign(&key, &secret, std::time::SystemTime::now())).assert_error(403, "AccessDenied");
    let r = srv.send(&srv.sign(complete()));
    assert_eq!(r.status, 200, "{}", r.body_text());
    assert_eq!(r.header("x-amz-version-id"), Some(forged), "the root's replica completion keeps the id it names");
    assert_eq!(status_of(&s3, "rep", "m", forged).await.as_deref(), Some("REPLICA"));

    // A presigned PUT URL of the root: its holder cannot add a replica
    // version id (the header is not signed), nor can a SigV2 request carry
    // one (SigV2 signs no x-tessera-* header).
    let p = s3
        .put_object()
        .bucket("rep")
        .key("r")
        .presigned(aws_sdk_s3::presigning::PresigningConfig::expires_in(std::time::Duration::from_secs(300)).unwrap())
        .await
        .expect("presign");
    let target = p.uri().strip_prefix(&srv.endpoint()).unwrap().to_string();
    let old = "-ABCDEFGHIJKLMNOPQRSTW";
    let req = srv.raw_request("PUT", &target).header("x-tessera-replica-version", old).body(b"forged".to_vec());
    let r = srv.send(&req);
    r.assert_error(403, "AccessDenied");
    assert_eq!(r.xml("HeadersNotSigned").as_deref(), Some("x-tessera-replica-version"));
    let date = tessera_proto::time::format_http_date(tessera_proto::time::now_unix_secs());
    let mut h = tessera_proto::Headers::new();
    h.push("host", &srv.host());
    h.push("date", &date);
    h.push("x-tessera-replica-version", old);
    let auth = tessera_proto::sigv2::sign_request("PUT", "/rep/r", "", &h, &srv.access_key, &srv.secret_key);
    let req = srv
        .raw_request("PUT", "/rep/r")
        .header("Date", &date)
        .header("x-tessera-replica-version", old)
        .header("Authorization", &auth)
        .body(b"forged".to_vec());
    srv.send(&req).assert_error(403, "AccessDenied");
    let got = s3.get_object().bucket("rep").key("r").send().await.expect("get");
    assert_eq!(got.version_id(), Some(vid), "a forged replica write went through");
}

/// The versions of keys under `prefix`.
async fn versions_under(s3: &Client, bucket: &str, prefix: &str) -> Vec<(String, String, String, bool)> {
    versions(s3, bucket).await.into_iter().filter(|v| v.0.starts_with(prefix)).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn existing_objects_are_backfilled_once_and_replicated_versions_are_not_sent_again() {
    let b_addr = free_addr();
    let dst = node(b_addr, None);
    let src = node(free_addr(), Some(b_addr));
    let (a, b) = (src.client(), dst.client());
    versioned_bucket(&b, "dst").await;
    versioned_bucket(&a, "src").await;
    // Written before any configuration: two versions of one key, a key
    // whose current version is a delete marker, one outside the prefix.
    let a1 = put(&a, "src", "old/a", b"a one").await;
    let a2 = put(&a, "src", "old/a", b"a two").await;
    put(&a, "src", "old/b", &random_bytes(300 * 1024, 3)).await;
    put(&a, "src", "old/d", b"deleted").await;
    ok(a.delete_object().bucket("src").key("old/d").send().await, "delete marker");
    put(&a, "src", "other/c", b"not selected").await;
    // A configuration without existing objects: only new writes go.
    let plain = config_existing("arn:aws:s3:::dst", "old/", false);
    ok(a.put_bucket_replication().bucket("src").replication_configuration(plain).send().await, "put replication");
    let new = put(&a, "src", "old/new", b"new").await;
    wait_drained(&src, 1.0);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(metric_total(&src.scrape_metrics(), "tessera_replication_sent_total"), 1.0, "only the new write is sent");
    assert_eq!(status_of(&a, "src", "old/a", &a1).await, None);

    // ExistingObjectReplication Enabled: the old versions under old/ go
    // (the marker too: DeleteMarkerReplication is Enabled), the COMPLETED
    // one is not sent again, other/c stays.
    let existing = config_existing("arn:aws:s3:::dst", "old/", true);
    ok(a.put_bucket_replication().bucket("src").replication_configuration(existing).send().await, "put replication");
    wait_drained(&src, 6.0);
    std::thread::sleep(Duration::from_secs(2));
    let m = src.scrape_metrics();
    assert_eq!(metric_total(&m, "tessera_replication_sent_total"), 6.0, "new, a1, a2, b, d and its marker: {}", admin_json(&src, "/admin/v1/replication"));
    assert_eq!(metric_total(&m, "tessera_replication_backfilled_total"), 5.0);
    assert_eq!(metric_total(&m, "tessera_replication_failed_total"), 0.0);
    assert_eq!(metric_total(&m, "tessera_replication_backfill_walking"), 0.0);
    assert_eq!(versions_under(&a, "src", "old/").await, versions(&b, "dst").await, "the destination holds every version under old/");
    for v in [&a1, &a2] {
        assert_eq!(status_of(&a, "src", "old/a", v).await.as_deref(), Some("COMPLETED"));
        assert_eq!(status_of(&b, "dst", "old/a", v).await.as_deref(), Some("REPLICA"));
    }
    assert_eq!(status_of(&a, "src", "old/new", &new).await.as_deref(), Some("COMPLETED"));
    let got = ok(b.get_object().bucket("dst").key("old/a").version_id(&a1).send().await, "get old version");
    assert_eq!(read_body(got).await, b"a one");
    assert_eq!(admin_json(&src, "/admin/v1/replication")["backfill"]["queued"], 5);

    // A restart neither walks again nor sends anything again.
    let mut src = src;
    src.restart();
    std::thread::sleep(Duration::from_secs(3));
    let m = src.scrape_metrics();
    assert_eq!(metric_total(&m, "tessera_replication_backfilled_total"), 0.0, "the backfill's position is kept");
    assert_eq!(metric_total(&m, "tessera_replication_sent_total"), 0.0);
}

/// Null versions (written before versioning was enabled) go to the
/// destination as its null versions: an older null version there is
/// replaced, a newer one kept; a null version's delete removes the
/// destination's.
#[tokio::test(flavor = "multi_thread")]
async fn null_versions_replicate_as_the_destinations_null_versions() {
    let b_addr = free_addr();
    let dst = node(b_addr, None);
    let src = node(free_addr(), Some(b_addr));
    let (a, b) = (src.client(), dst.client());
    ok(a.create_bucket().bucket("src").send().await, "create src");
    ok(b.create_bucket().bucket("dst").send().await, "create dst");
    // Unversioned: null versions. The destination's n/a is older than the
    // source's, its n/c newer.
    put(&b, "dst", "n/a", b"dst's older a").await;
    put(&a, "src", "n/a", b"null a").await;
    let big = random_bytes(300 * 1024, 9);
    put(&a, "src", "n/b", &big).await;
    put(&a, "src", "n/c", b"null c").await;
    put(&b, "dst", "n/c", b"dst's newer c").await;
    let on = VersioningConfiguration::builder().status(BucketVersioningStatus::Enabled).build();
    ok(a.put_bucket_versioning().bucket("src").versioning_configuration(on.clone()).send().await, "versioning src");
    ok(b.put_bucket_versioning().bucket("dst").versioning_configuration(on).send().await, "versioning dst");
    let a2 = put(&a, "src", "n/a", b"a two").await;
    let existing = config_existing("arn:aws:s3:::dst", "n/", true);
    ok(a.put_bucket_replication().bucket("src").replication_configuration(existing).send().await, "put replication");
    wait_drained(&src, 4.0);
    let m = src.scrape_metrics();
    assert_eq!(metric_total(&m, "tessera_replication_failed_total"), 0.0, "{}", admin_json(&src, "/admin/v1/replication"));
    assert_eq!(metric_total(&m, "tessera_replication_sent_total"), 4.0, "three null versions and a2");
    for k in ["n/a", "n/b", "n/c"] {
        assert_eq!(status_of(&a, "src", k, "null").await.as_deref(), Some("COMPLETED"), "{k}");
    }
    // n/a: the source's null version replaced the destination's older one
    // (one null version per key), noncurrent under a2 as on the source.
    let vb = versions(&b, "dst").await;
    let of = |k: &str| vb.iter().filter(|v| v.0 == k).map(|v| (v.1.clone(), v.3)).collect::<Vec<_>>();
    let mut want_a = vec![("null".to_string(), false), (a2.clone(), true)];
    want_a.sort();
    assert_eq!(of("n/a"), want_a, "{vb:?}");
    let got = ok(b.get_object().bucket("dst").key("n/a").version_id("null").send().await, "get null a");
    assert_eq!(got.replication_status().map(|s| s.as_str()), Some("REPLICA"));
    assert_eq!(read_body(got).await, b"null a");
    let got = ok(b.get_object().bucket("dst").key("n/b").send().await, "get n/b");
    assert_eq!(got.version_id(), Some("null"));
    assert_eq!(read_body(got).await, big);
    // n/c: the destination's own null version is newer and stays.
    assert_eq!(of("n/c"), vec![("null".to_string(), true)], "{vb:?}");
    let got = ok(b.get_object().bucket("dst").key("n/c").send().await, "get n/c");
    assert_eq!(read_body(got).await, b"dst's newer c");

    // Deleting the source's null version of n/b removes the destination's.
    ok(a.delete_object().bucket("src").key("n/b").version_id("null").send().await, "delete null version");
    wait_drained(&src, 5.0);
    assert!(!versions(&b, "dst").await.iter().any(|v| v.0 == "n/b"), "n/b's null version is gone on the destination");
    assert_eq!(metric_total(&src.scrape_metrics(), "tessera_replication_failed_total"), 0.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn failed_versions_are_queued_again_by_a_resync() {
    let b_addr = free_addr();
    let dst = node(b_addr, None);
    let src = node(free_addr(), Some(b_addr));
    let (a, b) = (src.client(), dst.client());
    versioned_bucket(&a, "src").await;
    replicate(&a, "src", "arn:aws:s3:::dst").await;
    // The destination bucket does not exist yet: 404, FAILED.
    let mut ids = Vec::new();
    for i in 0..3 {
        ids.push(put(&a, "src", &format!("f{i}"), format!("body {i}").as_bytes()).await);
    }
    wait_drained(&src, 3.0);
    assert_eq!(metric_total(&src.scrape_metrics(), "tessera_replication_failed_total"), 3.0);
    assert_eq!(status_of(&a, "src", "f0", &ids[0]).await.as_deref(), Some("FAILED"));

    // Fixed by the operator, then a resync through the CLI.
    versioned_bucket(&b, "dst").await;
    let addr = src.admin_addr().expect("admin address");
    let out = std::process::Command::new(binary_path())
        .args(["admin", "replication-resync", "--bucket", "src", "--endpoint", &format!("http://{addr}")])
        .env("AWS_ACCESS_KEY_ID", AK)
        .env("AWS_SECRET_ACCESS_KEY", SK)
        .output()
        .expect("run tessera admin");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let answer: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(answer["requeued"], 3, "{answer}");
    wait_metric(&src, "tessera_replication_sent_total", 3.0);
    wait_metric(&src, "tessera_replication_pending_entries", 0.0);
    for (i, v) in ids.iter().enumerate() {
        assert_eq!(status_of(&a, "src", &format!("f{i}"), v).await.as_deref(), Some("COMPLETED"));
    }
    assert_eq!(versions(&a, "src").await, versions(&b, "dst").await);
    // The status call still shows what failed; a second resync finds nothing.
    let status = admin_json(&src, "/admin/v1/replication");
    assert_eq!((status["failed"].as_u64(), status["requeued"].as_u64()), (Some(3), Some(3)), "{status}");
    assert!(!status["last_errors"].as_array().unwrap().is_empty(), "{status}");
    let again = admin_call(&src, "POST", "/admin/v1/replication/resync?bucket=src");
    assert_eq!(again["requeued"], 0, "{again}");
    let addr = src.admin_addr().unwrap();
    let req = RawRequest::new("POST", "/admin/v1/replication/resync?bucket=nope").header("Host", &addr.to_string()).sign(AK, SK, std::time::SystemTime::now());
    let mut c = RawConn::connect(addr);
    c.send(&req.to_bytes()).expect("send");
    assert_eq!(c.read_response_for("POST").status, 404);
}

#[tokio::test(flavor = "multi_thread")]
async fn large_bodies_are_streamed_to_the_destination() {
    // Versions over 64 KiB are streamed here (8 MiB by default), so the
    // streamed path runs without a huge object.
    let stream = ["--test-replication-whole-body-max-bytes=65536", "--kms-key", "replkey-1"];
    let b_addr = free_addr();
    let dst = node_with(b_addr, None, &["--kms-key", "replkey-1"]);
    let src = node_with(free_addr(), Some(b_addr), &stream);
    let (a, b) = (src.client(), dst.client());
    versioned_bucket(&b, "dst").await;
    versioned_bucket(&a, "src").await;
    replicate(&a, "src", "arn:aws:s3:::dst").await;

    // Several 1 MiB chunks and a short last one; an encrypted one read
    // decrypted chunk by chunk; one under the threshold read whole.
    let plain = random_bytes((3 << 20) + 5, 21);
    let sealed = random_bytes((2 << 20) + 7, 22);
    let small = random_bytes(60 * 1024, 23);
    let v_plain = put(&a, "src", "plain", &plain).await;
    let put_sealed = a.put_object().bucket("src").key("sealed").server_side_encryption(ServerSideEncryption::Aes256);
    let v_sealed = ok(put_sealed.body(bytestream(&sealed)).send().await, "put sealed").version_id().unwrap().to_string();
    let v_small = put(&a, "src", "small", &small).await;

    wait_drained(&src, 3.0);
    let m = src.scrape_metrics();
    assert_eq!(metric_total(&m, "tessera_replication_failed_total"), 0.0, "{}", admin_json(&src, "/admin/v1/replication"));
    assert_eq!(metric_total(&m, "tessera_replication_sent_bytes_total"), (plain.len() + sealed.len() + small.len()) as f64);
    for (key, v, body) in [("plain", &v_plain, &plain), ("sealed", &v_sealed, &sealed), ("small", &v_small, &small)] {
        assert_eq!(status_of(&a, "src", key, v).await.as_deref(), Some("COMPLETED"), "{key}");
        let got = ok(b.get_object().bucket("dst").key(key).version_id(v).send().await, "get replica");
        let src_head = ok(a.head_object().bucket("src").key(key).version_id(v).send().await, "head source");
        assert_eq!(got.e_tag(), src_head.e_tag(), "{key}");
        assert_eq!(&read_body(got).await, body, "{key}");
    }
    let head = ok(b.head_object().bucket("dst").key("sealed").send().await, "head sealed replica");
    assert_eq!(head.server_side_encryption(), Some(&ServerSideEncryption::Aes256));
}

#[tokio::test(flavor = "multi_thread")]
async fn refused_versions_are_retried_with_backoff_once_the_destination_is_fixed() {
    let b_addr = free_addr();
    let dst = node(b_addr, None);
    // First retry 500 ms after the refusal (60 s by default), then 2 s, 8 s...
    let src = node_with(free_addr(), Some(b_addr), &["--test-replication-failed-retry-ms=500"]);
    let (a, b) = (src.client(), dst.client());
    versioned_bucket(&a, "src").await;
    replicate(&a, "src", "arn:aws:s3:::dst").await;
    // No destination bucket: 404, FAILED, a retry scheduled.
    let ids = [put(&a, "src", "r0", b"zero").await, put(&a, "src", "r1", b"one").await];
    wait_drained(&src, 2.0);
    // The failure is counted before its commit lands, and the retry may
    // already have queued it again (PENDING): wait for FAILED.
    let start = Instant::now();
    while status_of(&a, "src", "r0", &ids[0]).await.as_deref() != Some("FAILED") {
        assert!(start.elapsed() < DEADLINE, "r0 never FAILED");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let start = Instant::now();
    while admin_json(&src, "/admin/v1/replication")["failed_retry_scheduled"] == 0 {
        assert!(start.elapsed() < DEADLINE, "no retry scheduled: {}", admin_json(&src, "/admin/v1/replication"));
        std::thread::sleep(Duration::from_millis(50));
    }
    // The destination's operator fixes it; nobody acts on the source.
    versioned_bucket(&b, "dst").await;
    wait_metric(&src, "tessera_replication_sent_total", 2.0);
    wait_metric(&src, "tessera_replication_pending_entries", 0.0);
    for (i, v) in ids.iter().enumerate() {
        assert_eq!(status_of(&a, "src", &format!("r{i}"), v).await.as_deref(), Some("COMPLETED"));
    }
    assert_eq!(versions(&a, "src").await, versions(&b, "dst").await);
    let status = admin_json(&src, "/admin/v1/replication");
    assert!(status["failed"].as_u64() >= Some(2), "the failures stay counted: {status}");
    assert!(status["requeued"].as_u64() >= Some(2), "{status}");
    wait_metric(&src, "tessera_replication_failed_retry_scheduled", 0.0);
}

/// The multipart threshold the tests lower (5 GiB by default): 12 MiB.
const MP_THRESHOLD: &str = "--test-replication-multipart-threshold-bytes=12582912";

/// Checks version `v` of `key` reads back on the destination as on the
/// source: same bytes, ETag and mtime, COMPLETED there and REPLICA here.
async fn same_on_both(a: &Client, b: &Client, key: &str, v: &str, body: &[u8]) {
    assert_eq!(status_of(a, "src", key, v).await.as_deref(), Some("COMPLETED"), "{key}");
    let src_head = ok(a.head_object().bucket("src").key(key).version_id(v).send().await, "head source");
    let got = ok(b.get_object().bucket("dst").key(key).version_id(v).send().await, "get replica");
    assert_eq!(got.replication_status().map(|s| s.as_str()), Some("REPLICA"), "{key}");
    assert_eq!(got.e_tag(), src_head.e_tag(), "{key}: the ETag is the source's");
    assert_eq!(got.last_modified(), src_head.last_modified(), "{key}: mtime kept");
    assert_eq!(got.content_length(), Some(body.len() as i64), "{key}");
    assert!(read_body(got).await == body, "{key}: the bytes differ");
}

/// Uploads on the destination not completed (orphans of cut transfers).
async fn open_uploads(b: &Client) -> usize {
    ok(b.list_multipart_uploads().bucket("dst").send().await, "list uploads").uploads().len()
}

/// Waits until the destination shows an open upload (a multipart
/// replication under way).
async fn wait_upload_open(b: &Client, before: usize) {
    let start = Instant::now();
    while open_uploads(b).await <= before {
        assert!(start.elapsed() < DEADLINE, "no multipart replication started");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn versions_over_the_threshold_replicate_as_multipart_uploads() {
    // Versions over 12 MiB are sent as multipart uploads here (5 GiB,
    // a single PUT's limit, by default).
    let b_addr = free_addr();
    let dst = node_with(b_addr, None, &["--kms-key", "replkey-1"]);
    let src = node_with(free_addr(), Some(b_addr), &[MP_THRESHOLD, "--kms-key", "replkey-1"]);
    let (a, b) = (src.client(), dst.client());
    versioned_bucket(&b, "dst").await;
    versioned_bucket(&a, "src").await;
    replicate(&a, "src", "arn:aws:s3:::dst").await;

    // 30 MiB written as 3 parts of 10 MiB, with metadata and tags: sent in
    // the same 3 parts, so the destination's own ETag and part numbers are
    // the source's.
    let parts: Vec<Vec<u8>> = (0..3).map(|i| random_bytes(10 << 20, 40 + i)).collect();
    let whole = parts.concat();
    let v_mp = put_multipart(&a, "src", "backup.tar", &parts, |c| {
        c.content_type("application/x-tar").metadata("host", "db1").tagging("kind=backup")
    })
    .await
    .version_id()
    .unwrap()
    .to_string();
    // A single PUT over the threshold (parts of 12 MiB, the last shorter),
    // an encrypted one, and one at the threshold (one streamed PUT).
    let single = random_bytes((30 << 20) + 5, 44);
    let v_single = put(&a, "src", "single", &single).await;
    let sealed = random_bytes((13 << 20) + 3, 45);
    let put_sealed = a.put_object().bucket("src").key("sealed").server_side_encryption(ServerSideEncryption::Aes256);
    let v_sealed = ok(put_sealed.body(bytestream(&sealed)).send().await, "put sealed").version_id().unwrap().to_string();
    let at = random_bytes(12 << 20, 46);
    let v_at = put(&a, "src", "at-threshold", &at).await;

    wait_drained(&src, 4.0);
    let m = src.scrape_metrics();
    assert_eq!(metric_total(&m, "tessera_replication_failed_total"), 0.0, "{}", admin_json(&src, "/admin/v1/replication"));
    assert_eq!(metric_total(&m, "tessera_replication_multipart_attempts_total"), 3.0, "three versions over the threshold");
    assert_eq!(metric_total(&m, "tessera_replication_sent_bytes_total"), (whole.len() + single.len() + sealed.len() + at.len()) as f64);
    same_on_both(&a, &b, "backup.tar", &v_mp, &whole).await;
    same_on_both(&a, &b, "single", &v_single, &single).await;
    same_on_both(&a, &b, "sealed", &v_sealed, &sealed).await;
    same_on_both(&a, &b, "at-threshold", &v_at, &at).await;
    assert_eq!(versions(&a, "src").await, versions(&b, "dst").await);

    let got = ok(b.get_object().bucket("dst").key("backup.tar").version_id(&v_mp).send().await, "get replica");
    assert_eq!(got.e_tag(), Some(multipart_etag(&parts).as_str()));
    assert_eq!(got.content_type(), Some("application/x-tar"));
    assert_eq!(got.metadata().and_then(|m| m.get("host")).map(String::as_str), Some("db1"));
    assert_eq!(got.tag_count(), Some(1));
    // The source's part boundaries were kept: part 2 is the source's.
    let p2 = ok(b.get_object().bucket("dst").key("backup.tar").version_id(&v_mp).part_number(2).send().await, "get part 2");
    assert_eq!(p2.parts_count(), Some(3));
    assert!(read_body(p2).await == parts[1], "part 2 is the source's second part");
    let head = ok(b.head_object().bucket("dst").key("sealed").send().await, "head sealed replica");
    assert_eq!(head.server_side_encryption(), Some(&ServerSideEncryption::Aes256));
    assert_eq!(open_uploads(&b).await, 0, "every replication upload was completed");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_multipart_replication_cut_by_a_kill_starts_over_and_completes() {
    let b_addr = free_addr();
    let mut dst = node(b_addr, None);
    let mut src = node_with(free_addr(), Some(b_addr), &[MP_THRESHOLD]);
    let (a, b) = (src.client(), dst.client());
    versioned_bucket(&b, "dst").await;
    versioned_bucket(&a, "src").await;
    replicate(&a, "src", "arn:aws:s3:::dst").await;

    // The destination is killed once the transfer (8 parts) has begun.
    let first = random_bytes(96 << 20, 50);
    let v_first = put(&a, "src", "first", &first).await;
    wait_upload_open(&b, 0).await;
    dst.kill9();
    let start = Instant::now();
    while metric_total(&src.scrape_metrics(), "tessera_replication_retries_total") < 1.0 {
        assert!(start.elapsed() < DEADLINE, "the cut transfer is not retried");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(status_of(&a, "src", "first", &v_first).await.as_deref(), Some("PENDING"), "a cut transfer is not a refusal");
    dst.start_again();
    wait_drained(&src, 1.0);
    let b = dst.client();
    same_on_both(&a, &b, "first", &v_first, &first).await;
    // The cut upload could not be aborted (its node was down): it is left
    // to the destination's lifecycle.
    let orphans = open_uploads(&b).await;
    assert_eq!(orphans, 1, "the cut upload is left open");

    // The source is killed mid-transfer: the queue entry stays and the
    // transfer starts over after its restart.
    let second = random_bytes(96 << 20, 51);
    let v_second = put(&a, "src", "second", &second).await;
    wait_upload_open(&b, orphans).await;
    src.kill9();
    src.start_again();
    wait_drained(&src, 1.0);
    let a = src.client();
    same_on_both(&a, &b, "second", &v_second, &second).await;
    assert_eq!(versions(&a, "src").await, versions(&b, "dst").await);
    assert_eq!(metric_total(&src.scrape_metrics(), "tessera_replication_multipart_attempts_total"), 1.0, "sent again once after the restart");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refused_multipart_completion_aborts_the_upload_and_is_retried() {
    let b_addr = free_addr();
    let dst = node(b_addr, None);
    let src = node_with(free_addr(), Some(b_addr), &[MP_THRESHOLD, "--test-replication-failed-retry-ms=2000"]);
    let (a, b) = (src.client(), dst.client());
    versioned_bucket(&a, "src").await;
    replicate(&a, "src", "arn:aws:s3:::dst").await;
    // The destination bucket is not versioned: its parts are taken, its
    // completion refused (a replica keeps its version id).
    ok(b.create_bucket().bucket("dst").send().await, "create dst");
    let body = random_bytes(25 << 20, 60);
    let v = put(&a, "src", "k", &body).await;
    // The failure is counted before its commit lands: wait for the status
    // (first retry 2 s after it).
    let start = Instant::now();
    while status_of(&a, "src", "k", &v).await.as_deref() != Some("FAILED") {
        assert!(start.elapsed() < DEADLINE, "not FAILED: {}", admin_json(&src, "/admin/v1/replication"));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(open_uploads(&b).await, 0, "the refused upload was aborted");
    assert!(ok(b.list_object_versions().bucket("dst").send().await, "list").versions().is_empty());
    // Fixed by the destination's operator: the retry sends it all again.
    let v_on = VersioningConfiguration::builder().status(BucketVersioningStatus::Enabled).build();
    ok(b.put_bucket_versioning().bucket("dst").versioning_configuration(v_on).send().await, "versioning");
    wait_metric(&src, "tessera_replication_sent_total", 1.0);
    same_on_both(&a, &b, "k", &v, &body).await;
    assert_eq!(open_uploads(&b).await, 0);
    assert_eq!(metric_total(&src.scrape_metrics(), "tessera_replication_multipart_attempts_total"), 2.0);
}
