//! The write side of a shard as plain state, no I/O: offset allocation,
//! the completed prefix, group commit, and the batches waiting to become
//! visible. `shard.rs` drives it with the actual writes and syncs.
//!
//! Positions: the segments written by this run are laid end to end in one
//! "log space" (`vpos`), so "everything up to X has completed / is durable"
//! is one number even across a segment roll. Segments of earlier runs are
//! outside it: they were made durable at open.
//!
//! Group commit: commits are staged in the open batch. A batch is written
//! when none is waiting for its sync (or it grew past `MAX_BATCH_BYTES`); a
//! sync starts when none is in flight and the completed prefix reaches the
//! smallest target, and covers the whole completed prefix at that moment,
//! so one sync serves every batch and data record that finished by then.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::rc::Rc;

use crate::batch::{CommitState, IndexOp, OpenBatch, Sections, Staged};
use crate::codec::Extent;
use crate::data;
use crate::error::IoError;
use crate::format::{align_up, Pos, BLOCK};
use crate::index::{Change, Index, Loc};
use crate::storage::DiskFile;

/// Completed but unsynced bytes that trigger a sync even if no commit asks.
pub(crate) const UNSYNCED_MAX_BYTES: u64 = 64 << 20;

pub(crate) struct SegFile {
    pub file: Rc<DiskFile>,
    /// Valid bytes (segments of earlier runs) or allocated bytes (this run's).
    pub end: u64,
    /// Where byte 0 sits in log space; None for segments of earlier runs.
    pub vstart: Option<u64>,
    /// Whether the directory entry of the file is known durable.
    pub dir_synced: bool,
    /// The seqs this segment may hold: from the next seq when it started
    /// (its segment record's; 0: unknown) to the last one applied in it.
    pub first_seq: u64,
    pub last_seq: u64,
    /// Bytes of live index entries in this segment (commit shares and data).
    pub live: u64,
    /// Where the batches holding a delete or a retire start, for every
    /// batch this run wrote in it: compaction's scan reads only those.
    /// None when unknown (segments of earlier runs, or after a reset cut
    /// the log): the scan then reads the segment whole.
    pub keep_batches: Option<Vec<u64>>,
}

impl SegFile {
    pub(crate) fn new(file: Rc<DiskFile>, end: u64, vstart: Option<u64>) -> SegFile {
        SegFile {
            file,
            end,
            vstart,
            dir_synced: vstart.is_none(),
            first_seq: 0,
            last_seq: 0,
            live: 0,
            keep_batches: vstart.map(|_| Vec::new()),
        }
    }

    pub(crate) fn note_seq(&mut self, seq: u64) {
        if self.first_seq == 0 || seq < self.first_seq {
            self.first_seq = seq;
        }
        self.last_seq = self.last_seq.max(seq);
    }
}

/// A place allocated for one record.
pub(crate) struct Slot {
    pub segment: u32,
    /// Where the record starts (a packed batch: not block aligned).
    pub offset: u64,
    /// The log space the slot takes: from the end of the record before it
    /// (padding to a block boundary included) to the end of this one.
    pub vpos: u64,
    pub vlen: u64,
    pub file: Rc<DiskFile>,
}

impl Slot {
    /// Where the record's write starts: the block holding `offset`.
    pub(crate) fn write_at(&self) -> u64 {
        crate::format::align_down(self.offset)
    }
}

/// The last block of the last batch copy, when the copy ends inside it:
/// the next batch may start there (packed), its write rewriting these bytes.
pub(crate) struct PackTail {
    /// Where the copy ends in log space.
    pub vend: u64,
    /// The block's bytes up to the copy's end.
    pub bytes: Vec<u8>,
}

/// A written batch waiting for its sync.
pub(crate) struct Flushed {
    pub vend: u64,
    pub commits: Vec<(Staged, Loc)>,
}

/// What one sync must do: fdatasync `files`, fsync the directory if
/// `new_segments` is not empty, then declare `upto` durable.
pub(crate) struct SyncPlan {
    pub upto: u64,
    pub files: Vec<Rc<DiskFile>>,
    /// The segments of `files`.
    pub segments: Vec<u32>,
    pub new_segments: Vec<u32>,
}

