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

mod reset;
mod write;

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

#[derive(Clone, Debug, Default)]
pub struct ShardStats {
    pub data_records_appended: u64,
    pub batches_appended: u64,
    pub commits_appended: u64,
    pub bytes_appended: u64,
    pub syncs: u64,
    /// Log resets after I/O errors.
    pub resets: u64,
    /// Segment files, and the bytes they hold (live and garbage).
    pub segments: u32,
    pub segment_bytes: u64,
    pub live_bytes: u64,
    pub active_segment: u32,
    pub direct_io: bool,
    pub io_uring: bool,
    /// Not taking writes (read-only after an I/O error or a full disk).
    pub read_only: bool,
    /// Free bytes on the shard's filesystem at the last check.
    pub free_bytes: u64,
    /// Index entries over all tables, and their heap bytes (estimate).
    pub entries: u64,
    pub index_bytes: u64,
    pub next_seq: u64,
    /// Reads that failed a checksum (answered as errors, never wrong bytes).
    pub corrupt_reads: u64,
    pub compaction: crate::compact::CompactionStats,
    pub scrub: crate::scrub::ScrubStats,
    /// How long the log's syncs (fdatasync of its segments) took.
    pub sync_latency: SyncLatency,
    pub checkpoints_written: u64,
    pub recovery: RecoveryStats,
}

/// Upper bounds of the sync latency buckets, in microseconds (then +Inf).
pub const SYNC_LATENCY_BUCKETS_US: [u64; 12] =
    [100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 1_000_000];

/// A histogram of sync durations: counts per bucket of
/// `SYNC_LATENCY_BUCKETS_US` (not cumulative; the last is beyond them).
#[derive(Default, Clone, Copy, Debug)]
pub struct SyncLatency {
    pub buckets: [u64; SYNC_LATENCY_BUCKETS_US.len() + 1],
    pub sum_us: u64,
    pub count: u64,
}

impl SyncLatency {
    pub fn record(&mut self, d: Duration) {
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        let b = SYNC_LATENCY_BUCKETS_US.iter().position(|&x| us <= x).unwrap_or(SYNC_LATENCY_BUCKETS_US.len());
        self.buckets[b] += 1;
        self.sum_us = self.sum_us.saturating_add(us);
        self.count += 1;
    }
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
}

/// Log growth since the last checkpoint above which a clean stop writes
/// one (`Shard::prepare_stop`): replaying this much takes well under a
/// second, writing a snapshot for less is not worth the stop's time.
pub const STOP_CHECKPOINT_MIN_BYTES: u64 = 16 << 20;

/// How long an uncommitted data record keeps its segment from compaction.
pub const PIN_TIMEOUT: Duration = Duration::from_secs(3600);

impl Shard {
    /// Opens (creating if missing) the shard in `dir`, rebuilds its index
    /// from its checkpoint and log, and starts a fresh segment for new
    /// writes (or opens read-only if it cannot write one).
    pub async fn open(dir: &Path, id: u32, opts: ShardOptions) -> Result<Shard, IoError> {
        let backend = Backend::for_current_runtime(id)?;
        Self::open_with(backend, dir, id, opts).await
    }

    /// Opens the shard on a simulated disk (tests).
    pub async fn open_sim(
        disk: &Rc<SimDisk>,
        dir: &Path,
        id: u32,
        opts: ShardOptions,
    ) -> Result<Shard, IoError> {
        Self::open_with(Backend::Sim(disk.clone()), dir, id, opts).await
    }

