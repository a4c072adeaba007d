//! The versions of one key, as its shard's owning core sees them: placing a
//! new version (demoting the current one by copy), removing a version
//! (promoting the newest noncurrent one), finding a version by id.
//!
//! Everything that changes a key's versions runs inside a transaction that
//! holds the key's `T_OBJECTS` lock (`Shards::txn`), so it reads the state
//! every earlier write left and no other write interleaves. A demotion or
//! promotion moves an entry between `T_OBJECTS` and `T_VERSIONS` in one
//! commit (summary, meta and body description; extents are references, no
//! data is copied), so no two live entries ever reference the same extents.

use tessera_io::{Body, Mutation, Shard};
use tessera_proto::time::{now_unix_micros, now_unix_ms};
use tessera_proto::{S3Error, S3ErrorCode, S3Result};

use super::{internal, io_error, WriteCond};
use crate::buckets::Versioning;
use crate::meta::{
    object_key, version_key, versions_prefix, ObjectMeta, ObjectSummary, ReplStatus, VersionId, VersionSel,
    T_OBJECTS, T_VERSIONS,
};

/// Versions of one key read per index scan when looking for its null version.
const SCAN_BATCH: usize = 1000;

/// Eight random bytes for a version id: the system's, drawn 512 at a time
/// per thread (one `getrandom` per write had been 0.9 system calls per
/// 4 KiB PUT, as many as all the io_uring submissions).
pub fn random8() -> S3Result<[u8; 8]> {
    use ring::rand::{SecureRandom, SystemRandom};
    use std::cell::RefCell;
    const DRAW: usize = 512;
    thread_local! {
        /// Bytes drawn and the next unused one.
        static POOL: RefCell<([u8; DRAW], usize)> = const { RefCell::new(([0; DRAW], DRAW)) };
    }
    POOL.with(|p| {
        let (bytes, at) = &mut *p.borrow_mut();
        if *at + 8 > DRAW {
            SystemRandom::new().fill(bytes).map_err(|_| internal("no randomness"))?;
            *at = 0;
        }
        let mut r = [0u8; 8];
        r.copy_from_slice(&bytes[*at..*at + 8]);
        // Handed out once: wiped from the pool.
        bytes[*at..*at + 8].fill(0);
        *at += 8;
        Ok(r)
    })
}

fn corrupt() -> S3Error {
    internal("corrupt object summary")
}

/// Where a version lives: its table and key there, and its summary.
#[derive(Debug, Clone)]
pub struct Located {
    pub table: u8,
    pub key: Vec<u8>,
    pub summary: ObjectSummary,
}

/// The current version of `key` (a delete marker included), if any.
pub fn current(shard: &Shard, bucket: u64, key: &str) -> S3Result<Option<Located>> {
    let okey = object_key(bucket, key);
    match shard.get(T_OBJECTS, &okey) {
        None => Ok(None),
        Some(e) => {
            let summary = ObjectSummary::decode(&e.summary).ok_or_else(corrupt)?;
            Ok(Some(Located { table: T_OBJECTS, key: okey, summary }))
        }
    }
}

/// The noncurrent null version of `key`, if any (a scan of the key's
/// versions: there is at most one, at no predictable place).
fn noncurrent_null(shard: &Shard, bucket: u64, key: &str) -> S3Result<Option<Located>> {
    let prefix = versions_prefix(bucket, key);
    let mut after: Option<Vec<u8>> = None;
    loop {
        let batch = shard.range(T_VERSIONS, &prefix, after.as_deref(), SCAN_BATCH);
        let done = batch.len() < SCAN_BATCH;
        for (k, e) in batch {
            let summary = ObjectSummary::decode(&e.summary).ok_or_else(corrupt)?;
            if summary.null_version {
                return Ok(Some(Located { table: T_VERSIONS, key: k, summary }));
            }
            after = Some(k);
        }
        if done {
            return Ok(None);
        }
    }
}

