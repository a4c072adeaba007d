//! S3 operations, one file per family. Handlers see a [`Request`] and the
//! reactor's [`Ctx`]; they reach storage only through `ctx.shards` and the
//! bucket registry, never files or sockets.

mod acl;
mod attributes;
pub(crate) mod bucket;
mod cors;
pub(crate) mod delete;
mod encryption;
pub mod get;
pub mod lifecycle;
pub mod notification;
mod replication;
pub use get::read_version;
pub mod list;
mod lock;
pub mod logging;
pub(crate) mod multipart;
mod policy;
mod post;
pub(crate) mod put;
pub mod select;
mod select_parquet;
mod tagging;
pub mod versions;

pub use multipart::MIN_PART_BYTES;

use std::rc::Rc;
use std::sync::Arc;

use tessera_io::{Body, IoError, Mutation};
use tessera_proto::router::Op;
use tessera_proto::time::now_unix_micros;
use tessera_proto::{S3Error, S3ErrorCode, S3Result};

use crate::buckets::{BucketInfo, Versioning};
use crate::request::Request;
use crate::meta::{object_key, ObjectSummary, VersionId, T_OBJECTS};
use crate::notify::Pending;
use tessera_proto::notification::EventName;
use crate::response::Response;
use crate::server::Ctx;
use versions::NewVersion;

/// Largest object accepted in one PUT and largest part (S3's limits).
pub const MAX_OBJECT_BYTES: u64 = 5 * 1024 * 1024 * 1024;

pub use cors::decorate as cors_headers;

pub async fn dispatch(ctx: &Rc<Ctx>, req: &mut Request<'_>) -> S3Result<Response> {
    // A preflight carries no credentials (and needs none).
    if req.routed.op == Op::Options {
        return cors::preflight(ctx, req);
    }
    encryption::require_secure_transport(req)?;
    // In a cluster an object request reaches the key's owner (`forward`);
    // one that did not (the console's path) must not store or read here.
    if let (Some(b), Some(k)) = (req.routed.bucket.as_deref(), req.routed.key.as_deref()) {
        if !crate::forward::owned_here(ctx, b, k) {
            return Err(S3Error::with_message(
                S3ErrorCode::NotImplemented,
                "In a cluster, this request must be sent to the S3 port (another node owns the key).",
            ));
        }
    }
    let op = req.routed.op.clone();
    // A missing bucket is NoSuchBucket for anyone, as S3 answers.
    let bucket = match op {
        Op::ListBuckets | Op::CreateBucket => None,
        _ => Some(ctx.shared.buckets.find(req.bucket()).await?),
    };
    if let (Op::PostObject, Some(b)) = (&op, &bucket) {
        // A form upload carries its own credentials: authorized once the
        // form's fields are read.
        let result = post::post_object(ctx, req, b).await;
        return crate::authz::finish(req, Some(b), result);
    }
    // A key this node gained in a layout change is taken from its previous
    // owner before anything reads or writes it (`handover`).
    if let (Some(b), Some(k)) = (&bucket, req.routed.key.as_deref()) {
        crate::handover::ensure(ctx, b, k).await?;
    }
    crate::authz::authorize(ctx, req, bucket.as_deref()).await?;
    if let Some(b) = &bucket {
        expected_owner(req, "x-amz-expected-bucket-owner", b)?;
    }
    let result = match &bucket {
        None => match op {
            Op::ListBuckets => bucket::list_buckets(ctx, req),
            _ => bucket::create_bucket(ctx, req).await,
        },
        Some(b) => run(ctx, req, op, b).await,
    };
    crate::authz::finish(req, bucket.as_deref(), result)
}

