//! Bucket lifecycle configuration (Put/Get/DeleteBucketLifecycle) and the
//! `x-amz-expiration` header. Parsing, validation and evaluation live in
//! `tessera_proto::lifecycle`; the worker that applies the rules is
//! `crate::lifecycle`.

use std::rc::Rc;
use std::sync::Arc;

use ring::rand::{SecureRandom, SystemRandom};
use tessera_proto::lifecycle::{self, MAX_LIFECYCLE_BODY_BYTES};
use tessera_proto::{S3Error, S3ErrorCode, S3Result};

use super::require_integrity_check;
use crate::buckets::BucketInfo;
use crate::request::Request;
use crate::response::Response;
use crate::server::Ctx;

pub async fn put(ctx: &Rc<Ctx>, req: &mut Request<'_>, b: &BucketInfo) -> S3Result<Response> {
    require_integrity_check(req)?;
    let body = req.read_body_to_vec(MAX_LIFECYCLE_BODY_BYTES).await?;
    let rng = SystemRandom::new();
    let mut gen_id = || {
        let mut raw = [0u8; 20];
        // Without randomness the ID is still unique within the document
        // (the parser refuses duplicates), just less unpredictable.
        let _ = rng.fill(&mut raw);
        lifecycle::generated_id(&raw)
    };
    let lc = Arc::new(lifecycle::parse_config(&body, &mut gen_id)?);
    crate::tier::check_lifecycle(&ctx.shared.config.tiers, &lc)?;
    // A bucket gaining a configuration gets a new stamp: its lifecycle
    // index is backfilled again (nothing was indexed while it had none).
    let mut raw = [0u8; 8];
    rng.fill(&mut raw).map_err(|_| S3Error::new(S3ErrorCode::InternalError))?;
    let stamp = u64::from_be_bytes(raw).max(1);
    ctx.shared
        .buckets
        .update(&ctx.shards, &b.name, move |info| {
            if info.lifecycle.is_none() || info.lifecycle_stamp == 0 {
                info.lifecycle_stamp = stamp;
            }
            info.lifecycle = Some(lc.clone());
            Ok(())
        })
        .await?;
    Ok(Response::new(200))
}

pub fn get(b: &BucketInfo) -> S3Result<Response> {
    let lc = b.lifecycle.as_ref().ok_or_else(|| S3Error::new(S3ErrorCode::NoSuchLifecycleConfiguration))?;
    Ok(Response::xml(200, lifecycle::render_config(lc)))
}

pub async fn delete(ctx: &Rc<Ctx>, b: &BucketInfo) -> S3Result<Response> {
    if b.lifecycle.is_some() {
        ctx.shared
            .buckets
            .update(&ctx.shards, &b.name, |info| {
                info.lifecycle = None;
                info.lifecycle_stamp = 0;
                Ok(())
            })
            .await?;
    }
    Ok(Response::new(204))
}

/// Adds `x-amz-expiration` when an enabled rule will expire this object
/// (a current version: PUT, GET, HEAD).
pub fn push_expiration(resp: &mut Response, b: &BucketInfo, key: &str, tags: &[(String, String)], size: u64, mtime_ms: i64) {
    let Some(lc) = &b.lifecycle else { return };
    if let Some((t, id)) = lc.expiration_of(key, tags, size, mtime_ms) {
        resp.push_header("x-amz-expiration", lifecycle::expiration_header(t, id));
    }
}
