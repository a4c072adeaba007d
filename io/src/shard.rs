//! The shard: its public API and the tasks that drive writes and syncs.
//!
//! Writes and syncs run as spawned tasks, not inside the caller's future, so
//! a caller that gives up (a dropped request) cannot leave an allocated
//! range unwritten or a sync half-done, which would stall the durable
//! prefix for everyone.
//!
//! After a write or sync error the shard resets its log: every commit not
//! yet durable fails (never acknowledged), the segments of this run are cut
//! back to the durable prefix, and a new segment starts. If that fails too
//! (a full disk), the shard stays read-only and retries in the background.
//!
//! This file holds the shard's types, its write and control API and the
//! helpers they share; the rest by meaning: `open` (the `SHARD` file,
//! recovery, the first segment, background tasks), `write` (group commit,
//! data records, rolls), `read` (loads and extent reads), `reset` (write
//! and sync faults, read-only mode), `upkeep` (the periodic task: free
//! space, idle marks, checkpoints), `stats`.

use std::cell::{Cell, RefCell};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::rc::{Rc, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::batch::CommitState;
use crate::buf::{AlignedBuf, DataBuf};
use crate::codec::{self, Body, Extent, Mutation, Op, OpView};
use crate::data;
use crate::error::IoError;
use crate::event::Event;
use crate::format::{
    align_down, align_up, segment_file_name, EntryHeader, Kind, Pos, RecordHeader, SegmentInfo,
    ShardFile, ShardKey, BLOCK, ENTRY_HEADER_BYTES, FORMAT_VERSION, MAX_BATCH_BYTES,
    MAX_DATA_BYTES, SHARD_FILE,
};
use crate::index::{Entry, Index, Loc};
use crate::log::{Flushed, Log, Mode, Slot, SyncPlan};
use crate::recovery::{self, RecoverOpts, RecoveryStats};
use crate::sim::SimDisk;
use crate::storage::{Backend, DiskFile, OpenMode};

pub use crate::format::MAX_SEGMENT_BYTES;

mod open;
mod prepare;
mod read;
mod reset;
mod stats;
mod upkeep;
mod write;

pub use prepare::PrepareStats;
pub use stats::{ShardStats, SyncLatency, SYNC_LATENCY_BUCKETS_US};

#[derive(Clone, Debug)]
pub struct ShardOptions {
    /// A new segment starts when the active one would pass this size.
    pub segment_size_bytes: u64,
    /// Try O_DIRECT; falls back to buffered I/O + fdatasync where refused.
    pub direct_io: bool,
    /// New data is refused (`NoSpace`) while the disk has less free than
    /// this; deletes and compaction go on in the room below it.
    pub data_reserve_bytes: u64,
    /// A checkpoint is written once this many log bytes follow the last one.
    pub checkpoint_after_bytes: u64,
    /// Background work: compaction, scrubbing, checkpoints, idle marks.
    pub background: bool,
    /// Write zeros ahead of the log's head while commits are small, so
    /// their syncs change no file metadata (see `shard/prepare.rs`).
    pub prepare_ahead: bool,
    /// Open the segments O_DSYNC: every write of the log is durable when
    /// it completes, so a commit is durable once every write up to the end
    /// of its batch completed, with no fdatasync (a new segment's
    /// directory entry is still synced). Off: writes are plain and a sync
    /// after them makes a batch durable (group commit).
    pub dsync: bool,
    /// Retired segment files kept to start new segments in (`spare.rs`):
    /// their blocks are written already, so syncs of new records there
    /// commit no allocation. 0 removes every retired file.
    pub spare_segments: usize,
    pub compaction: crate::compact::CompactionOptions,
    pub scrub: crate::scrub::ScrubOptions,
}

impl Default for ShardOptions {
    fn default() -> Self {
        ShardOptions {
            segment_size_bytes: 1 << 30,
            direct_io: true,
            data_reserve_bytes: 1 << 30,
            checkpoint_after_bytes: 256 << 20,
            background: true,
            prepare_ahead: true,
            dsync: false,
            spare_segments: 2,
            compaction: Default::default(),
            scrub: Default::default(),
        }
    }
}

/// What `Shard::load` returns: the commit's view of a key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stored {
    pub seq: u64,
    pub summary: Vec<u8>,
    pub meta: Vec<u8>,
    pub body: Body,
}

