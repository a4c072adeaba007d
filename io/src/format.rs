//! FORMAT — the on-disk format of a shard, version 3 (reads version 2).
//!
//! This module is a boundary: shards written by one build are read by the
//! next. Do not change a byte of it by accident. A change means a new
//! `FORMAT_VERSION`, a reader for every older version (or a refusal at open
//! with a clear message), and a test that opens a shard written by the old
//! code (`io/tests/format2.rs`). Format 1 (tessera 0.1) is refused at open:
//! see `ShardFile::decode`.
//!
//! Format 3 differs from format 2 only in where batches go (packed batches,
//! below); every record carries its own version, so a format-2 shard's old
//! segments are read as they are and the segments a format-3 build starts
//! are written in format 3. Opening a format-2 shard for writes first
//! rewrites its `SHARD` file as format 3 (an older build then refuses it
//! with a clear message instead of misreading packed records).
//!
//! ```text
//! <shard dir>/
//!   SHARD              shard header file, 64 bytes (below); written once at create
//!   seg-00000001.log   append-only segments; a new one at every open, when the
//!   seg-00000002.log   active one would pass segment_size_bytes, and after an I/O error
//!   ckpt-<seq>.idx     index checkpoints (see `checkpoint`), the newest two kept
//! ```
//!
//! All integers are little-endian. Segment, data and batch-copy records
//! start on a 4096-byte boundary of their segment. In format 2 every record
//! is also zero-padded to a multiple of 4096 bytes. In format 3 a batch may
//! start at any 64-byte boundary (it is *packed*: it starts where the
//! previous batch's copy ends, inside that copy's last block, which its
//! write rewrites with unchanged bytes), its primary part is zero-padded to
//! a 4096-byte boundary (so a batch and its copy never share a block), and
//! its copy ends at a 64-byte boundary. Anything else after a copy starts
//! at the next 4096-byte boundary (the bytes in between are zero). Every
//! record starts with the same 64-byte header:
//!
//! ```text
//!  0  magic        [u8; 4]  b"TSRL"
//!  4  version      u16      2 or 3 (FORMAT_VERSION, written by this build)
//!  6  kind         u8       1 segment, 2 data, 4 batch, 5 batch copy
//!  7  flags        u8       0
//!  8  shard        u32      shard id (a segment copied into another shard is rejected)
//! 12  segment      u32      segment number of the file it lives in
//! 16  seq          u64      batch: seq of its first commit; segment: first seq it will hold
//! 24  payload_len  u64      data: data bytes; batch: entry bytes; copy: copy bytes
//!                           (format-3 batch: u32 entry bytes at 24, u32 copy
//!                           record bytes at 28: where the copy ends, so a scan
//!                           steps over a damaged copy)
//! 32  offset       u64      the record's own offset in its file (catches misplaced writes)
//! 40  aux          u32      data: chunk size (65536); batch and copy: commit count
//! 44  durable_seg  u32      batch, copy and segment records: the log was durable
//! 48  durable_off  u64        up to (durable_seg, durable_off) when this record was written
//! 56  checksum     u64
//! ```
//!
//! Checksums are keyed: `mac = SipHash-2-4(shard key, header[0..56) ‖
//! xxh3-128(covered bytes) ‖ …)`, with a random 128-bit key per shard (in the
//! `SHARD` file and in every segment record). Object bytes are user data:
//! without the key nobody can forge a record inside an object body that a
//! resync (a scan over 4 KiB boundaries past a damaged record) would accept.
//! Segment records sit at offset 0 only and are never found by a resync, so
//! they use a plain xxh3-64 (they carry the key).
//!
//! Kinds:
//! - segment (offset 0 of every segment, 4096 bytes): payload at [64, 4096):
//!   `prev_segment u32 | 0 u32 | prev_end u64 | key [16] | created u64`:
//!   the previous segment of the log and its length when this one started
//!   (a lower valid length below the durable mark is lost data), and the
//!   first seq this segment holds (in the header). Checksum covers [64, 4096).
//! - data: a 4096-byte header block, then `payload_len` data bytes starting
//!   4096-aligned, then zero padding. Header block bytes [64, 64 + 8·chunks)
//!   hold the xxh3-64 of each 64 KiB chunk of the data (the last one
//!   partial), so a range read verifies only the chunks it touches. The
//!   checksum covers header block bytes [64, 4096).
//! - batch: the header, then `payload_len` bytes of commit entries (below),
//!   then padding. Its checksum covers the header only; each entry has its
//!   own, so one commit can be read and verified without its batch.
//! - batch copy: written right after its batch (format 3: at the block
//!   boundary after it), in the same write: the
//!   header, `primary_offset u64 | primary_len u64`, then a metadata-only copy
//!   of every entry (inline bodies replaced by their length and xxh3). Commit
//!   metadata is thus on disk twice (as btrfs's DUP keeps metadata): one
//!   damaged copy loses no commit. Its checksum covers its payload.
//!   Format 3: the record is `64 + payload_len` bytes rounded up to 64.
//!
//! What a packed batch's rewrite risks: the write of batch N+1 rewrites the
//! last block of batch N's copy with the same bytes. A torn rewrite (power
//! lost mid-write) can damage only that block, i.e. only batch N's copy,
//! whose primary lies wholly in earlier blocks and is intact: no commit is
//! lost (recovery counts such a copy in `damaged_copies`). A batch is
//! packed only after the write of the one before it completed, so two
//! writes never race for one block.
//!
//! A commit entry (8-byte aligned inside its batch):
//!
//! ```text
//!  0  len       u32   payload bytes after this 24-byte entry header
//!  4  flags     u16   bit 0: metadata-only copy
//!  6  count     u16   mutations in the payload
//!  8  seq       u64   the commit's sequence number
//! 16  mac       u64   SipHash(key, entry[0..16) ‖ xxh3-128(payload) ‖ shard ‖ segment ‖ offset)
//! 24  payload   mutations (see `codec`)
//! ```
//!
//! The log of a shard is its segments in number order, each read as its
//! records in offset order; commit seqs are contiguous over it (segments
//! retired by compaction take theirs with them, as their retire op says).

