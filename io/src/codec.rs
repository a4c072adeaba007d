//! The payload of a commit entry: a list of operations, applied atomically.
//!
//! FORMAT (part of the on-disk boundary, version 2; see `format`):
//!
//! ```text
//! op        := code:u8 table:u8 key_len:u16 key [seq:u64 if code & 0x80] rest
//! rest      := (code & 0x7f = 1, put)    summary_len:u16 summary meta_len:u32 meta body
//!            | (code & 0x7f = 2, delete) min_seg:u32 origin:u32
//!            | (code & 0x7f = 3, retire) segment:u32 first_seq:u64 last_seq:u64  (empty key)
//! body      := 0:u8 len:u32 bytes               inline
//!            | 1:u8 count:u32 extent{count}     extents
//!            | 2:u8 len:u32 xxh3:u64            inline body left out (metadata-only copy)
//! extent    := segment:u32 offset:u64 len:u64
//! ```
//!
//! An explicit `seq` marks an operation rewritten by compaction: it keeps
//! the seq of the commit that first wrote it (an index entry's seq is its
//! version). A delete carries what compaction needs to know when the
//! tombstone may go: `min_seg`, the oldest segment that may hold a record of
//! the key's deleted incarnation (0: unknown, any), and `origin`, the
//! segment it was first written to (0: the segment of its own entry).
//! A retire op says compaction removed `segment`, which held the commits
//! `first_seq..=last_seq` (0, 0: none). It is copied forward by compaction
//! while a kept checkpoint is older than it (a recovery from that
//! checkpoint must learn the segment is gone on purpose).
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

/// An object body: bytes inside the commit, or data records written before
/// it with [`crate::Shard::write_data`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Body {
    Inline(Vec<u8>),
    Extents(Vec<Extent>),
}

