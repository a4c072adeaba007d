//! Which node owns a key in a cluster (issue 12): the nodes registered in
//! the cluster configuration and the layout table that maps each of the
//! `layout::PARTITIONS` partitions to an ordered set of them.
//!
//! - **Registration:** every node keeps `node/<id hex>` in the
//!   configuration (a `NodeRecord`: its cluster and S3 addresses); the Raft
//!   thread (re)writes it when it is missing or differs.
//! - **The layout** (key `layout`, `tessera_cluster::Layout::encode`) is
//!   computed by the configuration leader (`Layout::new` over the
//!   registered nodes, one placement disk per node, width
//!   `min(nodes, DEFAULT_WIDTH)`) and committed with a compare-and-set.
//!   A partition's **owner** is the node of its set's first position: it
//!   stores the partition's objects on its own disks and serves them; any
//!   other node forwards object requests to it (`forward`).
//! - **When the layout changes:** at once while the cluster holds no
//!   bucket. Once a bucket exists, a change moves objects between nodes
//!   (`handover`): the leader commits the new layout and the previous one
//!   (`layout.prev`) in one transaction, the new owners take their keys
//!   from the old ones, each reports when it holds all of them
//!   (`moved/<id>`), and the leader then removes `layout.prev`. Only
//!   one move at a time, between layouts without cluster lanes (1, 2,
//!   or 5 and more nodes), or one join to 3 or 4 nodes (`lanes_grow`):
//!   lane positions are stable (`LaneOrder`), so the records written
//!   over 3 nodes stay readable through the lanes of 4, and the members
//!   that hold none of an old owner's records (the newcomer; every other
//!   node when lanes form) are recorded stale in its lanes until they
//!   heal them; or one decommission from 4 nodes to 3 (`lanes_shrink`):
//!   the lanes keep the leaving node while its keys move, then read the
//!   records written over four through the wider order
//!   (`LaneOrder::wider`) until the walk stripes them over three; or,
//!   past four nodes, one join or one leave of lanes named per owner
//!   (`LaneOrder::lanes`, format 3: `lane_sets`): a lane
//!   stays four nodes, the newcomer (or a staying node) takes one
//!   member's position in a few lanes and is stale there until healed.
//!   Lane changes wait for takeovers, stale members and, where the order
//!   changes (or names a wider one), every node's walk (`lanes_busy`).
//!   From four lanes named per owner to three, the lanes of four are read
//!   through as named (`LaneOrder::wider_lanes`, format 4). From three
//!   to two the lanes go (`out_of_lanes`: first every record written
//!   whole). Any other change waits: a newly registered node, shown as
//!   `pending` in the cluster status; such a decommission is refused.
//! - **Decommission** (`decommission`, an operator's request): the node
//!   gets `decommission/<id>`, layouts place the registered nodes less the
//!   decommissioned ones, its keys move to the others as above, and the
//!   leader then takes it out of the Raft membership.
//! - Every node follows the committed table (`ClusterNode::owners`,
//!   refreshed by the Raft thread after each apply that changes `layout`
//!   or a `node/` key).

use std::collections::{BTreeMap, HashMap};

use tessera_cluster::{Disk, Layout, Membership, Node};
use tessera_raft::state::{Command, ConfigState};

use crate::lane_sets::{fresh_sets, grow_sets, shrink_sets, zones_of};

pub use crate::owner_records::*;

/// The committed placement, as every node follows it.
#[derive(Debug)]
pub struct Owners {
    pub layout: Layout,
    /// The configuration version (log index) of the `layout` key.
    pub version: u64,
    /// Registered nodes by id hex.
    pub nodes: BTreeMap<String, NodeRecord>,
    /// Registered nodes the layout does not place yet (decommissioned
    /// ones excluded).
    pub pending: Vec<String>,
    /// The nodes the layout places.
    pub placed: std::collections::BTreeSet<String>,
    /// Decommissioned nodes (`decommission/`): leaving, or gone.
    pub decommissioned: std::collections::BTreeSet<String>,
    /// Lane owner -> (the node acting for it, record version), where a
    /// takeover record exists (`takeover`).
    pub takeovers: BTreeMap<String, (String, u64)>,
    /// (lane owner, member) -> record version: members that may lack
    /// acknowledged commits of the owner's lanes (`takeover`).
    pub stale: BTreeMap<(String, String), u64>,
    /// The previous layout while keys move from it (`handover`), and the
    /// configuration version of its key.
    pub prev: Option<(Layout, u64)>,
    /// The nodes the previous layout places (empty outside a move).
    pub prev_placed: std::collections::BTreeSet<String>,
    /// Node id -> the layout version it reported its keys moved for.
    pub moved: BTreeMap<String, u64>,
    /// The stable order of lane members (`LaneOrder`; empty: by id), and
    /// the configuration version of its key (0: absent).
    pub lane_order: Vec<String>,
    pub lane_order_version: u64,
    /// The wider order of the lanes a node left (`LaneOrder::wider`;
    /// empty: none), whose records the lanes read until re-striped.
    pub lane_wider: Vec<String>,
    /// Node id -> the lane order version it finished re-striping under
    /// (`RestripedRecord`).
    pub restriped: BTreeMap<String, u64>,
    /// Each owner's lane members by position after it, where the lane
    /// order names them (`LaneOrder::lanes`, format 3; empty: every lane
    /// holds every placed node, ranked by `lane_order`).
    pub lane_sets: BTreeMap<String, Vec<String>>,
    /// The lanes of four named per owner that a node left (format 4,
    /// `LaneOrder::wider_lanes`; empty: none).
    pub lane_wider_sets: BTreeMap<String, Vec<String>>,
    /// The lanes write bodies whole: they go once every node wrote its
    /// striped records whole (`LaneOrder::plain`, format 5).
    pub lanes_plain: bool,
}

