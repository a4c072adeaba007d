//! The delivery worker: one per reactor, over the queues of the shards that
//! reactor owns. For each target it reads the oldest page of the target's
//! entries on a shard, hands their messages to the target's sender thread
//! (network I/O blocks there, never on the reactor), and deletes the entries
//! the target accepted in one commit. The first failure stops the page:
//! what follows is retried later in the same order (per target and shard,
//! hence per key), after a backoff that doubles from `MIN_BACKOFF` to
//! `MAX_BACKOFF` while the target keeps failing. At least once: a crash
//! between a delivery and its entry's delete delivers that event again.

use std::rc::Rc;
use std::time::{Duration, Instant};

use tessera_io::Mutation;
use tessera_proto::time::now_unix_ms;

use super::target::{self, Target};
use super::{queue_prefix, CoreQueue, EventRecord, WebhookSpec};
use crate::meta::T_EVENTS;
use crate::server::Ctx;
use crate::shards::LocalShard;

/// Entries of one target read, sent and deleted at a time.
pub const PAGE: usize = 128;
/// First pause after a failed delivery.
pub const MIN_BACKOFF: Duration = Duration::from_millis(100);
/// Longest pause between attempts at a failing target.
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// Longest sleep of an idle worker (it is also woken by new events).
const IDLE_POLL: Duration = Duration::from_secs(1);

/// A page of messages for a sender thread; the reply is how many were
/// accepted (a prefix) and why the next one was not.
struct Batch {
    messages: Vec<Vec<u8>>,
    reply: async_channel::Sender<(usize, Option<String>)>,
}

struct TargetState {
    id: String,
    sender: async_channel::Sender<Batch>,
    backoff: Duration,
    retry_at: Option<Instant>,
}

/// Starts the sender thread of `spec` for reactor `core`.
fn spawn_sender(core: usize, spec: &WebhookSpec) -> Result<async_channel::Sender<Batch>, String> {
    let mut t: Box<dyn Target> = target::build(spec)?;
    let (tx, rx) = async_channel::bounded::<Batch>(1);
    std::thread::Builder::new()
        .name(format!("notify-{core}-{}", spec.id))
        .spawn(move || {
            while let Ok(batch) = rx.recv_blocking() {
                let mut done = 0;
                let mut err = None;
                for m in &batch.messages {
                    match t.send(m) {
                        Ok(()) => done += 1,
                        Err(e) => {
                            err = Some(e);
                            break;
                        }
                    }
                }
                let _ = batch.reply.send_blocking((done, err));
            }
        })
        .map_err(|e| format!("cannot spawn a notification sender: {e}"))?;
    Ok(tx)
}

/// Delivers the queues of this reactor's shards forever.
pub async fn run(ctx: Rc<Ctx>) {
    let local: Vec<(u32, Rc<LocalShard>)> =
        (0..ctx.shards.count()).filter_map(|s| ctx.shards.local(s).map(|l| (s, l.clone()))).collect();
    let Some(queue) = local.first().map(|(_, l)| l.notify.clone()) else { return };
    let specs = ctx.shared.config.notify_webhooks.clone();
    let mut targets = Vec::new();
    for spec in &specs {
        match spawn_sender(ctx.core, spec) {
            Ok(sender) => targets.push(TargetState { id: spec.id.clone(), sender, backoff: Duration::ZERO, retry_at: None }),
            Err(e) => tracing::error!(target_id = %spec.id, "notification target unusable: {e}"),
        }
    }
    if targets.is_empty() {
        return;
    }
    let region = ctx.shared.config.region.clone();
    loop {
        let woken = queue.wake.listen();
        let mut progressed = false;
        let now = Instant::now();
        for t in targets.iter_mut() {
            if t.retry_at.is_some_and(|at| at > now) {
                continue;
            }
            t.retry_at = None;
            for (shard, l) in &local {
                match deliver_page(&ctx, &queue, *shard, l, t, &region).await {
                    Ok(0) => {}
                    Ok(_) => {
                        progressed = true;
                        t.backoff = Duration::ZERO;
                    }
                    Err(e) => {
                        ctx.shared.metrics.core(ctx.core).notify_failed();
                        t.backoff = (t.backoff * 2).clamp(MIN_BACKOFF, MAX_BACKOFF);
                        t.retry_at = Some(Instant::now() + t.backoff);
                        tracing::warn!(target_id = %t.id, shard, retry_in_ms = t.backoff.as_millis() as u64, "notification delivery failed: {e}");
                        break;
                    }
                }
            }
        }
        if progressed {
            continue;
        }
        let now = Instant::now();
        let wait = targets
            .iter()
            .filter_map(|t| t.retry_at.map(|at| at.saturating_duration_since(now)))
            .fold(IDLE_POLL, Duration::min);
        futures_util::future::select(Box::pin(woken), Box::pin(monoio::time::sleep(wait))).await;
    }
}

