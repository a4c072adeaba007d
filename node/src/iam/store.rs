//! The IAM store: every account's users, groups, roles, managed policies
//! and access keys, durable as records of `T_IAM` kept like the bucket
//! registry, once in every data dir (`metastore`; one record per entity) and served from an
//! immutable snapshot every reactor reads without locks. Changes are
//! serialized (one at a time for the whole node: they are rare), committed,
//! then published; a request sees the snapshot of its start, so a deleted
//! or deactivated key stops working with the next request. In a cluster
//! the records follow the Raft configuration instead (`iam::cluster`).

use std::collections::BTreeMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use arc_swap::ArcSwap;
use tessera_io::{Body, Mutation};

use super::keys::NodeKeys;
use super::model::{AccessKey, IamGroup, IamRole, IamUser, ManagedPolicy};
use super::IamError;
use crate::meta::T_IAM;
use crate::metastore::MetaStore;
use crate::shards::Shards;

const SUMMARY_V1: u8 = 1;
/// How long a change waits for another one to finish.
pub const UPDATE_WAIT: Duration = Duration::from_secs(5);

pub(super) const K_USER: u8 = b'u';
pub(super) const K_GROUP: u8 = b'g';
pub(super) const K_ROLE: u8 = b'r';
pub(super) const K_POLICY: u8 = b'p';
pub(super) const K_KEY: u8 = b'k';

/// `(account, lowercased name)`: names are unique per account regardless of case.
pub type NameKey = (String, String);

pub fn name_key(account: &str, name: &str) -> NameKey {
    (account.to_string(), name.to_ascii_lowercase())
}

fn record_key(kind: u8, k: &NameKey) -> Vec<u8> {
    let mut out = Vec::with_capacity(2 + k.0.len() + k.1.len());
    out.push(kind);
    out.extend_from_slice(k.0.as_bytes());
    out.push(0);
    out.extend_from_slice(k.1.as_bytes());
    out
}

#[derive(Debug, Clone, Default)]
pub struct IamState {
    pub users: BTreeMap<NameKey, Arc<IamUser>>,
    pub groups: BTreeMap<NameKey, Arc<IamGroup>>,
    pub roles: BTreeMap<NameKey, Arc<IamRole>>,
    pub policies: BTreeMap<NameKey, Arc<ManagedPolicy>>,
    pub keys: BTreeMap<String, Arc<AccessKey>>,
    /// User id → name key.
    user_ids: BTreeMap<String, NameKey>,
    /// In a cluster: the version of the guard key this state was read with
    /// (`iam::cluster`); 0 on a single node.
    pub(super) guard: u64,
    /// In a cluster: a record of the configuration could not be read, so
    /// this state holds no entity at all (fail closed) and takes no change.
    pub(super) unreadable: bool,
}

impl IamState {
    /// Adds the entity of kind `kind` encoded as `meta` (the secret of an
    /// access key opened with `keys`): the key the cluster configuration
    /// keeps it under, or `None` when it does not decode.
    pub(super) fn insert_record(&mut self, kind: u8, meta: &[u8], keys: &NodeKeys) -> Option<String> {
        use super::cluster::{access_key_key, entity_key};
        Some(match kind {
            K_USER => {
                let u = IamUser::decode(meta)?;
                let nk = name_key(&u.account, &u.name);
                self.user_ids.insert(u.id.clone(), nk.clone());
                let key = entity_key(K_USER, &nk);
                self.users.insert(nk, Arc::new(u));
                key
            }
            K_GROUP => {
                let g = IamGroup::decode(meta)?;
                let nk = name_key(&g.account, &g.name);
                let key = entity_key(K_GROUP, &nk);
                self.groups.insert(nk, Arc::new(g));
                key
            }
            K_ROLE => {
                let r = IamRole::decode(meta)?;
                let nk = name_key(&r.account, &r.name);
                let key = entity_key(K_ROLE, &nk);
                self.roles.insert(nk, Arc::new(r));
                key
            }
            K_POLICY => {
                let p = ManagedPolicy::decode(meta)?;
                let nk = name_key(&p.account, &p.name);
                let key = entity_key(K_POLICY, &nk);
                self.policies.insert(nk, Arc::new(p));
                key
            }
            K_KEY => {
                let k = AccessKey::decode(meta, |id, s| keys.open_secret(id, s))?;
                let key = access_key_key(&k.id);
                self.keys.insert(k.id.clone(), Arc::new(k));
                key
            }
            _ => return None,
        })
    }

