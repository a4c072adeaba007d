//! Unit tests of `owners`: layouts, moves, joins to lanes, decommissions.

use super::*;

/// A node record of test node `n` (also `takeover`'s tests).
pub(crate) fn record(n: u8) -> NodeRecord {
    NodeRecord {
        format: NODE_RECORD_FORMAT,
        id: hex::encode([n; 16]),
        cluster: format!("127.0.0.1:{}", 7000 + n as u16).parse().unwrap(),
        s3: format!("127.0.0.1:{}", 9000 + n as u16).parse().unwrap(),
        shards: Some(2),
        zone: String::new(),
    }
}

/// Applies `cmd` at the next index; whether it applied.
fn apply(state: &mut ConfigState, index: &mut u64, cmd: &Command) -> bool {
    *index += 1;
    state.apply(*index, cmd).ok
}

fn register(state: &mut ConfigState, index: &mut u64, n: u8) {
    assert!(apply(state, index, &Command::Put { key: record(n).key(), value: record(n).encode() }));
}


/// Test nodes `nodes` registered and laid out by the first layout: the
/// state and its last index.
fn laid_out(nodes: impl IntoIterator<Item = u8>) -> (ConfigState, u64) {
    let mut s = ConfigState::default();
    let mut i = 0;
    for n in nodes {
        register(&mut s, &mut i, n);
    }
    let first = next_layout(&s).unwrap().unwrap();
    assert!(apply(&mut s, &mut i, &first));
    (s, i)
}

/// A bucket record: layout changes move keys from now on.
fn add_bucket(s: &mut ConfigState, i: &mut u64) {
    assert!(apply(s, i, &Command::Put { key: "bucket/photos".into(), value: vec![1] }));
}

/// Node `id` reports its keys moved for `layout`, and the leader ends the move.
fn end_move(s: &mut ConfigState, i: &mut u64, id: &str, layout: u64) {
    let done = MovedRecord { format: MOVED_RECORD_FORMAT, layout };
    assert!(apply(s, i, &Command::Put { key: MovedRecord::key(id), value: serde_json::to_vec(&done).unwrap() }));
    let fin = move_finished(s).unwrap().expect("the move is over");
    assert!(apply(s, i, &fin));
}

#[test]
fn the_leader_lays_out_registered_nodes_and_waits_where_lanes_would_move() {
    let mut s = ConfigState::default();
    let mut i = 0;
    assert!(next_layout(&s).unwrap().is_none(), "no node, no layout");
    for n in 1..=3 {
        register(&mut s, &mut i, n);
    }
    let cmd = next_layout(&s).unwrap().expect("a first layout");
    assert!(matches!(&cmd, Command::Cas { expect: 0, .. }), "{cmd:?}");
    assert!(apply(&mut s, &mut i, &cmd));
    assert!(next_layout(&s).unwrap().is_none(), "the same nodes: nothing to change");
    let owners = Owners::from_state(&s).unwrap().unwrap();
    assert_eq!(owners.layout.width(), 3);
    assert!(owners.pending.is_empty() && owners.prev.is_none());
    let mut per_node: HashMap<String, usize> = HashMap::new();
    for p in 0..crate::layout::PARTITIONS {
        *per_node.entry(owners.owner_of(p).unwrap().id.clone()).or_insert(0) += 1;
    }
    assert_eq!(per_node.len(), 3, "every node owns partitions");
    assert!(per_node.values().all(|&c| c > 1100 && c < 1650), "balanced: {per_node:?}");
    // A fourth node while the cluster is empty: a new layout, version 2,
    // and nothing to move.
    register(&mut s, &mut i, 4);
    let cmd = next_layout(&s).unwrap().expect("a second layout");
    assert!(matches!(&cmd, Command::Cas { .. }), "{cmd:?}");
    assert!(apply(&mut s, &mut i, &cmd));
    let owners = Owners::from_state(&s).unwrap().unwrap();
    assert_eq!(owners.layout.version, 2);
    assert!(owners.prev.is_none() && owners.gainers().is_empty());
    // A fifth once a bucket exists: it joins the lanes of four, which
    // are named per owner from now on, and takes its share of the keys.
    add_bucket(&mut s, &mut i);
    register(&mut s, &mut i, 5);
    let cmd = next_layout(&s).unwrap().expect("a fifth node joins lanes of four");
    assert!(matches!(&cmd, Command::Txn { .. }), "{cmd:?}");
    assert!(apply(&mut s, &mut i, &cmd));
    let owners = Owners::from_state(&s).unwrap().unwrap();
    assert!(owners.pending.is_empty() && owners.prev.is_some());
    assert_eq!(owners.layout.width(), 4);
    assert_eq!(owners.placed_nodes().len(), 5);
    assert!(owners.has_lanes() && owners.lane_sets.len() == 5);
}

/// Every placed node's lane as `cluster_lanes::lane_nodes` makes it: owner -> members.
fn lanes_of(o: &Owners) -> BTreeMap<String, Vec<String>> {
    o.placed
        .iter()
        .map(|id| {
            let nodes = crate::cluster_lanes::lane_nodes(o, id).expect("a lane");
            assert_eq!(nodes[0].id, *id, "the owner first");
            (id.clone(), nodes[1..].iter().map(|r| r.id.clone()).collect())
        })
        .collect()
}

/// Checks lanes of four: distinct nodes, all placed, every node a member
/// of exactly three lanes.
fn balanced(o: &Owners, lanes: &BTreeMap<String, Vec<String>>) {
    let load = loads(o, lanes);
    assert!(load.values().all(|&l| l == 3), "every node a member of three lanes: {load:?}");
}

