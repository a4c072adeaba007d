//! Unit tests of lanes named per owner past four nodes (`lane_sets`):
//! joins and leaves, zones, lanes named afresh, the record's checks, and
//! which member copies are garbage (`members::garbage`). The helpers are
//! the parent's (`owners_tests`).

use super::*;

#[test]
fn nodes_past_four_join_lanes_of_four_in_place_of_one_member_of_three_lanes_and_leave_the_same_way() {
    let (mut s, mut i) = laid_out(1..=4);
    add_bucket(&mut s, &mut i);
    let five = record(5).id;
    register(&mut s, &mut i, 5);
    let before = lanes_of(&Owners::from_state(&s).unwrap().unwrap());
    let cmd = next_layout(&s).unwrap().expect("a fifth node joins");
    assert!(apply(&mut s, &mut i, &cmd));
    let o = Owners::from_state(&s).unwrap().unwrap();
    assert_eq!(o.gainers().into_iter().collect::<Vec<_>>(), vec![five.as_str()], "only the newcomer gains partitions");
    let after = lanes_of(&o);
    balanced(&o, &after);
    // Three old lanes take the newcomer at one position each, in place of
    // a different member; the fourth keeps its nodes. The newcomer is
    // stale exactly where it took a place.
    let mut replaced = Vec::new();
    let mut stale_want = Vec::new();
    for (owner, old) in &before {
        let new = &after[owner];
        match changed(old, new).as_slice() {
            [] => {}
            [k] => {
                assert_eq!(new[*k], five);
                replaced.push(old[*k].clone());
                stale_want.push((owner.clone(), five.clone()));
            }
            more => panic!("the lane of {owner} changed at {more:?}"),
        }
    }
    replaced.sort();
    let mut own = after[&five].clone();
    own.sort();
    assert_eq!(replaced.len(), 3);
    assert_eq!(own, replaced, "the newcomer's lane takes the members it replaced");
    assert_eq!(o.stale.keys().cloned().collect::<Vec<_>>(), stale_want);
    // The record is format 3, and a build reading 1 and 2 would refuse it.
    let raw = s.get(LANE_ORDER_KEY).unwrap().value.clone();
    let rec = LaneOrder::decode(&raw).unwrap();
    assert_eq!(rec.format, LANE_ORDER_FORMAT_SETS);
    assert_eq!(rec.nodes.last(), Some(&five), "the newcomer last in the order");
    assert!(next_layout(&s).unwrap().is_none(), "one move at a time");

    // A sixth waits for the move, the heal and every node's walk.
    register(&mut s, &mut i, 6);
    let o = Owners::from_state(&s).unwrap().unwrap();
    end_move(&mut s, &mut i, &five, o.layout.version);
    assert!(next_layout(&s).unwrap().is_none(), "the newcomer is stale in three lanes");
    settle(&mut s, &mut i);
    let before = lanes_of(&Owners::from_state(&s).unwrap().unwrap());
    let owners_before: Vec<String> = {
        let o = Owners::from_state(&s).unwrap().unwrap();
        (0..crate::layout::PARTITIONS).map(|p| o.owner_of(p).unwrap().id.clone()).collect()
    };
    let cmd = next_layout(&s).unwrap().expect("the sixth joins");
    assert!(apply(&mut s, &mut i, &cmd));
    let o = Owners::from_state(&s).unwrap().unwrap();
    let after = lanes_of(&o);
    balanced(&o, &after);
    let six = record(6).id;
    let moved = (0..crate::layout::PARTITIONS).filter(|&p| o.owner_of(p).unwrap().id != owners_before[p as usize]).count();
    assert!(moved > 550 && moved < 850, "about a sixth of the partitions move: {moved}");
    let took: usize = before.iter().map(|(owner, old)| changed(old, &after[owner]).len()).sum();
    assert_eq!(took, 3, "three positions change, all to the sixth");
    assert!(before.iter().all(|(owner, old)| changed(old, &after[owner]).iter().all(|&k| after[owner][k] == six)));
    settle(&mut s, &mut i);

    // Node 2 leaves: wherever it was a member, a staying node the lane
    // lacks takes its position, stale there; its own lane stays named
    // while its keys move, and is gone from the lanes after.
    let two = record(2).id;
    let before = lanes_of(&Owners::from_state(&s).unwrap().unwrap());
    let cmd = decommission(&s, &two, 1).expect("a node of six may leave");
    assert!(apply(&mut s, &mut i, &cmd));
    let cmd = next_layout(&s).unwrap().expect("the layout of five");
    assert!(apply(&mut s, &mut i, &cmd));
    let o = Owners::from_state(&s).unwrap().unwrap();
    assert_eq!(o.placed.len(), 5);
    assert_eq!(crate::cluster_lanes::lane_nodes(&o, &two).map(|v| v.len()), Some(4), "the leaving node exports through its lanes");
    let after = lanes_of(&o);
    let mut stale_want = Vec::new();
    for (owner, old) in before.iter().filter(|(owner, _)| **owner != two) {
        let new = &after[owner];
        match changed(old, new).as_slice() {
            [] => assert!(!old.contains(&two)),
            [k] => {
                assert_eq!(old[*k], two, "only the leaving node's position changes");
                assert!(!old.contains(&new[*k]), "its replacement is new to the lane");
                stale_want.push((owner.clone(), new[*k].clone()));
            }
            more => panic!("the lane of {owner} changed at {more:?}"),
        }
    }
    stale_want.sort();
    assert_eq!(stale_want.len(), 3);
    assert_eq!(o.stale.keys().cloned().collect::<Vec<_>>(), stale_want);
    let staying: BTreeMap<String, Vec<String>> = after.into_iter().filter(|(owner, _)| *owner != two).collect();
    // Only the leaving node's positions change, so the lanes cannot always
    // stay even: here node 3 is a member of two staying lanes, and the
    // only lane it is missing from is its own. The fill is as even as it
    // can be: one node of two lanes, one of four.
    let mut l: Vec<usize> = loads(&o, &staying).into_values().collect();
    l.sort();
    assert_eq!(l, vec![2, 3, 3, 3, 4]);
    settle(&mut s, &mut i);
    let o = Owners::from_state(&s).unwrap().unwrap();
    assert!(o.prev.is_none() && crate::cluster_lanes::lane_nodes(&o, &two).is_none());

    // Down to four: every lane holds every node.
    let cmd = decommission(&s, &record(3).id, 1).expect("a node of five may leave");
    assert!(apply(&mut s, &mut i, &cmd));
    let cmd = next_layout(&s).unwrap().expect("the layout of four");
    assert!(apply(&mut s, &mut i, &cmd));
    settle(&mut s, &mut i);
    let o = Owners::from_state(&s).unwrap().unwrap();
    assert_eq!(o.placed.len(), 4);
    assert!(o.has_lanes());
    balanced(&o, &lanes_of(&o));

    // Down to three: while node 4's keys move the lanes stay as named
    // (format 4, no member stale: each holds every node); after, the
    // lanes of three rank their nodes by the order and read the records
    // of four through the named lanes' positions, node 4's a hole.
    let four = record(4).id;
    let named = lanes_of(&o);
    let cmd = decommission(&s, &four, 1).expect("four named lanes shrink to three");
    assert!(apply(&mut s, &mut i, &cmd));
    let cmd = next_layout(&s).unwrap().expect("the layout of three");
    assert!(apply(&mut s, &mut i, &cmd));
    let rec = LaneOrder::decode(&s.get(LANE_ORDER_KEY).unwrap().value).unwrap();
    assert_eq!((rec.format, rec.nodes.len()), (LANE_ORDER_FORMAT_WIDER_SETS, 3));
    let o = Owners::from_state(&s).unwrap().unwrap();
    assert!(o.stale.is_empty() && o.prev.is_some());
    for (owner, ms) in &named {
        let lane: Vec<String> = crate::cluster_lanes::lane_nodes(&o, owner).unwrap()[1..].iter().map(|r| r.id.clone()).collect();
        assert_eq!(&lane, ms, "the lane of {owner} as named while keys move");
    }
    settle(&mut s, &mut i);
    let o = Owners::from_state(&s).unwrap().unwrap();
    assert!(o.prev.is_none() && crate::cluster_lanes::lane_nodes(&o, &four).is_none());
    for owner in &o.placed {
        let nodes = crate::cluster_lanes::lane_nodes(&o, owner).unwrap();
        assert_eq!(nodes.len(), 3);
        let ranks: Vec<usize> = nodes[1..].iter().map(|r| o.lane_order.iter().position(|x| *x == r.id).unwrap()).collect();
        assert!(ranks[0] < ranks[1], "the others by the order");
        let wide = crate::cluster_lanes::wide_positions(&o, &nodes).expect("records of four are read through the named lanes");
        let lane: Vec<&String> = std::iter::once(owner).chain(named[owner].iter()).collect();
        assert_eq!(wide.len(), 4);
        for (k, id) in lane.iter().enumerate() {
            match wide[k] {
                Some(p) => assert_eq!(&&nodes[p].id, id, "position {k} of the lane of {owner}"),
                None => assert_eq!(**id, four),
            }
        }
    }
    // Three may leave for two (not done here); a fourth joins once every
    // node walked: lanes by order again, the newcomer last.
    assert!(decommission(&s, &record(1).id, 1).is_ok());
    register(&mut s, &mut i, 7);
    let cmd = next_layout(&s).unwrap().expect("a fourth node joins three");
    assert!(apply(&mut s, &mut i, &cmd));
    let rec = LaneOrder::decode(&s.get(LANE_ORDER_KEY).unwrap().value).unwrap();
    assert_eq!(rec.format, LANE_ORDER_FORMAT);
    assert!(rec.wider_lanes.is_empty() && rec.nodes.last() == Some(&record(7).id));
}

