//! A cluster that holds data grows into lanes (issue 12): a third node
//! joins two (lanes form, 2+1: every old owner's records reach the other
//! nodes, its bodies are striped), and a fourth joins three (lanes grow
//! from 2+1 over three nodes to 2+2 over four). Lane positions
//! are stable (the newcomer takes the last one in every lane), so the
//! objects striped over three nodes stay readable through the lanes of
//! four; the newcomer takes its share of the keys (`handover`) and is
//! healed into the old owners' lanes before it may act for them; records
//! committed later over older pieces are striped again in the lanes'
//! new shape; and once it is over, every object survives the loss of a
//! node, the old ones with it. And back: a node of four is
//! decommissioned (lanes shrink from 2+2 to 2+1): its keys move to the
//! others, the records striped over four are read through the wider
//! lanes' positions until the walk stripes them over three, and then
//! every object survives the loss of one more node; a node that died is
//! decommissioned the same way, its keys taken from the node acting for it.

use std::time::{Duration, Instant};

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart, Tag, Tagging};
use tessera_tests::cluster::{decommission, free_udp_port, serves_layout_of, wait_for};
use tessera_tests::*;

mod cluster_kit;
use cluster_kit::*;

/// A node's re-striping walk: (reactors walking, records striped again,
/// records examined).
fn nodes_restripe(n: &Server) -> (u64, u64, u64) {
    let r = n.admin_json("/admin/v1/cluster")["lanes"]["restripe"].clone();
    let get = |f: &str| r[f].as_u64().unwrap_or(0);
    (get("running"), get("restriped_records"), get("examined_records"))
}

/// `n` nodes joined through the first, once every one follows a layout of
/// all of them with its lanes ready; the first one's cluster address.
fn cluster_of(n: usize, env: &[(&str, &str)]) -> (std::net::SocketAddr, Vec<Server>) {
    let ca = free_udp_port();
    let mut nodes = vec![start_node_with(ca, None, env)];
    for _ in 1..n {
        nodes.push(start_node_with(free_udp_port(), Some(ca), env));
    }
    // Two nodes make no lanes (no `lanes.ready`): the layout is enough.
    let follows = |x: &Server| {
        let l = layout(x);
        l["nodes"].as_array().is_some_and(|v| v.len() == n) && l["pending"].as_array().is_some_and(|p| p.is_empty())
    };
    wait_for("a layout of every node, lanes ready on each", Duration::from_secs(60), || {
        nodes.iter().all(|x| if n >= 3 { serves_layout_of(x, n) } else { follows(x) })
    });
    (ca, nodes)
}

/// One more node joins through `ca`; once every node follows the layout
/// of all of them with its lanes ready, every node's id.
fn join_one(nodes: &mut Vec<Server>, ca: std::net::SocketAddr, env: &[(&str, &str)]) -> Vec<String> {
    nodes.push(start_node_with(free_udp_port(), Some(ca), env));
    let n = nodes.len();
    let t = wait_for("a layout of every node whose lanes are ready on each", Duration::from_secs(60), || {
        nodes.iter().all(|x| serves_layout_of(x, n))
    });
    eprintln!("lanes of {n} nodes ready {t:?} after the start of the newcomer");
    nodes.iter().map(node_id).collect()
}

/// Creates bucket `grow`, waiting out 503s (a node's lanes being made).
async fn create_bucket(c: &aws_sdk_s3::Client) {
    let started = Instant::now();
    loop {
        match c.create_bucket().bucket("grow").send().await {
            Err(e) if e.raw_response().is_some_and(|r| r.status().as_u16() == 503) && started.elapsed() < Duration::from_secs(30) => {
                tokio::time::sleep(Duration::from_millis(200)).await
            }
            r => {
                ok(r, "create bucket");
                return;
            }
        }
    }
}

/// (data blocks, parity blocks) of a node's lanes.
fn shape(n: &Server) -> (Option<u64>, Option<u64>) {
    let l = n.admin_json("/admin/v1/cluster")["lanes"].clone();
    (l["data_blocks"].as_u64(), l["parity_blocks"].as_u64())
}

/// Every object of `objects` reads back whole through every node but `skip`.
async fn all_read(nodes: &[Server], skip: Option<usize>, objects: &[(String, Vec<u8>)], when: &str) {
    let via: Vec<usize> = (0..nodes.len()).filter(|j| Some(*j) != skip).collect();
    read_via(nodes, &via, objects, when).await
}

/// Every object of `objects` reads back whole through each of nodes `via`.
async fn read_via(nodes: &[Server], via: &[usize], objects: &[(String, Vec<u8>)], when: &str) {
    for &j in via {
        let c = nodes[j].client();
        for (k, v) in objects {
            let got = body_settled(&c, "grow", k, Duration::from_secs(40)).await;
            assert!(got.as_ref() == Ok(v), "{k} through node {j} {when}: {:?}", got.map(|b| b.len()));
        }
    }
}

/// Kills node `gone` and waits until another node acts for it.
fn kill_and_wait_for_takeover(nodes: &mut [Server], ids: &[String], gone: usize) -> serde_json::Value {
    nodes[gone].kill9();
    let watch = if gone == 0 { 1 } else { 0 };
    let t = wait_for("another node acts for the dead node", Duration::from_secs(60), || {
        layout(&nodes[watch])["takeovers"].as_array().is_some_and(|t| t.iter().any(|r| r["owner"] == ids[gone].as_str() && r["acting"] != ids[gone].as_str()))
    });
    let acting = layout(&nodes[watch])["takeovers"].as_array().unwrap().iter().find(|r| r["owner"] == ids[gone].as_str()).unwrap()["acting"].clone();
    eprintln!("node {gone} taken over by {acting} {t:?} after its death");
    acting
}

/// Waits until node `via`'s configuration Raft holds three members (the
/// decommissioned fourth left it), and checks that all three vote: a
/// voter that leaves is replaced in the same change, so the next node
/// lost leaves a quorum.
fn three_voters_after_the_leave(via: &Server) {
    let raft = |k: &str| via.admin_json("/admin/v1/cluster")["raft"][k].as_array().map_or(0, Vec::len);
    let t = wait_for("the decommissioned node out of the configuration's Raft", Duration::from_secs(60), || raft("voters") + raft("learners") == 3);
    assert_eq!(raft("voters"), 3, "three voters {t:?} after the leave");
}

