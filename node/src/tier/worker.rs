//! The tiering side of the lifecycle worker (it runs on each reactor's
//! shards, see `lifecycle`): moving a version to its tier, deleting the
//! copies of removed versions, and dropping restored copies that expired.
//!
//! A transition streams the version's body to the tier (a chunk at a
//! time, `read::call_streamed`), with its Content-MD5 when the ETag is the
//! body's MD5 (the tier checks it), and checks that the ETag it answers is
//! the MD5 of the bytes sent, then, under the key's lock, rewrites the record as a stub
//! **only if the version is still the one read** (same id, size, MD5; not
//! transitioned meanwhile); otherwise the copy just written is queued for
//! deletion. A tier that is down leaves the version as it was: the next
//! pass tries again, nothing is lost. Each request to a tier runs on a
//! thread of its own (`read::call`), one connection per request.

use std::rc::Rc;

use base64::Engine as _;
use tessera_io::{Body, Mutation};
use tessera_proto::notification::EventName;
use tessera_proto::time::now_unix_ms;
use tessera_proto::{S3Error, S3Result};

use super::read::{call, call_streamed, same_version, UploadBody};
use super::{find, remote_key, Forget, Pending, RestoreEntry, TierInfo};
use crate::buckets::BucketInfo;
use crate::meta::{object_key, ObjectMeta, ObjectSummary, VersionSel, T_OBJECTS, T_TIER};
use crate::remote_s3::{encode_path, MultipartUpload, Outcome, RemoteRequest};
use crate::s3::{io_error, versions};
use crate::server::Ctx;

/// Queue entries handled per shard and pass.
const PAGE: usize = 64;

fn sel_of(s: &ObjectSummary) -> VersionSel {
    if s.null_version {
        VersionSel::Null
    } else {
        VersionSel::Id(s.version)
    }
}

/// Why a transition did not happen this time.
#[derive(Debug)]
pub enum NotMoved {
    /// The tier is down or refused: try again next pass (and skip the
    /// tier for the rest of this one).
    TierDown(String),
    /// Something else (logged).
    Error(S3Error),
}

impl From<S3Error> for NotMoved {
    fn from(e: S3Error) -> Self {
        NotMoved::Error(e)
    }
}