#[derive(Default, Clone, Copy, Debug)]
pub(crate) struct Counters {
    pub data_records: u64,
    pub batch_records: u64,
    pub commits: u64,
    pub segment_records: u64,
    pub bytes_appended: u64,
    pub syncs: u64,
    pub resets: u64,
}

/// Whether the log takes writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mode {
    Writable,
    /// An I/O error is being handled: writes wait or fail.
    Resetting,
    /// No active segment (disk full or failing): reads only, until a retry succeeds.
    ReadOnly,
}

pub(crate) struct Log {
    pub segments: BTreeMap<u32, SegFile>,
    /// Segments removed by compaction (retire op durable).
    pub retired: BTreeSet<u32>,
    /// Victims compaction is emptying or has emptied, until retired; and
    /// those a commit named an extent of since their pass began (a hold's
    /// commit of extents it read before the moves). A hold taken after the
    /// moves may have read such a reference, even once it is gone again,
    /// so that victim is retired only after a new pass (`compact`).
    pub emptying: BTreeSet<u32>,
    pub rereferenced: BTreeSet<u32>,
    /// Segments recovery found gone, not known retired, with entries still
    /// pointing into them: what lay there is lost, and reads say Corrupt.
    pub lost: BTreeSet<u32>,
    /// The highest segment number added by this run.
    highest_segment: u32,
    next_vpos: u64,
    completed_upto: u64,
    /// Completed writes past a gap: start -> end.
    completed_ahead: BTreeMap<u64, u64>,
    pub durable_upto: u64,
    pub sync_in_flight: bool,
    /// Requested durability targets above `durable_upto`: vpos -> waiters.
    sync_targets: BTreeMap<u64, u32>,
    pub open: OpenBatch,
    /// The sections of the batch built last, emptied, for `open`'s
    /// successor (`OpenBatch::successor`).
    pub spare_sections: Option<Sections>,
    /// Data segments named by the batch a flush has taken out of `open`
    /// and is finding room for (a roll may take a while): it is in neither
    /// `open` nor `flushed` then, yet its commits are staged (see
    /// `stages_data_in`).
    pub allocating_data: Vec<u32>,
    pub flushed: VecDeque<Flushed>,
    pub next_seq: u64,
    /// Every commit below this seq is applied or failed.
    pub applied_seq: u64,
    pub mode: Mode,
    /// Incremented at every reset; completions of older writes are ignored.
    pub generation: u64,
    /// Record writes issued and not yet completed (or failed).
    pub writes_in_flight: u64,
    /// Keys with a staged or flushed, not yet applied, operation.
    /// (foldhash, randomly seeded: keys are clients' object keys.)
    pub pending_keys: HashMap<(u8, Vec<u8>), u32, foldhash::fast::RandomState>,
    pub counters: Counters,
    /// Where the next batch may be packed (see `alloc_batch`).
    pub tail: Option<PackTail>,
    /// The segments are open O_DSYNC (`ShardOptions::dsync`): a sync plan
    /// names no files, only new segments' directory entries.
    pub dsync: bool,
}

impl Log {
    pub(crate) fn new(segments: BTreeMap<u32, SegFile>, next_seq: u64) -> Log {
        Log {
            segments,
            retired: BTreeSet::new(),
            emptying: BTreeSet::new(),
            rereferenced: BTreeSet::new(),
            lost: BTreeSet::new(),
            highest_segment: 0,
            next_vpos: 0,
            completed_upto: 0,
            completed_ahead: BTreeMap::new(),
            durable_upto: 0,
            sync_in_flight: false,
            sync_targets: BTreeMap::new(),
            open: OpenBatch::default(),
            spare_sections: None,
            allocating_data: Vec::new(),
            flushed: VecDeque::new(),
            next_seq,
            applied_seq: next_seq,
            mode: Mode::Writable,
            generation: 0,
            writes_in_flight: 0,
            pending_keys: HashMap::default(),
            counters: Counters::default(),
            tail: None,
            dsync: false,
        }
    }

    /// The highest segment number this log ever had (live, retired, or cut
    /// away by a reset): numbers are never reused, so an extent of a segment
    /// that a reset removed can never pass for one of a newer segment.
    pub(crate) fn last_segment(&self) -> u32 {
        let live = self.segments.keys().next_back().copied().unwrap_or(0);
        live.max(self.retired.iter().next_back().copied().unwrap_or(0))
            .max(self.lost.iter().next_back().copied().unwrap_or(0))
            .max(self.highest_segment)
    }

