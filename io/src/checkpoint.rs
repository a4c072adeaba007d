//! Index checkpoints: a sorted, checksummed snapshot of a shard's index
//! with the log position it covers, so that open reads the snapshot and
//! replays only the log after it.
//!
//! The snapshot is fuzzy: it is taken in slices while the shard keeps
//! serving, starting from the durable position P (every commit before P
//! applied, none after). Replaying the whole log after P over it ends in
//! the right state whatever mix of older and newer entries it caught,
//! because the index applies operations by seq (see `index`).
//!
//! FORMAT (part of the on-disk boundary): `ckpt-<next_seq:020>.idx`
//!
//! ```text
//! block 0 (4096 bytes, written last):
//!    0 magic [8] b"TSRCKPT\0" |  8 version u16 (1) | 10 0 u16 | 12 shard u32
//!   16 P.segment u32 | 20 0 u32 | 24 P.offset u64 | 32 next_seq u64
//!   40 entries u64 | 48 chunks u32 | 52 0 u32 | 56 created u64
//!   4088 xxh3-64 of [0, 4088)
//! then chunks, each 4096-aligned:
//!    kind u8 (1 segments, 2 retired, 3 entries, 9 end) | 0 [3] | len u32 | xxh3-64 u64 of data | data
//!    segments: (number u32, end u64, first_seq u64, last_seq u64)*
//!    retired:  number u32*
//!    entries:  (table u8, key_len u16, key, summary_len u16, summary, seq u64,
//!               loc.segment u32, loc.offset u32, loc.len u32, ordinal u16,
//!               min_seg u32, share u32, n u16, (segment u32, bytes u64){n})*
//!    end:      total entries u64
//! ```
//! Written to a `.tmp` file, synced, renamed, the directory synced; the
//! newest two are kept (the older one is the fallback if the newer is bad).

use std::cell::Cell;
use std::path::{Path, PathBuf};

use twox_hash::XxHash3_64;

use crate::buf::AlignedBuf;
use crate::error::IoError;
use crate::format::{align_up, u16_at, u32_at, u64_at, Pos, BLOCK};
use crate::index::{Bulk, Footprint, FullEntry, Index, Loc};
use crate::storage::{Backend, DiskFile, OpenMode};

const MAGIC: [u8; 8] = *b"TSRCKPT\0";
const VERSION: u16 = 1;
const CHUNK_SEGMENTS: u8 = 1;
const CHUNK_RETIRED: u8 = 2;
const CHUNK_ENTRIES: u8 = 3;
const CHUNK_END: u8 = 9;
const CHUNK_HEADER: usize = 16;
/// Entry bytes gathered before a chunk is written.
pub(crate) const CHUNK_TARGET_BYTES: usize = 1 << 20;
/// Entries serialized per slice before yielding to other tasks.
pub(crate) const SLICE_ENTRIES: usize = 2048;
/// Read size while loading.
const LOAD_READ_BYTES: usize = 4 << 20;

pub(crate) fn file_name(next_seq: u64) -> String {
    format!("ckpt-{next_seq:020}.idx")
}

pub(crate) fn parse_file_name(name: &str) -> Option<u64> {
    let digits = name.strip_prefix("ckpt-")?.strip_suffix(".idx")?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// A segment as the checkpoint records it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SegRow {
    pub number: u32,
    pub end: u64,
    pub first_seq: u64,
    pub last_seq: u64,
}

/// A loaded checkpoint.
pub(crate) struct Loaded {
    pub pos: Pos,
    pub next_seq: u64,
    pub segments: Vec<SegRow>,
    pub retired: Vec<u32>,
    pub entries: u64,
    pub bytes: u64,
}

fn put_entry(out: &mut Vec<u8>, e: &FullEntry) {
    out.push(e.table);
    out.extend_from_slice(&(e.key.len() as u16).to_le_bytes());
    out.extend_from_slice(&e.key);
    out.extend_from_slice(&(e.summary.len() as u16).to_le_bytes());
    out.extend_from_slice(&e.summary);
    out.extend_from_slice(&e.seq.to_le_bytes());
    out.extend_from_slice(&e.loc.segment.to_le_bytes());
    out.extend_from_slice(&e.loc.offset.to_le_bytes());
    out.extend_from_slice(&e.loc.len.to_le_bytes());
    out.extend_from_slice(&e.ordinal.to_le_bytes());
    out.extend_from_slice(&e.fp.min_seg.to_le_bytes());
    out.extend_from_slice(&e.fp.share.to_le_bytes());
    let n = e.fp.data.len().min(u16::MAX as usize);
    out.extend_from_slice(&(n as u16).to_le_bytes());
    for (s, b) in &e.fp.data[..n] {
        out.extend_from_slice(&s.to_le_bytes());
        out.extend_from_slice(&b.to_le_bytes());
    }
}

