//! Striped bodies on format 2 lanes, the pure part (ARCHITECTURE.md,
//! "Erasure sets"): the record meta v5 envelope that carries a record's
//! erasure section, and the per-disk block streams of one data record.
//!
//! A data record written through a lane with parity (`lanes::write_data`)
//! is one **piece**: its bytes cut into stripes of `stripe` bytes, each
//! coded k + m; block `b` of every stripe goes to the lane member at set
//! position `(b + rot) % n`, all of them back to back in one data record
//! on that member (block `t` at `t * block_bytes(stripe)`). Each member's
//! record of the version lists its own extent of each piece; its meta is
//! the v5 envelope around the meta the handlers wrote (any record kind:
//! object, version, part), identical on every member:
//!
//! | bytes | field                                                    |
//! |-------|----------------------------------------------------------|
//! | 0..3  | `5`, `E`, `C` (meta v5)                                  |
//! | 3     | erasure section version (1)                              |
//! | 4, 5, 6 | k, m, n (set disks at write time)                      |
//! | 7..11 | stripe bytes (u32 LE)                                    |
//! | 11..15| piece count (u32 LE), one per body extent                |
//! | ...   | per piece: kind (0 plain copy, 1 striped), logical length (u64 LE); striped: tag (u128 LE), rot (u8) |
//! | rest  | the inner meta (v1..v4 of its record kind)               |
//!
//! A plain piece is a whole copy on every member (data mirrored by the
//! first slice, kept readable). The lane unwraps the envelope before a
//! handler sees a record, so handlers never meet v5; format 1 never
//! writes it.
//!
//! FORMAT BOUNDARY: the envelope and the block placement are on disk.

use std::cell::RefCell;
use std::rc::Rc;

use tessera_erasure::{verify_block, Codec, Params};
use tessera_io::{DataBuf, Extent};

/// Record meta v5: the erasure envelope (first byte of the meta).
pub const META_V5: u8 = 5;
const MAGIC: [u8; 3] = [META_V5, b'E', b'C'];
const SECTION_V1: u8 = 1;
const HEAD_BYTES: usize = 15;
/// Segment number of the lane's in-memory piece handles: never a real
/// segment (segment numbers count up from 0 and a shard has far fewer).
pub const VIRTUAL_SEGMENT: u32 = u32::MAX;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PieceInfo {
    /// A whole copy of `len` bytes on every member.
    Plain { len: u64 },
    /// Striped: blocks tagged `tag`, block 0 at position `rot`.
    Striped { len: u64, tag: u128, rot: u8 },
}

impl PieceInfo {
    pub fn len(&self) -> u64 {
        match *self {
            PieceInfo::Plain { len } | PieceInfo::Striped { len, .. } => len,
        }
    }
}

/// The erasure section of a v5 record meta.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Envelope {
    pub k: u8,
    pub m: u8,
    pub n: u8,
    pub stripe: u32,
    pub pieces: Vec<PieceInfo>,
}

impl Envelope {
    pub fn params(&self) -> Option<Params> {
        Params::new(self.k.into(), self.m.into(), self.stripe as usize).ok()
    }