#[test]
fn member_shards_no_lane_reads_are_garbage_once_the_placement_settles() {
    let (mut s, mut i) = laid_out(1..=4);
    add_bucket(&mut s, &mut i);
    let all: Vec<String> = (1..=6).map(|n| record(n).id).collect();
    let garbage = |s: &ConfigState, me: u8| crate::members::garbage(&Owners::from_state(s).unwrap().unwrap(), &record(me).id, &all);
    for n in 1..=4 {
        assert!(garbage(&s, n).is_empty(), "every node is in every lane of four");
    }
    register(&mut s, &mut i, 5);
    let before = lanes_of(&Owners::from_state(&s).unwrap().unwrap());
    let cmd = next_layout(&s).unwrap().unwrap();
    assert!(apply(&mut s, &mut i, &cmd));
    let after = lanes_of(&Owners::from_state(&s).unwrap().unwrap());
    // The replaced members' copies: garbage once the move is over and the
    // newcomer healed, not before (keys moving, members stale).
    let left: Vec<(String, String)> = before
        .iter()
        .flat_map(|(o, old)| old.iter().filter(|m| !after[o].contains(m)).map(move |m| (m.clone(), o.clone())))
        .collect();
    assert_eq!(left.len(), 3);
    for n in 1..=5 {
        assert!(garbage(&s, n).is_empty(), "unsettled");
    }
    let o = Owners::from_state(&s).unwrap().unwrap();
    end_move(&mut s, &mut i, &record(5).id, o.layout.version);
    assert!(garbage(&s, 1).is_empty() && garbage(&s, 2).is_empty(), "the newcomer is stale in three lanes");
    settle(&mut s, &mut i);
    for n in 1..=5u8 {
        // `all` stands for the owners a node holds member dirs of: those
        // whose lanes lack it are garbage, the replaced copies among them.
        let me = record(n).id;
        let want: Vec<String> = after.iter().filter(|(o, ms)| **o != me && !ms.contains(&me)).map(|(o, _)| o.clone()).collect();
        assert_eq!(garbage(&s, n), want, "node {n}");
        assert!(left.iter().filter(|(m, _)| *m == me).all(|(_, o)| want.contains(o)));
    }
    // A node acting for another: nothing is garbage meanwhile.
    let (one, two) = (record(1).id, record(2).id);
    let t = crate::takeover::TakeoverRecord { format: crate::takeover::RECORD_FORMAT, owner: one.clone(), acting: after[&one][0].clone(), since_ms: 1 };
    assert!(apply(&mut s, &mut i, &Command::Put { key: crate::takeover::TakeoverRecord::key(&one), value: t.encode() }));
    assert!((1..=5).all(|n| garbage(&s, n).is_empty()));
    assert!(apply(&mut s, &mut i, &Command::Delete { key: crate::takeover::TakeoverRecord::key(&one) }));
    // Node 2 leaves: once its keys moved, every member copy of its lanes
    // is garbage, and so is each copy it was replaced in.
    let cmd = decommission(&s, &two, 1).unwrap();
    assert!(apply(&mut s, &mut i, &cmd));
    let cmd = next_layout(&s).unwrap().unwrap();
    assert!(apply(&mut s, &mut i, &cmd));
    assert!((1..=5).all(|n| garbage(&s, n).is_empty()), "keys moving");
    settle(&mut s, &mut i);
    let o = Owners::from_state(&s).unwrap().unwrap();
    for n in [1u8, 3, 4, 5] {
        let me = record(n).id;
        for g in garbage(&s, n) {
            let lane = crate::cluster_lanes::lane_nodes(&o, &g);
            assert!(g == two || lane.is_some_and(|l| !l.iter().any(|r| r.id == me)), "node {n}: {g}");
        }
        assert!(garbage(&s, n).contains(&two), "node {n}: node 2 left the cluster");
    }
    // Nothing a lane reads is ever garbage.
    for owner in &o.placed {
        for m in crate::cluster_lanes::lane_nodes(&o, owner).unwrap() {
            assert!(!crate::members::garbage(&o, &m.id, &all).contains(owner), "{} is in the lane of {owner}", m.id);
        }
    }
}

