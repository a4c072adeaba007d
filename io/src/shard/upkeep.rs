//! Periodic upkeep of an idle or busy shard: free space, leaving
//! read-only mode, idle marks and checkpoints.

use super::*;

/// Periodic upkeep: free space, leaving read-only mode, idle marks, checkpoints.
pub(super) async fn maintain(weak: Weak<Inner>) {
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
            inner.release_spares_if_short().await;
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
