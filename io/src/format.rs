//! FORMAT — the on-disk format of a shard, version 1.
//!
//! This module is a boundary: shards written by one build are read by the
//! next. Do not change a byte of it by accident. A change means a new
//! `FORMAT_VERSION`, a reader for every older version, and a test that opens
//! a shard written by the old code.
//!
//! ```text
//! <shard dir>/
//!   SHARD             shard header file, 64 bytes (below); written once at create
//!   seg-00000001.log  append-only segments; a new one at every open and
//!   seg-00000002.log  whenever the active one would pass segment_size_bytes
//! ```
//!
//! All integers are little-endian. Every record starts on a 4096-byte
//! boundary of its segment and is zero-padded to a multiple of 4096 bytes.
//! Every record starts with the same 64-byte header:
//!
//! ```text
//!  0  magic        [u8; 4]  b"TSRL"
//!  4  version      u16      FORMAT_VERSION (1)
//!  6  kind         u8       1 segment, 2 data, 3 commit
//!  7  flags        u8       0
//!  8  shard        u32      shard id (a segment copied into another shard is rejected)
//! 12  segment      u32      segment number of the file it lives in
//! 16  seq          u64      commit: sequence number; data and segment: 0
//! 24  payload_len  u64      data: data bytes; commit: serialized mutations; segment: 0
//! 32  offset       u64      the record's own offset in its file (catches misplaced writes)
//! 40  chunk_bytes  u32      data: checksum chunk size (65536); others: 0
//! 44  durable_seg  u32      commit and segment records: the log was durable up to
//! 48  durable_off  u64        (durable_seg, durable_off) when this record was written
//! 56  checksum     u64      xxh3-64 of bytes [0, 56) followed by the covered bytes
//! ```
//!
//! Positions (segment, offset) compare lexicographically: segments are
//! written strictly one after another.
//!
//! Kinds and what the checksum covers after the first 64 bytes:
//! - segment (first record of every segment, 4096 bytes): bytes [64, 4096).
//! - data: a 4096-byte header block, then `payload_len` data bytes starting
//!   4096-aligned, then zero padding. Header block bytes [64, 64 + 8·chunks)
//!   hold the xxh3-64 of each 64 KiB chunk of the data (the last one
//!   partial), so a range read verifies only the chunks it touches. The
//!   header checksum covers header block bytes [64, 4096).
//! - commit: the payload (mutations, see `codec`) right after the header; the
//!   checksum covers [64, 64 + payload_len).
//!
//! A segment's valid content is the longest prefix of valid records; recovery
//! ignores everything from the first invalid record of a segment on. A
//! commit record may reference data records that were not yet durable when
//! it was written; recovery verifies the data of such commits unless a
//! later commit's durable mark proves it durable (see `recovery`).

use xxhash_rust::xxh3::Xxh3;

/// Alignment and granularity of every record and every direct I/O.
pub const BLOCK: usize = 4096;
/// Data records carry one checksum per chunk of this many data bytes.
pub const CHUNK_BYTES: usize = 64 * 1024;
/// Largest data record payload: its chunk checksums must fit the header block.
pub const MAX_DATA_BYTES: usize = 16 << 20;
pub const MAX_KEY_BYTES: usize = 4096;
pub const MAX_SUMMARY_BYTES: usize = 4096;
pub const MAX_META_BYTES: usize = 4 << 20;
pub const MAX_INLINE_BYTES: usize = 4 << 20;
/// Largest serialized commit payload; bounds what a decode may allocate.
pub const MAX_COMMIT_PAYLOAD_BYTES: usize = 64 << 20;

pub const RECORD_MAGIC: [u8; 4] = *b"TSRL";
pub const FORMAT_VERSION: u16 = 1;
pub const HEADER_BYTES: usize = 64;
const CHECKSUM_AT: usize = 56;

pub const SHARD_FILE: &str = "SHARD";
pub const SHARD_MAGIC: [u8; 8] = *b"TSRSHARD";
pub const SHARD_FILE_BYTES: usize = 64;

const _: () = assert!(HEADER_BYTES + 8 * (MAX_DATA_BYTES / CHUNK_BYTES) <= BLOCK);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Segment = 1,
    Data = 2,
    Commit = 3,
}

impl Kind {
    fn from_u8(v: u8) -> Option<Kind> {
        match v {
            1 => Some(Kind::Segment),
            2 => Some(Kind::Data),
            3 => Some(Kind::Commit),
            _ => None,
        }
    }
}

