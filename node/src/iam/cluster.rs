//! The IAM store in a cluster (issue 12): users, groups, roles, managed
//! policies and access keys follow the Raft configuration instead of the
//! meta shards, so every node serves the same identities.
//!
//! - **Records** (FORMAT BOUNDARY): one configuration key per entity,
//!   `iam/u/<account>/<lowercased name>` (users), `iam/g/...` (groups),
//!   `iam/r/...` (roles), `iam/p/...` (managed policies) and
//!   `iam/k/<access key id>`. The value is a version byte (1), the kind
//!   byte (`u`, `g`, `r`, `p`, `k`) and the entity's own record
//!   (`model`, length-prefixed), the same bytes a single node keeps in its
//!   meta shards. An unknown version is refused, never guessed at.
//! - **Secrets:** an access key's secret is sealed with the cluster's key
//!   (`NodeKeys::for_cluster`, derived from the cluster secret), never
//!   written in plain to the Raft log; STS tokens are sealed with the
//!   cluster's token key, so a token issued by one node opens on every node.
//! - **Writes:** a change (`IamStore::update`) is one `Command::Txn`: its
//!   writes, plus the guard key `iam/guard`, applied only if the guard still
//!   has the version of the state the change was computed from. Every IAM
//!   change rewrites the guard, so changes are serialized across the
//!   cluster as the node-wide claim serializes them on one node: the checks
//!   a change makes (a user has no keys left, a policy exists) hold when it
//!   applies. A change that lost the race is computed again on the newer
//!   state (at most `UPDATE_RETRIES` times, then ConcurrentModification).
//!   No leader, or no commit within `RAFT_WRITE_TIMEOUT`: 503.
//! - **Feed:** the Raft thread kicks `follow` (reactor 0) after an apply
//!   that touched an `iam/` key; it rebuilds the whole snapshot from those
//!   keys. A record that cannot be read (logged) makes the snapshot empty
//!   and marked unreadable: the node fails closed (no IAM identity
//!   authenticates there, no IAM change is taken: 503) rather than serve
//!   entities without a record that may hold a Deny, or keep serving a key
//!   deleted since. The next change of the guard reads every record again.
//!   A node that wrote waits until its own
//!   snapshot holds the write before answering (read-your-writes on that
//!   node); a request (S3, IAM or STS) signed with an access key or
//!   session this node does not know is authenticated again once it has
//!   applied the leader's read index (a key created a moment ago through
//!   another node; while no leader is known, asked again for up to 2 s).
//!   An IAM or STS call refused (4xx) is answered again once
//!   the node has applied the leader's read index, if that changed the
//!   snapshot (`api::serve`): an error computed on a lagging snapshot (a
//!   user created a moment ago through another node: NoSuchEntity) is not
//!   final; a success is, as its change was checked against the guard.
//! - **Import:** the records a node kept in its meta shards before it
//!   joined (sealed with its node key) are proposed, re-sealed with the
//!   cluster's key, as `Txn`s that create each key only if absent; the
//!   local record is removed once the cluster holds the same entity. A
//!   name the cluster holds differently is logged and not imported.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tessera_raft::Command;

use super::store::{IamState, IamStore, NameKey, Txn};
use super::IamError;
use crate::buckets::cluster::{RAFT_WRITE_TIMEOUT, UPDATE_RETRIES};
use crate::cluster_raft::{ClusterRaft, WriteOutcome};
use crate::codec::{Dec, Enc};
use crate::meta::T_IAM;
use crate::shards::Shards;

/// Every IAM configuration key starts with this.
pub const KEY_PREFIX: &str = "iam/";
/// Rewritten by every IAM change; a change applies only if its version is
/// the one the change was computed from.
pub const GUARD_KEY: &str = "iam/guard";
/// Version 1 of a record's value: kind byte, entity bytes.
const RECORD_V1: u8 = 1;
/// The guard's value: its version byte only.
const GUARD_V1: u8 = 1;
/// Longest a node waits to apply an index it needs (its own write, or a
/// leader's read index).
const CATCH_UP_WAIT: Duration = Duration::from_secs(10);
/// How long a lookup asks again for a read index while no leader is known
/// (an election takes about a second).
const LEADER_WAIT: Duration = Duration::from_secs(2);
/// Attempts (one a second) to import local records before giving up.
const IMPORT_ATTEMPTS: usize = 600;

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error("an empty IAM record")]
    Empty,
    #[error("IAM record version {0} is unknown to this build (it reads version {RECORD_V1}); upgrade this node")]
    UnknownVersion(u8),
    #[error("an IAM record cut short or with trailing bytes")]
    Malformed,
    #[error("the entity inside the IAM record is corrupt, or its secret is sealed under another cluster secret")]
    Entity,
    #[error("the IAM record is kept under another entity's key")]
    Misplaced,
}

