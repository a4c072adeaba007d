//! The lifecycle age index (`T_LCINDEX`): what lets a pass read only the
//! entries that may be due instead of walking every object.
//!
//! FORMAT BOUNDARY: these keys and records are on disk. Every entry's
//! summary starts with a version byte (`INDEX_V1`); the state records
//! (`W`, `B`) carry theirs too, and one of an unknown version is treated
//! as absent (the walk starts over, never skips).
//!
//! Entries, all on the shard of the thing they index:
//! - `C ++ bucket id ++ ord(mtime ms) ++ version id ++ key`: a current
//!   version that is not a delete marker, by creation time;
//! - `L ++ bucket id ++ key`: a key whose current version is a delete
//!   marker (a candidate for `ExpiredObjectDeleteMarker`);
//! - `U ++ bucket id ++ ord(initiated ms) ++ key 00 upload id`: an
//!   incomplete multipart upload, by initiation time;
//! - `R ++ bucket id ++ ord(mtime ms) ++ version id ++ key`: a current
//!   version found due but not acted on (locked, tier down, waiting for
//!   replication), visited again every pass until it goes or is done;
//! - `N ++ bucket id ++ ord(since ms) ++ version id ++ key`: a noncurrent
//!   version (in `T_VERSIONS`), by the time it became noncurrent (its
//!   successor's creation time). Exact when derived from a demotion, the
//!   common case; otherwise it may be **earlier** than the truth (a newer
//!   version removed in the middle, a suspended bucket's current null
//!   replaced in place), never later, and the walk repairs it on a visit
//!   (`nc`): it recomputes `since` from the key's versions, acts if due,
//!   else re-keys the entry at the true time;
//! - `Q ++ bucket id ++ ord(since ms) ++ version id ++ key`: the `R` of
//!   noncurrent versions: one found due but not acted on, or one whose
//!   entry was written with a time a walk may have passed (a replica
//!   inserted in the middle, and its older neighbour), visited every pass
//!   until done or not blocked;
//! - `K ++ bucket id ++ key`: a key that got a new noncurrent version, in a
//!   bucket with a `NewerNoncurrentVersions` rule: its older versions may
//!   no longer be held by the count, so the next pass checks the key's
//!   versions and drops the entry;
//! - `W ++ bucket id`: the bucket's watermarks (below);
//! - `B ++ bucket id`: the bucket's backfill state on this shard.
//!
//! Only buckets with a lifecycle configuration are indexed ([`Ruled`]): a
//! PUT to any other bucket pays one hash probe. A bucket that gains a
//! configuration is backfilled on each shard (`walk::backfill`), and its
//! walks use the index once that is done; until then, the full walk. A
//! bucket that loses its configuration keeps its entries (walks drop them
//! when stale); one that gains a configuration again has a new stamp, so
//! it is backfilled again.
//!
//! `C`, `L`, `U`, `N`, `Q` and `K` entries are derived by [`derive`] from
//! the mutations of every commit of the node (`LocalShard::commit_marked`)
//! and go **in the same commit**: a version's write puts its entry and the
//! commit that replaces or removes it deletes it (an `N` entry at the time
//! its successor gives then; one written at another time stays, stale). The index is a superset of the truth:
//! a commit derived before an earlier one applied may leave an entry of a
//! version already gone (and the backfill may too); the worker drops such
//! stale entries when it meets them. It is never missing one once the
//! bucket's backfill on the shard is done.
//!
//! Watermarks: rules are "N days after creation" (or a date), and a rule's
//! due time grows with the creation time, so each rule action walks the `C`
//! entries in time order from its watermark and stops at the first entry
//! not yet due for it. The watermark is per rule action (rule index,
//! expiration or transition j), so a rule with more days never loses an
//! entry a rule with fewer days passed over; it is kept with a fingerprint
//! of the bucket's rules, and a changed configuration starts every walk
//! from the beginning of the index (rules added later see old objects).

use std::collections::HashMap;
use std::sync::Arc;

use arc_swap::ArcSwap;
use tessera_io::{Body, Mutation, Shard};

