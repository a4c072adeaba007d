//! The write path of a shard: a commit's operations, group commit (the
//! open batch written and synced in the background), data records, and
//! segment rolls (with the next segment precreated off the request path).

use super::*;

impl Inner {
    /// The operations of a client commit: deletes carry their tombstone bounds.
    pub(super) fn ops_of(&self, muts: Vec<Mutation>) -> Result<Vec<Op>, IoError> {
        let index = self.index.borrow();
        let log = self.log.borrow();
        let mut ops = Vec::with_capacity(muts.len());
        for m in muts {
            ops.push(match m {
                Mutation::Put {
                    table,
                    key,
                    summary,
                    meta,
                    body,
                } => {
                    Op::Put {
                        table,
                        key,
                        seq: None,
                        summary,
                        meta,
                        body,
                    }
                }
                Mutation::Delete { table, key } => {
                    // Unknown (0: any older segment) when a write of the key is in flight.
                    let min_seg = if log.is_pending(table, &key) {
                        0
                    } else {
                        index.min_seg(table, &key).unwrap_or(0)
                    };
                    Op::Delete {
                        table,
                        key,
                        seq: None,
                        min_seg,
                        origin: 0,
                    }
                }
            });
        }
        Ok(ops)
    }

    /// Stages `ops` as one commit and waits until it is durable and applied.
    pub(crate) async fn commit_ops(self: &Rc<Self>, ops: Vec<Op>) -> Result<u64, IoError> {
        let state = Rc::new(Cell::new(CommitState::Pending));
        let seq = {
            let mut log = self.log.borrow_mut();
            if log.mode != Mode::Writable {
                return Err(self.not_writable());
            }
            log.stage(&ops, state.clone())?
        };
        self.kick_flush();
        self.committed(&state).await?;
        Ok(seq)
    }

    /// Waits until a staged commit is durable (or failed).
    async fn committed(&self, state: &Cell<CommitState>) -> Result<(), IoError> {
        loop {
            match state.get() {
                CommitState::Durable => return Ok(()),
                CommitState::Failed => return Err(IoError::WriteFailed),
                CommitState::Pending => self.changed.listen().await,
            }
        }
    }

    /// Commits several entries staged in one step (so they go out in the
    /// same batch when they fit), and waits until all are durable. If one
    /// cannot be staged, those staged before it still commit (they are
    /// waited for) and its error is returned.
    pub(crate) async fn commit_entries(self: &Rc<Self>, entries: Vec<Vec<Op>>) -> Result<(), IoError> {
        let mut states = Vec::with_capacity(entries.len());
        let mut error = None;
        {
            let mut log = self.log.borrow_mut();
            if log.mode != Mode::Writable {
                return Err(self.not_writable());
            }
            for ops in &entries {
                let state = Rc::new(Cell::new(CommitState::Pending));
                match log.stage(ops, state.clone()) {
                    Ok(_) => states.push(state),
                    Err(e) => {
                        error = Some(e);
                        break;
                    }
                }
            }
        }
        self.kick_flush();
        for state in states {
            self.committed(&state).await?;
        }
        error.map_or(Ok(()), Err)
    }

    /// Starts writing the open batch if nothing is waiting for a sync (or it
    /// grew large), in its own task.
    pub(crate) fn kick_flush(self: &Rc<Self>) {
        let go = {
            let log = self.log.borrow();
            !self.flushing.get()
                && log.mode == Mode::Writable
                && !log.open.is_empty()
                && (log.flushed.is_empty() || log.open.entry_bytes() >= MAX_BATCH_BYTES)
        };
        if go {
            let inner = self.clone();
            self.flushing.set(true);
            monoio::spawn(async move {
                let r = inner.flush(false).await;
                inner.flushing.set(false);
                if let Err(e) = r {
                    tracing::warn!(shard = inner.id, error = %e, "batch flush failed");
                }
                inner.changed.notify_all();
                inner.kick_flush();
            });
        }
    }

