//! The index follows every commit (real shards in temp dirs), and its
//! records round-trip and refuse what they do not know.

use std::future::Future;
use std::rc::Rc;

use tessera_io::{Body, Mutation, Shard, ShardOptions};

use super::*;
use crate::buckets::Versioning;
use crate::meta::{object_key, upload_key, ObjectMeta, VersionSel};
use crate::s3::versions::{place, remove, NewVersion};
use crate::shards::LocalShard;

fn run<F: Future>(f: F) -> F::Output {
    monoio::RuntimeBuilder::<monoio::FusionDriver>::new().enable_timer().build().expect("runtime").block_on(f)
}

fn version(mtime_ms: i64) -> NewVersion {
    let summary = ObjectSummary::new(1, mtime_ms, [0; 16], 0, VersionId::from_parts(0, [0; 8]), false);
    NewVersion { summary, meta: ObjectMeta::default().encode(), body: Body::Inline(vec![1]) }
}

/// Every index entry of the shard but the noncurrent versions' (`nc`'s
/// tests), by kind: (kind, the key after it).
fn index(shard: &Shard) -> Vec<(u8, Vec<u8>)> {
    let noncurrent = [KIND_NONCURRENT, KIND_NC_RETRY, KIND_PUSHED];
    shard.range(T_LCINDEX, &[], None, 10_000).into_iter().filter(|(k, _)| !noncurrent.contains(&k[0])).map(|(k, _)| (k[0], k[1..].to_vec())).collect()
}

fn currents(shard: &Shard) -> Vec<VersionEntry> {
    shard.range(T_LCINDEX, &prefix(KIND_CURRENT, 1), None, 10_000).into_iter().filter_map(|(k, _)| parse_version_entry(&k)).collect()
}

async fn place_and_commit(l: &LocalShard, key: &str, v: Versioning, nv: NewVersion, random: u8) -> ObjectSummary {
    let (muts, s) = place(&l.shard, 1, key, v, nv, None, [random; 8]).await.expect("place");
    l.commit_in_txn(muts).await.expect("commit");
    s
}

