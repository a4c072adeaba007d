//! Buckets in a cluster (issue 12): the registry follows the Raft
//! configuration instead of the meta shards.
//!
//! - **Records:** key `bucket/<name>`, value an envelope (FORMAT BOUNDARY,
//!   `encode_envelope`): a version byte, the record's state (normal or
//!   deleting), then `BucketInfo::encode`'s summary and meta bytes, each
//!   length-prefixed. An unknown version is refused, never guessed at.
//! - **Writes:** CreateBucket is a `Cas { expect: 0 }` (one of two
//!   concurrent creates of a name wins, the other gets 409); a
//!   configuration update is a `Cas` on the version it read, redone on a
//!   lost race (at most `UPDATE_RETRIES` times). No leader, or no commit
//!   within `RAFT_WRITE_TIMEOUT`: 503.
//! - **Feed:** the Raft thread kicks `follow` (reactor 0) after an apply
//!   that touched a `bucket/` key; it rebuilds the snapshot from those keys
//!   only, reusing unchanged buckets and keeping a bucket's write gate
//!   across its updates. A node that wrote waits until its snapshot holds
//!   the write before answering (read-your-writes on that node).
//! - **DeleteBucket:** a `Cas` to "deleting" (every node's feed closes the
//!   bucket's gate), then `METHOD_BUCKET_DRAIN` to every gossip member
//!   (alive or not): each waits until its snapshot holds the mark, waits
//!   for the writes inside its gate, and answers whether its shards hold
//!   any object or version of the bucket id. All empty: `Cas` delete;
//!   otherwise `Cas` back to normal and BucketNotEmpty; a member that does
//!   not answer: back to normal and 503 (emptiness unknown).
//! - **Import:** a node that ran alone before keeps its buckets in its meta
//!   shards; once in a cluster it proposes each with `Cas { expect: 0 }`
//!   and removes the local record once the cluster holds it (a name the
//!   cluster gives another bucket is logged and not served).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tessera_proto::{S3Error, S3ErrorCode, S3Result};
use tessera_raft::Command;

use super::info::BucketInfo;
use super::registry::{Buckets, Snapshot, DELETE_DRAIN_TIMEOUT};
use crate::cluster::ClusterNode;
use crate::cluster_raft::{ClusterRaft, WriteOutcome};
use crate::codec::{Dec, Enc};
use crate::meta::{bucket_prefix, T_BUCKETS, T_OBJECTS, T_VERSIONS};
use crate::shards::Shards;

/// The configuration keys of buckets: `bucket/<name>`.
pub const KEY_PREFIX: &str = "bucket/";
/// Version 1 of the envelope: state byte, summary, meta bytes.
const ENVELOPE_V1: u8 = 1;
const STATE_NORMAL: u8 = 0;
const STATE_DELETING: u8 = 1;

/// Ask every member whether its shards hold anything of a bucket being
/// deleted (payload: `encode_drain_call`; answer: version, then 1 = empty).
pub const METHOD_BUCKET_DRAIN: u16 = 40;
const DRAIN_CALL_V1: u8 = 1;
/// A member's whole answer to `METHOD_BUCKET_DRAIN` (it may wait for
/// writes inside the gate, up to `DELETE_DRAIN_TIMEOUT`).
const DRAIN_CALL_TIMEOUT: Duration = Duration::from_secs(40);
/// Longest a configuration write waits for its commit before answering 503.
pub const RAFT_WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest a node waits for its own write (or a known newer version) to
/// reach its snapshot.
const CATCH_UP_WAIT: Duration = Duration::from_secs(10);
/// Times an update is redone after losing a race to another one.
pub const UPDATE_RETRIES: usize = 8;
/// Attempts (one a second) to import local buckets before giving up.
const IMPORT_ATTEMPTS: usize = 600;

/// A bucket record's state in the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordState {
    Normal,
    /// A DeleteBucket is checking every node: new writes are refused.
    Deleting,
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    #[error("an empty bucket envelope")]
    Empty,
    #[error("bucket envelope version {0} is unknown to this build (it reads version {ENVELOPE_V1}); upgrade this node")]
    UnknownVersion(u8),
    #[error("a bucket envelope cut short or with trailing bytes")]
    Malformed,
    #[error("bucket record state {0} is unknown to this build")]
    UnknownState(u8),
    #[error("the bucket record inside the envelope is corrupt")]
    Record,
}