/// Moves version `s` of `key` (bucket `b`, on this reactor's `shard`) to
/// tier `class`: `Ok(true)` when it is a stub now, `Ok(false)` when there
/// was nothing to do (changed, gone). A version on
/// another tier moves from there (read a piece at a time, or its restored copy),
/// and its copy there is queued for deletion with the switch.
pub async fn transition(ctx: &Rc<Ctx>, b: &BucketInfo, shard: u32, key: &str, s: &ObjectSummary, class: &str) -> Result<bool, NotMoved> {
    let Some(spec) = find(&ctx.shared.config.tiers, class) else {
        return Err(NotMoved::TierDown(format!("no tier {class} is configured (see --tier)")));
    };
    if s.tier_class.as_deref() == Some(class) || s.delete_marker {
        return Ok(false);
    }
    let (bid, k, sel) = (b.id, key.to_string(), sel_of(s));
    let found = ctx
        .shards
        .txn(shard, Vec::new(), move |local| async move { versions::load(&local.shard, bid, &k, Some(sel)).await })
        .await
        .map_err(io_error)??;
    let Some((loc, meta, body)) = found else { return Ok(false) };
    let old = meta.tier.clone();
    if !same_version(&loc.summary, s) || loc.summary.tier_class != s.tier_class || old.as_ref().is_some_and(|t| t.class == class) {
        return Ok(false);
    }
    // An encrypted version goes as its sealed body (the tier never sees
    // plaintext; GETs open it as they read it back).
    let sealed = meta.sse.is_some();
    let len = super::stored_len(&meta, s.size)?;
    let rkey = remote_key(&b.name, key, &s.version, &versions::random8()?[..4]);
    let path = encode_path(&spec.bucket, &rkey);
    let info = TierInfo { class: class.to_string(), remote_bucket: spec.bucket.clone(), remote_key: rkey, restored_until_ms: None };
    // Named before it is written: a crash before the stub's commit leaves
    // this entry, and the worker deletes the copy once its deadline passed.
    let grace = i64::try_from(ctx.shared.config.tier_pending_grace_ms).unwrap_or(i64::MAX);
    let pending = Pending { deadline_ms: now_unix_ms().saturating_add(grace), forget: Forget::of(&info) };
    ctx.shards.commit(shard, vec![pending.put()]).await.map_err(io_error)?;
    let content_type = ("content-type".to_string(), "application/octet-stream".to_string());
    // Over a single PUT's limit: a multipart upload (parts of 64 MiB, more
    // when 10,000 would not do).
    let threshold = ctx.shared.config.tier_multipart_threshold_bytes;
    let multipart = (len > threshold).then(|| MultipartUpload {
        path: path.clone(),
        create_headers: vec![content_type.clone()],
        complete_headers: Vec::new(),
        parts: crate::replication::worker::part_layout(&[], len, threshold),
    });
    let mut headers = vec![content_type];
    if s.parts == 0 && multipart.is_none() && !sealed {
        // The tier checks it.
        headers.push(("content-md5".to_string(), base64::engine::general_purpose::STANDARD.encode(s.md5)));
    }
    let source = match (&old, body) {
        // On another tier (not restored here): read from there a piece at
        // a time.
        (Some(t), _) if t.restored_until_ms.is_none() => UploadBody::Tier { ctx: ctx.clone(), info: t.clone(), size: len },
        // Here: streamed from the disk (found again if compaction moves
        // it meanwhile).
        (_, body) => {
            let source = crate::response::StreamSource {
                bucket: std::sync::Arc::new(b.clone()),
                key: key.to_string(),
                version: s.version,
                null_version: s.null_version,
                size: s.size,
                md5: s.md5,
            };
            // (Read as stored: a sealed body stays sealed.)
            UploadBody::Local(Box::new(crate::sse::stream::PlainReader::new(ctx, shard, body, None, 0..len).reloading(Some(source))))
        }
    };
    let from_tier = matches!(source, UploadBody::Tier { .. });
    let req = RemoteRequest { method: "PUT", path, query: String::new(), headers, body: Vec::new() };
    let sent = async {
        let up = call_streamed(&spec.remote, req, len, source, multipart).await;
        if let Some(e) = up.read_error {
            // The source tier down is as retryable as the destination.
            return Err(if from_tier { NotMoved::TierDown(e) } else { crate::s3::internal(format!("{key}: {e}")).into() });
        }
        match &up.outcome {
            Outcome::Done => {}
            Outcome::Refused(why) | Outcome::Retry(why) => return Err(NotMoved::TierDown(why.clone())),
        }
        let (Some(md5), Some(expected_etag)) = (up.md5, up.expected_etag()) else {
            return Err(NotMoved::TierDown("the tier answered before the whole body was sent".into()));
        };
        if s.parts == 0 && !sealed && md5 != s.md5 {
            return Err(crate::s3::internal(format!("{key}: the body read does not match its ETag")).into());
        }
        // A PUT's ETag is a header; a multipart upload's is in its Complete's XML.
        let etag = up.reply.header("etag").map(str::to_string).or_else(|| crate::remote_s3::xml_text(&up.reply.body, "ETag")).unwrap_or_default();
        let etag = etag.trim().trim_matches('"').trim_start_matches("&quot;").trim_end_matches("&quot;").to_ascii_lowercase();
        if etag != expected_etag {
            return Err(NotMoved::TierDown(format!("the tier answered ETag {etag:?} for {expected_etag}")));
        }
        Ok(())
    };
    if let Err(e) = sent.await {
        // Whatever the tier holds of this attempt is nobody's (a later
        // attempt writes a copy of its own).
        abandon(ctx, shard, &pending).await?;
        return Err(e);
    }
    if ctx.shared.config.test_tier_abort_after_put {
        tracing::error!("--test-tier-abort-after-put: aborting with the copy written and no stub");
        std::process::abort();
    }
    let Some(_hold) = crate::handover::hold(ctx, &b.name, key) else {
        // The key's partition moved to another node meanwhile: the copy
        // is nobody's (the new owner transitions the version itself).
        abandon(ctx, shard, &pending).await?;
        return Ok(false);
    };
    let ev = super::storage_event(ctx, b, key, EventName::LifecycleTransition, None);
    let (k, expected) = (key.to_string(), s.clone());
    let lock = vec![(T_OBJECTS, object_key(bid, key)), (T_TIER, pending.key())];
    let moved = ctx
        .shards
        .txn(shard, lock, move |local| async move {
            if local.shard.get(T_TIER, &pending.key()).is_none() {
                // Past its deadline: the worker took the copy for a
                // crash's leftover (its forget entry deletes it).
                return Ok(false);
            }
            let cur = versions::find(&local.shard, bid, &k, sel)?.filter(|l| same_version(&l.summary, &expected) && l.summary.tier_class == expected.tier_class);
            let stored = match &cur {
                Some(l) => crate::stripes_io::load(&local.shard, l.table, &l.key).await.map_err(io_error)?,
                None => None,
            };
            let (Some(l), Some(stored)) = (cur, stored) else {
                // Changed or removed meanwhile: the copy is nobody's.
                local.commit_in_txn(vec![pending.delete(), Forget::of(&info).mutation()]).await.map_err(io_error)?;
                return Ok(false);
            };
            let mut meta = ObjectMeta::decode(&stored.meta).ok_or_else(|| crate::s3::internal("corrupt object meta"))?;
            if meta.tier.as_ref().map(|t| &t.remote_key) != old.as_ref().map(|t| &t.remote_key) {
                local.commit_in_txn(vec![pending.delete(), Forget::of(&info).mutation()]).await.map_err(io_error)?;
                return Ok(false);
            }
            let mut muts = vec![pending.delete()];
            // A restored copy stays restored (its expiry entry names the version).
            let restored = meta.tier.as_ref().and_then(|t| t.restored_until_ms);
            if let Some(prev) = &meta.tier {
                muts.push(Forget::of(prev).mutation());
            }
            let mut summary = l.summary;
            summary.tier_class = Some(info.class.clone());
            meta.tier = Some(TierInfo { restored_until_ms: restored, ..info });
            let body = if restored.is_some() { stored.body } else { Body::Inline(Vec::new()) };
            if let Some(ev) = &ev {
                muts.extend(ev.mutations(&local.notify, Some(&summary)));
            }
            muts.push(Mutation::Put { table: l.table, key: l.key, summary: summary.encode(), meta: meta.encode(), body });
            local.commit_in_txn(muts).await.map_err(io_error)?;
            if ev.is_some() {
                local.notify.wake.notify_all();
            }
            Ok::<_, S3Error>(true)
        })
        .await
        .map_err(io_error)??;
    Ok(moved)
}

