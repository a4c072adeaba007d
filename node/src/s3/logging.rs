//! Server access logging: Put/GetBucketLogging, and the delivery of access
//! log objects to the target bucket.
//!
//! Each reactor buffers the log lines of the requests it served, per source
//! bucket and bounded in bytes, and writes them as one object per bucket
//! into the target bucket every [`DELIVERY_INTERVAL`] (or sooner when a
//! bucket's lines reach [`LOG_OBJECT_BYTES`]). Delivery is best effort, as
//! AWS's is: lines past the per-core bound, or of a bucket whose target has
//! gone, are dropped and counted; a crash loses the lines not yet
//! delivered. Writes of log objects are not logged themselves.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::time::Duration;

use md5::{Digest, Md5};
use tessera_io::Body;
use tessera_proto::logging::{self, KeyFormat, LogRecord};
use tessera_proto::time::{format_log_stamp, now_unix_ms};
use tessera_proto::{S3Error, S3ErrorCode, S3Result};

use super::versions::{self, NewVersion};
use super::{shard_of, write_version};
use crate::buckets::BucketInfo;
use crate::request::Request;
use crate::meta::{ObjectMeta, ObjectSummary, VersionId};
use crate::response::Response;
use crate::server::Ctx;

/// How often each reactor delivers the lines it holds (AWS delivers within
/// hours; tests lower it with `--test-access-log-interval-ms`).
pub const DELIVERY_INTERVAL: Duration = Duration::from_secs(300);
/// A bucket's lines are delivered as soon as they reach this size (one
/// inline object record).
pub const LOG_OBJECT_BYTES: usize = 96 * 1024;
/// Most bytes of undelivered lines one reactor holds; past it lines are dropped.
pub const MAX_PENDING_LOG_BYTES_PER_CORE: usize = 8 * 1024 * 1024;
/// Longest line kept (a longer one, from a huge URI, is dropped).
pub const MAX_LOG_LINE_BYTES: usize = 16 * 1024;
/// Largest PutBucketLogging document read.
pub const MAX_LOGGING_BODY_BYTES: usize = 16 * 1024;

pub fn get(b: &BucketInfo) -> S3Result<Response> {
    Ok(Response::xml(200, logging::render_status(b.logging.as_ref())))
}

/// PutBucketLogging: the target must exist and belong to the same owner
/// (the log objects are written as the owner's).
pub async fn put(ctx: &Rc<Ctx>, req: &mut Request<'_>, b: &BucketInfo) -> S3Result<Response> {
    let body = req.read_body_to_vec(MAX_LOGGING_BODY_BYTES).await?;
    let cfg = logging::parse_status(&body)?;
    if let Some(c) = &cfg {
        let target = ctx.shared.buckets.get(&c.target_bucket);
        if target.is_none_or(|t| t.owner_id != b.owner_id) {
            return Err(S3Error::new(S3ErrorCode::InvalidTargetBucketForLogging)
                .with_detail("TargetBucket", c.target_bucket.clone()));
        }
    }
    ctx.shared
        .buckets
        .update(&ctx.shards, &b.name, move |info| {
            info.logging = cfg.clone();
            Ok(())
        })
        .await?;
    Ok(Response::new(200))
}

/// One reactor's undelivered log lines, by source bucket.
pub struct AccessLog {
    pending: RefCell<HashMap<String, Vec<u8>>>,
    bytes: Cell<usize>,
    pub dropped: Cell<u64>,
    pub interval: Duration,
}

impl AccessLog {
    pub fn new(interval: Duration) -> Self {
        AccessLog { pending: RefCell::default(), bytes: Cell::new(0), dropped: Cell::new(0), interval }
    }
}

/// Records a request on a bucket that has logging on.
pub fn record(ctx: &Rc<Ctx>, b: &BucketInfo, rec: &LogRecord<'_>) {
    if b.logging.is_none() {
        return;
    }
    let line = rec.line();
    let log = &ctx.access_log;
    if line.len() > MAX_LOG_LINE_BYTES || log.bytes.get() + line.len() > MAX_PENDING_LOG_BYTES_PER_CORE {
        log.dropped.set(log.dropped.get() + 1);
        return;
    }
    let full = {
        let mut pending = log.pending.borrow_mut();
        let buf = pending.entry(b.name.clone()).or_default();
        buf.extend_from_slice(line.as_bytes());
        log.bytes.set(log.bytes.get() + line.len());
        (buf.len() >= LOG_OBJECT_BYTES).then(|| std::mem::take(buf))
    };
    if let Some(data) = full {
        log.bytes.set(log.bytes.get() - data.len());
        let ctx = ctx.clone();
        let name = b.name.clone();
        monoio::spawn(async move { deliver(&ctx, &name, data).await });
    }
}