pub fn bucket_key(name: &str) -> String {
    format!("{KEY_PREFIX}{name}")
}

/// The Raft value of a bucket record (FORMAT BOUNDARY, see the module doc).
pub fn encode_envelope(info: &BucketInfo, state: RecordState) -> Vec<u8> {
    let (summary, meta) = info.encode();
    let mut e = Enc::new(ENVELOPE_V1);
    e.u8(match state {
        RecordState::Normal => STATE_NORMAL,
        RecordState::Deleting => STATE_DELETING,
    });
    e.bytes(&summary).bytes(&meta);
    e.finish()
}

pub fn decode_envelope(b: &[u8]) -> Result<(BucketInfo, RecordState), EnvelopeError> {
    let version = Dec::version_of(b).ok_or(EnvelopeError::Empty)?;
    if version != ENVELOPE_V1 {
        return Err(EnvelopeError::UnknownVersion(version));
    }
    let mut d = Dec::new(b, ENVELOPE_V1).ok_or(EnvelopeError::Malformed)?;
    let state = match d.u8().ok_or(EnvelopeError::Malformed)? {
        STATE_NORMAL => RecordState::Normal,
        STATE_DELETING => RecordState::Deleting,
        s => return Err(EnvelopeError::UnknownState(s)),
    };
    let summary = d.bytes().ok_or(EnvelopeError::Malformed)?;
    let meta = d.bytes().ok_or(EnvelopeError::Malformed)?;
    d.end().ok_or(EnvelopeError::Malformed)?;
    let info = BucketInfo::decode(summary, meta).ok_or(EnvelopeError::Record)?;
    Ok((info, state))
}

/// The node's link to its cluster, set once at start in cluster mode.
pub struct ClusterLink {
    pub node: Arc<ClusterNode>,
    pub raft: Arc<ClusterRaft>,
    /// Kicked (coalescing, never blocking) by the Raft thread after an apply
    /// that touched a bucket key.
    kick: async_channel::Receiver<()>,
}

impl ClusterLink {
    pub fn new(node: Arc<ClusterNode>, raft: Arc<ClusterRaft>) -> ClusterLink {
        let (tx, rx) = async_channel::bounded(1);
        raft.store().subscribe(Arc::new(move |c: &tessera_raft::state_machine::Change<'_>| {
            let touched = c.keys.is_none_or(|keys| keys.iter().any(|k| k.starts_with(KEY_PREFIX)));
            if touched {
                let _ = tx.try_send(());
            }
        }));
        ClusterLink { node, raft, kick: rx }
    }
}

fn unavailable(why: impl std::fmt::Display) -> S3Error {
    tracing::warn!(error = %why, "bucket configuration write: no commit");
    S3Error::with_message(S3ErrorCode::ServiceUnavailable, "The cluster configuration cannot be written now (no leader); retry.")
}

/// Polls `done` every millisecond, up to `CATCH_UP_WAIT`: whether it held.
async fn within_catch_up(done: impl Fn() -> bool) -> bool {
    let started = Instant::now();
    while !done() {
        if started.elapsed() > CATCH_UP_WAIT {
            return false;
        }
        monoio::time::sleep(Duration::from_millis(1)).await;
    }
    true
}

fn unconfirmed(why: impl std::fmt::Display) -> S3Error {
    tracing::warn!(error = %why, "bucket lookup: cannot confirm with the cluster's leader");
    S3Error::with_message(
        S3ErrorCode::ServiceUnavailable,
        "This node cannot confirm the bucket with the cluster configuration now (no leader); retry.",
    )
}

fn conflict() -> S3Error {
    S3Error::with_message(
        S3ErrorCode::OperationAborted,
        "A conflicting conditional operation is currently in progress against this resource.",
    )
}

fn already(owned_by_you: bool) -> S3Error {
    S3Error::new(if owned_by_you { S3ErrorCode::BucketAlreadyOwnedByYou } else { S3ErrorCode::BucketAlreadyExists })
}

/// A record as read from this node's applied state.
struct Current {
    version: u64,
    info: BucketInfo,
    state: RecordState,
}

impl Buckets {
    /// Makes this registry follow the cluster (once, before serving).
    pub fn attach_cluster(&self, link: ClusterLink) {
        if self.cluster.set(link).is_err() {
            tracing::error!("bucket registry: attached to the cluster twice");
        }
    }

