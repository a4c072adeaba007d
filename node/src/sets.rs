//! Erasure sets, the pure part (ARCHITECTURE.md, "Erasure sets"): format 2
//! of `tessera.format`, the placement of a partition on a lane and of a
//! block on a disk, and the start-up decision over missing and empty dirs.
//!
//! Served by `sets_open` (the server's start-up) since the first slice of
//! issue 11; `layout::open_existing` (offline tools) still refuses format 2.
//!
//! FORMAT BOUNDARY: the format 2 text and the placement functions decide
//! where every block lives; changing either strands data.

use std::collections::{BTreeMap, HashMap};

use tessera_erasure::{SetShape, MAX_STRIPE_BYTES};

use crate::layout::PARTITIONS;

pub const FORMAT_V2: u32 = 2;
/// Most disks in one set (MinIO's limit): more dirs are split into sets.
pub const MAX_SET_DISKS: usize = 16;
/// Most sets a node's format may name.
pub const MAX_SETS: usize = 64;
/// Most shards per disk a format may name.
pub const MAX_SHARDS_PER_DISK: u32 = 1024;
/// Bytes of a disk or node id.
pub const ID_BYTES: usize = 16;

pub type DiskId = [u8; ID_BYTES];

/// The format version `dir`'s format file names, if it is readable.
pub fn format_version_of(dir: &std::path::Path) -> Option<u32> {
    let text = std::fs::read_to_string(dir.join(crate::layout::FORMAT_FILE)).ok()?;
    text.lines().next()?.strip_prefix("tessera-format ")?.trim().parse().ok()
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum SetsError {
    #[error("malformed format 2 file: {0}")]
    Malformed(String),
    #[error("{0} disks cannot be split into equal sets of at most {MAX_SET_DISKS}")]
    NoEqualSplit(usize),
    #[error("invalid parity: {0}")]
    Parity(String),
    #[error("data dirs disagree about the layout: {0}")]
    Disagree(String),
    #[error("{0}")]
    Refused(String),
}

/// The sizes of the sets `disks` dirs form: one set up to `MAX_SET_DISKS`,
/// else the fewest equal sets no larger than that.
pub fn set_sizes(disks: usize) -> Result<Vec<usize>, SetsError> {
    if disks == 0 {
        return Err(SetsError::NoEqualSplit(0));
    }
    let sets = (disks.div_ceil(MAX_SET_DISKS)..=disks)
        .find(|&s| disks % s == 0 && disks / s <= MAX_SET_DISKS)
        .ok_or(SetsError::NoEqualSplit(disks))?;
    // A set of one disk has no parity; refuse splits that would make them.
    if sets > 1 && disks / sets < 2 || sets > MAX_SETS {
        return Err(SetsError::NoEqualSplit(disks));
    }
    Ok(vec![disks / sets; sets])
}

/// What one dir's format 2 file says: the whole layout plus which disk
/// this dir is. Every dir carries every set line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SetsFormat {
    pub node: DiskId,
    pub disk: DiskId,
    pub shards_per_disk: u32,
    pub parity: usize,
    pub stripe_bytes: usize,
    /// Members of each set, in position order.
    pub sets: Vec<Vec<DiskId>>,
}

impl SetsFormat {
    /// The formats of a fresh node: one per disk id in `disks` (in the
    /// order the dirs were given), parity the default unless `parity`.
    pub fn fresh(
        node: DiskId,
        disks: &[DiskId],
        shards_per_disk: u32,
        parity: Option<usize>,
        stripe_bytes: usize,
    ) -> Result<Vec<SetsFormat>, SetsError> {
        let sizes = set_sizes(disks.len())?;
        let mut sets = Vec::new();
        let mut at = 0;
        for n in sizes {
            sets.push(disks[at..at + n].to_vec());
            at += n;
        }
        let set_disks = sets[0].len();
        let shape =
            SetShape::new(set_disks, parity).map_err(|e| SetsError::Parity(e.to_string()))?;
        let f = SetsFormat {
            node,
            disk: disks[0],
            shards_per_disk,
            parity: shape.parity_blocks(),
            stripe_bytes,
            sets,
        };
        f.check()?;
        Ok(disks
            .iter()
            .map(|&d| SetsFormat {
                disk: d,
                ..f.clone()
            })
            .collect())
    }

