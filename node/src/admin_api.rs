//! The admin API beyond `info`: bucket usage, scrub and compaction status,
//! heal status and the configuration in effect (`GET /admin/v1/...` on the
//! admin listener, each authorized by its own `admin:*` action).

use std::sync::atomic::Ordering::Relaxed;

use serde_json::{json, Value};
use tessera_proto::{S3Error, S3ErrorCode};

use crate::meta::{bucket_prefix, ObjectSummary, T_OBJECTS, T_VERSIONS};
use crate::server::Ctx;

pub const BUCKETS_PATH: &str = "/admin/v1/buckets";
pub const SCRUB_PATH: &str = "/admin/v1/scrub";
pub const HEAL_PATH: &str = "/admin/v1/heal";
pub const CONFIG_PATH: &str = "/admin/v1/config";
pub const REPLICATION_PATH: &str = "/admin/v1/replication";
pub const REPLICATION_RESYNC_PATH: &str = "/admin/v1/replication/resync";

/// Index entries one `/admin/v1/buckets` request examines at most, over
/// every bucket and shard: usage is counted by scanning the indexes (no
/// per-bucket counters are kept on the write path), so a large node
/// answers with `"complete": false` beyond it instead of stalling its
/// reactor. `?bucket=NAME` spends the whole bound on one bucket.
pub const MAX_USAGE_SCAN_ENTRIES: usize = 200_000;
/// Entries fetched per index range call of that scan.
const USAGE_PAGE: usize = 1000;

/// Usage of one bucket, as far as the scan got.
#[derive(Default)]
struct Usage {
    objects: u64,
    bytes: u64,
    delete_markers: u64,
    noncurrent_versions: u64,
    noncurrent_bytes: u64,
    complete: bool,
}

/// `GET /admin/v1/buckets[?bucket=NAME]`.
pub async fn buckets(ctx: &Ctx, query: &str) -> Result<Value, S3Error> {
    let only = query.split('&').find_map(|kv| kv.strip_prefix("bucket=")).filter(|b| !b.is_empty());
    let mut list = ctx.shared.buckets.matching(|b| only.is_none_or(|n| b.name == n));
    if let Some(name) = only {
        if list.is_empty() {
            return Err(S3Error::with_message(S3ErrorCode::NoSuchBucket, format!("no bucket {name}")));
        }
    }
    list.sort_by(|a, b| a.name.cmp(&b.name));
    let mut budget = MAX_USAGE_SCAN_ENTRIES;
    let mut out = Vec::with_capacity(list.len());
    for b in &list {
        let u = usage(ctx, b.id, &mut budget).await?;
        out.push(json!({
            "name": b.name,
            "owner": b.owner_id,
            "created_unix_ms": b.created_ms,
            "versioning": format!("{:?}", b.versioning),
            "objects": u.objects,
            "bytes": u.bytes,
            "delete_markers": u.delete_markers,
            "noncurrent_versions": u.noncurrent_versions,
            "noncurrent_bytes": u.noncurrent_bytes,
            "complete": u.complete,
        }));
    }
    Ok(json!({
        "buckets": out,
        "complete": out.iter().all(|b| b["complete"] == true),
        "scan_limit_entries": MAX_USAGE_SCAN_ENTRIES,
        "note": "counted by scanning the indexes; uploads in progress are not counted",
    }))
}

async fn usage(ctx: &Ctx, bucket: u64, budget: &mut usize) -> Result<Usage, S3Error> {
    let prefix = bucket_prefix(bucket);
    let mut u = Usage { complete: true, ..Usage::default() };
    for shard in 0..ctx.shards.count() {
        for table in [T_OBJECTS, T_VERSIONS] {
            let mut after: Option<Vec<u8>> = None;
            loop {
                if *budget == 0 {
                    u.complete = false;
                    return Ok(u);
                }
                let limit = USAGE_PAGE.min(*budget);
                let page = ctx
                    .shards
                    .range(shard, table, prefix.clone(), after.take(), limit)
                    .await
                    .map_err(crate::s3::io_error)?;
                *budget -= page.len();
                for (_, e) in &page {
                    // A summary that does not decode is counted as nothing
                    // (fsck reports it), never as a guess.
                    let Some(s) = ObjectSummary::decode(&e.summary) else { continue };
                    match (table, s.delete_marker) {
                        (_, true) => u.delete_markers += 1,
                        (T_OBJECTS, false) => {
                            u.objects += 1;
                            u.bytes += s.size;
                        }
                        _ => {
                            u.noncurrent_versions += 1;
                            u.noncurrent_bytes += s.size;
                        }
                    }
                }
                if page.len() < limit {
                    break;
                }
                after = page.last().map(|(k, _)| k.clone());
            }
        }
    }
    Ok(u)
}