/// `x-amz-expected-bucket-owner` (or, for a copy's source bucket,
/// `x-amz-source-expected-bucket-owner`): a request that names another
/// owner than bucket `b`'s is refused with 403 AccessDenied, as S3 does,
/// so a client never writes to (or reads from) a bucket it took for its
/// own after the name changed hands.
pub(crate) fn expected_owner(req: &Request<'_>, header: &str, b: &BucketInfo) -> S3Result<()> {
    match req.header(header) {
        Some(want) if want.trim() != b.owner_id => {
            Err(S3Error::with_message(S3ErrorCode::AccessDenied, "The bucket is owned by another account than the expected one."))
        }
        _ => Ok(()),
    }
}

/// Runs an operation on bucket `b`, once authorized.
///
/// Every operation but the hot object ones (PUT, GET/HEAD, DELETE) runs
/// boxed: a future is as large as its largest arm, and each connection's
/// task holds this one for its whole life. Inline, CopyObject's 13 KB set
/// it, and a connection's task took 19,968 bytes; boxed, PutObject's
/// 8.7 KB does, and the task takes 15,744 (64 MB instead of 82 at 4,096
/// connections per reactor).
async fn run(ctx: &Rc<Ctx>, req: &mut Request<'_>, op: Op, b: &Arc<BucketInfo>) -> S3Result<Response> {
    match op {
        Op::HeadBucket => Ok(Response::new(200).header("x-amz-bucket-region", ctx.shared.config.region.clone())),
        Op::DeleteBucket => Box::pin(bucket::delete_bucket(ctx, b)).await,
        Op::GetBucketLocation => bucket::get_location(b),
        Op::GetBucketVersioning => bucket::get_versioning(b),
        Op::PutBucketVersioning => Box::pin(bucket::put_versioning(ctx, req, b)).await,
        Op::GetBucketTagging => tagging::get_bucket(b),
        Op::PutBucketTagging => Box::pin(tagging::put_bucket(ctx, req, b)).await,
        Op::DeleteBucketTagging => Box::pin(tagging::delete_bucket(ctx, b)).await,
        Op::GetObjectLockConfiguration => lock::get_config(b),
        Op::PutObjectLockConfiguration => Box::pin(lock::put_config(ctx, req, b)).await,
        Op::GetBucketAcl => acl::get_bucket_acl(b),
        Op::PutBucketAcl => Box::pin(acl::put_bucket_acl(ctx, req, b)).await,
        Op::GetObjectAcl => Box::pin(acl::get_object_acl(ctx, req, b)).await,
        Op::PutObjectAcl => Box::pin(acl::put_object_acl(ctx, req, b)).await,
        Op::GetBucketPolicy => policy::get(b),
        Op::PutBucketPolicy => Box::pin(policy::put(ctx, req, b)).await,
        Op::DeleteBucketPolicy => Box::pin(policy::delete(ctx, b)).await,
        Op::GetBucketPolicyStatus => policy::status(b),
        Op::GetPublicAccessBlock => policy::get_public_access_block(b),
        Op::PutPublicAccessBlock => Box::pin(policy::put_public_access_block(ctx, req, b)).await,
        Op::DeletePublicAccessBlock => Box::pin(policy::delete_public_access_block(ctx, b)).await,
        Op::GetBucketOwnershipControls => acl::get_ownership(b),
        Op::PutBucketOwnershipControls => Box::pin(acl::put_ownership(ctx, req, b)).await,
        Op::DeleteBucketOwnershipControls => Box::pin(acl::delete_ownership(ctx, b)).await,
        Op::GetBucketCors => cors::get(b),
        Op::PutBucketCors => Box::pin(cors::put(ctx, req, b)).await,
        Op::DeleteBucketCors => Box::pin(cors::delete(ctx, b)).await,
        Op::GetBucketEncryption => encryption::get(b),
        Op::PutBucketEncryption => Box::pin(encryption::put(ctx, req, b)).await,
        Op::DeleteBucketEncryption => Box::pin(encryption::delete(ctx, b)).await,
        Op::GetBucketLogging => logging::get(b),
        Op::PutBucketLogging => Box::pin(logging::put(ctx, req, b)).await,
        Op::GetBucketLifecycleConfiguration => lifecycle::get(b),
        Op::PutBucketLifecycleConfiguration => Box::pin(lifecycle::put(ctx, req, b)).await,
        Op::DeleteBucketLifecycle => Box::pin(lifecycle::delete(ctx, b)).await,
        Op::GetBucketNotificationConfiguration => notification::get(b),
        Op::PutBucketNotificationConfiguration => Box::pin(notification::put(ctx, req, b)).await,
        Op::GetBucketReplication => replication::get(b),
        Op::PutBucketReplication => Box::pin(replication::put(ctx, req, b)).await,
        Op::DeleteBucketReplication => Box::pin(replication::delete(ctx, b)).await,
        Op::GetObjectTagging => Box::pin(tagging::get_object(ctx, req, b)).await,
        Op::PutObjectTagging => Box::pin(tagging::put_object(ctx, req, b)).await,
        Op::DeleteObjectTagging => Box::pin(tagging::delete_object(ctx, req, b)).await,
        Op::GetObjectRetention => Box::pin(lock::get_retention(ctx, req, b)).await,
        Op::PutObjectRetention => Box::pin(lock::put_retention(ctx, req, b)).await,
        Op::GetObjectLegalHold => Box::pin(lock::get_legal_hold(ctx, req, b)).await,
        Op::PutObjectLegalHold => Box::pin(lock::put_legal_hold(ctx, req, b)).await,
        Op::GetObjectAttributes => Box::pin(attributes::get(ctx, req, b)).await,
        Op::ListObjectsV1 => Box::pin(list::list_objects(ctx, req, b, false)).await,
        Op::ListObjectsV2 => Box::pin(list::list_objects(ctx, req, b, true)).await,
        Op::ListObjectVersions => Box::pin(list::list_versions(ctx, req, b)).await,
        Op::ListMultipartUploads => Box::pin(multipart::list_uploads(ctx, req, b)).await,
        Op::DeleteObjects => Box::pin(delete::delete_objects(ctx, req, b)).await,
        Op::PutObject => put::put_object(ctx, req, b).await,
        Op::CopyObject => Box::pin(put::copy_object(ctx, req, b)).await,
        Op::GetObject | Op::HeadObject => get::get_object(ctx, req, b).await,
        Op::DeleteObject => delete::delete_object(ctx, req, b).await,
        Op::CreateMultipartUpload => Box::pin(multipart::create(ctx, req, b)).await,
        Op::UploadPart { part_number, upload_id } => Box::pin(multipart::upload_part(ctx, req, b, part_number, &upload_id)).await,
        Op::UploadPartCopy { part_number, upload_id } => {
            Box::pin(multipart::upload_part_copy(ctx, req, b, part_number, &upload_id)).await
        }
        Op::CompleteMultipartUpload { upload_id } => Box::pin(multipart::complete(ctx, req, b, &upload_id)).await,
        Op::AbortMultipartUpload { upload_id } => Box::pin(multipart::abort(ctx, req, b, &upload_id)).await,
        Op::ListParts { upload_id } => Box::pin(multipart::list_parts(ctx, req, b, &upload_id)).await,
        Op::SelectObjectContent => Box::pin(select::select_object(ctx, req, b)).await,
        Op::RestoreObject => Box::pin(crate::tier::read::restore_object(ctx, req, b)).await,
        Op::ListBuckets | Op::CreateBucket | Op::Options | Op::PostObject => {
            Err(S3Error::new(S3ErrorCode::InternalError))
        }
    }
}

