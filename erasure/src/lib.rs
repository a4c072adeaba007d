//! `tessera-erasure`: k+m Reed-Solomon erasure coding over stripes, with
//! self-describing checksummed blocks. Pure: no I/O, no runtime, no clock.
//!
//! An object body is cut into stripes of `Params::stripe_bytes` (the last one
//! shorter; an empty body is one empty stripe). Each stripe is split into k
//! data blocks (zero-padded to a multiple of `PAYLOAD_ALIGN_BYTES`) and m
//! parity blocks computed by `reed-solomon-simd`. Every block is framed
//! (`block`): any k good blocks of a stripe give its bytes back; a corrupt
//! block counts as missing; fewer than k good blocks is an error, never
//! wrong bytes.
//!
//! `shape` holds the pure decisions around it: the default parity for a set
//! of N disks, its quorums, and when a small object is replicated instead of
//! striped; `resolve` which version of a key a read answers when a crash
//! left a write on some shards only.

mod block;
mod codec;
mod resolve;
mod shape;

pub use block::{
    payload_len_for, verify_block, BlockError, BlockHeader, BLOCK_FORMAT_VERSION,
    BLOCK_HEADER_BYTES, BLOCK_MAGIC, PAYLOAD_ALIGN_BYTES,
};
pub use codec::{Codec, Decoded, Rebuilt};
pub use resolve::{resolve, Candidate, Resolution};
pub use shape::{default_parity, redundancy_for, Redundancy, SetShape, REPLICATE_MAX_BYTES};

/// Most blocks (k + m) one stripe may have: one per disk of an erasure set.
/// MinIO caps sets at 16 disks; 32 leaves room and keeps masks in a `u64`.
pub const MAX_TOTAL_BLOCKS: usize = 32;
/// Default stripe: 1 MiB of object data per stripe.
pub const DEFAULT_STRIPE_BYTES: usize = 1 << 20;
/// Largest stripe accepted: bounds the memory one decode holds.
pub const MAX_STRIPE_BYTES: usize = 64 << 20;

/// Errors of this crate. Nothing here panics on input bytes.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("invalid erasure parameters: k={data_blocks} m={parity_blocks} stripe={stripe_bytes} bytes ({why})")]
    BadParams {
        data_blocks: usize,
        parity_blocks: usize,
        stripe_bytes: usize,
        why: &'static str,
    },
    #[error("invalid erasure set: {disks} disks with parity {parity} ({why})")]
    BadShape {
        disks: usize,
        parity: usize,
        why: &'static str,
    },
    #[error("stripe of {len} bytes exceeds the stripe size {max}")]
    StripeTooLarge { len: usize, max: usize },
    #[error("more candidate blocks ({given}) than the limit {max}")]
    TooManyCandidates { given: usize, max: usize },
    #[error("only {good} good blocks of stripe {stripe_index}, {needed} needed")]
    TooFewBlocks {
        stripe_index: u64,
        good: usize,
        needed: usize,
    },
    #[error("reed-solomon: {0}")]
    Codec(String),
}

/// The shape of one object's coding: k data blocks, m parity blocks per
/// stripe, and the stripe size. Checked once, then trusted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Params {
    data_blocks: u8,
    parity_blocks: u8,
    stripe_bytes: u32,
}

impl Params {
    pub fn new(
        data_blocks: usize,
        parity_blocks: usize,
        stripe_bytes: usize,
    ) -> Result<Self, Error> {
        let bad = |why| Error::BadParams {
            data_blocks,
            parity_blocks,
            stripe_bytes,
            why,
        };
        if data_blocks == 0 {
            return Err(bad("k must be at least 1"));
        }
        if data_blocks + parity_blocks > MAX_TOTAL_BLOCKS {
            return Err(bad("k + m exceeds MAX_TOTAL_BLOCKS"));
        }
        if stripe_bytes == 0 || stripe_bytes > MAX_STRIPE_BYTES {
            return Err(bad("stripe size must be in 1..=MAX_STRIPE_BYTES"));
        }
        Ok(Params {
            data_blocks: data_blocks as u8,
            parity_blocks: parity_blocks as u8,
            stripe_bytes: stripe_bytes as u32,
        })
    }

    pub fn data_blocks(&self) -> u8 {
        self.data_blocks
    }
    pub fn parity_blocks(&self) -> u8 {
        self.parity_blocks
    }
    pub fn total_blocks(&self) -> usize {
        usize::from(self.data_blocks) + usize::from(self.parity_blocks)
    }
    pub fn stripe_bytes(&self) -> usize {
        self.stripe_bytes as usize
    }

    /// Stripes of an object of `object_len` bytes; an empty object has one
    /// (empty) stripe so that its blocks still exist and prove the version.
    pub fn stripe_count(&self, object_len: u64) -> u64 {
        object_len.div_ceil(u64::from(self.stripe_bytes)).max(1)
    }

    /// Byte range of stripe `stripe_index` within the object, or `None` past its end.
    pub fn stripe_range(&self, object_len: u64, stripe_index: u64) -> Option<std::ops::Range<u64>> {
        if stripe_index >= self.stripe_count(object_len) {
            return None;
        }
        let start = stripe_index * u64::from(self.stripe_bytes);
        Some(start..(start + u64::from(self.stripe_bytes)).min(object_len))
    }

    /// Stripes holding bytes `range` of an object of `object_len` bytes
    /// (what a range read decodes); empty for an empty or inverted range.
    pub fn stripes_for(
        &self,
        object_len: u64,
        range: std::ops::Range<u64>,
    ) -> std::ops::Range<u64> {
        let end = range.end.min(object_len);
        if range.start >= end {
            return 0..0;
        }
        let stripe = u64::from(self.stripe_bytes);
        range.start / stripe..end.div_ceil(stripe)
    }

    /// Where the block of stripe `stripe_index` starts in one disk's
    /// stream of an object's blocks (its blocks of stripes 0, 1, ... back
    /// to back; only the last stripe may be shorter).
    pub fn block_offset(&self, stripe_index: u64) -> u64 {
        stripe_index.saturating_mul(self.block_bytes(self.stripe_bytes()) as u64)
    }

    /// Bytes of one framed block of a stripe of `stripe_len` bytes.
    pub fn block_bytes(&self, stripe_len: usize) -> usize {
        BLOCK_HEADER_BYTES + payload_len_for(stripe_len, usize::from(self.data_blocks))
    }
}