/// Registers test node `n` in zone `zone`.
fn register_in(state: &mut ConfigState, index: &mut u64, n: u8, zone: &str) {
    let r = NodeRecord { zone: zone.to_string(), ..record(n) };
    assert!(apply(state, index, &Command::Put { key: r.key(), value: r.encode() }));
}

/// Checks that no lane of the nodes `o` places holds more than two nodes
/// of one zone (`zone_of`).
fn two_per_zone_at_most(o: &Owners, zone_of: &dyn Fn(&str) -> &'static str) {
    for (owner, ms) in lanes_of(o).iter().filter(|(id, _)| !o.decommissioned.contains(*id)) {
        let mut count: BTreeMap<&str, usize> = BTreeMap::new();
        for n in std::iter::once(owner).chain(ms) {
            *count.entry(zone_of(n)).or_insert(0) += 1;
        }
        assert!(count.values().all(|&c| c <= 2), "the lane of {owner}: {count:?}");
    }
}

#[test]
fn lanes_past_four_nodes_span_the_zones() {
    let zone_of = |id: &str| if [1u8, 2, 3, 7].iter().any(|&n| record(n).id == id) { "a" } else { "b" };
    // Six nodes in two zones, without objects: every lane two and two.
    let mut s = ConfigState::default();
    let mut i = 0;
    for n in 1..=6 {
        register_in(&mut s, &mut i, n, zone_of(&record(n).id));
    }
    let cmd = next_layout(&s).unwrap().unwrap();
    assert!(apply(&mut s, &mut i, &cmd));
    let o = Owners::from_state(&s).unwrap().unwrap();
    two_per_zone_at_most(&o, &zone_of);
    balanced(&o, &lanes_of(&o));
    assert_eq!(o.nodes[&record(1).id].zone, "a");
    // With objects: two nodes of each zone grow to five, six and seven,
    // then one leaves; no lane ever holds three nodes of one zone.
    let mut s = ConfigState::default();
    let mut i = 0;
    for n in [1, 2, 4, 5] {
        register_in(&mut s, &mut i, n, zone_of(&record(n).id));
    }
    let cmd = next_layout(&s).unwrap().unwrap();
    assert!(apply(&mut s, &mut i, &cmd));
    add_bucket(&mut s, &mut i);
    for n in [3, 6, 7] {
        register_in(&mut s, &mut i, n, zone_of(&record(n).id));
        let cmd = next_layout(&s).unwrap().expect("a join");
        assert!(apply(&mut s, &mut i, &cmd));
        two_per_zone_at_most(&Owners::from_state(&s).unwrap().unwrap(), &zone_of);
        settle(&mut s, &mut i);
    }
    for leaving in [2, 4] {
        let cmd = decommission(&s, &record(leaving).id, 1).expect("a leave");
        assert!(apply(&mut s, &mut i, &cmd));
        let cmd = next_layout(&s).unwrap().expect("the layout without it");
        assert!(apply(&mut s, &mut i, &cmd));
        two_per_zone_at_most(&Owners::from_state(&s).unwrap().unwrap(), &zone_of);
        settle(&mut s, &mut i);
    }
}