/// Storage failures become `InternalError` (logged at the edge, at a bounded
/// rate; the client sees only the generic text), except a failed shard, which
/// asks the client to retry later, and a record over the engine's size
/// limits, which is the request's fault.
pub fn io_error(e: IoError) -> S3Error {
    match e {
        IoError::ShardFailed => S3Error::with_message(S3ErrorCode::ServiceUnavailable, "storage unavailable"),
        // Not acknowledged: the client retries (it may or may not have happened).
        IoError::WriteFailed | IoError::Moved => {
            S3Error::with_message(S3ErrorCode::ServiceUnavailable, "the write did not complete; retry")
        }
        IoError::BelowQuorum => S3Error::with_message(
            S3ErrorCode::SlowDown,
            "too few of the node's disks are online to take the write; retry",
        ),
        IoError::NoSpace => S3Error::new(S3ErrorCode::StorageFull),
        IoError::TooLarge => S3Error::with_message(S3ErrorCode::InvalidRequest, "The request is too large to store."),
        other => S3Error::with_message(S3ErrorCode::InternalError, other.to_string()),
    }
}

pub fn internal(msg: impl Into<String>) -> S3Error {
    S3Error::with_message(S3ErrorCode::InternalError, msg)
}

/// The shard of `(bucket, key)`.
pub fn shard_of(ctx: &Ctx, bucket: &str, key: &str) -> u32 {
    if let Some(f) = ctx.shared.cluster.as_deref().and_then(|n| crate::takeover::foster_shard(n, bucket, key)) {
        return f;
    }
    ctx.shared.layout.shard_of(bucket, key)
}