    /// The layout without the dir's own identity: what all dirs must share.
    fn layout(&self) -> (DiskId, u32, usize, usize, &[Vec<DiskId>]) {
        (
            self.node,
            self.shards_per_disk,
            self.parity,
            self.stripe_bytes,
            &self.sets,
        )
    }

    pub fn set_disks(&self) -> usize {
        self.sets.first().map_or(0, Vec::len)
    }

    pub fn shape(&self) -> Result<SetShape, SetsError> {
        SetShape::new(self.set_disks(), Some(self.parity))
            .map_err(|e| SetsError::Parity(e.to_string()))
    }

    pub fn placement(&self) -> Placement {
        Placement {
            sets: self.sets.len() as u32,
            set_disks: self.set_disks() as u32,
            shards_per_disk: self.shards_per_disk,
        }
    }

    /// (set, position) of `disk` in the layout.
    pub fn position_of(&self, disk: &DiskId) -> Option<(usize, usize)> {
        self.sets
            .iter()
            .enumerate()
            .find_map(|(s, m)| m.iter().position(|d| d == disk).map(|p| (s, p)))
    }

    fn check(&self) -> Result<(), SetsError> {
        let bad = |why: &str| Err(SetsError::Malformed(why.to_string()));
        if self.shards_per_disk == 0 || self.shards_per_disk > MAX_SHARDS_PER_DISK {
            return bad("shards out of range");
        }
        if self.stripe_bytes == 0 || self.stripe_bytes > MAX_STRIPE_BYTES {
            return bad("stripe out of range");
        }
        if self.sets.is_empty() || self.sets.len() > MAX_SETS {
            return bad("set count out of range");
        }
        let n = self.set_disks();
        if n == 0 || n > MAX_SET_DISKS || self.sets.iter().any(|s| s.len() != n) {
            return bad("sets must have equal sizes within 1..=16");
        }
        self.shape()?;
        let mut seen = std::collections::HashSet::new();
        if !self.sets.iter().flatten().all(|d| seen.insert(*d)) {
            return bad("a disk id appears twice");
        }
        if self.position_of(&self.disk).is_none() {
            return bad("this disk is not a member of any set");
        }
        Ok(())
    }

    pub fn to_text(&self) -> String {
        let mut t = format!(
            "tessera-format {FORMAT_V2}\nnode {}\ndisk {}\nshards {}\nparity {}\nstripe {}\n",
            hex::encode(self.node),
            hex::encode(self.disk),
            self.shards_per_disk,
            self.parity,
            self.stripe_bytes
        );
        for (i, members) in self.sets.iter().enumerate() {
            t.push_str(&format!("set {i}"));
            for d in members {
                t.push(' ');
                t.push_str(&hex::encode(d));
            }
            t.push('\n');
        }
        t
    }

    /// Parses a format 2 file; anything missing, repeated, unknown or out
    /// of range is refused (a misread format would misplace every block).
    pub fn parse(text: &str) -> Result<SetsFormat, SetsError> {
        let bad = |why: String| SetsError::Malformed(why);
        let mut fields: HashMap<&str, &str> = HashMap::new();
        let mut sets: BTreeMap<usize, Vec<DiskId>> = BTreeMap::new();
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let (name, rest) = line
                .trim()
                .split_once(' ')
                .ok_or_else(|| bad(format!("line {line:?}")))?;
            if name == "set" {
                let mut it = rest.split_whitespace();
                let i = it
                    .next()
                    .and_then(|i| i.parse::<usize>().ok())
                    .ok_or_else(|| bad("set index".into()))?;
                let members = it.map(parse_id).collect::<Result<Vec<_>, _>>()?;
                if i >= MAX_SETS || sets.insert(i, members).is_some() {
                    return Err(bad(format!("set {i} repeated or out of range")));
                }
            } else if !matches!(
                name,
                "tessera-format" | "node" | "disk" | "shards" | "parity" | "stripe"
            ) || fields.insert(name, rest.trim()).is_some()
            {
                return Err(bad(format!("unknown or repeated field {name:?}")));
            }
        }
        let field = |n: &str| {
            fields
                .get(n)
                .copied()
                .ok_or_else(|| bad(format!("missing {n}")))
        };
        let num = |n: &str| {
            field(n)?
                .parse::<u64>()
                .map_err(|_| bad(format!("{n} is not a number")))
        };
        if num("tessera-format")? != u64::from(FORMAT_V2) {
            return Err(bad("not format 2".into()));
        }
        if sets.keys().copied().ne(0..sets.len()) {
            return Err(bad("set indexes must be 0, 1, 2, ...".into()));
        }
        let f = SetsFormat {
            node: parse_id(field("node")?)?,
            disk: parse_id(field("disk")?)?,
            shards_per_disk: u32::try_from(num("shards")?).map_err(|_| bad("shards".into()))?,
            parity: usize::try_from(num("parity")?).map_err(|_| bad("parity".into()))?,
            stripe_bytes: usize::try_from(num("stripe")?).map_err(|_| bad("stripe".into()))?,
            sets: sets.into_values().collect(),
        };
        f.check()?;
        Ok(f)
    }
}