/// After a node left lanes of four: every staying node lists the same
/// keys; then one more of them dies, and with 2+1 over three every object
/// reads through the two left once its keys are taken over.
fn one_more_dies_after_the_leave(
    rt: &tokio::runtime::Runtime,
    nodes: &mut [Server],
    ids: &[String],
    stay: &[usize],
    objects: &[(String, Vec<u8>)],
) {
    rt.block_on(async {
        let mut want: Vec<String> = objects.iter().map(|(k, _)| k.clone()).collect();
        want.sort();
        for &j in stay {
            assert_eq!(list_all(&nodes[j].client(), "grow", 7).await, want, "the listing through node {j}");
        }
    });
    three_voters_after_the_leave(&nodes[stay[0]]);
    let second = stay[2];
    kill_and_wait_for_takeover(nodes, ids, second);
    for &j in stay.iter().filter(|&&j| j != second) {
        let c = nodes[j].client();
        rt.block_on(async {
            for (k, v) in objects {
                let got = body_settled(&c, "grow", k, Duration::from_secs(40)).await;
                assert!(got.as_ref() == Ok(v), "{k} through node {j} with two nodes gone: {:?}", got.map(|b| b.len()));
            }
        });
    }
}

/// Sizes of the objects written over three nodes: empty, inline, one
/// striped piece, several pieces.
const SIZES: [usize; 4] = [0, 5000, 300_000, 3 * 1024 * 1024 + 7];
const PART: usize = 5 << 20;

