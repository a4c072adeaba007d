//! Opening a format 2 node (erasure sets, issue 11): formatting fresh dirs
//! with `--erasure`, deciding at start which dirs serve (`sets::plan_start`),
//! and the per-disk online state the lanes' writes consult.
//!
//! What is built (see ARCHITECTURE.md, "Erasure sets"): a lane's member
//! shards hold every record (mirrored) and their own blocks of every data
//! record (striped k+m, `stripes_io`). Every commit of a lane goes to all
//! of its online members and is acknowledged once `SetShape::write_quorum`
//! of them are durable; reads take the record of the lane's first online
//! member (the read primary) and the blocks of the others.
//!
//! Lanes have no version resolution yet, so a disk that missed writes
//! must never be read again until healing exists: every start that can
//! take writes records the disks it serves without in `tessera.stale` in
//! each online dir, a member that fails a write is recorded there before
//! the write is acknowledged, and a disk named stale by any online dir
//! stays offline. A start needs >= k online disks per set; below W online
//! every write answers 503 SlowDown (and nothing is recorded as stale,
//! since nothing can be acknowledged).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::heal_state::{self, HealMark, HealProgress};
use crate::layout::{self, DirLock, Layout, LayoutError, FORMAT_FILE};
use crate::sets::{self, DirState, DiskId, SetsFormat, FORMAT_V2, ID_BYTES};

/// Disks (ids, hex, one a line) that missed acknowledged writes.
pub const STALE_FILE: &str = "tessera.stale";
/// Largest stale file read: MAX_SETS * MAX_SET_DISKS ids fit many times.
pub const MAX_STALE_BYTES: u64 = 64 * 1024;

fn invalid(e: impl std::fmt::Display) -> LayoutError {
    LayoutError::Invalid(e.to_string())
}

/// One disk of the layout (set-major: index = set * set_disks + position).
#[derive(Debug)]
pub struct Disk {
    pub id: DiskId,
    /// The data dir serving it; None when offline at start.
    pub dir: Option<PathBuf>,
    online: AtomicBool,
    /// Its heal (`heal_state`): healing disks take writes but are never
    /// read as a record holder, nor counted toward the write quorum.
    pub heal: HealProgress,
}

/// Which disks take writes, shared by every core. A disk leaves it (until
/// the next start, and then for good: it is recorded as stale) when one
/// of its shards fails a mirrored write.
#[derive(Debug)]
pub struct DiskHealth {
    pub disks: Vec<Disk>,
    /// What striped reads met (see `stripes_io`).
    pub ec: Arc<EcCounters>,
    /// The stale set as last written; the lock also orders its writers.
    stale: Mutex<BTreeSet<DiskId>>,
    /// The members of a cluster lane (on other nodes, `for_cluster`):
    /// out of service until a probe answers (`cluster_lanes::revive`).
    remote: bool,
    /// A write found too few members in service: probe them now.
    wanted: AtomicBool,
}

impl DiskHealth {
    pub fn online(&self, disk: usize) -> bool {
        self.disks.get(disk).is_some_and(|d| d.online.load(Ordering::Acquire))
    }

    /// Still healing (whether online or not).
    pub fn healing(&self, disk: usize) -> bool {
        self.disks.get(disk).is_some_and(|d| d.heal.is_healing())
    }

    /// Online and whole: counts toward the write quorum.
    pub fn counts(&self, disk: usize) -> bool {
        self.online(disk) && !self.healing(disk)
    }

    /// Every lane of `disk` completed a verifying pass: its heal mark is
    /// removed (synced) before the disk counts as whole. False if the mark
    /// cannot be removed (the disk stays healing, the next start redoes it).
    pub fn healed(&self, disk: usize) -> bool {
        let Some(d) = self.disks.get(disk) else { return false };
        let Some(dir) = &d.dir else { return false };
        if let Err(e) = crate::heal_state::remove_mark(dir) {
            tracing::error!(dir = %dir.display(), error = %e, "cannot remove the heal mark; the disk stays healing");
            return false;
        }
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        d.heal.healed_unix_ms.store(now.as_millis() as u64, Ordering::Relaxed);
        d.heal.healing.store(false, Ordering::Release);
        tracing::warn!(disk = %hex::encode(d.id), dir = %dir.display(), "disk healed: every lane verified; it counts toward the write quorum again");
        true
    }

