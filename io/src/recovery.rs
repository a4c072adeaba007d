//! Rebuilding the index at open: load the newest good checkpoint, then scan
//! the log after the position it covers (or the whole log without one),
//! applying commits in log order.
//!
//! What the scan trusts: a torn tail can only lie after the log's durable
//! mark. Batch, copy and segment records carry the mark from when they were
//! written (everything before it was on stable storage); the scan keeps the
//! highest mark seen so far. An invalid region (a record whose header,
//! address or keyed checksum is wrong) below the mark is corruption: it is
//! counted and reported, the scan resyncs past it (the next 64-byte
//! boundary — a format-3 batch may start on any — holding a valid record
//! of this shard at that very address) and goes on,
//! so nothing acknowledged after it is rolled back. An invalid region at or
//! past the mark may be a torn write: everything from there on is held
//! until a later record's mark proves the region was durable (then it was
//! corruption after all) or the scan ends (then it was the torn tail, never
//! acknowledged, and the log is cut there). Data records past the mark are
//! held the same way and their payload verified before anything after them
//! is applied, since a commit's sync covers the data it references.
//!
//! Commit metadata is on disk twice (a batch and its copy): an entry that
//! fails its checksum is taken from the copy. Seqs are contiguous over the
//! log; a gap that no retirement or reset explains is a lost commit,
//! counted. Two recoveries of one image give the same index.

use std::cell::Cell;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::Path;
use std::rc::Rc;
use std::time::{Duration, Instant};

use crate::batch::{index_ops, IndexOp};
use crate::buf::AlignedBuf;
use crate::checkpoint;
use crate::codec::{self, Extent, OpView};
use crate::data;
use crate::error::IoError;
use crate::format::{
    align_down, align_entry, align_up, parse_segment_file_name, EntryHeader, Kind, Pos,
    RecordHeader, SegmentInfo, ShardKey, BLOCK, ENTRY_HEADER_BYTES, HEADER_BYTES, RECORD_ALIGN,
};
use crate::index::{Index, Loc};
use crate::log::{apply_op, SegFile};
use crate::storage::{Backend, DiskFile, OpenMode};

mod scan;
use scan::Scan;

/// Largest read while scanning; reads start small after a skip over data
/// and double while they keep landing on batches.
const SCAN_MAX_BYTES: usize = 1 << 20;
const SCAN_MIN_BYTES: usize = 16 << 10;

#[derive(Clone, Copy, Debug, Default)]
pub struct RecoveryStats {
    pub segments: u32,
    /// The checkpoint the index was loaded from (its next seq), and its entries.
    pub checkpoint_seq: Option<u64>,
    pub checkpoint_entries: u64,
    pub checkpoint_bytes: u64,
    /// Checkpoints that could not be used (damaged).
    pub bad_checkpoints: u32,
    pub batches: u64,
    pub commits: u64,
    pub data_records: u64,
    pub bytes_read: u64,
    /// Bytes cut off at the end of the log (torn, never acknowledged).
    pub torn_bytes: u64,
    /// Zeros written ahead of the log's head, cut like a torn tail (and
    /// whatever follows a sealed segment's end: such zeros, or a spare
    /// file's older records).
    pub zeros_ahead_bytes: u64,
    /// A spare file's older records after the log's end (`spare.rs`), cut
    /// like a torn tail.
    pub stale_bytes: u64,
    /// Invalid regions below the durable mark (corruption), and their bytes.
    pub corrupt_regions: u32,
    pub corrupt_bytes: u64,
    /// Commits whose entry was damaged and taken from the batch copy.
    pub commits_from_copy: u64,
    /// Batch copies found damaged while their batch was intact: no commit
    /// lost, one fewer copy (a torn rewrite of a copy's last block by the
    /// packed batch after it does this; so does bit rot). Not counted as
    /// corruption of acknowledged data.
    pub damaged_copies: u64,
    /// Commits missing from the log (a seq gap nothing explains).
    pub lost_commits: u64,
    /// Segments the log names that are gone and not known retired.
    pub missing_segments: u32,
    /// Index entries left pointing into segments that are gone.
    pub dangling_entries: u64,
    /// Data records past the mark whose payload was read and verified.
    pub verified_data: u64,
    pub elapsed: Duration,
}

