//! Healing on format 2 (erasure sets, 4 dirs, parity 2): an empty dir in
//! place of a lost one is adopted and healed, a dir back after missing
//! writes heals too, `GET /admin/v1/heal` tells the truth before and
//! after, kill -9 mid-heal resumes, and once healed, losing the parity
//! count of other dirs loses nothing (see ARCHITECTURE.md, "Restart,
//! missing and empty dirs, healing").

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use aws_sdk_s3::types::{BucketVersioningStatus, CompletedMultipartUpload, CompletedPart, VersioningConfiguration};
use serde_json::Value;
use tessera_tests::*;

const DIRS: usize = 4;
const PART: usize = 64 * 1024;
const HEAL_TIMEOUT: Duration = Duration::from_secs(180);

fn erasure_opts() -> ServerOpts {
    ServerOpts {
        data_dir_count: DIRS,
        threads: Some(2),
        args: vec!["--erasure".into()],
        env: vec![("TESSERA_TEST_MIN_PART_BYTES".into(), PART.to_string())],
        ..Default::default()
    }
}

fn heal_report(server: &Server) -> Value {
    server.admin_json("/admin/v1/heal")
}

/// Waits for the heal report to say healed; every report before must
/// not claim it while a disk still heals or is offline.
fn wait_healed(server: &Server) -> Value {
    let start = Instant::now();
    loop {
        let v = heal_report(server);
        let states: Vec<&str> = v["disks"].as_array().expect("disks").iter().filter_map(|d| d["state"].as_str()).collect();
        let whole = states.iter().all(|s| *s == "online");
        assert_eq!(v["healed"], whole, "healed must follow the disks' states: {v}");
        if whole {
            return v;
        }
        assert!(start.elapsed() < HEAL_TIMEOUT, "not healed in time: {v}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// What the test wrote: (bucket, key) -> current body (None: deleted),
/// and the versions of versioned keys, oldest first.
#[derive(Default)]
struct Written {
    current: BTreeMap<(String, String), Option<Vec<u8>>>,
    versions: BTreeMap<(String, String), Vec<(String, Vec<u8>)>>,
}

async fn put(s3: &aws_sdk_s3::Client, w: &mut Written, bucket: &str, key: &str, body: Vec<u8>) {
    let out = ok(s3.put_object().bucket(bucket).key(key).body(bytestream(&body)).send().await, "put");
    if let Some(v) = out.version_id() {
        w.versions.entry((bucket.into(), key.into())).or_default().push((v.to_string(), body.clone()));
    }
    w.current.insert((bucket.into(), key.into()), Some(body));
}

async fn multipart(s3: &aws_sdk_s3::Client, w: &mut Written, bucket: &str, key: &str, seed: u64) {
    let parts: Vec<Vec<u8>> = (0..3).map(|i| random_bytes(if i < 2 { PART * 5 } else { 777 }, seed + i)).collect();
    let up = ok(s3.create_multipart_upload().bucket(bucket).key(key).send().await, "create upload");
    let id = up.upload_id().unwrap_or_default().to_string();
    let mut done = Vec::new();
    for (i, p) in parts.iter().enumerate() {
        let n = i as i32 + 1;
        let out = ok(s3.upload_part().bucket(bucket).key(key).upload_id(&id).part_number(n).body(bytestream(p)).send().await, "part");
        done.push(CompletedPart::builder().part_number(n).e_tag(out.e_tag().unwrap_or_default()).build());
    }
    let up = CompletedMultipartUpload::builder().set_parts(Some(done)).build();
    ok(s3.complete_multipart_upload().bucket(bucket).key(key).upload_id(&id).multipart_upload(up).send().await, "complete");
    w.current.insert((bucket.into(), key.into()), Some(parts.concat()));
}

/// Striped and small objects, multipart, overwrites, deletes, versions.
async fn write_mix(s3: &aws_sdk_s3::Client, w: &mut Written, tag: u64, big: usize) {
    let (b, v) = (format!("heal-{tag}"), format!("heal-v-{tag}"));
    ok(s3.create_bucket().bucket(&b).send().await, "bucket");
    ok(s3.create_bucket().bucket(&v).send().await, "versioned bucket");
    let on = VersioningConfiguration::builder().status(BucketVersioningStatus::Enabled).build();
    ok(s3.put_bucket_versioning().bucket(&v).versioning_configuration(on).send().await, "versioning");
    for (i, n) in [0usize, 4 * KIB, 200 * KIB, 3 * MIB + 17].into_iter().enumerate() {
        put(s3, w, &b, &format!("obj-{n}"), random_bytes(n, tag * 1000 + i as u64)).await;
    }
    for i in 0..big {
        put(s3, w, &b, &format!("big-{i}"), random_bytes(MIB + 4096 * i, tag * 1000 + 100 + i as u64)).await;
    }
    // Overwrites (striped over small, small over striped) and deletes.
    put(s3, w, &b, &format!("obj-{}", 4 * KIB), random_bytes(600 * KIB, tag * 1000 + 10)).await;
    put(s3, w, &b, &format!("obj-{}", 200 * KIB), random_bytes(10, tag * 1000 + 11)).await;
    put(s3, w, &b, "doomed", random_bytes(2 * MIB, tag * 1000 + 12)).await;
    ok(s3.delete_object().bucket(&b).key("doomed").send().await, "delete");
    w.current.insert((b.clone(), "doomed".into()), None);
    multipart(s3, w, &b, "mp", tag * 1000 + 20).await;
    // Versions: striped, small, striped again; a delete marker on another.
    for (i, n) in [300 * KIB, 5 * KIB, 2 * MIB + 5].into_iter().enumerate() {
        put(s3, w, &v, "versions", random_bytes(n, tag * 1000 + 30 + i as u64)).await;
    }
    put(s3, w, &v, "marked", random_bytes(400 * KIB, tag * 1000 + 40)).await;
    ok(s3.delete_object().bucket(&v).key("marked").send().await, "delete marker");
    w.current.insert((v.clone(), "marked".into()), None);
}

async fn check_written(s3: &aws_sdk_s3::Client, w: &Written) {
    for ((b, k), body) in &w.current {
        match body {
            Some(want) => {
                let got = read_body(ok(s3.get_object().bucket(b).key(k).send().await, "get")).await;
                assert!(got == *want, "{b}/{k}: {} bytes back, {} written", got.len(), want.len());
            }
            None => assert_s3_error(s3.get_object().bucket(b).key(k).send().await, 404, "NoSuchKey"),
        }
    }
    for ((b, k), vs) in &w.versions {
        for (id, want) in vs {
            let got = read_body(ok(s3.get_object().bucket(b).key(k).version_id(id).send().await, "get version")).await;
            assert!(got == *want, "{b}/{k}@{id}: {} bytes back, {} written", got.len(), want.len());
        }
    }
    let mut buckets: Vec<&String> = w.current.keys().map(|(b, _)| b).collect();
    buckets.dedup();
    for b in buckets {
        let out = ok(s3.list_objects_v2().bucket(b).send().await, "list");
        let listed: Vec<String> = out.contents().iter().map(|o| o.key().unwrap_or_default().to_string()).collect();
        let want: Vec<String> =
            w.current.iter().filter(|((bb, _), v)| bb == b && v.is_some()).map(|((_, k), _)| k.clone()).collect();
        assert_eq!(listed, want, "listing of {b}");
    }
}

/// The state of the disk at set position `pos` (a fresh node's dirs take
/// the positions in the order given; an adopted dir the lost one's).
fn disk_state(v: &Value, pos: usize) -> String {
    let d = v["disks"]
        .as_array()
        .expect("disks")
        .iter()
        .find(|d| d["position"].as_u64() == Some(pos as u64))
        .unwrap_or_else(|| panic!("no disk at position {pos} in {v}"));
    d["state"].as_str().unwrap_or_default().to_string()
}

fn replace_with_empty(dir: &Path) {
    std::fs::remove_dir_all(dir).expect("lose the dir");
    std::fs::create_dir_all(dir).expect("empty dir in its place");
}

/// The whole story: lost dir replaced by an empty one, healed while
/// serving (progress truthful), then two other dirs go and every object
/// reads back byte-exact.
#[tokio::test(flavor = "multi_thread")]
async fn an_empty_dir_in_place_of_a_lost_one_heals_then_two_more_can_go() {
    let mut server = Server::start_with(erasure_opts());
    let dirs = server.data_dirs().to_vec();
    let s3 = server.client();
    let mut w = Written::default();
    write_mix(&s3, &mut w, 1, 4).await;
    let v = heal_report(&server);
    assert_eq!((v["erasure_coding"].as_bool(), v["healed"].as_bool()), (Some(true), Some(true)), "{v}");

    server.stop();
    let old_format = std::fs::read_to_string(dirs[0].join("tessera.format")).expect("format");
    replace_with_empty(&dirs[1]);
    // Slow enough to watch: a few MiB of blocks to write and read back.
    server.set_env("TESSERA_HEAL_RATE", "1MiB");
    server.start_again();
    assert!(dirs[1].join("tessera.format").exists(), "the empty dir is formatted");
    assert!(dirs[1].join("tessera.heal").exists(), "the adopted dir is marked healing");
    let new_format = std::fs::read_to_string(dirs[0].join("tessera.format")).expect("format");
    assert_ne!(old_format, new_format, "every dir's format names the new disk");
    let v = heal_report(&server);
    assert_eq!(disk_state(&v, 1), "healing", "{v}");
    assert_eq!(v["healed"], false, "{v}");
    let d1 = v["disks"].as_array().unwrap().iter().find(|d| d["state"] == "healing").cloned().unwrap();
    assert!(d1["lanes_healed"].as_u64() < d1["lanes_total"].as_u64(), "{v}");
    let below = &d1["heal"]["below_full_redundancy"];
    assert!(below["count"].as_u64() > Some(0) || below["lanes_scanned"].as_u64() < Some(4), "healing, nothing missing: {v}");

    // Serving meanwhile: reads answer the right bytes (the new disk's
    // missing records are never taken as absent), writes go on.
    let s3 = server.client();
    check_written(&s3, &w).await;
    put(&s3, &mut w, "heal-1", "during-heal", random_bytes(1500 * KIB, 77)).await;
    let v = heal_report(&server);
    if v["healed"] == false {
        let below = v["below_full_redundancy"].as_u64().unwrap_or(0);
        let lanes = v["disks"].as_array().unwrap().iter().filter_map(|d| d["lanes_healed"].as_u64()).sum::<u64>();
        assert!(below > 0 || lanes < 4 * 4, "healing, yet nothing reported missing: {v}");
    }

    let v = wait_healed(&server);
    let heal = v["disks"].as_array().unwrap().iter().find(|d| d["heal"].is_object()).map(|d| d["heal"].clone()).expect("heal");
    assert!(heal["versions_rebuilt"].as_u64() > Some(10), "{v}");
    assert!(heal["bytes_rebuilt"].as_u64() > Some(3 * MIB as u64), "{v}");
    assert_eq!(heal["below_full_redundancy"]["count"], 0, "{v}");
    assert_eq!(heal["failures"], 0, "{v}");
    assert!(!dirs[1].join("tessera.heal").exists(), "healed: the mark is gone");
    check_written(&s3, &w).await;

    // Two other dirs gone (= parity): the healed one's blocks are needed
    // for every striped object.
    server.stop();
    take_away(&dirs[2]);
    take_away(&dirs[3]);
    server.start_again();
    let s3 = server.client();
    check_written(&s3, &w).await;
}

/// kill -9 in the middle of healing: the restart keeps the heal's epoch,
/// resumes from the committed cursors, and completes.
#[tokio::test(flavor = "multi_thread")]
async fn kill9_during_healing_resumes_and_completes() {
    let mut server = Server::start_with(erasure_opts());
    let dirs = server.data_dirs().to_vec();
    let s3 = server.client();
    let mut w = Written::default();
    write_mix(&s3, &mut w, 2, 12).await;
    server.stop();
    replace_with_empty(&dirs[3]);
    server.set_env("TESSERA_HEAL_RATE", "2MiB");
    server.start_again();
    let mark = std::fs::read_to_string(dirs[3].join("tessera.heal")).expect("heal mark");
    // Let it get somewhere, then kill it.
    let start = Instant::now();
    loop {
        let v = heal_report(&server);
        let d = v["disks"].as_array().unwrap().iter().find(|d| d["state"] == "healing").cloned();
        let d = d.unwrap_or_else(|| panic!("healed before the kill; more data needed: {v}"));
        if d["heal"]["versions_rebuilt"].as_u64() > Some(5) {
            break;
        }
        assert!(start.elapsed() < HEAL_TIMEOUT, "no progress: {v}");
        std::thread::sleep(Duration::from_millis(100));
    }
    server.kill9();
    assert_eq!(std::fs::read_to_string(dirs[3].join("tessera.heal")).expect("mark kept"), mark);
    server.set_env("TESSERA_HEAL_RATE", "0");
    server.start_again();
    assert_eq!(std::fs::read_to_string(dirs[3].join("tessera.heal")).unwrap_or_default(), mark, "same heal epoch after the restart");
    wait_healed(&server);
    assert!(server.stderr_since_start().contains("resumes at its cursor") || server.stdout_lines().iter().any(|l| l.contains("resumes at its cursor")), "the heal resumed");
    let s3 = server.client();
    check_written(&s3, &w).await;
    server.stop();
    take_away(&dirs[1]);
    take_away(&dirs[2]);
    server.start_again();
    let s3 = server.client();
    check_written(&s3, &w).await;
}

/// A dir away is offline and the report says "not healed" while its
/// blocks are missing; back after missing writes it heals (no longer
/// stale), and then two others can go.
#[tokio::test(flavor = "multi_thread")]
async fn not_healed_while_a_dir_is_away_then_it_heals_when_back() {
    let mut server = Server::start_with(erasure_opts());
    let dirs = server.data_dirs().to_vec();
    let s3 = server.client();
    let mut w = Written::default();
    write_mix(&s3, &mut w, 3, 1).await;
    server.stop();
    take_away(&dirs[2]);
    server.start_again();
    let s3 = server.client();
    write_mix(&s3, &mut w, 4, 2).await; // dir 2 misses these
    let v = heal_report(&server);
    assert_eq!(v["healed"], false, "{v}");
    assert_eq!(disk_state(&v, 2).as_str(), "offline", "{v}");
    server.stop();
    bring_back(&dirs[2]);
    server.start_again();
    let v = heal_report(&server);
    assert!(matches!(disk_state(&v, 2).as_str(), "healing" | "online"), "{v}");
    wait_healed(&server);
    let stale = std::fs::read_to_string(dirs[0].join("tessera.stale")).unwrap_or_default();
    assert!(stale.trim().is_empty(), "healed: no disk is stale any more: {stale}");
    server.stop();
    take_away(&dirs[1]);
    take_away(&dirs[3]);
    server.start_again();
    let s3 = server.client();
    check_written(&s3, &w).await;
}