/// Strips surrounding quotes of an ETag as clients send it.
pub fn unquote(etag: &str) -> &str {
    let t = etag.trim();
    t.strip_prefix('"').and_then(|s| s.strip_suffix('"')).unwrap_or(t)
}

/// Whether the request asks to bypass GOVERNANCE retention and may (it
/// is allowed `s3:BypassGovernanceRetention`; see `authz`).
pub fn bypass_governance(req: &Request<'_>) -> bool {
    req.authz.bypass_governance()
}

/// An error answered from inside a handler, with headers beside it (e.g.
/// `x-amz-delete-marker` on a 404): the body as the connection layer
/// writes it for plain errors.
pub fn error_with_headers(req: &Request<'_>, e: S3Error, headers: Vec<(&'static str, String)>) -> Response {
    let mut extra = Vec::new();
    if e.code == S3ErrorCode::NoSuchKey {
        extra.push(("Key", req.key()));
    }
    let body = tessera_proto::xml::error_body(e.code.as_str(), &e.message, &req.head.path, &req.request_id, &extra);
    let mut r = Response::xml(e.status(), body);
    for (n, v) in headers {
        r.push_header(n, v);
    }
    r
}

/// `x-amz-version-id` of a written version: absent for a null version, as S3 does.
pub fn push_written_version(resp: &mut Response, s: &ObjectSummary) {
    if !s.null_version {
        resp.push_header("x-amz-version-id", s.version.render());
    }
}

/// `x-amz-version-id` of a version read: `null` too once the bucket is (or
/// was) versioned.
pub fn push_read_version(resp: &mut Response, b: &BucketInfo, s: &ObjectSummary) {
    if !s.null_version || b.versioning != Versioning::Unversioned {
        resp.push_header("x-amz-version-id", s.version_id());
    }
    if let Some(st) = s.repl.as_str() {
        resp.push_header("x-amz-replication-status", st);
    }
}

/// The precondition of a PUT or CompleteMultipartUpload: `If-None-Match`
/// (`*` = create only) or `If-Match` (replace only that version).
pub fn write_cond(req: &Request<'_>) -> S3Result<Option<WriteCond>> {
    let tags = |v: &str| v.split(',').map(|t| unquote(t.trim().trim_start_matches("W/")).to_string()).collect();
    match (req.header("if-none-match"), req.header("if-match")) {
        (None, None) => Ok(None),
        (Some(v), None) => Ok(Some(WriteCond::NoneMatch(tags(v)))),
        (None, Some(v)) => Ok(Some(WriteCond::Match(tags(v)))),
        (Some(_), Some(_)) => Err(S3Error::with_message(
            S3ErrorCode::NotImplemented,
            "If-None-Match and If-Match together are not supported on writes",
        )),
    }
}

