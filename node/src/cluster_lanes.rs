//! Cluster lanes (issue 12, stage 2): the owner of a partition stores it
//! in a lane whose members are on the other nodes, so an object survives
//! the loss of a node's disks. The lane code is the one erasure sets use
//! on one node (`lanes`, `stripes_io`): records mirrored to every member,
//! bodies above `REPLICATE_MAX_BYTES` striped k + m, acknowledged once
//! the owner's shard and the write quorum are durable. Members on other
//! nodes are `holder::Holder::Remote`; each node holds its members of
//! other nodes' lanes as `members`.
//!
//! **Which lanes.** When the committed layout places 3 or 4 nodes, every
//! partition's set holds every node, so a node's lane `s` (its own shard
//! `s`, which holds the partitions `p` with `p % shards == s` that it
//! owns) gets one member on each other placed node: position 0 is the
//! owner's shard, then the other nodes by id. Past four nodes each
//! owner's lanes span it and three others the lane order names
//! (`owners::LaneOrder::lanes`). k + m is the lane's node count,
//! m `tessera_erasure::default_parity` (2+1 on 3 nodes, 2+2 on 4), W
//! `SetShape::write_quorum` (2 of 3, 3 of 4): writes go on with one node
//! of 3 (or 4) down. Two nodes (1+1 would need both for every write), and
//! more than 4 laid out by a build that named no lanes, keep the owner's
//! shard alone, as do nodes whose own dirs are erasure sets (format 2).
//!
//! **Why the primary's shard alone is read as the record holder.** The
//! primary is the node acting for the lane owner (the owner itself, or
//! another node while it is down: `takeover`), and its shard takes every
//! acknowledged commit (a commit fails when the primary's fails), so it
//! is never behind (a node that missed one is recorded stale and does not
//! act). A member that missed writes (its node was down)
//! is only read for blocks, and a block is used only when the member's
//! record of the key carries the very meta the owner read (tag, stripe
//! and block index are checked besides), so a stale member costs a decode
//! with parity, never a wrong byte. A member that fails a call is taken
//! out of service; it is put back when a probe call succeeds again (every
//! `REVIVE_EVERY`), and then takes new writes. The lane keeps the keys of
//! the commits each remote member missed (`lanes::Missed`, in memory, up
//! to `MAX_MISSED_KEYS` per lane, past which the whole lane is walked),
//! and a member back in service is healed of them (`heal_member`,
//! `heal::mend_key` over the RPC holder). The durable form is the stale
//! record in the configuration (`takeover`): lanes made while a member is
//! recorded stale heal it by walking every key. The same code runs the
//! foster lanes of an owner this node acts for (`Attached`, `foster`).

use std::cell::Cell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tessera_cluster::NodeIdentity;
use tessera_erasure::SetShape;
use tessera_io::IoError;

use crate::holder::{Holder, RemoteShard};
use crate::lanes::Mirrors;
use crate::owners::{NodeRecord, Owners};
use crate::server::Ctx;
use crate::sets_open::DiskHealth;
use crate::shards::LocalShard;

/// How often a reactor looks at the layout.
pub const POLL: Duration = Duration::from_millis(100);
/// How often a member out of service is probed.
pub const REVIVE_EVERY: Duration = Duration::from_secs(2);
/// How long a closed foster lane keeps its members for the requests that
/// were in flight when another node started acting for its owner.
pub const RETIRE_AFTER: Duration = Duration::from_secs(60);
/// Fewest placed nodes for cluster lanes (see the module doc).
pub const MIN_NODES: usize = 3;
/// Most placed nodes for cluster lanes (every set then holds every node).
pub const MAX_NODES: usize = crate::owners::DEFAULT_WIDTH;

