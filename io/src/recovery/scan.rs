//! The scan of one segment: records read through a window of the file,
//! checked, and handed to the replay in log order (see the module above
//! for what the scan trusts).

use super::*;

pub(super) struct Scan<'a> {
    pub(super) seg: &'a mut ScanSeg,
    pub(super) shard: u32,
    pub(super) key: &'a ShardKey,
    pub(super) replay: &'a mut Replay,
    pub(super) prev: Option<(u32, u64)>,
    /// (segment, predecessor it names, predecessor's length then).
    pub(super) claims: &'a mut Vec<(u32, u32, u64)>,
    /// Segment files that exist.
    pub(super) present: &'a [u32],
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

/// What the scan found at a position.
enum Found {
    Record(RecordHeader),
    /// A valid record of this shard's older segment at its own offset: a
    /// spare file's earlier content (`spare.rs`), never taken.
    Stale,
    Nothing,
}

impl Scan<'_> {
    fn pos(&self, offset: u64) -> Pos {
        Pos {
            segment: self.seg.number,
            offset,
        }
    }

    /// Scans the segment from `from` to its end.
    pub(super) async fn run(&mut self, from: u64) -> Result<(), IoError> {
        let mut win = Window {
            buf: AlignedBuf::with_capacity(BLOCK),
            start: 0,
            next_read_bytes: SCAN_MIN_BYTES,
        };
        win.buf.set_len(0);
        let file_len = self.seg.file_len;
        let mut pos = from;
        self.seg.valid_end = from;
        if from > 0 {
            // The checkpoint's position lies past this segment's record,
            // which says where its seqs start: seqs voided by a reset just
            // before it (failed commits, never acknowledged) are not gaps.
            // Unreadable, it says nothing (such seqs are then counted).
            if let Found::Record(h) = self.record_at(&mut win, 0).await? {
                if h.kind == Kind::Segment {
                    self.replay.segment_starts(h.seq, true);
                }
            }
        }
        while pos + HEADER_BYTES as u64 <= file_len {
            match self.record_at(&mut win, pos).await? {
                Found::Record(h) => {
                    pos = self.take(&mut win, &h, pos).await?;
                    self.seg.valid_end = pos;
                }
                Found::Nothing if pos % BLOCK as u64 != 0 && self.padding(&mut win, pos).await? => {
                    // After a copy that ends inside a block, the next record
                    // that is not a packed batch starts at the block boundary.
                    pos = align_up(pos).min(file_len);
                    self.seg.valid_end = pos;
                }
                Found::Nothing if pos % BLOCK as u64 == 0 && self.zeros_to_end(&mut win, pos).await? => {
                    // Written ahead of the head (`shard/prepare.rs`): the log
                    // ends here, as at a torn tail, and no record follows.
                    self.seg.zero_tail_from = Some(pos);
                    self.replay.push(Item::Invalid {
                        at: self.pos(pos),
                        end: self.pos(file_len),
                    });
                    pos = file_len;
                }
                found => {
                    // No record of this segment here (a spare file's older
                    // record is none either: `Found::Stale`): resync. If
                    // none follows to the end of the file, what lies from
                    // the first older record on is a reused file's, not a
                    // torn write's.
                    let here = matches!(found, Found::Stale).then_some(pos);
                    let (end, stale) = self.resync(&mut win, pos + RECORD_ALIGN as u64).await?;
                    if end >= file_len {
                        self.seg.stale_tail_from = here.or(stale);
                    }
                    self.replay.push(Item::Invalid {
                        at: self.pos(pos),
                        end: self.pos(end),
                    });
                    pos = end;
                }
            }
        }
        if pos < file_len {
            // A partial block at the end: never a whole record.
            self.replay.push(Item::Invalid {
                at: self.pos(pos),
                end: self.pos(file_len),
            });
        }
        Ok(())
    }

    /// Fills the window to hold `[pos, pos + len)`; false if the file ends
    /// first or the bytes cannot be read.
    async fn ensure(&mut self, win: &mut Window, pos: u64, len: usize) -> Result<bool, IoError> {
        if win.has(pos, len) {
            return Ok(true);
        }
        // Reads start on the block holding `pos` (a packed batch starts inside one).
        let lead = (pos - align_down(pos)) as usize;
        let pos = align_down(pos);
        let len = lead + len;
        let dense = pos + BLOCK as u64 >= win.start + win.buf.len() as u64
            && pos <= win.start + win.buf.len() as u64
            && pos > 0;
        win.next_read_bytes = if dense {
            (win.next_read_bytes * 2).min(SCAN_MAX_BYTES)
        } else {
            SCAN_MIN_BYTES
        };
        let room = align_up(self.seg.file_len.saturating_sub(pos));
        let want = (align_up(len as u64).max(win.next_read_bytes as u64)).min(room) as usize;
        if want < len {
            return Ok(false);
        }
        let buf = std::mem::replace(&mut win.buf, AlignedBuf::with_capacity(BLOCK));
        let buf = if buf.capacity() >= want {
            buf
        } else {
            AlignedBuf::with_capacity(want)
        };
        match self.seg.file.read_at(buf, pos, want).await {
            Ok(b) => {
                win.buf = b;
                win.start = pos;
                self.replay.stats.bytes_read += win.buf.len() as u64;
                Ok(win.has(pos, len))
            }
            Err(e) if want > BLOCK && len <= BLOCK => {
                // Narrow an unreadable window down to the block asked for.
                tracing::warn!(shard = self.shard, segment = self.seg.number, offset = pos, error = %e, "read error while scanning; retrying block by block");
                let b = AlignedBuf::with_capacity(BLOCK);
                match self.seg.file.read_at(b, pos, BLOCK).await {
                    Ok(b) => {
                        win.buf = b;
                        win.start = pos;
                        Ok(win.has(pos, len))
                    }
                    Err(_) => {
                        win.buf.set_len(0);
                        Ok(false)
                    }
                }
            }
            Err(e) => {
                tracing::warn!(shard = self.shard, segment = self.seg.number, offset = pos, error = %e, "read error while scanning");
                win.buf.set_len(0);
                Ok(false)
            }
        }
    }

    /// A valid record starting at `pos`, if there is one.
    async fn record_at(&mut self, win: &mut Window, pos: u64) -> Result<Found, IoError> {
        if !self.ensure(win, pos, HEADER_BYTES).await? {
            return Ok(Found::Nothing);
        }
        let Ok(h) = RecordHeader::decode(win.slice(pos, HEADER_BYTES)) else {
            return Ok(Found::Nothing);
        };
        if h.shard != self.shard || h.offset != pos {
            return Ok(Found::Nothing);
        }
        let stale = h.segment < self.seg.number;
        if h.segment != self.seg.number && !stale {
            return Ok(Found::Nothing);
        }
        if (pos == 0) != (h.kind == Kind::Segment) {
            return Ok(Found::Nothing);
        }
        if pos + h.record_len() > self.seg.file_len {
            return Ok(Found::Nothing);
        }
        let need = h.verify_len();
        if !self.ensure(win, pos, need).await? {
            return Ok(Found::Nothing);
        }
        if !h.verify(self.key, win.slice(pos, need)) {
            return Ok(Found::Nothing);
        }
        Ok(if stale { Found::Stale } else { Found::Record(h) })
    }

    /// The next offset from `from` (64-byte steps: a format-3 batch starts
    /// on any) where a valid record starts, or the end of the file. The
    /// keyed checksum, the address in the header and the kind's alignment
    /// guard against taking object bytes or a stale header for a record.
    /// Also where the first older segment's record passed lies (a spare
    /// file's earlier content), if any: reaching the end of the file, the
    /// bytes from there are a reused file's, not a torn write's.
    async fn resync(&mut self, win: &mut Window, from: u64) -> Result<(u64, Option<u64>), IoError> {
        let mut pos = from;
        let mut stale = None;
        while pos + HEADER_BYTES as u64 <= self.seg.file_len {
            match self.record_at(win, pos).await? {
                Found::Record(_) => return Ok((pos, stale)),
                Found::Stale => {
                    stale.get_or_insert(pos);
                }
                Found::Nothing => {}
            }
            pos += RECORD_ALIGN as u64;
        }
        Ok((self.seg.file_len, stale))
    }

    /// Whether every byte from `pos` (a block boundary) to the end of the
    /// file is zero, the file ending on a block boundary.
    async fn zeros_to_end(&mut self, win: &mut Window, pos: u64) -> Result<bool, IoError> {
        let file_len = self.seg.file_len;
        if file_len % BLOCK as u64 != 0 {
            return Ok(false);
        }
        let mut at = pos;
        while at < file_len {
            if !self.ensure(win, at, BLOCK).await? {
                return Ok(false);
            }
            // All of the window from `at` on is checked at once.
            let n = (win.start + win.buf.len() as u64 - at).min(file_len - at) as usize;
            if win.slice(at, n).iter().any(|&b| b != 0) {
                return Ok(false);
            }
            at += n as u64;
        }
        Ok(true)
    }

    /// Whether the bytes from `pos` (inside a block, where no record
    /// starts) to the block's end are the zero padding after a batch copy:
    /// all zero, and the record at the boundary (if any) is not the copy of
    /// a packed batch that started at `pos` (then that batch is missing).
    async fn padding(&mut self, win: &mut Window, pos: u64) -> Result<bool, IoError> {
        let next = align_up(pos).min(self.seg.file_len);
        let n = (next - pos) as usize;
        if !self.ensure(win, pos, n).await? || win.slice(pos, n).iter().any(|&b| b != 0) {
            return Ok(false);
        }
        if next + HEADER_BYTES as u64 > self.seg.file_len {
            return Ok(true);
        }
        if let Found::Record(c) = self.record_at(win, next).await? {
            if c.kind == Kind::BatchCopy && self.ensure(win, next, HEADER_BYTES + 8).await? {
                let primary = crate::format::u64_at(win.slice(next, HEADER_BYTES + 8), HEADER_BYTES);
                if primary == pos {
                    self.replay.push(Item::Invalid {
                        at: self.pos(pos),
                        end: self.pos(next),
                    });
                    return Ok(true);
                }
            }
        }
        Ok(true)
    }

    /// Takes a valid record: returns the offset after it.
    async fn take(&mut self, win: &mut Window, h: &RecordHeader, pos: u64) -> Result<u64, IoError> {
        let end = pos + h.record_len();
        match h.kind {
            Kind::Segment => {
                let info = SegmentInfo::read(win.slice(pos, BLOCK));
                self.seg.info = Some(info);
                self.seg.first_seq = Some(h.seq);
                self.replay.note_mark(h.durable);
                self.check_predecessor(&info, h.seq);
            }
            Kind::Data => {
                self.replay.stats.data_records += 1;
                let ext = Extent {
                    segment: self.seg.number,
                    offset: pos,
                    len: h.payload_len,
                };
                self.replay.push(Item::Data {
                    ext,
                    end: self.pos(end),
                });
            }
            Kind::Batch => return self.batch(win, h, pos).await,
            Kind::BatchCopy => {
                // A copy whose batch was not valid: its metadata stands in.
                self.replay.note_mark(h.durable);
                let len = HEADER_BYTES + h.payload_len as usize;
                if self.ensure(win, pos, len).await? {
                    let payload = win.slice(pos, len)[HEADER_BYTES..].to_vec();
                    let copies = self.entries(&payload, pos + HEADER_BYTES as u64 + 16, 16, h.count);
                    for (seq, loc, ops) in copies {
                        self.replay.push(Item::Commit { seq, loc, ops, from_copy: true });
                    }
                }
            }
        }
        Ok(end)
    }

    fn check_predecessor(&mut self, info: &SegmentInfo, first_seq: u64) {
        self.claims
            .push((self.seg.number, info.prev_segment, info.prev_end));
        // The predecessor it names, as scanned. Segment files in between
        // with no valid record are leftovers of a reset (a file created
        // ahead for a segment that was never started), not a fork.
        let named = match self.prev {
            Some((n, e)) if n == info.prev_segment => Some((n, e)),
            _ => self.replay.ends.get(&info.prev_segment).and_then(|&e| {
                let between_empty = self
                    .replay
                    .ends
                    .range(info.prev_segment + 1..self.seg.number)
                    .all(|(_, &end)| end == 0);
                (info.prev_segment != 0 && between_empty).then_some((info.prev_segment, e))
            }),
        };
        let complete = match named {
            Some((n, valid_end)) => {
                if valid_end < info.prev_end {
                    // The predecessor is shorter than when this one began.
                    self.replay.push(Item::Invalid {
                        at: Pos {
                            segment: n,
                            offset: valid_end,
                        },
                        end: Pos {
                            segment: n,
                            offset: info.prev_end,
                        },
                    });
                    false
                } else {
                    true
                }
            }
            _ => {
                if info.prev_segment != 0 && !self.present.contains(&info.prev_segment) {
                    self.replay.push(Item::Missing {
                        segment: info.prev_segment,
                    });
                }
                info.prev_segment == 0
            }
        };
        self.replay.segment_starts(first_seq, complete);
    }

    /// A batch and (when intact) its copy: every commit from its entry, or
    /// from the copy's where the entry is damaged.
    async fn batch(&mut self, win: &mut Window, h: &RecordHeader, pos: u64) -> Result<u64, IoError> {
        self.replay.stats.batches += 1;
        self.replay.note_mark(h.durable);
        let primary_end = pos + h.record_len();
        let len = HEADER_BYTES + h.payload_len as usize;
        let primary = if self.ensure(win, pos, len).await? {
            let payload = win.slice(pos, len)[HEADER_BYTES..].to_vec();
            self.entries(&payload, pos + HEADER_BYTES as u64, 0, h.count)
        } else {
            Vec::new()
        };
        let all_there = primary.len() == h.count as usize;
        // The copy follows; read it when an entry needs it (and skip it
        // either way). A format-3 batch says where its copy ends.
        let packed_end = (h.version >= 3).then(|| (primary_end + h.copy_len as u64).min(self.seg.file_len));
        let mut copy_end = None;
        let mut copies = Vec::new();
        if let Found::Record(c) = self.record_at(win, primary_end).await? {
            if c.kind == Kind::BatchCopy && c.seq == h.seq && c.count == h.count && c.version == h.version {
                copy_end = Some(primary_end + c.record_len());
                if !all_there {
                    let clen = HEADER_BYTES + c.payload_len as usize;
                    if self.ensure(win, primary_end, clen).await? {
                        let payload = win.slice(primary_end, clen)[HEADER_BYTES..].to_vec();
                        copies = self.entries(&payload, primary_end + HEADER_BYTES as u64 + 16, 16, c.count);
                    }
                }
            }
        }
        let mut by_seq: BTreeMap<u64, (Loc, Vec<IndexOp>)> = BTreeMap::new();
        for (seq, loc, ops) in copies {
            by_seq.insert(seq, (loc, ops));
        }
        let mut primary_by_seq: BTreeMap<u64, (Loc, Vec<IndexOp>)> = primary
            .into_iter()
            .map(|(s, l, o)| (s, (l, o)))
            .collect();
        if !all_there {
            // Damaged below the mark is corruption (the copy stands in);
            // past it, a torn write (the log ends here).
            self.replay.push(Item::Invalid {
                at: self.pos(pos),
                end: self.pos(primary_end),
            });
        }
        for seq in h.seq..h.seq + h.count as u64 {
            if let Some((loc, ops)) = primary_by_seq.remove(&seq) {
                self.replay.push(Item::Commit { seq, loc, ops, from_copy: false });
            } else if let Some((loc, ops)) = by_seq.remove(&seq) {
                self.replay.push(Item::Commit { seq, loc, ops, from_copy: true });
            }
        }
        if copy_end.is_none() {
            if let Some(end) = packed_end {
                // A damaged copy of an intact batch loses nothing (the
                // rewrite of its last block by a packed batch may have been
                // torn): counted apart, and the scan steps over it.
                if all_there {
                    self.replay.push(Item::DamagedCopy {
                        at: self.pos(primary_end),
                        end: self.pos(end),
                    });
                }
                return Ok(end);
            }
        }
        Ok(copy_end.unwrap_or(primary_end))
    }

    /// The valid entries of a batch or copy payload (which starts at file
    /// offset `base`; entries after `skip` bytes): (seq, loc, index ops).
    fn entries(&mut self, payload: &[u8], base: u64, skip: usize, count: u32) -> Vec<(u64, Loc, Vec<IndexOp>)> {
        let mut out = Vec::new();
        let mut off = skip;
        let base = base - skip as u64;
        for _ in 0..count {
            if off >= payload.len() {
                break;
            }
            let room = payload.len() - off;
            let Ok(eh) = EntryHeader::decode(&payload[off..], room) else {
                break;
            };
            let at = Pos {
                segment: self.seg.number,
                offset: base + off as u64,
            };
            let ok = eh.verify(self.key, &payload[off..], self.shard, at);
            if ok {
                let body = &payload[off + ENTRY_HEADER_BYTES..off + eh.total_len()];
                if let Ok(views) = codec::decode(body, eh.count) {
                    let ops: Vec<_> = views.into_iter().filter_map(view_to_op).collect();
                    if ops.len() == eh.count as usize {
                        let loc = Loc {
                            segment: self.seg.number,
                            offset: at.offset as u32,
                            len: eh.total_len() as u32,
                        };
                        out.push((eh.seq, loc, index_ops(&ops, eh.seq)));
                        self.replay.retired_seqs.extend(retire_ranges(&ops));
                    }
                }
            }
            off += align_entry(eh.total_len());
        }
        out
    }
}