pub use crate::meta::T_LCINDEX;
use crate::meta::{object_key, parse_version_key, versions_prefix_bytes, ObjectSummary, UploadInfo, VersionId, T_OBJECTS, T_UPLOADS, T_VERSIONS};

/// Version byte of an index entry's summary.
pub const INDEX_V1: u8 = 1;
/// Version byte of a watermarks record.
const MARKS_V1: u8 = 1;
/// Version byte of a bucket's backfill state record (`B ++ bucket id`).
/// (v1 was the shard-wide record under the key `B` alone, from when every
/// bucket was indexed; it is no longer read.)
const BACKFILL_V2: u8 = 2;
/// v3 walks `T_VERSIONS` too (noncurrent versions). A v2 record that says
/// Done is read as "objects and uploads done, versions from the start".
const BACKFILL_V3: u8 = 3;

pub const KIND_CURRENT: u8 = b'C';
pub const KIND_LONE: u8 = b'L';
pub const KIND_UPLOAD: u8 = b'U';
pub const KIND_RETRY: u8 = b'R';
pub const KIND_NONCURRENT: u8 = b'N';
pub const KIND_NC_RETRY: u8 = b'Q';
pub const KIND_PUSHED: u8 = b'K';
const KIND_MARKS: u8 = b'W';
const KIND_BACKFILL: u8 = b'B';

/// Most watermarks a record holds (a configuration has at most 1,000
/// rules, each with an expiration and a few transitions).
const MAX_MARKS: usize = 8192;

/// An i64 as 8 bytes that sort as the numbers do.
pub fn ord(t: i64) -> [u8; 8] {
    ((t as u64) ^ (1 << 63)).to_be_bytes()
}

fn unord(b: &[u8]) -> Option<i64> {
    Some((u64::from_be_bytes(b.try_into().ok()?) ^ (1 << 63)) as i64)
}

/// `kind ++ bucket id`: the prefix of a bucket's entries of one kind.
pub fn prefix(kind: u8, bucket: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(9 + 8 + 16 + 64);
    k.push(kind);
    k.extend_from_slice(&bucket.to_be_bytes());
    k
}

/// A `C` (or `R`) entry's key.
pub fn version_entry(kind: u8, bucket: u64, mtime_ms: i64, version: &VersionId, key: &[u8]) -> Vec<u8> {
    let mut k = prefix(kind, bucket);
    k.extend_from_slice(&ord(mtime_ms));
    k.extend_from_slice(&version.0);
    k.extend_from_slice(key);
    k
}

/// A `C` or `R` entry: (creation time, version id, object key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionEntry {
    pub mtime_ms: i64,
    pub version: VersionId,
    pub key: Vec<u8>,
}

/// Parses a `C` or `R` key.
pub fn parse_version_entry(k: &[u8]) -> Option<VersionEntry> {
    let rest = k.get(9..)?;
    let mtime_ms = unord(rest.get(..8)?)?;
    let version = VersionId(rest.get(8..8 + VersionId::BYTES)?.try_into().ok()?);
    Some(VersionEntry { mtime_ms, version, key: rest[8 + VersionId::BYTES..].to_vec() })
}

/// An `L` entry's key.
pub fn lone_entry(bucket: u64, key: &[u8]) -> Vec<u8> {
    let mut k = prefix(KIND_LONE, bucket);
    k.extend_from_slice(key);
    k
}

/// A `U` entry's key, from the upload's `T_UPLOADS` key.
pub fn upload_entry(upload_key: &[u8], initiated_ms: i64) -> Option<Vec<u8>> {
    let bucket = u64::from_be_bytes(upload_key.get(..8)?.try_into().ok()?);
    let mut k = prefix(KIND_UPLOAD, bucket);
    k.extend_from_slice(&ord(initiated_ms));
    k.extend_from_slice(&upload_key[8..]);
    Some(k)
}

/// Parses a `U` key: (initiation time, `key 00 upload id`).
pub fn parse_upload_entry(k: &[u8]) -> Option<(i64, &[u8])> {
    let rest = k.get(9..)?;
    Some((unord(rest.get(..8)?)?, &rest[8..]))
}

