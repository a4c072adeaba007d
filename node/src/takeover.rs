//! Owner takeover (issue 12, stage 3): when the node that owns a
//! partition is down, another node of its lanes serves it from its member
//! copy, and hands it back once the owner is whole again.
//!
//! **Who acts for an owner.** Every placed node `O` is the *lane owner*
//! of the partitions whose set it heads (`owners`). The configuration
//! says who *acts* for it: `O` itself, unless `takeover/<O>` (a
//! `TakeoverRecord`) names another node. Only the acting node serves
//! `O`'s partitions, and only the acting node's lane calls are taken by
//! the members of `O`'s lanes (`fenced`): a deposed owner that still
//! runs cannot get a write quorum.
//!
//! **Stale members.** The acting node of `O`'s lanes records
//! `stale/<O>/<M>` in the configuration before it acknowledges a commit
//! that member `M` missed (`StaleRecorder`, once per outage of `M`), and
//! checks that it still acts for `O` once that record is applied (so a
//! write racing a takeover is refused, not lost). It removes the record
//! when `M` is in service again and healed of what it missed. So a node
//! without a stale record for `O` holds every acknowledged commit of
//! `O`'s lanes, and may take them over without reading anyone else.
//!
//! **The configuration leader decides** (`decide`, every half second):
//! for each placed `O`, the natural choice is `O` itself when it is alive
//! (gossip) and not stale; otherwise the lowest-id alive node that is
//! not stale for `O`. It commits a new `takeover/<O>` (compare-and-set)
//! when the acting node has been down for `takeover_after()` (default
//! 10 s, `TESSERA_TAKEOVER_AFTER_MS`), when the acting node is stale, or
//! when `O` is back, alive for `HANDBACK_AFTER` and whole again (the
//! handback: the record then names `O` itself).
//!
//! **Leases.** A node with cluster lanes serves object requests only
//! under a lease: every `LEASE_RENEW_EVERY` it asks the configuration's
//! leader for a read index (Raft ReadIndex) and, once its own placement
//! reflects that index, holds the lease for `LEASE` from when it asked.
//! A node that starts acting for `O` (a takeover, or a handback to `O`)
//! waits `LEASE` after applying the record, so the node it replaces has
//! applied it or lost its lease by then, and until enough other lane
//! nodes confirm they applied it (`METHOD_NODE_APPLIED`): those then
//! refuse the old acting node's calls, which can no longer reach a write
//! quorum.
//!
//! **Foster lanes.** A node acting for `O` opens, on each reactor, the
//! lanes of `O` it hosts: its member shard `members/<O>/shard-<s>` is the
//! primary (at its own position of `O`'s set, so blocks stay where they
//! are), the other nodes' copies, `O`'s own shard `s` included, are the
//! members. Requests for `O`'s keys reach them through foster shard ids
//! (`FOSTER_FLAG`, `s3::shard_of`); listings merge them; `O`'s own
//! shards take no writes of their own while it does not act (its shards
//! serve the acting node's member calls instead), and are healed by it.
//!
//! Not built: background work (lifecycle, replication, notifications) on
//! fostered keys waits for the handback.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::rc::Rc;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tessera_raft::state::ConfigState;
use tessera_raft::Command;

use crate::cluster::ClusterNode;
use crate::owners::{NodeRecord, Owners};
use crate::shards::LocalShard;

/// `takeover/<owner id hex>`: who acts for the owner (FORMAT BOUNDARY: JSON).
pub const TAKEOVER_PREFIX: &str = "takeover/";
/// `stale/<owner id hex>/<member id hex>`: the member may lack acknowledged
/// commits of the owner's lanes (FORMAT BOUNDARY: JSON).
pub const STALE_PREFIX: &str = "stale/";
/// Format of both records.
pub const RECORD_FORMAT: u32 = 1;
/// How long a read index keeps a node's lease.
pub const LEASE: Duration = Duration::from_secs(4);
/// Pause before a stale record the configuration did not take (no leader
/// yet) is written again (`StaleRecorder::record`).
const STALE_RECORD_RETRY: Duration = Duration::from_millis(100);
/// How long after its lease lapsed a node's requests wait for it to come
/// back (`lease_back`).
pub const LEASE_GRACE: Duration = Duration::from_secs(2);
/// How often the lease is renewed.
pub const LEASE_RENEW_EVERY: Duration = Duration::from_millis(1000);
/// How long an owner must be alive and whole before it gets its partitions back.
pub const HANDBACK_AFTER: Duration = Duration::from_secs(3);
/// A peer's confirmation that it applied the configuration up to an index
/// (payload: the index, u64 LE; answer: `[1]`).
pub const METHOD_NODE_APPLIED: u16 = 43;
/// Longest a peer waits to apply an index `METHOD_NODE_APPLIED` names.
pub const APPLIED_WAIT: Duration = Duration::from_secs(5);
/// Foster shard ids: `FOSTER_FLAG | slot << 16 | s` (slot: the owner's
/// position among the placed nodes by id; `s` its shard index).
pub const FOSTER_FLAG: u32 = 0x2000_0000;

