//! Bucket policies (Put/Get/DeleteBucketPolicy, GetBucketPolicyStatus)
//! and the bucket's public access block. The policy is kept as the client
//! sent it and parsed once; `authz` evaluates it on every request.

use std::rc::Rc;
use std::sync::Arc;

use tessera_proto::xml_access::{parse_public_access_block, render_policy_status, render_public_access_block};
use tessera_proto::{S3Error, S3ErrorCode, S3Result};

use crate::buckets::{BucketInfo, BucketPolicy, MAX_BUCKET_POLICY_BYTES};
use crate::request::Request;
use crate::response::Response;
use crate::server::Ctx;

/// Largest PublicAccessBlockConfiguration document read.
pub const MAX_PAB_BODY_BYTES: usize = 16 * 1024;

fn malformed(msg: impl Into<String>) -> S3Error {
    S3Error::with_message(S3ErrorCode::MalformedPolicy, msg)
}

/// Whether a Resource pattern can name this bucket or its objects (S3
/// refuses a bucket policy about other buckets).
fn names_bucket(resource: &str, bucket: &str) -> bool {
    if resource == "*" {
        return true;
    }
    let Some(rest) = resource.strip_prefix("arn:aws:s3:::") else { return false };
    let bucket_part = rest.split('/').next().unwrap_or(rest);
    tessera_policy::glob::matches(bucket_part, bucket, false, None)
        || (bucket_part.contains('*') && tessera_policy::glob::matches(rest, &format!("{bucket}/x"), false, None))
}

/// S3's checks beyond the grammar: actions are S3's, resources are this
/// bucket's.
fn validate(p: &BucketPolicy, bucket: &str) -> S3Result<()> {
    for s in &p.parsed.statements {
        if let Some(a) = s.actions.iter().find(|a| *a != "*" && !a.to_ascii_lowercase().starts_with("s3:")) {
            return Err(malformed(format!("Policy has invalid action: {a}")));
        }
        if let (Some(rs), false) = (&s.resources, s.not_resource) {
            if let Some(r) = rs.iter().find(|r| !names_bucket(r, bucket)) {
                return Err(malformed(format!("Policy has invalid resource: {r}")));
            }
        }
    }
    Ok(())
}

pub async fn put(ctx: &Rc<Ctx>, req: &mut Request<'_>, b: &BucketInfo) -> S3Result<Response> {
    let body = req.read_body_to_vec(MAX_BUCKET_POLICY_BYTES).await.map_err(|_| malformed("Policies must be at most 20 KB"))?;
    let text = String::from_utf8(body).map_err(|_| malformed("Policies must be valid JSON"))?;
    let p = BucketPolicy::new(text).map_err(|e| malformed(e.0))?;
    validate(&p, &b.name)?;
    let p = Arc::new(p);
    ctx.shared
        .buckets
        .update(&ctx.shards, &b.name, move |info| {
            if p.public && info.public_access_block.is_some_and(|pab| pab.block_public_policy) {
                return Err(S3Error::new(S3ErrorCode::AccessDenied));
            }
            info.policy = Some(p.clone());
            Ok(())
        })
        .await?;
    Ok(Response::new(204))
}

pub fn get(b: &BucketInfo) -> S3Result<Response> {
    let p = b.policy.as_ref().ok_or_else(|| S3Error::new(S3ErrorCode::NoSuchBucketPolicy))?;
    Ok(Response::new(200).header("Content-Type", "application/json").with_body(p.text.as_bytes().to_vec()))
}

pub async fn delete(ctx: &Rc<Ctx>, b: &BucketInfo) -> S3Result<Response> {
    ctx.shared
        .buckets
        .update(&ctx.shards, &b.name, |info| {
            info.policy = None;
            Ok(())
        })
        .await?;
    Ok(Response::new(204))
}

/// GetBucketPolicyStatus: public when the policy grants to everyone, or
/// (as Ceph answers it) when the bucket's ACL grants to a public group.
pub fn status(b: &BucketInfo) -> S3Result<Response> {
    let public = b.policy.as_ref().is_some_and(|p| p.public) || b.effective_acl().is_public();
    Ok(Response::xml(200, render_policy_status(public)))
}

pub fn get_public_access_block(b: &BucketInfo) -> S3Result<Response> {
    let pab = b.public_access_block.ok_or_else(|| S3Error::new(S3ErrorCode::NoSuchPublicAccessBlockConfiguration))?;
    Ok(Response::xml(200, render_public_access_block(&pab)))
}

pub async fn put_public_access_block(ctx: &Rc<Ctx>, req: &mut Request<'_>, b: &BucketInfo) -> S3Result<Response> {
    let body = req.read_body_to_vec(MAX_PAB_BODY_BYTES).await?;
    let pab = parse_public_access_block(&body)?;
    ctx.shared
        .buckets
        .update(&ctx.shards, &b.name, move |info| {
            info.public_access_block = Some(pab);
            Ok(())
        })
        .await?;
    Ok(Response::new(200))
}

pub async fn delete_public_access_block(ctx: &Rc<Ctx>, b: &BucketInfo) -> S3Result<Response> {
    ctx.shared
        .buckets
        .update(&ctx.shards, &b.name, |info| {
            info.public_access_block = None;
            Ok(())
        })
        .await?;
    Ok(Response::new(204))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resources_must_be_the_buckets() {
        for ok in ["*", "arn:aws:s3:::b", "arn:aws:s3:::b/*", "arn:aws:s3:::*", "arn:aws:s3:::*/*", "arn:aws:s3:::b*", "arn:aws:s3:::b/k"] {
            assert!(names_bucket(ok, "b"), "{ok}");
        }
        for bad in ["arn:aws:s3:::c", "arn:aws:s3:::c/*", "arn:aws:iam::1:user/x", "b"] {
            assert!(!names_bucket(bad, "b"), "{bad}");
        }
    }
}
