//! DeleteObject and DeleteObjects. Deleting a missing key (or version)
//! succeeds, as in S3. In a versioned bucket a delete without a version id
//! writes a delete marker; with one it removes that version (its object
//! lock permitting).

use std::collections::HashMap;
use std::rc::Rc;

use tessera_io::Mutation;
use tessera_proto::router::MAX_KEY_BYTES;
use tessera_proto::time::now_unix_ms;
use tessera_proto::xml::{self, XmlWriter};
use tessera_proto::{S3Error, S3ErrorCode, S3Result};

use super::versions::{self, NewVersion};
use super::{bypass_governance, io_error, shard_of, write_version};
use crate::buckets::{BucketInfo, Versioning};
use crate::request::Request;
use crate::meta::{object_key, VersionSel, T_OBJECTS};
use crate::notify::{Origin, Pending};
use crate::response::Response;
use tessera_proto::notification::EventName;
use crate::server::Ctx;

/// Keys of one DeleteObjects request deleted at once (each in its own
/// transaction when versions are involved).
pub const MULTI_DELETE_CONCURRENCY: usize = 64;

/// What a delete did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Outcome {
    /// The version id to report: the one removed, or the marker written.
    pub(crate) version: Option<String>,
    /// A delete marker was written, or the version removed was one.
    pub(crate) delete_marker: bool,
}

/// Deletes `keys` of `b` on this node (a peer's share of a DeleteObjects,
/// authorized by the node the client asked: `fanout`).
pub(crate) async fn delete_here(
    ctx: &Ctx,
    b: &BucketInfo,
    keys: &[(String, Option<String>)],
    bypass: bool,
    origin: Option<&Origin>,
) -> Vec<S3Result<Outcome>> {
    let mut out = Vec::with_capacity(keys.len());
    for chunk in keys.chunks(MULTI_DELETE_CONCURRENCY) {
        let runs = chunk.iter().map(|(key, version)| async move {
            let sel = match version.as_deref().map(VersionSel::parse).transpose() {
                Ok(sel) => sel,
                Err(_) => return Err(S3Error::new(S3ErrorCode::NoSuchVersion)),
            };
            // In service for its partition from before its ownership is
            // checked (`handover::Busy`), and moved here first if this
            // node gained it in a layout change.
            let _busy = crate::handover::Busy::for_key(ctx, &b.name, key);
            if !crate::forward::owned_here(ctx, &b.name, key) {
                return Err(S3Error::with_message(S3ErrorCode::ServiceUnavailable, "The cluster's placement is changing; please retry."));
            }
            crate::handover::ensure(ctx, b, key).await?;
            delete_one(ctx, b, key, sel, bypass, origin).await
        });
        out.extend(futures_util::future::join_all(runs).await);
    }
    out
}

pub async fn delete_object(ctx: &Rc<Ctx>, req: &mut Request<'_>, b: &BucketInfo) -> S3Result<Response> {
    let sel = versions::requested(&req.routed.query)?;
    let replica = crate::replication::ReplicaWrite::from_headers(&req.head.headers, b)?;
    let wanted = b.notification.is_some() || b.replication.is_some() || replica.is_some();
    let origin = wanted.then(|| Origin { replica, ..Origin::of(req) });
    let out = delete_one(ctx, b, req.key(), sel, bypass_governance(req), origin.as_ref()).await?;
    let mut resp = Response::new(204);
    if out.delete_marker {
        resp.push_header("x-amz-delete-marker", "true");
    }
    if let Some(v) = out.version {
        resp.push_header("x-amz-version-id", v);
    }
    Ok(resp)
}

/// The event of a delete of `key` (when the bucket's configuration selects it).
fn event(ctx: &Ctx, b: &BucketInfo, key: &str, name: EventName, origin: Option<&Origin>) -> Option<Pending> {
    let c = &ctx.shared.config;
    crate::notify::prepare_with(&c.notify_webhooks, &c.replication_targets, b, key, name, origin?.clone())
}