#[test]
fn a_fourth_node_joins_lanes_of_three_with_data_and_every_object_survives_a_node_loss_after() {
    // The mover waits a little, so requests move keys first; so does the
    // re-striping walk, so the test writes over old pieces first; a node
    // down 3 s is taken over.
    let env = [
        ("TESSERA_TAKEOVER_AFTER_MS", "3000"),
        ("TESSERA_TEST_MOVER_DELAY_MS", "3000"),
        // Long enough for a loaded machine: the counts below are of the
        // commits' own re-striping only.
        ("TESSERA_TEST_RESTRIPE_DELAY_MS", "12000"),
    ];
    let (ca, mut nodes) = cluster_of(3, &env);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let c0 = nodes[0].client();
    rt.block_on(create_bucket(&c0));
    assert_eq!(shape(&nodes[0]), (Some(2), Some(1)));
    let keys: Vec<String> = (0..24).map(|i| format!("old/{i:02}-ä")).collect();
    let mut objects: Vec<(String, Vec<u8>)> = keys.iter().enumerate().map(|(i, k)| (k.clone(), random_bytes(SIZES[i % 4], i as u64))).collect();
    let part1 = random_bytes(PART, 1000);
    let (upload, etag1) = rt.block_on(async {
        for (i, (k, v)) in objects.iter().enumerate() {
            let c = nodes[i % 3].client();
            ok(c.put_object().bucket("grow").key(k).body(ByteStream::from(v.clone())).send().await, &format!("put {k}"));
        }
        let up = c0.create_multipart_upload().bucket("grow").key("mixed-upload").send().await.expect("create upload");
        let id = up.upload_id().unwrap().to_string();
        let p = c0.upload_part().bucket("grow").key("mixed-upload").upload_id(&id).part_number(1).body(ByteStream::from(part1.clone())).send().await;
        (id, p.expect("part 1").e_tag().unwrap().to_string())
    });

    // The fourth node joins.
    let ids = join_one(&mut nodes, ca, &env);
    assert_eq!(shape(&nodes[3]), (Some(2), Some(2)));
    let l = layout(&nodes[0]);
    let stale: Vec<(String, String)> =
        l["stale"].as_array().unwrap().iter().map(|r| (r["owner"].as_str().unwrap().to_string(), r["member"].as_str().unwrap().to_string())).collect();
    eprintln!("stale records after the join: {}", stale.len());
    // Only the newcomer lacks records (the heal may have cleared some by now).
    assert!(stale.len() <= 3 && stale.iter().all(|(o, m)| *m == ids[3] && *o != ids[3]), "{stale:?}");
    let gained: Vec<&String> = keys.iter().filter(|k| owner_of(&nodes[0], "grow", k) == ids[3]).collect();
    assert!(!gained.is_empty() && gained.len() < 14, "the newcomer owns about a quarter of the keys: {}", gained.len());

    // During the move (and after): every object reads back through every node.
    rt.block_on(async {
        all_read(&nodes, None, &objects, "during the move").await;
    });
    let t = wait_for("the move to end and the newcomer to be healed into every lane", Duration::from_secs(90), || {
        nodes.iter().all(|n| {
            let l = layout(n);
            l["moving"].is_null() && l["stale"].as_array().is_some_and(|s| s.is_empty())
        })
    });
    eprintln!("move over and stale records cleared {t:?} later");
    let moved = nodes[3].admin_json("/admin/v1/cluster")["moved_here"]["keys"].as_u64().unwrap();
    assert!(moved >= gained.len() as u64, "the newcomer took its keys: {moved} moved, {} owned", gained.len());
    let heal = nodes[0].admin_json("/admin/v1/cluster")["lanes"]["heal"].clone();
    assert!(heal["rebuilt_records"].as_u64().unwrap() + heal["verified_records"].as_u64().unwrap() > 0, "{heal:#}");

    // Records committed over pieces of three: a tag set on an old striped
    // object, an upload completed from a part of each width.
    let striped: Vec<&String> = keys.iter().enumerate().filter(|(i, k)| i % 4 == 2 && owner_of(&nodes[0], "grow", k) != ids[3]).map(|(_, k)| k).collect();
    let tagged = striped[0].clone();
    let part2 = random_bytes(PART, 1001);
    let restriped = || -> f64 { nodes.iter().map(|n| metric_total(&n.scrape_metrics(), "tessera_ec_restriped_pieces_total")).sum() };
    let mut counts = vec![restriped()];
    rt.block_on(async {
        let tagging = Tagging::builder().tag_set(Tag::builder().key("after").value("join").build().unwrap()).build().unwrap();
        ok(c0.put_object_tagging().bucket("grow").key(&tagged).tagging(tagging).send().await, "tag an old object");
        counts.push(restriped());
        let p2 = c0.upload_part().bucket("grow").key("mixed-upload").upload_id(&upload).part_number(2).body(ByteStream::from(part2.clone())).send().await;
        let etag2 = p2.expect("part 2").e_tag().unwrap().to_string();
        let parts = CompletedMultipartUpload::builder()
            .parts(CompletedPart::builder().part_number(1).e_tag(etag1).build())
            .parts(CompletedPart::builder().part_number(2).e_tag(etag2).build())
            .build();
        ok(c0.complete_multipart_upload().bucket("grow").key("mixed-upload").upload_id(&upload).multipart_upload(parts).send().await, "complete");
        counts.push(restriped());
        // And new objects, striped over four.
        for i in 0..6 {
            let k = format!("new/{i}");
            let v = random_bytes(SIZES[2 + i % 2], 2000 + i as u64);
            ok(nodes[i % 4].client().put_object().bucket("grow").key(&k).body(ByteStream::from(v.clone())).send().await, &format!("put {k}"));
            objects.push((k, v));
        }
    });
    objects.push(("mixed-upload".to_string(), [part1, part2].concat()));
    eprintln!("pieces striped again: before {}, after the tag {}, after the completion {}", counts[0], counts[1], counts[2]);
    assert_eq!(counts[1] - counts[0], 1.0, "the tagged object's piece was striped again");
    // The upload's first part moved with its key when the newcomer took it
    // (written there over four nodes), else its pieces (of up to 1 MiB)
    // are striped again now.
    let upload_moved = owner_of(&nodes[0], "grow", "mixed-upload") == ids[3];
    let again = counts[2] - counts[1];
    assert!(if upload_moved { again == 0.0 } else { again >= 5.0 }, "the upload's first part (moved: {upload_moved}): {again} pieces");
    // The walk stripes the other old objects again (those the newcomer
    // took were written over four already).
    let walked = keys
        .iter()
        .enumerate()
        .filter(|(i, k)| SIZES[i % 4] > 128 * 1024 && **k != tagged && owner_of(&nodes[0], "grow", k) != ids[3])
        .count() as u64;
    let restripe = |n: &Server| nodes_restripe(n);
    let t = wait_for("the old objects striped again", Duration::from_secs(60), || {
        nodes.iter().map(|n| restripe(n).1).sum::<u64>() == walked && nodes.iter().all(|n| restripe(n).0 == 0)
    });
    eprintln!("{walked} records striped again {t:?} after the writes");
    assert!(nodes.iter().all(|n| restripe(n).2 > 0), "every node walked its lanes");
    rt.block_on(async {
        let tags = c0.get_object_tagging().bucket("grow").key(&tagged).send().await.expect("tags");
        assert_eq!(tags.tag_set().len(), 1);
        all_read(&nodes, None, &objects, "after the move").await;
        let mut want: Vec<String> = objects.iter().map(|(k, _)| k.clone()).collect();
        want.sort();
        for (j, n) in nodes.iter().enumerate() {
            assert_eq!(list_all(&n.client(), "grow", 5).await, want, "the listing through node {j}");
        }
    });

    // One of the first three nodes dies: its keys are taken over, and
    // every object, striped over three or four, reads back through the
    // others. The lowest id alive acts for it (`takeover::decide`): the
    // newcomer when it can be, so its healed copies of the old records are
    // what the dead node's keys are read through.
    let mut by_id: Vec<usize> = (0..4).collect();
    by_id.sort_by_key(|&j| ids[j].clone());
    let gone = if by_id[0] == 3 { 1 } else if by_id[1] == 3 { by_id[0] } else { 1 };
    // Every node reported its walk done for this lane order.
    let order = nodes[0].admin_json("/admin/v1/cluster/config/lanes%2Forder")["version"].as_u64().expect("the lane order's version");
    for (j, id) in ids.iter().enumerate() {
        let r = nodes[0].admin_json(&format!("/admin/v1/cluster/config/restriped%2F{id}"));
        let v: serde_json::Value = serde_json::from_str(r["value"].as_str().expect("a restriped record")).unwrap();
        assert_eq!(v["order"].as_u64(), Some(order), "node {j}: {r:#}");
    }
    let acting = kill_and_wait_for_takeover(&mut nodes, &ids, gone);
    eprintln!("the newcomer acts for it: {}", acting == ids[3].as_str());
    rt.block_on(all_read(&nodes, Some(gone), &objects, "with a node dead"));
    // Back, and handed its keys back: it does not walk its lanes again
    // (a walk would wait out the test's start delay, running).
    nodes[gone].start_again();
    let t = wait_for("the dead node back and acting for itself", Duration::from_secs(90), || {
        nodes.iter().all(|n| {
            serves_layout_of(n, 4)
                && layout(n)["takeovers"].as_array().is_some_and(|t| t.iter().all(|r| r["owner"] == r["acting"]))
        })
    });
    eprintln!("node {gone} back and handed its keys {t:?} after its restart");
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(nodes_restripe(&nodes[gone]), (0, 0, 0), "no walk after the restart");
    rt.block_on(all_read(&nodes, None, &objects, "after the restart"));
}

/// Where node `n` keeps its member copies of `owner`'s lanes.
fn member_dir(n: &Server, owner: &str) -> std::path::PathBuf {
    n.data_dirs()[0].join("members").join(owner)
}

/// Every placed node's lane members, by position after it, as the
/// cluster status names them past four nodes (`layout.lane_sets`).
fn lane_sets(n: &Server) -> std::collections::BTreeMap<String, Vec<String>> {
    serde_json::from_value(layout(n)["lane_sets"].clone()).expect("lanes named per owner")
}

