//! Server-side encryption through the SDK: SSE-S3, SSE-KMS (the built-in
//! key service, `--kms-key`), SSE-C, bucket default encryption; ranged GETs
//! across 64 KiB package boundaries, multipart with SSE-C on every part,
//! copies between keys and modes, and every error answer.

use aws_sdk_s3::types::{
    CompletedMultipartUpload, CompletedPart, ServerSideEncryption, ServerSideEncryptionByDefault,
    ServerSideEncryptionConfiguration, ServerSideEncryptionRule,
};
use aws_sdk_s3::Client;
use tessera_tests::*;

/// Plaintext bytes per sealed package (the server's `PACKAGE_BYTES`).
const PKG: usize = 64 * KIB;
/// Smallest part in these tests (set on the server, not S3's 5 MiB).
const PART: usize = 200 * KIB;

pub struct CustomerKey {
    pub key: String,
    pub md5: String,
}

pub fn customer_key(seed: u8) -> CustomerKey {
    let raw = [seed; 32];
    CustomerKey { key: b64(&raw), md5: b64(&md5_bytes(&raw)) }
}

fn server() -> Server {
    Server::start_with(ServerOpts {
        args: vec!["--kms-key".into(), "testkey-1".into(), "--kms-key".into(), "testkey-2".into()],
        env: vec![("TESSERA_TEST_MIN_PART_BYTES".into(), PART.to_string())],
        ..Default::default()
    })
}

async fn bucket(s3: &Client, name: &str) {
    ok(s3.create_bucket().bucket(name).send().await, "create bucket");
}

async fn get_range(s3: &Client, b: &str, k: &str, range: &str, c: Option<&CustomerKey>) -> Vec<u8> {
    let mut req = s3.get_object().bucket(b).key(k).range(range);
    if let Some(c) = c {
        req = req.sse_customer_algorithm("AES256").sse_customer_key(&c.key).sse_customer_key_md5(&c.md5);
    }
    read_body(ok(req.send().await, range)).await
}

