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
//! owner's shard, then the other nodes by id. k + m is the node count,
//! m `tessera_erasure::default_parity` (2+1 on 3 nodes, 2+2 on 4), W
//! `SetShape::write_quorum` (2 of 3, 3 of 4): writes go on with one node
//! of 3 (or 4) down. Two nodes (1+1 would need both for every write) and
//! more than 4 (sets then differ per partition) keep the owner's shard
//! alone, as do nodes whose own dirs are erasure sets (format 2).
//!
//! **Why the owner's shard alone is read as the record holder.** Owners
//! are fixed by the layout (no takeover yet), and the owner's shard takes
//! every acknowledged commit (a commit fails when the primary's fails),
//! so it is never behind. A member that missed writes (its node was down)
//! is only read for blocks, and a block is used only when the member's
//! record of the key carries the very meta the owner read (tag, stripe
//! and block index are checked besides), so a stale member costs a decode
//! with parity, never a wrong byte. A member that fails a call is taken
//! out of service; it is put back when a probe call succeeds again (every
//! `REVIVE_EVERY`), and then takes new writes. The lane keeps the keys of
//! the commits each remote member missed (`lanes::Missed`, in memory, up
//! to `MAX_MISSED_KEYS` per lane, past which the whole lane is walked),
//! and a member back in service is healed of them (`heal_member`,
//! `heal::mend_key` over the RPC holder). Not built yet: the missed keys
//! are lost if the owner restarts before the member is back (they are
//! then mended only by read repair or the next write of the key: the
//! durable form is recording stale members in the configuration); owner
//! takeover when the owner is down (its partitions answer 503 until it is
//! back).

use std::cell::Cell;
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

/// How often a reactor looks at the layout.
pub const POLL: Duration = Duration::from_millis(100);
/// How often a member out of service is probed.
pub const REVIVE_EVERY: Duration = Duration::from_secs(2);
/// Fewest placed nodes for cluster lanes (see the module doc).
pub const MIN_NODES: usize = 3;
/// Most placed nodes for cluster lanes (every set then holds every node).
pub const MAX_NODES: usize = crate::owners::DEFAULT_WIDTH;

/// The nodes of this node's lanes, itself first then the others by id,
/// when the layout makes cluster lanes (see the module doc).
pub fn lane_nodes(owners: &Owners, me: &str) -> Option<Vec<NodeRecord>> {
    let placed = owners.placed_nodes();
    if !(MIN_NODES..=MAX_NODES).contains(&placed.len()) || owners.layout.width() != placed.len() {
        return None;
    }
    let mine = placed.iter().find(|r| r.id == me)?;
    let mut out = vec![(*mine).clone()];
    out.extend(placed.iter().filter(|r| r.id != me).map(|r| (*r).clone()));
    Some(out)
}

fn identity(r: &NodeRecord) -> Option<NodeIdentity> {
    let id: [u8; 16] = hex::decode(&r.id).ok()?.try_into().ok()?;
    Some(NodeIdentity { addr: r.cluster, id, bump: 0 })
}

/// The lanes this reactor made, and what they were made from.
struct Attached {
    version: u64,
    /// The lane's nodes as the layout named them (a changed address makes the lanes again).
    records: Vec<NodeRecord>,
    nodes: Vec<String>,
    health: Arc<DiskHealth>,
    /// Per member position (1..): a probe target and the last probe.
    probes: Vec<(Rc<RemoteShard>, Option<Instant>)>,
    /// Per member: a heal of the commits it missed is running.
    healing: Vec<Rc<Cell<bool>>>,
    shape: SetShape,
}

