//! Encoding a stripe into framed blocks, decoding it from any k good ones,
//! rebuilding the blocks that are missing or corrupt.

use reed_solomon_simd::{ReedSolomonDecoder, ReedSolomonEncoder};

use std::borrow::Cow;

use crate::block::{frame_header, payload_len_for, verify_block};
use crate::{Error, Params, MAX_TOTAL_BLOCKS};

/// Most candidate blocks one decode looks at: one per disk, plus as many
/// again for stale or misplaced copies a caller may pass along.
const MAX_CANDIDATES: usize = 2 * MAX_TOTAL_BLOCKS;

/// What a decode found, beside the bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decoded {
    /// The stripe's data length (the bytes written to the output).
    pub stripe_len: usize,
    /// Bit i set: no good block with index i was given, so block i needs a
    /// rewrite for the stripe to be at full redundancy.
    pub lacking: u64,
    /// Candidates refused: corrupt, of another version or stripe, of other
    /// parameters, or duplicates of an index already held.
    pub refused: usize,
}

impl Decoded {
    /// Whether every block of the stripe was present and good.
    pub fn is_complete(&self) -> bool {
        self.lacking == 0
    }
}

/// Blocks rebuilt by `Codec::reconstruct_stripe`, ready to be written back.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Rebuilt {
    /// `(block index, framed block)` for every index that was lacking.
    pub blocks: Vec<(u8, Vec<u8>)>,
}

/// A coder for one set of parameters. It keeps the reed-solomon-simd
/// encoder and decoder (and their work memory) between stripes, so a
/// stream of stripes allocates only once; one `Codec` per reactor, not shared.
pub struct Codec {
    params: Params,
    encoder: Option<ReedSolomonEncoder>,
    decoder: Option<ReedSolomonDecoder>,
}

struct Good<'a> {
    stripe_len: u32,
    payload: &'a [u8],
}

impl Codec {
    pub fn new(params: Params) -> Self {
        Codec {
            params,
            encoder: None,
            decoder: None,
        }
    }

    pub fn params(&self) -> Params {
        self.params
    }

    fn k(&self) -> usize {
        usize::from(self.params.data_blocks())
    }

    fn m(&self) -> usize {
        usize::from(self.params.parity_blocks())
    }

    /// Encodes stripe `stripe_index` of the object version `tag` into k + m
    /// framed blocks in `out` (resized to k + m; its buffers are reused).
    pub fn encode_stripe(
        &mut self,
        tag: u128,
        stripe_index: u64,
        data: &[u8],
        out: &mut Vec<Vec<u8>>,
    ) -> Result<(), Error> {
        let total = self.k() + self.m();
        out.resize_with(total, Vec::new);
        out.truncate(total);
        for block in out.iter_mut() {
            block.clear();
        }
        self.encode_stripe_to(tag, stripe_index, data, |i, header, payload| {
            if let Some(block) = out.get_mut(i) {
                block.reserve(header.len() + payload.len());
                block.extend_from_slice(header);
                block.extend_from_slice(payload);
            }
        })
    }

