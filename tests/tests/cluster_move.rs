//! Objects move to a node that joins a cluster holding buckets (issue 12,
//! `handover`): a second node joins a one-node cluster with data; the keys
//! of the partitions it gains are moved to it (by the requests that reach
//! them first, and by its background mover), with every version, delete
//! marker, upload in progress, tag and SSE-S3 body intact; writes and
//! deletes through the new owner during the move are never undone by a
//! later move; and once the move is over the old owner holds none of them
//! (the new owner serves them with the old owner killed).

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::Duration;

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{
    BucketVersioningStatus, CompletedMultipartUpload, CompletedPart, Delete, ObjectIdentifier, ServerSideEncryption,
    VersioningConfiguration,
};
use aws_sdk_s3::Client;
use tessera_tests::cluster::{decommission, free_udp_port, node_opts, wait_for};
use tessera_tests::*;

mod replication_kit;

const SECRET: &str = "the move test cluster's secret, long enough";
const AK: &str = "AKIACLUSTERMOVETEST1";
const SK: &str = "cluster-move-test-secret-0123456789abcde";

/// A loopback port for an S3 listener or a receiver started later (below
/// the ephemeral range, as `free_udp_port`: a node killed and started
/// again takes its port back).
fn free_addr() -> SocketAddr {
    free_udp_port()
}

fn start_node(cluster: SocketAddr, join: Option<SocketAddr>, env: &[(&str, &str)]) -> Server {
    start_node_with(cluster, join, env, &[])
}