/// Keeps this reactor's shards the primaries of their cluster lanes as
/// the layout says, and puts failed members back in service when they
/// answer again. Runs for the life of the reactor (format 1 nodes in a
/// cluster only).
pub async fn run(ctx: Rc<Ctx>) {
    let Some(node) = ctx.shared.cluster.clone() else { return };
    if ctx.shared.layout.lanes.is_some() {
        tracing::warn!("this node's dirs are erasure sets (format 2): its objects are not spread over other nodes");
        follow(&ctx, &node, u64::MAX);
        return;
    }
    let me = node.id_hex();
    let pool = crate::fanout::pool(&node);
    let mine: Vec<u32> = (0..ctx.shards.count()).filter(|&s| ctx.shards.local(s).is_some()).collect();
    let mut attached: Option<Attached> = None;
    let mut counted = 0u64;
    while !ctx.shutdown.is_closed() {
        let owners = node.owners.load_full();
        if let Some(o) = &owners {
            let want = lane_nodes(o, &me);
            let same = match (&attached, &want) {
                (Some(a), Some(nodes)) => a.version == o.layout.version && a.records == *nodes,
                (None, None) => true,
                _ => false,
            };
            if !same {
                attached = match want {
                    Some(nodes) => attach(&ctx, &mine, &pool, o.layout.version, &nodes, node.identity.id, &node.lane_ec),
                    None => {
                        for &s in &mine {
                            if let Some(l) = ctx.shards.local(s) {
                                l.set_mirrors(None);
                            }
                        }
                        None
                    }
                };
                // Every reactor counts its own lanes.
                let n = if attached.is_some() { mine.len() as u64 } else { 0 };
                node.lanes_attached.fetch_sub(counted, Relaxed);
                node.lanes_attached.fetch_add(n, Relaxed);
                counted = n;
            }
            follow(&ctx, &node, o.layout.version);
        }
        if let Some(a) = &mut attached {
            revive(&ctx, &mine, a, &node).await;
        }
        publish(&ctx, &mine, attached.as_ref(), &node);
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

/// This reactor's view of its lanes, for `GET /admin/v1/cluster`.
fn publish(ctx: &Ctx, mine: &[u32], a: Option<&Attached>, node: &crate::cluster::ClusterNode) {
    let view = match a {
        None => serde_json::Value::Null,
        Some(a) => {
            let lanes: Vec<Rc<Mirrors>> = mine.iter().filter_map(|&s| ctx.shards.local(s)?.mirrors()).collect();
            let members: Vec<serde_json::Value> = (0..a.probes.len())
                .map(|i| {
                    let (keys, over) = lanes.iter().map(|m| m.missed_count(i)).fold((0, false), |x, y| (x.0 + y.0, x.1 | y.1));
                    serde_json::json!({
                        "node": a.nodes.get(i + 1),
                        "in_service": a.health.online(i + 1),
                        "missed_keys": keys,
                        "missed_overflow": over,
                    })
                })
                .collect();
            serde_json::json!({
                "data_blocks": a.shape.data_blocks(),
                "parity_blocks": a.shape.parity_blocks(),
                "write_quorum": a.shape.write_quorum(),
                "lanes": lanes.len(),
                "members": members,
            })
        }
    };
    node.lane_views.lock().unwrap_or_else(|e| e.into_inner()).insert(ctx.core, view);
}

/// Makes each of `mine` the primary of its lane over `nodes` (this node first).
fn attach(
    ctx: &Ctx,
    mine: &[u32],
    pool: &Rc<crate::cluster_pool::RpcPool>,
    version: u64,
    nodes: &[NodeRecord],
    me: [u8; 16],
    node_ec: &Arc<crate::sets_open::EcCounters>,
) -> Option<Attached> {
    let ids: Vec<[u8; 16]> = nodes.iter().filter_map(|r| hex::decode(&r.id).ok()?.try_into().ok()).collect();
    let peers: Vec<NodeIdentity> = nodes[1..].iter().filter_map(identity).collect();
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
    let health = DiskHealth::for_cluster(ids, node_ec.clone());
    let remote = |peer: &NodeIdentity, s: u32| {
        Rc::new(RemoteShard::new(pool.clone(), peer.clone(), me, s | crate::holder::wire::CLUSTER_LANE))
    };
    for &s in mine {
        let Some(l) = ctx.shards.local(s) else { continue };
        let members = peers.iter().enumerate().map(|(i, p)| (i + 1, Holder::Remote(remote(p, s)))).collect();
        let m = Mirrors::new(0, members, shape.write_quorum(), health.clone(), Some(params));
        l.set_mirrors(Some(Rc::new(m)));
    }
    tracing::info!(
        layout = version,
        nodes = nodes.len(),
        data = shape.data_blocks(),
        parity = shape.parity_blocks(),
        write_quorum = shape.write_quorum(),
        lanes = mine.len(),
        "this reactor's shards are lanes over the cluster's nodes"
    );
    let probes = peers.iter().map(|p| (remote(p, mine.first().copied().unwrap_or(0)), None)).collect();
    let healing = peers.iter().map(|_| Rc::new(Cell::new(false))).collect();
    Some(Attached { version, records: nodes.to_vec(), nodes: nodes.iter().map(|r| r.id.clone()).collect(), health, probes, healing, shape })
}

/// Probes each member out of service (at most every `REVIVE_EVERY`) and
/// puts it back when it answers; a member back in service that missed
/// commits is healed of them (one heal per member at a time).
async fn revive(ctx: &Rc<Ctx>, mine: &[u32], a: &mut Attached, node: &Arc<crate::cluster::ClusterNode>) {
    for (i, (probe, last)) in a.probes.iter_mut().enumerate() {
        let disk = i + 1;
        if a.health.online(disk) {
            let missed = mine.iter().filter_map(|&s| ctx.shards.local(s)?.mirrors()).any(|m| m.has_missed(i));
            if missed && !a.healing[i].get() {
                a.healing[i].set(true);
                monoio::spawn(heal_member(ctx.clone(), mine.to_vec(), i, node.clone(), a.healing[i].clone()));
            }
            continue;
        }
        if last.is_some_and(|t| t.elapsed() < REVIVE_EVERY) {
            continue;
        }
        *last = Some(Instant::now());
        match probe.load(crate::meta::T_OBJECTS, b"\0tessera-probe").await {
            Ok(_) => {
                if a.health.revive(disk) {
                    node.lane_members_revived.fetch_add(1, Relaxed);
                    tracing::warn!(member = disk, "a lane member on another node answers again; it takes writes again");
                }
            }
            Err(e) => tracing::debug!(member = disk, error = %e, "a lane member on another node is still out of service"),
        }
    }
}

/// Heals member `i` of this reactor's lanes of the commits it missed:
/// each such key mended under its lock (`heal::mend_key`: the member's
/// record verified against the owner's, else rebuilt, its blocks decoded
/// and coded again). A lane whose list overflowed is walked whole. Keys
/// that cannot be mended (the member failed again) are kept for the next
/// heal.
async fn heal_member(ctx: Rc<Ctx>, mine: Vec<u32>, i: usize, node: Arc<crate::cluster::ClusterNode>, running: Rc<Cell<bool>>) {
    let tally = crate::heal::Tally {
        removed: &node.lane_heal_removed,
        rebuilt: &node.lane_heal_rebuilt,
        bytes: &node.lane_heal_bytes,
        verified: &node.lane_heal_verified,
    };
    let rate = ctx.shared.config.heal_bytes_per_sec / ctx.shared.config.threads.max(1) as u64;
    let mut throttle = crate::heal::Throttle::new(rate.max(u64::from(ctx.shared.config.heal_bytes_per_sec > 0)));
    let (mut mended, mut left) = (0u64, 0usize);
    for &s in &mine {
        let Some(l) = ctx.shards.local(s).cloned() else { continue };
        let Some(m) = l.mirrors() else { continue };
        let missed = m.take_missed(i);
        let keys: Vec<crate::shards::TableKey> = if missed.overflow {
            every_key(&l.shard)
        } else {
            missed.keys.into_iter().collect()
        };
        let mut back = crate::lanes::Missed::default();
        for (t, k) in keys {
            if !back.keys.is_empty() || !m.health.online(i + 1) {
                back.keys.insert((t, k));
                continue;
            }
            let disk = m.members[i].0;
            let failed = |e: IoError| {
                m.failed(disk, &e);
                e
            };
            match crate::heal::mend_key(&l, &m, crate::heal::Target::Member(i), t, &k, &tally, &mut throttle, &failed).await {
                Ok(_) => mended += 1,
                Err(e) => {
                    tracing::warn!(lane = s, member = i + 1, error = %e, "a returning member could not be healed of a key; kept for its next heal");
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

/// Every key of a shard's tables (a heal whose missed list overflowed).
fn every_key(p: &tessera_io::Shard) -> Vec<crate::shards::TableKey> {
    let mut out = Vec::new();
    for t in (0..=u8::MAX).filter(|&t| !p.is_empty(t)) {
        let mut after: Option<Vec<u8>> = None;
        loop {
            let page = p.range(t, b"", after.as_deref(), 4096);
            out.extend(page.iter().map(|(k, _)| (t, k.clone())));
            match page.last() {
                Some((k, _)) if page.len() == 4096 => after = Some(k.clone()),
                _ => break,
            }
        }
    }
    out
}
