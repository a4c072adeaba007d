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
//! - **When the layout changes:** only while the cluster holds no bucket.
//!   Objects are not moved between nodes yet, so once a bucket exists a
//!   newly registered node waits, shown as `pending` in the cluster status,
//!   instead of taking partitions whose objects stay on their old owner.
//! - Every node follows the committed table (`ClusterNode::owners`,
//!   refreshed by the Raft thread after each apply that changes `layout`
//!   or a `node/` key).

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;

use serde::{Deserialize, Serialize};
use tessera_cluster::{Disk, Layout, Membership, Node};
use tessera_raft::state::ConfigState;

pub const NODE_KEY_PREFIX: &str = "node/";
pub const LAYOUT_KEY: &str = "layout";
/// The prefix of the bucket records (a layout change waits while any exists).
pub const BUCKET_KEY_PREFIX: &str = "bucket/";
/// Largest set width the layout is made with (2+2 on 4 nodes).
pub const DEFAULT_WIDTH: usize = 4;
/// Format of `NodeRecord` (FORMAT BOUNDARY: JSON in the configuration).
pub const NODE_RECORD_FORMAT: u32 = 1;

/// A node as the configuration knows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRecord {
    pub format: u32,
    /// The node id, hex (`tessera.node`).
    pub id: String,
    /// Where peers reach its cluster RPC.
    pub cluster: SocketAddr,
    /// Where peers forward S3 requests to it.
    pub s3: SocketAddr,
    /// Its shard count (the lanes a node acting for it opens, `takeover`);
    /// absent in records of older builds (such a node is never taken over).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shards: Option<u32>,
}

impl NodeRecord {
    pub fn key(&self) -> String {
        format!("{NODE_KEY_PREFIX}{}", self.id)
    }

    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a node record serializes")
    }

    /// A stored record; one of another format is refused.
    pub fn decode(bytes: &[u8]) -> Result<NodeRecord, String> {
        let r: NodeRecord = serde_json::from_slice(bytes).map_err(|e| format!("a malformed node record: {e}"))?;
        if r.format != NODE_RECORD_FORMAT {
            return Err(format!("node record format {}: this build reads {NODE_RECORD_FORMAT}", r.format));
        }
        Ok(r)
    }

    /// The one placement disk a node has in this layout: its node id.
    fn disk(&self) -> Option<[u8; 16]> {
        hex::decode(&self.id).ok()?.try_into().ok()
    }
}

/// The committed placement, as every node follows it.
#[derive(Debug)]
pub struct Owners {
    pub layout: Layout,
    /// The configuration version (log index) of the `layout` key.
    pub version: u64,
    /// Registered nodes by id hex.
    pub nodes: BTreeMap<String, NodeRecord>,
    /// Registered nodes the layout does not place yet.
    pub pending: Vec<String>,
    /// Lane owner -> (the node acting for it, record version), where a
    /// takeover record exists (`takeover`).
    pub takeovers: BTreeMap<String, (String, u64)>,
    /// (lane owner, member) -> record version: members that may lack
    /// acknowledged commits of the owner's lanes (`takeover`).
    pub stale: BTreeMap<(String, String), u64>,
}

