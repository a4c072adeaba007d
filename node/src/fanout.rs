//! Listing across the nodes of a cluster (issue 12): each placed node
//! holds the objects of the partitions it owns, so a listing merges this
//! node's shards with every other placed node's (`s3::list::MergedRange`,
//! one cursor per local shard and per peer). A peer answers a page of its
//! own merged range with RPC method `METHOD_NODE_RANGE`.
//!
//! Wire (FORMAT BOUNDARY, inside the authenticated RPC frame), version 1:
//! - request: version, table, prefix (u16 length + bytes), after (a flag
//!   byte, then u16 length + bytes), batch (u32, at most `MAX_BATCH`);
//! - answer: version, count (u32), then per item the key (u16 length +
//!   bytes) and the summary (u32 length + bytes), in key order.
//!
//! Only the listing tables (current versions, noncurrent versions,
//! uploads) can be read this way.
//!
//! A DeleteObjects names keys of many owners: the node the client asked
//! authorizes every key, deletes its own and sends each peer its share
//! with `METHOD_NODE_DELETE` (JSON, `DeleteCall` version 1: the bucket's
//! name and id, the keys and version ids, the governance bypass and the
//! request's origin for events); the peer deletes them as its own
//! DeleteObjects would and answers each key's outcome.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tessera_cluster::NodeIdentity;
use tessera_proto::{S3Error, S3ErrorCode, S3Result};

use crate::cluster::ClusterNode;
use crate::cluster_pool::RpcPool;
use crate::meta::{T_OBJECTS, T_UPLOADS, T_VERSIONS};
use crate::owners::NodeRecord;
use crate::s3::list::{Item, MergedRange};
use crate::server::Ctx;

pub const METHOD_NODE_RANGE: u16 = 36;
/// A peer's share of a DeleteObjects (`delete_elsewhere`).
pub const METHOD_NODE_DELETE: u16 = 37;
const VERSION: u8 = 1;
/// Largest page a peer is asked for (a listing asks max-keys + 1).
pub const MAX_BATCH: u32 = 4096;
const RANGE_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest key accepted on the wire (S3 keys are at most 1,024 bytes, plus
/// the bucket and table prefixes).
const MAX_KEY: usize = 4096;

thread_local! {
    /// This reactor's connections to peers for listing calls.
    static POOL: RefCell<Option<Rc<RpcPool>>> = const { RefCell::new(None) };
}

pub(crate) fn pool(node: &Arc<ClusterNode>) -> Rc<RpcPool> {
    POOL.with(|p| p.borrow_mut().get_or_insert_with(|| RpcPool::new(node.clone())).clone())
}

/// The peers a listing on this node merges: every placed node but itself.
pub fn peers(ctx: &Ctx) -> Vec<NodeIdentity> {
    let Some(node) = &ctx.shared.cluster else { return Vec::new() };
    let Some(owners) = node.owners.load_full() else { return Vec::new() };
    let me = node.id_hex();
    // A node another acts for (`takeover`) is not asked: the acting node
    // lists its keys with its own.
    owners.placed_nodes().into_iter().filter(|r| r.id != me && owners.acting_for(&r.id) == r.id).filter_map(identity).collect()
}

pub(crate) fn identity(r: &NodeRecord) -> Option<NodeIdentity> {
    let id: [u8; 16] = hex::decode(&r.id).ok()?.try_into().ok()?;
    Some(NodeIdentity { addr: r.cluster, id, bump: 0 })
}

fn put16(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&(b.len() as u16).to_le_bytes());
    out.extend_from_slice(b);
}

pub fn encode_request(table: u8, prefix: &[u8], after: Option<&[u8]>, batch: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + prefix.len() + after.map_or(0, <[u8]>::len));
    out.push(VERSION);
    out.push(table);
    put16(&mut out, prefix);
    match after {
        Some(a) => {
            out.push(1);
            put16(&mut out, a);
        }
        None => out.push(0),
    }
    out.extend_from_slice(&(batch.min(MAX_BATCH as usize) as u32).to_le_bytes());
    out
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], &'static str> {
        if self.0.len() < n {
            return Err("cut short");
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Ok(a)
    }
    fn u8(&mut self) -> Result<u8, &'static str> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<usize, &'static str> {
        Ok(u16::from_le_bytes(self.take(2)?.try_into().expect("2")) as usize)
    }
    fn u32(&mut self) -> Result<u32, &'static str> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().expect("4")))
    }
    fn key(&mut self) -> Result<Vec<u8>, &'static str> {
        let n = self.u16()?;
        if n > MAX_KEY {
            return Err("a key too long");
        }
        Ok(self.take(n)?.to_vec())
    }
}