/// The nodes of the lanes of owner `me`, itself first then the others in
/// the cluster's lane order (`owners::LaneOrder`: by id, with nodes that
/// joined a cluster with lanes after them in the order they joined), when
/// the layout makes cluster lanes (see the module doc). Every node
/// computes the same order for an owner, and a join appends: a position
/// of an owner's lanes keeps its node, so blocks written over 3 nodes
/// are read through the lanes of 4 where they were written. While a node
/// leaves lanes of 4 (its keys move away: the previous layout still
/// places it) the lanes keep it, in the wider order it had
/// (`LaneOrder::wider`; the order less it ranks the others alike).
///
/// Past four nodes the lane order names each owner's lane (format 3,
/// `Owners::lane_sets`): its members by position, four nodes in all.
pub fn lane_nodes(owners: &Owners, me: &str) -> Option<Vec<NodeRecord>> {
    if !owners.has_lanes() {
        return None;
    }
    let placed = owners.placed_nodes();
    let mine = placed.iter().find(|r| r.id == me)?;
    let mut out = vec![(*mine).clone()];
    if !owners.lane_sets.is_empty() {
        for m in owners.lane_sets.get(me)? {
            out.push(owners.nodes.get(m)?.clone());
        }
        return Some(out);
    }
    // A node leaving lanes of four named per owner (4 -> 3): while it is
    // placed (its keys move), the lanes stay as named.
    if let Some(wide) = owners.lane_wider_sets.get(me) {
        if wide.iter().all(|id| placed.iter().any(|r| r.id == *id)) {
            for m in wide {
                out.push(owners.nodes.get(m)?.clone());
            }
            return Some(out);
        }
    }
    let order = if owners.lane_wider.is_empty() { &owners.lane_order } else { &owners.lane_wider };
    let rank = |id: &str| order.iter().position(|o| o == id).unwrap_or(usize::MAX);
    let mut others: Vec<&NodeRecord> = placed.iter().filter(|r| r.id != me).copied().collect();
    // Stable: nodes the order lacks (none once it is recorded) stay by id after it.
    others.sort_by_key(|r| rank(&r.id));
    out.extend(others.into_iter().cloned());
    Some(out)
}

fn identity(r: &NodeRecord) -> Option<NodeIdentity> {
    let id: [u8; 16] = hex::decode(&r.id).ok()?.try_into().ok()?;
    Some(NodeIdentity { addr: r.cluster, id, bump: 0 })
}

/// Lanes this reactor is the primary of, all of one lane owner: its own
/// shards' (the owner is this node), or foster lanes (`takeover`: the
/// lanes of another owner this node acts for).
pub(crate) struct Attached {
    /// The lane owner, hex.
    owner: String,
    /// What the lanes were made from: the layout version (own lanes) or
    /// the takeover record's version (foster lanes).
    version: u64,
    /// The lane's nodes as the layout named them, by position (a changed
    /// address makes the lanes again).
    records: Vec<NodeRecord>,
    nodes: Vec<String>,
    health: Arc<DiskHealth>,
    /// (routing shard id, lane).
    lanes: Vec<(u32, Rc<LocalShard>)>,
    /// Per member index: its position, a probe target and the last probe.
    probes: Vec<(usize, Rc<RemoteShard>, Option<Instant>)>,
    /// Per member: a heal of the commits it missed is running.
    healing: Vec<Rc<Cell<bool>>>,
    /// Per member: a probe is running.
    probing: Vec<Rc<Cell<bool>>>,
    /// Per member: the gossip held its node down at the last look (when
    /// the lanes were made: suspect or down, the members `make` starts out
    /// of service).
    gossip_down: Vec<bool>,
    /// Per member: connections to its node refused (by any reactor) at the
    /// last look (`ClusterNode::refused_count`).
    refused_seen: Vec<u64>,
    shape: SetShape,
    recorder: Rc<crate::takeover::StaleRecorder>,
    /// The lanes write bodies whole (`owners::LaneOrder::plain`).
    plain: bool,
}

impl Attached {
    fn mirrors(&self) -> Vec<Rc<Mirrors>> {
        self.lanes.iter().filter_map(|(_, l)| l.mirrors()).collect()
    }

    /// Whether member `i` is in service and healed of every commit it missed.
    fn clean(&self, i: usize) -> bool {
        let disk = self.probes[i].0;
        self.health.online(disk) && !self.healing[i].get() && !self.mirrors().iter().any(|m| m.has_missed(i))
    }
}

