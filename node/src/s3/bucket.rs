//! Bucket operations: ListBuckets, CreateBucket, DeleteBucket,
//! GetBucketLocation, Get/PutBucketVersioning.

use std::rc::Rc;

use tessera_io::Mutation;
use tessera_proto::time::{format_iso8601_ms, now_unix_ms};
use tessera_proto::xml::{self, XmlWriter};
use tessera_proto::{S3Error, S3ErrorCode, S3Result};

use super::io_error;
use crate::buckets::{valid_bucket_name, BucketInfo, LockConfig, Versioning};
use crate::request::Request;
use crate::meta::{bucket_prefix, T_PARTS, T_UPLOADS};
use crate::response::Response;
use crate::server::Ctx;

pub fn list_buckets(ctx: &Ctx, req: &Request<'_>) -> S3Result<Response> {
    let user = req.user.clone().ok_or_else(|| S3Error::new(S3ErrorCode::AccessDenied))?;
    let q = &req.routed.query;
    let max = match q.get("max-buckets") {
        None => usize::MAX,
        Some(v) => v.parse::<usize>().ok().filter(|n| (1..=10_000).contains(n)).ok_or_else(|| {
            S3Error::with_message(S3ErrorCode::InvalidArgument, "max-buckets must be an integer between 1 and 10000")
        })?,
    };
    let prefix = q.get("prefix").unwrap_or("");
    let after = q.get("continuation-token").unwrap_or("");
    let mut buckets = ctx.shared.buckets.list_owned_by(&user.user_id);
    buckets.retain(|b| b.name.starts_with(prefix) && b.name.as_str() > after);
    let truncated = buckets.len() > max;
    buckets.truncate(max);
    let mut w = XmlWriter::new().root("ListAllMyBucketsResult");
    w.open("Owner").elem("ID", &user.user_id).elem("DisplayName", &user.display_name).close("Owner");
    w.open("Buckets");
    for b in &buckets {
        w.open("Bucket")
            .elem("Name", &b.name)
            .elem("CreationDate", &format_iso8601_ms(b.created_ms))
            .elem("BucketRegion", &ctx.shared.config.region)
            .close("Bucket");
    }
    w.close("Buckets");
    if truncated {
        // Bucket names are plain ASCII: the last name is a usable token.
        w.elem_opt("ContinuationToken", buckets.last().map(|b| b.name.as_str()));
    }
    if q.has("prefix") {
        w.elem("Prefix", prefix);
    }
    w.close("ListAllMyBucketsResult");
    Ok(Response::xml(200, w.finish()))
}

/// The region where S3 keeps its legacy CreateBucket behaviour.
pub const LEGACY_REGION: &str = "us-east-1";

fn new_bucket_id() -> S3Result<u64> {
    use ring::rand::{SecureRandom, SystemRandom};
    let mut raw = [0u8; 8];
    SystemRandom::new().fill(&mut raw).map_err(|_| super::internal("no randomness"))?;
    Ok(u64::from_be_bytes(raw))
}

pub async fn create_bucket(ctx: &Rc<Ctx>, req: &mut Request<'_>) -> S3Result<Response> {
    let user = req.user.clone().ok_or_else(|| S3Error::new(S3ErrorCode::AccessDenied))?;
    let name = req.bucket().to_string();
    if !valid_bucket_name(&name) {
        return Err(S3Error::new(S3ErrorCode::InvalidBucketName));
    }
    let body = req.read_body_to_vec(xml::MAX_XML_BODY_BYTES).await?;
    let location = xml::parse_create_bucket(&body)?;
    if let Some(loc) = &location {
        let region = &ctx.shared.config.region;
        if loc != region && !(region == "us-east-1" && loc == "US") {
            return Err(S3Error::with_message(
                S3ErrorCode::InvalidLocationConstraint,
                "The specified location-constraint is not valid",
            ));
        }
    }
    // Object lock at creation turns versioning on with it.
    let lock = match req.header("x-amz-bucket-object-lock-enabled").map(str::trim) {
        None => false,
        Some(v) if v.eq_ignore_ascii_case("true") => true,
        Some(v) if v.eq_ignore_ascii_case("false") => false,
        Some(_) => {
            return Err(S3Error::with_message(
                S3ErrorCode::InvalidArgument,
                "x-amz-bucket-object-lock-enabled must be true or false",
            ))
        }
    };
    let ownership = super::acl::ownership_header(req)?;
    let requested = crate::acl::from_headers(&req.head.headers, &ctx.shared.identities.load())?;
    if ownership == Some(crate::acl::Ownership::BucketOwnerEnforced) {
        crate::acl::check_enforced(requested.as_ref(), ownership, &user.user_id)
            .map_err(|_| S3Error::new(S3ErrorCode::InvalidBucketAclWithObjectOwnership))?;
    }
    let acl = requested
        .map(|r| r.resolve((&user.user_id, &user.display_name), (&user.user_id, &user.display_name)))
        .filter(|a| *a != tessera_policy::Acl::private(&user.user_id, &user.display_name));
    let info = BucketInfo {
        id: new_bucket_id()?,
        name: name.clone(),
        owner_id: user.user_id.clone(),
        owner_display: user.display_name.clone(),
        created_ms: now_unix_ms(),
        location,
        versioning: if lock { Versioning::Enabled } else { Versioning::Unversioned },
        object_lock: lock.then(LockConfig::default),
        tags: Vec::new(),
        cors: Vec::new(),
        logging: None,
        acl,
        policy: None,
        public_access_block: None,
        ownership,
        encryption: None,
        lifecycle: None,
        lifecycle_stamp: 0,
        notification: None,
        replication: None,
        gate: Default::default(),
    };
    match ctx.shared.buckets.create(&ctx.shards, info, ctx.shared.config.max_buckets_per_user).await {
        Ok(()) => {}
        // us-east-1 answers a re-create of your own bucket with 200 (and
        // changes nothing); every other region answers 409.
        Err(e) if e.code == S3ErrorCode::BucketAlreadyOwnedByYou && ctx.shared.config.region == LEGACY_REGION => {}
        Err(e) => return Err(e),
    }
    Ok(Response::new(200).header("Location", format!("/{name}")))
}