pub fn put(key: Vec<u8>) -> Mutation {
    Mutation::Put { table: T_LCINDEX, key, summary: vec![INDEX_V1], meta: Vec::new(), body: Body::Inline(Vec::new()) }
}

pub fn delete(key: Vec<u8>) -> Mutation {
    Mutation::Delete { table: T_LCINDEX, key }
}

/// The index entry of a `T_OBJECTS` entry (`key` is `bucket id ++ key`).
pub fn object_entry(okey: &[u8], summary: &[u8]) -> Option<Vec<u8>> {
    let bucket = u64::from_be_bytes(okey.get(..8)?.try_into().ok()?);
    let s = ObjectSummary::decode(summary)?;
    Some(if s.delete_marker {
        lone_entry(bucket, &okey[8..])
    } else {
        version_entry(KIND_CURRENT, bucket, s.mtime_ms, &s.version, &okey[8..])
    })
}

/// The index entry of a `T_UPLOADS` entry.
fn upload_entry_of(ukey: &[u8], summary: &[u8]) -> Option<Vec<u8>> {
    upload_entry(ukey, UploadInfo::decode(summary)?.initiated_ms)
}

/// A current version whose recorded creation time is older than this when
/// its commit is derived also gets an `R` entry: a walk (which never passes
/// entries younger than `walk::WRITE_LAG_MS`, or a short test day) may
/// already be past its place.
const LATE_MS: i64 = 500;

/// The `R` key of a `C` key.
fn retry_of(c: &[u8]) -> Option<Vec<u8>> {
    (c.first() == Some(&KIND_CURRENT)).then(|| {
        let mut r = c.to_vec();
        r[0] = KIND_RETRY;
        r
    })
}

/// The buckets with a lifecycle configuration (id → its stamp,
/// `BucketInfo::lifecycle_stamp`): only theirs are indexed. One per node,
/// kept by the bucket registry (`buckets::Buckets`), which stores a new
/// set before publishing the snapshot that changes it; `derive` reads it
/// with one atomic load and a hash probe per mutation. Until the registry
/// is loaded (`None`), every bucket is indexed: nothing committed then can
/// be missed by a backfill already marked done.
///
/// Also the buckets with a `NewerNoncurrentVersions` rule (`counted`):
/// their demotions get a `K` entry.
#[derive(Default)]
pub struct Ruled(ArcSwap<Option<RuledSet>>);

#[derive(Default)]
pub struct RuledSet {
    stamps: HashMap<u64, u64>,
    counted: std::collections::HashSet<u64>,
}

impl Ruled {
    /// The stamp of `bucket`'s configuration, if it has one.
    pub fn stamp(&self, bucket: u64) -> Option<u64> {
        let set = self.0.load();
        let set: &Option<RuledSet> = &set;
        set.as_ref().and_then(|m| m.stamps.get(&bucket).copied())
    }

    pub fn store(&self, stamps: HashMap<u64, u64>, counted: std::collections::HashSet<u64>) {
        self.0.store(Arc::new(Some(RuledSet { stamps, counted })));
    }

    /// A set holding `buckets` (tests).
    pub fn of(buckets: &[(u64, u64)]) -> Arc<Ruled> {
        Self::counting(buckets, &[])
    }

    /// A set holding `buckets`, `counted` with count rules (tests).
    pub fn counting(buckets: &[(u64, u64)], counted: &[u64]) -> Arc<Ruled> {
        let r = Ruled::default();
        r.store(buckets.iter().copied().collect(), counted.iter().copied().collect());
        Arc::new(r)
    }
}

/// The bucket id leading a `T_OBJECTS` or `T_UPLOADS` key.
fn bucket_of(key: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(key.get(..8)?.try_into().ok()?))
}