    async fn open_with(
        backend: Backend,
        dir: &Path,
        id: u32,
        opts: ShardOptions,
    ) -> Result<Shard, IoError> {
        let started = std::time::Instant::now();
        let mut opts = opts;
        opts.segment_size_bytes = opts
            .segment_size_bytes
            .clamp(4 * BLOCK as u64, MAX_SEGMENT_BYTES);
        backend.create_dir_all(dir).await?;
        let (key, upgrade) = check_or_create_shard_file(&backend, dir, id).await?;
        let direct = Cell::new(opts.direct_io);
        let direct_warned = Cell::new(false);
        let ropts = RecoverOpts {
            repair: true,
            use_checkpoint: true,
        };
        let rec = recovery::recover(&backend, dir, id, &key, ropts, &direct, &direct_warned).await?;
        // The last run may have crashed with completed but unsynced writes;
        // make what was recovered durable before it becomes visible.
        for seg in rec.segments.range(rec.mark.segment..).map(|(_, s)| s) {
            if seg.end > 0 {
                seg.file.sync_data().await?;
            }
        }
        let s = rec.stats;
        let mut log = Log::new(rec.segments, rec.next_seq);
        log.retired = rec.retired;
        log.lost = rec.lost;
        let free = backend.free_bytes(dir).await.unwrap_or(u64::MAX);
        let opts_checkpoint_after = opts.checkpoint_after_bytes;
        let inner = Rc::new(Inner {
            id,
            dir: dir.to_path_buf(),
            opts,
            backend,
            key,
            direct,
            direct_warned,
            log: RefCell::new(log),
            index: RefCell::new(rec.index),
            changed: Event::default(),
            recovery: s,
            recovery_problems: rec.problems,
            rolling: Cell::new(false),
            precreating: Cell::new(false),
            needs_checkpoint: Cell::new(s.bytes_read >= opts_checkpoint_after / 4 && s.commits > 0),
            flushing: Cell::new(false),
            next_file: RefCell::new(None),
            free_bytes: Cell::new(free),
            appended_at_check: Cell::new(0),
            no_space: Cell::new(false),
            corrupt_reads: Cell::new(0),
            checkpoint_at: Cell::new(0),
            checkpoints_written: Cell::new(0),
            checkpointing: Cell::new(false),
            oldest_checkpoint_seq: Cell::new(rec.oldest_checkpoint_seq),
            marked_at: Cell::new(0),
            compaction: RefCell::new(Default::default()),
            stall_check: Cell::new(None),
            scrub: RefCell::new(Default::default()),
            sync_latency: RefCell::new(Default::default()),
            pins: RefCell::new(Default::default()),
            upgrade: RefCell::new(upgrade),
        });
        // A new segment for this run; its record vouches for everything
        // recovered. Without room for it the shard serves reads only.
        let started_segment = match inner.roll().await {
            Ok(()) => {
                let end = inner.log.borrow().end_vpos();
                inner.wait_durable(end).await
            }
            Err(e) => Err(e),
        };
        match started_segment {
            Ok(()) => {}
            Err(e) => {
                tracing::error!(shard = id, error = %e, "cannot start a segment; the shard is read-only until it can");
                inner.no_space.set(inner.no_space.get() || e.is_no_space());
                // A failed write may have a reset in flight: let it settle.
                while inner.log.borrow().mode == Mode::Resetting {
                    inner.changed.listen().await;
                }
                if inner.log.borrow().mode != Mode::Writable {
                    inner.log.borrow_mut().mode = Mode::ReadOnly;
                }
            }
        }
        tracing::info!(
            shard = id,
            segments = inner.log.borrow().segments.len(),
            checkpoint = s.checkpoint_seq,
            checkpoint_entries = s.checkpoint_entries,
            commits_replayed = s.commits,
            entries = inner.index.borrow().total(),
            read_mib = s.bytes_read >> 20,
            torn_bytes = s.torn_bytes,
            corrupt_regions = s.corrupt_regions,
            commits_from_copy = s.commits_from_copy,
            damaged_copies = s.damaged_copies,
            lost_commits = s.lost_commits,
            scan_ms = s.elapsed.as_millis() as u64,
            open_ms = started.elapsed().as_millis() as u64,
            direct_io = inner.direct.get(),
            io_uring = inner.backend.is_ring(),
            "shard recovered"
        );
        if s.found_corruption() {
            tracing::error!(
                shard = id,
                corrupt_regions = s.corrupt_regions,
                corrupt_bytes = s.corrupt_bytes,
                lost_commits = s.lost_commits,
                missing_segments = s.missing_segments,
                dangling_entries = s.dangling_entries,
                "shard recovered with corruption (see the warnings above; run tessera fsck)"
            );
        }
        let shard = Shard { inner };
        if shard.inner.opts.background {
            shard.start_background();
        }
        Ok(shard)
    }

    fn start_background(&self) {
        let weak = Rc::downgrade(&self.inner);
        monoio::spawn(maintain(weak.clone()));
        if self.inner.opts.compaction.enabled {
            monoio::spawn(crate::compact::run(weak.clone()));
        }
        if self.inner.opts.scrub.enabled {
            monoio::spawn(crate::scrub::run(weak));
        }
    }

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