/// Keeps this reactor's shards the primaries of their cluster lanes as
/// the layout says (unless another node acts for this node, `takeover`:
/// its shards then take no writes of their own), keeps the foster lanes
/// of the owners this node acts for, and puts failed members back in
/// service when they answer again. Runs for the life of the reactor
/// (format 1 nodes in a cluster only).
pub async fn run(ctx: Rc<Ctx>) {
    let Some(node) = ctx.shared.cluster.clone() else { return };
    if ctx.shared.layout.lanes.is_some() {
        tracing::warn!("this node's dirs are erasure sets (format 2): its objects are not spread over other nodes");
        follow(&ctx, &node, u64::MAX);
        return;
    }
    if ctx.core == 0 {
        monoio::spawn(crate::takeover::node_task(ctx.clone(), node.clone()));
    }
    let me = node.id_hex();
    let pool = crate::fanout::pool(&node);
    let mine: Vec<u32> = (0..ctx.shards.count()).filter(|&s| ctx.shards.local(s).is_some()).collect();
    let mut attached: Option<Attached> = None;
    let mut fosters: HashMap<String, Attached> = HashMap::new();
    let mut retiring: Vec<(Instant, Attached)> = Vec::new();
    let mut counted = 0u64;
    let mut fenced = false;
    // The lanes were made and their records have not been walked for
    // pieces narrower than them yet (`restripe`).
    let mut walk_due = false;
    // When core 0 last wrote this node's re-striping report (`restripe::report`).
    let mut reported_at: Option<Instant> = None;
    // Member shards no lane reads any more (`members::sweep`).
    let (mut sweep, sweep_every) = (crate::members::Sweep::default(), crate::members::sweep_every());
    let mut swept_at = Instant::now();
    while !ctx.shutdown.is_closed() {
        let owners = node.owners.load_full();
        if let Some(o) = &owners {
            let lanes_on = lane_nodes(o, &me);
            // Another node acts for this one: its shards are members of
            // that node's foster lanes and take no writes of their own.
            let taken = lanes_on.is_some() && o.acting_for(&me) != me;
            if taken != fenced {
                for &s in &mine {
                    if let Some(l) = ctx.shards.local(s) {
                        l.set_fenced(taken);
                    }
                }
                fenced = taken;
                if taken {
                    tracing::warn!(acting = %o.acting_for(&me), "another node acts for this node's partitions; its shards serve that node's lanes");
                }
            }
            let want = if taken { None } else { lanes_on };
            let same = match (&attached, &want) {
                (Some(a), Some(nodes)) => a.version == o.layout.version && a.records == *nodes && a.plain == o.lanes_plain,
                (None, None) => true,
                _ => false,
            };
            if !same {
                if let Some(a) = attached.take() {
                    take_apart(&a);
                }
                attached = want.and_then(|nodes| {
                    let lanes: Vec<(u32, u32, Rc<LocalShard>)> =
                        mine.iter().filter_map(|&s| Some((s, s, ctx.shards.local(s)?.clone()))).collect();
                    make(&ctx, &pool, o, o.layout.version, &nodes, 0, lanes, &node)
                });
                walk_due = attached.is_some();
                // Every reactor counts its own lanes.
                let n = attached.as_ref().map_or(0, |a| a.lanes.len() as u64);
                node.lanes_attached.fetch_sub(counted, Relaxed);
                node.lanes_attached.fetch_add(n, Relaxed);
                counted = n;
            }
            follow(&ctx, &node, o.layout.version);
            // Lanes that formed or grew (a recorded lane order) hold
            // records of an older shape: once no key moves, they are
            // striped again, unless this node reported that done for
            // this order already.
            let restripe_due = o.prev.is_none() && !o.lane_order.is_empty() && o.restriped.get(&me) != Some(&o.lane_order_version);
            if walk_due && restripe_due {
                if let Some(a) = &attached {
                    let lanes = a.lanes.iter().filter_map(|(_, l)| Some((l.clone(), l.mirrors()?))).collect();
                    monoio::spawn(crate::restripe::walk(ctx.clone(), node.clone(), lanes, o.lane_order_version));
                }
                // The walk reports itself; the loop below only tries again.
                reported_at = Some(Instant::now());
                walk_due = false;
            }
            // The walks ended but their report did not reach the
            // configuration: written again (core 0, now and then).
            if ctx.core == 0
                && restripe_due
                && crate::restripe::all_walked(&node, o.lane_order_version, ctx.shared.config.threads)
                && reported_at.is_none_or(|t| t.elapsed() >= crate::restripe::REPORT_AGAIN_EVERY)
            {
                reported_at = Some(Instant::now());
                crate::restripe::report(&node, o.lane_order_version).await;
            }
            follow_fosters(&ctx, &node, o, &mut fosters, &mut retiring, &pool).await;
            if swept_at.elapsed() >= sweep_every {
                swept_at = Instant::now();
                crate::members::sweep(&ctx, o, &me, &mut sweep);
            }
        }
        if let Some(a) = &mut attached {
            revive(&ctx, a, &node).await;
        }
        for a in fosters.values_mut() {
            revive(&ctx, a, &node).await;
        }
        publish(&ctx, attached.as_ref(), &fosters, &node);
        monoio::time::sleep(if owners.is_some() { POLL } else { Duration::from_millis(50) }).await;
    }
}

/// Records that this reactor's lanes follow layout `version` (`u64::MAX`:
/// any, the node has no cluster lanes); once every reactor follows the
/// same, the node is ready for it (`ready`).
fn follow(ctx: &Ctx, node: &crate::cluster::ClusterNode, version: u64) {
    let mut f = node.lane_follows.lock().unwrap_or_else(|e| e.into_inner());
    if f.get(&ctx.core) == Some(&version) {
        return;
    }
    f.insert(ctx.core, version);
    let all = f.len() >= ctx.shared.config.threads && f.values().all(|v| *v == version);
    node.lanes_ready.store(if all { version } else { 0 }, Relaxed);
}