struct Cur<'a> {
    b: &'a [u8],
}

impl<'a> Cur<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], &'static str> {
        if n > self.b.len() {
            return Err("checkpoint entry past its chunk");
        }
        let (h, r) = self.b.split_at(n);
        self.b = r;
        Ok(h)
    }
    fn u8(&mut self) -> Result<u8, &'static str> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, &'static str> {
        Ok(u16_at(self.take(2)?, 0))
    }
    fn u32(&mut self) -> Result<u32, &'static str> {
        Ok(u32_at(self.take(4)?, 0))
    }
    fn u64(&mut self) -> Result<u64, &'static str> {
        Ok(u64_at(self.take(8)?, 0))
    }
}

/// Reads an entry straight into the bulk build (no owned copies).
fn push_entry(c: &mut Cur<'_>, bulk: &mut Bulk) -> Result<(), &'static str> {
    let table = c.u8()?;
    let key_len = c.u16()? as usize;
    let key = c.take(key_len)?;
    let sum_len = c.u16()? as usize;
    let summary = c.take(sum_len)?;
    let seq = c.u64()?;
    let loc = Loc {
        segment: c.u32()?,
        offset: c.u32()?,
        len: c.u32()?,
    };
    let ordinal = c.u16()?;
    let min_seg = c.u32()?;
    let share = c.u32()?;
    let n = c.u16()? as usize;
    // No allocation for an entry without data records (n = 0).
    let mut data = Vec::with_capacity(n);
    for _ in 0..n {
        data.push((c.u32()?, c.u64()?));
    }
    let fp = Footprint { min_seg, share, data };
    bulk.push(table, key, summary, seq, loc, ordinal, &fp)
}

/// Writes chunks of a checkpoint file in order.
pub(crate) struct Writer {
    file: DiskFile,
    at: u64,
    pub chunks: u32,
    pub entries: u64,
    pending: Vec<u8>,
}

impl Writer {
    pub(crate) async fn create(backend: &Backend, tmp: &Path) -> Result<Writer, IoError> {
        let no = Cell::new(false);
        let file = backend.open(tmp, OpenMode::Replace, &no, &no, false).await?;
        Ok(Writer {
            file,
            at: BLOCK as u64,
            chunks: 0,
            entries: 0,
            pending: Vec::new(),
        })
    }

    async fn chunk(&mut self, kind: u8, data: &[u8]) -> Result<(), IoError> {
        let total = align_up((CHUNK_HEADER + data.len()) as u64) as usize;
        let mut buf = AlignedBuf::with_capacity(total);
        buf.set_len(0);
        buf.zero_extend(total);
        let b = buf.as_mut_slice();
        b[0] = kind;
        b[4..8].copy_from_slice(&(data.len() as u32).to_le_bytes());
        b[8..16].copy_from_slice(&XxHash3_64::oneshot(data).to_le_bytes());
        b[CHUNK_HEADER..CHUNK_HEADER + data.len()].copy_from_slice(data);
        self.file.write_all_at(buf, self.at).await?;
        self.at += total as u64;
        self.chunks += 1;
        Ok(())
    }

    pub(crate) async fn segments(&mut self, rows: &[SegRow], retired: &[u32]) -> Result<(), IoError> {
        let mut d = Vec::with_capacity(rows.len() * 28);
        for r in rows {
            d.extend_from_slice(&r.number.to_le_bytes());
            d.extend_from_slice(&r.end.to_le_bytes());
            d.extend_from_slice(&r.first_seq.to_le_bytes());
            d.extend_from_slice(&r.last_seq.to_le_bytes());
        }
        self.chunk(CHUNK_SEGMENTS, &d).await?;
        let r: Vec<u8> = retired.iter().flat_map(|n| n.to_le_bytes()).collect();
        self.chunk(CHUNK_RETIRED, &r).await
    }

    /// Adds entries (in table, key order); writes a chunk when enough gathered.
    pub(crate) async fn push(&mut self, entries: &[FullEntry]) -> Result<(), IoError> {
        for e in entries {
            put_entry(&mut self.pending, e);
        }
        self.entries += entries.len() as u64;
        if self.pending.len() >= CHUNK_TARGET_BYTES {
            let data = std::mem::take(&mut self.pending);
            self.chunk(CHUNK_ENTRIES, &data).await?;
        }
        Ok(())
    }

    /// Writes the last chunks and the header, and syncs the file.
    pub(crate) async fn finish(mut self, shard: u32, pos: Pos, next_seq: u64) -> Result<u64, IoError> {
        if !self.pending.is_empty() {
            let data = std::mem::take(&mut self.pending);
            self.chunk(CHUNK_ENTRIES, &data).await?;
        }
        let total = self.entries;
        self.chunk(CHUNK_END, &total.to_le_bytes()).await?;
        let mut head = AlignedBuf::with_capacity(BLOCK);
        head.set_len(0);
        head.zero_extend(BLOCK);
        let h = head.as_mut_slice();
        h[0..8].copy_from_slice(&MAGIC);
        h[8..10].copy_from_slice(&VERSION.to_le_bytes());
        h[12..16].copy_from_slice(&shard.to_le_bytes());
        h[16..20].copy_from_slice(&pos.segment.to_le_bytes());
        h[24..32].copy_from_slice(&pos.offset.to_le_bytes());
        h[32..40].copy_from_slice(&next_seq.to_le_bytes());
        h[40..48].copy_from_slice(&total.to_le_bytes());
        h[48..52].copy_from_slice(&self.chunks.to_le_bytes());
        let created = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        h[56..64].copy_from_slice(&created.to_le_bytes());
        let sum = XxHash3_64::oneshot(&h[..BLOCK - 8]);
        h[BLOCK - 8..].copy_from_slice(&sum.to_le_bytes());
        self.file.write_all_at(head, 0).await?;
        self.file.sync_all().await?;
        Ok(self.at)
    }
}

/// Reads and verifies a checkpoint; entries go to `index` (which must be
/// empty). Any damage is an error: the caller falls back to an older
/// checkpoint or a full scan.
pub(crate) async fn load(
    backend: &Backend,
    dir: &Path,
    name: &str,
    shard: u32,
    index: &mut Index,
) -> Result<Loaded, String> {
    let path: PathBuf = dir.join(name);
    let no = Cell::new(false);
    let file = backend
        .open(&path, OpenMode::Existing, &no, &no, false)
        .await
        .map_err(|e| e.to_string())?;
    let len = file.len().await.map_err(|e| e.to_string())?;
    let head = file
        .read_at(AlignedBuf::with_capacity(BLOCK), 0, BLOCK)
        .await
        .map_err(|e| e.to_string())?;
    let h = head.as_slice();
    if h.len() < BLOCK || h[0..8] != MAGIC {
        return Err("checkpoint header magic".into());
    }
    if XxHash3_64::oneshot(&h[..BLOCK - 8]) != u64_at(h, BLOCK - 8) {
        return Err("checkpoint header checksum".into());
    }
    if u16_at(h, 8) != VERSION {
        return Err(format!("checkpoint version {}", u16_at(h, 8)));
    }
    if u32_at(h, 12) != shard {
        return Err("checkpoint of another shard".into());
    }
    let mut out = Loaded {
        pos: Pos {
            segment: u32_at(h, 16),
            offset: u64_at(h, 24),
        },
        next_seq: u64_at(h, 32),
        segments: Vec::new(),
        retired: Vec::new(),
        entries: u64_at(h, 40),
        bytes: len,
    };
    let chunks = u32_at(h, 48);
    let mut reader = ChunkReader {
        file: &file,
        at: BLOCK as u64,
        len,
        win: AlignedBuf::with_capacity(BLOCK),
        win_start: 0,
    };
    let mut bulk = Bulk::default();
    let mut seen_entries = 0u64;
    let mut ended = false;
    for _ in 0..chunks {
        let (kind, data) = reader.next().await?;
        match kind {
            CHUNK_SEGMENTS => {
                for r in data.chunks_exact(28) {
                    out.segments.push(SegRow {
                        number: u32_at(r, 0),
                        end: u64_at(r, 4),
                        first_seq: u64_at(r, 12),
                        last_seq: u64_at(r, 20),
                    });
                }
            }
            CHUNK_RETIRED => out.retired.extend(data.chunks_exact(4).map(|r| u32_at(r, 0))),
            CHUNK_ENTRIES => {
                let mut c = Cur { b: &data };
                while !c.b.is_empty() {
                    push_entry(&mut c, &mut bulk).map_err(|e| format!("checkpoint {e}"))?;
                    seen_entries += 1;
                }
            }
            CHUNK_END => {
                if data.len() != 8 || u64_at(&data, 0) != seen_entries {
                    return Err("checkpoint entry count".into());
                }
                ended = true;
            }
            _ => return Err("checkpoint chunk kind".into()),
        }
    }
    if !ended || seen_entries != out.entries {
        return Err("checkpoint incomplete".into());
    }
    index.finish_bulk(bulk);
    Ok(out)
}

struct ChunkReader<'a> {
    file: &'a DiskFile,
    at: u64,
    len: u64,
    win: AlignedBuf,
    win_start: u64,
}

