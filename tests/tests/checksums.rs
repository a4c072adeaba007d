//! Checksums in full: every algorithm on PutObject (header or SDK trailer),
//! COMPOSITE and FULL_OBJECT multipart checksums with per-part values on
//! GET partNumber and GetObjectAttributes, the errors, and a 10,000-part
//! CRC32C upload.

use aws_sdk_s3::types::{
    BucketVersioningStatus, ChecksumAlgorithm, ChecksumMode, ChecksumType, CompletedMultipartUpload, CompletedPart,
    ObjectAttributes, VersioningConfiguration,
};
use tessera_tests::*;

/// (algorithm, trailer/header name, checksum of b"hello world" as S3 computes it).
const HELLO: [(ChecksumAlgorithm, &str, &str); 4] = [
    (ChecksumAlgorithm::Crc32, "x-amz-checksum-crc32", "DUoRhQ=="),
    (ChecksumAlgorithm::Crc32C, "x-amz-checksum-crc32c", "yZRlqg=="),
    (ChecksumAlgorithm::Sha1, "x-amz-checksum-sha1", "Kq5sNclPz7QV2+lfQIuc6R7oRu0="),
    (ChecksumAlgorithm::Sha256, "x-amz-checksum-sha256", "uU0nuZNNPgilLlLX2n2r+sSE7+N6U4DukIj3rOLvzek="),
];

#[tokio::test(flavor = "multi_thread")]
async fn put_object_checksums_are_stored_and_returned() {
    let (server, s3) = with_bucket("sums").await;
    for (algo, header, value) in HELLO {
        let key = format!("k-{}", algo.as_str());
        let out = ok(
            s3.put_object().bucket("sums").key(&key).checksum_algorithm(algo.clone()).body(bytestream(b"hello world")).send().await,
            "put",
        );
        let r = server.send(&server.sign(server.raw_request("HEAD", &format!("/sums/{key}")).header("x-amz-checksum-mode", "ENABLED")));
        assert_eq!(r.header(header), Some(value), "{algo:?}");
        assert_eq!(r.header("x-amz-checksum-type"), Some("FULL_OBJECT"));
        let r = server.send(&server.sign(server.raw_request("HEAD", &format!("/sums/{key}"))));
        assert_eq!(r.header(header), None, "only with x-amz-checksum-mode: ENABLED");
        let _ = out;
    }
    // CRC64NVME, the SDK computing it.
    ok(
        s3.put_object().bucket("sums").key("nvme").checksum_algorithm(ChecksumAlgorithm::Crc64Nvme).body(bytestream(b"123456789")).send().await,
        "put crc64nvme",
    );
    let head = ok(s3.head_object().bucket("sums").key("nvme").checksum_mode(ChecksumMode::Enabled).send().await, "head");
    assert_eq!(head.checksum_crc64_nvme(), Some("rosUhgp5mIg="));
    // A wrong or malformed value: BadDigest, nothing stored.
    for (name, bad) in [("x-amz-checksum-crc32", "AAAAAA=="), ("x-amz-checksum-sha256", "bad"), ("x-amz-checksum-crc32c", "!!!")] {
        let r = server.send(&server.sign(server.raw_request("PUT", "/sums/bad").header(name, bad).body("hello world")));
        assert_eq!((r.status, r.body_text().contains("BadDigest")), (400, true), "{name}: {}", r.body_text());
    }
    assert_s3_error(s3.head_object().bucket("sums").key("bad").send().await, 404, "NotFound");
    // Two algorithms at once are refused.
    let r = server.send(&server.sign(
        server
            .raw_request("PUT", "/sums/two")
            .header("x-amz-checksum-crc32", "DUoRhQ==")
            .header("x-amz-checksum-crc32c", "yZRlqg==")
            .body("hello world"),
    ));
    assert_eq!(r.status, 400);
    // The checksum follows a copy, and a version.
    ok(s3.copy_object().bucket("sums").key("copy").copy_source("sums/k-CRC32C").send().await, "copy");
    let head = ok(s3.head_object().bucket("sums").key("copy").checksum_mode(ChecksumMode::Enabled).send().await, "head copy");
    assert_eq!(head.checksum_crc32_c(), Some("yZRlqg=="));
    let attrs = ok(
        s3.get_object_attributes()
            .bucket("sums")
            .key("k-SHA256")
            .object_attributes(ObjectAttributes::Checksum)
            .object_attributes(ObjectAttributes::Etag)
            .object_attributes(ObjectAttributes::ObjectSize)
            .object_attributes(ObjectAttributes::StorageClass)
            .object_attributes(ObjectAttributes::ObjectParts)
            .send()
            .await,
        "attributes",
    );
    let c = attrs.checksum().unwrap();
    assert_eq!(c.checksum_sha256(), Some(HELLO[3].2));
    assert_eq!(c.checksum_type(), Some(&ChecksumType::FullObject));
    assert_eq!(attrs.e_tag(), Some(md5_hex(b"hello world").as_str()), "unquoted");
    assert_eq!(attrs.object_size(), Some(11));
    assert!(attrs.object_parts().is_none(), "a single PUT has no parts");
    assert_eq!(attrs.version_id(), None);
}

