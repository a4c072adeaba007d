//! Bucket operations: ListBuckets, CreateBucket, DeleteBucket,
//! GetBucketLocation, GetBucketVersioning.

use std::rc::Rc;

use tessera_io::Mutation;
use tessera_proto::time::{format_iso8601_ms, now_unix_ms};
use tessera_proto::xml::{self, XmlWriter};
use tessera_proto::{S3Error, S3ErrorCode, S3Result};

use super::io_error;
use crate::buckets::{valid_bucket_name, BucketInfo};
use crate::conn::Request;
use crate::identity::User;
use crate::meta::{bucket_prefix, T_OBJECTS, T_PARTS, T_UPLOADS};
use crate::response::Response;
use crate::server::Ctx;

pub fn list_buckets(ctx: &Ctx, req: &Request<'_>, user: &User) -> S3Result<Response> {
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

fn new_bucket_id() -> S3Result<u64> {
    use ring::rand::{SecureRandom, SystemRandom};
    let mut raw = [0u8; 8];
    SystemRandom::new().fill(&mut raw).map_err(|_| super::internal("no randomness"))?;
    Ok(u64::from_be_bytes(raw))
}

pub async fn create_bucket(ctx: &Rc<Ctx>, req: &mut Request<'_>, user: &User) -> S3Result<Response> {
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
    let info = BucketInfo {
        id: new_bucket_id()?,
        name: name.clone(),
        owner_id: user.user_id.clone(),
        owner_display: user.display_name.clone(),
        created_ms: now_unix_ms(),
        location,
        gate: Default::default(),
    };
    ctx.shared.buckets.create(&ctx.shards, info, ctx.shared.config.max_buckets_per_user).await?;
    Ok(Response::new(200).header("Location", format!("/{name}")))
}

/// Whether any shard holds an object of `bucket`.
async fn bucket_is_empty(ctx: &Ctx, bucket: u64) -> S3Result<bool> {
    let prefix = bucket_prefix(bucket);
    for shard in 0..ctx.shards.count() {
        let found = ctx.shards.range(shard, T_OBJECTS, prefix.clone(), None, 1).await.map_err(io_error)?;
        if !found.is_empty() {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Removes leftover multipart uploads and parts of a deleted bucket.
async fn purge_uploads(ctx: &Ctx, bucket: u64) -> S3Result<()> {
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
    ctx.shared.buckets.delete(&ctx.shards, &b.name, || bucket_is_empty(ctx, b.id)).await?;
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

pub fn get_versioning() -> S3Result<Response> {
    let w = XmlWriter::new().root("VersioningConfiguration");
    let mut body = w.finish();
    body.push_str("</VersioningConfiguration>");
    Ok(Response::xml(200, body))
}

/// The ACL every bucket and object has until ACLs can be changed: the
/// owner with FULL_CONTROL.
pub fn get_acl(b: &BucketInfo) -> S3Result<Response> {
    let mut w = XmlWriter::new().root("AccessControlPolicy");
    w.open("Owner").elem("ID", &b.owner_id).elem("DisplayName", &b.owner_display).close("Owner");
    w.open("AccessControlList").open("Grant");
    let mut body = w.finish();
    body.push_str("<Grantee xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\" xsi:type=\"CanonicalUser\">");
    let mut w = XmlWriter::default();
    w.elem("ID", &b.owner_id).elem("DisplayName", &b.owner_display).close("Grantee");
    w.elem("Permission", "FULL_CONTROL").close("Grant").close("AccessControlList").close("AccessControlPolicy");
    body.push_str(&w.finish());
    Ok(Response::xml(200, body))
}