/// Appends to `muts` the index mutations they imply on `shard` as it is
/// now: for each put or delete of a `T_OBJECTS` or `T_UPLOADS` entry of a
/// bucket in `ruled`, the delete of the replaced entry's index entry and
/// the put of the new one's. A rewrite of the same current version (its
/// tags, ACL or tier changed) leaves its entry; if the version is older
/// than `LATE_MS` it gets an `R` entry, since a walk already past its time
/// would otherwise never see what changed (a tag a rule filters on).
/// Runs on the shard's owning core right before the commit is staged.
/// Other buckets' mutations cost one hash probe each: nothing is read.
pub fn derive(shard: &Shard, ruled: &Ruled, muts: &mut Vec<Mutation>) {
    let indexed = |table: u8, key: &[u8]| (table == T_OBJECTS || table == T_UPLOADS || table == T_VERSIONS) && bucket_of(key).is_some();
    if !muts.iter().any(|m| matches!(m, Mutation::Put { table, key, .. } | Mutation::Delete { table, key } if indexed(*table, key))) {
        return;
    }
    let guard = ruled.0.load();
    let set: &Option<RuledSet> = &guard;
    let ruled = |key: &[u8]| match set {
        Some(m) => !m.stamps.is_empty() && bucket_of(key).is_some_and(|b| m.stamps.contains_key(&b)),
        None => true,
    };
    let counted = |bucket: u64| set.as_ref().is_none_or(|m| m.counted.contains(&bucket));
    if !muts.iter().any(|m| match m {
        Mutation::Put { table, key, .. } | Mutation::Delete { table, key } => indexed(*table, key) && ruled(key),
    }) {
        return;
    }
    // What this batch already wrote, so two mutations of one key in a
    // batch chain (rare; a batch is usually one key).
    let mut written: Vec<((u8, Vec<u8>), Option<Vec<u8>>)> = Vec::new();
    let now_ms = tessera_proto::time::now_unix_ms();
    let mut extra = Vec::new();
    for m in muts.iter() {
        let (table, key, new) = match m {
            Mutation::Put { table, key, summary, .. } => (*table, key, Some(summary.clone())),
            Mutation::Delete { table, key } => (*table, key, None),
        };
        let entry_of: fn(&[u8], &[u8]) -> Option<Vec<u8>> = match table {
            T_OBJECTS => object_entry,
            T_UPLOADS => upload_entry_of,
            T_VERSIONS => {
                if ruled(key) {
                    let existed = match written.iter().rev().find(|(k, _)| k.0 == table && k.1 == *key) {
                        Some((_, s)) => s.is_some(),
                        None => shard.get(table, key).is_some(),
                    };
                    noncurrent_mutations(shard, muts, key, new.as_deref(), existed, now_ms, &counted, &mut extra);
                    written.push(((table, key.clone()), new));
                }
                continue;
            }
            _ => continue,
        };
        if !ruled(key) {
            continue;
        }
        let old = match written.iter().rev().find(|(k, _)| k.0 == table && k.1 == *key) {
            Some((_, s)) => s.clone(),
            None => shard.get(table, key).map(|e| e.summary.to_vec()),
        };
        let old_entry = old.as_deref().and_then(|s| entry_of(key, s));
        let new_entry = new.as_deref().and_then(|s| entry_of(key, s));
        if old_entry != new_entry {
            if let Some(o) = old_entry {
                // Its retry entry (if any) goes with it.
                let retry = retry_of(&o).filter(|r| shard.get(T_LCINDEX, r).is_some());
                extra.push(delete(o));
                extra.extend(retry.map(delete));
            }
            if let Some(n) = new_entry {
                // A current version older than a walk may have passed (a
                // promoted version, a replica): visited as a retry too.
                let late = parse_version_entry(&n).filter(|e| n[0] == KIND_CURRENT && e.mtime_ms < now_ms - LATE_MS);
                extra.push(put(n.clone()));
                extra.extend(late.and_then(|_| retry_of(&n)).map(put));
            }
        } else if let (Some(n), true) = (new_entry, table == T_OBJECTS) {
            // The same current version rewritten: visited again if a walk
            // may be past it.
            if parse_version_entry(&n).is_some_and(|e| n[0] == KIND_CURRENT && e.mtime_ms < now_ms - LATE_MS) {
                extra.extend(retry_of(&n).map(put));
            }
        }
        written.push(((table, key.clone()), new));
    }
    muts.extend(extra);
}

