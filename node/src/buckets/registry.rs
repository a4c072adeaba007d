//! `Buckets`, the in-memory registry: an `ArcSwap` snapshot every reactor
//! reads without locks, loaded from the bucket table at start; create,
//! update and delete claim the name, commit the record in every data dir's
//! meta shard (through `MetaStore`), then publish a new snapshot.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use arc_swap::ArcSwap;
use tessera_proto::{S3Error, S3ErrorCode, S3Result};

use super::cluster::ClusterLink;
use super::info::BucketInfo;
use crate::meta::T_BUCKETS;
use crate::metastore::MetaStore;
use crate::shards::Shards;

/// Longest a configuration update waits for another one on the same bucket.
pub const UPDATE_CLAIM_WAIT: Duration = Duration::from_secs(5);

/// Longest a DeleteBucket waits for writes already committing to finish.
pub const DELETE_DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

pub(super) type Snapshot = BTreeMap<String, Arc<BucketInfo>>;

pub struct Buckets {
    pub(super) map: ArcSwap<Snapshot>,
    /// Where the records live: one copy per data dir (standalone; in a
    /// cluster only the buckets from before it joined, see `cluster.rs`).
    pub(super) store: MetaStore,
    /// Set in cluster mode: the records are in the Raft configuration.
    pub(super) cluster: OnceLock<ClusterLink>,
    /// Cluster mode: the applied index the snapshot reflects.
    pub(super) published: AtomicU64,
    /// Cluster mode: the Raft version of each bucket in the snapshot.
    pub(super) seen: Mutex<HashMap<String, u64>>,
    /// Cluster mode: ids of buckets gone from the configuration since the
    /// feed last looked (their leftover uploads are purged on this node).
    pub(super) gone: Mutex<Vec<u64>>,
    /// Names with a create or delete in flight.
    busy: Mutex<HashSet<String>>,
    /// Creates in flight per owner id, counted against the owner's limit.
    creating: Mutex<HashMap<String, usize>>,
    /// The buckets with a lifecycle configuration, by id (what the shards
    /// index, `lifecycle::index::Ruled`): stored before each snapshot
    /// that changes it, under `storing`.
    ruled: Arc<crate::lifecycle::index::Ruled>,
    /// Serializes snapshot stores, so `ruled` always matches the newest.
    storing: Mutex<()>,
}

/// One create in flight for an owner (see `Buckets::creating`).
pub(super) struct CreatingGuard<'a> {
    map: &'a Mutex<HashMap<String, usize>>,
    owner: String,
}

impl Drop for CreatingGuard<'_> {
    fn drop(&mut self) {
        if let Ok(mut m) = self.map.lock() {
            if let Some(n) = m.get_mut(&self.owner) {
                *n -= 1;
                if *n == 0 {
                    m.remove(&self.owner);
                }
            }
        }
    }
}
pub(super) struct BusyGuard<'a> {
    set: &'a Mutex<HashSet<String>>,
    name: String,
}

impl Drop for BusyGuard<'_> {
    fn drop(&mut self) {
        if let Ok(mut s) = self.set.lock() {
            s.remove(&self.name);
        }
    }
}

fn internal(e: impl std::fmt::Display) -> S3Error {
    tracing::error!("bucket metadata: {e}");
    S3Error::new(S3ErrorCode::InternalError)
}

impl Buckets {
    /// An empty registry kept in `meta_shards` (one per data dir).
    pub fn new(meta_shards: Vec<u32>) -> Self {
        Buckets {
            map: ArcSwap::default(),
            store: MetaStore::new(meta_shards),
            cluster: OnceLock::new(),
            published: AtomicU64::new(0),
            seen: Mutex::default(),
            gone: Mutex::default(),
            busy: Mutex::default(),
            creating: Mutex::default(),
            ruled: Arc::default(),
            storing: Mutex::default(),
        }
    }

    /// The node's set of buckets with a lifecycle configuration (for the
    /// shards, which index only theirs).
    pub fn ruled(&self) -> Arc<crate::lifecycle::index::Ruled> {
        self.ruled.clone()
    }