#[test]
fn lanes_past_four_nodes_without_objects_are_named_afresh_and_dropped_at_four() {
    let (mut s, mut i) = laid_out(1..=5);
    let o = Owners::from_state(&s).unwrap().unwrap();
    let lanes = lanes_of(&o);
    balanced(&o, &lanes);
    assert_eq!(lanes[&record(5).id], vec![record(1).id, record(2).id, record(3).id], "round the ring");
    let cmd = decommission(&s, &record(5).id, 1).unwrap();
    assert!(apply(&mut s, &mut i, &cmd));
    let cmd = next_layout(&s).unwrap().expect("the layout of four");
    assert!(apply(&mut s, &mut i, &cmd));
    let o = Owners::from_state(&s).unwrap().unwrap();
    assert!(o.lane_sets.is_empty() && s.get(LANE_ORDER_KEY).is_none(), "lanes by id again");
    assert!(o.has_lanes() && o.prev.is_none());
    // Five laid out by a build that named no lanes, still empty: named.
    let mut s = ConfigState::default();
    let mut i = 0;
    for n in 1..=5 {
        register(&mut s, &mut i, n);
    }
    let old = Layout::new(crate::layout::PARTITIONS as u32, 4, &Membership {
        nodes: (1..=5u8).map(|n| Node { id: record(n).id, zone: String::new(), disks: vec![Disk { id: [n; 16], weight: 1 }] }).collect(),
    })
    .unwrap();
    assert!(apply(&mut s, &mut i, &Command::Put { key: LAYOUT_KEY.into(), value: old.encode() }));
    assert!(!Owners::from_state(&s).unwrap().unwrap().has_lanes());
    let cmd = next_layout(&s).unwrap().expect("the lanes are named");
    assert!(matches!(&cmd, Command::Cas { key, .. } if key == LANE_ORDER_KEY), "{cmd:?}");
    assert!(apply(&mut s, &mut i, &cmd));
    assert!(Owners::from_state(&s).unwrap().unwrap().has_lanes());
    assert!(next_layout(&s).unwrap().is_none());
}

