//! The write side of a shard as plain state, no I/O: offset allocation,
//! the completed prefix, group commit, and the queue of commits waiting to
//! become visible. `shard.rs` drives it with the actual writes and syncs.
//!
//! Positions: the segments written by this run are laid end to end in one
//! "log space" (`vpos`), so "everything up to X has completed / is durable"
//! is one number even across a segment roll. Segments of earlier runs are
//! outside it: they were made durable at open.
//!
//! Group commit: a commit (or a commit waiting for its extents) registers a
//! sync target. A sync starts when none is in flight and the completed
//! prefix reaches the smallest target; it covers the whole completed prefix
//! at that moment, so every committer that finished writing by then shares
//! it, and later ones wait for the next.

use std::collections::{BTreeMap, VecDeque};
use std::rc::Rc;

use crate::codec::Extent;
use crate::data;
use crate::disk::DiskFile;
use crate::error::IoError;
use crate::format::{Pos, BLOCK};
use crate::index::{Index, Loc};

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
}

/// A place allocated for one record.
pub(crate) struct Slot {
    pub segment: u32,
    pub offset: u64,
    pub vpos: u64,
    pub file: Rc<DiskFile>,
}

pub(crate) enum IndexOp {
    Put {
        table: u8,
        key: Vec<u8>,
        summary: Vec<u8>,
    },
    Delete {
        table: u8,
        key: Vec<u8>,
    },
}

/// A commit whose record is allocated but not yet durable.
pub(crate) struct PendingCommit {
    pub seq: u64,
    pub vend: u64,
    pub loc: Loc,
    pub ops: Vec<IndexOp>,
}

impl IndexOp {
    pub(crate) fn apply(self, index: &mut Index, seq: u64, loc: Loc) {
        match self {
            IndexOp::Put {
                table,
                key,
                summary,
            } => index.put(table, &key, &summary, seq, loc),
            IndexOp::Delete { table, key } => index.delete(table, &key),
        }
    }
}

impl PendingCommit {
    pub(crate) fn apply(self, index: &mut Index) {
        for op in self.ops {
            op.apply(index, self.seq, self.loc);
        }
    }
}

/// What one sync must do: fdatasync `files`, fsync the directory if
/// `new_segments` is not empty, then declare `upto` durable.
pub(crate) struct SyncPlan {
    pub upto: u64,
    pub files: Vec<Rc<DiskFile>>,
    pub new_segments: Vec<u32>,
}

#[derive(Default, Clone, Copy, Debug)]
pub(crate) struct Counters {
    pub data_records: u64,
    pub commit_records: u64,
    pub segment_records: u64,
    pub bytes_appended: u64,
    pub syncs: u64,
}

pub(crate) struct Log {
    pub segments: BTreeMap<u32, SegFile>,
    next_vpos: u64,
    completed_upto: u64,
    /// Completed writes past a gap: start -> end.
    completed_ahead: BTreeMap<u64, u64>,
    pub durable_upto: u64,
    sync_in_flight: bool,
    /// Requested durability targets above `durable_upto`: vpos -> waiters.
    sync_targets: BTreeMap<u64, u32>,
    pending: VecDeque<PendingCommit>,
    pub next_seq: u64,
    pub failed: bool,
    pub counters: Counters,
}

impl Log {
    pub(crate) fn new(segments: BTreeMap<u32, SegFile>, next_seq: u64) -> Log {
        Log {
            segments,
            next_vpos: 0,
            completed_upto: 0,
            completed_ahead: BTreeMap::new(),
            durable_upto: 0,
            sync_in_flight: false,
            sync_targets: BTreeMap::new(),
            pending: VecDeque::new(),
            next_seq,
            failed: false,
            counters: Counters::default(),
        }
    }

    pub(crate) fn last_segment(&self) -> u32 {
        self.segments.keys().next_back().copied().unwrap_or(0)
    }

    /// Starts segment `number` at the end of log space; the caller writes
    /// its segment record next.
    pub(crate) fn add_segment(&mut self, number: u32, file: Rc<DiskFile>) {
        assert!(
            number > self.last_segment(),
            "segments must be added in order"
        );
        let seg = SegFile {
            file,
            end: 0,
            vstart: Some(self.next_vpos),
            dir_synced: false,
        };
        self.segments.insert(number, seg);
    }

    /// Allocates `len` bytes at the end of the active segment, or None when
    /// the segment is full and must roll first. A segment takes at least one
    /// record after its segment record, whatever its size.
    pub(crate) fn alloc(&mut self, len: u64, segment_size: u64) -> Option<Slot> {
        assert!(len > 0 && len % BLOCK as u64 == 0);
        let (&segment, seg) = self.segments.iter_mut().next_back()?;
        let vstart = seg.vstart?;
        if seg.end > BLOCK as u64 && seg.end + len > segment_size {
            return None;
        }
        let offset = seg.end;
        seg.end += len;
        let vpos = vstart + offset;
        assert_eq!(vpos, self.next_vpos, "log space must stay contiguous");
        self.next_vpos = vpos + len;
        self.counters.bytes_appended += len;
        Some(Slot {
            segment,
            offset,
            vpos,
            file: seg.file.clone(),
        })
    }

    /// End of everything allocated so far in log space.
    pub(crate) fn end_vpos(&self) -> u64 {
        self.next_vpos
    }

