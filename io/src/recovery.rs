//! Rebuilding the index at open: scan every segment in order, parse record
//! headers at record boundaries, skip data records by length, apply commit
//! records, and stop a segment at its first invalid record.
//!
//! Stopping there loses nothing acknowledged: a commit is acknowledged only
//! once everything before it in its segment (and every earlier segment of
//! its run) is durable, so acknowledged records form a valid prefix. Records
//! after a torn one were never acknowledged.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::path::Path;
use std::rc::Rc;
use std::time::{Duration, Instant};

use crate::buf::AlignedBuf;
use crate::codec::{self, MutView};
use crate::disk::{open_file, Backend, DiskFile};
use crate::error::IoError;
use crate::format::{align_up, parse_segment_file_name, Kind, RecordHeader, BLOCK};
use crate::index::{Index, Loc};
use crate::log::SegFile;

/// Largest read while scanning; reads start small after a skip over data
/// and double while they keep landing on commit records.
const SCAN_MAX_BYTES: usize = 1 << 20;
const SCAN_MIN_BYTES: usize = 16 << 10;

#[derive(Clone, Copy, Debug, Default)]
pub struct RecoveryStats {
    pub segments: u32,
    pub commit_records: u64,
    pub data_records: u64,
    pub bytes_read: u64,
    /// Segments whose scan stopped before their end (torn or corrupt tail).
    pub torn_segments: u32,
    /// Bytes after the stopping points, ignored.
    pub ignored_bytes: u64,
    pub elapsed: Duration,
}

pub(crate) struct Recovered {
    pub segments: BTreeMap<u32, SegFile>,
    pub index: Index,
    pub next_seq: u64,
    pub stats: RecoveryStats,
}

/// Files to open, ordered by segment number.
fn list_segments(dir: &Path) -> Result<Vec<(u32, std::path::PathBuf)>, IoError> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if let Some(n) = entry.file_name().to_str().and_then(parse_segment_file_name) {
            out.push((n, entry.path()));
        }
    }
    out.sort_unstable_by_key(|(n, _)| *n);
    Ok(out)
}

pub(crate) fn has_segments(dir: &Path) -> Result<bool, IoError> {
    Ok(!list_segments(dir)?.is_empty())
}

pub(crate) async fn recover(
    dir: &Path,
    shard: u32,
    backend: &Backend,
    direct: &Cell<bool>,
    warned: &Cell<bool>,
) -> Result<Recovered, IoError> {
    let started = Instant::now();
    let mut r = Recovered {
        segments: BTreeMap::new(),
        index: Index::new(),
        next_seq: 1,
        stats: RecoveryStats::default(),
    };
    for (number, path) in list_segments(dir)? {
        let std_file = open_file(&path, false, direct, warned)?;
        let file_len = std_file.metadata()?.len();
        let file = Rc::new(DiskFile::new(std_file, backend)?);
        let mut scan = Scan {
            file: &file,
            shard,
            segment: number,
            file_len,
            r: &mut r,
        };
        let end = scan.run().await?;
        if end < file_len {
            r.stats.torn_segments += 1;
            r.stats.ignored_bytes += file_len - end;
        }
        r.stats.segments += 1;
        r.segments.insert(
            number,
            SegFile {
                file,
                end,
                vstart: None,
                dir_synced: true,
            },
        );
    }
    r.stats.elapsed = started.elapsed();
    Ok(r)
}

struct Scan<'a> {
    file: &'a DiskFile,
    shard: u32,
    segment: u32,
    file_len: u64,
    r: &'a mut Recovered,
}

/// A window of the file held in memory.
struct Window {
    buf: AlignedBuf,
    start: u64,
    next_read_bytes: usize,
}

impl Window {
    fn has(&self, pos: u64, len: usize) -> bool {
        pos >= self.start && pos + len as u64 <= self.start + self.buf.len() as u64
    }

    fn slice(&self, pos: u64, len: usize) -> &[u8] {
        let at = (pos - self.start) as usize;
        &self.buf.as_slice()[at..at + len]
    }
}