use siphasher::sip::SipHasher24;
use std::hash::Hasher;
use twox_hash::{XxHash3_128, XxHash3_64};

/// Alignment and granularity of every record and every direct I/O.
pub const BLOCK: usize = 4096;
/// Data records carry one checksum per chunk of this many data bytes.
pub const CHUNK_BYTES: usize = 64 * 1024;
/// Largest data record payload: its chunk checksums must fit the header block.
pub const MAX_DATA_BYTES: usize = 16 << 20;
pub const MAX_KEY_BYTES: usize = 4096;
pub const MAX_SUMMARY_BYTES: usize = 4096;
pub const MAX_META_BYTES: usize = 1 << 20;
pub const MAX_INLINE_BYTES: usize = 1 << 20;
/// Largest serialized commit; bounds what a decode may allocate.
pub const MAX_COMMIT_PAYLOAD_BYTES: usize = 8 << 20;
/// A batch is flushed once its entries pass this, even with one in flight.
pub const MAX_BATCH_BYTES: usize = 4 << 20;
/// Segments may not pass this: commit locations are kept in 32-bit offsets.
pub const MAX_SEGMENT_BYTES: u64 = (u32::MAX as u64 + 1) - BLOCK as u64;

pub const RECORD_MAGIC: [u8; 4] = *b"TSRL";
pub const FORMAT_VERSION: u16 = 3;
/// The older format this build still reads (and appends to in new segments).
pub const FORMAT_VERSION_2: u16 = 2;
/// Format 3: batches start on, and copies end on, this boundary.
pub const RECORD_ALIGN: usize = 64;
pub const HEADER_BYTES: usize = 64;
pub const ENTRY_HEADER_BYTES: usize = 24;
/// Entries start 8-byte aligned inside their batch.
pub const ENTRY_ALIGN: usize = 8;
const CHECKSUM_AT: usize = 56;

pub const SHARD_FILE: &str = "SHARD";
pub const SHARD_MAGIC: [u8; 8] = *b"TSRSHARD";
pub const SHARD_FILE_BYTES: usize = 64;

/// Entry flag: a metadata-only copy (inline bodies replaced by digests).
pub const ENTRY_META_ONLY: u16 = 1;

const _: () = assert!(HEADER_BYTES + 8 * (MAX_DATA_BYTES / CHUNK_BYTES) <= BLOCK);
const _: () = assert!(MAX_COMMIT_PAYLOAD_BYTES + ENTRY_HEADER_BYTES <= u32::MAX as usize);