/// Queue work of one of this reactor's shards: copies of removed versions
/// deleted at their tier (an unreachable tier stops that until the next
/// pass; the entry stays), restored copies past their expiry dropped.
pub async fn housekeeping(ctx: &Ctx, shard: u32) {
    if let Err(e) = expire_pending(ctx, shard).await {
        tracing::warn!(shard, "transition attempts past their deadline: {e}; retried next pass");
    }
    if let Err(e) = forget_page(ctx, shard).await {
        tracing::warn!(shard, "deleting copies at a tier: {e}; retried next pass");
    }
    if let Err(e) = expire_restores(ctx, shard).await {
        tracing::warn!(shard, "expiring restored copies: {e}; retried next pass");
    }
}

/// Turns a transition attempt's pending entry into a forget entry (its
/// copy, if any, is nobody's), unless its stub's commit took it first:
/// both hold the entry's lock, so exactly one of them does.
async fn abandon(ctx: &Ctx, shard: u32, p: &Pending) -> Result<(), NotMoved> {
    let p = p.clone();
    ctx.shards
        .txn(shard, vec![(T_TIER, p.key())], move |local| async move {
            if local.shard.get(T_TIER, &p.key()).is_some() {
                local.commit_in_txn(vec![p.delete(), p.forget.mutation()]).await?;
            }
            Ok::<_, tessera_io::IoError>(())
        })
        .await
        .and_then(|r| r)
        .map_err(|e| NotMoved::Error(io_error(e)))
}

/// Pending entries past their deadline: attempts a crash (or a restart)
/// cut short before their stub, whose copies are deleted.
async fn expire_pending(ctx: &Ctx, shard: u32) -> Result<(), String> {
    let page = ctx.shards.range(shard, T_TIER, super::pending_prefix(), None, PAGE).await.map_err(|e| e.to_string())?;
    let now = now_unix_ms();
    for (k, _) in page {
        let deadline_ms = match Pending::deadline_of(&k) {
            Some(d) if d > now => break,
            Some(d) => d,
            None => {
                tracing::error!(shard, "a pending tier entry with a malformed key; kept");
                continue;
            }
        };
        let Some(stored) = ctx.shards.load(shard, T_TIER, k.clone()).await.map_err(|e| e.to_string())? else { continue };
        let Some(forget) = Forget::decode(&stored.meta) else {
            tracing::error!(shard, "a pending tier entry is not a version {} record; kept", super::TIER_ENTRY_V1);
            continue;
        };
        tracing::warn!(class = %forget.class, key = %forget.remote_key, "a transition attempt never finished (a crash?); its copy at the tier is deleted");
        abandon(ctx, shard, &Pending { deadline_ms, forget }).await.map_err(|e| describe(&e))?;
    }
    Ok(())
}

