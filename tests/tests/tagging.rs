//! Object and bucket tagging: set/get/delete, by version, the
//! `x-amz-tagging` header on PUT, multipart and copy (with the tagging
//! directive), `x-amz-tagging-count`, and S3's limits with their errors.

use aws_sdk_s3::types::{BucketVersioningStatus, Tag, Tagging, TaggingDirective, VersioningConfiguration};
use tessera_tests::*;

fn tagging(pairs: &[(&str, &str)]) -> Tagging {
    let tags = pairs.iter().map(|(k, v)| Tag::builder().key(*k).value(*v).build().expect("tag")).collect();
    Tagging::builder().set_tag_set(Some(tags)).build().expect("tagging")
}

async fn tags_of(s3: &aws_sdk_s3::Client, bucket: &str, key: &str, version: Option<&str>) -> Vec<(String, String)> {
    let out = ok(
        s3.get_object_tagging().bucket(bucket).key(key).set_version_id(version.map(str::to_string)).send().await,
        "get tagging",
    );
    out.tag_set().iter().map(|t| (t.key().to_string(), t.value().to_string())).collect()
}

fn owned(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn object_tags_set_get_replace_delete() {
    let (server, s3) = with_bucket("tags").await;
    ok(s3.put_object().bucket("tags").key("k").body(bytestream(b"x")).send().await, "put");
    assert!(tags_of(&s3, "tags", "k", None).await.is_empty());
    ok(s3.put_object_tagging().bucket("tags").key("k").tagging(tagging(&[("b", "2"), ("a", "1")])).send().await, "tag");
    assert_eq!(tags_of(&s3, "tags", "k", None).await, owned(&[("a", "1"), ("b", "2")]), "ordered by key");
    let got = ok(s3.get_object().bucket("tags").key("k").send().await, "get");
    assert_eq!(got.tag_count(), Some(2));
    let r = server.send(&server.sign(server.raw_request("HEAD", "/tags/k")));
    assert_eq!(r.header("x-amz-tagging-count"), Some("2"));
    // Replacing replaces the whole set; the object itself is untouched.
    ok(s3.put_object_tagging().bucket("tags").key("k").tagging(tagging(&[("c", "3")])).send().await, "retag");
    assert_eq!(tags_of(&s3, "tags", "k", None).await, owned(&[("c", "3")]));
    let got = ok(s3.get_object().bucket("tags").key("k").send().await, "get");
    assert_eq!(read_body(got).await, b"x");
    let del = ok(s3.delete_object_tagging().bucket("tags").key("k").send().await, "delete tags");
    assert_eq!(del.version_id(), None);
    assert!(tags_of(&s3, "tags", "k", None).await.is_empty());
    let r = server.send(&server.sign(server.raw_request("HEAD", "/tags/k")));
    assert_eq!(r.header("x-amz-tagging-count"), None);
    // Missing objects.
    assert_s3_error(s3.get_object_tagging().bucket("tags").key("nope").send().await, 404, "NoSuchKey");
    assert_s3_error(
        s3.put_object_tagging().bucket("tags").key("nope").tagging(tagging(&[("a", "b")])).send().await,
        404,
        "NoSuchKey",
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn tag_limits_and_their_errors() {
    let (server, s3) = with_bucket("limits").await;
    ok(s3.put_object().bucket("limits").key("k").body(bytestream(b"x")).send().await, "put");
    let ten: Vec<(String, String)> = (0..10).map(|i| (format!("k{i}"), format!("v{i}"))).collect();
    let refs: Vec<(&str, &str)> = ten.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    ok(s3.put_object_tagging().bucket("limits").key("k").tagging(tagging(&refs)).send().await, "10 tags");
    let long_key = "k".repeat(128);
    let long_value = "é".repeat(256);
    ok(
        s3.put_object_tagging().bucket("limits").key("k").tagging(tagging(&[(&long_key, &long_value)])).send().await,
        "longest key and value (characters, not bytes)",
    );
    let eleven: Vec<(String, String)> = (0..11).map(|i| (format!("k{i}"), String::new())).collect();
    let refs11: Vec<(&str, &str)> = eleven.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let too_long_key = "k".repeat(129);
    let too_long_value = "v".repeat(257);
    let bad: Vec<Vec<(&str, &str)>> = vec![
        refs11,
        vec![(too_long_key.as_str(), "v")],
        vec![("k", too_long_value.as_str())],
        vec![("bad*key", "v")],
        vec![("k", "bad<value>")],
        vec![("aws:reserved", "v")],
        vec![("dup", "1"), ("dup", "2")],
    ];
    for tags in bad {
        assert_s3_error(
            s3.put_object_tagging().bucket("limits").key("k").tagging(tagging(&tags)).send().await,
            400,
            "InvalidTag",
        );
    }
    assert_eq!(tags_of(&s3, "limits", "k", None).await, owned(&[(&long_key, &long_value)]), "failed puts change nothing");
    // The header form: URL-encoded pairs, same limits.
    let r = server.send(&server.sign(
        server.raw_request("PUT", "/limits/h").header("x-amz-tagging", "a=1&b=x%20y&c").body("body"),
    ));
    assert_eq!(r.status, 200, "{}", r.body_text());
    assert_eq!(tags_of(&s3, "limits", "h", None).await, owned(&[("a", "1"), ("b", "x y"), ("c", "")]));
    let many = (0..11).map(|i| format!("t{i}=v")).collect::<Vec<_>>().join("&");
    let r = server.send(&server.sign(server.raw_request("PUT", "/limits/h2").header("x-amz-tagging", &many).body("b")));
    assert_eq!((r.status, r.body_text().contains("InvalidTag")), (400, true));
    let r = server.send(&server.sign(server.raw_request("PUT", "/limits/h2").header("x-amz-tagging", "a=1&a=2").body("b")));
    assert_eq!(r.status, 400, "duplicate keys");
    // Malformed documents.
    let r = server.send(&server.sign(server.raw_request("PUT", "/limits/k?tagging").body("<Tagging><Nope/></Tagging>")));
    assert_eq!((r.status, r.body_text().contains("MalformedXML")), (400, true));
}

#[tokio::test(flavor = "multi_thread")]
async fn tags_on_multipart_copy_and_versions() {
    let (_server, s3) = with_bucket("tcopy").await;
    let up = ok(s3.create_multipart_upload().bucket("tcopy").key("mp").tagging("Hello=World&foo=bar").send().await, "create");
    let id = up.upload_id().unwrap();
    let part = ok(
        s3.upload_part().bucket("tcopy").key("mp").upload_id(id).part_number(1).body(bytestream(b"abc")).send().await,
        "part",
    );
    let done = aws_sdk_s3::types::CompletedMultipartUpload::builder()
        .parts(aws_sdk_s3::types::CompletedPart::builder().part_number(1).e_tag(part.e_tag().unwrap()).build())
        .build();
    ok(s3.complete_multipart_upload().bucket("tcopy").key("mp").upload_id(id).multipart_upload(done).send().await, "complete");
    assert_eq!(tags_of(&s3, "tcopy", "mp", None).await, owned(&[("Hello", "World"), ("foo", "bar")]));
    // Copy keeps the source's tags by default, replaces them with REPLACE.
    ok(s3.copy_object().bucket("tcopy").key("c1").copy_source("tcopy/mp").send().await, "copy");
    assert_eq!(tags_of(&s3, "tcopy", "c1", None).await, owned(&[("Hello", "World"), ("foo", "bar")]));
    ok(
        s3.copy_object()
            .bucket("tcopy")
            .key("c2")
            .copy_source("tcopy/mp")
            .tagging_directive(TaggingDirective::Replace)
            .tagging("new=1")
            .send()
            .await,
        "copy replace",
    );
    assert_eq!(tags_of(&s3, "tcopy", "c2", None).await, owned(&[("new", "1")]));
    // Copying onto itself with new tags is a change.
    ok(
        s3.copy_object()
            .bucket("tcopy")
            .key("c2")
            .copy_source("tcopy/c2")
            .tagging_directive(TaggingDirective::Replace)
            .send()
            .await,
        "copy onto itself, tags replaced by none",
    );
    assert!(tags_of(&s3, "tcopy", "c2", None).await.is_empty());
    assert_s3_error(s3.copy_object().bucket("tcopy").key("c2").copy_source("tcopy/c2").send().await, 400, "InvalidRequest");

    // Tags belong to a version.
    let conf = VersioningConfiguration::builder().status(BucketVersioningStatus::Enabled).build();
    ok(s3.put_bucket_versioning().bucket("tcopy").versioning_configuration(conf).send().await, "versioning");
    let v1 = ok(s3.put_object().bucket("tcopy").key("v").tagging("gen=1").body(bytestream(b"1")).send().await, "v1");
    let v1 = v1.version_id().unwrap().to_string();
    ok(s3.put_object().bucket("tcopy").key("v").tagging("gen=2").body(bytestream(b"2")).send().await, "v2");
    assert_eq!(tags_of(&s3, "tcopy", "v", Some(&v1)).await, owned(&[("gen", "1")]));
    assert_eq!(tags_of(&s3, "tcopy", "v", None).await, owned(&[("gen", "2")]));
    let out = ok(
        s3.put_object_tagging().bucket("tcopy").key("v").version_id(&v1).tagging(tagging(&[("gen", "one")])).send().await,
        "tag old version",
    );
    assert_eq!(out.version_id(), Some(v1.as_str()));
    assert_eq!(tags_of(&s3, "tcopy", "v", Some(&v1)).await, owned(&[("gen", "one")]));
    assert_eq!(tags_of(&s3, "tcopy", "v", None).await, owned(&[("gen", "2")]));
    let d = ok(s3.delete_object().bucket("tcopy").key("v").send().await, "marker");
    assert_s3_error(s3.get_object_tagging().bucket("tcopy").key("v").send().await, 404, "NoSuchKey");
    assert_s3_error(
        s3.get_object_tagging().bucket("tcopy").key("v").version_id(d.version_id().unwrap()).send().await,
        405,
        "MethodNotAllowed",
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn bucket_tags() {
    let (server, s3) = with_bucket("btags").await;
    assert_s3_error(s3.get_bucket_tagging().bucket("btags").send().await, 404, "NoSuchTagSet");
    ok(s3.put_bucket_tagging().bucket("btags").tagging(tagging(&[("team", "storage"), ("env", "test")])).send().await, "put");
    let got = ok(s3.get_bucket_tagging().bucket("btags").send().await, "get");
    let tags: Vec<(&str, &str)> = got.tag_set().iter().map(|t| (t.key(), t.value())).collect();
    assert_eq!(tags, [("env", "test"), ("team", "storage")]);
    let fifty: Vec<(String, String)> = (0..50).map(|i| (format!("k{i:02}"), "v".into())).collect();
    let refs: Vec<(&str, &str)> = fifty.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    ok(s3.put_bucket_tagging().bucket("btags").tagging(tagging(&refs)).send().await, "50 tags");
    let mut fifty_one = refs.clone();
    fifty_one.push(("k50", "v"));
    assert_s3_error(s3.put_bucket_tagging().bucket("btags").tagging(tagging(&fifty_one)).send().await, 400, "InvalidTag");
    assert_eq!(ok(s3.get_bucket_tagging().bucket("btags").send().await, "get").tag_set().len(), 50);
    // Without Content-MD5 or a checksum the request is refused, as S3 does.
    let body = "<Tagging><TagSet><Tag><Key>a</Key><Value>b</Value></Tag></TagSet></Tagging>";
    let r = server.send(&server.sign(server.raw_request("PUT", "/btags?tagging").body(body)));
    assert_eq!((r.status, r.body_text().contains("InvalidRequest")), (400, true), "{}", r.body_text());
    let r = server.send(&server.sign(
        server.raw_request("PUT", "/btags?tagging").header("Content-MD5", &content_md5(body.as_bytes())).body(body),
    ));
    assert_eq!(r.status, 204, "{}", r.body_text());
    ok(s3.delete_bucket_tagging().bucket("btags").send().await, "delete");
    assert_s3_error(s3.get_bucket_tagging().bucket("btags").send().await, 404, "NoSuchTagSet");
}