impl Owners {
    /// Reads the layout and the registered nodes from the configuration;
    /// `Ok(None)` before the first layout is committed.
    pub fn from_state(state: &ConfigState) -> Result<Option<Owners>, String> {
        let nodes = registered(state);
        let Some(v) = state.get(LAYOUT_KEY) else { return Ok(None) };
        let layout = Layout::decode(&v.value).map_err(|e| format!("the cluster layout: {e}"))?;
        let placed: std::collections::BTreeSet<String> = placed(&layout).into_iter().map(str::to_string).collect();
        let decommissioned = decommissioned(state);
        let pending =
            nodes.keys().filter(|id| !placed.contains(id.as_str()) && !decommissioned.contains(id.as_str())).cloned().collect();
        let takeovers = crate::takeover::takeovers(state);
        let stale = crate::takeover::stale(state);
        let prev = match state.get(PREV_LAYOUT_KEY) {
            Some(p) => Some((Layout::decode(&p.value).map_err(|e| format!("the previous cluster layout: {e}"))?, p.version)),
            None => None,
        };
        let prev_placed = prev.as_ref().map(|(p, _)| self::placed(p).into_iter().map(str::to_string).collect()).unwrap_or_default();
        let moved = moved(state);
        let (lane_order, lane_order_version, lane_wider, lane_sets, lane_wider_sets, lanes_plain) = match state.get(LANE_ORDER_KEY) {
            Some(v) => {
                let r = LaneOrder::decode(&v.value).map_err(|e| format!("the cluster's lane order: {e}"))?;
                (r.nodes, v.version, r.wider, r.lanes, r.wider_lanes, r.plain)
            }
            None => (Vec::new(), 0, Vec::new(), BTreeMap::new(), BTreeMap::new(), false),
        };
        let restriped = state
            .keys
            .range(RESTRIPED_PREFIX.to_string()..)
            .take_while(|(k, _)| k.starts_with(RESTRIPED_PREFIX))
            .filter_map(|(k, v)| Some((k[RESTRIPED_PREFIX.len()..].to_string(), RestripedRecord::decode(&v.value)?.order)))
            .collect();
        Ok(Some(Owners {
            layout,
            version: v.version,
            nodes,
            pending,
            placed,
            decommissioned,
            takeovers,
            stale,
            prev,
            prev_placed,
            moved,
            lane_order,
            lane_order_version,
            lane_wider,
            restriped,
            lane_sets,
            lane_wider_sets,
            lanes_plain,
        }))
    }

    /// While keys move (`handover`): the node that held partition `p`
    /// under the previous layout, when another node owns it now.
    pub fn moving_from(&self, p: u64) -> Option<&NodeRecord> {
        let (prev, _) = self.prev.as_ref()?;
        let p = (p % u64::from(self.layout.partitions())) as u32;
        let now = self.layout.node_of(self.layout.set(p).first()?)?;
        let before = prev.node_of(prev.set(p).first()?)?;
        (before != now).then(|| self.nodes.get(before)).flatten()
    }

    /// The nodes that own partitions under the current layout which
    /// another node held under the previous one (empty when nothing moves).
    pub fn gainers(&self) -> std::collections::BTreeSet<&str> {
        let Some((prev, _)) = &self.prev else { return Default::default() };
        (0..self.layout.partitions())
            .filter_map(|p| {
                let now = self.layout.node_of(self.layout.set(p).first()?)?;
                let before = prev.node_of(prev.set(p).first()?)?;
                (before != now).then_some(now)
            })
            .collect()
    }

    /// Whether node `id` reported every key of the current layout moved to it.
    pub fn moved_in(&self, id: &str) -> bool {
        self.moved.get(id) == Some(&self.layout.version)
    }

    /// The node that serves partition `p`: the node acting for its lane
    /// owner (`takeover`), the owner itself unless taken over.
    pub fn owner_of(&self, p: u64) -> Option<&NodeRecord> {
        let o = self.layout_owner_of(p)?;
        match self.takeovers.get(&o.id) {
            Some((acting, _)) if *acting != o.id => self.nodes.get(acting),
            _ => Some(o),
        }
    }