/// Whether every reactor's lanes follow layout `version`: until they do,
/// an object request is refused with 503 (a write would reach the owner's
/// shard alone, a read of a striped record could not be decoded; the key's
/// shard may be another reactor's).
pub fn ready(node: &crate::cluster::ClusterNode, version: u64) -> bool {
    let r = node.lanes_ready.load(Relaxed);
    r == version || r == u64::MAX
}

/// Keeps a foster lane set for each owner this node acts for (`takeover`):
/// opened when a takeover record names this node, taken apart when it no
/// longer does (or names it at another version).
async fn follow_fosters(
    ctx: &Rc<Ctx>,
    node: &Arc<crate::cluster::ClusterNode>,
    o: &Owners,
    fosters: &mut HashMap<String, Attached>,
    retiring: &mut Vec<(Instant, Attached)>,
    pool: &Rc<crate::cluster_pool::RpcPool>,
) {
    let me = node.id_hex();
    let want: HashMap<String, u64> = o
        .takeovers
        .iter()
        .filter(|(owner, (acting, _))| **owner != me && *acting == me && lane_nodes(o, owner).is_some())
        .map(|(owner, (_, v))| (owner.clone(), *v))
        .collect();
    let before = fosters.len();
    let gone: Vec<String> = fosters
        .iter()
        .filter(|(owner, a)| {
            !(want.get(*owner) == Some(&a.version) && a.plain == o.lanes_plain && lane_nodes(o, owner).is_some_and(|n| n == a.records))
        })
        .map(|(owner, _)| owner.clone())
        .collect();
    for owner in gone {
        if let Some(a) = fosters.remove(&owner) {
            // No new request reaches them; those in flight finish with
            // their lanes, taken apart later (`RETIRE_AFTER`).
            for (id, _) in &a.lanes {
                crate::takeover::set_foster(*id, None);
            }
            tracing::warn!(owner = %owner, "this reactor no longer acts for a lane owner: its foster lanes are closed");
            retiring.push((Instant::now(), a));
        }
    }
    retiring.retain(|(at, a)| {
        let done = at.elapsed() >= RETIRE_AFTER;
        if done {
            for (_, l) in &a.lanes {
                l.retire_mirrors();
            }
        }
        !done
    });
    for (owner, v) in want {
        if fosters.contains_key(&owner) {
            continue;
        }
        if let Some(a) = foster(ctx, node, o, &owner, v, pool).await {
            fosters.insert(owner, a);
        }
    }
    if fosters.len() != before {
        node.fostering.fetch_sub(before as u64, Relaxed);
        node.fostering.fetch_add(fosters.len() as u64, Relaxed);
    }
    let view: std::collections::BTreeMap<String, u64> = fosters.iter().map(|(k, a)| (k.clone(), a.version)).collect();
    node.foster_follows.lock().unwrap_or_else(|e| e.into_inner()).insert(ctx.core, view);
}

/// Opens this reactor's foster lanes of `owner` at takeover record
/// version `v`: each of its lanes `s` whose member shard lives on this
/// core, that member shard the primary (at this node's position of the
/// owner's sets), the other nodes' copies the members.
async fn foster(
    ctx: &Rc<Ctx>,
    node: &Arc<crate::cluster::ClusterNode>,
    o: &Owners,
    owner: &str,
    v: u64,
    pool: &Rc<crate::cluster_pool::RpcPool>,
) -> Option<Attached> {
    let me = node.id_hex();
    let rec = o.nodes.get(owner)?;
    let (Some(n), Some(slot)) = (rec.shards, o.slot_of(owner)) else {
        tracing::error!(owner = %owner, "a lane owner without a shard count (an older build) cannot be taken over");
        return None;
    };
    let nodes = lane_nodes(o, owner)?;
    let me_pos = nodes.iter().position(|r| r.id == me)?;
    let owner_id: [u8; 16] = hex::decode(owner).ok()?.try_into().ok()?;
    let count = ctx.shards.count().max(1);
    let mut lanes = Vec::new();
    for s in (0..n).filter(|s| ctx.shards.local(s % count).is_some()) {
        match crate::members::shard(ctx, owner_id, s).await {
            Ok(sh) => {
                let l = Rc::new(LocalShard::new(sh).with_ruled(ctx.shared.buckets.ruled()));
                lanes.push((crate::takeover::foster_id(slot, s), s, l));
            }
            Err(e) => {
                tracing::error!(owner = %owner, lane = s, error = %e, "cannot open a member shard to act for its owner");
                return None;
            }
        }
    }
    let a = make(ctx, pool, o, v, &nodes, me_pos, lanes, node)?;
    for (id, l) in &a.lanes {
        crate::takeover::set_foster(*id, Some(l.clone()));
    }
    tracing::warn!(owner = %owner, version = v, lanes = a.lanes.len(), "this reactor acts for a lane owner: its member copies are the primaries of foster lanes");
    Some(a)
}