    /// Takes `disk` out of service and records it as stale in every online
    /// dir; returns whether that record reached all of them (the caller
    /// must not acknowledge a write the disk missed otherwise).
    pub fn fail(&self, disk: usize) -> bool {
        let Some(d) = self.disks.get(disk) else { return false };
        let was = d.online.swap(false, Ordering::AcqRel);
        if was && d.dir.is_none() {
            tracing::error!(node = %hex::encode(d.id), "a lane member on another node failed a call; it is out of service until it answers again");
        } else if was {
            tracing::error!(disk = %hex::encode(d.id), dir = ?d.dir, "disk failed a write; it is offline and recorded as stale (it heals when it is back at a start)");
        }
        let mut stale = match self.stale.lock() {
            Ok(s) => s,
            Err(p) => p.into_inner(),
        };
        stale.insert(d.id);
        let mut ok = true;
        for other in self.disks.iter().filter(|o| o.online.load(Ordering::Acquire)) {
            if let Some(dir) = &other.dir {
                if let Err(e) = write_stale(dir, &stale) {
                    tracing::error!(dir = %dir.display(), error = %e, "cannot record a stale disk");
                    ok = false;
                }
            }
        }
        ok
    }
}

impl DiskHealth {
    /// The health of a cluster lane's members (`cluster_lanes`): one
    /// entry per node of the lane (this node's shard first), none with a
    /// dir here, so a failure takes the member out of service without a
    /// stale file (the lane's primary stays the owner's own shard, which
    /// holds every record; see `cluster_lanes` for why that is safe).
    pub fn for_cluster(ids: Vec<DiskId>, ec: Arc<EcCounters>) -> Arc<DiskHealth> {
        let disks =
            ids.into_iter().map(|id| Disk { id, online: AtomicBool::new(true), dir: None, heal: HealProgress::new(None, 1) }).collect();
        Arc::new(DiskHealth { disks, ec, stale: Mutex::new(BTreeSet::new()), remote: true, wanted: AtomicBool::new(false) })
    }

    /// Puts a member of a cluster lane back in service (its node answers
    /// again); false if it was online.
    pub fn revive(&self, disk: usize) -> bool {
        self.disks.get(disk).is_some_and(|d| d.dir.is_none() && !d.online.swap(true, Ordering::AcqRel))
    }

    /// Asks for the members out of service to be probed at once (a write
    /// found too few in service); false for local disks, which come back
    /// only at the next start.
    pub fn want_members(&self) -> bool {
        if self.remote {
            self.wanted.store(true, Ordering::Release);
        }
        self.remote
    }

    /// Whether a write asked for a probe since the last call.
    pub fn take_wanted(&self) -> bool {
        self.wanted.swap(false, Ordering::AcqRel)
    }
}

#[cfg(test)]
impl DiskHealth {
    /// Disks by id, each online when it has a dir or `remote` (a disk of
    /// another node), none healing: for tests that build lanes by hand.
    pub(crate) fn for_test(disks: Vec<(DiskId, Option<PathBuf>, bool)>) -> Arc<DiskHealth> {
        let disks = disks
            .into_iter()
            .map(|(id, dir, remote)| Disk { id, online: AtomicBool::new(dir.is_some() || remote), dir, heal: HealProgress::new(None, 1) })
            .collect();
        Arc::new(DiskHealth { disks, ec: Arc::default(), stale: Mutex::new(BTreeSet::new()), remote: false, wanted: AtomicBool::new(false) })
    }
}

/// Counts of striped reads, node-wide (`/metrics`).
#[derive(Debug, Default)]
pub struct EcCounters {
    /// Stripes decoded with parity (a data block missing, failed or corrupt).
    pub degraded_stripes: AtomicU64,
    /// Stripes with fewer than k good blocks: the read failed (500).
    pub unreadable_stripes: AtomicU64,
    /// Block streams rebuilt and rewritten by read repair.
    pub repaired_blocks: AtomicU64,
    /// Pieces of another width striped again with their lane's when a
    /// record naming them was committed (a lane grown from 3 nodes to 4).
    pub restriped_pieces: AtomicU64,
    /// Scrub repair (`ec_scrub`): lane passes run after the scrubber found
    /// damage, records verified on every member, records rebuilt and
    /// their bytes, member records the primary lacks removed, records
    /// that could not be mended.
    pub scrub_passes: AtomicU64,
    /// Lane repair passes running now (a gauge).
    pub scrub_running: AtomicU64,
    pub scrub_verified: AtomicU64,
    pub scrub_rebuilt: AtomicU64,
    pub scrub_rebuilt_bytes: AtomicU64,
    pub scrub_removed: AtomicU64,
    pub scrub_failures: AtomicU64,
}