#[test]
fn a_lane_order_naming_lanes_is_checked() {
    let id = |n: u8| record(n).id;
    let lanes: BTreeMap<String, Vec<String>> = [(id(1), vec![id(2), id(3), id(4)]), (id(2), vec![id(3), id(4), id(1)])].into();
    let good = LaneOrder::with_sets(vec![id(1), id(2), id(3), id(4)], lanes.clone());
    assert_eq!(LaneOrder::decode(&good.encode()).unwrap(), good);
    for bad in [
        vec![id(2), id(3)],          // too narrow
        vec![id(2), id(3), id(1)],   // its owner as a member
        vec![id(2), id(2), id(3)],   // a node twice
    ] {
        let mut l = lanes.clone();
        l.insert(id(1), bad.clone());
        let r = LaneOrder::with_sets(good.nodes.clone(), l);
        assert!(LaneOrder::decode(&r.encode()).unwrap_err().contains("inconsistent"), "{bad:?}");
    }
    // Lanes under format 1 (a writer's bug) and a format this build does not know.
    let mut r = good.clone();
    r.format = LANE_ORDER_FORMAT;
    assert!(LaneOrder::decode(&r.encode()).is_err());
    r.format = 6;
    assert!(LaneOrder::decode(&r.encode()).unwrap_err().contains("this build reads"));
    r.lanes.clear();
    assert!(LaneOrder::decode(&r.encode()).unwrap_err().contains("format 6"));
    // Format 5: three nodes whose lanes are on their way out.
    let out = LaneOrder::plain(vec![id(1), id(2), id(3)]);
    assert_eq!(LaneOrder::decode(&out.encode()).unwrap(), out);
    let mut r = out.clone();
    r.nodes.pop();
    assert!(LaneOrder::decode(&r.encode()).unwrap_err().contains("on their way out"));
    let mut r = LaneOrder::new(vec![id(1), id(2), id(3)], Vec::new());
    r.plain = true;
    assert!(LaneOrder::decode(&r.encode()).unwrap_err().contains("names none"));
    // Format 4: three nodes and the lanes of four they were named in.
    let wide = LaneOrder::with_wider_sets(vec![id(1), id(2), id(3)], lanes.clone());
    assert_eq!(LaneOrder::decode(&wide.encode()).unwrap(), wide);
    let mut r = wide.clone();
    r.nodes.push(id(4));
    assert!(LaneOrder::decode(&r.encode()).unwrap_err().contains("inconsistent wider lanes"));
    let mut r = wide.clone();
    r.lanes = lanes.clone();
    assert!(LaneOrder::decode(&r.encode()).is_err(), "named and wider lanes at once");
}