/// A noncurrent version's entry (`N` or `Q`), from its `T_VERSIONS` key.
pub fn noncurrent_entry(kind: u8, vkey: &[u8], since_ms: i64) -> Option<Vec<u8>> {
    let (bucket, key, version) = parse_version_key(vkey)?;
    Some(version_entry(kind, bucket, since_ms, &version, &key))
}

/// A `K` entry's key.
pub fn pushed_entry(bucket: u64, key: &[u8]) -> Vec<u8> {
    let mut k = prefix(KIND_PUSHED, bucket);
    k.extend_from_slice(key);
    k
}

/// When the noncurrent version at `vkey` became noncurrent, as `shard`
/// holds the key now: the creation time of its successor (the next newer
/// version: the entry before it in `T_VERSIONS`, or the current one).
pub fn successor_ms(shard: &Shard, vkey: &[u8]) -> Option<i64> {
    let (bucket, key, _) = parse_version_key(vkey)?;
    let prefix = versions_prefix_bytes(bucket, &key);
    let s = match shard.before(T_VERSIONS, &prefix, vkey) {
        Some((_, e)) => e.summary,
        None => shard.get(T_OBJECTS, &object_key_bytes(bucket, &key))?.summary,
    };
    Some(ObjectSummary::decode(&s)?.mtime_ms)
}

fn object_key_bytes(bucket: u64, key: &[u8]) -> Vec<u8> {
    let mut k = object_key(bucket, "");
    k.extend_from_slice(key);
    k
}

/// The index mutations of one `T_VERSIONS` mutation of a ruled bucket
/// (`vkey`, new summary `new` or a delete; `existed`: whether the version
/// was there before it). `shard` is the state before the batch.
/// - A new noncurrent version: its `N` entry. A demotion (the batch puts
///   the key's new current version) has the new current's creation time,
///   exact; otherwise (a replica inserted below a newer version) the
///   successor's, and the older neighbour, whose successor it becomes, is
///   re-keyed to its creation time. Either gets a `Q` entry too when the
///   time is older than `LATE_MS` (a walk may be past it). In a bucket
///   with a count rule, the key gets a `K` entry: older versions may now
///   be beyond the count.
/// - A removed version: its `N` and `Q` entries at the time its successor
///   gives now (the usual case; if a change in the middle made that differ
///   from the one the entry was written with, the entry stays and the
///   walk drops it when met).
/// - A rewrite of an existing version (tags, a transition, a repeated
///   replica): a `Q` entry if its time is older than `LATE_MS`, so a
///   tag-filtered rule whose watermark passed it sees the new tags.
#[allow(clippy::too_many_arguments)]
fn noncurrent_mutations(
    shard: &Shard,
    batch: &[Mutation],
    vkey: &[u8],
    new: Option<&[u8]>,
    existed: bool,
    now_ms: i64,
    counted: &dyn Fn(u64) -> bool,
    out: &mut Vec<Mutation>,
) {
    let Some((bucket, key, _)) = parse_version_key(vkey) else { return };
    let late = |t: i64| t < now_ms - LATE_MS;
    match (new, existed) {
        (Some(summary), false) => {
            let okey = object_key_bytes(bucket, &key);
            let demoted_by = batch.iter().find_map(|m| match m {
                Mutation::Put { table: T_OBJECTS, key, summary, .. } if *key == okey => ObjectSummary::decode(summary).map(|s| s.mtime_ms),
                _ => None,
            });
            let since = match demoted_by {
                Some(t) => Some(t),
                None => successor_ms(shard, vkey),
            };
            let Some(since) = since else { return };
            out.extend(noncurrent_entry(KIND_NONCURRENT, vkey, since).map(put));
            if late(since) {
                out.extend(noncurrent_entry(KIND_NC_RETRY, vkey, since).map(put));
            }
            if demoted_by.is_none() {
                // Inserted below a newer version: the next older one's
                // successor is now this one.
                let own = ObjectSummary::decode(summary).map(|s| s.mtime_ms);
                let older = shard.range(T_VERSIONS, &versions_prefix_bytes(bucket, &key), Some(vkey), 1).into_iter().next();
                if let (Some(own), Some((okey, _))) = (own, older) {
                    if let Some(old) = noncurrent_entry(KIND_NONCURRENT, &okey, since).filter(|e| shard.get(T_LCINDEX, e).is_some()) {
                        out.push(delete(old));
                    }
                    out.extend(noncurrent_entry(KIND_NONCURRENT, &okey, own).map(put));
                    if late(own) {
                        out.extend(noncurrent_entry(KIND_NC_RETRY, &okey, own).map(put));
                    }
                }
            }
            if counted(bucket) {
                out.push(put(pushed_entry(bucket, &key)));
            }
        }
        (Some(_), true) => {
            // A rewrite of the same version (a tag, a transition): visited
            // again if a walk may be past it, as `R` does for current ones.
            if let Some(since) = successor_ms(shard, vkey).filter(|t| late(*t)) {
                out.extend(noncurrent_entry(KIND_NC_RETRY, vkey, since).map(put));
            }
        }
        (None, true) => {
            let Some(since) = successor_ms(shard, vkey) else { return };
            for kind in [KIND_NONCURRENT, KIND_NC_RETRY] {
                if let Some(e) = noncurrent_entry(kind, vkey, since).filter(|e| shard.get(T_LCINDEX, e).is_some()) {
                    out.push(delete(e));
                }
            }
        }
        (None, false) => {}
    }
}