/// The configuration key of a user, group, role or managed policy.
pub fn entity_key(kind: u8, k: &NameKey) -> String {
    format!("{KEY_PREFIX}{}/{}/{}", kind as char, k.0, k.1)
}

/// The configuration key of an access key.
pub fn access_key_key(id: &str) -> String {
    format!("{KEY_PREFIX}{}/{id}", super::store::K_KEY as char)
}

/// The configuration value of an entity (FORMAT BOUNDARY, module doc).
pub fn encode_record(kind: u8, entity: &[u8]) -> Vec<u8> {
    let mut e = Enc::new(RECORD_V1);
    e.u8(kind).bytes(entity);
    e.finish()
}

pub fn decode_record(b: &[u8]) -> Result<(u8, &[u8]), RecordError> {
    let version = Dec::version_of(b).ok_or(RecordError::Empty)?;
    if version != RECORD_V1 {
        return Err(RecordError::UnknownVersion(version));
    }
    let mut d = Dec::new(b, RECORD_V1).ok_or(RecordError::Malformed)?;
    let kind = d.u8().ok_or(RecordError::Malformed)?;
    let entity = d.bytes().ok_or(RecordError::Malformed)?;
    d.end().ok_or(RecordError::Malformed)?;
    Ok((kind, entity))
}

/// Adds the record kept under `key` to `st` (secrets opened with `keys`).
fn insert(st: &mut IamState, key: &str, value: &[u8], keys: &super::keys::NodeKeys) -> Result<(), RecordError> {
    let (kind, entity) = decode_record(value)?;
    let at = st.insert_record(kind, entity, keys).ok_or(RecordError::Entity)?;
    if at != key {
        return Err(RecordError::Misplaced);
    }
    Ok(())
}

/// The node's link to the Raft configuration, set once at start.
pub struct IamLink {
    pub raft: Arc<ClusterRaft>,
    /// Kicked (coalescing, never blocking) by the Raft thread after an apply
    /// that touched an IAM key.
    kick: async_channel::Receiver<()>,
}

impl IamLink {
    pub fn new(raft: Arc<ClusterRaft>) -> IamLink {
        let (tx, rx) = async_channel::bounded(1);
        raft.store().subscribe(Arc::new(move |c: &tessera_raft::state_machine::Change<'_>| {
            if c.keys.is_none_or(|keys| keys.iter().any(|k| k.starts_with(KEY_PREFIX))) {
                let _ = tx.try_send(());
            }
        }));
        IamLink { raft, kick: rx }
    }
}

fn unavailable(why: impl std::fmt::Display) -> IamError {
    tracing::warn!(error = %why, "IAM configuration write: no commit");
    IamError::new("ServiceUnavailable", 503, "The cluster configuration cannot be written now (no leader); retry.")
}

fn not_applied(index: u64) -> IamError {
    tracing::warn!(index, "IAM: this node did not apply the configuration in time");
    IamError::new(
        "ServiceUnavailable",
        503,
        "This node has not applied the cluster configuration yet; the change may have been made. Retry.",
    )
}