    /// While keys move: the node that owned partition `p` under the
    /// previous layout.
    pub fn prev_owner_of(&self, p: u64) -> Option<&NodeRecord> {
        let (prev, _) = self.prev.as_ref()?;
        let p = (p % u64::from(prev.partitions())) as u32;
        self.nodes.get(prev.node_of(prev.set(p).first()?)?)
    }

    /// The lane owner of partition `p`: its set's first position.
    pub fn layout_owner_of(&self, p: u64) -> Option<&NodeRecord> {
        let p = (p % u64::from(self.layout.partitions())) as u32;
        let node = self.layout.node_of(self.layout.set(p).first()?)?;
        self.nodes.get(node)
    }

    /// The node acting for lane owner `owner` (id hex).
    pub fn acting_for<'a>(&'a self, owner: &'a str) -> &'a str {
        self.takeovers.get(owner).map_or(owner, |(a, _)| a.as_str())
    }

    /// Whether node `me` acts for lane owner `owner` without being it (it
    /// serves that owner's keys from foster shards).
    pub fn fosters(&self, me: &str, owner: &str) -> bool {
        owner != me && self.acting_for(owner) == me
    }

    /// Whether another node acts for lane owner `id`: its shards are fenced
    /// and may lack acknowledged writes, the acting node's foster lanes hold
    /// them all.
    pub fn taken_over(&self, id: &str) -> bool {
        self.has_lanes() && self.acting_for(id) != id
    }

    /// Whether `member` may lack acknowledged commits of `owner`'s lanes.
    pub fn is_stale(&self, owner: &str, member: &str) -> bool {
        !self.stale.is_empty() && self.stale.contains_key(&(owner.to_string(), member.to_string()))
    }

    /// Whether the placed nodes make cluster lanes (`cluster_lanes::lane_nodes`:
    /// 3 or 4 placed nodes, every set holding every one; or lanes of four
    /// named per owner, `lane_sets`), without allocating.
    pub fn has_lanes(&self) -> bool {
        let placed = self.placed.len();
        if !self.lane_sets.is_empty() {
            return placed >= DEFAULT_WIDTH && self.layout.width() == DEFAULT_WIDTH;
        }
        (crate::cluster_lanes::MIN_NODES..=crate::cluster_lanes::MAX_NODES).contains(&placed) && self.layout.width() == placed
    }

    /// A placed node's position among the placed nodes by id (foster shard ids).
    pub fn slot_of(&self, id: &str) -> Option<usize> {
        self.placed_nodes().iter().position(|r| r.id == id)
    }

    /// Every node the layout places, and while keys move the nodes the
    /// previous layout placed (the nodes listing fans out to: a leaving
    /// node holds keys until the move is over).
    pub fn placed_nodes(&self) -> Vec<&NodeRecord> {
        self.nodes.iter().filter(|(id, _)| self.placed.contains(*id) || self.prev_placed.contains(*id)).map(|(_, r)| r).collect()
    }

    /// The `layout` part of `GET /admin/v1/cluster`.
    pub fn status(&self, me: &str) -> serde_json::Value {
        let mut owned: HashMap<&str, usize> = HashMap::new();
        for p in 0..self.layout.partitions() {
            if let Some(n) = self.layout.set(p).first().and_then(|d| self.layout.node_of(d)) {
                *owned.entry(n).or_insert(0) += 1;
            }
        }
        let nodes: Vec<serde_json::Value> = self
            .nodes
            .values()
            .map(|r| {
                serde_json::json!({
                    "id": r.id,
                    "cluster_address": r.cluster.to_string(),
                    "s3_address": r.s3.to_string(),
                    "zone": r.zone,
                    "partitions_owned": owned.get(r.id.as_str()).copied().unwrap_or(0),
                    "pending": self.pending.contains(&r.id),
                    "decommissioned": self.decommissioned.contains(&r.id),
                    "acting_for_it": self.acting_for(&r.id),
                    "self": r.id == me,
                })
            })
            .collect();
        serde_json::json!({
            "version": self.layout.version,
            "config_version": self.version,
            "partitions": self.layout.partitions(),
            "width": self.layout.width(),
            "nodes": nodes,
            "pending": self.pending,
            "decommissioned": self.decommissioned,
            "takeovers": self.takeovers.iter().map(|(o, (a, v))| serde_json::json!({"owner": o, "acting": a, "version": v})).collect::<Vec<_>>(),
            "stale": self.stale.keys().map(|(o, m)| serde_json::json!({"owner": o, "member": m})).collect::<Vec<_>>(),
            // Past four nodes: each owner's lane members, by position after it.
            "lane_sets": (!self.lane_sets.is_empty()).then_some(&self.lane_sets),
            // Lanes of three writing every record whole before they go (3 nodes to 2).
            "lanes_plain": self.lanes_plain,
            "moving": self.prev.as_ref().map(|(p, _)| {
                let gainers = self.gainers();
                serde_json::json!({
                    "from_version": p.version,
                    "to": gainers.iter().map(|g| serde_json::json!({"node": g, "done": self.moved_in(g)})).collect::<Vec<_>>(),
                })
            }),
        })
    }
}