/// The per-shard key of the record checksums.
pub type ShardKey = [u8; 16];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Segment = 1,
    Data = 2,
    Batch = 4,
    BatchCopy = 5,
}

impl Kind {
    fn from_u8(v: u8) -> Option<Kind> {
        match v {
            1 => Some(Kind::Segment),
            2 => Some(Kind::Data),
            4 => Some(Kind::Batch),
            5 => Some(Kind::BatchCopy),
            _ => None,
        }
    }
}

/// `n` rounded up to a multiple of [`BLOCK`].
pub const fn align_up(n: u64) -> u64 {
    n.div_ceil(BLOCK as u64) * BLOCK as u64
}

/// `n` rounded down to a multiple of [`BLOCK`].
pub const fn align_down(n: u64) -> u64 {
    n / BLOCK as u64 * BLOCK as u64
}

/// `n` rounded up to a multiple of [`RECORD_ALIGN`].
pub const fn align_record(n: u64) -> u64 {
    n.div_ceil(RECORD_ALIGN as u64) * RECORD_ALIGN as u64
}

pub const fn align_entry(n: usize) -> usize {
    n.div_ceil(ENTRY_ALIGN) * ENTRY_ALIGN
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

/// A place in a shard's log: segment number, then offset in the segment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Pos {
    pub segment: u32,
    pub offset: u64,
}

/// The keyed checksum of a header and a digest of what it covers.
pub fn mac(key: &ShardKey, parts: &[&[u8]]) -> u64 {
    let mut h = SipHasher24::new_with_key(key);
    for p in parts {
        h.write(p);
    }
    h.finish()
}

/// The fixed 64-byte header at the start of every record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordHeader {
    /// 2 or 3; records written by this build are 3.
    pub version: u16,
    pub kind: Kind,
    pub shard: u32,
    pub segment: u32,
    pub seq: u64,
    pub payload_len: u64,
    pub offset: u64,
    /// Batch and copy records: commit count.
    pub count: u32,
    /// Batch, copy and segment records: the log's durable prefix when written.
    pub durable: Pos,
    /// Format-3 batch: bytes of its copy record (which starts at the block
    /// boundary after the batch). 0 otherwise.
    pub copy_len: u32,
}

impl RecordHeader {
    pub fn pos(&self) -> Pos {
        Pos {
            segment: self.segment,
            offset: self.offset,
        }
    }

    /// Bytes the whole record takes in its segment, padding included (a
    /// format-3 batch: up to the block boundary where its copy starts).
    pub fn record_len(&self) -> u64 {
        match self.kind {
            Kind::Segment => BLOCK as u64,
            Kind::Data => BLOCK as u64 + align_up(self.payload_len),
            Kind::Batch if self.version >= 3 => {
                align_up(self.offset + HEADER_BYTES as u64 + self.payload_len) - self.offset
            }
            Kind::BatchCopy if self.version >= 3 => align_record(HEADER_BYTES as u64 + self.payload_len),
            Kind::Batch | Kind::BatchCopy => align_up(HEADER_BYTES as u64 + self.payload_len),
        }
    }

    /// Whether a record of this kind and version may start at `offset`.
    fn placed_ok(&self) -> bool {
        let align = if self.version >= 3 && self.kind == Kind::Batch { RECORD_ALIGN } else { BLOCK };
        self.offset % align as u64 == 0
    }

    fn write_fields(&self, h: &mut [u8]) {
        h[..HEADER_BYTES].fill(0);
        h[0..4].copy_from_slice(&RECORD_MAGIC);
        h[4..6].copy_from_slice(&self.version.to_le_bytes());
        h[6] = self.kind as u8;
        h[8..12].copy_from_slice(&self.shard.to_le_bytes());
        h[12..16].copy_from_slice(&self.segment.to_le_bytes());
        h[16..24].copy_from_slice(&self.seq.to_le_bytes());
        if self.version >= 3 && self.kind == Kind::Batch {
            h[24..28].copy_from_slice(&(self.payload_len as u32).to_le_bytes());
            h[28..32].copy_from_slice(&self.copy_len.to_le_bytes());
        } else {
            h[24..32].copy_from_slice(&self.payload_len.to_le_bytes());
        }
        h[32..40].copy_from_slice(&self.offset.to_le_bytes());
        let aux = match self.kind {
            Kind::Data => CHUNK_BYTES as u32,
            Kind::Batch | Kind::BatchCopy => self.count,
            Kind::Segment => 0,
        };
        h[40..44].copy_from_slice(&aux.to_le_bytes());
        if self.kind != Kind::Data {
            h[44..48].copy_from_slice(&self.durable.segment.to_le_bytes());
            h[48..56].copy_from_slice(&self.durable.offset.to_le_bytes());
        }
    }