/// Detaches this node's own lane set: its shards are lone shards again.
fn take_apart(a: &Attached) {
    for (_, l) in &a.lanes {
        l.set_mirrors(None);
    }
}

/// This reactor's view of its lanes, for `GET /admin/v1/cluster`, and
/// which members are clean (`takeover` removes their stale records).
fn publish(ctx: &Ctx, own: Option<&Attached>, fosters: &HashMap<String, Attached>, node: &crate::cluster::ClusterNode) {
    // Read before the views are made: a stale record applied by then was
    // written after its member was taken out of service (`lanes::commit`
    // fails the member before it records it), so the views below show it.
    let applied = node.raft().map_or(0, |r| r.store().applied_index());
    let member_views = |a: &Attached| -> Vec<serde_json::Value> {
        let lanes = a.mirrors();
        (0..a.probes.len())
            .map(|i| {
                let (keys, over) = lanes.iter().map(|m| m.missed_count(i)).fold((0, false), |x, y| (x.0 + y.0, x.1 | y.1));
                serde_json::json!({
                    "node": a.nodes.get(a.probes[i].0),
                    "in_service": a.health.online(a.probes[i].0),
                    "missed_keys": keys,
                    "missed_overflow": over,
                })
            })
            .collect()
    };
    let view = match own {
        None => serde_json::Value::Null,
        Some(a) => serde_json::json!({
            "data_blocks": a.shape.data_blocks(),
            "parity_blocks": a.shape.parity_blocks(),
            "write_quorum": a.shape.write_quorum(),
            "lanes": a.lanes.len(),
            "members": member_views(a),
        }),
    };
    let mut view = view;
    if !fosters.is_empty() {
        let f: Vec<serde_json::Value> = fosters
            .values()
            .map(|a| serde_json::json!({ "owner": a.owner, "version": a.version, "lanes": a.lanes.len(), "members": member_views(a) }))
            .collect();
        if view.is_null() {
            view = serde_json::json!({});
        }
        view["fostered"] = serde_json::Value::Array(f);
    }
    node.lane_views.lock().unwrap_or_else(|e| e.into_inner()).insert(ctx.core, view);
    let mut clean = std::collections::BTreeMap::new();
    for a in own.into_iter().chain(fosters.values()) {
        for i in 0..a.probes.len() {
            if let Some(m) = a.nodes.get(a.probes[i].0) {
                clean.insert((a.owner.clone(), m.clone()), a.clean(i));
            }
        }
    }
    node.lane_clean.lock().unwrap_or_else(|e| e.into_inner()).insert(ctx.core, (applied, clean));
}

/// Where the records a lane of `nodes` (its owner first) holds from lanes
/// one node wider (`LaneOrder::wider`: a node left lanes of four) have
/// their blocks: per position of the wider lane, the position of its node
/// in this lane (None: the node that left). None when the order names
/// no wider lanes, or not these nodes' (no such record is held).
pub fn wide_positions(owners: &Owners, nodes: &[NodeRecord]) -> Option<Vec<Option<usize>>> {
    let wider = &owners.lane_wider;
    let owner = &nodes.first()?.id;
    // The lanes of four were named per owner (`LaneOrder::wider_lanes`).
    if let Some(wide) = owners.lane_wider_sets.get(owner) {
        if wide.len() != nodes.len() || !nodes[1..].iter().all(|r| wide.contains(&r.id)) {
            return None;
        }
        let lane = std::iter::once(owner).chain(wide.iter());
        return Some(lane.map(|id| nodes.iter().position(|r| r.id == *id)).collect());
    }
    if wider.len() != nodes.len() + 1 || !nodes.iter().all(|r| wider.contains(&r.id)) {
        return None;
    }
    let lane = std::iter::once(owner).chain(wider.iter().filter(|id| *id != owner));
    Some(lane.map(|id| nodes.iter().position(|r| r.id == *id)).collect())
}