/// The nodes a layout places in some set.
fn placed(layout: &Layout) -> std::collections::BTreeSet<&str> {
    (0..layout.partitions()).flat_map(|p| layout.set(p).iter().filter_map(|d| layout.node_of(d))).collect()
}

/// The registered nodes (records this build cannot read are skipped, and
/// logged by the caller that registers).
pub fn registered(state: &ConfigState) -> BTreeMap<String, NodeRecord> {
    state
        .keys
        .range(NODE_KEY_PREFIX.to_string()..)
        .take_while(|(k, _)| k.starts_with(NODE_KEY_PREFIX))
        .filter_map(|(_, v)| NodeRecord::decode(&v.value).ok())
        .map(|r| (r.id.clone(), r))
        .collect()
}

/// The decommissioned nodes (a record of another format counts too: a
/// node is never placed again by mistake).
pub fn decommissioned(state: &ConfigState) -> std::collections::BTreeSet<String> {
    state
        .keys
        .range(DECOMMISSION_PREFIX.to_string()..)
        .take_while(|(k, _)| k.starts_with(DECOMMISSION_PREFIX))
        .map(|(k, _)| k[DECOMMISSION_PREFIX.len()..].to_string())
        .collect()
}

/// The registered nodes a layout places: all but the decommissioned.
fn to_place(state: &ConfigState) -> BTreeMap<String, NodeRecord> {
    let gone = decommissioned(state);
    registered(state).into_iter().filter(|(id, _)| !gone.contains(id)).collect()
}

/// The command that decommissions node `id` (an operator's request:
/// `admin`), or why it cannot be done now: the node must be registered
/// and placed, another must stay, no move may be under way, and with
/// buckets neither the layout before nor after may make cluster lanes,
/// unless the lanes go from 4 nodes to 3 (`lanes_shrink`) and may change
/// now (`lanes_busy`).
pub fn decommission(state: &ConfigState, id: &str, now_ms: u64) -> Result<Command, String> {
    if !registered(state).contains_key(id) {
        return Err(format!("node {id} is not a member of the cluster"));
    }
    if decommissioned(state).contains(id) {
        return Err(format!("node {id} is decommissioned already"));
    }
    let Some(layout) = state.get(LAYOUT_KEY).and_then(|v| Layout::decode(&v.value).ok()) else {
        return Err("the cluster has no layout yet".into());
    };
    let placed = placed(&layout);
    if !placed.contains(id) {
        return Err(format!("node {id} holds no partitions (pending)"));
    }
    let stay = to_place(state).len() - 1;
    if stay == 0 {
        return Err("the last node cannot be decommissioned".into());
    }
    if state.get(PREV_LAYOUT_KEY).is_some() {
        return Err("keys are moving after an earlier layout change; try again once it is over".into());
    }
    let sets = recorded_sets(state)?;
    if has_buckets(state) && (lanes_at(&sets, placed.len()) || lanes_with(stay)) {
        // Lanes by order shrink from 4 nodes to 3; lanes named per owner
        // from more than 4 to one fewer (a staying node takes the leaving
        // one's positions, `lane_sets::shrink_sets`).
        // Lanes of three go (3 nodes to 2, `out_of_lanes`): the leaving
        // node may not be taken over (it exports its keys itself).
        let out = sets.is_empty() && placed.len() == crate::cluster_lanes::MIN_NODES;
        let can = out || if sets.is_empty() { placed.len() == crate::cluster_lanes::MAX_NODES } else { placed.len() >= DEFAULT_WIDTH };
        if !can || stay + 1 != placed.len() {
            return Err(format!(
                "with {} nodes placed and {stay} staying (one node leaves at a time, none may wait to join), \
                 the cluster's lanes cannot change that way",
                placed.len()
            ));
        }
        if let Some(why) = lanes_busy(state, &placed, true, if out { None } else { Some(id) }) {
            return Err(why);
        }
    }
    let value = serde_json::to_vec(&DecommissionRecord { format: DECOMMISSION_RECORD_FORMAT, since_ms: now_ms }).expect("serializes");
    Ok(Command::Cas { key: DecommissionRecord::key(id), expect: 0, value: Some(value) })
}

/// Node id -> the layout version of its `moved/` record.
fn moved(state: &ConfigState) -> BTreeMap<String, u64> {
    state
        .keys
        .range(MOVED_PREFIX.to_string()..)
        .take_while(|(k, _)| k.starts_with(MOVED_PREFIX))
        .filter_map(|(k, v)| Some((k[MOVED_PREFIX.len()..].to_string(), MovedRecord::decode(&v.value)?.layout)))
        .collect()
}