impl Scan<'_> {
    /// Scans the segment; returns the end of its valid prefix.
    async fn run(&mut self) -> Result<u64, IoError> {
        let mut win = Window {
            buf: AlignedBuf::with_capacity(SCAN_MAX_BYTES),
            start: 0,
            next_read_bytes: SCAN_MIN_BYTES,
        };
        let mut pos = 0u64;
        while pos + BLOCK as u64 <= self.file_len {
            if !win.has(pos, BLOCK) {
                // Reading on from the end of the window means records are dense: read more.
                let dense = pos == win.start + win.buf.len() as u64 && pos > 0;
                win.next_read_bytes = if dense {
                    (win.next_read_bytes * 2).min(SCAN_MAX_BYTES)
                } else {
                    SCAN_MIN_BYTES
                };
                let want = win.next_read_bytes;
                self.fill(&mut win, pos, want).await?;
                if !win.has(pos, BLOCK) {
                    break;
                }
            }
            let h = match self.header_at(win.slice(pos, BLOCK), pos) {
                Ok(h) => h,
                Err(why) => {
                    self.stop(pos, why);
                    break;
                }
            };
            let len = h.record_len();
            if pos + len > self.file_len {
                self.stop(pos, "record runs past the end of the file");
                break;
            }
            let ok = match h.kind {
                Kind::Segment => h.verify(win.slice(pos, BLOCK)),
                Kind::Data => {
                    let ok = h.verify(win.slice(pos, BLOCK));
                    self.r.stats.data_records += ok as u64;
                    ok
                }
                Kind::Commit => self.commit(&mut win, &h, pos).await?,
            };
            if !ok {
                self.stop(pos, "record checksum or payload");
                break;
            }
            pos += len;
        }
        Ok(pos)
    }

    /// Fixed header checks that need no checksum: framing, address, order.
    fn header_at(&self, block: &[u8], pos: u64) -> Result<RecordHeader, &'static str> {
        let h = RecordHeader::decode(block)?;
        if h.shard != self.shard || h.segment != self.segment || h.offset != pos {
            return Err("record address");
        }
        if (pos == 0) != (h.kind == Kind::Segment) {
            return Err("segment record placement");
        }
        Ok(h)
    }

    async fn fill(&mut self, win: &mut Window, pos: u64, want: usize) -> Result<(), IoError> {
        let len = want.min(align_up(self.file_len - pos) as usize);
        let buf = std::mem::replace(&mut win.buf, AlignedBuf::with_capacity(BLOCK));
        let buf = if buf.capacity() >= len { buf } else { AlignedBuf::with_capacity(len) };
        win.buf = self.file.read_at(buf, pos, len).await?;
        win.start = pos;
        self.r.stats.bytes_read += win.buf.len() as u64;
        Ok(())
    }

    /// Verifies and applies one commit record; false if it is invalid.
    async fn commit(&mut self, win: &mut Window, h: &RecordHeader, pos: u64) -> Result<bool, IoError> {
        let len = h.verify_len();
        if !win.has(pos, len) {
            self.fill(win, pos, len.max(SCAN_MIN_BYTES)).await?;
            if !win.has(pos, len) {
                return Ok(false);
            }
        }
        let rec = win.slice(pos, len);
        if !h.verify(rec) {
            return Ok(false);
        }
        let payload = &rec[crate::format::HEADER_BYTES..crate::format::HEADER_BYTES + h.payload_len as usize];
        let muts = match codec::decode(payload) {
            Ok(m) => m,
            Err(why) => {
                // A checksummed record we cannot decode is a bug, not a torn write.
                tracing::error!(shard = self.shard, segment = self.segment, offset = pos, why, "undecodable commit record");
                return Ok(false);
            }
        };
        let loc = Loc::new(self.segment, pos, h.record_len());
        for m in muts {
            match m {
                MutView::Put { table, key, summary, .. } => self.r.index.put(table, key, summary, h.seq, loc),
                MutView::Delete { table, key } => self.r.index.delete(table, key),
            }
        }
        if h.seq < self.r.next_seq.saturating_sub(1) {
            tracing::warn!(shard = self.shard, segment = self.segment, offset = pos, seq = h.seq, "commit sequence went backwards");
        }
        self.r.next_seq = self.r.next_seq.max(h.seq + 1);
        self.r.stats.commit_records += 1;
        Ok(true)
    }

    fn stop(&self, pos: u64, why: &'static str) {
        if pos < self.file_len {
            tracing::warn!(
                shard = self.shard,
                segment = self.segment,
                offset = pos,
                ignored_bytes = self.file_len - pos,
                why,
                "segment ends in an invalid record; ignoring the rest (torn tail)"
            );
        }
    }
}