/// Checks lanes of four (distinct nodes, all placed); how many lanes each
/// node is a member of.
fn loads<'a>(o: &Owners, lanes: &'a BTreeMap<String, Vec<String>>) -> BTreeMap<&'a str, usize> {
    let mut load: BTreeMap<&str, usize> = lanes.keys().map(|k| (k.as_str(), 0)).collect();
    for (owner, ms) in lanes {
        assert_eq!(ms.len(), 3, "{owner}: {ms:?}");
        let set: std::collections::BTreeSet<&String> = ms.iter().chain([owner]).collect();
        assert_eq!(set.len(), 4, "distinct nodes in the lane of {owner}: {ms:?}");
        for m in ms {
            assert!(o.placed.contains(m) || o.prev_placed.contains(m), "{m} is placed");
            *load.entry(m).or_insert(0) += 1;
        }
    }
    load
}

/// The positions at which two lanes of one owner differ.
fn changed(before: &[String], after: &[String]) -> Vec<usize> {
    (0..before.len()).filter(|&k| before[k] != after[k]).collect()
}

/// Ends a lane change: the move reported done, stale records removed
/// (the heal), every placed node's walk reported.
fn settle(s: &mut ConfigState, i: &mut u64) {
    let o = Owners::from_state(s).unwrap().unwrap();
    for g in o.gainers() {
        let r = MovedRecord { format: MOVED_RECORD_FORMAT, layout: o.layout.version };
        assert!(apply(s, i, &Command::Put { key: MovedRecord::key(g), value: serde_json::to_vec(&r).unwrap() }));
    }
    if let Some(fin) = move_finished(s).unwrap() {
        assert!(apply(s, i, &fin));
    }
    for (owner, member) in o.stale.keys() {
        assert!(apply(s, i, &Command::Delete { key: crate::takeover::stale_key(owner, member) }));
    }
    for id in &o.placed {
        report_restriped(s, i, id);
    }
}

#[test]
fn a_layout_change_with_buckets_keeps_the_previous_layout_until_every_gainer_moved_its_keys() {
    let (mut s, mut i) = laid_out([1]);
    add_bucket(&mut s, &mut i);
    // A second node joins a one-node cluster that holds a bucket.
    register(&mut s, &mut i, 2);
    let cmd = next_layout(&s).unwrap().expect("a layout of two");
    assert!(matches!(&cmd, Command::Txn { .. }), "the layout and its predecessor together: {cmd:?}");
    assert!(apply(&mut s, &mut i, &cmd));
    let owners = Owners::from_state(&s).unwrap().unwrap();
    let (prev, _) = owners.prev.as_ref().expect("the previous layout is kept");
    assert_eq!((prev.version, owners.layout.version), (1, 2));
    let gainers: Vec<&str> = owners.gainers().into_iter().collect();
    assert_eq!(gainers, vec![record(2).id.as_str()], "only the newcomer gains partitions");
    let (one, two) = (record(1).id, record(2).id);
    let mut moving = 0;
    for p in 0..crate::layout::PARTITIONS {
        let now = owners.owner_of(p).unwrap().id.clone();
        match owners.moving_from(p) {
            Some(from) => {
                assert_eq!((from.id.as_str(), now.as_str()), (one.as_str(), two.as_str()), "partition {p}");
                moving += 1;
            }
            None => assert_eq!(now, one, "partition {p} stays"),
        }
    }
    assert!(moving > 1600 && moving < 2500, "about half the partitions move: {moving}");
    // No further change while keys move, not even a third node.
    register(&mut s, &mut i, 3);
    assert!(next_layout(&s).unwrap().is_none());
    assert!(move_finished(&s).unwrap().is_none(), "node 2 has not reported");
    // A report for another layout version, or of another format, is not done.
    let stale = MovedRecord { format: MOVED_RECORD_FORMAT, layout: 1 };
    assert!(apply(&mut s, &mut i, &Command::Put { key: MovedRecord::key(&two), value: serde_json::to_vec(&stale).unwrap() }));
    assert!(move_finished(&s).unwrap().is_none());
    let other = MovedRecord { format: 2, layout: 2 };
    assert!(apply(&mut s, &mut i, &Command::Put { key: MovedRecord::key(&two), value: serde_json::to_vec(&other).unwrap() }));
    assert!(move_finished(&s).unwrap().is_none());
    end_move(&mut s, &mut i, &two, 2);
    let owners = Owners::from_state(&s).unwrap().unwrap();
    assert!(owners.prev.is_none() && owners.moving_from(0).is_none());
    assert_eq!(owners.pending, vec![record(3).id]);
    // The third node forms lanes: a move too, and each old owner's
    // records are on no other node yet, so every other node is stale
    // in its lanes.
    let cmd = next_layout(&s).unwrap().expect("lanes form over three nodes");
    assert!(apply(&mut s, &mut i, &cmd));
    let owners = Owners::from_state(&s).unwrap().unwrap();
    assert!(owners.has_lanes() && owners.prev.is_some());
    let three = record(3).id;
    assert_eq!(owners.lane_order, vec![one.clone(), two.clone(), three.clone()]);
    let stale: Vec<(String, String)> = owners.stale.keys().cloned().collect();
    let want = vec![(one.clone(), two.clone()), (one.clone(), three.clone()), (two.clone(), one.clone()), (two.clone(), three.clone())];
    assert_eq!(stale, want);
    let gainers: Vec<&str> = owners.gainers().into_iter().collect();
    assert_eq!(gainers, vec![three.as_str()], "only the newcomer gains partitions");
}