/// `n` rounded up to a multiple of [`BLOCK`].
pub const fn align_up(n: u64) -> u64 {
    n.div_ceil(BLOCK as u64) * BLOCK as u64
}

pub fn segment_file_name(segment: u32) -> String {
    format!("seg-{segment:08}.log")
}

/// The segment number of a file called `seg-<n>.log`, else None.
pub fn parse_segment_file_name(name: &str) -> Option<u32> {
    let digits = name.strip_prefix("seg-")?.strip_suffix(".log")?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The fixed 64-byte header at the start of every record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordHeader {
    pub kind: Kind,
    pub shard: u32,
    pub segment: u32,
    pub seq: u64,
    pub payload_len: u64,
    pub offset: u64,
    /// Commit and segment records: the log's durable prefix when the record was written.
    pub durable: Pos,
}

/// A place in a shard's log: segment number, then offset in the segment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Pos {
    pub segment: u32,
    pub offset: u64,
}

impl RecordHeader {
    /// Bytes the whole record takes in its segment, padding included.
    pub fn record_len(&self) -> u64 {
        match self.kind {
            Kind::Segment => BLOCK as u64,
            Kind::Data => BLOCK as u64 + align_up(self.payload_len),
            Kind::Commit => align_up(HEADER_BYTES as u64 + self.payload_len),
        }
    }

    /// End (exclusive, from the record start) of the bytes the checksum covers.
    fn covered_end(&self) -> usize {
        match self.kind {
            Kind::Segment | Kind::Data => BLOCK,
            // Bounded by decode(): payload_len <= MAX_COMMIT_PAYLOAD_BYTES.
            Kind::Commit => HEADER_BYTES + self.payload_len as usize,
        }
    }

    /// Bytes of the record that must be in memory to verify its checksum.
    pub fn verify_len(&self) -> usize {
        align_up(self.covered_end() as u64) as usize
    }

    /// Writes the header into `rec[..64]` and seals the checksum over the
    /// covered bytes, which must already be in place.
    pub fn write_and_seal(&self, rec: &mut [u8]) {
        let h = &mut rec[..HEADER_BYTES];
        h.fill(0);
        h[0..4].copy_from_slice(&RECORD_MAGIC);
        h[4..6].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        h[6] = self.kind as u8;
        h[8..12].copy_from_slice(&self.shard.to_le_bytes());
        h[12..16].copy_from_slice(&self.segment.to_le_bytes());
        h[16..24].copy_from_slice(&self.seq.to_le_bytes());
        h[24..32].copy_from_slice(&self.payload_len.to_le_bytes());
        h[32..40].copy_from_slice(&self.offset.to_le_bytes());
        match self.kind {
            Kind::Data => h[40..44].copy_from_slice(&(CHUNK_BYTES as u32).to_le_bytes()),
            Kind::Commit | Kind::Segment => {
                h[44..48].copy_from_slice(&self.durable.segment.to_le_bytes());
                h[48..56].copy_from_slice(&self.durable.offset.to_le_bytes());
            }
        }
        let sum = checksum(rec, self.covered_end());
        rec[CHECKSUM_AT..HEADER_BYTES].copy_from_slice(&sum.to_le_bytes());
    }

