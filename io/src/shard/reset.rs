//! Faults of the write path: a failed write or sync fails what is not
//! durable, cuts this run's segments back to the durable prefix and starts
//! a new segment; a shard that cannot write stays read-only and retries.

use super::*;

impl Inner {
    /// A write or sync failed: fail what is not durable and reset the log.
    pub(super) fn fail(self: &Rc<Self>, err: &IoError) {
        {
            let mut log = self.log.borrow_mut();
            if log.mode != Mode::Writable {
                return;
            }
            log.mode = Mode::Resetting;
            log.generation += 1;
            // The cut may take batches compaction's scan was told about,
            // and their places may hold others: it reads segments whole.
            for seg in log.segments.values_mut() {
                seg.keep_batches = None;
            }
            log.counters.resets += 1;
            log.fail_pending();
        }
        self.no_space.set(err.is_no_space());
        self.changed.notify_all();
        let inner = self.clone();
        monoio::spawn(async move { inner.reset().await });
    }

    /// Cuts this run's segments back to the durable prefix and starts a new
    /// segment; read-only if that fails.
    pub(super) async fn reset(self: Rc<Self>) {
        loop {
            let busy = {
                let log = self.log.borrow();
                log.writes_in_flight > 0 || log.sync_in_flight || self.rolling.get()
            };
            if !busy {
                break;
            }
            self.changed.listen().await;
        }
        let r = self.cut_to_durable().await;
        let r = match r {
            Ok(()) => {
                self.log.borrow_mut().mode = Mode::Writable;
                self.roll().await
            }
            Err(e) => Err(e),
        };
        match r {
            Ok(()) => {
                self.no_space.set(false);
                tracing::warn!(shard = self.id, "log reset after an I/O error; writing again");
            }
            Err(e) => {
                self.no_space.set(self.no_space.get() || e.is_no_space());
                self.log.borrow_mut().mode = Mode::ReadOnly;
                tracing::error!(shard = self.id, error = %e, "log reset failed; the shard is read-only until a new segment can be started");
            }
        }
        self.changed.notify_all();
    }

    pub(super) async fn cut_to_durable(self: &Rc<Self>) -> Result<(), IoError> {
        // Zeros being written ahead would land after the cut.
        self.prepare_idle().await;
        let plan: Vec<(u32, u64, u64, Rc<DiskFile>)> = {
            let log = self.log.borrow();
            log.segments
                .iter()
                .filter_map(|(n, s)| {
                    let vs = s.vstart?;
                    let keep = log.durable_upto.saturating_sub(vs).min(s.end);
                    (keep < s.end).then(|| (*n, keep, s.end, s.file.clone()))
                })
                .collect()
        };
        *self.next_file.borrow_mut() = None;
        // Newest first, each step durable before the next: a crash in the
        // middle leaves a log that is a prefix of the old one, never one
        // with a hole (a torn tail recovery handles).
        for (n, keep, end, file) in plan.into_iter().rev() {
            tracing::debug!(shard = self.id, segment = n, keep, end, "reset: cutting a segment back to the durable prefix");
            if keep == 0 {
                drop(file);
                // Forgotten only once the removal is durable: a cut that
                // fails here is redone before the shard writes again.
                match self.backend.remove(&self.dir.join(segment_file_name(n))).await {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e.into()),
                    _ => {}
                }
                self.backend.open_dir(&self.dir).await?.sync_all().await?;
                self.log.borrow_mut().segments.remove(&n);
                self.forget_prepared(n, 0);
                continue;
            }
            file.truncate(keep).await?;
            self.forget_prepared(n, keep);
            if let Some(s) = self.log.borrow_mut().segments.get_mut(&n) {
                s.end = keep;
            }
        }
        self.log.borrow_mut().restart_space();
        Ok(())
    }

    /// Tries to leave read-only mode (background, once space may be back).
    pub(crate) async fn retry_writable(self: &Rc<Self>) {
        if self.log.borrow().mode != Mode::ReadOnly {
            return;
        }
        // A reset that failed part way (an I/O error while cutting) left
        // segments longer than the durable prefix: finish the cut first, or
        // the next segment would name a predecessor end that never was
        // durable. Only this run's segments are cut (a read-only open has
        // none).
        if let Err(e) = self.cut_to_durable().await {
            tracing::debug!(shard = self.id, error = %e, "still read-only (cutting back to the durable prefix)");
            return;
        }
        self.log.borrow_mut().mode = Mode::Writable;
        match self.roll().await {
            Ok(()) => {
                self.no_space.set(false);
                tracing::warn!(shard = self.id, "shard writable again");
            }
            Err(e) => {
                self.log.borrow_mut().mode = Mode::ReadOnly;
                tracing::debug!(shard = self.id, error = %e, "still read-only");
            }
        }
        self.changed.notify_all();
    }
}