/// A precondition on the current object at a key; ETags unquoted, `*`
/// standing for any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteCond {
    /// `If-None-Match`: refused when the object exists with one of these
    /// ETags (`*`: when it exists at all).
    NoneMatch(Vec<String>),
    /// `If-Match`: the object must exist with one of these ETags.
    Match(Vec<String>),
}

impl WriteCond {
    /// Whether the write may proceed over `current`: `Err` is the S3 error.
    pub fn check(&self, current: Option<&ObjectSummary>) -> S3Result<()> {
        let matches = |tags: &[String], s: &ObjectSummary| {
            let etag = s.etag();
            let etag = etag.trim_matches('"');
            tags.iter().any(|t| t == "*" || t == etag)
        };
        let failed = match (self, current) {
            (WriteCond::NoneMatch(_), None) => false,
            (WriteCond::NoneMatch(tags), Some(s)) => matches(tags, s),
            (WriteCond::Match(_), None) => return Err(S3Error::new(S3ErrorCode::NoSuchKey)),
            (WriteCond::Match(tags), Some(s)) => !matches(tags, s),
        };
        if failed {
            return Err(S3Error::new(S3ErrorCode::PreconditionFailed));
        }
        Ok(())
    }
}

/// Fails early (before a body is stored) when `cond` does not hold now; the
/// binding check happens again atomically in `write_version`.
pub async fn precheck(ctx: &Ctx, shard: u32, key: &[u8], cond: Option<&WriteCond>) -> S3Result<()> {
    let Some(cond) = cond else { return Ok(()) };
    let current = ctx.shards.get(shard, T_OBJECTS, key.to_vec()).await.map_err(io_error)?;
    let current = match current {
        None => None,
        Some(e) => Some(ObjectSummary::decode(&e.summary).ok_or_else(|| internal("corrupt object summary"))?),
    };
    cond.check(current.as_ref().filter(|s| !s.delete_marker))
}

/// The notification event `name` of `key` would cause, when the bucket's
/// configuration selects it (see `notify::prepare`).
pub fn event(ctx: &Ctx, req: &Request<'_>, b: &BucketInfo, key: &str, name: EventName) -> S3Result<Option<Pending>> {
    // Honoured on PutObject and CompleteMultipartUpload (a version over a
    // single PUT's limit replicates as a multipart upload); `authz` asks
    // s3:ReplicateObject for it.
    let replica = match name {
        EventName::Put | EventName::CompleteMultipartUpload => crate::replication::ReplicaWrite::from_headers(&req.head.headers, b)?,
        _ => None,
    };
    if b.notification.is_none() && b.replication.is_none() && replica.is_none() {
        return Ok(None);
    }
    let origin = crate::notify::Origin { replica, ..crate::notify::Origin::of(req) };
    let c = &ctx.shared.config;
    Ok(crate::notify::prepare_with(&c.notify_webhooks, &c.replication_targets, b, key, name, origin))
}