impl ChunkReader<'_> {
    async fn ensure(&mut self, pos: u64, n: usize) -> Result<(), String> {
        let have = pos >= self.win_start
            && pos + n as u64 <= self.win_start + self.win.len() as u64;
        if have {
            return Ok(());
        }
        let start = pos / BLOCK as u64 * BLOCK as u64;
        let want = align_up((pos - start) + n as u64).max(LOAD_READ_BYTES as u64) as usize;
        let want = want.min(align_up(self.len.saturating_sub(start)) as usize).max(BLOCK);
        let buf = AlignedBuf::with_capacity(want);
        self.win = self
            .file
            .read_at(buf, start, want)
            .await
            .map_err(|e| e.to_string())?;
        self.win_start = start;
        if pos + n as u64 > self.win_start + self.win.len() as u64 {
            return Err("checkpoint truncated".into());
        }
        Ok(())
    }

    async fn next(&mut self) -> Result<(u8, Vec<u8>), String> {
        self.ensure(self.at, CHUNK_HEADER).await?;
        let off = (self.at - self.win_start) as usize;
        let b = self.win.as_slice();
        let kind = b[off];
        let len = u32_at(b, off + 4) as usize;
        let sum = u64_at(b, off + 8);
        if len > 64 << 20 {
            return Err("checkpoint chunk length".into());
        }
        self.ensure(self.at, CHUNK_HEADER + len).await?;
        let off = (self.at - self.win_start) as usize;
        let data = self.win.as_slice()[off + CHUNK_HEADER..off + CHUNK_HEADER + len].to_vec();
        if XxHash3_64::oneshot(&data) != sum {
            return Err("checkpoint chunk checksum".into());
        }
        self.at += align_up((CHUNK_HEADER + len) as u64);
        Ok((kind, data))
    }
}

