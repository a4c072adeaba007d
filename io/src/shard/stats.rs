//! What a shard reports about itself: counters, space, sync latency,
//! and what recovery found (`Shard::stats`).

use super::*;

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
    /// Zeros written ahead of the log's head (`shard/prepare.rs`).
    pub prepare: super::PrepareStats,
    /// Retired segment files kept to start new segments in (`spare.rs`),
    /// and their bytes.
    pub spare_segments: u32,
    pub spare_bytes: u64,
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

impl Shard {
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
            compaction: crate::compact::CompactionStats {
                retired_bytes_pending: crate::reap::retired_pending(inner),
                ..inner.compaction.borrow().clone()
            },
            scrub: inner.scrub.borrow().clone(),
            sync_latency: *inner.sync_latency.borrow(),
            checkpoints_written: inner.checkpoints_written.get(),
            recovery: inner.recovery,
            prepare: inner.prepared.borrow().stats,
            spare_segments: inner.spares.borrow().len() as u32,
            spare_bytes: inner.spare_bytes(),
        }
    }
}