// ---- watermarks ------------------------------------------------------------

/// A bucket's watermarks on this shard: for each rule action, the last
/// index key its walk finished with (exclusive start of the next walk).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Marks {
    /// Fingerprint of the rules the marks are for.
    pub rules: u64,
    pub marks: Vec<(u32, Vec<u8>)>,
}

impl Marks {
    pub fn key(bucket: u64) -> Vec<u8> {
        prefix(KIND_MARKS, bucket)
    }

    pub fn get(&self, action: u32) -> Option<&[u8]> {
        self.marks.iter().find(|(a, _)| *a == action).map(|(_, k)| k.as_slice())
    }

    pub fn set(&mut self, action: u32, key: Vec<u8>) {
        match self.marks.iter_mut().find(|(a, _)| *a == action) {
            Some(m) => m.1 = key,
            None => self.marks.push((action, key)),
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut b = vec![MARKS_V1];
        b.extend_from_slice(&self.rules.to_be_bytes());
        b.extend_from_slice(&(self.marks.len() as u32).to_be_bytes());
        for (a, k) in &self.marks {
            b.extend_from_slice(&a.to_be_bytes());
            b.extend_from_slice(&(k.len() as u32).to_be_bytes());
            b.extend_from_slice(k);
        }
        b
    }

    /// `None` for a record of another version or a damaged one: the walks
    /// then start from the beginning (slower, never wrong).
    pub fn decode(b: &[u8]) -> Option<Self> {
        let mut r = Reader(b);
        if r.take(1)? != [MARKS_V1] {
            return None;
        }
        let rules = u64::from_be_bytes(r.take(8)?.try_into().ok()?);
        let n = u32::from_be_bytes(r.take(4)?.try_into().ok()?) as usize;
        if n > MAX_MARKS {
            return None;
        }
        let mut marks = Vec::with_capacity(n);
        for _ in 0..n {
            let a = u32::from_be_bytes(r.take(4)?.try_into().ok()?);
            let len = u32::from_be_bytes(r.take(4)?.try_into().ok()?) as usize;
            marks.push((a, r.take(len)?.to_vec()));
        }
        r.0.is_empty().then_some(Marks { rules, marks })
    }

    /// The stored marks of `bucket` for rules of fingerprint `rules`
    /// (empty when none, or stored for other rules).
    pub fn load(shard: &Shard, bucket: u64, rules: u64) -> Marks {
        shard
            .get(T_LCINDEX, &Self::key(bucket))
            .and_then(|e| Marks::decode(&e.summary))
            .filter(|m| m.rules == rules)
            .unwrap_or(Marks { rules, marks: Vec::new() })
    }

    pub fn mutation(&self, bucket: u64) -> Mutation {
        Mutation::Put { table: T_LCINDEX, key: Self::key(bucket), summary: self.encode(), meta: Vec::new(), body: Body::Inline(Vec::new()) }
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Some(a)
    }
}

// ---- backfill --------------------------------------------------------------

/// How far a bucket's backfill on this shard has come: indexing what the
/// bucket held before it gained its lifecycle configuration (of stamp
/// `stamp`; a configuration removed and set again has another stamp and
/// is backfilled again, since nothing was indexed meanwhile).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backfill {
    pub stamp: u64,
    pub state: BackfillState,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BackfillState {
    /// Walking the bucket's entries of `table` after `after` (from the
    /// bucket's first when `None`).
    Walking { table: u8, after: Option<Vec<u8>> },
    /// Everything the bucket held when the configuration was set is indexed.
    Done,
}

impl Backfill {
    pub fn key(bucket: u64) -> Vec<u8> {
        prefix(KIND_BACKFILL, bucket)
    }