#[test]
fn a_sixth_node_takes_only_its_share_and_only_from_the_others() {
    let (mut s, mut i) = laid_out(1..=5);
    add_bucket(&mut s, &mut i);
    // The lanes named when five were laid out: every node walked them.
    for n in 1..=5 {
        report_restriped(&mut s, &mut i, &record(n).id);
    }
    let before: Vec<String> = {
        let o = Owners::from_state(&s).unwrap().unwrap();
        (0..crate::layout::PARTITIONS).map(|p| o.owner_of(p).unwrap().id.clone()).collect()
    };
    register(&mut s, &mut i, 6);
    let cmd = next_layout(&s).unwrap().expect("5 -> 6 nodes: the layout changes");
    assert!(apply(&mut s, &mut i, &cmd));
    let owners = Owners::from_state(&s).unwrap().unwrap();
    let six = record(6).id;
    assert_eq!(owners.gainers().into_iter().collect::<Vec<_>>(), vec![six.as_str()]);
    let mut moved = 0;
    for p in 0..crate::layout::PARTITIONS {
        let now = &owners.owner_of(p).unwrap().id;
        if *now != before[p as usize] {
            assert_eq!(now, &six, "partition {p} moves only to the newcomer");
            assert_eq!(owners.moving_from(p).map(|r| &r.id), Some(&before[p as usize]));
            moved += 1;
        } else {
            assert!(owners.moving_from(p).is_none());
        }
    }
    // About a sixth of the partitions, never much more.
    assert!(moved > 550 && moved < 850, "{moved} of 4096 partitions moved");
}

#[test]
fn a_decommissioned_node_leaves_the_layout_its_keys_move_and_it_is_never_placed_again() {
    let (mut s, mut i) = laid_out(1..=2);
    let (one, two) = (record(1).id, record(2).id);
    assert!(decommission(&s, &hex::encode([9u8; 16]), 1).unwrap_err().contains("not a member"));
    add_bucket(&mut s, &mut i);
    let cmd = decommission(&s, &two, 1).expect("node 2 may go");
    assert!(apply(&mut s, &mut i, &cmd));
    assert!(decommission(&s, &two, 1).unwrap_err().contains("already"));
    assert!(decommission(&s, &one, 1).unwrap_err().contains("last node"));
    // The leader lays out node 1 alone, keeping the layout of two.
    let cmd = next_layout(&s).unwrap().expect("a layout without node 2");
    assert!(matches!(&cmd, Command::Txn { .. }), "{cmd:?}");
    assert!(apply(&mut s, &mut i, &cmd));
    let owners = Owners::from_state(&s).unwrap().unwrap();
    assert_eq!(owners.layout.width(), 1);
    assert!(owners.pending.is_empty(), "a decommissioned node is not pending");
    assert_eq!(owners.placed.iter().collect::<Vec<_>>(), vec![&one]);
    let listed: Vec<&str> = owners.placed_nodes().iter().map(|r| r.id.as_str()).collect();
    assert_eq!(listed, vec![one.as_str(), two.as_str()], "the leaving node is listed while it holds keys");
    assert_eq!(owners.gainers().into_iter().collect::<Vec<_>>(), vec![one.as_str()]);
    let from_two = (0..crate::layout::PARTITIONS).filter(|&p| owners.moving_from(p).is_some_and(|r| r.id == two)).count();
    assert!(from_two > 1600 && from_two < 2500, "node 2's partitions move: {from_two}");
    assert!(decommission(&s, &one, 1).is_err(), "nothing else while keys move");
    end_move(&mut s, &mut i, &one, owners.layout.version);
    let owners = Owners::from_state(&s).unwrap().unwrap();
    let listed: Vec<&str> = owners.placed_nodes().iter().map(|r| r.id.as_str()).collect();
    assert_eq!(listed, vec![one.as_str()]);
    assert!(next_layout(&s).unwrap().is_none(), "node 2, still registered, is not placed again");
    let status = owners.status(&one);
    assert_eq!(status["decommissioned"], serde_json::json!([two]));
}

#[test]
fn a_fourth_node_joins_lanes_of_three_last_in_every_lane_and_stale_in_the_old_owners() {
    let (mut s, mut i) = laid_out(2..=4);
    add_bucket(&mut s, &mut i);
    let before = Owners::from_state(&s).unwrap().unwrap();
    assert!(before.has_lanes() && before.lane_order.is_empty());
    // The newcomer's id sorts before every other: by id it would take
    // position 1 of every lane and shift the others.
    register(&mut s, &mut i, 1);
    let cmd = next_layout(&s).unwrap().expect("lanes of 3 grow to 4");
    assert!(matches!(&cmd, Command::Txn { .. }), "{cmd:?}");
    assert!(apply(&mut s, &mut i, &cmd));
    let after = Owners::from_state(&s).unwrap().unwrap();
    assert!(after.has_lanes() && after.layout.width() == 4 && after.pending.is_empty());
    let (one, old): (String, Vec<String>) = (record(1).id, (2..=4).map(|n| record(n).id).collect());
    assert_eq!(after.lane_order, [old.clone(), vec![one.clone()]].concat(), "the old nodes by id, the newcomer last");
    for o in &old {
        let was: Vec<String> = crate::cluster_lanes::lane_nodes(&before, o).unwrap().into_iter().map(|r| r.id).collect();
        let now: Vec<String> = crate::cluster_lanes::lane_nodes(&after, o).unwrap().into_iter().map(|r| r.id).collect();
        assert_eq!(now[..3], was[..], "owner {o}: every old position keeps its node");
        assert_eq!(now[3], one);
        assert!(after.is_stale(o, &one), "the newcomer's member copies of {o}'s lanes start empty");
    }
    assert_eq!(after.stale.len(), 3);
    let gainers: Vec<&str> = after.gainers().into_iter().collect();
    assert_eq!(gainers, vec![one.as_str()], "only the newcomer gains partitions");
    let moving = (0..crate::layout::PARTITIONS).filter(|&p| after.moving_from(p).is_some()).count();
    assert!(moving > 800 && moving < 1250, "about a quarter of the partitions move: {moving}");
    // Nothing else while the keys move; after, a fifth node waits for
    // every node's walk of the new order, and no node may leave while it
    // waits to join.
    register(&mut s, &mut i, 5);
    assert!(next_layout(&s).unwrap().is_none());
    end_move(&mut s, &mut i, &one, after.layout.version);
    assert!(next_layout(&s).unwrap().is_none());
    assert!(decommission(&s, &one, 1).unwrap_err().contains("none may wait to join"));
    // The order stays, and an unreadable one is refused, not guessed.
    assert_eq!(Owners::from_state(&s).unwrap().unwrap().lane_order.len(), 4);
    let bad = LaneOrder { format: 6, nodes: vec![], wider: vec![], lanes: BTreeMap::new(), wider_lanes: BTreeMap::new(), plain: false };
    assert!(apply(&mut s, &mut i, &Command::Put { key: LANE_ORDER_KEY.into(), value: bad.encode() }));
    assert!(Owners::from_state(&s).unwrap_err().contains("lane order format 6: this build reads"));
    // Format 3 names every owner's lane: one naming none is refused.
    let bad = LaneOrder { format: 3, nodes: vec![one.clone()], wider: vec![], lanes: BTreeMap::new(), wider_lanes: BTreeMap::new(), plain: false };
    assert!(apply(&mut s, &mut i, &Command::Put { key: LANE_ORDER_KEY.into(), value: bad.encode() }));
    assert!(Owners::from_state(&s).unwrap_err().contains("lane order format 3"));
    // A wider order must be one node more than the order, around it.
    for bad in [
        LaneOrder { format: 1, nodes: vec![one.clone()], wider: vec![one.clone(), old[0].clone()], lanes: BTreeMap::new(), wider_lanes: BTreeMap::new(), plain: false },
        LaneOrder { format: 2, nodes: vec![one.clone()], wider: vec![old[0].clone(), old[1].clone()], lanes: BTreeMap::new(), wider_lanes: BTreeMap::new(), plain: false },
        LaneOrder { format: 2, nodes: vec![one.clone()], wider: vec![], lanes: BTreeMap::new(), wider_lanes: BTreeMap::new(), plain: false },
    ] {
        assert!(apply(&mut s, &mut i, &Command::Put { key: LANE_ORDER_KEY.into(), value: bad.encode() }));
        assert!(Owners::from_state(&s).unwrap_err().contains("lane order format"), "{bad:?}");
    }
}

