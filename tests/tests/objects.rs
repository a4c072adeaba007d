//! Object operations: put (Content-MD5, metadata, headers), get (ranges,
//! conditionals, overrides), head, delete, errors, big and empty objects.

use std::time::{Duration, SystemTime};

use aws_sdk_s3::primitives::DateTime;
use aws_sdk_s3::types::{Delete, ObjectIdentifier};
use tessera_tests::sign::Payload;
use tessera_tests::*;

#[tokio::test(flavor = "multi_thread")]
async fn put_object_checks_content_md5() {
    let (_server, s3) = with_bucket("md5").await;
    let data = random_bytes(10_000, 1);

    let out = ok(
        s3.put_object()
            .bucket("md5")
            .key("right")
            .content_md5(content_md5(&data))
            .body(bytestream(&data))
            .send()
            .await,
        "put with right Content-MD5",
    );
    assert_eq!(out.e_tag(), Some(etag(&data).as_str()));

    let wrong = content_md5(b"something else");
    assert_s3_error(
        s3.put_object()
            .bucket("md5")
            .key("wrong")
            .content_md5(wrong)
            .body(bytestream(&data))
            .send()
            .await,
        400,
        "BadDigest",
    );
    assert_status(s3.head_object().bucket("md5").key("wrong").send().await, 404);

    for malformed in ["not base64!", "AAAA", &b64(&[0u8; 15])] {
        let f = sdk_failure(
            s3.put_object()
                .bucket("md5")
                .key("malformed")
                .content_md5(malformed)
                .body(bytestream(&data))
                .send()
                .await,
        );
        assert_eq!(
            (f.status, f.code.as_deref()),
            (Some(400), Some("InvalidDigest")),
            "Content-MD5 {malformed:?}: {f:#?}"
        );
    }
    assert_status(s3.head_object().bucket("md5").key("malformed").send().await, 404);

    // A wrong digest must not replace existing content either.
    assert_s3_error(
        s3.put_object()
            .bucket("md5")
            .key("right")
            .content_md5(content_md5(b"zzz"))
            .body(bytestream(b"new content"))
            .send()
            .await,
        400,
        "BadDigest",
    );
    let body = read_body(ok(s3.get_object().bucket("md5").key("right").send().await, "get")).await;
    assert_eq!(md5_hex(&body), md5_hex(&data));
}

const EXPIRES_SECS: i64 = 2_114_380_800; // 2037-01-01T00:00:00Z
const EXPIRES_HTTP: &str = "Thu, 01 Jan 2037 00:00:00 GMT";

