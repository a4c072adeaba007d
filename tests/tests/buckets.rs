//! Bucket operations: create and its name rules, head, list, location, delete.

use std::time::{Duration, SystemTime};

use tessera_tests::*;

#[tokio::test(flavor = "multi_thread")]
async fn create_bucket_rejects_invalid_names() {
    let server = Server::start();
    // Path style forced: for names with dots the SDK would otherwise try
    // virtual hosting (DNS lookup of "<bucket>.127.0.0.1").
    let s3 = server.client_path_style();
    let too_long = "a".repeat(64);
    let bad_names: &[(&str, &str)] = &[
        ("ab", "shorter than 3"),
        (&too_long, "longer than 63"),
        ("MyBucket", "uppercase"),
        ("my_bucket", "underscore"),
        ("192.168.1.1", "formatted as an IP address"),
        ("-bucket", "leading dash"),
        ("bucket-", "trailing dash"),
        ("my..bucket", "two adjacent periods"),
    ];
    for (name, why) in bad_names {
        let f = sdk_failure(s3.create_bucket().bucket(*name).send().await);
        assert_eq!(
            (f.status, f.code.as_deref()),
            (Some(400), Some("InvalidBucketName")),
            "bucket {name:?} ({why}) must be refused with 400 InvalidBucketName; got {f:#?}"
        );
    }
    // None of them exists afterwards.
    let listed = ok(s3.list_buckets().send().await, "list buckets");
    assert!(
        listed.buckets().is_empty(),
        "invalid names were created: {:?}",
        listed.buckets()
    );

    // The edges of the rules are accepted.
    let max_len = format!("b{}", "0".repeat(62));
    for name in ["abc", max_len.as_str(), "a.b-c.1", "0123-bucket"] {
        ok(
            s3.create_bucket().bucket(name).send().await,
            &format!("create valid bucket {name:?}"),
        );
        ok(
            s3.head_bucket().bucket(name).send().await,
            &format!("head bucket {name:?}"),
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn create_bucket_twice_is_200_in_us_east_1() {
    let server = Server::start();
    let s3 = server.client();
    ok(s3.create_bucket().bucket("twice").send().await, "first create");
    ok(s3.put_object().bucket("twice").key("k").body(bytestream(b"kept")).send().await, "put");
    // us-east-1 answers a re-create of your own bucket with 200, as AWS does.
    ok(s3.create_bucket().bucket("twice").send().await, "re-create in us-east-1");
    // The re-create must not have reset the bucket.
    let body = read_body(ok(s3.get_object().bucket("twice").key("k").send().await, "get after re-create")).await;
    assert_eq!(body, b"kept");
}

#[tokio::test(flavor = "multi_thread")]
async fn create_bucket_twice_is_bucket_already_owned_by_you_elsewhere() {
    let server = Server::start_with(ServerOpts {
        env: vec![("TESSERA_REGION".into(), "eu-west-1".into())],
        ..Default::default()
    });
    let s3 = aws_sdk_s3::Client::from_conf(
        server
            .config_builder(&server.access_key, &server.secret_key)
            .region(aws_sdk_s3::config::Region::new("eu-west-1"))
            .build(),
    );
    let conf = aws_sdk_s3::types::CreateBucketConfiguration::builder()
        .location_constraint(aws_sdk_s3::types::BucketLocationConstraint::EuWest1)
        .build();
    ok(s3.create_bucket().bucket("twice").create_bucket_configuration(conf.clone()).send().await, "first create");
    ok(s3.put_object().bucket("twice").key("k").body(bytestream(b"kept")).send().await, "put");
    assert_s3_error(
        s3.create_bucket().bucket("twice").create_bucket_configuration(conf).send().await,
        409,
        "BucketAlreadyOwnedByYou",
    );
    let body = read_body(ok(s3.get_object().bucket("twice").key("k").send().await, "get after re-create")).await;
    assert_eq!(body, b"kept");
}

#[tokio::test(flavor = "multi_thread")]
async fn head_bucket_200_when_present_404_when_missing() {
    let server = Server::start();
    let s3 = server.client();
    assert_status(s3.head_bucket().bucket("nope").send().await, 404);
    ok(s3.create_bucket().bucket("present").send().await, "create");
    ok(s3.head_bucket().bucket("present").send().await, "head present bucket");

    // The status line itself, over raw HTTP.
    let resp = server.send(&server.sign(server.raw_request("HEAD", "/present")));
    assert_eq!(resp.status, 200, "{resp:?}");
    let resp = server.send(&server.sign(server.raw_request("HEAD", "/nope")));
    assert_eq!(resp.status, 404, "{resp:?}");
    assert!(resp.body.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn list_buckets_returns_all_created_sorted_with_dates() {
    let server = Server::start();
    let s3 = server.client_path_style(); // a dotted name below

    let before = SystemTime::now() - Duration::from_secs(5);
    let names = ["zeta", "alpha", "mid-bucket", "beta.dots"];
    for n in names {
        ok(s3.create_bucket().bucket(n).send().await, "create");
    }
    let out = ok(s3.list_buckets().send().await, "list buckets");
    let listed: Vec<&str> = out.buckets().iter().map(|b| b.name().unwrap_or("")).collect();
    let mut expected = names.to_vec();
    expected.sort();
    assert_eq!(listed, expected, "ListBuckets must list every bucket, sorted by name");
    let after = SystemTime::now() + Duration::from_secs(5);
    for b in out.buckets() {
        let created = b.creation_date().expect("CreationDate");
        let created = SystemTime::try_from(*created).expect("date in range");
        assert!(
            created >= before && created <= after,
            "creation date {created:?} of {:?} not now",
            b.name()
        );
    }
    let owner = out.owner().expect("ListBuckets has an Owner");
    assert!(owner.id().is_some_and(|id| !id.is_empty()), "owner {owner:?}");

    ok(s3.delete_bucket().bucket("mid-bucket").send().await, "delete");
    let out = ok(s3.list_buckets().send().await, "list buckets");
    let listed: Vec<&str> = out.buckets().iter().map(|b| b.name().unwrap_or("")).collect();
    assert_eq!(listed, vec!["alpha", "beta.dots", "zeta"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn get_bucket_location_is_us_east_1() {
    let server = Server::start();
    let s3 = server.client();
    ok(s3.create_bucket().bucket("where").send().await, "create");
    let out = ok(s3.get_bucket_location().bucket("where").send().await, "location");
    // us-east-1 is the empty LocationConstraint in S3.
    let loc = out
        .location_constraint()
        .map(|c| c.as_str().to_string())
        .unwrap_or_default();
    assert!(loc.is_empty() || loc == "us-east-1", "location {loc:?}");
    assert_s3_error(
        s3.get_bucket_location().bucket("nowhere").send().await,
        404,
        "NoSuchBucket",
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn delete_bucket_not_empty_missing_and_empty() {
    let server = Server::start();
    let s3 = server.client();
    assert_s3_error(s3.delete_bucket().bucket("missing").send().await, 404, "NoSuchBucket");

    ok(s3.create_bucket().bucket("full").send().await, "create");
    ok(
        s3.put_object()
            .bucket("full")
            .key("a/b")
            .body(bytestream(b"x"))
            .send()
            .await,
        "put",
    );
    assert_s3_error(s3.delete_bucket().bucket("full").send().await, 409, "BucketNotEmpty");
    // Still there with its object.
    ok(
        s3.head_object().bucket("full").key("a/b").send().await,
        "object survives",
    );

    ok(
        s3.delete_object().bucket("full").key("a/b").send().await,
        "delete object",
    );
    let resp = server.send(&server.sign(server.raw_request("DELETE", "/full")));
    assert_eq!(resp.status, 204, "DeleteBucket of an empty bucket: {resp:?}");
    assert_status(s3.head_bucket().bucket("full").send().await, 404);
    assert_s3_error(s3.delete_bucket().bucket("full").send().await, 404, "NoSuchBucket");
    // The name is free again.
    ok(s3.create_bucket().bucket("full").send().await, "re-create after delete");
    let listed = ok(s3.list_objects_v2().bucket("full").send().await, "list");
    assert_eq!(listed.key_count(), Some(0), "a re-created bucket starts empty");
}

#[tokio::test(flavor = "multi_thread")]
async fn path_style_forced_and_default_clients_agree() {
    let server = Server::start();
    let default = server.client();
    let forced = server.client_path_style();
    ok(
        forced.create_bucket().bucket("styles").send().await,
        "create (forced path style)",
    );
    ok(
        default
            .put_object()
            .bucket("styles")
            .key("k")
            .body(bytestream(b"from default"))
            .send()
            .await,
        "put",
    );
    let body = read_body(ok(forced.get_object().bucket("styles").key("k").send().await, "get")).await;
    assert_eq!(body, b"from default");
    ok(
        forced
            .put_object()
            .bucket("styles")
            .key("k2")
            .body(bytestream(b"from forced"))
            .send()
            .await,
        "put",
    );
    let body = read_body(ok(default.get_object().bucket("styles").key("k2").send().await, "get")).await;
    assert_eq!(body, b"from forced");
}
