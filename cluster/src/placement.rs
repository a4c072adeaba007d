//! Placement: partitions to ordered erasure sets of disks.
//!
//! **Which disks.** A partition's set is chosen by weighted rendezvous
//! hashing (highest random weight): every disk scores
//! `weight / -ln(u)`, with `u` uniform in (0, 1) from
//! `xxh3(partition, disk id)`, and the set takes the best-scoring disks in
//! order, skipping a disk whose node already holds `ceil(width / nodes)`
//! of the set's disks or whose zone already holds `ceil(width / zones)`.
//! When those caps cannot fill the set (a zone or node with too few
//! disks), a second pass drops the zone cap, a third the node cap. A
//! disk's expected share follows its weight where a set is a small part
//! of the disks (where sets take most disks, every disk is in most sets
//! whatever its weight), and a node's share is capped as above; adding a
//! disk changes only the sets it scores into (its share), removing one
//! only the sets it was in. The issue asks for a ring with virtual nodes;
//! rendezvous hashing gives the same minimal movement with better balance
//! and no virtual-node count to tune, and its cost (scoring every disk per
//! partition) is paid once per layout change, not per request.
//!
//! **Which position.** Block `i` of an object goes to position `i` of its
//! partition's set, so positions must not shift when a disk joins or
//! leaves: [`Layout::next`] keeps every disk that stays in a set at its
//! position and puts the newcomers in the positions that were vacated. A
//! set is a function of the membership alone; its order depends on the
//! layout's history.
//!
//! **What is the contract.** The table ([`Layout::set`] for every
//! partition), not the function: the configuration leader computes a
//! layout and replicates it (issue 12's Raft state), so nodes never need
//! to agree on floating-point results.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use xxhash_rust::xxh3::xxh3_64_with_seed;

