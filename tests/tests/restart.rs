//! Everything written before a clean stop (SIGTERM) is there after restart.

use std::collections::BTreeMap;

use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use tessera_tests::*;

#[derive(Debug, PartialEq)]
struct Listed {
    size: i64,
    etag: String,
}

async fn listing(s3: &aws_sdk_s3::Client, bucket: &str) -> BTreeMap<String, Listed> {
    let mut out = BTreeMap::new();
    let mut pages = s3.list_objects_v2().bucket(bucket).into_paginator().send();
    while let Some(page) = pages.next().await {
        for o in page.expect("list page").contents() {
            out.insert(
                o.key().unwrap().to_string(),
                Listed {
                    size: o.size().unwrap(),
                    etag: o.e_tag().unwrap().to_string(),
                },
            );
        }
    }
    out
}

async fn bucket_names(s3: &aws_sdk_s3::Client) -> Vec<String> {
    let out = ok(s3.list_buckets().send().await, "list buckets");
    out.buckets().iter().map(|b| b.name().unwrap().to_string()).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn data_survives_clean_restart() {
    let mut server = Server::start();
    let s3 = server.client();
    for b in ["alpha", "beta", "gamma-empty", "delta-deleted"] {
        ok(s3.create_bucket().bucket(b).send().await, "create bucket");
    }
    ok(s3.delete_bucket().bucket("delta-deleted").send().await, "delete bucket");

    let sizes = [0usize, 1, 4 * KIB, 200 * KIB, 3 * MIB];
    let mut objects: BTreeMap<(String, String), Vec<u8>> = BTreeMap::new();
    for (i, size) in sizes.iter().enumerate() {
        for bucket in ["alpha", "beta"] {
            let key = format!("size-{size}/obj {i} ✓");
            let data = random_bytes(*size, (i * 10 + bucket.len()) as u64);
            ok(
                s3.put_object()
                    .bucket(bucket)
                    .key(&key)
                    .content_type("application/x-test")
                    .metadata("origin", bucket)
                    .body(bytestream(&data))
                    .send()
                    .await,
                "put",
            );
            objects.insert((bucket.to_string(), key), data);
        }
    }
    // Overwritten: the second version must come back.
    let v2 = random_bytes(5000, 99);
    ok(
        s3.put_object()
            .bucket("alpha")
            .key("overwritten")
            .body(bytestream(&random_bytes(7000, 98)))
            .send()
            .await,
        "v1",
    );
    ok(
        s3.put_object()
            .bucket("alpha")
            .key("overwritten")
            .body(bytestream(&v2))
            .send()
            .await,
        "v2",
    );
    objects.insert(("alpha".into(), "overwritten".into()), v2);
    // Deleted: must stay deleted.
    for key in ["deleted-small", "deleted-big"] {
        let size = if key == "deleted-big" { 2 * MIB } else { 10 };
        ok(
            s3.put_object()
                .bucket("beta")
                .key(key)
                .body(bytestream(&random_bytes(size, 5)))
                .send()
                .await,
            "put",
        );
        ok(s3.delete_object().bucket("beta").key(key).send().await, "delete");
    }
    // A multipart object.
    let parts = [
        random_bytes(MIN_PART_SIZE, 71),
        random_bytes(MIN_PART_SIZE, 72),
        random_bytes(123_457, 73),
    ];
    let id = ok(
        s3.create_multipart_upload()
            .bucket("alpha")
            .key("multi/part")
            .send()
            .await,
        "create mpu",
    )
    .upload_id()
    .unwrap()
    .to_string();
    let mut completed = Vec::new();
    for (i, p) in parts.iter().enumerate() {
        let out = ok(
            s3.upload_part()
                .bucket("alpha")
                .key("multi/part")
                .upload_id(&id)
                .part_number(i as i32 + 1)
                .body(bytestream(p))
                .send()
                .await,
            "upload part",
        );
        completed.push(
            CompletedPart::builder()
                .part_number(i as i32 + 1)
                .e_tag(out.e_tag().unwrap())
                .build(),
        );
    }
    ok(
        s3.complete_multipart_upload()
            .bucket("alpha")
            .key("multi/part")
            .upload_id(&id)
            .multipart_upload(CompletedMultipartUpload::builder().set_parts(Some(completed)).build())
            .send()
            .await,
        "complete",
    );
    objects.insert(("alpha".into(), "multi/part".into()), parts.concat());
    // An upload in progress survives too.
    let pending = ok(
        s3.create_multipart_upload().bucket("beta").key("pending").send().await,
        "create mpu",
    )
    .upload_id()
    .unwrap()
    .to_string();
    let pending_part = random_bytes(MIN_PART_SIZE, 80);
    let pending_tag = ok(
        s3.upload_part()
            .bucket("beta")
            .key("pending")
            .upload_id(&pending)
            .part_number(1)
            .body(bytestream(&pending_part))
            .send()
            .await,
        "upload part",
    )
    .e_tag()
    .unwrap()
    .to_string();

    let buckets_before = bucket_names(&s3).await;
    let alpha_before = listing(&s3, "alpha").await;
    let beta_before = listing(&s3, "beta").await;
    assert_eq!(buckets_before, vec!["alpha", "beta", "gamma-empty"]);

    server.restart();
    let s3 = server.client();

    assert_eq!(bucket_names(&s3).await, buckets_before, "bucket list after restart");
    assert_eq!(listing(&s3, "alpha").await, alpha_before, "alpha listing after restart");
    assert_eq!(listing(&s3, "beta").await, beta_before, "beta listing after restart");
    assert!(listing(&s3, "gamma-empty").await.is_empty());
    for ((bucket, key), data) in &objects {
        let get = ok(
            s3.get_object().bucket(bucket).key(key).send().await,
            &format!("get {bucket}/{key} after restart"),
        );
        if key != "multi/part" {
            assert_eq!(get.e_tag(), Some(etag(data).as_str()), "{bucket}/{key}");
        }
        if key.starts_with("size-") {
            assert_eq!(get.content_type(), Some("application/x-test"), "{bucket}/{key}");
            assert_eq!(
                get.metadata().and_then(|m| m.get("origin")).map(String::as_str),
                Some(bucket.as_str())
            );
        }
        let body = read_body(get).await;
        assert!(
            body == *data,
            "{bucket}/{key}: {} bytes back, {} expected, or content differs",
            body.len(),
            data.len()
        );
    }
    for key in ["deleted-small", "deleted-big"] {
        assert_s3_error(s3.get_object().bucket("beta").key(key).send().await, 404, "NoSuchKey");
    }
    assert_status(s3.head_bucket().bucket("delta-deleted").send().await, 404);

    // The pending upload can be finished after the restart.
    let last = random_bytes(10, 81);
    let last_tag = ok(
        s3.upload_part()
            .bucket("beta")
            .key("pending")
            .upload_id(&pending)
            .part_number(2)
            .body(bytestream(&last))
            .send()
            .await,
        "upload part after restart",
    )
    .e_tag()
    .unwrap()
    .to_string();
    ok(
        s3.complete_multipart_upload()
            .bucket("beta")
            .key("pending")
            .upload_id(&pending)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .parts(CompletedPart::builder().part_number(1).e_tag(&pending_tag).build())
                    .parts(CompletedPart::builder().part_number(2).e_tag(&last_tag).build())
                    .build(),
            )
            .send()
            .await,
        "complete after restart",
    );
    let body = read_body(ok(s3.get_object().bucket("beta").key("pending").send().await, "get")).await;
    assert!(body == [pending_part, last].concat());

    // And a second restart changes nothing.
    server.restart();
    let s3 = server.client();
    assert_eq!(bucket_names(&s3).await, buckets_before);
    assert_eq!(listing(&s3, "alpha").await, alpha_before);
}