/// Delivers every bucket's lines, every interval, for the life of the reactor.
pub async fn deliver_periodically(ctx: Rc<Ctx>) {
    loop {
        monoio::time::sleep(ctx.access_log.interval).await;
        let all: Vec<(String, Vec<u8>)> = ctx.access_log.pending.borrow_mut().drain().collect();
        ctx.access_log.bytes.set(0);
        for (name, data) in all {
            deliver(&ctx, &name, data).await;
        }
    }
}

async fn deliver(ctx: &Rc<Ctx>, source: &str, data: Vec<u8>) {
    if let Err(e) = try_deliver(ctx, source, data).await {
        ctx.access_log.dropped.set(ctx.access_log.dropped.get() + 1);
        tracing::warn!(bucket = source, "access log delivery failed: {}", e.code);
    }
}

async fn try_deliver(ctx: &Rc<Ctx>, source: &str, data: Vec<u8>) -> S3Result<()> {
    // The configuration as it is now: logging turned off drops the lines.
    let Some(src) = ctx.shared.buckets.get(source) else { return Ok(()) };
    let Some(cfg) = src.logging.clone() else { return Ok(()) };
    let target = ctx.shared.buckets.get(&cfg.target_bucket).filter(|t| t.owner_id == src.owner_id);
    let target = target.ok_or_else(|| S3Error::new(S3ErrorCode::InvalidTargetBucketForLogging))?;
    let now_ms = now_unix_ms();
    let stamp = format_log_stamp(now_ms / 1000);
    let unique = hex::encode(versions::random8()?).to_ascii_uppercase();
    let key = match cfg.key_format {
        KeyFormat::Simple => format!("{}{stamp}-{unique}", cfg.target_prefix),
        KeyFormat::Partitioned { .. } => {
            let (y, m, d) = (&stamp[0..4], &stamp[5..7], &stamp[8..10]);
            format!(
                "{}{}/{}/{}/{y}/{m}/{d}/{stamp}-{unique}",
                cfg.target_prefix, src.owner_id, ctx.shared.config.region, src.name
            )
        }
    };
    let md5: [u8; 16] = Md5::digest(&data).into();
    let summary = ObjectSummary::new(data.len() as u64, now_ms, md5, 0, VersionId::from_parts(0, [0; 8]), true);
    let meta = ObjectMeta { content_type: Some("text/plain".to_string()), ..Default::default() };
    let new = NewVersion { summary, meta: meta.encode(), body: Body::Inline(data) };
    let shard = shard_of(ctx, &target.name, &key);
    let _gate = target.enter_write()?;
    write_version(ctx, &target, shard, &key, new, None, None).await?;
    Ok(())
}

/// AWS's operation name for the log (`REST.GET.OBJECT`).
pub fn operation_name(method: &str, op: &tessera_proto::router::Op) -> String {
    use tessera_proto::router::Op;
    let what = match op {
        Op::GetObject | Op::HeadObject | Op::PutObject | Op::DeleteObject | Op::CopyObject => "OBJECT",
        Op::ListObjectsV1 | Op::ListObjectsV2 | Op::HeadBucket | Op::CreateBucket | Op::DeleteBucket => "BUCKET",
        Op::DeleteObjects => "MULTI_OBJECT_DELETE",
        Op::CreateMultipartUpload | Op::CompleteMultipartUpload { .. } | Op::AbortMultipartUpload { .. } => "UPLOAD",
        Op::UploadPart { .. } | Op::UploadPartCopy { .. } => "PART",
        Op::PostObject => "OBJECT",
        other => return format!("REST.{method}.{}", other.name().to_ascii_uppercase()),
    };
    format!("REST.{method}.{what}")
}
