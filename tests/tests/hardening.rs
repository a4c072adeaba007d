//! Findings of the first code review, each pinned by a test: bucket reuse,
//! header injection, empty-object ranges, unknown sub-resources on writes,
//! atomic conditional writes, and paging of multipart uploads.

use tessera_tests::*;

const BOB_KEY: &str = "AKIABOB0000000000002";
const BOB_SECRET: &str = "bob-secret-key-0123456789abcdefghijklmno";

#[tokio::test(flavor = "multi_thread")]
async fn a_recreated_bucket_does_not_inherit_old_uploads() {
    let server = Server::start_with(ServerOpts {
        users: Some(format!("{BOB_KEY} {BOB_SECRET} bob-id Bob\n")),
        ..Default::default()
    });
    let root = server.client();
    ok(root.create_bucket().bucket("reused").send().await, "create");
    let up = ok(root.create_multipart_upload().bucket("reused").key("secret").send().await, "create upload");
    let id = up.upload_id().expect("upload id").to_string();
    ok(
        root.upload_part()
            .bucket("reused")
            .key("secret")
            .upload_id(&id)
            .part_number(1)
            .body(bytestream(b"root's data"))
            .send()
            .await,
        "upload part",
    );
    // No objects, so the bucket can go, upload and all.
    ok(root.delete_bucket().bucket("reused").send().await, "delete bucket");

    let bob = server.client_for(BOB_KEY, BOB_SECRET);
    ok(bob.create_bucket().bucket("reused").send().await, "bob takes the name");
    let listed = ok(bob.list_multipart_uploads().bucket("reused").send().await, "bob lists uploads");
    assert!(listed.uploads().is_empty(), "old uploads leaked: {:?}", listed.uploads());
    let parts = bob.list_parts().bucket("reused").key("secret").upload_id(&id).send().await;
    assert_s3_error(parts, 404, "NoSuchUpload");
}