/// Makes each of `lanes` ((routing id, lane index, shard)) the primary of
/// its lane over `nodes` (the lane owner first; this node at `me_pos`).
#[allow(clippy::too_many_arguments)]
fn make(
    ctx: &Ctx,
    pool: &Rc<crate::cluster_pool::RpcPool>,
    o: &Owners,
    version: u64,
    nodes: &[NodeRecord],
    me_pos: usize,
    lanes: Vec<(u32, u32, Rc<LocalShard>)>,
    node: &Arc<crate::cluster::ClusterNode>,
) -> Option<Attached> {
    let ids: Vec<[u8; 16]> = nodes.iter().filter_map(|r| hex::decode(&r.id).ok()?.try_into().ok()).collect();
    let peers: Vec<(usize, NodeIdentity)> =
        nodes.iter().enumerate().filter(|(p, _)| *p != me_pos).filter_map(|(p, r)| Some((p, identity(r)?))).collect();
    if ids.len() != nodes.len() || peers.len() + 1 != nodes.len() {
        tracing::error!("a node record of the layout has a malformed id; objects stay on their owner alone");
        return None;
    }
    let shape = match SetShape::new(nodes.len(), None) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "no erasure shape for the cluster's lanes");
            return None;
        }
    };
    let params = shape.params(tessera_erasure::DEFAULT_STRIPE_BYTES).ok()?;
    let health = DiskHealth::for_cluster(ids.clone(), node.lane_ec.clone());
    // Members the gossip holds suspect or down start out of service (a
    // call to them would wait for its deadline); a probe puts them back.
    // One it does not know yet (a node just started) is taken as alive.
    let alive = node.alive_ids();
    let down: std::collections::HashSet<[u8; 16]> =
        node.members().iter().map(|m| m.identity.id).filter(|id| !alive.contains(id)).collect();
    for (p, peer) in &peers {
        if down.contains(&peer.id) {
            health.fail(*p);
        }
    }
    let owner = nodes[0].id.clone();
    let owner_id = ids[0];
    let recorder = Rc::new(crate::takeover::StaleRecorder::new(
        node.clone(),
        owner.clone(),
        peers.iter().map(|(p, _)| nodes[*p].id.clone()).collect(),
    ));
    let remote = |peer: &NodeIdentity, s: u32| {
        Rc::new(RemoteShard::new(pool.clone(), peer.clone(), owner_id, s | crate::holder::wire::CLUSTER_LANE))
    };
    let first = lanes.first().map_or(0, |l| l.1);
    let wide = wide_positions(o, nodes);
    let mut out = Vec::with_capacity(lanes.len());
    for (id, s, l) in lanes {
        let members = peers.iter().map(|(p, peer)| (*p, Holder::Remote(remote(peer, s)))).collect();
        let m = Mirrors::new(me_pos, members, shape.write_quorum(), health.clone(), Some(params))
            .with_recorder(recorder.clone())
            .with_wide(wide.clone())
            .with_plain(o.lanes_plain);
        for (i, (p, _)) in peers.iter().enumerate() {
            if o.is_stale(&owner, &nodes[*p].id) {
                m.walk_whole(i);
            }
        }
        l.set_mirrors(Some(Rc::new(m)));
        out.push((id, l));
    }
    tracing::info!(
        owner = %owner,
        version,
        nodes = nodes.len(),
        data = shape.data_blocks(),
        parity = shape.parity_blocks(),
        write_quorum = shape.write_quorum(),
        plain = o.lanes_plain,
        lanes = out.len(),
        core = ctx.core,
        "this reactor's shards are lanes over the cluster's nodes"
    );
    let probes = peers.iter().map(|(p, peer)| (*p, remote(peer, first), None)).collect();
    let healing = peers.iter().map(|_| Rc::new(Cell::new(false))).collect();
    let probing = peers.iter().map(|_| Rc::new(Cell::new(false))).collect();
    let gossip_down = peers.iter().map(|(_, peer)| down.contains(&peer.id)).collect();
    let refused_seen = peers.iter().map(|(_, peer)| node.refused_count(&peer.id)).collect();
    Some(Attached {
        owner,
        version,
        records: nodes.to_vec(),
        nodes: nodes.iter().map(|r| r.id.clone()).collect(),
        health,
        lanes: out,
        probes,
        healing,
        probing,
        gossip_down,
        refused_seen,
        shape,
        recorder,
        plain: o.lanes_plain,
    })
}

