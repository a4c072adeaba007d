//! The payloads of the shard methods a node serves to the lane primaries
//! of other nodes (issue 12: a lane's members on several nodes). They
//! mirror the four `Shard` calls a lane makes of a member: write a data
//! record, commit a list of mutations, load a record, read an extent;
//! and a fifth a whole-lane heal makes: the next keys of the member's
//! tables (`RANGE`, so keys only the member holds are found too).
//!
//! FORMAT BOUNDARY (inside an authenticated RPC frame, `tessera_cluster::rpc`):
//!
//! ```text
//! request  := version:u8 (= 1) disk:[u8;16] shard:u32 call
//! call     := WRITE:  bytes                                   (the rest)
//!           | COMMIT: count:u32 mutation{count}
//!           | LOAD:   table:u8 key_len:u16 key
//!           | READ:   extent start:u64 end:u64
//!           | RANGE:  table:u8 0:u8 limit:u32                (from the table's first key)
//!           |         table:u8 1:u8 key_len:u16 key limit:u32 (after that key)
//! mutation := 1:u8 table:u8 key_len:u16 key summary_len:u32 summary meta_len:u32 meta body
//!           | 2:u8 table:u8 key_len:u16 key
//! body     := 0:u8 len:u32 bytes | 1:u8 count:u32 extent{count}
//! extent   := segment:u32 offset:u64 len:u64
//! answer   := WRITE: extent | COMMIT: seq:u64 | READ: bytes
//!           | LOAD: 0:u8 | 1:u8 seq:u64 summary_len:u32 summary meta_len:u32 meta body
//!           | RANGE: count:u32 (table:u8 key_len:u16 key){count}
//!             (the next keys in (table, key) order, empty tables skipped,
//!             at most min(limit, MAX_RANGE_KEYS); fewer: the end)
//! error    := code:u8 message (utf-8)               (an RPC error frame)
//! ```
//!
//! The method (`METHOD_SHARD_*`) says which call a request is; a request
//! of another version is refused, never guessed at. Every length is
//! checked against the bytes left and the engine's limits, so garbage is
//! an error, never a panic or a large allocation.

use tessera_io::{Body, DataBuf, Extent, IoError, Mutation, Stored};

pub const VERSION: u8 = 1;
pub const METHOD_SHARD_WRITE: u16 = 32;
pub const METHOD_SHARD_COMMIT: u16 = 33;
pub const METHOD_SHARD_LOAD: u16 = 34;
pub const METHOD_SHARD_READ: u16 = 35;
/// Added after the first four: a node of an older build answers it
/// "unknown method" (the heal then walks the primary's keys only).
pub const METHOD_SHARD_RANGE: u16 = 38;
/// Most keys one RANGE answer carries (keys are at most 1 KiB and some
/// bytes of the engine's: well under the frame limit).
pub const MAX_RANGE_KEYS: u32 = 4096;

/// Most mutations one commit may carry on the wire.
const MAX_MUTATIONS: u32 = 4096;
/// Most extents one body may name on the wire.
const MAX_EXTENTS: u32 = 1 << 16;
const EXTENT_BYTES: usize = 20;

/// Which disk's shard a call is for: a disk id and the shard's index in
/// its data dir.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Target {
    pub disk: [u8; 16],
    pub shard: u32,
}

/// A target whose shard index has this bit names a **cluster lane's**
/// member shard (`members`): `disk` is then the lane owner's node id and
/// the other bits the owner's shard index. Without it, `disk` is a disk
/// of the callee's erasure sets. (A build without cluster lanes refuses
/// such a target: no shard index that large.)
pub const CLUSTER_LANE: u32 = 1 << 31;

/// One decoded call.
#[derive(Debug, PartialEq)]
pub enum Call {
    /// The block stream, in the record buffer it is written from.
    Write(DataBuf),
    Commit(Vec<Mutation>),
    Load { table: u8, key: Vec<u8> },
    Read { extent: Extent, start: u64, end: u64 },
    /// The next keys from `table` on, after `after` in that table.
    Range { table: u8, after: Option<Vec<u8>>, limit: u32 },
}