    /// Publishes the snapshot `f` makes of the current one. The ruled set
    /// is stored first: whoever sees a configuration in the snapshot (the
    /// lifecycle worker) is sure the shards' later commits index it.
    pub(super) fn store_snapshot(&self, f: impl FnOnce(&Snapshot) -> Snapshot) {
        let _one = self.storing.lock().unwrap_or_else(|e| e.into_inner());
        let next = f(&self.map.load());
        let ruled: HashMap<u64, u64> = next.values().filter(|b| b.lifecycle.is_some()).map(|b| (b.id, b.lifecycle_stamp)).collect();
        let counted = next.values().filter(|b| b.lifecycle.as_ref().is_some_and(|l| crate::lifecycle::nc::counts(l))).map(|b| b.id).collect();
        self.ruled.store(ruled, counted);
        self.map.store(Arc::new(next));
    }

    pub fn get(&self, name: &str) -> Option<Arc<BucketInfo>> {
        self.map.load().get(name).cloned()
    }

    /// Buckets of every owner.
    pub fn count(&self) -> usize {
        self.map.load().len()
    }

    /// Every bucket whose configuration satisfies `f`.
    pub fn matching(&self, f: impl Fn(&BucketInfo) -> bool) -> Vec<Arc<BucketInfo>> {
        self.map.load().values().filter(|b| f(b)).cloned().collect()
    }

    pub fn list_owned_by(&self, owner_id: &str) -> Vec<Arc<BucketInfo>> {
        self.map.load().values().filter(|b| b.owner_id == owner_id).cloned().collect()
    }

    /// Loads every bucket record from the meta shard (at start, on its owner).
    /// Loads every bucket record (at start, from every copy: the newest
    /// of each wins), then rewrites the copies that lag. Returns the count.
    pub async fn load(&self, shards: &Shards) -> Result<usize, String> {
        let (summaries, metas, stale) = self.store.load(shards, T_BUCKETS, BucketInfo::summary_has_meta).await?;
        let mut snap = Snapshot::new();
        for (k, summary) in &summaries {
            let meta = metas.get(k).map(Vec::as_slice).unwrap_or_default();
            let info = BucketInfo::decode(summary, meta)
                .ok_or_else(|| format!("bucket record {:?} is corrupt", String::from_utf8_lossy(k)))?;
            snap.insert(info.name.clone(), Arc::new(info));
        }
        let n = snap.len();
        self.store_snapshot(|_| snap);
        if !stale.is_empty() {
            let fixed = self.store.repair(shards, T_BUCKETS, stale).await;
            tracing::warn!(fixed, "bucket registry copies that lagged were rewritten");
        }
        Ok(n)
    }