    pub(crate) fn take_seq(&mut self) -> u64 {
        let s = self.next_seq;
        self.next_seq += 1;
        s
    }

    /// Checks that `e` lies inside a segment's written (or recovered) bytes.
    pub(crate) fn check_extent(&self, e: &Extent) -> Result<(), IoError> {
        let seg = self
            .segments
            .get(&e.segment)
            .ok_or(IoError::InvalidExtent("unknown segment"))?;
        if data::extent_end(e)?.offset > seg.end {
            return Err(IoError::InvalidExtent("extent past the end of its segment"));
        }
        Ok(())
    }

    /// The durable prefix as a log position, for commit headers. Before the
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

    pub(crate) fn push_pending(&mut self, p: PendingCommit) {
        debug_assert!(self
            .pending
            .back()
            .is_none_or(|b| b.seq < p.seq && b.vend < p.vend));
        self.pending.push_back(p);
    }

    pub(crate) fn request_sync(&mut self, target: u64) {
        if target > self.durable_upto {
            *self.sync_targets.entry(target).or_insert(0) += 1;
        }
    }

    /// A sync to start now, if one is wanted and possible.
    pub(crate) fn start_sync(&mut self) -> Option<SyncPlan> {
        if self.failed || self.sync_in_flight {
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
            new_segments: Vec::new(),
        };
        for (&number, seg) in self.segments.iter().rev() {
            let Some(vs) = seg.vstart else { break };
            if vs + seg.end <= self.durable_upto {
                break;
            }
            if vs < upto {
                plan.files.push(seg.file.clone());
                if !seg.dir_synced {
                    plan.new_segments.push(number);
                }
            }
        }
        self.sync_in_flight = true;
        Some(plan)
    }

    /// The sync of `plan` succeeded: advance the durable prefix and hand
    /// back the commits that are now durable, in seq order, to apply.
    pub(crate) fn sync_done(&mut self, plan: &SyncPlan) -> Vec<PendingCommit> {
        self.sync_in_flight = false;
        if self.failed {
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
            .pending
            .iter()
            .take_while(|p| p.vend <= plan.upto)
            .count();
        self.pending.drain(..n).collect()
    }

    /// A write or sync failed: the prefix can never pass the hole, so no
    /// pending commit will become durable and no write is accepted.
    pub(crate) fn fail(&mut self) {
        self.failed = true;
        self.sync_in_flight = false;
        self.sync_targets.clear();
        self.pending.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Log needs files only to hand them to the caller; tests never use them.
    fn log_with_segment() -> Log {
        let mut log = Log::new(BTreeMap::new(), 1);
        let f = tempfile::tempfile().unwrap();
        let df = DiskFile::Thread {
            file: std::sync::Arc::new(f),
            worker: Rc::new(crate::disk::tests_worker()),
        };
        log.add_segment(1, Rc::new(df));
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
        let plan = log.start_sync().unwrap();
        assert_eq!(plan.upto, 16384);
        assert_eq!(plan.new_segments, vec![1]);
        assert!(log.start_sync().is_none(), "one sync at a time");
        log.sync_done(&plan);
        assert_eq!(log.durable_upto, 16384);
        assert!(log.segments[&1].dir_synced);
    }

    #[test]
    fn pending_commits_become_visible_in_order_when_durable() {
        let mut log = log_with_segment();
        let mut vends = Vec::new();
        for _ in 0..3 {
            let s = log.alloc(4096, 1 << 20).unwrap();
            let seq = log.take_seq();
            let vend = s.vpos + 4096;
            log.push_pending(PendingCommit {
                seq,
                vend,
                loc: Loc::new(1, s.offset, 4096),
                ops: vec![],
            });
            log.request_sync(vend);
            vends.push(vend);
        }
        log.write_completed(0, 4096);
        let plan = log.start_sync().unwrap();
        assert_eq!(plan.upto, 4096);
        // Writes finishing during the sync wait for the next one.
        log.write_completed(4096, 4096);
        log.write_completed(8192, 4096);
        let done = log.sync_done(&plan);
        assert_eq!(done.iter().map(|p| p.seq).collect::<Vec<_>>(), vec![1]);
        let plan = log.start_sync().unwrap();
        assert_eq!(plan.upto, 12288);
        let done = log.sync_done(&plan);
        assert_eq!(done.iter().map(|p| p.seq).collect::<Vec<_>>(), vec![2, 3]);
        assert!(log.start_sync().is_none());
    }

    #[test]
    fn full_segment_asks_for_a_roll() {
        let mut log = log_with_segment();
        log.alloc(4096, 16384).unwrap(); // segment record
        log.alloc(65536, 16384).unwrap(); // one oversized record always fits
        assert!(log.alloc(4096, 16384).is_none());
    }

    #[test]
    fn failure_drops_pending() {
        let mut log = log_with_segment();
        let s = log.alloc(4096, 1 << 20).unwrap();
        log.push_pending(PendingCommit {
            seq: 1,
            vend: 4096,
            loc: Loc::new(1, s.offset, 4096),
            ops: vec![],
        });
        log.request_sync(4096);
        log.fail();
        log.write_completed(0, 4096);
        assert!(log.start_sync().is_none());
    }
}