#[test]
fn a_node_down_and_taken_over_may_leave_lanes_of_four_and_its_keys_move_from_the_node_acting_for_it() {
    let (mut s, mut i) = laid_out(1..=4);
    add_bucket(&mut s, &mut i);
    let ids: Vec<String> = (1..=4).map(|n| record(n).id).collect();
    let put = |s: &mut ConfigState, i: &mut u64, key: String, value: Vec<u8>| assert!(apply(s, i, &Command::Put { key, value }));
    let taken = |owner: &str, acting: &str| crate::takeover::TakeoverRecord {
        format: crate::takeover::RECORD_FORMAT,
        owner: owner.to_string(),
        acting: acting.to_string(),
        since_ms: 1,
    };
    // Node 2 is down: node 1 acts for it; node 2 missed commits of the
    // others' lanes, and a member missed some of node 2's own.
    put(&mut s, &mut i, crate::takeover::TakeoverRecord::key(&ids[1]), taken(&ids[1], &ids[0]).encode());
    put(&mut s, &mut i, crate::takeover::stale_key(&ids[2], &ids[1]), crate::takeover::stale_value(1));
    put(&mut s, &mut i, crate::takeover::stale_key(&ids[1], &ids[3]), crate::takeover::stale_value(1));
    // Another node may not leave now, nor node 2 while another owner is
    // taken over or another member lacks records.
    assert!(decommission(&s, &ids[2], 1).unwrap_err().contains("acts for a lane owner"));
    put(&mut s, &mut i, crate::takeover::stale_key(&ids[2], &ids[3]), crate::takeover::stale_value(1));
    assert!(decommission(&s, &ids[1], 1).unwrap_err().contains("lacks records"));
    assert!(apply(&mut s, &mut i, &Command::Delete { key: crate::takeover::stale_key(&ids[2], &ids[3]) }));
    let cmd = decommission(&s, &ids[1], 1).expect("node 2 may leave, down");
    assert!(apply(&mut s, &mut i, &cmd));
    let cmd = next_layout(&s).unwrap().expect("the lanes shrink");
    assert!(apply(&mut s, &mut i, &cmd));
    let o = Owners::from_state(&s).unwrap().unwrap();
    assert_eq!(o.acting_for(&ids[1]), ids[0], "node 1 acts for it while its keys move");
    let mut moving = 0;
    for p in 0..crate::layout::PARTITIONS {
        if let Some(from) = o.moving_from(p) {
            moving += 1;
            assert_eq!(from.id, ids[1]);
            assert_eq!(o.prev_owner_of(p).map(|r| &r.id), Some(&ids[1]));
            let (node, v) = crate::handover::source(&o, from).unwrap();
            assert_eq!((node.id.as_str(), v), (ids[0].as_str(), crate::handover::VERSION_FOSTER), "taken from the acting node's foster lanes");
        } else {
            assert_eq!(o.prev_owner_of(p).map(|r| &r.id), o.layout_owner_of(p).map(|r| &r.id));
        }
    }
    assert!(moving > 800, "node 2's quarter moves: {moving}");
    // Once handed back (the node is up again), from the node itself.
    put(&mut s, &mut i, crate::takeover::TakeoverRecord::key(&ids[1]), taken(&ids[1], &ids[1]).encode());
    let o = Owners::from_state(&s).unwrap().unwrap();
    let p = (0..crate::layout::PARTITIONS).find(|&p| o.moving_from(p).is_some()).unwrap();
    let (node, v) = crate::handover::source(&o, o.moving_from(p).unwrap()).unwrap();
    assert_eq!((node.id.as_str(), v), (ids[1].as_str(), crate::handover::VERSION));
}

