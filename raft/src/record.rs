//! FORMAT BOUNDARY: the framing of every record tessera-raft writes to disk
//! (log entries, truncations, purges, the vote, snapshots).
//!
//! ```text
//! 0   magic  b"TSRF"
//! 4   version u8 (= 1)
//! 5   kind    u8 (see `Kind`)
//! 6   reserved u16 (= 0)
//! 8   payload length u32 LE
//! 12  CRC-32C u32 LE over bytes 0..12 and the payload
//! 16  payload (JSON, see each kind)
//! ```
//!
//! A record that runs past the end of its file, or whose checksum fails
//! and reaches the end of the file, is a torn write (never acknowledged: the
//! store fsyncs before it acknowledges) and is cut off when the log is
//! opened. A bad record followed by more data, an unknown version or kind, or
//! a wrong magic is refused with an error naming the file and offset.

use std::fmt;

pub const MAGIC: &[u8; 4] = b"TSRF";
pub const VERSION: u8 = 1;
pub const HEADER: usize = 16;
/// No record is larger (a snapshot of the configuration included).
pub const MAX_PAYLOAD: usize = 256 << 20;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    /// Payload: an `openraft::Entry` (JSON).
    Entry = 1,
    /// Payload: the first index removed (JSON number); entries at and after it are gone.
    Truncate = 2,
    /// Payload: the last purged `LogId` (JSON); entries up to it are gone.
    Purge = 3,
    /// Payload: the `Vote` (JSON).
    Vote = 4,
    /// Payload: a `SnapshotFile` (JSON): meta and the state.
    Snapshot = 5,
    /// Payload: the last committed `LogId` (JSON) this node knew of.
    Committed = 6,
}

impl Kind {
    fn from_u8(b: u8) -> Option<Kind> {
        Some(match b {
            1 => Kind::Entry,
            2 => Kind::Truncate,
            3 => Kind::Purge,
            4 => Kind::Vote,
            5 => Kind::Snapshot,
            6 => Kind::Committed,
            _ => return None,
        })
    }
}

pub fn encode(kind: Kind, payload: &[u8], out: &mut Vec<u8>) {
    assert!(payload.len() <= MAX_PAYLOAD, "raft record of {} bytes", payload.len());
    let start = out.len();
    out.extend_from_slice(MAGIC);
    out.push(VERSION);
    out.push(kind as u8);
    out.extend_from_slice(&0u16.to_le_bytes());
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    let crc = crc32c::crc32c_append(crc32c::crc32c(&out[start..start + 12]), payload);
    out.extend_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(payload);
}

/// What `decode` found at the start of a buffer.
#[derive(Debug, PartialEq, Eq)]
pub enum Decoded<'a> {
    Record { kind: Kind, payload: &'a [u8], len: usize },
    /// Incomplete, or a checksum failure that reaches the end of the buffer:
    /// a write cut short by a crash.
    Torn,
}

#[derive(Debug, PartialEq, Eq)]
pub enum RecordError {
    BadMagic,
    UnknownVersion(u8),
    UnknownKind(u8),
    TooLarge(usize),
    /// A checksum failure with more data after the record: not a torn tail.
    Corrupt,
}

impl fmt::Display for RecordError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecordError::BadMagic => write!(f, "not a tessera raft record (bad magic)"),
            RecordError::UnknownVersion(v) => write!(
                f,
                "raft record version {v}: this build reads version {VERSION} only (written by a newer tessera?)"
            ),
            RecordError::UnknownKind(k) => write!(f, "unknown raft record kind {k}"),
            RecordError::TooLarge(n) => write!(f, "raft record of {n} bytes is over the limit"),
            RecordError::Corrupt => write!(f, "raft record checksum mismatch in the middle of the file"),
        }
    }
}

pub fn decode(buf: &[u8]) -> Result<Decoded<'_>, RecordError> {
    if buf.len() < HEADER {
        // A short header is a torn tail, unless what is there already says otherwise.
        if buf.len() >= 4 && &buf[..4] != MAGIC {
            return Err(RecordError::BadMagic);
        }
        return Ok(Decoded::Torn);
    }
    if &buf[..4] != MAGIC {
        return Err(RecordError::BadMagic);
    }
    if buf[4] != VERSION {
        return Err(RecordError::UnknownVersion(buf[4]));
    }
    let len = u32::from_le_bytes(buf[8..12].try_into().unwrap()) as usize;
    if len > MAX_PAYLOAD {
        return Err(RecordError::TooLarge(len));
    }
    let end = HEADER + len;
    if buf.len() < end {
        return Ok(Decoded::Torn);
    }
    let want = u32::from_le_bytes(buf[12..16].try_into().unwrap());
    let got = crc32c::crc32c_append(crc32c::crc32c(&buf[..12]), &buf[HEADER..end]);
    if want != got {
        return if end == buf.len() { Ok(Decoded::Torn) } else { Err(RecordError::Corrupt) };
    }
    let kind = Kind::from_u8(buf[5]).ok_or(RecordError::UnknownKind(buf[5]))?;
    Ok(Decoded::Record { kind, payload: &buf[HEADER..end], len: end })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_every_damage() {
        let mut buf = Vec::new();
        encode(Kind::Entry, b"hello", &mut buf);
        encode(Kind::Vote, b"{}", &mut buf);
        let Decoded::Record { kind, payload, len } = decode(&buf).unwrap() else { panic!() };
        assert_eq!((kind, payload), (Kind::Entry, &b"hello"[..]));
        let Decoded::Record { kind, payload, .. } = decode(&buf[len..]).unwrap() else { panic!() };
        assert_eq!((kind, payload), (Kind::Vote, &b"{}"[..]));
        // Every prefix of the last record is a torn tail.
        for cut in len..buf.len() {
            assert_eq!(decode(&buf[len..cut]), Ok(Decoded::Torn), "cut {cut}");
        }
        // A flipped bit in the first record (followed by another) is refused;
        // in the last record it is a torn tail.
        let first = len;
        for bit in 0..first * 8 {
            let mut b = buf.clone();
            b[bit / 8] ^= 1 << (bit % 8);
            let r = decode(&b);
            assert!(!matches!(r, Ok(Decoded::Record { kind: Kind::Entry, payload: b"hello", .. })), "bit {bit}");
            let mut last = buf[..first].to_vec();
            last[bit / 8] ^= 1 << (bit % 8);
            assert!(!matches!(decode(&last), Ok(Decoded::Record { .. })), "bit {bit} alone");
        }
        let mut v2 = buf.clone();
        v2[4] = 2;
        assert_eq!(decode(&v2), Err(RecordError::UnknownVersion(2)));
        assert!(RecordError::UnknownVersion(2).to_string().contains("version 2"));
    }
}
