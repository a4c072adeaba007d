//! Multipart uploads: parts, listing, completion rules, abort, big uploads.

use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use tessera_tests::*;

async fn create_upload(s3: &aws_sdk_s3::Client, bucket: &str, key: &str) -> String {
    let out = ok(
        s3.create_multipart_upload().bucket(bucket).key(key).send().await,
        "create multipart upload",
    );
    assert_eq!(out.bucket(), Some(bucket));
    assert_eq!(out.key(), Some(key));
    out.upload_id().expect("UploadId").to_string()
}

async fn upload_part(s3: &aws_sdk_s3::Client, bucket: &str, key: &str, id: &str, n: i32, data: &[u8]) -> String {
    let out = ok(
        s3.upload_part()
            .bucket(bucket)
            .key(key)
            .upload_id(id)
            .part_number(n)
            .body(bytestream(data))
            .send()
            .await,
        &format!("upload part {n}"),
    );
    let tag = out.e_tag().expect("part ETag").to_string();
    assert_eq!(tag, etag(data), "part {n} ETag is the quoted MD5 of the part");
    tag
}

fn completed(parts: &[(i32, &str)]) -> CompletedMultipartUpload {
    CompletedMultipartUpload::builder()
        .set_parts(Some(
            parts
                .iter()
                .map(|(n, tag)| CompletedPart::builder().part_number(*n).e_tag(*tag).build())
                .collect(),
        ))
        .build()
}

