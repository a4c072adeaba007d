//! The in-memory index: per table, an ordered set of key → (seq, summary,
//! location of the commit record). Meta and bodies stay on disk.
//!
//! Memory: one heap block per entry holding `key_len | key | summary`, plus a
//! 40-byte element in a B-tree node. Keys compare as raw bytes, which is S3's
//! key order.

use std::borrow::Borrow;
use std::cmp::Ordering;
use std::collections::BTreeSet;
use std::ops::Bound;

use crate::format::{BLOCK, MAX_KEY_BYTES};

/// Where a commit record lives, in blocks, so it packs into 12 bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Loc {
    pub segment: u32,
    pub block: u32,
    pub blocks: u32,
}

impl Loc {
    pub(crate) fn new(segment: u32, offset: u64, len: u64) -> Loc {
        debug_assert!(offset % BLOCK as u64 == 0 && len % BLOCK as u64 == 0);
        // Bounded by MAX_SEGMENT_BYTES and MAX_COMMIT_PAYLOAD_BYTES.
        let to_blocks = |n: u64| u32::try_from(n / BLOCK as u64).unwrap_or(u32::MAX);
        Loc {
            segment,
            block: to_blocks(offset),
            blocks: to_blocks(len),
        }
    }

    pub(crate) fn offset(&self) -> u64 {
        self.block as u64 * BLOCK as u64
    }

    pub(crate) fn len(&self) -> u64 {
        self.blocks as u64 * BLOCK as u64
    }
}

/// What `Shard::get` returns for a live key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// Sequence number of the commit that wrote the key.
    pub seq: u64,
    pub summary: Box<[u8]>,
    pub(crate) loc: Loc,
}

/// One element: `bytes` = key_len (u16 LE) | key | summary.
struct Slot {
    bytes: Box<[u8]>,
    seq: u64,
    loc: Loc,
}

impl Slot {
    fn new(key: &[u8], summary: &[u8], seq: u64, loc: Loc) -> Slot {
        assert!(key.len() <= MAX_KEY_BYTES);
        let mut v = Vec::with_capacity(2 + key.len() + summary.len());
        v.extend_from_slice(&(key.len() as u16).to_le_bytes());
        v.extend_from_slice(key);
        v.extend_from_slice(summary);
        Slot {
            bytes: v.into_boxed_slice(),
            seq,
            loc,
        }
    }

    fn key_len(&self) -> usize {
        u16::from_le_bytes([self.bytes[0], self.bytes[1]]) as usize
    }

    fn key(&self) -> &[u8] {
        &self.bytes[2..2 + self.key_len()]
    }

    fn entry(&self) -> Entry {
        Entry {
            seq: self.seq,
            summary: self.bytes[2 + self.key_len()..].into(),
            loc: self.loc,
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

pub(crate) struct Index {
    tables: Vec<BTreeSet<Slot>>,
}

impl Index {
    pub(crate) fn new() -> Index {
        Index {
            tables: (0..=u8::MAX).map(|_| BTreeSet::new()).collect(),
        }
    }

    pub(crate) fn put(&mut self, table: u8, key: &[u8], summary: &[u8], seq: u64, loc: Loc) {
        self.tables[table as usize].replace(Slot::new(key, summary, seq, loc));
    }

    pub(crate) fn delete(&mut self, table: u8, key: &[u8]) {
        self.tables[table as usize].remove(key);
    }

    pub(crate) fn get(&self, table: u8, key: &[u8]) -> Option<Entry> {
        self.tables[table as usize].get(key).map(Slot::entry)
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

    pub(crate) fn len(&self, table: u8) -> usize {
        self.tables[table as usize].len()
    }

    pub(crate) fn total(&self) -> usize {
        self.tables.iter().map(BTreeSet::len).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loc(n: u32) -> Loc {
        Loc {
            segment: 1,
            block: n,
            blocks: 1,
        }
    }

    #[test]
    fn put_replace_delete_range() {
        let mut ix = Index::new();
        for (i, k) in ["a/1", "a/2", "a/3", "b/1", "a"].iter().enumerate() {
            ix.put(0, k.as_bytes(), b"s", i as u64, loc(i as u32));
        }
        ix.put(0, b"a/2", b"longer summary", 9, loc(9));
        assert_eq!(
            ix.get(0, b"a/2").unwrap().summary.as_ref(),
            b"longer summary"
        );
        assert_eq!(ix.get(0, b"a/2").unwrap().seq, 9);
        assert_eq!(ix.len(0), 5);
        assert_eq!(ix.len(1), 0);
        let keys = |v: Vec<(Vec<u8>, Entry)>| {
            v.into_iter()
                .map(|(k, _)| String::from_utf8(k).unwrap())
                .collect::<Vec<_>>()
        };
        assert_eq!(keys(ix.range(0, b"a/", None, 10)), ["a/1", "a/2", "a/3"]);
        assert_eq!(keys(ix.range(0, b"a/", Some(b"a/1"), 10)), ["a/2", "a/3"]);
        assert_eq!(
            keys(ix.range(0, b"a/", Some(b"a"), 10)),
            ["a/1", "a/2", "a/3"]
        );
        assert_eq!(
            keys(ix.range(0, b"a/", Some(b"a/3"), 10)),
            Vec::<String>::new()
        );
        assert_eq!(keys(ix.range(0, b"", None, 2)), ["a", "a/1"]);
        ix.delete(0, b"a/1");
        ix.delete(0, b"missing");
        assert_eq!(keys(ix.range(0, b"", None, 10)), ["a", "a/2", "a/3", "b/1"]);
        assert_eq!(ix.total(), 4);
    }

    #[test]
    fn loc_roundtrip() {
        let l = Loc::new(3, 8192, 12288);
        assert_eq!((l.offset(), l.len()), (8192, 12288));
        assert_eq!(std::mem::size_of::<Slot>(), 40);
    }
}
