//! Seeded membership histories against the placement invariants: every
//! set is `width` distinct live disks; fault domains are spread as far as
//! the cluster allows; a disk that stays in a set keeps its position; a
//! change moves about the share it must and no more; sets are a function
//! of the membership; load follows weight.
//!
//! `TESSERA_PLACEMENT_SEEDS=N` runs more histories than CI's 300.

use std::collections::{BTreeSet, HashMap};

use tessera_cluster::{Disk, DiskId, Error, Layout, Membership, Node};

mod common;
use common::Rng;

impl Rng {
    fn disk(&mut self) -> DiskId {
        let mut id = [0u8; 16];
        id[..8].copy_from_slice(&self.next().to_le_bytes());
        id[8..].copy_from_slice(&self.next().to_le_bytes());
        id
    }
}

fn weighted_disks(m: &Membership) -> usize {
    m.nodes.iter().flat_map(|n| &n.disks).filter(|d| d.weight > 0).count()
}

/// The invariants of one layout against its membership.
fn check_layout(l: &Layout, m: &Membership, what: &str) {
    let live: HashMap<DiskId, (&str, &str)> = m
        .nodes
        .iter()
        .flat_map(|n| n.disks.iter().filter(|d| d.weight > 0).map(move |d| (d.id, (n.id.as_str(), n.zone.as_str()))))
        .collect();
    let nodes: BTreeSet<&str> = live.values().map(|v| v.0).collect();
    let width = l.width();
    let node_cap = width.div_ceil(nodes.len());
    // Can every set be filled with at most node_cap disks per node?
    let per_node_disks = |node: &str| live.values().filter(|v| v.0 == node).count();
    let node_cap_feasible = nodes.iter().map(|n| per_node_disks(n).min(node_cap)).sum::<usize>() >= width;
    for p in 0..l.partitions() {
        let set = l.set(p);
        assert_eq!(set.len(), width, "{what}: partition {p}");
        let distinct: BTreeSet<_> = set.iter().collect();
        assert_eq!(distinct.len(), width, "{what}: partition {p} holds a disk twice");
        let mut count: HashMap<&str, usize> = HashMap::new();
        for d in set {
            let (node, _) = live.get(d).unwrap_or_else(|| panic!("{what}: partition {p} names a disk not live"));
            *count.entry(node).or_insert(0) += 1;
        }
        if node_cap_feasible {
            assert!(count.values().all(|&c| c <= node_cap), "{what}: partition {p} puts more than {node_cap} blocks on one node: {count:?}");
        }
    }
    if node_cap_feasible {
        assert!(l.max_per_node() <= node_cap, "{what}");
    }
}

fn random_membership(rng: &mut Rng, next_node: &mut u32) -> Membership {
    let zones = 1 + rng.below(3);
    let nodes = 1 + rng.below(6);
    let mut m = Membership::default();
    for _ in 0..nodes {
        m.nodes.push(new_node(rng, next_node, zones));
    }
    m
}

fn new_node(rng: &mut Rng, next_node: &mut u32, zones: u64) -> Node {
    *next_node += 1;
    let disks = 1 + rng.below(4);
    Node {
        id: format!("node-{next_node}"),
        zone: format!("zone-{}", rng.below(zones)),
        disks: (0..disks).map(|_| Disk { id: rng.disk(), weight: 1 + rng.below(4) }).collect(),
    }
}

/// Applies one random change; returns its name.
fn mutate(rng: &mut Rng, m: &mut Membership, next_node: &mut u32) -> &'static str {
    match rng.below(6) {
        0 => {
            m.nodes.push(new_node(rng, next_node, 3));
            "add node"
        }
        1 if m.nodes.len() > 1 => {
            let i = rng.below(m.nodes.len() as u64) as usize;
            m.nodes.remove(i);
            "remove node"
        }
        2 => {
            let i = rng.below(m.nodes.len() as u64) as usize;
            let d = Disk { id: rng.disk(), weight: 1 + rng.below(4) };
            m.nodes[i].disks.push(d);
            "add disk"
        }
        3 => {
            let i = rng.below(m.nodes.len() as u64) as usize;
            if m.nodes[i].disks.len() > 1 {
                let j = rng.below(m.nodes[i].disks.len() as u64) as usize;
                m.nodes[i].disks.remove(j);
            }
            "remove disk"
        }
        4 => {
            let i = rng.below(m.nodes.len() as u64) as usize;
            let j = rng.below(m.nodes[i].disks.len() as u64) as usize;
            m.nodes[i].disks[j].weight = rng.below(5);
            "reweigh disk"
        }
        _ => "no change",
    }
}

