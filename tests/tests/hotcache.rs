//! The hot-object cache through the real binary: what a GET answers is
//! exactly what it answered without the cache. Overwrites, deletes and
//! version changes are seen at once; ranges, conditionals, encryption and
//! ACL checks behave as before; `--cache-size 0` turns it off; `/metrics`
//! counts hits and misses per core.

use std::time::{Duration, Instant};

use aws_sdk_s3::types::{VersioningConfiguration, BucketVersioningStatus};
use aws_sdk_s3::Client;
use tessera_tests::*;

const KIB: usize = 1024;

fn server_with(args: &[&str]) -> Server {
    Server::start_with(ServerOpts { args: args.iter().map(|s| s.to_string()).collect(), ..Default::default() })
}

async fn bucket(s3: &Client, name: &str) {
    ok(s3.create_bucket().bucket(name).send().await, "create bucket");
}

async fn put(s3: &Client, b: &str, k: &str, data: &[u8]) -> Option<String> {
    let out = ok(s3.put_object().bucket(b).key(k).body(bytestream(data)).send().await, "put");
    out.version_id().map(str::to_string)
}

async fn get(s3: &Client, b: &str, k: &str) -> Vec<u8> {
    read_body(ok(s3.get_object().bucket(b).key(k).send().await, "get")).await
}