/// Whether `n` placed nodes make cluster lanes (`cluster_lanes`), whose
/// records a layout change would have to re-stripe (not built).
fn lanes_with(n: usize) -> bool {
    (crate::cluster_lanes::MIN_NODES..=crate::cluster_lanes::MAX_NODES).contains(&n)
}

/// The lane order the configuration holds, if any.
fn recorded_order(state: &ConfigState) -> Result<Option<LaneOrder>, String> {
    state.get(LANE_ORDER_KEY).map(|v| LaneOrder::decode(&v.value).map_err(|e| format!("the cluster's lane order: {e}"))).transpose()
}

/// Each owner's lane members as the lane order names them (format 3;
/// empty when it names none).
fn recorded_sets(state: &ConfigState) -> Result<BTreeMap<String, Vec<String>>, String> {
    Ok(recorded_order(state)?.map(|r| r.lanes).unwrap_or_default())
}

/// Whether `n` placed nodes make cluster lanes: 3 or 4 of them, or 4
/// and more with each owner's lane named (`sets`).
fn lanes_at(sets: &BTreeMap<String, Vec<String>>, n: usize) -> bool {
    if sets.is_empty() { lanes_with(n) } else { n >= DEFAULT_WIDTH }
}

/// The lanes of the owners `placed` now: members by position after their
/// owner, as named (`sets`), else every other placed node in lane order.
fn lanes_now(
    state: &ConfigState,
    sets: &BTreeMap<String, Vec<String>>,
    placed: &std::collections::BTreeSet<&str>,
) -> Result<BTreeMap<String, Vec<String>>, String> {
    if sets.is_empty() {
        let order = placed_order(state, placed)?;
        return Ok(placed.iter().map(|o| (o.to_string(), order.iter().filter(|n| n.as_str() != *o).cloned().collect())).collect());
    }
    let mut out = BTreeMap::new();
    for o in placed {
        let m = sets.get(*o).ok_or_else(|| format!("the lane order names no lane of placed node {o}"))?;
        out.insert(o.to_string(), m.clone());
    }
    Ok(out)
}

/// Whether a layout change from the nodes `placed` to `nodes` is a
/// decommission lanes take: 4 nodes to 3, the others staying. The lanes
/// of the three read the records written over four through the wider
/// order (`LaneOrder::wider`) until the walk stripes them again.
fn lanes_shrink(placed: &std::collections::BTreeSet<&str>, nodes: &BTreeMap<String, NodeRecord>) -> bool {
    placed.len() == crate::cluster_lanes::MAX_NODES
        && nodes.len() + 1 == placed.len()
        && nodes.keys().all(|id| placed.contains(id.as_str()))
}

/// Why the lanes of the nodes `placed` may not change now (None: they
/// may): another node acts for an owner, or a member may lack records
/// (keys would move from an owner's own shards, fenced or behind), or,
/// with `restriped`, a node has not striped its lanes' records in the
/// shape of the current lane order yet (they would be looked for on
/// the wrong nodes once the order changes again). A node `leaving` (a
/// decommission) may be down and taken over: its keys move from the
/// node acting for it (`handover`, from that node's foster lanes, which
/// hold every acknowledged write of it), and what it missed as a member
/// of the others' lanes goes with it; its own walk does not count.
fn lanes_busy(state: &ConfigState, placed: &std::collections::BTreeSet<&str>, restriped: bool, leaving: Option<&str>) -> Option<String> {
    let other = |id: &str| leaving != Some(id);
    if crate::takeover::takeovers(state).iter().any(|(o, (a, _))| o != a && other(o)) {
        return Some("another node acts for a lane owner; try again once it is back".into());
    }
    if crate::takeover::stale(state).keys().any(|(o, m)| other(o) && other(m)) {
        return Some("a lane member lacks records of its owner; try again once it is healed".into());
    }
    if !restriped {
        return None;
    }
    let order = state.get(LANE_ORDER_KEY)?;
    let behind: Vec<&str> = placed
        .iter()
        .copied()
        .filter(|id| other(id))
        .filter(|id| state.get(&RestripedRecord::key(id)).and_then(|v| RestripedRecord::decode(&v.value)).map(|r| r.order) != Some(order.version))
        .collect();
    (!behind.is_empty()).then(|| {
        format!("the lanes of {} still hold records of an earlier shape (re-striping runs after each lane change); try again once it is over", behind.join(", "))
    })
}

/// Whether the configuration holds any bucket.
pub fn has_buckets(state: &ConfigState) -> bool {
    state.keys.range(BUCKET_KEY_PREFIX.to_string()..).next().is_some_and(|(k, _)| k.starts_with(BUCKET_KEY_PREFIX))
}