/// Sends the oldest page of `t`'s entries on `shard`: how many were
/// delivered (and deleted), or why the page stopped.
async fn deliver_page(
    ctx: &Ctx,
    queue: &CoreQueue,
    shard: u32,
    local: &Rc<LocalShard>,
    t: &TargetState,
    region: &str,
) -> Result<usize, String> {
    let page = local.shard.range(T_EVENTS, &queue_prefix(&t.id), None, PAGE);
    if page.is_empty() {
        return Ok(0);
    }
    let loads = futures_util::future::join_all(page.iter().map(|(k, _)| local.shard.load(T_EVENTS, k))).await;
    let (mut keys, mut messages, mut times) = (Vec::new(), Vec::new(), Vec::new());
    let mut stop = None;
    let mut handed = 0;
    for ((key, e), loaded) in page.into_iter().zip(loads) {
        let stored = match loaded {
            Ok(Some(s)) => s,
            Ok(None) => continue,
            Err(e) => {
                stop = Some(format!("reading the queue: {e}"));
                break;
            }
        };
        let Some(rec) = EventRecord::decode(&stored.meta) else {
            // Written by another version, or damaged: kept (never dropped
            // silently), and the target's queue on this shard waits.
            stop = Some(format!("queued event {} is not a version {} record", hex::encode(&key), super::EVENT_RECORD_V1));
            break;
        };
        queue.observe(rec.sequencer);
        // An event of a key another node owns now (its partition moved
        // there, as when this node is decommissioned) goes to that node,
        // which delivers it: this node may be stopped once its keys left.
        if let Some(to) = crate::handover_queue::owner_elsewhere(ctx, &rec.bucket, &rec.key) {
            let (bucket, object) = (&rec.bucket, &rec.key);
            let q = crate::handover_queue::QueuedEntry { table: T_EVENTS, shard, entry: key, summary: e.summary.to_vec(), meta: stored.meta, bucket, bucket_id: 0, key: object };
            match crate::handover_queue::hand_off_queued(ctx, &to, q).await {
                Ok(()) => {
                    handed += 1;
                    continue;
                }
                Err(e) => {
                    stop = Some(e);
                    break;
                }
            }
        }
        messages.push(rec.to_json(region));
        times.push(rec.time_ms);
        keys.push(key);
    }
    let (done, err) = if messages.is_empty() {
        (0, None)
    } else {
        let (tx, rx) = async_channel::bounded(1);
        t.sender.send(Batch { messages, reply: tx }).await.map_err(|_| "the sender thread is gone".to_string())?;
        rx.recv().await.map_err(|_| "the sender thread is gone".to_string())?
    };
    if done > 0 {
        let muts = keys[..done].iter().map(|k| Mutation::Delete { table: T_EVENTS, key: k.clone() }).collect();
        ctx.shards.commit(shard, muts).await.map_err(|e| format!("deleting delivered events: {e}"))?;
        let now = now_unix_ms();
        let lag: i64 = times[..done].iter().map(|t| (now - t).max(0)).sum();
        ctx.shared.metrics.core(ctx.core).notify_delivered(done as u64, lag as u64);
    }
    match err.or(stop) {
        Some(e) => Err(e),
        None => Ok(done + handed),
    }
}
