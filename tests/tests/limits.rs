//! Arguments at and past S3's limits are refused with the documented codes.

use aws_sdk_s3::types::{Delete, ObjectIdentifier};
use tessera_tests::*;

#[tokio::test(flavor = "multi_thread")]
async fn bad_list_arguments_are_invalid_argument() {
    let (server, _s3) = with_bucket("args").await;
    let mut wrong = Vec::new();
    for query in [
        "list-type=2&max-keys=abc",
        "list-type=2&max-keys=-1",
        "list-type=2&continuation-token=not-a-token-we-issued",
        "list-type=2&encoding-type=base64",
    ] {
        let resp = server.send(&server.sign(server.raw_request("GET", &format!("/args?{query}"))));
        if (resp.status, resp.error_code().as_deref()) != (400, Some("InvalidArgument")) {
            wrong.push(format!(
                "{query}: {} {:?}: {}",
                resp.status,
                resp.error_code(),
                resp.body_text()
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "expected 400 InvalidArgument for:\n{}",
        wrong.join("\n")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn user_metadata_over_2_kib_is_metadata_too_large() {
    let (_server, s3) = with_bucket("meta").await;
    // S3 counts the UTF-8 bytes of keys and values: 2 KiB in all.
    ok(
        s3.put_object()
            .bucket("meta")
            .key("fits")
            .metadata("m", "v".repeat(1_900))
            .body(bytestream(b"x"))
            .send()
            .await,
        "1.9 KiB of metadata",
    );
    assert_s3_error(
        s3.put_object()
            .bucket("meta")
            .key("big")
            .metadata("m", "v".repeat(2_100))
            .body(bytestream(b"x"))
            .send()
            .await,
        400,
        "MetadataTooLarge",
    );
    assert_status(s3.head_object().bucket("meta").key("big").send().await, 404);
}

#[tokio::test(flavor = "multi_thread")]
async fn part_numbers_outside_1_to_10000_are_invalid_argument() {
    let (_server, s3) = with_bucket("parts").await;
    let id = ok(
        s3.create_multipart_upload().bucket("parts").key("k").send().await,
        "create mpu",
    )
    .upload_id()
    .unwrap()
    .to_string();
    for n in [0, 10_001, -1] {
        let f = sdk_failure(
            s3.upload_part()
                .bucket("parts")
                .key("k")
                .upload_id(&id)
                .part_number(n)
                .body(bytestream(b"p"))
                .send()
                .await,
        );
        assert_eq!(
            (f.status, f.code.as_deref()),
            (Some(400), Some("InvalidArgument")),
            "part {n}: {f:#?}"
        );
    }
    ok(
        s3.upload_part()
            .bucket("parts")
            .key("k")
            .upload_id(&id)
            .part_number(10_000)
            .body(bytestream(b"p"))
            .send()
            .await,
        "part 10000",
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn delete_objects_over_1000_keys_or_malformed_is_malformed_xml() {
    let (server, s3) = with_bucket("bulk").await;
    ok(
        s3.put_object()
            .bucket("bulk")
            .key("survivor")
            .body(bytestream(b"x"))
            .send()
            .await,
        "put",
    );
    let too_many: Vec<ObjectIdentifier> = (0..1001)
        .map(|i| ObjectIdentifier::builder().key(format!("k{i}")).build().unwrap())
        .collect();
    let mut with_survivor = too_many;
    with_survivor[1000] = ObjectIdentifier::builder().key("survivor").build().unwrap();
    assert_s3_error(
        s3.delete_objects()
            .bucket("bulk")
            .delete(Delete::builder().set_objects(Some(with_survivor)).build().unwrap())
            .send()
            .await,
        400,
        "MalformedXML",
    );
    ok(
        s3.head_object().bucket("bulk").key("survivor").send().await,
        "a refused bulk delete deleted something",
    );

    let body = b"<Delete><Object><Key>survivor</Key></Object>".to_vec(); // not closed
    let req = server.sign(
        server
            .raw_request("POST", "/bulk?delete")
            .header("Content-MD5", &content_md5(&body))
            .body(body),
    );
    server.send(&req).assert_error(400, "MalformedXML");
    ok(
        s3.head_object().bucket("bulk").key("survivor").send().await,
        "malformed bulk delete deleted something",
    );
}