    /// Encodes stripe `stripe_index` of the object version `tag` and hands
    /// each of its k + m framed blocks to `put` as (block index, header,
    /// payload), in index order: the block is the header followed by the
    /// payload. A data block's payload is the stripe's own bytes (padded
    /// only at the stripe's end), so a caller appending blocks to streams
    /// copies each byte once.
    pub fn encode_stripe_to(
        &mut self,
        tag: u128,
        stripe_index: u64,
        data: &[u8],
        mut put: impl FnMut(usize, &[u8], &[u8]),
    ) -> Result<(), Error> {
        let (k, m) = (self.k(), self.m());
        if data.len() > self.params.stripe_bytes() {
            return Err(Error::StripeTooLarge {
                len: data.len(),
                max: self.params.stripe_bytes(),
            });
        }
        let p = self.params;
        let stripe_len = data.len() as u32;
        let shard = payload_len_for(data.len(), k);
        let block = |i: usize, payload: &[u8], put: &mut dyn FnMut(usize, &[u8], &[u8])| {
            let header = frame_header(&p, i as u8, tag, stripe_index, stripe_len, payload);
            put(i, &header, payload);
        };
        // A data block's payload is its slice of the stripe; zero padding is
        // part of the payload (the checksum and the parity cover it), and
        // only the last data blocks need it.
        let payloads: Vec<Cow<'_, [u8]>> = (0..k)
            .map(|i| {
                let chunk = &data[(i * shard).min(data.len())..((i + 1) * shard).min(data.len())];
                if chunk.len() == shard {
                    Cow::Borrowed(chunk)
                } else {
                    let mut pad = Vec::with_capacity(shard);
                    pad.extend_from_slice(chunk);
                    pad.resize(shard, 0);
                    Cow::Owned(pad)
                }
            })
            .collect();
        for (i, payload) in payloads.iter().enumerate() {
            block(i, payload, &mut put);
        }
        if m == 0 {
            return Ok(());
        }
        if shard == 0 {
            for j in k..k + m {
                block(j, &[], &mut put);
            }
            return Ok(());
        }
        let encoder = match self.encoder.as_mut() {
            Some(e) => {
                e.reset(k, m, shard).map_err(codec_err)?;
                e
            }
            None => self
                .encoder
                .insert(ReedSolomonEncoder::new(k, m, shard).map_err(codec_err)?),
        };
        for payload in &payloads {
            encoder.add_original_shard(payload).map_err(codec_err)?;
        }
        let result = encoder.encode().map_err(codec_err)?;
        for (j, parity) in result.recovery_iter().enumerate() {
            block(k + j, parity, &mut put);
        }
        Ok(())
    }

    /// Decodes stripe `stripe_index` of version `tag` from `blocks` (in any
    /// order; `None` for a block that could not be read) into `out`
    /// (cleared first). Refused blocks count as missing; with fewer than k
    /// good ones the answer is `TooFewBlocks`, never bytes.
    pub fn decode_stripe(
        &mut self,
        tag: u128,
        stripe_index: u64,
        blocks: &[Option<&[u8]>],
        out: &mut Vec<u8>,
    ) -> Result<Decoded, Error> {
        out.clear();
        let (k, m) = (self.k(), self.m());
        let (good, refused) = self.sort_candidates(tag, stripe_index, blocks)?;
        let mut lacking = 0u64;
        let mut held = 0usize;
        for (i, g) in good.iter().enumerate().take(k + m) {
            if g.is_some() {
                held += 1;
            } else {
                lacking |= 1 << i;
            }
        }
        if held < k {
            return Err(Error::TooFewBlocks {
                stripe_index,
                good: held,
                needed: k,
            });
        }
        let stripe_len = good
            .iter()
            .flatten()
            .map(|g| g.stripe_len as usize)
            .next()
            .unwrap_or(0);
        let decoded = Decoded {
            stripe_len,
            lacking,
            refused,
        };
        if stripe_len == 0 {
            return Ok(decoded);
        }
        out.reserve(stripe_len);
        if good.iter().take(k).all(Option::is_some) {
            for g in good.iter().take(k).flatten() {
                out.extend_from_slice(g.payload);
            }
            out.truncate(stripe_len);
            return Ok(decoded);
        }
        let shard = payload_len_for(stripe_len, k);
        let decoder = match self.decoder.as_mut() {
            Some(d) => {
                d.reset(k, m, shard).map_err(codec_err)?;
                d
            }
            None => self
                .decoder
                .insert(ReedSolomonDecoder::new(k, m, shard).map_err(codec_err)?),
        };
        let mut given = 0;
        for (i, g) in good.iter().enumerate().take(k) {
            if let Some(g) = g {
                decoder
                    .add_original_shard(i, g.payload)
                    .map_err(codec_err)?;
                given += 1;
            }
        }
        // Exactly k shards are enough; more would only cost time.
        for (j, g) in good.iter().take(k + m).skip(k).enumerate() {
            if given == k {
                break;
            }
            if let Some(g) = g {
                decoder
                    .add_recovery_shard(j, g.payload)
                    .map_err(codec_err)?;
                given += 1;
            }
        }
        let result = decoder.decode().map_err(codec_err)?;
        for (i, g) in good.iter().enumerate().take(k) {
            match g {
                Some(g) => out.extend_from_slice(g.payload),
                None => match result.restored_original(i) {
                    Some(p) => out.extend_from_slice(p),
                    None => return Err(Error::Codec(format!("block {i} not restored"))),
                },
            }
        }
        out.truncate(stripe_len);
        Ok(decoded)
    }