/// Deletes `key` (version `sel` of it, when given) from bucket `b`;
/// `origin` is the request's, when the bucket has notifications.
async fn delete_one(
    ctx: &Ctx,
    b: &BucketInfo,
    key: &str,
    sel: Option<VersionSel>,
    bypass: bool,
    origin: Option<&Origin>,
) -> S3Result<Outcome> {
    let shard = shard_of(ctx, &b.name, key);
    let Some(sel) = sel else {
        if b.versioning == Versioning::Unversioned {
            delete_many(ctx, b, shard, &[key], origin).await?;
            return Ok(Outcome::default());
        }
        let ev = event(ctx, b, key, EventName::DeleteMarkerCreated, origin);
        let _gate = b.enter_write()?;
        let marker = write_version(ctx, b, shard, key, NewVersion::delete_marker(now_unix_ms()), None, ev).await?;
        return Ok(Outcome { version: Some(marker.version_id()), delete_marker: true });
    };
    let ev = event(ctx, b, key, EventName::Delete, origin);
    let (bid, k) = (b.id, key.to_string());
    let lock = vec![(T_OBJECTS, object_key(bid, key))];
    // A removal can promote a version into T_OBJECTS: it stays inside the
    // gate so DeleteBucket's emptiness check never runs beside it.
    let _gate = b.enter_write()?;
    let removed = ctx
        .shards
        .txn(shard, lock, move |local| async move {
            let Some((mut muts, removed)) = versions::remove(&local.shard, bid, &k, sel, bypass).await? else {
                return Ok(None);
            };
            if let Some(ev) = &ev {
                muts.extend(ev.mutations(&local.notify, Some(&removed)));
            }
            local.commit_in_txn(muts).await.map_err(io_error)?;
            if ev.is_some() {
                local.notify.wake.notify_all();
            }
            Ok::<_, S3Error>(Some(removed))
        })
        .await
        .map_err(io_error)??;
    Ok(Outcome { version: Some(sel.render()), delete_marker: removed.is_some_and(|s| s.delete_marker) })
}

pub async fn delete_objects(ctx: &Rc<Ctx>, req: &mut Request<'_>, b: &BucketInfo) -> S3Result<Response> {
    let body = req.read_body_to_vec(xml::MAX_XML_BODY_BYTES).await?;
    let del = xml::parse_delete(&body)?;
    let bypass = bypass_governance(req);
    let origin = (b.notification.is_some() || b.replication.is_some()).then(|| Origin::of(req));
    let origin = origin.as_ref();
    let mut results: Vec<S3Result<Outcome>> = Vec::with_capacity(del.objects.len());
    let mut todo: Vec<(usize, Option<VersionSel>)> = Vec::new();
    for (i, (key, version)) in del.objects.iter().enumerate() {
        let sel = version.as_deref().map(VersionSel::parse).transpose();
        results.push(match sel {
            _ if key.len() > MAX_KEY_BYTES => Err(S3Error::new(S3ErrorCode::KeyTooLongError)),
            // Each key is authorized on its own (DeleteObjects has no action of its own).
            _ if !crate::authz::allowed_key(req, b, key, version.is_some()) => Err(S3Error::new(S3ErrorCode::AccessDenied)),
            Err(_) => Err(S3Error::new(S3ErrorCode::NoSuchVersion)),
            Ok(sel) => {
                todo.push((i, sel));
                Ok(Outcome::default())
            }
        });
    }
    // In a cluster, keys another node owns are deleted there (`fanout`).
    let todo = crate::fanout::delete_elsewhere(ctx, b, &del.objects, todo, &mut results, bypass, origin).await;
    let plain = b.versioning == Versioning::Unversioned && todo.iter().all(|(_, s)| s.is_none());
    if plain {
        delete_grouped(ctx, b, &del.objects, &todo, &mut results, origin).await;
    } else {
        for chunk in todo.chunks(MULTI_DELETE_CONCURRENCY) {
            let runs = chunk.iter().map(|&(i, sel)| {
                let key = del.objects[i].0.as_str();
                async move { (i, delete_one(ctx, b, key, sel, bypass, origin).await) }
            });
            for (i, r) in futures_util::future::join_all(runs).await {
                results[i] = r;
            }
        }
    }
    let mut w = XmlWriter::new().root("DeleteResult");
    for ((key, version), result) in del.objects.iter().zip(results) {
        match result {
            Ok(_) if del.quiet => {}
            Ok(out) => {
                w.open("Deleted").elem("Key", key).elem_opt("VersionId", version.as_deref());
                if out.delete_marker {
                    w.elem("DeleteMarker", "true");
                    w.elem_opt("DeleteMarkerVersionId", out.version.as_deref());
                }
                w.close("Deleted");
            }
            Err(e) => {
                w.open("Error").elem("Key", key).elem_opt("VersionId", version.as_deref());
                w.elem("Code", e.code.as_str()).elem("Message", &e.message).close("Error");
            }
        }
    }
    w.close("DeleteResult");
    Ok(Response::xml(200, w.finish()))
}

