//! The in-memory index: per table, an ordered set of key → (seq, summary,
//! location of the commit entry, the operation's place in it, and the
//! key's footprint on disk). Meta and bodies stay on disk.
//!
//! Memory: one heap block per entry holding `key_len | fp_len | key |
//! footprint | summary`, plus a 40-byte element in a B-tree node. Keys
//! compare as raw bytes, which is S3's key order.
//!
//! Apply rules, the same at run time and at recovery (so replaying a log
//! over any older state, a fuzzy checkpoint included, ends in the state
//! the log describes): a put applies unless the entry holds a newer seq; a
//! delete removes the entry unless it holds a newer seq (equal seqs are
//! operations of one commit, applied in order).

use std::borrow::Borrow;
use std::cmp::Ordering;
use std::collections::BTreeSet;
use std::ops::Bound;

use crate::format::MAX_KEY_BYTES;

/// Where a commit entry lives: segment, byte offset, length (header included).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub(crate) struct Loc {
    pub segment: u32,
    pub offset: u32,
    pub len: u32,
}

impl Loc {
    pub(crate) fn offset(&self) -> u64 {
        self.offset as u64
    }
}

/// What a key occupies on disk besides its share of a commit entry: the
/// data records of its body, by segment; and the oldest segment that may
/// hold a record of this incarnation of the key (for tombstones).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Footprint {
    pub min_seg: u32,
    /// Bytes of the commit entry attributed to this operation.
    pub share: u32,
    /// (segment, bytes of data records) for the body's extents.
    pub data: Vec<(u32, u64)>,
}

impl Footprint {
    fn encode(&self, out: &mut Vec<u8>) {
        varint(out, self.min_seg as u64);
        varint(out, self.share as u64);
        varint(out, self.data.len() as u64);
        for (s, b) in &self.data {
            varint(out, *s as u64);
            varint(out, *b);
        }
    }

    fn decode(mut b: &[u8]) -> Footprint {
        let mut next = || read_varint(&mut b).unwrap_or(0);
        let min_seg = next() as u32;
        let share = next() as u32;
        let n = next() as usize;
        let mut data = Vec::with_capacity(n.min(64));
        for _ in 0..n.min(1 << 16) {
            let s = next() as u32;
            let bytes = next();
            data.push((s, bytes));
        }
        Footprint {
            min_seg,
            share,
            data,
        }
    }

    /// Every segment it touches, with the bytes it holds there.
    pub(crate) fn per_segment(&self, loc: &Loc) -> impl Iterator<Item = (u32, u64)> + '_ {
        std::iter::once((loc.segment, self.share as u64)).chain(self.data.iter().copied())
    }
}

fn varint(out: &mut Vec<u8>, mut v: u64) {
    loop {
        let b = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(b);
            return;
        }
        out.push(b | 0x80);
    }
}

fn read_varint(b: &mut &[u8]) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let (&byte, rest) = b.split_first()?;
        *b = rest;
        v |= ((byte & 0x7f) as u64) << shift;
        if byte & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

/// What `Shard::get` returns for a live key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// Sequence number of the commit that wrote the key (kept when
    /// compaction moves it: it is the entry's version).
    pub seq: u64,
    pub summary: Box<[u8]>,
    pub(crate) loc: Loc,
    pub(crate) ordinal: u16,
}

/// One element: `bytes` = key_len (u16 LE) | fp_len (u8) | key | footprint | summary.
struct Slot {
    bytes: Box<[u8]>,
    seq: u64,
    loc: Loc,
    ordinal: u16,
}

impl Slot {
    fn new(key: &[u8], summary: &[u8], seq: u64, loc: Loc, ordinal: u16, fp: &Footprint) -> Slot {
        assert!(key.len() <= MAX_KEY_BYTES);
        // One allocation: the footprint is encoded in place (a few bytes,
        // more only for a body spread over many segments).
        let mut v = Vec::with_capacity(3 + key.len() + 8 + 10 * fp.data.len() + summary.len());
        v.extend_from_slice(&(key.len() as u16).to_le_bytes());
        v.push(0);
        v.extend_from_slice(key);
        let fp_start = v.len();
        fp.encode(&mut v);
        let fp_len = (v.len() - fp_start).min(255);
        v.truncate(fp_start + fp_len);
        v[2] = fp_len as u8;
        v.extend_from_slice(summary);
        Slot {
            bytes: v.into_boxed_slice(),
            seq,
            loc,
            ordinal,
        }
    }