/// Probes each member out of service (at most every `REVIVE_EVERY`) and
/// puts it back when it answers; a member back in service that missed
/// commits is healed of them (one heal per member at a time).
async fn revive(ctx: &Rc<Ctx>, a: &mut Attached, node: &Arc<crate::cluster::ClusterNode>) {
    let lanes: Vec<Rc<LocalShard>> = a.lanes.iter().map(|(_, l)| l.clone()).collect();
    // A write found too few members in service: probe them now, whenever
    // they were last probed (`Mirrors::await_quorum` waits for it).
    let wanted = a.health.take_wanted();
    for (i, (disk, probe, last)) in a.probes.iter_mut().enumerate() {
        let disk = *disk;
        // When the gossip comes to hold a member's node down, the member
        // goes out of service at once: else every call to it would wait
        // its deadline (`MEMBER_CALL_TIMEOUT`), the first write of each
        // lane after a cut included. Down, not suspect: under load the
        // gossip suspects live nodes now and then, and each member taken
        // out costs a stale record and a heal. Only the change counts: a
        // probe that gets an answer puts the member back even while the
        // gossip still says down (it takes seconds to see a healed node).
        // Likewise when a connection to the member's node was refused
        // (here or on another reactor): nothing listens there, so this
        // reactor's next write to it would fail too.
        let id = a.health.disks.get(disk).map(|d| d.id);
        let down = id.is_some_and(|id| node.held_down(&id));
        let refused = id.map_or(0, |id| node.refused_count(&id));
        let went_down = down && !a.gossip_down[i];
        let newly_refused = refused > a.refused_seen[i];
        (a.gossip_down[i], a.refused_seen[i]) = (down, refused);
        let why = if went_down {
            Some((&node.lane_members_held_down, "the gossip holds the node down"))
        } else if newly_refused {
            Some((&node.lane_members_refused, "a connection to the node was refused"))
        } else {
            None
        };
        if let Some((counter, why)) = why.filter(|_| a.health.online(disk)) {
            a.health.fail(disk);
            counter.fetch_add(1, Relaxed);
            tracing::warn!(owner = %a.owner, member = disk, "a lane member is out of service: {why}");
            continue;
        }
        if a.health.online(disk) {
            let missed = lanes.iter().filter_map(|l| l.mirrors()).any(|m| m.has_missed(i));
            if missed && !a.healing[i].get() {
                a.healing[i].set(true);
                monoio::spawn(heal_member(ctx.clone(), lanes.clone(), i, node.clone(), a.healing[i].clone()));
            }
            continue;
        }
        if a.probing[i].get() || (!wanted && last.is_some_and(|t| t.elapsed() < REVIVE_EVERY)) {
            continue;
        }
        *last = Some(Instant::now());
        // In a task of its own: a probe of a cut-off node waits its whole
        // deadline, and this loop also takes the other members out.
        a.probing[i].set(true);
        let (probe, probing, recorder, health, node, owner) =
            (probe.clone(), a.probing[i].clone(), a.recorder.clone(), a.health.clone(), node.clone(), a.owner.clone());
        monoio::spawn(async move {
            match probe.load(crate::meta::T_OBJECTS, b"\0tessera-probe").await {
                Ok(_) => {
                    // Its next miss is recorded stale again.
                    recorder.reset(i);
                    if health.revive(disk) {
                        node.lane_members_revived.fetch_add(1, Relaxed);
                        tracing::warn!(owner = %owner, member = disk, "a lane member on another node answers again; it takes writes again");
                    }
                }
                Err(e) => tracing::debug!(member = disk, error = %e, "a lane member on another node is still out of service"),
            }
            probing.set(false);
        });
    }
}

/// Heals member `i` of `lanes` of the commits it missed: each such key
/// mended under its lock (`heal::mend_key`: the member's record verified
/// against the primary's, else rebuilt, its blocks decoded and coded
/// again). A lane whose list overflowed is walked whole. Keys that cannot
/// be mended (the member failed again) are kept for the next heal.
async fn heal_member(ctx: Rc<Ctx>, lanes: Vec<Rc<LocalShard>>, i: usize, node: Arc<crate::cluster::ClusterNode>, running: Rc<Cell<bool>>) {
    let tally = crate::heal::Tally {
        removed: &node.lane_heal_removed,
        rebuilt: &node.lane_heal_rebuilt,
        bytes: &node.lane_heal_bytes,
        verified: &node.lane_heal_verified,
    };
    let rate = ctx.shared.config.heal_bytes_per_sec / ctx.shared.config.threads.max(1) as u64;
    let mut throttle = crate::heal::Throttle::new(rate.max(u64::from(ctx.shared.config.heal_bytes_per_sec > 0)));
    let (mut mended, mut left) = (0u64, 0usize);
    for l in lanes {
        let Some(m) = l.mirrors() else { continue };
        let missed = m.take_missed(i);
        let disk = m.members[i].0;
        let failed = |e: IoError| {
            m.failed(disk, &e);
            e
        };
        if missed.overflow {
            match walk_whole(&l, &m, i, &tally, &mut throttle, &failed).await {
                Ok(n) => mended += n,
                Err(e) => {
                    tracing::warn!(member = disk, error = %e, "a returning member's whole-lane heal stopped; it walks the lane again at its next heal");
                    m.give_back_missed(i, crate::lanes::Missed { overflow: true, ..Default::default() });
                    left += 1;
                }
            }
            continue;
        }
        let mut back = crate::lanes::Missed::default();
        for (t, k) in missed.keys {
            if !back.keys.is_empty() || !m.health.online(disk) {
                back.keys.insert((t, k));
                continue;
            }
            match crate::heal::mend_key(&l, &m, crate::heal::Target::Member(i), t, &k, &tally, &mut throttle, &failed).await {
                Ok(_) => mended += 1,
                Err(e) => {
                    tracing::warn!(member = disk, error = %e, "a returning member could not be healed of a key; kept for its next heal");
                    back.keys.insert((t, k));
                }
            }
        }
        left += back.keys.len();
        if !back.keys.is_empty() {
            m.give_back_missed(i, back);
        }
    }
    tracing::info!(member = i + 1, mended, left, "a returning lane member was healed of the commits it missed");
    running.set(false);
}

