//! Bucket CORS: Put/Get/DeleteBucketCors, preflight `OPTIONS`, and the CORS
//! headers added to actual responses (errors included) of a bucket that has
//! rules. Matching lives in `tessera_proto::cors`.

use std::rc::Rc;

use tessera_proto::cors::{self, MAX_CORS_BODY_BYTES};
use tessera_proto::http::RequestHead;
use tessera_proto::{S3Error, S3ErrorCode, S3Result};

use super::require_integrity_check;
use crate::buckets::BucketInfo;
use crate::request::Request;
use crate::response::Response;
use crate::server::Ctx;

pub async fn put(ctx: &Rc<Ctx>, req: &mut Request<'_>, b: &BucketInfo) -> S3Result<Response> {
    require_integrity_check(req)?;
    let body = req.read_body_to_vec(MAX_CORS_BODY_BYTES).await?;
    let rules = cors::parse_config(&body)?;
    ctx.shared
        .buckets
        .update(&ctx.shards, &b.name, move |info| {
            info.cors = rules.clone();
            Ok(())
        })
        .await?;
    Ok(Response::new(200))
}

pub fn get(b: &BucketInfo) -> S3Result<Response> {
    if b.cors.is_empty() {
        return Err(S3Error::new(S3ErrorCode::NoSuchCORSConfiguration));
    }
    Ok(Response::xml(200, cors::render_config(&b.cors)))
}

pub async fn delete(ctx: &Rc<Ctx>, b: &BucketInfo) -> S3Result<Response> {
    ctx.shared
        .buckets
        .update(&ctx.shards, &b.name, |info| {
            info.cors.clear();
            Ok(())
        })
        .await?;
    Ok(Response::new(204))
}

/// A preflight: needs no credentials (browsers send none), answers only
/// from the bucket's rules. A missing bucket is `NoSuchBucket`... after the
/// request itself is checked, as S3 does.
pub fn preflight(ctx: &Ctx, req: &Request<'_>) -> S3Result<Response> {
    let h = &req.head.headers;
    let bucket = ctx.shared.buckets.get(req.bucket());
    let origin = h.get("origin");
    let method = h.get("access-control-request-method");
    if origin.is_some() && method.is_some() && bucket.is_none() {
        return Err(S3Error::new(S3ErrorCode::NoSuchBucket));
    }
    let rules = bucket.as_ref().map(|b| b.cors.as_slice()).filter(|r| !r.is_empty());
    let m = cors::preflight(rules, origin, method, h.get("access-control-request-headers"))?;
    let mut resp = Response::new(200);
    for (n, v) in m.headers {
        resp.push_header(n, v);
    }
    Ok(resp)
}

/// Adds the CORS headers to the response of an actual request that carries
/// an `Origin` its bucket's rules admit. The method matched is the
/// request's own, or `Access-Control-Request-Method` when a client sends it.
pub fn decorate(ctx: &Ctx, head: &RequestHead, bucket: Option<&str>, resp: &mut Response) {
    let Some(origin) = head.headers.get("origin") else { return };
    let Some(b) = bucket.and_then(|b| ctx.shared.buckets.get(b)) else { return };
    if b.cors.is_empty() || resp.headers.iter().any(|(n, _)| n.eq_ignore_ascii_case("access-control-allow-origin")) {
        return;
    }
    let method = head.headers.get("access-control-request-method").unwrap_or(head.method.as_str());
    if let Some(m) = cors::match_actual(&b.cors, origin, method) {
        for (n, v) in m.headers {
            resp.push_header(n, v);
        }
    }
}
