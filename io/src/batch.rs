//! Packing commits: the commits that arrive while the previous batch is
//! being written and synced share the next batch record, so many small
//! commits cost one aligned write and one sync between them (group
//! commit), and a small commit costs its own bytes, not a 4 KiB block.
//!
//! A batch is written as one record plus its metadata-only copy (see
//! `format`), in one write. In format 3 the batch starts where the last
//! copy ended when it can (packed): the write then begins with that copy's
//! last block, its bytes unchanged, so a small batch costs its bytes plus
//! one padding (before its copy), not two.

use crate::buf::AlignedBuf;
use crate::codec::{Body, Op};
use crate::error::IoError;
use crate::format::{
    align_down, align_entry, align_record, align_up, EntryHeader, Kind, Pos, RecordHeader,
    ShardKey, BLOCK, ENTRY_HEADER_BYTES, ENTRY_META_ONLY, FORMAT_VERSION, HEADER_BYTES,
    MAX_COMMIT_PAYLOAD_BYTES,
};

/// The most room `OpenBatch::successor` reserves per section: what an
/// idle shard may hold for its next batch (a 4 KiB PUT batch at 64
/// connections is about 140 KiB; larger ones grow as before).
const SUCCESSOR_MAX_BYTES: usize = 256 << 10;
use crate::index::{Footprint, Loc};

/// What applying a committed operation does to the index.
#[derive(Debug)]
pub(crate) enum IndexOp {
    Put {
        table: u8,
        key: Vec<u8>,
        summary: Vec<u8>,
        seq: u64,
        ordinal: u16,
        fp: Footprint,
    },
    Delete {
        table: u8,
        key: Vec<u8>,
        seq: u64,
    },
    Retire {
        segment: u32,
    },
}

/// A commit staged in the open batch.
pub(crate) struct Staged {
    pub seq: u64,
    /// Offsets of its entry in the primary and copy sections.
    entry_at: usize,
    copy_at: usize,
    pub ops: Vec<IndexOp>,
    /// The caller's view of the commit's fate.
    pub state: std::rc::Rc<std::cell::Cell<CommitState>>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CommitState {
    Pending,
    Durable,
    Failed,
}

/// The batch being filled.
#[derive(Default)]
pub(crate) struct OpenBatch {
    entries: Vec<u8>,
    copies: Vec<u8>,
    pub staged: Vec<Staged>,
    /// Whether a commit in it holds a delete or a retire: what
    /// compaction's scan of a victim keeps (`compact::scan_deletes`).
    pub keeps: bool,
}

/// Bytes of data records (header block + padded data) behind `body`, per segment.
fn data_footprint(body: &Body) -> Vec<(u32, u64)> {
    let mut out: Vec<(u32, u64)> = Vec::new();
    if let Body::Extents(es) = body {
        for e in es {
            let bytes = BLOCK as u64 + align_up(e.len);
            match out.iter_mut().find(|(s, _)| *s == e.segment) {
                Some((_, b)) => *b += bytes,
                None => out.push((e.segment, bytes)),
            }
        }
    }
    out
}

/// The index operations `ops` of commit `seq` make once durable.
pub(crate) fn index_ops(ops: &[Op], seq: u64) -> Vec<IndexOp> {
    let n = ops.len().max(1) as u32;
    let header_share = ENTRY_HEADER_BYTES as u32 / n;
    let mut out = Vec::with_capacity(ops.len());
    for (i, op) in ops.iter().enumerate() {
        let share = header_share + op.encoded_len(false).unwrap_or(0) as u32;
        out.push(match op {
            Op::Put {
                table,
                key,
                seq: kept,
                summary,
                body,
                ..
            } => IndexOp::Put {
                table: *table,
                key: key.clone(),
                summary: summary.clone(),
                seq: kept.unwrap_or(seq),
                ordinal: i as u16,
                fp: Footprint {
                    min_seg: u32::MAX,
                    share,
                    data: data_footprint(body),
                },
            },
            Op::Delete {
                table,
                key,
                seq: kept,
                ..
            } => IndexOp::Delete {
                table: *table,
                key: key.clone(),
                seq: kept.unwrap_or(seq),
            },
            Op::Retire { segment, .. } => IndexOp::Retire { segment: *segment },
        });
    }
    out
}

impl OpenBatch {
    pub(crate) fn is_empty(&self) -> bool {
        self.staged.is_empty()
    }