impl EcCounters {
    /// Appends the counters in the Prometheus text format.
    pub fn render(&self, out: &mut String) {
        use std::fmt::Write;
        for (name, help, v) in [
            ("tessera_ec_degraded_stripes_total", "Erasure stripes decoded with parity (a data block missing, failed or corrupt).", &self.degraded_stripes),
            ("tessera_ec_unreadable_stripes_total", "Erasure stripes read with fewer than k good blocks (the read failed).", &self.unreadable_stripes),
            ("tessera_ec_repaired_blocks_total", "Erasure block streams rebuilt and rewritten by read repair.", &self.repaired_blocks),
            ("tessera_ec_restriped_pieces_total", "Striped pieces of another width (written before their lane grew) striped again with the lane's when a record naming them was committed.", &self.restriped_pieces),
            ("tessera_ec_scrub_passes_total", "Lane repair passes run because the scrubber found damage on the lane's disks.", &self.scrub_passes),
            ("tessera_ec_scrub_running_passes", "Lane repair passes running now (a gauge).", &self.scrub_running),
            ("tessera_ec_scrub_verified_records_total", "Records verified whole on a lane member by scrub repair passes.", &self.scrub_verified),
            ("tessera_ec_scrub_rebuilt_records_total", "Records rebuilt on a lane member by scrub repair passes.", &self.scrub_rebuilt),
            ("tessera_ec_scrub_rebuilt_bytes_total", "Body bytes written by scrub repair passes.", &self.scrub_rebuilt_bytes),
            ("tessera_ec_scrub_removed_records_total", "Member records their lane's primary lacks, removed by scrub repair passes.", &self.scrub_removed),
            ("tessera_ec_scrub_failures_total", "Records scrub repair passes could not verify or rebuild.", &self.scrub_failures),
        ] {
            let kind = if name.ends_with("_total") { "counter" } else { "gauge" };
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {}", v.load(Ordering::Relaxed));
        }
    }
}

/// A member shard of a lane.
#[derive(Debug, Clone)]
pub struct Member {
    /// Global shard id: (disk index * shards per disk) + shard in the disk.
    pub id: u32,
    pub dir: PathBuf,
    /// Index of its disk in `DiskHealth::disks`.
    pub disk: usize,
}

/// The served form of a format 2 layout.
#[derive(Debug, Clone)]
pub struct LaneLayout {
    pub format: SetsFormat,
    pub write_quorum: usize,
    /// Online members of each lane (lane = set * shards per disk + shard),
    /// in position order: the first is the read primary.
    pub lanes: Vec<Vec<Member>>,
    pub health: Arc<DiskHealth>,
}


/// Locks and opens the data dirs for the server: format 1 exactly as
/// before; format 2 when any dir has it, or when `erasure` (the parity,
/// None for the default) asks to format fresh dirs with it.
pub fn open_for_server(
    dirs: &[PathBuf],
    shards_per_disk: u32,
    erasure: Option<Option<usize>>,
) -> Result<(Vec<DirLock>, Layout), LayoutError> {
    let v2 = dirs.iter().any(|d| crate::sets::format_version_of(d) == Some(FORMAT_V2));
    if !v2 {
        let Some(parity) = erasure else {
            let locks = layout::lock_data_dirs(dirs)?;
            return Ok((locks, layout::open_or_format(dirs, shards_per_disk)?));
        };
        if dirs.iter().any(|d| d.join(FORMAT_FILE).exists()) {
            return Err(invalid(
                "--erasure applies only when formatting fresh data dirs; these are already formatted without erasure sets",
            ));
        }
        if dirs.len() < 2 {
            return Err(invalid("--erasure needs at least 2 data dirs"));
        }
        let locks = layout::lock_data_dirs(dirs)?;
        format_fresh(dirs, shards_per_disk, parity)?;
        let states = dirs.iter().map(|d| read_state(d)).collect::<Vec<_>>();
        return Ok((locks, build(dirs, &states)?));
    }
    let mut locks = Vec::new();
    let mut states = Vec::new();
    for d in dirs {
        // A missing dir is an offline disk: never created here, so that a
        // lost mount point is not mistaken for a fresh empty disk.
        if !d.is_dir() {
            tracing::error!(dir = %d.display(), "data dir is missing; its disk is offline");
            states.push(DirState::Unreadable);
            continue;
        }
        match layout::lock_dir(d) {
            Ok(l) => {
                locks.push(l);
                states.push(read_state(d));
            }
            Err(e @ LayoutError::Invalid(_)) => return Err(e),
            Err(e) => {
                tracing::error!(dir = %d.display(), error = %e, "data dir cannot be used; its disk is offline");
                states.push(DirState::Unreadable);
            }
        }
    }
    Ok((locks, build(dirs, &states)?))
}