/// Ranges that start, end and straddle package boundaries.
fn ranges(len: usize) -> Vec<(String, std::ops::Range<usize>)> {
    let mut out = vec![
        (format!("bytes=0-{}", len - 1), 0..len),
        ("bytes=0-0".into(), 0..1),
        (format!("bytes={}-{}", PKG - 1, PKG), PKG - 1..PKG + 1),
        (format!("bytes={}-{}", PKG, 2 * PKG - 1), PKG..2 * PKG),
        (format!("bytes={}-{}", PKG - 3, 3 * PKG + 2), PKG - 3..3 * PKG + 3),
        ("bytes=-5".into(), len - 5..len),
        (format!("bytes={}-", len - PKG - 1), len - PKG - 1..len),
    ];
    out.retain(|(_, r)| r.end <= len);
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn sse_s3_reads_back_whole_and_in_ranges() {
    let server = server();
    let s3 = server.client();
    bucket(&s3, "s3mode").await;
    let data = random_bytes(3 * PKG + 777, 1);
    let put = ok(
        s3.put_object().bucket("s3mode").key("k").server_side_encryption(ServerSideEncryption::Aes256).body(bytestream(&data)).send().await,
        "put",
    );
    assert_eq!(put.server_side_encryption(), Some(&ServerSideEncryption::Aes256));
    // SSE-S3 keeps the MD5 ETag (AWS's rule).
    assert_eq!(put.e_tag(), Some(etag(&data).as_str()));
    for (h, r) in ranges(data.len()) {
        assert_eq!(get_range(&s3, "s3mode", "k", &h, None).await, data[r.clone()], "{h}");
    }
    let got = ok(s3.get_object().bucket("s3mode").key("k").send().await, "get");
    assert_eq!(got.server_side_encryption(), Some(&ServerSideEncryption::Aes256));
    assert_eq!(read_body(got).await, data);
    let head = ok(s3.head_object().bucket("s3mode").key("k").send().await, "head");
    assert_eq!(head.content_length(), Some(data.len() as i64), "HEAD reports the plaintext size");
    let list = ok(s3.list_objects_v2().bucket("s3mode").send().await, "list");
    assert_eq!(list.contents()[0].size(), Some(data.len() as i64));
    // Empty and one-byte objects, stored inline.
    for n in [0usize, 1, PKG] {
        let d = random_bytes(n, n as u64);
        ok(s3.put_object().bucket("s3mode").key("small").server_side_encryption(ServerSideEncryption::Aes256).body(bytestream(&d)).send().await, "put small");
        assert_eq!(read_body(ok(s3.get_object().bucket("s3mode").key("small").send().await, "get small")).await, d);
    }
    // A GET names no encryption: those headers belong to writes.
    let r = server.sign(server.raw_request("GET", "/s3mode/k").header("x-amz-server-side-encryption", "AES256"));
    server.send(&r).assert_error(400, "InvalidArgument");
}

#[tokio::test(flavor = "multi_thread")]
async fn bucket_default_encryption_applies_to_new_objects() {
    let server = server();
    let s3 = server.client();
    bucket(&s3, "dflt").await;
    assert_s3_error(s3.get_bucket_encryption().bucket("dflt").send().await, 404, "ServerSideEncryptionConfigurationNotFoundError");
    ok(s3.put_object().bucket("dflt").key("before").body(bytestream(b"plain")).send().await, "put before");
    let rule = |algo: ServerSideEncryption, key: Option<&str>| {
        let by_default = ServerSideEncryptionByDefault::builder().sse_algorithm(algo).set_kms_master_key_id(key.map(str::to_string)).build().unwrap();
        ServerSideEncryptionConfiguration::builder()
            .rules(ServerSideEncryptionRule::builder().apply_server_side_encryption_by_default(by_default).build())
            .build()
            .unwrap()
    };
    ok(s3.put_bucket_encryption().bucket("dflt").server_side_encryption_configuration(rule(ServerSideEncryption::Aes256, None)).send().await, "put enc");
    let got = ok(s3.get_bucket_encryption().bucket("dflt").send().await, "get enc");
    let r = &got.server_side_encryption_configuration().unwrap().rules()[0];
    assert_eq!(r.apply_server_side_encryption_by_default().unwrap().sse_algorithm(), &ServerSideEncryption::Aes256);
    let data = random_bytes(2 * PKG + 3, 2);
    let put = ok(s3.put_object().bucket("dflt").key("after").body(bytestream(&data)).send().await, "put after");
    assert_eq!(put.server_side_encryption(), Some(&ServerSideEncryption::Aes256));
    let head = ok(s3.head_object().bucket("dflt").key("before").send().await, "head before");
    assert_eq!(head.server_side_encryption(), None, "objects written before stay as they are");
    assert_eq!(read_body(ok(s3.get_object().bucket("dflt").key("after").send().await, "get")).await, data);

    // KMS default with a key of the key service.
    ok(s3.put_bucket_encryption().bucket("dflt").server_side_encryption_configuration(rule(ServerSideEncryption::AwsKms, Some("testkey-1"))).send().await, "put kms");
    let put = ok(s3.put_object().bucket("dflt").key("kms").body(bytestream(&data)).send().await, "put kms obj");
    assert_eq!(put.server_side_encryption(), Some(&ServerSideEncryption::AwsKms));
    assert_eq!(put.ssekms_key_id(), Some("testkey-1"));
    let got = ok(s3.get_object().bucket("dflt").key("kms").send().await, "get kms obj");
    assert_eq!(got.ssekms_key_id(), Some("testkey-1"));
    assert_eq!(read_body(got).await, data);

    ok(s3.delete_bucket_encryption().bucket("dflt").send().await, "delete enc");
    assert_s3_error(s3.get_bucket_encryption().bucket("dflt").send().await, 404, "ServerSideEncryptionConfigurationNotFoundError");
    let put = ok(s3.put_object().bucket("dflt").key("plain-again").body(bytestream(b"x")).send().await, "put");
    assert_eq!(put.server_side_encryption(), None);
    // A malformed configuration.
    let xml = &b"<ServerSideEncryptionConfiguration><Rule><ApplyServerSideEncryptionByDefault><SSEAlgorithm>AES128</SSEAlgorithm></ApplyServerSideEncryptionByDefault></Rule></ServerSideEncryptionConfiguration>"[..];
    let bad = server.sign(server.raw_request("PUT", "/dflt?encryption").header("content-md5", &content_md5(xml)).body(xml));
    server.send(&bad).assert_error(400, "InvalidArgument");
}

#[tokio::test(flavor = "multi_thread")]
async fn sse_kms_uses_named_keys_and_refuses_unknown_ones() {
    let server = server();
    let s3 = server.client();
    bucket(&s3, "kms").await;
    let data = random_bytes(5 * PKG + 1, 3);
    let put = ok(
        s3.put_object().bucket("kms").key("k").server_side_encryption(ServerSideEncryption::AwsKms).ssekms_key_id("testkey-2").body(bytestream(&data)).send().await,
        "put",
    );
    assert_eq!(put.ssekms_key_id(), Some("testkey-2"));
    assert_ne!(put.e_tag(), Some(etag(&data).as_str()), "an SSE-KMS ETag is not the plaintext's MD5");
    for (h, r) in ranges(data.len()) {
        assert_eq!(get_range(&s3, "kms", "k", &h, None).await, data[r.clone()], "{h}");
    }
    let head = ok(s3.head_object().bucket("kms").key("k").send().await, "head");
    assert_eq!((head.server_side_encryption(), head.ssekms_key_id()), (Some(&ServerSideEncryption::AwsKms), Some("testkey-2")));
    assert_eq!(head.e_tag(), put.e_tag());
    let cases: [(&str, Vec<(&str, &str)>); 5] = [
        ("unknown key", vec![("x-amz-server-side-encryption", "aws:kms"), ("x-amz-server-side-encryption-aws-kms-key-id", "nope")]),
        ("no key id, no bucket default", vec![("x-amz-server-side-encryption", "aws:kms")]),
        ("key id without aws:kms", vec![("x-amz-server-side-encryption-aws-kms-key-id", "testkey-1")]),
        ("AES256 with a key id", vec![("x-amz-server-side-encryption", "AES256"), ("x-amz-server-side-encryption-aws-kms-key-id", "testkey-1")]),
        ("unknown algorithm", vec![("x-amz-server-side-encryption", "aes:kms")]),
    ];
    for (what, headers) in cases {
        let mut r = server.raw_request("PUT", "/kms/bad").body(&b"data"[..]);
        for (n, v) in headers {
            r = r.header(n, v);
        }
        let resp = server.send(&server.sign(r));
        assert_eq!((resp.status, resp.error_code().as_deref()), (400, Some("InvalidArgument")), "{what}");
    }
    // The encryption context is bound to the data key, and echoed.
    let ctx = b64(br#"{"app":"x"}"#);
    let r = server.sign(
        server.raw_request("PUT", "/kms/ctx").header("x-amz-server-side-encryption", "aws:kms")
            .header("x-amz-server-side-encryption-aws-kms-key-id", "testkey-1")
            .header("x-amz-server-side-encryption-context", &ctx).body(&b"hello"[..]),
    );
    let resp = server.send(&r);
    assert_eq!(resp.status, 200, "{}", resp.body_text());
    assert_eq!(resp.header("x-amz-server-side-encryption-context"), Some(ctx.as_str()));
    assert_eq!(read_body(ok(s3.get_object().bucket("kms").key("ctx").send().await, "get ctx")).await, b"hello");
}

#[tokio::test(flavor = "multi_thread")]
async fn sse_c_needs_the_key_for_every_read() {
    let server = server();
    let s3 = server.client();
    bucket(&s3, "ssec").await;
    let (a, b) = (customer_key(1), customer_key(2));
    let data = random_bytes(4 * PKG + 10, 4);
    let put = ok(
        s3.put_object().bucket("ssec").key("k").sse_customer_algorithm("AES256").sse_customer_key(&a.key).sse_customer_key_md5(&a.md5).body(bytestream(&data)).send().await,
        "put",
    );
    assert_eq!(put.sse_customer_key_md5(), Some(a.md5.as_str()));
    assert_ne!(put.e_tag(), Some(etag(&data).as_str()), "an SSE-C ETag is not the plaintext's MD5");
    // Without the key: 400, GET and HEAD; with another key: 400.
    assert_s3_error(s3.get_object().bucket("ssec").key("k").send().await, 400, "InvalidRequest");
    assert_status(s3.head_object().bucket("ssec").key("k").send().await, 400);
    assert_s3_error(
        s3.get_object().bucket("ssec").key("k").sse_customer_algorithm("AES256").sse_customer_key(&b.key).sse_customer_key_md5(&b.md5).send().await,
        400,
        "InvalidRequest",
    );
    let head = ok(
        s3.head_object().bucket("ssec").key("k").sse_customer_algorithm("AES256").sse_customer_key(&a.key).sse_customer_key_md5(&a.md5).send().await,
        "head",
    );
    assert_eq!(head.content_length(), Some(data.len() as i64));
    assert_eq!(head.sse_customer_algorithm(), Some("AES256"));
    for (h, r) in ranges(data.len()) {
        assert_eq!(get_range(&s3, "ssec", "k", &h, Some(&a)).await, data[r.clone()], "{h}");
    }
    // Malformed key headers on PUT: 400 InvalidArgument, never echoing the key.
    let ca = "x-amz-server-side-encryption-customer-algorithm";
    let ck = "x-amz-server-side-encryption-customer-key";
    let cm = "x-amz-server-side-encryption-customer-key-md5";
    let cases: [(&str, Vec<(&str, &str)>); 5] = [
        ("wrong md5", vec![(ca, "AES256"), (ck, &a.key), (cm, "AAAAAAAAAAAAAAAAAAAAAA==")]),
        ("no md5", vec![(ca, "AES256"), (ck, &a.key)]),
        ("no key", vec![(ca, "AES256")]),
        ("no algorithm", vec![(ck, &a.key), (cm, &a.md5)]),
        ("with SSE-S3", vec![("x-amz-server-side-encryption", "AES256"), (ca, "AES256"), (ck, &a.key), (cm, &a.md5)]),
    ];
    for (what, headers) in cases {
        let mut r = server.raw_request("PUT", "/ssec/bad").body(&b"data"[..]);
        for (n, v) in headers {
            r = r.header(n, v);
        }
        let resp = server.send(&server.sign(r));
        assert_eq!((resp.status, resp.error_code().as_deref()), (400, Some("InvalidArgument")), "{what}");
        assert!(!resp.body_text().contains(&a.key), "{what}: the key is echoed");
    }
    // SSE-C headers on an object that is not SSE-C: 400.
    ok(s3.put_object().bucket("ssec").key("plain").body(bytestream(b"p")).send().await, "put plain");
    assert_s3_error(
        s3.get_object().bucket("ssec").key("plain").sse_customer_algorithm("AES256").sse_customer_key(&a.key).sse_customer_key_md5(&a.md5).send().await,
        400,
        "InvalidRequest",
    );
    // GetObjectAttributes needs the key too.
    let attrs = |c: Option<&CustomerKey>| {
        let mut r = s3.get_object_attributes().bucket("ssec").key("k").object_attributes(aws_sdk_s3::types::ObjectAttributes::ObjectSize);
        if let Some(c) = c {
            r = r.sse_customer_algorithm("AES256").sse_customer_key(&c.key).sse_customer_key_md5(&c.md5);
        }
        r.send()
    };
    assert_status(attrs(None).await, 400);
    assert_eq!(ok(attrs(Some(&a)).await, "attrs").object_size(), Some(data.len() as i64));
}

#[tokio::test(flavor = "multi_thread")]
async fn copies_re_encrypt_between_keys_and_modes() {
    let server = server();
    let s3 = server.client();
    bucket(&s3, "cpy").await;
    let (a, b) = (customer_key(7), customer_key(8));
    let data = random_bytes(3 * PKG + 5, 5);
    ok(s3.put_object().bucket("cpy").key("c-a").sse_customer_algorithm("AES256").sse_customer_key(&a.key).sse_customer_key_md5(&a.md5).body(bytestream(&data)).send().await, "put");
    let copy = || s3.copy_object().bucket("cpy").copy_source("cpy/c-a");
    // The source's key is needed (and must be right).
    assert_s3_error(copy().key("x").send().await, 400, "InvalidRequest");
    assert_s3_error(
        copy().key("x").copy_source_sse_customer_algorithm("AES256").copy_source_sse_customer_key(&b.key).copy_source_sse_customer_key_md5(&b.md5).send().await,
        400,
        "InvalidRequest",
    );
    let src = |r: aws_sdk_s3::operation::copy_object::builders::CopyObjectFluentBuilder| {
        r.copy_source_sse_customer_algorithm("AES256").copy_source_sse_customer_key(&a.key).copy_source_sse_customer_key_md5(&a.md5)
    };
    // SSE-C(a) -> SSE-C(b)
    let out = ok(src(copy().key("c-b")).sse_customer_algorithm("AES256").sse_customer_key(&b.key).sse_customer_key_md5(&b.md5).send().await, "copy c->c");
    assert_eq!(out.sse_customer_key_md5(), Some(b.md5.as_str()));
    assert_eq!(get_range(&s3, "cpy", "c-b", "bytes=0-", Some(&b)).await, data);
    assert_s3_error(s3.get_object().bucket("cpy").key("c-b").sse_customer_algorithm("AES256").sse_customer_key(&a.key).sse_customer_key_md5(&a.md5).send().await, 400, "InvalidRequest");
    // SSE-C -> SSE-KMS, SSE-C -> plain, plain -> SSE-S3.
    let out = ok(src(copy().key("c-kms")).server_side_encryption(ServerSideEncryption::AwsKms).ssekms_key_id("testkey-1").send().await, "copy c->kms");
    assert_eq!(out.ssekms_key_id(), Some("testkey-1"));
    assert_eq!(get_range(&s3, "cpy", "c-kms", "bytes=0-", None).await, data);
    ok(src(copy().key("c-plain")).send().await, "copy c->plain");
    let plain = ok(s3.get_object().bucket("cpy").key("c-plain").send().await, "get plain");
    assert_eq!(plain.server_side_encryption(), None);
    assert_eq!(plain.e_tag(), Some(etag(&data).as_str()), "a plain copy's ETag is its MD5 again");
    assert_eq!(read_body(plain).await, data);
    let out = ok(s3.copy_object().bucket("cpy").copy_source("cpy/c-plain").key("s3").server_side_encryption(ServerSideEncryption::Aes256).send().await, "copy plain->s3");
    assert_eq!(out.server_side_encryption(), Some(&ServerSideEncryption::Aes256));
    assert_eq!(get_range(&s3, "cpy", "s3", "bytes=1-", None).await, data[1..]);
    // An object copied onto itself to change its encryption is allowed.
    ok(s3.copy_object().bucket("cpy").copy_source("cpy/s3").key("s3").server_side_encryption(ServerSideEncryption::AwsKms).ssekms_key_id("testkey-2").send().await, "copy onto itself");
    let head = ok(s3.head_object().bucket("cpy").key("s3").send().await, "head");
    assert_eq!(head.ssekms_key_id(), Some("testkey-2"));
}

#[tokio::test(flavor = "multi_thread")]
async fn multipart_with_sse_c_on_every_part() {
    let server = server();
    let s3 = server.client();
    bucket(&s3, "mpu").await;
    let (a, b) = (customer_key(3), customer_key(4));
    let up = ok(
        s3.create_multipart_upload().bucket("mpu").key("k").sse_customer_algorithm("AES256").sse_customer_key(&a.key).sse_customer_key_md5(&a.md5).send().await,
        "create",
    );
    assert_eq!(up.sse_customer_key_md5(), Some(a.md5.as_str()));
    let id = up.upload_id().unwrap().to_string();
    let parts: Vec<Vec<u8>> = vec![random_bytes(PART + 3, 10), random_bytes(PART + PKG, 11), random_bytes(PKG / 2, 12)];
    let part = |n: i32, data: &[u8]| s3.upload_part().bucket("mpu").key("k").upload_id(&id).part_number(n).body(bytestream(data));
    // A part without the key, or with another key: 400.
    assert_s3_error(part(1, &parts[0]).send().await, 400, "InvalidRequest");
    assert_s3_error(part(1, &parts[0]).sse_customer_algorithm("AES256").sse_customer_key(&b.key).sse_customer_key_md5(&b.md5).send().await, 400, "InvalidRequest");
    let mut done = Vec::new();
    for (i, p) in parts.iter().enumerate() {
        let n = i as i32 + 1;
        // Part 2 is uploaded twice: its second upload gets a fresh key (salt).
        for _ in 0..if n == 2 { 2 } else { 1 } {
            let out = ok(part(n, p).sse_customer_algorithm("AES256").sse_customer_key(&a.key).sse_customer_key_md5(&a.md5).send().await, "part");
            assert_eq!(out.sse_customer_key_md5(), Some(a.md5.as_str()));
            if done.len() < n as usize {
                done.push(CompletedPart::builder().part_number(n).e_tag(out.e_tag().unwrap()).build());
            } else {
                done[i] = CompletedPart::builder().part_number(n).e_tag(out.e_tag().unwrap()).build();
            }
        }
    }
    let complete = || {
        s3.complete_multipart_upload().bucket("mpu").key("k").upload_id(&id).multipart_upload(CompletedMultipartUpload::builder().set_parts(Some(done.clone())).build())
    };
    assert_status(complete().send().await, 400);
    let out = ok(complete().sse_customer_algorithm("AES256").sse_customer_key(&a.key).sse_customer_key_md5(&a.md5).send().await, "complete");
    assert!(out.e_tag().unwrap().ends_with("-3\""));
    let whole: Vec<u8> = parts.concat();
    let head = ok(s3.head_object().bucket("mpu").key("k").sse_customer_algorithm("AES256").sse_customer_key(&a.key).sse_customer_key_md5(&a.md5).send().await, "head");
    assert_eq!(head.content_length(), Some(whole.len() as i64));
    let p1 = parts[0].len();
    for (h, r) in ranges(whole.len()).into_iter().chain([
        (format!("bytes={}-{}", p1 - 2, p1 + 2), p1 - 2..p1 + 3),
        (format!("bytes={}-{}", p1 - PKG, p1 + PKG + 9), p1 - PKG..p1 + PKG + 10),
    ]) {
        assert_eq!(get_range(&s3, "mpu", "k", &h, Some(&a)).await, whole[r.clone()], "{h}");
    }
    // partNumber reads the part's plaintext.
    let p2 = ok(
        s3.get_object().bucket("mpu").key("k").part_number(2).sse_customer_algorithm("AES256").sse_customer_key(&a.key).sse_customer_key_md5(&a.md5).send().await,
        "part 2",
    );
    assert_eq!(read_body(p2).await, parts[1]);
    // A part the object does not have is InvalidPart, with or without the
    // key (s3-tests' test_multipart_sse_c_get_part asks without it).
    for with_key in [false, true] {
        let mut r = server.raw_request("GET", "/mpu/k?partNumber=4");
        if with_key {
            r = r.header("x-amz-server-side-encryption-customer-algorithm", "AES256").header("x-amz-server-side-encryption-customer-key", &a.key).header("x-amz-server-side-encryption-customer-key-md5", &a.md5);
        }
        let resp = server.send(&server.sign(r));
        assert_eq!((resp.status, resp.error_code().as_deref()), (400, Some("InvalidPart")), "with key: {with_key}");
    }
    // An existing part without the key still needs it.
    let resp = server.send(&server.sign(server.raw_request("GET", "/mpu/k?partNumber=1")));
    assert_eq!((resp.status, resp.error_code().as_deref()), (400, Some("InvalidRequest")));

    // UploadPartCopy from the SSE-C object into an SSE-KMS upload.
    let up = ok(s3.create_multipart_upload().bucket("mpu").key("kms").server_side_encryption(ServerSideEncryption::AwsKms).ssekms_key_id("testkey-1").send().await, "create kms");
    let id2 = up.upload_id().unwrap().to_string();
    let copied = ok(
        s3.upload_part_copy().bucket("mpu").key("kms").upload_id(&id2).part_number(1).copy_source("mpu/k").copy_source_range(format!("bytes=5-{}", PART + 9))
            .copy_source_sse_customer_algorithm("AES256").copy_source_sse_customer_key(&a.key).copy_source_sse_customer_key_md5(&a.md5).send().await,
        "part copy",
    );
    let tail = ok(s3.upload_part().bucket("mpu").key("kms").upload_id(&id2).part_number(2).body(bytestream(b"tail")).send().await, "part 2");
    let done2 = vec![
        CompletedPart::builder().part_number(1).e_tag(copied.copy_part_result().unwrap().e_tag().unwrap()).build(),
        CompletedPart::builder().part_number(2).e_tag(tail.e_tag().unwrap()).build(),
    ];
    let out = ok(s3.complete_multipart_upload().bucket("mpu").key("kms").upload_id(&id2).multipart_upload(CompletedMultipartUpload::builder().set_parts(Some(done2)).build()).send().await, "complete kms");
    assert_eq!(out.ssekms_key_id(), Some("testkey-1"));
    let mut want = whole[5..PART + 10].to_vec();
    want.extend_from_slice(b"tail");
    assert_eq!(get_range(&s3, "mpu", "kms", "bytes=0-", None).await, want);
}
