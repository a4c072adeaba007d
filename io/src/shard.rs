//! The shard: its public API and the tasks that drive writes and syncs.
//!
//! Writes and syncs run as spawned tasks, not inside the caller's future, so
//! a caller that gives up (a dropped request) cannot leave an allocated
//! range unwritten or a sync half-done, which would stall the durable
//! prefix for everyone.

use std::cell::{Cell, RefCell};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::buf::{AlignedBuf, DataBuf};
use crate::codec::{self, Body, Extent, MutView, Mutation};
use crate::data;
use crate::disk::{open_file, Backend, DiskFile};
use crate::error::IoError;
use crate::event::Event;
use crate::format::{
    align_up, segment_file_name, Kind, Pos, RecordHeader, ShardFile, BLOCK, FORMAT_VERSION,
    HEADER_BYTES, MAX_DATA_BYTES, SHARD_FILE, SHARD_FILE_BYTES,
};
use crate::index::{Entry, Index, Loc};
use crate::log::{IndexOp, Log, PendingCommit, Slot, SyncPlan};
use crate::recovery::{self, RecoveryStats};

/// Segments may not pass this: record locations are kept in 32-bit block numbers.
pub const MAX_SEGMENT_BYTES: u64 = (u32::MAX as u64) * BLOCK as u64;

#[derive(Clone, Debug)]
pub struct ShardOptions {
    /// A new segment starts when the active one would pass this size.
    pub segment_size_bytes: u64,
    /// Try O_DIRECT; falls back to buffered I/O + fdatasync where refused.
    pub direct_io: bool,
}

impl Default for ShardOptions {
    fn default() -> Self {
        ShardOptions {
            segment_size_bytes: 1 << 30,
            direct_io: true,
        }
    }
}

/// What `Shard::load` returns: the commit record's view of a key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stored {
    pub seq: u64,
    pub summary: Vec<u8>,
    pub meta: Vec<u8>,
    pub body: Body,
}

#[derive(Clone, Debug, Default)]
pub struct ShardStats {
    /// Records appended since open: data + commit + segment records.
    pub records_appended: u64,
    pub data_records_appended: u64,
    pub commit_records_appended: u64,
    pub bytes_appended: u64,
    pub syncs: u64,
    /// Segment files, recovered and new.
    pub segments: u32,
    pub active_segment: u32,
    pub direct_io: bool,
    pub io_uring: bool,
    pub failed: bool,
    /// Index entries over all tables.
    pub entries: u64,
    pub next_seq: u64,
    pub recovery: RecoveryStats,
}

/// One shard of one data dir, owned by one reactor. Cloning gives another
/// handle to the same shard.
#[derive(Clone)]
pub struct Shard {
    inner: Rc<Inner>,
}

struct Inner {
    id: u32,
    dir: PathBuf,
    opts: ShardOptions,
    backend: Backend,
    dir_file: DiskFile,
    direct: Cell<bool>,
    direct_warned: Cell<bool>,
    log: RefCell<Log>,
    index: RefCell<Index>,
    /// Fires when the durable prefix advances or the shard fails.
    durable: Event,
    recovery: RecoveryStats,
}

