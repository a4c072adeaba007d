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
    /// An earlier write or sync failed; the shard takes no more writes (its
    /// durable prefix could not advance past the hole). Reads keep working.
    #[error("shard failed after an earlier write or sync error; it accepts no more writes")]
    ShardFailed,
    /// A key, summary, meta, inline body, data record or commit exceeds its
    /// limit (see `format::MAX_*`).
    #[error("too large for a shard record")]
    TooLarge,
    /// An extent or range that does not lie inside a record this shard wrote.
    #[error("invalid extent: {0}")]
    InvalidExtent(&'static str),
    /// The shard directory holds something we cannot use: another shard's
    /// header, or a format version this build does not know.
    #[error("shard format: {0}")]
    Format(String),
}

impl IoError {
    pub(crate) fn corrupt(segment: u32, offset: u64, what: &'static str) -> IoError {
        IoError::Corrupt {
            segment,
            offset,
            what,
        }
    }
}
