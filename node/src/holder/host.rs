//! The serving side of remote lane members: a call from another node's
//! lane primary, run on the shard it names (disk id, shard index) as a
//! plain shard call, on the core that owns that shard. The shard's own
//! lane (if this node has one over it) is not involved: the caller is the
//! primary of the lane the call belongs to, and it alone decides what
//! every member holds.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;

use tessera_cluster::rpc::MAX_PAYLOAD_BYTES;
use tessera_io::{IoError, Shard};

use super::wire::{self, Call, Target};

/// The answer payload, or the error payload of an RPC error frame.
pub type HostAnswer = Result<Vec<u8>, Vec<u8>>;

/// Whoever serves member calls on this node.
pub trait ShardHost {
    /// Runs `call` on `target` for the node `caller` (the RPC peer, as its
    /// authenticated hello named it).
    fn exec(&self, caller: [u8; 16], target: Target, call: Call) -> Pin<Box<dyn Future<Output = HostAnswer> + 'static>>;

    /// A node-level call: a page of this node's own listing
    /// (`fanout::METHOD_NODE_RANGE`), its share of a DeleteObjects
    /// (`METHOD_NODE_DELETE`), its part of a DeleteBucket
    /// (`buckets::cluster::METHOD_BUCKET_DRAIN`), a copy source's version
    /// and bytes (`copy_remote`). Only a node's host serves them.
    fn node_call(&self, _method: u16, _payload: Vec<u8>) -> Pin<Box<dyn Future<Output = HostAnswer> + 'static>> {
        Box::pin(async { Err(b"this host serves no node calls".to_vec()) })
    }
}

/// Runs one member call on a shard of this core: the answer payload.
pub async fn run(shard: &Shard, call: Call) -> Result<Vec<u8>, IoError> {
    match call {
        Call::Write(data) => Ok(wire::encode_extent(&shard.write_data(data).await?)),
        Call::Commit(muts) => Ok(shard.commit(muts).await?.to_le_bytes().to_vec()),
        Call::Load { table, key } => Ok(wire::encode_stored(&shard.load(table, &key).await?)),
        Call::Read { extent, start, end } => {
            if start > end || end - start > u64::from(MAX_PAYLOAD_BYTES) {
                return Err(IoError::InvalidExtent("a read range over the frame limit"));
            }
            shard.read_extent(&extent, start..end).await
        }
        Call::Range { table, after, limit } => {
            Ok(wire::encode_keys(&super::keys_from(shard, table, after.as_deref(), limit.min(wire::MAX_RANGE_KEYS) as usize)))
        }
    }
}

/// Decodes and runs one request of `method` on `host`.
pub async fn serve_call(host: &Rc<dyn ShardHost>, caller: [u8; 16], method: u16, payload: &[u8]) -> HostAnswer {
    match wire::decode_call(method, payload) {
        Ok((target, call)) => host.exec(caller, target, call).await,
        Err(m) => Err(wire::malformed_error(&m)),
    }
}

/// Shards of the current core by target: the host of a core that owns
/// every shard it serves (tests run both ends on one core).
#[derive(Default)]
pub struct CoreHost {
    shards: HashMap<Target, Shard>,
}

impl CoreHost {
    pub fn insert(&mut self, disk: [u8; 16], index: u32, shard: Shard) {
        self.shards.insert(Target { disk, shard: index }, shard);
    }
}

impl ShardHost for CoreHost {
    fn exec(&self, _caller: [u8; 16], target: Target, call: Call) -> Pin<Box<dyn Future<Output = HostAnswer> + 'static>> {
        let shard = self.shards.get(&target).cloned();
        Box::pin(async move {
            let Some(shard) = shard else { return Err(wire::encode_refusal(wire::E_NOT_HOSTED, "no such shard on this node")) };
            run(&shard, call).await.map_err(|e| wire::encode_error(&e))
        })
    }
}