impl crate::shard::Inner {
    /// Writes a checkpoint of the index as of the durable position now (a
    /// fuzzy snapshot taken in slices), then keeps only the newest two.
    pub(crate) async fn write_checkpoint(self: &std::rc::Rc<Self>) -> Result<(), IoError> {
        if self.checkpointing.replace(true) {
            return Ok(());
        }
        let r = self.write_checkpoint_inner().await;
        self.checkpointing.set(false);
        r
    }

    async fn write_checkpoint_inner(self: &std::rc::Rc<Self>) -> Result<(), IoError> {
        // P and the state the snapshot starts from are read in one step.
        let (pos, next_seq, rows, retired, appended) = {
            let log = self.log.borrow();
            let rows: Vec<SegRow> = log
                .segments
                .iter()
                .map(|(n, s)| SegRow {
                    number: *n,
                    end: s.end,
                    first_seq: s.first_seq,
                    last_seq: s.last_seq,
                })
                .collect();
            let retired: Vec<u32> = log.retired.iter().rev().take(4096).copied().collect();
            (
                log.durable_mark(),
                log.applied_seq,
                rows,
                retired,
                log.counters.bytes_appended,
            )
        };
        if pos == Pos::default() {
            return Ok(());
        }
        let name = file_name(next_seq);
        let path = self.dir.join(&name);
        let tmp = crate::storage::tmp_path(&path);
        let mut w = Writer::create(&self.backend, &tmp).await?;
        w.segments(&rows, &retired).await?;
        // Bound first: a `for` keeps its iterator expression's temporaries
        // (here the index borrow) alive across the awaits in its body.
        let tables = self.index.borrow().tables_in_use();
        for table in tables {
            let mut after: Option<Vec<u8>> = None;
            loop {
                let (slice, last) = self
                    .index
                    .borrow()
                    .scan(table, after.as_deref(), SLICE_ENTRIES, |_, _| true);
                if slice.is_empty() {
                    break;
                }
                w.push(&slice).await?;
                after = last;
                crate::sim::yield_now().await;
            }
        }
        let bytes = w.finish(self.id, pos, next_seq).await?;
        self.backend.rename(&tmp, &path).await?;
        self.backend.open_dir(&self.dir).await?.sync_all().await?;
        self.checkpoint_at.set(appended);
        self.checkpoints_written.set(self.checkpoints_written.get() + 1);
        // Keep this one and the one before it.
        let all = crate::recovery::list_checkpoints(&self.backend, &self.dir).await?;
        for (_, old) in all.iter().skip(2) {
            let _ = self.backend.remove(&self.dir.join(old)).await;
        }
        let kept = all.iter().take(2).map(|(s, _)| *s).min().unwrap_or(0);
        self.oldest_checkpoint_seq.set(kept);
        tracing::debug!(shard = self.id, checkpoint = name, bytes, pos_segment = pos.segment, pos_offset = pos.offset, "checkpoint written");
        Ok(())
    }
}
