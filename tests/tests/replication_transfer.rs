//! How replicated versions travel between two real nodes on loopback:
//! existing objects backfilled once, null versions, a resync of failed
//! versions, refused versions retried with backoff, large bodies streamed,
//! and versions over the multipart threshold sent as multipart uploads
//! (cut by a kill, or refused at completion, and started over).

use std::time::{Duration, Instant};

use aws_sdk_s3::types::{BucketVersioningStatus, ServerSideEncryption, VersioningConfiguration};
use aws_sdk_s3::Client;
use tessera_tests::*;

mod replication_kit;
use replication_kit::*;

#[tokio::test(flavor = "multi_thread")]
async fn existing_objects_are_backfilled_once_and_replicated_versions_are_not_sent_again() {
    let (src, dst) = versioned_pair(&[], &[]).await;
    let (a, b) = (src.client(), dst.client());
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
    let (src, dst) = versioned_pair(&stream, &["--kms-key", "replkey-1"]).await;
    let (a, b) = (src.client(), dst.client());
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
    wait_status(&src, "r0", &ids[0], "FAILED").await;
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
    let (src, dst) = versioned_pair(&[MP_THRESHOLD, "--kms-key", "replkey-1"], &["--kms-key", "replkey-1"]).await;
    let (a, b) = (src.client(), dst.client());
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
    let (mut src, mut dst) = versioned_pair(&[MP_THRESHOLD], &[]).await;
    let (a, b) = (src.client(), dst.client());
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
    wait_status(&src, "k", &v, "FAILED").await;
    assert_eq!(open_uploads(&b).await, 0, "the refused upload was aborted");
    assert!(ok(b.list_object_versions().bucket("dst").send().await, "list").versions().is_empty());
    // Fixed by the destination's operator: the retry sends it all again.
    let v_on = VersioningConfiguration::builder().status(BucketVersioningStatus::Enabled).build();
    ok(b.put_bucket_versioning().bucket("dst").versioning_configuration(v_on).send().await, "versioning");
    wait_metric(&src, "tessera_replication_sent_total", 1.0);
    // Sent is counted before the COMPLETED status is committed.
    wait_status(&src, "k", &v, "COMPLETED").await;
    same_on_both(&a, &b, "k", &v, &body).await;
    assert_eq!(open_uploads(&b).await, 0);
    assert_eq!(metric_total(&src.scrape_metrics(), "tessera_replication_multipart_attempts_total"), 2.0);
}