async fn forget_page(ctx: &Ctx, shard: u32) -> Result<(), String> {
    let page = ctx.shards.range(shard, T_TIER, super::forget_prefix(), None, PAGE).await.map_err(|e| e.to_string())?;
    let mut down: Vec<String> = Vec::new();
    for (k, _) in page {
        let Some(stored) = ctx.shards.load(shard, T_TIER, k.clone()).await.map_err(|e| e.to_string())? else { continue };
        let Some(f) = Forget::decode(&stored.meta) else {
            tracing::error!(shard, "a tier queue entry is not a version {} record; kept", super::TIER_ENTRY_V1);
            continue;
        };
        if down.contains(&f.class) {
            continue;
        }
        let Some(spec) = find(&ctx.shared.config.tiers, &f.class) else {
            tracing::warn!(class = %f.class, key = %f.remote_key, "the copy's tier is not configured any more; its deletion waits");
            down.push(f.class);
            continue;
        };
        let req = RemoteRequest { method: "DELETE", path: encode_path(&f.remote_bucket, &f.remote_key), query: String::new(), headers: Vec::new(), body: Vec::new() };
        match call(&spec.remote, req, 1 << 20).await.0 {
            Outcome::Done => {
                ctx.shards.commit(shard, vec![Mutation::Delete { table: T_TIER, key: k }]).await.map_err(|e| e.to_string())?;
            }
            Outcome::Refused(why) | Outcome::Retry(why) => {
                tracing::warn!(class = %f.class, key = %f.remote_key, "deleting the copy at the tier failed: {why}; retried next pass");
                down.push(f.class);
            }
        }
    }
    Ok(())
}

async fn expire_restores(ctx: &Ctx, shard: u32) -> S3Result<()> {
    let page = ctx.shards.range(shard, T_TIER, super::restore_prefix(), None, PAGE).await.map_err(io_error)?;
    let now = now_unix_ms();
    for (k, _) in page {
        let Some(r) = RestoreEntry::parse(&k) else {
            ctx.shards.commit(shard, vec![Mutation::Delete { table: T_TIER, key: k }]).await.map_err(io_error)?;
            continue;
        };
        if r.until_ms > now {
            break;
        }
        let lock = vec![(T_OBJECTS, object_key(r.bucket, &r.key))];
        let ev = ctx
            .shared
            .buckets
            .matching(|b| b.id == r.bucket)
            .first()
            .and_then(|b| super::storage_event(ctx, b, &r.key, EventName::RestoreDelete, None));
        ctx.shards
            .txn(shard, lock, move |local| async move {
                let mut muts = vec![r.delete()];
                if let Some(l) = versions::find(&local.shard, r.bucket, &r.key, r.sel())?.filter(|l| l.summary.version == r.version) {
                    if let Some(stored) = crate::stripes_io::load(&local.shard, l.table, &l.key).await.map_err(io_error)? {
                        let mut meta = ObjectMeta::decode(&stored.meta).ok_or_else(|| crate::s3::internal("corrupt object meta"))?;
                        if let Some(t) = meta.tier.as_mut().filter(|t| t.restored_until_ms == Some(r.until_ms)) {
                            t.restored_until_ms = None;
                            if let Some(ev) = &ev {
                                let summary = ObjectSummary::decode(&stored.summary);
                                muts.extend(ev.mutations(&local.notify, summary.as_ref()));
                            }
                            muts.push(Mutation::Put { table: l.table, key: l.key, summary: stored.summary, meta: meta.encode(), body: Body::Inline(Vec::new()) });
                        }
                    }
                }
                let woke = muts.iter().any(|m| matches!(m, Mutation::Put { table, .. } if *table == crate::meta::T_EVENTS));
                local.commit_in_txn(muts).await.map_err(io_error)?;
                if woke {
                    local.notify.wake.notify_all();
                }
                Ok::<_, S3Error>(())
            })
            .await
            .map_err(io_error)??;
    }
    Ok(())
}

/// The error a pass logs for a transition that failed for another reason
/// than its tier.
pub fn describe(e: &NotMoved) -> String {
    match e {
        NotMoved::TierDown(why) => why.clone(),
        NotMoved::Error(e) => format!("{}: {}", e.code, e.message),
    }
}