    /// The checksum of a record whose first `verify_len()` bytes are `rec`.
    fn checksum(&self, key: &ShardKey, rec: &[u8]) -> u64 {
        match self.kind {
            Kind::Segment => {
                let mut h = XxHash3_64::new();
                h.write(&rec[..CHECKSUM_AT]);
                h.write(&rec[HEADER_BYTES..BLOCK]);
                h.finish()
            }
            Kind::Data => {
                let d = XxHash3_128::oneshot(&rec[HEADER_BYTES..BLOCK]).to_le_bytes();
                mac(key, &[&rec[..CHECKSUM_AT], &d])
            }
            Kind::Batch => mac(key, &[&rec[..CHECKSUM_AT]]),
            Kind::BatchCopy => {
                let end = HEADER_BYTES + self.payload_len as usize;
                let d = XxHash3_128::oneshot(&rec[HEADER_BYTES..end]).to_le_bytes();
                mac(key, &[&rec[..CHECKSUM_AT], &d])
            }
        }
    }

    /// Bytes of the record that must be in memory to verify its checksum.
    pub fn verify_len(&self) -> usize {
        match self.kind {
            Kind::Segment | Kind::Data => BLOCK,
            Kind::Batch => HEADER_BYTES,
            Kind::BatchCopy => HEADER_BYTES + self.payload_len as usize,
        }
    }

    /// Writes the header into `rec[..64]` and seals the checksum over the
    /// covered bytes, which must already be in place.
    pub fn write_and_seal(&self, key: &ShardKey, rec: &mut [u8]) {
        self.write_fields(rec);
        let sum = self.checksum(key, rec);
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
        let version = u16_at(b, 4);
        if version != FORMAT_VERSION && version != FORMAT_VERSION_2 {
            return Err("record format version");
        }
        let kind = Kind::from_u8(b[6]).ok_or("record kind")?;
        let aux = u32_at(b, 40);
        let packed = version >= 3 && kind == Kind::Batch;
        let h = RecordHeader {
            version,
            kind,
            shard: u32_at(b, 8),
            segment: u32_at(b, 12),
            seq: u64_at(b, 16),
            payload_len: if packed { u32_at(b, 24) as u64 } else { u64_at(b, 24) },
            offset: u64_at(b, 32),
            count: if matches!(kind, Kind::Batch | Kind::BatchCopy) {
                aux
            } else {
                0
            },
            durable: match kind {
                Kind::Data => Pos::default(),
                _ => Pos {
                    segment: u32_at(b, 44),
                    offset: u64_at(b, 48),
                },
            },
            copy_len: if packed { u32_at(b, 28) } else { 0 },
        };
        if b[7] != 0 {
            return Err("record flags");
        }
        if !h.placed_ok() || h.offset >= MAX_SEGMENT_BYTES {
            return Err("record offset");
        }
        let max_batch = (MAX_BATCH_BYTES + MAX_COMMIT_PAYLOAD_BYTES + BLOCK) as u64;
        match kind {
            Kind::Segment if h.payload_len != 0 || h.offset != 0 => {
                return Err("segment record fields")
            }
            Kind::Data if h.payload_len > MAX_DATA_BYTES as u64 => {
                return Err("data record length")
            }
            Kind::Data if aux as usize != CHUNK_BYTES => return Err("data chunk size"),
            Kind::Batch | Kind::BatchCopy if h.payload_len > max_batch => {
                return Err("batch record length")
            }
            Kind::BatchCopy if h.payload_len < 16 => return Err("batch copy length"),
            Kind::Batch
                if packed
                    && ((h.copy_len as u64) < align_record(HEADER_BYTES as u64 + 16)
                        || h.copy_len as u64 > max_batch + HEADER_BYTES as u64
                        || h.copy_len as usize % RECORD_ALIGN != 0) =>
            {
                return Err("batch copy length")
            }
            _ => {}
        }
        Ok(h)
    }

