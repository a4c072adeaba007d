//! Reading data records back: ranges with per-chunk verification (for
//! `Shard::read_extent`) and whole-record verification (for recovery).

use std::ops::Range;

use crate::buf::AlignedBuf;
use crate::codec::Extent;
use crate::storage::DiskFile;
use crate::error::IoError;
use crate::format::{
    align_up, chunk_ok, Kind, Pos, RecordHeader, ShardKey, BLOCK, CHUNK_BYTES, MAX_DATA_BYTES,
};

/// Reads exactly `len` bytes (a multiple of BLOCK) at `pos`; short is Corrupt.
pub(crate) async fn read_exact(
    file: &DiskFile,
    pos: u64,
    len: usize,
    segment: u32,
) -> Result<AlignedBuf, IoError> {
    let buf = file
        .read_at(AlignedBuf::with_capacity(len), pos, len)
        .await?;
    if buf.len() < len {
        return Err(IoError::corrupt(
            segment,
            pos,
            "short read: record past end of file",
        ));
    }
    Ok(buf)
}

/// Reads the blocks holding `[pos, pos + len)` (any offsets); the buffer
/// and where `pos` lies in it. Short is Corrupt; a file may end inside its
/// last block (a log cut at a packed batch), so only the bytes asked for
/// must be there.
pub(crate) async fn read_span(
    file: &DiskFile,
    pos: u64,
    len: usize,
    segment: u32,
) -> Result<(AlignedBuf, usize), IoError> {
    let start = crate::format::align_down(pos);
    let skip = (pos - start) as usize;
    let want = align_up((skip + len) as u64) as usize;
    let buf = file
        .read_at(AlignedBuf::with_capacity(want), start, want)
        .await?;
    if buf.len() < skip + len {
        return Err(IoError::corrupt(
            segment,
            pos,
            "short read: record past end of file",
        ));
    }
    Ok((buf, skip))
}

/// Where the data record behind `e` ends in the log.
pub(crate) fn extent_end(e: &Extent) -> Result<Pos, IoError> {
    if e.offset % BLOCK as u64 != 0 {
        return Err(IoError::InvalidExtent("unaligned extent offset"));
    }
    if e.len > MAX_DATA_BYTES as u64 {
        return Err(IoError::InvalidExtent("extent longer than a data record"));
    }
    let offset = e
        .offset
        .checked_add(BLOCK as u64 + align_up(e.len))
        .ok_or(IoError::InvalidExtent("extent offset overflows"))?;
    Ok(Pos {
        segment: e.segment,
        offset,
    })
}

fn check_header(key: &ShardKey, head_block: &[u8], e: &Extent, shard: u32) -> Result<(), IoError> {
    let h = RecordHeader::read_expect(key, head_block, Kind::Data, shard, e.segment, e.offset)
        .map_err(|what| IoError::corrupt(e.segment, e.offset, what))?;
    if h.payload_len != e.len {
        return Err(IoError::InvalidExtent(
            "extent length differs from its record",
        ));
    }
    Ok(())
}

/// Reads `range` of the data behind `e` (already checked to lie inside
/// its segment), verifying the header and every chunk the range touches.
/// The read covers whole 64 KiB chunks, so amplification is bounded.
pub(crate) async fn read_range(
    file: &DiskFile,
    key: &ShardKey,
    shard: u32,
    e: &Extent,
    range: Range<u64>,
) -> Result<Vec<u8>, IoError> {
    let (buf, at) = read_range_buf(file, key, shard, e, range).await?;
    Ok(buf.as_slice()[at].to_vec())
}

/// `read_range` without the copy: the O_DIRECT buffer read and where the
/// range lies in it (after the header block when the read took it too).
pub(crate) async fn read_range_buf(
    file: &DiskFile,
    key: &ShardKey,
    shard: u32,
    e: &Extent,
    range: Range<u64>,
) -> Result<(AlignedBuf, Range<usize>), IoError> {
    let chunk = CHUNK_BYTES as u64;
    let first_chunk = range.start / chunk;
    let from = first_chunk * chunk;
    let to = range.end.div_ceil(chunk).saturating_mul(chunk).min(e.len);
    let data_pos = e.offset + BLOCK as u64 + from;
    let data_len = align_up(to - from) as usize;
    let (head, data) = if from == 0 {
        // Header block and data are adjacent: one read.
        (
            None,
            read_exact(file, e.offset, BLOCK + data_len, e.segment).await?,
        )
    } else {
        let (h, d) = monoio::join!(
            read_exact(file, e.offset, BLOCK, e.segment),
            read_exact(file, data_pos, data_len, e.segment)
        );
        (Some(h?), d?)
    };
    let (head_block, data_bytes) = match &head {
        Some(h) => (&h.as_slice()[..BLOCK], data.as_slice()),
        None => data.as_slice().split_at(BLOCK),
    };
    check_header(key, head_block, e, shard)?;
    for (i, c) in data_bytes[..(to - from) as usize]
        .chunks(CHUNK_BYTES)
        .enumerate()
    {
        let n = first_chunk as usize + i;
        if !chunk_ok(head_block, n, c) {
            let at = e.offset + BLOCK as u64 + n as u64 * chunk;
            return Err(IoError::corrupt(e.segment, at, "data chunk checksum"));
        }
    }
    let lo = (range.start - from) as usize;
    let hi = (range.end - from) as usize;
    // Where the data starts in the buffer read: after the header block
    // when one read took both.
    let base = if head.is_none() { BLOCK } else { 0 };
    Ok((data, base + lo..base + hi))
}

/// Verifies the whole data record behind `e`: header and every chunk.
pub(crate) async fn verify_record(
    file: &DiskFile,
    key: &ShardKey,
    shard: u32,
    e: &Extent,
) -> Result<(), IoError> {
    if e.len == 0 {
        let head = read_exact(file, e.offset, BLOCK, e.segment).await?;
        return check_header(key, head.as_slice(), e, shard);
    }
    read_range(file, key, shard, e, 0..e.len).await.map(drop)
}
