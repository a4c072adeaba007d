//! Queued work of keys another node owns now (`handover`, RPC method 48):
//! replication entries, their retry records and notification events a
//! node queued for a key go to the key's owner, which takes them as they
//! were.

use serde::{Deserialize, Serialize};
use tessera_cluster::NodeIdentity;
use tessera_io::{Body, Mutation};

use crate::handover::{call, ensure, KeyCall, METHOD_MOVE_QUEUE, VERSION};
use crate::meta::{T_EVENTS, T_REPLICATION, T_REPLSTATE};
use crate::server::Ctx;

/// Queue entries of one key handed to its owner (hex: entry key, summary,
/// meta, as stored in `table`).
#[derive(Serialize, Deserialize)]
struct QueueCall {
    call: KeyCall,
    table: u8,
    entries: Vec<(String, String, String)>,
}

/// The node that owns `(bucket, key)` now when it is another one: where
/// work this node queued for the key goes. With cluster lanes, the key's
/// lane owner, and only while neither it nor this node is taken over
/// (`takeover`: a node acting for another does not queue its work, and
/// a fenced owner keeps its own until the handback).
pub fn owner_elsewhere(ctx: &Ctx, bucket: &str, key: &str) -> Option<NodeIdentity> {
    let node = ctx.shared.cluster.as_ref()?;
    let owners = node.owners.load_full()?;
    let p = crate::layout::partition_of(bucket, key);
    let me = node.id_hex();
    let owner = if owners.has_lanes() {
        let o = owners.layout_owner_of(p)?;
        if owners.acting_for(&o.id) != o.id || owners.acting_for(&me) != me {
            return None;
        }
        o
    } else {
        owners.owner_of(p)?
    };
    if owner.id == me {
        return None;
    }
    crate::fanout::identity(owner)
}

/// One queue entry of this node's `shard` (its key, summary and meta in
/// `table`), queued for `key` of bucket `bucket`: handed to `to`, the
/// key's owner, then deleted here.
pub struct QueuedEntry<'a> {
    pub table: u8,
    pub shard: u32,
    pub entry: Vec<u8>,
    pub summary: Vec<u8>,
    pub meta: Vec<u8>,
    pub bucket: &'a str,
    pub bucket_id: u64,
    pub key: &'a str,
}

pub async fn hand_off_queued(ctx: &Ctx, to: &NodeIdentity, q: QueuedEntry<'_>) -> Result<(), String> {
    let node = ctx.shared.cluster.as_ref().ok_or("not in a cluster")?;
    let layout = node.owners.load().as_ref().map_or(0, |o| o.layout.version);
    let kc = KeyCall { v: VERSION, layout, bucket: q.bucket.to_string(), bucket_id: q.bucket_id, key: q.key.to_string(), page: None };
    let entries = vec![(hex::encode(&q.entry), hex::encode(&q.summary), hex::encode(&q.meta))];
    let qc = QueueCall { call: kc, table: q.table, entries };
    let payload = serde_json::to_vec(&qc).expect("a queue call serializes");
    call(node, to, METHOD_MOVE_QUEUE, payload).await.map_err(|e| format!("handing queued work of {}/{} to its owner: {}", q.bucket, q.key, e.message))?;
    ctx.shards
        .commit(q.shard, vec![Mutation::Delete { table: q.table, key: q.entry }])
        .await
        .map(|_| ())
        .map_err(|e| format!("deleting queued work handed to the key's owner: {e}"))
}

/// Takes queue entries of a key this node owns: the key moved here first
/// (its versions must be here before work on them is), then the entries
/// committed as they came (an entry already here kept), the clock of its
/// core raised past their ids and its worker woken.
pub(crate) async fn serve_queue(ctx: &Ctx, payload: &[u8]) -> Result<Vec<u8>, String> {
    let qc: QueueCall = serde_json::from_slice(payload).map_err(|e| format!("a malformed queue call: {e}"))?;
    let kc = &qc.call;
    if kc.v != VERSION {
        return Err("a move call of another version".into());
    }
    if ![T_REPLICATION, T_REPLSTATE, T_EVENTS].contains(&qc.table) {
        return Err(format!("queue entries of table {} are not taken", qc.table));
    }
    if !crate::forward::owned_here(ctx, &kc.bucket, &kc.key) {
        return Err("this node does not own the key".into());
    }
    // An event is delivered whatever became of its bucket and key since;
    // replication works on the version, so the bucket must be the same
    // and the key here first.
    if qc.table != T_EVENTS {
        let Some(b) = ctx.shared.buckets.get(&kc.bucket).filter(|b| b.id == kc.bucket_id) else {
            // The bucket is gone: so is the work on it.
            return Ok(b"0".to_vec());
        };
        ensure(ctx, &b, &kc.key).await.map_err(|e| e.message)?;
    }
    let mut rows = Vec::with_capacity(qc.entries.len());
    for (k, s, m) in &qc.entries {
        let (k, s, m) = (hex::decode(k), hex::decode(s), hex::decode(m));
        let (Ok(k), Ok(s), Ok(m)) = (k, s, m) else { return Err("a malformed queue entry".into()) };
        rows.push((k, s, m));
    }
    let shard = crate::s3::shard_of(ctx, &kc.bucket, &kc.key);
    let table = qc.table;
    let n = ctx
        .shards
        .txn(shard, Vec::new(), move |local| async move {
            let mut muts = Vec::new();
            for (key, summary, meta) in rows {
                if let Some(id) = crate::notify::event_id_of(&key) {
                    local.notify.observe(id);
                }
                if local.shard.get(table, &key).is_none() {
                    muts.push(Mutation::Put { table, key, summary, meta, body: Body::Inline(Vec::new()) });
                }
            }
            let n = muts.len();
            if n > 0 {
                local.commit_in_txn(muts).await?;
                local.notify.wake.notify_all();
            }
            Ok::<_, tessera_io::IoError>(n)
        })
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    Ok(n.to_string().into_bytes())
}
