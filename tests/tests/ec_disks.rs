//! Format 2 (erasure sets, `--erasure`) with 4 data dirs: records
//! mirrored over the dirs, bodies above 128 KiB striped 2 + 2, writes
//! acknowledged at the write quorum (3 of 4 with the default parity 2),
//! reads with up to 2 dirs gone, and a dir that missed writes never read
//! as a record holder again until it healed (see ARCHITECTURE.md; healing:
//! `ec_heal.rs`). Bit rot and repair: `ec_stripes.rs`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use tessera_tests::*;

const DIRS: usize = 4;
const PART: usize = 64 * 1024;

fn erasure_opts() -> ServerOpts {
    ServerOpts {
        data_dir_count: DIRS,
        threads: Some(2),
        args: vec!["--erasure".into()],
        env: vec![("TESSERA_TEST_MIN_PART_BYTES".into(), PART.to_string())],
        ..Default::default()
    }
}

/// Objects of the sizes that matter: empty, inline, one data record, and
/// several MiB (more than one stripe and data record).
fn objects(tag: u64) -> BTreeMap<String, Vec<u8>> {
    [0usize, 4 * KIB, 200 * KIB, 5 * MIB + 123]
        .iter()
        .enumerate()
        .map(|(i, &n)| (format!("obj-{tag}-{n}"), random_bytes(n, tag * 100 + i as u64)))
        .collect()
}

async fn put_all(s3: &aws_sdk_s3::Client, bucket: &str, objs: &BTreeMap<String, Vec<u8>>) {
    for (k, v) in objs {
        ok(s3.put_object().bucket(bucket).key(k).body(bytestream(v)).send().await, "put");
    }
}

async fn check_all(s3: &aws_sdk_s3::Client, bucket: &str, objs: &BTreeMap<String, Vec<u8>>) {
    for (k, v) in objs {
        let out = ok(s3.get_object().bucket(bucket).key(k).send().await, "get");
        let got = read_body(out).await;
        assert!(got == *v, "{k}: {} bytes back, {} written", got.len(), v.len());
    }
}