/// Removes leftover multipart uploads and parts of a deleted bucket (in a
/// cluster every node does it for its own shards when the bucket leaves
/// the configuration, `Buckets::follow`).
pub(crate) async fn purge_uploads(ctx: &Ctx, bucket: u64) -> S3Result<()> {
    let prefix = bucket_prefix(bucket);
    for shard in 0..ctx.shards.count() {
        for table in [T_UPLOADS, T_PARTS] {
            loop {
                let batch = ctx.shards.range(shard, table, prefix.clone(), None, 1000).await.map_err(io_error)?;
                if batch.is_empty() {
                    break;
                }
                let muts = batch.into_iter().map(|(key, _)| Mutation::Delete { table, key }).collect();
                ctx.shards.commit(shard, muts).await.map_err(io_error)?;
            }
        }
    }
    Ok(())
}

pub async fn delete_bucket(ctx: &Rc<Ctx>, b: &BucketInfo) -> S3Result<Response> {
    ctx.shared.buckets.delete(&ctx.shards, &b.name, || crate::buckets::cluster::holds_nothing_of(&ctx.shards, crate::takeover::listed_shards(ctx), b.id)).await?;
    // Keys carry the bucket id, so leftovers are invisible to a new bucket of
    // the same name; this only returns their index memory.
    purge_uploads(ctx, b.id).await?;
    Ok(Response::new(204))
}

pub fn get_location(b: &BucketInfo) -> S3Result<Response> {
    let mut w = XmlWriter::new();
    // us-east-1 buckets report an empty constraint, as S3 does.
    let loc = b.location.as_deref().filter(|l| *l != "us-east-1").unwrap_or("");
    w = w.root("LocationConstraint");
    let mut body = w.finish();
    xml::escape_into(&mut body, loc);
    body.push_str("</LocationConstraint>");
    Ok(Response::xml(200, body))
}

pub fn get_versioning(b: &BucketInfo) -> S3Result<Response> {
    let mut w = XmlWriter::new().root("VersioningConfiguration");
    match b.versioning {
        Versioning::Unversioned => {}
        Versioning::Enabled => {
            w.elem("Status", "Enabled");
        }
        Versioning::Suspended => {
            w.elem("Status", "Suspended");
        }
    }
    w.close("VersioningConfiguration");
    Ok(Response::xml(200, w.finish()))
}

/// Largest PutBucketVersioning document read.
pub const MAX_VERSIONING_BODY_BYTES: usize = 16 * 1024;

/// PutBucketVersioning: Enabled or Suspended (a bucket never goes back to
/// unversioned). MFA delete cannot be configured here: asking to enable it
/// is refused as S3 refuses it without MFA authentication.
pub async fn put_versioning(ctx: &Rc<Ctx>, req: &mut Request<'_>, b: &BucketInfo) -> S3Result<Response> {
    let body = req.read_body_to_vec(MAX_VERSIONING_BODY_BYTES).await?;
    let v = xml::parse_versioning(&body)?;
    let malformed = || S3Error::new(S3ErrorCode::MalformedXML);
    match v.mfa_delete.as_deref() {
        None | Some("Disabled") => {}
        Some("Enabled") if req.header("x-amz-mfa").is_none() => {
            return Err(S3Error::with_message(S3ErrorCode::AccessDenied, "Mfa Authentication must be used for this request"))
        }
        Some("Enabled") => {
            return Err(S3Error::with_message(S3ErrorCode::NotImplemented, "MFA delete is not supported"))
        }
        Some(_) => return Err(malformed()),
    }
    let state = match v.status.as_deref() {
        Some("Enabled") => Versioning::Enabled,
        Some("Suspended") => Versioning::Suspended,
        None if v.mfa_delete.is_some() => return Ok(Response::new(200)),
        _ => return Err(malformed()),
    };
    ctx.shared
        .buckets
        .update(&ctx.shards, &b.name, |info| {
            if info.object_lock.is_some() && state != Versioning::Enabled {
                return Err(S3Error::with_message(
                    S3ErrorCode::InvalidBucketState,
                    "An Object Lock configuration is present on this bucket, so the versioning state cannot be changed.",
                ));
            }
            info.versioning = state;
            Ok(())
        })
        .await?;
    Ok(Response::new(200))
}
