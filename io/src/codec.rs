//! The commit record payload: a list of mutations, applied atomically.
//!
//! FORMAT (part of the on-disk boundary, version 1; see `format`):
//!
//! ```text
//! payload   := count:u32 mutation{count}
//! mutation  := op:u8 table:u8 key_len:u16 key
//!              [ if op = 1 (put):
//!                summary_len:u16 summary meta_len:u32 meta body ]
//!              (op = 2 is delete)
//! body      := 0:u8 len:u32 bytes            inline
//!            | 1:u8 count:u32 extent{count}  extents
//! extent    := segment:u32 offset:u64 len:u64
//! ```
//!
//! Decoding checks every length against both its limit and the bytes left,
//! so garbage yields an error, never a panic or a large allocation.

use crate::error::IoError;
use crate::format::{
    BLOCK, MAX_COMMIT_PAYLOAD_BYTES, MAX_DATA_BYTES, MAX_INLINE_BYTES, MAX_KEY_BYTES,
    MAX_META_BYTES, MAX_SUMMARY_BYTES,
};

/// Where a data record lives: `offset` is the record start in segment file
/// `segment`, `len` the data bytes it holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Extent {
    pub segment: u32,
    pub offset: u64,
    pub len: u64,
}

/// An object body: bytes inside the commit record, or data records written
/// before it with [`crate::Shard::write_data`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Body {
    Inline(Vec<u8>),
    Extents(Vec<Extent>),
}

/// One change to the index; a commit applies a list of them atomically.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mutation {
    /// Replaces the key's entry. `summary` is kept in memory (keep it small);
    /// `meta` and `body` stay on disk.
    Put {
        table: u8,
        key: Vec<u8>,
        summary: Vec<u8>,
        meta: Vec<u8>,
        body: Body,
    },
    /// Removes the key's entry; a missing key is fine.
    Delete { table: u8, key: Vec<u8> },
}

const OP_PUT: u8 = 1;
const OP_DELETE: u8 = 2;
const BODY_INLINE: u8 = 0;
const BODY_EXTENTS: u8 = 1;
const EXTENT_BYTES: usize = 20;

/// Serialized size of `muts`, or TooLarge if any field or the whole passes its limit.
pub(crate) fn encoded_len(muts: &[Mutation]) -> Result<usize, IoError> {
    let mut n = 4usize;
    for m in muts {
        n += match m {
            Mutation::Delete { key, .. } => {
                check(key.len(), MAX_KEY_BYTES)?;
                4 + key.len()
            }
            Mutation::Put {
                key,
                summary,
                meta,
                body,
                ..
            } => {
                check(key.len(), MAX_KEY_BYTES)?;
                check(summary.len(), MAX_SUMMARY_BYTES)?;
                check(meta.len(), MAX_META_BYTES)?;
                let body_len = match body {
                    Body::Inline(b) => check(b.len(), MAX_INLINE_BYTES)?,
                    Body::Extents(e) => e.len().saturating_mul(EXTENT_BYTES),
                };
                4 + key.len() + 2 + summary.len() + 4 + meta.len() + 5 + body_len
            }
        };
        check(n, MAX_COMMIT_PAYLOAD_BYTES)?;
    }
    check(muts.len(), u32::MAX as usize)?;
    Ok(n)
}

fn check(len: usize, limit: usize) -> Result<usize, IoError> {
    if len > limit {
        return Err(IoError::TooLarge);
    }
    Ok(len)
}

/// Writes `muts` into `out`, which is exactly `encoded_len(muts)` long.
/// The limits were checked by `encoded_len`, so the narrowing casts hold.
pub(crate) fn encode(muts: &[Mutation], out: &mut [u8]) {
    let mut w = Writer { out, at: 0 };
    w.put(&(muts.len() as u32).to_le_bytes());
    for m in muts {
        match m {
            Mutation::Delete { table, key } => {
                w.put(&[OP_DELETE, *table]);
                w.put(&(key.len() as u16).to_le_bytes());
                w.put(key);
            }
            Mutation::Put {
                table,
                key,
                summary,
                meta,
                body,
            } => {
                w.put(&[OP_PUT, *table]);
                w.put(&(key.len() as u16).to_le_bytes());
                w.put(key);
                w.put(&(summary.len() as u16).to_le_bytes());
                w.put(summary);
                w.put(&(meta.len() as u32).to_le_bytes());
                w.put(meta);
                match body {
                    Body::Inline(b) => {
                        w.put(&[BODY_INLINE]);
                        w.put(&(b.len() as u32).to_le_bytes());
                        w.put(b);
                    }
                    Body::Extents(es) => {
                        w.put(&[BODY_EXTENTS]);
                        w.put(&(es.len() as u32).to_le_bytes());
                        for e in es {
                            w.put(&e.segment.to_le_bytes());
                            w.put(&e.offset.to_le_bytes());
                            w.put(&e.len.to_le_bytes());
                        }
                    }
                }
            }
        }
    }
    assert_eq!(w.at, w.out.len(), "commit payload size mismatch");
}