#[test]
fn a_node_registered_while_one_leaves_lanes_of_four_joins_after_the_leave() {
    let (mut s, mut i) = laid_out(1..=4);
    add_bucket(&mut s, &mut i);
    let two = record(2).id;
    let cmd = decommission(&s, &two, 1).unwrap();
    assert!(apply(&mut s, &mut i, &cmd));
    register(&mut s, &mut i, 5);
    let cmd = next_layout(&s).unwrap().expect("the leave first");
    assert!(apply(&mut s, &mut i, &cmd));
    let o = Owners::from_state(&s).unwrap().unwrap();
    assert_eq!(o.placed.len(), 3);
    assert!(!o.placed.contains(&two) && o.pending == vec![record(5).id]);
    assert_eq!(o.lane_wider.len(), 4);
    for g in o.gainers().into_iter().map(str::to_string).collect::<Vec<_>>() {
        let done = MovedRecord { format: MOVED_RECORD_FORMAT, layout: o.layout.version };
        assert!(apply(&mut s, &mut i, &Command::Put { key: MovedRecord::key(&g), value: serde_json::to_vec(&done).unwrap() }));
    }
    let fin = move_finished(&s).unwrap().expect("the move is over");
    assert!(apply(&mut s, &mut i, &fin));
    assert!(next_layout(&s).unwrap().is_none(), "the join waits for the walks");
    for id in o.placed.iter() {
        report_restriped(&mut s, &mut i, id);
    }
    let cmd = next_layout(&s).unwrap().expect("then the join");
    assert!(apply(&mut s, &mut i, &cmd));
    let o = Owners::from_state(&s).unwrap().unwrap();
    assert!(o.placed.contains(&record(5).id) && o.placed.len() == 4 && o.lane_wider.is_empty());
}

/// Node `id` reports its lanes re-striped under the current lane order.
fn report_restriped(s: &mut ConfigState, i: &mut u64, id: &str) {
    let order = s.get(LANE_ORDER_KEY).map_or(0, |v| v.version);
    let r = RestripedRecord { format: RESTRIPED_RECORD_FORMAT, order };
    assert!(apply(s, i, &Command::Put { key: RestripedRecord::key(id), value: serde_json::to_vec(&r).unwrap() }));
}

#[test]
fn a_node_leaves_lanes_of_four_which_stay_wide_while_its_keys_move_then_read_the_wider_order() {
    let (mut s, mut i) = laid_out(1..=4);
    add_bucket(&mut s, &mut i);
    let ids: Vec<String> = (1..=4).map(|n| record(n).id).collect();
    let two = ids[1].clone();
    let before = Owners::from_state(&s).unwrap().unwrap();
    // Not while a member lacks records, nor while another node acts for an owner.
    let stale = Command::Put { key: crate::takeover::stale_key(&ids[0], &ids[2]), value: crate::takeover::stale_value(1) };
    assert!(apply(&mut s, &mut i, &stale));
    assert!(decommission(&s, &two, 1).unwrap_err().contains("lacks records"));
    assert!(apply(&mut s, &mut i, &Command::Delete { key: crate::takeover::stale_key(&ids[0], &ids[2]) }));
    // Node 2 sorts second: the nodes after it in every lane shift.
    let cmd = decommission(&s, &two, 1).expect("4 nodes to 3");
    assert!(apply(&mut s, &mut i, &cmd));
    let cmd = next_layout(&s).unwrap().expect("the lanes shrink");
    assert!(matches!(&cmd, Command::Txn { .. }), "{cmd:?}");
    assert!(apply(&mut s, &mut i, &cmd));
    let moving = Owners::from_state(&s).unwrap().unwrap();
    let stay: Vec<String> = ids.iter().filter(|id| **id != two).cloned().collect();
    assert_eq!(moving.lane_order, stay, "the order less the leaving node");
    assert_eq!(moving.lane_wider, ids, "the order before, by id as lanes made without a record");
    assert!(moving.stale.is_empty(), "every staying member holds every staying owner's records");
    assert!(moving.has_lanes() && moving.layout.width() == 3);
    assert!(moving.gainers().iter().all(|g| *g != two));
    for p in 0..crate::layout::PARTITIONS {
        if let Some(from) = moving.moving_from(p) {
            assert_eq!(from.id, two, "partition {p} moves from the leaving node only");
        }
    }
    // While the keys move the lanes keep the leaving node, where it was.
    for o in &ids {
        let was = crate::cluster_lanes::lane_nodes(&before, o).unwrap();
        assert_eq!(crate::cluster_lanes::lane_nodes(&moving, o).unwrap(), was, "owner {o} while keys move");
        assert!(crate::cluster_lanes::wide_positions(&moving, &was).is_none());
    }
    assert!(next_layout(&s).unwrap().is_none(), "one move at a time");
    for g in moving.gainers().into_iter().map(str::to_string).collect::<Vec<_>>() {
        let done = MovedRecord { format: MOVED_RECORD_FORMAT, layout: moving.layout.version };
        assert!(apply(&mut s, &mut i, &Command::Put { key: MovedRecord::key(&g), value: serde_json::to_vec(&done).unwrap() }));
    }
    let fin = move_finished(&s).unwrap().expect("the move is over");
    assert!(apply(&mut s, &mut i, &fin));
    let after = Owners::from_state(&s).unwrap().unwrap();
    assert!(crate::cluster_lanes::lane_nodes(&after, &two).is_none(), "the node left every lane");
    // The lanes of three: the wider lanes' positions, node 2's a hole.
    let expect: [(usize, Vec<Option<usize>>); 3] =
        [(0, vec![Some(0), None, Some(1), Some(2)]), (2, vec![Some(0), Some(1), None, Some(2)]), (3, vec![Some(0), Some(1), None, Some(2)])];
    for (o, wide) in expect {
        let nodes = crate::cluster_lanes::lane_nodes(&after, &ids[o]).unwrap();
        let was: Vec<String> = crate::cluster_lanes::lane_nodes(&before, &ids[o]).unwrap().into_iter().map(|r| r.id).collect();
        let now: Vec<String> = nodes.iter().map(|r| r.id.clone()).collect();
        assert_eq!(now, was.iter().filter(|id| **id != two).cloned().collect::<Vec<_>>(), "owner {o}");
        assert_eq!(crate::cluster_lanes::wide_positions(&after, &nodes), Some(wide), "owner {o}");
    }
    // A join waits until every node striped its records of four again
    // (they would be looked for on the newcomer), as would another
    // decommission; then the order loses its wider one.
    register(&mut s, &mut i, 5);
    assert!(next_layout(&s).unwrap().is_none());
    for id in &stay[..2] {
        report_restriped(&mut s, &mut i, id);
    }
    assert!(next_layout(&s).unwrap().is_none(), "one node has not re-striped");
    report_restriped(&mut s, &mut i, &stay[2]);
    let cmd = next_layout(&s).unwrap().expect("the join goes on");
    assert!(apply(&mut s, &mut i, &cmd));
    let grown = Owners::from_state(&s).unwrap().unwrap();
    assert_eq!(grown.lane_order, [stay.clone(), vec![record(5).id]].concat());
    assert!(grown.lane_wider.is_empty());
    end_move(&mut s, &mut i, &record(5).id, grown.layout.version);
    for o in &stay {
        assert!(apply(&mut s, &mut i, &Command::Delete { key: crate::takeover::stale_key(o, &record(5).id) }));
    }
    assert!(decommission(&s, &ids[0], 1).unwrap_err().contains("earlier shape"), "not before the newcomer's walk");
    for id in grown.placed.iter() {
        report_restriped(&mut s, &mut i, id);
    }
    assert!(decommission(&s, &ids[0], 1).is_ok());
}