/// Versions, delete markers, retention, legal holds, tags, checksums and
/// bucket configuration (versioning, object lock, tags) survive a restart.
#[tokio::test(flavor = "multi_thread")]
async fn versions_retention_and_tags_survive_restart() {
    use aws_sdk_s3::primitives::DateTime;
    use aws_sdk_s3::types::{
        BucketVersioningStatus, ChecksumAlgorithm, ChecksumMode, ObjectLockLegalHold, ObjectLockLegalHoldStatus,
        ObjectLockMode, ObjectLockRetention, ObjectLockRetentionMode, Tag, Tagging, VersioningConfiguration,
    };
    let mut server = Server::start();
    let s3 = server.client();
    ok(s3.create_bucket().bucket("locked").object_lock_enabled_for_bucket(true).send().await, "locked bucket");
    ok(s3.create_bucket().bucket("suspended").send().await, "bucket");
    let conf = VersioningConfiguration::builder().status(BucketVersioningStatus::Suspended).build();
    ok(s3.put_bucket_versioning().bucket("suspended").versioning_configuration(conf).send().await, "suspend");
    let tags = Tagging::builder().tag_set(Tag::builder().key("team").value("db").build().unwrap()).build().unwrap();
    ok(s3.put_bucket_tagging().bucket("locked").tagging(tags).send().await, "bucket tags");

    let mut versions = Vec::new();
    for i in 0..4 {
        let out = ok(
            s3.put_object()
                .bucket("locked")
                .key("doc")
                .tagging(&format!("gen={i}"))
                .checksum_algorithm(ChecksumAlgorithm::Sha256)
                .body(bytestream(format!("version {i}").as_bytes()))
                .send()
                .await,
            "put",
        );
        versions.push(out.version_id().unwrap().to_string());
    }
    let until = std::time::SystemTime::now() + std::time::Duration::from_secs(3600);
    let retention = ObjectLockRetention::builder()
        .mode(ObjectLockRetentionMode::Compliance)
        .retain_until_date(DateTime::from(until))
        .build();
    ok(s3.put_object_retention().bucket("locked").key("doc").version_id(&versions[1]).retention(retention).send().await, "retain");
    let hold = ObjectLockLegalHold::builder().status(ObjectLockLegalHoldStatus::On).build();
    ok(s3.put_object_legal_hold().bucket("locked").key("doc").version_id(&versions[2]).legal_hold(hold).send().await, "hold");
    let marker = ok(s3.delete_object().bucket("locked").key("doc").send().await, "marker");
    let marker = marker.version_id().unwrap().to_string();
    ok(s3.put_object().bucket("suspended").key("n").body(bytestream(b"null version")).send().await, "null");
    let before = ok(s3.list_object_versions().bucket("locked").send().await, "list");

    server.restart();
    let s3 = server.client();
    let after = ok(s3.list_object_versions().bucket("locked").send().await, "list after restart");
    assert_eq!(format!("{:?}", after.versions()), format!("{:?}", before.versions()));
    assert_eq!(after.delete_markers().len(), 1);
    assert_eq!(after.delete_markers()[0].version_id(), Some(marker.as_str()));
    for (i, v) in versions.iter().enumerate() {
        let got = ok(
            s3.get_object().bucket("locked").key("doc").version_id(v).checksum_mode(ChecksumMode::Enabled).send().await,
            "get version",
        );
        assert!(got.checksum_sha256().is_some());
        assert_eq!(got.tag_count(), Some(1));
        assert_eq!(read_body(got).await, format!("version {i}").into_bytes());
        let t = ok(s3.get_object_tagging().bucket("locked").key("doc").version_id(v).send().await, "tags");
        assert_eq!(t.tag_set()[0].value(), format!("{i}"));
    }
    let head = ok(s3.head_object().bucket("locked").key("doc").version_id(&versions[1]).send().await, "head");
    assert_eq!(head.object_lock_mode(), Some(&ObjectLockMode::Compliance));
    assert_s3_error(
        s3.delete_object().bucket("locked").key("doc").version_id(&versions[1]).bypass_governance_retention(true).send().await,
        403,
        "AccessDenied",
    );
    assert_s3_error(s3.delete_object().bucket("locked").key("doc").version_id(&versions[2]).send().await, 403, "AccessDenied");
    ok(s3.delete_object().bucket("locked").key("doc").version_id(&versions[0]).send().await, "an unlocked version goes");
    assert_s3_error(s3.get_object().bucket("locked").key("doc").send().await, 404, "NoSuchKey");
    let v = ok(s3.get_bucket_versioning().bucket("locked").send().await, "versioning");
    assert_eq!(v.status(), Some(&BucketVersioningStatus::Enabled));
    assert!(ok(s3.get_object_lock_configuration().bucket("locked").send().await, "lock").object_lock_configuration().is_some());
    let bt = ok(s3.get_bucket_tagging().bucket("locked").send().await, "bucket tags");
    assert_eq!((bt.tag_set()[0].key(), bt.tag_set()[0].value()), ("team", "db"));
    let v = ok(s3.get_bucket_versioning().bucket("suspended").send().await, "versioning");
    assert_eq!(v.status(), Some(&BucketVersioningStatus::Suspended));
    let got = ok(s3.get_object().bucket("suspended").key("n").version_id("null").send().await, "null version");
    assert_eq!(read_body(got).await, b"null version");
}