/// A key as RANGE names it: (table, key).
pub type TableKey = (u8, Vec<u8>);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("malformed shard call: {0}")]
pub struct Malformed(pub &'static str);

struct Reader<'a> {
    b: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], Malformed> {
        if self.b.len() < n {
            return Err(Malformed("truncated"));
        }
        let (h, t) = self.b.split_at(n);
        self.b = t;
        Ok(h)
    }
    fn u8(&mut self) -> Result<u8, Malformed> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, Malformed> {
        Ok(u16::from_le_bytes(self.take(2)?.try_into().expect("2 bytes")))
    }
    fn u32(&mut self) -> Result<u32, Malformed> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().expect("4 bytes")))
    }
    fn u64(&mut self) -> Result<u64, Malformed> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().expect("8 bytes")))
    }
    fn bytes32(&mut self) -> Result<Vec<u8>, Malformed> {
        let n = self.u32()? as usize;
        Ok(self.take(n)?.to_vec())
    }
    fn key(&mut self) -> Result<Vec<u8>, Malformed> {
        let n = self.u16()? as usize;
        Ok(self.take(n)?.to_vec())
    }
    fn extent(&mut self) -> Result<Extent, Malformed> {
        Ok(Extent { segment: self.u32()?, offset: self.u64()?, len: self.u64()? })
    }
    fn body(&mut self) -> Result<Body, Malformed> {
        match self.u8()? {
            0 => Ok(Body::Inline(self.bytes32()?)),
            1 => {
                let n = self.u32()?;
                if n > MAX_EXTENTS || n as usize * EXTENT_BYTES > self.b.len() {
                    return Err(Malformed("extent count"));
                }
                (0..n).map(|_| self.extent()).collect::<Result<_, _>>().map(Body::Extents)
            }
            _ => Err(Malformed("body kind")),
        }
    }
    fn end(&self) -> Result<(), Malformed> {
        if self.b.is_empty() {
            Ok(())
        } else {
            Err(Malformed("trailing bytes"))
        }
    }
}

fn put_key(out: &mut Vec<u8>, key: &[u8]) {
    out.extend_from_slice(&(key.len() as u16).to_le_bytes());
    out.extend_from_slice(key);
}

fn put_bytes32(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&(b.len() as u32).to_le_bytes());
    out.extend_from_slice(b);
}

fn put_extent(out: &mut Vec<u8>, e: &Extent) {
    out.extend_from_slice(&e.segment.to_le_bytes());
    out.extend_from_slice(&e.offset.to_le_bytes());
    out.extend_from_slice(&e.len.to_le_bytes());
}

fn put_body(out: &mut Vec<u8>, b: &Body) {
    match b {
        Body::Inline(d) => {
            out.push(0);
            put_bytes32(out, d);
        }
        Body::Extents(ex) => {
            out.push(1);
            out.extend_from_slice(&(ex.len() as u32).to_le_bytes());
            for e in ex {
                put_extent(out, e);
            }
        }
    }
}

/// Keys longer than the wire's u16 cannot be sent (the engine's limit is
/// far below it, so such a call is refused by both ends alike).
fn key_fits(key: &[u8]) -> Result<(), IoError> {
    if key.len() > u16::MAX as usize {
        return Err(IoError::TooLarge);
    }
    Ok(())
}

fn head(target: Target, extra: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(21 + extra);
    out.push(VERSION);
    out.extend_from_slice(&target.disk);
    out.extend_from_slice(&target.shard.to_le_bytes());
    out
}

pub fn encode_write(target: Target, data: &[u8]) -> Vec<u8> {
    let mut out = head(target, data.len());
    out.extend_from_slice(data);
    out
}