    /// The segments holding data its commits name.
    pub(crate) fn data_segments(&self) -> Vec<u32> {
        let mut out: Vec<u32> = Vec::new();
        for s in &self.staged {
            for op in &s.ops {
                if let IndexOp::Put { fp, .. } = op {
                    for (seg, _) in &fp.data {
                        if !out.contains(seg) {
                            out.push(*seg);
                        }
                    }
                }
            }
        }
        out
    }

    /// Bytes the primary section holds so far.
    pub(crate) fn entry_bytes(&self) -> usize {
        self.entries.len()
    }

    /// Encodes commit `seq` into the batch. Nothing is staged on error.
    pub(crate) fn stage(
        &mut self,
        seq: u64,
        ops: &[Op],
        state: std::rc::Rc<std::cell::Cell<CommitState>>,
    ) -> Result<(), IoError> {
        if ops.len() > u16::MAX as usize {
            return Err(IoError::TooLarge);
        }
        let mut len = 0usize;
        let mut copy_len = 0usize;
        for op in ops {
            len += op.encoded_len(false)?;
            copy_len += op.encoded_len(true)?;
            if len > MAX_COMMIT_PAYLOAD_BYTES {
                return Err(IoError::TooLarge);
            }
        }
        let entry_at = self.entries.len();
        let copy_at = self.copies.len();
        // Room for both entries up front: growing the vectors op by op
        // reallocated and copied them about 12 times per 4 KiB PUT.
        self.entries.reserve(align_entry(ENTRY_HEADER_BYTES + len));
        self.copies.reserve(align_entry(ENTRY_HEADER_BYTES + copy_len));
        push_entry(&mut self.entries, seq, ops, len, false);
        push_entry(&mut self.copies, seq, ops, copy_len, true);
        self.keeps |= ops.iter().any(|op| matches!(op, Op::Delete { .. } | Op::Retire { .. }));
        self.staged.push(Staged {
            seq,
            entry_at,
            copy_at,
            ops: index_ops(ops, seq),
            state,
        });
        Ok(())
    }

    /// Bytes of the copy record.
    fn copy_len(&self) -> u64 {
        align_record((HEADER_BYTES + 16 + self.copies.len()) as u64)
    }

    /// Bytes the batch and its copy take when the batch starts at `offset`
    /// (its primary is padded up to the block boundary its copy starts on).
    pub(crate) fn record_len_at(&self, offset: u64) -> u64 {
        align_up(offset + (HEADER_BYTES + self.entries.len()) as u64) - offset + self.copy_len()
    }

    /// An empty batch to fill while this one is written, with room for
    /// twice what this one holds, or half the room this one was given if
    /// that is more (up to `SUCCESSOR_MAX_BYTES`). A batch grown from
    /// nothing reallocated, and so copied, its bytes about twice over (4%
    /// of a 4 KiB PUT's instructions at 64 connections, in `Log::stage`);
    /// sized to its predecessor, one batch in four still grew, as a small
    /// batch (a commit or two) often comes between large ones. So it takes
    /// `reuse`, the sections of the batch built last, when they have that
    /// room: their capacity is the most any recent batch needed (bounded
    /// by `Sections::keep`), and a batch rarely grows once a shard has run
    /// a while (one 4 KiB PUT in 17 grew a batch at 64 connections, each
    /// growth copying some 60 KiB: 1.6% of its instructions).
    pub(crate) fn successor(&self, reuse: Option<Sections>) -> OpenBatch {
        let room = |v: &Vec<u8>| v.len().saturating_mul(2).max(v.capacity() / 2).min(SUCCESSOR_MAX_BYTES);
        let (entries, copies) = match reuse {
            Some(s) if s.entries.capacity() >= room(&self.entries) && s.copies.capacity() >= room(&self.copies) => {
                (s.entries, s.copies)
            }
            _ => (Vec::with_capacity(room(&self.entries)), Vec::with_capacity(room(&self.copies))),
        };
        debug_assert!(entries.is_empty() && copies.is_empty());
        OpenBatch {
            entries,
            copies,
            staged: Vec::with_capacity(self.staged.len()),
            keeps: false,
        }
    }