    /// Decodes the stripe into `out` as `decode_stripe` does and re-encodes
    /// every lacking block, for read repair and healing.
    pub fn reconstruct_stripe(
        &mut self,
        tag: u128,
        stripe_index: u64,
        blocks: &[Option<&[u8]>],
        out: &mut Vec<u8>,
    ) -> Result<(Decoded, Rebuilt), Error> {
        let decoded = self.decode_stripe(tag, stripe_index, blocks, out)?;
        let mut rebuilt = Rebuilt::default();
        if decoded.is_complete() {
            return Ok((decoded, rebuilt));
        }
        let mut all = Vec::new();
        self.encode_stripe(tag, stripe_index, out, &mut all)?;
        for (i, block) in all.into_iter().enumerate() {
            if decoded.lacking & (1 << i) != 0 {
                rebuilt.blocks.push((i as u8, block));
            }
        }
        Ok((decoded, rebuilt))
    }

    /// Verifies each candidate and keeps, per block index, the first good
    /// one of the stripe length most good blocks agree on.
    #[allow(clippy::type_complexity)]
    fn sort_candidates<'a>(
        &self,
        tag: u128,
        stripe_index: u64,
        blocks: &[Option<&'a [u8]>],
    ) -> Result<([Option<Good<'a>>; MAX_TOTAL_BLOCKS], usize), Error> {
        if blocks.len() > MAX_CANDIDATES {
            return Err(Error::TooManyCandidates {
                given: blocks.len(),
                max: MAX_CANDIDATES,
            });
        }
        let mut verified: Vec<(usize, Good<'a>)> = Vec::with_capacity(blocks.len());
        let mut refused = 0;
        for b in blocks.iter().flatten() {
            match verify_block(b) {
                Ok((h, payload))
                    if h.data_blocks == self.params.data_blocks()
                        && h.parity_blocks == self.params.parity_blocks()
                        && h.tag == tag
                        && h.stripe_index == stripe_index
                        && h.stripe_len as usize <= self.params.stripe_bytes() =>
                {
                    verified.push((
                        usize::from(h.block_index),
                        Good {
                            stripe_len: h.stripe_len,
                            payload,
                        },
                    ));
                }
                _ => refused += 1,
            }
        }
        // Blocks of one tag and stripe that disagree on the length can only
        // come from a broken writer; the majority wins and the rest count as
        // refused, so a lone odd block can never shape the output.
        let majority = verified
            .iter()
            .map(|(_, g)| g.stripe_len)
            .max_by_key(|len| {
                verified
                    .iter()
                    .filter(|(_, g)| g.stripe_len == *len)
                    .count()
            });
        let mut good: [Option<Good<'a>>; MAX_TOTAL_BLOCKS] = std::array::from_fn(|_| None);
        for (index, g) in verified {
            if Some(g.stripe_len) != majority || good[index].is_some() {
                refused += 1;
                continue;
            }
            good[index] = Some(g);
        }
        Ok((good, refused))
    }
}

fn codec_err(e: reed_solomon_simd::Error) -> Error {
    Error::Codec(e.to_string())
}
