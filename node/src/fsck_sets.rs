//! `tessera fsck` of a format 2 node (erasure sets): every member shard of
//! every given dir is recovered and its records verified as on format 1;
//! the registry copies are lane 0's members (shard 0 of each disk of set
//! 0); objects are counted once per lane; and the members of each lane
//! must hold the same records (key and summary in every table): a whole
//! disk that lacks or differs is a problem, a disk healing (`tessera.heal`)
//! or recorded stale is a note (healing rebuilds it). Dirs of the layout
//! not given are noted as offline. Nothing is written without `--repair`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use tessera_io::fsck::{check_shard, ShardReport};

use crate::fsck::{node_level, runtime, FsckReport};
use crate::layout::{self, FORMAT_FILE};
use crate::meta::T_HEAL;
use crate::sets::{DiskId, SetsFormat};

/// What a member disk is, for the consistency check.
#[derive(Clone, Copy, PartialEq, Eq)]
enum State {
    Whole,
    Healing,
    Stale,
}

pub fn run(dirs: &[PathBuf], repair: bool) -> Result<FsckReport, String> {
    let mut formats = Vec::with_capacity(dirs.len());
    for d in dirs {
        let path = d.join(FORMAT_FILE);
        let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        formats.push(SetsFormat::parse(&text).map_err(|e| format!("{}: {e}", path.display()))?);
    }
    let reference = formats.first().ok_or("no data dir given")?.clone();
    for (d, f) in dirs.iter().zip(&formats) {
        if f.node != reference.node || f.sets != reference.sets || f.shards_per_disk != reference.shards_per_disk {
            return Err(format!(
                "{} and {} have different layouts in their format files (an interrupted adoption?): start the server once to settle them",
                dirs[0].display(),
                d.display()
            ));
        }
    }
    let n = reference.sets.first().map_or(0, Vec::len);
    let flat: Vec<DiskId> = reference.sets.iter().flatten().copied().collect();
    // Disk index (set * n + position) of each given dir.
    let mut given: BTreeMap<usize, (PathBuf, State)> = BTreeMap::new();
    let mut stale: BTreeSet<DiskId> = BTreeSet::new();
    for d in dirs {
        stale.extend(crate::sets_open::read_stale(d).map_err(|e| e.to_string())?);
    }
    for (d, f) in dirs.iter().zip(&formats) {
        let disk = flat.iter().position(|x| *x == f.disk).ok_or_else(|| format!("{}: its disk is not in the layout", d.display()))?;
        let state = if crate::heal_state::read_mark(d).map_err(|e| e.to_string())?.is_some() {
            State::Healing
        } else if stale.contains(&f.disk) {
            State::Stale
        } else {
            State::Whole
        };
        if given.insert(disk, (d.clone(), state)).is_some() {
            return Err(format!("{}: the same disk is given twice", d.display()));
        }
    }
    let _locks = layout::lock_data_dirs(dirs).map_err(|e| e.to_string())?;
    let spd = reference.shards_per_disk;
    let mut rt = runtime()?;
    // Reports by (disk, shard in the disk).
    let mut reports: BTreeMap<(usize, u32), ShardReport> = BTreeMap::new();
    for (&disk, (dir, _)) in &given {
        for j in 0..spd {
            let sd = dir.join(format!("shard-{j:04}"));
            let id = disk as u32 * spd + j;
            let r = rt.block_on(check_shard(&sd, id, repair)).map_err(|e| format!("shard {id} ({}): {e}", sd.display()))?;
            reports.insert((disk, j), r);
        }
    }
    let mut notes = Vec::new();
    let mut problems = Vec::new();
    for (disk, id) in flat.iter().enumerate() {
        if !given.contains_key(&disk) {
            notes.push(format!("disk {} (set {}, position {}) was not given: offline", hex::encode(id), disk / n.max(1), disk % n.max(1)));
        }
    }
    // Per lane: one member's report stands for the lane (a whole disk's
    // if any), and every other member is compared with it.
    let mut data: Vec<&ShardReport> = Vec::new();
    for s in 0..reference.sets.len() {
        let members: Vec<usize> = (0..n).map(|p| s * n + p).filter(|d| given.contains_key(d)).collect();
        let Some(&first) = members.iter().find(|d| given[*d].1 == State::Whole).or(members.first()) else { continue };
        for j in 0..spd {
            let r = &reports[&(first, j)];
            data.push(r);
            for &other in members.iter().filter(|&&d| d != first) {
                let (differ, what) = compare(r, &reports[&(other, j)]);
                if differ == 0 {
                    continue;
                }
                let (dir, state) = &given[&other];
                let text = format!("lane {} (set {s}, shard {j}): disk at {} {what} ({differ} records)", s as u32 * spd + j, dir.display());
                match (given[&first].1, *state) {
                    (State::Whole, State::Whole) => problems.push(format!("{text}, though both are whole")),
                    (_, State::Healing) => notes.push(format!("{text}; it is healing, which rebuilds them")),
                    (_, State::Stale) => notes.push(format!("{text}; it is recorded stale and heals at the next start")),
                    _ => notes.push(format!("{text}; no whole disk of the set was given to compare with")),
                }
            }
        }
    }
    let registry: Vec<&ShardReport> =
        (0..n).filter(|p| given.contains_key(p)).map(|p| &reports[&(p, 0)]).collect();
    let (p2, n2, buckets, objects) = node_level(&registry, &data);
    problems.extend(p2);
    notes.extend(n2);
    let reports_ordered: Vec<ShardReport> = reports.into_values().collect();
    Ok(FsckReport { shards: reports_ordered, problems, notes, buckets, objects })
}

/// How two members of a lane differ: records (table, key, summary) one
/// holds and the other does not, in either direction; the heal cursors
/// (`T_HEAL`, per member by design) are not compared.
fn compare(a: &ShardReport, b: &ShardReport) -> (usize, String) {
    let (mut lacks, mut extra) = (0usize, 0usize);
    for t in 0..=u8::MAX {
        if t == T_HEAL {
            continue;
        }
        // Both in key order: a merge walk.
        let (x, y) = (a.entries(t), b.entries(t));
        let (mut i, mut j) = (0, 0);
        while i < x.len() || j < y.len() {
            match (x.get(i), y.get(j)) {
                (Some(p), Some(q)) if p.0 == q.0 => {
                    if p.1 != q.1 {
                        lacks += 1;
                    }
                    i += 1;
                    j += 1;
                }
                (Some(p), Some(q)) if p.0 < q.0 => {
                    lacks += 1;
                    i += 1;
                }
                (Some(_), None) => {
                    lacks += 1;
                    i += 1;
                }
                _ => {
                    extra += 1;
                    j += 1;
                }
            }
        }
    }
    let what = match (lacks, extra) {
        (0, 0) => String::new(),
        (l, 0) => format!("lacks or holds another version of {l} records the lane's reference member holds"),
        (0, e) => format!("holds {e} records the lane's reference member does not"),
        (l, e) => format!("lacks {l} and holds {e} other records than the lane's reference member"),
    };
    (lacks + extra, what)
}
