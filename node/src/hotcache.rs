//! The hot-object cache: one per reactor, holding what GET and HEAD read
//! of the current versions of small objects on the shards that reactor
//! owns, so a hot object is served without a disk read (O_DIRECT bypasses
//! the page cache).
//!
//! Invariant: an entry is served only for the commit it was read from.
//! It is keyed by (shard, table, key) and carries its commit's seq; a
//! lookup first asks the shard's in-memory index for the key's current
//! seq and serves the entry only when they are equal. Seqs are unique
//! per shard and a key's seq changes with every commit of it (put,
//! delete, version change), so a stale entry can never be served, even
//! if a read that started before a write finishes after it. Compaction
//! moves records but keeps their seq and their bytes, so an entry stays
//! right across moves. Every commit on the owning core also drops the
//! entries of its keys at once (`LocalShard::commit_marked`), which
//! frees their memory early; correctness does not depend on it.
//!
//! What is cached is what the disk holds: summary, meta and body bytes
//! (ciphertext for encrypted objects; decryption and every check, ACLs,
//! conditionals, ranges, happen per request after the lookup, as for a
//! disk read).
//!
//! Policy: S3-FIFO (Yang et al., SOSP 2023). New entries go to a small
//! FIFO (10% of the bytes); one that is read again before it leaves moves
//! to the main FIFO, the others leave and are remembered in a ghost FIFO
//! of key hashes. A miss on a key in the ghost goes straight to main.
//! Main evicts in FIFO order, giving an entry read since its last pass
//! another round (CLOCK-like, at most `MAX_FREQ`). A one-pass scan of
//! cold keys only ever churns the small FIFO: it cannot flush main.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet, VecDeque};

/// Node-wide default byte budget of the hot-object caches (split evenly
/// over the reactors); `--cache-size`.
pub const DEFAULT_CACHE_BYTES: u64 = 256 * 1024 * 1024;
/// Default largest object the cache takes; `--cache-max-object`.
pub const DEFAULT_CACHE_MAX_OBJECT_BYTES: u64 = 1024 * 1024;
/// Share of a cache's bytes given to the small (probation) FIFO, in percent.
const SMALL_PERCENT: u64 = 10;
/// Most extra rounds an entry read often gets in main.
const MAX_FREQ: u8 = 3;
/// Bytes counted per entry beyond its key and data (maps, queues).
const ENTRY_OVERHEAD_BYTES: u64 = 128;
/// The ghost FIFO remembers at least this many evicted keys...
const MIN_GHOST_ENTRIES: usize = 1024;
/// ...and at most this many (8 bytes each, twice).
const MAX_GHOST_ENTRIES: usize = 1 << 20;

/// What identifies a cached object: its shard, table and key.
pub type CacheKey = (u32, u8, Vec<u8>);

/// What a cache entry holds: a commit's view of a key, with the whole body.
#[derive(Clone)]
pub struct CachedObject {
    pub seq: u64,
    pub summary: Vec<u8>,
    pub meta: Vec<u8>,
    /// Shared with the answers that send it (a hit is not copied).
    pub data: bytes::Bytes,
}

