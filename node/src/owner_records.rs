//! The keys and records of the cluster configuration that place data
//! (FORMAT BOUNDARY: JSON in the configuration, each with its format):
//! the nodes (`NodeRecord`), the layout's keys, the reports that a node
//! holds its keys (`MovedRecord`) or walked its lanes (`RestripedRecord`),
//! decommissions (`DecommissionRecord`) and the lanes' stable order
//! (`LaneOrder`). `owners` computes placements from them and re-exports
//! them.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

pub const NODE_KEY_PREFIX: &str = "node/";
pub const LAYOUT_KEY: &str = "layout";
/// The layout before the one committed, while its keys move (`handover`).
pub const PREV_LAYOUT_KEY: &str = "layout.prev";
/// `moved/<id hex>`: node `id` holds every key the layout gave it
/// (`MovedRecord`, for one layout version).
pub const MOVED_PREFIX: &str = "moved/";
/// Format of `MovedRecord` (FORMAT BOUNDARY: JSON in the configuration).
pub const MOVED_RECORD_FORMAT: u32 = 1;
/// `decommission/<id hex>`: node `id` leaves the layout; its keys move to
/// the others and it leaves the configuration's Raft membership
/// (`DecommissionRecord`). Kept afterwards: the node never comes back.
pub const DECOMMISSION_PREFIX: &str = "decommission/";
/// Format of `DecommissionRecord` (FORMAT BOUNDARY: JSON in the configuration).
pub const DECOMMISSION_RECORD_FORMAT: u32 = 1;
/// The prefix of the bucket records (a layout change waits while any exists).
pub const BUCKET_KEY_PREFIX: &str = "bucket/";
/// Largest set width the layout is made with (2+2 on 4 nodes).
pub const DEFAULT_WIDTH: usize = 4;
/// Format of `NodeRecord` (FORMAT BOUNDARY: JSON in the configuration).
pub const NODE_RECORD_FORMAT: u32 = 1;
/// `lanes/order`: the stable order of the nodes in cluster lanes
/// (`LaneOrder`). Absent: by id, the order lanes were made in before it.
pub const LANE_ORDER_KEY: &str = "lanes/order";
/// Format of `LaneOrder` (FORMAT BOUNDARY: JSON in the configuration):
/// 1 names the order alone; 2 also the wider order of the lanes a node
/// left (`LaneOrder::wider`), whose records a build that reads only 1
/// would look for on the wrong nodes: it refuses the record at start.
pub const LANE_ORDER_FORMAT: u32 = 1;
pub const LANE_ORDER_FORMAT_WIDER: u32 = 2;
/// 3 names each owner's lane members explicitly (`LaneOrder::lanes`):
/// lanes of four over more than four nodes. A build that reads only 1
/// and 2 would take every placed node for a member of every lane: it
/// refuses the record at start.
pub const LANE_ORDER_FORMAT_SETS: u32 = 3;
/// 4 names the order of three nodes and the lanes of four, named per
/// owner, that a node left (`LaneOrder::wider_lanes`): a build reading
/// only 1 to 3 would look for their blocks on the wrong nodes.
pub const LANE_ORDER_FORMAT_WIDER_SETS: u32 = 4;
/// 5 marks lanes of three on their way out (a decommission to two nodes,
/// `LaneOrder::plain`): they write bodies whole and the walk writes every
/// striped record whole, before the lanes go. A build reading only 1 to
/// 4 would stripe new bodies again.
pub const LANE_ORDER_FORMAT_PLAIN: u32 = 5;

/// `restriped/<id hex>`: node `id` walked its lanes for records of an
/// older shape (`restripe`) and found none left, for the lane order of
/// config version `order` (`RestripedRecord`): it does not walk them again
/// at its next start.
pub const RESTRIPED_PREFIX: &str = "restriped/";
/// Format of `RestripedRecord` (FORMAT BOUNDARY: JSON in the configuration).
pub const RESTRIPED_RECORD_FORMAT: u32 = 1;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestripedRecord {
    pub format: u32,
    /// The configuration version of `lanes/order` the walk ran under.
    pub order: u64,
}