    /// The segment appends go to, if any.
    /// Bytes the segments hold, and the live bytes among them.
    pub(crate) fn space(&self) -> (u64, u64) {
        self.segments.values().fold((0, 0), |(t, l), s| (t + s.end, l + s.live))
    }

    pub(crate) fn active_segment(&self) -> Option<u32> {
        let (&n, seg) = self.segments.iter().next_back()?;
        seg.vstart.map(|_| n)
    }

    /// Starts segment `number` at the end of log space; the caller writes
    /// its segment record next.
    pub(crate) fn add_segment(&mut self, number: u32, file: Rc<DiskFile>) {
        assert!(
            number > self.last_segment(),
            "segments must be added in order"
        );
        let mut seg = SegFile::new(file, 0, Some(self.next_vpos));
        seg.first_seq = self.next_seq;
        self.highest_segment = number;
        self.segments.insert(number, seg);
        self.tail = None;
    }

    /// Allocates `len` bytes at the end of the active segment, or None when
    /// the segment is full and must roll first (or there is none). A segment
    /// takes at least one record after its segment record, whatever its size.
    /// A record after a packed batch's copy starts at the next block boundary.
    pub(crate) fn alloc(&mut self, len: u64, segment_size: u64) -> Option<Slot> {
        assert!(len > 0 && len % BLOCK as u64 == 0);
        self.place(segment_size, |end| (align_up(end), len), false)
            .map(|(slot, _)| slot)
    }

    /// Allocates a batch record whose length depends on where it starts
    /// (`len_at(offset)`): packed right after the last batch copy when that
    /// copy ends inside a block and its write has completed (so this write,
    /// which rewrites that block, cannot race it), else at the next block
    /// boundary. Also returns the bytes of that block before the batch, to
    /// write again unchanged.
    pub(crate) fn alloc_batch(
        &mut self,
        segment_size: u64,
        len_at: impl Fn(u64) -> u64,
    ) -> Option<(Slot, Vec<u8>)> {
        let packable = self.tail.as_ref().is_some_and(|t| {
            t.vend == self.next_vpos && self.completed_upto >= t.vend
        });
        self.place(
            segment_size,
            |end| {
                let at = if packable { end } else { align_up(end) };
                (at, len_at(at))
            },
            packable,
        )
    }

    fn place(
        &mut self,
        segment_size: u64,
        at_len: impl Fn(u64) -> (u64, u64),
        packed: bool,
    ) -> Option<(Slot, Vec<u8>)> {
        let (&segment, seg) = self.segments.iter_mut().next_back()?;
        let vstart = seg.vstart?;
        let (offset, len) = at_len(seg.end);
        assert!(len > 0);
        if seg.end > BLOCK as u64 && offset + len > segment_size {
            return None;
        }
        let vpos = vstart + seg.end;
        assert_eq!(vpos, self.next_vpos, "log space must stay contiguous");
        let vlen = offset + len - seg.end;
        seg.end = offset + len;
        self.next_vpos = vpos + vlen;
        self.counters.bytes_appended += vlen;
        self.writes_in_flight += 1;
        let prefix = match self.tail.take() {
            Some(t) if packed => t.bytes,
            _ => Vec::new(),
        };
        debug_assert_eq!(prefix.len() as u64, offset - crate::format::align_down(offset));
        Some((
            Slot {
                segment,
                offset,
                vpos,
                vlen,
                file: seg.file.clone(),
            },
            prefix,
        ))
    }

    /// End of everything allocated so far in log space.
    pub(crate) fn end_vpos(&self) -> u64 {
        self.next_vpos
    }

    /// Bytes allocated in the active segment.
    pub(crate) fn active_len(&self) -> u64 {
        self.segments
            .values()
            .next_back()
            .filter(|s| s.vstart.is_some())
            .map_or(0, |s| s.end)
    }

    /// Checks that `e` lies inside a segment's written (or recovered) bytes.
    pub(crate) fn check_extent(&self, e: &Extent) -> Result<(), IoError> {
        let Some(seg) = self.segments.get(&e.segment) else {
            // Compaction moved its data and retired it: the caller read
            // the extent before the move, and reads the key again.
            if self.retired.contains(&e.segment) {
                return Err(IoError::Moved);
            }
            return Err(IoError::InvalidExtent("unknown segment"));
        };
        if data::extent_end(e)?.offset > seg.end {
            return Err(IoError::InvalidExtent("extent past the end of its segment"));
        }
        Ok(())
    }

