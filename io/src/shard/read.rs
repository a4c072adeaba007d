//! The read path: a key's commit (`Shard::load`, from the entry or its
//! batch's copy), data records (`Shard::read_extent`), and what a read
//! says when compaction moved or a damaged region lost what it looks for.

use super::*;

impl Shard {
    /// Reads the commit behind `key`: its meta and body description.
    pub async fn load(&self, table: u8, key: &[u8]) -> Result<Option<Stored>, IoError> {
        let mut last: Option<Loc> = None;
        for _ in 0..8 {
            let Some(entry) = self.get(table, key) else {
                return Ok(None);
            };
            if last == Some(entry.loc) {
                // Still pointing into a retired segment after the read
                // failed: not a move in progress (compaction repoints
                // before it retires) but a move lost with a damaged
                // region of the log (recovery counted it). The record is
                // gone: say so, never serve an older one.
                return Err(IoError::corrupt(
                    entry.loc.segment,
                    entry.loc.offset(),
                    "the record's segment was retired and its moved copy lost",
                ));
            }
            match self.inner.load_entry(table, key, entry.loc, entry.ordinal, entry.seq).await {
                Err(IoError::Moved) => last = Some(entry.loc),
                Ok(stored) => {
                    let Some(gone) = self.inner.retired_extent(&stored.body) else {
                        return Ok(Some(stored));
                    };
                    // The body lies in a retired segment. Compaction
                    // repoints an entry before it retires the segment, so
                    // if the entry is still the one read, its move was
                    // lost with a damaged region (recovery counted it as
                    // dangling): the body is gone, never served as older
                    // bytes. Otherwise a move raced this read: look again.
                    let now = self.get(table, key).map(|e| (e.loc, e.seq));
                    if now == Some((entry.loc, entry.seq)) {
                        return Err(IoError::corrupt(
                            gone.segment,
                            gone.offset,
                            "the body's segment was retired and its moved copy lost",
                        ));
                    }
                }
                Err(e) => return Err(e),
            }
        }
        Err(IoError::Moved)
    }

    /// Reads `range` (relative to the extent's data) of a data record,
    /// verifying the checksum of every 64 KiB chunk it touches. `Moved`
    /// when compaction relocated it: look the key up again.
    pub async fn read_extent(&self, e: &Extent, range: Range<u64>) -> Result<Vec<u8>, IoError> {
        let (buf, at) = self.read_extent_buf(e, range).await?;
        Ok(buf.as_slice()[at].to_vec())
    }

    /// `read_extent` without copying out of the O_DIRECT buffer: the
    /// buffer read and where `range` lies in it (for a caller that sends
    /// the bytes straight from it, as a GET does).
    pub async fn read_extent_buf(&self, e: &Extent, range: Range<u64>) -> Result<(AlignedBuf, Range<usize>), IoError> {
        if range.start > range.end || range.end > e.len {
            return Err(IoError::InvalidExtent("range outside the extent"));
        }
        let end = data::extent_end(e)?;
        let file = match self.inner.segment_file(e.segment, end.offset) {
            Ok(f) => f,
            Err(err) => {
                if matches!(err, IoError::Corrupt { .. }) {
                    self.inner.note_corrupt_read();
                }
                return Err(err);
            }
        };
        if range.is_empty() {
            return Ok((AlignedBuf::with_capacity(0), 0..0));
        }
        let r = data::read_range_buf(&file, &self.inner.key, self.inner.id, e, range).await;
        if matches!(r, Err(IoError::Corrupt { .. })) {
            self.inner.note_corrupt_read();
        }
        r
    }
}

impl Inner {
    /// The first extent of `body` in a segment compaction has retired.
    fn retired_extent(&self, body: &Body) -> Option<Extent> {
        let Body::Extents(es) = body else { return None };
        let log = self.log.borrow();
        es.iter()
            .find(|e| !log.segments.contains_key(&e.segment) && log.retired.contains(&e.segment))
            .copied()
    }

    pub(crate) fn segment_file(&self, segment: u32, end: u64) -> Result<Rc<DiskFile>, IoError> {
        let log = self.log.borrow();
        let Some(seg) = log.segments.get(&segment) else {
            if log.retired.contains(&segment) {
                return Err(IoError::Moved);
            }
            if log.lost.contains(&segment) {
                return Err(IoError::corrupt(segment, 0, "the segment is gone (its retirement or moves were lost)"));
            }
            return Err(IoError::InvalidExtent("unknown segment"));
        };
        if end > seg.end {
            if seg.vstart.is_none() {
                // A segment of an earlier run ends where recovery found its
                // valid bytes end: an entry naming data past that lost it to
                // damage recovery cut away (found by the simulation, seed
                // 404541: rot in a segment's first blocks). Corrupt, counted.
                return Err(IoError::corrupt(segment, seg.end, "data past the valid end of its segment (damaged)"));
            }
            return Err(IoError::InvalidExtent("past the end of its segment"));
        }
        Ok(seg.file.clone())
    }

