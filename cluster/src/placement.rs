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

use twox_hash::XxHash3_64;

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
    let h = XxHash3_64::oneshot_with_seed(u64::from(partition) ^ 0x7465_7373_6572_6131, id);
    // u in (0, 1): 53 bits, never 0 or 1.
    let u = ((h >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
    weight as f64 / -u.ln()
}

/// Lowercase hex of a 16-byte id (one allocation, no formatting).
pub(crate) fn hex(id: &DiskId) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(2 * id.len());
    for b in id {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 15)] as char);
    }
    s
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

/// Why a stored layout was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("not a layout record (bad magic)")]
    Magic,
    #[error("layout record format {0}: this build reads format {LAYOUT_FORMAT} only")]
    Version(u8),
    #[error("layout record cut short")]
    Truncated,
    #[error("layout record is malformed: {0}")]
    Malformed(&'static str),
}

const LAYOUT_MAGIC: &[u8; 4] = b"TLAY";
/// Format of [`Layout::encode`] (FORMAT BOUNDARY: it is the table the
/// cluster configuration stores; a new format gets a new number and this
/// build refuses it rather than misreading it).
pub const LAYOUT_FORMAT: u8 = 1;

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.0.len() < n {
            return Err(DecodeError::Truncated);
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Ok(a)
    }
    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, DecodeError> {
        Ok(u16::from_le_bytes(self.take(2)?.try_into().expect("2 bytes")))
    }
    fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().expect("4 bytes")))
    }
    fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().expect("8 bytes")))
    }
}

impl Layout {
    /// The node (by id) of a disk of this layout.
    pub fn node_of(&self, disk: &DiskId) -> Option<&str> {
        self.node_of.get(disk).map(String::as_str)
    }

    /// The table as stored in the cluster configuration: magic `TLAY`,
    /// format, layout version, partitions, width, the disks (id and node id)
    /// and each partition's set as indexes into them.
    pub fn encode(&self) -> Vec<u8> {
        let mut disks: Vec<&DiskId> = self.node_of.keys().collect();
        disks.sort();
        let index: HashMap<&DiskId, u16> = disks.iter().enumerate().map(|(i, d)| (*d, i as u16)).collect();
        let mut out = Vec::with_capacity(32 + disks.len() * 40 + self.sets.len() * 2);
        out.extend_from_slice(LAYOUT_MAGIC);
        out.push(LAYOUT_FORMAT);
        out.extend_from_slice(&self.version.to_le_bytes());
        out.extend_from_slice(&self.partitions.to_le_bytes());
        out.push(self.width as u8);
        out.extend_from_slice(&(disks.len() as u16).to_le_bytes());
        for d in &disks {
            out.extend_from_slice(&d[..]);
            let node = self.node_of[*d].as_bytes();
            out.push(node.len().min(255) as u8);
            out.extend_from_slice(&node[..node.len().min(255)]);
        }
        for d in &self.sets {
            out.extend_from_slice(&index[d].to_le_bytes());
        }
        out
    }