impl Shard {
    /// Opens (creating if missing) the shard in `dir`, rebuilds its index
    /// from the segments, and starts a fresh segment for new writes.
    pub async fn open(dir: &Path, id: u32, opts: ShardOptions) -> Result<Shard, IoError> {
        let started = std::time::Instant::now();
        let mut opts = opts;
        opts.segment_size_bytes = opts
            .segment_size_bytes
            .clamp(2 * BLOCK as u64, MAX_SEGMENT_BYTES);
        std::fs::create_dir_all(dir)?;
        check_or_create_shard_file(dir, id)?;
        let backend = Backend::for_current_runtime(id)?;
        let dir_file = DiskFile::new(std::fs::File::open(dir)?, &backend)?;
        let direct = Cell::new(opts.direct_io);
        let direct_warned = Cell::new(false);
        let rec = recovery::recover(dir, id, &backend, &direct, &direct_warned).await?;
        // The last run may have crashed with completed but unsynced writes;
        // make them durable before they become visible. The highest durable
        // mark says which segments may hold any: those from its segment on.
        // (The directory entries follow with the new segment's first sync.)
        for seg in rec.segments.range(rec.mark.segment..).map(|(_, s)| s) {
            if seg.end > 0 {
                seg.file.sync_data().await?;
            }
        }
        let s = rec.stats;
        let inner = Rc::new(Inner {
            id,
            dir: dir.to_path_buf(),
            opts,
            backend,
            dir_file,
            direct,
            direct_warned,
            log: RefCell::new(Log::new(rec.segments, rec.next_seq)),
            index: RefCell::new(rec.index),
            durable: Event::default(),
            recovery: s,
        });
        inner.roll()?;
        // Make the new segment and its record durable before serving, so
        // the mark it carries vouches for everything recovered from now on.
        let end = inner.log.borrow().end_vpos();
        inner.wait_durable(end).await?;
        tracing::info!(
            shard = id,
            segments = s.segments,
            commit_records = s.commit_records,
            data_records = s.data_records,
            entries = inner.index.borrow().total(),
            read_mib = s.bytes_read >> 20,
            torn_segments = s.torn_segments,
            ignored_bytes = s.ignored_bytes,
            verified_commits = s.verified_commits,
            dropped_commits = s.dropped_commits,
            scan_ms = s.elapsed.as_millis() as u64,
            open_ms = started.elapsed().as_millis() as u64,
            direct_io = inner.direct.get(),
            io_uring = inner.backend.is_ring(),
            "shard recovered"
        );
        Ok(Shard { inner })
    }

    /// Appends a data record holding `buf`'s data. Not durable by itself: a
    /// later `commit` that references the extent makes it durable.
    pub async fn write_data(&self, buf: DataBuf) -> Result<Extent, IoError> {
        let inner = &self.inner;
        inner.check_writable()?;
        let len = buf.data_len();
        if len > MAX_DATA_BYTES {
            return Err(IoError::TooLarge);
        }
        let rec_len = BLOCK + align_up(len as u64) as usize;
        let mut rec = buf.into_record();
        rec.set_len(rec_len);
        {
            let (head, rest) = rec.as_mut_slice().split_at_mut(BLOCK);
            head.fill(0);
            rest[len..].fill(0);
            crate::format::write_chunk_sums(head, &rest[..len]);
        }
        let slot = inner.alloc(rec_len as u64)?;
        let header = RecordHeader {
            kind: Kind::Data,
            shard: inner.id,
            segment: slot.segment,
            seq: 0,
            payload_len: len as u64,
            offset: slot.offset,
            durable: Pos::default(),
        };
        header.write_and_seal(rec.as_mut_slice());
        let extent = Extent {
            segment: slot.segment,
            offset: slot.offset,
            len: len as u64,
        };
        inner.log.borrow_mut().counters.data_records += 1;
        inner.spawn_write(slot, rec).await?;
        Ok(extent)
    }

    /// Appends one commit record holding all `muts` atomically. Returns once
    /// the record and everything before it in the shard are on stable
    /// storage and the mutations are applied to the index; the result is the
    /// record's sequence number.
    pub async fn commit(&self, muts: Vec<Mutation>) -> Result<u64, IoError> {
        let inner = &self.inner;
        inner.check_writable()?;
        let payload_len = codec::encoded_len(&muts)?;
        let rec_len = align_up((HEADER_BYTES + payload_len) as u64);
        let mut rec = AlignedBuf::with_capacity(rec_len as usize);
        rec.set_len(rec_len as usize);
        codec::encode(
            &muts,
            &mut rec.as_mut_slice()[HEADER_BYTES..HEADER_BYTES + payload_len],
        );

        // Extents must lie inside records this shard wrote. They need not be
        // durable yet: this commit's sync covers them, and recovery verifies
        // the data of commits no later durable mark vouches for.
        inner.check_extents(&muts)?;
        let ops = muts.into_iter().map(index_op).collect();
        let (seq, vend) = inner.append_commit(rec, payload_len as u64, ops)?;
        inner.wait_durable(vend).await?;
        Ok(seq)
    }