/// How long the acting node of an owner must be down before the leader
/// gives its partitions to another node.
pub fn takeover_after() -> Duration {
    let ms = std::env::var("TESSERA_TAKEOVER_AFTER_MS").ok().and_then(|v| v.parse::<u64>().ok()).unwrap_or(10_000);
    Duration::from_millis(ms.max(LEASE.as_millis() as u64))
}

pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// Who acts for an owner's lanes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TakeoverRecord {
    pub format: u32,
    pub owner: String,
    pub acting: String,
    pub since_ms: u64,
}

impl TakeoverRecord {
    pub fn key(owner: &str) -> String {
        format!("{TAKEOVER_PREFIX}{owner}")
    }

    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a takeover record serializes")
    }

    pub fn decode(b: &[u8]) -> Result<TakeoverRecord, String> {
        let r: TakeoverRecord = serde_json::from_slice(b).map_err(|e| format!("a malformed takeover record: {e}"))?;
        if r.format != RECORD_FORMAT {
            return Err(format!("takeover record format {}: this build reads {RECORD_FORMAT}", r.format));
        }
        Ok(r)
    }
}

#[derive(Serialize, Deserialize)]
struct StaleRecord {
    format: u32,
    since_ms: u64,
}

pub fn stale_key(owner: &str, member: &str) -> String {
    format!("{STALE_PREFIX}{owner}/{member}")
}

/// The value of a stale record made at `since_ms`.
pub fn stale_value(since_ms: u64) -> Vec<u8> {
    serde_json::to_vec(&StaleRecord { format: RECORD_FORMAT, since_ms }).expect("a stale record serializes")
}

fn prefixed<'a>(state: &'a ConfigState, prefix: &'a str) -> impl Iterator<Item = (&'a String, &'a tessera_raft::state::Versioned)> + 'a {
    state.keys.range(prefix.to_string()..).take_while(move |(k, _)| k.starts_with(prefix))
}

/// The takeover records: owner -> (acting node, record version). A record
/// this build cannot read is logged and counts as the owner acting (its
/// lanes' members then refuse whoever the record named).
pub fn takeovers(state: &ConfigState) -> BTreeMap<String, (String, u64)> {
    prefixed(state, TAKEOVER_PREFIX)
        .filter_map(|(k, v)| match TakeoverRecord::decode(&v.value) {
            Ok(r) => Some((k[TAKEOVER_PREFIX.len()..].to_string(), (r.acting, v.version))),
            Err(e) => {
                tracing::error!(key = %k, error = %e, "cluster: a takeover record this build cannot read");
                None
            }
        })
        .collect()
}

/// The stale records: (owner, member) -> version.
pub fn stale(state: &ConfigState) -> BTreeMap<(String, String), u64> {
    prefixed(state, STALE_PREFIX)
        .filter_map(|(k, v)| {
            let (o, m) = k[STALE_PREFIX.len()..].split_once('/')?;
            Some(((o.to_string(), m.to_string()), v.version))
        })
        .collect()
}

/// The node acting for `owner` in `state` (the owner when no record).
pub fn acting_in(state: &ConfigState, owner: &str) -> String {
    state
        .get(&TakeoverRecord::key(owner))
        .and_then(|v| TakeoverRecord::decode(&v.value).ok())
        .map_or_else(|| owner.to_string(), |r| r.acting)
}

// ---- foster shard ids -------------------------------------------------

pub fn is_foster(id: u32) -> bool {
    id & FOSTER_FLAG != 0 && id & crate::holder::wire::CLUSTER_LANE == 0
}

pub fn foster_id(slot: usize, s: u32) -> u32 {
    FOSTER_FLAG | ((slot as u32) << 16) | (s & 0xffff)
}

/// The owner's shard index a foster id names.
pub fn foster_index(id: u32) -> u32 {
    id & 0xffff
}

thread_local! {
    /// This core's foster shards by foster id.
    static FOSTERS: RefCell<HashMap<u32, Rc<LocalShard>>> = RefCell::new(HashMap::new());
}

/// The foster shard `id` of this core.
pub fn foster(id: u32) -> Option<Rc<LocalShard>> {
    FOSTERS.with(|f| f.borrow().get(&id).cloned())
}

pub(crate) fn set_foster(id: u32, l: Option<Rc<LocalShard>>) {
    FOSTERS.with(|f| match l {
        Some(l) => {
            f.borrow_mut().insert(id, l);
        }
        None => {
            f.borrow_mut().remove(&id);
        }
    });
}