pub struct RangeCall {
    pub table: u8,
    pub prefix: Vec<u8>,
    pub after: Option<Vec<u8>>,
    pub batch: usize,
}

pub fn decode_request(b: &[u8]) -> Result<RangeCall, &'static str> {
    let mut r = Reader(b);
    if r.u8()? != VERSION {
        return Err("a range call of another version");
    }
    let table = r.u8()?;
    if ![T_OBJECTS, T_VERSIONS, T_UPLOADS].contains(&table) {
        return Err("not a listing table");
    }
    let prefix = r.key()?;
    let after = match r.u8()? {
        0 => None,
        1 => Some(r.key()?),
        _ => return Err("a bad flag"),
    };
    let batch = r.u32()?;
    if batch == 0 || batch > MAX_BATCH {
        return Err("a batch out of range");
    }
    if !r.0.is_empty() {
        return Err("trailing bytes");
    }
    Ok(RangeCall { table, prefix, after, batch: batch as usize })
}

pub fn encode_items(items: &[(Vec<u8>, Item)]) -> Vec<u8> {
    let mut out = Vec::with_capacity(5 + items.iter().map(|(k, i)| 6 + k.len() + i.summary.len()).sum::<usize>());
    out.push(VERSION);
    out.extend_from_slice(&(items.len() as u32).to_le_bytes());
    for (k, i) in items {
        put16(&mut out, k);
        out.extend_from_slice(&(i.summary.len() as u32).to_le_bytes());
        out.extend_from_slice(&i.summary);
    }
    out
}

pub fn decode_items(b: &[u8], batch: usize) -> Result<Vec<(Vec<u8>, Item)>, &'static str> {
    let mut r = Reader(b);
    if r.u8()? != VERSION {
        return Err("a range answer of another version");
    }
    let n = r.u32()? as usize;
    if n > batch {
        return Err("more items than asked");
    }
    let mut out = Vec::with_capacity(n);
    let mut last: Option<Vec<u8>> = None;
    for _ in 0..n {
        let k = r.key()?;
        let len = r.u32()? as usize;
        let summary: Box<[u8]> = r.take(len)?.into();
        if last.as_ref().is_some_and(|l| *l >= k) {
            return Err("items out of order");
        }
        last = Some(k.clone());
        out.push((k, Item { summary }));
    }
    if !r.0.is_empty() {
        return Err("trailing bytes");
    }
    Ok(out)
}

fn unavailable(peer: &NodeIdentity, why: impl std::fmt::Display) -> S3Error {
    tracing::warn!(peer = %peer.addr, "listing: {why}");
    S3Error::with_message(
        S3ErrorCode::ServiceUnavailable,
        "A node holding part of this listing cannot be reached; please retry.",
    )
}

/// A page of `peer`'s own merged range.
pub async fn range(
    ctx: &Ctx,
    peer: &NodeIdentity,
    table: u8,
    prefix: &[u8],
    after: Option<&[u8]>,
    batch: usize,
) -> S3Result<Vec<(Vec<u8>, Item)>> {
    let node = ctx.shared.cluster.as_ref().ok_or_else(|| S3Error::new(S3ErrorCode::InternalError))?;
    let batch = batch.min(MAX_BATCH as usize);
    let answer = pool(node)
        .call(peer, METHOD_NODE_RANGE, encode_request(table, prefix, after, batch), RANGE_TIMEOUT)
        .await
        .map_err(|e| unavailable(peer, e))?;
    decode_items(&answer, batch).map_err(|e| unavailable(peer, format!("a malformed range answer: {e}")))
}

