//! Space written ahead of the log's head. An append past the end of a
//! file changes its size (and allocates blocks), so every fdatasync after
//! one also writes the inode and the allocation metadata: three device
//! writes and a flush where a flush would do, and the append itself is
//! handed to a kernel worker (an O_DIRECT write that extends a file cannot
//! complete inline). Writing over blocks the file already has changes no
//! metadata. So while the log syncs often for the bytes it appends (small
//! commits), a background step writes zeros `PREPARE_STEP` bytes at a time
//! ahead of the active segment's head; the log's next sync carries their
//! metadata once, and the commits that follow land on those blocks.
//!
//! While the syncs cover more (large commits), zeros would double the
//! writes; instead a step allocates `ALLOCATE_STEP` bytes ahead of the
//! head (fallocate, which writes nothing: the new blocks read as zeros),
//! so appends land inside the file's size and its blocks and complete
//! inline. Each sync still commits the blocks' change from unwritten to
//! written, so this saves the kernel worker, not the journal's work.
//!
//! What is on disk stays as before, with one addition: a segment may end
//! in zeros after its last record. In the active segment recovery counts
//! such a tail apart (it is the log's end, never corruption: no record
//! follows it) and cuts it like a torn tail. A sealed segment is read only
//! to the end its successor's segment record names; the roll also cuts
//! the zeros off, durably, once the segment's records are durable
//! (`cut_prepared_tail`).

use super::*;

/// Bytes of zeros one step writes; an eighth of the segment where
/// segments are smaller (tests).
pub(crate) const PREPARE_STEP: u64 = 8 << 20;
/// A step starts while less than two steps are written ahead of the head.
const STEPS_AHEAD: u64 = 2;
/// Steps run only while the log's syncs cover at most this many appended
/// bytes each on average: with larger commits the metadata per sync is
/// small beside the data, and zeros ahead would only double the writes.
pub(crate) const PREPARE_MAX_BYTES_PER_SYNC: u64 = 128 << 10;
/// The zeros one write of a step carries.
const ZERO_WRITE: usize = 1 << 20;
/// Bytes of a segment allocated (fallocate) per step while zeros are not
/// written ahead (large commits); an eighth of the segment where segments
/// are smaller. A step is taken when less than one is allocated ahead of
/// the head, and allocates up to two ahead.
pub(crate) const ALLOCATE_STEP: u64 = 64 << 20;

/// The active segment's written-ahead state.
#[derive(Debug, Default)]
pub(crate) struct Prepared {
    pub segment: u32,
    /// The segment's file holds written blocks up to here (zeros or
    /// records): writes below it change no metadata.
    pub end: u64,
    /// Zeros being written, `[from, to)`: a write of the log that overlaps
    /// waits for them (else the zeros could land after it).
    pub inflight: Option<(u64, u64)>,
    /// A step failed in this segment (a full disk): no more in it.
    pub stopped: bool,
    /// The segment's file is allocated up to here (fallocate; blocks not
    /// written yet read as zeros): appends below it do not extend the
    /// file. At least `end`'s worth of it may also be written.
    pub allocated: u64,
    /// An allocation step is running on the shard's I/O thread.
    pub allocating: bool,
    /// An allocation step failed in this segment: no more in it.
    pub allocation_stopped: bool,
    /// Whether the recent commits were small enough for steps to pay, and
    /// the log's counters when that was judged.
    pub wanted: bool,
    pub judged_at: (u64, u64),
    pub stats: PrepareStats,
}

/// What the written-ahead steps did since the shard opened.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PrepareStats {
    pub steps: u64,
    pub bytes: u64,
    pub failed_steps: u64,
    /// Old segments cut back to their records at a roll.
    pub tails_cut: u64,
    /// Allocation steps (large commits) and the bytes they allocated.
    pub allocations: u64,
    pub allocated_bytes: u64,
    pub failed_allocations: u64,
    /// Segments started in a spare file (`spare.rs`), whose blocks were
    /// written already: no step writes or allocates below its length.
    pub reused_segments: u64,
    /// Spare files removed because free space ran short (`spare.rs`).
    pub spares_released: u64,
}

/// What `maybe_prepare` starts.
enum Step {
    Zeros(u64, u64),
    Allocate(u64, u64),
}