#[test]
fn three_nodes_leave_lanes_for_two_once_every_node_wrote_its_striped_records_whole() {
    let (mut s, mut i) = laid_out(1..=3);
    // Empty: the layout just changes.
    assert!(decommission(&s, &record(3).id, 1).is_ok());
    add_bucket(&mut s, &mut i);
    let (one, three) = (record(1).id, record(3).id);
    // A node another acts for may not leave three: two nodes have no
    // foster lanes to export its keys from.
    let t = crate::takeover::TakeoverRecord { format: crate::takeover::RECORD_FORMAT, owner: three.clone(), acting: one.clone(), since_ms: 1 };
    assert!(apply(&mut s, &mut i, &Command::Put { key: crate::takeover::TakeoverRecord::key(&three), value: t.encode() }));
    assert!(decommission(&s, &three, 1).unwrap_err().contains("acts for"));
    assert!(apply(&mut s, &mut i, &Command::Delete { key: crate::takeover::TakeoverRecord::key(&three) }));
    let cmd = decommission(&s, &three, 1).expect("three may leave for two");
    assert!(apply(&mut s, &mut i, &cmd));
    // First the lanes write bodies whole: the order marked, the layout as it was.
    let cmd = next_layout(&s).unwrap().expect("lanes on their way out");
    assert!(matches!(&cmd, Command::Cas { key, .. } if key == LANE_ORDER_KEY), "{cmd:?}");
    assert!(apply(&mut s, &mut i, &cmd));
    let o = Owners::from_state(&s).unwrap().unwrap();
    assert!(o.lanes_plain && o.has_lanes() && o.placed.len() == 3 && o.prev.is_none());
    assert_eq!(LaneOrder::decode(&s.get(LANE_ORDER_KEY).unwrap().value).unwrap().format, LANE_ORDER_FORMAT_PLAIN);
    // Then every node walks its striped records whole, the leaving one too.
    assert!(next_layout(&s).unwrap().is_none());
    report_restriped(&mut s, &mut i, &one);
    report_restriped(&mut s, &mut i, &record(2).id);
    assert!(next_layout(&s).unwrap().is_none(), "the leaving node exports its keys from its own shards: its walk counts");
    report_restriped(&mut s, &mut i, &three);
    let cmd = next_layout(&s).unwrap().expect("the layout of two");
    assert!(apply(&mut s, &mut i, &cmd));
    let o = Owners::from_state(&s).unwrap().unwrap();
    assert_eq!(o.placed.len(), 2);
    assert!(!o.has_lanes() && o.prev.is_some() && s.get(LANE_ORDER_KEY).is_none(), "no lanes, the order gone");
    assert!(o.gainers().iter().all(|g| *g != three));
    assert!(crate::cluster_lanes::lane_nodes(&o, &one).is_none());
    // Once the keys moved, every member copy is garbage.
    let all: Vec<String> = (1..=3).map(|n| record(n).id).collect();
    assert!(crate::members::garbage(&o, &one, &all).is_empty(), "keys moving");
    settle(&mut s, &mut i);
    let o = Owners::from_state(&s).unwrap().unwrap();
    assert_eq!(crate::members::garbage(&o, &one, &all), vec![record(2).id, three.clone()]);
    // Two to one, as before (no lanes).
    let cmd = decommission(&s, &record(2).id, 1).expect("two may leave for one");
    assert!(apply(&mut s, &mut i, &cmd));
    assert!(next_layout(&s).unwrap().is_some());
}

#[test]
fn a_join_to_lanes_waits_while_another_node_acts_for_an_owner_or_a_member_is_stale() {
    let (mut s, mut i) = laid_out(1..=3);
    add_bucket(&mut s, &mut i);
    register(&mut s, &mut i, 4);
    let (one, two) = (record(1).id, record(2).id);
    let stale = Command::Put { key: crate::takeover::stale_key(&one, &two), value: crate::takeover::stale_value(1) };
    assert!(apply(&mut s, &mut i, &stale));
    assert!(next_layout(&s).unwrap().is_none(), "a member lacks commits");
    assert!(apply(&mut s, &mut i, &Command::Delete { key: crate::takeover::stale_key(&one, &two) }));
    let t = crate::takeover::TakeoverRecord { format: crate::takeover::RECORD_FORMAT, owner: one.clone(), acting: two.clone(), since_ms: 1 };
    assert!(apply(&mut s, &mut i, &Command::Put { key: crate::takeover::TakeoverRecord::key(&one), value: t.encode() }));
    assert!(next_layout(&s).unwrap().is_none(), "node 2 acts for node 1");
    let back = crate::takeover::TakeoverRecord { acting: one.clone(), ..t };
    assert!(apply(&mut s, &mut i, &Command::Put { key: crate::takeover::TakeoverRecord::key(&one), value: back.encode() }));
    assert!(next_layout(&s).unwrap().is_some(), "handed back: the join goes on");
}