/// Concurrent large bodies are hashed side by side in the reactors' MD5
/// lanes (`md5x`): every ETag is still its own body's MD5, a wrong
/// Content-MD5 among them is still refused, and a body cut off mid-way
/// gives its lane back without disturbing the others.
#[tokio::test(flavor = "multi_thread")]
async fn concurrent_large_bodies_keep_their_own_md5() {
    let (server, s3) = with_bucket("lanes").await;
    // More bodies than a pool has lanes per core (32), sizes on and off
    // the 64-byte block and the 256 KiB flush boundaries.
    let sizes: Vec<usize> = (0..40usize)
        .map(|i| match i % 5 {
            0 => 128 * 1024,
            1 => 256 * 1024 + 1,
            2 => 1024 * 1024 - 63,
            3 => 3 * 1024 * 1024 + 7,
            _ => 200_000 + i * 997,
        })
        .collect();
    let mut tasks = Vec::new();
    for (i, size) in sizes.into_iter().enumerate() {
        let s3 = s3.clone();
        tasks.push(tokio::spawn(async move {
            let data = random_bytes(size, 1000 + i as u64);
            let key = format!("k{i}");
            if i % 13 == 7 {
                let wrong = content_md5(b"not this body");
                let r = s3.put_object().bucket("lanes").key(&key).content_md5(wrong).body(bytestream(&data)).send().await;
                assert_s3_error(r, 400, "BadDigest");
                return;
            }
            let out = ok(
                s3.put_object().bucket("lanes").key(&key).content_md5(content_md5(&data)).body(bytestream(&data)).send().await,
                "put",
            );
            assert_eq!(out.e_tag(), Some(etag(&data).as_str()), "{key} ({size} B)");
            let got = read_body(ok(s3.get_object().bucket("lanes").key(&key).send().await, "get")).await;
            assert!(got == data, "{key}: body differs");
        }));
    }
    // A client that announces 2 MiB and disconnects after 300 KiB.
    let req = server
        .raw_request("PUT", "/lanes/cut")
        .header("Content-Length", "2097152")
        .sign_payload(&server.access_key, &server.secret_key, SystemTime::now(), Payload::Unsigned);
    let addr = server.addr();
    let cut = std::thread::spawn(move || {
        let mut c = RawConn::connect(addr);
        let _ = c.send(&req.head_bytes());
        let _ = c.send(&vec![7u8; 300 * 1024]);
        std::thread::sleep(Duration::from_millis(300));
        c.reset();
    });
    for t in tasks {
        t.await.expect("task");
    }
    cut.join().expect("cut");
    assert_status(s3.head_object().bucket("lanes").key("cut").send().await, 404);
    // The lanes still work after all of that.
    let data = random_bytes(5 * 1024 * 1024 + 3, 77);
    let out = ok(s3.put_object().bucket("lanes").key("after").body(bytestream(&data)).send().await, "put after");
    assert_eq!(out.e_tag(), Some(etag(&data).as_str()));
    // And the bodies above really went through SIMD lanes (on a CPU with
    // AVX2 or AVX-512; published every second).
    let simd_cpu = std::arch::is_x86_feature_detected!("avx2");
    if simd_cpu {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let m = server.scrape_metrics();
            let simd = metric_total(&m, "tessera_md5_simd_blocks_total");
            if simd > 0.0 {
                // Each SIMD step has 8 or 16 slots, at least 2 of them busy.
                let slots = metric_total(&m, "tessera_md5_simd_slots_total");
                assert!(slots >= simd && simd * 8.0 >= slots, "{simd} SIMD blocks in {slots} slots");
                break;
            }
            assert!(std::time::Instant::now() < deadline, "no MD5 block was hashed in a SIMD lane");
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// Small bodies (from 2 KiB) take lanes of their own size and are hashed
/// at their end, together with the others that ended in the same turn of
/// the reactor: each ETag is still its own body's MD5, and a wrong
/// Content-MD5 among them is refused without touching the others.
#[tokio::test(flavor = "multi_thread")]
async fn concurrent_small_bodies_keep_their_own_md5() {
    let (_server, s3) = with_bucket("small-lanes").await;
    let sizes = [1, 2047, 2048, 4096, 4103, 8192 + 63, 65_535, 100_000];
    let mut tasks = Vec::new();
    for i in 0..64usize {
        let s3 = s3.clone();
        let size = sizes[i % sizes.len()];
        tasks.push(tokio::spawn(async move {
            let data = random_bytes(size, 5000 + i as u64);
            let key = format!("s{i}");
            if i % 9 == 4 {
                let r = s3.put_object().bucket("small-lanes").key(&key).content_md5(content_md5(b"other")).body(bytestream(&data)).send().await;
                assert_s3_error(r, 400, "BadDigest");
                return;
            }
            let out = ok(s3.put_object().bucket("small-lanes").key(&key).body(bytestream(&data)).send().await, "put");
            assert_eq!(out.e_tag(), Some(etag(&data).as_str()), "{key} ({size} B)");
            let got = read_body(ok(s3.get_object().bucket("small-lanes").key(&key).send().await, "get")).await;
            assert!(got == data, "{key}: body differs");
        }));
    }
    for t in tasks {
        t.await.expect("task");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn metadata_and_standard_headers_round_trip_on_get_and_head() {
    let (_server, s3) = with_bucket("meta").await;
    let data = b"{\"compressed\": false}".to_vec();
    ok(
        s3.put_object()
            .bucket("meta")
            .key("doc.json")
            .body(bytestream(&data))
            .metadata("color", "blue")
            .metadata("multi-word", "Hello World 42")
            .metadata("empty", "")
            .content_type("application/json; charset=utf-8")
            .content_encoding("gzip")
            .content_disposition("attachment; filename=\"doc.json\"")
            .content_language("en-GB")
            .cache_control("max-age=3600, must-revalidate")
            .expires(DateTime::from_secs(EXPIRES_SECS))
            .send()
            .await,
        "put with headers",
    );

    let get = ok(s3.get_object().bucket("meta").key("doc.json").send().await, "get");
    let head = ok(s3.head_object().bucket("meta").key("doc.json").send().await, "head");
    macro_rules! both {
        ($field:ident, $want:expr) => {
            assert_eq!(get.$field(), $want, "GET {}", stringify!($field));
            assert_eq!(head.$field(), $want, "HEAD {}", stringify!($field));
        };
    }
    both!(content_type, Some("application/json; charset=utf-8"));
    // aws-chunked is transfer framing: it must not be stored as an encoding.
    both!(content_encoding, Some("gzip"));
    both!(content_disposition, Some("attachment; filename=\"doc.json\""));
    both!(content_language, Some("en-GB"));
    both!(cache_control, Some("max-age=3600, must-revalidate"));
    both!(expires_string, Some(EXPIRES_HTTP));
    both!(content_length, Some(data.len() as i64));
    both!(e_tag, Some(etag(&data).as_str()));
    for out_meta in [get.metadata(), head.metadata()] {
        let m = out_meta.expect("metadata");
        assert_eq!(m.get("color").map(String::as_str), Some("blue"), "{m:?}");
        assert_eq!(m.get("multi-word").map(String::as_str), Some("Hello World 42"), "{m:?}");
        assert_eq!(m.get("empty").map(String::as_str), Some(""), "{m:?}");
        assert_eq!(m.len(), 3, "no extra user metadata: {m:?}");
    }
    assert_eq!(read_body(get).await, data);
}

#[tokio::test(flavor = "multi_thread")]
async fn default_content_type_and_etag_is_quoted_md5() {
    let (_server, s3) = with_bucket("etags").await;
    for (i, len) in [1usize, 100, 65_536, 1_000_001].into_iter().enumerate() {
        let data = random_bytes(len, 100 + i as u64);
        let key = format!("obj-{len}");
        let put = ok(
            s3.put_object()
                .bucket("etags")
                .key(&key)
                .body(bytestream(&data))
                .send()
                .await,
            "put",
        );
        let want = etag(&data);
        assert_eq!(put.e_tag(), Some(want.as_str()), "PUT ETag of {len} bytes");
        let head = ok(s3.head_object().bucket("etags").key(&key).send().await, "head");
        assert_eq!(head.e_tag(), Some(want.as_str()), "HEAD ETag");
        assert_eq!(head.content_length(), Some(len as i64));
        assert!(
            head.content_type().is_some_and(|t| !t.is_empty()),
            "a default Content-Type is returned"
        );
        let get = ok(s3.get_object().bucket("etags").key(&key).send().await, "get");
        assert_eq!(get.e_tag(), Some(want.as_str()), "GET ETag");
        assert_eq!(read_body(get).await, data);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn get_object_single_ranges() {
    let (server, s3) = with_bucket("ranges").await;
    let data = random_bytes(1000, 7);
    ok(
        s3.put_object()
            .bucket("ranges")
            .key("r")
            .body(bytestream(&data))
            .send()
            .await,
        "put",
    );

    let cases: &[(&str, usize, usize)] = &[
        ("bytes=0-9", 0, 9),
        ("bytes=10-10", 10, 10),
        ("bytes=990-", 990, 999),
        ("bytes=-10", 990, 999),
        ("bytes=-5000", 0, 999),
        ("bytes=995-2000", 995, 999),
        ("bytes=0-", 0, 999),
    ];
    for (range, first, last) in cases {
        let out = ok(
            s3.get_object().bucket("ranges").key("r").range(*range).send().await,
            range,
        );
        assert_eq!(
            out.content_range(),
            Some(format!("bytes {first}-{last}/1000").as_str()),
            "{range}"
        );
        assert_eq!(out.content_length(), Some((last - first + 1) as i64), "{range}");
        assert_eq!(read_body(out).await, &data[*first..=*last], "{range}");
    }
    for range in ["bytes=1000-", "bytes=1000-1001", "bytes=5000-6000"] {
        let f = sdk_failure(s3.get_object().bucket("ranges").key("r").range(range).send().await);
        assert_eq!(
            (f.status, f.code.as_deref()),
            (Some(416), Some("InvalidRange")),
            "{range}: {f:#?}"
        );
    }

    // The status line is 206 and Content-Range is set.
    let resp = server.send(&server.sign(server.raw_request("GET", "/ranges/r").header("Range", "bytes=100-199")));
    assert_eq!(resp.status, 206, "{resp:?}");
    assert_eq!(resp.header("content-range"), Some("bytes 100-199/1000"));
    assert_eq!(resp.body, &data[100..200]);
    let resp = server.send(&server.sign(server.raw_request("GET", "/ranges/r")));
    assert_eq!(resp.status, 200);
    assert_eq!(resp.body, data);
}

#[tokio::test(flavor = "multi_thread")]
async fn conditional_get_and_head() {
    let (_server, s3) = with_bucket("cond").await;
    let data = random_bytes(5000, 9);
    ok(
        s3.put_object()
            .bucket("cond")
            .key("c")
            .body(bytestream(&data))
            .send()
            .await,
        "put",
    );
    let head = ok(s3.head_object().bucket("cond").key("c").send().await, "head");
    let tag = head.e_tag().expect("etag").to_string();
    let modified = *head.last_modified().expect("Last-Modified");
    let hour_before = DateTime::from_secs(modified.secs() - 3600);
    let hour_after = DateTime::from_secs(modified.secs() + 3600);
    let get = || s3.get_object().bucket("cond").key("c");
    let headq = || s3.head_object().bucket("cond").key("c");

    // If-Match
    assert_eq!(
        read_body(ok(get().if_match(&tag).send().await, "If-Match right")).await,
        data
    );
    assert_s3_error(
        get().if_match("\"0123456789abcdef0123456789abcdef\"").send().await,
        412,
        "PreconditionFailed",
    );
    assert_status(
        headq().if_match("\"0123456789abcdef0123456789abcdef\"").send().await,
        412,
    );
    // If-None-Match
    assert_status(get().if_none_match(&tag).send().await, 304);
    assert_status(headq().if_none_match(&tag).send().await, 304);
    ok(
        get().if_none_match("\"0123456789abcdef0123456789abcdef\"").send().await,
        "If-None-Match other",
    );
    // If-Modified-Since
    assert_status(get().if_modified_since(modified).send().await, 304);
    assert_status(get().if_modified_since(hour_after).send().await, 304);
    assert_status(headq().if_modified_since(modified).send().await, 304);
    assert_eq!(
        read_body(ok(get().if_modified_since(hour_before).send().await, "IMS before")).await,
        data
    );
    // If-Unmodified-Since
    assert_s3_error(
        get().if_unmodified_since(hour_before).send().await,
        412,
        "PreconditionFailed",
    );
    assert_status(headq().if_unmodified_since(hour_before).send().await, 412);
    ok(
        get().if_unmodified_since(modified).send().await,
        "IUS equal to Last-Modified",
    );
    ok(get().if_unmodified_since(hour_after).send().await, "IUS after");
    // RFC 7232 precedence: If-Match true wins over If-Unmodified-Since false;
    // If-None-Match false wins over If-Modified-Since.
    ok(
        get().if_match(&tag).if_unmodified_since(hour_before).send().await,
        "If-Match + IUS",
    );
    assert_status(
        get().if_none_match(&tag).if_modified_since(hour_before).send().await,
        304,
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn response_header_overrides() {
    let (_server, s3) = with_bucket("over").await;
    ok(
        s3.put_object()
            .bucket("over")
            .key("o")
            .content_type("text/plain")
            .body(bytestream(b"override me"))
            .send()
            .await,
        "put",
    );
    let out = ok(
        s3.get_object()
            .bucket("over")
            .key("o")
            .response_content_type("application/x-overridden")
            .response_content_disposition("attachment; filename=\"o.bin\"")
            .response_cache_control("no-store")
            .response_content_language("fr")
            .response_content_encoding("identity")
            .response_expires(DateTime::from_secs(EXPIRES_SECS))
            .send()
            .await,
        "get with overrides",
    );
    assert_eq!(out.content_type(), Some("application/x-overridden"));
    assert_eq!(out.content_disposition(), Some("attachment; filename=\"o.bin\""));
    assert_eq!(out.cache_control(), Some("no-store"));
    assert_eq!(out.content_language(), Some("fr"));
    assert_eq!(out.content_encoding(), Some("identity"));
    assert_eq!(out.expires_string(), Some(EXPIRES_HTTP));
    assert_eq!(read_body(out).await, b"override me");
    // Overrides are per response: the stored type is unchanged.
    let head = ok(s3.head_object().bucket("over").key("o").send().await, "head");
    assert_eq!(head.content_type(), Some("text/plain"));
}

#[tokio::test(flavor = "multi_thread")]
async fn head_object_reports_size_type_and_last_modified() {
    let (_server, s3) = with_bucket("heads").await;
    let before = SystemTime::now() - Duration::from_secs(5);
    let data = random_bytes(12_345, 3);
    ok(
        s3.put_object()
            .bucket("heads")
            .key("h")
            .content_type("image/png")
            .body(bytestream(&data))
            .send()
            .await,
        "put",
    );
    let after = SystemTime::now() + Duration::from_secs(5);
    let head = ok(s3.head_object().bucket("heads").key("h").send().await, "head");
    assert_eq!(head.content_length(), Some(12_345));
    assert_eq!(head.content_type(), Some("image/png"));
    assert_eq!(head.e_tag(), Some(etag(&data).as_str()));
    let lm = SystemTime::try_from(*head.last_modified().expect("Last-Modified")).unwrap();
    assert!(
        lm >= before && lm <= after,
        "Last-Modified {lm:?} is not the time of the PUT"
    );
    assert_status(s3.head_object().bucket("heads").key("missing").send().await, 404);
    assert_status(s3.head_object().bucket("no-such-bucket").key("h").send().await, 404);
}

#[tokio::test(flavor = "multi_thread")]
async fn delete_object_is_idempotent_204() {
    let (server, s3) = with_bucket("del").await;
    ok(
        s3.put_object()
            .bucket("del")
            .key("d")
            .body(bytestream(b"bye"))
            .send()
            .await,
        "put",
    );
    let resp = server.send(&server.sign(server.raw_request("DELETE", "/del/d")));
    assert_eq!(resp.status, 204, "delete existing: {resp:?}");
    assert_s3_error(s3.get_object().bucket("del").key("d").send().await, 404, "NoSuchKey");
    for _ in 0..2 {
        let resp = server.send(&server.sign(server.raw_request("DELETE", "/del/d")));
        assert_eq!(resp.status, 204, "delete missing key: {resp:?}");
    }
    ok(
        s3.delete_object().bucket("del").key("never-existed").send().await,
        "sdk delete missing",
    );
    assert_s3_error(
        s3.delete_object().bucket("no-bucket").key("d").send().await,
        404,
        "NoSuchBucket",
    );
}

fn ids(keys: &[&str], quiet: bool) -> Delete {
    Delete::builder()
        .set_objects(Some(
            keys.iter()
                .map(|k| ObjectIdentifier::builder().key(*k).build().unwrap())
                .collect(),
        ))
        .quiet(quiet)
        .build()
        .unwrap()
}

async fn keys_in(s3: &aws_sdk_s3::Client, bucket: &str) -> Vec<String> {
    let out = ok(s3.list_objects_v2().bucket(bucket).send().await, "list");
    out.contents()
        .iter()
        .map(|o| o.key().unwrap_or("").to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn delete_objects_verbose_and_quiet() {
    let (_server, s3) = with_bucket("multi").await;
    for k in ["a", "b", "c", "d", "e", "f"] {
        ok(
            s3.put_object()
                .bucket("multi")
                .key(k)
                .body(bytestream(k.as_bytes()))
                .send()
                .await,
            "put",
        );
    }
    let out = ok(
        s3.delete_objects()
            .bucket("multi")
            .delete(ids(&["a", "b", "missing-1"], false))
            .send()
            .await,
        "verbose delete",
    );
    let mut deleted: Vec<&str> = out.deleted().iter().map(|d| d.key().unwrap_or("")).collect();
    deleted.sort();
    // S3 reports a missing key as deleted.
    assert_eq!(deleted, vec!["a", "b", "missing-1"], "verbose result lists every key");
    assert!(out.errors().is_empty(), "errors: {:?}", out.errors());
    assert_eq!(keys_in(&s3, "multi").await, vec!["c", "d", "e", "f"]);

    let quiet = ids(&["c", "missing-2", "e"], true);
    let out = ok(
        s3.delete_objects().bucket("multi").delete(quiet).send().await,
        "quiet delete",
    );
    assert!(
        out.deleted().is_empty(),
        "quiet mode lists no successes: {:?}",
        out.deleted()
    );
    assert!(out.errors().is_empty(), "errors: {:?}", out.errors());
    assert_eq!(keys_in(&s3, "multi").await, vec!["d", "f"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn missing_key_and_missing_bucket_errors() {
    let (_server, s3) = with_bucket("exists").await;
    assert_s3_error(
        s3.get_object().bucket("exists").key("nope").send().await,
        404,
        "NoSuchKey",
    );
    assert_s3_error(
        s3.get_object().bucket("does-not-exist").key("nope").send().await,
        404,
        "NoSuchBucket",
    );
    assert_s3_error(
        s3.put_object()
            .bucket("does-not-exist")
            .key("k")
            .body(bytestream(b"x"))
            .send()
            .await,
        404,
        "NoSuchBucket",
    );
    assert_s3_error(
        s3.list_objects_v2().bucket("does-not-exist").send().await,
        404,
        "NoSuchBucket",
    );
    let listed = ok(s3.list_buckets().send().await, "list buckets");
    assert_eq!(
        listed.buckets().len(),
        1,
        "a PUT into a missing bucket must not create it"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn empty_object() {
    let (_server, s3) = with_bucket("empty").await;
    let put = ok(
        s3.put_object()
            .bucket("empty")
            .key("zero")
            .body(bytestream(b""))
            .send()
            .await,
        "put empty",
    );
    assert_eq!(md5_hex(b""), "d41d8cd98f00b204e9800998ecf8427e");
    assert_eq!(put.e_tag(), Some("\"d41d8cd98f00b204e9800998ecf8427e\""));
    let get = ok(s3.get_object().bucket("empty").key("zero").send().await, "get empty");
    assert_eq!(get.content_length(), Some(0));
    assert_eq!(get.e_tag(), Some("\"d41d8cd98f00b204e9800998ecf8427e\""));
    assert!(read_body(get).await.is_empty());
    let head = ok(s3.head_object().bucket("empty").key("zero").send().await, "head empty");
    assert_eq!(head.content_length(), Some(0));
    let listed = ok(s3.list_objects_v2().bucket("empty").send().await, "list");
    assert_eq!(listed.contents().len(), 1);
    assert_eq!(listed.contents()[0].size(), Some(0));
}

#[tokio::test(flavor = "multi_thread")]
async fn overwrite_returns_new_content() {
    let (_server, s3) = with_bucket("over").await;
    let v1 = random_bytes(300_000, 11);
    let v2 = random_bytes(1_234, 12);
    let v3 = random_bytes(2 * MIB + 3, 13);
    for v in [&v1, &v2, &v3, &v2] {
        ok(
            s3.put_object().bucket("over").key("k").body(bytestream(v)).send().await,
            "put",
        );
        let get = ok(s3.get_object().bucket("over").key("k").send().await, "get");
        assert_eq!(get.e_tag(), Some(etag(v).as_str()));
        let body = read_body(get).await;
        assert_eq!(
            (body.len(), md5_hex(&body)),
            (v.len(), md5_hex(v)),
            "overwrite must return the newest content"
        );
    }
    let listed = ok(s3.list_objects_v2().bucket("over").send().await, "list");
    assert_eq!(listed.contents().len(), 1, "overwrites keep one key");
    assert_eq!(listed.contents()[0].size(), Some(v2.len() as i64));
    assert_eq!(listed.contents()[0].e_tag(), Some(etag(&v2).as_str()));
}

#[tokio::test(flavor = "multi_thread")]
async fn put_and_get_100_mib_object_in_one_request() {
    let (_server, s3) = with_bucket("big").await;
    let size = 100 * MIB;
    let data = random_bytes(size, 100);
    let want_md5 = md5_hex(&data);
    let put = ok(
        s3.put_object()
            .bucket("big")
            .key("100mib")
            .body(aws_sdk_s3::primitives::ByteStream::from(data))
            .send()
            .await,
        "put 100 MiB",
    );
    assert_eq!(put.e_tag(), Some(format!("\"{want_md5}\"").as_str()));
    let head = ok(s3.head_object().bucket("big").key("100mib").send().await, "head");
    assert_eq!(head.content_length(), Some(size as i64));
    let get = ok(s3.get_object().bucket("big").key("100mib").send().await, "get 100 MiB");
    let (got_md5, got_len) = stream_md5(get).await;
    assert_eq!((got_len, got_md5), (size as u64, want_md5));
}

/// Non-ASCII user metadata: RFC 2047 encoded words are decoded when
/// stored, and values that are not ASCII are returned encoded, as S3 does.
#[tokio::test(flavor = "multi_thread")]
async fn non_ascii_metadata_is_rfc2047_encoded() {
    let (server, s3) = with_bucket("meta2047").await;
    let r = server.send(&server.sign(
        server
            .raw_request("PUT", "/meta2047/k")
            .header("x-amz-meta-b", "=?UTF-8?B?SGVsbG8gV29ybGTDqQ==?=")
            .header("x-amz-meta-q", "=?utf-8?q?caf=C3=A9_au_lait?=")
            .header("x-amz-meta-plain", "just ascii")
            .header("x-amz-meta-lookalike", "=?not an encoded word")
            .body("x"),
    ));
    assert_eq!(r.status, 200, "{}", r.body_text());
    let r = server.send(&server.sign(server.raw_request("HEAD", "/meta2047/k")));
    assert_eq!(r.header("x-amz-meta-b"), Some("=?UTF-8?B?SGVsbG8gV29ybGTDqQ==?="));
    assert_eq!(r.header("x-amz-meta-q"), Some("=?UTF-8?B?Y2Fmw6kgYXUgbGFpdA==?="));
    assert_eq!(r.header("x-amz-meta-plain"), Some("just ascii"));
    assert_eq!(r.header("x-amz-meta-lookalike"), Some("=?not an encoded word"));
    let got = ok(s3.head_object().bucket("meta2047").key("k").send().await, "head");
    assert_eq!(got.metadata().and_then(|m| m.get("plain")).map(String::as_str), Some("just ascii"));
}