impl RecoveryStats {
    /// Whether recovery found damage to acknowledged data.
    pub fn found_corruption(&self) -> bool {
        self.corrupt_regions > 0
            || self.lost_commits > 0
            || self.missing_segments > 0
            || self.commits_from_copy > 0
            || self.dangling_entries > 0
    }
}

#[derive(Clone, Copy, Debug)]
pub(crate) struct RecoverOpts {
    /// Cut the torn tail and remove leftovers (open); false for fsck's check.
    pub repair: bool,
    pub use_checkpoint: bool,
    /// Open the segments O_DSYNC (`ShardOptions::dsync`).
    pub dsync: bool,
}

pub(crate) struct Recovered {
    pub segments: BTreeMap<u32, SegFile>,
    pub retired: BTreeSet<u32>,
    /// Segments gone without a known retirement that index entries still
    /// point into (their retire op or the moves out of them were lost).
    pub lost: BTreeSet<u32>,
    pub index: Index,
    pub next_seq: u64,
    pub stats: RecoveryStats,
    /// Where the recovered log ends (the next segment starts after it).
    #[allow(dead_code)] // read by fsck's report
    pub end: Pos,
    /// The highest durable mark seen: what lies between it and `end` was
    /// written but maybe never synced (open syncs it before serving).
    pub mark: Pos,
    /// Human-readable findings, for logs and fsck.
    pub problems: Vec<String>,
    /// The oldest next-seq among the checkpoints on disk (0: none).
    pub oldest_checkpoint_seq: u64,
}

enum Item {
    Invalid { at: Pos, end: Pos },
    /// A segment the log names as a predecessor is gone: fine if retired
    /// (checked at the end), the end of the log if nothing vouches past it.
    Missing { segment: u32 },
    Data { ext: Extent, end: Pos },
    /// The copy of an intact batch is damaged (see `damaged_copies`).
    DamagedCopy { at: Pos, end: Pos },
    Commit { seq: u64, loc: Loc, ops: Vec<IndexOp>, from_copy: bool },
}

/// Applies scanned items in log order, holding what is not yet proven.
struct Replay {
    mark: Pos,
    held: VecDeque<Item>,
    index: Index,
    retired: BTreeSet<u32>,
    /// Seq ranges retired segments took with them.
    retired_seqs: Vec<(u64, u64)>,
    /// Next seq expected, and the gaps met.
    expect_seq: Option<u64>,
    gaps: Vec<(u64, u64)>,
    seg_seqs: BTreeMap<u32, (u64, u64)>,
    /// End of the valid records of each segment met so far (scanned, or
    /// as the checkpoint recorded it).
    ends: BTreeMap<u32, u64>,
    stats: RecoveryStats,
    problems: Vec<String>,
}

impl Replay {
    fn note_mark(&mut self, m: Pos) {
        if m > self.mark {
            self.mark = m;
            self.release();
        }
    }

    fn certain(&self, item: &Item) -> bool {
        match item {
            Item::Invalid { at, .. } => *at < self.mark,
            Item::Missing { segment } => Pos { segment: *segment, offset: 0 } < self.mark,
            Item::Data { end, .. } => *end <= self.mark,
            Item::Commit { .. } | Item::DamagedCopy { .. } => true,
        }
    }

    fn push(&mut self, item: Item) {

        if self.held.is_empty() && self.certain(&item) {
            self.process(item);
        } else {
            self.held.push_back(item);
        }
    }

    fn release(&mut self) {
        while let Some(front) = self.held.front() {
            if !self.certain(front) {
                break;
            }
            if let Some(item) = self.held.pop_front() {
                self.process(item);
            }
        }
    }