    pub fn clustered(&self) -> bool {
        self.cluster.get().is_some()
    }

    /// Rebuilds the snapshot from the applied `bucket/` keys: an unchanged
    /// version reuses its `BucketInfo`; a changed one keeps the gate of the
    /// same bucket (name and id) and opens or closes it by the record's
    /// state; a bucket gone has its gate closed.
    pub(super) fn rebuild(&self, link: &ClusterLink) {
        // Under the lock from the read on: two rebuilds (the feed's and a
        // missed lookup's) publish in the order they read, never an older
        // state over a newer one.
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        let (index, entries) = link.raft.store().with_prefix(KEY_PREFIX);
        let current = self.map.load_full();
        let mut next = Snapshot::new();
        let mut next_seen = HashMap::with_capacity(entries.len());
        for (key, v) in entries {
            let name = &key[KEY_PREFIX.len()..];
            next_seen.insert(name.to_string(), v.version);
            if seen.get(name) == Some(&v.version) {
                if let Some(b) = current.get(name) {
                    next.insert(name.to_string(), b.clone());
                }
                continue;
            }
            match decode_envelope(&v.value) {
                Ok((info, _)) if info.name != name => {
                    tracing::error!(key, record = %info.name, "bucket record under another name's key; not served");
                    info.gate.close();
                }
                Ok((mut info, state)) => {
                    if let Some(old) = current.get(name).filter(|o| o.id == info.id) {
                        info.gate = old.gate.clone();
                    }
                    match state {
                        RecordState::Normal => info.gate.reopen(),
                        RecordState::Deleting => info.gate.close(),
                    }
                    next.insert(name.to_string(), Arc::new(info));
                }
                Err(e) => tracing::error!(key, version = v.version, error = %e, "bucket record unreadable; not served"),
            }
        }
        let mut gone = Vec::new();
        for (name, old) in current.iter() {
            if next.get(name).is_none_or(|n| n.id != old.id) {
                old.gate.close();
                gone.push(old.id);
            }
        }
        if !gone.is_empty() {
            self.gone.lock().unwrap_or_else(|e| e.into_inner()).extend(gone);
        }
        self.store_snapshot(|_| next);
        *seen = next_seen;
        self.published.fetch_max(index, Ordering::SeqCst);
    }

    /// Reactor 0 in cluster mode: keeps the snapshot equal to the applied
    /// `bucket/` keys until the node stops.
    /// `purge` is handed the id of every bucket gone from the
    /// configuration (whichever node ran the DeleteBucket), to drop what
    /// this node still holds of it (uploads in progress).
    pub async fn follow(&self, purge: impl Fn(u64)) {
        let Some(link) = self.cluster.get() else { return };
        loop {
            self.rebuild(link);
            let gone = std::mem::take(&mut *self.gone.lock().unwrap_or_else(|e| e.into_inner()));
            gone.into_iter().for_each(&purge);
            if link.kick.recv().await.is_err() {
                return;
            }
        }
    }

    /// The bucket `name`. In a cluster a name this node's snapshot lacks is
    /// looked up again once this node has applied the leader's read index
    /// (a node that restarted, or a bucket created a moment ago through
    /// another node, is not yet in the snapshot), so NoSuchBucket is only
    /// answered for a bucket that really does not exist; with no leader to
    /// confirm it, 503.
    pub async fn find(&self, name: &str) -> S3Result<Arc<BucketInfo>> {
        if let Some(b) = self.get(name) {
            return Ok(b);
        }
        let Some(link) = self.cluster.get() else { return Err(S3Error::new(S3ErrorCode::NoSuchBucket)) };
        let index = match monoio::time::timeout(RAFT_WRITE_TIMEOUT, link.raft.read_index()).await {
            Ok(Ok(i)) => i,
            Ok(Err(e)) => return Err(unconfirmed(e)),
            Err(_) => return Err(unconfirmed("timed out")),
        };
        if !within_catch_up(|| link.raft.store().applied_index() >= index).await {
            return Err(unconfirmed(format!("index {index} not applied in time")));
        }
        // Absent from the applied state: no rebuild of the whole snapshot
        // (a client asking for a missing bucket over and over costs a key
        // lookup, not a copy of every bucket).
        let (applied, record) = link.raft.store().get(&bucket_key(name));
        // (Debug: what a NoSuchBucket right after a CreateBucket through
        // another node would need explained; the cluster tests log it.)
        tracing::debug!(bucket = name, read_index = index, applied, in_state = record.is_some(), published = self.published.load(Ordering::SeqCst), "bucket lookup: not in this node's snapshot");
        if record.is_none() {
            return Err(S3Error::new(S3ErrorCode::NoSuchBucket));
        }
        self.rebuild(link);
        self.get(name).ok_or_else(|| {
            tracing::debug!(bucket = name, "bucket lookup: in the applied state but not in the rebuilt snapshot");
            S3Error::new(S3ErrorCode::NoSuchBucket)
        })
    }