pub fn encode_commit(target: Target, muts: &[Mutation]) -> Result<Vec<u8>, IoError> {
    if muts.len() > MAX_MUTATIONS as usize {
        return Err(IoError::TooLarge);
    }
    let mut out = head(target, 64);
    out.extend_from_slice(&(muts.len() as u32).to_le_bytes());
    for m in muts {
        match m {
            Mutation::Put { table, key, summary, meta, body } => {
                key_fits(key)?;
                out.push(1);
                out.push(*table);
                put_key(&mut out, key);
                put_bytes32(&mut out, summary);
                put_bytes32(&mut out, meta);
                put_body(&mut out, body);
            }
            Mutation::Delete { table, key } => {
                key_fits(key)?;
                out.push(2);
                out.push(*table);
                put_key(&mut out, key);
            }
        }
    }
    Ok(out)
}

pub fn encode_load(target: Target, table: u8, key: &[u8]) -> Result<Vec<u8>, IoError> {
    key_fits(key)?;
    let mut out = head(target, 3 + key.len());
    out.push(table);
    put_key(&mut out, key);
    Ok(out)
}

pub fn encode_read(target: Target, extent: &Extent, start: u64, end: u64) -> Vec<u8> {
    let mut out = head(target, EXTENT_BYTES + 16);
    put_extent(&mut out, extent);
    out.extend_from_slice(&start.to_le_bytes());
    out.extend_from_slice(&end.to_le_bytes());
    out
}

pub fn encode_range(target: Target, table: u8, after: Option<&[u8]>, limit: u32) -> Result<Vec<u8>, IoError> {
    let mut out = head(target, 8 + after.map_or(0, |k| k.len() + 2));
    out.push(table);
    match after {
        None => out.push(0),
        Some(k) => {
            key_fits(k)?;
            out.push(1);
            put_key(&mut out, k);
        }
    }
    out.extend_from_slice(&limit.to_le_bytes());
    Ok(out)
}

pub fn encode_keys(keys: &[TableKey]) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + keys.iter().map(|(_, k)| k.len() + 3).sum::<usize>());
    out.extend_from_slice(&(keys.len() as u32).to_le_bytes());
    for (t, k) in keys {
        out.push(*t);
        put_key(&mut out, k);
    }
    out
}

pub fn decode_keys(b: &[u8]) -> Result<Vec<TableKey>, Malformed> {
    let mut r = Reader { b };
    let n = r.u32()?;
    if n > MAX_RANGE_KEYS || n as usize * 3 > r.b.len() {
        return Err(Malformed("key count"));
    }
    let mut out = Vec::with_capacity(n as usize);
    for _ in 0..n {
        out.push((r.u8()?, r.key()?));
    }
    r.end()?;
    Ok(out)
}

/// Decodes a request of `method`.
pub fn decode_call(method: u16, payload: &[u8]) -> Result<(Target, Call), Malformed> {
    let mut r = Reader { b: payload };
    if r.u8()? != VERSION {
        return Err(Malformed("unknown version"));
    }
    let disk: [u8; 16] = r.take(16)?.try_into().expect("16 bytes");
    let target = Target { disk, shard: r.u32()? };
    let call = match method {
        METHOD_SHARD_WRITE => {
            // Straight into the record buffer the member shard writes.
            let data = r.take(r.b.len())?;
            let mut buf = DataBuf::new(data.len().max(1));
            buf.extend_from_slice(data);
            Call::Write(buf)
        }
        METHOD_SHARD_COMMIT => {
            let n = r.u32()?;
            // Each mutation takes at least 4 bytes: a count beyond what is
            // left is a lie, refused before anything is allocated for it.
            if n > MAX_MUTATIONS || n as usize * 4 > r.b.len() {
                return Err(Malformed("mutation count"));
            }
            let mut muts = Vec::with_capacity(n as usize);
            for _ in 0..n {
                let code = r.u8()?;
                let table = r.u8()?;
                let key = r.key()?;
                muts.push(match code {
                    1 => Mutation::Put { table, key, summary: r.bytes32()?, meta: r.bytes32()?, body: r.body()? },
                    2 => Mutation::Delete { table, key },
                    _ => return Err(Malformed("mutation kind")),
                });
            }
            Call::Commit(muts)
        }
        METHOD_SHARD_LOAD => Call::Load { table: r.u8()?, key: r.key()? },
        METHOD_SHARD_READ => Call::Read { extent: r.extent()?, start: r.u64()?, end: r.u64()? },
        METHOD_SHARD_RANGE => {
            let table = r.u8()?;
            let after = match r.u8()? {
                0 => None,
                1 => Some(r.key()?),
                _ => return Err(Malformed("range start kind")),
            };
            Call::Range { table, after, limit: r.u32()? }
        }
        _ => return Err(Malformed("unknown method")),
    };
    r.end()?;
    Ok((target, call))
}