/// Part bodies and checksums from ceph/s3-tests (5 MiB of 'A', 'B', 'C').
fn parts_abc() -> [Vec<u8>; 3] {
    [vec![b'A'; MIN_PART_SIZE], vec![b'B'; MIN_PART_SIZE], vec![b'C'; MIN_PART_SIZE]]
}

async fn multipart_with(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
    algo: ChecksumAlgorithm,
    ctype: ChecksumType,
) -> (String, Vec<String>) {
    let up = ok(
        s3.create_multipart_upload().bucket(bucket).key(key).checksum_algorithm(algo.clone()).checksum_type(ctype.clone()).send().await,
        "create",
    );
    assert_eq!(up.checksum_algorithm(), Some(&algo));
    assert_eq!(up.checksum_type(), Some(&ctype));
    let id = up.upload_id().unwrap().to_string();
    let mut done = CompletedMultipartUpload::builder();
    let mut sums = Vec::new();
    for (i, body) in parts_abc().iter().enumerate() {
        let n = i as i32 + 1;
        let out = ok(
            s3.upload_part().bucket(bucket).key(key).upload_id(&id).part_number(n).checksum_algorithm(algo.clone()).body(bytestream(body)).send().await,
            "part",
        );
        let sum = match algo {
            ChecksumAlgorithm::Crc32 => out.checksum_crc32(),
            ChecksumAlgorithm::Crc32C => out.checksum_crc32_c(),
            ChecksumAlgorithm::Crc64Nvme => out.checksum_crc64_nvme(),
            ChecksumAlgorithm::Sha1 => out.checksum_sha1(),
            _ => out.checksum_sha256(),
        }
        .expect("part checksum")
        .to_string();
        let p = CompletedPart::builder().part_number(n).e_tag(out.e_tag().unwrap());
        let p = match algo {
            ChecksumAlgorithm::Crc32 => p.checksum_crc32(&sum),
            ChecksumAlgorithm::Crc32C => p.checksum_crc32_c(&sum),
            ChecksumAlgorithm::Crc64Nvme => p.checksum_crc64_nvme(&sum),
            ChecksumAlgorithm::Sha1 => p.checksum_sha1(&sum),
            _ => p.checksum_sha256(&sum),
        };
        done = done.parts(p.build());
        sums.push(sum);
    }
    let c = ok(
        s3.complete_multipart_upload().bucket(bucket).key(key).upload_id(&id).multipart_upload(done.build()).send().await,
        "complete",
    );
    assert_eq!(c.checksum_type(), Some(&ctype));
    let whole = [c.checksum_crc32(), c.checksum_crc32_c(), c.checksum_crc64_nvme(), c.checksum_sha1(), c.checksum_sha256()]
        .into_iter()
        .flatten()
        .next()
        .expect("object checksum")
        .to_string();
    (whole, sums)
}