    pub fn get(&self, table: u8, key: &[u8]) -> Option<Entry> {
        self.inner.index.borrow().get(table, key)
    }

    /// Reads the commit record behind `key`: its meta and body description.
    pub async fn load(&self, table: u8, key: &[u8]) -> Result<Option<Stored>, IoError> {
        let Some(entry) = self.get(table, key) else {
            return Ok(None);
        };
        let rec = self.inner.read_commit(entry.loc).await?;
        let corrupt = |what| IoError::corrupt(entry.loc.segment, entry.loc.offset(), what);
        let h = RecordHeader::decode(rec.as_slice()).map_err(corrupt)?;
        let payload = &rec.as_slice()[HEADER_BYTES..HEADER_BYTES + h.payload_len as usize];
        let muts = codec::decode(payload).map_err(corrupt)?;
        let found = muts.into_iter().rev().find_map(|m| match m {
            MutView::Put {
                table: t,
                key: k,
                summary,
                meta,
                body,
            } if t == table && k == key => Some(Stored {
                seq: h.seq,
                summary: summary.to_vec(),
                meta: meta.to_vec(),
                body: body.to_body(),
            }),
            _ => None,
        });
        found
            .map(Some)
            .ok_or_else(|| corrupt("commit record lacks the indexed key"))
    }

    /// Reads `range` (relative to the extent's data) of a data record,
    /// verifying the checksum of every 64 KiB chunk it touches.
    pub async fn read_extent(&self, e: &Extent, range: Range<u64>) -> Result<Vec<u8>, IoError> {
        if range.start > range.end || range.end > e.len {
            return Err(IoError::InvalidExtent("range outside the extent"));
        }
        let end = data::extent_end(e)?;
        let file = self.inner.segment_file(e.segment, end.offset)?;
        if range.is_empty() {
            return Ok(Vec::new());
        }
        data::read_range(&file, self.inner.id, e, range).await
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

    pub fn stats(&self) -> ShardStats {
        let log = self.inner.log.borrow();
        let c = log.counters;
        ShardStats {
            records_appended: c.data_records + c.commit_records + c.segment_records,
            data_records_appended: c.data_records,
            commit_records_appended: c.commit_records,
            bytes_appended: c.bytes_appended,
            syncs: c.syncs,
            segments: log.segments.len() as u32,
            active_segment: log.last_segment(),
            direct_io: self.inner.direct.get(),
            io_uring: self.inner.backend.is_ring(),
            failed: log.failed,
            entries: self.inner.index.borrow().total() as u64,
            next_seq: log.next_seq,
            recovery: self.inner.recovery,
        }
    }
}

fn index_op(m: Mutation) -> IndexOp {
    match m {
        Mutation::Put {
            table,
            key,
            summary,
            ..
        } => IndexOp::Put {
            table,
            key,
            summary,
        },
        Mutation::Delete { table, key } => IndexOp::Delete { table, key },
    }
}

impl Inner {
    fn check_writable(&self) -> Result<(), IoError> {
        if self.log.borrow().failed {
            return Err(IoError::ShardFailed);
        }
        Ok(())
    }

    fn check_extents(&self, muts: &[Mutation]) -> Result<(), IoError> {
        let log = self.log.borrow();
        for m in muts {
            if let Mutation::Put {
                body: Body::Extents(es),
                ..
            } = m
            {
                for e in es {
                    log.check_extent(e)?;
                }
            }
        }
        Ok(())
    }