    pub(super) fn claim(&self, name: &str) -> S3Result<BusyGuard<'_>> {
        let mut busy = self.busy.lock().map_err(internal)?;
        if !busy.insert(name.to_string()) {
            return Err(S3Error::with_message(
                S3ErrorCode::OperationAborted,
                "A conflicting conditional operation is currently in progress against this resource.",
            ));
        }
        Ok(BusyGuard { set: &self.busy, name: name.to_string() })
    }

    fn publish(&self, f: impl Fn(&mut Snapshot)) {
        self.store_snapshot(|cur| {
            let mut next = Snapshot::clone(cur);
            f(&mut next);
            next
        });
    }

    /// Counts the owner's buckets and creates in flight against `max_per_owner`.
    pub(super) fn reserve_for(&self, owner: &str, max_per_owner: usize) -> S3Result<CreatingGuard<'_>> {
        let mut creating = self.creating.lock().map_err(internal)?;
        let pending = creating.get(owner).copied().unwrap_or(0);
        let owned = self.map.load().values().filter(|b| b.owner_id == owner).count();
        if owned + pending >= max_per_owner {
            return Err(S3Error::new(S3ErrorCode::TooManyBuckets));
        }
        *creating.entry(owner.to_string()).or_insert(0) += 1;
        Ok(CreatingGuard { map: &self.creating, owner: owner.to_string() })
    }

    /// Creates a bucket unless the name is taken or its owner already has
    /// `max_per_owner` buckets.
    pub async fn create(&self, shards: &Shards, info: BucketInfo, max_per_owner: usize) -> S3Result<()> {
        if let Some(link) = self.cluster.get() {
            return self.create_clustered(link, info, max_per_owner).await;
        }
        let _guard = self.claim(&info.name)?;
        if let Some(existing) = self.get(&info.name) {
            return Err(S3Error::new(if existing.owner_id == info.owner_id {
                S3ErrorCode::BucketAlreadyOwnedByYou
            } else {
                S3ErrorCode::BucketAlreadyExists
            }));
        }
        let _slot = self.reserve_for(&info.owner_id, max_per_owner)?;
        self.persist(shards, &info).await?;
        let info = Arc::new(info);
        self.publish(|s| {
            s.insert(info.name.clone(), info.clone());
        });
        Ok(())
    }

    async fn persist(&self, shards: &Shards, info: &BucketInfo) -> S3Result<()> {
        let (summary, meta) = info.encode();
        self.store.put(shards, T_BUCKETS, info.name.as_bytes(), summary, meta).await.map_err(internal)
    }

    /// Changes the configuration of bucket `name`: `f` edits a copy of its
    /// record (or refuses with the S3 error to answer); the new record is
    /// committed, then published. Updates of one name are serialized (and
    /// never overlap its create or delete); the write gate carries over. In
    /// a cluster `f` may run again on a newer record after a lost race.
    pub async fn update(
        &self,
        shards: &Shards,
        name: &str,
        f: impl FnMut(&mut BucketInfo) -> S3Result<()>,
    ) -> S3Result<Arc<BucketInfo>> {
        if let Some(link) = self.cluster.get() {
            return self.update_clustered(link, name, f).await;
        }
        let mut f = f;
        let _guard = self.claim_waiting(name).await?;
        let current = self.get(name).ok_or_else(|| S3Error::new(S3ErrorCode::NoSuchBucket))?;
        let mut next = BucketInfo::clone(&current);
        f(&mut next)?;
        if next == *current {
            return Ok(current);
        }
        debug_assert!(Arc::ptr_eq(&next.gate, &current.gate));
        self.persist(shards, &next).await?;
        let next = Arc::new(next);
        let published = next.clone();
        self.publish(|s| {
            s.insert(published.name.clone(), published.clone());
        });
        Ok(next)
    }

    /// Like `claim`, but waits (up to `UPDATE_CLAIM_WAIT`) for another
    /// update of the same name to finish instead of failing at once.
    pub(super) async fn claim_waiting(&self, name: &str) -> S3Result<BusyGuard<'_>> {
        let started = std::time::Instant::now();
        loop {
            match self.claim(name) {
                Ok(g) => return Ok(g),
                Err(e) if started.elapsed() >= UPDATE_CLAIM_WAIT => return Err(e),
                Err(_) => monoio::time::sleep(Duration::from_millis(1)).await,
            }
        }
    }

    /// Deletes `name` after `is_empty` confirms it holds nothing: closes its
    /// write gate first and waits until the writes inside have committed, so
    /// the check sees every acknowledged object.
    pub async fn delete<F, Fut>(&self, shards: &Shards, name: &str, is_empty: F) -> S3Result<()>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = S3Result<bool>>,
    {
        if let Some(link) = self.cluster.get() {
            return self.delete_clustered(link, shards, name).await;
        }
        let _guard = self.claim(name)?;
        let Some(info) = self.get(name) else {
            return Err(S3Error::new(S3ErrorCode::NoSuchBucket));
        };
        info.gate.close();
        let result = async {
            let started = std::time::Instant::now();
            while info.gate.writes_inside() > 0 {
                if started.elapsed() > DELETE_DRAIN_TIMEOUT {
                    return Err(S3Error::new(S3ErrorCode::OperationAborted));
                }
                monoio::time::sleep(Duration::from_millis(1)).await;
            }
            if !is_empty().await? {
                return Err(S3Error::new(S3ErrorCode::BucketNotEmpty));
            }
            self.store.delete(shards, T_BUCKETS, name.as_bytes()).await.map_err(internal)
        }
        .await;
        if result.is_err() {
            info.gate.reopen();
            return result;
        }
        self.publish(|s| {
            s.remove(name);
        });
        Ok(())
    }
}