impl Owners {
    /// Reads the layout and the registered nodes from the configuration;
    /// `Ok(None)` before the first layout is committed.
    pub fn from_state(state: &ConfigState) -> Result<Option<Owners>, String> {
        let nodes = registered(state);
        let Some(v) = state.get(LAYOUT_KEY) else { return Ok(None) };
        let layout = Layout::decode(&v.value).map_err(|e| format!("the cluster layout: {e}"))?;
        let placed = placed(&layout);
        let pending = nodes.keys().filter(|id| !placed.contains(id.as_str())).cloned().collect();
        let takeovers = crate::takeover::takeovers(state);
        let stale = crate::takeover::stale(state);
        Ok(Some(Owners { layout, version: v.version, nodes, pending, takeovers, stale }))
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

    /// Whether `member` may lack acknowledged commits of `owner`'s lanes.
    pub fn is_stale(&self, owner: &str, member: &str) -> bool {
        !self.stale.is_empty() && self.stale.contains_key(&(owner.to_string(), member.to_string()))
    }

    /// Whether the placed nodes make cluster lanes (`cluster_lanes::lane_nodes`:
    /// 3 or 4 placed nodes, every set holding every one), without allocating.
    pub fn has_lanes(&self) -> bool {
        let placed = self.nodes.len() - self.pending.iter().filter(|p| self.nodes.contains_key(*p)).count();
        (crate::cluster_lanes::MIN_NODES..=crate::cluster_lanes::MAX_NODES).contains(&placed) && self.layout.width() == placed
    }

    /// A placed node's position among the placed nodes by id (foster shard ids).
    pub fn slot_of(&self, id: &str) -> Option<usize> {
        self.placed_nodes().iter().position(|r| r.id == id)
    }

    /// Every node the layout places (the nodes listing fans out to).
    pub fn placed_nodes(&self) -> Vec<&NodeRecord> {
        self.nodes.iter().filter(|(id, _)| !self.pending.contains(id)).map(|(_, r)| r).collect()
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
                    "partitions_owned": owned.get(r.id.as_str()).copied().unwrap_or(0),
                    "pending": self.pending.contains(&r.id),
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
            "takeovers": self.takeovers.iter().map(|(o, (a, v))| serde_json::json!({"owner": o, "acting": a, "version": v})).collect::<Vec<_>>(),
            "stale": self.stale.keys().map(|(o, m)| serde_json::json!({"owner": o, "member": m})).collect::<Vec<_>>(),
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

/// Whether the configuration holds any bucket.
pub fn has_buckets(state: &ConfigState) -> bool {
    state.keys.range(BUCKET_KEY_PREFIX.to_string()..).next().is_some_and(|(k, _)| k.starts_with(BUCKET_KEY_PREFIX))
}

/// What the leader should commit: a new layout when the registered nodes
/// differ from the placed ones and no bucket exists yet; `None` otherwise.
/// The value is the encoded layout and the version the `layout` key must
/// still have (0: absent).
pub fn next_layout(state: &ConfigState) -> Result<Option<(Vec<u8>, u64)>, String> {
    let nodes = registered(state);
    if nodes.is_empty() {
        return Ok(None);
    }
    let current = match state.get(LAYOUT_KEY) {
        Some(v) => Some((Layout::decode(&v.value).map_err(|e| format!("the cluster layout: {e}"))?, v.version)),
        None => None,
    };
    if let Some((layout, _)) = &current {
        let placed = placed(layout);
        let same = placed.len() == nodes.len() && nodes.keys().all(|id| placed.contains(id.as_str()));
        if same || has_buckets(state) {
            return Ok(None);
        }
    }
    let membership = Membership {
        nodes: nodes
            .values()
            .filter_map(|r| {
                Some(Node { id: r.id.clone(), zone: String::new(), disks: vec![Disk { id: r.disk()?, weight: 1 }] })
            })
            .collect(),
    };
    let width = membership.nodes.len().clamp(1, DEFAULT_WIDTH);
    let mut layout = Layout::new(crate::layout::PARTITIONS as u32, width, &membership).map_err(|e| e.to_string())?;
    if let Some((old, _)) = &current {
        layout.version = old.version + 1;
    }
    Ok(Some((layout.encode(), current.map_or(0, |(_, v)| v))))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use tessera_raft::state::Versioned;

    /// A node record of test node `n` (also `takeover`'s tests).
    pub(crate) fn record(n: u8) -> NodeRecord {
        NodeRecord {
            format: NODE_RECORD_FORMAT,
            id: hex::encode([n; 16]),
            cluster: format!("127.0.0.1:{}", 7000 + n as u16).parse().unwrap(),
            s3: format!("127.0.0.1:{}", 9000 + n as u16).parse().unwrap(),
            shards: Some(2),
        }
    }

    fn put(state: &mut ConfigState, key: &str, value: Vec<u8>, version: u64) {
        state.keys.insert(key.to_string(), Versioned { version, value });
    }

    #[test]
    fn the_leader_lays_out_registered_nodes_until_a_bucket_exists() {
        let mut s = ConfigState::default();
        assert!(next_layout(&s).unwrap().is_none(), "no node, no layout");
        for n in 1..=3 {
            put(&mut s, &record(n).key(), record(n).encode(), n as u64);
        }
        let (bytes, expect) = next_layout(&s).unwrap().expect("a first layout");
        assert_eq!(expect, 0);
        put(&mut s, LAYOUT_KEY, bytes, 10);
        assert!(next_layout(&s).unwrap().is_none(), "the same nodes: nothing to change");
        let owners = Owners::from_state(&s).unwrap().unwrap();
        assert_eq!(owners.layout.width(), 3);
        assert!(owners.pending.is_empty());
        let mut per_node: HashMap<String, usize> = HashMap::new();
        for p in 0..crate::layout::PARTITIONS {
            *per_node.entry(owners.owner_of(p).unwrap().id.clone()).or_insert(0) += 1;
        }
        assert_eq!(per_node.len(), 3, "every node owns partitions");
        assert!(per_node.values().all(|&c| c > 1100 && c < 1650), "balanced: {per_node:?}");
        // A fourth node while the cluster is empty: a new layout, version 2.
        put(&mut s, &record(4).key(), record(4).encode(), 11);
        let (bytes, expect) = next_layout(&s).unwrap().expect("a second layout");
        assert_eq!(expect, 10);
        assert_eq!(Layout::decode(&bytes).unwrap().version, 2);
        // A fifth once a bucket exists: it waits (objects are not moved yet).
        put(&mut s, LAYOUT_KEY, bytes, 12);
        put(&mut s, "bucket/photos", vec![1], 13);
        put(&mut s, &record(5).key(), record(5).encode(), 14);
        assert!(next_layout(&s).unwrap().is_none());
        let owners = Owners::from_state(&s).unwrap().unwrap();
        assert_eq!(owners.pending, vec![record(5).id]);
        assert_eq!(owners.layout.width(), 4);
        assert_eq!(owners.placed_nodes().len(), 4);
    }

    #[test]
    fn a_node_record_of_another_format_is_refused() {
        let mut r = record(1);
        assert_eq!(NodeRecord::decode(&r.encode()).unwrap(), r);
        r.format = 2;
        assert!(NodeRecord::decode(&r.encode()).unwrap_err().contains("format 2"));
        assert!(NodeRecord::decode(b"{").is_err());
    }
}