fn parse_id(s: &str) -> Result<DiskId, SetsError> {
    let mut id = [0u8; ID_BYTES];
    hex::decode_to_slice(s, &mut id).map_err(|_| SetsError::Malformed(format!("bad id {s:?}")))?;
    Ok(id)
}

/// A lane: shard `shard` of every disk of set `set`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Lane {
    pub set: u32,
    pub shard: u32,
}

/// The placement function of format 2 (see ARCHITECTURE.md).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Placement {
    pub sets: u32,
    pub set_disks: u32,
    pub shards_per_disk: u32,
}

impl Placement {
    pub fn lanes(&self) -> u32 {
        self.sets * self.shards_per_disk
    }

    fn lane_index(&self, partition: u64) -> u64 {
        partition % u64::from(self.lanes().max(1))
    }

    pub fn lane_of(&self, partition: u64) -> Lane {
        let l = self.lane_index(partition) as u32;
        // A checked format never has 0 shards; the max keeps a hand-built
        // Placement from dividing by zero.
        let per_disk = self.shards_per_disk.max(1);
        Lane {
            set: l / per_disk,
            shard: l % per_disk,
        }
    }

    /// How far the blocks of a partition's objects are rotated over the
    /// set's disks: the part of the partition the lane did not use, so the
    /// keys of one lane still spread their parity over every disk.
    pub fn rotation(&self, partition: u64) -> u32 {
        ((partition % PARTITIONS) / u64::from(self.lanes().max(1))
            % u64::from(self.set_disks.max(1))) as u32
    }

    /// Position in the set of the disk that holds block `block`.
    pub fn disk_of_block(&self, rotation: u32, block: u32) -> u32 {
        (block + rotation) % self.set_disks.max(1)
    }

    /// The core that owns a lane (all of its shards).
    pub fn owner(&self, lane: Lane, threads: usize) -> usize {
        (lane.set * self.shards_per_disk + lane.shard) as usize % threads.max(1)
    }
}

/// What start-up found in one given dir.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DirState {
    Formatted(SetsFormat),
    /// No format file and nothing else of ours: can be formatted.
    Empty,
    /// Missing, unreadable, or a format that does not parse.
    Unreadable,
}

/// The start-up decision over the given dirs of a formatted node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StartPlan {
    /// The layout every online dir agrees on (its `disk` is meaningless).
    pub layout: SetsFormat,
    /// (dir index, set, position) of each dir serving its disk.
    pub online: Vec<(usize, usize, usize)>,
    /// (set, position) of each disk no given dir serves.
    pub offline: Vec<(usize, usize)>,
    /// (dir index, set, position): empty dirs that replace a lost disk;
    /// they get a new disk id, are rewritten into every format, and heal.
    pub adopt: Vec<(usize, usize, usize)>,
}