struct Writer<'a> {
    out: &'a mut [u8],
    at: usize,
}

impl Writer<'_> {
    fn put(&mut self, b: &[u8]) {
        self.out[self.at..self.at + b.len()].copy_from_slice(b);
        self.at += b.len();
    }
}

/// A decoded mutation borrowing from the record buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum MutView<'a> {
    Put {
        table: u8,
        key: &'a [u8],
        summary: &'a [u8],
        meta: &'a [u8],
        body: BodyView<'a>,
    },
    Delete {
        table: u8,
        key: &'a [u8],
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum BodyView<'a> {
    Inline(&'a [u8]),
    /// `count` extents, 20 bytes each, already validated.
    Extents(&'a [u8]),
}

impl<'a> BodyView<'a> {
    /// The extents of an extents body; none for an inline one.
    pub(crate) fn extents(self) -> impl Iterator<Item = Extent> + 'a {
        let raw: &'a [u8] = match self {
            BodyView::Inline(_) => &[],
            BodyView::Extents(raw) => raw,
        };
        raw.chunks_exact(EXTENT_BYTES).map(extent_at)
    }

    pub(crate) fn to_body(self) -> Body {
        match self {
            BodyView::Inline(b) => Body::Inline(b.to_vec()),
            BodyView::Extents(raw) => {
                Body::Extents(raw.chunks_exact(EXTENT_BYTES).map(extent_at).collect())
            }
        }
    }
}

fn extent_at(b: &[u8]) -> Extent {
    let mut s = [0u8; 4];
    let mut o = [0u8; 8];
    let mut l = [0u8; 8];
    s.copy_from_slice(&b[0..4]);
    o.copy_from_slice(&b[4..12]);
    l.copy_from_slice(&b[12..20]);
    Extent {
        segment: u32::from_le_bytes(s),
        offset: u64::from_le_bytes(o),
        len: u64::from_le_bytes(l),
    }
}

/// Decodes a whole payload; any malformed or trailing byte is an error.
pub(crate) fn decode(payload: &[u8]) -> Result<Vec<MutView<'_>>, &'static str> {
    let mut r = Reader { b: payload };
    let count = r.u32()? as usize;
    // Every mutation takes at least 4 bytes: a count beyond that is garbage.
    if count > r.b.len() / 4 {
        return Err("mutation count");
    }
    let mut out = Vec::with_capacity(count.min(64));
    for _ in 0..count {
        out.push(decode_one(&mut r)?);
    }
    if !r.b.is_empty() {
        return Err("trailing bytes after mutations");
    }
    Ok(out)
}

fn decode_one<'a>(r: &mut Reader<'a>) -> Result<MutView<'a>, &'static str> {
    let op = r.u8()?;
    let table = r.u8()?;
    let key_len = r.u16()? as usize;
    let key = r.take(key_len, MAX_KEY_BYTES)?;
    match op {
        OP_DELETE => Ok(MutView::Delete { table, key }),
        OP_PUT => {
            let summary_len = r.u16()? as usize;
            let summary = r.take(summary_len, MAX_SUMMARY_BYTES)?;
            let meta_len = r.u32()? as usize;
            let meta = r.take(meta_len, MAX_META_BYTES)?;
            let body = match r.u8()? {
                BODY_INLINE => {
                    let len = r.u32()? as usize;
                    BodyView::Inline(r.take(len, MAX_INLINE_BYTES)?)
                }
                BODY_EXTENTS => {
                    let count = r.u32()? as usize;
                    let raw =
                        r.take(count.saturating_mul(EXTENT_BYTES), MAX_COMMIT_PAYLOAD_BYTES)?;
                    for e in raw.chunks_exact(EXTENT_BYTES).map(extent_at) {
                        if e.offset % BLOCK as u64 != 0 || e.len > MAX_DATA_BYTES as u64 {
                            return Err("extent fields");
                        }
                    }
                    BodyView::Extents(raw)
                }
                _ => return Err("body kind"),
            };
            Ok(MutView::Put {
                table,
                key,
                summary,
                meta,
                body,
            })
        }
        _ => Err("mutation op"),
    }
}