    /// Checks the checksum; `rec` holds at least `verify_len()` bytes of the record.
    pub fn verify(&self, key: &ShardKey, rec: &[u8]) -> bool {
        rec.len() >= self.verify_len() && self.checksum(key, rec) == u64_at(rec, CHECKSUM_AT)
    }

    /// Decodes and verifies a record header read from (`segment`, `offset`)
    /// of shard `shard`, expecting `kind`.
    pub fn read_expect(
        key: &ShardKey,
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
        if !h.verify(key, rec) {
            return Err("record checksum");
        }
        Ok(h)
    }
}

/// What a segment record says beyond its header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SegmentInfo {
    /// The segment before this one in the log (0: none).
    pub prev_segment: u32,
    /// Bytes of the previous segment when this one started.
    pub prev_end: u64,
    pub key: ShardKey,
    pub created_unix_secs: u64,
}

impl SegmentInfo {
    pub fn write(&self, block: &mut [u8]) {
        block[64..68].copy_from_slice(&self.prev_segment.to_le_bytes());
        block[68..72].fill(0);
        block[72..80].copy_from_slice(&self.prev_end.to_le_bytes());
        block[80..96].copy_from_slice(&self.key);
        block[96..104].copy_from_slice(&self.created_unix_secs.to_le_bytes());
    }

    pub fn read(block: &[u8]) -> SegmentInfo {
        let mut key = [0u8; 16];
        key.copy_from_slice(&block[80..96]);
        SegmentInfo {
            prev_segment: u32_at(block, 64),
            prev_end: u64_at(block, 72),
            key,
            created_unix_secs: u64_at(block, 96),
        }
    }
}

/// The 24-byte header of a commit entry inside a batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EntryHeader {
    pub len: u32,
    pub flags: u16,
    pub count: u16,
    pub seq: u64,
}

impl EntryHeader {
    pub fn total_len(&self) -> usize {
        ENTRY_HEADER_BYTES + self.len as usize
    }

    fn tag(&self, key: &ShardKey, head: &[u8], payload: &[u8], shard: u32, at: Pos) -> u64 {
        let d = XxHash3_128::oneshot(payload).to_le_bytes();
        let mut addr = [0u8; 16];
        addr[0..4].copy_from_slice(&shard.to_le_bytes());
        addr[4..8].copy_from_slice(&at.segment.to_le_bytes());
        addr[8..16].copy_from_slice(&at.offset.to_le_bytes());
        mac(key, &[&head[..16], &d, &addr])
    }

    /// Writes the header before `payload` (already at `out[24..]`) and
    /// seals it for its place `at` in shard `shard`.
    pub fn seal(&self, key: &ShardKey, out: &mut [u8], shard: u32, at: Pos) {
        out[0..4].copy_from_slice(&self.len.to_le_bytes());
        out[4..6].copy_from_slice(&self.flags.to_le_bytes());
        out[6..8].copy_from_slice(&self.count.to_le_bytes());
        out[8..16].copy_from_slice(&self.seq.to_le_bytes());
        let (head, rest) = out.split_at_mut(ENTRY_HEADER_BYTES);
        let tag = self.tag(key, head, &rest[..self.len as usize], shard, at);
        head[16..24].copy_from_slice(&tag.to_le_bytes());
    }

    /// Parses an entry header (lengths checked against `room`, not the tag).
    pub fn decode(b: &[u8], room: usize) -> Result<EntryHeader, &'static str> {
        if b.len() < ENTRY_HEADER_BYTES || room < ENTRY_HEADER_BYTES {
            return Err("short entry header");
        }
        let h = EntryHeader {
            len: u32_at(b, 0),
            flags: u16_at(b, 4),
            count: u16_at(b, 6),
            seq: u64_at(b, 8),
        };
        if h.len as usize > MAX_COMMIT_PAYLOAD_BYTES || h.total_len() > room {
            return Err("entry length");
        }
        if h.flags & !ENTRY_META_ONLY != 0 {
            return Err("entry flags");
        }
        Ok(h)
    }

    /// Verifies the tag of the entry in `b` (header and payload) read from `at`.
    pub fn verify(&self, key: &ShardKey, b: &[u8], shard: u32, at: Pos) -> bool {
        let end = self.total_len();
        b.len() >= end
            && self.tag(key, &b[..ENTRY_HEADER_BYTES], &b[ENTRY_HEADER_BYTES..end], shard, at)
                == u64_at(b, 16)
    }
}

