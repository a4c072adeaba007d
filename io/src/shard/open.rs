//! Opening a shard: its `SHARD` file (created, checked, or marked for the
//! format upgrade), recovery of the index from checkpoint and log, the
//! first segment of the run, and the background tasks.

use super::*;

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
            dsync: opts.dsync,
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
        log.dsync = opts.dsync;
        log.retired = rec.retired;
        log.lost = rec.lost;
        let free = backend.free_bytes(dir).await.unwrap_or(u64::MAX);
        let opts_checkpoint_after = opts.checkpoint_after_bytes;
        static SERIALS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        let inner = Rc::new(Inner {
            id,
            serial: SERIALS.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
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
            prepared: RefCell::new(Default::default()),
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
            holds: RefCell::new(Default::default()),
            next_hold: Cell::new(0),
            deferred: RefCell::new(Vec::new()),
            trash: RefCell::new(std::collections::VecDeque::new()),
            reaping: Cell::new(false),
            hurry_reap: Cell::new(false),
            upgrade: RefCell::new(upgrade),
            spares: RefCell::new(Vec::new()),
        });
        inner.load_spares().await?;
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
            stale_bytes = s.stale_bytes,
            spares = inner.spares.borrow().len(),
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
        monoio::spawn(super::upkeep::maintain(weak.clone()));
        if self.inner.opts.compaction.enabled {
            monoio::spawn(crate::compact::run(weak.clone()));
        }
        if self.inner.opts.scrub.enabled {
            monoio::spawn(crate::scrub::run(weak));
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