#[test]
fn current_versions_markers_and_uploads_are_indexed_in_their_commit() {
    let dir = tempfile::tempdir().expect("tempdir");
    run(async {
        // Bucket 1 has a configuration; bucket 2 has none.
        let ruled = Ruled::of(&[(1, 77)]);
        let l = Rc::new(LocalShard::new(Shard::open(dir.path(), 0, ShardOptions::default()).await.expect("open")).with_ruled(ruled.clone()));
        // A bucket without a configuration is not indexed at all.
        let (muts, _) = place(&l.shard, 2, "x", Versioning::Unversioned, version(1_000), None, [9; 8]).await.expect("place");
        l.commit_in_txn(muts).await.expect("commit");
        let info = UploadInfo::new(1_000, "owner".into(), ObjectMeta::default());
        let m = Mutation::Put { table: T_UPLOADS, key: upload_key(2, "u", "00"), summary: info.encode(), meta: Vec::new(), body: Body::Inline(Vec::new()) };
        l.commit_in_txn(vec![m]).await.expect("upload");
        assert!(index(&l.shard).is_empty(), "bucket 2 has no rules: {:?}", index(&l.shard));

        // Unversioned: a put, an overwrite, a delete.
        let a = place_and_commit(&l, "a", Versioning::Unversioned, version(1_000), 1).await;
        assert_eq!(currents(&l.shard), [VersionEntry { mtime_ms: 1_000, version: a.version, key: b"a".to_vec() }]);
        let a2 = place_and_commit(&l, "a", Versioning::Unversioned, version(2_000), 2).await;
        assert_eq!(currents(&l.shard), [VersionEntry { mtime_ms: 2_000, version: a2.version, key: b"a".to_vec() }]);
        l.commit_in_txn(vec![Mutation::Delete { table: T_OBJECTS, key: object_key(1, "a") }]).await.expect("delete");
        assert!(index(&l.shard).is_empty(), "{:?}", index(&l.shard));

        // Versioned: only the current version is indexed (by its own
        // creation time); a delete marker makes the key an `L` entry, and
        // removing it indexes the version it promotes.
        let v1 = place_and_commit(&l, "k", Versioning::Enabled, version(3_000), 3).await;
        let v2 = place_and_commit(&l, "k", Versioning::Enabled, version(4_000), 4).await;
        assert_eq!(currents(&l.shard), [VersionEntry { mtime_ms: 4_000, version: v2.version, key: b"k".to_vec() }]);
        let marker = place_and_commit(&l, "k", Versioning::Enabled, NewVersion::delete_marker(5_000), 5).await;
        assert_eq!(index(&l.shard), [(KIND_LONE, lone_entry(1, b"k")[1..].to_vec())]);
        let (muts, _) = remove(&l.shard, 1, "k", VersionSel::Id(marker.version), false).await.expect("remove").expect("found");
        l.commit_in_txn(muts).await.expect("commit");
        assert_eq!(currents(&l.shard), [VersionEntry { mtime_ms: 4_000, version: v2.version, key: b"k".to_vec() }]);
        // The promoted version is older than any walk's lag: it is also
        // an `R` entry, so a walk already past its time still sees it.
        let kinds: Vec<u8> = index(&l.shard).iter().map(|(k, _)| *k).collect();
        assert_eq!(kinds, [KIND_CURRENT, KIND_RETRY]);
        // Removing a noncurrent version leaves the current one's entry.
        let (muts, _) = remove(&l.shard, 1, "k", VersionSel::Id(v1.version), false).await.expect("remove").expect("found");
        l.commit_in_txn(muts).await.expect("commit");
        assert_eq!(currents(&l.shard).len(), 1);
        // A fresh version replacing it takes both away and is no retry.
        let now = tessera_proto::time::now_unix_ms();
        let v3 = place_and_commit(&l, "k", Versioning::Enabled, version(now), 6).await;
        assert_eq!(index(&l.shard), [(KIND_CURRENT, version_entry(KIND_CURRENT, 1, now, &v3.version, b"k")[1..].to_vec())]);

        // A rewrite of the same version (tags, a transition) changes nothing.
        let e = l.shard.get(T_OBJECTS, &object_key(1, "k")).expect("current");
        let stored = l.shard.load(T_OBJECTS, &object_key(1, "k")).await.expect("load").expect("stored");
        let rewrite = Mutation::Put { table: T_OBJECTS, key: object_key(1, "k"), summary: e.summary.to_vec(), meta: stored.meta, body: stored.body };
        let mut muts = vec![rewrite];
        derive(&l.shard, &ruled, &mut muts);
        assert_eq!(muts.len(), 1, "no index mutation for a rewrite of a fresh version");
        // A rewrite of an old version (a tag changed): an `R` entry, so a
        // walk already past its time sees it again.
        let t = place_and_commit(&l, "t", Versioning::Unversioned, version(1_500), 7).await;
        let e = l.shard.get(T_OBJECTS, &object_key(1, "t")).expect("current");
        let stored = l.shard.load(T_OBJECTS, &object_key(1, "t")).await.expect("load").expect("stored");
        let rewrite = Mutation::Put { table: T_OBJECTS, key: object_key(1, "t"), summary: e.summary.to_vec(), meta: stored.meta, body: stored.body };
        let mut muts = vec![rewrite];
        derive(&l.shard, &ruled, &mut muts);
        assert_eq!(muts.len(), 2, "the rewrite and its retry entry");
        assert!(matches!(&muts[1], Mutation::Put { table: T_LCINDEX, key, .. } if *key == version_entry(KIND_RETRY, 1, 1_500, &t.version, b"t")));
        l.commit_in_txn(muts).await.expect("commit");
        l.commit_in_txn(vec![Mutation::Delete { table: T_OBJECTS, key: object_key(1, "t") }]).await.expect("delete");
        // The same rewrite in a bucket without rules: nothing.
        let e = l.shard.get(T_OBJECTS, &object_key(2, "x")).expect("current");
        let mut muts = vec![Mutation::Put { table: T_OBJECTS, key: object_key(2, "x"), summary: e.summary.to_vec(), meta: Vec::new(), body: Body::Inline(vec![1]) }];
        derive(&l.shard, &ruled, &mut muts);
        assert_eq!(muts.len(), 1);

        // Uploads: indexed by initiation time until completed or aborted.
        let info = UploadInfo::new(7_000, "owner".into(), ObjectMeta::default());
        let uk = upload_key(1, "big", "00ff");
        let m = Mutation::Put { table: T_UPLOADS, key: uk.clone(), summary: info.encode(), meta: Vec::new(), body: Body::Inline(Vec::new()) };
        l.commit_in_txn(vec![m]).await.expect("upload");
        let ups = l.shard.range(T_LCINDEX, &prefix(KIND_UPLOAD, 1), None, 10);
        assert_eq!(ups.len(), 1);
        assert_eq!(parse_upload_entry(&ups[0].0), Some((7_000, &uk[8..])));
        l.commit_in_txn(vec![Mutation::Delete { table: T_UPLOADS, key: uk }]).await.expect("abort");
        assert!(l.shard.range(T_LCINDEX, &prefix(KIND_UPLOAD, 1), None, 10).is_empty());
    });
}