    fn process(&mut self, item: Item) {
        match item {
            Item::Invalid { at, end } => {
                self.stats.corrupt_regions += 1;
                let bytes = if end.segment == at.segment {
                    end.offset.saturating_sub(at.offset)
                } else {
                    0
                };
                self.stats.corrupt_bytes += bytes;
                self.problems.push(format!(
                    "corrupt region below the durable mark: segment {} bytes {}..{} ({bytes} bytes); resynced past it",
                    at.segment, at.offset, at.offset + bytes
                ));
            }
            Item::Data { .. } | Item::Missing { .. } => {}
            Item::DamagedCopy { at, end } => self.damaged_copy(at, end),
            Item::Commit { seq, loc, ops, from_copy } => {
                if from_copy {
                    self.stats.commits_from_copy += 1;
                    self.problems.push(format!(
                        "commit {seq}: entry damaged; taken from its copy (segment {}, offset {})",
                        loc.segment, loc.offset
                    ));
                }
                self.apply_commit(seq, loc, ops)
            }
        }
    }

    fn damaged_copy(&mut self, at: Pos, end: Pos) {
        self.stats.damaged_copies += 1;
        self.problems.push(format!(
            "batch copy damaged (its batch is intact, nothing lost): segment {} bytes {}..{}",
            at.segment, at.offset, end.offset
        ));
    }

    fn apply_commit(&mut self, seq: u64, loc: Loc, ops: Vec<IndexOp>) {
        if let Some(e) = self.expect_seq {
            if seq > e {
                self.gaps.push((e, seq - 1));
            }
        }
        self.expect_seq = Some(self.expect_seq.map_or(seq + 1, |e| e.max(seq + 1)));
        let r = self.seg_seqs.entry(loc.segment).or_insert((seq, seq));
        r.0 = r.0.min(seq);
        r.1 = r.1.max(seq);
        self.stats.commits += 1;
        for op in ops {
            if let IndexOp::Retire { segment } = &op {
                self.retired.insert(*segment);
            }
            apply_op(&mut self.index, op, loc, &mut self.retired);
        }
    }

    /// A segment record says its first seq is `first`: after a reset the
    /// seqs in between were never durable (voided), not lost.
    fn segment_starts(&mut self, first: u64, predecessor_complete: bool) {
        if predecessor_complete {
            if let Some(e) = self.expect_seq {
                if first > e {
                    self.expect_seq = Some(first);
                }
            }
        }
    }
}

struct ScanSeg {
    number: u32,
    file: Rc<DiskFile>,
    file_len: u64,
    /// End of the last valid record.
    valid_end: u64,
    /// Where zeros start that run to the end of the file (written ahead).
    zero_tail_from: Option<u64>,
    /// Where a spare file's older records start, with no record of this
    /// segment after them to the end of the file.
    stale_tail_from: Option<u64>,
    /// The file's length when the scan's `file_len` is cut to the end a
    /// successor's segment record names (see `sealed_ends`).
    real_len: u64,
    info: Option<SegmentInfo>,
    first_seq: Option<u64>,
}

/// The end each scanned segment had when its successor began, as the
/// successor's segment record (keyed checksum verified) names it.
async fn sealed_ends(scans: &[ScanSeg], shard: u32, key: &ShardKey) -> BTreeMap<u32, u64> {
    let mut out = BTreeMap::new();
    for s in scans {
        if s.file_len < BLOCK as u64 {
            continue;
        }
        let Ok(b) = s.file.read_at(AlignedBuf::with_capacity(BLOCK), 0, BLOCK).await else {
            continue;
        };
        if b.len() < BLOCK {
            continue;
        }
        let Ok(h) = RecordHeader::decode(b.as_slice()) else {
            continue;
        };
        if h.kind != Kind::Segment || h.shard != shard || h.segment != s.number || h.offset != 0 || !h.verify(key, &b.as_slice()[..h.verify_len().min(BLOCK)]) {
            continue;
        }
        let info = SegmentInfo::read(b.as_slice());
        if info.prev_segment != 0 {
            let e = out.entry(info.prev_segment).or_insert(0);
            *e = info.prev_end.max(*e);
        }
    }
    out
}