/// The cache counters summed over cores, once the reactors published them
/// (every second) with at least `min_hits` hits.
fn cache_counters(server: &Server, min_hits: f64) -> (f64, f64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let m = server.scrape_metrics();
        let hits = metric_total(&m, "tessera_cache_hits_total");
        let misses = metric_total(&m, "tessera_cache_misses_total");
        if hits >= min_hits || Instant::now() > deadline {
            return (hits, misses);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Every overwrite is seen by the very next GET and HEAD, for inline
/// bodies and for extent bodies (bigger than the inline threshold) alike.
#[tokio::test(flavor = "multi_thread")]
async fn overwrites_are_seen_at_once() {
    let server = Server::start();
    let s3 = server.client();
    bucket(&s3, "hot").await;
    for (i, size) in [4 * KIB, 200 * KIB, 0, 1, 4 * KIB, 900 * KIB, 4 * KIB].into_iter().enumerate() {
        for round in 0..3u64 {
            let data = random_bytes(size, i as u64 * 10 + round);
            put(&s3, "hot", "k", &data).await;
            // The first GET fills the cache, the others hit it.
            for _ in 0..3 {
                assert_eq!(get(&s3, "hot", "k").await, data, "size {size} round {round}");
            }
            let head = ok(s3.head_object().bucket("hot").key("k").send().await, "head");
            assert_eq!(head.e_tag(), Some(etag(&data).as_str()));
            assert_eq!(head.content_length(), Some(size as i64));
        }
    }
    let (hits, _) = cache_counters(&server, 1.0);
    assert!(hits >= 1.0, "no cache hits counted");
}

#[tokio::test(flavor = "multi_thread")]
async fn deletes_are_seen_at_once() {
    let (_server, s3) = with_bucket("hot").await;
    for size in [4 * KIB, 300 * KIB] {
        let data = random_bytes(size, size as u64);
        put(&s3, "hot", "gone", &data).await;
        assert_eq!(get(&s3, "hot", "gone").await, data);
        assert_eq!(get(&s3, "hot", "gone").await, data);
        ok(s3.delete_object().bucket("hot").key("gone").send().await, "delete");
        assert_s3_error(s3.get_object().bucket("hot").key("gone").send().await, 404, "NoSuchKey");
        assert_status(s3.head_object().bucket("hot").key("gone").send().await, 404);
    }
}

/// The current version comes from the cache; older versions, delete
/// markers and versions asked for by id answer as they always did.
#[tokio::test(flavor = "multi_thread")]
async fn versions_are_never_mixed_up() {
    let (_server, s3) = with_bucket("ver").await;
    let conf = VersioningConfiguration::builder().status(BucketVersioningStatus::Enabled).build();
    ok(s3.put_bucket_versioning().bucket("ver").versioning_configuration(conf).send().await, "versioning");
    let v1_data = random_bytes(4 * KIB, 1);
    let v2_data = random_bytes(250 * KIB, 2);
    let v1 = put(&s3, "ver", "k", &v1_data).await.expect("version id");
    assert_eq!(get(&s3, "ver", "k").await, v1_data);
    assert_eq!(get(&s3, "ver", "k").await, v1_data);
    let v2 = put(&s3, "ver", "k", &v2_data).await.expect("version id");
    for _ in 0..2 {
        assert_eq!(get(&s3, "ver", "k").await, v2_data);
        let old = ok(s3.get_object().bucket("ver").key("k").version_id(&v1).send().await, "get v1");
        assert_eq!(old.version_id(), Some(v1.as_str()));
        assert_eq!(read_body(old).await, v1_data);
        let cur = ok(s3.get_object().bucket("ver").key("k").version_id(&v2).send().await, "get v2");
        assert_eq!(read_body(cur).await, v2_data);
    }
    // A delete marker hides the cached current version at once.
    ok(s3.delete_object().bucket("ver").key("k").send().await, "delete marker");
    assert_s3_error(s3.get_object().bucket("ver").key("k").send().await, 404, "NoSuchKey");
    let old = ok(s3.get_object().bucket("ver").key("k").version_id(&v1).send().await, "get v1");
    assert_eq!(read_body(old).await, v1_data);
    // Removing the marker by id brings v2 back as current.
    let marker = ok(s3.list_object_versions().bucket("ver").send().await, "list")
        .delete_markers()
        .first()
        .and_then(|m| m.version_id().map(str::to_string))
        .expect("a delete marker");
    ok(s3.delete_object().bucket("ver").key("k").version_id(&marker).send().await, "remove marker");
    assert_eq!(get(&s3, "ver", "k").await, v2_data);
}

/// Ranges and conditionals of a cached object answer as from the disk.
#[tokio::test(flavor = "multi_thread")]
async fn ranges_and_conditionals_from_the_cache() {
    let (_server, s3) = with_bucket("rng").await;
    for (key, size) in [("small", 4 * KIB), ("big", 300 * KIB)] {
        let data = random_bytes(size, size as u64 + 7);
        put(&s3, "rng", key, &data).await;
        assert_eq!(get(&s3, "rng", key).await, data, "fill");
        for (range, want) in [
            ("bytes=0-0", 0..1),
            ("bytes=100-1099", 100..1100),
            (&*format!("bytes={}-", size - 10), size - 10..size),
            ("bytes=-17", size - 17..size),
            (&*format!("bytes=5-{}", size * 2), 5..size),
        ] {
            let out = ok(s3.get_object().bucket("rng").key(key).range(range).send().await, range);
            assert_eq!(out.content_range(), Some(format!("bytes {}-{}/{size}", want.start, want.end - 1).as_str()));
            assert_eq!(read_body(out).await, data[want].to_vec(), "{key} {range}");
        }
        assert_s3_error(
            s3.get_object().bucket("rng").key(key).range(format!("bytes={size}-")).send().await,
            416,
            "InvalidRange",
        );
        let tag = etag(&data);
        assert_status(s3.get_object().bucket("rng").key(key).if_none_match(&tag).send().await, 304);
        assert_s3_error(s3.get_object().bucket("rng").key(key).if_match("\"nope\"").send().await, 412, "PreconditionFailed");
        let out = ok(s3.get_object().bucket("rng").key(key).if_match(&tag).send().await, "if-match");
        assert_eq!(read_body(out).await, data);
        // partNumber=1 of a single-part object is all of it.
        let out = ok(s3.get_object().bucket("rng").key(key).part_number(1).send().await, "part 1");
        assert_eq!(read_body(out).await, data);
    }
}

/// A cached object still needs its authorization: anonymous reads of a
/// private object are refused after the owner's reads filled the cache.
#[tokio::test(flavor = "multi_thread")]
async fn acl_checks_are_not_skipped() {
    let (server, s3) = with_bucket("priv").await;
    let data = random_bytes(4 * KIB, 3);
    put(&s3, "priv", "k", &data).await;
    assert_eq!(get(&s3, "priv", "k").await, data);
    assert_eq!(get(&s3, "priv", "k").await, data);
    let r = server.send(&server.raw_request("GET", "/priv/k"));
    assert_eq!(r.status, 403, "{}", r.body_text());
    assert!(!r.body.windows(64).any(|w| data.windows(64).next() == Some(w)), "the body leaked");
}

/// Encrypted objects: the cache holds what the disk holds (ciphertext);
/// each read still needs (and checks) its customer key.
#[tokio::test(flavor = "multi_thread")]
async fn encrypted_objects_need_their_key_every_time() {
    let (_server, s3) = with_bucket("enc").await;
    let raw = [9u8; 32];
    let (key, md5) = (b64(&raw), b64(&md5_bytes(&raw)));
    let other = [8u8; 32];
    let (other_key, other_md5) = (b64(&other), b64(&md5_bytes(&other)));
    for (k, size) in [("small", 4 * KIB), ("big", 200 * KIB)] {
        let data = random_bytes(size, 11);
        ok(
            s3.put_object().bucket("enc").key(k).sse_customer_algorithm("AES256").sse_customer_key(&key)
                .sse_customer_key_md5(&md5).body(bytestream(&data)).send().await,
            "put",
        );
        for _ in 0..3 {
            let out = ok(
                s3.get_object().bucket("enc").key(k).sse_customer_algorithm("AES256").sse_customer_key(&key)
                    .sse_customer_key_md5(&md5).send().await,
                "get",
            );
            assert_eq!(read_body(out).await, data);
        }
        let out = ok(
            s3.get_object().bucket("enc").key(k).range("bytes=10-99").sse_customer_algorithm("AES256")
                .sse_customer_key(&key).sse_customer_key_md5(&md5).send().await,
            "range",
        );
        assert_eq!(read_body(out).await, data[10..100].to_vec());
        assert_s3_error(s3.get_object().bucket("enc").key(k).send().await, 400, "InvalidRequest");
        assert_s3_error(
            s3.get_object().bucket("enc").key(k).sse_customer_algorithm("AES256").sse_customer_key(&other_key)
                .sse_customer_key_md5(&other_md5).send().await,
            400,
            "InvalidRequest",
        );
        // SSE-S3: the server's key, same bytes back.
        let plain = random_bytes(size, 12);
        ok(
            s3.put_object().bucket("enc").key(format!("{k}-s3")).server_side_encryption(
                aws_sdk_s3::types::ServerSideEncryption::Aes256,
            ).body(bytestream(&plain)).send().await,
            "put sse-s3",
        );
        assert_eq!(get(&s3, "enc", &format!("{k}-s3")).await, plain);
        assert_eq!(get(&s3, "enc", &format!("{k}-s3")).await, plain);
    }
}

/// `--cache-size 0`: no cache, the same answers, no hits counted.
#[tokio::test(flavor = "multi_thread")]
async fn a_cache_size_of_zero_turns_it_off() {
    let server = server_with(&["--cache-size", "0"]);
    let s3 = server.client();
    bucket(&s3, "off").await;
    let a = random_bytes(4 * KIB, 5);
    let b = random_bytes(4 * KIB, 6);
    put(&s3, "off", "k", &a).await;
    assert_eq!(get(&s3, "off", "k").await, a);
    assert_eq!(get(&s3, "off", "k").await, a);
    put(&s3, "off", "k", &b).await;
    assert_eq!(get(&s3, "off", "k").await, b);
    // Published every second: wait past two publications.
    std::thread::sleep(Duration::from_millis(2200));
    let (hits, _) = cache_counters(&server, f64::INFINITY);
    assert_eq!(hits, 0.0);
}

/// Objects bigger than `--cache-max-object` are served from the disk,
/// right, and counted as misses.
#[tokio::test(flavor = "multi_thread")]
async fn objects_over_the_size_limit_are_not_cached() {
    let server = server_with(&["--cache-max-object", "8KiB"]);
    let s3 = server.client();
    bucket(&s3, "lim").await;
    let big = random_bytes(9 * KIB, 1);
    put(&s3, "lim", "big", &big).await;
    for _ in 0..3 {
        assert_eq!(get(&s3, "lim", "big").await, big);
    }
    std::thread::sleep(Duration::from_millis(2200));
    let (hits, misses) = cache_counters(&server, f64::INFINITY);
    assert_eq!(hits, 0.0);
    assert!(misses >= 3.0, "{misses} misses");
    let small = random_bytes(8 * KIB, 2);
    put(&s3, "lim", "small", &small).await;
    for _ in 0..3 {
        assert_eq!(get(&s3, "lim", "small").await, small);
    }
    let (hits, _) = cache_counters(&server, 2.0);
    assert!(hits >= 2.0, "{hits} hits");
}

/// Flags are checked before anything starts.
#[test]
fn cache_flags_are_checked() {
    let out = std::process::Command::new(binary_path())
        .args(["server", "--cache-size", "2TiB", "--address", "127.0.0.1:0"])
        .arg(std::env::temp_dir().join("tessera-hotcache-flag-check-never-created"))
        .output()
        .expect("run");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--cache-size"), "{}", String::from_utf8_lossy(&out.stderr));
}

/// The size limit is on plaintext: an encrypted object of exactly
/// `--cache-max-object` bytes (stored with a 16-byte tag per 64 KiB) is
/// cached like a plain one, one byte more is not; bodies of several
/// decryption chunks and ranges across them come back right from the cache.
#[tokio::test(flavor = "multi_thread")]
async fn encrypted_objects_are_cached_up_to_the_limit() {
    const MIB: usize = 1024 * KIB;
    let server = server_with(&["--cache-max-object", "4MiB"]);
    let s3 = server.client();
    bucket(&s3, "enc").await;
    let put_sealed = |k: &'static str, data: Vec<u8>| {
        let s3 = s3.clone();
        async move {
            ok(
                s3.put_object().bucket("enc").key(k)
                    .server_side_encryption(aws_sdk_s3::types::ServerSideEncryption::Aes256)
                    .body(bytestream(&data)).send().await,
                "put sse-s3",
            );
        }
    };
    let over = random_bytes(4 * MIB + 1, 21);
    put_sealed("over", over.clone()).await;
    for _ in 0..3 {
        assert_eq!(get(&s3, "enc", "over").await, over);
    }
    std::thread::sleep(Duration::from_millis(2200));
    let (hits, _) = cache_counters(&server, f64::INFINITY);
    assert_eq!(hits, 0.0, "an object over the limit was cached");

    let at = random_bytes(4 * MIB, 22);
    put_sealed("at", at.clone()).await;
    for _ in 0..3 {
        assert_eq!(get(&s3, "enc", "at").await, at);
    }
    let (hits, _) = cache_counters(&server, 2.0);
    assert!(hits >= 2.0, "{hits} hits: an encrypted object at the limit was not cached");
    // Ranges within one 1 MiB chunk, across chunks, and the last byte.
    for (from, to) in [(5usize, 70_000usize), (MIB - 3, 2 * MIB + 9), (4 * MIB - 1, 4 * MIB - 1)] {
        let out = ok(
            s3.get_object().bucket("enc").key("at").range(format!("bytes={from}-{to}")).send().await,
            "range",
        );
        assert_eq!(read_body(out).await, at[from..=to].to_vec(), "bytes={from}-{to}");
    }
    // One chunk exactly (the whole-buffer path), and an empty object.
    let one = random_bytes(128 * KIB, 23);
    put_sealed("one", one.clone()).await;
    for _ in 0..2 {
        assert_eq!(get(&s3, "enc", "one").await, one);
    }
    put_sealed("empty", Vec::new()).await;
    for _ in 0..2 {
        assert!(get(&s3, "enc", "empty").await.is_empty());
    }
}