/// One shard of one data dir, owned by one reactor. Cloning gives another
/// handle to the same shard.
#[derive(Clone)]
pub struct Shard {
    pub(crate) inner: Rc<Inner>,
}

pub(crate) struct Inner {
    /// A format-2 shard file to rewrite as format 3 before the first
    /// format-3 record (the first segment this run starts).
    pub upgrade: RefCell<Option<ShardFile>>,
    pub id: u32,
    /// `Shard::serial`.
    pub serial: u64,
    pub dir: PathBuf,
    pub opts: ShardOptions,
    pub backend: Backend,
    pub key: ShardKey,
    pub direct: Cell<bool>,
    pub direct_warned: Cell<bool>,
    pub log: RefCell<Log>,
    pub index: RefCell<Index>,
    /// Fires when the durable prefix advances, a write finishes, or the mode changes.
    pub changed: Event,
    pub recovery: RecoveryStats,
    pub recovery_problems: Vec<String>,
    /// A roll is creating the next segment.
    rolling: Cell<bool>,
    precreating: Cell<bool>,
    /// The log replayed at open was long: write a checkpoint soon.
    pub needs_checkpoint: Cell<bool>,
    /// A batch flush is allocating.
    flushing: Cell<bool>,
    /// The next segment file, created ahead of the roll.
    next_file: RefCell<Option<(u32, Rc<DiskFile>)>>,
    /// Zeros written ahead of the active segment's head.
    pub(crate) prepared: RefCell<prepare::Prepared>,
    /// Free bytes at the last check, and bytes appended since.
    free_bytes: Cell<u64>,
    appended_at_check: Cell<u64>,
    /// Why the shard is read-only (to answer NoSpace rather than a failure).
    no_space: Cell<bool>,
    pub corrupt_reads: Cell<u64>,
    /// Log position (bytes appended) at the last checkpoint.
    pub checkpoint_at: Cell<u64>,
    pub checkpoints_written: Cell<u64>,
    pub checkpointing: Cell<bool>,
    /// The oldest next-seq of the checkpoints kept (0: none): retire ops
    /// older than every kept checkpoint are no longer needed.
    pub oldest_checkpoint_seq: Cell<u64>,
    /// Bytes appended when the last mark-carrying record was written.
    pub marked_at: Cell<u64>,
    pub compaction: RefCell<crate::compact::CompactionStats>,
    /// Admission control's last answer and when (see `compact::should_stall`).
    pub stall_check: Cell<Option<(u64, bool)>>,
    pub scrub: RefCell<crate::scrub::ScrubStats>,
    pub sync_latency: RefCell<SyncLatency>,
    /// Data records written and not yet referenced by a commit (uploads in
    /// progress), with when: compaction leaves their segments alone.
    pins: RefCell<std::collections::BTreeMap<(u32, u64), u64>>,
    /// Read-modify-write holds alive (`Shard::hold`), by ticket, and the
    /// next ticket: a segment emptied by compaction is retired only once
    /// every hold older than its moves has ended (`compact::Deferred`).
    pub(crate) holds: RefCell<std::collections::BTreeSet<u64>>,
    pub(crate) next_hold: Cell<u64>,
    /// Segments emptied by compaction, waiting for older holds to end.
    pub(crate) deferred: RefCell<Vec<crate::compact::Deferred>>,
    /// Retired segment files being removed (`reap::reap`), whether that
    /// task runs, and whether it is to hurry (`reap::reap_now`).
    pub(crate) trash: RefCell<std::collections::VecDeque<crate::storage::Trash>>,
    pub(crate) reaping: Cell<bool>,
    pub(crate) hurry_reap: Cell<bool>,
    /// Retired segment files kept for new segments (`spare.rs`).
    pub(crate) spares: RefCell<Vec<crate::spare::Spare>>,
}