/// Whether a layout change from the nodes `placed` to `nodes` is one
/// join that lanes take without re-striping onto fewer nodes: 2 nodes to
/// 3 (lanes form; each old owner's records are copied to the others, its
/// bodies striped by the walk, `restripe`) or 3 to 4 (every position of
/// the lanes keeps its node; the newcomer takes the last one).
fn lanes_grow(placed: &std::collections::BTreeSet<&str>, nodes: &BTreeMap<String, NodeRecord>) -> bool {
    placed.len() + 1 == nodes.len()
        && (crate::cluster_lanes::MIN_NODES..=crate::cluster_lanes::MAX_NODES).contains(&nodes.len())
        && placed.iter().all(|id| nodes.contains_key(*id))
}

/// The lane order after `placed` grows to `nodes`: the recorded one (else
/// the placed nodes by id, the order of lanes made without a record), the
/// newcomers after it by id.
fn grown_order(state: &ConfigState, placed: &std::collections::BTreeSet<&str>, nodes: &BTreeMap<String, NodeRecord>) -> Result<Vec<String>, String> {
    let mut order = placed_order(state, placed)?;
    order.extend(nodes.keys().filter(|id| !placed.contains(id.as_str())).cloned());
    Ok(order)
}

/// The lane order of the nodes `placed`: the recorded one, else by id.
fn placed_order(state: &ConfigState, placed: &std::collections::BTreeSet<&str>) -> Result<Vec<String>, String> {
    let mut order: Vec<String> = match state.get(LANE_ORDER_KEY) {
        Some(v) => LaneOrder::decode(&v.value)?.nodes.into_iter().filter(|id| placed.contains(id.as_str())).collect(),
        None => Vec::new(),
    };
    // Placed nodes the record lacks (none, unless it predates them) keep
    // the by-id order lanes gave them.
    for id in placed {
        if !order.iter().any(|o| o == id) {
            order.push(id.to_string());
        }
    }
    Ok(order)
}