/// A fifth node joins four that hold data: the lanes stay 2+2, named per
/// owner from now on. The newcomer takes one member's position in three
/// old lanes (stale there until the whole-lane heal rebuilt its blocks)
/// and gets a lane of its own; it takes its share of the keys; every
/// object reads back during and after; and then every object survives the
/// loss of a node, whose keys a member of its lane serves.
#[test]
fn a_fifth_node_joins_lanes_of_four_with_data_and_every_object_survives_a_node_loss_after() {
    // Each re-striping walk waits 10 s, so the last step reads records of
    // four through lanes of three before it stripes them again.
    let env = [
        ("TESSERA_TAKEOVER_AFTER_MS", "3000"),
        ("TESSERA_TEST_MOVER_DELAY_MS", "3000"),
        ("TESSERA_TEST_MEMBER_SWEEP_MS", "500"),
        ("TESSERA_TEST_RESTRIPE_DELAY_MS", "10000"),
    ];
    let (ca, mut nodes) = cluster_of(4, &env);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let c0 = nodes[0].client();
    rt.block_on(create_bucket(&c0));
    assert_eq!(shape(&nodes[0]), (Some(2), Some(2)));
    let keys: Vec<String> = (0..32).map(|i| format!("old/{i:02}-ä")).collect();
    let mut objects: Vec<(String, Vec<u8>)> = keys.iter().enumerate().map(|(i, k)| (k.clone(), random_bytes(SIZES[i % 4], i as u64))).collect();
    rt.block_on(async {
        for (i, (k, v)) in objects.iter().enumerate() {
            let c = nodes[i % 4].client();
            ok(c.put_object().bucket("grow").key(k).body(ByteStream::from(v.clone())).send().await, &format!("put {k}"));
        }
    });
    let before: std::collections::BTreeMap<String, Vec<String>> = {
        let ids: Vec<String> = nodes.iter().map(node_id).collect();
        // Lanes by id before: each owner then the other three.
        ids.iter().map(|o| (o.clone(), { let mut m: Vec<String> = ids.iter().filter(|x| *x != o).cloned().collect(); m.sort(); m })).collect()
    };

    let ids = join_one(&mut nodes, ca, &env);
    let five = ids[4].clone();
    assert_eq!(shape(&nodes[4]), (Some(2), Some(2)));
    let lanes = lane_sets(&nodes[0]);
    assert_eq!(lanes.len(), 5);
    // Three old lanes took the newcomer at one position each; every other
    // position kept its node.
    let (mut took, mut replaced) = (Vec::new(), Vec::new());
    for (o, old) in &before {
        let new = &lanes[o];
        let diff: Vec<usize> = (0..3).filter(|&k| old[k] != new[k]).collect();
        assert!(diff.len() <= 1 && diff.iter().all(|&k| new[k] == five), "the lane of {o}: {old:?} -> {new:?}");
        if let Some(&k) = diff.first() {
            took.push(o.clone());
            replaced.push((old[k].clone(), o.clone()));
        }
    }
    assert_eq!(took.len(), 3, "{lanes:?}");
    let l = layout(&nodes[0]);
    let stale: Vec<(String, String)> =
        l["stale"].as_array().unwrap().iter().map(|r| (r["owner"].as_str().unwrap().to_string(), r["member"].as_str().unwrap().to_string())).collect();
    eprintln!("stale records after the join: {}", stale.len());
    assert!(stale.len() <= 3 && stale.iter().all(|(o, m)| *m == five && took.contains(o)), "{stale:?}");
    let gained: Vec<&String> = keys.iter().filter(|k| owner_of(&nodes[0], "grow", k) == five).collect();
    assert!(gained.len() < 16, "the newcomer owns about a fifth of the keys: {}", gained.len());

    rt.block_on(all_read(&nodes, None, &objects, "during the move"));
    let t = wait_for("the move to end and the newcomer to be healed into three lanes", Duration::from_secs(90), || {
        nodes.iter().all(|n| {
            let l = layout(n);
            l["moving"].is_null() && l["stale"].as_array().is_some_and(|s| s.is_empty())
        })
    });
    eprintln!("move over and stale records cleared {t:?} later");
    let moved = nodes[4].admin_json("/admin/v1/cluster")["moved_here"]["keys"].as_u64().unwrap();
    assert!(moved >= gained.len() as u64, "the newcomer took its keys: {moved} moved, {} owned", gained.len());
    // The heal rebuilt the newcomer's blocks in the lanes it joined.
    let rebuilt: u64 = took
        .iter()
        .map(|o| {
            let j = ids.iter().position(|x| x == o).unwrap();
            nodes[j].admin_json("/admin/v1/cluster")["lanes"]["heal"]["rebuilt_records"].as_u64().unwrap()
        })
        .sum();
    assert!(rebuilt > 0, "records rebuilt on the newcomer");
    // Each replaced member's copies of the lane it left are removed; every
    // member copy a lane still reads stays.
    for (m, o) in &replaced {
        let j = ids.iter().position(|x| x == m).unwrap();
        assert!(member_dir(&nodes[j], o).exists(), "node {j} held members of {o}'s lanes");
    }
    let t = wait_for("the replaced members' copies removed", Duration::from_secs(30), || {
        replaced.iter().all(|(m, o)| !member_dir(&nodes[ids.iter().position(|x| x == m).unwrap()], o).exists())
    });
    let removed: f64 = nodes.iter().map(|n| metric_total(&n.scrape_metrics(), "tessera_cluster_lane_member_shards_removed_total")).sum();
    eprintln!("{} member copies no lane reads removed ({removed} shards) {t:?} later", replaced.len());
    assert!(removed >= replaced.len() as f64);
    for (o, ms) in &lanes {
        for m in ms {
            let j = ids.iter().position(|x| x == m).unwrap();
            assert!(member_dir(&nodes[j], o).exists(), "node {j} keeps its members of {o}'s lanes");
        }
    }
    rt.block_on(async {
        for i in 0..5 {
            let k = format!("new/{i}");
            let v = random_bytes(SIZES[1 + i % 3], 3000 + i as u64);
            ok(nodes[i].client().put_object().bucket("grow").key(&k).body(ByteStream::from(v.clone())).send().await, &format!("put {k}"));
            objects.push((k, v));
        }
        all_read(&nodes, None, &objects, "after the move").await;
        let mut want: Vec<String> = objects.iter().map(|(k, _)| k.clone()).collect();
        want.sort();
        for (j, n) in nodes.iter().enumerate() {
            assert_eq!(list_all(&n.client(), "grow", 7).await, want, "the listing through node {j}");
        }
    });

    // An old node whose lane the newcomer joined dies: a member of its
    // lane acts for it, and every object reads back through the others.
    let gone = ids.iter().position(|x| *x == took[0]).unwrap();
    let acting = kill_and_wait_for_takeover(&mut nodes, &ids, gone);
    let lane = &lane_sets(&nodes[(gone + 1) % 5])[&ids[gone]];
    assert!(lane.iter().any(|m| acting == m.as_str()), "{acting} acts for {}, whose lane is {lane:?}", ids[gone]);
    rt.block_on(all_read(&nodes, Some(gone), &objects, "with a node dead"));
    nodes[gone].start_again();
    let t = wait_for("the dead node back and acting for itself", Duration::from_secs(90), || {
        nodes.iter().all(|n| {
            serves_layout_of(n, 5)
                && layout(n)["takeovers"].as_array().is_some_and(|t| t.iter().all(|r| r["owner"] == r["acting"]))
        })
    });
    eprintln!("node {gone} back and handed its keys {t:?} after its restart");
    rt.block_on(all_read(&nodes, None, &objects, "after the restart"));

    // A node of the five leaves (once every node walked its lanes for the
    // lane order of the join): wherever it was a member, a staying node
    // the lane lacks takes its position, stale there until healed; its
    // keys move to the others, and its lanes' member copies go.
    let leave = if gone == 1 { 2 } else { 1 };
    let stay: Vec<usize> = (0..5).filter(|&j| j != leave).collect();
    let t = wait_for("the decommission accepted", Duration::from_secs(60), || decommission(&nodes[0], &ids[leave]).status.success());
    eprintln!("node {leave} decommissioned {t:?} after the restart");
    let t = wait_for("the move over and every replacement healed", Duration::from_secs(90), || {
        stay.iter().all(|&j| {
            let l = layout(&nodes[j]);
            l["moving"].is_null()
                && l["stale"].as_array().is_some_and(|s| s.is_empty())
                && l["decommissioned"] == serde_json::json!([ids[leave]])
                && nodes[j].admin_json("/admin/v1/cluster")["lanes"]["ready"] == true
                && serde_json::from_value::<std::collections::BTreeMap<String, Vec<String>>>(l["lane_sets"].clone())
                    .is_ok_and(|lanes| stay.iter().all(|&o| lanes.get(&ids[o]).is_some_and(|m| !m.contains(&ids[leave]))))
        })
    });
    eprintln!("node {leave} out of every lane {t:?} later");
    let lanes = lane_sets(&nodes[0]);
    for &j in &stay {
        assert!(!lanes[&ids[j]].contains(&ids[leave]), "the lane of node {j}: {:?}", lanes[&ids[j]]);
    }
    nodes[leave].kill9();
    rt.block_on(all_read(&nodes, Some(leave), &objects, "after the leave"));
    wait_for("the leaving node's member copies removed", Duration::from_secs(30), || stay.iter().all(|&j| !member_dir(&nodes[j], &ids[leave]).exists()));

    // Four named lanes shrink to three: while the keys move the lanes stay
    // as named; after, the records of four read through the named lanes'
    // positions until the walk stripes them over three; then every object
    // survives one more dead node.
    let second = stay[2];
    let three: Vec<usize> = stay.iter().copied().filter(|&j| j != second).collect();
    let t = wait_for("the second decommission accepted", Duration::from_secs(60), || decommission(&nodes[0], &ids[second]).status.success());
    eprintln!("node {second} decommissioned {t:?} after the first leave");
    let t = wait_for("the move over, lanes of three", Duration::from_secs(90), || {
        three.iter().all(|&j| {
            let l = layout(&nodes[j]);
            l["moving"].is_null() && l["width"] == 3 && shape(&nodes[j]) == (Some(2), Some(1))
        })
    });
    eprintln!("lanes of three {t:?} later");
    let order = nodes[0].admin_json("/admin/v1/cluster/config/lanes%2Forder");
    let rec: serde_json::Value = serde_json::from_str(order["value"].as_str().expect("a lane order")).unwrap();
    assert_eq!(rec["format"], 4, "{rec:#}");
    nodes[second].kill9();
    let started = Instant::now();
    rt.block_on(read_via(&nodes, &three, &objects, "in lanes of three, before the walk"));
    let walked_yet: u64 = three.iter().map(|&j| nodes_restripe(&nodes[j]).1).sum();
    eprintln!("every object read through lanes of three in {:?}; striped again meanwhile: {walked_yet}", started.elapsed());
    assert_eq!(walked_yet, 0, "the reads ran before the walk (its start delay is 10 s)");
    let t = wait_for("the records of four striped over three", Duration::from_secs(60), || {
        three.iter().all(|&j| nodes_restripe(&nodes[j]).0 == 0) && three.iter().map(|&j| nodes_restripe(&nodes[j]).1).sum::<u64>() > walked_yet
    });
    eprintln!("walked {t:?} later");
    let dead = three[2];
    let acting = kill_and_wait_for_takeover(&mut nodes, &ids, dead);
    eprintln!("node {dead} taken over by {acting}");
    let two: Vec<usize> = three.iter().copied().filter(|&j| j != dead).collect();
    rt.block_on(read_via(&nodes, &two, &objects, "with three nodes gone"));
}