/// Log growth since the last checkpoint above which a clean stop writes
/// one (`Shard::prepare_stop`): replaying this much takes well under a
/// second, writing a snapshot for less is not worth the stop's time.
pub const STOP_CHECKPOINT_MIN_BYTES: u64 = 16 << 20;

/// How long an uncommitted data record keeps its segment from compaction.
pub const PIN_TIMEOUT: Duration = Duration::from_secs(3600);

impl Shard {
    /// Appends a data record holding `buf`'s data. Not durable by itself: a
    /// later `commit` that references the extent makes it durable.
    pub async fn write_data(&self, buf: DataBuf) -> Result<Extent, IoError> {
        let inner = &self.inner;
        let len = buf.data_len();
        if len > MAX_DATA_BYTES {
            return Err(IoError::TooLarge);
        }
        inner.check_data_space(len as u64)?;
        crate::compact::admit(inner).await;
        inner.write_data_record(buf, true).await
    }

    /// Says the data records behind `extents` will never be committed (an
    /// upload that failed): their space can be reclaimed.
    pub fn release(&self, extents: &[Extent]) {
        let mut pins = self.inner.pins.borrow_mut();
        for e in extents {
            pins.remove(&(e.segment, e.offset));
        }
    }

    /// Appends one commit holding all `muts` atomically. Returns once it and
    /// everything before it in the shard are on stable storage and applied
    /// to the index; the result is its sequence number.
    pub async fn commit(&self, muts: Vec<Mutation>) -> Result<u64, IoError> {
        let inner = &self.inner;
        if muts.iter().any(|m| matches!(m, Mutation::Put { .. })) {
            inner.check_data_space(0)?;
            // Inline bodies fill the log too (small-object overwrites).
            crate::compact::admit(inner).await;
        }
        // Data records stay pinned until the commit naming them is applied
        // to the index (or failed): staged but not yet applied, they are in
        // no index entry, and compaction, which finds live data through the
        // index, would retire their segment under them (found by the
        // simulation, seed 74878).
        // (A guard: a caller that drops the future mid-way unpins too.)
        let _unpin = Unpin {
            inner,
            keys: muts
                .iter()
                .flat_map(|m| match m {
                    Mutation::Put { body: Body::Extents(es), .. } => es.iter().map(|e| (e.segment, e.offset)).collect(),
                    _ => Vec::new(),
                })
                .collect(),
        };
        let ops = inner.ops_of(muts)?;
        inner.commit_ops(ops).await
    }

    pub fn get(&self, table: u8, key: &[u8]) -> Option<Entry> {
        self.inner.index.borrow().get(table, key)
    }