impl RestripedRecord {
    pub fn key(id: &str) -> String {
        format!("{RESTRIPED_PREFIX}{id}")
    }

    /// A record of another format reads as none: the node walks again.
    pub fn decode(b: &[u8]) -> Option<RestripedRecord> {
        serde_json::from_slice::<RestripedRecord>(b).ok().filter(|r| r.format == RESTRIPED_RECORD_FORMAT)
    }
}

/// The order of the nodes in every cluster lane after its owner
/// (`cluster_lanes::lane_nodes`): a lane of owner `O` is `O`, then the
/// other placed nodes in this order. Written when a node joins a cluster
/// that gets lanes (2 or 3 nodes to one more): the nodes before it keep their order
/// (by id, as lanes were made without this record) and the newcomer
/// comes last, so every position of an old lane keeps its node and the
/// blocks written over it stay where a reader looks for them.
///
/// When a node leaves lanes of four (a decommission, 4 -> 3), `nodes`
/// is the order less it and `wider` the order before (format 2): the
/// records written over four positions keep their blocks where they
/// were, and a lane of three reads them through the wider order (the
/// leaving node's position a hole) until the walk (`restripe`) has
/// striped them again over three.
///
/// Past four nodes (format 3) every owner's lane is four of them, named
/// in `lanes`: owner -> its members, by position after it (see
/// `lane_sets::grow_sets`). A join puts the newcomer in place of one member of
/// three lanes (at that member's position, stale there until healed)
/// and gives it a lane of its own; a leave puts a staying node in place
/// of the leaving one wherever it was a member. Positions that keep
/// their node keep their blocks, so no record is striped again.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LaneOrder {
    pub format: u32,
    pub nodes: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub wider: Vec<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub lanes: BTreeMap<String, Vec<String>>,
    /// Format 4: the lanes of four named per owner that a node left (4
    /// nodes to 3): read through until the walk stripes them over three,
    /// as `wider` is for lanes by order.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub wider_lanes: BTreeMap<String, Vec<String>>,
    /// Format 5: the lanes of three write bodies whole, and the walk
    /// writes every striped record whole (`restripe::unstripe`): once every
    /// node reported it, a node leaves and the lanes go (3 nodes to 2).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub plain: bool,
}

impl LaneOrder {
    /// An order, with the wider one a node left (empty: none).
    pub fn new(nodes: Vec<String>, wider: Vec<String>) -> LaneOrder {
        let format = if wider.is_empty() { LANE_ORDER_FORMAT } else { LANE_ORDER_FORMAT_WIDER };
        LaneOrder { format, nodes, wider, lanes: BTreeMap::new(), wider_lanes: BTreeMap::new(), plain: false }
    }

    /// An order with every owner's lane named (format 3).
    pub fn with_sets(nodes: Vec<String>, lanes: BTreeMap<String, Vec<String>>) -> LaneOrder {
        LaneOrder { format: LANE_ORDER_FORMAT_SETS, nodes, wider: Vec::new(), lanes, wider_lanes: BTreeMap::new(), plain: false }
    }

    /// The order of three nodes after one left lanes of four named per
    /// owner, with those lanes (format 4).
    pub fn with_wider_sets(nodes: Vec<String>, wider_lanes: BTreeMap<String, Vec<String>>) -> LaneOrder {
        LaneOrder { format: LANE_ORDER_FORMAT_WIDER_SETS, nodes, wider: Vec::new(), lanes: BTreeMap::new(), wider_lanes, plain: false }
    }