/// The version `sel` of `key`, current or noncurrent.
pub fn find(shard: &Shard, bucket: u64, key: &str, sel: VersionSel) -> S3Result<Option<Located>> {
    if let Some(cur) = current(shard, bucket, key)? {
        if sel.matches(&cur.summary) {
            return Ok(Some(cur));
        }
    }
    match sel {
        VersionSel::Null => noncurrent_null(shard, bucket, key),
        VersionSel::Id(v) => {
            let vkey = version_key(bucket, key, &v);
            match shard.get(T_VERSIONS, &vkey) {
                None => Ok(None),
                Some(e) => {
                    let summary = ObjectSummary::decode(&e.summary).ok_or_else(corrupt)?;
                    Ok(Some(Located { table: T_VERSIONS, key: vkey, summary }))
                }
            }
        }
    }
}

/// The version of `key` whose id is `version`, null (`null`, as a null
/// version keeps the id it was written with) or not: a null version
/// replaced since is not found.
pub fn find_exact(shard: &Shard, bucket: u64, key: &str, version: VersionId, null: bool) -> S3Result<Option<Located>> {
    let sel = if null { VersionSel::Null } else { VersionSel::Id(version) };
    Ok(find(shard, bucket, key, sel)?.filter(|l| l.summary.version == version))
}

/// The version `sel` of `key` (or the current one) with its meta and body.
pub async fn load(
    shard: &Shard,
    bucket: u64,
    key: &str,
    sel: Option<VersionSel>,
) -> S3Result<Option<(Located, ObjectMeta, Body)>> {
    let found = match sel {
        None => current(shard, bucket, key)?,
        Some(sel) => find(shard, bucket, key, sel)?,
    };
    let Some(loc) = found else { return Ok(None) };
    let stored = crate::stripes_io::load(shard, loc.table, &loc.key).await.map_err(io_error)?.ok_or_else(|| internal("version vanished"))?;
    let meta = ObjectMeta::decode(&stored.meta).ok_or_else(|| internal("corrupt object meta"))?;
    Ok(Some((loc, meta, stored.body)))
}

/// The mutation that moves the entry at `from` (table, key) to `to` in
/// `to_table`, as it is (summary, meta, body description).
async fn move_entry(shard: &Shard, from_table: u8, from: &[u8], to_table: u8, to: Vec<u8>) -> S3Result<Mutation> {
    let stored = crate::stripes_io::load(shard, from_table, from).await.map_err(io_error)?.ok_or_else(|| internal("version vanished"))?;
    Ok(Mutation::Put { table: to_table, key: to, summary: stored.summary, meta: stored.meta, body: stored.body })
}

/// A new version to place (its id is chosen by [`place`]).
pub struct NewVersion {
    pub summary: ObjectSummary,
    pub meta: Vec<u8>,
    pub body: Body,
}

impl NewVersion {
    /// A delete marker written at `now_ms`.
    pub fn delete_marker(now_ms: i64) -> Self {
        let mut summary = ObjectSummary::new(0, now_ms, [0; 16], 0, VersionId::from_parts(0, [0; 8]), false);
        summary.delete_marker = true;
        NewVersion { summary, meta: ObjectMeta::default().encode(), body: Body::Inline(Vec::new()) }
    }
}