/// Keys a whole-lane walk takes from a member's side too: every table but
/// the heal cursors (never mirrored) and the records kept once per data
/// dir (`metastore`: settled by their stamps, and the owner's own shard
/// is a member of the lanes of the node acting for it).
fn member_walks(t: u8) -> bool {
    use crate::meta::{T_BUCKETS, T_HEAL, T_IAM, T_META_STAMPS};
    ![T_HEAL, T_BUCKETS, T_IAM, T_META_STAMPS].contains(&t)
}

/// Keys per page of a whole-lane walk.
const WALK_PAGE: u32 = 1024;

/// Heals member `i` of every key of lane `l` (what it missed is not
/// known): the primary's keys and the member's (RPC `RANGE`), merged in
/// (table, key) order a page at a time, each mended (`heal::mend_key`):
/// a key the member holds and the primary does not was deleted while the
/// member was away, and goes. A member of an older build (no `RANGE`) is
/// walked by the primary's keys only. The number of keys mended.
async fn walk_whole(
    l: &Rc<LocalShard>,
    m: &crate::lanes::Mirrors,
    i: usize,
    tally: &crate::heal::Tally<'_>,
    throttle: &mut crate::heal::Throttle,
    failed: &dyn Fn(IoError) -> IoError,
) -> Result<u64, IoError> {
    use crate::holder::wire::TableKey;
    let disk = m.members[i].0;
    let member = m.members[i].1.clone();
    let mut from: TableKey = (0, Vec::new());
    let mut first = true;
    let mut member_side = true;
    let mut n = 0u64;
    loop {
        let after = (!first).then_some(from.1.as_slice());
        let a: Vec<TableKey> = crate::holder::keys_from(&l.shard, from.0, after, WALK_PAGE as usize)
            .into_iter()
            .filter(|(t, _)| *t != crate::meta::T_HEAL)
            .collect();
        let a_full = a.len() == WALK_PAGE as usize;
        // A member that cannot be asked has failed (out of service, its
        // walk starts over at its next heal), as a failed `mend_key` call.
        let b = if member_side {
            match member.keys(from.0, after, WALK_PAGE).await.map_err(failed)? {
                Some(b) => b,
                None => {
                    tracing::warn!(member = disk, "a member of an older build does not list its keys: its whole-lane heal walks the primary's keys only");
                    member_side = false;
                    Vec::new()
                }
            }
        } else {
            Vec::new()
        };
        let b_full = b.len() == WALK_PAGE as usize;
        let bound = match (a_full, b_full) {
            (true, true) => a.last().cloned().min(b.last().cloned()),
            (true, false) => a.last().cloned(),
            (false, true) => b.last().cloned(),
            (false, false) => None,
        };
        let keys: std::collections::BTreeSet<TableKey> = a
            .into_iter()
            .chain(b.into_iter().filter(|(t, _)| member_walks(*t)))
            .filter(|k| bound.as_ref().is_none_or(|b| k <= b))
            .collect();
        for (t, k) in &keys {
            if !m.health.online(disk) {
                return Err(IoError::BelowQuorum);
            }
            crate::heal::mend_key(l, m, crate::heal::Target::Member(i), *t, k, tally, throttle, failed).await?;
            n += 1;
        }
        match bound {
            // Pages that ended at `bound` (possibly with every key filtered out).
            Some(b) => {
                from = b;
                first = false;
            }
            None => return Ok(n),
        }
        monoio::time::sleep(std::time::Duration::ZERO).await;
    }
}