/// The foster shard serving `(bucket, key)` on this node: when this node
/// acts for the key's lane owner and is not that owner; or, while keys
/// move, when another node owns the key now and this node acts for its
/// previous owner: a request admitted while this node served the key for
/// that owner (the layout changed under it) goes on in that owner's
/// foster shard, which the move drains and exports
/// (`handover::VERSION_FOSTER`), not in this node's own shards.
pub fn foster_shard(node: &ClusterNode, bucket: &str, key: &str) -> Option<u32> {
    if node.fostering.load(Relaxed) == 0 {
        return None;
    }
    let owners = node.owners.load_full()?;
    let p = crate::layout::partition_of(bucket, key);
    let mut o = owners.layout_owner_of(p)?;
    let me = node.id_hex();
    if o.id == me {
        return None;
    }
    if !owners.fosters(&me, &o.id) {
        o = owners.prev_owner_of(p)?;
        if !owners.fosters(&me, &o.id) {
            return None;
        }
    }
    foster_shard_of(&owners, o, p)
}

/// Where lane owner `o`'s foster shards are on a node acting for it: its
/// slot among the placed nodes and its shard count (None: its record has
/// no shard count).
fn foster_span(owners: &Owners, o: &NodeRecord) -> Option<(usize, u32)> {
    Some((owners.slot_of(&o.id)?, o.shards.filter(|&n| n > 0)?))
}

/// Lane owner `o`'s foster shard holding partition `p`.
pub fn foster_shard_of(owners: &Owners, o: &NodeRecord, p: u64) -> Option<u32> {
    let (slot, n) = foster_span(owners, o)?;
    Some(foster_id(slot, (p % u64::from(n)) as u32))
}

/// Every foster shard of lane owner `o`.
pub fn foster_shards_of(owners: &Owners, o: &NodeRecord) -> Option<Vec<u32>> {
    let (slot, n) = foster_span(owners, o)?;
    Some((0..n).map(|s| foster_id(slot, s)).collect())
}

/// Every foster shard id this node serves by the placement (listings and
/// bucket drains read them beside the node's own shards).
pub fn foster_ids(node: &ClusterNode, owners: &Owners) -> Vec<u32> {
    let me = node.id_hex();
    let mut out = Vec::new();
    for r in owners.placed_nodes() {
        if owners.fosters(&me, &r.id) {
            out.extend(foster_shards_of(owners, r).unwrap_or_default());
        }
    }
    out
}

/// The shards a listing or a bucket drain on this node reads: its own
/// (unless another node acts for it) and the foster shards it serves.
pub fn listed_shards(ctx: &crate::server::Ctx) -> Vec<u32> {
    listed_ids(ctx.shared.cluster.as_deref(), ctx.shards.count())
}

/// `listed_shards` for a node of `own` shards.
pub fn listed_ids(node: Option<&ClusterNode>, own: u32) -> Vec<u32> {
    let own = 0..own;
    let Some(node) = node else { return own.collect() };
    let Some(owners) = node.owners.load_full() else { return own.collect() };
    let me = node.id_hex();
    let mut out: Vec<u32> = if owners.acting_for(&me) == me { own.collect() } else { Vec::new() };
    out.extend(foster_ids(node, &owners));
    out
}

// ---- the lease ---------------------------------------------------------

/// Whether this node's lease is held now (`LEASE`).
pub fn lease_held(node: &ClusterNode) -> bool {
    node.since_start_ms() < node.lease_until_ms.load(Relaxed)
}

/// Waits, if this node's lease lapsed less than `LEASE_GRACE` ago, until
/// it is held again or the grace ends; whether it is held. A request of
/// the node's own keys that finds the lease lapsed waits here
/// (`forward::decide`) rather than being refused at once: an election of
/// the configuration's leader that outlasts the lease (seconds, on a
/// loaded machine) would otherwise refuse every request of its last
/// seconds. Counted from the lapse, not from the request: a node cut off
/// from the configuration for longer answers at once (503).
pub async fn lease_back(node: &ClusterNode) -> bool {
    let until = node.lease_until_ms.load(Relaxed).saturating_add(LEASE_GRACE.as_millis() as u64);
    while !lease_held(node) && node.since_start_ms() < until {
        monoio::time::sleep(Duration::from_millis(10)).await;
    }
    lease_held(node)
}

/// Whether this node may serve object requests of lane owner `owner`'s
/// partitions now (it acts for it): outside cluster lanes always; with
/// them, under its lease, not stale for the owner, and past the wait and
/// the confirmations of a change of acting node (`ClusterNode::acting_ready`).
pub fn ready(node: &ClusterNode, owners: &Owners, owner: &str) -> bool {
    if !owners.has_lanes() {
        return true;
    }
    let me = node.id_str();
    if !lease_held(node) || owners.is_stale(owner, me) {
        return false;
    }
    match owners.takeovers.get(owner) {
        None => true,
        Some((acting, v)) => {
            acting == me
                && node.acting_ready.lock().unwrap_or_else(|e| e.into_inner()).get(owner) == Some(v)
                && (owner == me || fosters_follow(node, owner, *v))
        }
    }
}