    fn key_len(&self) -> usize {
        u16::from_le_bytes([self.bytes[0], self.bytes[1]]) as usize
    }

    fn key(&self) -> &[u8] {
        &self.bytes[3..3 + self.key_len()]
    }

    fn fp_range(&self) -> std::ops::Range<usize> {
        let start = 3 + self.key_len();
        start..start + self.bytes[2] as usize
    }

    fn footprint(&self) -> Footprint {
        Footprint::decode(&self.bytes[self.fp_range()])
    }

    fn summary(&self) -> &[u8] {
        &self.bytes[self.fp_range().end..]
    }

    fn entry(&self) -> Entry {
        Entry {
            seq: self.seq,
            summary: self.summary().into(),
            loc: self.loc,
            ordinal: self.ordinal,
        }
    }
}

impl Borrow<[u8]> for Slot {
    fn borrow(&self) -> &[u8] {
        self.key()
    }
}

impl PartialEq for Slot {
    fn eq(&self, other: &Slot) -> bool {
        self.key() == other.key()
    }
}

impl Eq for Slot {}

impl PartialOrd for Slot {
    fn partial_cmp(&self, other: &Slot) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Slot {
    fn cmp(&self, other: &Slot) -> Ordering {
        self.key().cmp(other.key())
    }
}

/// A live entry as the checkpoint and compaction see it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct FullEntry {
    pub table: u8,
    pub key: Vec<u8>,
    pub seq: u64,
    pub summary: Vec<u8>,
    pub loc: Loc,
    pub ordinal: u16,
    pub fp: Footprint,
}

/// What an applied operation changed, for the space accounting.
#[derive(Debug, Default)]
pub(crate) struct Change {
    pub removed: Option<(Loc, Footprint)>,
    pub added: Option<(Loc, Footprint)>,
}

/// Entries collected in (table, key) order for a bulk build: a table's
/// B-tree is built once from all its entries, since inserting into a
/// non-empty tree searches from the root for every key (a checkpoint of
/// millions of entries loaded in slices spent most of its time there).
#[derive(Default)]
pub(crate) struct Bulk {
    /// Each table's slots, in table order; the last one is being filled.
    tables: Vec<(u8, Vec<Slot>)>,
}

impl Bulk {
    /// Adds the next entry; `Err` if it is not after the previous one.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn push(
        &mut self,
        table: u8,
        key: &[u8],
        summary: &[u8],
        seq: u64,
        loc: Loc,
        ordinal: u16,
        fp: &Footprint,
    ) -> Result<(), &'static str> {
        match self.tables.last() {
            Some((t, _)) if *t > table => return Err("entries out of order"),
            Some((t, slots)) if *t == table => {
                if slots.last().is_some_and(|last| last.key() >= key) {
                    return Err("entries out of order");
                }
            }
            _ => self.tables.push((table, Vec::new())),
        }
        let (_, slots) = self.tables.last_mut().expect("a table was just pushed or matched");
        slots.push(Slot::new(key, summary, seq, loc, ordinal, fp));
        Ok(())
    }
}

pub(crate) struct Index {
    tables: Vec<BTreeSet<Slot>>,
}

impl Index {
    pub(crate) fn new() -> Index {
        Index {
            tables: (0..=u8::MAX).map(|_| BTreeSet::new()).collect(),
        }
    }

    /// Installs what `bulk` collected: each table built in one pass from
    /// its sorted slots (no per-key search), or merged into a table that
    /// already has entries.
    pub(crate) fn finish_bulk(&mut self, bulk: Bulk) {
        for (table, slots) in bulk.tables {
            let t = &mut self.tables[table as usize];
            if t.is_empty() {
                *t = slots.into_iter().collect();
            } else {
                t.extend(slots);
            }
        }
    }

    /// Applies a put: unless the entry holds a newer seq. `fp.min_seg` is
    /// lowered to the previous entry's (same incarnation).
    pub(crate) fn put(
        &mut self,
        table: u8,
        key: &[u8],
        summary: &[u8],
        seq: u64,
        loc: Loc,
        ordinal: u16,
        mut fp: Footprint,
    ) -> Change {
        let t = &mut self.tables[table as usize];
        let mut change = Change::default();
        if let Some(old) = t.get(key) {
            if old.seq > seq {
                return change;
            }
            let old_fp = old.footprint();
            fp.min_seg = fp.min_seg.min(old_fp.min_seg);
            change.removed = Some((old.loc, old_fp));
        }
        change.added = Some((loc, fp.clone()));
        t.replace(Slot::new(key, summary, seq, loc, ordinal, &fp));
        change
    }