/// A disk's identity (random at format, written in its dir).
pub type DiskId = [u8; 16];

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Disk {
    pub id: DiskId,
    /// Relative capacity (bytes, or any unit common to the cluster); a
    /// disk of weight 0 takes no new data (draining).
    pub weight: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Node {
    pub id: String,
    pub zone: String,
    pub disks: Vec<Disk>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Membership {
    pub nodes: Vec<Node>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    #[error("a set of {need} disks needs {need} disks of nonzero weight; the cluster has {have}")]
    TooFewDisks { need: usize, have: usize },
    #[error("disk {0} appears twice in the membership")]
    DuplicateDisk(String),
    #[error("node {0} appears twice in the membership")]
    DuplicateNode(String),
    #[error("a layout needs at least one partition and a set width of 1 to {max}")]
    BadShape { max: usize },
}

/// Largest set width (the erasure crate's `MAX_TOTAL_BLOCKS`).
pub const MAX_WIDTH: usize = 32;

/// A candidate disk for one partition.
#[derive(Clone, Copy)]
struct Candidate {
    disk: usize,
    node: usize,
    zone: usize,
}

/// The membership flattened for scoring.
struct Flat {
    disks: Vec<(DiskId, u64)>,
    node_of: Vec<usize>,
    zone_of: Vec<usize>,
    nodes: usize,
    zones: usize,
}

impl Flat {
    fn new(m: &Membership) -> Result<Flat, Error> {
        let mut seen_disks = BTreeSet::new();
        let mut seen_nodes = BTreeSet::new();
        let mut zone_ids: BTreeMap<&str, usize> = BTreeMap::new();
        let mut flat = Flat {
            disks: Vec::new(),
            node_of: Vec::new(),
            zone_of: Vec::new(),
            nodes: 0,
            zones: 0,
        };
        let mut node_index = 0;
        for node in &m.nodes {
            if !seen_nodes.insert(node.id.as_str()) {
                return Err(Error::DuplicateNode(node.id.clone()));
            }
            let weighted = node.disks.iter().any(|d| d.weight > 0);
            let zones = zone_ids.len();
            let zone = if weighted { *zone_ids.entry(node.zone.as_str()).or_insert(zones) } else { 0 };
            for d in &node.disks {
                if !seen_disks.insert(d.id) {
                    return Err(Error::DuplicateDisk(hex(&d.id)));
                }
                if d.weight > 0 {
                    flat.disks.push((d.id, d.weight));
                    flat.node_of.push(node_index);
                    flat.zone_of.push(zone);
                }
            }
            if weighted {
                node_index += 1;
            }
        }
        flat.nodes = node_index;
        flat.zones = zone_ids.len();
        Ok(flat)
    }

    /// The partition's set, best first (not yet in positions).
    fn target(&self, partition: u32, width: usize) -> Vec<usize> {
        let mut scored: Vec<(f64, usize)> = self
            .disks
            .iter()
            .enumerate()
            .map(|(i, (id, weight))| (score(partition, id, *weight), i))
            .collect();
        // Highest score first; ties (never seen in practice) by disk id.
        scored.sort_by(|a, b| b.0.total_cmp(&a.0).then_with(|| self.disks[a.1].0.cmp(&self.disks[b.1].0)));
        let order: Vec<Candidate> = scored
            .iter()
            .map(|&(_, disk)| Candidate {
                disk,
                node: self.node_of[disk],
                zone: self.zone_of[disk],
            })
            .collect();
        let node_cap = width.div_ceil(self.nodes.max(1));
        let zone_cap = width.div_ceil(self.zones.max(1));
        let mut chosen: Vec<usize> = Vec::with_capacity(width);
        let mut taken = vec![false; self.disks.len()];
        let mut per_node = vec![0usize; self.nodes];
        let mut per_zone = vec![0usize; self.zones.max(1)];
        for (node_limit, zone_limit) in [(node_cap, zone_cap), (node_cap, usize::MAX), (usize::MAX, usize::MAX)] {
            for c in &order {
                if chosen.len() == width {
                    return chosen;
                }
                if taken[c.disk] || per_node[c.node] >= node_limit || per_zone[c.zone] >= zone_limit {
                    continue;
                }
                taken[c.disk] = true;
                per_node[c.node] += 1;
                per_zone[c.zone] += 1;
                chosen.push(c.disk);
            }
        }
        chosen
    }
}

/// Weighted rendezvous score of a disk for a partition.
fn score(partition: u32, id: &DiskId, weight: u64) -> f64 {
    let h = xxh3_64_with_seed(id, u64::from(partition) ^ 0x7465_7373_6572_6131);
    // u in (0, 1): 53 bits, never 0 or 1.
    let u = ((h >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
    weight as f64 / -u.ln()
}

fn hex(id: &DiskId) -> String {
    id.iter().map(|b| format!("{b:02x}")).collect()
}

/// Partitions to ordered sets of disks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    /// Bumped by every [`Layout::next`].
    pub version: u64,
    partitions: u32,
    width: usize,
    /// `width` disk ids per partition, back to back.
    sets: Vec<DiskId>,
    /// Each disk's node (by id), for the fault-domain checks.
    node_of: HashMap<DiskId, String>,
}

impl Layout {
    /// The first layout of a cluster: each set in score order.
    pub fn new(partitions: u32, width: usize, m: &Membership) -> Result<Layout, Error> {
        let flat = Self::check(partitions, width, m)?;
        let mut sets = Vec::with_capacity(partitions as usize * width);
        for p in 0..partitions {
            sets.extend(flat.target(p, width).into_iter().map(|d| flat.disks[d].0));
        }
        Ok(Layout {
            version: 1,
            partitions,
            width,
            sets,
            node_of: node_map(m),
        })
    }

    /// The layout after a membership change: the same sets
    /// [`Layout::new`] would choose, with every disk that stays in a set
    /// kept at its position.
    pub fn next(&self, m: &Membership) -> Result<Layout, Error> {
        let flat = Self::check(self.partitions, self.width, m)?;
        let mut sets = Vec::with_capacity(self.sets.len());
        for p in 0..self.partitions {
            let target: Vec<DiskId> = flat.target(p, self.width).into_iter().map(|d| flat.disks[d].0).collect();
            let old = self.set(p);
            let mut new: Vec<Option<DiskId>> = old.iter().map(|d| target.contains(d).then_some(*d)).collect();
            let mut newcomers = target.iter().filter(|d| !old.contains(d));
            for slot in new.iter_mut().filter(|s| s.is_none()) {
                *slot = newcomers.next().copied();
            }
            sets.extend(new.into_iter().map(|d| d.expect("a set's target has width disks")));
        }
        Ok(Layout {
            version: self.version + 1,
            partitions: self.partitions,
            width: self.width,
            sets,
            node_of: node_map(m),
        })
    }

    fn check(partitions: u32, width: usize, m: &Membership) -> Result<Flat, Error> {
        if partitions == 0 || width == 0 || width > MAX_WIDTH {
            return Err(Error::BadShape { max: MAX_WIDTH });
        }
        let flat = Flat::new(m)?;
        if flat.disks.len() < width {
            return Err(Error::TooFewDisks {
                need: width,
                have: flat.disks.len(),
            });
        }
        Ok(flat)
    }

    pub fn partitions(&self) -> u32 {
        self.partitions
    }

    pub fn width(&self) -> usize {
        self.width
    }

    /// Partition `p`'s disks: block `i` of its objects on disk `i`.
    pub fn set(&self, p: u32) -> &[DiskId] {
        let at = p as usize * self.width;
        &self.sets[at..at + self.width]
    }

    /// Positions (partition, block) whose disk differs between the two
    /// layouts: the blocks a change moves.
    pub fn moves(&self, other: &Layout) -> usize {
        self.sets.iter().zip(&other.sets).filter(|(a, b)| a != b).count()
    }

    /// Positions per disk.
    pub fn load(&self) -> HashMap<DiskId, usize> {
        let mut out = HashMap::new();
        for d in &self.sets {
            *out.entry(*d).or_insert(0) += 1;
        }
        out
    }

    /// The most disks of one node in any one set: a node's loss costs each
    /// set at most this many blocks, so the cluster survives losing a node
    /// when this is at most the parity count.
    pub fn max_per_node(&self) -> usize {
        let mut worst = 0;
        for p in 0..self.partitions {
            let mut count: HashMap<&str, usize> = HashMap::new();
            for d in self.set(p) {
                let node = self.node_of.get(d).map_or("", String::as_str);
                let c = count.entry(node).or_insert(0);
                *c += 1;
                worst = worst.max(*c);
            }
        }
        worst
    }
}

fn node_map(m: &Membership) -> HashMap<DiskId, String> {
    m.nodes
        .iter()
        .flat_map(|n| n.disks.iter().map(move |d| (d.id, n.id.clone())))
        .collect()
}
