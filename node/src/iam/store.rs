//! The IAM store: every account's users, groups, roles, managed policies
//! and access keys, durable as records of `T_IAM` kept like the bucket
//! registry, once in every data dir (`metastore`; one record per entity) and served from an
//! immutable snapshot every reactor reads without locks. Changes are
//! serialized (one at a time for the whole node: they are rare), committed,
//! then published; a request sees the snapshot of its start, so a deleted
//! or deactivated key stops working with the next request.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
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

const K_USER: u8 = b'u';
const K_GROUP: u8 = b'g';
const K_ROLE: u8 = b'r';
const K_POLICY: u8 = b'p';
const K_KEY: u8 = b'k';

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
}

impl IamState {
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
    muts: Vec<Mutation>,
}

fn put(kind: u8, key: Vec<u8>, meta: Vec<u8>) -> Mutation {
    Mutation::Put { table: T_IAM, key, summary: vec![SUMMARY_V1, kind], meta, body: Body::Inline(Vec::new()) }
}

impl Txn<'_> {
    pub fn put_user(&mut self, u: IamUser) {
        let k = name_key(&u.account, &u.name);
        self.muts.push(put(K_USER, record_key(K_USER, &k), u.encode()));
        self.state.user_ids.insert(u.id.clone(), k.clone());
        self.state.users.insert(k, Arc::new(u));
    }

    pub fn remove_user(&mut self, account: &str, name: &str) {
        let k = name_key(account, name);
        if let Some(u) = self.state.users.remove(&k) {
            self.state.user_ids.remove(&u.id);
        }
        self.muts.push(Mutation::Delete { table: T_IAM, key: record_key(K_USER, &k) });
    }

    pub fn put_group(&mut self, g: IamGroup) {
        let k = name_key(&g.account, &g.name);
        self.muts.push(put(K_GROUP, record_key(K_GROUP, &k), g.encode()));
        self.state.groups.insert(k, Arc::new(g));
    }

    pub fn remove_group(&mut self, account: &str, name: &str) {
        let k = name_key(account, name);
        self.state.groups.remove(&k);
        self.muts.push(Mutation::Delete { table: T_IAM, key: record_key(K_GROUP, &k) });
    }

    pub fn put_role(&mut self, r: IamRole) {
        let k = name_key(&r.account, &r.name);
        self.muts.push(put(K_ROLE, record_key(K_ROLE, &k), r.encode()));
        self.state.roles.insert(k, Arc::new(r));
    }

    pub fn remove_role(&mut self, account: &str, name: &str) {
        let k = name_key(account, name);
        self.state.roles.remove(&k);
        self.muts.push(Mutation::Delete { table: T_IAM, key: record_key(K_ROLE, &k) });
    }

    pub fn put_policy(&mut self, p: ManagedPolicy) {
        let k = name_key(&p.account, &p.name);
        self.muts.push(put(K_POLICY, record_key(K_POLICY, &k), p.encode()));
        self.state.policies.insert(k, Arc::new(p));
    }

    pub fn remove_policy(&mut self, account: &str, name: &str) {
        let k = name_key(account, name);
        self.state.policies.remove(&k);
        self.muts.push(Mutation::Delete { table: T_IAM, key: record_key(K_POLICY, &k) });
    }

    pub fn put_key(&mut self, k: AccessKey) -> Result<(), IamError> {
        let sealed = self.keys.seal_secret(&k.id, &k.secret).map_err(IamError::internal)?;
        let mut key = vec![K_KEY];
        key.extend_from_slice(k.id.as_bytes());
        self.muts.push(put(K_KEY, key, k.encode(&sealed)));
        self.state.keys.insert(k.id.clone(), Arc::new(k));
        Ok(())
    }

    pub fn remove_key(&mut self, id: &str) {
        self.state.keys.remove(id);
        let mut key = vec![K_KEY];
        key.extend_from_slice(id.as_bytes());
        self.muts.push(Mutation::Delete { table: T_IAM, key });
    }

    /// Random bytes for ids and secrets.
    pub fn random(&self, out: &mut [u8]) -> Result<(), IamError> {
        self.keys.random(out).map_err(IamError::internal)
    }
}

pub struct IamStore {
    state: ArcSwap<IamState>,
    busy: Mutex<bool>,
    pub keys: NodeKeys,
    /// Where the records live: one copy per data dir.
    store: MetaStore,
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
            store: MetaStore::new(meta_shards),
        }
    }

    pub fn snapshot(&self) -> Arc<IamState> {
        self.state.load_full()
    }

    /// Loads every record (at start, on the meta shard's owner). A record
    /// that does not decode (or whose secret does not unseal under this
    /// node key) stops the start: dropping it could drop a Deny.
    pub async fn load(&self, shards: &Shards) -> Result<usize, String> {
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
                (Some(SUMMARY_V1), Some(K_USER)) => {
                    let u = IamUser::decode(meta).ok_or_else(corrupt)?;
                    let nk = name_key(&u.account, &u.name);
                    st.user_ids.insert(u.id.clone(), nk.clone());
                    st.users.insert(nk, Arc::new(u));
                }
                (Some(SUMMARY_V1), Some(K_GROUP)) => {
                    let g = IamGroup::decode(meta).ok_or_else(corrupt)?;
                    st.groups.insert(name_key(&g.account, &g.name), Arc::new(g));
                }
                (Some(SUMMARY_V1), Some(K_ROLE)) => {
                    let r = IamRole::decode(meta).ok_or_else(corrupt)?;
                    st.roles.insert(name_key(&r.account, &r.name), Arc::new(r));
                }
                (Some(SUMMARY_V1), Some(K_POLICY)) => {
                    let p = ManagedPolicy::decode(meta).ok_or_else(corrupt)?;
                    st.policies.insert(name_key(&p.account, &p.name), Arc::new(p));
                }
                (Some(SUMMARY_V1), Some(K_KEY)) => {
                    let key = AccessKey::decode(meta, |id, s| self.keys.open_secret(id, s)).ok_or_else(corrupt)?;
                    st.keys.insert(key.id.clone(), Arc::new(key));
                }
                _ => return Err(corrupt()),
            }
            n += 1;
        }
        self.state.store(Arc::new(st));
        if !stale.is_empty() {
            let fixed = self.store.repair(shards, T_IAM, stale).await;
            tracing::warn!(records = fixed, "IAM copies that lagged were rewritten");
        }
        Ok(n)
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
    pub async fn update<R>(&self, shards: &Shards, f: impl FnOnce(&mut Txn<'_>) -> Result<R, IamError>) -> Result<R, IamError> {
        let _claim = self.claim().await?;
        let mut txn = Txn { state: IamState::clone(&self.state.load()), keys: &self.keys, muts: Vec::new() };
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