/// The node's host (format 2): the disk id names a set and a position in
/// it, the shard index a lane of that set; the call runs on the lane's
/// owning core, on that disk's shard of the lane.
pub struct NodeHost {
    pub ctx: Rc<crate::server::Ctx>,
}

impl ShardHost for NodeHost {
    fn node_call(&self, method: u16, payload: Vec<u8>) -> Pin<Box<dyn Future<Output = HostAnswer> + 'static>> {
        let ctx = self.ctx.clone();
        Box::pin(async move {
            match method {
                crate::fanout::METHOD_NODE_RANGE => crate::fanout::serve_range(&ctx, &payload).await,
                crate::fanout::METHOD_NODE_DELETE => crate::fanout::serve_delete(&ctx, &payload).await,
                crate::copy_remote::METHOD_COPY_HEAD => crate::copy_remote::serve_head(&ctx, &payload).await,
                crate::copy_remote::METHOD_COPY_READ => crate::copy_remote::serve_read(&ctx, &payload).await,
                crate::buckets::cluster::METHOD_BUCKET_DRAIN => {
                    crate::buckets::cluster::serve_drain(&ctx.shared.buckets, &ctx.shards, &payload).await
                }
                crate::takeover::METHOD_NODE_APPLIED => crate::takeover::serve_applied(&ctx, &payload).await,
                crate::handover::METHOD_MOVE_EXPORT
                | crate::handover::METHOD_MOVE_READ
                | crate::handover::METHOD_MOVE_DROP
                | crate::handover::METHOD_MOVE_LIST
                | crate::handover::METHOD_MOVE_QUEUE => crate::handover::serve(&ctx, method, &payload).await,
                _ => Err(b"unknown node call".to_vec()),
            }
        })
    }

    fn exec(&self, caller: [u8; 16], target: Target, call: Call) -> Pin<Box<dyn Future<Output = HostAnswer> + 'static>> {
        let ctx = self.ctx.clone();
        Box::pin(async move {
            let refuse = |why: &str| Err(wire::encode_refusal(wire::E_NOT_HOSTED, why));
            if target.shard & wire::CLUSTER_LANE != 0 {
                let Some(node) = &ctx.shared.cluster else { return refuse("this node is not in a cluster") };
                let s = target.shard & !wire::CLUSTER_LANE;
                let Some(owners) = node.owners.load_full() else { return refuse("no cluster layout yet") };
                // Member shards only for nodes of the layout, and no more
                // per node than there are partitions (each opens files).
                let owner = hex::encode(target.disk);
                if !owners.nodes.contains_key(&owner) || u64::from(s) >= crate::layout::PARTITIONS {
                    return refuse("no such cluster lane");
                }
                // Fenced: only the node acting for the lane's owner writes
                // its lanes (`takeover`), so a deposed owner cannot reach a
                // write quorum. Reads stay open to the lane's nodes: a read
                // begun under the old acting node's lease may finish.
                let writes = matches!(call, Call::Write(_) | Call::Commit(_));
                let caller = hex::encode(caller);
                if writes && owners.acting_for(&owner) != caller {
                    return refuse("the caller does not act for this lane's owner (fenced)");
                }
                if !writes && !owners.nodes.contains_key(&caller) {
                    return refuse("the caller is not a node of the cluster");
                }
                return ctx.shards.member(target.disk, s, call).await.map_err(|e| wire::encode_error(&e));
            }
            let Some(lanes) = ctx.shared.layout.lanes.as_ref() else { return refuse("this node has no erasure sets") };
            let f = &lanes.format;
            if target.shard >= f.shards_per_disk {
                return refuse("no such shard index");
            }
            let Some(set) = f.sets.iter().position(|s| s.contains(&target.disk)) else { return refuse("no such disk on this node") };
            let Some(disk) = lanes.health.disks.iter().position(|d| d.id == target.disk) else { return refuse("no such disk on this node") };
            let lane = set as u32 * f.shards_per_disk + target.shard;
            ctx.shards.hosted(lane, disk, call).await.map_err(|e| wire::encode_error(&e))
        })
    }
}
