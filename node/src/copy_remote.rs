//! Copying from a key another node owns (issue 12): CopyObject and
//! UploadPartCopy run on the destination key's owner (the request was
//! forwarded there whole); when the source key's partition belongs to
//! another node, that node is asked for it over the cluster RPC.
//!
//! - `METHOD_COPY_HEAD` (41): the source version (the one named, or the
//!   current one): its summary and metadata, or the S3 error reading it
//!   gave. The destination then runs the same checks as for a local
//!   source (delete markers, the caller's read permission on the source,
//!   `x-amz-copy-source-if-*`, tier stubs): authorization stays with the
//!   node the client's request reached, the source owner only trusts the
//!   cluster secret for this read.
//! - `METHOD_COPY_READ` (42): a byte range of that exact version (named by
//!   version id, size and MD5, so a version replaced meanwhile is refused
//!   rather than mixed), at most `MAX_READ_BYTES` per call; the copy asks
//!   piece by piece (`sse::stream::PlainReader`), one piece in memory.
//!   Stored bytes are sent as stored: an SSE-C source travels sealed and
//!   is opened on the destination with the request's key (the key never
//!   leaves the node). An SSE-S3 / SSE-KMS source is opened by its owner
//!   (`plain`: its key service holds the master keys) and the range asked
//!   is of the plaintext.
//!
//! Wire (FORMAT BOUNDARY, inside the authenticated RPC frame), version 1:
//! JSON calls (`HeadCall`, `ReadCall`); the head's answer is JSON
//! (`HeadAnswer`), a read's is a status byte (0: the bytes follow; 1: a
//! JSON `Failed` follows).

use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tessera_cluster::NodeIdentity;
use tessera_io::Body;
use tessera_proto::{S3Error, S3ErrorCode, S3Result};

use crate::buckets::BucketInfo;
use crate::cluster::ClusterNode;
use crate::meta::{ObjectMeta, ObjectSummary, VersionSel};
use crate::s3::get::LoadedObject;
use crate::server::Ctx;

pub const METHOD_COPY_HEAD: u16 = 41;
pub const METHOD_COPY_READ: u16 = 42;
const VERSION: u8 = 1;
/// Most bytes one read call answers (frames are at most 16 MiB).
pub const MAX_READ_BYTES: u64 = 8 << 20;
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Serialize, Deserialize)]
struct HeadCall {
    v: u8,
    bucket: String,
    bucket_id: u64,
    key: String,
    version: Option<String>,
}

#[derive(Serialize, Deserialize)]
enum HeadAnswer {
    Found { summary: String, meta: String },
    Failed(Failed),
}

#[derive(Serialize, Deserialize)]
struct Failed {
    code: String,
    message: String,
}

#[derive(Serialize, Deserialize, Clone)]
struct ReadCall {
    v: u8,
    bucket: String,
    bucket_id: u64,
    key: String,
    /// The exact version (`VersionSel::render`), its size and MD5 (hex).
    version: String,
    size: u64,
    md5: String,
    start: u64,
    end: u64,
    /// Open the source here (SSE-S3/KMS) and answer plaintext.
    plain: bool,
}

/// The codes a source owner's answer can carry; any other comes back as
/// an internal error with its message.
fn code_of(s: &str) -> S3ErrorCode {
    use S3ErrorCode::*;
    [
        NoSuchKey,
        NoSuchVersion,
        NoSuchBucket,
        InvalidArgument,
        InvalidRequest,
        MethodNotAllowed,
        ServiceUnavailable,
        SlowDown,
        InvalidObjectState,
    ]
    .into_iter()
    .find(|c| c.as_str() == s)
    .unwrap_or(InternalError)
}

fn failed(e: &S3Error) -> Failed {
    Failed { code: e.code.as_str().to_string(), message: e.message.clone() }
}

fn error_of(f: Failed) -> S3Error {
    S3Error::with_message(code_of(&f.code), f.message)
}

fn unreachable(peer: &NodeIdentity, why: impl std::fmt::Display) -> S3Error {
    tracing::warn!(peer = %peer.addr, "copy: the source's owner: {why}");
    S3Error::with_message(S3ErrorCode::ServiceUnavailable, "The node that owns the copy source cannot be reached; please retry.")
}