#[test]
fn entries_sort_by_time_across_keys_and_negative_times() {
    let v = VersionId::from_parts(0, [0; 8]);
    let times = [-5_000, -1, 0, 1, 86_400_000, i64::MAX];
    let keys: Vec<Vec<u8>> = times.iter().map(|t| version_entry(KIND_CURRENT, 7, *t, &v, b"zzz")).collect();
    assert!(keys.windows(2).all(|w| w[0] < w[1]));
    for (t, k) in times.iter().zip(&keys) {
        assert_eq!(parse_version_entry(k).map(|e| e.mtime_ms), Some(*t));
    }
    // A later key of an earlier time sorts first: time leads.
    assert!(version_entry(KIND_CURRENT, 7, 1, &v, b"zzz") < version_entry(KIND_CURRENT, 7, 2, &v, b"a"));
}

#[test]
fn state_records_round_trip_and_refuse_unknown_versions() {
    let mut m = Marks { rules: 42, marks: Vec::new() };
    m.set(0, b"abc".to_vec());
    m.set(3, Vec::new());
    m.set(0, b"abd".to_vec());
    assert_eq!(m.get(0), Some(&b"abd"[..]));
    assert_eq!(Marks::decode(&m.encode()), Some(m.clone()));
    let mut other = m.encode();
    other[0] = 2;
    assert_eq!(Marks::decode(&other), None, "another version is not read as this one");
    let e = m.encode();
    assert_eq!(Marks::decode(&e[..e.len() - 1]), None, "truncated");
    for state in [
        BackfillState::Done,
        BackfillState::Walking { table: T_OBJECTS, after: None },
        BackfillState::Walking { table: T_UPLOADS, after: Some(b"k".to_vec()) },
    ] {
        let b = Backfill { stamp: 0xfeed, state };
        assert_eq!(Backfill::decode(&b.encode()), Some(b));
    }
    assert!(Backfill::start(5).state != BackfillState::Done && !Backfill::start(5).is_done(5));
    assert!(Backfill { stamp: 5, state: BackfillState::Done }.is_done(5));
    assert!(!Backfill { stamp: 5, state: BackfillState::Done }.is_done(6), "done for another configuration");
    assert_eq!(Backfill::decode(&[1, 1]), None, "the old shard-wide record");
    // A v2 record (objects and uploads only) that says Done: the versions
    // are walked next.
    let mut v2 = Backfill { stamp: 1, state: BackfillState::Done }.encode();
    v2[0] = BACKFILL_V2;
    assert_eq!(Backfill::decode(&v2), Some(Backfill { stamp: 1, state: BackfillState::Walking { table: T_VERSIONS, after: None } }));
    let walking = Backfill { stamp: 1, state: BackfillState::Walking { table: T_VERSIONS, after: Some(b"v".to_vec()) } };
    assert_eq!(Backfill::decode(&walking.encode()), Some(walking.clone()));
    let mut v2 = walking.encode();
    v2[0] = BACKFILL_V2;
    assert_eq!(Backfill::decode(&v2), None, "v2 never walked the versions");
    let mut other = Backfill { stamp: 1, state: BackfillState::Done }.encode();
    other[0] = 4;
    assert_eq!(Backfill::decode(&other), None);
    let mut bad = Backfill::start(1).encode();
    bad[10] = 9;
    assert_eq!(Backfill::decode(&bad), None, "no table but objects, uploads and versions is walked");
    assert_eq!(Backfill::decode(&[BACKFILL_V2, 0, 0]), None, "truncated");
}