    /// Writes the open batch (or, with `mark_only`, an empty one carrying the
    /// durable mark) and asks for its sync. Commits staged meanwhile go to
    /// the next batch.
    pub(crate) async fn flush(self: &Rc<Self>, mark_only: bool) -> Result<(), IoError> {
        let (batch, taken_in) = {
            let mut log = self.log.borrow_mut();
            if log.open.is_empty() && !mark_only {
                return Ok(());
            }
            let reuse = log.spare_sections.take();
            let next = log.open.successor(reuse);
            let batch = std::mem::replace(&mut log.open, next);
            // Until the batch is in `flushed`, compaction must still see the
            // data its commits name (found by the simulation, seed 265716:
            // a move to a fresh segment waited here on a roll while another
            // pass retired that segment, which looked unreferenced).
            log.allocating_data = batch.data_segments();
            (batch, log.generation)
        };
        let allocated = self.alloc_batch(&batch).await;
        // (No await from here until the batch is in `flushed` or failed.)
        self.log.borrow_mut().allocating_data.clear();
        let (slot, prefix) = match allocated {
            Ok(s) => s,
            Err(e) => {
                self.log.borrow_mut().fail_batch(batch);
                self.changed.notify_all();
                return Err(e);
            }
        };
        // A reset while allocating cut the log back: data these commits
        // reference may be gone. They fail; the slot gets an empty batch.
        let batch = if self.log.borrow().generation != taken_in {
            let empty = batch.filler();
            self.log.borrow_mut().fail_batch(batch);
            self.changed.notify_all();
            empty
        } else {
            batch
        };
        let (rec, generation) = {
            let mut log = self.log.borrow_mut();
            let at = Pos {
                segment: slot.segment,
                offset: slot.offset,
            };
            let mark = log.durable_mark();
            let copy_end = slot.offset + batch.record_len_at(slot.offset);
            if batch.keeps {
                if let Some(seg) = log.segments.get_mut(&slot.segment) {
                    match seg.keep_batches.as_mut() {
                        Some(list) if list.len() < crate::compact::MAX_KEEP_BATCHES => list.push(slot.offset),
                        _ => seg.keep_batches = None,
                    }
                }
            }
            let (rec, commits, sections) = batch.build(&self.key, self.id, at, mark, &prefix);
            log.spare_sections = sections;
            let vend = slot.vpos + slot.vlen;
            // The copy's last block, if the copy ends inside it: where the
            // next batch may start.
            log.tail = (copy_end % BLOCK as u64 != 0 && log.generation == taken_in).then(|| crate::log::PackTail {
                vend,
                bytes: rec.as_slice()[(align_down(copy_end) - slot.write_at()) as usize..(copy_end - slot.write_at()) as usize].to_vec(),
            });
            log.flushed.push_back(Flushed { vend, commits });
            log.request_sync(vend);
            log.counters.batch_records += 1;
            (rec, log.generation)
        };
        self.marked_at.set(self.log.borrow().counters.bytes_appended);
        drop(self.spawn_write(slot, rec, generation));
        Ok(())
    }

    /// Writes a data record; `pin` keeps its segment from compaction until
    /// a commit references it (pinned as soon as its place is known, before
    /// the write: compaction must never pick a segment an upload writes to).
    pub(super) async fn write_data_record(self: &Rc<Self>, buf: DataBuf, pin: bool) -> Result<Extent, IoError> {
        let len = buf.data_len();
        let rec_len = BLOCK + align_up(len as u64) as usize;
        // The data bytes are only read here (an MD5 lane may still be
        // reading them where they were received, `DataBuf::keep_alive`):
        // the header block and the padding after the data are written.
        let mut rec = buf.into_record();
        rec.zero_extend(rec_len);
        {
            let (head, data) = rec.head_and_next(BLOCK, len);
            head.fill(0);
            crate::format::write_chunk_sums(head, data);
        }
        let slot = self.alloc(rec_len as u64).await?;
        if pin {
            self.pins
                .borrow_mut()
                .insert((slot.segment, slot.offset), self.backend.now_ms());
        }
        let header = RecordHeader {
            kind: Kind::Data,
            shard: self.id,
            segment: slot.segment,
            seq: 0,
            payload_len: len as u64,
            offset: slot.offset,
            count: 0,
            durable: Pos::default(),
            version: FORMAT_VERSION,
            copy_len: 0,
        };
        // A data record's header covers its header block only.
        header.write_and_seal(&self.key, rec.range_mut(0..BLOCK));
        let extent = Extent {
            segment: slot.segment,
            offset: slot.offset,
            len: len as u64,
        };
        let generation = {
            let mut log = self.log.borrow_mut();
            log.counters.data_records += 1;
            log.generation
        };
        self.spawn_write(slot, rec, generation).await?;
        Ok(extent)
    }