/// The node owning `(bucket, key)` when it is not this one.
pub fn owner_elsewhere(ctx: &Ctx, bucket: &str, key: &str) -> Option<NodeIdentity> {
    let node = ctx.shared.cluster.as_ref()?;
    let owners = node.owners.load_full()?;
    let o = owners.owner_of(crate::layout::partition_of(bucket, key))?;
    if o.id == node.id_hex() {
        return None;
    }
    crate::fanout::identity(o)
}

/// A version of a key another node owns, to read its bytes from.
pub struct RemoteSource {
    node: Arc<ClusterNode>,
    peer: NodeIdentity,
    call: ReadCall,
}

impl RemoteSource {
    /// The source's owner opens it (SSE-S3/KMS): ranges are of plaintext.
    pub fn opened_by_owner(&mut self) {
        self.call.plain = true;
    }

    /// Bytes `range` of the version (stored bytes, or plaintext when the
    /// owner opens it), in calls of at most `MAX_READ_BYTES`.
    pub async fn read(&self, range: std::ops::Range<u64>) -> S3Result<Vec<u8>> {
        let mut out = Vec::with_capacity((range.end - range.start) as usize);
        let mut at = range.start;
        while at < range.end {
            let end = range.end.min(at + MAX_READ_BYTES);
            let mut call = self.call.clone();
            (call.start, call.end) = (at, end);
            let payload = serde_json::to_vec(&call).expect("a read call serializes");
            let answer = crate::fanout::pool(&self.node)
                .call(&self.peer, METHOD_COPY_READ, payload, CALL_TIMEOUT)
                .await
                .map_err(|e| unreachable(&self.peer, e))?;
            match answer.split_first() {
                Some((0, data)) if data.len() as u64 == end - at => out.extend_from_slice(data),
                Some((1, f)) => {
                    let f: Failed = serde_json::from_slice(f).map_err(|e| unreachable(&self.peer, e))?;
                    return Err(error_of(f));
                }
                _ => return Err(unreachable(&self.peer, "a malformed read answer")),
            }
            at = end;
        }
        Ok(out)
    }
}

/// Reads the copy source `key` of `b` (version `sel`, else the current
/// one) from its owner `peer`: the object as a local read gives it (with
/// an empty body: the bytes come through the `RemoteSource`), or the
/// error a local read would give.
pub async fn head(
    ctx: &Ctx,
    peer: NodeIdentity,
    b: &BucketInfo,
    key: &str,
    sel: Option<VersionSel>,
) -> S3Result<(LoadedObject, RemoteSource)> {
    let node = ctx.shared.cluster.clone().ok_or_else(|| crate::s3::internal("not in a cluster"))?;
    let call = HeadCall { v: VERSION, bucket: b.name.clone(), bucket_id: b.id, key: key.to_string(), version: sel.map(|s| s.render()) };
    let payload = serde_json::to_vec(&call).expect("a head call serializes");
    let answer = crate::fanout::pool(&node)
        .call(&peer, METHOD_COPY_HEAD, payload, CALL_TIMEOUT)
        .await
        .map_err(|e| unreachable(&peer, e))?;
    let answer: HeadAnswer = serde_json::from_slice(&answer).map_err(|e| unreachable(&peer, e))?;
    let (summary, meta) = match answer {
        HeadAnswer::Found { summary, meta } => (summary, meta),
        HeadAnswer::Failed(f) => return Err(error_of(f)),
    };
    let summary = hex::decode(summary).ok().and_then(|s| ObjectSummary::decode(&s));
    let meta = hex::decode(meta).ok().and_then(|m| ObjectMeta::decode(&m));
    let (Some(summary), Some(meta)) = (summary, meta) else { return Err(unreachable(&peer, "a malformed head answer")) };
    let exact = if summary.null_version { VersionSel::Null } else { VersionSel::Id(summary.version) };
    let read = ReadCall {
        v: VERSION,
        bucket: b.name.clone(),
        bucket_id: b.id,
        key: key.to_string(),
        version: exact.render(),
        size: summary.size,
        md5: hex::encode(summary.md5),
        start: 0,
        end: 0,
        plain: false,
    };
    let obj = LoadedObject { shard: 0, body: Body::Inline(Vec::new()), summary, meta };
    Ok((obj, RemoteSource { node, peer, call: read }))
}