/// Writes `new` as the current version of `key` in bucket `b`, under
/// `cond`. An unversioned bucket without a condition or event takes the
/// plain path (one commit overwriting the key); anything that must read
/// the current state first (a condition, a version to demote) or order an
/// event runs as a transaction on the shard's core, and the event's queue
/// entries go into the same commit as the version. Returns the summary
/// written (with its version id). The caller holds the bucket's write gate.
pub async fn write_version(
    ctx: &Ctx,
    b: &BucketInfo,
    shard: u32,
    key: &str,
    new: NewVersion,
    cond: Option<WriteCond>,
    ev: Option<Pending>,
) -> S3Result<ObjectSummary> {
    let random = versions::random8()?;
    let mut new = new;
    if let Some(ev) = &ev {
        ev.stamp(&mut new.summary);
    }
    // A bucket that transitions objects takes the transaction path, which
    // queues the deletion of a replaced version's copy at its tier.
    let tiering = b.lifecycle.as_ref().is_some_and(|l| l.has_transitions());
    if b.versioning == Versioning::Unversioned && cond.is_none() && ev.is_none() && !tiering {
        let NewVersion { mut summary, meta, body } = new;
        summary.version = VersionId::next(now_unix_micros(), None, random);
        summary.null_version = true;
        let m = Mutation::Put { table: T_OBJECTS, key: object_key(b.id, key), summary: summary.encode(), meta, body };
        ctx.shards.commit(shard, vec![m]).await.map_err(io_error)?;
        return Ok(summary);
    }
    let (bid, key, versioning) = (b.id, key.to_string(), b.versioning);
    let lock = vec![(T_OBJECTS, object_key(bid, &key))];
    ctx.shards
        .txn(shard, lock, move |local| async move {
            let (mut muts, summary) =
                versions::place(&local.shard, bid, &key, versioning, new, cond.as_ref(), random).await?;
            if muts.is_empty() {
                // A null replica older than the null version here: nothing changes.
                return Ok(summary);
            }
            if let Some(ev) = &ev {
                muts.extend(ev.mutations(&local.notify, Some(&summary)));
            }
            local.commit_in_txn(muts).await.map_err(io_error)?;
            if ev.is_some() {
                local.notify.wake.notify_all();
            }
            Ok(summary)
        })
        .await
        .map_err(io_error)?
}

/// S3 requires an integrity check (Content-MD5 or an `x-amz-checksum-*`
/// value, as header or trailer) on lock and tagging configuration requests
/// and on writes with object lock parameters.
pub fn require_integrity_check(req: &Request<'_>) -> S3Result<()> {
    let h = &req.head.headers;
    let has_checksum = h.iter().any(|(n, _)| tessera_proto::checksum::ChecksumAlgo::from_header_name(n).is_some())
        || h.get_all("x-amz-trailer")
            .flat_map(|v| v.split(','))
            .any(|n| tessera_proto::checksum::ChecksumAlgo::from_header_name(n).is_some());
    if h.contains("content-md5") || has_checksum {
        return Ok(());
    }
    Err(S3Error::with_message(
        S3ErrorCode::InvalidRequest,
        "Content-MD5 OR x-amz-checksum- HTTP header is required for this request",
    ))
}

/// Rewrites version `sel` (the current one when `None`) of `key` with `f`
/// applied to its summary and meta, body unchanged, as a transaction on the
/// key's shard (tagging, retention, legal hold). Delete markers refuse
/// (405 by version id, 404 as the current version).
pub async fn update_version<F>(
    ctx: &Ctx,
    b: &BucketInfo,
    key: &str,
    sel: Option<crate::meta::VersionSel>,
    f: F,
) -> S3Result<ObjectSummary>
where
    F: FnOnce(&mut ObjectSummary, &mut crate::meta::ObjectMeta) -> S3Result<()> + Send + 'static,
{
    let shard = shard_of(ctx, &b.name, key);
    let (bid, key) = (b.id, key.to_string());
    let lock = vec![(T_OBJECTS, object_key(bid, &key))];
    let _gate = b.enter_write()?;
    ctx.shards
        .txn(shard, lock, move |local| async move {
            let found = versions::load(&local.shard, bid, &key, sel).await?;
            let (loc, mut meta, body): (versions::Located, _, Body) = found.ok_or_else(|| versions::not_found(sel))?;
            if loc.summary.delete_marker {
                return Err(match sel {
                    Some(_) => S3Error::new(S3ErrorCode::MethodNotAllowed),
                    None => S3Error::new(S3ErrorCode::NoSuchKey),
                });
            }
            let mut summary = loc.summary;
            f(&mut summary, &mut meta)?;
            let m = Mutation::Put { table: loc.table, key: loc.key, summary: summary.encode(), meta: meta.encode(), body };
            local.commit_in_txn(vec![m]).await.map_err(io_error)?;
            Ok(summary)
        })
        .await
        .map_err(io_error)?
}
