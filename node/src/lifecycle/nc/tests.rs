//! The index-driven walk finds what the full walk finds, on the same data
//! (a real shard in a temp dir, its index derived by every commit), over
//! seeded random sequences of versioned writes.

use std::collections::BTreeSet;
use std::future::Future;
use std::rc::Rc;

use tessera_io::{Body, Mutation, Shard, ShardOptions};

use super::*;
use crate::buckets::Versioning;
use crate::lifecycle::index::{Backfill, Ruled};
use crate::meta::{versions_prefix, ObjectMeta, ReplStatus, VersionId, VersionSel};
use crate::s3::versions::{place, remove, NewVersion};
use crate::shards::LocalShard;

fn run<F: Future>(f: F) -> F::Output {
    monoio::RuntimeBuilder::<monoio::FusionDriver>::new().enable_timer().build().expect("runtime").block_on(f)
}

/// Records what it is told to do; acts on nothing (the test removes).
struct Recorder<'a> {
    l: &'a LocalShard,
    acts: BTreeSet<(Vec<u8>, Act)>,
    visited: u64,
}

impl Actor for Recorder<'_> {
    async fn act(&mut self, _key: &str, vkey: &[u8], _s: &ObjectSummary, act: Act) -> S3Result<Outcome> {
        self.acts.insert((vkey.to_vec(), act));
        Ok(Outcome::Acted)
    }
    async fn commit(&mut self, muts: Vec<Mutation>) -> S3Result<()> {
        self.l.commit_in_txn(muts).await.expect("commit");
        Ok(())
    }
    async fn tags(&mut self, _vkey: &[u8]) -> S3Result<Vec<(String, String)>> {
        Ok(Vec::new())
    }
    fn visited(&mut self, n: u64) {
        self.visited += n;
    }
}

struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

const RULES: &str = "<LifecycleConfiguration>\
<Rule><ID>a</ID><Status>Enabled</Status><Filter><Prefix>a</Prefix></Filter>\
<NoncurrentVersionExpiration><NoncurrentDays>2</NoncurrentDays><NewerNoncurrentVersions>1</NewerNoncurrentVersions></NoncurrentVersionExpiration></Rule>\
<Rule><ID>all</ID><Status>Enabled</Status><Filter><Prefix></Prefix></Filter>\
<NoncurrentVersionExpiration><NoncurrentDays>6</NoncurrentDays></NoncurrentVersionExpiration>\
<NoncurrentVersionTransition><NoncurrentDays>1</NoncurrentDays><StorageClass>COLD</StorageClass></NoncurrentVersionTransition></Rule>\
</LifecycleConfiguration>";

const DAY_MS: i64 = 1_000;

fn removals(acts: &BTreeSet<(Vec<u8>, Act)>) -> BTreeSet<Vec<u8>> {
    acts.iter().filter(|(_, a)| *a == Act::Remove).map(|(k, _)| k.clone()).collect()
}

/// The versions of `key` in `T_VERSIONS`, newest first.
fn chain(shard: &Shard, key: &str) -> Vec<(Vec<u8>, ObjectSummary)> {
    shard
        .range(T_VERSIONS, &versions_prefix(1, key), None, 10_000)
        .into_iter()
        .map(|(k, e)| (k, ObjectSummary::decode(&e.summary).expect("summary")))
        .collect()
}

