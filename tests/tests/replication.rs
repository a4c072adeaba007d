//! Bucket replication between two real nodes on loopback: the configuration
//! API with S3's validation; puts, overwrites, delete markers, version
//! deletes and multipart objects arriving with their version ids, ETags and
//! metadata; `x-amz-replication-status` on both sides; a backlog built while
//! the destination is down surviving a kill -9 of the source and draining
//! once both are up; two nodes replicating to each other without a loop;
//! SSE-S3 and SSE-KMS objects replicated decrypted and encrypted again at
//! the destination, SSE-C ones FAILED; and a replica header refused
//! without s3:ReplicateObject. How versions travel (backfill, resync,
//! retries, large bodies, multipart transfers): `replication_transfer.rs`.

use std::time::{Duration, Instant};

use aws_sdk_s3::types::{BucketVersioningStatus, CompletedMultipartUpload, CompletedPart, ServerSideEncryption, VersioningConfiguration};
use tessera_tests::*;

mod replication_kit;
use replication_kit::*;

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
    let (src, dst) = versioned_pair(&[], &[]).await;
    let (a, b) = (src.client(), dst.client());
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

#[tokio::test(flavor = "multi_thread")]
async fn backlog_survives_destination_outage_and_source_kill9() {
    let (mut src, mut dst) = versioned_pair(&[], &[]).await;
    let a = src.client();
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
    let (src, mut dst) = versioned_pair(&[], &[]).await;
    let a = src.client();
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
    let (src, dst) = versioned_pair(&kms, &kms).await;
    let (a, b) = (src.client(), dst.client());
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