/// The mutations that make `new` the current version of `key` in a bucket
/// in state `versioning`, under `cond`; and the summary written (with its
/// version id). Enabled: the current version is demoted to `T_VERSIONS`.
/// Suspended/unversioned: the new version is `null`; a current null version
/// is replaced (if its lock allows), a current non-null one demoted, and a
/// noncurrent null version removed (if its lock allows).
pub async fn place(
    shard: &Shard,
    bucket: u64,
    key: &str,
    versioning: Versioning,
    new: NewVersion,
    cond: Option<&WriteCond>,
    random: [u8; 8],
) -> S3Result<(Vec<Mutation>, ObjectSummary)> {
    {
        let cur = current(shard, bucket, key)?;
        if let Some(c) = cond {
            c.check(cur.as_ref().map(|l| &l.summary).filter(|s| !s.delete_marker))?;
        }
        let NewVersion { mut summary, meta, body } = new;
        if summary.repl == ReplStatus::Replica {
            // A replica keeps the source's id: written again in place when
            // it is here already (a repeated delivery), as a noncurrent
            // version when a newer one is current, else as the current one.
            // A null replica (a version the source wrote before versioning
            // was enabled) replaces an older null version, the only one a
            // key has, and loses to a newer one: nothing is written.
            let v = summary.version;
            let mut muts = Vec::new();
            let same = if summary.null_version {
                match find(shard, bucket, key, VersionSel::Null)? {
                    Some(n) if n.summary.version > v => return Ok((Vec::new(), n.summary)),
                    Some(n) if n.summary.version == v => Some(n),
                    Some(n) if n.table == T_VERSIONS && cur.as_ref().is_some_and(|c| c.summary.version > v) => {
                        // Older and noncurrent, as the replica will be: it goes.
                        n.summary.check_removable(now_unix_ms(), false)?;
                        muts.extend(crate::tier::forget_mutation(shard, n.table, &n.key, &n.summary).await?);
                        muts.push(Mutation::Delete { table: T_VERSIONS, key: n.key });
                        None
                    }
                    // Older, and the replica becomes current: replaced
                    // below as a null version written here would be.
                    _ => None,
                }
            } else {
                find(shard, bucket, key, VersionSel::Id(v))?
            };
            let at = match same {
                Some(l) => Some((l.table, l.key)),
                None if cur.as_ref().is_some_and(|c| c.summary.version > v) => Some((T_VERSIONS, version_key(bucket, key, &v))),
                None => None,
            };
            if let Some((table, k)) = at {
                muts.push(Mutation::Put { table, key: k, summary: summary.encode(), meta, body });
                return Ok((muts, summary));
            }
        } else {
            summary.version = VersionId::next(now_unix_micros(), cur.as_ref().map(|l| &l.summary.version), random);
            summary.null_version = versioning != Versioning::Enabled;
        }
        let now_ms = now_unix_ms();
        let mut muts = Vec::new();
        if let Some(c) = &cur {
            if summary.null_version && c.summary.null_version {
                // Replaced in place: its data is gone for good. (A summary
                // that does not decode never gets here: `current` refused it.)
                c.summary.check_removable(now_ms, false)?;
                muts.extend(crate::tier::forget_mutation(shard, c.table, &c.key, &c.summary).await?);
            } else {
                let to = version_key(bucket, key, &c.summary.version);
                muts.push(move_entry(shard, T_OBJECTS, &c.key, T_VERSIONS, to).await?);
            }
        }
        if summary.null_version && versioning != Versioning::Unversioned {
            if let Some(old) = noncurrent_null(shard, bucket, key)? {
                old.summary.check_removable(now_ms, false)?;
                muts.extend(crate::tier::forget_mutation(shard, old.table, &old.key, &old.summary).await?);
                muts.push(Mutation::Delete { table: T_VERSIONS, key: old.key });
            }
        }
        muts.push(Mutation::Put {
            table: T_OBJECTS,
            key: object_key(bucket, key),
            summary: summary.encode(),
            meta,
            body,
        });
        Ok((muts, summary))
    }
}