fn read_state(d: &Path) -> DirState {
    match std::fs::read_to_string(d.join(FORMAT_FILE)) {
        Ok(text) => match SetsFormat::parse(&text) {
            Ok(f) => DirState::Formatted(f),
            Err(e) => {
                tracing::error!(dir = %d.display(), error = %e, "format file unreadable; the disk is offline");
                DirState::Unreadable
            }
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => DirState::Empty,
        Err(e) => {
            tracing::error!(dir = %d.display(), error = %e, "format file unreadable; the disk is offline");
            DirState::Unreadable
        }
    }
}

fn random_id() -> Result<DiskId, LayoutError> {
    use ring::rand::SecureRandom;
    let mut id = [0u8; ID_BYTES];
    ring::rand::SystemRandom::new()
        .fill(&mut id)
        .map_err(|_| invalid("no system randomness for disk ids"))?;
    Ok(id)
}

fn format_fresh(dirs: &[PathBuf], shards_per_disk: u32, parity: Option<usize>) -> Result<(), LayoutError> {
    let node = random_id()?;
    let ids = dirs.iter().map(|_| random_id()).collect::<Result<Vec<_>, _>>()?;
    let formats = SetsFormat::fresh(node, &ids, shards_per_disk.max(1), parity, tessera_erasure::DEFAULT_STRIPE_BYTES)
        .map_err(invalid)?;
    for (d, f) in dirs.iter().zip(&formats) {
        layout::write_atomic(&d.join(FORMAT_FILE), &f.to_text())?;
    }
    Ok(())
}

pub(crate) fn read_stale(dir: &Path) -> Result<BTreeSet<DiskId>, LayoutError> {
    use std::io::Read;
    let path = dir.join(STALE_FILE);
    let io = |source| LayoutError::Io { path: path.display().to_string(), source };
    let f = match std::fs::File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeSet::new()),
        Err(e) => return Err(io(e)),
    };
    let mut text = String::new();
    f.take(MAX_STALE_BYTES).read_to_string(&mut text).map_err(io)?;
    let mut out = BTreeSet::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let mut id = [0u8; ID_BYTES];
        hex::decode_to_slice(line, &mut id)
            .map_err(|_| invalid(format!("{}: malformed disk id {line:?}", path.display())))?;
        out.insert(id);
    }
    Ok(out)
}

fn write_stale(dir: &Path, stale: &BTreeSet<DiskId>) -> Result<(), LayoutError> {
    let text: String = stale.iter().map(|id| format!("{}\n", hex::encode(id))).collect();
    layout::write_atomic(&dir.join(STALE_FILE), &text)
}