struct Reader<'a> {
    b: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, limit: usize) -> Result<&'a [u8], &'static str> {
        if n > limit {
            return Err("field over its limit");
        }
        if n > self.b.len() {
            return Err("field past the end of the payload");
        }
        let (head, rest) = self.b.split_at(n);
        self.b = rest;
        Ok(head)
    }

    fn u8(&mut self) -> Result<u8, &'static str> {
        Ok(self.take(1, 1)?[0])
    }

    fn u16(&mut self) -> Result<u16, &'static str> {
        let b = self.take(2, 2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    fn u32(&mut self) -> Result<u32, &'static str> {
        let b = self.take(4, 4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<Mutation> {
        vec![
            Mutation::Put {
                table: 0,
                key: b"bucket/\x00key/../x".to_vec(),
                summary: b"etag+size".to_vec(),
                meta: b"content-type: text/plain".to_vec(),
                body: Body::Inline(b"hello".to_vec()),
            },
            Mutation::Delete {
                table: 2,
                key: vec![0xff; 1024],
            },
            Mutation::Put {
                table: 1,
                key: Vec::new(),
                summary: Vec::new(),
                meta: Vec::new(),
                body: Body::Extents(vec![
                    Extent {
                        segment: 1,
                        offset: 4096,
                        len: 1 << 20,
                    },
                    Extent {
                        segment: 9,
                        offset: 0,
                        len: 0,
                    },
                ]),
            },
        ]
    }

    fn to_owned(v: MutView<'_>) -> Mutation {
        match v {
            MutView::Delete { table, key } => Mutation::Delete {
                table,
                key: key.to_vec(),
            },
            MutView::Put {
                table,
                key,
                summary,
                meta,
                body,
            } => Mutation::Put {
                table,
                key: key.to_vec(),
                summary: summary.to_vec(),
                meta: meta.to_vec(),
                body: body.to_body(),
            },
        }
    }

    #[test]
    fn roundtrip() {
        let muts = sample();
        let n = encoded_len(&muts).unwrap();
        let mut buf = vec![0u8; n];
        encode(&muts, &mut buf);
        let back: Vec<Mutation> = decode(&buf).unwrap().into_iter().map(to_owned).collect();
        assert_eq!(back, muts);
    }

    #[test]
    fn limits_are_enforced_on_encode() {
        let big_key = vec![Mutation::Delete {
            table: 0,
            key: vec![0; MAX_KEY_BYTES + 1],
        }];
        assert!(matches!(encoded_len(&big_key), Err(IoError::TooLarge)));
        let big_summary = vec![Mutation::Put {
            table: 0,
            key: vec![],
            summary: vec![0; MAX_SUMMARY_BYTES + 1],
            meta: vec![],
            body: Body::Inline(vec![]),
        }];
        assert!(matches!(encoded_len(&big_summary), Err(IoError::TooLarge)));
    }

    #[test]
    fn every_truncation_and_byte_flip_is_an_error_or_valid() {
        let muts = sample();
        let mut buf = vec![0u8; encoded_len(&muts).unwrap()];
        encode(&muts, &mut buf);
        for cut in 0..buf.len() {
            assert!(decode(&buf[..cut]).is_err(), "truncated at {cut} decoded");
        }
        for i in 0..buf.len() {
            for bit in 0..8 {
                let mut b = buf.clone();
                b[i] ^= 1 << bit;
                let _ = decode(&b); // must not panic
            }
        }
    }

    #[test]
    fn garbage_never_panics() {
        // A fixed pseudo-random stream (xorshift) so failures reproduce.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for len in [0usize, 1, 3, 4, 5, 17, 64, 4096, 70_000] {
            for _ in 0..200 {
                let buf: Vec<u8> = (0..len)
                    .map(|_| {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        x as u8
                    })
                    .collect();
                let _ = decode(&buf);
            }
        }
        assert_eq!(decode(&[0xff; 8]), Err("mutation count"));
        assert_eq!(decode(&[1, 0, 0, 0, 9, 0, 0, 0]), Err("mutation op"));
    }
}