/// `GET /admin/v1/scrub`: each shard's scrubber and compactor as last
/// published (within `metrics::SHARD_STATS_INTERVAL`).
pub fn scrub(ctx: &Ctx) -> Value {
    let m = &ctx.shared.metrics;
    let shards: Vec<Value> = m
        .shards
        .iter()
        .enumerate()
        .map(|(i, g)| {
            let d = g.detail();
            json!({
                "id": i,
                "disk": m.disk_of(i),
                "state": g.state().name(),
                "scrub": {
                    "passes": d.scrub.passes,
                    "bytes_read": d.scrub.bytes_read,
                    "records_checked": d.scrub.records_checked,
                    "errors": d.scrub.errors,
                    "last_error": d.scrub.last_error,
                    "segment_in_progress": d.scrub.segment,
                    "last_pass_unix_seconds": d.scrub_last_pass_unix,
                },
                "compaction": {
                    "passes": d.compaction.passes,
                    "segments_retired": d.compaction.segments_retired,
                    "entries_moved": d.compaction.entries_moved,
                    "data_bytes_moved": d.compaction.data_bytes_moved,
                    "bytes_freed": d.compaction.bytes_freed,
                    "victims_skipped": d.compaction.victims_skipped,
                    "last_pass_unix_seconds": d.compaction_last_pass_unix,
                },
                "log_resets": d.resets,
                "corrupt_reads": g.corrupt_reads.load(Relaxed),
            })
        })
        .collect();
    json!({ "shards": shards })
}

/// `GET /admin/v1/heal`. Format 2 (erasure sets): `heal_sets`. Format 1
/// keeps one copy of each object on one shard, so there is nothing to
/// rebuild: the answer says so and gives each disk's state (`lanes` stays
/// empty there).
pub fn heal(ctx: &Ctx) -> Value {
    if let Some(l) = &ctx.shared.layout.lanes {
        return heal_sets(l);
    }
    let shared = &ctx.shared;
    let m = &shared.metrics;
    let disks: Vec<Value> = shared
        .config
        .data_dirs
        .iter()
        .map(|dir| {
            let path = dir.display().to_string();
            let mine: Vec<usize> = (0..m.shards.len()).filter(|&i| m.disk_of(i) == path).collect();
            let offline = mine.iter().filter(|&&i| m.shards[i].state() == crate::metrics::ShardState::Offline).count();
            let read_only = mine.iter().filter(|&&i| m.shards[i].read_only.load(Relaxed)).count();
            let state = if !mine.is_empty() && offline == mine.len() {
                "offline"
            } else if offline > 0 {
                "degraded"
            } else if read_only > 0 {
                "read_only"
            } else {
                "online"
            };
            json!({
                "path": path,
                "state": state,
                "shards": mine.len(),
                "offline_shards": offline,
                "read_only_shards": read_only,
                "lanes": [],
            })
        })
        .collect();
    json!({
        "erasure_coding": false,
        "healing": false,
        "message": "no erasure coding on this node: each object has one copy on one shard, so there is nothing to heal; an offline disk's objects answer 503 until it is back",
        "disks": disks,
    })
}

/// `GET /admin/v1/config`: the settings in effect. Listed one by one (not
/// a derived dump) so that a secret added to `Config` later is never shown
/// by accident; paths are shown, never the content of key files.
/// `GET /admin/v1/replication`: the backlog (entries, bytes, age of the
/// oldest) and the outcomes so far, per reactor and in total, the targets,
/// and the buckets that replicate.
pub fn replication(ctx: &Ctx) -> Value {
    let shared = &ctx.shared;
    let mut total = [0u64; 12];
    let mut cores = Vec::new();
    let mut last_errors = Vec::new();
    for i in 0..shared.config.threads {
        let c = shared.metrics.core(i);
        let v = [
            c.repl_pending.load(Relaxed),
            c.repl_pending_bytes.load(Relaxed),
            c.repl_lag_ms.load(Relaxed),
            c.repl_sent.load(Relaxed),
            c.repl_sent_bytes.load(Relaxed),
            c.repl_failed.load(Relaxed),
            c.repl_retries.load(Relaxed),
            c.repl_lag_ms_sum.load(Relaxed),
            c.repl_backfilled.load(Relaxed),
            c.repl_backfill_walking.load(Relaxed),
            c.repl_requeued.load(Relaxed),
            c.repl_failed_retrying.load(Relaxed),
        ];
        for (t, x) in total.iter_mut().zip(v) {
            *t += x;
        }
        let err = c.repl_last_error.lock().unwrap_or_else(|p| p.into_inner()).clone();
        if !err.is_empty() {
            last_errors.push(json!({ "core": i, "error": err }));
        }
        cores.push(json!({ "core": i, "pending_entries": v[0], "pending_bytes": v[1], "oldest_pending_ms": v[2],
            "sent": v[3], "sent_bytes": v[4], "failed": v[5], "retries": v[6] }));
    }
    let oldest = cores.iter().filter_map(|c| c["oldest_pending_ms"].as_u64()).max().unwrap_or(0);
    let buckets: Vec<Value> = shared
        .buckets
        .matching(|b| b.replication.is_some())
        .iter()
        .map(|b| json!({ "name": b.name, "rules": b.replication.as_ref().map_or(0, |r| r.rules.len()) }))
        .collect();
    let targets: Vec<Value> =
        shared.config.replication_targets.iter().map(|t| json!({ "name": t.id, "url": t.url, "region": t.region })).collect();
    json!({
        "pending_entries": total[0],
        "pending_bytes": total[1],
        "oldest_pending_ms": oldest,
        "sent": total[3],
        "sent_bytes": total[4],
        "failed": total[5],
        "retries": total[6],
        "mean_lag_ms": if total[3] > 0 { total[7] / total[3] } else { 0 },
        "backfill": { "queued": total[8], "walking": total[9] },
        "requeued": total[10],
        "failed_retry_scheduled": total[11],
        "last_errors": last_errors,
        "cores": cores,
        "targets": targets,
        "buckets": buckets,
    })
}