impl Inner {
    /// Starts a step of zeros ahead of the active segment's head when one
    /// is due (see the module's comment). Cheap when none is.
    pub(crate) fn maybe_prepare(self: &Rc<Self>) {
        if !self.opts.prepare_ahead || !self.direct.get() || self.rolling.get() {
            return;
        }
        let (segment, file, head, counters) = {
            let log = self.log.borrow();
            if log.mode != Mode::Writable {
                return;
            }
            let Some((n, seg)) = log.segments.iter().next_back() else {
                return;
            };
            if seg.vstart.is_none() {
                return;
            }
            (*n, seg.file.clone(), align_up(seg.end), (log.counters.bytes_appended, log.counters.syncs))
        };
        let step = {
            let mut p = self.prepared.borrow_mut();
            if p.segment != segment {
                p.segment = segment;
                p.end = 0;
                p.stopped = false;
                p.allocated = 0;
                p.allocation_stopped = false;
            }
            if p.inflight.is_some() || p.stopped {
                return;
            }
            let step = align_up(PREPARE_STEP.min(self.opts.segment_size_bytes / 8)).max(BLOCK as u64);
            // Behind the head (a new segment, or appends that outran the
            // steps), zeros start a little ahead of it: the writes about to
            // land there would otherwise wait for the whole step.
            let from = if p.end > head { p.end } else { align_up(head + step / 8) };
            if from >= head + STEPS_AHEAD * step || from >= self.opts.segment_size_bytes {
                return;
            }
            // Judged again over at least a step's worth of appends.
            let (bytes, syncs) = (counters.0 - p.judged_at.0, counters.1 - p.judged_at.1);
            if bytes >= step || p.judged_at == (0, 0) {
                p.wanted = syncs.saturating_mul(PREPARE_MAX_BYTES_PER_SYNC) >= bytes;
                p.judged_at = counters;
            }
            if !p.wanted {
                // Large commits: allocate ahead instead, so that appends
                // do not extend the file (which hands each O_DIRECT write
                // to a kernel worker), without writing anything.
                let step = align_up(ALLOCATE_STEP.min(self.opts.segment_size_bytes / 8)).max(BLOCK as u64);
                let have = p.end.max(p.allocated);
                let limit = align_up(self.opts.segment_size_bytes);
                if p.allocating || p.allocation_stopped || have >= head + step || have >= limit {
                    return;
                }
                if self.free_estimate() < self.opts.data_reserve_bytes.saturating_add(4 * step) {
                    return;
                }
                let from = have.max(head);
                let to = (head + 2 * step).min(limit);
                p.allocating = true;
                Step::Allocate(from, to)
            } else {
                if self.free_estimate() < self.opts.data_reserve_bytes.saturating_add(4 * step) {
                    return;
                }
                let to = (from + step).min(align_up(self.opts.segment_size_bytes));
                p.inflight = Some((from, to));
                Step::Zeros(from, to)
            }
        };
        let (from, to) = match step {
            Step::Zeros(from, to) => (from, to),
            Step::Allocate(from, to) => {
                self.allocate_ahead(segment, file, from, to);
                return;
            }
        };
        tracing::trace!(shard = self.id, segment, from, to, "writing zeros ahead of the log");
        let inner = self.clone();
        monoio::spawn(async move {
            let r = write_zeros(&file, from, to).await;
            tracing::trace!(shard = inner.id, segment, from, to, ok = r.is_ok(), "zeros ahead written");
            {
                let mut p = inner.prepared.borrow_mut();
                p.inflight = None;
                match &r {
                    Ok(()) => {
                        p.stats.steps += 1;
                        p.stats.bytes += to - from;
                        if p.segment == segment {
                            p.end = p.end.max(to);
                        }
                    }
                    Err(e) => {
                        p.stats.failed_steps += 1;
                        if p.segment == segment {
                            p.stopped = true;
                        }
                        tracing::debug!(shard = inner.id, segment, error = %e, "could not write ahead of the log; appending");
                    }
                }
            }
            inner.changed.notify_all();
            inner.maybe_prepare();
        });
    }

    /// Allocates `[from, to)` of the active segment's file on the shard's
    /// I/O thread (`Backend::allocate`). Nothing waits for it: an
    /// allocation never changes bytes already in the file.
    fn allocate_ahead(self: &Rc<Self>, segment: u32, file: Rc<DiskFile>, from: u64, to: u64) {
        tracing::trace!(shard = self.id, segment, from, to, "allocating ahead of the log");
        let inner = self.clone();
        monoio::spawn(async move {
            let r = inner.backend.allocate(&file, from, to).await;
            {
                let mut p = inner.prepared.borrow_mut();
                p.allocating = false;
                match &r {
                    Ok(()) => {
                        p.stats.allocations += 1;
                        p.stats.allocated_bytes += to - from;
                        if p.segment == segment {
                            p.allocated = p.allocated.max(to);
                        }
                    }
                    Err(e) => {
                        p.stats.failed_allocations += 1;
                        if p.segment == segment {
                            p.allocation_stopped = true;
                        }
                        tracing::debug!(shard = inner.id, segment, error = %e, "could not allocate ahead of the log; appending");
                    }
                }
            }
            inner.changed.notify_all();
        });
    }