    /// The configuration index this node's bucket snapshot reflects (0
    /// outside a cluster): forwarded requests carry it (`forward`).
    pub fn published_index(&self) -> u64 {
        if self.cluster.get().is_none() {
            return 0;
        }
        self.published.load(Ordering::SeqCst)
    }

    /// Whether this node's bucket snapshot reflects the configuration index
    /// `index` (a forwarder's), waiting up to `CATCH_UP_WAIT` for the
    /// node to apply it: a setting changed through another node then
    /// applies to the request it forwarded here.
    pub async fn catch_up_to(&self, index: u64) -> bool {
        let Some(link) = self.cluster.get() else { return true };
        if self.published.load(Ordering::SeqCst) >= index {
            return true;
        }
        if !within_catch_up(|| link.raft.store().applied_index() >= index).await {
            tracing::warn!(index, "a forwarded request waits for a configuration this node has not applied in time");
            return false;
        }
        // Applied, but the snapshot is published only when bucket keys
        // change: bring it to the applied index now.
        if self.published.load(Ordering::SeqCst) < index {
            self.rebuild(link);
        }
        true
    }

    /// Waits (up to `CATCH_UP_WAIT`) until this node's snapshot reflects
    /// the applied index `index`.
    async fn caught_up(&self, index: u64) {
        if !within_catch_up(|| self.published.load(Ordering::SeqCst) >= index).await {
            tracing::warn!(index, "bucket registry: this node did not apply its own write in time");
        }
    }

    async fn propose(&self, link: &ClusterLink, cmd: Command) -> S3Result<WriteOutcome> {
        match monoio::time::timeout(RAFT_WRITE_TIMEOUT, link.raft.write(&cmd)).await {
            Ok(Ok(o)) => Ok(o),
            Ok(Err(e)) => Err(unavailable(e)),
            Err(_) => Err(unavailable("timed out")),
        }
    }

    /// The record of `name` in this node's applied state, once that state
    /// is at least at `at_least` (a version another node's answer named).
    async fn current(&self, link: &ClusterLink, name: &str, at_least: u64) -> S3Result<Option<Current>> {
        self.caught_up(at_least).await;
        let (_, v) = link.raft.store().get(&bucket_key(name));
        let Some(v) = v else { return Ok(None) };
        match decode_envelope(&v.value) {
            Ok((info, state)) => Ok(Some(Current { version: v.version, info, state })),
            Err(e) => {
                tracing::error!(bucket = name, error = %e, "bucket record unreadable");
                Err(S3Error::new(S3ErrorCode::InternalError))
            }
        }
    }

    async fn cas(&self, link: &ClusterLink, name: &str, expect: u64, value: Option<Vec<u8>>) -> S3Result<WriteOutcome> {
        self.propose(link, Command::Cas { key: bucket_key(name), expect, value }).await
    }

    pub(super) async fn create_clustered(&self, link: &ClusterLink, info: BucketInfo, max_per_owner: usize) -> S3Result<()> {
        let _guard = self.claim(&info.name)?;
        if let Some(existing) = self.get(&info.name) {
            return Err(already(existing.owner_id == info.owner_id));
        }
        let _slot = self.reserve_for(&info.owner_id, max_per_owner)?;
        let out = self.cas(link, &info.name, 0, Some(encode_envelope(&info, RecordState::Normal))).await?;
        if out.response.ok {
            self.caught_up(out.index).await;
            tracing::debug!(bucket = info.name, index = out.index, published = self.published.load(Ordering::SeqCst), "bucket created");
            return Ok(());
        }
        // Another create won: its owner decides the answer.
        match self.current(link, &info.name, out.response.version).await? {
            Some(c) => Err(already(c.info.owner_id == info.owner_id)),
            None => Err(conflict()),
        }
    }