/// The mutations that remove version `sel` of `key` (its lock permitting,
/// `bypass_governance` for GOVERNANCE retention); the removed version's
/// summary, or `None` when there is no such version. Removing the current
/// version promotes the newest noncurrent one in the same commit.
pub async fn remove(
    shard: &Shard,
    bucket: u64,
    key: &str,
    sel: VersionSel,
    bypass_governance: bool,
) -> S3Result<Option<(Vec<Mutation>, ObjectSummary)>> {
    // `find` refuses summaries that do not decode: undecodable lock state
    // fails closed.
    let Some(found) = find(shard, bucket, key, sel)? else { return Ok(None) };
    found.summary.check_removable(now_unix_ms(), bypass_governance)?;
    // A transitioned version's copy at its tier goes with it (queued).
    let mut muts: Vec<Mutation> = crate::tier::forget_mutation(shard, found.table, &found.key, &found.summary).await?.into_iter().collect();
    if found.table == T_OBJECTS {
        let prefix = versions_prefix(bucket, key);
        match shard.range(T_VERSIONS, &prefix, None, 1).into_iter().next() {
            Some((vkey, _)) => {
                muts.push(move_entry(shard, T_VERSIONS, &vkey, T_OBJECTS, found.key).await?);
                muts.push(Mutation::Delete { table: T_VERSIONS, key: vkey });
            }
            None => muts.push(Mutation::Delete { table: T_OBJECTS, key: found.key }),
        }
    } else {
        muts.push(Mutation::Delete { table: T_VERSIONS, key: found.key });
    }
    Ok(Some((muts, found.summary)))
}

/// A version id from the request's `versionId` parameter, if any.
pub fn requested(q: &tessera_proto::router::Query) -> S3Result<Option<VersionSel>> {
    q.get("versionId").map(VersionSel::parse).transpose()
}