/// What the leader should commit for a membership change (`None`:
/// nothing): the layout over the registered nodes when they differ from
/// the placed ones, at once while no bucket exists; once one exists, only
/// when no move is under way and neither layout makes cluster lanes (or
/// one node joins 2 or 3, `lanes_grow`, or one leaves 4, `lanes_shrink`),
/// and then with the current layout kept as `layout.prev` for the move
/// (`handover`), in one transaction. A join to lanes writes, in the same
/// transaction, the lane order with the newcomer last and a stale record
/// of each member that holds none of an old owner's records (the
/// newcomer; every other node when lanes form) in that owner's lanes: it
/// must not act for the owner before they heal it. A node leaving lanes
/// of four writes the order less it, and the order before as the wider
/// one (`LaneOrder::wider`): while keys move, the lanes stay four wide
/// (the leaving node is still placed by `layout.prev`), and the lanes of
/// three after read the records of four through it.
pub fn next_layout(state: &ConfigState) -> Result<Option<Command>, String> {
    let mut nodes = to_place(state);
    if nodes.is_empty() {
        return Ok(None);
    }
    let current = match state.get(LAYOUT_KEY) {
        Some(v) => Some((Layout::decode(&v.value).map_err(|e| format!("the cluster layout: {e}"))?, v.version)),
        None => None,
    };
    let mut keep_prev = false;
    let mut grow: Option<LaneChange> = None;
    // Decoded once: what every branch below asks of the lane order.
    let recorded = recorded_order(state)?;
    let sets = recorded.as_ref().map(|r| r.lanes.clone()).unwrap_or_default();
    let buckets = has_buckets(state);
    if let Some((layout, _)) = &current {
        let placed = placed(layout);
        let same = placed.len() == nodes.len() && nodes.keys().all(|id| placed.contains(id.as_str()));
        if same {
            // More than four nodes laid out by a build without named lanes,
            // still without objects: their lanes are named now.
            if !buckets && sets.is_empty() && nodes.len() > DEFAULT_WIDTH {
                let order = LaneOrder::with_sets(nodes.keys().cloned().collect(), fresh_sets(&nodes.keys().cloned().collect::<Vec<_>>(), &zones_of(state)));
                let expect = state.get(LANE_ORDER_KEY).map_or(0, |v| v.version);
                return Ok(Some(Command::Cas { key: LANE_ORDER_KEY.to_string(), expect, value: Some(order.encode()) }));
            }
            return Ok(None);
        }
        // Whether the lanes are involved with `n` nodes after the change:
        // lanes now, or lanes of 3 or 4 then.
        let involved = |n: usize| lanes_at(&sets, placed.len()) || lanes_with(n);
        if buckets {
            if state.get(PREV_LAYOUT_KEY).is_some() {
                return Ok(None);
            }
            // A node leaving and one joining where lanes are involved: the
            // leave goes first (a change that is both is neither a leave
            // nor a join of lanes), the newcomer joins after it.
            let leaving = placed.iter().copied().find(|id| !nodes.contains_key(*id));
            if leaving.is_some() && involved(nodes.len()) {
                nodes.retain(|id, _| placed.contains(id.as_str()));
            }
            // Several nodes registered at once where lanes are on the way
            // (two nodes joining two): they join one at a time, the
            // lowest id first, each join a move of its own.
            let joins = placed.iter().all(|id| nodes.contains_key(*id)) && nodes.len() > placed.len() + 1;
            if joins && involved(nodes.len()) {
                let first = nodes.keys().find(|id| !placed.contains(id.as_str())).cloned();
                nodes.retain(|id, _| placed.contains(id.as_str()) || Some(id) == first.as_ref());
            }
            if involved(nodes.len()) {
                let shrink = lanes_shrink(&placed, &nodes);
                let one_more = placed.len() + 1 == nodes.len() && placed.iter().all(|id| nodes.contains_key(*id));
                let one_less = nodes.len() + 1 == placed.len() && nodes.keys().all(|id| placed.contains(id.as_str()));
                // Past four nodes each owner's lane is named: a join to
                // lanes of four or more, a leave from more than four.
                let sets_grow = lanes_at(&sets, placed.len()) && placed.len() >= DEFAULT_WIDTH && one_more;
                let sets_shrink = !sets.is_empty() && placed.len() > DEFAULT_WIDTH && one_less;
                // Lanes of three on their way out (3 nodes to 2, `out_of_lanes`).
                if sets.is_empty() && placed.len() == crate::cluster_lanes::MIN_NODES && one_less {
                    let plain = recorded.as_ref().is_some_and(|r| r.plain);
                    return out_of_lanes(state, &placed, nodes, current.clone(), plain);
                }
                if !(sets.is_empty() && lanes_grow(&placed, &nodes)) && !shrink && !sets_grow && !sets_shrink {
                    return Ok(None);
                }
                // Not while another node acts for an owner, or a member
                // still lacks commits: keys move from their owner's own
                // shards, which are then fenced or behind. Not before the
                // records are in the shape of the current order where the
                // order would lose a node (a shrink), or where it already
                // names a wider one (records of four positions read
                // through it would be looked for on a newcomer).
                let wider = recorded.as_ref().is_some_and(|o| !o.wider.is_empty() || !o.wider_lanes.is_empty());
                // Named lanes change positions of their own: every record
                // in the current shape first, so a heal rebuilds them alike.
                let named = sets_grow || sets_shrink;
                if lanes_busy(state, &placed, shrink || wider || named, leaving.filter(|_| shrink || sets_shrink)).is_some() {
                    return Ok(None);
                }
                grow = Some(if named {
                    let now = lanes_now(state, &sets, &placed)?;
                    if sets_grow {
                        let order = grown_order(state, &placed, &nodes)?;
                        let newcomer = nodes.keys().find(|id| !placed.contains(id.as_str())).cloned().ok_or("no newcomer")?;
                        let (lanes, stale) = grow_sets(&now, &order, &newcomer, &zones_of(state));
                        (LaneOrder::with_sets(order, lanes), stale)
                    } else {
                        let leaving = leaving.ok_or("no leaving node")?;
                        let order: Vec<String> = placed_order(state, &placed)?.into_iter().filter(|id| id != leaving).collect();
                        let (lanes, stale) = shrink_sets(&now, &order, leaving, &zones_of(state))?;
                        (LaneOrder::with_sets(order, lanes), stale)
                    }
                } else if shrink {
                    // Every staying node holds every staying owner's
                    // records already: no member is stale.
                    // Lanes named per owner are read through as named
                    // (format 4), the lanes of three ranked by the order.
                    let before = placed_order(state, &placed)?;
                    let after = before.iter().filter(|id| nodes.contains_key(*id)).cloned().collect();
                    if sets.is_empty() {
                        (LaneOrder::new(after, before), Vec::new())
                    } else {
                        (LaneOrder::with_wider_sets(after, lanes_now(state, &sets, &placed)?), Vec::new())
                    }
                } else {
                    let order = grown_order(state, &placed, &nodes)?;
                    // Members that hold none of an old owner's records: the
                    // newcomer, and when lanes form (no lanes before) every
                    // other node.
                    let forming = !lanes_with(placed.len());
                    let mut stale = Vec::new();
                    for o in &placed {
                        for n in nodes.keys().filter(|id| id.as_str() != *o && (forming || !placed.contains(id.as_str()))) {
                            stale.push((o.to_string(), n.clone()));
                        }
                    }
                    (LaneOrder::new(order, Vec::new()), stale)
                });
            }
            keep_prev = true;
        }
    }
    // Without objects the lanes are named afresh past four nodes; at four
    // or fewer an order that names lanes, wider lanes or lanes on their
    // way out (formats 3 to 5) goes: lanes rank their nodes by id again.
    if !keep_prev && !buckets {
        let named = recorded.as_ref().is_some_and(|r| r.format >= LANE_ORDER_FORMAT_SETS);
        if nodes.len() > DEFAULT_WIDTH {
            let order: Vec<String> = nodes.keys().cloned().collect();
            grow = Some((LaneOrder::with_sets(order.clone(), fresh_sets(&order, &zones_of(state))), Vec::new()));
        } else if named {
            grow = Some((LaneOrder::new(Vec::new(), Vec::new()), Vec::new()));
        }
    }
    finish(state, nodes, current, keep_prev, grow)
}

