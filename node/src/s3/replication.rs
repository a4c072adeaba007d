//! Put/Get/DeleteBucketReplication. Parsing and validation live in
//! `tessera_proto::replication`; the queue and the worker in
//! `crate::replication`. As in S3 the bucket must have versioning enabled;
//! each rule's destination must name one of the node's targets
//! (`--replication-target`).

use std::rc::Rc;
use std::sync::Arc;

use ring::rand::{SecureRandom, SystemRandom};
use tessera_proto::replication::{self, MAX_REPLICATION_BODY_BYTES};
use tessera_proto::{S3Error, S3ErrorCode, S3Result};

use crate::buckets::BucketInfo;
use crate::request::Request;
use crate::response::Response;
use crate::server::Ctx;

pub async fn put(ctx: &Rc<Ctx>, req: &mut Request<'_>, b: &BucketInfo) -> S3Result<Response> {
    let body = req.read_body_to_vec(MAX_REPLICATION_BODY_BYTES).await?;
    let rng = SystemRandom::new();
    let mut gen_id = || {
        let mut raw = [0u8; 20];
        // Without randomness the ID is still unique enough for a label.
        let _ = rng.fill(&mut raw);
        tessera_proto::lifecycle::generated_id(&raw)
    };
    let rc = replication::parse_config(&body, &mut gen_id)?;
    crate::replication::check_config(&ctx.shared.config.replication_targets, b, &rc)?;
    let rc = Arc::new(rc);
    ctx.shared
        .buckets
        .update(&ctx.shards, &b.name, move |info| {
            info.replication = Some(rc.clone());
            Ok(())
        })
        .await?;
    Ok(Response::new(200))
}

pub fn get(b: &BucketInfo) -> S3Result<Response> {
    match &b.replication {
        Some(rc) => Ok(Response::xml(200, replication::render_config(rc))),
        None => Err(S3Error::new(S3ErrorCode::ReplicationConfigurationNotFoundError)),
    }
}

pub async fn delete(ctx: &Rc<Ctx>, b: &BucketInfo) -> S3Result<Response> {
    if b.replication.is_some() {
        ctx.shared
            .buckets
            .update(&ctx.shards, &b.name, |info| {
                info.replication = None;
                Ok(())
            })
            .await?;
    }
    Ok(Response::new(204))
}