/// The bucket a call names, as this node knows it, and whether this node
/// owns the key (its layout may be behind or ahead of the caller's).
async fn bucket_here(ctx: &Ctx, bucket: &str, bucket_id: u64, key: &str) -> S3Result<Arc<BucketInfo>> {
    let b = ctx.shared.buckets.find(bucket).await.ok().filter(|b| b.id == bucket_id);
    let Some(b) = b else { return Err(S3Error::new(S3ErrorCode::NoSuchBucket)) };
    if !crate::forward::owned_here(ctx, bucket, key) {
        return Err(S3Error::with_message(S3ErrorCode::ServiceUnavailable, "The cluster's placement is changing; please retry."));
    }
    crate::handover::ensure(ctx, &b, key).await?;
    Ok(b)
}

/// Answers a head call from this node's shards.
pub async fn serve_head(ctx: &Ctx, payload: &[u8]) -> Result<Vec<u8>, Vec<u8>> {
    let call: HeadCall = serde_json::from_slice(payload).map_err(|e| format!("a malformed copy head call: {e}").into_bytes())?;
    if call.v != VERSION {
        return Err(b"a copy head call of another version".to_vec());
    }
    let found = async {
        let b = bucket_here(ctx, &call.bucket, call.bucket_id, &call.key).await?;
        let sel = call.version.as_deref().map(VersionSel::parse).transpose()?;
        crate::s3::get::read_version(ctx, &b, &call.key, sel).await
    }
    .await;
    let answer = match found {
        Ok(o) => HeadAnswer::Found { summary: hex::encode(o.summary.encode()), meta: hex::encode(o.meta.encode()) },
        Err(e) => HeadAnswer::Failed(failed(&e)),
    };
    Ok(serde_json::to_vec(&answer).expect("a head answer serializes"))
}

/// Answers a read call from this node's shards.
pub async fn serve_read(ctx: &Rc<Ctx>, payload: &[u8]) -> Result<Vec<u8>, Vec<u8>> {
    let call: ReadCall = serde_json::from_slice(payload).map_err(|e| format!("a malformed copy read call: {e}").into_bytes())?;
    if call.v != VERSION {
        return Err(b"a copy read call of another version".to_vec());
    }
    match read_here(ctx, &call).await {
        Ok(mut data) => {
            data.insert(0, 0);
            Ok(data)
        }
        Err(e) => {
            let mut out = vec![1u8];
            out.extend_from_slice(&serde_json::to_vec(&failed(&e)).expect("serializes"));
            Ok(out)
        }
    }
}

async fn read_here(ctx: &Rc<Ctx>, call: &ReadCall) -> S3Result<Vec<u8>> {
    if call.start > call.end || call.end - call.start > MAX_READ_BYTES {
        return Err(S3Error::with_message(S3ErrorCode::InvalidArgument, "a copy read range over the limit"));
    }
    let b = bucket_here(ctx, &call.bucket, call.bucket_id, &call.key).await?;
    let sel = VersionSel::parse(&call.version)?;
    let o = crate::s3::get::read_version(ctx, &b, &call.key, Some(sel)).await.map_err(|e| match e.code {
        S3ErrorCode::NoSuchKey | S3ErrorCode::NoSuchVersion => changed(),
        _ => e,
    })?;
    if o.summary.delete_marker || o.summary.size != call.size || hex::encode(o.summary.md5) != call.md5 {
        return Err(changed());
    }
    if !call.plain {
        return crate::sse::stream::read_stored(ctx, o.shard, &o.body, call.start..call.end).await.map_err(crate::s3::io_error);
    }
    if call.end > o.summary.size {
        return Err(S3Error::with_message(S3ErrorCode::InvalidArgument, "a copy read range past the object"));
    }
    let dk = crate::sse::open(&*ctx.shared.kms, o.meta.sse.as_ref(), None)?;
    let decrypt = crate::sse::stream::decrypt_of(&o.meta, o.summary.size, dk)?;
    let mut r = crate::sse::stream::PlainReader::new(ctx, o.shard, o.body, decrypt, call.start..call.end);
    let mut out = vec![0u8; (call.end - call.start) as usize];
    let mut filled = 0;
    while filled < out.len() {
        let n = crate::s3::put::BodySource::read(&mut r, &mut out[filled..]).await?;
        if n == 0 {
            return Err(crate::s3::internal("copy source read short"));
        }
        filled += n;
    }
    Ok(out)
}

fn changed() -> S3Error {
    S3Error::with_message(S3ErrorCode::ServiceUnavailable, "the copy source changed during the copy; retry")
}