    /// Up to `limit` entries of `table` whose keys start with `prefix`, in
    /// key order, after `after` (exclusive) when given, else from `prefix`.
    pub fn range(
        &self,
        table: u8,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Vec<(Vec<u8>, Entry)> {
        self.inner.index.borrow().range(table, prefix, after, limit)
    }

    /// The last entry of `table` whose key starts with `prefix` and sorts
    /// before `key` (exclusive), if any.
    pub fn before(&self, table: u8, prefix: &[u8], key: &[u8]) -> Option<(Vec<u8>, Entry)> {
        self.inner.index.borrow().before(table, prefix, key)
    }

    pub fn len(&self, table: u8) -> usize {
        self.inner.index.borrow().len(table)
    }

    pub fn is_empty(&self, table: u8) -> bool {
        self.len(table) == 0
    }

    pub fn id(&self) -> u32 {
        self.inner.id
    }

    /// A number no other shard opened by this process has (the id is not
    /// unique: two dirs may hold shards of one id, as the member shards
    /// of two lane owners on one node do). Clones share it.
    pub fn serial(&self) -> u64 {
        self.inner.serial
    }

    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// Whether new writes are taken now.
    pub fn is_writable(&self) -> bool {
        self.inner.log.borrow().mode == Mode::Writable
    }

    /// Writes a record carrying the durable mark and waits for it: after
    /// it, everything acknowledged so far is vouched for (a later open
    /// tells bit rot in it from a torn tail). The shard does this by itself
    /// when idle; call it before shutting down.
    pub async fn mark(&self) -> Result<(), IoError> {
        let inner = &self.inner;
        while inner.flushing.replace(true) {
            inner.changed.listen().await;
        }
        let r = inner.flush(true).await;
        inner.flushing.set(false);
        inner.changed.notify_all();
        r?;
        let end = inner.log.borrow().end_vpos();
        inner.wait_durable(end).await
    }

    /// Writes a checkpoint now (tests and shutdown).
    pub async fn checkpoint(&self) -> Result<(), IoError> {
        self.inner.write_checkpoint().await
    }

    /// Before a clean stop: a checkpoint when the log grew by more than
    /// `STOP_CHECKPOINT_MIN_BYTES` since the last one (so the next start
    /// reads a snapshot instead of replaying the tail), then a durable
    /// mark (so the last batch is vouched for). A shard that cannot write
    /// any more is left as it is: recovery handles it.
    pub async fn prepare_stop(&self) -> Result<(), IoError> {
        let inner = &self.inner;
        if inner.log.borrow().mode != Mode::Writable {
            return Ok(());
        }
        let appended = inner.log.borrow().counters.bytes_appended;
        let mut tail = appended.saturating_sub(inner.checkpoint_at.get());
        if inner.checkpoint_at.get() == 0 {
            // No checkpoint yet in this run: the next start would replay
            // what this one did too.
            tail += inner.recovery.bytes_read;
        }
        if tail >= STOP_CHECKPOINT_MIN_BYTES {
            inner.write_checkpoint().await?;
        }
        self.mark().await?;
        // What follows the records in the active segment's file (zeros
        // written ahead, a spare's older records) would only be scanned
        // at the next start: cut now.
        inner.cut_prepared_tail().await;
        Ok(())
    }

    /// A hold for a read-modify-write that commits extents it read (an
    /// object record rewritten with its data, parts assembled into an
    /// object): while it lives, no segment compaction empties after it was
    /// taken is retired, so every extent read under it stays committable.
    /// Cheap; meant to last one transaction (a long one only delays the
    /// retirement of what compaction emptied meanwhile).
    pub fn hold(&self) -> Hold {
        let id = self.inner.next_hold.get();
        self.inner.next_hold.set(id + 1);
        self.inner.holds.borrow_mut().insert(id);
        Hold { inner: self.inner.clone(), id }
    }

    /// Runs one compaction pass now (tests and operators).
    pub async fn compact_once(&self) -> Result<bool, IoError> {
        let r = crate::compact::compact_once(&self.inner, true).await;
        crate::reap::reap_now(&self.inner).await;
        r
    }

    /// Records the scrubber found failing verification since the shard
    /// opened (cheap: no walk, unlike `stats`).
    pub fn scrub_errors(&self) -> u64 {
        self.inner.scrub.borrow().errors
    }

    /// Scrubs every sealed segment once now (tests and operators).
    pub async fn scrub_all(&self) -> Result<crate::scrub::ScrubStats, IoError> {
        crate::scrub::scrub_all(&self.inner).await
    }

    /// Every index entry as (table, key, seq, summary): for comparing two
    /// recoveries of one image.
    pub fn dump(&self) -> Vec<(u8, Vec<u8>, u64, Vec<u8>)> {
        self.inner
            .index
            .borrow()
            .dump()
            .into_iter()
            .map(|e| (e.table, e.key, e.seq, e.summary))
            .collect()
    }

    /// For tests that abandon the runtime the shard ran on (a simulated
    /// power cut): drops the wakers of the tasks waiting on the shard, which
    /// hold the shard and would otherwise never be freed.
    pub fn forget_waiters(&self) {
        self.inner.changed.forget_listeners();
    }

    /// What recovery found at open (corruption, losses), as sentences.
    pub fn recovery_problems(&self) -> Vec<String> {
        self.inner.recovery_problems.clone()
    }

}

/// See `Shard::hold`; ends when dropped.
pub struct Hold {
    inner: Rc<Inner>,
    id: u64,
}

impl Drop for Hold {
    fn drop(&mut self) {
        self.inner.holds.borrow_mut().remove(&self.id);
    }
}

/// Removes a commit's data pins when dropped (see `Shard::commit`).
pub(crate) struct Unpin<'a> {
    pub inner: &'a Inner,
    pub keys: Vec<(u32, u64)>,
}