    /// An empty batch of the same layout (zeroed entries, no commits), to
    /// fill a slot allocated for a batch whose commits failed.
    pub(crate) fn filler(&self) -> OpenBatch {
        OpenBatch {
            entries: vec![0; self.entries.len()],
            copies: vec![0; self.copies.len()],
            staged: Vec::new(),
            keeps: false,
        }
    }

    /// Lays the batch out at `at` and seals it: returns the bytes to write
    /// (from the block holding `at`: `prefix` is what that block holds
    /// before it, rewritten unchanged; then the batch, its copy, and zeros
    /// up to a block boundary) and the staged commits with the location of
    /// each one's primary entry.
    pub(crate) fn build(
        self,
        key: &ShardKey,
        shard: u32,
        at: Pos,
        durable: Pos,
        prefix: &[u8],
    ) -> (AlignedBuf, Vec<(Staged, Loc)>, Option<Sections>) {
        let lead = (at.offset - align_down(at.offset)) as usize;
        assert_eq!(prefix.len(), lead, "a packed batch rewrites its block's bytes before it");
        let copy_len = self.copy_len() as usize;
        let primary_len = (self.record_len_at(at.offset) as usize) - copy_len;
        let total = align_up((lead + primary_len + copy_len) as u64) as usize;
        // The buffer may come from the pool holding an earlier record, so
        // every byte of [0, total) is written here, in order: copied, or
        // zeroed where it is a header (filled and sealed below) or padding.
        // Only the padding is zeroed, not the whole buffer: zeroing a 4 KiB
        // PUT's 12 KiB record first was 7% of its instructions.
        let mut rec = AlignedBuf::with_capacity_pooled(total);
        rec.extend_from_slice(prefix);
        rec.zero_extend(lead + HEADER_BYTES);
        rec.extend_from_slice(&self.entries);
        let copy_start = primary_len;
        let copy_payload = copy_start + HEADER_BYTES;
        rec.zero_extend(lead + copy_payload);
        rec.extend_from_slice(&at.offset.to_le_bytes());
        rec.extend_from_slice(&(self.entries.len() as u64).to_le_bytes());
        rec.extend_from_slice(&self.copies);
        rec.zero_extend(total);
        let first_seq = self.staged.first().map_or(0, |s| s.seq);
        let count = self.staged.len() as u32;
        let whole = rec.as_mut_slice();
        let buf = &mut whole[lead..lead + primary_len + copy_len];
        let mut out = Vec::with_capacity(self.staged.len());
        for s in self.staged {
            let e_off = HEADER_BYTES + s.entry_at;
            let c_off = copy_payload + 16 + s.copy_at;
            let eh = read_entry_header(&buf[e_off..]);
            let ch = read_entry_header(&buf[c_off..]);
            let e_pos = Pos {
                segment: at.segment,
                offset: at.offset + e_off as u64,
            };
            let c_pos = Pos {
                segment: at.segment,
                offset: at.offset + c_off as u64,
            };
            eh.seal(key, &mut buf[e_off..], shard, e_pos);
            ch.seal(key, &mut buf[c_off..], shard, c_pos);
            let loc = Loc {
                segment: at.segment,
                offset: e_pos.offset as u32,
                len: eh.total_len() as u32,
            };
            out.push((s, loc));
        }
        let header = RecordHeader {
            version: FORMAT_VERSION,
            kind: Kind::Batch,
            shard,
            segment: at.segment,
            seq: first_seq,
            payload_len: self.entries.len() as u64,
            offset: at.offset,
            count,
            durable,
            copy_len: copy_len as u32,
        };
        debug_assert_eq!(header.record_len() as usize, primary_len);
        header.write_and_seal(key, &mut buf[..primary_len]);
        let copy = RecordHeader {
            kind: Kind::BatchCopy,
            payload_len: 16 + self.copies.len() as u64,
            offset: at.offset + copy_start as u64,
            copy_len: 0,
            ..header
        };
        copy.write_and_seal(key, &mut buf[copy_start..]);
        (rec, out, Sections::keep(self.entries, self.copies))
    }
}

/// A built batch's entry and copy sections, emptied, for a later batch
/// (`OpenBatch::successor`).
pub(crate) struct Sections {
    entries: Vec<u8>,
    copies: Vec<u8>,
}

impl Sections {
    /// Sections worth keeping: at most twice `SUCCESSOR_MAX_BYTES` each, so
    /// an idle shard holds at most that much for its next batch.
    fn keep(mut entries: Vec<u8>, mut copies: Vec<u8>) -> Option<Sections> {
        if entries.capacity() > 2 * SUCCESSOR_MAX_BYTES || copies.capacity() > 2 * SUCCESSOR_MAX_BYTES {
            return None;
        }
        entries.clear();
        copies.clear();
        Some(Sections { entries, copies })
    }
}

fn read_entry_header(b: &[u8]) -> EntryHeader {
    // Written by push_entry just before: lengths are in bounds.
    EntryHeader {
        len: crate::format::u32_at(b, 0),
        flags: crate::format::u16_at(b, 4),
        count: crate::format::u16_at(b, 6),
        seq: crate::format::u64_at(b, 8),
    }
}

/// Appends an entry (header unsealed: its tag depends on where it lands).
fn push_entry(out: &mut Vec<u8>, seq: u64, ops: &[Op], len: usize, meta_only: bool) {
    let start = out.len();
    out.extend_from_slice(&(len as u32).to_le_bytes());
    let flags = if meta_only { ENTRY_META_ONLY } else { 0 };
    out.extend_from_slice(&flags.to_le_bytes());
    out.extend_from_slice(&(ops.len() as u16).to_le_bytes());
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(&[0u8; 8]);
    for op in ops {
        op.encode(out, meta_only);
    }
    debug_assert_eq!(out.len() - start, ENTRY_HEADER_BYTES + len);
    out.resize(align_entry(out.len()), 0);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec;
    use std::cell::Cell;
    use std::rc::Rc;

    fn two_commits() -> OpenBatch {
        stage_two(OpenBatch::default())
    }

    /// Stages `two_commits`' two commits into `b`.
    fn stage_two(mut b: OpenBatch) -> OpenBatch {
        let put = |k: &[u8], body: &[u8]| Op::Put {
            table: 0,
            key: k.to_vec(),
            seq: None,
            summary: b"s".to_vec(),
            meta: b"m".to_vec(),
            body: Body::Inline(body.to_vec()),
        };
        b.stage(10, &[put(b"a", b"hello")], Rc::new(Cell::new(CommitState::Pending)))
            .unwrap();
        b.stage(
            11,
            &[put(b"b", &[7u8; 5000]), put(b"c", b"")],
            Rc::new(Cell::new(CommitState::Pending)),
        )
        .unwrap();
        b
    }

    #[test]
    fn batch_layout_verifies_and_copies_hold_metadata() {
        let key = [5u8; 16];
        // At a block boundary, and packed after 320 bytes of an earlier copy.
        for lead in [0usize, 320] {
            let b = two_commits();
            let at = Pos {
                segment: 2,
                offset: 8192 + lead as u64,
            };
            let prefix = vec![0xabu8; lead];
            let total = b.record_len_at(at.offset);
            let (rec, locs, _) = b.build(&key, 3, at, Pos::default(), &prefix);
            let whole = rec.as_slice();
            assert_eq!(whole.len() % BLOCK, 0);
            assert_eq!(whole.len() as u64, align_up(lead as u64 + total));
            assert_eq!(&whole[..lead], &prefix[..], "the block's earlier bytes are rewritten unchanged");
            let bytes = &whole[lead..];
            let h = RecordHeader::read_expect(&key, bytes, Kind::Batch, 3, 2, at.offset).unwrap();
            assert_eq!((h.seq, h.count, h.version), (10, 2, FORMAT_VERSION));
            assert_eq!((at.offset + h.record_len()) % BLOCK as u64, 0, "the copy starts on a block of its own");
            for (s, loc) in &locs {
                let rel = (loc.offset as u64 - at.offset) as usize;
                let eh = EntryHeader::decode(&bytes[rel..], bytes.len() - rel).unwrap();
                assert_eq!(eh.seq, s.seq);
                let pos = Pos {
                    segment: 2,
                    offset: loc.offset as u64,
                };
                assert!(eh.verify(&key, &bytes[rel..], 3, pos));
                assert_eq!(eh.total_len(), loc.len as usize);
            }
            // The copy record follows the primary and verifies on its own;
            // the primary says where it ends.
            let copy_at = h.record_len() as usize;
            let c = RecordHeader::decode(&bytes[copy_at..]).unwrap();
            assert_eq!(c.kind, Kind::BatchCopy);
            assert!(c.verify(&key, &bytes[copy_at..]));
            assert_eq!(c.record_len(), h.copy_len as u64);
            assert_eq!(h.record_len() + c.record_len(), total);
            assert_eq!(total % 64, 0);
            let first = copy_at + HEADER_BYTES + 16;
            let eh = EntryHeader::decode(&bytes[first..], bytes.len() - first).unwrap();
            assert_eq!((eh.seq, eh.flags), (10, ENTRY_META_ONLY));
            let ops = codec::decode(
                &bytes[first + ENTRY_HEADER_BYTES..first + eh.total_len()],
                eh.count,
            )
            .unwrap();
            assert!(matches!(
                ops[0],
                codec::OpView::Put {
                    body: codec::BodyView::Digest { len: 5, .. },
                    ..
                }
            ));
        }
    }
    /// Fills this thread's buffer pool with `byte`, so that the next
    /// buffers taken from it hold that garbage.
    fn poison_pool(byte: u8) {
        // The small classes, and the large ones a big batch record takes
        // (`AlignedBuf::with_capacity_pooled`).
        let classes = [1usize, 2, 4, 8, 16].map(|b| (b * BLOCK, 300)).into_iter().chain([((64 << 10) + BLOCK, 70), ((128 << 10) + BLOCK, 70)]);
        for (cap, count) in classes {
            let bufs: Vec<AlignedBuf> = (0..count)
                .map(|_| {
                    let mut b = AlignedBuf::with_capacity(cap);
                    b.set_len(b.capacity());
                    b.as_mut_slice().fill(byte);
                    b
                })
                .collect();
            drop(bufs);
            // The next buffer of that size comes from the pool, garbage and all.
            let mut b = AlignedBuf::with_capacity(cap);
            b.set_len(b.capacity());
            assert!(b.as_slice().iter().all(|&x| x == byte));
        }
    }

    #[test]
    fn a_successor_refills_the_last_batchs_sections_and_builds_the_same_record() {
        let key = [4u8; 16];
        let at = Pos { segment: 1, offset: 5 * BLOCK as u64 };
        // A big batch built: its emptied sections come back.
        let (_, _, sections) = big_commits().build(&key, 1, at, Pos::default(), &[]);
        let sections = sections.expect("a batch of about 100 KiB keeps its sections");
        let (e_ptr, c_ptr) = (sections.entries.as_ptr(), sections.copies.as_ptr());
        // Poison what the sections held before, beyond their (zero) length.
        let (mut e, mut c) = (sections.entries, sections.copies);
        e.extend(std::iter::repeat_n(0xeeu8, e.capacity()));
        c.extend(std::iter::repeat_n(0xeeu8, c.capacity()));
        let sections = Sections::keep(e, c).unwrap();
        // The successor of a two-commit batch takes them, as they have the room.
        let next = two_commits().successor(Some(sections));
        assert_eq!((next.entries.as_ptr(), next.copies.as_ptr()), (e_ptr, c_ptr), "the sections were not reused");
        let reused = stage_two(next);
        let fresh = stage_two(OpenBatch::default());
        assert_eq!(reused.staged.len(), 2);
        let (a, _, _) = reused.build(&key, 1, at, Pos::default(), &[]);
        let (b, _, _) = fresh.build(&key, 1, at, Pos::default(), &[]);
        assert_eq!(a.as_slice(), b.as_slice(), "a record built in reused sections differs");
        // Sections too small for the room a successor wants are not taken;
        // sections past twice the successor's cap are not kept.
        let small = Sections::keep(Vec::with_capacity(64), Vec::with_capacity(64)).unwrap();
        let next = big_commits().successor(Some(small));
        assert!(next.entries.capacity() >= 2 * big_commits().entries.len());
        assert!(Sections::keep(Vec::with_capacity(2 * SUCCESSOR_MAX_BYTES + 1), Vec::new()).is_none());
    }

    /// `two_commits` and a third of a 100 KiB inline body: a record in a
    /// large pooled class.
    fn big_commits() -> OpenBatch {
        let mut b = two_commits();
        let big = Op::Put {
            table: 0,
            key: b"d".to_vec(),
            seq: None,
            summary: b"s".to_vec(),
            meta: b"m".to_vec(),
            body: Body::Inline(vec![3u8; 100 << 10]),
        };
        b.stage(12, &[big], Rc::new(Cell::new(CommitState::Pending))).unwrap();
        b
    }

    #[test]
    fn pooled_garbage_never_reaches_the_record() {
        let key = [9u8; 16];
        for lead in [0usize, 320, 4032] {
            let at = Pos {
                segment: 4,
                offset: 3 * BLOCK as u64 + lead as u64,
            };
            let prefix = vec![0xc3u8; lead];
            let build = |garbage: u8, batch: fn() -> OpenBatch| {
                poison_pool(garbage);
                let (rec, _, _) = batch().build(&key, 1, at, Pos::default(), &prefix);
                rec.as_slice().to_vec()
            };
            let big = build(0xa5, big_commits);
            assert!(big.len() > 64 << 10, "a record of a large class: {} bytes", big.len());
            assert_eq!(big, build(0x5a, big_commits), "lead {lead}: a big record's bytes depend on the buffer's old contents");
            let a = build(0xa5, two_commits);
            let b = build(0x5a, two_commits);
            assert_eq!(a, b, "lead {lead}: bytes of the record depend on the buffer's old contents");
            // The padding is zeros: after the primary's entries up to its
            // copy, and after the copy's entries to the block boundary.
            let bytes = &a[lead..];
            let h = RecordHeader::decode(bytes).unwrap();
            let entries_end = HEADER_BYTES + h.payload_len as usize;
            let copy_at = h.record_len() as usize;
            assert!(bytes[entries_end..copy_at].iter().all(|&x| x == 0), "lead {lead}: primary padding");
            let c = RecordHeader::decode(&bytes[copy_at..]).unwrap();
            let copy_end = copy_at + HEADER_BYTES + c.payload_len as usize;
            assert!(bytes[copy_end..].iter().all(|&x| x == 0), "lead {lead}: copy padding and block tail");
            // A filler of the same layout is all zeros past its headers.
            let filler = two_commits().filler();
            poison_pool(0xa5);
            let (rec, _, _) = filler.build(&key, 1, at, Pos::default(), &prefix);
            let f = &rec.as_slice()[lead..];
            let h = RecordHeader::decode(f).unwrap();
            assert!(f[HEADER_BYTES..h.record_len() as usize].iter().all(|&x| x == 0));
            let copy_at = h.record_len() as usize;
            assert!(f[copy_at + HEADER_BYTES + 16..].iter().all(|&x| x == 0));
        }
    }
}