/// Answers a peer's range call from this node's shards.
pub async fn serve_range(ctx: &Ctx, payload: &[u8]) -> Result<Vec<u8>, Vec<u8>> {
    let call = decode_request(payload).map_err(|e| e.as_bytes().to_vec())?;
    let mut r = MergedRange::local(ctx, call.table, call.prefix, call.after, call.batch);
    let mut items = Vec::with_capacity(call.batch.min(1024));
    while items.len() < call.batch {
        match r.next().await {
            Ok(Some(x)) => items.push(x),
            Ok(None) => break,
            Err(e) => return Err(format!("{}: {}", e.code, e.message).into_bytes()),
        }
    }
    Ok(encode_items(&items))
}

#[derive(Serialize, Deserialize)]
struct DeleteCall {
    v: u8,
    bucket: String,
    bucket_id: u64,
    bypass: bool,
    origin: Option<(String, String, String)>,
    keys: Vec<(String, Option<String>)>,
}

#[derive(Serialize, Deserialize)]
enum Deleted {
    Ok { version: Option<String>, delete_marker: bool },
    Err { code: String, message: String },
}

/// The codes a peer's delete can answer; any other comes back as an
/// internal error with its message.
fn code_of(s: &str) -> S3ErrorCode {
    use S3ErrorCode::*;
    [AccessDenied, NoSuchVersion, NoSuchBucket, InvalidArgument, InvalidRequest, OperationAborted, ServiceUnavailable, SlowDown]
        .into_iter()
        .find(|c| c.as_str() == s)
        .unwrap_or(InternalError)
}

type Todo = Vec<(usize, Option<crate::meta::VersionSel>)>;

/// Sends the keys of `todo` that other nodes own to them (see the module
/// doc), fills their `results`, and returns the keys this node deletes.
pub(crate) async fn delete_elsewhere(
    ctx: &Ctx,
    b: &crate::buckets::BucketInfo,
    objects: &[(String, Option<String>)],
    todo: Todo,
    results: &mut [S3Result<crate::s3::delete::Outcome>],
    bypass: bool,
    origin: Option<&crate::notify::Origin>,
) -> Todo {
    let Some(node) = &ctx.shared.cluster else { return todo };
    let Some(owners) = node.owners.load_full() else { return todo };
    let me = node.id_hex();
    let mut mine = Vec::with_capacity(todo.len());
    let mut theirs: std::collections::BTreeMap<String, Vec<usize>> = Default::default();
    for (i, sel) in todo {
        match owners.owner_of(crate::layout::partition_of(&b.name, &objects[i].0)) {
            Some(o) if o.id != me => theirs.entry(o.id.clone()).or_default().push(i),
            _ => mine.push((i, sel)),
        }
    }
    let calls = theirs.into_iter().map(|(id, idx)| {
        let peer = owners.nodes.get(&id).and_then(identity);
        let call = DeleteCall {
            v: VERSION,
            bucket: b.name.clone(),
            bucket_id: b.id,
            bypass,
            origin: origin.map(|o| (o.principal.clone(), o.source_ip.clone(), o.request_id.clone())),
            keys: idx.iter().map(|&i| objects[i].clone()).collect(),
        };
        async move {
            let Some(peer) = peer else { return (idx, Err(S3Error::new(S3ErrorCode::InternalError))) };
            let payload = serde_json::to_vec(&call).expect("a delete call serializes");
            let answer = pool(node).call(&peer, METHOD_NODE_DELETE, payload, RANGE_TIMEOUT).await;
            let out = match answer {
                Ok(a) => serde_json::from_slice::<Vec<Deleted>>(&a)
                    .ok()
                    .filter(|v| v.len() == idx.len())
                    .ok_or_else(|| unavailable(&peer, "a malformed delete answer")),
                Err(e) => Err(unavailable(&peer, e)),
            };
            (idx, out)
        }
    });
    for (idx, out) in futures_util::future::join_all(calls).await {
        match out {
            Ok(each) => {
                for (i, d) in idx.into_iter().zip(each) {
                    results[i] = match d {
                        Deleted::Ok { version, delete_marker } => Ok(crate::s3::delete::Outcome { version, delete_marker }),
                        Deleted::Err { code, message } => Err(S3Error::with_message(code_of(&code), message)),
                    };
                }
            }
            Err(e) => {
                for i in idx {
                    results[i] = Err(e.clone());
                }
            }
        }
    }
    mine
}