    pub(super) async fn update_clustered(
        &self,
        link: &ClusterLink,
        name: &str,
        mut f: impl FnMut(&mut BucketInfo) -> S3Result<()>,
    ) -> S3Result<Arc<BucketInfo>> {
        let _guard = self.claim_waiting(name).await?;
        let mut at_least = 0;
        for _ in 0..UPDATE_RETRIES {
            let Some(c) = self.current(link, name, at_least).await? else {
                return Err(S3Error::new(S3ErrorCode::NoSuchBucket));
            };
            if c.state == RecordState::Deleting {
                return Err(conflict());
            }
            let mut next = c.info.clone();
            f(&mut next)?;
            if next == c.info {
                return self.get(name).ok_or_else(|| S3Error::new(S3ErrorCode::NoSuchBucket));
            }
            let out = self.cas(link, name, c.version, Some(encode_envelope(&next, RecordState::Normal))).await?;
            if out.response.ok {
                self.caught_up(out.index).await;
                return self.get(name).ok_or_else(|| S3Error::new(S3ErrorCode::NoSuchBucket));
            }
            // Lost to another update (maybe on another node): redo the edit
            // on the version that won.
            at_least = out.response.version;
        }
        Err(conflict())
    }

    pub(super) async fn delete_clustered(&self, link: &ClusterLink, shards: &Shards, name: &str) -> S3Result<()> {
        let _guard = self.claim(name)?;
        let Some(c) = self.current(link, name, 0).await? else {
            return Err(S3Error::new(S3ErrorCode::NoSuchBucket));
        };
        // A "deleting" record left by a DeleteBucket that died midway is
        // taken over: the checks below are redone.
        let marked = self.cas(link, name, c.version, Some(encode_envelope(&c.info, RecordState::Deleting))).await?;
        if !marked.response.ok {
            return Err(conflict());
        }
        let verdict = self.every_member_empty(link, shards, name, c.info.id, marked.index).await;
        let (value, answer) = match verdict {
            Ok(true) => (None, Ok(())),
            Ok(false) => (Some(encode_envelope(&c.info, RecordState::Normal)), Err(S3Error::new(S3ErrorCode::BucketNotEmpty))),
            Err(e) => (Some(encode_envelope(&c.info, RecordState::Normal)), Err(e)),
        };
        let out = self.cas(link, name, marked.index, value).await?;
        if !out.response.ok {
            tracing::error!(bucket = name, "bucket record changed while it was being deleted");
            return Err(conflict());
        }
        self.caught_up(out.index).await;
        answer
    }

    /// Asks every member (this node included) whether it holds anything
    /// of bucket `id`. Any member that cannot answer makes it unknown: 503.
    async fn every_member_empty(&self, link: &ClusterLink, shards: &Shards, name: &str, id: u64, index: u64) -> S3Result<bool> {
        let members = link.node.members();
        let pool = crate::cluster_pool::RpcPool::new(link.node.clone());
        let payload = encode_drain_call(name, id, index);
        // A node another acts for holds nothing it serves (`takeover`): the
        // acting node answers for its keys.
        let owners = link.node.owners.load_full();
        let calls: Vec<_> = members
            .iter()
            .filter(|m| !m.local)
            .filter(|m| owners.as_ref().is_none_or(|o| o.acting_for(&m.identity.id_hex()) == m.identity.id_hex()))
            .map(|m| {
                let (pool, payload, peer) = (pool.clone(), payload.clone(), m.identity.clone());
                monoio::spawn(async move {
                    let r = pool.call(&peer, METHOD_BUCKET_DRAIN, payload, DRAIN_CALL_TIMEOUT).await;
                    (peer.addr, r)
                })
            })
            .collect();
        let mut empty = self.drain_and_check(shards, name, id, index).await?;
        let mut unknown = None;
        for c in calls {
            match c.await {
                (_, Ok(a)) if a == [DRAIN_CALL_V1, 1] => {}
                (_, Ok(a)) if a == [DRAIN_CALL_V1, 0] => empty = false,
                (addr, Ok(a)) => unknown = Some(format!("{addr}: a malformed answer {a:?}")),
                (addr, Err(e)) => unknown = Some(format!("{addr}: {e}")),
            }
        }
        if !empty {
            return Ok(false);
        }
        if let Some(why) = unknown {
            tracing::warn!(bucket = name, member = %why, "DeleteBucket: a member could not say whether it holds objects");
            return Err(S3Error::with_message(
                S3ErrorCode::ServiceUnavailable,
                "A cluster member could not be asked whether it holds objects of this bucket; retry.",
            ));
        }
        Ok(true)
    }