#[test]
fn nodes_registered_together_join_lanes_one_at_a_time() {
    let (mut s, mut i) = laid_out(1..=2);
    add_bucket(&mut s, &mut i);
    register(&mut s, &mut i, 4);
    register(&mut s, &mut i, 3);
    for (placed, newcomer) in [(3, 3), (4, 4)] {
        let cmd = next_layout(&s).unwrap().expect("one more node");
        assert!(apply(&mut s, &mut i, &cmd));
        let o = Owners::from_state(&s).unwrap().unwrap();
        assert_eq!(o.placed.len(), placed);
        let gainers: Vec<&str> = o.gainers().into_iter().collect();
        assert_eq!(gainers, vec![record(newcomer).id.as_str()], "the lowest id first");
        assert!(next_layout(&s).unwrap().is_none(), "one move at a time");
        end_move(&mut s, &mut i, &record(newcomer).id, o.layout.version);
        // The next join waits for the members to be healed.
        if placed == 3 {
            assert!(next_layout(&s).unwrap().is_none(), "stale members");
        }
        for (owner, member) in Owners::from_state(&s).unwrap().unwrap().stale.keys() {
            assert!(apply(&mut s, &mut i, &Command::Delete { key: crate::takeover::stale_key(owner, member) }));
        }
    }
    let o = Owners::from_state(&s).unwrap().unwrap();
    assert!(o.pending.is_empty() && o.layout.width() == 4);
    assert_eq!(o.lane_order, (1..=4).map(|n| record(n).id).collect::<Vec<_>>());
    // A fifth and a sixth together: once every node walked its lanes,
    // the fifth joins, then the sixth.
    register(&mut s, &mut i, 6);
    register(&mut s, &mut i, 5);
    assert!(next_layout(&s).unwrap().is_none(), "the walks of the last lane order are not reported");
    for n in 1..=4 {
        report_restriped(&mut s, &mut i, &record(n).id);
    }
    for newcomer in [5, 6] {
        let cmd = next_layout(&s).unwrap().expect("one more node");
        assert!(apply(&mut s, &mut i, &cmd));
        let o = Owners::from_state(&s).unwrap().unwrap();
        let gainers: Vec<&str> = o.gainers().into_iter().collect();
        assert_eq!(gainers, vec![record(newcomer).id.as_str()], "the lowest id first");
        assert!(next_layout(&s).unwrap().is_none(), "one move at a time");
        settle(&mut s, &mut i);
    }
    let o = Owners::from_state(&s).unwrap().unwrap();
    assert!(o.pending.is_empty() && o.has_lanes() && o.placed.len() == 6);
}

