//! Rebuilding the index at open: scan every segment in order, parse record
//! headers at record boundaries, skip data records by length, apply commit
//! records, and stop a segment at its first invalid record.
//!
//! Stopping there loses nothing acknowledged: a commit is acknowledged only
//! once everything before it in its segment (and every earlier segment of
//! its run) is durable, so acknowledged records form a valid prefix. Records
//! after a torn one were never acknowledged.
//!
//! Commits may reference data records written shortly before them and not
//! yet durable at the time (one sync covers both). Commit and segment
//! records carry the log's durable mark from when they were written; the
//! highest mark seen proves everything before it durable (the segment
//! record written at open vouches for everything recovered, which open
//! synced). A commit whose extents all end below the mark is applied as it
//! is read. Otherwise it (and, to keep order, every commit after it) is
//! held; when the scan ends, the held commits' extents past the mark are
//! read and verified. The first one that fails was never acknowledged (its
//! own sync would have made its data whole): it and everything after it in
//! the log are cut off with a durable truncate, so the decision cannot flip
//! at a later open when new marks appear.

use std::cell::Cell;
use std::collections::{BTreeMap, VecDeque};
use std::path::Path;
use std::rc::Rc;
use std::time::{Duration, Instant};

use crate::buf::AlignedBuf;
use crate::codec::{self, Extent, MutView};
use crate::data;
use crate::disk::{open_file, Backend, DiskFile};
use crate::error::IoError;
use crate::format::{align_up, parse_segment_file_name, Kind, Pos, RecordHeader, BLOCK};
use crate::index::{Index, Loc};
use crate::log::{IndexOp, SegFile};

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
    /// Commits whose not-yet-durable extents were read and verified.
    pub verified_commits: u64,
    /// Commits cut off because their extents failed verification.
    pub dropped_commits: u64,
    pub elapsed: Duration,
}

pub(crate) struct Recovered {
    pub segments: BTreeMap<u32, SegFile>,
    pub index: Index,
    pub next_seq: u64,
    pub stats: RecoveryStats,
    /// Highest durable mark of any record read: everything before it was
    /// on stable storage once.
    pub mark: Pos,
    held: VecDeque<Held>,
}

/// A commit waiting for proof (a higher mark) or verification of its data.
struct Held {
    segment: u32,
    offset: u64,
    seq: u64,
    loc: Loc,
    ops: Vec<IndexOp>,
    extents: Vec<Extent>,
}

fn covered(e: &Extent, mark: Pos) -> bool {
    data::extent_end(e).is_ok_and(|end| end <= mark)
}

impl Recovered {
    /// Applies (or holds) one valid commit record read at `offset` of `segment`.
    /// A valid record says the log was durable up to `mark` when it was written.
    fn note_mark(&mut self, mark: Pos) {
        self.mark = self.mark.max(mark);
        self.release_covered();
    }

    fn commit(&mut self, h: &RecordHeader, segment: u32, offset: u64, muts: Vec<MutView<'_>>) {
        self.mark = self.mark.max(h.durable);
        if h.seq < self.next_seq.saturating_sub(1) {
            tracing::warn!(
                segment,
                offset,
                seq = h.seq,
                "commit sequence went backwards"
            );
        }
        self.next_seq = self.next_seq.max(h.seq + 1);
        self.stats.commit_records += 1;
        let loc = Loc::new(segment, offset, h.record_len());
        let mut extents = Vec::new();
        for m in &muts {
            if let MutView::Put { body, .. } = m {
                extents.extend(body.extents());
            }
        }
        if self.held.is_empty() && extents.iter().all(|e| covered(e, self.mark)) {
            for m in muts {
                match m {
                    MutView::Put {
                        table,
                        key,
                        summary,
                        ..
                    } => self.index.put(table, key, summary, h.seq, loc),
                    MutView::Delete { table, key } => self.index.delete(table, key),
                }
            }
        } else {
            let ops = muts.into_iter().map(owned_op).collect();
            self.held.push_back(Held {
                segment,
                offset,
                seq: h.seq,
                loc,
                ops,
                extents,
            });
        }
        self.release_covered();
    }