    /// This node's part of a DeleteBucket: once its snapshot holds the
    /// "deleting" mark at `index` (the gate closed), waits for the writes
    /// inside to commit, then looks for anything of bucket `id`.
    pub async fn drain_and_check(&self, shards: &Shards, name: &str, id: u64, index: u64) -> S3Result<bool> {
        self.caught_up(index).await;
        if self.published.load(Ordering::SeqCst) < index {
            return Err(S3Error::new(S3ErrorCode::ServiceUnavailable));
        }
        if let Some(info) = self.get(name).filter(|b| b.id == id) {
            let started = Instant::now();
            while info.gate.writes_inside() > 0 {
                if started.elapsed() > DELETE_DRAIN_TIMEOUT {
                    return Err(conflict());
                }
                monoio::time::sleep(Duration::from_millis(1)).await;
            }
        }
        let node = self.cluster.get().map(|l| l.node.clone());
        holds_nothing_of(shards, crate::takeover::listed_ids(node.as_deref(), shards.count()), id).await
    }

    /// Proposes the buckets of this node's meta shards (from before it
    /// joined) to the cluster, once a leader is known; removes each local
    /// record once the cluster holds that bucket.
    pub async fn import_local(&self, shards: &Shards) {
        let Some(link) = self.cluster.get() else { return };
        let local = match self.store.load(shards, T_BUCKETS, BucketInfo::summary_has_meta).await {
            Ok((summaries, metas, _)) => summaries
                .iter()
                .filter_map(|(k, s)| BucketInfo::decode(s, metas.get(k).map(Vec::as_slice).unwrap_or_default()))
                .collect::<Vec<_>>(),
            Err(e) => {
                tracing::error!(error = %e, "bucket import: cannot read the local bucket records");
                return;
            }
        };
        if local.is_empty() {
            return;
        }
        tracing::info!(buckets = local.len(), "bucket import: proposing this node's own buckets to the cluster");
        let mut pending: BTreeMap<String, BucketInfo> = local.into_iter().map(|b| (b.name.clone(), b)).collect();
        for _ in 0..IMPORT_ATTEMPTS {
            let names: Vec<String> = pending.keys().cloned().collect();
            for name in names {
                let info = &pending[&name];
                let out = match self.cas(link, &name, 0, Some(encode_envelope(info, RecordState::Normal))).await {
                    Ok(o) => o,
                    Err(_) => break, // no leader yet: the next round
                };
                let held = if out.response.ok {
                    true
                } else {
                    match self.current(link, &name, out.response.version).await {
                        Ok(Some(c)) if c.info.id == info.id => true,
                        Ok(Some(c)) => {
                            tracing::error!(bucket = name, local_id = info.id, cluster_id = c.info.id, "bucket import: the cluster has another bucket of this name; this node's bucket is not served (its objects stay on disk)");
                            pending.remove(&name);
                            continue;
                        }
                        _ => false,
                    }
                };
                if held {
                    if let Err(e) = self.store.delete(shards, T_BUCKETS, name.as_bytes()).await {
                        tracing::warn!(bucket = name, error = %e, "bucket import: the local record stays (imported again next start)");
                    }
                    tracing::info!(bucket = name, "bucket import: the cluster holds this node's bucket");
                    pending.remove(&name);
                }
            }
            if pending.is_empty() {
                return;
            }
            monoio::time::sleep(Duration::from_secs(1)).await;
        }
        tracing::error!(left = pending.len(), "bucket import: gave up (no leader); restart the node to try again");
    }
}

/// Whether no shard of this node holds an object or version (delete
/// markers included) of bucket `id`.
pub async fn holds_nothing_of(shards: &Shards, ids: Vec<u32>, id: u64) -> S3Result<bool> {
    let prefix = bucket_prefix(id);
    for shard in ids {
        for table in [T_OBJECTS, T_VERSIONS] {
            let found = shards.range(shard, table, prefix.clone(), None, 1).await.map_err(crate::s3::io_error)?;
            if !found.is_empty() {
                return Ok(false);
            }
        }
    }
    Ok(true)
}