    /// Applies a delete of seq `seq`: removes an entry unless it holds a newer seq.
    pub(crate) fn delete(&mut self, table: u8, key: &[u8], seq: u64) -> Change {
        let t = &mut self.tables[table as usize];
        let mut change = Change::default();
        if t.get(key).is_some_and(|s| s.seq <= seq) {
            if let Some(old) = t.take(key) {
                change.removed = Some((old.loc, old.footprint()));
            }
        }
        change
    }

    pub(crate) fn get(&self, table: u8, key: &[u8]) -> Option<Entry> {
        self.tables[table as usize].get(key).map(Slot::entry)
    }

    #[cfg(test)]
    pub(crate) fn get_full(&self, table: u8, key: &[u8]) -> Option<FullEntry> {
        self.tables[table as usize]
            .get(key)
            .map(|s| full(table, s))
    }

    /// The oldest segment that may hold a record of the key's current incarnation.
    pub(crate) fn min_seg(&self, table: u8, key: &[u8]) -> Option<u32> {
        self.tables[table as usize]
            .get(key)
            .map(|s| s.footprint().min_seg)
    }

    /// Up to `limit` entries with keys starting with `prefix`, in key order,
    /// after `after` (exclusive) if given, else from `prefix`.
    pub(crate) fn range(
        &self,
        table: u8,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Vec<(Vec<u8>, Entry)> {
        let start = match after {
            Some(a) if a >= prefix => Bound::Excluded(a),
            _ => Bound::Included(prefix),
        };
        self.tables[table as usize]
            .range::<[u8], _>((start, Bound::Unbounded))
            .take_while(|s| s.key().starts_with(prefix))
            .take(limit)
            .map(|s| (s.key().to_vec(), s.entry()))
            .collect()
    }

    /// The last entry whose key starts with `prefix` and sorts before `key`
    /// (a reverse seek: a key's newer neighbour).
    pub(crate) fn before(&self, table: u8, prefix: &[u8], key: &[u8]) -> Option<(Vec<u8>, Entry)> {
        if key <= prefix {
            return None;
        }
        self.tables[table as usize]
            .range::<[u8], _>((Bound::Included(prefix), Bound::Excluded(key)))
            .next_back()
            .filter(|s| s.key().starts_with(prefix))
            .map(|s| (s.key().to_vec(), s.entry()))
    }

    /// Up to `limit` full entries of `table` after `after` (exclusive), in
    /// key order, for which `want` holds; also the last key looked at.
    pub(crate) fn scan(
        &self,
        table: u8,
        after: Option<&[u8]>,
        limit: usize,
        want: impl Fn(&Loc, &Footprint) -> bool,
    ) -> (Vec<FullEntry>, Option<Vec<u8>>) {
        let start = match after {
            Some(a) => Bound::Excluded(a),
            None => Bound::Unbounded,
        };
        let mut out = Vec::new();
        let mut last = None;
        for s in self.tables[table as usize]
            .range::<[u8], _>((start, Bound::Unbounded))
            .take(limit)
        {
            last = Some(s);
            let fp = s.footprint();
            if want(&s.loc, &fp) {
                out.push(FullEntry {
                    fp,
                    ..full_without_fp(table, s)
                });
            }
        }
        (out, last.map(|s| s.key().to_vec()))
    }

    pub(crate) fn len(&self, table: u8) -> usize {
        self.tables[table as usize].len()
    }

    pub(crate) fn total(&self) -> usize {
        self.tables.iter().map(BTreeSet::len).sum()
    }

    /// Tables that hold anything.
    pub(crate) fn tables_in_use(&self) -> Vec<u8> {
        (0..=u8::MAX)
            .filter(|t| !self.tables[*t as usize].is_empty())
            .collect()
    }

    /// Heap bytes of the entries (element blocks), without B-tree nodes.
    pub(crate) fn entry_heap_bytes(&self) -> u64 {
        self.tables
            .iter()
            .flat_map(|t| t.iter())
            .map(|s| s.bytes.len() as u64)
            .sum()
    }

    /// Every entry, for checking two indexes against each other.
    pub(crate) fn dump(&self) -> Vec<FullEntry> {
        let mut out = Vec::new();
        for (t, set) in self.tables.iter().enumerate() {
            out.extend(set.iter().map(|s| full(t as u8, s)));
        }
        out
    }
}

fn full_without_fp(table: u8, s: &Slot) -> FullEntry {
    FullEntry {
        table,
        key: s.key().to_vec(),
        seq: s.seq,
        summary: s.summary().to_vec(),
        loc: s.loc,
        ordinal: s.ordinal,
        fp: Footprint::default(),
    }
}

fn full(table: u8, s: &Slot) -> FullEntry {
    FullEntry {
        fp: s.footprint(),
        ..full_without_fp(table, s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loc(n: u32) -> Loc {
        Loc {
            segment: 1,
            offset: n * 64,
            len: 40,
        }
    }

    fn fp(seg: u32) -> Footprint {
        Footprint {
            min_seg: seg,
            share: 40,
            data: vec![(seg, 8192)],
        }
    }

    #[test]
    fn put_replace_delete_range() {
        let mut ix = Index::new();
        for (i, k) in ["a/1", "a/2", "a/3", "b/1", "a"].iter().enumerate() {
            ix.put(0, k.as_bytes(), b"s", i as u64 + 1, loc(i as u32), 0, fp(1));
        }
        ix.put(0, b"a/2", b"longer summary", 9, loc(9), 3, fp(5));
        let e = ix.get(0, b"a/2").unwrap();
        assert_eq!(e.summary.as_ref(), b"longer summary");
        assert_eq!((e.seq, e.ordinal), (9, 3));
        // The incarnation began in segment 1.
        assert_eq!(ix.min_seg(0, b"a/2"), Some(1));
        assert_eq!(ix.len(0), 5);
        assert_eq!(ix.len(1), 0);
        let keys = |v: Vec<(Vec<u8>, Entry)>| {
            v.into_iter()
                .map(|(k, _)| String::from_utf8(k).unwrap())
                .collect::<Vec<_>>()
        };
        assert_eq!(keys(ix.range(0, b"a/", None, 10)), ["a/1", "a/2", "a/3"]);
        assert_eq!(keys(ix.range(0, b"a/", Some(b"a/1"), 10)), ["a/2", "a/3"]);
        assert_eq!(keys(ix.range(0, b"", None, 2)), ["a", "a/1"]);
        ix.delete(0, b"a/1", 100);
        ix.delete(0, b"missing", 100);
        assert_eq!(keys(ix.range(0, b"", None, 10)), ["a", "a/2", "a/3", "b/1"]);
        assert_eq!(ix.total(), 4);
    }

    #[test]
    fn seq_rules_make_replay_order_safe() {
        let mut ix = Index::new();
        ix.put(0, b"k", b"new", 10, loc(1), 0, fp(2));
        // An older put (a compaction copy replayed late) does not win.
        let c = ix.put(0, b"k", b"old", 5, loc(2), 0, fp(3));
        assert!(c.added.is_none() && c.removed.is_none());
        assert_eq!(ix.get(0, b"k").unwrap().summary.as_ref(), b"new");
        // An older delete does not remove a newer put; a newer one does.
        ix.delete(0, b"k", 7);
        assert!(ix.get(0, b"k").is_some());
        let c = ix.delete(0, b"k", 11);
        assert_eq!(c.removed.unwrap().1, fp(2));
        assert!(ix.get(0, b"k").is_none());
        // The same seq (a compaction copy of the live entry) replaces.
        ix.put(0, b"j", b"v", 20, loc(3), 0, fp(4));
        ix.put(0, b"j", b"v", 20, loc(4), 1, fp(9));
        let e = ix.get_full(0, b"j").unwrap();
        assert_eq!((e.loc, e.ordinal, e.fp.min_seg), (loc(4), 1, 4));
    }

    #[test]
    fn footprints_roundtrip() {
        let f = Footprint {
            min_seg: 70_000,
            share: 300,
            data: vec![(1, 1 << 40), (70_001, 4096)],
        };
        let mut b = Vec::new();
        f.encode(&mut b);
        assert_eq!(Footprint::decode(&b), f);
        assert_eq!(std::mem::size_of::<Slot>(), 40);
    }
}
