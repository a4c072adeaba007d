//! Rebuilding the index at open: load the newest good checkpoint, then scan
//! the log after the position it covers (or the whole log without one),
//! applying commits in log order.
//!
//! What the scan trusts: a torn tail can only lie after the log's durable
//! mark. Batch, copy and segment records carry the mark from when they were
//! written (everything before it was on stable storage); the scan keeps the
//! highest mark seen so far. An invalid region (a record whose header,
//! address or keyed checksum is wrong) below the mark is corruption: it is
//! counted and reported, the scan resyncs past it (the next 4 KiB boundary
//! holding a valid record of this shard at that very address) and goes on,
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
    align_entry, align_up, parse_segment_file_name, EntryHeader, Kind, Pos,
    RecordHeader, SegmentInfo, ShardKey, BLOCK, ENTRY_HEADER_BYTES, HEADER_BYTES,
};
use crate::index::{Index, Loc};
use crate::log::{apply_op, SegFile};
use crate::storage::{Backend, DiskFile, OpenMode};

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
    /// Invalid regions below the durable mark (corruption), and their bytes.
    pub corrupt_regions: u32,
    pub corrupt_bytes: u64,
    /// Commits whose entry was damaged and taken from the batch copy.
    pub commits_from_copy: u64,
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
            Item::Commit { .. } => true,
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
    info: Option<SegmentInfo>,
    first_seq: Option<u64>,
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
        let file = Rc::new(backend.open(&path, OpenMode::Existing, direct, warned).await?);
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
            info: None,
            first_seq: None,
        });
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
            crate::format::align_down(s.file_len)
        } else if s.number == end.segment {
            end.offset
        } else {
            0
        };
        if s.file_len > keep {
            replay.stats.torn_bytes += s.file_len - keep;
        }
        if opts.repair {
            if s.number > end.segment || (keep == 0 && s.number == end.segment) {
                drop(s.file);
                backend
                    .remove(&dir.join(crate::format::segment_file_name(s.number)))
                    .await?;
                continue;
            }
            if s.file_len > keep {
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

struct Scan<'a> {
    seg: &'a mut ScanSeg,
    shard: u32,
    key: &'a ShardKey,
    replay: &'a mut Replay,
    prev: Option<(u32, u64)>,
    /// (segment, predecessor it names, predecessor's length then).
    claims: &'a mut Vec<(u32, u32, u64)>,
    /// Segment files that exist.
    present: &'a [u32],
}

/// A window of the file held in memory.
struct Window {
    buf: AlignedBuf,
    start: u64,
    next_read_bytes: usize,
}

impl Window {
    fn has(&self, pos: u64, len: usize) -> bool {
        pos >= self.start && pos + len as u64 <= self.start + self.buf.len() as u64
    }

    fn slice(&self, pos: u64, len: usize) -> &[u8] {
        let at = (pos - self.start) as usize;
        &self.buf.as_slice()[at..at + len]
    }
}

/// What the scan found at a position.
enum Found {
    Record(RecordHeader),
    Nothing,
}

impl Scan<'_> {
    fn pos(&self, offset: u64) -> Pos {
        Pos {
            segment: self.seg.number,
            offset,
        }
    }

    /// Scans the segment from `from` to its end.
    async fn run(&mut self, from: u64) -> Result<(), IoError> {
        let mut win = Window {
            buf: AlignedBuf::with_capacity(BLOCK),
            start: 0,
            next_read_bytes: SCAN_MIN_BYTES,
        };
        win.buf.set_len(0);
        let file_len = self.seg.file_len;
        let mut pos = from;
        self.seg.valid_end = from;
        if from > 0 {
            // The checkpoint's position lies past this segment's record,
            // which says where its seqs start: seqs voided by a reset just
            // before it (failed commits, never acknowledged) are not gaps.
            // Unreadable, it says nothing (such seqs are then counted).
            if let Found::Record(h) = self.record_at(&mut win, 0).await? {
                if h.kind == Kind::Segment {
                    self.replay.segment_starts(h.seq, true);
                }
            }
        }
        while pos + BLOCK as u64 <= file_len {
            match self.record_at(&mut win, pos).await? {
                Found::Record(h) => {
                    pos = self.take(&mut win, &h, pos).await?;
                    self.seg.valid_end = pos;
                }
                Found::Nothing => {
                    let end = self.resync(&mut win, pos + BLOCK as u64).await?;
                    self.replay.push(Item::Invalid {
                        at: self.pos(pos),
                        end: self.pos(end),
                    });
                    pos = end;
                }
            }
        }
        if pos < file_len {
            // A partial block at the end: never a whole record.
            self.replay.push(Item::Invalid {
                at: self.pos(pos),
                end: self.pos(file_len),
            });
        }
        Ok(())
    }

    /// Fills the window to hold `[pos, pos + len)`; false if the file ends
    /// first or the bytes cannot be read.
    async fn ensure(&mut self, win: &mut Window, pos: u64, len: usize) -> Result<bool, IoError> {
        if win.has(pos, len) {
            return Ok(true);
        }
        let dense = pos == win.start + win.buf.len() as u64 && pos > 0;
        win.next_read_bytes = if dense {
            (win.next_read_bytes * 2).min(SCAN_MAX_BYTES)
        } else {
            SCAN_MIN_BYTES
        };
        let room = align_up(self.seg.file_len.saturating_sub(pos));
        let want = (align_up(len as u64).max(win.next_read_bytes as u64)).min(room) as usize;
        if want < len {
            return Ok(false);
        }
        let buf = std::mem::replace(&mut win.buf, AlignedBuf::with_capacity(BLOCK));
        let buf = if buf.capacity() >= want {
            buf
        } else {
            AlignedBuf::with_capacity(want)
        };
        match self.seg.file.read_at(buf, pos, want).await {
            Ok(b) => {
                win.buf = b;
                win.start = pos;
                self.replay.stats.bytes_read += win.buf.len() as u64;
                Ok(win.has(pos, len))
            }
            Err(e) if want > BLOCK && len <= BLOCK => {
                // Narrow an unreadable window down to the block asked for.
                tracing::warn!(shard = self.shard, segment = self.seg.number, offset = pos, error = %e, "read error while scanning; retrying block by block");
                let b = AlignedBuf::with_capacity(BLOCK);
                match self.seg.file.read_at(b, pos, BLOCK).await {
                    Ok(b) => {
                        win.buf = b;
                        win.start = pos;
                        Ok(win.has(pos, len))
                    }
                    Err(_) => {
                        win.buf.set_len(0);
                        Ok(false)
                    }
                }
            }
            Err(e) => {
                tracing::warn!(shard = self.shard, segment = self.seg.number, offset = pos, error = %e, "read error while scanning");
                win.buf.set_len(0);
                Ok(false)
            }
        }
    }

    /// A valid record starting at `pos`, if there is one.
    async fn record_at(&mut self, win: &mut Window, pos: u64) -> Result<Found, IoError> {
        if !self.ensure(win, pos, BLOCK).await? {
            return Ok(Found::Nothing);
        }
        let Ok(h) = RecordHeader::decode(win.slice(pos, BLOCK)) else {
            return Ok(Found::Nothing);
        };
        if h.shard != self.shard || h.segment != self.seg.number || h.offset != pos {
            return Ok(Found::Nothing);
        }
        if (pos == 0) != (h.kind == Kind::Segment) {
            return Ok(Found::Nothing);
        }
        if pos + h.record_len() > self.seg.file_len {
            return Ok(Found::Nothing);
        }
        let need = h.verify_len();
        if !self.ensure(win, pos, need).await? {
            return Ok(Found::Nothing);
        }
        if !h.verify(self.key, win.slice(pos, need)) {
            return Ok(Found::Nothing);
        }
        Ok(Found::Record(h))
    }

    /// The next offset from `from` (4 KiB steps) where a valid record starts,
    /// or the end of the file.
    async fn resync(&mut self, win: &mut Window, from: u64) -> Result<u64, IoError> {
        let mut pos = from;
        while pos + BLOCK as u64 <= self.seg.file_len {
            if let Found::Record(_) = self.record_at(win, pos).await? {
                return Ok(pos);
            }
            pos += BLOCK as u64;
        }
        Ok(self.seg.file_len)
    }

    /// Takes a valid record: returns the offset after it.
    async fn take(&mut self, win: &mut Window, h: &RecordHeader, pos: u64) -> Result<u64, IoError> {
        let end = pos + h.record_len();
        match h.kind {
            Kind::Segment => {
                let info = SegmentInfo::read(win.slice(pos, BLOCK));
                self.seg.info = Some(info);
                self.seg.first_seq = Some(h.seq);
                self.replay.note_mark(h.durable);
                self.check_predecessor(&info, h.seq);
            }
            Kind::Data => {
                self.replay.stats.data_records += 1;
                let ext = Extent {
                    segment: self.seg.number,
                    offset: pos,
                    len: h.payload_len,
                };
                self.replay.push(Item::Data {
                    ext,
                    end: self.pos(end),
                });
            }
            Kind::Batch => return self.batch(win, h, pos).await,
            Kind::BatchCopy => {
                // A copy whose batch was not valid: its metadata stands in.
                self.replay.note_mark(h.durable);
                let len = HEADER_BYTES + h.payload_len as usize;
                if self.ensure(win, pos, len).await? {
                    let payload = win.slice(pos, len)[HEADER_BYTES..].to_vec();
                    let copies = self.entries(&payload, pos + HEADER_BYTES as u64 + 16, 16, h.count);
                    for (seq, loc, ops) in copies {
                        self.replay.push(Item::Commit { seq, loc, ops, from_copy: true });
                    }
                }
            }
        }
        Ok(end)
    }

    fn check_predecessor(&mut self, info: &SegmentInfo, first_seq: u64) {
        self.claims
            .push((self.seg.number, info.prev_segment, info.prev_end));
        // The predecessor it names, as scanned. Segment files in between
        // with no valid record are leftovers of a reset (a file created
        // ahead for a segment that was never started), not a fork.
        let named = match self.prev {
            Some((n, e)) if n == info.prev_segment => Some((n, e)),
            _ => self.replay.ends.get(&info.prev_segment).and_then(|&e| {
                let between_empty = self
                    .replay
                    .ends
                    .range(info.prev_segment + 1..self.seg.number)
                    .all(|(_, &end)| end == 0);
                (info.prev_segment != 0 && between_empty).then_some((info.prev_segment, e))
            }),
        };
        let complete = match named {
            Some((n, valid_end)) => {
                if valid_end < info.prev_end {
                    // The predecessor is shorter than when this one began.
                    self.replay.push(Item::Invalid {
                        at: Pos {
                            segment: n,
                            offset: valid_end,
                        },
                        end: Pos {
                            segment: n,
                            offset: info.prev_end,
                        },
                    });
                    false
                } else {
                    true
                }
            }
            _ => {
                if info.prev_segment != 0 && !self.present.contains(&info.prev_segment) {
                    self.replay.push(Item::Missing {
                        segment: info.prev_segment,
                    });
                }
                info.prev_segment == 0
            }
        };
        self.replay.segment_starts(first_seq, complete);
    }

    /// A batch and (when intact) its copy: every commit from its entry, or
    /// from the copy's where the entry is damaged.
    async fn batch(&mut self, win: &mut Window, h: &RecordHeader, pos: u64) -> Result<u64, IoError> {
        self.replay.stats.batches += 1;
        self.replay.note_mark(h.durable);
        let primary_end = pos + h.record_len();
        let len = HEADER_BYTES + h.payload_len as usize;
        let primary = if self.ensure(win, pos, len).await? {
            let payload = win.slice(pos, len)[HEADER_BYTES..].to_vec();
            self.entries(&payload, pos + HEADER_BYTES as u64, 0, h.count)
        } else {
            Vec::new()
        };
        let all_there = primary.len() == h.count as usize;
        // The copy follows; read it when an entry needs it (and skip it either way).
        let mut copy_end = None;
        let mut copies = Vec::new();
        if let Found::Record(c) = self.record_at(win, primary_end).await? {
            if c.kind == Kind::BatchCopy && c.seq == h.seq && c.count == h.count {
                copy_end = Some(primary_end + c.record_len());
                if !all_there {
                    let clen = HEADER_BYTES + c.payload_len as usize;
                    if self.ensure(win, primary_end, clen).await? {
                        let payload = win.slice(primary_end, clen)[HEADER_BYTES..].to_vec();
                        copies = self.entries(&payload, primary_end + HEADER_BYTES as u64 + 16, 16, c.count);
                    }
                }
            }
        }
        let mut by_seq: BTreeMap<u64, (Loc, Vec<IndexOp>)> = BTreeMap::new();
        for (seq, loc, ops) in copies {
            by_seq.insert(seq, (loc, ops));
        }
        let mut primary_by_seq: BTreeMap<u64, (Loc, Vec<IndexOp>)> = primary
            .into_iter()
            .map(|(s, l, o)| (s, (l, o)))
            .collect();
        if !all_there {
            // Damaged below the mark is corruption (the copy stands in);
            // past it, a torn write (the log ends here).
            self.replay.push(Item::Invalid {
                at: self.pos(pos),
                end: self.pos(primary_end),
            });
        }
        for seq in h.seq..h.seq + h.count as u64 {
            if let Some((loc, ops)) = primary_by_seq.remove(&seq) {
                self.replay.push(Item::Commit { seq, loc, ops, from_copy: false });
            } else if let Some((loc, ops)) = by_seq.remove(&seq) {
                self.replay.push(Item::Commit { seq, loc, ops, from_copy: true });
            }
        }
        Ok(copy_end.unwrap_or(primary_end))
    }

    /// The valid entries of a batch or copy payload (which starts at file
    /// offset `base`; entries after `skip` bytes): (seq, loc, index ops).
    fn entries(&mut self, payload: &[u8], base: u64, skip: usize, count: u32) -> Vec<(u64, Loc, Vec<IndexOp>)> {
        let mut out = Vec::new();
        let mut off = skip;
        let base = base - skip as u64;
        for _ in 0..count {
            if off >= payload.len() {
                break;
            }
            let room = payload.len() - off;
            let Ok(eh) = EntryHeader::decode(&payload[off..], room) else {
                break;
            };
            let at = Pos {
                segment: self.seg.number,
                offset: base + off as u64,
            };
            let ok = eh.verify(self.key, &payload[off..], self.shard, at);
            if ok {
                let body = &payload[off + ENTRY_HEADER_BYTES..off + eh.total_len()];
                if let Ok(views) = codec::decode(body, eh.count) {
                    let ops: Vec<_> = views.into_iter().filter_map(view_to_op).collect();
                    if ops.len() == eh.count as usize {
                        let loc = Loc {
                            segment: self.seg.number,
                            offset: at.offset as u32,
                            len: eh.total_len() as u32,
                        };
                        out.push((eh.seq, loc, index_ops(&ops, eh.seq)));
                        self.replay.retired_seqs.extend(retire_ranges(&ops));
                    }
                }
            }
            off += align_entry(eh.total_len());
        }
        out
    }
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
    // Batches are at most a few MiB: look back block by block.
    let max_back = (crate::format::MAX_BATCH_BYTES + crate::format::MAX_COMMIT_PAYLOAD_BYTES) as u64;
    let mut at = crate::format::align_down(loc.offset());
    let stop = at.saturating_sub(max_back);
    let h = loop {
        let b = data::read_exact(file, at, BLOCK, loc.segment).await?;
        if let Ok(h) = RecordHeader::read_expect(key, b.as_slice(), Kind::Batch, shard, loc.segment, at) {
            break h;
        }
        if at <= stop || at == 0 {
            return Ok(None);
        }
        at -= BLOCK as u64;
    };
    if at + h.record_len() <= loc.offset() {
        return Ok(None);
    }
    // The entry's place in its batch (the entries before it are intact, or
    // their lengths could not lead to it): the copy holds the same order.
    let primary = data::read_exact(file, at, h.record_len() as usize, loc.segment).await?;
    let payload = &primary.as_slice()[HEADER_BYTES..HEADER_BYTES + h.payload_len as usize];
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
    let head = data::read_exact(file, copy_at, BLOCK, loc.segment).await?;
    let c = RecordHeader::decode(head.as_slice()).map_err(|w| IoError::corrupt(loc.segment, copy_at, w))?;
    let whole = data::read_exact(file, copy_at, c.record_len() as usize, loc.segment).await?;
    RecordHeader::read_expect(key, whole.as_slice(), Kind::BatchCopy, shard, loc.segment, copy_at)
        .map_err(|w| IoError::corrupt(loc.segment, copy_at, w))?;
    let payload = &whole.as_slice()[HEADER_BYTES..HEADER_BYTES + c.payload_len as usize];
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
