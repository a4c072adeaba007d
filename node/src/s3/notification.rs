//! Put/GetBucketNotificationConfiguration. Parsing and validation live in
//! `tessera_proto::notification`; the queue and its delivery in
//! `crate::notify`. A configuration may name only the node's targets
//! (`--notify-webhook`, ARN `arn:tessera:sqs::ID:webhook`); an empty
//! document turns notifications off, as in S3.

use std::rc::Rc;
use std::sync::Arc;

use ring::rand::{SecureRandom, SystemRandom};
use tessera_proto::notification::{self, MAX_NOTIFICATION_BODY_BYTES};
use tessera_proto::S3Result;

use crate::buckets::BucketInfo;
use crate::request::Request;
use crate::response::Response;
use crate::server::Ctx;

pub async fn put(ctx: &Rc<Ctx>, req: &mut Request<'_>, b: &BucketInfo) -> S3Result<Response> {
    let body = req.read_body_to_vec(MAX_NOTIFICATION_BODY_BYTES).await?;
    let targets = &ctx.shared.config.notify_webhooks;
    let known = |arn: &str| targets.iter().any(|t| t.arn() == arn);
    let rng = SystemRandom::new();
    let mut gen_id = || {
        let mut raw = [0u8; 20];
        // Without randomness the Id is still unique enough for a label.
        let _ = rng.fill(&mut raw);
        notification::generated_id(&raw)
    };
    let nc = notification::parse_config(&body, &known, &mut gen_id)?;
    let nc = (!nc.configs.is_empty()).then(|| Arc::new(nc));
    ctx.shared
        .buckets
        .update(&ctx.shards, &b.name, move |info| {
            info.notification = nc.clone();
            Ok(())
        })
        .await?;
    Ok(Response::new(200))
}

pub fn get(b: &BucketInfo) -> S3Result<Response> {
    Ok(Response::xml(200, notification::render_config(b.notification.as_deref())))
}