    /// A backfill from the start.
    pub fn start(stamp: u64) -> Backfill {
        Backfill { stamp, state: BackfillState::Walking { table: T_OBJECTS, after: None } }
    }

    pub fn is_done(&self, stamp: u64) -> bool {
        self.stamp == stamp && self.state == BackfillState::Done
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut b = vec![BACKFILL_V3];
        b.extend_from_slice(&self.stamp.to_be_bytes());
        match &self.state {
            BackfillState::Done => b.push(1),
            BackfillState::Walking { table, after } => {
                b.push(0);
                b.push(*table);
                if let Some(a) = after {
                    b.extend_from_slice(a);
                }
            }
        }
        b
    }

    pub fn decode(b: &[u8]) -> Option<Self> {
        let (&v, rest) = b.split_first()?;
        if v != BACKFILL_V2 && v != BACKFILL_V3 {
            return None;
        }
        let (stamp, rest) = rest.split_at_checked(8)?;
        let stamp = u64::from_be_bytes(stamp.try_into().ok()?);
        let state = match rest {
            // v2 did not walk the versions: they are next.
            [1] if v == BACKFILL_V2 => BackfillState::Walking { table: T_VERSIONS, after: None },
            [1] => BackfillState::Done,
            [0, table, rest @ ..] if *table == T_OBJECTS || *table == T_UPLOADS || (*table == T_VERSIONS && v == BACKFILL_V3) => {
                BackfillState::Walking { table: *table, after: (!rest.is_empty()).then(|| rest.to_vec()) }
            }
            _ => return None,
        };
        Some(Backfill { stamp, state })
    }

    /// The bucket's state on this shard for configuration `stamp`: a
    /// record of another stamp, of an unknown version or none at all
    /// starts the walk over (it only writes entries that are true).
    pub fn load(shard: &Shard, bucket: u64, stamp: u64) -> Backfill {
        shard
            .get(T_LCINDEX, &Self::key(bucket))
            .and_then(|e| Backfill::decode(&e.summary))
            .filter(|b| b.stamp == stamp)
            .unwrap_or_else(|| Backfill::start(stamp))
    }

    pub fn mutation(&self, bucket: u64) -> Mutation {
        Mutation::Put { table: T_LCINDEX, key: Self::key(bucket), summary: self.encode(), meta: Vec::new(), body: Body::Inline(Vec::new()) }
    }
}

/// The tables a bucket's backfill walks, in order.
pub const BACKFILL_TABLES: [u8; 3] = [T_OBJECTS, T_UPLOADS, T_VERSIONS];

/// The index puts for a page of `table` read by the backfill (a
/// noncurrent version's time from its successor as `shard` has it).
pub fn backfill_entries(shard: &Shard, table: u8, page: &[(Vec<u8>, tessera_io::Entry)]) -> Vec<Mutation> {
    page.iter()
        .filter_map(|(k, e)| match table {
            T_OBJECTS => object_entry(k, &e.summary),
            T_VERSIONS => noncurrent_entry(KIND_NONCURRENT, k, successor_ms(shard, k)?),
            _ => upload_entry_of(k, &e.summary),
        })
        .map(put)
        .collect()
}

#[cfg(test)]
mod tests;
