//! ACLs and object ownership: Get/PutBucketAcl, Get/PutObjectAcl (per
//! version), the ACL of new objects (canned or granted on PutObject,
//! CopyObject and CreateMultipartUpload), and
//! Put/Get/DeleteBucketOwnershipControls. Buckets without ownership
//! controls keep ACLs enabled, the writer owning what it writes (S3's
//! behaviour before April 2023, and Ceph's).

use std::rc::Rc;

use tessera_policy::{Acl, CannedAcl};
use tessera_proto::xml_access::{parse_access_control_policy, parse_ownership_controls, render_ownership_controls};
use tessera_proto::{S3Error, S3ErrorCode, S3Result};

use super::get::read_version;
use super::{push_read_version, update_version, versions};
use crate::acl::{self, AclRequest, Ownership};
use crate::authz::{self, ObjectFacts};
use crate::buckets::BucketInfo;
use crate::request::Request;
use crate::response::Response;
use crate::server::Ctx;

/// Largest AccessControlPolicy or OwnershipControls document read.
pub const MAX_ACL_BODY_BYTES: usize = 64 * 1024;

/// The ACL a Put*Acl request asks for: its headers or its body (not both).
async fn requested(ctx: &Ctx, req: &mut Request<'_>, owner_id: &str) -> S3Result<AclRequest> {
    let from_headers = acl::from_headers(&req.head.headers, &ctx.shared.identities.load())?;
    let body = req.read_body_to_vec(MAX_ACL_BODY_BYTES).await?;
    let has_body = !body.iter().all(u8::is_ascii_whitespace);
    match (from_headers, has_body) {
        (Some(_), true) => Err(S3Error::with_message(
            S3ErrorCode::UnexpectedContent,
            "This request does not support content when ACL headers are given",
        )),
        (Some(r), false) => Ok(r),
        (None, true) => acl::from_document(parse_access_control_policy(&body)?, owner_id, &ctx.shared.identities.load()),
        (None, false) => Err(S3Error::with_message(S3ErrorCode::MissingSecurityHeader, "Your request was missing a required header")),
    }
}

/// Refuses a public ACL on a bucket with BlockPublicAcls.
fn block_public(b: &BucketInfo, r: Option<&AclRequest>) -> S3Result<()> {
    if b.public_access_block.is_some_and(|p| p.block_public_acls) && r.is_some_and(AclRequest::is_public) {
        return Err(S3Error::new(S3ErrorCode::AccessDenied));
    }
    Ok(())
}

/// The requester's account `(id, display name)`; anonymous writers count
/// as the bucket owner (their objects would otherwise belong to nobody).
fn writer<'a>(req: &'a Request<'_>, b: &'a BucketInfo) -> (&'a str, &'a str) {
    match &req.user {
        Some(u) => (&u.user_id, &u.display_name),
        None => (&b.owner_id, &b.owner_display),
    }
}

/// The owner and ACL of a new object version written by `req` into `b`.
/// `None`: the bucket owner's private ACL (what most objects have, kept
/// implicit).
pub fn for_new_object(ctx: &Ctx, req: &Request<'_>, b: &BucketInfo) -> S3Result<Option<Acl>> {
    for_new_object_with(ctx, req, b, &req.head.headers)
}

/// [`for_new_object`] with the ACL asked for in `h` (a POST form's fields).
pub fn for_new_object_with(ctx: &Ctx, req: &Request<'_>, b: &BucketInfo, h: &tessera_proto::Headers) -> S3Result<Option<Acl>> {
    let r = acl::from_headers(h, &ctx.shared.identities.load())?;
    acl::check_enforced(r.as_ref(), b.ownership, &b.owner_id)?;
    block_public(b, r.as_ref())?;
    let bucket_owner = (b.owner_id.as_str(), b.owner_display.as_str());
    let owner = match b.ownership {
        Some(Ownership::BucketOwnerEnforced) => return Ok(None),
        Some(Ownership::BucketOwnerPreferred)
            if r.as_ref().and_then(AclRequest::canned) == Some(CannedAcl::BucketOwnerFullControl) =>
        {
            bucket_owner
        }
        _ => writer(req, b),
    };
    let private_of_bucket_owner = owner.0 == b.owner_id
        && r.as_ref().is_none_or(|r| matches!(r.canned(), Some(CannedAcl::Private | CannedAcl::BucketOwnerFullControl)));
    if private_of_bucket_owner {
        return Ok(None);
    }
    let acl = match r {
        Some(r) => r.resolve(owner, bucket_owner),
        None => Acl::private(owner.0, owner.1),
    };
    Ok(Some(acl))
}

/// The ACL an object version shows: its own, else the bucket owner's
/// private one (always that with BucketOwnerEnforced).
fn shown(b: &BucketInfo, acl: Option<&Acl>) -> Acl {
    match (b.ownership, acl) {
        (Some(Ownership::BucketOwnerEnforced), _) | (_, None) => Acl::private(&b.owner_id, &b.owner_display),
        (_, Some(a)) => a.clone(),
    }
}