    /// The durable prefix as a log position, for record headers. Before the
    /// first sync it is the start of this run's first segment: everything
    /// of earlier runs was made durable at open.
    pub(crate) fn durable_mark(&self) -> Pos {
        for (&segment, seg) in self.segments.iter().rev() {
            let Some(vs) = seg.vstart else { break };
            if vs <= self.durable_upto {
                return Pos {
                    segment,
                    offset: self.durable_upto - vs,
                };
            }
        }
        Pos::default()
    }

    /// Records that the write of `[vpos, vpos + len)` completed.
    pub(crate) fn write_completed(&mut self, vpos: u64, len: u64) {
        self.writes_in_flight = self.writes_in_flight.saturating_sub(1);
        if vpos != self.completed_upto {
            debug_assert!(vpos > self.completed_upto);
            self.completed_ahead.insert(vpos, vpos + len);
            return;
        }
        self.completed_upto = vpos + len;
        while let Some(end) = self.completed_ahead.remove(&self.completed_upto) {
            self.completed_upto = end;
        }
        // Bound the data that recovery may have to verify, and what a
        // commit after a long stream of data records waits for.
        if self.completed_upto - self.durable_upto >= UNSYNCED_MAX_BYTES {
            self.request_sync(self.completed_upto);
        }
    }

    pub(crate) fn request_sync(&mut self, target: u64) {
        if target > self.durable_upto {
            *self.sync_targets.entry(target).or_insert(0) += 1;
        }
    }

    /// A sync to start now, if one is wanted and possible.
    pub(crate) fn start_sync(&mut self) -> Option<SyncPlan> {
        if self.mode != Mode::Writable || self.sync_in_flight {
            return None;
        }
        let (&first, _) = self.sync_targets.first_key_value()?;
        if first > self.completed_upto {
            return None;
        }
        let upto = self.completed_upto;
        let mut plan = SyncPlan {
            upto,
            files: Vec::new(),
            segments: Vec::new(),
            new_segments: Vec::new(),
        };
        for (&number, seg) in self.segments.iter().rev() {
            let Some(vs) = seg.vstart else { break };
            if vs + seg.end <= self.durable_upto {
                break;
            }
            if vs < upto {
                // O_DSYNC files hold nothing a sync would add.
                if !self.dsync {
                    plan.files.push(seg.file.clone());
                }
                plan.segments.push(number);
                if !seg.dir_synced {
                    plan.new_segments.push(number);
                }
            }
        }
        self.sync_in_flight = true;
        Some(plan)
    }

    /// The sync of `plan` succeeded: advance the durable prefix and hand
    /// back the batches that are now durable, in order, to apply.
    pub(crate) fn sync_done(&mut self, plan: &SyncPlan) -> Vec<Flushed> {
        self.sync_in_flight = false;
        if self.mode != Mode::Writable {
            return Vec::new();
        }
        assert!(plan.upto >= self.durable_upto && plan.upto <= self.completed_upto);
        self.durable_upto = plan.upto;
        self.counters.syncs += 1;
        for n in &plan.new_segments {
            if let Some(s) = self.segments.get_mut(n) {
                s.dir_synced = true;
            }
        }
        self.sync_targets = self.sync_targets.split_off(&(plan.upto + 1));
        let n = self
            .flushed
            .iter()
            .take_while(|p| p.vend <= plan.upto)
            .count();
        self.flushed.drain(..n).collect()
    }

    /// Stages `ops` as the next commit in the open batch; its seq.
    pub(crate) fn stage(
        &mut self,
        ops: &[crate::codec::Op],
        state: Rc<std::cell::Cell<CommitState>>,
    ) -> Result<u64, IoError> {
        // Every extent must lie in a segment of this log as it is now (in
        // the same step as the staging: a reset may have cut it away).
        // (A victim named before a later extent fails the check stays
        // marked: that only costs it a new pass.)
        for op in ops {
            if let crate::codec::Op::Put { body: crate::codec::Body::Extents(es), .. } = op {
                for e in es {
                    self.check_extent(e)?;
                    if self.emptying.contains(&e.segment) {
                        self.rereferenced.insert(e.segment);
                    }
                }
            }
        }
        let seq = self.next_seq;
        self.open.stage(seq, ops, state)?;
        self.next_seq += 1;
        self.counters.commits += 1;
        if let Some(s) = self.open.staged.last() {
            for op in &s.ops {
                if let Some(k) = op_key(op) {
                    *self.pending_keys.entry(k).or_insert(0) += 1;
                }
            }
        }
        Ok(seq)
    }