pub fn encode_extent(e: &Extent) -> Vec<u8> {
    let mut out = Vec::with_capacity(EXTENT_BYTES);
    put_extent(&mut out, e);
    out
}

pub fn decode_extent(b: &[u8]) -> Result<Extent, Malformed> {
    let mut r = Reader { b };
    let e = r.extent()?;
    r.end()?;
    Ok(e)
}

pub fn decode_seq(b: &[u8]) -> Result<u64, Malformed> {
    let mut r = Reader { b };
    let s = r.u64()?;
    r.end()?;
    Ok(s)
}

pub fn encode_stored(s: &Option<Stored>) -> Vec<u8> {
    let Some(s) = s else { return vec![0] };
    let mut out = Vec::with_capacity(32 + s.summary.len() + s.meta.len());
    out.push(1);
    out.extend_from_slice(&s.seq.to_le_bytes());
    put_bytes32(&mut out, &s.summary);
    put_bytes32(&mut out, &s.meta);
    put_body(&mut out, &s.body);
    out
}

pub fn decode_stored(b: &[u8]) -> Result<Option<Stored>, Malformed> {
    let mut r = Reader { b };
    let s = match r.u8()? {
        0 => None,
        1 => Some(Stored { seq: r.u64()?, summary: r.bytes32()?, meta: r.bytes32()?, body: r.body()? }),
        _ => return Err(Malformed("load answer kind")),
    };
    r.end()?;
    Ok(s)
}

// Error codes: what a member's error means to the lane primary must cross
// the wire (Moved makes a reader load again, NoSpace is not a failed
// disk, ...). The messages of `Corrupt` and `InvalidExtent` are static in
// the engine; across the wire they become these fixed ones.
const E_IO: u8 = 1;
const E_CORRUPT: u8 = 2;
const E_SHARD_FAILED: u8 = 3;
const E_WRITE_FAILED: u8 = 4;
const E_NO_SPACE: u8 = 5;
const E_TOO_LARGE: u8 = 6;
const E_INVALID_EXTENT: u8 = 7;
const E_MOVED: u8 = 8;
const E_FORMAT: u8 = 9;
const E_BELOW_QUORUM: u8 = 10;
/// The node does not serve that disk's shard (not here, or offline).
pub const E_NOT_HOSTED: u8 = 11;
const E_MALFORMED: u8 = 12;

pub fn encode_error(e: &IoError) -> Vec<u8> {
    let code = match e {
        IoError::Io(_) => E_IO,
        IoError::Corrupt { .. } => E_CORRUPT,
        IoError::ShardFailed => E_SHARD_FAILED,
        IoError::WriteFailed => E_WRITE_FAILED,
        IoError::NoSpace => E_NO_SPACE,
        IoError::TooLarge => E_TOO_LARGE,
        IoError::InvalidExtent(_) => E_INVALID_EXTENT,
        IoError::Moved => E_MOVED,
        IoError::Format(_) => E_FORMAT,
        IoError::BelowQuorum => E_BELOW_QUORUM,
    };
    let mut out = vec![code];
    out.extend_from_slice(e.to_string().as_bytes());
    out
}

pub fn encode_refusal(code: u8, why: &str) -> Vec<u8> {
    let mut out = vec![code];
    out.extend_from_slice(why.as_bytes());
    out
}