fn run_seed(seed: u64) {
    let mut rng = Rng(seed);
    let mut next_node = 0;
    let mut m = random_membership(&mut rng, &mut next_node);
    let partitions = 64 + rng.below(512) as u32;
    let width = 1 + rng.below(weighted_disks(&m).clamp(1, 10) as u64) as usize;
    let mut layout = match Layout::new(partitions, width, &m) {
        Ok(l) => l,
        Err(e) => panic!("seed {seed}: {e}"),
    };
    check_layout(&layout, &m, &format!("seed {seed} start"));
    for step in 0..25 {
        let mut changed = m.clone();
        let what = mutate(&mut rng, &mut changed, &mut next_node);
        let next = match layout.next(&changed) {
            Ok(l) => l,
            Err(Error::TooFewDisks { .. }) => {
                assert!(weighted_disks(&changed) < width);
                continue;
            }
            Err(e) => panic!("seed {seed} step {step}: {e}"),
        };
        let ctx = format!("seed {seed} step {step} ({what})");
        check_layout(&next, &changed, &ctx);
        // Sets are a function of the membership; positions follow history.
        let fresh = Layout::new(partitions, width, &changed).unwrap();
        for p in 0..partitions {
            let a: BTreeSet<_> = next.set(p).iter().collect();
            let b: BTreeSet<_> = fresh.set(p).iter().collect();
            assert_eq!(a, b, "{ctx}: partition {p}");
            // A disk in both the old and the new set keeps its position.
            for (i, d) in layout.set(p).iter().enumerate() {
                if a.contains(d) {
                    assert_eq!(next.set(p)[i], *d, "{ctx}: partition {p} moved a staying disk");
                }
            }
        }
        if what == "no change" {
            assert_eq!(next.moves(&layout), 0, "{ctx}");
            assert_eq!(next.set(0), layout.set(0));
        }
        layout = next;
        m = changed;
    }
}

#[test]
fn membership_histories_keep_the_invariants() {
    let seeds: u64 = std::env::var("TESSERA_PLACEMENT_SEEDS").ok().and_then(|s| s.parse().ok()).unwrap_or(300);
    for seed in 0..seeds {
        run_seed(seed);
    }
}

fn uniform(nodes: usize, disks: usize, zones: usize, rng: &mut Rng) -> Membership {
    Membership {
        nodes: (0..nodes)
            .map(|n| Node {
                id: format!("n{n}"),
                zone: format!("z{}", n % zones),
                disks: (0..disks).map(|_| Disk { id: rng.disk(), weight: 100 }).collect(),
            })
            .collect(),
    }
}

#[test]
fn load_is_balanced_and_follows_weight() {
    let mut rng = Rng(7);
    let m = uniform(4, 4, 2, &mut rng);
    let l = Layout::new(4096, 6, &m).unwrap();
    let mean = 4096.0 * 6.0 / 16.0;
    for (d, n) in l.load() {
        assert!((n as f64) < mean * 1.15 && (n as f64) > mean * 0.85, "disk {d:?}: {n} blocks, mean {mean}");
    }
    // 4+2 over 4 nodes: at most 2 blocks of a set on a node (= m).
    assert_eq!(l.max_per_node(), 2);
    // A disk of double weight takes about double the share where a set is
    // a small part of the disks (16 one-disk nodes, sets of 2).
    let mut heavy = uniform(16, 1, 1, &mut rng);
    heavy.nodes[0].disks[0].weight = 200;
    let l = Layout::new(4096, 2, &heavy).unwrap();
    let load = l.load();
    let big = load[&heavy.nodes[0].disks[0].id] as f64;
    let others = (1..16).map(|i| load[&heavy.nodes[i].disks[0].id] as f64).sum::<f64>() / 15.0;
    assert!(big / others > 1.6 && big / others < 2.4, "{big} vs {others}");
}