    /// Reads the commit behind `key`: its meta and body description.
    pub async fn load(&self, table: u8, key: &[u8]) -> Result<Option<Stored>, IoError> {
        let mut last: Option<Loc> = None;
        for _ in 0..8 {
            let Some(entry) = self.get(table, key) else {
                return Ok(None);
            };
            if last == Some(entry.loc) {
                // Still pointing into a retired segment after the read
                // failed: not a move in progress (compaction repoints
                // before it retires) but a move lost with a damaged
                // region of the log (recovery counted it). The record is
                // gone: say so, never serve an older one.
                return Err(IoError::corrupt(
                    entry.loc.segment,
                    entry.loc.offset(),
                    "the record's segment was retired and its moved copy lost",
                ));
            }
            match self.inner.load_entry(table, key, entry.loc, entry.ordinal, entry.seq).await {
                Err(IoError::Moved) => last = Some(entry.loc),
                Ok(stored) => {
                    let Some(gone) = self.inner.retired_extent(&stored.body) else {
                        return Ok(Some(stored));
                    };
                    // The body lies in a retired segment. Compaction
                    // repoints an entry before it retires the segment, so
                    // if the entry is still the one read, its move was
                    // lost with a damaged region (recovery counted it as
                    // dangling): the body is gone, never served as older
                    // bytes. Otherwise a move raced this read: look again.
                    let now = self.get(table, key).map(|e| (e.loc, e.seq));
                    if now == Some((entry.loc, entry.seq)) {
                        return Err(IoError::corrupt(
                            gone.segment,
                            gone.offset,
                            "the body's segment was retired and its moved copy lost",
                        ));
                    }
                }
                Err(e) => return Err(e),
            }
        }
        Err(IoError::Moved)
    }

