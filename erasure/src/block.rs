//! Block framing: the on-disk contract of an erasure-coded block.
//!
//! A block is a 48-byte header followed by its payload. All integers are
//! little-endian.
//!
//! | bytes  | field                                                     |
//! |--------|-----------------------------------------------------------|
//! | 0..4   | magic `TSEB`                                              |
//! | 4      | format version (`BLOCK_FORMAT_VERSION`, 1)                |
//! | 5      | k, data blocks per stripe (>= 1)                          |
//! | 6      | m, parity blocks per stripe                               |
//! | 7      | block index in the stripe (0..k data, k..k+m parity)      |
//! | 8..24  | object tag (u128, chosen by the writer: names the version) |
//! | 24..32 | stripe index in the object (u64)                          |
//! | 32..36 | stripe data length in bytes (u32, before padding)         |
//! | 36..40 | payload length in bytes (u32)                             |
//! | 40..48 | xxh3-64 of bytes 0..40 followed by the payload            |
//!
//! The checksum covers the header too, so a flipped bit anywhere in a block
//! is detected. The tag exists because a stale block of an older version of
//! the same object is perfectly valid on its own: mixing it into a decode
//! would give wrong bytes, so decoders accept only blocks of the tag they ask
//! for. A reader of a version it does not know refuses the block
//! (`UnsupportedVersion`), never guesses.

use crate::{Params, MAX_TOTAL_BLOCKS};

/// First four bytes of every block.
pub const BLOCK_MAGIC: [u8; 4] = *b"TSEB";
/// The block format written by this crate; readers refuse any other.
pub const BLOCK_FORMAT_VERSION: u8 = 1;
/// Size of the fixed block header, checksum included.
pub const BLOCK_HEADER_BYTES: usize = 48;
/// Payloads are padded to a multiple of this: reed-solomon-simd needs an even
/// shard size and works in 64-byte units, so a multiple of 64 spares it an
/// internal copy of the tail.
pub const PAYLOAD_ALIGN_BYTES: usize = 64;

const CHECKSUM_OFFSET: usize = 40;

/// The decoded header of a block whose checksum was verified.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockHeader {
    pub data_blocks: u8,
    pub parity_blocks: u8,
    pub block_index: u8,
    pub tag: u128,
    pub stripe_index: u64,
    pub stripe_len: u32,
    pub payload_len: u32,
}

/// Why a block was refused. Any of these makes the block count as missing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BlockError {
    #[error("block shorter than its header or its stated payload")]
    Truncated,
    #[error("block longer than its stated payload")]
    TrailingBytes,
    #[error("not a block (bad magic)")]
    BadMagic,
    #[error("unsupported block format version {0}")]
    UnsupportedVersion(u8),
    #[error("block checksum mismatch")]
    Checksum,
    #[error("block header fields are inconsistent")]
    BadHeader,
}

/// Payload bytes per block for a stripe of `stripe_len` bytes split `k` ways.
/// An empty stripe has empty payloads (nothing to code).
pub fn payload_len_for(stripe_len: usize, data_blocks: usize) -> usize {
    if stripe_len == 0 || data_blocks == 0 {
        return 0;
    }
    let per_block = stripe_len.div_ceil(data_blocks);
    per_block.div_ceil(PAYLOAD_ALIGN_BYTES) * PAYLOAD_ALIGN_BYTES
}

/// The header of the framed block for `payload`: the block is this header
/// followed by the payload, so a caller can put the two where it wants
/// them without first copying the payload into a block.
pub(crate) fn frame_header(
    params: &Params,
    block_index: u8,
    tag: u128,
    stripe_index: u64,
    stripe_len: u32,
    payload: &[u8],
) -> [u8; BLOCK_HEADER_BYTES] {
    let mut h = [0u8; BLOCK_HEADER_BYTES];
    h[0..4].copy_from_slice(&BLOCK_MAGIC);
    h[4] = BLOCK_FORMAT_VERSION;
    h[5] = params.data_blocks();
    h[6] = params.parity_blocks();
    h[7] = block_index;
    h[8..24].copy_from_slice(&tag.to_le_bytes());
    h[24..32].copy_from_slice(&stripe_index.to_le_bytes());
    h[32..36].copy_from_slice(&stripe_len.to_le_bytes());
    // Payloads are bounded by MAX_STRIPE_BYTES (checked by Params), so u32 holds them.
    h[36..CHECKSUM_OFFSET].copy_from_slice(&(payload.len() as u32).to_le_bytes());
    let sum = checksum(&h[..CHECKSUM_OFFSET], payload);
    h[CHECKSUM_OFFSET..].copy_from_slice(&sum.to_le_bytes());
    h
}

fn checksum(head: &[u8], payload: &[u8]) -> u64 {
    use std::hash::Hasher;
    let mut h = twox_hash::XxHash3_64::new();
    h.write(head);
    h.write(payload);
    h.finish()
}

fn le_u32(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(a)
}

fn le_u64(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

/// Verifies a block on its own (framing, checksum, internal consistency) and
/// returns its header and payload. This is what a scrubber calls; decoders
/// add the checks against what they expect (parameters, tag, stripe).
pub fn verify_block(block: &[u8]) -> Result<(BlockHeader, &[u8]), BlockError> {
    if block.len() < BLOCK_HEADER_BYTES {
        return Err(BlockError::Truncated);
    }
    if block[0..4] != BLOCK_MAGIC {
        return Err(BlockError::BadMagic);
    }
    if block[4] != BLOCK_FORMAT_VERSION {
        return Err(BlockError::UnsupportedVersion(block[4]));
    }
    let payload_len = le_u32(block, 36);
    let payload_end = BLOCK_HEADER_BYTES
        .checked_add(payload_len as usize)
        .ok_or(BlockError::Truncated)?;
    if block.len() < payload_end {
        return Err(BlockError::Truncated);
    }
    if block.len() > payload_end {
        return Err(BlockError::TrailingBytes);
    }
    let payload = &block[BLOCK_HEADER_BYTES..];
    if checksum(&block[..CHECKSUM_OFFSET], payload) != le_u64(block, CHECKSUM_OFFSET) {
        return Err(BlockError::Checksum);
    }
    let mut tag = [0u8; 16];
    tag.copy_from_slice(&block[8..24]);
    let header = BlockHeader {
        data_blocks: block[5],
        parity_blocks: block[6],
        block_index: block[7],
        tag: u128::from_le_bytes(tag),
        stripe_index: le_u64(block, 24),
        stripe_len: le_u32(block, 32),
        payload_len,
    };
    // A checksummed header can still be nonsense if a writer was broken;
    // refuse it here so no decoder ever indexes with it.
    let k = usize::from(header.data_blocks);
    let total = k + usize::from(header.parity_blocks);
    if k == 0
        || total > MAX_TOTAL_BLOCKS
        || usize::from(header.block_index) >= total
        || payload_len as usize != payload_len_for(header.stripe_len as usize, k)
    {
        return Err(BlockError::BadHeader);
    }
    Ok((header, payload))
}