impl CachedObject {
    fn bytes(&self, key: &CacheKey) -> u64 {
        (key.2.len() + self.summary.len() + self.meta.len() + self.data.len()) as u64 + ENTRY_OVERHEAD_BYTES
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Queue {
    Small,
    Main,
}

struct Entry {
    id: u64,
    obj: CachedObject,
    bytes: u64,
    freq: u8,
    queue: Queue,
}

/// Counters of one cache (published to `/metrics` by the reactor).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheStats {
    pub hits: u64,
    pub misses: u64,
    pub inserts: u64,
    pub evictions: u64,
    pub invalidations: u64,
    /// Bytes held now (entries' keys and data plus their overhead).
    pub bytes: u64,
    pub entries: u64,
}

/// The S3-FIFO structure, without interior mutability (see `HotCache`).
pub struct S3Fifo {
    capacity_bytes: u64,
    max_object_bytes: u64,
    small_capacity_bytes: u64,
    /// (foldhash, randomly seeded: keys are clients' object keys.)
    entries: HashMap<CacheKey, Entry, foldhash::fast::RandomState>,
    /// FIFOs of (id, key): new at the back, evicted from the front. An id
    /// that no longer matches its key's entry is a leftover of an entry
    /// removed meanwhile, skipped when it reaches the front.
    small: VecDeque<(u64, CacheKey)>,
    main: VecDeque<(u64, CacheKey)>,
    small_bytes: u64,
    main_bytes: u64,
    ghost: VecDeque<u64>,
    ghost_set: HashSet<u64>,
    next_id: u64,
    stats: CacheStats,
}

fn key_hash(key: &CacheKey) -> u64 {
    use std::hash::Hasher;
    let mut h = twox_hash::XxHash3_64::new();
    h.write(&key.0.to_le_bytes());
    h.write(&[key.1]);
    h.write(&key.2);
    h.finish()
}

impl S3Fifo {
    /// A cache of at most `capacity_bytes`, taking objects of at most
    /// `max_object_bytes`. A capacity of 0 caches nothing.
    pub fn new(capacity_bytes: u64, max_object_bytes: u64) -> Self {
        S3Fifo {
            capacity_bytes,
            max_object_bytes,
            small_capacity_bytes: capacity_bytes * SMALL_PERCENT / 100,
            entries: HashMap::default(),
            small: VecDeque::new(),
            main: VecDeque::new(),
            small_bytes: 0,
            main_bytes: 0,
            ghost: VecDeque::new(),
            ghost_set: HashSet::new(),
            next_id: 0,
            stats: CacheStats::default(),
        }
    }

    pub fn enabled(&self) -> bool {
        self.capacity_bytes > 0
    }

    /// Whether an object of `size` stored body bytes may be cached at
    /// all. The limit is on plaintext: a sealed body is stored with a tag
    /// per package (`sse::cipher::sealed_len`), so an encrypted object
    /// of `max_object_bytes` is admitted as a plain one is (without the
    /// allowance, 1 MiB encrypted objects were never cached and their GETs
    /// ran at disk speed).
    pub fn admits_size(&self, size: u64) -> bool {
        self.enabled() && size <= crate::sse::cipher::sealed_len(self.max_object_bytes)
    }

    /// The entry of `key` if it was read from commit `seq` (the key's
    /// current one); an entry of another commit is dropped.
    pub fn get(&mut self, key: &CacheKey, seq: u64) -> Option<&CachedObject> {
        match self.entries.get(key).map(|e| e.obj.seq) {
            Some(s) if s == seq => {
                self.stats.hits += 1;
                let e = self.entries.get_mut(key)?;
                e.freq = (e.freq + 1).min(MAX_FREQ);
                Some(&e.obj)
            }
            Some(_) => {
                self.remove(key);
                self.stats.misses += 1;
                None
            }
            None => {
                self.stats.misses += 1;
                None
            }
        }
    }

    /// Drops the entry of `key`, if any (a commit of it).
    pub fn invalidate(&mut self, key: &CacheKey) {
        if self.remove(key) {
            self.stats.invalidations += 1;
        }
    }

    fn remove(&mut self, key: &CacheKey) -> bool {
        let Some(e) = self.entries.remove(key) else { return false };
        match e.queue {
            Queue::Small => self.small_bytes -= e.bytes,
            Queue::Main => self.main_bytes -= e.bytes,
        }
        true
    }

    /// Caches `obj` for `key` (replacing what was there). Too big objects,
    /// or anything when disabled, are not taken.
    pub fn insert(&mut self, key: CacheKey, obj: CachedObject) {
        let bytes = obj.bytes(&key);
        if !self.admits_size(obj.data.len() as u64) || bytes > self.capacity_bytes {
            return;
        }
        self.remove(&key);
        let h = key_hash(&key);
        let queue = if self.ghost_set.remove(&h) { Queue::Main } else { Queue::Small };
        let id = self.next_id;
        self.next_id += 1;
        match queue {
            Queue::Small => {
                self.small.push_back((id, key.clone()));
                self.small_bytes += bytes;
            }
            Queue::Main => {
                self.main.push_back((id, key.clone()));
                self.main_bytes += bytes;
            }
        }
        self.entries.insert(key, Entry { id, obj, bytes, freq: 0, queue });
        self.stats.inserts += 1;
        self.evict();
    }

    /// Evicts until the bytes fit: from small while it is over its share
    /// (or main is empty), else from main.
    fn evict(&mut self) {
        while self.small_bytes + self.main_bytes > self.capacity_bytes {
            if self.small_bytes > self.small_capacity_bytes || self.main.is_empty() {
                if !self.evict_small() {
                    break;
                }
            } else if !self.evict_main() {
                break;
            }
        }
        self.trim_queues();
    }

