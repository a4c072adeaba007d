//! Bucket logging: Put/GetBucketLogging, and access-log objects delivered
//! to the target bucket in AWS's format (with the test-only short delivery
//! interval).

use std::time::{Duration, Instant};

use aws_sdk_s3::types::{BucketLoggingStatus, LoggingEnabled, PartitionDateSource, PartitionedPrefix, TargetObjectKeyFormat};
use tessera_tests::*;

fn fast_delivery() -> ServerOpts {
    ServerOpts { env: vec![("TESSERA_TEST_ACCESS_LOG_INTERVAL_MS".into(), "200".into())], ..Default::default() }
}

fn enabled(target: &str, prefix: &str) -> BucketLoggingStatus {
    BucketLoggingStatus::builder()
        .logging_enabled(LoggingEnabled::builder().target_bucket(target).target_prefix(prefix).build().expect("logging"))
        .build()
}

#[tokio::test(flavor = "multi_thread")]
async fn put_get_and_turn_off_bucket_logging() {
    let (_server, s3) = with_bucket("src").await;
    ok(s3.create_bucket().bucket("logs").send().await, "create target");
    let got = ok(s3.get_bucket_logging().bucket("src").send().await, "get (off)");
    assert!(got.logging_enabled().is_none());
    ok(s3.put_bucket_logging().bucket("src").bucket_logging_status(enabled("logs", "src/")).send().await, "put");
    let got = ok(s3.get_bucket_logging().bucket("src").send().await, "get");
    let le = got.logging_enabled().expect("enabled");
    assert_eq!((le.target_bucket(), le.target_prefix()), ("logs", "src/"));
    assert!(le.target_object_key_format().and_then(|f| f.simple_prefix()).is_some());
    let partitioned = BucketLoggingStatus::builder()
        .logging_enabled(
            LoggingEnabled::builder()
                .target_bucket("logs")
                .target_prefix("p/")
                .target_object_key_format(
                    TargetObjectKeyFormat::builder()
                        .partitioned_prefix(PartitionedPrefix::builder().partition_date_source(PartitionDateSource::DeliveryTime).build())
                        .build(),
                )
                .build()
                .expect("logging"),
        )
        .build();
    ok(s3.put_bucket_logging().bucket("src").bucket_logging_status(partitioned).send().await, "put partitioned");
    let got = ok(s3.get_bucket_logging().bucket("src").send().await, "get");
    let fmt = got.logging_enabled().and_then(|l| l.target_object_key_format()).and_then(|f| f.partitioned_prefix());
    assert_eq!(fmt.and_then(|p| p.partition_date_source()), Some(&PartitionDateSource::DeliveryTime));
    ok(s3.put_bucket_logging().bucket("src").bucket_logging_status(BucketLoggingStatus::builder().build()).send().await, "off");
    let got = ok(s3.get_bucket_logging().bucket("src").send().await, "get (off again)");
    assert!(got.logging_enabled().is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn logging_errors() {
    let users = "BOBKEYBOBKEYBOBKEY00 bobsecretbobsecretbobsecretbobsecret0000 bob-id bob\n";
    let server = Server::start_with(ServerOpts { users: Some(users.into()), ..Default::default() });
    let s3 = server.client();
    let bob = server.client_for("BOBKEYBOBKEYBOBKEY00", "bobsecretbobsecretbobsecretbobsecret0000");
    ok(s3.create_bucket().bucket("src").send().await, "create");
    ok(bob.create_bucket().bucket("bobs").send().await, "bob creates");
    assert_s3_error(
        s3.put_bucket_logging().bucket("src").bucket_logging_status(enabled("nosuch", "x/")).send().await,
        400,
        "InvalidTargetBucketForLogging",
    );
    assert_s3_error(
        s3.put_bucket_logging().bucket("src").bucket_logging_status(enabled("bobs", "x/")).send().await,
        400,
        "InvalidTargetBucketForLogging",
    );
    assert_s3_error(
        s3.put_bucket_logging().bucket("nosuchsrc").bucket_logging_status(enabled("src", "x/")).send().await,
        404,
        "NoSuchBucket",
    );
    assert_s3_error(bob.get_bucket_logging().bucket("src").send().await, 403, "AccessDenied");
    let body = "<BucketLoggingStatus><LoggingEnabled><TargetPrefix>x</TargetPrefix></LoggingEnabled></BucketLoggingStatus>";
    server.send(&server.sign(server.raw_request("PUT", "/src?logging").body(body))).assert_error(400, "MalformedXML");
}

/// Lists `bucket` until it holds an object under `prefix`, for at most `limit`.
async fn wait_for_logs(s3: &aws_sdk_s3::Client, bucket: &str, prefix: &str, limit: Duration) -> Vec<String> {
    let started = Instant::now();
    loop {
        let got = ok(s3.list_objects_v2().bucket(bucket).prefix(prefix).send().await, "list logs");
        let keys: Vec<String> = got.contents().iter().filter_map(|o| o.key().map(str::to_string)).collect();
        if !keys.is_empty() || started.elapsed() > limit {
            return keys;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn access_log_objects_are_delivered_in_aws_format() {
    let server = Server::start_with(fast_delivery());
    let s3 = server.client();
    for b in ["src", "logs"] {
        ok(s3.create_bucket().bucket(b).send().await, "create");
    }
    ok(s3.put_bucket_logging().bucket("src").bucket_logging_status(enabled("logs", "access/")).send().await, "put");
    ok(s3.put_object().bucket("src").key("a file.txt").body(bytestream(b"hello")).send().await, "put object");
    ok(s3.get_object().bucket("src").key("a file.txt").send().await, "get object");
    assert_s3_error(s3.get_object().bucket("src").key("missing").send().await, 404, "NoSuchKey");
    let keys = wait_for_logs(&s3, "logs", "access/", Duration::from_secs(20)).await;
    assert!(!keys.is_empty(), "no access log delivered");
    let mut text = String::new();
    // Lines of one burst may land in more than one object (per core, per flush).
    let started = Instant::now();
    while !(text.contains("REST.GET.OBJECT a+file.txt") || text.contains("REST.GET.OBJECT a%20file.txt"))
        || !text.contains("NoSuchKey")
    {
        assert!(started.elapsed() < Duration::from_secs(20), "log lines missing:\n{text}");
        text.clear();
        let keys = wait_for_logs(&s3, "logs", "access/", Duration::from_secs(1)).await;
        for k in &keys {
            let name = k.trim_start_matches("access/");
            assert_eq!(name.len(), "2026-01-01-00-00-00-".len() + 16, "key {k}");
            let got = ok(s3.get_object().bucket("logs").key(k).send().await, "get log");
            text.push_str(&String::from_utf8(read_body(got).await).expect("utf-8 log"));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for line in text.lines().filter(|l| l.contains(" src ")) {
        assert_eq!(line.split(' ').next(), Some("tessera-root"), "bucket owner: {line}");
        assert_eq!(line.split(' ').nth(1), Some("src"), "{line}");
        assert!(line.contains(" +0000] 127.0.0.1 "), "{line}");
        assert!(line.contains("SigV4") && line.contains("AuthHeader"), "{line}");
    }
    assert!(text.contains("REST.PUT.OBJECT"), "{text}");
    // The log bucket's own writes are not logged (nothing logs the target here).
    let off = ok(s3.get_bucket_logging().bucket("logs").send().await, "get");
    assert!(off.logging_enabled().is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn logging_turned_off_delivers_nothing_more() {
    let server = Server::start_with(fast_delivery());
    let s3 = server.client();
    for b in ["quiet", "qlogs"] {
        ok(s3.create_bucket().bucket(b).send().await, "create");
    }
    ok(s3.put_bucket_logging().bucket("quiet").bucket_logging_status(enabled("qlogs", "")).send().await, "on");
    ok(s3.put_bucket_logging().bucket("quiet").bucket_logging_status(BucketLoggingStatus::builder().build()).send().await, "off");
    ok(s3.put_object().bucket("quiet").key("k").body(bytestream(b"x")).send().await, "put");
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let got = ok(s3.list_objects_v2().bucket("qlogs").send().await, "list");
    assert_eq!(got.key_count(), Some(0), "logs delivered after logging was turned off");
}