/// One random sequence: writes of every kind, and every few steps both
/// walks at the same virtual time, which must find the same removals;
/// then those are done, as the worker would.
async fn sequence(seed: u64, steps: usize, backfill_at: Option<usize>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let lc = tessera_proto::lifecycle::parse_config(RULES.as_bytes(), &mut || "x".into()).expect("rules");
    assert!(counts(&lc));
    // Indexed from the start, or (a bucket gaining its rules late) not
    // until step `backfill_at`, where the backfill runs.
    let ruled = if backfill_at.is_some() { Ruled::of(&[(9, 1)]) } else { Ruled::counting(&[(1, 77)], &[1]) };
    let l = Rc::new(LocalShard::new(Shard::open(dir.path(), 0, ShardOptions::default()).await.expect("open")).with_ruled(ruled.clone()));
    let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    // Virtual time, ahead of the real clock: nothing is "late" to derive.
    let mut clock = tessera_proto::time::now_unix_ms() + 3_600_000;
    let keys = ["a1", "a2", "b1", "b2"];
    let mut marks = Marks { rules: 1, marks: Vec::new() };
    let mut indexed = backfill_at.is_none();
    for step in 0..steps {
        if backfill_at == Some(step) {
            ruled.store([(1, 77)].into_iter().collect(), [1].into_iter().collect());
            l.drain_commits().await;
            let mut at = crate::paged::Cursor::start(crate::meta::T_OBJECTS);
            loop {
                let page = l.shard.range(at.table, &crate::meta::bucket_prefix(1), at.after.as_deref(), 7);
                let mut muts = index::backfill_entries(&l.shard, at.table, &page);
                let next = match page.last() {
                    Some((k, _)) if page.len() == 7 => Some(crate::paged::Cursor { table: at.table, after: Some(k.clone()) }),
                    _ => index::BACKFILL_TABLES.iter().position(|t| *t == at.table).and_then(|i| index::BACKFILL_TABLES.get(i + 1)).map(|t| crate::paged::Cursor::start(*t)),
                };
                muts.push(Backfill { stamp: 77, state: index::BackfillState::Done }.mutation(1));
                l.commit_in_txn(muts).await.expect("backfill");
                match next {
                    Some(n) => at = n,
                    None => break,
                }
            }
            indexed = true;
        }
        clock += rng.below(700) as i64;
        let key = keys[rng.below(keys.len() as u64) as usize];
        let versioning = if rng.below(5) == 0 { Versioning::Suspended } else { Versioning::Enabled };
        let cur = l.shard.get(crate::meta::T_OBJECTS, &object_key(1, key)).and_then(|e| ObjectSummary::decode(&e.summary));
        let versions = chain(&l.shard, key);
        let muts = match rng.below(10) {
            // A PUT (an overwrite when the key exists).
            0..=4 => {
                let s = ObjectSummary::new(1, clock, [0; 16], 0, VersionId::from_parts(0, [0; 8]), false);
                let nv = NewVersion { summary: s, meta: ObjectMeta::default().encode(), body: Body::Inline(vec![1]) };
                place(&l.shard, 1, key, versioning, nv, None, [rng.below(256) as u8; 8]).await.expect("place").0
            }
            // A delete marker.
            5 => place(&l.shard, 1, key, versioning, NewVersion::delete_marker(clock), None, [7; 8]).await.expect("marker").0,
            // DELETE by versionId: the current version (promotes) ...
            6 => match &cur {
                Some(c) => remove(&l.shard, 1, key, if c.null_version { VersionSel::Null } else { VersionSel::Id(c.version) }, false).await.expect("remove").expect("found").0,
                None => continue,
            },
            // ... or one in the middle.
            7 | 8 if !versions.is_empty() => {
                let (_, s) = &versions[rng.below(versions.len() as u64) as usize];
                let sel = if s.null_version { VersionSel::Null } else { VersionSel::Id(s.version) };
                remove(&l.shard, 1, key, sel, false).await.expect("remove").expect("found").0
            }
            // A replica of an older version arriving late, between two.
            _ if versions.len() >= 2 => {
                let i = rng.below(versions.len() as u64 - 1) as usize;
                let (newer, older) = (&versions[i].1, &versions[i + 1].1);
                let mut id = older.version;
                id.0[15] = id.0[15].wrapping_add(1);
                if id >= newer.version || id.0[15] == 0 {
                    continue;
                }
                let mut s = ObjectSummary::new(1, older.mtime_ms + (newer.mtime_ms - older.mtime_ms) / 2, [0; 16], 0, id, false);
                s.repl = ReplStatus::Replica;
                let nv = NewVersion { summary: s, meta: ObjectMeta::default().encode(), body: Body::Inline(vec![1]) };
                place(&l.shard, 1, key, Versioning::Enabled, nv, None, [0; 8]).await.expect("replica").0
            }
            _ => continue,
        };
        l.commit_in_txn(muts).await.expect("commit");

        if step % 6 != 5 {
            continue;
        }
        let w = Walk { shard: &l.shard, bucket: 1, lc: &lc, day_ms: DAY_MS, now: clock };
        let mut full_rec = Recorder { l: &l, acts: BTreeSet::new(), visited: 0 };
        full(&w, &mut full_rec).await.expect("full");
        let want = removals(&full_rec.acts);
        if indexed {
            let mut idx = Recorder { l: &l, acts: BTreeSet::new(), visited: 0 };
            indexed_walk(&w, &mut marks, &mut idx).await;
            assert_eq!(removals(&idx.acts), want, "seed {seed} step {step}: the index walk's removals differ from the full walk's");
        }
        for vkey in want {
            let (_, key, v) = parse_version_key(&vkey).expect("vkey");
            let key = String::from_utf8(key).expect("utf8");
            let (muts, _) = remove(&l.shard, 1, &key, VersionSel::Id(v), false).await.expect("remove").expect("found");
            l.commit_in_txn(muts).await.expect("commit");
        }
        // Noncurrent entries follow the versions: never one missing.
        if indexed {
            for key in keys {
                for (vkey, _) in chain(&l.shard, key) {
                    let (_, kb, v) = parse_version_key(&vkey).expect("vkey");
                    let truth = index::successor_ms(&l.shard, &vkey).expect("successor");
                    let found = l.shard.range(T_LCINDEX, &index::prefix(KIND_NONCURRENT, 1), None, 100_000).into_iter().filter_map(|(k, _)| parse_version_entry(&k)).any(|e| e.version == v && e.key == kb && e.mtime_ms <= truth);
                    assert!(found, "seed {seed} step {step}: no entry at or before the true time for {key} {v:?}");
                }
            }
        }
    }
}

