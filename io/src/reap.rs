//! The removal of retired segment files, a step at a time with pauses
//! (compaction retires a segment: its retire op is durable, its file
//! renamed and queued here, `compact::retire`).

use std::rc::{Rc, Weak};
use std::time::Duration;

use crate::shard::Inner;

/// Queues a trashed file for `reap`, starting that task if it is not running.
pub(crate) fn queue(inner: &Rc<Inner>, t: crate::storage::Trash) {
    inner.trash.borrow_mut().push_back(t);
    if !inner.reaping.replace(true) {
        monoio::spawn(reap(Rc::downgrade(inner)));
    }
}

/// The removal of retired segment files (`Backend::cut_trash`), one step
/// at a time, each followed by a pause of `REAP_PAUSE` times the step's
/// length: the steps' journal commits delay the foreground's syncs, and
/// all of a 1 GiB file's steps in a row cut the rate of 4 KiB PUTs at 64
/// connections to a third for the second they took, and lifted their p99
/// to 5 to 7 times p50 over a whole 8 s run. No pause while space is
/// short or more than a segment waits (`reap_in_haste`), or while an
/// explicit compaction waits (`reap_now`). A stop
/// meanwhile leaves the rest to recovery, which deletes trashed files.
pub(crate) async fn reap(weak: Weak<Inner>) {
    loop {
        let Some(inner) = weak.upgrade() else { return };
        let Some(t) = inner.trash.borrow_mut().pop_front() else {
            inner.reaping.set(false);
            inner.hurry_reap.set(false);
            return;
        };
        let started = std::time::Instant::now();
        match inner.backend.cut_trash(t).await {
            Ok(Some(t)) => inner.trash.borrow_mut().push_front(t),
            Ok(None) => {}
            Err(e) => tracing::warn!(shard = inner.id, error = %e, "cannot remove a retired segment file; the next start deletes it"),
        }
        if reap_in_haste(&inner) {
            drop(inner);
            crate::sim::yield_now().await;
            continue;
        }
        let pause = started.elapsed().saturating_mul(REAP_PAUSE).clamp(REAP_PAUSE_MIN, REAP_PAUSE_MAX);
        let backend = inner.backend.clone();
        drop(inner);
        backend.sleep(pause).await;
    }
}

/// Pause after a step of `reap`, in multiples of the step's length: the
/// steps hold the filesystem's journal about a ninth of the time.
const REAP_PAUSE: u32 = 8;
const REAP_PAUSE_MIN: Duration = Duration::from_millis(1);
const REAP_PAUSE_MAX: Duration = Duration::from_millis(50);
/// Free space, in segments above the data reserve, below which retired
/// files are removed without pauses.
const REAP_HEADROOM_SEGMENTS: u64 = 4;

/// Whether retired files must go without pauses: an explicit compaction
/// waits for them, free space above the reserve is short, or more than a
/// segment's worth waits. Sustained overwrites retire segments faster than
/// the pauses' pace (1 MiB PUTs at 0.9 GB/s let 16 GB wait with pauses
/// alone), and there removing each at once costs less: with pauses that
/// shrink as files wait, such PUTs ran 11% slower in two runs of three.
fn reap_in_haste(inner: &Inner) -> bool {
    let segment = inner.opts.segment_size_bytes;
    let free = inner.free_estimate().saturating_sub(inner.opts.data_reserve_bytes);
    inner.hurry_reap.get() || free < segment.saturating_mul(REAP_HEADROOM_SEGMENTS) || retired_pending(inner) > segment
}

/// Bytes the retired files queued for removal still hold.
pub(crate) fn retired_pending(inner: &Inner) -> u64 {
    inner.trash.borrow().iter().map(|t| t.len).sum()
}

/// Removes the retired files still queued at once, and waits until they
/// are gone (an explicit compaction frees its space before it returns).
pub(crate) async fn reap_now(inner: &Inner) {
    if !inner.reaping.get() {
        return;
    }
    inner.hurry_reap.set(true);
    while inner.reaping.get() {
        inner.backend.sleep(Duration::from_millis(1)).await;
    }
}