/// `start_node` with more flags.
fn start_node_with(cluster: SocketAddr, join: Option<SocketAddr>, env: &[(&str, &str)], args: &[&str]) -> Server {
    let mut opts = node_opts(cluster, join, SECRET);
    opts.args.push(format!("--address={}", free_addr()));
    opts.args.extend(args.iter().map(|a| a.to_string()));
    opts.env.push(("TESSERA_ACCESS_KEY".to_string(), AK.to_string()));
    opts.env.push(("TESSERA_SECRET_KEY".to_string(), SK.to_string()));
    opts.env.extend(env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let mut s = Server::start_with(opts);
    s.set_credentials(AK, SK);
    s
}

fn layout(server: &Server) -> serde_json::Value {
    server.admin_json("/admin/v1/cluster")["layout"].clone()
}

fn owner_of(server: &Server, bucket: &str, key: &str) -> String {
    let v = server.admin_json(&format!("/admin/v1/cluster/locate?bucket={bucket}&key={key}"));
    v["owner"].as_str().expect("an owner").to_string()
}

fn node_id(server: &Server) -> String {
    server.admin_json("/admin/v1/cluster")["node"]["id"].as_str().unwrap().to_string()
}

fn entries(server: &Server) -> f64 {
    metric_total(&server.scrape_metrics(), "tessera_shard_entries")
}

/// A body of `n` bytes that differs per key and per round.
fn data(key: &str, round: u8, n: usize) -> Vec<u8> {
    let seed = key.bytes().fold(round as u32, |a, b| a.wrapping_mul(31).wrapping_add(b as u32));
    (0..n).map(|i| (seed.wrapping_add(i as u32 * 7) % 251) as u8).collect()
}

async fn get(c: &Client, bucket: &str, key: &str, version: Option<&str>) -> Result<Vec<u8>, String> {
    match c.get_object().bucket(bucket).key(key).set_version_id(version.map(str::to_string)).send().await {
        Ok(o) => Ok(o.body.collect().await.map_err(|e| e.to_string())?.into_bytes().to_vec()),
        Err(e) => Err(e.into_service_error().meta().code().unwrap_or("?").to_string()),
    }
}

/// Every key of `bucket` with its ETag and size.
async fn listing(c: &Client, bucket: &str) -> BTreeMap<String, (String, i64)> {
    let mut out = BTreeMap::new();
    let mut token: Option<String> = None;
    loop {
        let r = c.list_objects_v2().bucket(bucket).max_keys(7).set_continuation_token(token.clone()).send().await.expect("list");
        for o in r.contents() {
            out.insert(o.key().unwrap().to_string(), (o.e_tag().unwrap().to_string(), o.size().unwrap()));
        }
        if r.is_truncated() != Some(true) {
            return out;
        }
        token = r.next_continuation_token().map(str::to_string);
    }
}

/// Every version and delete marker of `bucket`: (key, version id, is latest, marker).
async fn versions(c: &Client, bucket: &str) -> Vec<(String, String, bool, bool)> {
    let r = c.list_object_versions().bucket(bucket).send().await.expect("list versions");
    assert_ne!(r.is_truncated(), Some(true));
    let mut out: Vec<_> = r
        .versions()
        .iter()
        .map(|v| (v.key().unwrap().to_string(), v.version_id().unwrap().to_string(), v.is_latest().unwrap(), false))
        .chain(r.delete_markers().iter().map(|m| {
            (m.key().unwrap().to_string(), m.version_id().unwrap().to_string(), m.is_latest().unwrap(), true)
        }))
        .collect();
    out.sort();
    out
}

const PLAIN_SIZES: [usize; 6] = [0, 1000, 20_000, 300_000, 3_500_000, 5];

#[test]
fn a_joining_node_takes_its_keys_with_every_version_and_upload_and_serves_them_alone() {
    let (ca, cb) = (free_udp_port(), free_udp_port());
    // Pages of 2 rows: a versioned key (its current row, 3 versions, a
    // delete marker) moves in 2 or 3 pages, the upload's part before its
    // upload row.
    let env = [("TESSERA_TEST_MOVER_DELAY_MS", "6000"), ("TESSERA_TEST_MOVE_PAGE_ROWS", "2")];
    let mut a = start_node(ca, None, &env);
    wait_for("a layout of one node", Duration::from_secs(30), || {
        layout(&a)["nodes"].as_array().is_some_and(|v| v.len() == 1)
    });
    let rt = tokio::runtime::Runtime::new().unwrap();
    let ca_client = a.client();
    // Data on the one node: a plain bucket of mixed sizes (inline, read
    // inline, extents, several pieces), tags and SSE-S3 on some; a
    // versioned bucket with versions and delete markers; an upload in
    // progress with its first part.
    let plain_keys: Vec<String> = (0..48).map(|i| format!("dir{}/k-{i:02}-ü", i % 3)).collect();
    let (upload_id, part1) = rt.block_on(async {
        let c = &ca_client;
        c.create_bucket().bucket("plain").send().await.expect("bucket");
        c.create_bucket().bucket("vers").send().await.expect("bucket");
        c.put_bucket_versioning()
            .bucket("vers")
            .versioning_configuration(VersioningConfiguration::builder().status(BucketVersioningStatus::Enabled).build())
            .send()
            .await
            .expect("versioning");
        for (i, k) in plain_keys.iter().enumerate() {
            let mut put = c.put_object().bucket("plain").key(k).body(ByteStream::from(data(k, 0, PLAIN_SIZES[i % 6])));
            if i % 4 == 1 {
                put = put.server_side_encryption(ServerSideEncryption::Aes256);
            }
            if i % 5 == 2 {
                put = put.tagging("team=ml&tier=hot");
            }
            put.send().await.expect("put plain");
        }
        for i in 0..16 {
            let k = format!("v-{i:02}");
            for round in 0..3 {
                c.put_object().bucket("vers").key(&k).body(ByteStream::from(data(&k, round, 2000 + 150_000 * (i % 2) as usize))).send().await.expect("put version");
            }
            if i % 4 == 0 {
                c.delete_object().bucket("vers").key(&k).send().await.expect("delete marker");
            }
        }
        let up = c.create_multipart_upload().bucket("plain").key("big-upload").send().await.expect("create upload");
        let id = up.upload_id().unwrap().to_string();
        let p1 = c
            .upload_part()
            .bucket("plain")
            .key("big-upload")
            .upload_id(&id)
            .part_number(1)
            .body(ByteStream::from(data("big-upload", 1, 5 << 20)))
            .send()
            .await
            .expect("part 1");
        (id, p1.e_tag().unwrap().to_string())
    });
    let (plain_before, vers_before) = rt.block_on(async { (listing(&ca_client, "plain").await, versions(&ca_client, "vers").await) });
    assert_eq!(plain_before.len(), plain_keys.len());
    // (Shard statistics are published every few seconds.)
    wait_for("the one node's index entries published", Duration::from_secs(20), || entries(&a) > 0.0);
    let entries_alone = entries(&a);

    // A second node joins: the layout takes it (2 nodes make no lanes).
    let b = start_node(cb, Some(ca), &env);
    let t = wait_for("a layout of two nodes on both", Duration::from_secs(40), || {
        [&a, &b].iter().all(|n| {
            let l = layout(n);
            l["nodes"].as_array().is_some_and(|v| v.len() == 2) && l["pending"].as_array().is_some_and(|p| p.is_empty())
        })
    });
    eprintln!("layout of two after {t:?}");
    let moving = layout(&b)["moving"].clone();
    assert!(!moving.is_null(), "a move is under way: {:#}", layout(&b));
    let (ida, idb) = (node_id(&a), node_id(&b));
    let b_keys: Vec<&String> = plain_keys.iter().filter(|k| owner_of(&a, "plain", k) == idb).collect();
    assert!(b_keys.len() > 8 && b_keys.len() < 40, "about half the keys move: {}", b_keys.len());
    let b_client = b.client();

    // While the mover waits, requests move their keys: reads through
    // either node, overwrites and deletes through the new owner.
    rt.block_on(async {
        for (i, k) in plain_keys.iter().enumerate() {
            for c in [&ca_client, &b_client] {
                assert_eq!(get(c, "plain", k, None).await, Ok(data(k, 0, PLAIN_SIZES[i % 6])), "{k}, during the move");
            }
        }
        let tags = b_client.get_object_tagging().bucket("plain").key(&plain_keys[2]).send().await.expect("tags");
        assert_eq!(tags.tag_set().len(), 2);
        let head = b_client.head_object().bucket("plain").key(&plain_keys[1]).send().await.expect("head sse");
        assert_eq!(head.server_side_encryption(), Some(&ServerSideEncryption::Aes256));
        // The first b-owned keys: overwritten; the next ones: deleted in one DeleteObjects.
        for k in b_keys.iter().take(3) {
            b_client.put_object().bucket("plain").key(*k).body(ByteStream::from(data(k, 9, 777))).send().await.expect("overwrite");
        }
        let gone: Vec<ObjectIdentifier> = b_keys[3..6].iter().map(|k| ObjectIdentifier::builder().key(*k).build().unwrap()).collect();
        let d = a_delete(&ca_client, gone).await;
        assert_eq!(d, 3, "deleted through the old owner, which forwards them");
    });
    let moved_early = b.admin_json("/admin/v1/cluster")["moved_here"]["keys"].as_u64().unwrap();
    assert!(moved_early >= 6, "keys moved by requests before the mover ran: {moved_early}");

    // The mover moves the rest; the leader ends the move.
    let t = wait_for("the move to end on both nodes", Duration::from_secs(60), || {
        [&a, &b].iter().all(|n| layout(n)["moving"].is_null())
    });
    let moved = b.admin_json("/admin/v1/cluster")["moved_here"].clone();
    eprintln!("move over {t:?} after the layout; status {moved:#}");
    // Pages of 2 rows: each versioned key (half of 16 move, as half of
    // every partition) took 2 or 3 pages.
    let (keys, pages) = (moved["keys"].as_u64().unwrap(), moved["pages"].as_u64().unwrap());
    assert!(pages > keys, "{pages} pages for {keys} keys");
    rt.block_on(async {
        let overwritten: Vec<&String> = b_keys.iter().take(3).copied().collect();
        let deleted: Vec<&String> = b_keys[3..6].to_vec();
        for (i, k) in plain_keys.iter().enumerate() {
            let want = if overwritten.contains(&k) {
                Ok(data(k, 9, 777))
            } else if deleted.contains(&k) {
                Err("NoSuchKey".to_string())
            } else {
                Ok(data(k, 0, PLAIN_SIZES[i % 6]))
            };
            for c in [&ca_client, &b_client] {
                assert_eq!(get(c, "plain", k, None).await, want, "{k}, after the move");
            }
        }
        // The listing: the same keys (less the deleted, plus the upload's
        // object later), each once.
        let after = listing(&b_client, "plain").await;
        let mut want = plain_before.clone();
        for k in &deleted {
            want.remove(*k);
        }
        assert_eq!(after.keys().collect::<Vec<_>>(), want.keys().collect::<Vec<_>>());
        for (k, v) in &after {
            if !overwritten.contains(&k) {
                assert_eq!(Some(v), want.get(k), "{k}");
            }
        }
        assert_eq!(versions(&b_client, "vers").await, vers_before, "every version and delete marker, through b");
        assert_eq!(versions(&ca_client, "vers").await, vers_before, "and through a");
        for (k, v, _, marker) in vers_before.iter().filter(|x| !x.3) {
            let _ = marker;
            let round = vers_before.iter().filter(|x| &x.0 == k && !x.3 && x.1 < *v).count() as u8;
            let i: usize = k[2..].parse().unwrap();
            assert_eq!(get(&b_client, "vers", k, Some(v)).await, Ok(data(k, round, 2000 + 150_000 * (i % 2))), "{k} {v}");
        }
        // The upload goes on wherever its key now lives.
        let p2 = b_client
            .upload_part()
            .bucket("plain")
            .key("big-upload")
            .upload_id(&upload_id)
            .part_number(2)
            .body(ByteStream::from(data("big-upload", 2, 1000)))
            .send()
            .await
            .expect("part 2");
        let parts = vec![
            CompletedPart::builder().part_number(1).e_tag(&part1).build(),
            CompletedPart::builder().part_number(2).e_tag(p2.e_tag().unwrap()).build(),
        ];
        ca_client
            .complete_multipart_upload()
            .bucket("plain")
            .key("big-upload")
            .upload_id(&upload_id)
            .multipart_upload(CompletedMultipartUpload::builder().set_parts(Some(parts)).build())
            .send()
            .await
            .expect("complete");
        let mut whole = data("big-upload", 1, 5 << 20);
        whole.extend(data("big-upload", 2, 1000));
        assert_eq!(get(&b_client, "plain", "big-upload", None).await, Ok(whole));
    });
    wait_for("the old owner to drop what moved", Duration::from_secs(20), || entries(&a) < entries_alone);

    // The moved keys are on the new owner alone: it serves them with the
    // old owner gone.
    a.kill9();
    rt.block_on(async {
        let mut served = 0;
        for (i, k) in plain_keys.iter().enumerate().skip(6) {
            if owner_of(&b, "plain", k) != idb || b_keys[..6].contains(&k) {
                continue;
            }
            assert_eq!(get(&b_client, "plain", k, None).await, Ok(data(k, 0, PLAIN_SIZES[i % 6])), "{k}, old owner dead");
            served += 1;
        }
        assert!(served > 0);
        for (k, v, _, marker) in vers_before.iter() {
            if *marker || owner_of(&b, "vers", k) != idb {
                continue;
            }
            assert!(get(&b_client, "vers", k, Some(v)).await.is_ok(), "{k} {v}, old owner dead");
        }
    });
    let _ = ida;
}

async fn a_delete(c: &Client, objects: Vec<ObjectIdentifier>) -> usize {
    let r = c
        .delete_objects()
        .bucket("plain")
        .delete(Delete::builder().set_objects(Some(objects)).build().unwrap())
        .send()
        .await
        .expect("delete objects");
    assert!(r.errors().is_empty(), "{:?}", r.errors());
    r.deleted().len()
}

#[test]
fn a_decommissioned_node_hands_every_key_over_and_leaves_the_configuration() {
    let (ca, cb) = (free_udp_port(), free_udp_port());
    let a = start_node(ca, None, &[]);
    let mut b = start_node(cb, Some(ca), &[]);
    wait_for("a layout of two nodes on both", Duration::from_secs(40), || {
        [&a, &b].iter().all(|n| {
            let l = layout(n);
            l["nodes"].as_array().is_some_and(|v| v.len() == 2) && l["pending"].as_array().is_some_and(|p| p.is_empty())
        })
    });
    wait_for("two voters", Duration::from_secs(30), || {
        a.admin_json("/admin/v1/cluster")["raft"]["voters"].as_array().is_some_and(|v| v.len() == 2)
    });
    let rt = tokio::runtime::Runtime::new().unwrap();
    let c = a.client();
    let keys: Vec<String> = (0..40).map(|i| format!("d/{i:02}")).collect();
    rt.block_on(async {
        c.create_bucket().bucket("keep").send().await.expect("bucket");
        for (i, k) in keys.iter().enumerate() {
            c.put_object().bucket("keep").key(k).body(ByteStream::from(data(k, 0, PLAIN_SIZES[i % 6]))).send().await.expect("put");
        }
    });
    let before = rt.block_on(listing(&c, "keep"));
    let (ida, idb) = (node_id(&a), node_id(&b));
    let on_b = keys.iter().filter(|k| owner_of(&a, "keep", k) == idb).count();
    assert!(on_b > 5, "node b owns keys: {on_b}");
    // A key of node b with 600 versions of 15,000 bytes, stored inline:
    // about 18 MB as exported (hex), past one RPC frame (16 MiB), so it
    // moves in pages of about 4 MiB.
    let hist = (0..).map(|n| format!("hist-{n}")).find(|k| owner_of(&a, "hist", k) == idb).unwrap();
    let hist_versions = rt.block_on(async {
        c.create_bucket().bucket("hist").send().await.expect("bucket");
        c.put_bucket_versioning()
            .bucket("hist")
            .versioning_configuration(VersioningConfiguration::builder().status(BucketVersioningStatus::Enabled).build())
            .send()
            .await
            .expect("versioning");
        let mut ids = Vec::new();
        for round in 0..600u32 {
            let body = data(&hist, (round % 251) as u8, 15_000);
            let r = c.put_object().bucket("hist").key(&hist).body(ByteStream::from(body)).send().await.expect("put version");
            ids.push((r.version_id().unwrap().to_string(), round));
        }
        ids
    });

    // The operator's command, through node a's admin listener.
    let admin = |node: &str| decommission(&a, node);
    let out = admin(&idb);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let again = admin(&ida);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("last node"), "{}", String::from_utf8_lossy(&again.stderr));

    let t = wait_for("b's keys to move to a and b to leave the configuration", Duration::from_secs(60), || {
        let s = a.admin_json("/admin/v1/cluster");
        let l = &s["layout"];
        l["moving"].is_null()
            && l["width"] == 1
            && l["decommissioned"] == serde_json::json!([idb])
            && s["raft"]["voters"].as_array().is_some_and(|v| v.len() == 1)
    });
    let moved = a.admin_json("/admin/v1/cluster")["moved_here"].clone();
    eprintln!("decommission over after {t:?}: {moved:#}");
    assert_eq!(moved["keys"].as_u64(), Some(on_b as u64 + 1));
    assert!(moved["pages"].as_u64().unwrap() >= on_b as u64 + 3, "the 600 versions took 3 pages or more: {moved:#}");

    // Node b is gone: node a serves every key, lists them all, and commits
    // configuration changes alone.
    b.kill9();
    rt.block_on(async {
        for (i, k) in keys.iter().enumerate() {
            assert_eq!(get(&c, "keep", k, None).await, Ok(data(k, 0, PLAIN_SIZES[i % 6])), "{k}");
        }
        assert_eq!(listing(&c, "keep").await, before);
        let listed = versions(&c, "hist").await;
        assert_eq!(listed.len(), 600);
        let want: BTreeSet<&str> = hist_versions.iter().map(|(v, _)| v.as_str()).collect();
        assert_eq!(listed.iter().map(|l| l.1.as_str()).collect::<BTreeSet<_>>(), want);
        for (v, round) in hist_versions.iter().step_by(37).chain(hist_versions.last()) {
            assert_eq!(get(&c, "hist", &hist, Some(v)).await, Ok(data(&hist, (*round % 251) as u8, 15_000)), "version {round}");
        }
        c.create_bucket().bucket("after-b").send().await.expect("a bucket, with node a the only voter");
        c.put_object().bucket("keep").key("new").body(ByteStream::from_static(b"x")).send().await.expect("a new key");
    });
}