/// Number of checksum chunks of a data record of `len` bytes.
pub fn chunk_count(len: u64) -> usize {
    len.div_ceil(CHUNK_BYTES as u64) as usize
}

/// Fills the chunk checksums of a data record's header block from its data.
pub fn write_chunk_sums(header_block: &mut [u8], data: &[u8]) {
    for (i, chunk) in data.chunks(CHUNK_BYTES).enumerate() {
        let at = HEADER_BYTES + 8 * i;
        header_block[at..at + 8].copy_from_slice(&XxHash3_64::oneshot(chunk).to_le_bytes());
    }
}

/// The stored checksum of chunk `i` from a verified data header block.
pub fn chunk_sum(header_block: &[u8], i: usize) -> u64 {
    u64_at(header_block, HEADER_BYTES + 8 * i)
}

pub fn chunk_ok(header_block: &[u8], i: usize, chunk: &[u8]) -> bool {
    XxHash3_64::oneshot(chunk) == chunk_sum(header_block, i)
}

/// The shard header file: identifies the directory as shard `shard` of
/// format `version`, and holds the key of its record checksums.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ShardFile {
    pub version: u16,
    pub shard: u32,
    pub created_unix_secs: u64,
    pub key: ShardKey,
}

impl ShardFile {
    // 0 magic [u8;8] | 8 version u16 | 10 reserved u16 | 12 shard u32 | 16 block u32
    // | 20 chunk u32 | 24 created u64 | 32 key [u8;16] | 48 reserved [u8;8] | 56 xxh3-64 of [0,56)
    pub fn encode(&self) -> [u8; SHARD_FILE_BYTES] {
        let mut b = [0u8; SHARD_FILE_BYTES];
        b[0..8].copy_from_slice(&SHARD_MAGIC);
        b[8..10].copy_from_slice(&self.version.to_le_bytes());
        b[12..16].copy_from_slice(&self.shard.to_le_bytes());
        b[16..20].copy_from_slice(&(BLOCK as u32).to_le_bytes());
        b[20..24].copy_from_slice(&(CHUNK_BYTES as u32).to_le_bytes());
        b[24..32].copy_from_slice(&self.created_unix_secs.to_le_bytes());
        b[32..48].copy_from_slice(&self.key);
        let sum = XxHash3_64::oneshot(&b[..CHECKSUM_AT]);
        b[CHECKSUM_AT..].copy_from_slice(&sum.to_le_bytes());
        b
    }

    /// Decodes the file; a format other than this build's is an error that
    /// says which.
    pub fn decode(b: &[u8]) -> Result<ShardFile, String> {
        if b.len() != SHARD_FILE_BYTES {
            return Err("shard file length".into());
        }
        if b[0..8] != SHARD_MAGIC {
            return Err("shard file magic".into());
        }
        if XxHash3_64::oneshot(&b[..CHECKSUM_AT]) != u64_at(b, CHECKSUM_AT) {
            return Err("shard file checksum".into());
        }
        let version = u16_at(b, 8);
        if version != FORMAT_VERSION && version != FORMAT_VERSION_2 {
            return Err(format!(
                "shard format version {version}; this build reads formats {FORMAT_VERSION_2} and {FORMAT_VERSION} only \
                 (format 1 was written by tessera 0.1 and has no upgrade path: copy the objects \
                 out with an S3 client and into a new data dir)"
            ));
        }
        if u32_at(b, 16) as usize != BLOCK || u32_at(b, 20) as usize != CHUNK_BYTES {
            return Err("shard file block or chunk size".into());
        }
        let mut key = [0u8; 16];
        key.copy_from_slice(&b[32..48]);
        Ok(ShardFile {
            version,
            shard: u32_at(b, 12),
            created_unix_secs: u64_at(b, 24),
            key,
        })
    }
}

pub fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

pub fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(a)
}