async fn indexed_walk(w: &Walk<'_>, marks: &mut Marks, actor: &mut Recorder<'_>) {
    indexed(w, marks, actor).await.expect("indexed");
}

#[test]
fn the_index_walk_finds_what_the_full_walk_finds() {
    run(async {
        for seed in 1..=40u64 {
            let backfill_at = (seed % 4 == 0).then_some(30 + seed as usize % 50);
            sequence(seed, 300, backfill_at).await;
        }
    });
}

/// The entries of one key's life, as derive writes them: a demotion's `N`
/// at the new current's time (and `Q`, when that time is older than a walk
/// may have passed), `K` only in a bucket with a count rule, a rewrite of
/// an old noncurrent version (a tag) retried, a removal taking its entries.
#[test]
fn noncurrent_entries_follow_their_versions() {
    let dir = tempfile::tempdir().expect("tempdir");
    run(async {
        let l = LocalShard::new(Shard::open(dir.path(), 0, ShardOptions::default()).await.expect("open")).with_ruled(Ruled::counting(&[(1, 77), (2, 78)], &[2]));
        let put_at = |bucket: u64, ms: i64, r: u8| {
            let l = &l;
            async move {
                let s = ObjectSummary::new(1, ms, [0; 16], 0, VersionId::from_parts(0, [0; 8]), false);
                let nv = NewVersion { summary: s, meta: ObjectMeta::default().encode(), body: Body::Inline(vec![1]) };
                let (muts, s) = place(&l.shard, bucket, "k", Versioning::Enabled, nv, None, [r; 8]).await.expect("place");
                l.commit_in_txn(muts).await.expect("commit");
                s
            }
        };
        let entries = |bucket: u64| {
            let mut out: Vec<(u8, Option<index::VersionEntry>)> = Vec::new();
            for kind in [KIND_NONCURRENT, KIND_NC_RETRY, KIND_PUSHED] {
                for (k, _) in l.shard.range(T_LCINDEX, &index::prefix(kind, bucket), None, 100) {
                    out.push((kind, (kind != KIND_PUSHED).then(|| parse_version_entry(&k).expect("entry"))));
                }
            }
            out
        };
        let v1 = put_at(1, 1_000, 1).await;
        assert!(entries(1).is_empty(), "a current version is no noncurrent entry");
        let _v2 = put_at(1, 2_000, 2).await;
        let e = |ms: i64, v: &ObjectSummary| Some(index::VersionEntry { mtime_ms: ms, version: v.version, key: b"k".to_vec() });
        assert_eq!(entries(1), [(KIND_NONCURRENT, e(2_000, &v1)), (KIND_NC_RETRY, e(2_000, &v1))], "no K without a count rule");
        // The same in bucket 2 (a count rule): a K entry too.
        let w1 = put_at(2, 1_000, 1).await;
        put_at(2, 2_000, 2).await;
        assert_eq!(entries(2), [(KIND_NONCURRENT, e(2_000, &w1)), (KIND_NC_RETRY, e(2_000, &w1)), (KIND_PUSHED, None)]);
        // A fresh demotion is no retry.
        let now = tessera_proto::time::now_unix_ms();
        put_at(1, now, 3).await;
        let n: Vec<_> = entries(1).into_iter().filter(|(k, _)| *k == KIND_NC_RETRY).collect();
        assert_eq!(n.len(), 1, "only v1's retry: {n:?}");
        // The retry dropped, a tag rewrite of old v1 brings it back.
        let q = index::version_entry(KIND_NC_RETRY, 1, 2_000, &v1.version, b"k");
        l.commit_in_txn(vec![index::delete(q.clone())]).await.expect("drop");
        let vkey = version_key(1, "k", &v1.version);
        let stored = l.shard.load(T_VERSIONS, &vkey).await.expect("load").expect("stored");
        let rewrite = Mutation::Put { table: T_VERSIONS, key: vkey.clone(), summary: stored.summary, meta: stored.meta, body: stored.body };
        l.commit_in_txn(vec![rewrite]).await.expect("rewrite");
        assert!(l.shard.get(T_LCINDEX, &q).is_some(), "a rewrite of an old noncurrent version is retried");
        // Removing v1 takes its entries with it.
        let (muts, _) = remove(&l.shard, 1, "k", VersionSel::Id(v1.version), false).await.expect("remove").expect("found");
        l.commit_in_txn(muts).await.expect("commit");
        assert!(entries(1).iter().all(|(_, e)| e.as_ref().is_none_or(|e| e.version != v1.version)), "{:?}", entries(1));
    });
}