fn build(dirs: &[PathBuf], states: &[DirState]) -> Result<Layout, LayoutError> {
    let plan = sets::plan_start(states)
        .map_err(invalid)?
        .ok_or_else(|| invalid("no data dir has a readable format"))?;
    let mut f = plan.layout;
    let mut online = plan.online;
    // Empty dirs in place of lost disks: each gets a new disk id and its
    // heal mark, then its format, then every other dir's format names it
    // (each write atomic; `plan_start` finishes a rewrite cut short).
    let mut replaced = BTreeSet::new();
    for &(i, s, p) in &plan.adopt {
        let id = random_id()?;
        replaced.insert(f.sets[s][p]);
        tracing::warn!(dir = %dirs[i].display(), set = s, position = p, disk = %hex::encode(id), "adopting an empty dir in place of a lost disk; it heals in the background");
        f.sets[s][p] = id;
        heal_state::write_mark(&dirs[i], &HealMark::fresh()?)?;
        online.push((i, s, p));
    }
    for &(i, s, p) in &online {
        let mine = SetsFormat { disk: f.sets[s][p], ..f.clone() };
        if states.get(i) != Some(&DirState::Formatted(mine.clone())) {
            layout::write_atomic(&dirs[i].join(FORMAT_FILE), &mine.to_text())?;
        }
    }
    let shape = f.shape().map_err(invalid)?;
    let (n, k, w) = (f.set_disks(), shape.data_blocks(), shape.write_quorum());
    let mut disk_dir: Vec<Option<PathBuf>> = vec![None; f.sets.len() * n];
    for &(i, s, p) in &online {
        disk_dir[s * n + p] = dirs.get(i).cloned();
    }
    let ids: Vec<DiskId> = f.sets.iter().flatten().copied().collect();
    let mut stale = BTreeSet::new();
    for d in disk_dir.iter().flatten() {
        stale.extend(read_stale(d)?);
    }
    // Replaced disks are no longer in the layout.
    stale.retain(|id| !replaced.contains(id) && ids.contains(id));
    // A disk back after missing writes heals under a new epoch (its old
    // cursors, if any, say nothing about the writes it missed); from then
    // on the heal mark, not the stale file, keeps it from being read.
    let mut marks: Vec<Option<HealMark>> = vec![None; ids.len()];
    for (i, id) in ids.iter().enumerate() {
        let Some(dir) = &disk_dir[i] else { continue };
        marks[i] = if stale.contains(id) {
            tracing::warn!(disk = %hex::encode(id), dir = %dir.display(), "disk missed writes while it was away; it heals in the background");
            let m = HealMark::fresh()?;
            heal_state::write_mark(dir, &m)?;
            Some(m)
        } else {
            heal_state::read_mark(dir)?
        };
        if marks[i].is_some() {
            stale.remove(id);
        }
    }
    for s in 0..f.sets.len() {
        let whole = (s * n..(s + 1) * n).filter(|&d| disk_dir[d].is_some() && marks[d].is_none()).count();
        if whole < k {
            return Err(invalid(format!(
                "only {whole} of the {n} disks of set {s} are online and whole (not healing); at least {k} are needed"
            )));
        }
    }
    let mut writable = true;
    for s in 0..f.sets.len() {
        let online = (s * n..(s + 1) * n).filter(|&d| disk_dir[d].is_some() && marks[d].is_none()).count();
        if online < n {
            tracing::warn!(set = s, online, disks = n, write_quorum = w, "serving with disks offline");
        }
        writable &= online >= w;
    }
    if writable {
        let before = stale.len();
        for (i, id) in ids.iter().enumerate() {
            if disk_dir[i].is_none() {
                stale.insert(*id);
            }
        }
        // Every online dir gets the whole set (also when unchanged), so a
        // dir that did not know an older stale disk learns it.
        for d in disk_dir.iter().flatten() {
            write_stale(d, &stale)?;
        }
        if stale.len() > before {
            tracing::warn!(stale = stale.len(), "offline disks recorded as stale: they miss the writes of this run");
        }
    } else {
        tracing::error!(write_quorum = w, "fewer disks online than the write quorum: every write answers 503 SlowDown");
    }
    let spd = f.shards_per_disk;
    let mut lanes = Vec::new();
    let mut shard_dirs = Vec::new();
    for s in 0..f.sets.len() {
        for j in 0..spd {
            // Whole disks first: the read primary is never a healing one.
            let mut order: Vec<usize> = (0..n).collect();
            order.sort_by_key(|&p| marks[s * n + p].is_some());
            let members: Vec<Member> = order
                .into_iter()
                .filter_map(|p| {
                    let disk = s * n + p;
                    disk_dir[disk].as_ref().map(|d| Member {
                        id: disk as u32 * spd + j,
                        dir: d.join(format!("shard-{j:04}")),
                        disk,
                    })
                })
                .collect();
            // At least k >= 1 members per set were checked above.
            let primary = members.first().map(|m| m.dir.clone()).ok_or_else(|| invalid("a lane has no online member"))?;
            shard_dirs.push(primary);
            lanes.push(members);
        }
    }
    let disks = ids
        .iter()
        .zip(disk_dir)
        .zip(marks)
        .map(|((id, dir), mark)| Disk {
            id: *id,
            online: AtomicBool::new(dir.is_some()),
            dir,
            heal: HealProgress::new(mark, spd),
        })
        .collect();
    let health = Arc::new(DiskHealth { disks, ec: Arc::default(), stale: Mutex::new(stale), remote: false, wanted: AtomicBool::new(false) });
    tracing::info!(
        sets = f.sets.len(),
        disks = n,
        parity = f.parity,
        write_quorum = w,
        lanes = lanes.len(),
        "erasure-set layout (format 2) opened; data records are striped k+m (mirrored when parity is 0), inline bodies mirrored"
    );
    Ok(Layout {
        shard_dirs,
        // Lane 0 is mirrored on every disk of set 0: the registry is as
        // redundant as the data.
        meta_shards: vec![0],
        lanes: Some(LaneLayout { format: f, write_quorum: w, lanes, health }),
    })
}