/// `NoSuchVersion` when a version was named, `NoSuchKey` otherwise.
pub fn not_found(sel: Option<VersionSel>) -> S3Error {
    match sel {
        Some(_) => S3Error::new(S3ErrorCode::NoSuchVersion),
        None => S3Error::new(S3ErrorCode::NoSuchKey),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::future::Future;

    use tessera_io::{DataBuf, Extent, ShardOptions};

    use super::*;
    use crate::meta::{LockMode, Retention, T_OBJECTS, T_VERSIONS};

    fn run<F: Future>(f: F) -> F::Output {
        monoio::RuntimeBuilder::<monoio::FusionDriver>::new().enable_timer().build().expect("runtime").block_on(f)
    }

    async fn extent(shard: &Shard, data: &[u8]) -> Extent {
        let mut buf = DataBuf::new(data.len());
        buf.spare_mut()[..data.len()].copy_from_slice(data);
        buf.advance(data.len());
        shard.write_data(buf).await.expect("write data")
    }

    /// Drawn in batches, the random parts still never repeat (across
    /// many refills) and are not all zero.
    #[test]
    fn random_parts_of_version_ids_are_distinct_across_refills() {
        let mut seen = HashSet::new();
        for _ in 0..10_000 {
            let r = random8().expect("randomness");
            assert_ne!(r, [0; 8]);
            assert!(seen.insert(r), "{r:?} repeated");
        }
    }

    fn new_version(size: u64, body: Body) -> NewVersion {
        let summary = ObjectSummary::new(size, 1, [0; 16], 0, VersionId::from_parts(0, [0; 8]), false);
        NewVersion { summary, meta: ObjectMeta::default().encode(), body }
    }

    /// Every live entry of the key: (table, summary), and every extent any
    /// of them references (each at most once).
    async fn entries(shard: &Shard, key: &str) -> (Vec<(u8, ObjectSummary)>, usize) {
        let mut out = Vec::new();
        let mut seen = HashSet::new();
        let mut refs = 0;
        let mut keys = vec![(T_OBJECTS, object_key(1, key))];
        keys.extend(shard.range(T_VERSIONS, &versions_prefix(1, key), None, 1000).into_iter().map(|(k, _)| (T_VERSIONS, k)));
        for (table, k) in keys {
            let Some(stored) = shard.load(table, &k).await.expect("load") else { continue };
            out.push((table, ObjectSummary::decode(&stored.summary).expect("summary")));
            if let Body::Extents(es) = stored.body {
                for e in es {
                    refs += 1;
                    assert!(seen.insert((e.segment, e.offset)), "two live entries reference one extent");
                }
            }
        }
        (out, refs)
    }

    async fn apply(shard: &Shard, muts: Vec<Mutation>) {
        shard.commit(muts).await.expect("commit");
    }

    #[test]
    fn demote_promote_and_remove_keep_one_owner_per_extent() {
        let dir = tempfile::tempdir().expect("tempdir");
        run(async {
            let shard = Shard::open(dir.path(), 0, ShardOptions::default()).await.expect("open");
            let mut ids = Vec::new();
            for i in 0..3u8 {
                let e = extent(&shard, &[i; 100]).await;
                let nv = new_version(100, Body::Extents(vec![e]));
                let (muts, s) = place(&shard, 1, "k", Versioning::Enabled, nv, None, [i; 8]).await.expect("place");
                apply(&shard, muts).await;
                ids.push(s.version);
            }
            assert!(ids.windows(2).all(|w| w[0] < w[1]));
            let (all, refs) = entries(&shard, "k").await;
            assert_eq!((all.len(), refs), (3, 3));
            assert_eq!(all[0], (T_OBJECTS, all[0].1.clone()));
            assert_eq!(all[0].1.version, ids[2]);
            // Versions of the key, newest first, after the current one.
            let order: Vec<VersionId> = all.iter().map(|(_, s)| s.version).collect();
            assert_eq!(order, [ids[2], ids[1], ids[0]]);
            // A delete marker demotes the current version too.
            let (muts, marker) =
                place(&shard, 1, "k", Versioning::Enabled, NewVersion::delete_marker(2), None, [9; 8]).await.expect("marker");
            apply(&shard, muts).await;
            assert!(marker.delete_marker && marker.version > ids[2]);
            // Removing the current version (the marker) promotes the newest noncurrent one.
            let (muts, removed) = remove(&shard, 1, "k", VersionSel::Id(marker.version), false).await.expect("remove").expect("found");
            assert!(removed.delete_marker);
            apply(&shard, muts).await;
            let (all, refs) = entries(&shard, "k").await;
            assert_eq!((all.len(), refs), (3, 3));
            assert_eq!((all[0].0, all[0].1.version), (T_OBJECTS, ids[2]));
            // Removing a noncurrent version leaves the current one.
            let (muts, _) = remove(&shard, 1, "k", VersionSel::Id(ids[0]), false).await.expect("remove").expect("found");
            apply(&shard, muts).await;
            assert!(remove(&shard, 1, "k", VersionSel::Id(ids[0]), false).await.expect("again").is_none());
            let (all, refs) = entries(&shard, "k").await;
            assert_eq!((all.len(), refs), (2, 2));
            // Suspended: a null version joins; a second one replaces the first.
            for size in [1u64, 2] {
                let nv = new_version(size, Body::Inline(vec![7; size as usize]));
                let (muts, s) = place(&shard, 1, "k", Versioning::Suspended, nv, None, [0; 8]).await.expect("null");
                assert!(s.null_version);
                apply(&shard, muts).await;
            }
            let (all, _) = entries(&shard, "k").await;
            assert_eq!(all.len(), 3, "one null version, two versioned");
            assert_eq!((all[0].1.null_version, all[0].1.size), (true, 2));
        });
    }

    /// A null replica with id `micros`.
    fn null_replica(micros: u64, size: u64) -> NewVersion {
        let mut nv = new_version(size, Body::Inline(vec![3; size as usize]));
        nv.summary.repl = ReplStatus::Replica;
        nv.summary.version = VersionId::from_parts(micros, [5; 8]);
        nv.summary.null_version = true;
        nv
    }

    #[test]
    fn null_replicas_keep_one_null_version_per_key_and_the_newest_wins() {
        let dir = tempfile::tempdir().expect("tempdir");
        run(async {
            let shard = Shard::open(dir.path(), 0, ShardOptions::default()).await.expect("open");
            let nulls = |all: &[(u8, ObjectSummary)]| {
                all.iter().filter(|(_, s)| s.null_version).map(|(t, s)| (*t, s.version, s.size)).collect::<Vec<_>>()
            };
            // A null version written here (now), then a versioned one over it.
            let nv = new_version(1, Body::Inline(vec![1]));
            let (muts, local_null) = place(&shard, 1, "k", Versioning::Suspended, nv, None, [0; 8]).await.expect("null");
            apply(&shard, muts).await;
            let nv = new_version(2, Body::Inline(vec![2; 2]));
            let (muts, current) = place(&shard, 1, "k", Versioning::Enabled, nv, None, [1; 8]).await.expect("put");
            apply(&shard, muts).await;
            // An older null replica loses: nothing is written.
            let older = local_null.version.micros() - 1_000;
            let (muts, kept) = place(&shard, 1, "k", Versioning::Enabled, null_replica(older, 3), None, [0; 8]).await.expect("older");
            assert!(muts.is_empty());
            assert_eq!(kept.version, local_null.version);
            // A newer one (still older than the current version) replaces it, noncurrent.
            let newer = local_null.version.micros() + 1;
            assert!(newer < current.version.micros());
            let (muts, _) = place(&shard, 1, "k", Versioning::Enabled, null_replica(newer, 4), None, [0; 8]).await.expect("newer");
            apply(&shard, muts).await;
            let (all, _) = entries(&shard, "k").await;
            assert_eq!(nulls(&all), vec![(T_VERSIONS, VersionId::from_parts(newer, [5; 8]), 4)]);
            assert_eq!(all.len(), 2);
            // Delivered again: written in place.
            let (muts, _) = place(&shard, 1, "k", Versioning::Enabled, null_replica(newer, 4), None, [0; 8]).await.expect("again");
            apply(&shard, muts).await;
            let (all, _) = entries(&shard, "k").await;
            assert_eq!(all.len(), 2);
            // One newer than the current version becomes current and the
            // noncurrent null version goes.
            let newest = current.version.micros() + 1;
            let (muts, _) = place(&shard, 1, "k", Versioning::Enabled, null_replica(newest, 5), None, [0; 8]).await.expect("newest");
            apply(&shard, muts).await;
            let (all, _) = entries(&shard, "k").await;
            assert_eq!(nulls(&all), vec![(T_OBJECTS, VersionId::from_parts(newest, [5; 8]), 5)]);
            assert_eq!(all.len(), 2, "the null replica and the demoted versioned one");
        });
    }

    #[test]
    fn locks_and_undecodable_summaries_refuse_removal() {
        let dir = tempfile::tempdir().expect("tempdir");
        run(async {
            let shard = Shard::open(dir.path(), 0, ShardOptions::default()).await.expect("open");
            let mut nv = new_version(1, Body::Inline(vec![1]));
            nv.summary.retention = Some(Retention { mode: LockMode::Compliance, until_ms: i64::MAX });
            let (muts, s) = place(&shard, 1, "locked", Versioning::Enabled, nv, None, [0; 8]).await.expect("place");
            apply(&shard, muts).await;
            let sel = VersionSel::Id(s.version);
            let e = remove(&shard, 1, "locked", sel, true).await.expect_err("compliance holds against bypass");
            assert_eq!(e.code, S3ErrorCode::AccessDenied);
            // A summary of a version this code does not know: never removed,
            // never overwritten, never read as unlocked.
            let okey = object_key(1, "future");
            let m = Mutation::Put { table: T_OBJECTS, key: okey.clone(), summary: vec![99, 1, 2, 3], meta: Vec::new(), body: Body::Inline(Vec::new()) };
            apply(&shard, vec![m]).await;
            assert!(remove(&shard, 1, "future", VersionSel::Null, true).await.is_err());
            let nv = new_version(1, Body::Inline(vec![1]));
            assert!(place(&shard, 1, "future", Versioning::Suspended, nv, None, [0; 8]).await.is_err());
            assert!(shard.get(T_OBJECTS, &okey).is_some(), "still there");
        });
    }
}