/// Unversioned bucket, no version ids: every key that exists, grouped by
/// shard, one commit (one sync) per shard, the shards' commits in parallel.
async fn delete_grouped(
    ctx: &Ctx,
    b: &BucketInfo,
    objects: &[(String, Option<String>)],
    todo: &[(usize, Option<VersionSel>)],
    results: &mut [S3Result<Outcome>],
    origin: Option<&Origin>,
) {
    let mut by_shard: HashMap<u32, Vec<usize>> = HashMap::new();
    for &(i, _) in todo {
        by_shard.entry(shard_of(ctx, &b.name, &objects[i].0)).or_default().push(i);
    }
    let commits = by_shard.into_iter().map(|(shard, idx)| {
        let keys: Vec<&str> = idx.iter().map(|&i| objects[i].0.as_str()).collect();
        async move { (idx, delete_many(ctx, b, shard, &keys, origin).await) }
    });
    for (idx, r) in futures_util::future::join_all(commits).await {
        if let Err(e) = r {
            for i in idx {
                results[i] = Err(e.clone());
            }
        }
    }
}

/// Deletes `keys` (all of one shard, unversioned bucket) in one commit;
/// keys that do not exist add nothing to it. With events, one transaction
/// holding the keys' locks checks which exist and commits their removal
/// and their events together.
async fn delete_many(ctx: &Ctx, b: &BucketInfo, shard: u32, keys: &[&str], origin: Option<&Origin>) -> S3Result<()> {
    let evs: Vec<(Vec<u8>, Pending)> = keys
        .iter()
        .filter_map(|k| event(ctx, b, k, EventName::Delete, origin).map(|e| (object_key(b.id, k), e)))
        .collect();
    if !evs.is_empty() {
        let plain: Vec<Vec<u8>> =
            keys.iter().map(|k| object_key(b.id, k)).filter(|k| !evs.iter().any(|(e, _)| e == k)).collect();
        let locks = keys.iter().map(|k| (T_OBJECTS, object_key(b.id, k))).collect();
        return ctx
            .shards
            .txn(shard, locks, move |local| async move {
                let mut muts = Vec::new();
                for k in plain {
                    if let Some(cur) = local.shard.get(T_OBJECTS, &k) {
                        if let Some(s) = crate::meta::ObjectSummary::decode(&cur.summary) {
                            muts.extend(crate::tier::forget_mutation(&local.shard, T_OBJECTS, &k, &s).await?);
                        }
                        muts.push(Mutation::Delete { table: T_OBJECTS, key: k });
                    }
                }
                let mut events = 0;
                for (k, ev) in &evs {
                    let Some(cur) = local.shard.get(T_OBJECTS, k) else { continue };
                    let summary = crate::meta::ObjectSummary::decode(&cur.summary);
                    if let Some(s) = &summary {
                        muts.extend(crate::tier::forget_mutation(&local.shard, T_OBJECTS, k, s).await?);
                    }
                    muts.push(Mutation::Delete { table: T_OBJECTS, key: k.clone() });
                    muts.extend(ev.mutations(&local.notify, summary.as_ref()));
                    events += 1;
                }
                if muts.is_empty() {
                    return Ok(());
                }
                local.commit_in_txn(muts).await.map_err(io_error)?;
                if events > 0 {
                    local.notify.wake.notify_all();
                }
                Ok(())
            })
            .await
            .map_err(io_error)?;
    }
    let mut muts = Vec::new();
    for key in keys {
        let k = object_key(b.id, key);
        if let Some(cur) = ctx.shards.get(shard, T_OBJECTS, k.clone()).await.map_err(io_error)? {
            // A transitioned version's copy at its tier goes with it: the
            // forget entry names that version's copy only, so it is right
            // even if a racing write replaced the version meanwhile.
            if crate::meta::ObjectSummary::decode(&cur.summary).is_some_and(|s| s.tiered()) {
                let stored = ctx.shards.load(shard, T_OBJECTS, k.clone()).await.map_err(io_error)?;
                let tier = stored.and_then(|st| crate::meta::ObjectMeta::decode(&st.meta)).and_then(|m| m.tier);
                muts.extend(tier.map(|t| crate::tier::Forget::of(&t).mutation()));
            }
            muts.push(Mutation::Delete { table: T_OBJECTS, key: k });
        }
    }
    if muts.is_empty() {
        return Ok(());
    }
    ctx.shards.commit(shard, muts).await.map_err(io_error)?;
    Ok(())
}