    /// Reads and verifies the commit entry at `loc`; falls back to the
    /// batch's copy when the entry is damaged. The bytes start at the entry.
    pub(crate) async fn read_entry(&self, loc: Loc) -> Result<(AlignedBuf, usize, Loc), IoError> {
        let file = self.segment_file(loc.segment, loc.offset() + loc.len as u64)?;
        let (buf, skip) = data::read_span(&file, loc.offset(), loc.len as usize, loc.segment).await?;
        let b = &buf.as_slice()[skip..];
        let pos = Pos {
            segment: loc.segment,
            offset: loc.offset(),
        };
        // (The entry's seq is its commit's; an operation moved by compaction
        // keeps its own older seq, so only the place and the tag are checked.)
        let good = EntryHeader::decode(b, b.len())
            .ok()
            .filter(|h| h.total_len() == loc.len as usize)
            .is_some_and(|h| h.verify(&self.key, b, self.id, pos));
        if good {
            return Ok((buf, skip, loc));
        }
        self.note_corrupt_read();
        tracing::error!(shard = self.id, segment = loc.segment, offset = loc.offset, "commit entry fails its checksum; trying its copy");
        match recovery::find_copy(&file, &self.key, self.id, loc).await? {
            Some((copy_loc, bytes)) => Ok((bytes, 0, copy_loc)),
            None => Err(IoError::corrupt(loc.segment, loc.offset(), "commit entry (and its copy)")),
        }
    }

    /// The operation `ordinal` of the commit at `loc`, owned.
    pub(crate) async fn load_op(&self, loc: Loc, ordinal: u16) -> Result<(Op, bool), IoError> {
        let mut ops = self.load_ops(loc, &[ordinal]).await?;
        ops.pop().ok_or_else(|| IoError::corrupt(loc.segment, loc.offset(), "operation ordinal"))
    }

    /// The operations `ordinals` of the commit at `loc`, owned, in that
    /// order, from one read (and one check) of the commit entry; each with
    /// whether only its metadata survived (`recovery::is_meta_only`).
    pub(crate) async fn load_ops(&self, loc: Loc, ordinals: &[u16]) -> Result<Vec<(Op, bool)>, IoError> {
        let (buf, skip, at) = self.read_entry(loc).await?;
        let b = &buf.as_slice()[skip..];
        let corrupt = |what| IoError::corrupt(at.segment, at.offset(), what);
        let h = EntryHeader::decode(b, b.len()).map_err(corrupt)?;
        let views = codec::decode(&b[ENTRY_HEADER_BYTES..h.total_len()], h.count).map_err(corrupt)?;
        let meta_only = recovery::is_meta_only(b);
        ordinals
            .iter()
            .map(|&ordinal| match *views.get(ordinal as usize).ok_or_else(|| corrupt("operation ordinal"))? {
                OpView::Put {
                    body: codec::BodyView::Digest { .. },
                    table,
                    key,
                    seq,
                    summary,
                    meta,
                } => Ok((
                    Op::Put {
                        table,
                        key: key.to_vec(),
                        seq,
                        summary: summary.to_vec(),
                        meta: meta.to_vec(),
                        body: Body::Inline(Vec::new()),
                    },
                    true,
                )),
                v => v
                    .to_op()
                    .map(|op| (op, meta_only))
                    .ok_or_else(|| corrupt("operation body")),
            })
            .collect()
    }

    async fn load_entry(
        &self,
        table: u8,
        key: &[u8],
        loc: Loc,
        ordinal: u16,
        seq: u64,
    ) -> Result<Stored, IoError> {
        let corrupt = |what| IoError::corrupt(loc.segment, loc.offset(), what);
        let (op, meta_only) = self.load_op(loc, ordinal).await?;
        match op {
            Op::Put {
                table: t,
                key: k,
                summary,
                meta,
                body,
                ..
            } if t == table && k == key => {
                if meta_only && matches!(body, Body::Inline(_)) {
                    // Only the metadata survived: the inline body is lost.
                    return Err(corrupt("inline body lost with its commit entry"));
                }
                Ok(Stored {
                    seq,
                    summary,
                    meta,
                    body,
                })
            }
            _ => Err(corrupt("commit entry lacks the indexed key")),
        }
    }
}