/// A node of three leaves: the lanes go, since two nodes keep none. First
/// they write bodies whole and every node walks its striped records
/// whole (the leaving node too); then the layout of two, the leaving
/// node's keys move, and every object reads from its owner's shard
/// alone, the leaving node stopped; the member copies are removed.
#[test]
fn a_node_leaves_lanes_of_three_for_two_nodes_and_every_object_reads_from_its_owner_alone() {
    let env = [("TESSERA_TAKEOVER_AFTER_MS", "3000"), ("TESSERA_TEST_MOVER_DELAY_MS", "2000"), ("TESSERA_TEST_MEMBER_SWEEP_MS", "500")];
    let (_ca, nodes) = cluster_of(3, &env);
    let ids: Vec<String> = nodes.iter().map(node_id).collect();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let c0 = nodes[0].client();
    rt.block_on(create_bucket(&c0));
    assert_eq!(shape(&nodes[0]), (Some(2), Some(1)));
    let mut objects: Vec<(String, Vec<u8>)> = (0..24).map(|i| (format!("drei/{i:02}-ü"), random_bytes(SIZES[i % 4], 700 + i as u64))).collect();
    let part1 = random_bytes(PART, 1700);
    let (upload, etag1) = rt.block_on(async {
        for (i, (k, v)) in objects.iter().enumerate() {
            ok(nodes[i % 3].client().put_object().bucket("grow").key(k).body(ByteStream::from(v.clone())).send().await, &format!("put {k}"));
        }
        let up = c0.create_multipart_upload().bucket("grow").key("out-upload").send().await.expect("create upload");
        let id = up.upload_id().unwrap().to_string();
        let p = c0.upload_part().bucket("grow").key("out-upload").upload_id(&id).part_number(1).body(ByteStream::from(part1.clone())).send().await;
        (id, p.expect("part 1").e_tag().unwrap().to_string())
    });
    // Striped: the bodies over 128 KiB, and the part.
    let striped = (0..24).filter(|i| SIZES[i % 4] > 128 * 1024).count() as u64 + 1;

    let gone = 2;
    let out = decommission(&nodes[0], &ids[gone]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let t = wait_for("two nodes without lanes, the move over", Duration::from_secs(90), || {
        [0, 1].iter().all(|&j| {
            let l = layout(&nodes[j]);
            l["moving"].is_null() && l["width"] == 2 && l["decommissioned"] == serde_json::json!([ids[gone]]) && shape(&nodes[j]) == (None, None)
        })
    });
    eprintln!("lanes gone and keys moved {t:?} after the decommission");
    let whole = nodes.iter().map(|n| metric_total(&n.scrape_metrics(), "tessera_cluster_restripe_records_total")).sum::<f64>() as u64;
    assert_eq!(whole, striped, "every striped record was written whole, each once");

    // The leaving node stops: every object reads from its owner alone.
    let mut nodes = nodes;
    nodes[gone].kill9();
    let part2 = random_bytes(PART, 1701);
    rt.block_on(async {
        let c = nodes[1].client();
        let p2 = c.upload_part().bucket("grow").key("out-upload").upload_id(&upload).part_number(2).body(ByteStream::from(part2.clone())).send().await;
        let etag2 = p2.expect("part 2").e_tag().unwrap().to_string();
        let parts = CompletedMultipartUpload::builder()
            .parts(CompletedPart::builder().part_number(1).e_tag(etag1).build())
            .parts(CompletedPart::builder().part_number(2).e_tag(etag2).build())
            .build();
        ok(c.complete_multipart_upload().bucket("grow").key("out-upload").upload_id(&upload).multipart_upload(parts).send().await, "complete");
        for i in 0..4 {
            let (k, v) = (format!("zwei/{i}"), random_bytes(SIZES[i], 1800 + i as u64));
            ok(nodes[i % 2].client().put_object().bucket("grow").key(&k).body(ByteStream::from(v.clone())).send().await, &format!("put {k}"));
            objects.push((k, v));
        }
    });
    objects.push(("out-upload".to_string(), [part1, part2].concat()));
    rt.block_on(async {
        read_via(&nodes, &[0, 1], &objects, "from the owners alone").await;
        let mut want: Vec<String> = objects.iter().map(|(k, _)| k.clone()).collect();
        want.sort();
        for j in [0, 1] {
            assert_eq!(list_all(&nodes[j].client(), "grow", 9).await, want, "the listing through node {j}");
        }
    });
    // The member copies of the lanes that went are removed.
    let members_left = |n: &Server| std::fs::read_dir(n.data_dirs()[0].join("members")).map_or(0, |d| d.count());
    let t = wait_for("the member copies removed", Duration::from_secs(30), || members_left(&nodes[0]) == 0 && members_left(&nodes[1]) == 0);
    eprintln!("member copies removed {t:?} later");
    rt.block_on(read_via(&nodes, &[0, 1], &objects, "after the member copies went"));
}

/// A third node joins two that hold data: lanes form (2+1). Each old
/// owner's records go to the two other nodes (every other node is stale
/// in its lanes until healed), the newcomer takes its share, and the walk
/// stripes the old owners' bodies, kept whole on their owner before; then
/// every object survives the loss of a node.
#[test]
fn a_third_node_brings_two_nodes_objects_into_lanes_and_every_object_survives_a_node_loss_after() {
    let env = [("TESSERA_TAKEOVER_AFTER_MS", "3000"), ("TESSERA_TEST_MOVER_DELAY_MS", "2000")];
    let (ca, mut nodes) = cluster_of(2, &env);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let c0 = nodes[0].client();
    rt.block_on(create_bucket(&c0));
    let objects: Vec<(String, Vec<u8>)> = (0..16).map(|i| (format!("zwei/{i:02}"), random_bytes(SIZES[i % 4], 300 + i as u64))).collect();
    rt.block_on(async {
        for (i, (k, v)) in objects.iter().enumerate() {
            ok(nodes[i % 2].client().put_object().bucket("grow").key(k).body(ByteStream::from(v.clone())).send().await, &format!("put {k}"));
        }
    });
    let ids = join_one(&mut nodes, ca, &env);
    assert_eq!(shape(&nodes[0]), (Some(2), Some(1)));
    // Every other node lacks an old owner's records (some may be healed by now).
    let stale = layout(&nodes[0])["stale"].as_array().unwrap().clone();
    assert!(stale.len() <= 4 && stale.iter().all(|r| r["owner"] != ids[2].as_str() && r["owner"] != r["member"]), "{stale:?}");
    rt.block_on(all_read(&nodes, None, &objects, "during the move"));
    let walked = objects
        .iter()
        .enumerate()
        .filter(|(i, (k, _))| SIZES[i % 4] > 128 * 1024 && owner_of(&nodes[0], "grow", k) != ids[2])
        .count() as u64;
    let t = wait_for("the move over, the members healed, the old bodies striped", Duration::from_secs(90), || {
        nodes.iter().all(|n| {
            let l = layout(n);
            l["moving"].is_null() && l["stale"].as_array().is_some_and(|s| s.is_empty()) && nodes_restripe(n).0 == 0
        }) && nodes.iter().map(|n| nodes_restripe(n).1).sum::<u64>() == walked
    });
    eprintln!("{walked} old bodies striped, members healed {t:?} later");
    rt.block_on(all_read(&nodes, None, &objects, "after the move"));
    // Each of the first two nodes' lanes: a dead owner's keys come back
    // from the other two (striped bodies decode 2 of 3).
    let gone = 1;
    kill_and_wait_for_takeover(&mut nodes, &ids, gone);
    rt.block_on(all_read(&nodes, Some(gone), &objects, "with a node dead"));
}

/// A node of four holding data is decommissioned: the lanes stay four
/// wide while its keys move to the other three, then shrink to 2+1. The
/// records striped over four read through the wider lanes' positions
/// (the node that left a hole) until the walk stripes them over three;
/// then every object survives the loss of one more node.
#[test]
fn a_node_leaves_lanes_of_four_with_data_and_every_object_survives_a_node_loss_after() {
    // The walk waits, so the test reads every record of four through the
    // lanes of three before it is striped again.
    let env = [
        ("TESSERA_TAKEOVER_AFTER_MS", "3000"),
        ("TESSERA_TEST_MOVER_DELAY_MS", "2000"),
        ("TESSERA_TEST_RESTRIPE_DELAY_MS", "15000"),
    ];
    let (_ca, mut nodes) = cluster_of(4, &env);
    let ids: Vec<String> = nodes.iter().map(node_id).collect();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let c0 = nodes[0].client();
    rt.block_on(create_bucket(&c0));
    assert_eq!(shape(&nodes[0]), (Some(2), Some(2)));
    let mut objects: Vec<(String, Vec<u8>)> = (0..24).map(|i| (format!("vier/{i:02}-ö"), random_bytes(SIZES[i % 4], 500 + i as u64))).collect();
    let part1 = random_bytes(PART, 1500);
    let (upload, etag1) = rt.block_on(async {
        for (i, (k, v)) in objects.iter().enumerate() {
            ok(nodes[i % 4].client().put_object().bucket("grow").key(k).body(ByteStream::from(v.clone())).send().await, &format!("put {k}"));
        }
        let up = c0.create_multipart_upload().bucket("grow").key("shrink-upload").send().await.expect("create upload");
        let id = up.upload_id().unwrap().to_string();
        let p = c0.upload_part().bucket("grow").key("shrink-upload").upload_id(&id).part_number(1).body(ByteStream::from(part1.clone())).send().await;
        (id, p.expect("part 1").e_tag().unwrap().to_string())
    });

    // The node whose id sorts second leaves (not the first node, which the
    // test talks to): in every lane, the nodes after it move up a position.
    let mut by_id: Vec<usize> = (0..4).collect();
    by_id.sort_by_key(|&j| ids[j].clone());
    let gone = if by_id[1] != 0 { by_id[1] } else { by_id[2] };
    let stay: Vec<usize> = (0..4).filter(|&j| j != gone).collect();
    let out = decommission(&nodes[0], &ids[gone]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let other = decommission(&nodes[0], &ids[stay[1]]);
    let why = String::from_utf8_lossy(&other.stderr).to_string();
    let waits = why.contains("moving") || why.contains("re-striped") || why.contains("one node leaves at a time");
    assert!(!other.status.success() && waits, "a second decommission waits: {why}");
    let owned_by_gone: Vec<&String> = objects.iter().map(|(k, _)| k).filter(|k| owner_of(&nodes[0], "grow", k) == ids[gone]).collect();
    eprintln!("node {gone} leaves, owning {} of the keys", owned_by_gone.len());

    // While its keys move, every object reads through every node, the
    // leaving one included; the lanes stay 2+2.
    rt.block_on(all_read(&nodes, None, &objects, "while the keys move"));
    let t = wait_for("the move over, the node out of every lane", Duration::from_secs(90), || {
        stay.iter().all(|&j| {
            let l = layout(&nodes[j]);
            l["moving"].is_null() && l["width"] == 3 && l["decommissioned"] == serde_json::json!([ids[gone]]) && shape(&nodes[j]) == (Some(2), Some(1))
        })
    });
    eprintln!("lanes of three {t:?} after the decommission");
    let moved: u64 = stay.iter().map(|&j| nodes[j].admin_json("/admin/v1/cluster")["moved_here"]["keys"].as_u64().unwrap_or(0)).sum();
    assert!(moved >= owned_by_gone.len() as u64, "the leaving node's keys moved: {moved} of {}", owned_by_gone.len());
    let order = nodes[stay[0]].admin_json("/admin/v1/cluster/config/lanes%2Forder");
    let rec: serde_json::Value = serde_json::from_str(order["value"].as_str().expect("a lane order")).unwrap();
    assert_eq!(rec["format"], 2, "{rec:#}");
    assert_eq!(rec["wider"].as_array().map(Vec::len), Some(4), "{rec:#}");
    assert!(!rec["nodes"].as_array().unwrap().contains(&serde_json::json!(ids[gone])), "{rec:#}");

    // The leaving node stops for good. Every record still striped over
    // four reads through the lanes of three, its blocks where the wider
    // lanes put them, the stopped node's a hole (decoded from parity).
    nodes[gone].kill9();
    let live = |nodes: &[Server]| -> Vec<usize> { (0..nodes.len()).filter(|&j| j != gone).collect() };
    let before_walk = Instant::now();
    rt.block_on(all_read(&nodes, Some(gone), &objects, "in lanes of three, before the walk"));
    let walked_yet: u64 = live(&nodes).iter().map(|&j| nodes_restripe(&nodes[j]).1).sum();
    eprintln!("every record of four read through lanes of three in {:?}; striped again meanwhile: {walked_yet}", before_walk.elapsed());
    assert_eq!(walked_yet, 0, "the reads ran before the walk (its start delay is 15 s)");

    // The upload completes over a part of four and one of three: part 1 is
    // striped again over three in the commit.
    let restriped = |nodes: &[Server]| -> f64 {
        live(nodes).iter().map(|&j| metric_total(&nodes[j].scrape_metrics(), "tessera_ec_restriped_pieces_total")).sum()
    };
    let before = restriped(&nodes);
    let part2 = random_bytes(PART, 1501);
    rt.block_on(async {
        let c = nodes[stay[0]].client();
        let p2 = c.upload_part().bucket("grow").key("shrink-upload").upload_id(&upload).part_number(2).body(ByteStream::from(part2.clone())).send().await;
        let etag2 = p2.expect("part 2").e_tag().unwrap().to_string();
        let parts = CompletedMultipartUpload::builder()
            .parts(CompletedPart::builder().part_number(1).e_tag(etag1).build())
            .parts(CompletedPart::builder().part_number(2).e_tag(etag2).build())
            .build();
        ok(c.complete_multipart_upload().bucket("grow").key("shrink-upload").upload_id(&upload).multipart_upload(parts).send().await, "complete");
        for i in 0..4 {
            let k = format!("drei/{i}");
            let v = random_bytes(SIZES[i], 2500 + i as u64);
            ok(nodes[stay[i % 3]].client().put_object().bucket("grow").key(&k).body(ByteStream::from(v.clone())).send().await, &format!("put {k}"));
            objects.push((k, v));
        }
    });
    objects.push(("shrink-upload".to_string(), [part1, part2].concat()));
    let again = restriped(&nodes) - before;
    eprintln!("pieces striped again by the completion: {again}");
    assert!(again >= 5.0, "part 1's pieces (of up to 1 MiB) striped over three: {again}");

    // The walk stripes every old record of four again: the striped objects
    // (the leaving node's moved over four too), once each.
    let walked = objects.iter().take(24).enumerate().filter(|(i, _)| SIZES[i % 4] > 128 * 1024).count() as u64;
    let t = wait_for("the records of four striped over three", Duration::from_secs(90), || {
        live(&nodes).iter().all(|&j| nodes_restripe(&nodes[j]).0 == 0) && live(&nodes).iter().map(|&j| nodes_restripe(&nodes[j]).1).sum::<u64>() == walked
    });
    eprintln!("{walked} records striped over three {t:?} later");
    let order_version = nodes[stay[0]].admin_json("/admin/v1/cluster/config/lanes%2Forder")["version"].as_u64().unwrap();
    for &j in &stay {
        let r = nodes[stay[0]].admin_json(&format!("/admin/v1/cluster/config/restriped%2F{}", ids[j]));
        let v: serde_json::Value = serde_json::from_str(r["value"].as_str().expect("a restriped record")).unwrap();
        assert_eq!(v["order"].as_u64(), Some(order_version), "node {j}: {r:#}");
    }
    rt.block_on(all_read(&nodes, Some(gone), &objects, "after the walk"));
    one_more_dies_after_the_leave(&rt, &mut nodes, &ids, &stay, &objects);
}

/// A node of four dies and another acts for it; the operator then
/// decommissions it. Its keys move from the acting node's foster lanes
/// (the dead node's own shards cannot answer), the lanes shrink to 2+1,
/// the records naming it are removed, and every object, those written
/// while it was down included, survives the loss of one more node.
#[test]
fn a_dead_node_of_four_is_decommissioned_and_its_keys_come_from_the_node_acting_for_it() {
    let env = [("TESSERA_TAKEOVER_AFTER_MS", "3000"), ("TESSERA_TEST_MOVER_DELAY_MS", "2000")];
    let (_ca, mut nodes) = cluster_of(4, &env);
    let ids: Vec<String> = nodes.iter().map(node_id).collect();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let c0 = nodes[0].client();
    rt.block_on(create_bucket(&c0));
    let mut objects: Vec<(String, Vec<u8>)> = (0..24).map(|i| (format!("tot/{i:02}"), random_bytes(SIZES[i % 4], 700 + i as u64))).collect();
    rt.block_on(async {
        for (i, (k, v)) in objects.iter().enumerate() {
            ok(nodes[i % 4].client().put_object().bucket("grow").key(k).body(ByteStream::from(v.clone())).send().await, &format!("put {k}"));
        }
    });
    let mut by_id: Vec<usize> = (0..4).collect();
    by_id.sort_by_key(|&j| ids[j].clone());
    let gone = if by_id[1] != 0 { by_id[1] } else { by_id[2] };
    let stay: Vec<usize> = (0..4).filter(|&j| j != gone).collect();
    let acting = kill_and_wait_for_takeover(&mut nodes, &ids, gone);
    // Written while it is down: its keys through the node acting for it.
    rt.block_on(async {
        for i in 0..8 {
            let (k, v) = (format!("waehrend/{i}"), random_bytes(SIZES[i % 4], 800 + i as u64));
            let c = nodes[stay[i % 3]].client();
            let started = Instant::now();
            loop {
                match c.put_object().bucket("grow").key(&k).body(ByteStream::from(v.clone())).send().await {
                    Err(e) if e.raw_response().is_some_and(|r| r.status().as_u16() == 503) && started.elapsed() < Duration::from_secs(30) => {
                        tokio::time::sleep(Duration::from_millis(200)).await
                    }
                    r => {
                        ok(r, &format!("put {k} with a node down"));
                        break;
                    }
                }
            }
            objects.push((k, v));
        }
    });
    let owned_by_gone = objects.iter().filter(|(k, _)| owner_of(&nodes[0], "grow", k) == ids[gone]).count();
    eprintln!("node {gone} is dead, {acting} acts for it; it owns {owned_by_gone} keys");
    assert!(owned_by_gone > 0);

    let out = decommission(&nodes[0], &ids[gone]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let t = wait_for("the dead node's keys moved, the lanes 2+1, its records gone", Duration::from_secs(120), || {
        stay.iter().all(|&j| {
            let l = layout(&nodes[j]);
            let names_it = |f: &str| l[f].as_array().is_none_or(|v| v.iter().any(|r| r["owner"] == ids[gone].as_str() || r["member"] == ids[gone].as_str()));
            l["moving"].is_null() && l["width"] == 3 && shape(&nodes[j]) == (Some(2), Some(1)) && !names_it("takeovers") && !names_it("stale")
        })
    });
    let moved: u64 = stay.iter().map(|&j| nodes[j].admin_json("/admin/v1/cluster")["moved_here"]["keys"].as_u64().unwrap_or(0)).sum();
    eprintln!("dead node decommissioned {t:?} after the command; {moved} keys moved");
    assert!(moved >= owned_by_gone as u64, "its keys moved: {moved} of {owned_by_gone}");
    rt.block_on(all_read(&nodes, Some(gone), &objects, "after the dead node left"));
    let walked = |j: usize| nodes_restripe(&nodes[j]);
    let t = wait_for("the records of four striped over three", Duration::from_secs(90), || {
        stay.iter().all(|&j| walked(j).0 == 0 && walked(j).2 > 0)
    });
    let restriped: u64 = stay.iter().map(|&j| walked(j).1).sum();
    eprintln!("{restriped} records striped over three {t:?} later");
    let striped = objects.iter().filter(|(_, v)| v.len() > 128 * 1024).count() as u64;
    assert_eq!(restriped, striped, "every striped object, once");
    one_more_dies_after_the_leave(&rt, &mut nodes, &ids, &stay, &objects);
}
