//! Objects in a cluster of real `tessera` processes on loopback: every node
//! answers S3 for every bucket; an object lives on its key's owner (the
//! layout in the cluster configuration) and the other nodes forward object
//! requests there; listings merge every node; DeleteObjects reaches every
//! owner; a dead owner's keys answer 503 while the others go on, and come
//! back with it.

use std::time::{Duration, Instant};

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart, Delete, ObjectIdentifier};
use aws_sdk_s3::Client;
use tessera_tests::cluster::{urlenc, wait_for};
use tessera_tests::*;

mod cluster_kit;
use cluster_kit::*;

#[test]
fn three_nodes_serve_every_object_from_its_owner() {
    let (mut nodes, t) = three_nodes();
    eprintln!("three nodes laid out in {t:?}");
    for n in &nodes {
        let l = layout(n);
        for node in l["nodes"].as_array().unwrap() {
            assert!(node["partitions_owned"].as_u64().unwrap() > 1000, "balanced: {l}");
        }
    }
    let ids: Vec<String> = nodes.iter().map(node_id).collect();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let clients: Vec<Client> = nodes.iter().map(|n| n.client()).collect();
    rt.block_on(async {
        ok(clients[0].create_bucket().bucket("spread").send().await, "create bucket");
    });
    wait_for("the bucket on every node", Duration::from_secs(10), || {
        rt.block_on(async { futures_all(&clients, "spread").await })
    });

    // Objects written through every node, read back through every node.
    let keys: Vec<String> = (0..45)
        .map(|i| match i {
            0 => "empty".to_string(),
            1 => "unicodé/ключ/鍵".to_string(),
            2 => "k".repeat(1024),
            i => format!("dir{}/obj-{i:03}", i % 3),
        })
        .collect();
    let data = |i: usize| -> Vec<u8> { (0..(i * 997) % 70_000).map(|j| (j * 31 + i) as u8).collect() };
    rt.block_on(async {
        for (i, k) in keys.iter().enumerate() {
            let r = clients[i % 3].put_object().bucket("spread").key(k).body(ByteStream::from(data(i))).send().await;
            ok(r, &format!("put {k} through node {}", i % 3));
        }
        for (i, k) in keys.iter().enumerate() {
            for (n, cl) in clients.iter().enumerate() {
                assert_eq!(body(cl, "spread", k).await.as_deref(), Ok(&data(i)[..]), "{k} through node {n}");
            }
        }
    });
    // The objects really are spread: every node owns some of them.
    let owners: Vec<String> = keys.iter().filter(|k| k.len() < 200).map(|k| owner_of(&nodes[0], "spread", &urlenc(k))).collect();
    for id in &ids {
        assert!(owners.contains(id), "node {id} owns none of the keys");
    }

    rt.block_on(async {
        // Listings merge every node, in order, across pages.
        let mut want = keys.clone();
        want.sort();
        for (n, cl) in clients.iter().enumerate() {
            assert_eq!(list_all(cl, "spread", 1000).await, want, "one page through node {n}");
            assert_eq!(list_all(cl, "spread", 7).await, want, "pages of 7 through node {n}");
        }
        let r = clients[1].list_objects_v2().bucket("spread").delimiter("/").send().await.expect("delimited list");
        let prefixes: Vec<&str> = r.common_prefixes().iter().filter_map(|p| p.prefix()).collect();
        assert_eq!(prefixes, ["dir0/", "dir1/", "dir2/", "unicodé/"]);
        let r = clients[2].list_objects_v2().bucket("spread").prefix("dir1/").send().await.expect("prefix list");
        assert_eq!(r.key_count(), Some(14));

        // A multipart upload through one node of a key another owns.
        let cl = &clients[1];
        let up = cl.create_multipart_upload().bucket("spread").key("big/multi").send().await.expect("create upload");
        let id = up.upload_id().unwrap();
        let part = vec![7u8; 5 * 1024 * 1024];
        let mut parts = Vec::new();
        for n in 1..=2 {
            let r = cl
                .upload_part()
                .bucket("spread")
                .key("big/multi")
                .upload_id(id)
                .part_number(n)
                .body(ByteStream::from(part.clone()))
                .send()
                .await
                .expect("part");
            parts.push(CompletedPart::builder().part_number(n).e_tag(r.e_tag().unwrap()).build());
        }
        let uploads = clients[2].list_multipart_uploads().bucket("spread").send().await.expect("uploads");
        assert_eq!(uploads.uploads().len(), 1, "the upload is listed through another node");
        let done = CompletedMultipartUpload::builder().set_parts(Some(parts)).build();
        ok(
            cl.complete_multipart_upload().bucket("spread").key("big/multi").upload_id(id).multipart_upload(done).send().await,
            "complete",
        );
        let got = body(&clients[0], "spread", "big/multi").await.unwrap();
        assert_eq!(got.len(), 10 * 1024 * 1024);

        // DeleteObjects through one node reaches every owner.
        let gone: Vec<&String> = keys.iter().skip(3).take(21).collect();
        let del = Delete::builder()
            .set_objects(Some(gone.iter().map(|k| ObjectIdentifier::builder().key(k.as_str()).build().unwrap()).collect()))
            .build()
            .unwrap();
        let r = clients[0].delete_objects().bucket("spread").delete(del).send().await.expect("delete objects");
        assert!(r.errors().is_empty(), "{:?}", r.errors());
        assert_eq!(r.deleted().len(), 21);
        for k in &gone {
            assert_eq!(body(&clients[2], "spread", k).await, Err("NoSuchKey".to_string()), "{k} deleted");
        }
        assert_eq!(list_all(&clients[2], "spread", 1000).await.len(), keys.len() - 21 + 1);
    });

    // A forward header a client made up is dropped, never trusted.
    let k = &keys[30];
    let owner = owner_of(&nodes[0], "spread", &urlenc(k));
    for n in &nodes {
        let req = RawRequest::new("GET", &format!("/spread/{}", urlenc(k)))
            .header("Host", &n.addr().to_string())
            .header("x-tessera-forwarded", "1;1;10.9.9.9;0;00")
            .sign(AK, SK, std::time::SystemTime::now());
        let mut conn = RawConn::connect(n.addr());
        conn.send(&req.to_bytes()).unwrap();
        let r = conn.read_response_for("GET");
        assert_eq!(r.status, 200, "a made-up forward header through {}: {}", n.addr(), r.body_text());
    }

    // kill -9 of one owner: its keys answer 503, the others go on; back, it serves them again.
    let victim = ids.iter().position(|id| *id == owner).unwrap();
    nodes[victim].kill9();
    let live = (victim + 1) % 3;
    let live_client = nodes[live].client();
    rt.block_on(async {
        let mut theirs = 0;
        let mut others = 0;
        for (i, k) in keys.iter().enumerate().filter(|(i, k)| (*i < 3 || *i >= 24) && k.len() < 200) {
            let o = owner_of(&nodes[live], "spread", &urlenc(k));
            let got = body(&live_client, "spread", k).await;
            if o == ids[victim] {
                assert_eq!(got, Err("ServiceUnavailable".to_string()), "{k} on the dead owner");
                theirs += 1;
            } else {
                assert_eq!(got.as_deref(), Ok(&data(i)[..]), "{k} on a live owner");
                others += 1;
            }
        }
        assert!(theirs > 0 && others > 0, "{theirs} keys on the dead owner, {others} on live ones");
    });
    nodes[victim].restart();
    rt.block_on(async {
        let c = nodes[live].client();
        let (i, k) = keys.iter().enumerate().find(|(_, k)| **k == keys[30]).unwrap();
        let started = Instant::now();
        loop {
            match body(&c, "spread", k).await {
                Ok(b) => {
                    assert_eq!(b, data(i));
                    break;
                }
                Err(e) => assert!(started.elapsed() < Duration::from_secs(20), "{k} after the owner came back: {e}"),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
}

async fn futures_all(clients: &[Client], bucket: &str) -> bool {
    for c in clients {
        if c.head_bucket().bucket(bucket).send().await.is_err() {
            return false;
        }
    }
    true
}

/// What one writer tried on one key, in order: (value, acknowledged).
type Attempts = Vec<(Vec<u8>, bool)>;

/// A bucket created through one node takes writes through every other at
/// once. Then six writers (two through each node) overwrite their own keys while the
/// first node, the one that started the configuration, is killed with
/// kill -9. Writes whose owner is alive keep being acknowledged after the
/// kill. The first node comes back alone (the others killed too) and
/// serves its own keys; then all three are back, and every acknowledged
/// write reads back through every node, as its last acknowledged value or
/// a value written after it that was never answered.
#[test]
fn a_node_killed_under_load_loses_no_acknowledged_write() {
    use std::collections::HashMap;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};

    let (mut nodes, _) = three_nodes();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let clients: Vec<Client> = nodes.iter().map(|n| n.client()).collect();
    // A bucket created through one node is there at once through every
    // other (a node that has not applied it yet asks the leader first).
    rt.block_on(async {
        for (i, name) in ["load", "fresh-1", "fresh-2"].iter().enumerate() {
            ok(clients[i].create_bucket().bucket(*name).send().await, "create bucket");
            for (n, c) in clients.iter().enumerate() {
                let r = c.put_object().bucket(*name).key(format!("at-once-{n}")).body(ByteStream::from_static(b"x")).send().await;
                ok(r, &format!("a put into {name} through node {n} right after its creation through node {i}"));
            }
        }
    });

    const WRITERS: usize = 6;
    const KEYS: usize = 24;
    let value = |w: usize, round: usize, k: usize| -> Vec<u8> {
        let head = format!("writer {w} round {round} key {k};");
        head.bytes().cycle().take(head.len() * (1 + (round * 7 + k * 13) % 400)).collect()
    };
    let stop = Arc::new(AtomicBool::new(false));
    let killed = Arc::new(AtomicBool::new(false));
    let attempts: Arc<Mutex<HashMap<String, Attempts>>> = Arc::default();
    let acked_after_kill = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let c = clients[w % 3].clone();
            let (stop, killed, attempts, after) = (stop.clone(), killed.clone(), attempts.clone(), acked_after_kill.clone());
            rt.spawn(async move {
                let mut round = 0;
                while !stop.load(Ordering::Relaxed) {
                    for k in 0..KEYS {
                        let key = format!("w{w}/key-{k:02}");
                        let v = value(w, round, k);
                        let r = c.put_object().bucket("load").key(&key).body(ByteStream::from(v.clone())).send().await;
                        if r.is_ok() && killed.load(Ordering::Relaxed) {
                            after.fetch_add(1, Ordering::Relaxed);
                        }
                        attempts.lock().unwrap().entry(key).or_default().push((v, r.is_ok()));
                    }
                    round += 1;
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(1500));
    nodes[0].kill9();
    killed.store(true, Ordering::Relaxed);
    std::thread::sleep(Duration::from_secs(3));
    stop.store(true, Ordering::Relaxed);
    rt.block_on(async {
        for w in writers {
            w.await.unwrap();
        }
    });
    let after = acked_after_kill.load(Ordering::Relaxed);
    assert!(after > 0, "no write was acknowledged after the kill: the live owners must go on");
    let attempts = std::mem::take(&mut *attempts.lock().unwrap());
    let acked: usize = attempts.values().map(|a| a.iter().filter(|(_, ok)| *ok).count()).sum();
    let total: usize = attempts.values().map(Vec::len).sum();
    eprintln!("{acked} of {total} writes acknowledged, {after} after the kill");

    // Node 0 comes back alone (the other two killed as well): no leader can
    // be elected, so it holds no configuration lease and cannot know whether
    // another node acts for its keys now: they are 503 like the dead nodes'
    // (never a value that may be stale), and a bucket it cannot confirm is
    // 503, not NoSuchBucket.
    let ids: Vec<String> = nodes.iter().skip(1).map(node_id).collect();
    nodes[1].kill9();
    nodes[2].kill9();
    nodes[0].start_again();
    // (It applies its log at start: an older layout of fewer nodes may show first.)
    wait_for("node 0 alone follows the layout it last saw committed", Duration::from_secs(20), || {
        let l = layout(&nodes[0]);
        l["nodes"].as_array().is_some_and(|v| v.len() == 3) && l["pending"].as_array().is_some_and(|p| p.is_empty())
    });
    let id0 = node_id(&nodes[0]);
    let alone = nodes[0].client();
    rt.block_on(async {
        let (mut mine, mut theirs) = (0, 0);
        for (key, tries) in attempts.iter().take(40) {
            let owner = owner_of(&nodes[0], "load", key);
            let got = body(&alone, "load", key).await;
            if !tries.iter().any(|(_, ok)| *ok) {
                continue;
            }
            if owner == id0 {
                assert_eq!(got, Err("ServiceUnavailable".to_string()), "{key}, owned by the node alone, without a lease");
                mine += 1;
            } else {
                assert!(ids.contains(&owner), "{key}: owner {owner}");
                assert_eq!(got, Err("ServiceUnavailable".to_string()), "{key}, owned by a dead node");
                theirs += 1;
            }
        }
        assert!(mine > 0 && theirs > 0, "{mine} keys of the node alone, {theirs} of the dead ones");
        let r = alone.head_bucket().bucket("never-made").send().await;
        let status = r.err().and_then(|e| e.raw_response().map(|r| r.status().as_u16()));
        assert_eq!(status, Some(503), "a bucket the node alone cannot confirm");
    });
    nodes[1].start_again();
    nodes[2].start_again();
    let clients: Vec<Client> = nodes.iter().map(|n| n.client()).collect();
    rt.block_on(async {
        for (i, (key, tries)) in attempts.iter().enumerate() {
            // Acceptable: the last acknowledged value or anything tried after it.
            let last_ok = tries.iter().rposition(|(_, ok)| *ok);
            let allowed: Vec<&Vec<u8>> = tries[last_ok.unwrap_or(0)..].iter().map(|(v, _)| v).collect();
            let c = &clients[i % 3];
            let started = Instant::now();
            let got = loop {
                match body(c, "load", key).await {
                    Err(e) if e == "ServiceUnavailable" || e == "?" => {
                        assert!(started.elapsed() < Duration::from_secs(30), "{key}: still {e} after the restart");
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                    other => break other,
                }
            };
            match (got, last_ok) {
                (Ok(b), _) => assert!(allowed.contains(&&b), "{key}: read {} bytes that no acceptable write had", b.len()),
                (Err(e), None) if e == "NoSuchKey" => {}
                (Err(e), _) => panic!("{key}: {e}, though a write of it was acknowledged"),
            }
        }
    });
}

/// A DeleteBucket run through one node drops the uploads in progress that
/// another node (the key's owner) holds of the bucket: every node purges
/// its own shards when the bucket leaves the configuration.
#[test]
fn a_deleted_buckets_uploads_are_purged_on_every_node() {
    let (nodes, _) = three_nodes();
    let ids: Vec<String> = nodes.iter().map(node_id).collect();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let clients: Vec<Client> = nodes.iter().map(|n| n.client()).collect();
    rt.block_on(async { ok(clients[0].create_bucket().bucket("purged").send().await, "create bucket") });
    // A key node 1 owns; the bucket will be deleted through node 0.
    let key = (0..).map(|i| format!("upload-{i}")).find(|k| owner_of(&nodes[0], "purged", k) == ids[1]).unwrap();
    let entries = |n: &Server| metric_total(&n.scrape_metrics(), "tessera_shard_entries");
    // Shard figures are published every second: wait for them to settle.
    let settled = |n: &Server| {
        let mut last = entries(n);
        loop {
            std::thread::sleep(Duration::from_millis(1200));
            let now = entries(n);
            if now == last {
                return now;
            }
            last = now;
        }
    };
    let before = settled(&nodes[1]);
    rt.block_on(async {
        let up = clients[2].create_multipart_upload().bucket("purged").key(&key).send().await.expect("create upload");
        let r = clients[2]
            .upload_part()
            .bucket("purged")
            .key(&key)
            .upload_id(up.upload_id().unwrap())
            .part_number(1)
            .body(ByteStream::from(vec![5u8; 1024]))
            .send()
            .await;
        ok(r, "part");
    });
    let with_upload = settled(&nodes[1]);
    assert!(with_upload >= before + 2.0, "the owner holds the upload and its part: {before} -> {with_upload}");
    rt.block_on(async { ok(clients[0].delete_bucket().bucket("purged").send().await, "delete bucket") });
    wait_for("the owner's upload entries purged", Duration::from_secs(20), || entries(&nodes[1]) <= before);
}

/// The flipped copies of `needle` in the files under `dir` (not under
/// `skip`): each occurrence's first byte inverted; how many there were.
fn flip_everywhere(dir: &std::path::Path, skip: &str, needle: &[u8]) -> usize {
    let mut flipped = 0;
    for f in tessera_tests::disk::files_under(dir) {
        if f.components().any(|c| c.as_os_str() == skip) {
            continue;
        }
        let Ok(mut bytes) = std::fs::read(&f) else { continue };
        let mut hits = Vec::new();
        let mut at = 0;
        while let Some(i) = bytes[at..].windows(needle.len()).position(|w| w == needle) {
            hits.push(at + i);
            at += i + needle.len();
        }
        if hits.is_empty() {
            continue;
        }
        for &h in &hits {
            bytes[h] = !bytes[h];
        }
        std::fs::write(&f, &bytes).unwrap();
        flipped += hits.len();
    }
    flipped
}

/// Stops node 0, damages every copy on its own shards (its member shards
/// of the others' lanes left alone) of the blocks of its `big`-byte
/// objects among `objects` (key, owner index, body), and starts it again.
fn damage_own_blocks(node: &mut Server, objects: &[(String, usize, Vec<u8>)], big: usize) {
    node.stop();
    let mut flipped = 0;
    for (_, _, v) in objects.iter().filter(|(_, o, v)| *o == 0 && v.len() == big) {
        for at in (0..v.len() - 64).step_by(64 * 1024).map(|a| a + 100) {
            flipped += flip_everywhere(&node.data_dirs()[0], "members", &v[at..at + 48]);
        }
    }
    assert!(flipped > 0, "node 0's shards hold some data blocks of its big objects");
    node.start_again();
}

/// Three nodes make each owner's shards lanes over every node (2+1):
/// records on all three, bodies striped. Damage to every copy of an
/// owner's blocks on its own disk is read around (decoded from the other
/// nodes' blocks); with a node down, writes of the keys the live nodes own
/// go on (2 of 3 durable) and read back; the node back, its members take
/// writes again.
#[test]
fn objects_are_striped_over_the_nodes_and_survive_the_owners_damaged_blocks() {
    let (mut nodes, _) = three_nodes();
    let ids: Vec<String> = nodes.iter().map(node_id).collect();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let metric = |n: &Server, name: &str| metric_total(&n.scrape_metrics(), name);
    for n in &nodes {
        wait_for("the node's shards are lanes over the nodes", Duration::from_secs(20), || {
            metric(n, "tessera_cluster_lanes") > 0.0
        });
    }
    let clients: Vec<Client> = nodes.iter().map(|n| n.client()).collect();
    rt.block_on(async { ok(clients[0].create_bucket().bucket("lanes").send().await, "create bucket") });
    const BIG: usize = 3 * 1024 * 1024 + 5;
    // Per owner: two big objects, a small one, an empty one.
    let mut objects: Vec<(String, usize, Vec<u8>)> = Vec::new();
    for (o, owner) in ids.iter().enumerate() {
        let keys: Vec<String> =
            (0..).map(|i| format!("ключ-{o}/{i}")).filter(|k| &owner_of(&nodes[0], "lanes", k) == owner).take(4).collect();
        for (j, k) in keys.into_iter().enumerate() {
            let len = [BIG, BIG, 4096, 0][j];
            objects.push((k, o, random_bytes(len, (o * 10 + j) as u64)));
        }
    }
    rt.block_on(async {
        for (i, (k, _, v)) in objects.iter().enumerate() {
            let r = clients[i % 3].put_object().bucket("lanes").key(k).body(ByteStream::from(v.clone())).send().await;
            ok(r, &format!("put {k}"));
        }
    });
    // Every node's member shards took the other owners' commits.
    for (n, node) in nodes.iter().enumerate() {
        let others = objects.iter().filter(|(_, o, _)| *o != n).count() as f64;
        let commits = metric(node, "tessera_cluster_lane_member_commits_total");
        assert!(commits >= others, "node {n}: {commits} member commits for {others} objects of the other owners");
    }

    // Node 0 stopped; every copy of its own blocks of its big objects on
    // its own shards damaged (its member shards of the others' lanes left
    // alone); back, it reads them whole from the other nodes' blocks.
    damage_own_blocks(&mut nodes[0], &objects, BIG);
    let clients: Vec<Client> = nodes.iter().map(|n| n.client()).collect();
    rt.block_on(async {
        for (k, _, v) in &objects {
            for c in &clients {
                let got = loop {
                    match body(c, "lanes", k).await {
                        Err(e) if e == "ServiceUnavailable" || e == "?" => tokio::time::sleep(Duration::from_millis(200)).await,
                        r => break r,
                    }
                };
                assert!(got.as_ref() == Ok(v), "{k}: {} bytes of {}", got.map_or(0, |b| b.len()), v.len());
            }
        }
    });
    assert!(metric(&nodes[0], "tessera_ec_degraded_stripes_total") > 0.0, "node 0 decoded around its damaged blocks");

    // Node 2 down: the keys nodes 0 and 1 own take writes (2 of 3 durable)
    // and read back; node 2's are 503.
    nodes[2].kill9();
    let mut later: Vec<(String, usize, Vec<u8>)> = Vec::new();
    for (o, owner) in ids.iter().enumerate() {
        let keys: Vec<String> =
            (0..).map(|i| format!("later-{o}/{i}")).filter(|k| &owner_of(&nodes[0], "lanes", k) == owner).take(4).collect();
        for (j, k) in keys.into_iter().enumerate() {
            later.push((k, o, random_bytes(if j < 2 { BIG } else { 1000 }, (100 + o * 10 + j) as u64)));
        }
    }
    rt.block_on(async {
        for (i, (k, o, v)) in later.iter().enumerate() {
            let r = clients[i % 2].put_object().bucket("lanes").key(k).body(ByteStream::from(v.clone())).send().await;
            if *o == 2 {
                assert_eq!(r.err().and_then(|e| e.raw_response().map(|r| r.status().as_u16())), Some(503), "{k} of the dead node");
            } else {
                ok(r, &format!("put {k} with a member down"));
            }
        }
        for (i, (k, _, v)) in later.iter().enumerate().filter(|(_, (_, o, _))| *o != 2) {
            assert_eq!(body(&clients[i % 2], "lanes", k).await.as_ref(), Ok(v), "{k} read with a member down");
        }
    });
    later.retain(|(_, o, _)| *o != 2);
    // The status shows node 2's members out of service and what they missed.
    let lanes = nodes[0].admin_json("/admin/v1/cluster")["lanes"].clone();
    assert_eq!((lanes["data_blocks"].as_u64(), lanes["parity_blocks"].as_u64(), lanes["write_quorum"].as_u64()), (Some(2), Some(1), Some(2)), "{lanes}");
    let member = |l: &serde_json::Value, id: &str| l["members"].as_array().unwrap().iter().find(|m| m["node"] == id).cloned().unwrap();
    let m2 = member(&lanes, &ids[2]);
    assert!(m2["in_service"] == false && m2["missed_keys"].as_u64() > Some(0), "{lanes}");
    // Node 2 back: the others put its members back in service and heal
    // them of the commits they missed; new writes reach them.
    nodes[2].start_again();
    for n in 0..2 {
        wait_for("node 2's members back in service", Duration::from_secs(30), || {
            metric(&nodes[n], "tessera_cluster_lane_members_revived_total") >= 1.0
        });
    }
    wait_for("node 2's members healed of what they missed", Duration::from_secs(60), || {
        let rebuilt: f64 = nodes[..2].iter().map(|n| metric(n, "tessera_cluster_lane_heal_rebuilt_records_total")).sum();
        rebuilt >= later.len() as f64
    });
    wait_for("node 0's status shows node 2 healed", Duration::from_secs(10), || {
        let m2 = member(&nodes[0].admin_json("/admin/v1/cluster")["lanes"], &ids[2]);
        m2["in_service"] == true && m2["missed_keys"] == 0
    });
    let clients: Vec<Client> = nodes.iter().map(|n| n.client()).collect();
    rt.block_on(async {
        for i in 0..6 {
            let k = format!("after/{i}");
            ok(clients[i % 3].put_object().bucket("lanes").key(&k).body(ByteStream::from(vec![i as u8; 5000])).send().await, "put");
        }
    });
    assert!(metric(&nodes[2], "tessera_cluster_lane_member_commits_total") > 0.0, "node 2's members take writes again");
    // The heal restored the redundancy: with node 0's own blocks of what
    // was written while node 2 was away damaged, those objects read whole
    // (from nodes 1 and 2; without the heal node 2 lacks its blocks).
    damage_own_blocks(&mut nodes[0], &later, BIG);
    let clients: Vec<Client> = nodes.iter().map(|n| n.client()).collect();
    rt.block_on(async {
        for (k, _, v) in objects.iter().chain(later.iter()) {
            // Node 0 just restarted: it answers 503 until it holds its
            // configuration lease again (seconds when the machine is busy).
            let started = std::time::Instant::now();
            let got = loop {
                match body(&clients[2], "lanes", k).await {
                    Err(e) if e == "?" || (e == "ServiceUnavailable" && started.elapsed() < Duration::from_secs(30)) => {
                        tokio::time::sleep(Duration::from_millis(200)).await
                    }
                    r => break r,
                }
            };
            assert!(got.as_ref() == Ok(v), "{k} through node 2 after the heal: {:?}", got.map(|b| b.len()));
        }
    });
}

/// A bucket setting changed through one node applies at once to the
/// object requests that node forwards to another owner (the forward
/// carries the configuration index the forwarder had; the owner waits
/// until it has applied as much): versioning enabled through node 0, then
/// a PUT through node 0 of a key node 1 or 2 owns, gets a version id.
#[test]
fn a_bucket_setting_applies_at_once_to_requests_forwarded_to_another_owner() {
    use aws_sdk_s3::types::{BucketVersioningStatus, VersioningConfiguration};
    let (nodes, _) = three_nodes();
    let ids: Vec<String> = nodes.iter().map(node_id).collect();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let c = nodes[0].client();
    for round in 0..15 {
        let bucket = format!("settings-{round}");
        rt.block_on(async { ok(c.create_bucket().bucket(&bucket).send().await, "create bucket") });
        let keys: Vec<String> =
            (0..).map(|i| format!("k{i}")).filter(|k| owner_of(&nodes[0], &bucket, k) != ids[0]).take(3).collect();
        rt.block_on(async {
            let on = VersioningConfiguration::builder().status(BucketVersioningStatus::Enabled).build();
            ok(c.put_bucket_versioning().bucket(&bucket).versioning_configuration(on).send().await, "versioning");
            for k in &keys {
                let r = ok(c.put_object().bucket(&bucket).key(k).body(ByteStream::from_static(b"v")).send().await, "put");
                let v = r.version_id().unwrap_or("");
                assert!(!v.is_empty() && v != "null", "{bucket}/{k}: a PUT right after versioning was enabled got version {v:?}");
            }
        });
    }
}