#[tokio::test(flavor = "multi_thread")]
async fn multipart_upload_list_parts_complete_and_read_back() {
    let (_server, s3) = with_bucket("mpu").await;
    let parts = [
        random_bytes(MIN_PART_SIZE, 1),
        random_bytes(MIN_PART_SIZE + 17, 2),
        random_bytes(1_000_003, 3),
    ];
    let id = create_upload(&s3, "mpu", "assembled").await;
    let mut tags = Vec::new();
    for (i, p) in parts.iter().enumerate() {
        tags.push(upload_part(&s3, "mpu", "assembled", &id, i as i32 + 1, p).await);
    }

    let listed = ok(
        s3.list_parts()
            .bucket("mpu")
            .key("assembled")
            .upload_id(&id)
            .send()
            .await,
        "list parts",
    );
    assert_eq!(listed.upload_id(), Some(id.as_str()));
    let got: Vec<(i32, i64, String)> = listed
        .parts()
        .iter()
        .map(|p| {
            (
                p.part_number().unwrap(),
                p.size().unwrap(),
                p.e_tag().unwrap().to_string(),
            )
        })
        .collect();
    let want: Vec<(i32, i64, String)> = parts
        .iter()
        .enumerate()
        .map(|(i, p)| (i as i32 + 1, p.len() as i64, etag(p)))
        .collect();
    assert_eq!(got, want);
    // Not visible before completion.
    assert_s3_error(
        s3.get_object().bucket("mpu").key("assembled").send().await,
        404,
        "NoSuchKey",
    );
    let uploads = ok(s3.list_multipart_uploads().bucket("mpu").send().await, "list uploads");
    assert_eq!(uploads.uploads().len(), 1);
    assert_eq!(uploads.uploads()[0].upload_id(), Some(id.as_str()));

    let done = ok(
        s3.complete_multipart_upload()
            .bucket("mpu")
            .key("assembled")
            .upload_id(&id)
            .multipart_upload(completed(&[(1, &tags[0]), (2, &tags[1]), (3, &tags[2])]))
            .send()
            .await,
        "complete",
    );
    let want_etag = multipart_etag(&parts);
    assert_eq!(done.e_tag(), Some(want_etag.as_str()));
    let whole: Vec<u8> = parts.concat();
    let head = ok(s3.head_object().bucket("mpu").key("assembled").send().await, "head");
    assert_eq!(head.content_length(), Some(whole.len() as i64));
    assert_eq!(head.e_tag(), Some(want_etag.as_str()));
    let get = ok(s3.get_object().bucket("mpu").key("assembled").send().await, "get");
    assert_eq!(get.e_tag(), Some(want_etag.as_str()));
    let body = read_body(get).await;
    assert!(
        body == whole,
        "assembled object differs (len {} vs {})",
        body.len(),
        whole.len()
    );
    // A range across the part boundary.
    let r = ok(
        s3.get_object()
            .bucket("mpu")
            .key("assembled")
            .range(format!("bytes={}-{}", MIN_PART_SIZE - 10, MIN_PART_SIZE + 9))
            .send()
            .await,
        "range across parts",
    );
    assert_eq!(read_body(r).await, &whole[MIN_PART_SIZE - 10..MIN_PART_SIZE + 10]);
    let uploads = ok(s3.list_multipart_uploads().bucket("mpu").send().await, "list uploads");
    assert!(uploads.uploads().is_empty(), "completed upload still listed");
    assert_s3_error(
        s3.list_parts()
            .bucket("mpu")
            .key("assembled")
            .upload_id(&id)
            .send()
            .await,
        404,
        "NoSuchUpload",
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn reuploaded_part_replaces_the_earlier_one() {
    let (_server, s3) = with_bucket("again").await;
    let id = create_upload(&s3, "again", "k").await;
    let first = random_bytes(MIN_PART_SIZE, 10);
    let second = random_bytes(MIN_PART_SIZE, 11);
    let last = random_bytes(10, 12);
    upload_part(&s3, "again", "k", &id, 1, &first).await;
    let t1 = upload_part(&s3, "again", "k", &id, 1, &second).await;
    let t2 = upload_part(&s3, "again", "k", &id, 2, &last).await;
    let listed = ok(
        s3.list_parts().bucket("again").key("k").upload_id(&id).send().await,
        "list parts",
    );
    assert_eq!(listed.parts().len(), 2);
    ok(
        s3.complete_multipart_upload()
            .bucket("again")
            .key("k")
            .upload_id(&id)
            .multipart_upload(completed(&[(1, &t1), (2, &t2)]))
            .send()
            .await,
        "complete",
    );
    let body = read_body(ok(s3.get_object().bucket("again").key("k").send().await, "get")).await;
    assert!(
        body == [second.as_slice(), last.as_slice()].concat(),
        "the re-uploaded part must win"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn small_non_last_part_is_entity_too_small() {
    let (_server, s3) = with_bucket("small").await;
    let id = create_upload(&s3, "small", "k").await;
    let t1 = upload_part(&s3, "small", "k", &id, 1, &random_bytes(MIB, 1)).await;
    let t2 = upload_part(&s3, "small", "k", &id, 2, &random_bytes(MIB, 2)).await;
    assert_s3_error(
        s3.complete_multipart_upload()
            .bucket("small")
            .key("k")
            .upload_id(&id)
            .multipart_upload(completed(&[(1, &t1), (2, &t2)]))
            .send()
            .await,
        400,
        "EntityTooSmall",
    );
    assert_s3_error(s3.get_object().bucket("small").key("k").send().await, 404, "NoSuchKey");
    // One small part alone is a valid (last) part.
    let id = create_upload(&s3, "small", "one").await;
    let data = random_bytes(100, 3);
    let t = upload_part(&s3, "small", "one", &id, 1, &data).await;
    let done = ok(
        s3.complete_multipart_upload()
            .bucket("small")
            .key("one")
            .upload_id(&id)
            .multipart_upload(completed(&[(1, &t)]))
            .send()
            .await,
        "complete single small part",
    );
    assert_eq!(done.e_tag(), Some(multipart_etag(&[&data]).as_str()));
    assert_eq!(
        read_body(ok(s3.get_object().bucket("small").key("one").send().await, "get")).await,
        data
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn abort_then_no_such_upload() {
    let (_server, s3) = with_bucket("abort").await;
    let id = create_upload(&s3, "abort", "k").await;
    let t = upload_part(&s3, "abort", "k", &id, 1, &random_bytes(1000, 1)).await;
    ok(
        s3.abort_multipart_upload()
            .bucket("abort")
            .key("k")
            .upload_id(&id)
            .send()
            .await,
        "abort",
    );
    assert_s3_error(
        s3.list_parts().bucket("abort").key("k").upload_id(&id).send().await,
        404,
        "NoSuchUpload",
    );
    assert_s3_error(
        s3.upload_part()
            .bucket("abort")
            .key("k")
            .upload_id(&id)
            .part_number(2)
            .body(bytestream(b"late"))
            .send()
            .await,
        404,
        "NoSuchUpload",
    );
    assert_s3_error(
        s3.complete_multipart_upload()
            .bucket("abort")
            .key("k")
            .upload_id(&id)
            .multipart_upload(completed(&[(1, &t)]))
            .send()
            .await,
        404,
        "NoSuchUpload",
    );
    assert_s3_error(s3.get_object().bucket("abort").key("k").send().await, 404, "NoSuchKey");
    assert_s3_error(
        s3.abort_multipart_upload()
            .bucket("abort")
            .key("k")
            .upload_id("no-such-upload-id")
            .send()
            .await,
        404,
        "NoSuchUpload",
    );
    let uploads = ok(s3.list_multipart_uploads().bucket("abort").send().await, "list uploads");
    assert!(uploads.uploads().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn complete_with_wrong_etag_or_missing_part_is_invalid_part() {
    let (_server, s3) = with_bucket("invalid").await;
    let id = create_upload(&s3, "invalid", "k").await;
    let p1 = random_bytes(MIN_PART_SIZE, 1);
    let p2 = random_bytes(10, 2);
    let t1 = upload_part(&s3, "invalid", "k", &id, 1, &p1).await;
    let t2 = upload_part(&s3, "invalid", "k", &id, 2, &p2).await;
    let wrong = etag(b"not this part");
    let complete = |parts: CompletedMultipartUpload| {
        s3.complete_multipart_upload()
            .bucket("invalid")
            .key("k")
            .upload_id(&id)
            .multipart_upload(parts)
            .send()
    };
    assert_s3_error(complete(completed(&[(1, &t1), (2, &wrong)])).await, 400, "InvalidPart");
    assert_s3_error(complete(completed(&[(1, &t1), (3, &t2)])).await, 400, "InvalidPart");
    // The upload is still usable after a refused completion.
    let done = ok(
        complete(completed(&[(1, &t1), (2, &t2)])).await,
        "complete after errors",
    );
    assert_eq!(done.e_tag(), Some(multipart_etag(&[&p1, &p2]).as_str()));
}

#[tokio::test(flavor = "multi_thread")]
async fn complete_with_parts_out_of_order_is_invalid_part_order() {
    let (_server, s3) = with_bucket("order").await;
    let id = create_upload(&s3, "order", "k").await;
    let t1 = upload_part(&s3, "order", "k", &id, 1, &random_bytes(MIN_PART_SIZE, 1)).await;
    let t2 = upload_part(&s3, "order", "k", &id, 2, &random_bytes(MIN_PART_SIZE, 2)).await;
    assert_s3_error(
        s3.complete_multipart_upload()
            .bucket("order")
            .key("k")
            .upload_id(&id)
            .multipart_upload(completed(&[(2, &t2), (1, &t1)]))
            .send()
            .await,
        400,
        "InvalidPartOrder",
    );
    assert_s3_error(s3.get_object().bucket("order").key("k").send().await, 404, "NoSuchKey");
}

#[tokio::test(flavor = "multi_thread")]
async fn multipart_100_mib_with_concurrent_parts() {
    let (_server, s3) = with_bucket("bigmpu").await;
    const PARTS: usize = 10;
    const PART_SIZE: usize = 10 * MIB;
    let parts: Vec<Vec<u8>> = (0..PARTS).map(|i| random_bytes(PART_SIZE, 1000 + i as u64)).collect();
    let id = create_upload(&s3, "bigmpu", "100mib").await;

    // Parts go up four at a time, finishing out of order.
    let sem = std::sync::Arc::new(tokio::sync::Semaphore::new(4));
    let mut tasks = tokio::task::JoinSet::new();
    for (i, part) in parts.iter().enumerate().rev() {
        let permit = sem.clone().acquire_owned().await.unwrap();
        let (s3, id, part) = (s3.clone(), id.clone(), part.clone());
        tasks.spawn(async move {
            let tag = upload_part(&s3, "bigmpu", "100mib", &id, i as i32 + 1, &part).await;
            drop(permit);
            (i as i32 + 1, tag)
        });
    }
    let mut tags = Vec::new();
    while let Some(r) = tasks.join_next().await {
        tags.push(r.expect("part task"));
    }
    tags.sort();
    let refs: Vec<(i32, &str)> = tags.iter().map(|(n, t)| (*n, t.as_str())).collect();
    let done = ok(
        s3.complete_multipart_upload()
            .bucket("bigmpu")
            .key("100mib")
            .upload_id(&id)
            .multipart_upload(completed(&refs))
            .send()
            .await,
        "complete",
    );
    assert_eq!(done.e_tag(), Some(multipart_etag(&parts).as_str()));

    let mut whole = md5::Md5::default();
    for p in &parts {
        md5::Digest::update(&mut whole, p);
    }
    let want = hex::encode(md5::Digest::finalize(whole));
    let get = ok(s3.get_object().bucket("bigmpu").key("100mib").send().await, "get");
    let (got, len) = stream_md5(get).await;
    assert_eq!((len, got), ((PARTS * PART_SIZE) as u64, want));
}

#[tokio::test(flavor = "multi_thread")]
async fn list_multipart_uploads_with_delimiter() {
    let (_server, s3) = with_bucket("mpdelim").await;
    for key in ["a/1", "a/2", "b/x/1", "c", "d"] {
        create_upload(&s3, "mpdelim", key).await;
    }
    let r = ok(s3.list_multipart_uploads().bucket("mpdelim").delimiter("/").send().await, "list");
    let prefixes: Vec<&str> = r.common_prefixes().iter().map(|p| p.prefix().unwrap()).collect();
    let keys: Vec<&str> = r.uploads().iter().map(|u| u.key().unwrap()).collect();
    assert_eq!((prefixes, keys), (vec!["a/", "b/"], vec!["c", "d"]));
    assert_eq!(r.delimiter(), Some("/"));
    let r = ok(s3.list_multipart_uploads().bucket("mpdelim").prefix("b/").delimiter("/").send().await, "nested");
    let prefixes: Vec<&str> = r.common_prefixes().iter().map(|p| p.prefix().unwrap()).collect();
    assert_eq!(prefixes, ["b/x/"]);
    assert!(r.uploads().is_empty());
    // Paging counts prefixes and uploads alike and resumes after a prefix.
    let r = ok(s3.list_multipart_uploads().bucket("mpdelim").delimiter("/").max_uploads(1).send().await, "page 1");
    assert_eq!(r.common_prefixes().len(), 1);
    assert_eq!((r.is_truncated(), r.next_key_marker()), (Some(true), Some("a/")));
    let r = ok(
        s3.list_multipart_uploads().bucket("mpdelim").delimiter("/").max_uploads(2).key_marker("a/").send().await,
        "page 2",
    );
    let prefixes: Vec<&str> = r.common_prefixes().iter().map(|p| p.prefix().unwrap()).collect();
    let keys: Vec<&str> = r.uploads().iter().map(|u| u.key().unwrap()).collect();
    assert_eq!((prefixes, keys), (vec!["b/"], vec!["c"]));
}