/// Lists the segment files of `dir`, in number order.
pub(crate) async fn list_segments(backend: &Backend, dir: &Path) -> Result<Vec<u32>, IoError> {
    let mut out: Vec<u32> = backend
        .list(dir)
        .await?
        .iter()
        .filter_map(|n| parse_segment_file_name(n))
        .collect();
    out.sort_unstable();
    Ok(out)
}

pub(crate) async fn list_checkpoints(backend: &Backend, dir: &Path) -> Result<Vec<(u64, String)>, IoError> {
    let mut out: Vec<(u64, String)> = backend
        .list(dir)
        .await?
        .into_iter()
        .filter_map(|n| checkpoint::parse_file_name(&n).map(|s| (s, n)))
        .collect();
    out.sort_unstable_by(|a, b| b.0.cmp(&a.0));
    Ok(out)
}

#[allow(clippy::too_many_arguments)]
pub(crate) async fn recover(
    backend: &Backend,
    dir: &Path,
    shard: u32,
    key: &ShardKey,
    opts: RecoverOpts,
    direct: &Cell<bool>,
    warned: &Cell<bool>,
) -> Result<Recovered, IoError> {
    let started = Instant::now();
    let numbers = list_segments(backend, dir).await?;
    let mut replay = Replay {
        mark: Pos::default(),
        held: VecDeque::new(),
        index: Index::new(),
        retired: BTreeSet::new(),
        retired_seqs: Vec::new(),
        expect_seq: None,
        gaps: Vec::new(),
        seg_seqs: BTreeMap::new(),
        ends: BTreeMap::new(),
        stats: RecoveryStats::default(),
        problems: Vec::new(),
    };
    // The checkpoint, if a good one exists.
    let mut start = Pos::default();
    let mut ckpt_rows: BTreeMap<u32, checkpoint::SegRow> = BTreeMap::new();
    let checkpoints = list_checkpoints(backend, dir).await?;
    let oldest_checkpoint_seq = checkpoints.iter().map(|(s, _)| *s).min().unwrap_or(0);
    if opts.use_checkpoint {
        for (_, name) in checkpoints {
            let mut index = Index::new();
            match checkpoint::load(backend, dir, &name, shard, &mut index).await {
                Ok(c) => {
                    replay.index = index;
                    replay.mark = c.pos;
                    replay.expect_seq = Some(c.next_seq);
                    replay.retired.extend(c.retired.iter().copied());
                    replay.stats.checkpoint_seq = Some(c.next_seq);
                    replay.stats.checkpoint_entries = c.entries;
                    replay.stats.checkpoint_bytes = c.bytes;
                    ckpt_rows = c.segments.iter().map(|r| (r.number, *r)).collect();
                    start = c.pos;
                    break;
                }
                Err(why) => {
                    replay.stats.bad_checkpoints += 1;
                    replay
                        .problems
                        .push(format!("checkpoint {name} unusable ({why}); trying an older one"));
                    tracing::warn!(shard, checkpoint = name, why, "checkpoint unusable");
                }
            }
        }
    }
    let mut segments: BTreeMap<u32, SegFile> = BTreeMap::new();
    let mut scans: Vec<ScanSeg> = Vec::new();
    for &number in &numbers {
        let path = dir.join(crate::format::segment_file_name(number));
        let file = Rc::new(backend.open(&path, OpenMode::Existing, direct, warned, opts.dsync).await?);
        let file_len = file.len().await?;
        if number < start.segment {
            // Before the checkpoint: as the checkpoint recorded it.
            let row = ckpt_rows.get(&number);
            let end = row.map_or(align_up(file_len).min(file_len), |r| r.end);
            let mut seg = SegFile::new(file, end, None);
            if let Some(r) = row {
                seg.first_seq = r.first_seq;
                seg.last_seq = r.last_seq;
            }
            segments.insert(number, seg);
            continue;
        }
        scans.push(ScanSeg {
            number,
            file,
            file_len,
            valid_end: 0,
            zero_tail_from: None,
            stale_tail_from: None,
            real_len: file_len,
            info: None,
            first_seq: None,
        });
    }
    // A sealed segment ends where its successor's segment record says:
    // nothing of the log lies after that (zeros written ahead of the head
    // may, `shard/prepare.rs`), so the scan stops there.
    let sealed = sealed_ends(&scans, shard, key).await;
    for seg in scans.iter_mut() {
        if let Some(&e) = sealed.get(&seg.number) {
            if align_up(e) < seg.file_len {
                seg.file_len = align_up(e);
            }
        }
    }
    // Scan in log order.
    let mut prev: Option<(u32, u64)> = segments
        .iter()
        .next_back()
        .map(|(n, s)| (*n, s.end));
    replay.ends.extend(segments.iter().map(|(n, s)| (*n, s.end)));
    let mut claims: Vec<(u32, u32, u64)> = Vec::new();
    for seg in scans.iter_mut() {
        let from = if seg.number == start.segment {
            start.offset
        } else {
            0
        };
        let mut scan = Scan {
            seg,
            shard,
            key,
            replay: &mut replay,
            prev,
            claims: &mut claims,
            present: &numbers,
        };
        scan.run(from).await?;
        replay.stats.segments += 1;
        prev = Some((seg.number, seg.valid_end));
        replay.ends.insert(seg.number, seg.valid_end);
    }
    // Settle what is still held: the first uncertain invalid region (or
    // data record that fails verification) is where the log ends.
    let mut cut: Option<Pos> = None;
    let files: BTreeMap<u32, Rc<DiskFile>> = scans.iter().map(|s| (s.number, s.file.clone())).collect();
    while let Some(item) = replay.held.pop_front() {
        match item {
            Item::Invalid { at, .. } => {
                cut = Some(at);
                break;
            }
            Item::Missing { segment } => {
                cut = Some(Pos { segment, offset: 0 });
                break;
            }
            Item::Data { ext, .. } => {
                let ok = match files.get(&ext.segment) {
                    Some(f) => match data::verify_record(f, key, shard, &ext).await {
                        Ok(()) => true,
                        Err(IoError::Corrupt { .. } | IoError::InvalidExtent(_)) => false,
                        Err(IoError::Io(_)) => false,
                        Err(other) => return Err(other),
                    },
                    None => false,
                };
                replay.stats.verified_data += 1;
                if !ok {
                    cut = Some(Pos {
                        segment: ext.segment,
                        offset: ext.offset,
                    });
                    break;
                }
            }
            Item::Commit { seq, loc, ops, .. } => replay.apply_commit(seq, loc, ops),
            Item::DamagedCopy { at, end } => replay.damaged_copy(at, end),
        }
    }
    replay.held.clear();
    // Segments wholly before the checkpoint's position can only go by
    // retirement (a reset cuts only what follows the durable position).
    for row in ckpt_rows.values() {
        if row.number < start.segment && !numbers.contains(&row.number) && !replay.retired.contains(&row.number) {
            replay.stats.missing_segments += 1;
            replay
                .problems
                .push(format!("segment {} listed by the checkpoint is missing", row.number));
        }
    }
    // Predecessors named by segment records that are gone.
    for (number, prev_seg, _) in &claims {
        if *prev_seg != 0
            && !numbers.contains(prev_seg)
            && !replay.retired.contains(prev_seg)
            && cut.is_none_or(|c| c.segment >= *number)
        {
            replay.stats.missing_segments += 1;
            replay.problems.push(format!(
                "segment {number} follows segment {prev_seg}, which is missing (not retired)"
            ));
        }
    }
    // Seq gaps that no retirement explains are lost commits.
    let retired = merge_ranges(std::mem::take(&mut replay.retired_seqs));
    for (lo, hi) in std::mem::take(&mut replay.gaps) {
        let mut missing = hi - lo + 1;
        for (rlo, rhi) in &retired {
            let (a, b) = (lo.max(*rlo), hi.min(*rhi));
            if a <= b {
                missing -= b - a + 1;
            }
        }
        if missing > 0 {
            replay.stats.lost_commits += missing;
            replay
                .problems
                .push(format!("{missing} commits lost between seqs {lo} and {hi}"));
        }
    }
    // The ends predecessors had when their successors began, as kept
    // successors' segment records name them (a record cut away vouches
    // for nothing).
    let mut claimed_ends: BTreeMap<u32, u64> = BTreeMap::new();
    for &(number, prev_seg, prev_end) in &claims {
        let kept = cut.is_none_or(|c| number < c.segment || (number == c.segment && c.offset > 0));
        if prev_seg != 0 && kept {
            let e = claimed_ends.entry(prev_seg).or_insert(0);
            *e = (*e).max(prev_end);
        }
    }
    // The log ends at the cut, or after the last valid record.
    let end = match cut {
        Some(c) => c,
        None => scans
            .iter()
            .rev()
            .find(|s| s.valid_end > 0)
            .map(|s| Pos {
                segment: s.number,
                offset: s.valid_end,
            })
            .or_else(|| segments.iter().next_back().map(|(n, s)| Pos { segment: *n, offset: s.end }))
            .unwrap_or_default(),
    };
    for s in scans {
        // Before the cut everything stays, damaged regions included (they
        // are below the durable mark: corruption, kept for repair and fsck).
        let keep = if s.number < end.segment {
            // (A format-3 segment may end inside a block, after a copy.)
            crate::format::align_down(s.file_len).max(s.valid_end.min(s.file_len))
        } else if s.number == end.segment {
            end.offset
        } else {
            0
        };
        if s.file_len > keep {
            // Zeros written ahead of the log are not a torn write.
            let zeros = s.zero_tail_from.filter(|&z| z >= keep).map_or(0, |z| s.file_len - z);
            // Nor a spare file's older records.
            let stale = s.stale_tail_from.filter(|&z| z >= keep).map_or(0, |z| s.file_len - z);
            replay.stats.torn_bytes += (s.file_len - keep).saturating_sub(zeros + stale);
            replay.stats.zeros_ahead_bytes += zeros;
            replay.stats.stale_bytes += stale;
        }
        // After a sealed segment's end (written ahead, never log).
        replay.stats.zeros_ahead_bytes += s.real_len.saturating_sub(s.file_len.max(keep));
        if opts.repair {
            if s.number > end.segment || (keep == 0 && s.number == end.segment) {
                drop(s.file);
                backend
                    .remove(&dir.join(crate::format::segment_file_name(s.number)))
                    .await?;
                continue;
            }
            if s.real_len > keep {
                s.file.truncate(keep).await?;
            }
        }
        if s.number > end.segment {
            continue;
        }
        // A sealed segment is as long as its successor's segment record
        // says it was when the successor began, even if its file is now
        // shorter (a lost or misdirected write of its last blocks, found
        // above as a corrupt region): extents the index keeps there are
        // damaged data, and reading them must say Corrupt (a short read),
        // never that the index points outside its log.
        let vouched = if s.number < end.segment {
            claimed_ends.get(&s.number).copied().unwrap_or(0)
        } else {
            0
        };
        let mut seg = SegFile::new(s.file, keep.max(vouched), None);
        seg.first_seq = s.first_seq.unwrap_or(0);
        // The segment holding the checkpoint's position is scanned only
        // from there: its commits before it (and its segment record) are
        // known from the checkpoint's row. Without them a later retire op
        // would claim too few seqs, and a full scan would count them lost.
        // A row's first seq is where the segment began (its record's
        // seq), held by it only if it holds any commit (last seq > 0): a
        // segment of a restart with no commit in it must not claim the
        // next seq, or the start after this one skips it and a replay from
        // the checkpoint counts it lost (found by restart cycles).
        if let Some(r) = ckpt_rows.get(&s.number) {
            if r.first_seq > 0 && (seg.first_seq == 0 || r.first_seq < seg.first_seq) {
                seg.first_seq = r.first_seq;
            }
            if r.last_seq > 0 {
                seg.note_seq(r.last_seq);
            }
        }
        if let Some(&(a, b)) = replay.seg_seqs.get(&s.number) {
            seg.note_seq(a);
            seg.note_seq(b);
        }
        segments.insert(s.number, seg);
    }
    if replay.stats.torn_bytes > 0 {
        tracing::info!(
            shard,
            bytes = replay.stats.torn_bytes,
            at_segment = end.segment,
            at_offset = end.offset,
            "cut the torn tail of the log (never acknowledged)"
        );
    }
    // Retired segments still on disk (their removal was cut short).
    for n in replay.retired.clone() {
        if let Some(seg) = segments.remove(&n) {
            drop(seg);
            if opts.repair {
                backend
                    .remove(&dir.join(crate::format::segment_file_name(n)))
                    .await?;
            }
        }
    }
    // Retired segment files a crash or a stop left half removed (renamed,
    // perhaps cut short: `Backend::trash_retired`, `reap::reap`): never
    // read, deleted.
    if opts.repair {
        for name in backend.list(dir).await? {
            if name.strip_suffix(crate::storage::TRASH_SUFFIX).and_then(parse_segment_file_name).is_some() {
                backend.remove(&dir.join(&name)).await?;
            }
        }
    }
    // Live bytes per segment, from the index; and entries left pointing
    // into a segment that is gone: the commit that moved them out (or
    // their newer version) was lost with a damaged region while the
    // segment's retirement survived. Each is a lost record, answered as
    // corrupt by reads (`Shard::load`), never as an older version.
    let mut dangling = 0u64;
    let mut lost = BTreeSet::new();
    for e in replay.index.dump() {
        let mut gone = false;
        for (s, b) in e.fp.per_segment(&e.loc) {
            match segments.get_mut(&s) {
                Some(seg) => seg.live += b,
                None => {
                    gone = true;
                    if !replay.retired.contains(&s) {
                        lost.insert(s);
                    }
                }
            }
        }
        dangling += u64::from(gone);
    }
    if dangling > 0 {
        replay.stats.dangling_entries = dangling;
        replay.problems.push(format!(
            "{dangling} index entries point into segments that are gone (their newer copies were lost)"
        ));
    }
    let next_seq = replay
        .expect_seq
        .unwrap_or(1)
        .max(segments.values().map(|s| s.last_seq + 1).max().unwrap_or(1))
        .max(1);
    for p in &replay.problems {
        tracing::warn!(shard, "recovery: {p}");
    }
    replay.stats.elapsed = started.elapsed();
    Ok(Recovered {
        segments,
        retired: replay.retired,
        lost,
        index: replay.index,
        next_seq,
        stats: replay.stats,
        end,
        mark: replay.mark,
        problems: replay.problems,
        oldest_checkpoint_seq,
    })
}

