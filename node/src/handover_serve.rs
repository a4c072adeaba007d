//! The old owner's side of a move (`handover`): the export, read, drop
//! and list calls (RPC methods 44-47), each answered once this node
//! applied the caller's layout and, for an export or drop, once the
//! key's partition has no request in service here. A call of wire
//! version 2 (`handover::VERSION_FOSTER`) asks this node as the one acting
//! for the key's previous owner (down, or fenced): it answers from its
//! foster lanes of that owner, and waits for the requests it serves for
//! that owner alone.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tessera_io::{Body, Mutation};

use crate::buckets::BucketInfo;
use crate::cluster::ClusterNode;
use crate::handover::{
    DropCall, Export, KeyCall, ListAnswer, ListCall, ReadCall, Row, RowBody, DRAIN_WAIT, EXPORT_INLINE_BYTES, LIST_KEYS,
    LIST_SCAN, MAX_ROWS, PAGE_BYTES, PIECE_BYTES, VERSION, VERSION_FOSTER,
};
use crate::meta::{object_key, parse_version_key, split_upload_key, versions_prefix, ObjectMeta, UploadInfo, T_OBJECTS, T_PARTS, T_UPLOADS, T_VERSIONS};
use crate::owners::{NodeRecord, Owners};
use crate::server::Ctx;

/// This node and its placement, for a call of wire version `v` made at
/// layout version `layout`: refused unless this node applied it too.
fn applied(ctx: &Ctx, v: u8, layout: u64) -> Result<(&Arc<ClusterNode>, Arc<Owners>), String> {
    if v != VERSION && v != VERSION_FOSTER {
        return Err("a move call of another version".into());
    }
    let node = ctx.shared.cluster.as_ref().ok_or("not in a cluster")?;
    let owners = node.owners.load_full().ok_or("no layout here yet")?;
    if owners.layout.version < layout {
        return Err(format!("layout {layout} not applied here yet"));
    }
    Ok((node, owners))
}

/// Refuses unless this node acts for lane owner `from` (not itself) and
/// may serve it now (its lease held, not stale for it, its foster lanes
/// open: `takeover::ready`), as a request for `from`'s keys would be.
fn foster_of(node: &ClusterNode, owners: &Owners, from: &NodeRecord) -> Result<(), String> {
    if !owners.fosters(node.id_str(), &from.id) {
        return Err("this node does not act for the key's previous owner".into());
    }
    if !crate::takeover::ready(node, owners, &from.id) {
        return Err("this node cannot serve the previous owner's keys now (no lease, or its foster lanes are not open yet)".into());
    }
    Ok(())
}

/// The foster shard of the previous owner of `(bucket, key)`'s partition
/// when this node acts for that owner and is not it (`VERSION_FOSTER`).
fn foster_source(node: &ClusterNode, owners: &Owners, bucket: &str, key: &str) -> Result<u32, String> {
    let p = crate::layout::partition_of(bucket, key);
    let from = owners.prev_owner_of(p).ok_or("the key's partition does not move")?;
    foster_of(node, owners, from)?;
    crate::takeover::foster_shard_of(owners, from, p).ok_or_else(|| "the previous owner's record has no shard count".into())
}