    pub fn user(&self, account: &str, name: &str) -> Option<&Arc<IamUser>> {
        self.users.get(&name_key(account, name))
    }

    pub fn user_by_id(&self, id: &str) -> Option<&Arc<IamUser>> {
        self.user_ids.get(id).and_then(|k| self.users.get(k))
    }

    pub fn group(&self, account: &str, name: &str) -> Option<&Arc<IamGroup>> {
        self.groups.get(&name_key(account, name))
    }

    pub fn role(&self, account: &str, name: &str) -> Option<&Arc<IamRole>> {
        self.roles.get(&name_key(account, name))
    }

    pub fn role_by_id(&self, account: &str, id: &str) -> Option<&Arc<IamRole>> {
        self.account_range(&self.roles, account).find(|r| r.id == id)
    }

    pub fn policy(&self, account: &str, name: &str) -> Option<&Arc<ManagedPolicy>> {
        self.policies.get(&name_key(account, name))
    }

    /// The entities of `account`, in name order (case-insensitive).
    pub fn account_range<'a, T>(
        &'a self,
        map: &'a BTreeMap<NameKey, Arc<T>>,
        account: &str,
    ) -> impl Iterator<Item = &'a Arc<T>> + 'a {
        let start = (account.to_string(), String::new());
        let acct = account.to_string();
        map.range(start..).take_while(move |((a, _), _)| *a == acct).map(|(_, v)| v)
    }

    /// Groups of `account` that `user_id` belongs to.
    pub fn groups_of<'a>(&'a self, account: &str, user_id: &'a str) -> impl Iterator<Item = &'a Arc<IamGroup>> + 'a {
        self.account_range(&self.groups, account).filter(move |g| g.members.iter().any(|m| m == user_id))
    }

    /// Access keys of a user (`Some(id)`) or of the account's root (`None`).
    pub fn keys_of<'a>(&'a self, account: &'a str, user: Option<&'a str>) -> impl Iterator<Item = &'a Arc<AccessKey>> + 'a {
        self.keys.values().filter(move |k| k.account == account && k.user.as_deref() == user)
    }
}

/// A change being prepared: the next state and the records to commit.
pub struct Txn<'a> {
    pub state: IamState,
    keys: &'a NodeKeys,
    /// The records of the meta shards (a single node).
    muts: Vec<Mutation>,
    /// The same changes as configuration keys and values (a cluster).
    pub(super) writes: Vec<(String, Option<Vec<u8>>)>,
}

fn key_record_key(id: &str) -> Vec<u8> {
    let mut key = vec![K_KEY];
    key.extend_from_slice(id.as_bytes());
    key
}

fn put(kind: u8, key: Vec<u8>, meta: Vec<u8>) -> Mutation {
    Mutation::Put { table: T_IAM, key, summary: vec![SUMMARY_V1, kind], meta, body: Body::Inline(Vec::new()) }
}