    /// Allocates room for a batch (packed after the last copy when it can
    /// be), rolling to a new segment when full; and the bytes its write
    /// starts with (the copy's last block up to the batch).
    pub(crate) async fn alloc_batch(self: &Rc<Self>, batch: &crate::batch::OpenBatch) -> Result<(Slot, Vec<u8>), IoError> {
        self.alloc_with(|log, segment_size| log.alloc_batch(segment_size, |at| batch.record_len_at(at))).await
    }

    /// Allocates room for a record, rolling to a new segment when full.
    pub(crate) async fn alloc(self: &Rc<Self>, len: u64) -> Result<Slot, IoError> {
        self.alloc_with(|log, segment_size| log.alloc(len, segment_size)).await
    }

    /// The allocation loop of `alloc` and `alloc_batch`: `place` tries the
    /// active segment (None: full); a full segment is rolled, and a roll in
    /// progress is waited for.
    async fn alloc_with<T>(self: &Rc<Self>, mut place: impl FnMut(&mut crate::log::Log, u64) -> Option<T>) -> Result<T, IoError> {
        loop {
            {
                let mut log = self.log.borrow_mut();
                if log.mode != Mode::Writable {
                    return Err(self.not_writable());
                }
                if !self.rolling.get() {
                    if let Some(s) = place(&mut log, self.opts.segment_size_bytes) {
                        drop(log);
                        self.maybe_precreate();
                        self.maybe_prepare();
                        return Ok(s);
                    }
                }
            }
            if self.rolling.get() {
                self.changed.listen().await;
                continue;
            }
            self.roll().await?;
        }
    }

    /// Creates the next segment file in the background once the active
    /// one is half full, so the roll does not wait for `open(O_CREAT)`.
    pub(super) fn maybe_precreate(self: &Rc<Self>) {
        let (next, half_full) = {
            let log = self.log.borrow();
            (log.last_segment() + 1, log.active_len() > self.opts.segment_size_bytes / 2)
        };
        let have = self.next_file.borrow().as_ref().is_some_and(|(n, _)| *n == next);
        // With a spare the roll renames it instead (`spare.rs`).
        let spare = !self.spares.borrow().is_empty();
        if !half_full || have || spare || self.rolling.get() || self.precreating.replace(true) {
            return;
        }
        let inner = self.clone();
        let path = self.dir.join(segment_file_name(next));
        monoio::spawn(async move {
            let r = inner
                .backend
                .open(&path, OpenMode::CreateNew, &inner.direct, &inner.direct_warned, inner.opts.dsync)
                .await;
            inner.precreating.set(false);
            match r {
                // Only if it is still the next one (no roll or reset since).
                Ok(f) if inner.log.borrow().last_segment() + 1 == next && !inner.rolling.get() => {
                    *inner.next_file.borrow_mut() = Some((next, Rc::new(f)));
                }
                Ok(_) => {}
                Err(e) => tracing::debug!(shard = inner.id, error = %e, "could not create the next segment ahead"),
            }
        });
    }

    /// Creates the next segment and appends its segment record. The
    /// directory fsync that makes the file durable rides on the next sync.
    pub(crate) async fn roll(self: &Rc<Self>) -> Result<(), IoError> {
        // One roll at a time (an allocation's, a reset's, a retry's).
        while self.rolling.get() {
            self.changed.listen().await;
        }
        self.rolling.set(true);
        let r = self.roll_inner().await;
        self.rolling.set(false);
        self.changed.notify_all();
        r
    }