pub fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: ShardKey = [7; 16];

    fn batch_header() -> RecordHeader {
        RecordHeader {
            version: FORMAT_VERSION_2,
            kind: Kind::Batch,
            shard: 7,
            segment: 3,
            seq: 42,
            payload_len: 100,
            offset: 8192,
            count: 2,
            durable: Pos {
                segment: 2,
                offset: 4096,
            },
            copy_len: 0,
        }
    }

    #[test]
    fn header_roundtrip_and_keyed_checksum() {
        let h = batch_header();
        let mut rec = vec![0u8; BLOCK];
        h.write_and_seal(&KEY, &mut rec);
        assert_eq!(
            RecordHeader::read_expect(&KEY, &rec, Kind::Batch, 7, 3, 8192),
            Ok(h)
        );
        assert_eq!(h.record_len(), 4096);
        // Another key (another shard, or a forger without it) fails.
        assert_eq!(
            RecordHeader::read_expect(&[8; 16], &rec, Kind::Batch, 7, 3, 8192),
            Err("record checksum")
        );
        assert!(RecordHeader::read_expect(&KEY, &rec, Kind::Batch, 7, 3, 0).is_err());
        let mut bad = rec.clone();
        bad[17] ^= 1;
        assert!(RecordHeader::read_expect(&KEY, &bad, Kind::Batch, 7, 3, 8192).is_err());
    }

    #[test]
    fn data_header_covers_chunk_sums() {
        let h = RecordHeader {
            kind: Kind::Data,
            payload_len: 70_000,
            durable: Pos::default(),
            count: 0,
            ..batch_header()
        };
        let mut rec = vec![0u8; BLOCK];
        write_chunk_sums(&mut rec, &[1u8; 70_000]);
        h.write_and_seal(&KEY, &mut rec);
        assert!(h.verify(&KEY, &rec));
        rec[64] ^= 1;
        assert!(!h.verify(&KEY, &rec));
        assert_eq!(h.record_len(), 4096 + 73_728);
    }

    #[test]
    fn entries_seal_and_verify_in_place() {
        let payload = b"some mutations";
        let eh = EntryHeader {
            len: payload.len() as u32,
            flags: 0,
            count: 1,
            seq: 9,
        };
        let mut buf = vec![0u8; ENTRY_HEADER_BYTES + payload.len()];
        buf[ENTRY_HEADER_BYTES..].copy_from_slice(payload);
        let at = Pos {
            segment: 4,
            offset: 4160,
        };
        eh.seal(&KEY, &mut buf, 7, at);
        let back = EntryHeader::decode(&buf, buf.len()).unwrap();
        assert_eq!(back, eh);
        assert!(back.verify(&KEY, &buf, 7, at));
        // Moved, other shard, flipped payload: all refused.
        assert!(!back.verify(&KEY, &buf, 7, Pos { offset: 4168, ..at }));
        assert!(!back.verify(&KEY, &buf, 8, at));
        let mut bad = buf.clone();
        bad[30] ^= 4;
        assert!(!back.verify(&KEY, &bad, 7, at));
        assert!(EntryHeader::decode(&buf, buf.len() - 1).is_err());
    }

    #[test]
    fn garbage_headers_are_rejected() {
        assert!(RecordHeader::decode(&[0u8; 64]).is_err());
        assert!(RecordHeader::decode(&[0xffu8; 64]).is_err());
        assert!(RecordHeader::decode(&[0u8; 10]).is_err());
        let mut rec = vec![0u8; BLOCK];
        let mut h = batch_header();
        h.payload_len = u64::MAX;
        h.write_fields(&mut rec);
        assert_eq!(RecordHeader::decode(&rec), Err("batch record length"));
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
    fn shard_file_roundtrip_and_format_1_refused() {
        let f = ShardFile {
            version: FORMAT_VERSION,
            shard: 9,
            created_unix_secs: 1_700_000_000,
            key: [3; 16],
        };
        let b = f.encode();
        assert_eq!(ShardFile::decode(&b), Ok(f));
        let mut bad = b;
        bad[12] ^= 1;
        assert_eq!(ShardFile::decode(&bad), Err("shard file checksum".into()));
        // A format-1 file (tessera 0.1): same magic, version 1.
        let mut v1 = [0u8; 64];
        v1[0..8].copy_from_slice(&SHARD_MAGIC);
        v1[8..10].copy_from_slice(&1u16.to_le_bytes());
        v1[16..20].copy_from_slice(&(BLOCK as u32).to_le_bytes());
        v1[20..24].copy_from_slice(&(CHUNK_BYTES as u32).to_le_bytes());
        let sum = XxHash3_64::oneshot(&v1[..56]);
        v1[56..].copy_from_slice(&sum.to_le_bytes());
        let e = ShardFile::decode(&v1).unwrap_err();
        assert!(e.contains("format version 1"), "{e}");
    }
}