    /// Seals the commit record `rec` (payload in place), queues its
    /// mutations for when it is durable, and starts its write. Returns its
    /// seq and the log position that must be durable to acknowledge it.
    fn append_commit(
        self: &Rc<Self>,
        mut rec: AlignedBuf,
        payload_len: u64,
        ops: Vec<IndexOp>,
    ) -> Result<(u64, u64), IoError> {
        let rec_len = rec.len() as u64;
        let slot = self.alloc(rec_len)?;
        let mut log = self.log.borrow_mut();
        let seq = log.take_seq();
        let header = RecordHeader {
            kind: Kind::Commit,
            shard: self.id,
            segment: slot.segment,
            seq,
            payload_len,
            offset: slot.offset,
            durable: log.durable_mark(),
        };
        header.write_and_seal(rec.as_mut_slice());
        let vend = slot.vpos + rec_len;
        log.push_pending(PendingCommit {
            seq,
            vend,
            loc: Loc::new(slot.segment, slot.offset, rec_len),
            ops,
        });
        log.request_sync(vend);
        log.counters.commit_records += 1;
        drop(log);
        // The write task reports errors by failing the shard; wait_durable sees it.
        drop(self.spawn_write(slot, rec));
        Ok((seq, vend))
    }

    /// Allocates room for a record, rolling to a new segment when full.
    fn alloc(self: &Rc<Self>, len: u64) -> Result<Slot, IoError> {
        self.check_writable()?;
        let size = self.opts.segment_size_bytes;
        if let Some(s) = self.log.borrow_mut().alloc(len, size) {
            return Ok(s);
        }
        self.roll()?;
        self.log
            .borrow_mut()
            .alloc(len, size)
            .ok_or(IoError::ShardFailed)
    }

    /// Creates the next segment file and appends its segment record. The
    /// directory fsync that makes the file durable rides on the next sync.
    fn roll(self: &Rc<Self>) -> Result<(), IoError> {
        let number = self.log.borrow().last_segment() + 1;
        let path = self.dir.join(segment_file_name(number));
        let file = open_file(&path, true, &self.direct, &self.direct_warned)?;
        let file = Rc::new(DiskFile::new(file, &self.backend)?);
        let mut log = self.log.borrow_mut();
        log.add_segment(number, file);
        let slot = log
            .alloc(BLOCK as u64, self.opts.segment_size_bytes)
            .ok_or(IoError::ShardFailed)?;
        log.counters.segment_records += 1;
        // At open this is the start of the new segment: recovery synced
        // everything before it, and this record says so to the next recovery.
        let durable = log.durable_mark();
        drop(log);
        let mut rec = AlignedBuf::with_capacity(BLOCK);
        rec.set_len(BLOCK);
        let header = RecordHeader {
            kind: Kind::Segment,
            shard: self.id,
            segment: number,
            seq: 0,
            payload_len: 0,
            offset: 0,
            durable,
        };
        header.write_and_seal(rec.as_mut_slice());
        drop(self.spawn_write(slot, rec));
        tracing::debug!(shard = self.id, segment = number, "segment started");
        Ok(())
    }

    /// Writes `rec` at `slot` in its own task; completion advances the
    /// completed prefix, failure fails the shard.
    fn spawn_write(
        self: &Rc<Self>,
        slot: Slot,
        rec: AlignedBuf,
    ) -> monoio::task::JoinHandle<Result<(), IoError>> {
        let inner = self.clone();
        monoio::spawn(async move {
            let len = rec.len() as u64;
            match slot.file.write_all_at(rec, slot.offset).await {
                Ok(_) => {
                    inner.log.borrow_mut().write_completed(slot.vpos, len);
                    inner.kick_sync();
                    Ok(())
                }
                Err(e) => {
                    tracing::error!(shard = inner.id, segment = slot.segment, offset = slot.offset, error = %e, "write failed; shard stops taking writes");
                    inner.fail();
                    Err(IoError::Io(e))
                }
            }
        })
    }

    fn kick_sync(self: &Rc<Self>) {
        let Some(plan) = self.log.borrow_mut().start_sync() else {
            return;
        };
        let inner = self.clone();
        monoio::spawn(async move { inner.run_sync(plan).await });
    }

