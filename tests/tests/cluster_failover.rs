//! A cluster of real `tessera` processes on loopback while nodes die and
//! come back: writes taken right after a member's node returns and while
//! the configuration elects a new leader, a frozen owner's keys served by
//! another node and handed back whole, deletes made while a member was
//! down staying deleted.

use std::time::{Duration, Instant};

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::Client;
use tessera_tests::cluster::wait_for;
use tessera_tests::*;

mod cluster_kit;
use cluster_kit::*;

/// A write just after a lane member's node came back is taken: a lane
/// that finds too few members in service probes them at once
/// (`Mirrors::await_quorum`) instead of refusing until its next periodic
/// probe (every 2 s). Node 0 is stopped (the others take its members out
/// of service at once: it left the gossip) for 2.5 s, so each lane's
/// periodic probes of it fail, and started again. Of nodes 1 and 2, the
/// one that is not the configuration leader (k) is killed: each write that
/// misses its member records it stale through the leader first. Then PUTs
/// of keys the leader (o) owns (W = 2: o and node 0's member) go through
/// o with a client that never retries. The first write finds k dead (503
/// is right: its member failed the write); o's other reactor learns it
/// from a connection to k refused on the first
/// (`tessera_cluster_lane_members_refused_total`), or else from its own
/// first write; every other write must be taken. Before, all were refused
/// until a periodic probe found node 0 back.
#[test]
fn a_write_right_after_a_members_node_came_back_is_taken() {
    let (mut nodes, ids, rt) = three_nodes_and_bucket("back");
    let metric = |n: &Server, name: &str| metric_total(&n.scrape_metrics(), name);
    nodes[0].stop();
    wait_for("nodes 1 and 2 take node 0's members out of service", Duration::from_secs(20), || {
        nodes[1..].iter().all(|n| metric(n, "tessera_cluster_lane_members_held_down_total") > 0.0)
    });
    std::thread::sleep(Duration::from_millis(2500));
    nodes[0].start_again();
    let is_leader = |n: &Server| n.admin_json("/admin/v1/cluster")["raft"]["role"] == "leader";
    wait_for("node 1 or 2 leads the configuration", Duration::from_secs(20), || is_leader(&nodes[1]) || is_leader(&nodes[2]));
    let (o, k) = if is_leader(&nodes[1]) { (1, 2) } else { (2, 1) };
    let keys: Vec<String> = (0..).map(|i| format!("k{i}")).filter(|key| owner_of(&nodes[o], "back", key) == ids[o]).take(8).collect();
    nodes[k].kill9();
    let c = client_without_retries(&nodes[o]);
    let started = Instant::now();
    let answers: Vec<Result<(), String>> = rt.block_on(async {
        let mut out = Vec::new();
        for key in &keys {
            let r = c.put_object().bucket("back").key(key).body(ByteStream::from_static(b"written right after")).send().await;
            let failed = r.is_err();
            out.push(r.map(|_| ()).map_err(|e| format!("{:?}", e.raw_response().map(|r| r.status().as_u16()))));
            if failed && out.len() == 1 {
                // Until o's other reactor took k's members out (usually
                // within 200 ms; at most 500 ms, well before the next
                // periodic probe of node 0 would have brought it back).
                let started = Instant::now();
                while metric(&nodes[o], "tessera_cluster_lane_members_refused_total") < 1.0 && started.elapsed() < Duration::from_millis(500) {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
        out
    });
    eprintln!("PUTs right after node 0 came back and node {k} died, through node {o} ({:?}): {answers:?}", started.elapsed());
    let refused = answers.iter().filter(|a| a.is_err()).count();
    assert!(refused <= 2, "more writes refused than node {o} has reactors: {answers:?}");
    wait_for("node o's lanes take k's members out on a refused connection", Duration::from_secs(5), || {
        metric(&nodes[o], "tessera_cluster_lane_members_refused_total") >= 1.0
    });
    rt.block_on(async {
        for (key, _) in keys.iter().zip(&answers).filter(|(_, a)| a.is_ok()) {
            assert_eq!(body(&nodes[o].client(), "back", key).await, Ok(b"written right after".to_vec()), "{key}");
        }
    });
}

/// Writes go on while the configuration elects a new leader: the
/// configuration leader's node is killed, and PUTs of keys another node
/// owns go through that node at once, with a client that never retries.
/// Each misses the dead node's member (W = 2 of 3 still holds), so it must
/// record it stale through the configuration first, and there is no
/// leader until the survivors elect one (about 1-2 s): the write waits for
/// the election (`StaleRecorder::record` tries again until its deadline)
/// instead of failing. Before, every write in those seconds was a 503.
#[test]
fn writes_go_on_while_the_configuration_elects_a_new_leader() {
    let (mut nodes, ids, rt) = three_nodes_and_bucket("elect");
    let is_leader = |n: &Server| n.admin_json("/admin/v1/cluster")["raft"]["role"] == "leader";
    let mut l = 0;
    wait_for("a configuration leader", Duration::from_secs(20), || nodes.iter().position(is_leader).map(|i| l = i).is_some());
    let o = (l + 1) % 3;
    let keys: Vec<String> = (0..).map(|i| format!("k{i}")).filter(|key| owner_of(&nodes[o], "elect", key) == ids[o]).take(6).collect();
    let c = client_without_retries(&nodes[o]);
    // Every lane of o has written to the leader's node once (so the
    // writes below meet a dead member, not a fresh connection).
    rt.block_on(async {
        for key in &keys {
            ok(c.put_object().bucket("elect").key(key).body(ByteStream::from_static(b"before")).send().await, "put before");
        }
    });
    nodes[l].kill9();
    let started = Instant::now();
    let answers: Vec<(Result<(), String>, Duration)> = rt.block_on(async {
        let mut out = Vec::new();
        for key in &keys {
            let t = Instant::now();
            let r = c.put_object().bucket("elect").key(key).body(ByteStream::from_static(b"during the election")).send().await;
            out.push((r.map(|_| ()).map_err(|e| { let f = failure_of(&e); format!("{:?} {:?} {:?}", f.status, f.code, f.message) }), t.elapsed()));
        }
        out
    });
    eprintln!("PUTs through node {o} right after the leader (node {l}) died ({:?}): {answers:?}", started.elapsed());
    let refused: Vec<_> = answers.iter().filter(|a| a.0.is_err()).collect();
    assert!(refused.is_empty(), "writes refused while the configuration elected a leader: {answers:?}");
    wait_for("a new leader", Duration::from_secs(20), || nodes.iter().enumerate().any(|(i, n)| i != l && is_leader(n)));
    rt.block_on(async {
        for key in &keys {
            assert_eq!(body(&nodes[o].client(), "elect", key).await, Ok(b"during the election".to_vec()), "{key}");
        }
    });
}

/// The lane owners (`layout.takeovers`) and stale records a node's status shows.
fn takeovers(server: &Server) -> Vec<(String, String)> {
    let l = layout(server);
    l["takeovers"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|t| (t["owner"].as_str().unwrap_or("").to_string(), t["acting"].as_str().unwrap_or("").to_string()))
        .collect()
}

/// A node frozen (SIGSTOP) stops answering; once it has been down for the
/// takeover time, the configuration names another node to act for its
/// partitions, which serves them from its member copies: every object the
/// frozen node owned reads back through the others, and its keys take
/// writes, overwrites and deletes again, and list. Woken (SIGCONT), the old
/// owner serves nothing stale: its lease lapsed, and the other nodes refuse
/// its lane calls (fenced). It is healed of what it missed, the stale
/// record of it goes, and its partitions are handed back: it serves them
/// again, with every write made while it was away.
#[test]
fn a_frozen_owners_keys_are_served_by_another_node_and_handed_back_whole() {
    let (nodes, _) = three_nodes_with(&[("TESSERA_TAKEOVER_AFTER_MS", "4000")]);
    let ids: Vec<String> = nodes.iter().map(node_id).collect();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let metric = |n: &Server, name: &str| metric_total(&n.scrape_metrics(), name);
    for n in &nodes {
        wait_for("the node's shards are lanes over the nodes", Duration::from_secs(20), || {
            metric(n, "tessera_cluster_lanes") > 0.0
        });
    }
    let clients: Vec<Client> = nodes.iter().map(|n| n.client()).collect();
    rt.block_on(async {
        let c = &clients[0];
        let r = loop {
            match c.create_bucket().bucket("takeover").send().await {
                Err(e) if e.raw_response().is_some_and(|r| r.status().as_u16() == 503) => tokio::time::sleep(Duration::from_millis(200)).await,
                r => break r,
            }
        };
        ok(r, "create bucket");
    });
    const BIG: usize = 3 * 1024 * 1024 + 7;
    // Node 2's keys: two big (striped), a small, an empty; one of each
    // other owner.
    let mine2: Vec<String> = (0..).map(|i| format!("früh-{i}")).filter(|k| owner_of(&nodes[0], "takeover", k) == ids[2]).take(4).collect();
    let others: Vec<String> = (0..).map(|i| format!("andere-{i}")).filter(|k| owner_of(&nodes[0], "takeover", k) != ids[2]).take(2).collect();
    let mut objects: Vec<(String, Vec<u8>)> = Vec::new();
    for (j, k) in mine2.iter().enumerate() {
        objects.push((k.clone(), random_bytes([BIG, BIG, 4096, 0][j], j as u64)));
    }
    for (j, k) in others.iter().enumerate() {
        objects.push((k.clone(), random_bytes(2000, 50 + j as u64)));
    }
    rt.block_on(async {
        for (i, (k, v)) in objects.iter().enumerate() {
            let c = &clients[i % 3];
            let started = Instant::now();
            loop {
                match c.put_object().bucket("takeover").key(k).body(ByteStream::from(v.clone())).send().await {
                    Err(e) if e.raw_response().is_some_and(|r| r.status().as_u16() == 503) && started.elapsed() < Duration::from_secs(20) => {
                        tokio::time::sleep(Duration::from_millis(200)).await
                    }
                    r => {
                        ok(r, &format!("put {k}"));
                        break;
                    }
                }
            }
        }
    });

    // Node 2 frozen: once the configuration names another node for its
    // partitions, everything it owned reads back through nodes 0 and 1.
    nodes[2].signal(libc::SIGSTOP);
    let frozen_at = Instant::now();
    let t = wait_for("another node acts for the frozen node", Duration::from_secs(60), || {
        takeovers(&nodes[0]).iter().any(|(o, a)| o == &ids[2] && a != &ids[2])
    });
    eprintln!("takeover committed {:?} after the freeze", frozen_at.elapsed());
    let _ = t;
    rt.block_on(async {
        for (k, v) in &objects {
            for c in &clients[..2] {
                let got = body_settled(c, "takeover", k, Duration::from_secs(30)).await;
                assert!(got.as_ref() == Ok(v), "{k} with its owner frozen: {:?}", got.map(|b| b.len()));
            }
        }
    });
    eprintln!("node 2's keys served again {:?} after the freeze", frozen_at.elapsed());
    // Its keys take writes again: new keys, an overwrite, a delete.
    let later: Vec<String> = (0..).map(|i| format!("später-{i}")).filter(|k| owner_of(&nodes[0], "takeover", k) == ids[2]).take(3).collect();
    let mut expect: Vec<(String, Option<Vec<u8>>)> = objects.iter().map(|(k, v)| (k.clone(), Some(v.clone()))).collect();
    rt.block_on(async {
        for (j, k) in later.iter().enumerate() {
            let v = random_bytes(if j == 0 { BIG } else { 3000 }, 100 + j as u64);
            ok(clients[j % 2].put_object().bucket("takeover").key(k).body(ByteStream::from(v.clone())).send().await, &format!("put {k} while its owner is frozen"));
            expect.push((k.clone(), Some(v)));
        }
        let v = random_bytes(BIG, 200);
        ok(clients[1].put_object().bucket("takeover").key(&mine2[0]).body(ByteStream::from(v.clone())).send().await, "overwrite");
        expect[0].1 = Some(v);
        ok(clients[0].delete_object().bucket("takeover").key(&mine2[2]).send().await, "delete");
        expect[2].1 = None;
        // A small one (its record carries the body: no other node's block
        // is needed to read it).
        let v = random_bytes(5000, 201);
        ok(clients[0].put_object().bucket("takeover").key(&mine2[3]).body(ByteStream::from(v.clone())).send().await, "overwrite");
        expect[3].1 = Some(v);
        for (k, v) in &expect {
            let got = body(&clients[0], "takeover", k).await;
            match v {
                Some(v) => assert!(got.as_ref() == Ok(v), "{k} after the writes: {:?}", got.map(|b| b.len())),
                None => assert_eq!(got, Err("NoSuchKey".to_string()), "{k} deleted"),
            }
        }
        let mut want: Vec<String> = expect.iter().filter(|(_, v)| v.is_some()).map(|(k, _)| k.clone()).collect();
        want.sort();
        assert_eq!(list_all(&clients[1], "takeover", 2).await, want, "the listing with the owner frozen");
    });
    let stale = layout(&nodes[0])["stale"].clone();
    assert!(
        stale.as_array().is_some_and(|s| s.iter().any(|r| r["owner"] == ids[2].as_str() && r["member"] == ids[2].as_str())),
        "the frozen owner is recorded stale for its own lanes: {stale}"
    );

    // Woken: it must not answer from its own (stale) shards, whatever it
    // last knew: the overwritten key is the new value or a 503, the deleted
    // key never its old body.
    nodes[2].signal(libc::SIGCONT);
    rt.block_on(async {
        for _ in 0..20 {
            for j in [0, 3] {
                match body(&clients[2], "takeover", &mine2[j]).await {
                    Ok(b) => assert!(Some(&b) == expect[j].1.as_ref(), "the woken owner answered a stale body of {}", mine2[j]),
                    Err(e) => assert!(e == "ServiceUnavailable" || e == "?", "{}: {e}", mine2[j]),
                }
            }
            match body(&clients[2], "takeover", &mine2[2]).await {
                Ok(_) => panic!("the woken owner answered a deleted key"),
                Err(e) => assert!(e == "NoSuchKey" || e == "ServiceUnavailable" || e == "?", "{e}"),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    // Healed, its stale record removed, its partitions handed back.
    wait_for("the woken owner gets its partitions back", Duration::from_secs(90), || {
        nodes.iter().all(|n| {
            let l = layout(n);
            takeovers(n).iter().all(|(o, a)| o == a) && l["stale"].as_array().is_some_and(|s| s.is_empty())
        })
    });
    assert!(metric(&nodes[0], "tessera_cluster_lane_heal_rebuilt_records_total") + metric(&nodes[1], "tessera_cluster_lane_heal_rebuilt_records_total") > 0.0);
    rt.block_on(async {
        for c in &clients {
            for (k, v) in &expect {
                let got = body_settled(c, "takeover", k, Duration::from_secs(30)).await;
                match v {
                    Some(v) => assert!(got.as_ref() == Ok(v), "{k} after the handback: {:?}", got.map(|b| b.len())),
                    None => assert_eq!(got, Err("NoSuchKey".to_string()), "{k} deleted, after the handback"),
                }
            }
        }
        // Writes of its keys reach it again as the owner.
        ok(clients[0].put_object().bucket("takeover").key(&later[1]).body(ByteStream::from_static(b"back")).send().await, "put after the handback");
        assert_eq!(body(&clients[2], "takeover", &later[1]).await, Ok(b"back".to_vec()));
    });
}

/// A key deleted while a lane member was down does not come back from
/// that member, even when the node acting for the key's owner restarted
/// in between (so it no longer knows which keys the member missed, only
/// that it is stale): the member's heal walks its keys as well as the
/// owner's, and removes those the owner no longer has. Then the member
/// is made to act for the owner (the owner frozen; it is the lowest-id
/// node left): the deleted keys are gone there too.
#[test]
fn a_key_deleted_while_a_member_was_down_stays_deleted_when_that_member_takes_over() {
    let (mut nodes, _) = three_nodes_with(&[("TESSERA_TAKEOVER_AFTER_MS", "4000")]);
    let ids: Vec<String> = nodes.iter().map(node_id).collect();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let metric = |n: &Server, name: &str| metric_total(&n.scrape_metrics(), name);
    for n in &nodes {
        wait_for("the node's shards are lanes over the nodes", Duration::from_secs(20), || {
            metric(n, "tessera_cluster_lanes") > 0.0
        });
    }
    // Owner o (node 0); member m: the lower id of the other two, the node
    // the configuration leader picks to act for o; n the third.
    let o = 0;
    let (m, n) = if ids[1] < ids[2] { (1, 2) } else { (2, 1) };
    eprintln!("owner {}, member {}, third {}", ids[o], ids[m], ids[n]);
    let put_retrying = |c: &Client, k: &str, v: Vec<u8>| {
        let c = c.clone();
        let k = k.to_string();
        async move {
            let started = Instant::now();
            loop {
                match c.put_object().bucket("ghosts").key(&k).body(ByteStream::from(v.clone())).send().await {
                    Err(e) if e.raw_response().is_some_and(|r| r.status().as_u16() == 503) && started.elapsed() < Duration::from_secs(30) => {
                        tokio::time::sleep(Duration::from_millis(200)).await
                    }
                    r => return ok(r, &format!("put {k}")),
                }
            }
        }
    };
    rt.block_on(async {
        let c = nodes[n].client();
        let started = Instant::now();
        loop {
            match c.create_bucket().bucket("ghosts").send().await {
                Err(e) if e.raw_response().is_some_and(|r| r.status().as_u16() == 503) && started.elapsed() < Duration::from_secs(20) => {
                    tokio::time::sleep(Duration::from_millis(200)).await
                }
                r => break ok(r, "create bucket"),
            }
        };
    });
    const BIG: usize = 3 * 1024 * 1024 + 11;
    let keys: Vec<String> = (0..).map(|i| format!("geist-{i}")).filter(|k| owner_of(&nodes[0], "ghosts", k) == ids[o]).take(3).collect();
    let values = [random_bytes(2000, 1), random_bytes(BIG, 2), random_bytes(3000, 3)];
    rt.block_on(async {
        for (k, v) in keys.iter().zip(&values) {
            put_retrying(&nodes[n].client(), k, v.clone()).await;
        }
    });
    // m down: the first two keys deleted through n; o records m stale.
    nodes[m].kill9();
    rt.block_on(async {
        for k in &keys[..2] {
            let started = Instant::now();
            loop {
                match nodes[n].client().delete_object().bucket("ghosts").key(k).send().await {
                    Err(e) if e.raw_response().is_some_and(|r| r.status().as_u16() == 503) && started.elapsed() < Duration::from_secs(30) => {
                        tokio::time::sleep(Duration::from_millis(200)).await
                    }
                    r => break ok(r, &format!("delete {k} with a member down")),
                }
            };
        }
    });
    wait_for("the owner records the member stale", Duration::from_secs(20), || {
        layout(&nodes[n])["stale"].as_array().is_some_and(|s| s.iter().any(|r| r["owner"] == ids[o].as_str() && r["member"] == ids[m].as_str()))
    });
    // o restarts: what m missed is no longer known, only that it is stale.
    nodes[o].kill9();
    nodes[o].start_again();
    nodes[m].start_again();
    let removed = || -> f64 { nodes.iter().map(|x| metric(x, "tessera_cluster_lane_heal_removed_records_total")).sum() };
    // Every node sees the others alive again (a restarted node rejoins the
    // gossip under a new incarnation), so the member can be chosen below.
    let all_alive = |x: &Server| {
        let v = x.admin_json("/admin/v1/cluster");
        let me = node_id(x);
        ids.iter().filter(|id| **id != me).all(|id| {
            v["members"].as_array().into_iter().flatten().any(|mm| mm["id"] == id.as_str() && mm["state"] == "alive")
        })
    };
    let done = || {
        removed() >= 2.0
            && nodes.iter().all(|x| {
                let l = layout(x);
                all_alive(x) && takeovers(x).iter().all(|(a, b)| a == b) && l["stale"].as_array().is_some_and(|s| s.is_empty())
            })
    };
    let started = Instant::now();
    while !done() {
        if started.elapsed() > Duration::from_secs(90) {
            for x in &nodes {
                let v = x.admin_json("/admin/v1/cluster");
                eprintln!(
                    "node {}: members {} takeovers {} stale {} lanes {} removed {}",
                    node_id(x),
                    v["members"],
                    v["layout"]["takeovers"],
                    v["layout"]["stale"],
                    v["lanes"],
                    metric(x, "tessera_cluster_lane_heal_removed_records_total")
                );
            }
            panic!("the member is not healed within 90 s");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let healed = started.elapsed();
    eprintln!("healed in {healed:?}: {} records the member alone held removed", removed());
    // o frozen: m acts for it, from its own copies.
    nodes[o].signal(libc::SIGSTOP);
    let t = wait_for("another node acts for the frozen owner", Duration::from_secs(60), || {
        takeovers(&nodes[n]).iter().any(|(a, b)| a == &ids[o] && b != &ids[o])
    });
    assert!(
        takeovers(&nodes[n]).iter().any(|(a, b)| a == &ids[o] && b == &ids[m]),
        "the lower-id member acts for the frozen owner ({t:?} after the freeze): {:?}, ids {ids:?}",
        layout(&nodes[n])
    );
    rt.block_on(async {
        for x in [m, n] {
            let c = nodes[x].client();
            assert_eq!(body_settled(&c, "ghosts", &keys[2], Duration::from_secs(30)).await, Ok(values[2].clone()), "the key kept");
            for k in &keys[..2] {
                assert_eq!(body_settled(&c, "ghosts", k, Duration::from_secs(30)).await, Err("NoSuchKey".to_string()), "{k}, deleted");
            }
            assert_eq!(list_all(&c, "ghosts", 100).await, vec![keys[2].clone()], "the listing through node {x}");
        }
    });
    nodes[o].signal(libc::SIGCONT);
}
