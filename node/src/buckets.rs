//! Buckets: a registry every reactor reads without locks (an `ArcSwap`
//! snapshot), kept durable as records in the meta shard's bucket table.
//!
//! Creating and deleting a bucket is rare: those two take a mutex (never on
//! the object path), commit the record, then publish a new snapshot.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use tessera_io::{Body, Mutation};
use tessera_proto::{S3Error, S3ErrorCode, S3Result};

use crate::codec::{Dec, Enc};
use crate::meta::{T_BUCKETS, META_SHARD};
use crate::shards::Shards;

const BUCKET_V1: u8 = 1;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BucketInfo {
    /// Random id chosen at creation; keys of the bucket's objects carry it.
    pub id: u64,
    pub name: String,
    pub owner_id: String,
    pub owner_display: String,
    pub created_ms: i64,
    pub location: Option<String>,
    /// Not stored: the writes to this bucket in flight, which DeleteBucket
    /// waits out (see [`WriteGate`]).
    pub gate: Arc<WriteGate>,
}

/// Orders object writes against DeleteBucket. A write enters the gate right
/// before it commits and leaves once the commit is acknowledged; DeleteBucket
/// closes the gate, waits until no write is inside, and only then checks
/// that the bucket is empty. Either the write gets in first (and DeleteBucket
/// then sees its object) or it finds the gate closed and answers
/// NoSuchBucket: no write is acknowledged into a bucket that is then deleted.
/// (Both sides use SeqCst: each sees the other's flag or counter.)
#[derive(Debug, Default)]
pub struct WriteGate {
    inside: AtomicU64,
    closed: AtomicBool,
}

/// A write inside the gate; leaving is dropping it.
pub struct GateGuard(Arc<WriteGate>);

impl Drop for GateGuard {
    fn drop(&mut self) {
        self.0.inside.fetch_sub(1, Ordering::SeqCst);
    }
}

impl WriteGate {
    fn enter(self: &Arc<Self>) -> Option<GateGuard> {
        self.inside.fetch_add(1, Ordering::SeqCst);
        let guard = GateGuard(self.clone());
        (!self.closed.load(Ordering::SeqCst)).then_some(guard)
    }

    fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
    }

    fn reopen(&self) {
        self.closed.store(false, Ordering::SeqCst);
    }

    fn writes_inside(&self) -> u64 {
        self.inside.load(Ordering::SeqCst)
    }
}

/// The gate carries no stored state: two infos are equal when their stored fields are.
impl PartialEq for WriteGate {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for WriteGate {}

/// Longest a DeleteBucket waits for writes already committing to finish.
pub const DELETE_DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

impl BucketInfo {
    /// Enters the bucket's write gate right before a commit; hold the guard
    /// until the commit is acknowledged. `NoSuchBucket` once the bucket is
    /// being deleted or is gone (also when it was deleted and created again
    /// since the request looked it up: the new one has another gate).
    pub fn enter_write(&self) -> S3Result<GateGuard> {
        self.gate.enter().ok_or_else(|| S3Error::new(S3ErrorCode::NoSuchBucket))
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut e = Enc::new(BUCKET_V1);
        e.u64(self.id).str(&self.name).str(&self.owner_id).str(&self.owner_display).i64(self.created_ms);
        e.opt_str(self.location.as_deref());
        e.finish()
    }

    pub fn decode(b: &[u8]) -> Option<Self> {
        let mut d = Dec::new(b, BUCKET_V1)?;
        Some(BucketInfo {
            id: d.u64()?,
            name: d.str()?,
            owner_id: d.str()?,
            owner_display: d.str()?,
            created_ms: d.i64()?,
            location: d.opt_str()?,
            gate: Arc::default(),
        })
    }
}

type Snapshot = BTreeMap<String, Arc<BucketInfo>>;

#[derive(Default)]
pub struct Buckets {
    map: ArcSwap<Snapshot>,
    /// Names with a create or delete in flight.
    busy: Mutex<HashSet<String>>,
    /// Creates in flight per owner id, counted against the owner's limit.
    creating: Mutex<HashMap<String, usize>>,
}

/// One create in flight for an owner (see `Buckets::creating`).
struct CreatingGuard<'a> {
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

/// S3 bucket naming rules (the current, strict ones).
pub fn valid_bucket_name(name: &str) -> bool {
    let b = name.as_bytes();
    if !(3..=63).contains(&b.len()) {
        return false;
    }
    let edge_ok = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    if !edge_ok(b[0]) || !edge_ok(b[b.len() - 1]) {
        return false;
    }
    if !b.iter().all(|&c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'.' || c == b'-') {
        return false;
    }
    if name.contains("..") || name.contains(".-") || name.contains("-.") {
        return false;
    }
    if name.parse::<std::net::Ipv4Addr>().is_ok() {
        return false;
    }
    !(name.starts_with("xn--") || name.starts_with("sthree-") || name.ends_with("-s3alias") || name.ends_with("--ol-s3"))
}

struct BusyGuard<'a> {
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
    pub fn get(&self, name: &str) -> Option<Arc<BucketInfo>> {
        self.map.load().get(name).cloned()
    }