    /// The order of three nodes whose lanes are on their way out (format 5).
    pub fn plain(nodes: Vec<String>) -> LaneOrder {
        LaneOrder { format: LANE_ORDER_FORMAT_PLAIN, nodes, wider: Vec::new(), lanes: BTreeMap::new(), wider_lanes: BTreeMap::new(), plain: true }
    }

    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a lane order serializes")
    }

    pub fn decode(b: &[u8]) -> Result<LaneOrder, String> {
        let r: LaneOrder = serde_json::from_slice(b).map_err(|e| format!("a malformed lane order: {e}"))?;
        if !(LANE_ORDER_FORMAT..=LANE_ORDER_FORMAT_PLAIN).contains(&r.format) {
            return Err(format!("lane order format {}: this build reads {LANE_ORDER_FORMAT} to {LANE_ORDER_FORMAT_PLAIN}", r.format));
        }
        if r.format == LANE_ORDER_FORMAT_PLAIN {
            let ok = r.plain
                && r.wider.is_empty()
                && r.lanes.is_empty()
                && r.wider_lanes.is_empty()
                && r.nodes.len() == crate::cluster_lanes::MIN_NODES;
            return if ok { Ok(r) } else { Err(format!("lane order format {}: inconsistent lanes on their way out", r.format)) };
        }
        if r.plain {
            return Err(format!("lane order format {}: lanes on their way out in a format that names none", r.format));
        }
        // Every lane named: four distinct nodes, its owner first.
        let fits = |(o, m): (&String, &Vec<String>)| {
            m.len() + 1 == DEFAULT_WIDTH && !m.contains(o) && m.iter().collect::<std::collections::BTreeSet<_>>().len() == m.len()
        };
        if r.format == LANE_ORDER_FORMAT_SETS {
            if r.wider.is_empty() && r.wider_lanes.is_empty() && !r.lanes.is_empty() && r.lanes.iter().all(fits) {
                return Ok(r);
            }
            return Err(format!("lane order format {}: inconsistent lanes", r.format));
        }
        if r.format == LANE_ORDER_FORMAT_WIDER_SETS {
            let ok = r.wider.is_empty()
                && r.lanes.is_empty()
                && r.nodes.len() + 1 == DEFAULT_WIDTH
                && !r.wider_lanes.is_empty()
                && r.wider_lanes.iter().all(fits);
            if ok {
                return Ok(r);
            }
            return Err(format!("lane order format {}: inconsistent wider lanes", r.format));
        }
        if !r.lanes.is_empty() || !r.wider_lanes.is_empty() {
            return Err(format!("lane order format {}: lanes named in a format that names none", r.format));
        }
        match (r.format, r.wider.is_empty()) {
            (LANE_ORDER_FORMAT, true) => Ok(r),
            (LANE_ORDER_FORMAT_WIDER, false)
                if r.wider.len() == r.nodes.len() + 1 && r.nodes.iter().all(|n| r.wider.contains(n)) =>
            {
                Ok(r)
            }
            _ => Err(format!("lane order format {}: inconsistent wider order", r.format)),
        }
    }
}

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
    /// Its zone (`--zone`; empty: none named, and in records of older
    /// builds): lanes past four nodes span as many zones as they can.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub zone: String,
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
    pub(crate) fn disk(&self) -> Option<[u8; 16]> {
        hex::decode(&self.id).ok()?.try_into().ok()
    }
}

/// A node's report that it took every key a layout gave it from the
/// keys' previous owners.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MovedRecord {
    pub format: u32,
    /// The layout version (`Layout::version`) the keys moved for.
    pub layout: u64,
}

impl MovedRecord {
    pub fn key(id: &str) -> String {
        format!("{MOVED_PREFIX}{id}")
    }

    /// A stored record; one of another format reads as absent (the node
    /// reports again), never as done.
    pub fn decode(bytes: &[u8]) -> Option<MovedRecord> {
        serde_json::from_slice::<MovedRecord>(bytes).ok().filter(|r| r.format == MOVED_RECORD_FORMAT)
    }
}

/// An operator's decommission of a node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DecommissionRecord {
    pub format: u32,
    pub since_ms: u64,
}

impl DecommissionRecord {
    pub fn key(id: &str) -> String {
        format!("{DECOMMISSION_PREFIX}{id}")
    }
}