impl Drop for Unpin<'_> {
    fn drop(&mut self) {
        let mut pins = self.inner.pins.borrow_mut();
        for k in &self.keys {
            pins.remove(k);
        }
    }
}

impl Inner {
    fn not_writable(&self) -> IoError {
        if self.no_space.get() {
            IoError::NoSpace
        } else {
            IoError::ShardFailed
        }
    }

    /// Free bytes now: at the last check, less what was appended since,
    /// plus the spares (a roll takes them before any new file).
    pub(crate) fn free_estimate(&self) -> u64 {
        let appended = self.log.borrow().counters.bytes_appended;
        self.free_bytes
            .get()
            .saturating_sub(appended.saturating_sub(self.appended_at_check.get()))
            .saturating_add(self.spare_bytes())
    }

    /// Refuses new data above the high-water mark.
    fn check_data_space(&self, len: u64) -> Result<(), IoError> {
        if self.log.borrow().mode != Mode::Writable {
            return Err(self.not_writable());
        }
        if self.free_estimate() < self.opts.data_reserve_bytes.saturating_add(len) {
            return Err(IoError::NoSpace);
        }
        Ok(())
    }

    /// Sets the free bytes the last check found (tests of low space).
    #[cfg(test)]
    pub(crate) fn set_free_bytes(&self, free: u64) {
        self.free_bytes.set(free);
        self.appended_at_check.set(self.log.borrow().counters.bytes_appended);
    }

    pub(crate) async fn refresh_free(&self) {
        if let Ok(f) = self.backend.free_bytes(&self.dir).await {
            self.free_bytes.set(f);
            self.appended_at_check
                .set(self.log.borrow().counters.bytes_appended);
        }
    }

    /// Whether an upload in progress has data in `segment`.
    pub(crate) fn pinned(&self, segment: u32) -> bool {
        let now = self.backend.now_ms();
        let timeout = PIN_TIMEOUT.as_millis() as u64;
        let mut pins = self.pins.borrow_mut();
        pins.retain(|_, at| now.saturating_sub(*at) < timeout);
        pins.range((segment, 0)..=(segment, u64::MAX)).next().is_some()
    }

    /// A data record for compaction: no high-water check (it frees space).
    /// Pinned like an upload's, from its allocation: until the move that
    /// names it is applied, no index entry does, and its segment would
    /// look like garbage to another compaction pass. The caller unpins
    /// (`Unpin`) once its moves are applied or dropped.
    pub(crate) async fn write_data_for_compaction(self: &Rc<Self>, buf: DataBuf) -> Result<Extent, IoError> {
        self.write_data_record(buf, true).await
    }

    pub(crate) fn note_corrupt_read(&self) {
        self.corrupt_reads.set(self.corrupt_reads.get() + 1);
    }

    /// Waits until log space up to `target` is durable (asking for a sync).
    pub(crate) async fn wait_durable(self: &Rc<Self>, target: u64) -> Result<(), IoError> {
        {
            let mut log = self.log.borrow_mut();
            if log.durable_upto >= target {
                return Ok(());
            }
            log.request_sync(target);
        }
        self.kick_sync();
        loop {
            {
                let log = self.log.borrow();
                if log.durable_upto >= target {
                    return Ok(());
                }
                if log.mode != Mode::Writable {
                    return Err(IoError::WriteFailed);
                }
            }
            self.changed.listen().await;
        }
    }

}

fn unix_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