/// `METHOD_BUCKET_DRAIN`'s payload (FORMAT BOUNDARY): version, bucket id,
/// the index of the "deleting" mark, the name.
pub fn encode_drain_call(name: &str, id: u64, index: u64) -> Vec<u8> {
    let mut e = Enc::new(DRAIN_CALL_V1);
    e.u64(id).u64(index).str(name);
    e.finish()
}

pub fn decode_drain_call(b: &[u8]) -> Result<(String, u64, u64), String> {
    match Dec::version_of(b) {
        Some(DRAIN_CALL_V1) => {}
        Some(v) => return Err(format!("bucket drain call version {v} is unknown to this node")),
        None => return Err("an empty bucket drain call".into()),
    }
    let mut d = Dec::new(b, DRAIN_CALL_V1).ok_or("malformed")?;
    let (id, index, name) = (|| Some((d.u64()?, d.u64()?, d.str()?)))().ok_or("a malformed bucket drain call")?;
    d.end().ok_or("a bucket drain call with trailing bytes")?;
    Ok((name, id, index))
}

/// Serves `METHOD_BUCKET_DRAIN` on this node: the answer payload, or the
/// error payload.
pub async fn serve_drain(buckets: &Buckets, shards: &Shards, payload: &[u8]) -> Result<Vec<u8>, Vec<u8>> {
    let (name, id, index) = decode_drain_call(payload).map_err(String::into_bytes)?;
    match buckets.drain_and_check(shards, &name, id, index).await {
        Ok(empty) => Ok(vec![DRAIN_CALL_V1, u8::from(empty)]),
        Err(e) => Err(format!("{:?}", e.code).into_bytes()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bucket() -> BucketInfo {
        let mut e = Enc::new(1);
        e.u64(42).str("photos").str("owner").str("Owner").i64(5).opt_str(Some("eu"));
        let mut b = BucketInfo::decode(&e.finish(), b"").expect("v1 record");
        b.tags = vec![("team".into(), "a".into())];
        b.versioning = super::super::Versioning::Enabled;
        b
    }

    #[test]
    fn envelope_round_trips_in_both_states() {
        let b = bucket();
        for state in [RecordState::Normal, RecordState::Deleting] {
            let v = encode_envelope(&b, state);
            assert_eq!(v[0], ENVELOPE_V1);
            assert_eq!(decode_envelope(&v), Ok((b.clone(), state)));
        }
    }

    #[test]
    fn envelope_refuses_unknown_versions_states_and_truncations() {
        let v = encode_envelope(&bucket(), RecordState::Normal);
        assert_eq!(decode_envelope(&[]), Err(EnvelopeError::Empty));
        let mut newer = v.clone();
        newer[0] = 2;
        let e = decode_envelope(&newer).unwrap_err();
        assert_eq!(e, EnvelopeError::UnknownVersion(2));
        assert!(e.to_string().contains("version 2 is unknown"), "{e}");
        let mut state = v.clone();
        state[1] = 7;
        assert_eq!(decode_envelope(&state), Err(EnvelopeError::UnknownState(7)));
        for cut in 1..v.len() {
            assert!(decode_envelope(&v[..cut]).is_err(), "cut at {cut} accepted");
        }
        let mut longer = v.clone();
        longer.push(0);
        assert_eq!(decode_envelope(&longer), Err(EnvelopeError::Malformed));
        // A well-framed envelope around a corrupt record.
        let mut e = Enc::new(ENVELOPE_V1);
        e.u8(STATE_NORMAL).bytes(&[9, 9]).bytes(&[]);
        assert_eq!(decode_envelope(&e.finish()), Err(EnvelopeError::Record));
    }

    #[test]
    fn drain_call_round_trips_and_refuses_others() {
        let c = encode_drain_call("photos", 42, 17);
        assert_eq!(decode_drain_call(&c), Ok(("photos".to_string(), 42, 17)));
        let mut newer = c.clone();
        newer[0] = 9;
        assert!(decode_drain_call(&newer).unwrap_err().contains("version 9"));
        for cut in 0..c.len() {
            assert!(decode_drain_call(&c[..cut]).is_err());
        }
    }
}