/// A decommission from lanes of three to two nodes, which keep no lanes:
/// first the lanes write bodies whole (the lane order marked `plain`,
/// format 5, the layout unchanged) and every node's walk writes its
/// striped records whole (`restripe::unstripe`); once every node
/// reported that for this order (`lanes_busy`, the leaving node's walk
/// included: its keys are exported from its own shards), the layout of
/// two with the previous one kept for the move, and the lane order
/// removed: the owners' shards serve alone, every record whole on them.
/// `plain`: the lane order is marked so already.
/// Not while any node acts for another (the leaving node included: a node
/// taken over would have its keys served by foster lanes, which two
/// nodes do not have) or a member is stale.
fn out_of_lanes(
    state: &ConfigState,
    placed: &std::collections::BTreeSet<&str>,
    nodes: BTreeMap<String, NodeRecord>,
    current: Option<(Layout, u64)>,
    plain: bool,
) -> Result<Option<Command>, String> {
    if lanes_busy(state, placed, true, None).is_some() {
        return Ok(None);
    }
    if !plain {
        let order = placed_order(state, placed)?;
        let expect = state.get(LANE_ORDER_KEY).map_or(0, |v| v.version);
        return Ok(Some(Command::Cas { key: LANE_ORDER_KEY.to_string(), expect, value: Some(LaneOrder::plain(order).encode()) }));
    }
    // An order naming no node: `finish` removes the record.
    finish(state, nodes, current, true, Some((LaneOrder::new(Vec::new(), Vec::new()), Vec::new())))
}

/// What a lane change writes besides the layout: the new lane order (with
/// the wider one a node leaves) and the newcomers' stale records (owner,
/// member).
type LaneChange = (LaneOrder, Vec<(String, String)>);

/// The command `next_layout` commits: the layout over `nodes`, with the
/// current one kept as `layout.prev` (`keep_prev`) and the lane order
/// and stale records of a lane change (`grow`).
fn finish(
    state: &ConfigState,
    nodes: BTreeMap<String, NodeRecord>,
    current: Option<(Layout, u64)>,
    keep_prev: bool,
    grow: Option<LaneChange>,
) -> Result<Option<Command>, String> {
    let membership = Membership {
        nodes: nodes
            .values()
            .filter_map(|r| {
                Some(Node { id: r.id.clone(), zone: r.zone.clone(), disks: vec![Disk { id: r.disk()?, weight: 1 }] })
            })
            .collect(),
    };
    let width = membership.nodes.len().clamp(1, DEFAULT_WIDTH);
    let mut layout = Layout::new(crate::layout::PARTITIONS as u32, width, &membership).map_err(|e| e.to_string())?;
    let expect = current.as_ref().map_or(0, |(_, v)| *v);
    if let Some((old, _)) = &current {
        layout.version = old.version + 1;
    }
    let value = Some(layout.encode());
    let mut checks = vec![(LAYOUT_KEY.to_string(), expect)];
    let mut writes = vec![(LAYOUT_KEY.to_string(), value.clone())];
    if let (Some((old, _)), true) = (&current, keep_prev) {
        checks.push((PREV_LAYOUT_KEY.to_string(), 0));
        writes.push((PREV_LAYOUT_KEY.to_string(), Some(old.encode())));
    }
    let Some((order, stale)) = grow else {
        if checks.len() == 1 {
            return Ok(Some(Command::Cas { key: LAYOUT_KEY.to_string(), expect, value }));
        }
        return Ok(Some(Command::Txn { checks, writes }));
    };
    checks.push((LANE_ORDER_KEY.to_string(), state.get(LANE_ORDER_KEY).map_or(0, |v| v.version)));
    // An order naming no node (lanes of four or fewer without objects):
    // the record goes, and lanes rank their nodes by id again.
    writes.push((LANE_ORDER_KEY.to_string(), (!order.nodes.is_empty()).then(|| order.encode())));
    for (o, n) in stale {
        writes.push((crate::takeover::stale_key(&o, &n), Some(crate::takeover::stale_value(crate::takeover::now_ms()))));
    }
    Ok(Some(Command::Txn { checks, writes }))
}

/// What the leader should commit when a move is over: the removal of
/// `layout.prev` once every node that gained partitions reported its keys
/// moved for the current layout (`None` otherwise).
pub fn move_finished(state: &ConfigState) -> Result<Option<Command>, String> {
    let Some(owners) = Owners::from_state(state)? else { return Ok(None) };
    let Some((_, prev_version)) = &owners.prev else { return Ok(None) };
    if !owners.gainers().iter().all(|g| owners.moved_in(g)) {
        return Ok(None);
    }
    Ok(Some(Command::Cas { key: PREV_LAYOUT_KEY.to_string(), expect: *prev_version, value: None }))
}

#[cfg(test)]
#[path = "owners_tests.rs"]
pub(crate) mod tests;