pub fn malformed_error(m: &Malformed) -> Vec<u8> {
    encode_refusal(E_MALFORMED, &m.to_string())
}

/// The member's error as the lane primary sees it.
pub fn decode_error(b: &[u8]) -> IoError {
    let msg = String::from_utf8_lossy(b.get(1..).unwrap_or_default()).into_owned();
    match b.first().copied() {
        Some(E_CORRUPT) => IoError::Corrupt { segment: 0, offset: 0, what: "a remote member's record (see its log)" },
        Some(E_SHARD_FAILED) => IoError::ShardFailed,
        Some(E_WRITE_FAILED) => IoError::WriteFailed,
        Some(E_NO_SPACE) => IoError::NoSpace,
        Some(E_TOO_LARGE) => IoError::TooLarge,
        Some(E_INVALID_EXTENT) => IoError::InvalidExtent("refused by the remote member"),
        Some(E_MOVED) => IoError::Moved,
        Some(E_FORMAT) => IoError::Format(format!("remote member: {msg}")),
        Some(E_BELOW_QUORUM) => IoError::BelowQuorum,
        _ => IoError::Io(std::io::Error::other(format!("remote member: {msg}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target() -> Target {
        Target { disk: [7; 16], shard: 3 }
    }

    fn data_buf(data: &[u8]) -> DataBuf {
        let mut b = DataBuf::new(data.len().max(1));
        b.extend_from_slice(data);
        b
    }

    fn muts() -> Vec<Mutation> {
        vec![
            Mutation::Put {
                table: 1,
                key: "ключ/🦀".as_bytes().to_vec(),
                summary: vec![1, 2, 3],
                meta: vec![9; 300],
                body: Body::Extents(vec![Extent { segment: 4, offset: 8192, len: 1 << 20 }, Extent { segment: 5, offset: 0, len: 7 }]),
            },
            Mutation::Put { table: 2, key: vec![], summary: vec![], meta: vec![], body: Body::Inline(b"inline".to_vec()) },
            Mutation::Delete { table: 3, key: vec![0xFF; 1024] },
        ]
    }

    #[test]
    fn every_call_and_answer_round_trips() {
        let t = target();
        let cases = [
            (METHOD_SHARD_WRITE, encode_write(t, b"data bytes"), Call::Write(data_buf(b"data bytes"))),
            (METHOD_SHARD_WRITE, encode_write(t, b""), Call::Write(data_buf(b""))),
            (METHOD_SHARD_COMMIT, encode_commit(t, &muts()).unwrap(), Call::Commit(muts())),
            (METHOD_SHARD_COMMIT, encode_commit(t, &[]).unwrap(), Call::Commit(vec![])),
            (METHOD_SHARD_LOAD, encode_load(t, 9, b"k").unwrap(), Call::Load { table: 9, key: b"k".to_vec() }),
            (
                METHOD_SHARD_READ,
                encode_read(t, &Extent { segment: 1, offset: 2, len: 3 }, 1, 3),
                Call::Read { extent: Extent { segment: 1, offset: 2, len: 3 }, start: 1, end: 3 },
            ),
            (METHOD_SHARD_RANGE, encode_range(t, 0, None, 10).unwrap(), Call::Range { table: 0, after: None, limit: 10 }),
            (
                METHOD_SHARD_RANGE,
                encode_range(t, 4, Some("ключ".as_bytes()), 4096).unwrap(),
                Call::Range { table: 4, after: Some("ключ".as_bytes().to_vec()), limit: 4096 },
            ),
        ];
        for (method, bytes, want) in cases {
            assert_eq!(decode_call(method, &bytes).unwrap(), (t, want));
        }
        let e = Extent { segment: u32::MAX, offset: u64::MAX, len: 1 };
        assert_eq!(decode_extent(&encode_extent(&e)).unwrap(), e);
        assert_eq!(decode_seq(&77u64.to_le_bytes()).unwrap(), 77);
        for keys in [vec![], vec![(0u8, vec![]), (0, b"a".to_vec()), (9, vec![0xFF; 1024])]] {
            assert_eq!(decode_keys(&encode_keys(&keys)).unwrap(), keys);
        }
        let keys = encode_keys(&[(1, b"k".to_vec())]);
        for n in 0..keys.len() {
            assert!(decode_keys(&keys[..n]).is_err(), "a RANGE answer cut to {n} bytes decoded");
        }
        assert_eq!(decode_keys(&u32::MAX.to_le_bytes()).unwrap_err(), Malformed("key count"));
        for s in [
            None,
            Some(Stored { seq: 5, summary: vec![1], meta: vec![2; 10], body: Body::Inline(vec![3; 100]) }),
            Some(Stored { seq: 6, summary: vec![], meta: vec![], body: Body::Extents(vec![e]) }),
        ] {
            let back = decode_stored(&encode_stored(&s)).unwrap();
            assert_eq!(back.map(|x| (x.seq, x.summary, x.meta, x.body)), s.map(|x| (x.seq, x.summary, x.meta, x.body)));
        }
    }

    /// Every truncation and every single-byte change of a request either
    /// decodes to something (a changed byte inside a key is still a call)
    /// or is refused: never a panic, never a large allocation.
    #[test]
    fn truncated_and_altered_requests_are_refused_without_panic() {
        let t = target();
        let all = [
            (METHOD_SHARD_COMMIT, encode_commit(t, &muts()).unwrap()),
            (METHOD_SHARD_LOAD, encode_load(t, 1, b"key").unwrap()),
            (METHOD_SHARD_READ, encode_read(t, &Extent { segment: 1, offset: 2, len: 3 }, 0, 3)),
            (METHOD_SHARD_RANGE, encode_range(t, 2, Some(b"after"), 100).unwrap()),
            (METHOD_SHARD_RANGE, encode_range(t, 2, None, 100).unwrap()),
        ];
        for (method, bytes) in &all {
            for n in 0..bytes.len() {
                assert!(decode_call(*method, &bytes[..n]).is_err(), "method {method}: a prefix of {n} bytes decoded");
            }
            let mut longer = bytes.clone();
            longer.push(0);
            assert_eq!(decode_call(*method, &longer).unwrap_err(), Malformed("trailing bytes"));
            for i in 0..bytes.len().min(400) {
                for v in [0u8, 0xFF, bytes[i] ^ 0x80] {
                    let mut b = bytes.clone();
                    b[i] = v;
                    let _ = decode_call(*method, &b);
                }
            }
        }
        let mut other_version = encode_load(t, 1, b"k").unwrap();
        other_version[0] = 2;
        assert_eq!(decode_call(METHOD_SHARD_LOAD, &other_version).unwrap_err(), Malformed("unknown version"));
        assert!(decode_call(999, &encode_load(t, 1, b"k").unwrap()).is_err());
        // A count claiming more than the payload holds is refused at once.
        let mut lie = head(t, 8);
        lie.extend_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(decode_call(METHOD_SHARD_COMMIT, &lie).unwrap_err(), Malformed("mutation count"));
        assert!(decode_stored(&[1, 0, 0]).is_err());
        assert!(decode_stored(&[2]).is_err());
        assert!(decode_extent(&[0; 19]).is_err());
    }

    #[test]
    fn errors_keep_their_meaning_across_the_wire() {
        for e in [IoError::Moved, IoError::NoSpace, IoError::ShardFailed, IoError::WriteFailed, IoError::TooLarge, IoError::BelowQuorum] {
            let back = decode_error(&encode_error(&e));
            assert_eq!(std::mem::discriminant(&back), std::mem::discriminant(&e));
        }
        assert!(matches!(decode_error(&encode_error(&IoError::Corrupt { segment: 1, offset: 2, what: "x" })), IoError::Corrupt { .. }));
        assert!(matches!(decode_error(&encode_refusal(E_NOT_HOSTED, "no such disk")), IoError::Io(_)));
        assert!(matches!(decode_error(&[]), IoError::Io(_)));
    }
}