/// Ops for the index; a metadata-only put keeps a placeholder body so the
/// entry (and its summary) is still indexed: reading its body reports it lost.
fn view_to_op(v: OpView<'_>) -> Option<codec::Op> {
    match v {
        OpView::Put {
            table,
            key,
            seq,
            summary,
            meta,
            body: codec::BodyView::Digest { .. },
        } => Some(codec::Op::Put {
            table,
            key: key.to_vec(),
            seq,
            summary: summary.to_vec(),
            meta: meta.to_vec(),
            body: codec::Body::Inline(Vec::new()),
        }),
        other => other.to_op(),
    }
}

/// Sorted, disjoint ranges covering the same seqs.
fn merge_ranges(mut r: Vec<(u64, u64)>) -> Vec<(u64, u64)> {
    r.sort_unstable();
    let mut out: Vec<(u64, u64)> = Vec::with_capacity(r.len());
    for (lo, hi) in r {
        match out.last_mut() {
            Some(last) if lo <= last.1.saturating_add(1) => last.1 = last.1.max(hi),
            _ => out.push((lo, hi)),
        }
    }
    out
}

/// The seq ranges the retire ops of a commit say their segments took along.
fn retire_ranges(ops: &[codec::Op]) -> impl Iterator<Item = (u64, u64)> + '_ {
    ops.iter().filter_map(|op| match op {
        codec::Op::Retire {
            first_seq, last_seq, ..
        } if *first_seq > 0 && first_seq <= last_seq => Some((*first_seq, *last_seq)),
        _ => None,
    })
}