    async fn run_sync(self: Rc<Self>, plan: SyncPlan) {
        if let Err(e) = self.sync_files(&plan).await {
            tracing::error!(shard = self.id, error = %e, "sync failed; shard stops taking writes");
            self.fail();
            return;
        }
        let done = self.log.borrow_mut().sync_done(&plan);
        {
            let mut index = self.index.borrow_mut();
            for p in done {
                p.apply(&mut index);
            }
        }
        self.durable.notify_all();
        self.kick_sync();
    }

    async fn sync_files(&self, plan: &SyncPlan) -> std::io::Result<()> {
        for f in &plan.files {
            f.sync_data().await?;
        }
        if !plan.new_segments.is_empty() {
            self.dir_file.sync_all().await?;
        }
        Ok(())
    }

    fn fail(&self) {
        self.log.borrow_mut().fail();
        self.durable.notify_all();
    }

    /// Waits until log space up to `target` is durable (asking for a sync).
    async fn wait_durable(self: &Rc<Self>, target: u64) -> Result<(), IoError> {
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
                if log.failed {
                    return Err(IoError::ShardFailed);
                }
            }
            self.durable.listen().await;
        }
    }

    fn segment_file(&self, segment: u32, end: u64) -> Result<Rc<DiskFile>, IoError> {
        let log = self.log.borrow();
        let seg = log
            .segments
            .get(&segment)
            .ok_or(IoError::InvalidExtent("unknown segment"))?;
        if end > seg.end {
            return Err(IoError::InvalidExtent("past the end of its segment"));
        }
        Ok(seg.file.clone())
    }

    /// Reads and verifies the commit record at `loc`.
    async fn read_commit(&self, loc: Loc) -> Result<AlignedBuf, IoError> {
        let file = self.segment_file(loc.segment, loc.offset() + loc.len())?;
        let rec = data::read_exact(&file, loc.offset(), loc.len() as usize, loc.segment).await?;
        let h = RecordHeader::read_expect(
            rec.as_slice(),
            Kind::Commit,
            self.id,
            loc.segment,
            loc.offset(),
        )
        .map_err(|what| IoError::corrupt(loc.segment, loc.offset(), what))?;
        if h.record_len() != loc.len() {
            return Err(IoError::corrupt(
                loc.segment,
                loc.offset(),
                "commit record length",
            ));
        }
        Ok(rec)
    }
}

/// Checks the shard header file, or writes it when the shard is new.
fn check_or_create_shard_file(dir: &Path, id: u32) -> Result<(), IoError> {
    let path = dir.join(SHARD_FILE);
    match std::fs::read(&path) {
        Ok(bytes) => {
            let f = ShardFile::decode(&bytes)
                .map_err(|w| IoError::Format(format!("{}: {w}", path.display())))?;
            if f.version != FORMAT_VERSION {
                return Err(IoError::Format(format!(
                    "{}: format version {} (this build reads {FORMAT_VERSION})",
                    path.display(),
                    f.version
                )));
            }
            if f.shard != id {
                return Err(IoError::Format(format!(
                    "{}: holds shard {}, expected {id}",
                    path.display(),
                    f.shard
                )));
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if recovery::has_segments(dir)? {
                return Err(IoError::Format(format!(
                    "{}: missing but segments exist",
                    path.display()
                )));
            }
            let created_unix_secs = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            let bytes = ShardFile {
                version: FORMAT_VERSION,
                shard: id,
                created_unix_secs,
            }
            .encode();
            debug_assert_eq!(bytes.len(), SHARD_FILE_BYTES);
            let tmp = dir.join(format!("{SHARD_FILE}.tmp"));
            {
                use std::io::Write;
                let mut f = std::fs::File::create(&tmp)?;
                f.write_all(&bytes)?;
                f.sync_all()?;
            }
            std::fs::rename(&tmp, &path)?;
            std::fs::File::open(dir)?.sync_all()?;
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}
