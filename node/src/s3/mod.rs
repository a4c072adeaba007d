//! S3 operations, one file per family. Handlers see a [`Request`] and the
//! reactor's [`Ctx`]; they reach storage only through `ctx.shards` and the
//! bucket registry, never files or sockets.

mod bucket;
mod delete;
mod get;
mod list;
mod multipart;
mod put;

use std::rc::Rc;
use std::sync::Arc;

use tessera_io::{IoError, Mutation};
use tessera_proto::router::Op;
use tessera_proto::{S3Error, S3ErrorCode, S3Result};

use crate::buckets::BucketInfo;
use crate::conn::Request;
use crate::identity::User;
use crate::meta::{ObjectSummary, T_OBJECTS};
use crate::response::Response;
use crate::server::Ctx;

/// Largest object accepted in one PUT and largest part (S3's limits).
pub const MAX_OBJECT_BYTES: u64 = 5 * 1024 * 1024 * 1024;

pub async fn dispatch(ctx: &Rc<Ctx>, req: &mut Request<'_>) -> S3Result<Response> {
    let Some(user) = req.user.clone() else {
        // Anonymous requests may touch nothing yet; a missing bucket still
        // answers NoSuchBucket, as S3 does.
        let missing = req.routed.op != Op::CreateBucket
            && req.routed.bucket.as_deref().is_some_and(|b| ctx.shared.buckets.get(b).is_none());
        return Err(S3Error::new(if missing { S3ErrorCode::NoSuchBucket } else { S3ErrorCode::AccessDenied }));
    };
    let op = req.routed.op.clone();
    match op {
        Op::ListBuckets => bucket::list_buckets(ctx, req, &user),
        Op::CreateBucket => bucket::create_bucket(ctx, req, &user).await,
        _ => {
            let b = owned_bucket(ctx, req.bucket(), &user)?;
            match op {
                Op::HeadBucket => Ok(Response::new(200).header("x-amz-bucket-region", ctx.shared.config.region.clone())),
                Op::DeleteBucket => bucket::delete_bucket(ctx, &b).await,
                Op::GetBucketLocation => bucket::get_location(&b),
                Op::GetBucketVersioning => bucket::get_versioning(),
                Op::GetBucketAcl => bucket::get_acl(&b),
                Op::GetObjectAcl => {
                    check_version(req)?;
                    get::head_exists(ctx, req, &b).await?;
                    bucket::get_acl(&b)
                }
                Op::ListObjectsV1 => list::list_objects(ctx, req, &b, false).await,
                Op::ListObjectsV2 => list::list_objects(ctx, req, &b, true).await,
                Op::ListObjectVersions => list::list_versions(ctx, req, &b).await,
                Op::ListMultipartUploads => multipart::list_uploads(ctx, req, &b).await,
                Op::DeleteObjects => delete::delete_objects(ctx, req, &b).await,
                Op::PutObject => put::put_object(ctx, req, &b).await,
                Op::CopyObject => put::copy_object(ctx, req, &b, &user).await,
                Op::GetObject | Op::HeadObject => {
                    check_version(req)?;
                    get::get_object(ctx, req, &b).await
                }
                Op::DeleteObject => {
                    check_version(req)?;
                    delete::delete_object(ctx, req, &b).await
                }
                Op::CreateMultipartUpload => multipart::create(ctx, req, &b, &user).await,
                Op::UploadPart { part_number, upload_id } => {
                    multipart::upload_part(ctx, req, &b, part_number, &upload_id).await
                }
                Op::UploadPartCopy { part_number, upload_id } => {
                    multipart::upload_part_copy(ctx, req, &b, &user, part_number, &upload_id).await
                }
                Op::CompleteMultipartUpload { upload_id } => multipart::complete(ctx, req, &b, &upload_id).await,
                Op::AbortMultipartUpload { upload_id } => multipart::abort(ctx, req, &b, &upload_id).await,
                Op::ListParts { upload_id } => multipart::list_parts(ctx, req, &b, &upload_id).await,
                Op::ListBuckets | Op::CreateBucket => Err(S3Error::new(S3ErrorCode::InternalError)),
            }
        }
    }
}

/// The bucket, if it exists and `user` owns it. Another owner's bucket is
/// `AccessDenied` (no ACLs or policies yet).
pub fn owned_bucket(ctx: &Ctx, name: &str, user: &User) -> S3Result<Arc<BucketInfo>> {
    let b = ctx.shared.buckets.get(name).ok_or_else(|| S3Error::new(S3ErrorCode::NoSuchBucket))?;
    if b.owner_id != user.user_id {
        return Err(S3Error::new(S3ErrorCode::AccessDenied));
    }
    Ok(b)
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
    ctx.shared.layout.shard_of(bucket, key)
}

/// Strips surrounding quotes of an ETag as clients send it.
pub fn unquote(etag: &str) -> &str {
    let t = etag.trim();
    t.strip_prefix('"').and_then(|s| s.strip_suffix('"')).unwrap_or(t)
}

/// Buckets are unversioned: every object's version id is `null`, and any
/// other version id names nothing.
pub fn check_version(req: &Request<'_>) -> S3Result<()> {
    match req.routed.query.get("versionId") {
        None | Some("null") => Ok(()),
        Some(_) => Err(S3Error::with_message(S3ErrorCode::InvalidArgument, "Invalid version id specified")),
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

fn current_summary(shard: &tessera_io::Shard, key: &[u8]) -> Option<ObjectSummary> {
    shard.get(T_OBJECTS, key).and_then(|e| ObjectSummary::decode(&e.summary))
}

/// Fails early (before a body is stored) when `cond` does not hold now; the
/// binding check happens again atomically in `commit_object`.
pub async fn precheck(ctx: &Ctx, shard: u32, key: &[u8], cond: Option<&WriteCond>) -> S3Result<()> {
    let Some(cond) = cond else { return Ok(()) };
    let current = ctx.shards.get(shard, T_OBJECTS, key.to_vec()).await.map_err(io_error)?;
    cond.check(current.and_then(|e| ObjectSummary::decode(&e.summary)).as_ref())
}

/// Commits a write of the object at `key`, under `cond` when given: then
/// the check and the commit run as one transaction on the shard's core, so
/// two create-only writers never both win.
pub async fn commit_object(ctx: &Ctx, shard: u32, key: Vec<u8>, cond: Option<WriteCond>, muts: Vec<Mutation>) -> S3Result<()> {
    let Some(cond) = cond else {
        return ctx.shards.commit(shard, muts).await.map(|_| ()).map_err(io_error);
    };
    let lock = vec![(T_OBJECTS, key.clone())];
    ctx.shards
        .txn(shard, lock, move |local| async move {
            cond.check(current_summary(&local.shard, &key).as_ref())?;
            local.commit_in_txn(muts).await.map_err(io_error)?;
            Ok(())
        })
        .await
        .map_err(io_error)?
}