    /// Applies held commits, in order, that the mark now vouches for.
    fn release_covered(&mut self) {
        while let Some(c) = self.held.front() {
            if !c.extents.iter().all(|e| covered(e, self.mark)) {
                break;
            }
            if let Some(c) = self.held.pop_front() {
                self.apply(c);
            }
        }
    }

    fn apply(&mut self, c: Held) {
        for op in c.ops {
            op.apply(&mut self.index, c.seq, c.loc);
        }
    }

    /// Verifies the data of the commits still held after the scan; applies
    /// them in order up to the first failure, which cuts off the log there.
    async fn settle_held(&mut self, shard: u32) -> Result<(), IoError> {
        while let Some(c) = self.held.pop_front() {
            if self.verify(shard, &c).await? {
                self.stats.verified_commits += 1;
                self.apply(c);
                continue;
            }
            self.stats.dropped_commits += 1 + self.held.len() as u64;
            self.held.clear();
            tracing::warn!(
                shard,
                segment = c.segment,
                offset = c.offset,
                "commit references data that is not intact (never acknowledged); truncating the log there"
            );
            for (&n, seg) in self.segments.range_mut(c.segment..) {
                let end = if n == c.segment { c.offset } else { 0 };
                if end < seg.end {
                    seg.file.truncate(end).await?;
                    self.stats.ignored_bytes += seg.end - end;
                    seg.end = end;
                }
            }
        }
        Ok(())
    }

    async fn verify(&self, shard: u32, c: &Held) -> Result<bool, IoError> {
        for e in c.extents.iter().filter(|e| !covered(e, self.mark)) {
            let Ok(end) = data::extent_end(e) else {
                return Ok(false);
            };
            let Some(seg) = self.segments.get(&e.segment) else {
                return Ok(false);
            };
            if end.offset > seg.end {
                return Ok(false);
            }
            match data::verify_record(&seg.file, shard, e).await {
                Ok(()) => {}
                Err(IoError::Corrupt { .. } | IoError::InvalidExtent(_)) => return Ok(false),
                Err(other) => return Err(other),
            }
        }
        Ok(true)
    }
}

fn owned_op(m: MutView<'_>) -> IndexOp {
    match m {
        MutView::Put {
            table,
            key,
            summary,
            ..
        } => IndexOp::Put {
            table,
            key: key.to_vec(),
            summary: summary.to_vec(),
        },
        MutView::Delete { table, key } => IndexOp::Delete {
            table,
            key: key.to_vec(),
        },
    }
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
        mark: Pos::default(),
        held: VecDeque::new(),
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
    r.settle_held(shard).await?;
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

/// A window of the file held in memory. (Reading the next window ahead
/// does not overlap with parsing in monoio 0.2: a spawned read is only
/// submitted once the run queue drains, i.e. after the parse.)
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
                Kind::Segment => {
                    let ok = h.verify(win.slice(pos, BLOCK));
                    if ok {
                        self.r.note_mark(h.durable);
                    }
                    ok
                }
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
        let buf = if buf.capacity() >= len {
            buf
        } else {
            AlignedBuf::with_capacity(len)
        };
        win.buf = self.file.read_at(buf, pos, len).await?;
        win.start = pos;
        self.r.stats.bytes_read += win.buf.len() as u64;
        Ok(())
    }

    /// Verifies and applies one commit record; false if it is invalid.
    async fn commit(
        &mut self,
        win: &mut Window,
        h: &RecordHeader,
        pos: u64,
    ) -> Result<bool, IoError> {
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
        let payload =
            &rec[crate::format::HEADER_BYTES..crate::format::HEADER_BYTES + h.payload_len as usize];
        let muts = match codec::decode(payload) {
            Ok(m) => m,
            Err(why) => {
                // A checksummed record we cannot decode is a bug, not a torn write.
                tracing::error!(
                    shard = self.shard,
                    segment = self.segment,
                    offset = pos,
                    why,
                    "undecodable commit record"
                );
                return Ok(false);
            }
        };
        self.r.commit(h, self.segment, pos, muts);
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