    /// Fails the commits of a batch that could not be written.
    pub(crate) fn fail_batch(&mut self, batch: OpenBatch) {
        for s in batch.staged {
            self.unmark_pending(&s.ops);
            s.state.set(CommitState::Failed);
        }
    }

    fn unmark_pending(&mut self, ops: &[IndexOp]) {
        for op in ops {
            if let Some(k) = op_key(op) {
                if let Some(n) = self.pending_keys.get_mut(&k) {
                    *n -= 1;
                    if *n == 0 {
                        self.pending_keys.remove(&k);
                    }
                }
            }
        }
    }

    /// Whether a staged or written, not yet applied, commit references
    /// data or an entry in `segment`.
    pub(crate) fn stages_data_in(&self, segment: u32) -> bool {
        let touches = |s: &Staged| {
            s.ops.iter().any(|op| match op {
                IndexOp::Put { fp, .. } => fp.data.iter().any(|(seg, _)| *seg == segment),
                _ => false,
            })
        };
        self.open.staged.iter().any(touches)
            || self.allocating_data.contains(&segment)
            || self
                .flushed
                .iter()
                .any(|f| f.commits.iter().any(|(s, loc)| loc.segment == segment || touches(s)))
    }

    pub(crate) fn is_pending(&self, table: u8, key: &[u8]) -> bool {
        // Keys are short: the clone of a lookup key is the price of a plain HashMap.
        self.pending_keys.contains_key(&(table, key.to_vec()))
    }

    /// Applies durable batches to the index, in order, with the space
    /// accounting; marks their commits durable.
    pub(crate) fn apply(&mut self, index: &mut Index, done: Vec<Flushed>) {
        for f in done {
            for (staged, loc) in f.commits {
                self.unmark_pending(&staged.ops);
                if let Some(seg) = self.segments.get_mut(&loc.segment) {
                    seg.note_seq(staged.seq);
                }
                for op in staged.ops {
                    let change = apply_op(index, op, loc, &mut self.retired);
                    self.account(change);
                }
                self.applied_seq = self.applied_seq.max(staged.seq + 1);
                staged.state.set(CommitState::Durable);
            }
        }
    }

    /// Updates the live bytes of the segments an index change touched.
    pub(crate) fn account(&mut self, change: Change) {
        if let Some((loc, fp)) = change.removed {
            for (s, b) in fp.per_segment(&loc) {
                if let Some(seg) = self.segments.get_mut(&s) {
                    seg.live = seg.live.saturating_sub(b);
                }
            }
        }
        if let Some((loc, fp)) = change.added {
            for (s, b) in fp.per_segment(&loc) {
                if let Some(seg) = self.segments.get_mut(&s) {
                    seg.live += b;
                }
            }
        }
    }

    /// Fails every commit not yet durable (staged or written), for a reset.
    pub(crate) fn fail_pending(&mut self) {
        let open = std::mem::take(&mut self.open);
        let flushed: Vec<Flushed> = self.flushed.drain(..).collect();
        let staged = open
            .staged
            .into_iter()
            .chain(flushed.into_iter().flat_map(|f| f.commits.into_iter().map(|(s, _)| s)));
        for s in staged {
            s.state.set(CommitState::Failed);
        }
        self.pending_keys.clear();
        self.sync_targets.clear();
        self.applied_seq = self.next_seq;
    }

    /// Restarts log space after a reset: nothing of this run is pending,
    /// everything kept is durable, and the next segment starts a new space.
    pub(crate) fn restart_space(&mut self) {
        self.tail = None;
        self.completed_ahead.clear();
        self.completed_upto = self.next_vpos;
        self.durable_upto = self.next_vpos;
        for seg in self.segments.values_mut() {
            seg.vstart = None;
            seg.dir_synced = true;
        }
    }
}

fn op_key(op: &IndexOp) -> Option<(u8, Vec<u8>)> {
    match op {
        IndexOp::Put { table, key, .. } | IndexOp::Delete { table, key, .. } => {
            Some((*table, key.clone()))
        }
        IndexOp::Retire { .. } => None,
    }
}