    /// The front of small: read again since insertion → main; else out,
    /// remembered in the ghost. False when small is empty.
    fn evict_small(&mut self) -> bool {
        while let Some((id, key)) = self.small.pop_front() {
            let Some(e) = self.entries.get_mut(&key).filter(|e| e.id == id) else { continue };
            if e.freq > 0 {
                e.freq = 0;
                e.queue = Queue::Main;
                let bytes = e.bytes;
                self.small_bytes -= bytes;
                self.main_bytes += bytes;
                self.main.push_back((id, key));
                return true;
            }
            let bytes = e.bytes;
            self.entries.remove(&key);
            self.small_bytes -= bytes;
            self.stats.evictions += 1;
            self.remember(key_hash(&key));
            return true;
        }
        false
    }

    /// The front of main: read since its last pass → back of main with
    /// one round less; else out. False when main is empty.
    fn evict_main(&mut self) -> bool {
        while let Some((id, key)) = self.main.pop_front() {
            let Some(e) = self.entries.get_mut(&key).filter(|e| e.id == id) else { continue };
            if e.freq > 0 {
                e.freq -= 1;
                self.main.push_back((id, key));
                continue;
            }
            let bytes = e.bytes;
            self.entries.remove(&key);
            self.main_bytes -= bytes;
            self.stats.evictions += 1;
            return true;
        }
        false
    }

    fn remember(&mut self, h: u64) {
        let cap = self.entries.len().clamp(MIN_GHOST_ENTRIES, MAX_GHOST_ENTRIES);
        if self.ghost_set.insert(h) {
            self.ghost.push_back(h);
        }
        while self.ghost.len() > cap {
            if let Some(old) = self.ghost.pop_front() {
                self.ghost_set.remove(&old);
            }
        }
    }

    /// Leftovers of removed entries stay in the FIFOs until they reach the
    /// front; bound them (invalidations without inserts could pile them up).
    fn trim_queues(&mut self) {
        let live = self.entries.len();
        if self.small.len() + self.main.len() > 2 * live + 1024 {
            let entries = &self.entries;
            let alive = |(id, key): &(u64, CacheKey)| entries.get(key).is_some_and(|e| e.id == *id);
            self.small.retain(alive);
            self.main.retain(alive);
        }
    }

    pub fn stats(&self) -> CacheStats {
        CacheStats { bytes: self.small_bytes + self.main_bytes, entries: self.entries.len() as u64, ..self.stats }
    }

    pub fn contains(&self, key: &CacheKey) -> bool {
        self.entries.contains_key(key)
    }
}

/// One reactor's cache, shared by its `LocalShard`s (single-threaded).
pub struct HotCache {
    inner: RefCell<S3Fifo>,
}

impl HotCache {
    pub fn new(capacity_bytes: u64, max_object_bytes: u64) -> Self {
        HotCache { inner: RefCell::new(S3Fifo::new(capacity_bytes, max_object_bytes)) }
    }

    pub fn enabled(&self) -> bool {
        self.inner.borrow().enabled()
    }

    pub fn admits_size(&self, size: u64) -> bool {
        self.inner.borrow().admits_size(size)
    }

    /// The entry of `key` if it was read from commit `seq` (its data
    /// shared, not copied).
    pub fn get(&self, key: &CacheKey, seq: u64) -> Option<CachedObject> {
        self.inner.borrow_mut().get(key, seq).cloned()
    }

    pub fn insert(&self, key: CacheKey, obj: CachedObject) {
        self.inner.borrow_mut().insert(key, obj);
    }

    pub fn invalidate(&self, key: &CacheKey) {
        self.inner.borrow_mut().invalidate(key);
    }