/// The layout the formatted dirs agree on. They may differ only where an
/// adoption was cut short (ARCHITECTURE.md, "Restart, missing and empty
/// dirs, healing"): at a position some dirs name the lost disk's id and
/// others the new one's, and exactly one of the ids is a given dir's own
/// disk; that one wins (the start rewrites the other dirs' formats).
fn merge_layouts(formatted: &[(usize, &SetsFormat)]) -> Result<SetsFormat, SetsError> {
    let (i0, first) = formatted[0];
    let mut out = first.clone();
    for &(i, f) in &formatted[1..] {
        let (a, b) = (f.layout(), first.layout());
        if (a.0, a.1, a.2, a.3) != (b.0, b.1, b.2, b.3) || f.sets.len() != first.sets.len() {
            return Err(SetsError::Disagree(format!("dir {i} has another layout than dir {i0}")));
        }
    }
    let served = |id: &DiskId| formatted.iter().any(|(_, f)| f.disk == *id);
    for (s, members) in first.sets.iter().enumerate() {
        if formatted.iter().any(|(_, f)| f.sets[s].len() != members.len()) {
            return Err(SetsError::Disagree(format!("set {s} has another size in some dirs")));
        }
        for p in 0..members.len() {
            let mut ids: Vec<DiskId> = formatted.iter().map(|(_, f)| f.sets[s][p]).collect();
            ids.sort_unstable();
            ids.dedup();
            if ids.len() == 1 {
                continue;
            }
            let live: Vec<&DiskId> = ids.iter().filter(|id| served(id)).collect();
            match live.as_slice() {
                [one] => out.sets[s][p] = **one,
                _ => {
                    return Err(SetsError::Disagree(format!(
                        "dirs name {} disks at set {s} position {p}",
                        ids.len()
                    )))
                }
            }
        }
    }
    out.check()?;
    Ok(out)
}

/// Decides which dir serves which disk at start. Refuses what it cannot
/// decide safely: dirs of another node or another layout, a disk id in two
/// dirs (a copied dir), empty dirs beside unreadable ones (which position an
/// unreadable dir had is unknown, and adopting its place would shadow it),
/// more empty dirs than lost disks (adding disks is not supported). Lanes
/// below k online disks are the caller's to refuse or serve degraded.
pub fn plan_start(dirs: &[DirState]) -> Result<Option<StartPlan>, SetsError> {
    let formatted: Vec<(usize, &SetsFormat)> = dirs
        .iter()
        .enumerate()
        .filter_map(|(i, d)| {
            if let DirState::Formatted(f) = d {
                Some((i, f))
            } else {
                None
            }
        })
        .collect();
    if formatted.is_empty() {
        return if dirs.iter().all(|d| *d == DirState::Empty) {
            Ok(None) // a fresh node: format every dir
        } else {
            Err(SetsError::Refused(
                "no dir has a readable format; refusing to format over unreadable dirs".into(),
            ))
        };
    };
    let merged = merge_layouts(&formatted)?;
    let first = &merged;
    let mut by_position: BTreeMap<(usize, usize), usize> = BTreeMap::new();
    for &(i, f) in &formatted {
        let pos = first.position_of(&f.disk).ok_or_else(|| {
            SetsError::Refused(format!("dir {i} is a disk the layout no longer has (was it replaced?)"))
        })?;
        if let Some(other) = by_position.insert(pos, i) {
            return Err(SetsError::Refused(format!(
                "dirs {other} and {i} are the same disk (a copied dir?)"
            )));
        }
    }
    let mut offline: Vec<(usize, usize)> = Vec::new();
    for (s, members) in first.sets.iter().enumerate() {
        for p in 0..members.len() {
            if !by_position.contains_key(&(s, p)) {
                offline.push((s, p));
            }
        }
    }
    let empty: Vec<usize> = dirs
        .iter()
        .enumerate()
        .filter(|(_, d)| **d == DirState::Empty)
        .map(|(i, _)| i)
        .collect();
    let unreadable = dirs.iter().filter(|d| **d == DirState::Unreadable).count();
    let mut adopt = Vec::new();
    if !empty.is_empty() {
        if unreadable > 0 {
            return Err(SetsError::Refused(
                "empty dirs beside unreadable ones: repair or remove the unreadable dirs first"
                    .into(),
            ));
        }
        if empty.len() > offline.len() {
            return Err(SetsError::Refused(
                "more empty dirs than lost disks; adding disks is not supported".into(),
            ));
        }
        // In set and position order; positions left over stay offline.
        let taken: Vec<(usize, usize)> = offline.drain(..empty.len()).collect();
        for (i, (s, p)) in empty.into_iter().zip(taken) {
            adopt.push((i, s, p));
        }
    }
    let online = by_position
        .into_iter()
        .map(|((s, p), i)| (i, s, p))
        .collect();
    Ok(Some(StartPlan {
        layout: first.clone(),
        online,
        offline,
        adopt,
    }))
}

#[cfg(test)]
#[path = "sets_tests.rs"]
mod tests;