    /// Segment `segment` starts in a spare file of `len` bytes: its blocks
    /// are written up to there (records of the segments it served before),
    /// which steps never write or allocate again.
    pub(crate) fn started_in_spare(&self, segment: u32, len: u64) {
        let mut p = self.prepared.borrow_mut();
        let written = crate::format::align_down(len);
        p.segment = segment;
        p.end = written;
        p.allocated = written;
        p.stopped = false;
        p.allocation_stopped = false;
        p.stats.reused_segments += 1;
    }

    /// Waits until no zeros are being written over `[from, to)` of `segment`.
    pub(crate) async fn wait_prepared(&self, segment: u32, from: u64, to: u64) {
        loop {
            let busy = {
                let p = self.prepared.borrow();
                p.segment == segment && p.inflight.is_some_and(|(a, b)| from < b && a < to)
            };
            if !busy {
                return;
            }
            self.changed.listen().await;
        }
    }

    /// Waits for a step in flight to end (before a roll or a reset cuts
    /// files: an allocation landing after a cut would lengthen the file
    /// again).
    pub(crate) async fn prepare_idle(&self) {
        while self.prepared.borrow().inflight.is_some() || self.prepared.borrow().allocating {
            self.changed.listen().await;
        }
    }

    /// At a roll (and a clean stop): cuts what follows the active
    /// segment's records (zeros written ahead, a spare file's older
    /// records), durably, before the next segment starts. Recovery reads a
    /// sealed segment only to the end its successor's record names, but
    /// once that successor is retired it reads to the file's end, and a
    /// tail there would be taken for corruption below a later segment's
    /// durable mark (the simulator found it, seed 41, with the cut not
    /// synced). The cut waits for the segment's records to be durable
    /// first: its sync must not be the one that takes a writeback error of
    /// records the log has not synced yet (Linux reports one once per open
    /// file), or the log's own sync of them would succeed over lost blocks
    /// (seed 3088, with the cut synced right away).
    pub(crate) async fn cut_prepared_tail(self: &Rc<Self>) {
        self.prepare_idle().await;
        let (segment, prepared_end) = {
            let p = self.prepared.borrow();
            (p.segment, p.end.max(p.allocated))
        };
        let cut = {
            let log = self.log.borrow();
            log.segments
                .get(&segment)
                .filter(|s| prepared_end > align_up(s.end))
                .map(|s| (s.file.clone(), align_up(s.end), s.vstart.map(|vs| vs + s.end)))
        };
        if let Some((file, keep, vend)) = cut {
            if let Some(vend) = vend {
                if let Err(e) = self.wait_durable(vend).await {
                    tracing::debug!(shard = self.id, segment, error = %e, "not cutting the zeros after a segment: its records did not become durable");
                    return;
                }
            }
            tracing::trace!(shard = self.id, segment, keep, prepared_end, "cutting the zeros after a segment's records");
            match file.truncate(keep).await {
                Ok(()) => {
                    let mut p = self.prepared.borrow_mut();
                    p.end = p.end.min(keep);
                    p.allocated = p.allocated.min(keep);
                    p.stats.tails_cut += 1;
                }
                Err(e) => tracing::debug!(shard = self.id, segment, error = %e, "could not cut the zeros after a sealed segment"),
            }
        }
    }

    /// Forgets what was written ahead in `segment` (cut back by a reset).
    pub(crate) fn forget_prepared(&self, segment: u32, keep: u64) {
        let mut p = self.prepared.borrow_mut();
        if p.segment == segment {
            p.end = p.end.min(keep);
            p.allocated = p.allocated.min(keep);
        }
    }
}

/// Writes zeros over `[from, to)` of `file`. Not synced here: the log's
/// next sync of the segment makes them durable with its records. (A sync
/// of its own beside the log's could take a writeback error the log's sync
/// then never sees, as Linux reports one once per open file.)
async fn write_zeros(file: &DiskFile, from: u64, to: u64) -> std::io::Result<()> {
    let mut zeros = AlignedBuf::with_capacity(ZERO_WRITE);
    zeros.set_len(0);
    zeros.zero_extend(ZERO_WRITE);
    let mut at = from;
    while at < to {
        let n = ((to - at) as usize).min(ZERO_WRITE);
        if n != zeros.len() {
            zeros.set_len(0);
            zeros.zero_extend(n);
        }
        zeros = file.write_all_at(zeros, at).await?;
        at += n as u64;
    }
    Ok(())
}