#[tokio::test(flavor = "multi_thread")]
async fn multipart_full_object_and_composite_checksums() {
    let (server, s3) = with_bucket("mpsums").await;
    let cases = [
        (ChecksumAlgorithm::Crc32, ChecksumType::FullObject, "x-amz-checksum-crc32", "WgDhBQ==", ["JRTCyQ==", "QoZTGg==", "YAgjqw=="]),
        (ChecksumAlgorithm::Crc32C, ChecksumType::FullObject, "x-amz-checksum-crc32c", "xU+Krw==", ["MDaLrw==", "TH4EZg==", "Z7mBIQ=="]),
        (ChecksumAlgorithm::Crc64Nvme, ChecksumType::FullObject, "x-amz-checksum-crc64nvme", "i+6LR0y3eFo=", ["L/E4WYn8v98=", "xW1l19VobYM=", "cK5MnNaWrW4="]),
        (
            ChecksumAlgorithm::Sha256,
            ChecksumType::Composite,
            "x-amz-checksum-sha256",
            "uWBwpe1dxI4Vw8Gf0X9ynOdw/SS6VBzfWm9giiv1sf4=-3",
            ["275VF5loJr1YYawit0XSHREhkFXYkkPKGuoK0x9VKxI=", "mrHwOfjTL5Zwfj74F05HOQGLdUb7E5szdCbxgUSq6NM=", "Vw7oB/nKQ5xWb3hNgbyfkvDiivl+U+/Dft48nfJfDow="],
        ),
    ];
    for (algo, ctype, header, want, want_parts) in cases {
        let key = format!("obj-{}", algo.as_str());
        let (whole, parts) = multipart_with(&s3, "mpsums", &key, algo.clone(), ctype.clone()).await;
        assert_eq!(whole, want, "{algo:?} {ctype:?}");
        assert_eq!(parts, want_parts);
        let r = server.send(&server.sign(server.raw_request("HEAD", &format!("/mpsums/{key}")).header("x-amz-checksum-mode", "ENABLED")));
        assert_eq!(r.header(header), Some(want));
        assert_eq!(r.header("x-amz-checksum-type"), Some(ctype.as_str()));
        for (i, p) in want_parts.iter().enumerate() {
            let r = server.send(&server.sign(
                server.raw_request("HEAD", &format!("/mpsums/{key}?partNumber={}", i + 1)).header("x-amz-checksum-mode", "ENABLED"),
            ));
            assert_eq!(r.header(header), Some(*p), "part {}", i + 1);
            assert_eq!(r.header("x-amz-mp-parts-count"), Some("3"));
        }
        // A ranged read has no whole-object checksum to offer.
        let r = server.send(&server.sign(
            server.raw_request("GET", &format!("/mpsums/{key}")).header("Range", "bytes=0-9").header("x-amz-checksum-mode", "ENABLED"),
        ));
        assert_eq!((r.status, r.header(header)), (206, None));
        // The SDK validates FULL_OBJECT checksums of whole GETs itself.
        let got = ok(s3.get_object().bucket("mpsums").key(&key).checksum_mode(ChecksumMode::Enabled).send().await, "get");
        assert_eq!(stream_md5(got).await.1, 3 * MIN_PART_SIZE as u64);
        let attrs = ok(
            s3.get_object_attributes()
                .bucket("mpsums")
                .key(&key)
                .object_attributes(ObjectAttributes::Checksum)
                .object_attributes(ObjectAttributes::ObjectParts)
                .max_parts(2)
                .part_number_marker("1")
                .send()
                .await,
            "attributes",
        );
        assert_eq!(attrs.checksum().unwrap().checksum_type(), Some(&ctype));
        let op = attrs.object_parts().unwrap();
        assert_eq!((op.total_parts_count(), op.max_parts(), op.is_truncated()), (Some(3), Some(2), Some(false)));
        let listed: Vec<(Option<i32>, Option<i64>)> = op.parts().iter().map(|p| (p.part_number(), p.size())).collect();
        assert_eq!(listed, [(Some(2), Some(MIN_PART_SIZE as i64)), (Some(3), Some(MIN_PART_SIZE as i64))]);
    }
    // Markers and page sizes at their edges.
    for (marker, max) in [("18446744073709551615", "1000"), ("3", "0"), ("0", "99999999999")] {
        let r = server.send(&server.sign(
            server
                .raw_request("GET", "/mpsums/obj-CRC32?attributes")
                .header("x-amz-object-attributes", "ObjectParts")
                .header("x-amz-part-number-marker", marker)
                .header("x-amz-max-parts", max),
        ));
        assert_eq!(r.status, 200, "{marker} {max}: {}", r.body_text());
    }
    for bad in ["-1", "x"] {
        let r = server.send(&server.sign(
            server
                .raw_request("GET", "/mpsums/obj-CRC32?attributes")
                .header("x-amz-object-attributes", "ObjectParts")
                .header("x-amz-part-number-marker", bad),
        ));
        assert_eq!(r.status, 400, "{bad}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn multipart_checksum_errors() {
    let (server, s3) = with_bucket("mperr").await;
    for (algo, ctype) in [
        ("SHA256", "FULL_OBJECT"),
        ("SHA1", "FULL_OBJECT"),
        ("CRC64NVME", "COMPOSITE"),
        ("MD5", "COMPOSITE"),
        ("CRC32", "SOMETIMES"),
    ] {
        let r = server.send(&server.sign(
            server.raw_request("POST", "/mperr/k?uploads").header("x-amz-checksum-algorithm", algo).header("x-amz-checksum-type", ctype),
        ));
        assert_eq!((r.status, r.body_text().contains("InvalidRequest")), (400, true), "{algo} {ctype}: {}", r.body_text());
    }
    let r = server.send(&server.sign(server.raw_request("POST", "/mperr/k?uploads").header("x-amz-checksum-type", "COMPOSITE")));
    assert_eq!(r.status, 400, "a type needs an algorithm");
    // Default type: COMPOSITE, FULL_OBJECT for CRC64NVME.
    let up = ok(s3.create_multipart_upload().bucket("mperr").key("k").checksum_algorithm(ChecksumAlgorithm::Crc64Nvme).send().await, "create");
    assert_eq!(up.checksum_type(), Some(&ChecksumType::FullObject));
    let up = ok(s3.create_multipart_upload().bucket("mperr").key("k").checksum_algorithm(ChecksumAlgorithm::Sha1).send().await, "create");
    assert_eq!(up.checksum_type(), Some(&ChecksumType::Composite));
    let id = up.upload_id().unwrap();
    // A part with another algorithm than the upload's.
    assert_s3_error(
        s3.upload_part().bucket("mperr").key("k").upload_id(id).part_number(1).checksum_algorithm(ChecksumAlgorithm::Crc32).body(bytestream(b"x")).send().await,
        400,
        "InvalidRequest",
    );
    // A part without a checksum gets one computed from its bytes.
    let r = server.send(&server.sign(server.raw_request("PUT", &format!("/mperr/k?partNumber=1&uploadId={id}")).body("hello world")));
    assert_eq!(r.status, 200, "{}", r.body_text());
    assert_eq!(r.header("x-amz-checksum-sha1"), Some(HELLO[2].2));
    let etag = r.header("etag").unwrap().to_string();
    let part = |sum: &str| CompletedPart::builder().part_number(1).e_tag(&etag).checksum_sha1(sum).build();
    // The wrong checksum for a part: InvalidPart.
    assert_s3_error(
        s3.complete_multipart_upload()
            .bucket("mperr")
            .key("k")
            .upload_id(id)
            .multipart_upload(CompletedMultipartUpload::builder().parts(part("AAAAAAAAAAAAAAAAAAAAAAAAAAA=")).build())
            .send()
            .await,
        400,
        "InvalidPart",
    );
    // The wrong expected object checksum: BadDigest (a malformed one too).
    for bad in ["bad", "AAAAAAAAAAAAAAAAAAAAAAAAAAA=-1"] {
        assert_s3_error(
            s3.complete_multipart_upload()
                .bucket("mperr")
                .key("k")
                .upload_id(id)
                .checksum_sha1(bad)
                .multipart_upload(CompletedMultipartUpload::builder().parts(part(HELLO[2].2)).build())
                .send()
                .await,
            400,
            "BadDigest",
        );
    }
    // The composite of one part: SHA1 of its digest, "-1"; accepted as expected value.
    let c = ok(
        s3.complete_multipart_upload()
            .bucket("mperr")
            .key("k")
            .upload_id(id)
            .multipart_upload(CompletedMultipartUpload::builder().parts(part(HELLO[2].2)).build())
            .send()
            .await,
        "complete",
    );
    let composite = c.checksum_sha1().unwrap().to_string();
    assert!(composite.ends_with("-1"), "{composite}");
    // A repeated Complete answers the same ETag and checksum.
    let again = ok(
        s3.complete_multipart_upload()
            .bucket("mperr")
            .key("k")
            .upload_id(id)
            .multipart_upload(CompletedMultipartUpload::builder().parts(part(HELLO[2].2)).build())
            .send()
            .await,
        "complete again",
    );
    assert_eq!((again.e_tag(), again.checksum_sha1()), (c.e_tag(), Some(composite.as_str())));
}

#[tokio::test(flavor = "multi_thread")]
async fn upload_part_copy_gets_the_upload_checksum_and_versions_keep_theirs() {
    let (server, s3) = with_bucket("pcopy").await;
    let conf = VersioningConfiguration::builder().status(BucketVersioningStatus::Enabled).build();
    ok(s3.put_bucket_versioning().bucket("pcopy").versioning_configuration(conf).send().await, "versioning");
    let v1 = ok(s3.put_object().bucket("pcopy").key("src").checksum_algorithm(ChecksumAlgorithm::Crc32C).body(bytestream(b"hello world")).send().await, "v1");
    ok(s3.put_object().bucket("pcopy").key("src").body(bytestream(b"other")).send().await, "v2");
    let v1 = v1.version_id().unwrap();
    let head = ok(s3.head_object().bucket("pcopy").key("src").version_id(v1).checksum_mode(ChecksumMode::Enabled).send().await, "head v1");
    assert_eq!(head.checksum_crc32_c(), Some(HELLO[1].2));
    let up = ok(s3.create_multipart_upload().bucket("pcopy").key("dst").checksum_algorithm(ChecksumAlgorithm::Crc32C).send().await, "create");
    let id = up.upload_id().unwrap();
    let r = server.send(&server.sign(
        server
            .raw_request("PUT", &format!("/pcopy/dst?partNumber=1&uploadId={id}"))
            .header("x-amz-copy-source", &format!("/pcopy/src?versionId={v1}"))
            .header("x-amz-copy-source-range", "bytes=0-10"),
    ));
    assert_eq!(r.status, 200, "{}", r.body_text());
    assert!(r.body_text().contains(&format!("<ChecksumCRC32C>{}</ChecksumCRC32C>", HELLO[1].2)), "{}", r.body_text());
    assert_eq!(r.header("x-amz-copy-source-version-id"), Some(v1));
}

/// A 10,000-part upload (the most S3 allows) with CRC32C composite
/// checksums, its parts made tiny with the test-only minimum part size.
#[tokio::test(flavor = "multi_thread")]
async fn ten_thousand_parts_with_crc32c_composite() {
    const PARTS: usize = 10_000;
    const PART_BYTES: usize = 16;
    let server = Server::start_with(ServerOpts {
        env: vec![("TESSERA_TEST_MIN_PART_BYTES".into(), PART_BYTES.to_string())],
        ..Default::default()
    });
    let s3 = server.client();
    ok(s3.create_bucket().bucket("huge").send().await, "bucket");
    let up = ok(
        s3.create_multipart_upload().bucket("huge").key("many").checksum_algorithm(ChecksumAlgorithm::Crc32C).send().await,
        "create",
    );
    let id = up.upload_id().unwrap().to_string();
    let bodies: Vec<Vec<u8>> = (0..PARTS).map(|i| random_bytes(PART_BYTES, i as u64)).collect();
    let sem = std::sync::Arc::new(tokio::sync::Semaphore::new(64));
    let mut tasks = tokio::task::JoinSet::new();
    for (i, body) in bodies.iter().enumerate() {
        let permit = sem.clone().acquire_owned().await.expect("semaphore");
        let (s3, id, body) = (s3.clone(), id.clone(), body.clone());
        tasks.spawn(async move {
            let out = ok(
                s3.upload_part()
                    .bucket("huge")
                    .key("many")
                    .upload_id(&id)
                    .part_number(i as i32 + 1)
                    .checksum_algorithm(ChecksumAlgorithm::Crc32C)
                    .body(bytestream(&body))
                    .send()
                    .await,
                "part",
            );
            drop(permit);
            (i, out.e_tag().unwrap().to_string(), out.checksum_crc32_c().unwrap().to_string())
        });
    }
    let mut parts = vec![(String::new(), String::new()); PARTS];
    while let Some(r) = tasks.join_next().await {
        let (i, etag, sum) = r.expect("task");
        assert_eq!(sum, b64(&crc32c::crc32c(&bodies[i]).to_be_bytes()), "part {i}");
        parts[i] = (etag, sum);
    }
    let done = CompletedMultipartUpload::builder()
        .set_parts(Some(
            parts
                .iter()
                .enumerate()
                .map(|(i, (e, s))| CompletedPart::builder().part_number(i as i32 + 1).e_tag(e).checksum_crc32_c(s).build())
                .collect(),
        ))
        .build();
    let c = ok(s3.complete_multipart_upload().bucket("huge").key("many").upload_id(&id).multipart_upload(done).send().await, "complete");
    let mut digests = Vec::with_capacity(4 * PARTS);
    for b in &bodies {
        digests.extend_from_slice(&crc32c::crc32c(b).to_be_bytes());
    }
    let want = format!("{}-{PARTS}", b64(&crc32c::crc32c(&digests).to_be_bytes()));
    assert_eq!(c.checksum_crc32_c(), Some(want.as_str()));
    assert_eq!(c.checksum_type(), Some(&ChecksumType::Composite));
    assert_eq!(c.e_tag(), Some(multipart_etag(&bodies).as_str()));
    let head = ok(s3.head_object().bucket("huge").key("many").checksum_mode(ChecksumMode::Enabled).send().await, "head");
    assert_eq!((head.checksum_crc32_c(), head.content_length()), (Some(want.as_str()), Some((PARTS * PART_BYTES) as i64)));
    let last = ok(
        s3.get_object().bucket("huge").key("many").part_number(PARTS as i32).checksum_mode(ChecksumMode::Enabled).send().await,
        "last part",
    );
    assert_eq!(last.checksum_crc32_c(), Some(parts[PARTS - 1].1.as_str()));
    assert_eq!(read_body(last).await, bodies[PARTS - 1]);
    // Every part's checksum, 1000 at a time.
    let mut marker = 0;
    let mut seen = 0;
    loop {
        let attrs = ok(
            s3.get_object_attributes()
                .bucket("huge")
                .key("many")
                .object_attributes(ObjectAttributes::ObjectParts)
                .part_number_marker(marker.to_string())
                .send()
                .await,
            "attributes page",
        );
        let op = attrs.object_parts().unwrap();
        assert_eq!(op.total_parts_count(), Some(PARTS as i32));
        for p in op.parts() {
            let n = p.part_number().unwrap() as usize;
            assert_eq!(n, seen + 1);
            assert_eq!(p.checksum_crc32_c(), Some(parts[n - 1].1.as_str()));
            seen += 1;
        }
        if !op.is_truncated().unwrap() {
            break;
        }
        marker = op.next_part_number_marker().unwrap().parse().unwrap();
    }
    assert_eq!(seen, PARTS);
    let got = ok(s3.get_object().bucket("huge").key("many").send().await, "get all");
    assert_eq!(read_body(got).await, bodies.concat());
}