#[test]
fn a_new_owner_killed_during_the_move_finishes_it_after_its_restart_and_loses_nothing() {
    killed_during_the_move(Killed::NewOwner);
}

#[test]
fn an_old_owner_killed_during_the_move_finishes_it_after_its_restart_and_loses_nothing() {
    killed_during_the_move(Killed::OldOwner);
}

#[derive(PartialEq, Debug)]
enum Killed {
    /// Node b, the one taking keys.
    NewOwner,
    /// Node a, the one handing them over (and the configuration's first
    /// voter: with two voters nothing commits until it is back).
    OldOwner,
}

/// 3,000 keys on node a; node b joins and is taking them when one of the
/// two is killed (`kill -9`) and started again: the move ends, every key
/// reads right through both nodes and is listed once.
fn killed_during_the_move(which: Killed) {
    let (ca, cb) = (free_udp_port(), free_udp_port());
    let mut a = start_node(ca, None, &[]);
    wait_for("a layout of one node", Duration::from_secs(30), || layout(&a)["nodes"].as_array().is_some_and(|v| v.len() == 1));
    let rt = tokio::runtime::Runtime::new().unwrap();
    let c = a.client();
    const N: usize = 3000;
    let keys: Vec<String> = (0..N).map(|i| format!("many/{i:05}")).collect();
    rt.block_on(async {
        c.create_bucket().bucket("many").send().await.expect("bucket");
        for chunk in keys.chunks(64) {
            let puts: Vec<_> = chunk
                .iter()
                .map(|k| {
                    let (c, k) = (c.clone(), k.clone());
                    tokio::spawn(async move {
                        c.put_object().bucket("many").key(&k).body(ByteStream::from(data(&k, 0, 1500))).send().await.expect("put")
                    })
                })
                .collect();
            for p in puts {
                p.await.expect("put task");
            }
        }
    });
    let mut b = start_node(cb, Some(ca), &[]);
    // Killed once some keys moved, before all did.
    let moved_at_kill = loop {
        let s = b.admin_json("/admin/v1/cluster");
        let moved = s["moved_here"]["keys"].as_u64().unwrap_or(0);
        if moved >= 50 {
            assert!(!s["layout"]["moving"].is_null(), "the move ended before the kill ({moved} keys): not the case under test");
            let victim = if which == Killed::NewOwner { &mut b } else { &mut a };
            victim.kill9();
            victim.start_again();
            break moved;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let t = wait_for("the move to end after the restart", Duration::from_secs(90), || {
        [&a, &b].iter().all(|n| layout(n)["moving"].is_null() && layout(n)["nodes"].as_array().is_some_and(|v| v.len() == 2))
    });
    eprintln!("{which:?} killed: {moved_at_kill} keys moved at the kill; the move ended {t:?} after the restart");
    rt.block_on(async {
        let (ca, cb) = (a.client(), b.client());
        for chunk in keys.chunks(64) {
            let gets: Vec<_> = chunk
                .iter()
                .enumerate()
                .map(|(i, k)| {
                    let (c, k) = (if i % 2 == 0 { ca.clone() } else { cb.clone() }, k.clone());
                    tokio::spawn(async move {
                        let got = get(&c, "many", &k, None).await;
                        (k, got)
                    })
                })
                .collect();
            for g in gets {
                let (k, got) = g.await.expect("get task");
                assert_eq!(got, Ok(data(&k, 0, 1500)), "{k}");
            }
        }
        assert_eq!(listing(&ca, "many").await.len(), N, "each key listed once");
        assert_eq!(listing(&cb, "many").await.len(), N, "each key listed once");
    });
}

/// A versioned bucket `src` replicating to `dst`, and one version of each
/// of `keys` (of `size(i)` bytes): (key, version id).
async fn replicated_puts(c: &Client, keys: &[String], size: impl Fn(usize) -> usize) -> Vec<(String, String)> {
    replication_kit::versioned_bucket(c, "src").await;
    replication_kit::replicate(c, "src", "arn:aws:s3:::dst").await;
    let mut out = Vec::new();
    for (i, k) in keys.iter().enumerate() {
        let r = c.put_object().bucket("src").key(k).body(ByteStream::from(data(k, 0, size(i)))).send().await.expect("put");
        out.push((k.clone(), r.version_id().unwrap().to_string()));
    }
    out
}

/// Whether `n` follows a layout of two nodes, none pending, no keys moving.
fn two_nodes_no_move(n: &Server) -> bool {
    let l = layout(n);
    l["nodes"].as_array().is_some_and(|v| v.len() == 2) && l["pending"].as_array().is_some_and(|p| p.is_empty()) && l["moving"].is_null()
}

/// Waits until each `(key, version)` of bucket `src` is COMPLETED.
async fn all_completed(c: &Client, written: &[(String, String)], limit: Duration) {
    let start = std::time::Instant::now();
    for (k, v) in written {
        loop {
            let st = replication_kit::status_of(c, "src", k, v).await;
            if st.as_deref() == Some("COMPLETED") {
                break;
            }
            assert!(start.elapsed() < limit, "{k} is {st:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

#[test]
fn replication_work_queued_for_a_moving_key_goes_with_it_and_is_sent_from_its_new_owner() {
    // The replication destination is down at first: every entry waits in
    // node a's queue while node b joins and takes half the keys.
    let (ca, cb, dst_addr) = (free_udp_port(), free_udp_port(), free_addr());
    let target = format!("--replication-target=site=http://{dst_addr},{},{}", replication_kit::AK, replication_kit::SK);
    let a = start_node_with(ca, None, &[], &[&target]);
    wait_for("a layout of one node", Duration::from_secs(30), || layout(&a)["nodes"].as_array().is_some_and(|v| v.len() == 1));
    let rt = tokio::runtime::Runtime::new().unwrap();
    let c = a.client();
    let keys: Vec<String> = (0..40).map(|i| format!("r/{i:02}")).collect();
    let written = rt.block_on(replicated_puts(&c, &keys, |i| PLAIN_SIZES[i % 6]));
    let b = start_node_with(cb, Some(ca), &[], &[&target]);
    wait_for("the layout of two, keys moved", Duration::from_secs(60), || [&a, &b].iter().all(|n| two_nodes_no_move(n)));
    let idb = node_id(&b);
    let on_b = keys.iter().filter(|k| owner_of(&a, "src", k) == idb).count();
    assert!(on_b > 5, "node b owns keys: {on_b}");
    assert_eq!(b.admin_json("/admin/v1/cluster")["moved_here"]["keys"].as_u64(), Some(on_b as u64));

    // The destination comes up: each version is sent by its key's owner,
    // and COMPLETED is recorded where the version lives now.
    let dst = replication_kit::node(dst_addr, None);
    let d = dst.client();
    rt.block_on(async {
        replication_kit::versioned_bucket(&d, "dst").await;
        all_completed(&c, &written, Duration::from_secs(90)).await;
        for (i, (k, v)) in written.iter().enumerate() {
            let o = d.get_object().bucket("dst").key(k).send().await.expect("the replica");
            assert_eq!(o.version_id(), Some(v.as_str()), "{k}");
            assert_eq!(o.body.collect().await.unwrap().into_bytes().to_vec(), data(k, 0, PLAIN_SIZES[i % 6]), "{k}");
        }
    });
    // The moved keys' versions went from node b, the others from node a.
    let sent = |n: &Server| metric_total(&n.scrape_metrics(), "tessera_replication_sent_total");
    assert!(sent(&b) >= on_b as f64, "node b sent {} of its {on_b}", sent(&b));
    assert_eq!(sent(&a) + sent(&b), keys.len() as f64);
}

#[test]
fn events_queued_on_a_decommissioned_node_go_to_its_keys_new_owner_and_are_delivered() {
    // The webhook is down: each PUT's event waits in the queue of the key's
    // owner. Node b is decommissioned and then stopped for good: its events
    // went to node a with its keys, and a delivers them once the webhook
    // is up.
    let (ca, cb, hook) = (free_udp_port(), free_udp_port(), free_addr());
    let flag = format!("--notify-webhook=hook=http://{hook}/events");
    let a = start_node_with(ca, None, &[], &[&flag]);
    let mut b = start_node_with(cb, Some(ca), &[], &[&flag]);
    wait_for("a layout of two nodes on both", Duration::from_secs(40), || {
        [&a, &b].iter().all(|n| {
            let l = layout(n);
            l["nodes"].as_array().is_some_and(|v| v.len() == 2) && l["pending"].as_array().is_some_and(|p| p.is_empty())
        })
    });
    let rt = tokio::runtime::Runtime::new().unwrap();
    let c = a.client();
    let keys: Vec<String> = (0..30).map(|i| format!("e/{i:02}")).collect();
    rt.block_on(async {
        c.create_bucket().bucket("events").send().await.expect("bucket");
        let q = aws_sdk_s3::types::QueueConfiguration::builder()
            .id("all")
            .queue_arn("arn:tessera:sqs::hook:webhook")
            .events(aws_sdk_s3::types::Event::from("s3:ObjectCreated:*"))
            .build()
            .unwrap();
        let cfg = aws_sdk_s3::types::NotificationConfiguration::builder().queue_configurations(q).build();
        c.put_bucket_notification_configuration().bucket("events").notification_configuration(cfg).send().await.expect("notification");
        for k in &keys {
            c.put_object().bucket("events").key(k).body(ByteStream::from(data(k, 0, 100))).send().await.expect("put");
        }
    });
    let pending = |n: &Server| metric_total(&n.scrape_metrics(), "tessera_notify_pending_events");
    let idb = node_id(&b);
    let on_b = keys.iter().filter(|k| owner_of(&a, "events", k) == idb).count();
    assert!(on_b > 3, "node b owns keys: {on_b}");
    wait_for("every event queued at its key's owner", Duration::from_secs(20), || {
        pending(&a) == (keys.len() - on_b) as f64 && pending(&b) == on_b as f64
    });

    let out = decommission(&a, &idb);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    wait_for("b's keys and events handed to a", Duration::from_secs(90), || {
        layout(&a)["moving"].is_null() && layout(&a)["width"] == 1 && pending(&b) == 0.0 && pending(&a) == keys.len() as f64
    });
    b.kill9();
    let rx = tessera_tests::webhook::Receiver::start(hook);
    let got = rx.wait_for(keys.len(), "every event, from node a");
    let mut delivered: Vec<String> = got.iter().map(|r| r["s3"]["object"]["key"].as_str().unwrap().replace("%2F", "/")).collect();
    delivered.sort();
    assert_eq!(delivered, keys);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(rx.records().len(), keys.len(), "each event once");
}

#[test]
fn a_moved_keys_failed_replication_is_retried_by_its_new_owner() {
    // The destination bucket is missing: every version is refused (404),
    // FAILED, with a retry scheduled 15 s on, which node b's join does not
    // wait for: the retry records of b's keys go to b with them.
    let (ca, cb, dst_addr) = (free_udp_port(), free_udp_port(), free_addr());
    let dst = replication_kit::node(dst_addr, None);
    let target = format!("--replication-target=site=http://{dst_addr},{},{}", replication_kit::AK, replication_kit::SK);
    let args = [target.as_str(), "--test-replication-failed-retry-ms=15000"];
    let a = start_node_with(ca, None, &[], &args);
    wait_for("a layout of one node", Duration::from_secs(30), || layout(&a)["nodes"].as_array().is_some_and(|v| v.len() == 1));
    let rt = tokio::runtime::Runtime::new().unwrap();
    let c = a.client();
    let keys: Vec<String> = (0..30).map(|i| format!("f/{i:02}")).collect();
    let written = rt.block_on(replicated_puts(&c, &keys, |_| 700));
    let scheduled = |n: &Server| metric_total(&n.scrape_metrics(), "tessera_replication_failed_retry_scheduled");
    wait_for("every version refused, its retry scheduled", Duration::from_secs(30), || scheduled(&a) == keys.len() as f64);

    let b = start_node_with(cb, Some(ca), &[], &args);
    wait_for("the layout of two, keys moved", Duration::from_secs(60), || [&a, &b].iter().all(|n| two_nodes_no_move(n)));
    let idb = node_id(&b);
    let on_b = keys.iter().filter(|k| owner_of(&a, "src", k) == idb).count();
    assert!(on_b > 3, "node b owns keys: {on_b}");
    wait_for("the retries of b's keys handed to b", Duration::from_secs(10), || {
        scheduled(&b) == on_b as f64 && scheduled(&a) == (keys.len() - on_b) as f64
    });

    // The destination's operator fixes it: each owner retries its own.
    let d = dst.client();
    rt.block_on(async {
        replication_kit::versioned_bucket(&d, "dst").await;
        all_completed(&c, &written, Duration::from_secs(60)).await;
        for (k, v) in &written {
            let o = d.head_object().bucket("dst").key(k).send().await.expect("the replica");
            assert_eq!(o.version_id(), Some(v.as_str()), "{k}");
        }
    });
}