/// Whether every reactor opened its foster lanes of `owner` at record version `v`.
fn fosters_follow(node: &ClusterNode, owner: &str, v: u64) -> bool {
    let f = node.foster_follows.lock().unwrap_or_else(|e| e.into_inner());
    f.len() >= node.threads.load(Relaxed) as usize && f.values().all(|m| m.get(owner) == Some(&v))
}

/// Renews the lease for as long as the node runs (on the Raft thread):
/// a read index, then this node's placement at least that new.
pub async fn keep_lease<F, Fut>(node: Arc<ClusterNode>, read_index: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<u64, String>>,
{
    loop {
        let asked = node.since_start_ms();
        let renewed = match tokio::time::timeout(LEASE, read_index()).await {
            Ok(Ok(index)) => {
                let started = Instant::now();
                while node.owners_seen.load(Relaxed) < index && started.elapsed() < LEASE {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                node.owners_seen.load(Relaxed) >= index
            }
            _ => false,
        };
        if renewed {
            node.lease_until_ms.fetch_max(asked + LEASE.as_millis() as u64, Relaxed);
        }
        // A failed round (no leader yet, an election) is tried again soon.
        tokio::time::sleep(if renewed { LEASE_RENEW_EVERY } else { Duration::from_millis(200) }).await;
    }
}

// ---- the leader's decision --------------------------------------------

/// The commands the configuration leader should commit now: a new
/// takeover record for each owner whose acting node should change (see
/// the module doc). `alive`: node ids the gossip holds alive; `down`:
/// since when each owner's acting node has been seen down, and since when
/// each owner has been seen alive and whole (kept across calls).
pub fn decide(
    state: &ConfigState,
    owners: &Owners,
    alive: &BTreeSet<String>,
    seen: &mut HashMap<String, Instant>,
) -> Vec<Command> {
    let mut out = Vec::new();
    if !owners.has_lanes() {
        return out;
    }
    let placed: Vec<String> = owners.placed_nodes().iter().map(|r| r.id.clone()).collect();
    let is_stale = |o: &str, m: &str| state.get(&stale_key(o, m)).is_some();
    for o in &placed {
        let current = state.get(&TakeoverRecord::key(o));
        let acting = acting_in(state, o);
        // A decommissioned node acts for no other owner: it leaves the
        // lanes once its own keys moved.
        let fit = |n: &str| alive.contains(n) && !is_stale(o, n) && (n == o || !owners.decommissioned.contains(n));
        // Another node can act for `o` only knowing its shard count, and
        // only if it runs a build that can (both say so in their records:
        // an older build's has no shard count, is never taken over and
        // never acts for another).
        let up_to_date = |n: &str| owners.nodes.get(n).is_some_and(|r| r.shards.is_some());
        // Only a member of its lanes holds the owner's records (past four
        // nodes a lane spans four of them).
        let lane: Vec<String> = crate::cluster_lanes::lane_nodes(owners, o).map(|v| v.into_iter().map(|r| r.id).collect()).unwrap_or_default();
        let want = if fit(o) {
            Some(o.clone())
        } else if up_to_date(o) {
            placed.iter().find(|n| lane.contains(n) && fit(n) && up_to_date(n)).cloned()
        } else {
            None
        };
        let Some(want) = want else {
            if !alive.contains(&acting) {
                tracing::warn!(owner = %o, "cluster: no live node holds every acknowledged write of this owner's partitions; they wait for it");
            }
            continue;
        };
        if want == acting {
            seen.remove(o);
            continue;
        }
        // Wait before moving: the acting node down for takeover_after(),
        // or the owner back and whole for HANDBACK_AFTER; a stale acting
        // node is replaced at once.
        let wait = if want == *o && alive.contains(&acting) && !is_stale(o, &acting) {
            HANDBACK_AFTER
        } else if alive.contains(&acting) && is_stale(o, &acting) {
            Duration::ZERO
        } else {
            takeover_after()
        };
        let since = *seen.entry(o.clone()).or_insert_with(Instant::now);
        if since.elapsed() < wait {
            continue;
        }
        seen.remove(o);
        let r = TakeoverRecord { format: RECORD_FORMAT, owner: o.clone(), acting: want, since_ms: now_ms() };
        out.push(Command::Cas { key: TakeoverRecord::key(o), expect: current.map_or(0, |v| v.version), value: Some(r.encode()) });
    }
    out
}

/// The commands that remove the takeover and stale records naming a
/// node that left (decommissioned, and placed by no layout, current or
/// previous): no lane holds it any more, so nothing would clear them, and
/// while they exist no lane change may begin (`owners::next_layout`).
pub fn left_behind(state: &ConfigState, owners: &Owners) -> Vec<Command> {
    let placed: BTreeSet<&str> = owners.placed_nodes().iter().map(|r| r.id.as_str()).collect();
    let left = |id: &str| owners.decommissioned.contains(id) && !placed.contains(id);
    let mut out: Vec<Command> = takeovers(state)
        .into_keys()
        .filter(|o| left(o))
        .map(|o| Command::Delete { key: TakeoverRecord::key(&o) })
        .collect();
    out.extend(stale(state).into_keys().filter(|(o, m)| left(o) || left(m)).map(|(o, m)| Command::Delete { key: stale_key(&o, &m) }));
    out
}

// ---- stale records -----------------------------------------------------

/// Records the members of one lane owner's lanes that missed a commit
/// (see the module doc); one per reactor and lane owner, shared by its lanes.
pub struct StaleRecorder {
    node: Arc<ClusterNode>,
    /// The lane owner, hex.
    owner: String,
    /// Each member's node id, hex, by member index.
    members: Vec<String>,
    /// Per member: recorded since it was last put back in service.
    recorded: RefCell<Vec<bool>>,
}

impl StaleRecorder {
    pub fn new(node: Arc<ClusterNode>, owner: String, members: Vec<String>) -> Self {
        let recorded = RefCell::new(vec![false; members.len()]);
        StaleRecorder { node, owner, members, recorded }
    }

    /// Member `i` is back in service: its next miss is recorded again.
    pub fn reset(&self, i: usize) {
        if let Some(r) = self.recorded.borrow_mut().get_mut(i) {
            *r = false;
        }
    }

    /// Makes sure every member of `missed` is recorded stale and that this
    /// node still acts for the owner once the records are applied: false
    /// if not (the commit must not be acknowledged).
    pub async fn record(&self, missed: &[usize]) -> bool {
        let todo: Vec<usize> = {
            let r = self.recorded.borrow();
            missed.iter().copied().filter(|&i| !r.get(i).copied().unwrap_or(true)).collect()
        };
        if todo.is_empty() {
            return true;
        }
        let Some(raft) = self.node.raft() else { return false };
        let mut last = 0;
        // One deadline for the records: a write that fails (no leader
        // known, or the one known gone: the member's node may have led the
        // configuration and died with it) is tried again until then, so
        // the write waits for the election (about 1-2 s) instead of
        // failing while it runs.
        let deadline = Instant::now() + crate::buckets::cluster::RAFT_WRITE_TIMEOUT;
        for &i in &todo {
            let Some(m) = self.members.get(i) else { return false };
            let value = stale_value(now_ms());
            let cmd = Command::Put { key: stale_key(&self.owner, m), value };
            loop {
                let left = deadline.saturating_duration_since(Instant::now());
                match monoio::time::timeout(left, raft.write(&cmd)).await {
                    Ok(Ok(o)) => {
                        last = last.max(o.index);
                        break;
                    }
                    Ok(Err(e)) if Instant::now() + STALE_RECORD_RETRY < deadline => {
                        tracing::debug!(owner = %self.owner, member = %m, error = %e, "recording a lane member as stale; trying again");
                        monoio::time::sleep(STALE_RECORD_RETRY).await;
                    }
                    Ok(Err(e)) => {
                        tracing::error!(owner = %self.owner, member = %m, error = %e, "cannot record a lane member as stale; the write is not acknowledged");
                        return false;
                    }
                    Err(_) => {
                        tracing::error!(owner = %self.owner, member = %m, "recording a lane member as stale timed out; the write is not acknowledged");
                        return false;
                    }
                }
            }
        }
        let started = Instant::now();
        while raft.store().applied_index() < last {
            if started.elapsed() > APPLIED_WAIT {
                return false;
            }
            monoio::time::sleep(Duration::from_millis(1)).await;
        }
        let me = self.node.id_hex();
        if raft.store().read(|s| acting_in(s, &self.owner)) != me {
            tracing::warn!(owner = %self.owner, "another node acts for this lane owner now; a write it raced is not acknowledged");
            return false;
        }
        let mut r = self.recorded.borrow_mut();
        for i in todo {
            r[i] = true;
        }
        true
    }
}

// ---- the acting node's node-wide work ------------------------------------

/// Serves `METHOD_NODE_APPLIED`: answers once this node's placement
/// reflects the configuration up to the index asked (from then on its
/// member shards take only the calls of the node that index names as
/// acting).
pub async fn serve_applied(ctx: &crate::server::Ctx, payload: &[u8]) -> Result<Vec<u8>, Vec<u8>> {
    let Some(node) = &ctx.shared.cluster else { return Err(b"not in a cluster".to_vec()) };
    let Ok(b) = <[u8; 8]>::try_from(payload) else { return Err(b"a malformed applied call".to_vec()) };
    let index = u64::from_le_bytes(b);
    let started = Instant::now();
    while node.owners_seen.load(Relaxed) < index {
        if started.elapsed() > APPLIED_WAIT {
            return Err(b"the configuration index is not applied here yet".to_vec());
        }
        monoio::time::sleep(Duration::from_millis(2)).await;
    }
    Ok(vec![1])
}

/// Node-wide takeover work, on reactor 0: makes this node ready to act for
/// the owners a takeover record names it for (after `LEASE`, with enough
/// other lane nodes fenced), and removes the stale records of members its
/// lanes healed.
pub async fn node_task(ctx: Rc<crate::server::Ctx>, node: Arc<ClusterNode>) {
    let pool = crate::fanout::pool(&node);
    let mut first_seen: HashMap<String, (u64, Instant)> = HashMap::new();
    while !ctx.shutdown.is_closed() {
        monoio::time::sleep(Duration::from_millis(200)).await;
        let Some(o) = node.owners.load_full() else { continue };
        let me = node.id_hex();
        if crate::cluster_lanes::lane_nodes(&o, &me).is_none() {
            continue;
        }
        for (owner, (acting, v)) in &o.takeovers {
            if *acting != me {
                first_seen.remove(owner);
                node.acting_ready.lock().unwrap_or_else(|e| e.into_inner()).remove(owner);
                continue;
            }
            if node.acting_ready.lock().unwrap_or_else(|e| e.into_inner()).get(owner) == Some(v) {
                continue;
            }
            let seen = first_seen.entry(owner.clone()).or_insert((*v, Instant::now()));
            if seen.0 != *v {
                *seen = (*v, Instant::now());
            }
            // The node acted before has applied the record or lost its
            // lease by then.
            if seen.1.elapsed() < LEASE {
                continue;
            }
            if fence(&node, &pool, &o, owner, *v).await {
                node.acting_ready.lock().unwrap_or_else(|e| e.into_inner()).insert(owner.clone(), *v);
                tracing::warn!(owner = %owner, version = v, "this node now serves the lane owner's partitions");
            }
        }
        clear_stale(&node, &o).await;
    }
}

/// Whether enough other nodes of `owner`'s lanes applied record version
/// `v` that whoever acted before cannot reach a write quorum: fewer than
/// W nodes (this one aside) may be left unconfirmed.
async fn fence(node: &ClusterNode, pool: &Rc<crate::cluster_pool::RpcPool>, o: &Owners, owner: &str, v: u64) -> bool {
    let me = node.id_hex();
    let Some(nodes) = crate::cluster_lanes::lane_nodes(o, owner) else { return false };
    let Ok(shape) = tessera_erasure::SetShape::new(nodes.len(), None) else { return false };
    let alive = node.alive_ids();
    let calls: Vec<_> = nodes
        .iter()
        .filter(|r| r.id != me)
        .filter_map(|r| {
            let id: [u8; 16] = hex::decode(&r.id).ok()?.try_into().ok()?;
            alive.contains(&id).then(|| tessera_cluster::NodeIdentity { addr: r.cluster, id, bump: 0 })
        })
        .map(|peer| {
            let pool = pool.clone();
            async move { pool.call(&peer, METHOD_NODE_APPLIED, v.to_le_bytes().to_vec(), APPLIED_WAIT + Duration::from_secs(1)).await }
        })
        .collect();
    let confirmed = futures_util::future::join_all(calls).await.into_iter().filter(|r| matches!(r, Ok(a) if a == &[1])).count();
    let unconfirmed = nodes.len() - 1 - confirmed;
    if unconfirmed >= shape.write_quorum() {
        tracing::info!(owner = %owner, confirmed, "waiting for more lane nodes to apply the takeover before serving");
        return false;
    }
    true
}

/// Removes `stale/<O>/<M>` for the owners this node acts for once every
/// reactor reports `M` in service and healed in `O`'s lanes, in a view
/// made after the record was applied (a view from before may predate the
/// failure the record is about: the record would go while `M` still
/// misses commits). The compare-and-set keeps a record written again
/// meanwhile (a new miss).
async fn clear_stale(node: &ClusterNode, o: &Owners) {
    let me = node.id_hex();
    let Some(raft) = node.raft() else { return };
    let threads = node.threads.load(Relaxed) as usize;
    for ((owner, member), version) in &o.stale {
        if o.acting_for(owner) != me || member == &me {
            continue;
        }
        let clean = {
            let views = node.lane_clean.lock().unwrap_or_else(|e| e.into_inner());
            views.len() >= threads
                && views.values().all(|(seen, v)| *seen >= *version && v.get(&(owner.clone(), member.clone())) == Some(&true))
        };
        if !clean {
            continue;
        }
        let cmd = Command::Cas { key: stale_key(owner, member), expect: *version, value: None };
        match monoio::time::timeout(crate::buckets::cluster::RAFT_WRITE_TIMEOUT, raft.write(&cmd)).await {
            Ok(Ok(w)) if w.response.ok => {
                node.stale_cleared.fetch_add(1, Relaxed);
                tracing::info!(owner = %owner, member = %member, "a lane member is healed: its stale record is removed");
            }
            Ok(Ok(_)) => tracing::debug!(owner = %owner, member = %member, "a stale record changed meanwhile; kept"),
            Ok(Err(e)) => tracing::warn!(error = %e, "cannot remove a stale record"),
            Err(_) => tracing::warn!("removing a stale record timed out"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::owners::tests::record;

    fn id(n: u8) -> String {
        hex::encode([n; 16])
    }

    /// A configuration of three registered and placed nodes.
    fn three() -> (ConfigState, u64) {
        laid_out(3)
    }

    /// A configuration of test nodes 1 to `count`, registered and placed.
    fn laid_out(count: u8) -> (ConfigState, u64) {
        let mut s = ConfigState::default();
        let mut index = 0;
        for n in 1..=count {
            index += 1;
            s.apply(index, &Command::Put { key: record(n).key(), value: record(n).encode() });
        }
        let cmd = crate::owners::next_layout(&s).unwrap().unwrap();
        index += 1;
        assert!(s.apply(index, &cmd).ok);
        (s, index)
    }

    fn run(s: &mut ConfigState, index: &mut u64, alive: &[u8], seen: &mut HashMap<String, Instant>) -> Vec<(String, String)> {
        let owners = Owners::from_state(s).unwrap().unwrap();
        let alive: BTreeSet<String> = alive.iter().map(|&n| id(n)).collect();
        let cmds = decide(s, &owners, &alive, seen);
        let mut out = Vec::new();
        for c in cmds {
            *index += 1;
            assert!(s.apply(*index, &c).ok, "{c:?}");
            if let Command::Cas { value: Some(v), .. } = &c {
                let r = TakeoverRecord::decode(v).unwrap();
                out.push((r.owner, r.acting));
            }
        }
        out
    }

    /// Pretends `owner`'s wait began long ago.
    fn waited(seen: &mut HashMap<String, Instant>, owner: u8) {
        let long = Instant::now().checked_sub(Duration::from_secs(3600)).unwrap();
        seen.insert(id(owner), long);
    }

    #[test]
    fn an_owner_down_long_enough_is_taken_over_by_a_node_that_missed_nothing_and_gets_it_back_once_whole() {
        let (mut s, mut i) = three();
        let mut seen = HashMap::new();
        assert!(run(&mut s, &mut i, &[1, 2, 3], &mut seen).is_empty(), "every owner alive: nothing to do");
        // Node 1 down: nothing before the wait, then the lowest id that is
        // not stale for it. Node 2 missed a commit of node 1's lanes.
        i += 1;
        s.apply(i, &Command::Put { key: stale_key(&id(1), &id(2)), value: b"{}".to_vec() });
        assert!(run(&mut s, &mut i, &[2, 3], &mut seen).is_empty(), "node 1 just went down");
        waited(&mut seen, 1);
        assert_eq!(run(&mut s, &mut i, &[2, 3], &mut seen), vec![(id(1), id(3))], "node 2 is stale for node 1: node 3 acts");
        let owners = Owners::from_state(&s).unwrap().unwrap();
        assert_eq!(owners.acting_for(&id(1)), id(3));
        assert!(owners.owner_of(0).is_some());
        for p in 0..crate::layout::PARTITIONS {
            let (lane, serving) = (owners.layout_owner_of(p).unwrap(), owners.owner_of(p).unwrap());
            assert_eq!(serving.id, if lane.id == id(1) { id(3) } else { lane.id.clone() });
        }
        // Node 1 back but stale for its own lanes (node 3 wrote without it):
        // no handback, however long it waits.
        i += 1;
        s.apply(i, &Command::Put { key: stale_key(&id(1), &id(1)), value: b"{}".to_vec() });
        waited(&mut seen, 1);
        assert!(run(&mut s, &mut i, &[1, 2, 3], &mut seen).is_empty(), "a stale owner does not get its keys back");
        // Healed (its record removed): back after HANDBACK_AFTER.
        i += 1;
        s.apply(i, &Command::Delete { key: stale_key(&id(1), &id(1)) });
        assert!(run(&mut s, &mut i, &[1, 2, 3], &mut seen).is_empty(), "the handback waits");
        waited(&mut seen, 1);
        assert_eq!(run(&mut s, &mut i, &[1, 2, 3], &mut seen), vec![(id(1), id(1))], "handed back");
        assert_eq!(Owners::from_state(&s).unwrap().unwrap().acting_for(&id(1)), id(1));
    }

    #[test]
    fn past_four_nodes_only_a_member_of_the_owners_lanes_acts_for_it() {
        // Five nodes without objects: each lane is its owner and the next
        // three by id, node 2's being 3, 4, 5.
        let (mut s, mut i) = laid_out(5);
        let owners = Owners::from_state(&s).unwrap().unwrap();
        let lane: Vec<String> = crate::cluster_lanes::lane_nodes(&owners, &id(2)).unwrap().into_iter().map(|r| r.id).collect();
        assert_eq!(lane, vec![id(2), id(3), id(4), id(5)]);
        let mut seen = HashMap::new();
        waited(&mut seen, 2);
        // Node 1 has the lowest id alive, but holds none of node 2's records.
        assert_eq!(run(&mut s, &mut i, &[1, 3, 4, 5], &mut seen), vec![(id(2), id(3))]);
    }

    #[test]
    fn records_naming_a_node_that_left_are_removed_once_no_layout_places_it() {
        let (mut s, mut i) = three();
        for n in [4u8, 5] {
            i += 1;
            s.apply(i, &Command::Put { key: record(n).key(), value: record(n).encode() });
        }
        let keep = [stale_key(&id(1), &id(2)), TakeoverRecord::key(&id(1))];
        let gone = [stale_key(&id(1), &id(4)), stale_key(&id(4), &id(2)), TakeoverRecord::key(&id(4))];
        for k in keep.iter().chain(&gone) {
            i += 1;
            let value = if k.starts_with(TAKEOVER_PREFIX) {
                TakeoverRecord { format: RECORD_FORMAT, owner: id(1), acting: id(1), since_ms: 1 }.encode()
            } else {
                stale_value(1)
            };
            s.apply(i, &Command::Put { key: k.clone(), value });
        }
        let owners = Owners::from_state(&s).unwrap().unwrap();
        assert!(left_behind(&s, &owners).is_empty(), "node 4 is registered, not decommissioned");
        // Decommissioned: removed, node 5 (registered, never placed) too.
        for n in [4u8, 5] {
            i += 1;
            s.apply(i, &Command::Put { key: format!("{}{}", crate::owners::DECOMMISSION_PREFIX, id(n)), value: b"{}".to_vec() });
        }
        let owners = Owners::from_state(&s).unwrap().unwrap();
        let mut removed: Vec<String> = left_behind(&s, &owners)
            .into_iter()
            .map(|c| match c {
                Command::Delete { key } => key,
                other => panic!("{other:?}"),
            })
            .collect();
        removed.sort();
        let mut want = gone.to_vec();
        want.sort();
        assert_eq!(removed, want);
        // Not while a layout still places a decommissioned node.
        i += 1;
        s.apply(i, &Command::Put { key: format!("{}{}", crate::owners::DECOMMISSION_PREFIX, id(2)), value: b"{}".to_vec() });
        let owners = Owners::from_state(&s).unwrap().unwrap();
        assert_eq!(left_behind(&s, &owners).len(), gone.len(), "node 2's records stay while the layout places it");
    }

    #[test]
    fn a_stale_acting_node_is_replaced_at_once_and_no_one_stale_ever_acts() {
        let (mut s, mut i) = three();
        let mut seen = HashMap::new();
        waited(&mut seen, 1);
        assert_eq!(run(&mut s, &mut i, &[2, 3], &mut seen), vec![(id(1), id(2))]);
        // A commit node 2 missed got recorded before the takeover applied
        // (a race): node 2 must not act; node 3 does, without a wait.
        i += 1;
        s.apply(i, &Command::Put { key: stale_key(&id(1), &id(2)), value: b"{}".to_vec() });
        assert_eq!(run(&mut s, &mut i, &[2, 3], &mut seen), vec![(id(1), id(3))]);
        // Node 3 stale too: nobody else can act; the record stays.
        i += 1;
        s.apply(i, &Command::Put { key: stale_key(&id(1), &id(3)), value: b"{}".to_vec() });
        waited(&mut seen, 1);
        assert!(run(&mut s, &mut i, &[2, 3], &mut seen).is_empty());
        assert_eq!(Owners::from_state(&s).unwrap().unwrap().acting_for(&id(1)), id(3));
    }

    #[test]
    fn an_owner_of_an_older_build_is_never_taken_over() {
        let (mut s, mut i) = three();
        let mut old = record(1);
        old.shards = None;
        i += 1;
        s.apply(i, &Command::Put { key: old.key(), value: old.encode() });
        let mut seen = HashMap::new();
        assert!(run(&mut s, &mut i, &[1, 2, 3], &mut seen).is_empty(), "alive: nothing to do");
        waited(&mut seen, 1);
        assert!(run(&mut s, &mut i, &[2, 3], &mut seen).is_empty(), "no one can act for it without its shard count");
        // The others still can be, but not by it.
        waited(&mut seen, 2);
        assert_eq!(run(&mut s, &mut i, &[1, 3], &mut seen), vec![(id(2), id(3))]);
    }

    #[test]
    fn foster_ids_do_not_collide_with_shards_or_member_targets() {
        for slot in 0..4 {
            for s in [0u32, 1, 7, 4095] {
                let f = foster_id(slot, s);
                assert!(is_foster(f) && foster_index(f) == s && f >= 4096);
                assert!(!is_foster(s) && !is_foster(s | crate::holder::wire::CLUSTER_LANE));
            }
        }
    }
}