/// Seeded histories of joins, decommissions, reports and the leader's
/// moves over a cluster with buckets, against the rules: one move at a
/// time; no change to or from 3 or 4 nodes but one join (2 -> 3, 3 ->
/// 4) or one leave (4 -> 3); every partition owned by a
/// placed node that is not decommissioned; a partition is moving
/// exactly when its owner changed, from the node that held it; a move
/// ends only once every gainer reported; a decommissioned node is
/// never placed again.
#[test]
fn membership_histories_keep_the_move_rules() {
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move |n: u64| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng % n
    };
    let (mut moves, mut decommissions, mut lane_joins, mut lane_leaves, mut sets_changes) = (0, 0, 0, 0, 0);
    let (mut worst_spread, mut outs) = (0, 0);
    for _history in 0..40 {
        let mut s = ConfigState::default();
        let mut i = 0;
        let start = 1 + next(6) as u8; // 1 to 6 nodes
        for n in 1..=start {
            register(&mut s, &mut i, n);
        }
        let first = next_layout(&s).unwrap().unwrap();
        assert!(apply(&mut s, &mut i, &first));
        assert!(apply(&mut s, &mut i, &Command::Put { key: "bucket/b".into(), value: vec![1] }));
        let mut joined = start;
        let mut prev_owners: Option<Vec<String>> = None;
        for _step in 0..16 {
            let before = Owners::from_state(&s).unwrap().unwrap();
            match next(4) {
                0 if joined < 9 => {
                    joined += 1;
                    register(&mut s, &mut i, joined);
                }
                1 => {
                    let placed: Vec<&String> = before.placed.iter().collect();
                    let victim = placed[next(placed.len() as u64) as usize].clone();
                    if let Ok(cmd) = decommission(&s, &victim, 1) {
                        assert!(before.prev.is_none());
                        let named = !before.lane_sets.is_empty();
                        let shrink = before.pending.is_empty()
                            && if named { before.placed.len() >= 4 } else { (3..=4).contains(&before.placed.len()) };
                        assert!(shrink || (!before.has_lanes() && !lanes_with(before.placed.len() - 1)));
                        assert!(apply(&mut s, &mut i, &cmd));
                        decommissions += 1;
                    }
                }
                _ => {
                    // Once no key moves, the nodes report their lanes
                    // re-striped (sometimes only some do), and members healed.
                    if before.prev.is_none() {
                        for id in &before.placed {
                            if next(3) != 0 {
                                report_restriped(&mut s, &mut i, id);
                            }
                        }
                        for (o, m) in before.stale.keys() {
                            assert!(apply(&mut s, &mut i, &Command::Delete { key: crate::takeover::stale_key(o, m) }));
                        }
                    }
                    // Every gainer reports (sometimes only some do).
                    for g in before.gainers() {
                        if next(3) != 0 {
                            let r = MovedRecord { format: MOVED_RECORD_FORMAT, layout: before.layout.version };
                            assert!(apply(&mut s, &mut i, &Command::Put { key: MovedRecord::key(g), value: serde_json::to_vec(&r).unwrap() }));
                        }
                    }
                }
            }
            // The leader's turn.
            let o = Owners::from_state(&s).unwrap().unwrap();
            if let Some(fin) = move_finished(&s).unwrap() {
                assert!(o.gainers().iter().all(|g| o.moved_in(g)), "a move ends only once every gainer reported");
                assert!(apply(&mut s, &mut i, &fin));
                prev_owners = None;
            }
            if let Some(cmd) = next_layout(&s).unwrap() {
                let o = Owners::from_state(&s).unwrap().unwrap();
                assert!(o.prev.is_none(), "one move at a time");
                let placed_before = o.placed.len();
                let (had_lanes, had_sets) = (o.has_lanes(), !o.lane_sets.is_empty());
                prev_owners = Some((0..crate::layout::PARTITIONS).map(|p| o.owner_of(p).unwrap().id.clone()).collect());
                assert!(apply(&mut s, &mut i, &cmd));
                let after = Owners::from_state(&s).unwrap().unwrap();
                let n = after.placed.len();
                // Past four nodes, lanes named per owner: joins, and
                // leaves from more than four.
                let sets_join = n == placed_before + 1 && n > 4 && had_lanes;
                let sets_leave = had_sets && placed_before > 4 && n + 1 == placed_before;
                let joined_lanes = n == placed_before + 1 && (lanes_with(n) || sets_join);
                let left_lanes = (placed_before == 4 && n == 3) || sets_leave;
                // Three to two: first the lanes marked to write whole (the
                // layout as it was), then, every node walked, no lanes.
                let marked = n == placed_before && after.lanes_plain && !o.lanes_plain;
                let out = placed_before == 3 && n == 2 && had_lanes && o.lanes_plain;
                if out {
                    assert!(!after.has_lanes() && after.lane_order.is_empty());
                    assert!(o.placed.iter().all(|id| o.restriped.get(id) == Some(&o.lane_order_version)), "every node walked");
                    outs += 1;
                }
                assert!(joined_lanes || left_lanes || marked || out || (!had_lanes && !lanes_with(n)), "{placed_before} -> {n}");
                if joined_lanes {
                    lane_joins += 1;
                    assert!(after.has_lanes() && after.lane_order.len() == n, "{:?}", after.lane_order);
                    assert!(after.lane_wider.is_empty());
                }
                if sets_join || sets_leave {
                    sets_changes += 1;
                    assert!(after.has_lanes() && after.lane_wider.is_empty() && after.lane_order.len() == n);
                    let lanes: BTreeMap<String, Vec<String>> = lanes_of(&after).into_iter().filter(|(id, _)| !after.decommissioned.contains(id)).collect();
                    let l = loads(&after, &lanes);
                    let spread = l.values().max().unwrap() - l.values().min().unwrap();
                    worst_spread = worst_spread.max(spread);
                    assert!(spread <= 3, "the lanes stay near even: {l:?}");
                } else if left_lanes && had_sets {
                    lane_leaves += 1;
                    // Named lanes of four read through as named (format 4).
                    assert!(after.has_lanes() && after.lane_order.len() == 3 && after.lane_wider.is_empty());
                    assert!(after.lane_sets.is_empty() && after.lane_wider_sets.len() >= 4, "{:?}", after.lane_wider_sets);
                } else if left_lanes {
                    lane_leaves += 1;
                    assert!(after.has_lanes() && after.lane_order.len() == 3 && after.lane_wider.len() == 4, "{:?}", after.lane_wider);
                    assert!(after.lane_order.iter().all(|id| after.lane_wider.contains(id)));
                }
                moves += 1;
            }
            let o = Owners::from_state(&s).unwrap().unwrap();
            for p in 0..crate::layout::PARTITIONS {
                let owner = &o.owner_of(p).unwrap().id;
                // A node leaving three owns its partitions until the lanes
                // wrote every record whole (`lanes_plain`).
                assert!(o.placed.contains(owner) && (!o.decommissioned.contains(owner) || o.lanes_plain), "partition {p}");
                match (&prev_owners, o.moving_from(p)) {
                    (Some(before), Some(from)) => {
                        assert_eq!(&from.id, &before[p as usize]);
                        assert_ne!(&from.id, owner);
                    }
                    (Some(before), None) => assert_eq!(&before[p as usize], owner, "partition {p} changed owner without moving"),
                    (None, m) => assert!(m.is_none() && o.prev.is_none()),
                }
            }
            for d in &o.decommissioned {
                assert!(o.prev.is_some() || !o.placed.contains(d) || o.lanes_plain, "decommissioned {d} is placed after its move");
            }
        }
    }
    assert!(
        moves > 20 && decommissions > 3 && lane_joins > 3 && lane_leaves > 1 && sets_changes > 3,
        "the histories made {moves} moves, {decommissions} decommissions, {lane_joins} joins of lanes, {lane_leaves} leaves of lanes, \
         {sets_changes} changes of lanes named per owner"
    );
    eprintln!("{sets_changes} changes of lanes named per owner; the widest spread of lanes per node {worst_spread}; {outs} leaves of lanes of three");
}

#[test]
fn a_node_record_of_another_format_is_refused() {
    let mut r = record(1);
    assert_eq!(NodeRecord::decode(&r.encode()).unwrap(), r);
    r.format = 2;
    assert!(NodeRecord::decode(&r.encode()).unwrap_err().contains("format 2"));
    assert!(NodeRecord::decode(b"{").is_err());
}

/// Lanes named per owner past four nodes, zones, and member copies no
/// lane reads (`lane_sets`, `members::garbage`).
#[path = "owners_lanes_tests.rs"]
mod lanes;