async fn listed(s3: &aws_sdk_s3::Client, bucket: &str) -> Vec<String> {
    let out = ok(s3.list_objects_v2().bucket(bucket).send().await, "list");
    out.contents().iter().map(|o| o.key().unwrap_or_default().to_string()).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn objects_ranges_multipart_copy_and_delete_on_four_dirs() {
    let server = Server::start_with(erasure_opts());
    for d in server.data_dirs() {
        let f = std::fs::read_to_string(d.join("tessera.format")).expect("format file");
        assert!(f.starts_with("tessera-format 2\n") && f.contains("\nparity 2\n"), "{f}");
    }
    let s3 = server.client();
    ok(s3.create_bucket().bucket("ec-bucket").send().await, "bucket");
    let objs = objects(1);
    put_all(&s3, "ec-bucket", &objs).await;
    check_all(&s3, "ec-bucket", &objs).await;
    let mut keys: Vec<String> = objs.keys().cloned().collect();

    // Ranges across the 1 MiB stripe edges and at the ends.
    let big_key = format!("obj-1-{}", 5 * MIB + 123);
    let big = &objs[&big_key];
    for (a, b) in [(0, 0), (MIB - 10, MIB + 10), (2 * MIB - 1, 3 * MIB), (5 * MIB, 5 * MIB + 122), (123, 4 * MIB + 7)] {
        let out = ok(
            s3.get_object().bucket("ec-bucket").key(&big_key).range(format!("bytes={a}-{b}")).send().await,
            "range get",
        );
        assert_eq!(read_body(out).await, big[a..=b], "bytes {a}-{b}");
    }
    let head = ok(s3.head_object().bucket("ec-bucket").key(&big_key).send().await, "head");
    assert_eq!(head.content_length(), Some(big.len() as i64));

    // Multipart: three parts, the last short.
    let parts: Vec<Vec<u8>> = (0..3).map(|i| random_bytes(if i < 2 { PART * 3 } else { 1000 }, 50 + i)).collect();
    let up = ok(s3.create_multipart_upload().bucket("ec-bucket").key("mp").send().await, "create upload");
    let id = up.upload_id().unwrap_or_default().to_string();
    let mut done = Vec::new();
    for (i, p) in parts.iter().enumerate() {
        let n = i as i32 + 1;
        let out = ok(
            s3.upload_part().bucket("ec-bucket").key("mp").upload_id(&id).part_number(n).body(bytestream(p)).send().await,
            "upload part",
        );
        done.push(CompletedPart::builder().part_number(n).e_tag(out.e_tag().unwrap_or_default()).build());
    }
    let out = ok(
        s3.complete_multipart_upload()
            .bucket("ec-bucket")
            .key("mp")
            .upload_id(&id)
            .multipart_upload(CompletedMultipartUpload::builder().set_parts(Some(done)).build())
            .send()
            .await,
        "complete",
    );
    assert_eq!(out.e_tag(), Some(multipart_etag(&parts).as_str()));
    let whole: Vec<u8> = parts.concat();
    let got = read_body(ok(s3.get_object().bucket("ec-bucket").key("mp").send().await, "get mp")).await;
    assert!(got == whole, "multipart body");
    keys.push("mp".into());

    // Copy (a new striped body), then delete the source.
    ok(
        s3.copy_object().bucket("ec-bucket").key("copy").copy_source(format!("ec-bucket/{big_key}")).send().await,
        "copy",
    );
    let got = read_body(ok(s3.get_object().bucket("ec-bucket").key("copy").send().await, "get copy")).await;
    assert!(got == *big, "copied body");
    keys.push("copy".into());
    keys.sort();
    assert_eq!(listed(&s3, "ec-bucket").await, keys);
    ok(s3.delete_object().bucket("ec-bucket").key(&big_key).send().await, "delete");
    assert_s3_error(s3.get_object().bucket("ec-bucket").key(&big_key).send().await, 404, "NoSuchKey");
    keys.retain(|k| *k != big_key);
    assert_eq!(listed(&s3, "ec-bucket").await, keys);

    // Every dir holds every object: take any two away and read all.
    let mut server = server;
    let dirs = server.data_dirs().to_vec();
    server.stop();
    // Not dir 0: node.key, users and the KMS master key live there only
    // (as on format 1; copying them to every dir is a next step).
    take_away(&dirs[1]);
    take_away(&dirs[3]);
    server.start_again();
    let s3 = server.client();
    let got = read_body(ok(s3.get_object().bucket("ec-bucket").key("copy").send().await, "get copy, 2 dirs gone")).await;
    assert!(got == *big, "copied body with two dirs gone");
    let got = read_body(ok(s3.get_object().bucket("ec-bucket").key("mp").send().await, "get mp, 2 dirs gone")).await;
    assert!(got == whole, "multipart body with two dirs gone");
    assert_eq!(listed(&s3, "ec-bucket").await, keys);
}

/// Restarts with 1 and then 2 (= parity) dirs gone read everything; a PUT
/// answers 200 with 3 of 4 dirs (the write quorum) and 503 SlowDown with
/// 2; a dir that was away during acknowledged writes stays out.
#[tokio::test(flavor = "multi_thread")]
async fn dirs_gone_reads_everything_and_writes_need_the_quorum() {
    let mut server = Server::start_with(erasure_opts());
    let dirs = server.data_dirs().to_vec();
    let s3 = server.client();
    ok(s3.create_bucket().bucket("gone-dirs").send().await, "bucket");
    let first = objects(2);
    put_all(&s3, "gone-dirs", &first).await;

    server.stop();
    take_away(&dirs[1]);
    server.start_again();
    let s3 = server.client();
    check_all(&s3, "gone-dirs", &first).await;
    let second = objects(3);
    put_all(&s3, "gone-dirs", &second).await; // 3 of 4 dirs: the quorum
    check_all(&s3, "gone-dirs", &second).await;
    let stale = std::fs::read_to_string(dirs[0].join("tessera.stale")).expect("stale file");
    assert_eq!(stale.lines().count(), 1, "{stale}");

    server.stop();
    take_away(&dirs[2]);
    server.start_again();
    let s3 = server.client();
    check_all(&s3, "gone-dirs", &first).await;
    check_all(&s3, "gone-dirs", &second).await;
    assert_s3_error(s3.put_object().bucket("gone-dirs").key("below").body(bytestream(b"x")).send().await, 503, "SlowDown");

    // Both back: dir 1 missed the second batch and heals (never read as
    // a record holder meanwhile); dir 2 was away only while nothing could
    // be written, so it serves again, and with 3 whole dirs of 4 the node
    // takes writes.
    server.stop();
    bring_back(&dirs[1]);
    bring_back(&dirs[2]);
    server.start_again();
    let s3 = server.client();
    check_all(&s3, "gone-dirs", &first).await;
    check_all(&s3, "gone-dirs", &second).await;
    let third = objects(4);
    put_all(&s3, "gone-dirs", &third).await;
    // Dir 1 healing (or healed), losing one more of the others still
    // leaves every object readable.
    server.stop();
    take_away(&dirs[3]);
    server.start_again();
    let s3 = server.client();
    for objs in [&first, &second, &third] {
        check_all(&s3, "gone-dirs", objs).await;
    }
}

/// kill -9 while a dir is unreadable, restart, read everything.
#[tokio::test(flavor = "multi_thread")]
async fn kill9_with_a_dir_gone_then_restart_reads_everything() {
    let mut server = Server::start_with(erasure_opts());
    let dirs = server.data_dirs().to_vec();
    let s3 = server.client();
    ok(s3.create_bucket().bucket("kill-nine").send().await, "bucket");
    let first = objects(5);
    put_all(&s3, "kill-nine", &first).await;
    server.kill9();
    take_away(&dirs[2]);
    server.start_again();
    let s3 = server.client();
    check_all(&s3, "kill-nine", &first).await;
    let second = objects(6);
    put_all(&s3, "kill-nine", &second).await;
    server.kill9();
    server.start_again();
    let s3 = server.client();
    check_all(&s3, "kill-nine", &first).await;
    check_all(&s3, "kill-nine", &second).await;
}

fn start_fails(dirs: &[PathBuf], extra: &[&str]) -> String {
    let out = std::process::Command::new(binary_path())
        .arg("server")
        .args(["--address", "127.0.0.1:0", "--admin-address", "off"])
        .args(extra)
        .args(dirs)
        .env("TESSERA_ACCESS_KEY", "AKIAEXAMPLEEXAMPLE00")
        .env("TESSERA_SECRET_KEY", "secretsecretsecretsecretsecretsecret0000")
        .output()
        .expect("run tessera");
    assert!(!out.status.success(), "started: {}", String::from_utf8_lossy(&out.stdout));
    String::from_utf8_lossy(&out.stderr).to_string()
}

/// What a format 2 node refuses at start, with the reason.
#[tokio::test(flavor = "multi_thread")]
async fn refusals_at_start() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dirs: Vec<PathBuf> = (0..DIRS).map(|i| tmp.path().join(format!("d{i}"))).collect();
    // One dir: nothing to spread over.
    let e = start_fails(&dirs[..1], &["--erasure"]);
    assert!(e.contains("at least 2 data dirs"), "{e}");
    // More parity than the set allows.
    let e = start_fails(&dirs, &["--erasure", "--parity", "3"]);
    assert!(e.contains("parity"), "{e}");

    let mut server = Server::start_with(ServerOpts { data_dirs: Some(dirs.clone()), ..erasure_opts() });
    server.stop();
    // Three of four gone: below k = 2.
    for d in &dirs[1..] {
        take_away(d);
    }
    let e = start_fails(&dirs, &[]);
    assert!(e.contains("at least 2 are needed"), "{e}");
    bring_back(&dirs[1]);
    bring_back(&dirs[2]);
    // Two empty dirs for one lost disk: adding disks is not supported
    // (one empty dir in place of a lost one is adopted: ec_heal.rs).
    let extra = tmp.path().join("extra");
    std::fs::create_dir_all(&dirs[3]).expect("empty dir");
    std::fs::create_dir_all(&extra).expect("empty dir");
    let mut more = dirs.clone();
    more.push(extra);
    let e = start_fails(&more, &[]);
    assert!(e.contains("more empty dirs than lost disks"), "{e}");
    // (The refused start locked it, so it holds a lock file now.)
    std::fs::remove_dir_all(&dirs[3]).expect("remove the empty dir");
    bring_back(&dirs[3]);
    server.start_again();
    server.stop();

    // --erasure does not reformat format 1 dirs.
    let plain = tmp.path().join("plain");
    let mut p = Server::start_with(ServerOpts { data_dirs: Some(vec![plain.clone(), tmp.path().join("plain2")]), ..Default::default() });
    p.stop();
    let e = start_fails(&[plain, tmp.path().join("plain2")], &["--erasure"]);
    assert!(e.contains("already formatted without erasure sets"), "{e}");
}