    /// Reads [`Layout::encode`]'s bytes back; anything else is refused.
    pub fn decode(bytes: &[u8]) -> Result<Layout, DecodeError> {
        let mut r = Reader(bytes);
        if r.take(4)? != LAYOUT_MAGIC {
            return Err(DecodeError::Magic);
        }
        let format = r.u8()?;
        if format != LAYOUT_FORMAT {
            return Err(DecodeError::Version(format));
        }
        let version = r.u64()?;
        let partitions = r.u32()?;
        let width = r.u8()? as usize;
        if partitions == 0 || width == 0 || width > MAX_WIDTH {
            return Err(DecodeError::Malformed("partitions or width out of range"));
        }
        let n = r.u16()? as usize;
        if n < width {
            return Err(DecodeError::Malformed("fewer disks than the set width"));
        }
        let mut disks = Vec::with_capacity(n);
        let mut node_of = HashMap::with_capacity(n);
        for _ in 0..n {
            let id: DiskId = r.take(16)?.try_into().expect("16 bytes");
            let len = r.u8()? as usize;
            let node = std::str::from_utf8(r.take(len)?).map_err(|_| DecodeError::Malformed("node id not UTF-8"))?;
            if node_of.insert(id, node.to_string()).is_some() {
                return Err(DecodeError::Malformed("a disk listed twice"));
            }
            disks.push(id);
        }
        let cells = (partitions as usize).checked_mul(width).ok_or(DecodeError::Malformed("too many partitions"))?;
        if r.0.len() != cells * 2 {
            return Err(if r.0.len() < cells * 2 { DecodeError::Truncated } else { DecodeError::Malformed("trailing bytes") });
        }
        let mut sets = Vec::with_capacity(cells);
        for _ in 0..partitions {
            let start = sets.len();
            for _ in 0..width {
                let i = r.u16()? as usize;
                let d = *disks.get(i).ok_or(DecodeError::Malformed("a disk index out of range"))?;
                if sets[start..].contains(&d) {
                    return Err(DecodeError::Malformed("a disk twice in one set"));
                }
                sets.push(d);
            }
        }
        Ok(Layout { version, partitions, width, sets, node_of })
    }
}

#[cfg(test)]
mod codec_tests {
    use super::*;

    /// Ids are named in lowercase hex, two digits a byte, as `{:02x}` writes them.
    #[test]
    fn ids_are_lowercase_hex() {
        for id in [[0u8; 16], [0xff; 16], core::array::from_fn(|i| (i * 17 + 3) as u8)] {
            let want: String = id.iter().map(|b| format!("{b:02x}")).collect();
            assert_eq!(hex(&id), want);
        }
        assert_eq!(hex(&core::array::from_fn(|i| i as u8)), "000102030405060708090a0b0c0d0e0f");
    }

    fn membership(nodes: usize, disks: usize) -> Membership {
        Membership {
            nodes: (0..nodes)
                .map(|n| Node {
                    id: format!("node-{n}-é"),
                    zone: format!("z{}", n % 2),
                    disks: (0..disks)
                        .map(|d| {
                            let mut id = [0u8; 16];
                            id[0] = n as u8;
                            id[1] = d as u8;
                            id[15] = 0xAB;
                            Disk { id, weight: 1 + d as u64 }
                        })
                        .collect(),
                })
                .collect(),
        }
    }

    #[test]
    fn a_layout_round_trips_through_its_record() {
        let l = Layout::new(512, 4, &membership(4, 2)).unwrap();
        let next = l.next(&membership(5, 2)).unwrap();
        for layout in [l, next] {
            let bytes = layout.encode();
            let back = Layout::decode(&bytes).unwrap();
            assert_eq!(back, layout);
            assert_eq!(back.encode(), bytes, "encoding is deterministic");
        }
    }

    #[test]
    fn a_damaged_or_foreign_record_is_refused_never_misread() {
        let bytes = Layout::new(64, 3, &membership(3, 1)).unwrap().encode();
        for cut in 0..bytes.len() {
            assert!(Layout::decode(&bytes[..cut]).is_err(), "a record cut at {cut} was accepted");
        }
        let mut newer = bytes.clone();
        newer[4] = LAYOUT_FORMAT + 1;
        assert_eq!(Layout::decode(&newer), Err(DecodeError::Version(LAYOUT_FORMAT + 1)));
        let mut magic = bytes.clone();
        magic[0] = b'X';
        assert_eq!(Layout::decode(&magic), Err(DecodeError::Magic));
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(Layout::decode(&longer).is_err());
        // A set naming one disk twice, or a disk that is not listed.
        let tail = bytes.len() - 3 * 2;
        let mut twice = bytes.clone();
        twice.copy_within(tail..tail + 2, tail + 2);
        assert!(Layout::decode(&twice).is_err());
        let mut out_of_range = bytes.clone();
        out_of_range[tail..tail + 2].copy_from_slice(&200u16.to_le_bytes());
        assert!(Layout::decode(&out_of_range).is_err());
        // Every single-byte change either decodes or is refused; none panics.
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0x5A;
            let _ = Layout::decode(&b);
        }
    }
}
