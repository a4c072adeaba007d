//! tessera-io: the per-core storage engine.
//!
//! A [`Shard`] is a directory holding an append-only log of records (4 KiB
//! aligned, except commit batches packed after the previous one's copy;
//! see [`mod@format`] for the on-disk format), checkpoints of its
//! index, and an in-memory ordered index rebuilt at open from the newest
//! checkpoint and the log after it. One shard belongs to exactly one reactor
//! thread; it is `!Send` and used from many tasks of that reactor through
//! `&self`.
//!
//! What the crate deliberately does not know: HTTP, S3, buckets, ETags. It
//! stores opaque keys, small opaque "summary" bytes kept in memory, opaque
//! "meta" bytes and object bodies kept on disk.
//!
//! Invariants the rest of the crate relies on:
//! - Nothing becomes visible in the index before its commit is on stable
//!   storage, and commits become visible in sequence order.
//! - A commit is acknowledged only after one fdatasync issued once every
//!   write up to the end of its batch had completed (group commit: commits
//!   staged while a batch is written share the next batch, and one sync
//!   serves every batch and data record that had completed). That covers
//!   the data records it references, which precede it in the log.
//! - A torn tail can only lie after the log's durable mark; an invalid
//!   record before it is corruption, reported and resynced past, never
//!   taken for the end of the log (see `recovery`).
//! - Commit metadata is on disk twice (each batch and its copy); record
//!   checksums are keyed, so object bytes cannot pass for records.
//! - The index applies puts and deletes by seq, so replaying the log over
//!   any older state (a fuzzy checkpoint) ends in the same state; two
//!   recoveries of one image give the same index.
//! - After a write or sync error every commit not yet durable fails, the
//!   log is cut back to its durable prefix and a new segment starts; reads
//!   keep working throughout; if no segment can be started (full disk) the
//!   shard is read-only and retries by itself.
//! - Every read verifies checksums: the entry's for commits, the header
//!   block and each touched 64 KiB chunk for data records.
//! - Compaction copies an entry only while it is unchanged, keeps its seq,
//!   and retires a segment only once nothing live points into it.
//!
//! Runtime: file I/O goes through monoio (io_uring); blocking filesystem
//! calls go to a per-shard I/O thread. Under monoio's legacy (epoll) driver
//! all file ops go to that thread (see `storage`). `sim` replaces the disk
//! for deterministic tests.

mod batch;
mod buf;
mod checkpoint;
mod codec;
pub mod compact;
mod data;
mod error;
pub mod event;
pub mod fsck;
pub mod format;
mod index;
mod log;
mod reap;
mod recovery;
pub mod scrub;
mod shard;
mod spare;
pub mod sim;
mod storage;

pub use buf::{AlignedBuf, DataBuf, SharedBlock};
pub use codec::{Body, Extent, Mutation};
pub use error::IoError;
pub use event::Event;
pub use format::{BLOCK, CHUNK_BYTES, MAX_DATA_BYTES};
pub use index::Entry;
pub use recovery::RecoveryStats;
pub use shard::{
    Hold, PrepareStats, Shard, ShardOptions, ShardStats, Stored, SyncLatency, MAX_SEGMENT_BYTES, STOP_CHECKPOINT_MIN_BYTES,
    SYNC_LATENCY_BUCKETS_US,
};

/// Whether this process can use io_uring, as monoio's detection reports it
/// (false under e.g. Docker's default seccomp profile, or with
/// `MONOIO_FORCE_LEGACY_DRIVER=1`). For logs; a shard decides per reactor.
pub fn io_uring_available() -> bool {
    monoio::utils::detect_uring()
}