#[test]
fn adding_a_disk_moves_only_its_share() {
    let mut rng = Rng(11);
    let m = uniform(4, 3, 4, &mut rng);
    let l = Layout::new(4096, 4, &m).unwrap();
    let mut grown = m.clone();
    grown.nodes[2].disks.push(Disk { id: rng.disk(), weight: 100 });
    let new_disk = grown.nodes[2].disks[3].id;
    let next = l.next(&grown).unwrap();
    let moved = next.moves(&l);
    let share = next.load()[&new_disk];
    // Only the positions the new disk took changed.
    assert_eq!(moved, share);
    // Sets of 4 over 4 nodes take one disk per node: node 2's 4096
    // positions spread over its 4 disks now.
    let ideal = 4096.0 / 4.0;
    assert!((share as f64) > ideal * 0.85 && (share as f64) < ideal * 1.15, "{share} vs {ideal}");
    // Removing it again restores the sets, and only those positions move.
    let back = next.next(&m).unwrap();
    assert_eq!(back.moves(&next), share);
    for p in 0..4096 {
        let a: BTreeSet<_> = back.set(p).iter().collect();
        let b: BTreeSet<_> = l.set(p).iter().collect();
        assert_eq!(a, b);
    }
}

#[test]
fn zones_and_nodes_spread_the_set() {
    let mut rng = Rng(3);
    // Three zones of two one-disk nodes, 4+2: two blocks per zone.
    let m = uniform(6, 1, 3, &mut rng);
    let l = Layout::new(1024, 6, &m).unwrap();
    for p in 0..1024 {
        let mut per_zone = HashMap::new();
        for d in l.set(p) {
            let node = m.nodes.iter().find(|n| n.disks.iter().any(|x| x.id == *d)).unwrap();
            *per_zone.entry(node.zone.clone()).or_insert(0) += 1;
        }
        assert!(per_zone.values().all(|&c| c == 2), "{per_zone:?}");
    }
    // Four nodes of one disk, 2+2: one block per node.
    let m = uniform(4, 1, 1, &mut rng);
    assert_eq!(Layout::new(256, 4, &m).unwrap().max_per_node(), 1);
    // Two nodes of four disks, 2+2: two per node (losing a node keeps k).
    let m = uniform(2, 4, 1, &mut rng);
    assert_eq!(Layout::new(256, 4, &m).unwrap().max_per_node(), 2);
}

#[test]
fn bad_memberships_are_refused() {
    let mut rng = Rng(5);
    let m = uniform(2, 1, 1, &mut rng);
    assert_eq!(Layout::new(16, 4, &m).unwrap_err(), Error::TooFewDisks { need: 4, have: 2 });
    assert!(matches!(Layout::new(0, 1, &m), Err(Error::BadShape { .. })));
    let mut dup = m.clone();
    let id = dup.nodes[0].disks[0].id;
    dup.nodes[1].disks.push(Disk { id, weight: 1 });
    assert!(matches!(Layout::new(16, 2, &dup), Err(Error::DuplicateDisk(_))));
    let mut dup = m.clone();
    dup.nodes[1].id = dup.nodes[0].id.clone();
    assert!(matches!(Layout::new(16, 2, &dup), Err(Error::DuplicateNode(_))));
    // A draining disk (weight 0) takes no positions.
    let mut drain = uniform(3, 2, 1, &mut rng);
    drain.nodes[0].disks[0].weight = 0;
    let l = Layout::new(512, 4, &drain).unwrap();
    assert!(!l.load().contains_key(&drain.nodes[0].disks[0].id));
}