    /// `inner` wrapped in this envelope.
    pub fn wrap(&self, inner: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEAD_BYTES + self.pieces.len() * 26 + inner.len());
        out.extend_from_slice(&MAGIC);
        out.push(SECTION_V1);
        out.extend_from_slice(&[self.k, self.m, self.n]);
        out.extend_from_slice(&self.stripe.to_le_bytes());
        out.extend_from_slice(&(self.pieces.len() as u32).to_le_bytes());
        for p in &self.pieces {
            match *p {
                PieceInfo::Plain { len } => {
                    out.push(0);
                    out.extend_from_slice(&len.to_le_bytes());
                }
                PieceInfo::Striped { len, tag, rot } => {
                    out.push(1);
                    out.extend_from_slice(&len.to_le_bytes());
                    out.extend_from_slice(&tag.to_le_bytes());
                    out.push(rot);
                }
            }
        }
        out.extend_from_slice(inner);
        out
    }

    /// `Ok(None)` for a meta that is not an envelope (v1..v4); `Err` for
    /// an envelope that does not parse (never guessed at).
    pub fn unwrap(meta: &[u8]) -> Result<Option<(Envelope, &[u8])>, &'static str> {
        if meta.len() < 3 || meta[..3] != MAGIC {
            return Ok(None);
        }
        let mut d = meta;
        let mut take = |n: usize| -> Result<&[u8], &'static str> {
            if d.len() < n {
                return Err("truncated erasure section");
            }
            let (a, b) = d.split_at(n);
            d = b;
            Ok(a)
        };
        take(3)?;
        if take(1)?[0] != SECTION_V1 {
            return Err("unknown erasure section version");
        }
        let h = take(3)?;
        let (k, m, n) = (h[0], h[1], h[2]);
        let stripe = u32::from_le_bytes(take(4)?.try_into().map_err(|_| "stripe")?);
        let count = u32::from_le_bytes(take(4)?.try_into().map_err(|_| "count")?) as usize;
        if usize::from(k) + usize::from(m) != usize::from(n) || k == 0 || count > meta.len() / 9 {
            return Err("inconsistent erasure section");
        }
        let mut pieces = Vec::with_capacity(count);
        for _ in 0..count {
            let kind = take(1)?[0];
            let len = u64::from_le_bytes(take(8)?.try_into().map_err(|_| "len")?);
            pieces.push(match kind {
                0 => PieceInfo::Plain { len },
                1 => {
                    let tag = u128::from_le_bytes(take(16)?.try_into().map_err(|_| "tag")?);
                    let rot = take(1)?[0];
                    if rot >= n {
                        return Err("rotation out of range");
                    }
                    PieceInfo::Striped { len, tag, rot }
                }
                _ => return Err("unknown piece kind"),
            });
        }
        let env = Envelope { k, m, n, stripe, pieces };
        if env.params().is_none() {
            return Err("invalid erasure parameters");
        }
        Ok(Some((env, d)))
    }
}

/// Which block of a striped piece the member at set `position` holds.
pub fn block_at(position: usize, rot: u8, n: usize) -> usize {
    (position + n - usize::from(rot) % n) % n
}

/// The set position holding block `block`.
pub fn position_of(block: usize, rot: u8, n: usize) -> usize {
    (block + usize::from(rot)) % n
}

/// The per-position block streams of a piece of `data` (k + m == n), each
/// in a record buffer of its exact size: every block goes straight from
/// the coder into its stream (a data block's bytes are copied once).
pub fn encode_piece(codec: &mut Codec, tag: u128, rot: u8, data: &[u8]) -> Result<Vec<DataBuf>, tessera_erasure::Error> {
    let p = codec.params();
    let n = p.total_blocks();
    let len = data.len() as u64;
    let stripes = p.stripe_count(len);
    let stream_len = stripes.checked_sub(1).map_or(0, |last| block_range(&p, len, last).end) as usize;
    let mut streams: Vec<DataBuf> = (0..n).map(|_| DataBuf::new(stream_len.max(1))).collect();
    for t in 0..stripes {
        let r = p.stripe_range(len, t).unwrap_or(0..0);
        codec.encode_stripe_to(tag, t, &data[r.start as usize..r.end as usize], |b, header, payload| {
            if let Some(s) = streams.get_mut(position_of(b, rot, n)) {
                s.extend_from_slice(header);
                s.extend_from_slice(payload);
            }
        })?;
    }
    Ok(streams)
}

/// Where block `t` of a piece of `len` bytes lies in a member's stream.
pub fn block_range(p: &Params, len: u64, t: u64) -> std::ops::Range<u64> {
    let stripe = p.stripe_range(len, t).unwrap_or(0..0);
    let start = p.block_offset(t);
    start..start + p.block_bytes((stripe.end - stripe.start) as usize) as u64
}

/// Whether `block` is a good block `index` of stripe `t` of the piece
/// tagged `tag` (what decoding would accept).
pub fn block_is_good(p: &Params, block: &[u8], tag: u128, t: u64, index: usize) -> bool {
    match verify_block(block) {
        Ok((h, _)) => {
            h.tag == tag
                && h.stripe_index == t
                && usize::from(h.block_index) == index
                && h.data_blocks == p.data_blocks()
                && h.parity_blocks == p.parity_blocks()
        }
        Err(_) => false,
    }
}