pub fn get_bucket_acl(b: &BucketInfo) -> S3Result<Response> {
    let acl = match b.ownership {
        Some(Ownership::BucketOwnerEnforced) => Acl::private(&b.owner_id, &b.owner_display),
        _ => b.effective_acl(),
    };
    Ok(Response::xml(200, acl::render(&acl)))
}

pub async fn put_bucket_acl(ctx: &Rc<Ctx>, req: &mut Request<'_>, b: &BucketInfo) -> S3Result<Response> {
    let r = requested(ctx, req, &b.owner_id).await?;
    acl::check_enforced(Some(&r), b.ownership, &b.owner_id)?;
    block_public(b, Some(&r))?;
    let new = r.resolve((&b.owner_id, &b.owner_display), (&b.owner_id, &b.owner_display));
    let private = Acl::private(&b.owner_id, &b.owner_display);
    ctx.shared
        .buckets
        .update(&ctx.shards, &b.name, move |info| {
            info.acl = (new != private).then(|| new.clone());
            Ok(())
        })
        .await?;
    Ok(Response::new(200))
}

pub async fn get_object_acl(ctx: &Rc<Ctx>, req: &mut Request<'_>, b: &BucketInfo) -> S3Result<Response> {
    let sel = versions::requested(&req.routed.query)?;
    let obj = read_version(ctx, b, req.key(), sel).await?;
    obj.refuse_delete_marker(sel)?;
    authz::check_object(req, b, ObjectFacts { acl: obj.meta.acl.as_ref(), tags: &obj.meta.tags })?;
    let mut resp = Response::xml(200, acl::render(&shown(b, obj.meta.acl.as_ref())));
    push_read_version(&mut resp, b, &obj.summary);
    Ok(resp)
}

pub async fn put_object_acl(ctx: &Rc<Ctx>, req: &mut Request<'_>, b: &BucketInfo) -> S3Result<Response> {
    let sel = versions::requested(&req.routed.query)?;
    let obj = read_version(ctx, b, req.key(), sel).await?;
    obj.refuse_delete_marker(sel)?;
    authz::check_object(req, b, ObjectFacts { acl: obj.meta.acl.as_ref(), tags: &obj.meta.tags })?;
    let owner = shown(b, obj.meta.acl.as_ref());
    let r = requested(ctx, req, &owner.owner_id).await?;
    acl::check_enforced(Some(&r), b.ownership, &b.owner_id)?;
    block_public(b, Some(&r))?;
    let new = r.resolve((&owner.owner_id, &owner.owner_display), (&b.owner_id, &b.owner_display));
    // The bucket owner's private ACL stays implicit.
    let stored = (new != Acl::private(&b.owner_id, &b.owner_display)).then_some(new);
    let key = req.key().to_string();
    let summary = update_version(ctx, b, &key, sel, move |_, meta| {
        meta.acl = stored;
        Ok(())
    })
    .await?;
    let mut resp = Response::new(200);
    push_read_version(&mut resp, b, &summary);
    Ok(resp)
}

/// `x-amz-object-ownership` of CreateBucket.
pub fn ownership_header(req: &Request<'_>) -> S3Result<Option<Ownership>> {
    match req.header("x-amz-object-ownership").map(str::trim) {
        None => Ok(None),
        Some(v) => Ownership::parse(v)
            .map(Some)
            .ok_or_else(|| S3Error::with_message(S3ErrorCode::InvalidArgument, "Invalid x-amz-object-ownership header")),
    }
}

pub fn get_ownership(b: &BucketInfo) -> S3Result<Response> {
    let o = b.ownership.ok_or_else(|| S3Error::new(S3ErrorCode::OwnershipControlsNotFoundError))?;
    Ok(Response::xml(200, render_ownership_controls(o.as_str())))
}

pub async fn put_ownership(ctx: &Rc<Ctx>, req: &mut Request<'_>, b: &BucketInfo) -> S3Result<Response> {
    let body = req.read_body_to_vec(MAX_ACL_BODY_BYTES).await?;
    let o = Ownership::parse(&parse_ownership_controls(&body)?).ok_or_else(|| S3Error::new(S3ErrorCode::MalformedXML))?;
    ctx.shared
        .buckets
        .update(&ctx.shards, &b.name, move |info| {
            if o == Ownership::BucketOwnerEnforced && !info.effective_acl().is_owner_full_control_only(&info.owner_id) {
                return Err(S3Error::new(S3ErrorCode::InvalidBucketAclWithObjectOwnership));
            }
            info.ownership = Some(o);
            Ok(())
        })
        .await?;
    Ok(Response::new(200))
}

pub async fn delete_ownership(ctx: &Rc<Ctx>, b: &BucketInfo) -> S3Result<Response> {
    ctx.shared
        .buckets
        .update(&ctx.shards, &b.name, |info| {
            info.ownership = None;
            Ok(())
        })
        .await?;
    Ok(Response::new(204))
}