/// Applies one operation of a durable commit at `loc` (run time and recovery).
pub(crate) fn apply_op(
    index: &mut Index,
    op: IndexOp,
    loc: Loc,
    retired: &mut BTreeSet<u32>,
) -> Change {
    match op {
        IndexOp::Put {
            table,
            key,
            summary,
            seq,
            ordinal,
            mut fp,
        } => {
            fp.min_seg = fp.min_seg.min(loc.segment);
            index.put(table, &key, &summary, seq, loc, ordinal, fp)
        }
        IndexOp::Delete { table, key, seq } => index.delete(table, &key, seq),
        IndexOp::Retire { segment } => {
            retired.insert(segment);
            Change::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Log needs files only to hand them to the caller; tests never use them.
    fn log_with_segment() -> Log {
        let mut log = Log::new(BTreeMap::new(), 1);
        let disk = crate::sim::SimDisk::new(1, Default::default());
        let f = crate::storage::DiskFile::Sim(disk.dir_handle(std::path::Path::new("/x")));
        log.add_segment(1, Rc::new(f));
        log
    }

    #[test]
    fn completed_prefix_out_of_order() {
        let mut log = log_with_segment();
        let a = log.alloc(4096, 1 << 20).unwrap();
        let b = log.alloc(8192, 1 << 20).unwrap();
        let c = log.alloc(4096, 1 << 20).unwrap();
        assert_eq!((a.vpos, b.vpos, c.vpos), (0, 4096, 12288));
        log.write_completed(c.vpos, 4096);
        log.write_completed(b.vpos, 8192);
        assert_eq!(log.completed_upto, 0);
        log.request_sync(16384);
        assert!(
            log.start_sync().is_none(),
            "nothing syncable until the prefix reaches a target"
        );
        log.write_completed(a.vpos, 4096);
        assert_eq!(log.completed_upto, 16384);
        assert_eq!(log.writes_in_flight, 0);
        let plan = log.start_sync().unwrap();
        assert_eq!(plan.upto, 16384);
        assert_eq!(plan.new_segments, vec![1]);
        assert!(log.start_sync().is_none(), "one sync at a time");
        log.sync_done(&plan);
        assert_eq!(log.durable_upto, 16384);
        assert!(log.segments[&1].dir_synced);
    }

    /// With O_DSYNC segments a sync plan names no file to sync (the writes
    /// were durable when they completed), yet still waits for the writes
    /// up to its target, and still syncs a new segment's directory entry.
    #[test]
    fn dsync_plans_sync_no_files_but_new_segments_dirs() {
        for dsync in [false, true] {
            let mut log = log_with_segment();
            log.dsync = dsync;
            let a = log.alloc(4096, 1 << 20).unwrap();
            let b = log.alloc(4096, 1 << 20).unwrap();
            log.request_sync(b.vpos + 4096);
            log.write_completed(b.vpos, 4096);
            assert!(log.start_sync().is_none(), "a write below the target is still in flight");
            log.write_completed(a.vpos, 4096);
            let plan = log.start_sync().unwrap();
            assert_eq!(plan.upto, 8192);
            assert_eq!(plan.files.len(), if dsync { 0 } else { 1 });
            assert_eq!(plan.segments, vec![1]);
            assert_eq!(plan.new_segments, vec![1]);
            log.sync_done(&plan);
            assert_eq!(log.durable_upto, 8192);
        }
    }

    #[test]
    fn full_segment_asks_for_a_roll() {
        let mut log = log_with_segment();
        log.alloc(4096, 16384).unwrap(); // segment record
        log.alloc(65536, 16384).unwrap(); // one oversized record always fits
        assert!(log.alloc(4096, 16384).is_none());
    }

    #[test]
    fn reset_fails_pending_and_stops_syncs() {
        let mut log = log_with_segment();
        let state = Rc::new(std::cell::Cell::new(CommitState::Pending));
        log.open.stage(1, &[], state.clone()).unwrap();
        log.mode = Mode::Resetting;
        log.fail_pending();
        assert_eq!(state.get(), CommitState::Failed);
        log.request_sync(4096);
        log.write_completed(0, 4096);
        assert!(log.start_sync().is_none());
    }
}