    /// Parses the fixed fields of `b[..64]`. Checks magic, version, kind and
    /// length limits, not the checksum (see [`RecordHeader::verify`]).
    pub fn decode(b: &[u8]) -> Result<RecordHeader, &'static str> {
        if b.len() < HEADER_BYTES {
            return Err("short record header");
        }
        if b[0..4] != RECORD_MAGIC {
            return Err("record magic");
        }
        if u16_at(b, 4) != FORMAT_VERSION {
            return Err("record format version");
        }
        let kind = Kind::from_u8(b[6]).ok_or("record kind")?;
        let h = RecordHeader {
            kind,
            shard: u32_at(b, 8),
            segment: u32_at(b, 12),
            seq: u64_at(b, 16),
            payload_len: u64_at(b, 24),
            offset: u64_at(b, 32),
            durable: match kind {
                Kind::Commit | Kind::Segment => Pos {
                    segment: u32_at(b, 44),
                    offset: u64_at(b, 48),
                },
                _ => Pos::default(),
            },
        };
        let chunk_bytes = u32_at(b, 40);
        match kind {
            Kind::Segment if h.payload_len != 0 => return Err("segment record length"),
            Kind::Data if h.payload_len > MAX_DATA_BYTES as u64 => {
                return Err("data record length")
            }
            Kind::Data if chunk_bytes as usize != CHUNK_BYTES => return Err("data chunk size"),
            Kind::Commit if h.payload_len > MAX_COMMIT_PAYLOAD_BYTES as u64 => {
                return Err("commit record length")
            }
            _ => {}
        }
        Ok(h)
    }

    /// Checks the checksum; `rec` holds at least `verify_len()` bytes of the record.
    pub fn verify(&self, rec: &[u8]) -> bool {
        let end = self.covered_end();
        rec.len() >= end && checksum(rec, end) == u64_at(rec, CHECKSUM_AT)
    }

    /// Decodes and verifies a record header read from (`segment`, `offset`)
    /// of shard `shard`, expecting `kind`.
    pub fn read_expect(
        rec: &[u8],
        kind: Kind,
        shard: u32,
        segment: u32,
        offset: u64,
    ) -> Result<RecordHeader, &'static str> {
        let h = RecordHeader::decode(rec)?;
        if h.kind != kind {
            return Err("record kind");
        }
        if h.shard != shard || h.segment != segment || h.offset != offset {
            return Err("record address");
        }
        if !h.verify(rec) {
            return Err("record checksum");
        }
        Ok(h)
    }
}

fn checksum(rec: &[u8], covered_end: usize) -> u64 {
    let mut h = Xxh3::new();
    h.update(&rec[..CHECKSUM_AT]);
    h.update(&rec[HEADER_BYTES..covered_end]);
    h.digest()
}

/// Number of checksum chunks of a data record of `len` bytes.
pub fn chunk_count(len: u64) -> usize {
    len.div_ceil(CHUNK_BYTES as u64) as usize
}

/// Fills the chunk checksums of a data record's header block from its data.
pub fn write_chunk_sums(header_block: &mut [u8], data: &[u8]) {
    for (i, chunk) in data.chunks(CHUNK_BYTES).enumerate() {
        let at = HEADER_BYTES + 8 * i;
        header_block[at..at + 8].copy_from_slice(&xxhash_rust::xxh3::xxh3_64(chunk).to_le_bytes());
    }
}

/// The stored checksum of chunk `i` from a verified data header block.
pub fn chunk_sum(header_block: &[u8], i: usize) -> u64 {
    u64_at(header_block, HEADER_BYTES + 8 * i)
}

pub fn chunk_ok(header_block: &[u8], i: usize, chunk: &[u8]) -> bool {
    xxhash_rust::xxh3::xxh3_64(chunk) == chunk_sum(header_block, i)
}

/// The shard header file: identifies the directory as shard `shard` of format `version`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ShardFile {
    pub version: u16,
    pub shard: u32,
    pub created_unix_secs: u64,
}

impl ShardFile {
    // 0 magic [u8;8] | 8 version u16 | 10 reserved u16 | 12 shard u32 | 16 block u32
    // | 20 chunk u32 | 24 created u64 | 32 reserved [u8;24] | 56 xxh3-64 of [0,56)
    pub fn encode(&self) -> [u8; SHARD_FILE_BYTES] {
        let mut b = [0u8; SHARD_FILE_BYTES];
        b[0..8].copy_from_slice(&SHARD_MAGIC);
        b[8..10].copy_from_slice(&self.version.to_le_bytes());
        b[12..16].copy_from_slice(&self.shard.to_le_bytes());
        b[16..20].copy_from_slice(&(BLOCK as u32).to_le_bytes());
        b[20..24].copy_from_slice(&(CHUNK_BYTES as u32).to_le_bytes());
        b[24..32].copy_from_slice(&self.created_unix_secs.to_le_bytes());
        let sum = xxhash_rust::xxh3::xxh3_64(&b[..CHECKSUM_AT]);
        b[CHECKSUM_AT..].copy_from_slice(&sum.to_le_bytes());
        b
    }