#[tokio::test(flavor = "multi_thread")]
async fn response_overrides_cannot_inject_headers() {
    let server = Server::start();
    let s3 = server.client();
    ok(s3.create_bucket().bucket("inj").send().await, "create");
    ok(s3.put_object().bucket("inj").key("k").body(bytestream(b"x")).send().await, "put");
    let target = "/inj/k?response-content-disposition=attachment%0D%0ASet-Cookie:%20x=1";
    let resp = server.send(&server.sign(server.raw_request("GET", target)));
    resp.assert_error(400, "InvalidArgument");
    assert!(resp.header("set-cookie").is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn ranges_on_an_empty_object_are_unsatisfiable() {
    let server = Server::start();
    let s3 = server.client();
    ok(s3.create_bucket().bucket("empty").send().await, "create");
    ok(s3.put_object().bucket("empty").key("e").body(bytestream(b"")).send().await, "put");
    for range in ["bytes=-5", "bytes=0-", "bytes=0-0"] {
        let resp = server.send(&server.sign(server.raw_request("GET", "/empty/e").header("Range", range)));
        resp.assert_error(416, "InvalidRange");
    }
    let whole = server.send(&server.sign(server.raw_request("GET", "/empty/e")));
    assert_eq!(whole.status, 200);
    assert!(whole.body.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_sub_resources_never_fall_through_to_writes() {
    let server = Server::start();
    let s3 = server.client();
    ok(s3.create_bucket().bucket("subres").send().await, "create");
    ok(s3.put_object().bucket("subres").key("k").body(bytestream(b"keep me")).send().await, "put");

    let resp = server.send(&server.sign(server.raw_request("DELETE", "/subres?metadataTable")));
    resp.assert_error(501, "NotImplemented");
    ok(s3.head_bucket().bucket("subres").send().await, "bucket still there");

    let resp = server.send(&server.sign(server.raw_request("PUT", "/subres/k?renameObject").body(b"".to_vec())));
    resp.assert_error(501, "NotImplemented");
    let got = ok(s3.get_object().bucket("subres").key("k").send().await, "get");
    let body = got.body.collect().await.expect("body").into_bytes();
    assert_eq!(&body[..], b"keep me");
}

#[tokio::test(flavor = "multi_thread")]
async fn conditional_writes_hold_or_change_nothing() {
    let server = Server::start();
    let s3 = server.client();
    ok(s3.create_bucket().bucket("cond").send().await, "create");
    let first = ok(
        s3.put_object().bucket("cond").key("lock").if_none_match("*").body(bytestream(b"first")).send().await,
        "create-only put of a new key",
    );
    let second = s3.put_object().bucket("cond").key("lock").if_none_match("*").body(bytestream(b"second")).send().await;
    assert_s3_error(second, 412, "PreconditionFailed");
    let wrong = s3.put_object().bucket("cond").key("lock").if_match("\"0123\"").body(bytestream(b"third")).send().await;
    assert_s3_error(wrong, 412, "PreconditionFailed");
    let missing = s3.put_object().bucket("cond").key("nope").if_match("\"0123\"").body(bytestream(b"x")).send().await;
    assert_s3_error(missing, 404, "NoSuchKey");
    let got = ok(s3.get_object().bucket("cond").key("lock").send().await, "get");
    let body = got.body.collect().await.expect("body").into_bytes();
    assert_eq!(&body[..], b"first", "failed conditional writes changed nothing");
    let etag = first.e_tag().expect("etag").to_string();
    let same = s3.put_object().bucket("cond").key("lock").if_none_match(&etag).body(bytestream(b"x")).send().await;
    assert_s3_error(same, 412, "PreconditionFailed");
    let fourth = ok(
        s3.put_object().bucket("cond").key("lock").if_match(&etag).body(bytestream(b"fourth")).send().await,
        "if-match with the current etag",
    );
    ok(
        s3.put_object().bucket("cond").key("lock").if_none_match(&etag).body(bytestream(b"fifth")).send().await,
        "if-none-match with an etag that is no longer current",
    );
    let stale = s3.put_object().bucket("cond").key("lock").if_match(fourth.e_tag().unwrap_or_default()).body(bytestream(b"x")).send().await;
    assert_s3_error(stale, 412, "PreconditionFailed");
}

#[tokio::test(flavor = "multi_thread")]
async fn anonymous_requests_to_missing_buckets_get_no_such_bucket() {
    let server = Server::start();
    let resp = server.send(&server.raw_request("GET", "/never-made/k"));
    resp.assert_error(404, "NoSuchBucket");
    let s3 = server.client();
    ok(s3.create_bucket().bucket("private").send().await, "create");
    let resp = server.send(&server.raw_request("GET", "/private/k"));
    resp.assert_error(403, "AccessDenied");
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_create_only_writes_have_one_winner() {
    let server = Server::start();
    let s3 = server.client();
    ok(s3.create_bucket().bucket("race").send().await, "create");
    for round in 0..5 {
        let key = format!("lock-{round}");
        let mut tasks = Vec::new();
        for i in 0..8u8 {
            let s3 = s3.clone();
            let key = key.clone();
            tasks.push(tokio::spawn(async move {
                s3.put_object().bucket("race").key(&key).if_none_match("*").body(bytestream(&[i; 64])).send().await.is_ok()
            }));
        }
        let mut winners = 0;
        for t in tasks {
            winners += usize::from(t.await.expect("task"));
        }
        assert_eq!(winners, 1, "round {round}: exactly one create-only PUT may win");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn multipart_uploads_page_with_markers() {
    let server = Server::start();
    let s3 = server.client();
    ok(s3.create_bucket().bucket("pages").send().await, "create");
    let mut expected = Vec::new();
    for key in ["a", "b", "b", "c"] {
        let up = ok(s3.create_multipart_upload().bucket("pages").key(key).send().await, "create upload");
        expected.push((key.to_string(), up.upload_id().unwrap_or_default().to_string()));
    }
    expected.sort();
    let mut seen = Vec::new();
    let (mut key_marker, mut id_marker) = (None::<String>, None::<String>);
    for _ in 0..10 {
        let page = ok(
            s3.list_multipart_uploads()
                .bucket("pages")
                .max_uploads(2)
                .set_key_marker(key_marker.clone())
                .set_upload_id_marker(id_marker.clone())
                .send()
                .await,
            "list uploads",
        );
        for u in page.uploads() {
            seen.push((u.key().unwrap_or_default().to_string(), u.upload_id().unwrap_or_default().to_string()));
        }
        if page.is_truncated() != Some(true) {
            break;
        }
        key_marker = page.next_key_marker().map(str::to_string);
        id_marker = page.next_upload_id_marker().map(str::to_string);
    }
    assert_eq!(seen, expected);
}
