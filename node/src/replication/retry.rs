//! FAILED is not final for ever: a version the remote refused (a 4xx: no
//! such bucket, versioning off, access denied...) gets a retry record in
//! `T_REPLSTATE`, committed with its FAILED status, and is queued again
//! when the record is due, with a backoff growing fourfold from
//! `--test-replication-failed-retry-ms` (60 s) to `MAX_DELAY_MS` (6 h), at
//! most `MAX_ATTEMPTS` times; after that only a resync queues it. A
//! destination fixed by its operator is caught up without anyone here
//! acting. Versions FAILED for a reason of their own (SSE-C,
//! tiered) are not retried: sending them again cannot work.
//!
//! FORMAT BOUNDARY: key `F ++ due ms (u64 BE) ++ queue key` (the target
//! and the entry's event id), summary `[RETRY_V1, attempts so far]`, meta
//! the queue record. A queue entry's summary carries the attempt count
//! after the byte count (absent: 0).

use std::rc::Rc;
use std::sync::atomic::Ordering::Relaxed;

use tessera_io::{Body, Mutation};
use tessera_proto::time::now_unix_ms;

use super::{Record, REPL_RECORD_V1};
use crate::meta::{object_key, ReplStatus, T_OBJECTS, T_REPLICATION, T_REPLSTATE};
use crate::server::Ctx;
use crate::shards::LocalShard;

const RETRY_V1: u8 = 1;
const KIND_RETRY: u8 = b'F';
/// Automatic attempts after the first failure.
pub const MAX_ATTEMPTS: u8 = 8;
/// Longest wait between two attempts.
const MAX_DELAY_MS: u64 = 6 * 3600 * 1000;
/// Due records handled per shard and pass.
const PAGE: usize = 64;
/// How long after a failed sweep of moved keys' retry records the next
/// one is made (each record costs a read, and an unreachable owner a
/// call's timeout).
const RESWEEP_AFTER: std::time::Duration = std::time::Duration::from_secs(10);

/// A queue entry's summary: the record version, the bytes it will send,
/// the automatic attempts made so far.
pub fn entry_summary(size: u64, attempts: u8) -> Vec<u8> {
    let mut s = vec![REPL_RECORD_V1];
    s.extend_from_slice(&size.to_be_bytes());
    if attempts > 0 {
        s.push(attempts);
    }
    s
}

/// The attempts an entry's summary records.
pub fn attempts_of(summary: &[u8]) -> u8 {
    summary.get(9).copied().unwrap_or(0)
}

/// The wait before automatic attempt `attempt` (1-based).
pub fn delay_ms(base_ms: u64, attempt: u8) -> u64 {
    base_ms.saturating_mul(1u64 << (2 * u32::from(attempt.saturating_sub(1)).min(20))).min(MAX_DELAY_MS)
}

/// The retry record of a refused entry (`queue_key`, `rec`, after
/// `attempts` automatic attempts), or `None` when they are used up.
pub fn schedule(base_ms: u64, queue_key: &[u8], rec: &Record, attempts: u8) -> Option<Mutation> {
    if attempts >= MAX_ATTEMPTS {
        return None;
    }
    let due = (now_unix_ms().max(0) as u64).saturating_add(delay_ms(base_ms, attempts + 1));
    let mut key = vec![KIND_RETRY];
    key.extend_from_slice(&due.to_be_bytes());
    key.extend_from_slice(queue_key);
    Some(Mutation::Put { table: T_REPLSTATE, key, summary: vec![RETRY_V1, attempts + 1], meta: rec.encode(), body: Body::Inline(Vec::new()) })
}

/// Retry records waiting on `l` (at most `limit` counted).
pub fn waiting(l: &LocalShard, limit: usize) -> usize {
    l.shard.range(T_REPLSTATE, &[KIND_RETRY], None, limit).len()
}

thread_local! {
    /// Per shard of this reactor, the layout version whose retry records
    /// were swept for keys other nodes own (`hand_off_moved`), or when a
    /// sweep last failed.
    static SWEPT: std::cell::RefCell<std::collections::HashMap<u32, Result<u64, std::time::Instant>>> = Default::default();
}

/// Once per layout version this reactor applies: hands the retry records
/// of keys another node owns now (their partition moved there) to it, due
/// or not, so a FAILED version is retried by its new owner (which finds
/// it FAILED there). Records of keys owned here are not made for keys
/// another node owns (`worker::settle` records outcomes of owned keys
/// only), so one sweep per layout catches every one. The first record
/// that cannot go (its owner unreachable) ends the sweep; it stays, and
/// the sweep is made again `RESWEEP_AFTER` later.
async fn hand_off_moved(ctx: &Ctx, shard: u32, l: &LocalShard) -> Result<(), String> {
    let Some(node) = &ctx.shared.cluster else { return Ok(()) };
    let Some(version) = node.owners.load().as_ref().map(|o| o.layout.version) else { return Ok(()) };
    let skip = SWEPT.with(|s| match s.borrow().get(&shard) {
        Some(Ok(v)) => *v == version,
        Some(Err(at)) => at.elapsed() < RESWEEP_AFTER,
        None => false,
    });
    if skip {
        return Ok(());
    }
    let mut after: Option<Vec<u8>> = None;
    loop {
        let page = l.shard.range(T_REPLSTATE, &[KIND_RETRY], after.as_deref(), 1024);
        let done = page.len() < 1024;
        for (key, e) in page {
            after = Some(key.clone());
            let Some(stored) = l.shard.load(T_REPLSTATE, &key).await.map_err(|e| e.to_string())? else { continue };
            let Some(rec) = Record::decode(&stored.meta) else { continue };
            let Some(to) = crate::handover_queue::owner_elsewhere(ctx, &rec.bucket, &rec.key) else { continue };
            let (bucket, bucket_id, object) = (&rec.bucket, rec.bucket_id, &rec.key);
            let q = crate::handover_queue::QueuedEntry { table: T_REPLSTATE, shard, entry: key, summary: e.summary.to_vec(), meta: stored.meta.clone(), bucket, bucket_id, key: object };
            if let Err(e) = crate::handover_queue::hand_off_queued(ctx, &to, q).await {
                SWEPT.with(|s| s.borrow_mut().insert(shard, Err(std::time::Instant::now())));
                return Err(e);
            }
        }
        if done {
            break;
        }
    }
    SWEPT.with(|s| s.borrow_mut().insert(shard, Ok(version)));
    Ok(())
}