    pub fn decode(b: &[u8]) -> Result<ShardFile, &'static str> {
        if b.len() != SHARD_FILE_BYTES {
            return Err("shard file length");
        }
        if b[0..8] != SHARD_MAGIC {
            return Err("shard file magic");
        }
        if xxhash_rust::xxh3::xxh3_64(&b[..CHECKSUM_AT]) != u64_at(b, CHECKSUM_AT) {
            return Err("shard file checksum");
        }
        if u32_at(b, 16) as usize != BLOCK || u32_at(b, 20) as usize != CHUNK_BYTES {
            return Err("shard file block or chunk size");
        }
        Ok(ShardFile {
            version: u16_at(b, 8),
            shard: u32_at(b, 12),
            created_unix_secs: u64_at(b, 24),
        })
    }
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(a)
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn commit_header(payload_len: u64) -> RecordHeader {
        RecordHeader {
            kind: Kind::Commit,
            shard: 7,
            segment: 3,
            seq: 42,
            payload_len,
            offset: 8192,
            durable: Pos {
                segment: 2,
                offset: 4096,
            },
        }
    }

    #[test]
    fn header_roundtrip_and_checksum() {
        let h = commit_header(5);
        let mut rec = vec![0u8; BLOCK];
        rec[64..69].copy_from_slice(b"hello");
        h.write_and_seal(&mut rec);
        assert_eq!(
            RecordHeader::read_expect(&rec, Kind::Commit, 7, 3, 8192),
            Ok(h)
        );
        assert_eq!(h.record_len(), 4096);
        // Wrong address, flipped payload byte, flipped header byte.
        assert!(RecordHeader::read_expect(&rec, Kind::Commit, 7, 3, 0).is_err());
        let mut bad = rec.clone();
        bad[66] ^= 1;
        assert_eq!(
            RecordHeader::read_expect(&bad, Kind::Commit, 7, 3, 8192),
            Err("record checksum")
        );
        let mut bad = rec.clone();
        bad[17] ^= 1;
        assert!(RecordHeader::read_expect(&bad, Kind::Commit, 7, 3, 8192).is_err());
    }

    #[test]
    fn record_lengths() {
        assert_eq!(commit_header(4032).record_len(), 4096);
        assert_eq!(commit_header(4033).record_len(), 8192);
        let d = RecordHeader {
            kind: Kind::Data,
            payload_len: 1 << 20,
            durable: Pos::default(),
            ..commit_header(0)
        };
        assert_eq!(d.record_len(), 4096 + (1 << 20));
        let d = RecordHeader {
            kind: Kind::Data,
            payload_len: 1,
            durable: Pos::default(),
            ..commit_header(0)
        };
        assert_eq!(d.record_len(), 8192);
    }

    #[test]
    fn garbage_headers_are_rejected() {
        assert!(RecordHeader::decode(&[0u8; 64]).is_err());
        assert!(RecordHeader::decode(&[0xffu8; 64]).is_err());
        assert!(RecordHeader::decode(&[0u8; 10]).is_err());
        let mut rec = vec![0u8; BLOCK];
        commit_header(u64::MAX).write_and_seal_unchecked(&mut rec);
        assert_eq!(RecordHeader::decode(&rec), Err("commit record length"));
    }

    impl RecordHeader {
        // Writes the fields without sealing, for headers write_and_seal refuses to cover.
        fn write_and_seal_unchecked(&self, rec: &mut [u8]) {
            rec[0..4].copy_from_slice(&RECORD_MAGIC);
            rec[4..6].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
            rec[6] = self.kind as u8;
            rec[24..32].copy_from_slice(&self.payload_len.to_le_bytes());
        }
    }

    #[test]
    fn segment_names() {
        assert_eq!(segment_file_name(12), "seg-00000012.log");
        assert_eq!(parse_segment_file_name("seg-00000012.log"), Some(12));
        assert_eq!(parse_segment_file_name("seg-7.log"), Some(7));
        for bad in [
            "seg-.log",
            "seg-1.log.tmp",
            "seg--1.log",
            "x-1.log",
            "seg-99999999999.log",
        ] {
            assert_eq!(parse_segment_file_name(bad), None, "{bad}");
        }
    }

    #[test]
    fn shard_file_roundtrip() {
        let f = ShardFile {
            version: FORMAT_VERSION,
            shard: 9,
            created_unix_secs: 1_700_000_000,
        };
        let b = f.encode();
        assert_eq!(ShardFile::decode(&b), Ok(f));
        let mut bad = b;
        bad[12] ^= 1;
        assert_eq!(ShardFile::decode(&bad), Err("shard file checksum"));
    }
}