    pub(super) async fn roll_inner(self: &Rc<Self>) -> Result<(), IoError> {
        // A format-2 shard: its SHARD file says format 3 (written, synced,
        // renamed, directory synced) before the first format-3 segment, so
        // an older build refuses the shard instead of misreading it.
        let upgrade = *self.upgrade.borrow();
        if let Some(f) = upgrade {
            self.backend
                .write_small_atomic(&self.dir.join(SHARD_FILE), &f.encode())
                .await?;
            *self.upgrade.borrow_mut() = None;
            tracing::info!(shard = self.id, "shard file upgraded to format {FORMAT_VERSION} (format-2 segments stay as they are)");
        }
        self.cut_prepared_tail().await;
        let number = self.log.borrow().last_segment() + 1;
        let ready = self
            .next_file
            .borrow_mut()
            .take()
            .filter(|(n, _)| *n == number);
        let path = self.dir.join(segment_file_name(number));
        // A spare file first (its blocks are written: `spare.rs`); it
        // replaces a file created ahead for this number, if any. Once a
        // spare was tried, that file is never used: the rename may have
        // taken its name even if the spare then failed (a directory sync's
        // error), and records written to it would go to a file no name
        // leads to (the simulator, seed 908). The name's file, whichever
        // it is, is then taken emptied below.
        let tried_spare = !self.spares.borrow().is_empty();
        let spare = self.take_spare(&path).await;
        let ready = if tried_spare { None } else { ready };
        let reused = spare.as_ref().map(|(_, len)| *len);
        let file = match (spare, ready) {
            (Some((f, _)), _) => f,
            (None, Some((_, f))) => f,
            (None, None) => {
                match self
                    .backend
                    .open(&path, OpenMode::CreateNew, &self.direct, &self.direct_warned, self.opts.dsync)
                    .await
                {
                    Ok(f) => Rc::new(f),
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                        // Created ahead by a task whose result was dropped, or
                        // left by an interrupted reset: take it, emptied (old
                        // records at their old places would pass for new ones).
                        let f = self
                            .backend
                            .open(&path, OpenMode::Existing, &self.direct, &self.direct_warned, self.opts.dsync)
                            .await?;
                        f.truncate(0).await?;
                        Rc::new(f)
                    }
                    Err(e) => return Err(e.into()),
                }
            }
        };
        let (slot, rec, generation) = {
            let mut log = self.log.borrow_mut();
            if log.mode != Mode::Writable {
                // A reset began while the file was being created: the next
                // roll takes the file (see AlreadyExists above).
                return Err(self.not_writable());
            }
            let (prev_segment, prev_end) = log
                .segments
                .iter()
                .next_back()
                .map_or((0, 0), |(n, s)| (*n, s.end));
            log.add_segment(number, file);
            if let Some(len) = reused {
                self.started_in_spare(number, len);
            }
            // A file made ahead for this number (or an older one) is stale now.
            let stale = self.next_file.borrow().as_ref().is_some_and(|(n, _)| *n <= number);
            if stale {
                *self.next_file.borrow_mut() = None;
            }
            let slot = log
                .alloc(BLOCK as u64, self.opts.segment_size_bytes)
                .ok_or(IoError::ShardFailed)?;
            log.counters.segment_records += 1;
            // At open this is the start of the new segment: recovery synced
            // everything before it, and this record says so to the next one.
            let durable = log.durable_mark();
            let mut rec = AlignedBuf::with_capacity(BLOCK);
            rec.set_len(0);
            rec.zero_extend(BLOCK);
            SegmentInfo {
                prev_segment,
                prev_end,
                key: self.key,
                created_unix_secs: unix_secs(),
            }
            .write(rec.as_mut_slice());
            let header = RecordHeader {
                kind: Kind::Segment,
                shard: self.id,
                segment: number,
                seq: log.next_seq,
                payload_len: 0,
                offset: 0,
                count: 0,
                durable,
                version: FORMAT_VERSION,
                copy_len: 0,
            };
            header.write_and_seal(&self.key, rec.as_mut_slice());
            (slot, rec, log.generation)
        };
        drop(self.spawn_write(slot, rec, generation));
        tracing::debug!(shard = self.id, segment = number, "segment started");
        Ok(())
    }

    /// Writes `rec` at `slot` in its own task; completion advances the
    /// completed prefix, failure resets the log.
    pub(super) fn spawn_write(
        self: &Rc<Self>,
        slot: Slot,
        rec: AlignedBuf,
        generation: u64,
    ) -> monoio::task::JoinHandle<Result<(), IoError>> {
        let inner = self.clone();
        monoio::spawn(async move {
            let len = slot.vlen;
            let at = slot.write_at();
            inner.wait_prepared(slot.segment, at, at + rec.len() as u64).await;
            let r = slot.file.write_all_at(rec, at).await;
            let current = inner.log.borrow().generation == generation;
            match r {
                Ok(_) if current => {
                    inner.log.borrow_mut().write_completed(slot.vpos, len);
                    inner.changed.notify_all();
                    inner.kick_sync();
                    Ok(())
                }
                Ok(_) => {
                    inner.write_gone();
                    Err(IoError::WriteFailed)
                }
                Err(e) => {
                    tracing::error!(shard = inner.id, segment = slot.segment, offset = slot.offset, error = %e, "write failed; resetting the log");
                    inner.write_gone();
                    let err = IoError::Io(e);
                    if current {
                        inner.fail(&err);
                    }
                    Err(err)
                }
            }
        })
    }

    /// A write of an older generation (or a failed one) finished.
    pub(super) fn write_gone(&self) {
        let mut log = self.log.borrow_mut();
        log.writes_in_flight = log.writes_in_flight.saturating_sub(1);
        drop(log);
        self.changed.notify_all();
    }

    pub(crate) fn kick_sync(self: &Rc<Self>) {
        let Some(plan) = self.log.borrow_mut().start_sync() else {
            return;
        };
        let inner = self.clone();
        let generation = self.log.borrow().generation;
        monoio::spawn(async move { inner.run_sync(plan, generation).await });
    }

    pub(super) async fn run_sync(self: Rc<Self>, plan: SyncPlan, generation: u64) {
        let started = std::time::Instant::now();
        let r = self.sync_files(&plan).await;
        // Failed syncs too: a disk that takes seconds to fail is what an
        // operator looks for in this histogram.
        self.sync_latency.borrow_mut().record(started.elapsed());
        if self.log.borrow().generation != generation {
            self.log.borrow_mut().sync_in_flight = false;
            self.changed.notify_all();
            return;
        }
        if let Err(e) = r {
            tracing::error!(shard = self.id, error = %e, "sync failed; resetting the log");
            self.log.borrow_mut().sync_in_flight = false;
            self.fail(&IoError::Io(e));
            return;
        }
        tracing::trace!(shard = self.id, upto = plan.upto, segments = ?plan.segments, new = ?plan.new_segments, "synced");
        {
            let mut log = self.log.borrow_mut();
            let done = log.sync_done(&plan);
            let mut index = self.index.borrow_mut();
            log.apply(&mut index, done);
        }
        self.changed.notify_all();
        self.kick_flush();
        self.kick_sync();
    }

    pub(super) async fn sync_files(&self, plan: &SyncPlan) -> std::io::Result<()> {
        for f in &plan.files {
            f.sync_data().await?;
        }
        if !plan.new_segments.is_empty() {
            self.backend.open_dir(&self.dir).await?.sync_all().await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A commit naming data in a sealed segment stays visible to
    /// compaction's `stages_data_in` while its flush waits for a roll (it is
    /// then in neither the open batch nor `flushed`). The simulation found
    /// this window (seed 265716): a compaction move to a fresh segment
    /// waited here while another pass retired that segment, which looked
    /// unreferenced; the move then pointed into a removed file.
    #[test]
    fn a_batch_waiting_for_a_roll_still_names_its_data() {
        let dir = tempfile::tempdir().unwrap();
        monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
            .enable_timer()
            .build()
            .expect("runtime")
            .block_on(async {
                let opts = ShardOptions {
                    background: false,
                    data_reserve_bytes: 0,
                    ..ShardOptions::default()
                };
                let shard = Shard::open(dir.path(), 1, opts).await.unwrap();
                let inner = shard.inner.clone();
                let mut d = DataBuf::new(100);
                d.extend_from_slice(&[7; 100]);
                let e = inner.write_data_for_compaction(d).await.unwrap();
                // A compaction copy is pinned from its allocation on.
                assert!(inner.pinned(e.segment));
                // Unpinned, only the staged commit protects it now.
                shard.release(&[e]);
                assert!(!inner.pinned(e.segment));
                inner.roll().await.unwrap();
                assert!(inner.log.borrow().active_segment() > Some(e.segment));
                // A roll in progress: the flush waits in its allocation.
                inner.rolling.set(true);
                let commit = monoio::spawn({
                    let inner = inner.clone();
                    async move {
                        inner
                            .commit_ops(vec![Op::Put {
                                table: 0,
                                key: b"k".to_vec(),
                                seq: None,
                                summary: vec![],
                                meta: vec![],
                                body: Body::Extents(vec![e]),
                            }])
                            .await
                    }
                });
                for _ in 0..8 {
                    crate::sim::yield_now().await;
                }
                {
                    let log = inner.log.borrow();
                    assert!(inner.flushing.get() && log.open.is_empty() && log.flushed.is_empty(), "the flush took the batch and waits for the roll");
                    assert!(log.stages_data_in(e.segment), "a batch being allocated must still name its data");
                }
                inner.rolling.set(false);
                inner.changed.notify_all();
                commit.await.unwrap();
                assert!(inner.log.borrow().allocating_data.is_empty());
                assert_eq!(shard.get(0, b"k").map(|x| x.loc.segment > e.segment), Some(true));
            });
    }
}