impl Body {
    pub fn len(&self) -> u64 {
        match self {
            Body::Inline(b) => b.len() as u64,
            Body::Extents(e) => e.iter().map(|e| e.len).sum(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
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

/// An operation as the engine writes it (a mutation plus what the engine
/// adds: kept seqs, tombstone bounds, retirements).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Op {
    Put {
        table: u8,
        key: Vec<u8>,
        seq: Option<u64>,
        summary: Vec<u8>,
        meta: Vec<u8>,
        body: Body,
    },
    Delete {
        table: u8,
        key: Vec<u8>,
        seq: Option<u64>,
        min_seg: u32,
        origin: u32,
    },
    Retire {
        segment: u32,
        first_seq: u64,
        last_seq: u64,
        seq: Option<u64>,
    },
}

const OP_PUT: u8 = 1;
const OP_DELETE: u8 = 2;
const OP_RETIRE: u8 = 3;
const OP_KEEPS_SEQ: u8 = 0x80;
const BODY_INLINE: u8 = 0;
const BODY_EXTENTS: u8 = 1;
const BODY_DIGEST: u8 = 2;
const EXTENT_BYTES: usize = 20;

fn check(len: usize, limit: usize) -> Result<usize, IoError> {
    if len > limit {
        return Err(IoError::TooLarge);
    }
    Ok(len)
}

impl Op {
    /// Serialized size, or TooLarge past a limit. `meta_only`: the size of
    /// the metadata-only copy (inline bodies as digests).
    pub(crate) fn encoded_len(&self, meta_only: bool) -> Result<usize, IoError> {
        let head = |key: &[u8], seq: &Option<u64>| -> Result<usize, IoError> {
            check(key.len(), MAX_KEY_BYTES)?;
            Ok(4 + key.len() + if seq.is_some() { 8 } else { 0 })
        };
        Ok(match self {
            Op::Put {
                key,
                seq,
                summary,
                meta,
                body,
                ..
            } => {
                check(summary.len(), MAX_SUMMARY_BYTES)?;
                check(meta.len(), MAX_META_BYTES)?;
                let body_len = match body {
                    Body::Inline(b) => {
                        check(b.len(), MAX_INLINE_BYTES)?;
                        if meta_only {
                            12
                        } else {
                            4 + b.len()
                        }
                    }
                    Body::Extents(e) => 4 + e.len().saturating_mul(EXTENT_BYTES),
                };
                head(key, seq)? + 2 + summary.len() + 4 + meta.len() + 1 + body_len
            }
            Op::Delete { key, seq, .. } => head(key, seq)? + 8,
            Op::Retire { seq, .. } => 4 + 20 + if seq.is_some() { 8 } else { 0 },
        })
    }

    /// Appends the encoding to `out`.
    pub(crate) fn encode(&self, out: &mut Vec<u8>, meta_only: bool) {
        let head = |out: &mut Vec<u8>, code: u8, table: u8, key: &[u8], seq: &Option<u64>| {
            let code = if seq.is_some() { code | OP_KEEPS_SEQ } else { code };
            out.extend_from_slice(&[code, table]);
            out.extend_from_slice(&(key.len() as u16).to_le_bytes());
            out.extend_from_slice(key);
            if let Some(s) = seq {
                out.extend_from_slice(&s.to_le_bytes());
            }
        };
        match self {
            Op::Put {
                table,
                key,
                seq,
                summary,
                meta,
                body,
            } => {
                head(out, OP_PUT, *table, key, seq);
                out.extend_from_slice(&(summary.len() as u16).to_le_bytes());
                out.extend_from_slice(summary);
                out.extend_from_slice(&(meta.len() as u32).to_le_bytes());
                out.extend_from_slice(meta);
                match body {
                    Body::Inline(b) if meta_only => {
                        out.push(BODY_DIGEST);
                        out.extend_from_slice(&(b.len() as u32).to_le_bytes());
                        out.extend_from_slice(&twox_hash::XxHash3_64::oneshot(b).to_le_bytes());
                    }
                    Body::Inline(b) => {
                        out.push(BODY_INLINE);
                        out.extend_from_slice(&(b.len() as u32).to_le_bytes());
                        out.extend_from_slice(b);
                    }
                    Body::Extents(es) => {
                        out.push(BODY_EXTENTS);
                        out.extend_from_slice(&(es.len() as u32).to_le_bytes());
                        for e in es {
                            out.extend_from_slice(&e.segment.to_le_bytes());
                            out.extend_from_slice(&e.offset.to_le_bytes());
                            out.extend_from_slice(&e.len.to_le_bytes());
                        }
                    }
                }
            }
            Op::Delete {
                table,
                key,
                seq,
                min_seg,
                origin,
            } => {
                head(out, OP_DELETE, *table, key, seq);
                out.extend_from_slice(&min_seg.to_le_bytes());
                out.extend_from_slice(&origin.to_le_bytes());
            }
            Op::Retire {
                segment,
                first_seq,
                last_seq,
                seq,
            } => {
                head(out, OP_RETIRE, 0, &[], seq);
                out.extend_from_slice(&segment.to_le_bytes());
                out.extend_from_slice(&first_seq.to_le_bytes());
                out.extend_from_slice(&last_seq.to_le_bytes());
            }
        }
    }
}

/// A decoded body borrowing from the entry buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum BodyView<'a> {
    Inline(&'a [u8]),
    /// Raw extent records, `EXTENT_BYTES` each, already validated.
    Extents(&'a [u8]),
    /// An inline body left out of a metadata-only copy.
    Digest { len: u32, xxh3: u64 },
}

impl BodyView<'_> {
    /// The body, or None when only its digest is here.
    pub(crate) fn to_body(self) -> Option<Body> {
        match self {
            BodyView::Inline(b) => Some(Body::Inline(b.to_vec())),
            BodyView::Extents(raw) => Some(Body::Extents(self::extents(raw).collect())),
            BodyView::Digest { .. } => None,
        }
    }
}

fn extents(raw: &[u8]) -> impl Iterator<Item = Extent> + '_ {
    raw.chunks_exact(EXTENT_BYTES).map(extent_at)
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

/// A decoded operation borrowing from the entry buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum OpView<'a> {
    Put {
        table: u8,
        key: &'a [u8],
        seq: Option<u64>,
        summary: &'a [u8],
        meta: &'a [u8],
        body: BodyView<'a>,
    },
    Delete {
        table: u8,
        key: &'a [u8],
        seq: Option<u64>,
        min_seg: u32,
        origin: u32,
    },
    Retire {
        segment: u32,
        first_seq: u64,
        last_seq: u64,
        seq: Option<u64>,
    },
}

impl OpView<'_> {
    pub(crate) fn to_op(self) -> Option<Op> {
        Some(match self {
            OpView::Put {
                table,
                key,
                seq,
                summary,
                meta,
                body,
            } => Op::Put {
                table,
                key: key.to_vec(),
                seq,
                summary: summary.to_vec(),
                meta: meta.to_vec(),
                body: body.to_body()?,
            },
            OpView::Delete {
                table,
                key,
                seq,
                min_seg,
                origin,
            } => Op::Delete {
                table,
                key: key.to_vec(),
                seq,
                min_seg,
                origin,
            },
            OpView::Retire {
                segment,
                first_seq,
                last_seq,
                seq,
            } => Op::Retire {
                segment,
                first_seq,
                last_seq,
                seq,
            },
        })
    }
}

/// Decodes `count` operations filling `payload` exactly; any malformed or
/// trailing byte is an error.
pub(crate) fn decode(payload: &[u8], count: u16) -> Result<Vec<OpView<'_>>, &'static str> {
    if payload.len() > MAX_COMMIT_PAYLOAD_BYTES {
        return Err("payload over its limit");
    }
    let mut r = Reader { b: payload };
    let mut out = Vec::with_capacity(count.min(64) as usize);
    for _ in 0..count {
        out.push(decode_one(&mut r)?);
    }
    if !r.b.is_empty() {
        return Err("trailing bytes after the operations");
    }
    Ok(out)
}

fn decode_one<'a>(r: &mut Reader<'a>) -> Result<OpView<'a>, &'static str> {
    let code = r.u8()?;
    let table = r.u8()?;
    let key_len = r.u16()? as usize;
    let key = r.take(key_len, MAX_KEY_BYTES)?;
    let seq = if code & OP_KEEPS_SEQ != 0 {
        Some(r.u64()?)
    } else {
        None
    };
    match code & !OP_KEEPS_SEQ {
        OP_DELETE => Ok(OpView::Delete {
            table,
            key,
            seq,
            min_seg: r.u32()?,
            origin: r.u32()?,
        }),
        OP_RETIRE if key.is_empty() => Ok(OpView::Retire {
            segment: r.u32()?,
            first_seq: r.u64()?,
            last_seq: r.u64()?,
            seq,
        }),
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
                    for e in extents(raw) {
                        if e.offset % BLOCK as u64 != 0 || e.len > MAX_DATA_BYTES as u64 {
                            return Err("extent fields");
                        }
                    }
                    BodyView::Extents(raw)
                }
                BODY_DIGEST => BodyView::Digest {
                    len: r.u32()?,
                    xxh3: r.u64()?,
                },
                _ => return Err("body kind"),
            };
            Ok(OpView::Put {
                table,
                key,
                seq,
                summary,
                meta,
                body,
            })
        }
        _ => Err("operation code"),
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

    fn fixed<const N: usize>(&mut self) -> Result<[u8; N], &'static str> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N, N)?);
        Ok(a)
    }

    fn u8(&mut self) -> Result<u8, &'static str> {
        Ok(self.fixed::<1>()?[0])
    }

    fn u16(&mut self) -> Result<u16, &'static str> {
        self.fixed().map(u16::from_le_bytes)
    }

    fn u32(&mut self) -> Result<u32, &'static str> {
        self.fixed().map(u32::from_le_bytes)
    }

    fn u64(&mut self) -> Result<u64, &'static str> {
        self.fixed().map(u64::from_le_bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<Op> {
        vec![
            Op::Put {
                table: 0,
                key: b"bucket/\x00key/../x".to_vec(),
                seq: None,
                summary: b"etag+size".to_vec(),
                meta: b"content-type: text/plain".to_vec(),
                body: Body::Inline(b"hello".to_vec()),
            },
            Op::Delete {
                table: 2,
                key: vec![0xff; 1024],
                seq: Some(77),
                min_seg: 3,
                origin: 0,
            },
            Op::Put {
                table: 1,
                key: Vec::new(),
                seq: Some(5),
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
            Op::Retire {
                segment: 4,
                first_seq: 10,
                last_seq: 99,
                seq: Some(7),
            },
        ]
    }

    fn encode_all(ops: &[Op], meta_only: bool) -> Vec<u8> {
        let mut buf = Vec::new();
        for op in ops {
            let before = buf.len();
            op.encode(&mut buf, meta_only);
            assert_eq!(buf.len() - before, op.encoded_len(meta_only).unwrap());
        }
        buf
    }

    #[test]
    fn roundtrip() {
        let ops = sample();
        let buf = encode_all(&ops, false);
        let back: Vec<Op> = decode(&buf, ops.len() as u16)
            .unwrap()
            .into_iter()
            .map(|v| v.to_op().unwrap())
            .collect();
        assert_eq!(back, ops);
    }

    #[test]
    fn metadata_only_copy_keeps_everything_but_inline_bytes() {
        let ops = sample();
        let buf = encode_all(&ops, true);
        let views = decode(&buf, ops.len() as u16).unwrap();
        match views[0] {
            OpView::Put {
                body: BodyView::Digest { len, xxh3 },
                summary,
                ..
            } => {
                assert_eq!(len, 5);
                assert_eq!(xxh3, twox_hash::XxHash3_64::oneshot(b"hello"));
                assert_eq!(summary, b"etag+size");
            }
            other => panic!("{other:?}"),
        }
        assert!(views[0].to_op().is_none(), "no body to rebuild from a digest");
        assert_eq!(views[2].to_op().unwrap(), ops[2]);
    }

    #[test]
    fn limits_are_enforced_on_encode() {
        let big_key = Op::Delete {
            table: 0,
            key: vec![0; MAX_KEY_BYTES + 1],
            seq: None,
            min_seg: 0,
            origin: 0,
        };
        assert!(matches!(big_key.encoded_len(false), Err(IoError::TooLarge)));
        let big_summary = Op::Put {
            table: 0,
            key: vec![],
            seq: None,
            summary: vec![0; MAX_SUMMARY_BYTES + 1],
            meta: vec![],
            body: Body::Inline(vec![]),
        };
        assert!(matches!(
            big_summary.encoded_len(false),
            Err(IoError::TooLarge)
        ));
    }

    #[test]
    fn every_truncation_and_byte_flip_is_an_error_or_valid() {
        let ops = sample();
        let buf = encode_all(&ops, false);
        for cut in 0..buf.len() {
            assert!(
                decode(&buf[..cut], ops.len() as u16).is_err(),
                "truncated at {cut} decoded"
            );
        }
        for i in 0..buf.len() {
            for bit in 0..8 {
                let mut b = buf.clone();
                b[i] ^= 1 << bit;
                let _ = decode(&b, ops.len() as u16); // must not panic
            }
        }
    }

    #[test]
    fn garbage_never_panics() {
        // A fixed pseudo-random stream (xorshift) so failures reproduce.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for len in [0usize, 1, 3, 4, 5, 17, 64, 4096, 70_000] {
            for count in [0u16, 1, 7, 65535] {
                let buf: Vec<u8> = (0..len)
                    .map(|_| {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        x as u8
                    })
                    .collect();
                let _ = decode(&buf, count);
            }
        }
        assert_eq!(decode(&[9, 0, 0, 0], 1), Err("operation code"));
        assert_eq!(decode(&[], 0), Ok(vec![]));
        assert!(decode(&[1], 0).is_err());
    }
}