/// The copy entry of the commit at `loc` found by walking back to its batch
/// header: used when a primary entry fails its checksum at run time.
pub(crate) async fn find_copy(
    file: &DiskFile,
    key: &ShardKey,
    shard: u32,
    loc: Loc,
) -> Result<Option<(Loc, AlignedBuf)>, IoError> {
    // Batches are at most a few MiB: look back block by block, and in each
    // block at every 64-byte boundary (a format-3 batch starts on any).
    let max_back = (crate::format::MAX_BATCH_BYTES + crate::format::MAX_COMMIT_PAYLOAD_BYTES) as u64;
    let mut block = align_down(loc.offset());
    let stop = block.saturating_sub(max_back);
    let (h, at) = 'found: loop {
        let b = data::read_exact(file, block, BLOCK, loc.segment).await?;
        let mut rel = if block == align_down(loc.offset()) {
            (loc.offset() - block) as usize / RECORD_ALIGN * RECORD_ALIGN
        } else {
            BLOCK
        };
        while rel >= RECORD_ALIGN {
            rel -= RECORD_ALIGN;
            let at = block + rel as u64;
            if let Ok(h) = RecordHeader::read_expect(key, &b.as_slice()[rel..], Kind::Batch, shard, loc.segment, at) {
                break 'found (h, at);
            }
        }
        if block <= stop || block == 0 {
            return Ok(None);
        }
        block -= BLOCK as u64;
    };
    if at + h.record_len() <= loc.offset() {
        return Ok(None);
    }
    // The entry's place in its batch (the entries before it are intact, or
    // their lengths could not lead to it): the copy holds the same order.
    let len = HEADER_BYTES + h.payload_len as usize;
    let (primary, skip) = data::read_span(file, at, len, loc.segment).await?;
    let payload = &primary.as_slice()[skip + HEADER_BYTES..skip + len];
    let mut off = 0usize;
    let mut index = 0usize;
    while at + (HEADER_BYTES + off) as u64 != loc.offset() {
        let Ok(eh) = EntryHeader::decode(&payload[off..], payload.len() - off) else {
            return Ok(None);
        };
        off += align_entry(eh.total_len());
        index += 1;
        if off >= payload.len() {
            return Ok(None);
        }
    }
    let copy_at = at + h.record_len();
    let (head, hs) = data::read_span(file, copy_at, HEADER_BYTES, loc.segment).await?;
    let c = RecordHeader::decode(&head.as_slice()[hs..]).map_err(|w| IoError::corrupt(loc.segment, copy_at, w))?;
    let (whole, ws) = data::read_span(file, copy_at, c.verify_len(), loc.segment).await?;
    let whole = &whole.as_slice()[ws..];
    RecordHeader::read_expect(key, whole, Kind::BatchCopy, shard, loc.segment, copy_at)
        .map_err(|w| IoError::corrupt(loc.segment, copy_at, w))?;
    let payload = &whole[HEADER_BYTES..HEADER_BYTES + c.payload_len as usize];
    let mut off = 16usize;
    for i in 0..=index {
        let Ok(eh) = EntryHeader::decode(&payload[off..], payload.len() - off) else {
            return Ok(None);
        };
        if i == index {
            let pos = copy_at + (HEADER_BYTES + off) as u64;
            let at_pos = Pos {
                segment: loc.segment,
                offset: pos,
            };
            if !eh.verify(key, &payload[off..], shard, at_pos) {
                return Ok(None);
            }
            let mut out = AlignedBuf::with_capacity(eh.total_len());
            out.extend_from_slice(&payload[off..off + eh.total_len()]);
            let cl = Loc {
                segment: loc.segment,
                offset: pos as u32,
                len: eh.total_len() as u32,
            };
            return Ok(Some((cl, out)));
        }
        off += align_entry(eh.total_len());
    }
    Ok(None)
}

/// Whether a commit entry's bytes are a metadata-only copy.
pub(crate) fn is_meta_only(entry: &[u8]) -> bool {
    entry.len() >= 6 && crate::format::u16_at(entry, 4) & crate::format::ENTRY_META_ONLY != 0
}