/// A striped piece the lane can read: an in-memory handle, named by a
/// virtual extent (`VIRTUAL_SEGMENT`, offset = handle id, len = the
/// piece's logical length) in the bodies handlers see.
#[derive(Debug)]
pub struct Piece {
    pub params: Params,
    pub tag: u128,
    pub rot: u8,
    pub len: u64,
    /// The extent of this piece's block stream on each set position
    /// known now (None: the member is offline, lacks the record, or its
    /// record was not read yet: see `members`).
    pub blocks: Vec<Option<Extent>>,
    /// For a piece loaded from a record: where, for read repair and for
    /// reading the members' records.
    pub origin: Option<Origin>,
    /// For a piece loaded from a record: the other members' records, read
    /// on first need (shared by the record's pieces), so a healthy read
    /// touches only the members whose blocks it reads.
    pub members: Option<Rc<MemberRecords>>,
}

/// The other members' forms of one loaded record, by set position.
#[derive(Debug)]
pub struct MemberRecords {
    /// Extents the record names (the piece count every member's form has).
    pub pieces: usize,
    pub slots: RefCell<Vec<Slot>>,
}

#[derive(Debug, Clone)]
pub enum Slot {
    /// Not read yet (the member was online at the load).
    Unread,
    /// Read: the member's extents of the same version, or None (offline,
    /// failed, or it holds another version).
    Read(Option<Vec<Extent>>),
}

#[derive(Debug, Clone)]
pub struct Origin {
    pub table: u8,
    pub key: Vec<u8>,
    /// The record's (v5) meta, the same on every member.
    pub meta: Vec<u8>,
    /// The piece's index among the record's extents.
    pub index: usize,
}

impl Piece {
    pub fn n(&self) -> usize {
        self.params.total_blocks()
    }
    pub fn k(&self) -> usize {
        usize::from(self.params.data_blocks())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelopes_round_trip_and_plain_metas_are_not_envelopes() {
        let env = Envelope {
            k: 2,
            m: 2,
            n: 4,
            stripe: 1 << 20,
            pieces: vec![PieceInfo::Plain { len: 7 }, PieceInfo::Striped { len: 5 << 20, tag: u128::MAX - 3, rot: 3 }],
        };
        let w = env.wrap(b"\x03inner");
        let (back, inner) = Envelope::unwrap(&w).unwrap().unwrap();
        assert_eq!(back, env);
        assert_eq!(inner, b"\x03inner");
        assert_eq!(Envelope::unwrap(b"\x03abc").unwrap(), None);
        assert_eq!(Envelope::unwrap(b"").unwrap(), None);
        for cut in 3..w.len() - 6 {
            assert!(Envelope::unwrap(&w[..cut]).is_err(), "truncated at {cut} parsed");
        }
        let mut bad = w.clone();
        bad[3] = 2;
        assert!(Envelope::unwrap(&bad).is_err());
    }

    #[test]
    fn any_k_streams_give_a_piece_back() {
        let p = Params::new(2, 2, 4096).unwrap();
        let mut codec = Codec::new(p);
        let data: Vec<u8> = (0..10_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let streams = encode_piece(&mut codec, 42, 1, &data).unwrap();
        assert_eq!(streams.len(), 4);
        let stripes = p.stripe_count(data.len() as u64);
        let whole = block_range(&p, data.len() as u64, stripes - 1).end as usize;
        assert!(streams.iter().all(|s| s.data_len() == whole && s.remaining() == 0), "each stream fills its buffer exactly");
        for lost in [(0, 1), (0, 2), (1, 3), (2, 3)] {
            let mut out = Vec::new();
            for t in 0..p.stripe_count(data.len() as u64) {
                let r = block_range(&p, data.len() as u64, t);
                let cands: Vec<Option<&[u8]>> = (0..4)
                    .map(|pos| {
                        (pos != lost.0 && pos != lost.1).then(|| &streams[pos].data()[r.start as usize..r.end as usize])
                    })
                    .collect();
                for (pos, c) in cands.iter().enumerate() {
                    if let Some(c) = c {
                        assert!(block_is_good(&p, c, 42, t, block_at(pos, 1, 4)));
                    }
                }
                let mut s = Vec::new();
                codec.decode_stripe(42, t, &cands, &mut s).unwrap();
                out.extend_from_slice(&s);
            }
            assert_eq!(out, data, "lost positions {lost:?}");
        }
    }
}