    pub fn stats(&self) -> CacheStats {
        self.inner.borrow().stats()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(seq: u64, size: usize) -> CachedObject {
        CachedObject { seq, summary: vec![1; 8], meta: vec![2; 8], data: vec![seq as u8; size].into() }
    }

    fn key(i: u64) -> CacheKey {
        (0, 1, format!("key-{i}").into_bytes())
    }

    #[test]
    fn serves_only_the_commit_it_was_read_from() {
        let mut c = S3Fifo::new(1 << 20, 1 << 16);
        c.insert(key(1), obj(7, 100));
        assert_eq!(c.get(&key(1), 7).map(|o| o.data.to_vec()), Some(vec![7u8; 100]));
        // The key's current commit is another one: never served, and dropped.
        assert!(c.get(&key(1), 8).is_none());
        assert!(!c.contains(&key(1)));
        c.insert(key(1), obj(8, 100));
        c.invalidate(&key(1));
        assert!(c.get(&key(1), 8).is_none());
        let s = c.stats();
        assert_eq!((s.hits, s.misses, s.invalidations, s.entries, s.bytes), (1, 2, 1, 0, 0));
    }

    #[test]
    fn size_limits_and_zero_capacity() {
        // The limit is on plaintext: a stored body may carry the tags of
        // an encrypted object of the largest size (1000 B: one package).
        let most = crate::sse::cipher::sealed_len(1000) as usize;
        assert_eq!(most, 1016);
        let mut c = S3Fifo::new(1 << 20, 1000);
        c.insert(key(1), obj(1, most + 1));
        assert!(!c.contains(&key(1)), "bigger than the largest object taken");
        c.insert(key(2), obj(1, most));
        assert!(c.contains(&key(2)));
        let mut off = S3Fifo::new(0, 1000);
        off.insert(key(1), obj(1, 10));
        assert!(!off.contains(&key(1)) && !off.enabled());
    }

    #[test]
    fn bytes_stay_within_the_budget() {
        let cap = 64 * 1024;
        let mut c = S3Fifo::new(cap, 8 * 1024);
        for i in 0..10_000u64 {
            c.insert(key(i % 300), obj(i, (i as usize * 37) % 4000));
            if i % 3 == 0 {
                c.get(&key(i % 17), i);
            }
            if i % 11 == 0 {
                c.invalidate(&key(i % 29));
            }
            let s = c.stats();
            assert!(s.bytes <= cap, "{} bytes over a budget of {cap}", s.bytes);
            assert_eq!(s.bytes, c.entries.values().map(|e| e.bytes).sum::<u64>());
        }
        assert!(c.small.len() + c.main.len() <= 2 * c.entries.len() + 1024 + 1);
    }

    /// A hot set read repeatedly survives a one-pass scan of many cold
    /// keys that together are far bigger than the cache.
    #[test]
    fn a_scan_does_not_evict_the_hot_set() {
        let size = 1000;
        let cap = 200 * (size as u64 + 200);
        let mut c = S3Fifo::new(cap, 1 << 20);
        let hot: Vec<u64> = (0..100).collect();
        // Warm up: the hot set is read a few times, moving it to main.
        for _ in 0..4 {
            for &h in &hot {
                if c.get(&key(h), 1).is_none() {
                    c.insert(key(h), obj(1, size));
                }
            }
        }
        // A scan of 50x the cache's capacity in cold keys, each read once,
        // with the hot set still being read meanwhile.
        for i in 0..10_000u64 {
            let k = key(1_000_000 + i);
            if c.get(&k, 1).is_none() {
                c.insert(k, obj(1, size));
            }
            if i % 100 == 0 {
                for &h in &hot {
                    if c.get(&key(h), 1).is_none() {
                        c.insert(key(h), obj(1, size));
                    }
                }
            }
        }
        let kept = hot.iter().filter(|&&h| c.contains(&key(h))).count();
        assert_eq!(kept, hot.len(), "the scan evicted {} hot keys", hot.len() - kept);
        // And with no reads at all during the scan, the hot set still stays.
        for i in 0..10_000u64 {
            let k = key(2_000_000 + i);
            if c.get(&k, 1).is_none() {
                c.insert(k, obj(1, size));
            }
        }
        let kept = hot.iter().filter(|&&h| c.contains(&key(h))).count();
        assert!(kept >= hot.len() * 9 / 10, "a pure scan evicted {} of {} hot keys", hot.len() - kept, hot.len());
    }

    /// A plain FIFO or LRU of the same size would keep only the scan's tail.
    #[test]
    fn ghost_hits_go_to_main() {
        let mut c = S3Fifo::new(20 * 1200, 1 << 20);
        c.insert(key(1), obj(1, 1000));
        // Push key 1 out of small unread: it is remembered in the ghost.
        for i in 2..40 {
            c.insert(key(i), obj(1, 1000));
        }
        assert!(!c.contains(&key(1)));
        c.insert(key(1), obj(1, 1000));
        assert_eq!(c.entries.get(&key(1)).map(|e| e.queue), Some(Queue::Main));
    }
}