pub fn config(ctx: &Ctx) -> Value {
    let c = &ctx.shared.config;
    let path = |p: &Option<std::path::PathBuf>| p.as_ref().map(|p| p.display().to_string());
    json!({
        "address": c.address,
        "admin_address": c.admin_address,
        "threads": c.threads,
        "region": c.region,
        "domains": c.vhost_domains,
        "data_dirs": c.data_dirs.iter().map(|d| d.display().to_string()).collect::<Vec<_>>(),
        "shards_per_disk": c.shards_per_disk,
        "segment_size_bytes": c.segment_size_bytes,
        "sync_mode": if c.dsync { "dsync" } else { "fdatasync" },
        "reserve_bytes": c.reserve_bytes,
        "cache_bytes": c.cache_bytes,
        "cache_max_object_bytes": c.cache_max_object_bytes,
        "max_buckets_per_user": c.max_buckets_per_user,
        "users_file": path(&c.users_file),
        "key_file": path(&c.key_file),
        "kms_keys": c.kms_keys,
        "tls_cert": path(&c.tls_cert),
        "tls_key": path(&c.tls_key),
        "admin_tls_cert": path(&c.admin_tls_cert),
        "admin_tls_key": path(&c.admin_tls_key),
        "min_part_bytes": c.min_part_bytes,
        "lifecycle_day_secs": c.lifecycle_day_secs,
        // Tier secrets are never shown.
        "tiers": c.tiers.iter().map(|t| json!({ "class": t.class, "url": t.remote.url, "bucket": t.bucket, "region": t.remote.region })).collect::<Vec<_>>(),
        "min_session_secs": c.min_session_secs,
        "access_log_interval_ms": u64::try_from(c.access_log_interval.as_millis()).unwrap_or(u64::MAX),
        // The cluster secret is never shown.
        "cluster_address": c.cluster.as_ref().map(|k| k.address.to_string()),
        "cluster_join": c.cluster.as_ref().map(|k| k.join.iter().map(|a| a.to_string()).collect::<Vec<_>>()),
        "version": env!("CARGO_PKG_VERSION"),
    })
}

/// `GET /admin/v1/heal` of a format 2 node: per disk online / offline /
/// healing and its heal's progress (`heal_state::HealProgress::report`).
/// `healed` is true only when every disk is online and none heals: it
/// comes from completed verifying passes, never from rebuilds issued.
fn heal_sets(l: &crate::sets_open::LaneLayout) -> Value {
    let n = l.format.set_disks().max(1);
    let mut healing_any = false;
    let mut offline_any = false;
    let mut below = 0u64;
    let disks: Vec<Value> = l
        .health
        .disks
        .iter()
        .enumerate()
        .map(|(i, d)| {
            let online = l.health.online(i);
            let healing = d.heal.is_healing();
            let state = match (online, healing) {
                (false, _) => "offline",
                (true, true) => "healing",
                (true, false) => "online",
            };
            offline_any |= !online;
            healing_any |= healing && online;
            let report = d.heal.report();
            if healing {
                below += report["below_full_redundancy"]["count"].as_u64().unwrap_or(0);
            }
            json!({
                "path": d.dir.as_ref().map(|p| p.display().to_string()),
                "disk_id": hex::encode(d.id),
                "set": i / n,
                "position": i % n,
                "state": state,
                "lanes_total": l.format.shards_per_disk,
                "lanes_healed": if healing { report["lanes_healed"].clone() } else if online { json!(l.format.shards_per_disk) } else { json!(0) },
                "heal": (healing || d.heal.mark.is_some()).then_some(report),
            })
        })
        .collect();
    let message = if offline_any {
        "disks are offline: objects lack their blocks and records there (below full redundancy) until the disks are back or replaced by empty dirs and healed"
    } else if healing_any {
        "healing: a disk is healed only when a complete pass over each of its lanes has verified every record and block on it"
    } else {
        "every disk is online and whole"
    };
    json!({
        "erasure_coding": true,
        "parity": l.format.parity,
        "write_quorum": l.write_quorum,
        "healing": healing_any,
        "healed": !offline_any && !healing_any,
        "below_full_redundancy": below,
        "message": message,
        "disks": disks,
    })
}