fn conflict() -> IamError {
    IamError::new(
        "ConcurrentModification",
        409,
        "The request was rejected because multiple requests to change this object were submitted simultaneously.",
    )
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

/// Whether two states hold the same entities.
fn same_entities(a: &IamState, b: &IamState) -> bool {
    a.users == b.users && a.groups == b.groups && a.roles == b.roles && a.policies == b.policies && a.keys == b.keys
}

impl IamStore {
    /// Makes this store follow the cluster (once, before serving).
    pub fn attach_cluster(&self, link: IamLink) {
        if self.cluster.set(link).is_err() {
            tracing::error!("IAM store: attached to the cluster twice");
        }
    }

    pub fn clustered(&self) -> bool {
        self.cluster.get().is_some()
    }

    /// Rebuilds the snapshot from the applied `iam/` keys (unless it already
    /// reflects that index); a record that cannot be read makes it empty
    /// and unreadable (fail closed).
    fn rebuild(&self, link: &IamLink) {
        let _one = self.rebuilding.lock().unwrap_or_else(|e| e.into_inner());
        let published = self.published.load(Ordering::SeqCst);
        // Every IAM change rewrites the guard: the same guard, the same
        // records (the snapshot just moves to the newer index).
        let (index, guard) = link.raft.store().get(GUARD_KEY);
        if index <= published {
            return;
        }
        if published > 0 && guard.map_or(0, |g| g.version) == self.state.load().guard {
            self.published.store(index, Ordering::SeqCst);
            return;
        }
        let (index, entries) = link.raft.store().with_prefix(KEY_PREFIX);
        let mut st = IamState::default();
        for (key, v) in &entries {
            if key == GUARD_KEY {
                st.guard = v.version;
                continue;
            }
            if let Err(e) = insert(&mut st, key, &v.value, &self.keys) {
                tracing::error!(key, version = v.version, error = %e, "IAM record unreadable: this node serves no IAM identity and takes no IAM change until it can read every record");
                let guard = entries.iter().find(|(k, _)| k == GUARD_KEY).map_or(0, |(_, v)| v.version);
                st = IamState::default();
                st.guard = guard;
                st.unreadable = true;
                break;
            }
        }
        self.state.store(Arc::new(st));
        self.published.store(index, Ordering::SeqCst);
    }

    /// Reactor 0 in cluster mode: keeps the snapshot equal to the applied
    /// `iam/` keys until the node stops.
    pub async fn follow(&self) {
        let Some(link) = self.cluster.get() else { return };
        loop {
            self.rebuild(link);
            if link.kick.recv().await.is_err() {
                return;
            }
        }
    }

    /// Whether the snapshot reflects the configuration index `index`,
    /// waiting up to `CATCH_UP_WAIT` for this node to apply it.
    async fn catch_up_to(&self, link: &IamLink, index: u64) -> bool {
        if self.published.load(Ordering::SeqCst) >= index {
            return true;
        }
        if !within_catch_up(|| link.raft.store().applied_index() >= index).await {
            return false;
        }
        self.rebuild(link);
        self.published.load(Ordering::SeqCst) >= index
    }

    /// The configuration index this node's IAM snapshot reflects (0
    /// outside a cluster): forwarded requests carry it (`forward`).
    pub fn published_index(&self) -> u64 {
        if self.cluster.get().is_none() {
            return 0;
        }
        self.published.load(Ordering::SeqCst)
    }

    /// Whether the snapshot reflects the configuration index a forwarder
    /// sent (waiting up to `CATCH_UP_WAIT` to apply it): a change made
    /// through that node applies to the request it forwarded here.
    pub async fn caught_up_to(&self, index: u64) -> bool {
        match self.cluster.get() {
            Some(link) => self.catch_up_to(link, index).await,
            None => true,
        }
    }

    /// In a cluster: brings the snapshot to the leader's read index (an
    /// access key created a moment ago through another node). Whether the
    /// snapshot may have changed; false outside a cluster or with no leader.
    pub async fn catch_up(&self) -> bool {
        let Some(link) = self.cluster.get() else { return false };
        let started = Instant::now();
        let index = loop {
            match monoio::time::timeout(RAFT_WRITE_TIMEOUT, link.raft.read_index()).await {
                Ok(Ok(i)) => break i,
                // No leader known (an election): asked again for a while.
                Ok(Err(_)) if started.elapsed() < LEADER_WAIT => monoio::time::sleep(Duration::from_millis(50)).await,
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "IAM lookup: cannot confirm with the cluster's leader");
                    return false;
                }
                Err(_) => return false,
            }
        };
        self.catch_up_to(link, index).await
    }

    async fn propose(&self, link: &IamLink, cmd: &Command) -> Result<WriteOutcome, IamError> {
        match monoio::time::timeout(RAFT_WRITE_TIMEOUT, link.raft.write(cmd)).await {
            Ok(Ok(o)) => Ok(o),
            Ok(Err(e)) => Err(unavailable(e)),
            Err(_) => Err(unavailable("timed out")),
        }
    }

    /// `update` in a cluster (see the module doc).
    pub(super) async fn update_clustered<R>(
        &self,
        link: &IamLink,
        mut f: impl FnMut(&mut Txn<'_>) -> Result<R, IamError>,
    ) -> Result<R, IamError> {
        for _ in 0..UPDATE_RETRIES {
            let mut txn = self.txn();
            if txn.state.unreadable {
                return Err(IamError::new(
                    "ServiceUnavailable",
                    503,
                    "This node cannot read the cluster's IAM records (see its log); retry through another node.",
                ));
            }
            let guard = txn.state.guard;
            let out = f(&mut txn)?;
            let mut writes = std::mem::take(&mut txn.writes);
            if writes.is_empty() {
                return Ok(out);
            }
            writes.push((GUARD_KEY.to_string(), Some(vec![GUARD_V1])));
            let cmd = Command::Txn { checks: vec![(GUARD_KEY.to_string(), guard)], writes };
            let o = self.propose(link, &cmd).await?;
            if !self.catch_up_to(link, o.index).await {
                return Err(not_applied(o.index));
            }
            if o.response.ok {
                return Ok(out);
            }
            // Another change came first (maybe through another node): the
            // snapshot now holds it; compute this one again.
        }
        Err(conflict())
    }

    /// Proposes the records of this node's meta shards (from before it
    /// joined) to the cluster, re-sealed with the cluster's key, once a
    /// leader is known; removes each local record once the cluster holds
    /// the same entity.
    pub async fn import_local(&self, shards: &Shards) {
        let (Some(link), Some(node_keys)) = (self.cluster.get(), self.node_keys.as_ref()) else { return };
        let (local, n) = match self.read_local(shards, node_keys).await {
            Ok(x) => x,
            Err(e) => {
                tracing::error!(error = %e, "IAM import: cannot read this node's own IAM records; they are not imported");
                return;
            }
        };
        if n == 0 {
            return;
        }
        // The records as the cluster keeps them, through a change on an
        // empty state: its writes and its local records come in pairs.
        let mut txn = self.txn();
        txn.state = IamState::default();
        for u in local.users.values() {
            txn.put_user(super::model::IamUser::clone(u));
        }
        for g in local.groups.values() {
            txn.put_group(super::model::IamGroup::clone(g));
        }
        for r in local.roles.values() {
            txn.put_role(super::model::IamRole::clone(r));
        }
        for p in local.policies.values() {
            txn.put_policy(super::model::ManagedPolicy::clone(p));
        }
        for k in local.keys.values() {
            if let Err(e) = txn.put_key(super::model::AccessKey::clone(k)) {
                tracing::error!(access_key = k.id, error = e.message, "IAM import: cannot seal an access key");
            }
        }
        let records = txn.take_records();
        tracing::info!(records = records.len(), "IAM import: proposing this node's own IAM entities to the cluster");
        let mut pending: BTreeMap<String, (Vec<u8>, Vec<u8>)> = records.into_iter().collect();
        for _ in 0..IMPORT_ATTEMPTS {
            let keys: Vec<String> = pending.keys().cloned().collect();
            for key in keys {
                let (value, local_key) = &pending[&key];
                let cmd = Command::Txn {
                    checks: vec![(key.clone(), 0)],
                    writes: vec![(key.clone(), Some(value.clone())), (GUARD_KEY.to_string(), Some(vec![GUARD_V1]))],
                };
                let Ok(o) = self.propose(link, &cmd).await else { break }; // no leader yet: the next round
                let held = o.response.ok || {
                    let _ = self.catch_up_to(link, o.index).await;
                    let (_, current) = link.raft.store().get(&key);
                    let (mut ours, mut theirs) = (IamState::default(), IamState::default());
                    let same = current.is_some_and(|c| {
                        insert(&mut theirs, &key, &c.value, &self.keys).is_ok()
                            && insert(&mut ours, &key, value, &self.keys).is_ok()
                            && same_entities(&ours, &theirs)
                    });
                    if !same {
                        tracing::error!(key, "IAM import: the cluster holds another entity of this name; this node's is not imported (its record stays in the meta shards)");
                        pending.remove(&key);
                        continue;
                    }
                    true
                };
                if held {
                    if let Err(e) = self.store.delete(shards, T_IAM, local_key).await {
                        tracing::warn!(key, error = %e, "IAM import: the local record stays (imported again next start)");
                    }
                    tracing::info!(key, "IAM import: the cluster holds this node's entity");
                    pending.remove(&key);
                }
            }
            if pending.is_empty() {
                return;
            }
            monoio::time::sleep(Duration::from_secs(1)).await;
        }
        tracing::error!(left = pending.len(), "IAM import: gave up (no leader); restart the node to try again");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::iam::keys::NodeKeys;
    use crate::iam::model::{AccessKey, IamUser};
    use crate::iam::store::{name_key, K_USER};

    fn user() -> IamUser {
        IamUser {
            account: "acct".into(),
            name: "Alice".into(),
            path: "/".into(),
            id: "AIDAALICE".into(),
            created_ms: 5,
            inline: Default::default(),
            attached: Vec::new(),
            boundary: None,
            tags: Vec::new(),
        }
    }

    #[test]
    fn records_round_trip_under_their_key_and_refuse_the_rest() {
        let keys = NodeKeys::for_cluster(b"a secret of the test cluster").unwrap();
        let u = user();
        let key = entity_key(K_USER, &name_key("acct", "Alice"));
        assert_eq!(key, "iam/u/acct/alice");
        let v = encode_record(K_USER, &u.encode());
        assert_eq!(v[0], RECORD_V1);
        let mut st = IamState::default();
        insert(&mut st, &key, &v, &keys).unwrap();
        assert_eq!(st.user("acct", "alice").map(|u| u.as_ref()), Some(&u));
        assert_eq!(insert(&mut IamState::default(), "iam/u/acct/bob", &v, &keys), Err(RecordError::Misplaced));
        let mut newer = v.clone();
        newer[0] = 2;
        let e = decode_record(&newer).unwrap_err();
        assert_eq!(e, RecordError::UnknownVersion(2));
        assert!(e.to_string().contains("version 2 is unknown"), "{e}");
        assert_eq!(decode_record(&[]), Err(RecordError::Empty));
        for cut in 1..v.len() {
            assert!(insert(&mut IamState::default(), &key, &v[..cut], &keys).is_err(), "cut at {cut} accepted");
        }
        let mut longer = v.clone();
        longer.push(0);
        assert_eq!(decode_record(&longer), Err(RecordError::Malformed));
        let bad_kind = encode_record(b'x', &u.encode());
        assert_eq!(insert(&mut IamState::default(), &key, &bad_kind, &keys), Err(RecordError::Entity));
    }

    #[test]
    fn access_key_records_hold_no_plain_secret_and_open_only_with_the_cluster_key() {
        let keys = NodeKeys::for_cluster(b"a secret of the test cluster").unwrap();
        let k = AccessKey {
            id: "AKIATEST".into(),
            secret: "the-plain-secret-value".into(),
            account: "acct".into(),
            user: None,
            active: true,
            created_ms: 1,
        };
        let sealed = keys.seal_secret(&k.id, &k.secret).unwrap();
        let v = encode_record(super::super::store::K_KEY, &k.encode(&sealed));
        assert!(!v.windows(k.secret.len()).any(|w| w == k.secret.as_bytes()), "the secret is sealed");
        let key = access_key_key(&k.id);
        assert_eq!(key, "iam/k/AKIATEST");
        let mut st = IamState::default();
        insert(&mut st, &key, &v, &keys).unwrap();
        assert_eq!(st.keys.get("AKIATEST").map(|k| k.secret.as_str()), Some("the-plain-secret-value"));
        let other = NodeKeys::for_cluster(b"another cluster's secret!!").unwrap();
        assert_eq!(insert(&mut IamState::default(), &key, &v, &other), Err(RecordError::Entity));
    }
}