impl Txn<'_> {
    fn record(&mut self, kind: u8, key: Vec<u8>, config_key: String, meta: Option<Vec<u8>>) {
        self.writes.push((config_key, meta.as_deref().map(|m| super::cluster::encode_record(kind, m))));
        self.muts.push(match meta {
            Some(meta) => put(kind, key, meta),
            None => Mutation::Delete { table: T_IAM, key },
        });
    }

    fn entity(&mut self, kind: u8, k: &NameKey, meta: Option<Vec<u8>>) {
        self.record(kind, record_key(kind, k), super::cluster::entity_key(kind, k), meta);
    }

    pub fn put_user(&mut self, u: IamUser) {
        let k = name_key(&u.account, &u.name);
        self.entity(K_USER, &k, Some(u.encode()));
        self.state.user_ids.insert(u.id.clone(), k.clone());
        self.state.users.insert(k, Arc::new(u));
    }

    pub fn remove_user(&mut self, account: &str, name: &str) {
        let k = name_key(account, name);
        if let Some(u) = self.state.users.remove(&k) {
            self.state.user_ids.remove(&u.id);
        }
        self.entity(K_USER, &k, None);
    }

    pub fn put_group(&mut self, g: IamGroup) {
        let k = name_key(&g.account, &g.name);
        self.entity(K_GROUP, &k, Some(g.encode()));
        self.state.groups.insert(k, Arc::new(g));
    }

    pub fn remove_group(&mut self, account: &str, name: &str) {
        let k = name_key(account, name);
        self.state.groups.remove(&k);
        self.entity(K_GROUP, &k, None);
    }

    pub fn put_role(&mut self, r: IamRole) {
        let k = name_key(&r.account, &r.name);
        self.entity(K_ROLE, &k, Some(r.encode()));
        self.state.roles.insert(k, Arc::new(r));
    }

    pub fn remove_role(&mut self, account: &str, name: &str) {
        let k = name_key(account, name);
        self.state.roles.remove(&k);
        self.entity(K_ROLE, &k, None);
    }

    pub fn put_policy(&mut self, p: ManagedPolicy) {
        let k = name_key(&p.account, &p.name);
        self.entity(K_POLICY, &k, Some(p.encode()));
        self.state.policies.insert(k, Arc::new(p));
    }

    pub fn remove_policy(&mut self, account: &str, name: &str) {
        let k = name_key(account, name);
        self.state.policies.remove(&k);
        self.entity(K_POLICY, &k, None);
    }

    pub fn put_key(&mut self, k: AccessKey) -> Result<(), IamError> {
        let sealed = self.keys.seal_secret(&k.id, &k.secret).map_err(IamError::internal)?;
        self.record(K_KEY, key_record_key(&k.id), super::cluster::access_key_key(&k.id), Some(k.encode(&sealed)));
        self.state.keys.insert(k.id.clone(), Arc::new(k));
        Ok(())
    }

    pub fn remove_key(&mut self, id: &str) {
        self.state.keys.remove(id);
        self.record(K_KEY, key_record_key(id), super::cluster::access_key_key(id), None);
    }

    /// The records written so far: each configuration key with its value
    /// and the key of the same record in the meta shards (puts only).
    pub(super) fn take_records(&mut self) -> Vec<(String, (Vec<u8>, Vec<u8>))> {
        let muts = std::mem::take(&mut self.muts);
        std::mem::take(&mut self.writes)
            .into_iter()
            .zip(muts)
            .filter_map(|((key, value), m)| match (value, m) {
                (Some(v), Mutation::Put { key: local, .. }) => Some((key, (v, local))),
                _ => None,
            })
            .collect()
    }

    /// Random bytes for ids and secrets.
    pub fn random(&self, out: &mut [u8]) -> Result<(), IamError> {
        self.keys.random(out).map_err(IamError::internal)
    }
}

pub struct IamStore {
    pub(super) state: ArcSwap<IamState>,
    busy: Mutex<bool>,
    /// The keys that seal secrets and tokens: the node key on a single
    /// node, the cluster's in a cluster (`NodeKeys::for_cluster`).
    pub keys: NodeKeys,
    /// In a cluster, the node key: it opens the records this node kept in
    /// its meta shards before it joined (`iam::cluster`'s import).
    pub(super) node_keys: Option<NodeKeys>,
    /// Where the records live on a single node: one copy per data dir.
    pub(super) store: MetaStore,
    /// Set once at start in a cluster: the records follow the Raft configuration.
    pub(super) cluster: OnceLock<super::cluster::IamLink>,
    /// The configuration index the snapshot reflects (a cluster).
    pub(super) published: AtomicU64,
    /// Held while a snapshot is rebuilt from the configuration.
    pub(super) rebuilding: Mutex<()>,
}

impl std::fmt::Debug for IamStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("IamStore")
    }
}

/// Releases the store's change claim.
struct Claim<'a>(&'a Mutex<bool>);

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        if let Ok(mut b) = self.0.lock() {
            *b = false;
        }
    }
}

impl IamStore {
    /// An empty store kept in `meta_shards` (one per data dir).
    pub fn new(keys: NodeKeys, meta_shards: Vec<u32>) -> Self {
        IamStore {
            state: ArcSwap::from_pointee(IamState::default()),
            busy: Mutex::new(false),
            keys,
            node_keys: None,
            store: MetaStore::new(meta_shards),
            cluster: OnceLock::new(),
            published: AtomicU64::new(0),
            rebuilding: Mutex::new(()),
        }
    }

