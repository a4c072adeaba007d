//! tessera-io: the per-core storage engine.
//!
//! A [`Shard`] is a directory holding an append-only log of 4 KiB aligned
//! records (see [`mod@format`] for the on-disk format) and an in-memory ordered
//! index rebuilt from that log at open. One shard belongs to exactly one
//! reactor thread; it is `!Send` and used from many tasks of that reactor
//! through `&self`.
//!
//! What the crate deliberately does not know: HTTP, S3, buckets, ETags. It
//! stores opaque keys, small opaque "summary" bytes kept in memory, opaque
//! "meta" bytes and object bodies kept on disk.
//!
//! Invariants the rest of the crate relies on:
//! - Nothing becomes visible in the index before its commit record is on
//!   stable storage, and commits become visible in sequence order.
//! - A commit is acknowledged only after one fdatasync issued once every
//!   write up to the end of its record had completed (group commit: one
//!   sync serves every committer whose write had completed). That covers the
//!   data records it references, which precede it in the log.
//! - Acknowledged records form a valid prefix of their segment; recovery
//!   stops a segment at its first invalid record. A valid commit found at
//!   recovery whose data no durable mark vouches for has that data verified
//!   before it is applied (see `recovery`), so nothing applied points at
//!   torn data.
//! - Open makes everything it recovered durable before serving, so nothing
//!   visible can be taken away by a later crash.
//! - After a write or sync error the shard accepts no more writes; reads
//!   keep working.
//! - Every read verifies checksums: the header checksum for commit records,
//!   the header block and each touched 64 KiB chunk for data records.
//!
//! Runtime: file I/O goes through monoio (io_uring). Under monoio's legacy
//! (epoll) driver file ops would run synchronously on the reactor, so each
//! shard gets its own I/O thread instead (see `disk`).
//!
//! Not done yet: compaction. Garbage from overwrites, deletes and aborted
//! uploads stays in the segments until a compactor exists. There is no index
//! checkpoint either: open rescans every segment's record headers.

mod buf;
mod codec;
mod data;
mod disk;
mod error;
pub mod event;
pub mod format;
mod index;
mod log;
mod recovery;
mod shard;

pub use buf::{AlignedBuf, DataBuf};
pub use codec::{Body, Extent, Mutation};
pub use error::IoError;
pub use event::Event;
pub use format::{BLOCK, CHUNK_BYTES, MAX_DATA_BYTES};
pub use index::Entry;
pub use recovery::RecoveryStats;
pub use shard::{Shard, ShardOptions, ShardStats, Stored, MAX_SEGMENT_BYTES};

/// Whether this process can use io_uring, as monoio's detection reports it
/// (false under e.g. Docker's default seccomp profile, or with
/// `MONOIO_FORCE_LEGACY_DRIVER=1`). For logs; a shard decides per reactor.
pub fn io_uring_available() -> bool {
    monoio::utils::detect_uring()
}