/// The bucket a call names and the shard holding the key's rows here,
/// once this node has applied the caller's layout, does not own the key
/// (or, `VERSION_FOSTER`, acts for its previous owner: the rows are in
/// that owner's foster lanes here), and (`drain`) serves no request of
/// its partition (of that owner's). `Ok(None)`: the bucket is gone here
/// (nothing to move).
async fn handing_over(ctx: &Ctx, kc: &KeyCall, drain: bool) -> Result<Option<(Arc<BucketInfo>, u32)>, String> {
    let (node, owners) = applied(ctx, kc.v, kc.layout)?;
    let foster = kc.v == VERSION_FOSTER;
    let shard = if foster {
        foster_source(node, &owners, &kc.bucket, &kc.key)?
    } else {
        // With lanes, a node another node acts for has fenced shards that may
        // lack acknowledged writes: its keys move from the acting node.
        if owners.taken_over(node.id_str()) {
            return Err("another node acts for this node's partitions; its keys move from that node".into());
        }
        if crate::forward::owned_here(ctx, &kc.bucket, &kc.key) {
            return Err("this node owns the key".into());
        }
        crate::s3::shard_of(ctx, &kc.bucket, &kc.key)
    };
    let Some(b) = ctx.shared.buckets.get(&kc.bucket).filter(|b| b.id == kc.bucket_id) else { return Ok(None) };
    if drain {
        let p = crate::layout::partition_of(&kc.bucket, &kc.key) as usize % node.busy.len();
        let busy = if foster { &node.busy_foster } else { &node.busy };
        let start = Instant::now();
        while busy[p].load(Ordering::SeqCst) > 0 {
            if start.elapsed() > DRAIN_WAIT {
                return Err("requests for the key's partition are still in service here".into());
            }
            monoio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    Ok(Some((b, shard)))
}

/// Whether `rest`, what follows `object_key \0` in a row key, is an
/// upload of that key (`upload id`) or a part of one (`upload id \0
/// number`): upload ids are hex, so a NUL in them is another key's (one
/// whose name goes on past the NUL).
fn upload_rest(table: u8, rest: &[u8]) -> bool {
    match table {
        T_UPLOADS => !rest.is_empty() && !rest.contains(&0),
        T_PARTS => match rest.iter().position(|&c| c == 0) {
            Some(i) => i > 0 && rest.len() - i - 1 == 4,
            None => false,
        },
        _ => false,
    }
}

/// Whether row `k` of `table` is one of `key`'s (bucket `bucket`).
fn belongs(table: u8, k: &[u8], bucket: u64, key: &str) -> bool {
    let okey = object_key(bucket, key);
    match table {
        T_OBJECTS => k == okey.as_slice(),
        T_VERSIONS => k.starts_with(&versions_prefix(bucket, key)),
        T_UPLOADS | T_PARTS => k.len() > okey.len() && k.starts_with(&okey) && k[okey.len()] == 0 && upload_rest(table, &k[okey.len() + 1..]),
        _ => false,
    }
}

/// The keys of the first `limit` rows `key` of bucket `bucket` has on
/// `shard`: its current version, its versions, its parts, its uploads.
fn rows_of(shard: &tessera_io::Shard, bucket: u64, key: &str, limit: usize) -> Vec<(u8, Vec<u8>)> {
    let mut out = Vec::new();
    let okey = object_key(bucket, key);
    if shard.get(T_OBJECTS, &okey).is_some() {
        out.push((T_OBJECTS, okey.clone()));
    }
    let mut uprefix = okey;
    uprefix.push(0);
    for (table, prefix) in [(T_VERSIONS, versions_prefix(bucket, key)), (T_PARTS, uprefix.clone()), (T_UPLOADS, uprefix)] {
        let mut after: Option<Vec<u8>> = None;
        while out.len() < limit {
            let batch = shard.range(table, &prefix, after.as_deref(), 1000);
            let done = batch.len() < 1000;
            for (k, _) in batch {
                if out.len() < limit && (table == T_VERSIONS || upload_rest(table, &k[prefix.len()..])) {
                    out.push((table, k.clone()));
                }
                after = Some(k);
            }
            if done {
                break;
            }
        }
    }
    out
}

/// The opened data key of an SSE-S3/SSE-KMS row, hex.
fn opened_key(ctx: &Ctx, table: u8, summary: &[u8], meta: &[u8]) -> Result<Option<String>, String> {
    let info = match table {
        T_OBJECTS | T_VERSIONS => ObjectMeta::decode(meta).ok_or("a corrupt object meta")?.sse,
        T_UPLOADS => UploadInfo::decode(summary).ok_or("a corrupt upload record")?.meta.sse,
        _ => None,
    };
    match info {
        Some(i) if !matches!(i.mode, crate::sse::SseMode::Customer { .. }) => {
            let dk = crate::sse::open(&*ctx.shared.kms, Some(&i), None).map_err(|e| e.message)?;
            Ok(dk.map(|k| hex::encode(k.bytes())))
        }
        _ => Ok(None),
    }
}

pub(crate) async fn serve_export(ctx: &Ctx, payload: &[u8]) -> Result<Vec<u8>, String> {
    let kc: KeyCall = serde_json::from_slice(payload).map_err(|e| format!("a malformed export call: {e}"))?;
    let Some((b, shard)) = handing_over(ctx, &kc, true).await? else { return Ok(b"[]".to_vec()) };
    let (bid, key, page) = (b.id, kc.key.clone(), kc.page);
    let lock = vec![(T_OBJECTS, object_key(bid, &key))];
    let stored = ctx
        .shards
        .txn(shard, lock, move |local| async move {
            let limit = page.map_or(MAX_ROWS + 1, |n| n.max(1) as usize);
            let found = rows_of(&local.shard, bid, &key, limit);
            if page.is_none() && found.len() > MAX_ROWS {
                return Err(format!("the key has more than {MAX_ROWS} rows to move"));
            }
            // A full page may have rows after it (a caller that pages asks
            // again only then).
            let mut more = page.is_some() && found.len() == limit;
            let mut out = Vec::new();
            let mut size = 0;
            for (table, k) in found {
                if page.is_some() && size >= PAGE_BYTES {
                    more = true;
                    break;
                }
                let s = crate::stripes_io::load(&local.shard, table, &k).await.map_err(|e| e.to_string())?;
                if let Some(s) = s {
                    size += k.len() + s.summary.len() + s.meta.len();
                    if let Body::Inline(d) = &s.body {
                        size += d.len().min(EXPORT_INLINE_BYTES + 1);
                    }
                    out.push((table, k, s));
                }
            }
            Ok::<_, String>((out, more))
        })
        .await
        .map_err(|e| e.to_string())??;
    let (stored, more) = stored;
    let mut rows = Vec::with_capacity(stored.len());
    for (table, k, s) in stored {
        let body = match &s.body {
            Body::Inline(d) if d.len() <= EXPORT_INLINE_BYTES => RowBody::Inline(hex::encode(d)),
            Body::Inline(d) => RowBody::Read { len: d.len() as u64, inline: true },
            Body::Extents(e) => RowBody::Read { len: e.iter().map(|x| x.len).sum(), inline: false },
        };
        let dk = opened_key(ctx, table, &s.summary, &s.meta)?;
        rows.push(Row { table, key: hex::encode(&k), summary: hex::encode(&s.summary), meta: hex::encode(&s.meta), body, dk });
    }
    let answer = match kc.page {
        Some(_) => Export::Page { rows, more },
        None => Export::All(rows),
    };
    Ok(serde_json::to_vec(&answer).expect("rows serialize"))
}

pub(crate) async fn serve_read(ctx: &Ctx, payload: &[u8]) -> Result<Vec<u8>, String> {
    let rc: ReadCall = serde_json::from_slice(payload).map_err(|e| format!("a malformed read call: {e}"))?;
    if rc.start > rc.end || rc.end - rc.start > PIECE_BYTES {
        return Err("a read over the limit".into());
    }
    let (_, shard) = handing_over(ctx, &rc.call, false).await?.ok_or("the bucket is gone")?;
    let row = hex::decode(&rc.row).map_err(|_| "a malformed row key")?;
    let table = rc.table;
    let s = ctx
        .shards
        .txn(shard, Vec::new(), move |local| async move { crate::stripes_io::load(&local.shard, table, &row).await })
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?
        .ok_or("the row is gone")?;
    crate::sse::stream::read_stored(ctx, shard, &s.body, rc.start..rc.end).await.map_err(|e| e.to_string())
}

pub(crate) async fn serve_drop(ctx: &Ctx, payload: &[u8]) -> Result<Vec<u8>, String> {
    let dc: DropCall = serde_json::from_slice(payload).map_err(|e| format!("a malformed drop call: {e}"))?;
    let Some((b, shard)) = handing_over(ctx, &dc.call, true).await? else { return Ok(b"0".to_vec()) };
    let mut rows = Vec::with_capacity(dc.rows.len());
    for (table, k) in &dc.rows {
        rows.push((*table, hex::decode(k).map_err(|_| "a malformed row key")?));
    }
    // Only rows of the key named (a caller cannot drop another key's).
    let (bid, key) = (b.id, dc.call.key.clone());
    let lock = vec![(T_OBJECTS, object_key(bid, &key))];
    let n = ctx
        .shards
        .txn(shard, lock, move |local| async move {
            let muts: Vec<Mutation> = rows
                .into_iter()
                .filter(|(table, k)| belongs(*table, k, bid, &key) && local.shard.get(*table, k).is_some())
                .map(|(table, key)| Mutation::Delete { table, key })
                .collect();
            let n = muts.len();
            if n > 0 {
                local.commit_in_txn(muts).await.map_err(|e| e.to_string())?;
            }
            Ok::<_, String>(n)
        })
        .await
        .map_err(|e| e.to_string())??;
    Ok(n.to_string().into_bytes())
}

/// The bucket and object key of an index row of `table`.
fn key_of_row(table: u8, k: &[u8]) -> Option<(u64, Vec<u8>)> {
    let bucket = u64::from_be_bytes(k.get(..8)?.try_into().ok()?);
    match table {
        T_OBJECTS => Some((bucket, k[8..].to_vec())),
        T_VERSIONS => parse_version_key(k).map(|(b, key, _)| (b, key)),
        T_UPLOADS => split_upload_key(&k[8..]).map(|(key, _)| (bucket, key.to_vec())),
        _ => None,
    }
}

const LIST_TABLES: [u8; 3] = [T_OBJECTS, T_VERSIONS, T_UPLOADS];

pub(crate) async fn serve_list(ctx: &Ctx, payload: &[u8]) -> Result<Vec<u8>, String> {
    let lc: ListCall = serde_json::from_slice(payload).map_err(|e| format!("a malformed list call: {e}"))?;
    let (node, owners) = applied(ctx, lc.v, lc.layout)?;
    // The shards listed: this node's own, or (`VERSION_FOSTER`) its
    // foster shards of the one previous owner named; the cursor counts
    // in them.
    let ids: Vec<u32> = if lc.v == VERSION_FOSTER {
        let from = lc.from.as_deref().and_then(|f| owners.nodes.get(f)).ok_or("a foster list call names no known previous owner")?;
        foster_of(node, &owners, from)?;
        crate::takeover::foster_shards_of(&owners, from).ok_or("the previous owner's record has no shard count")?
    } else {
        // Fenced shards may lack acknowledged writes: the keys are listed
        // by the node acting for this one.
        if owners.taken_over(node.id_str()) {
            return Err("another node acts for this node's partitions; its keys are listed there".into());
        }
        (0..ctx.shards.count()).collect()
    };
    let (mut shard, mut ti, mut after) = match &lc.after {
        Some((s, t, k)) => (*s, LIST_TABLES.iter().position(|x| x == t).ok_or("a malformed cursor")?, Some(hex::decode(k).map_err(|_| "a malformed cursor")?)),
        None => (0, 0, None),
    };
    let mut keys: Vec<(String, u64, String)> = Vec::new();
    let mut names: std::collections::HashMap<u64, Option<String>> = Default::default();
    let mut scanned = 0;
    while let Some(&id) = ids.get(shard as usize) {
        let table = LIST_TABLES[ti];
        let batch = ctx.shards.range(id, table, Vec::new(), after.clone(), 1000).await.map_err(|e| e.to_string())?;
        let done = batch.len() < 1000;
        for (k, _) in batch {
            scanned += 1;
            if let Some((bid, key)) = key_of_row(table, &k) {
                let name = names
                    .entry(bid)
                    .or_insert_with(|| ctx.shared.buckets.matching(|b| b.id == bid).first().map(|b| b.name.clone()))
                    .clone();
                if let (Some(name), Ok(key)) = (name, String::from_utf8(key)) {
                    let p = crate::layout::partition_of(&name, &key);
                    let theirs = owners.owner_of(p).is_some_and(|o| o.id == lc.for_node);
                    if theirs && keys.last().is_none_or(|l| l.1 != bid || l.2 != key) {
                        keys.push((name, bid, key));
                    }
                }
            }
            after = Some(k);
        }
        if !done {
            if keys.len() >= LIST_KEYS as usize || scanned >= LIST_SCAN {
                let next = after.as_ref().map(|a| (shard, table, hex::encode(a)));
                return Ok(serde_json::to_vec(&ListAnswer { keys, next }).expect("serializes"));
            }
            continue;
        }
        after = None;
        ti += 1;
        if ti == LIST_TABLES.len() {
            ti = 0;
            shard += 1;
        }
        if keys.len() >= LIST_KEYS as usize || scanned >= LIST_SCAN {
            let next = ((shard as usize) < ids.len()).then(|| (shard, LIST_TABLES[ti], String::new()));
            return Ok(serde_json::to_vec(&ListAnswer { keys, next }).expect("serializes"));
        }
    }
    Ok(serde_json::to_vec(&ListAnswer { keys, next: None }).expect("serializes"))
}

#[cfg(test)]
mod tests {
    use tessera_io::{Shard, ShardOptions};

    use super::*;
    use crate::meta::{part_key, upload_key, version_key, VersionId};

    fn put(table: u8, key: Vec<u8>) -> Mutation {
        Mutation::Put { table, key, summary: vec![1], meta: Vec::new(), body: Body::Inline(Vec::new()) }
    }

    #[test]
    fn a_keys_rows_are_its_own_and_no_neighbours() {
        let dir = tempfile::tempdir().expect("tempdir");
        monoio::RuntimeBuilder::<monoio::FusionDriver>::new().enable_timer().build().expect("runtime").block_on(async {
            let shard = Shard::open(dir.path(), 0, ShardOptions::default()).await.expect("open");
            let v = |n: u8| VersionId::from_parts(u64::from(n), [n; 8]);
            let mut muts = Vec::new();
            // The key, and keys that share its bytes as a prefix, in another
            // bucket, or sort right after it.
            for (bucket, key) in [(1, "a"), (1, "a\u{1}"), (1, "ab"), (2, "a"), (1, "a/b")] {
                muts.push(put(T_OBJECTS, object_key(bucket, key)));
                muts.push(put(T_VERSIONS, version_key(bucket, key, &v(1))));
                muts.push(put(T_VERSIONS, version_key(bucket, key, &v(2))));
                muts.push(put(T_UPLOADS, upload_key(bucket, key, "00ff")));
                muts.push(put(T_PARTS, part_key(bucket, key, "00ff", 1)));
                muts.push(put(T_PARTS, part_key(bucket, key, "00ff", 2)));
            }
            shard.commit(muts).await.expect("commit");
            let rows = rows_of(&shard, 1, "a", usize::MAX);
            let mut want = vec![
                (T_OBJECTS, object_key(1, "a")),
                (T_VERSIONS, version_key(1, "a", &v(2))),
                (T_VERSIONS, version_key(1, "a", &v(1))),
                (T_PARTS, part_key(1, "a", "00ff", 1)),
                (T_PARTS, part_key(1, "a", "00ff", 2)),
                (T_UPLOADS, upload_key(1, "a", "00ff")),
            ];
            let mut got = rows.clone();
            got.sort();
            want.sort();
            assert_eq!(got, want);
            // Each row names its key back (what the list call filters on).
            for (table, k) in rows.iter().filter(|(t, _)| *t != T_PARTS) {
                assert_eq!(key_of_row(*table, k), Some((1, b"a".to_vec())), "table {table}");
            }
            assert!(rows_of(&shard, 1, "none", usize::MAX).is_empty());
            // What a drop call accepts: the key's rows, no neighbour's.
            for (table, k) in &rows {
                assert!(belongs(*table, k, 1, "a"), "table {table}");
            }
            for (bucket, key) in [(1, "a\u{1}"), (1, "ab"), (2, "a"), (1, "a/b")] {
                for (table, k) in rows_of(&shard, bucket, key, usize::MAX) {
                    assert!(!belongs(table, &k, 1, "a"), "{bucket} {key:?} table {table}");
                    assert!(belongs(table, &k, bucket, key), "{bucket} {key:?} table {table}");
                }
            }

            // Paged as the move pages it: a page taken, dropped, the next
            // asked for, until none is left; every row comes exactly once.
            let mut paged = Vec::new();
            loop {
                let page = rows_of(&shard, 1, "a", 4);
                assert!(page.len() <= 4);
                if page.is_empty() {
                    break;
                }
                shard
                    .commit(page.iter().map(|(table, key)| Mutation::Delete { table: *table, key: key.clone() }).collect())
                    .await
                    .expect("drop");
                paged.extend(page);
            }
            paged.sort();
            assert_eq!(paged, want);
            assert_eq!(rows_of(&shard, 1, "ab", usize::MAX).len(), 6, "a neighbour's rows stay");
        });
    }
}