/// Queues again the versions whose retry is due on `shard`: each still
/// FAILED becomes PENDING with a new queue entry (its attempt count kept),
/// in one commit with the record's removal. Returns how many.
pub async fn requeue_due(ctx: &Rc<Ctx>, shard: u32, l: &Rc<LocalShard>) -> Result<usize, String> {
    if let Err(e) = hand_off_moved(ctx, shard, l).await {
        // Those records wait here (skipped below), the others go on.
        tracing::warn!(shard, "replication retries of keys another node owns now not handed over yet: {e}");
    }
    let now = now_unix_ms().max(0) as u64;
    let mut n = 0;
    for (key, e) in l.shard.range(T_REPLSTATE, &[KIND_RETRY], None, PAGE) {
        let due = key.get(1..9).and_then(|b| b.try_into().ok()).map_or(0, u64::from_be_bytes);
        if due > now {
            break;
        }
        let attempts = match &e.summary[..] {
            [RETRY_V1, a] => *a,
            _ => MAX_ATTEMPTS,
        };
        let stored = l.shard.load(T_REPLSTATE, &key).await.map_err(|e| e.to_string())?;
        let rec = stored.and_then(|s| Record::decode(&s.meta));
        let queue_key = key[9..].to_vec();
        let target = queue_key.len().checked_sub(9).and_then(|end| std::str::from_utf8(&queue_key[..end]).ok()).map(str::to_string);
        let (Some(rec), Some(target)) = (rec, target) else {
            // Unreadable (another version, damaged): dropped, said.
            tracing::warn!(shard, "replication retry record {} unreadable; dropped", hex::encode(&key));
            ctx.shards.commit(shard, vec![Mutation::Delete { table: T_REPLSTATE, key }]).await.map_err(|e| e.to_string())?;
            continue;
        };
        if crate::handover_queue::owner_elsewhere(ctx, &rec.bucket, &rec.key).is_some() {
            // Its version is (or goes) there: the record goes too.
            continue;
        }
        let lock = vec![(T_OBJECTS, object_key(rec.bucket_id, &rec.key))];
        let queued = ctx
            .shards
            .txn(shard, lock, move |local| async move {
                let mut muts = vec![Mutation::Delete { table: T_REPLSTATE, key }];
                let found = rec.find(&local.shard).map_err(|e| format!("{e:?}"))?;
                let failed = found.filter(|loc| loc.summary.repl == ReplStatus::Failed);
                if let Some(loc) = &failed {
                    if let Some(stored) = crate::stripes_io::load(&local.shard, loc.table, &loc.key).await.map_err(|e| e.to_string())? {
                        let mut s = loc.summary.clone();
                        s.repl = ReplStatus::Pending;
                        muts.push(Mutation::Put { table: loc.table, key: loc.key.clone(), summary: s.encode(), meta: stored.meta, body: stored.body });
                        let rec = Record { time_ms: now_unix_ms(), ..rec };
                        muts.push(Mutation::Put {
                            table: T_REPLICATION,
                            key: crate::notify::queue_key(&target, local.notify.next_id()),
                            summary: entry_summary(rec.size, attempts),
                            meta: rec.encode(),
                            body: Body::Inline(Vec::new()),
                        });
                    }
                }
                let queued = muts.len() == 3;
                local.commit_in_txn(muts).await.map_err(|e| e.to_string())?;
                if queued {
                    local.notify.wake.notify_all();
                }
                Ok::<bool, String>(queued)
            })
            .await
            .map_err(|e| format!("queueing a retry: {e}"))??;
        n += usize::from(queued);
    }
    if n > 0 {
        ctx.shared.metrics.core(ctx.core).repl_requeued.fetch_add(n as u64, Relaxed);
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_fourfold_to_the_cap_and_summaries_carry_attempts() {
        assert_eq!((delay_ms(60_000, 1), delay_ms(60_000, 2), delay_ms(60_000, 3)), (60_000, 240_000, 960_000));
        assert_eq!(delay_ms(60_000, 8), MAX_DELAY_MS);
        assert_eq!(delay_ms(u64::MAX, 255), MAX_DELAY_MS);
        assert_eq!(attempts_of(&entry_summary(5, 0)), 0);
        assert_eq!(entry_summary(5, 0).len(), 9, "a first attempt's summary is the old one");
        assert_eq!(attempts_of(&entry_summary(5, 3)), 3);
        assert_eq!(super::super::entry_bytes(&entry_summary(77, 3)), 77);
    }
}