    /// A store in a cluster: `cluster_keys` seal and open secrets and
    /// tokens; `node_keys` open what the meta shards kept from before.
    pub fn for_cluster(cluster_keys: NodeKeys, node_keys: NodeKeys, meta_shards: Vec<u32>) -> Self {
        IamStore { node_keys: Some(node_keys), ..Self::new(cluster_keys, meta_shards) }
    }

    pub fn snapshot(&self) -> Arc<IamState> {
        self.state.load_full()
    }

    /// Loads every record (at start, on the meta shard's owner). A record
    /// that does not decode (or whose secret does not unseal under this
    /// node key) stops the start: dropping it could drop a Deny.
    pub async fn load(&self, shards: &Shards) -> Result<usize, String> {
        let (st, n) = self.read_local(shards, &self.keys).await?;
        self.state.store(Arc::new(st));
        Ok(n)
    }

    /// The records of the meta shards, secrets opened with `keys`.
    pub(super) async fn read_local(&self, shards: &Shards, keys: &NodeKeys) -> Result<(IamState, usize), String> {
        let (summaries, metas, stale) = self.store.load(shards, T_IAM, |_| true).await?;
        let mut st = IamState::default();
        let mut n = 0;
        for (k, summary) in &summaries {
            let corrupt = || {
                format!(
                    "IAM record {:?} is corrupt or sealed under another node key",
                    String::from_utf8_lossy(k).replace('\0', "/")
                )
            };
            let meta = metas.get(k).map(Vec::as_slice).unwrap_or_default();
            match (summary.first().copied(), summary.get(1).copied()) {
                (Some(SUMMARY_V1), Some(kind)) => {
                    st.insert_record(kind, meta, keys).ok_or_else(corrupt)?;
                }
                _ => return Err(corrupt()),
            }
            n += 1;
        }
        if !stale.is_empty() {
            let fixed = self.store.repair(shards, T_IAM, stale).await;
            tracing::warn!(records = fixed, "IAM copies that lagged were rewritten");
        }
        Ok((st, n))
    }

    /// A change on a copy of the current state.
    pub(super) fn txn(&self) -> Txn<'_> {
        Txn { state: IamState::clone(&self.state.load()), keys: &self.keys, muts: Vec::new(), writes: Vec::new() }
    }

    async fn claim(&self) -> Result<Claim<'_>, IamError> {
        let started = std::time::Instant::now();
        loop {
            {
                let mut b = self.busy.lock().map_err(|_| IamError::internal("IAM store lock poisoned"))?;
                if !*b {
                    *b = true;
                    return Ok(Claim(&self.busy));
                }
            }
            if started.elapsed() >= UPDATE_WAIT {
                return Err(IamError::new(
                    "ConcurrentModification",
                    409,
                    "The request was rejected because multiple requests to change this object were submitted simultaneously.",
                ));
            }
            monoio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    /// Applies a change: `f` edits a copy of the current state through a
    /// [`Txn`] (or refuses with the error to answer); its records are
    /// committed in one commit, then the new state is published.
    ///
    /// In a cluster the change is one configuration transaction instead
    /// (`iam::cluster`): `f` runs again on the newer state when another
    /// node's change came first.
    pub async fn update<R>(&self, shards: &Shards, mut f: impl FnMut(&mut Txn<'_>) -> Result<R, IamError>) -> Result<R, IamError> {
        let _claim = self.claim().await?;
        if let Some(link) = self.cluster.get() {
            return self.update_clustered(link, f).await;
        }
        let mut txn = self.txn();
        let out = f(&mut txn)?;
        let Txn { state, muts, .. } = txn;
        if !muts.is_empty() {
            let changes = muts
                .into_iter()
                .map(|m| match m {
                    Mutation::Put { key, summary, meta, .. } => (key, Some((summary, meta))),
                    Mutation::Delete { key, .. } => (key, None),
                })
                .collect();
            self.store.write_many(shards, T_IAM, changes).await.map_err(|e| IamError::internal(e.to_string()))?;
        }
        self.state.store(Arc::new(state));
        Ok(out)
    }
}
