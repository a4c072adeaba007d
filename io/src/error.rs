//! Errors of the storage engine.

/// Everything that can go wrong in a shard.
#[derive(Debug, thiserror::Error)]
pub enum IoError {
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
    /// A checksum, magic, version or length on disk did not match: bitrot,
    /// a torn write, or a file that is not ours.
    #[error("corrupt {what} (segment {segment}, offset {offset})")]
    Corrupt {
        segment: u32,
        offset: u64,
        what: &'static str,
    },
    /// The shard takes no writes now: an I/O error is being handled, or it
    /// has no segment to append to (read-only after a failure it could not
    /// get past, e.g. a disk that cannot grow a file). Reads keep working;
    /// writes resume by themselves once a new segment can be started.
    #[error("shard is not taking writes (read-only after an I/O error)")]
    ShardFailed,
    /// The write was lost to an I/O error before it was durable: it was not
    /// acknowledged and may or may not appear after a restart.
    #[error("write failed before it was durable")]
    WriteFailed,
    /// The disk is above its high-water mark: new data is refused (deletes
    /// still work), until space is freed.
    #[error("not enough free space for new data")]
    NoSpace,
    /// A key, summary, meta, inline body, data record or commit exceeds its
    /// limit (see `format::MAX_*`).
    #[error("too large for a shard record")]
    TooLarge,
    /// An extent or range that does not lie inside a record this shard wrote.
    #[error("invalid extent: {0}")]
    InvalidExtent(&'static str),
    /// The record was moved by compaction (its segment is gone): look the
    /// key up again; the entry's seq says whether it is still the same.
    #[error("record moved by compaction")]
    Moved,
    /// The shard directory holds something we cannot use: another shard's
    /// header, or a format version this build does not know.
    #[error("shard format: {0}")]
    Format(String),
    /// A mirrored write (format 2 lanes) reached fewer shards than its
    /// write quorum: not acknowledged, it may or may not appear later.
    #[error("fewer shards than the write quorum took the write")]
    BelowQuorum,
}

impl IoError {
    pub(crate) fn corrupt(segment: u32, offset: u64, what: &'static str) -> IoError {
        IoError::Corrupt {
            segment,
            offset,
            what,
        }
    }

    /// Whether the error says the disk is full (ENOSPC, EDQUOT, EFBIG).
    pub fn is_no_space(&self) -> bool {
        match self {
            IoError::NoSpace => true,
            IoError::Io(e) => matches!(
                e.raw_os_error(),
                Some(libc::ENOSPC) | Some(libc::EDQUOT) | Some(libc::EFBIG)
            ),
            _ => false,
        }
    }
}