    pub fn list_owned_by(&self, owner_id: &str) -> Vec<Arc<BucketInfo>> {
        self.map.load().values().filter(|b| b.owner_id == owner_id).cloned().collect()
    }

    /// Loads every bucket record from the meta shard (at start, on its owner).
    pub fn load_from(&self, shard: &tessera_io::Shard) -> Result<usize, String> {
        let mut snap = Snapshot::new();
        let mut after: Option<Vec<u8>> = None;
        loop {
            let batch = shard.range(T_BUCKETS, b"", after.as_deref(), 1000);
            if batch.is_empty() {
                break;
            }
            for (k, e) in &batch {
                let info = BucketInfo::decode(&e.summary)
                    .ok_or_else(|| format!("bucket record {:?} is corrupt", String::from_utf8_lossy(k)))?;
                snap.insert(info.name.clone(), Arc::new(info));
            }
            after = batch.last().map(|(k, _)| k.clone());
        }
        let n = snap.len();
        self.map.store(Arc::new(snap));
        Ok(n)
    }

    fn claim(&self, name: &str) -> S3Result<BusyGuard<'_>> {
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
        self.map.rcu(|cur| {
            let mut next = Snapshot::clone(cur);
            f(&mut next);
            next
        });
    }

    /// Counts the owner's buckets and creates in flight against `max_per_owner`.
    fn reserve_for(&self, owner: &str, max_per_owner: usize) -> S3Result<CreatingGuard<'_>> {
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
        let _guard = self.claim(&info.name)?;
        if let Some(existing) = self.get(&info.name) {
            return Err(S3Error::new(if existing.owner_id == info.owner_id {
                S3ErrorCode::BucketAlreadyOwnedByYou
            } else {
                S3ErrorCode::BucketAlreadyExists
            }));
        }
        let _slot = self.reserve_for(&info.owner_id, max_per_owner)?;
        let m = Mutation::Put {
            table: T_BUCKETS,
            key: info.name.as_bytes().to_vec(),
            summary: info.encode(),
            meta: Vec::new(),
            body: Body::Inline(Vec::new()),
        };
        shards.commit(META_SHARD, vec![m]).await.map_err(internal)?;
        let info = Arc::new(info);
        self.publish(|s| {
            s.insert(info.name.clone(), info.clone());
        });
        Ok(())
    }

    /// Deletes `name` after `is_empty` confirms it holds nothing: closes its
    /// write gate first and waits until the writes inside have committed, so
    /// the check sees every acknowledged object.
    pub async fn delete<F, Fut>(&self, shards: &Shards, name: &str, is_empty: F) -> S3Result<()>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = S3Result<bool>>,
    {
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
            let m = Mutation::Delete { table: T_BUCKETS, key: name.as_bytes().to_vec() };
            shards.commit(META_SHARD, vec![m]).await.map(drop).map_err(internal)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_names() {
        for ok in ["abc", "my-bucket", "a.b.c", "123", &"a".repeat(63)] {
            assert!(valid_bucket_name(ok), "{ok}");
        }
        for bad in ["ab", &"a".repeat(64), "ABC", "a_b", "-ab", "ab-", "a..b", "192.168.1.1", "a.-b", "xn--ab", ".ab"] {
            assert!(!valid_bucket_name(bad), "{bad}");
        }
    }

    #[test]
    fn info_round_trip() {
        let i = BucketInfo {
            id: 7,
            name: "b".into(),
            owner_id: "o".into(),
            owner_display: "d".into(),
            created_ms: 5,
            location: Some("eu".into()),
            gate: Arc::default(),
        };
        assert_eq!(BucketInfo::decode(&i.encode()), Some(i));
    }
}