/// Deletes a peer's share of a DeleteObjects on this node.
pub async fn serve_delete(ctx: &Ctx, payload: &[u8]) -> Result<Vec<u8>, Vec<u8>> {
    let call: DeleteCall = serde_json::from_slice(payload).map_err(|e| format!("a malformed delete call: {e}").into_bytes())?;
    if call.v != VERSION {
        return Err(b"a delete call of another version".to_vec());
    }
    let refuse_all = |code: S3ErrorCode| {
        let each: Vec<Deleted> =
            call.keys.iter().map(|_| Deleted::Err { code: code.as_str().into(), message: String::new() }).collect();
        Ok(serde_json::to_vec(&each).expect("serializes"))
    };
    // The caller saw the bucket; this node may not have applied it yet.
    let Some(b) = ctx.shared.buckets.find(&call.bucket).await.ok().filter(|b| b.id == call.bucket_id) else {
        return refuse_all(S3ErrorCode::NoSuchBucket);
    };
    let owners = ctx.shared.cluster.as_ref().and_then(|n| n.owners.load_full().map(|o| (o, n.id_hex())));
    let origin = call.origin.as_ref().map(|(principal, source_ip, request_id)| crate::notify::Origin {
        principal: principal.clone(),
        source_ip: source_ip.clone(),
        request_id: request_id.clone(),
        replica: None,
    });
    // Keys this node does not own (its layout differs from the caller's) are refused.
    let (owned, foreign): (Vec<usize>, Vec<usize>) = (0..call.keys.len()).partition(|&i| {
        owners.as_ref().is_none_or(|(o, me)| {
            o.owner_of(crate::layout::partition_of(&b.name, &call.keys[i].0)).is_none_or(|r| &r.id == me)
        })
    });
    let keys: Vec<(String, Option<String>)> = owned.iter().map(|&i| call.keys[i].clone()).collect();
    let done = crate::s3::delete::delete_here(ctx, &b, &keys, call.bypass, origin.as_ref()).await;
    let mut each: Vec<Option<Deleted>> = (0..call.keys.len()).map(|_| None).collect();
    for (i, r) in owned.into_iter().zip(done) {
        each[i] = Some(match r {
            Ok(o) => Deleted::Ok { version: o.version, delete_marker: o.delete_marker },
            Err(e) => Deleted::Err { code: e.code.as_str().into(), message: e.message },
        });
    }
    for i in foreign {
        each[i] = Some(Deleted::Err { code: S3ErrorCode::ServiceUnavailable.as_str().into(), message: "placement changing".into() });
    }
    Ok(serde_json::to_vec(&each.into_iter().map(|d| d.expect("every key answered")).collect::<Vec<_>>()).expect("serializes"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_calls_and_answers_round_trip_and_damage_is_refused() {
        let req = encode_request(T_OBJECTS, b"\x00\x00\x00\x00\x00\x00\x00\x07photos/", Some(b"photos/b"), 1001);
        let c = decode_request(&req).unwrap();
        assert_eq!((c.table, c.batch), (T_OBJECTS, 1001));
        assert_eq!(c.after.as_deref(), Some(&b"photos/b"[..]));
        for cut in 0..req.len() {
            assert!(decode_request(&req[..cut]).is_err());
        }
        let mut other = req.clone();
        other[0] = 2;
        assert!(decode_request(&other).is_err());
        let mut table = req.clone();
        table[1] = crate::meta::T_IAM;
        assert!(decode_request(&table).is_err(), "only listing tables can be read");

        let items: Vec<(Vec<u8>, Item)> =
            vec![(b"a".to_vec(), Item { summary: vec![1, 2].into() }), (b"b".to_vec(), Item { summary: Box::new([]) })];
        let ans = encode_items(&items);
        let back = decode_items(&ans, 2).unwrap();
        assert_eq!(back.len(), 2);
        assert_eq!((back[0].0.as_slice(), &*back[0].1.summary), (&b"a"[..], &[1u8, 2][..]));
        assert!(decode_items(&ans, 1).is_err(), "more items than asked");
        for cut in 0..ans.len() {
            assert!(decode_items(&ans[..cut], 2).is_err());
        }
        let swapped = encode_items(&[items[1].clone(), items[0].clone()]);
        assert!(decode_items(&swapped, 2).is_err(), "out of order");
    }
}