    /// Reads `range` (relative to the extent's data) of a data record,
    /// verifying the checksum of every 64 KiB chunk it touches. `Moved`
    /// when compaction relocated it: look the key up again.
    pub async fn read_extent(&self, e: &Extent, range: Range<u64>) -> Result<Vec<u8>, IoError> {
        if range.start > range.end || range.end > e.len {
            return Err(IoError::InvalidExtent("range outside the extent"));
        }
        let end = data::extent_end(e)?;
        let file = match self.inner.segment_file(e.segment, end.offset) {
            Ok(f) => f,
            Err(err) => {
                if matches!(err, IoError::Corrupt { .. }) {
                    self.inner.note_corrupt_read();
                }
                return Err(err);
            }
        };
        if range.is_empty() {
            return Ok(Vec::new());
        }
        let r = data::read_range(&file, &self.inner.key, self.inner.id, e, range).await;
        if matches!(r, Err(IoError::Corrupt { .. })) {
            self.inner.note_corrupt_read();
        }
        r
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

    pub fn len(&self, table: u8) -> usize {
        self.inner.index.borrow().len(table)
    }

    pub fn is_empty(&self, table: u8) -> bool {
        self.len(table) == 0
    }

    pub fn id(&self) -> u32 {
        self.inner.id
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
        self.mark().await
    }

    /// Runs one compaction pass now (tests and operators).
    pub async fn compact_once(&self) -> Result<bool, IoError> {
        crate::compact::compact_once(&self.inner, true).await
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

    pub fn stats(&self) -> ShardStats {
        let inner = &self.inner;
        let log = inner.log.borrow();
        let c = log.counters;
        let index = inner.index.borrow();
        let entries = index.total() as u64;
        let (segment_bytes, live_bytes) = log.space();
        ShardStats {
            data_records_appended: c.data_records,
            batches_appended: c.batch_records,
            commits_appended: c.commits,
            bytes_appended: c.bytes_appended,
            syncs: c.syncs,
            resets: c.resets,
            segments: log.segments.len() as u32,
            segment_bytes,
            live_bytes,
            active_segment: log.active_segment().unwrap_or(0),
            direct_io: inner.direct.get(),
            io_uring: inner.backend.is_ring(),
            read_only: log.mode != Mode::Writable,
            free_bytes: inner.free_estimate(),
            entries,
            // Element (40 bytes) plus its heap block; B-tree node overhead not counted.
            index_bytes: entries * 40 + index.entry_heap_bytes(),
            next_seq: log.next_seq,
            corrupt_reads: inner.corrupt_reads.get(),
            compaction: inner.compaction.borrow().clone(),
            scrub: inner.scrub.borrow().clone(),
            sync_latency: *inner.sync_latency.borrow(),
            checkpoints_written: inner.checkpoints_written.get(),
            recovery: inner.recovery,
        }
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

    /// The first extent of `body` in a segment compaction has retired.
    fn retired_extent(&self, body: &Body) -> Option<Extent> {
        let Body::Extents(es) = body else { return None };
        let log = self.log.borrow();
        es.iter()
            .find(|e| !log.segments.contains_key(&e.segment) && log.retired.contains(&e.segment))
            .copied()
    }

    pub(crate) fn free_estimate(&self) -> u64 {
        let appended = self.log.borrow().counters.bytes_appended;
        self.free_bytes
            .get()
            .saturating_sub(appended.saturating_sub(self.appended_at_check.get()))
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

    pub(crate) fn segment_file(&self, segment: u32, end: u64) -> Result<Rc<DiskFile>, IoError> {
        let log = self.log.borrow();
        let Some(seg) = log.segments.get(&segment) else {
            if log.retired.contains(&segment) {
                return Err(IoError::Moved);
            }
            if log.lost.contains(&segment) {
                return Err(IoError::corrupt(segment, 0, "the segment is gone (its retirement or moves were lost)"));
            }
            return Err(IoError::InvalidExtent("unknown segment"));
        };
        if end > seg.end {
            if seg.vstart.is_none() {
                // A segment of an earlier run ends where recovery found its
                // valid bytes end: an entry naming data past that lost it to
                // damage recovery cut away (found by the simulation, seed
                // 404541: rot in a segment's first blocks). Corrupt, counted.
                return Err(IoError::corrupt(segment, seg.end, "data past the valid end of its segment (damaged)"));
            }
            return Err(IoError::InvalidExtent("past the end of its segment"));
        }
        Ok(seg.file.clone())
    }

    /// Reads and verifies the commit entry at `loc`; falls back to the
    /// batch's copy when the entry is damaged. The bytes start at the entry.
    pub(crate) async fn read_entry(&self, loc: Loc) -> Result<(AlignedBuf, usize, Loc), IoError> {
        let file = self.segment_file(loc.segment, loc.offset() + loc.len as u64)?;
        let (buf, skip) = data::read_span(&file, loc.offset(), loc.len as usize, loc.segment).await?;
        let b = &buf.as_slice()[skip..];
        let pos = Pos {
            segment: loc.segment,
            offset: loc.offset(),
        };
        // (The entry's seq is its commit's; an operation moved by compaction
        // keeps its own older seq, so only the place and the tag are checked.)
        let good = EntryHeader::decode(b, b.len())
            .ok()
            .filter(|h| h.total_len() == loc.len as usize)
            .is_some_and(|h| h.verify(&self.key, b, self.id, pos));
        if good {
            return Ok((buf, skip, loc));
        }
        self.note_corrupt_read();
        tracing::error!(shard = self.id, segment = loc.segment, offset = loc.offset, "commit entry fails its checksum; trying its copy");
        match recovery::find_copy(&file, &self.key, self.id, loc).await? {
            Some((copy_loc, bytes)) => Ok((bytes, 0, copy_loc)),
            None => Err(IoError::corrupt(loc.segment, loc.offset(), "commit entry (and its copy)")),
        }
    }

    /// The operation `ordinal` of the commit at `loc`, owned.
    pub(crate) async fn load_op(&self, loc: Loc, ordinal: u16) -> Result<(Op, bool), IoError> {
        let (buf, skip, at) = self.read_entry(loc).await?;
        let b = &buf.as_slice()[skip..];
        let corrupt = |what| IoError::corrupt(at.segment, at.offset(), what);
        let h = EntryHeader::decode(b, b.len()).map_err(corrupt)?;
        let views = codec::decode(&b[ENTRY_HEADER_BYTES..h.total_len()], h.count).map_err(corrupt)?;
        let view = *views.get(ordinal as usize).ok_or_else(|| corrupt("operation ordinal"))?;
        let meta_only = recovery::is_meta_only(b);
        match view {
            OpView::Put {
                body: codec::BodyView::Digest { .. },
                table,
                key,
                seq,
                summary,
                meta,
            } => Ok((
                Op::Put {
                    table,
                    key: key.to_vec(),
                    seq,
                    summary: summary.to_vec(),
                    meta: meta.to_vec(),
                    body: Body::Inline(Vec::new()),
                },
                true,
            )),
            v => v
                .to_op()
                .map(|op| (op, meta_only))
                .ok_or_else(|| corrupt("operation body")),
        }
    }

    async fn load_entry(
        &self,
        table: u8,
        key: &[u8],
        loc: Loc,
        ordinal: u16,
        seq: u64,
    ) -> Result<Stored, IoError> {
        let corrupt = |what| IoError::corrupt(loc.segment, loc.offset(), what);
        let (op, meta_only) = self.load_op(loc, ordinal).await?;
        match op {
            Op::Put {
                table: t,
                key: k,
                summary,
                meta,
                body,
                ..
            } if t == table && k == key => {
                if meta_only && matches!(body, Body::Inline(_)) {
                    // Only the metadata survived: the inline body is lost.
                    return Err(corrupt("inline body lost with its commit entry"));
                }
                Ok(Stored {
                    seq,
                    summary,
                    meta,
                    body,
                })
            }
            _ => Err(corrupt("commit entry lacks the indexed key")),
        }
    }
}

fn unix_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Periodic upkeep: free space, leaving read-only mode, idle marks, checkpoints.
async fn maintain(weak: Weak<Inner>) {
    const TICK: Duration = Duration::from_millis(250);
    let mut ticks = 0u64;
    loop {
        let backend = match weak.upgrade() {
            Some(inner) => inner.backend.clone(),
            None => return,
        };
        backend.sleep(TICK).await;
        let Some(inner) = weak.upgrade() else { return };
        ticks += 1;
        if ticks % 4 == 0 {
            inner.refresh_free().await;
            inner.retry_writable().await;
        }
        // An idle shard writes one empty batch carrying the durable mark,
        // so a damaged last batch is never mistaken for a torn one.
        let (appended, idle) = {
            let log = inner.log.borrow();
            (
                log.counters.bytes_appended,
                log.open.is_empty() && log.flushed.is_empty() && log.mode == Mode::Writable,
            )
        };
        if idle && appended > inner.marked_at.get() && ticks % 4 == 0 && !inner.flushing.replace(true) {
            let r = inner.flush(true).await;
            inner.flushing.set(false);
            inner.kick_flush();
            if let Err(e) = r {
                tracing::debug!(shard = inner.id, error = %e, "idle mark not written");
            }
        }
        let since = appended.saturating_sub(inner.checkpoint_at.get());
        let due = since >= inner.opts.checkpoint_after_bytes || (inner.needs_checkpoint.get() && since > 0);
        if due && !inner.checkpointing.get() && inner.log.borrow().mode == Mode::Writable {
            match inner.write_checkpoint().await {
                Ok(()) => inner.needs_checkpoint.set(false),
                Err(e) => tracing::warn!(shard = inner.id, error = %e, "checkpoint failed"),
            }
        }
    }
}

/// Checks the shard header file, or writes it when the shard is new; its
/// key, and the file to write when the shard is of an older format.
async fn check_or_create_shard_file(backend: &Backend, dir: &Path, id: u32) -> Result<(ShardKey, Option<ShardFile>), IoError> {
    let path = dir.join(SHARD_FILE);
    match backend.read_small(&path).await? {
        Some(bytes) => {
            let f = ShardFile::decode(&bytes)
                .map_err(|w| IoError::Format(format!("{}: {w}", path.display())))?;
            if f.shard != id {
                return Err(IoError::Format(format!(
                    "{}: holds shard {}, expected {id}",
                    path.display(),
                    f.shard
                )));
            }
            let upgrade = (f.version != FORMAT_VERSION).then_some(ShardFile {
                version: FORMAT_VERSION,
                ..f
            });
            Ok((f.key, upgrade))
        }
        None => {
            if !recovery::list_segments(backend, dir).await?.is_empty() {
                return Err(IoError::Format(format!(
                    "{}: missing but segments exist (run tessera fsck)",
                    path.display()
                )));
            }
            let key = new_key()?;
            let bytes = ShardFile {
                version: FORMAT_VERSION,
                shard: id,
                created_unix_secs: unix_secs(),
                key,
            }
            .encode();
            backend.write_small_atomic(&path, &bytes).await?;
            Ok((key, None))
        }
    }
}

fn new_key() -> Result<ShardKey, IoError> {
    let mut key = [0u8; 16];
    let f = std::fs::File::open("/dev/urandom").and_then(|mut f| {
        use std::io::Read;
        f.read_exact(&mut key)
    });
    match f {
        Ok(()) => Ok(key),
        Err(e) => Err(IoError::Io(e)),
    }
}
