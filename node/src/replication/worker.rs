//! The replication worker: one per reactor, over the `T_REPLICATION` queues
//! of the shards it owns (the shape of `notify::worker`). Per target and
//! shard it takes a page of the oldest entries, keeps up to `WINDOW`
//! requests in flight (each built on the reactor, reading the version's
//! data whole up to `WHOLE_BODY_MAX_BYTES`, else streaming it in chunks,
//! as a multipart upload over `MULTIPART_THRESHOLD_BYTES`,
//! and sent by one of the target's `WINDOW` sender threads, each with
//! its own kept-alive connection: network I/O blocks there), and commits
//! the outcomes in batches (one commit, under the keys' locks, for every
//! outcome that arrived while the previous batch committed): the entries go
//! and each source version becomes COMPLETED, or FAILED when the remote
//! refused it (4xx; retried later with a backoff, see `retry`).
//! **Per-key order**: a page holds only each key's first entry, so two
//! entries of one key are never in flight
//! together and a later one is sent only once the earlier one is settled.
//! Anything else (unreachable, 5xx) stops the page (what is in flight
//! finishes and is committed), and the target's queue on that shard is
//! retried in the same order after a backoff doubling from `MIN_BACKOFF` to
//! `MAX_BACKOFF`. A crash between a send and its batch's commit sends those
//! entries again (at least once); replica writes are idempotent (the
//! destination keeps the source's version id).

use std::rc::Rc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use tessera_io::{Body, Mutation};
use tessera_proto::time::now_unix_ms;

use crate::remote_s3::{encode_path, form_encode, Chunks, MultipartUpload, Outcome, Remote, RemoteRequest};
use super::{entry_bytes, Op, Record, TargetSpec, H_REPLICA_ETAG, H_REPLICA_MTIME, H_REPLICA_NULL, H_REPLICA_VERSION};
use crate::meta::{object_key, ReplStatus, VersionSel, T_OBJECTS, T_REPLICATION};
use crate::notify::worker::{MAX_BACKOFF, MIN_BACKOFF};
use crate::notify::{event_id_of, queue_prefix};
use crate::server::Ctx;
use crate::s3::put::BodySource;
use crate::shards::LocalShard;
use crate::sse::stream::{Decrypt, PlainReader};
use crate::sse::{SseMode, H_BUCKET_KEY, H_CONTEXT, H_KMS_KEY, H_SSE};

/// Entries of one target read at a time.
const PAGE: usize = 256;
/// Requests in flight per target and reactor: one sender thread (and one
/// kept-alive connection) each.
pub const WINDOW: usize = 16;
/// Bodies in flight per target and reactor (at least one entry always goes,
/// however big); a streamed body counts for `WHOLE_BODY_MAX_BYTES`.
const WINDOW_BYTES: u64 = 64 << 20;
/// Versions up to this size are read whole before they are sent (one
/// buffer); larger ones are streamed to the sender thread in chunks
/// (`--test-replication-whole-body-max-bytes` lowers it for tests).
pub const WHOLE_BODY_MAX_BYTES: u64 = 8 << 20;
/// A streamed body's chunk, and how many wait for the sender thread: with
/// the one being read and the one being written, at most 4 MiB of a
/// streamed body is in memory.
const STREAM_CHUNK_BYTES: u64 = 1 << 20;
const STREAM_CHUNKS_QUEUED: usize = 2;
/// Versions larger than this are sent as a multipart upload (a single
/// PUT's limit; `--test-replication-multipart-threshold-bytes` lowers it
/// for tests).
pub const MULTIPART_THRESHOLD_BYTES: u64 = crate::s3::MAX_OBJECT_BYTES;
/// A multipart replication's part size when the source's own parts cannot
/// be reused (at most the threshold, at least S3's 5 MiB minimum, larger
/// when the object would need more than `MAX_PARTS` parts).
const PART_BYTES: u64 = 64 << 20;
/// S3's smallest part but the last.
const MIN_PART_BYTES: u64 = 5 << 20;
/// Longest sleep of an idle worker (it is also woken by new entries).
const IDLE_POLL: Duration = Duration::from_secs(1);
/// Entries the backlog statistics look at per shard.
const STATS_SCAN: usize = 100_000;

struct Job {
    req: RemoteRequest,
    /// A streamed body: its length and its chunks (`req.body` unused).
    stream: Option<(u64, Chunks)>,
    /// Sent as this multipart upload instead of `req` (with `stream`).
    multipart: Option<MultipartUpload>,
    reply: async_channel::Sender<Outcome>,
}

struct TargetState {
    id: String,
    sender: async_channel::Sender<Job>,
    backoff: Duration,
    retry_at: Option<Instant>,
}

/// `WINDOW` sender threads for one target, taking jobs from one queue; each
/// keeps its own connection to the remote alive between requests.
fn spawn_sender(core: usize, spec: &TargetSpec) -> Result<async_channel::Sender<Job>, String> {
    let (tx, rx) = async_channel::bounded::<Job>(WINDOW);
    for i in 0..WINDOW {
        let mut remote = Remote::new(spec)?;
        let rx = rx.clone();
        std::thread::Builder::new()
            .name(format!("repl-{core}-{}-{i}", spec.id))
            .spawn(move || {
                while let Ok(job) = rx.recv_blocking() {
                    let outcome = match (&job.stream, &job.multipart) {
                        (None, _) => remote.send(&job.req),
                        (Some((_, chunks)), Some(m)) => remote.send_multipart(m, chunks, None),
                        (Some((len, chunks)), None) => remote.send_streamed(&job.req, *len, chunks),
                    };
                    drop(job.stream);
                    let _ = job.reply.send_blocking(outcome);
                }
            })
            .map_err(|e| format!("cannot spawn a replication sender: {e}"))?;
    }
    Ok(tx)
}

/// Replicates the queues of this reactor's shards forever.
pub async fn run(ctx: Rc<Ctx>) {
    let local: Vec<(u32, Rc<LocalShard>)> =
        (0..ctx.shards.count()).filter_map(|s| ctx.shards.local(s).map(|l| (s, l.clone()))).collect();
    let Some(queue) = local.first().map(|(_, l)| l.notify.clone()) else { return };
    let mut targets = Vec::new();
    for spec in &ctx.shared.config.replication_targets {
        match spawn_sender(ctx.core, spec) {
            Ok(sender) => targets.push(TargetState { id: spec.id.clone(), sender, backoff: Duration::ZERO, retry_at: None }),
            Err(e) => tracing::error!(target_id = %spec.id, "replication target unusable: {e}"),
        }
    }
    if targets.is_empty() {
        return;
    }
    // The queue's size before any work: the gauge starts at 0, and a
    // backlog sent within the first 200 ms (no publish meanwhile) read as
    // drained while its last outcomes were still being committed
    // (`replication::backlog_survives_destination_outage_and_source_kill9`
    // saw a PENDING version after `pending_entries` 0 and 60 sent).
    publish_stats(&ctx, &local);
    let mut stats_at = Instant::now();
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
                match drain_page(&ctx, *shard, l, t).await {
                    Ok(0) => {}
                    Ok(_) => {
                        progressed = true;
                        t.backoff = Duration::ZERO;
                    }
                    Err(e) => {
                        let m = ctx.shared.metrics.core(ctx.core);
                        m.repl_retries.fetch_add(1, Relaxed);
                        *m.repl_last_error.lock().unwrap_or_else(|p| p.into_inner()) = format!("{}: {e}", t.id);
                        t.backoff = (t.backoff * 2).clamp(MIN_BACKOFF, MAX_BACKOFF);
                        t.retry_at = Some(Instant::now() + t.backoff);
                        tracing::warn!(target_id = %t.id, shard, retry_in_ms = t.backoff.as_millis() as u64, "replication failed: {e}");
                        break;
                    }
                }
            }
        }
        if stats_at.elapsed() >= Duration::from_millis(200) || !progressed {
            for (shard, l) in &local {
                match super::retry::requeue_due(&ctx, *shard, l).await {
                    Ok(0) => {}
                    Ok(_) => progressed = true,
                    Err(e) => tracing::warn!(shard, "replication retries not queued, tried again later: {e}"),
                }
            }
            publish_stats(&ctx, &local);
            stats_at = Instant::now();
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

/// Pending entries and bytes, and the age of the oldest entry, of this
/// reactor's shards.
fn publish_stats(ctx: &Ctx, local: &[(u32, Rc<LocalShard>)]) {
    let (mut n, mut bytes, mut oldest, mut retrying) = (0u64, 0u64, None::<u64>, 0u64);
    for (_, l) in local {
        n += l.shard.len(T_REPLICATION) as u64;
        retrying += super::retry::waiting(l, STATS_SCAN) as u64;
        for (k, e) in l.shard.range(T_REPLICATION, &[], None, STATS_SCAN) {
            bytes += entry_bytes(&e.summary);
            if let Some(id) = event_id_of(&k) {
                oldest = Some(oldest.map_or(id, |o| o.min(id)));
            }
        }
    }
    let lag_ms = oldest.map_or(0, |id| ((now_unix_ms() as u64).saturating_mul(1000)).saturating_sub(id >> 10) / 1000);
    let m = ctx.shared.metrics.core(ctx.core);
    m.repl_pending.store(n, Relaxed);
    m.repl_pending_bytes.store(bytes, Relaxed);
    m.repl_lag_ms.store(lag_ms, Relaxed);
    m.repl_failed_retrying.store(retrying, Relaxed);
}

/// What to do with one entry.
enum Prep {
    Send(RemoteRequest),
    /// A PUT whose body (this many bytes) is streamed from the reader.
    Stream(RemoteRequest, u64, Box<PlainReader>),
    /// A multipart upload (over the threshold) streamed from the reader.
    Multipart(MultipartUpload, u64, Box<PlainReader>),
    /// Nothing to send (the version is gone, or a tag filter excludes it):
    /// the entry goes, the version's status is cleared.
    Skip,
    /// Cannot be replicated: FAILED.
    Fail(String),
}

async fn prepare(ctx: &Rc<Ctx>, shard: u32, l: &Rc<LocalShard>, rec: &Record) -> Result<Prep, String> {
    let path = encode_path(&rec.dest_bucket, &rec.key);
    let vid = rec.version.render();
    let mut headers = vec![(H_REPLICA_VERSION.to_string(), vid.clone())];
    if rec.null_version {
        // Written before versioning was enabled: the destination keeps it
        // as its null version (older ones replaced, newer ones kept).
        headers.push((H_REPLICA_NULL.to_string(), "true".into()));
    }
    match rec.op {
        Op::DeleteVersion => {
            let query = format!("versionId={}", if rec.null_version { "null" } else { vid.as_str() });
            return Ok(Prep::Send(RemoteRequest { method: "DELETE", path, query, headers, body: Vec::new() }));
        }
        Op::DeleteMarker => {
            let mtime = (rec.version.micros() / 1000).to_string();
            headers.push((H_REPLICA_MTIME.to_string(), mtime));
            return Ok(Prep::Send(RemoteRequest { method: "DELETE", path, query: String::new(), headers, body: Vec::new() }));
        }
        Op::Put => {}
    }
    let sel = Some(if rec.null_version { VersionSel::Null } else { VersionSel::Id(rec.version) });
    let found = crate::s3::versions::load(&l.shard, rec.bucket_id, &rec.key, sel).await.map_err(|e| format!("loading {}: {e:?}", rec.key))?;
    // A null version replaced since is gone (its successor has an entry of its own).
    let Some((loc, meta, body)) = found.filter(|(l, _, _)| l.summary.version == rec.version) else { return Ok(Prep::Skip) };
    let s = loc.summary;
    if s.delete_marker {
        return Ok(Prep::Skip);
    }
    // The version is there, so is its bucket: a registry that does not know
    // it yet (another reactor still loading it at startup) means later.
    let b = ctx.shared.buckets.get(&rec.bucket).filter(|b| b.id == rec.bucket_id).ok_or("bucket registry not loaded yet")?;
    let rule_ok = b.replication.as_ref().is_some_and(|rc| rc.rule_for(&rec.key, Some(&meta.tags)).is_some());
    if !rule_ok {
        return Ok(Prep::Skip);
    }
    if crate::tier::is_stub(&meta) {
        return Ok(Prep::Fail("the version was transitioned to a tier before it was replicated".into()));
    }
    let (sse_headers, decrypt) = match sealed(ctx, &meta, s.size) {
        Ok(v) => v,
        Err(why) => return Ok(Prep::Fail(why)),
    };
    headers.extend(sse_headers);
    // Read decrypted when sealed, as GET does (the destination seals it
    // again), and found again if compaction moves the bytes meanwhile.
    let threshold = ctx.shared.config.replication_multipart_threshold_bytes;
    let multipart = s.size > threshold;
    let whole = !multipart && s.size <= ctx.shared.config.replication_whole_body_max_bytes;
    let mut reader = match body {
        Body::Inline(d) if decrypt.is_none() && whole => {
            return Ok(Prep::Send(finish(rec, &s, &meta, path, headers, d)));
        }
        body => {
            let source = crate::response::StreamSource {
                bucket: b.clone(),
                key: rec.key.clone(),
                version: s.version,
                null_version: s.null_version,
                size: s.size,
                md5: s.md5,
            };
            Box::new(PlainReader::new(ctx, shard, body, decrypt, 0..s.size).reloading(Some(source)))
        }
    };
    if multipart {
        // The replica headers go on both ends: Create so a destination
        // that denies s3:ReplicateObject refuses before any byte moves,
        // Complete because it makes the version.
        let mut complete_headers = vec![
            (H_REPLICA_VERSION.to_string(), vid),
            (H_REPLICA_MTIME.to_string(), s.mtime_ms.to_string()),
            (H_REPLICA_ETAG.to_string(), s.etag().trim_matches('"').to_string()),
        ];
        if rec.null_version {
            complete_headers.push((H_REPLICA_NULL.to_string(), "true".into()));
        }
        let create = finish(rec, &s, &meta, path, headers, Vec::new());
        let parts = part_layout(&meta.part_sizes, s.size, threshold);
        let m = MultipartUpload { path: create.path, create_headers: create.headers, complete_headers, parts };
        return Ok(Prep::Multipart(m, s.size, reader));
    }
    if !whole {
        let req = finish(rec, &s, &meta, path, headers, Vec::new());
        return Ok(Prep::Stream(req, s.size, reader));
    }
    let mut data = vec![0u8; s.size as usize];
    fill(&mut reader, &mut data).await.map_err(|e| format!("reading {}: {e}", rec.key))?;
    Ok(Prep::Send(finish(rec, &s, &meta, path, headers, data)))
}

/// The parts a version of `size` bytes is replicated in: the source's own
/// (`source`, from its multipart upload) when they make a valid upload, so
/// the destination computes the same multipart ETag and serves the same
/// part numbers; else parts of `min(PART_BYTES, threshold)` (at least
/// `MIN_PART_BYTES`, more when `MAX_PARTS` would not do), the last shorter.
pub(crate) fn part_layout(source: &[u64], size: u64, threshold: u64) -> Vec<u64> {
    let n = source.len();
    let reusable = n > 0
        && n <= crate::meta::MAX_PARTS
        && source.iter().sum::<u64>() == size
        && source.iter().all(|&p| p > 0 && p <= crate::s3::MAX_OBJECT_BYTES)
        && source[..n - 1].iter().all(|&p| p >= MIN_PART_BYTES);
    if reusable {
        return source.to_vec();
    }
    let max_parts = crate::meta::MAX_PARTS as u64;
    let part = PART_BYTES.min(threshold).max(MIN_PART_BYTES).max(size.div_ceil(max_parts));
    let mut parts = vec![part; (size / part) as usize];
    if !size.is_multiple_of(part) || size == 0 {
        parts.push(size % part);
    }
    parts
}

/// Fills `buf` from `r`.
async fn fill(r: &mut PlainReader, buf: &mut [u8]) -> Result<(), String> {
    let mut at = 0;
    while at < buf.len() {
        match r.read(&mut buf[at..]).await.map_err(|e| format!("{e:?}"))? {
            0 => return Err(format!("the body ended {} bytes short", buf.len() - at)),
            n => at += n,
        }
    }
    Ok(())
}

/// The PUT of a version: the replica headers and the version's metadata.
fn finish(rec: &Record, s: &crate::meta::ObjectSummary, meta: &crate::meta::ObjectMeta, path: String, mut headers: Vec<(String, String)>, body: Vec<u8>) -> RemoteRequest {
    headers.push((H_REPLICA_MTIME.to_string(), s.mtime_ms.to_string()));
    headers.push((H_REPLICA_ETAG.to_string(), s.etag().trim_matches('"').to_string()));
    let plain = [
        ("content-type", &meta.content_type),
        ("content-encoding", &meta.content_encoding),
        ("content-disposition", &meta.content_disposition),
        ("content-language", &meta.content_language),
        ("cache-control", &meta.cache_control),
        ("expires", &meta.expires),
    ];
    for (n, v) in plain {
        if let Some(v) = v {
            headers.push((n.to_string(), v.clone()));
        }
    }
    for (k, v) in &meta.user {
        headers.push((format!("x-amz-meta-{k}"), v.clone()));
    }
    if !meta.tags.is_empty() {
        let t: Vec<String> = meta.tags.iter().map(|(k, v)| format!("{}={}", form_encode(k), form_encode(v))).collect();
        headers.push(("x-amz-tagging".to_string(), t.join("&")));
    }
    if let Some(c) = &rec.storage_class {
        headers.push(("x-amz-storage-class".to_string(), c.clone()));
    }
    RemoteRequest { method: "PUT", path, query: String::new(), headers, body }
}

/// An entry taken from the queue: its key and record.
struct Taken {
    entry: Vec<u8>,
    rec: Record,
    /// The entry's summary and meta as stored (handed over as they are
    /// when another node owns the key now).
    summary: Vec<u8>,
    meta: Vec<u8>,
    /// Automatic attempts after a refusal so far (`retry`).
    attempts: u8,
}

/// An entry's outcome: the version's new status, and whether the remote
/// refused it (a FAILED worth retrying later, see `retry`).
#[derive(Debug, Clone, Copy)]
struct Settled {
    status: ReplStatus,
    refused: bool,
}

impl From<ReplStatus> for Settled {
    fn from(status: ReplStatus) -> Self {
        Settled { status, refused: false }
    }
}

/// What the window's futures report back to `drain_page`.
enum Event {
    /// An entry's outcome (`Err`: retry the target later).
    Sent { taken: Box<Taken>, bytes: u64, status: Result<Settled, String> },
    /// A batch of outcomes is committed: how many, or why not.
    Committed(Result<usize, String>),
}

type EventFuture<'a> = std::pin::Pin<Box<dyn std::future::Future<Output = Event> + 'a>>;

/// The oldest page of `t`'s entries on `shard`, each key's first entry
/// only: a later entry of a key waits until the earlier one is settled and
/// gone, so two entries of one key never overlap or reorder. An entry that
/// does not decode stops the page there (it is kept, and the queue waits).
async fn take_page(l: &Rc<LocalShard>, t: &TargetState) -> Result<(Vec<Taken>, Option<String>), String> {
    let page = l.shard.range(T_REPLICATION, &queue_prefix(&t.id), None, PAGE);
    let loads = page.iter().map(|(key, _)| l.shard.load(T_REPLICATION, key));
    let loaded = futures_util::future::join_all(loads).await;
    let mut keys = std::collections::HashSet::new();
    let mut out = Vec::new();
    for ((entry, e), stored) in page.into_iter().zip(loaded) {
        if let Some(id) = event_id_of(&entry) {
            l.notify.observe(id);
        }
        let Some(stored) = stored.map_err(|e| format!("reading the queue: {e}"))? else { continue };
        let Some(rec) = Record::decode(&stored.meta) else {
            let why = format!("queued entry {} is not a version {} record", hex::encode(&entry), super::REPL_RECORD_V1);
            return Ok((out, Some(why)));
        };
        // Both the source key and the destination's (two source buckets
        // may replicate into one); each must be unseen in this page.
        let first = keys.insert((rec.bucket_id.to_string(), rec.key.clone()));
        if keys.insert((format!("/{}", rec.dest_bucket), rec.key.clone())) && first {
            let attempts = super::retry::attempts_of(&e.summary);
            out.push(Taken { entry, rec, summary: e.summary.to_vec(), meta: stored.meta, attempts });
        }
    }
    Ok((out, None))
}

/// Prepares and sends one entry: its outcome for the source version.
async fn replicate_one(ctx: &Rc<Ctx>, shard: u32, l: &Rc<LocalShard>, sender: &async_channel::Sender<Job>, rec: &Record) -> Result<Settled, String> {
    let m = ctx.shared.metrics.core(ctx.core);
    match prepare(ctx, shard, l, rec).await? {
        Prep::Skip => Ok(ReplStatus::None.into()),
        Prep::Fail(why) => {
            m.repl_failed.fetch_add(1, Relaxed);
            *m.repl_last_error.lock().unwrap_or_else(|p| p.into_inner()) = format!("{}/{}: {why}", rec.bucket, rec.key);
            tracing::warn!(bucket = %rec.bucket, key = %rec.key, "replication failed for good: {why}");
            Ok(ReplStatus::Failed.into())
        }
        Prep::Send(req) => {
            let bytes = req.body.len() as u64;
            let (tx, rx) = async_channel::bounded(1);
            sender.send(Job { req, stream: None, multipart: None, reply: tx }).await.map_err(|_| "the sender threads are gone".to_string())?;
            let outcome = rx.recv().await.map_err(|_| "the sender threads are gone".to_string())?;
            judge(ctx, rec, bytes, outcome)
        }
        Prep::Stream(req, len, reader) => {
            stream(ctx, sender, rec, req, None, len, vec![len], reader).await
        }
        Prep::Multipart(up, len, reader) => {
            m.repl_multipart.fetch_add(1, Relaxed);
            let parts = up.parts.clone();
            let req = RemoteRequest { method: "POST", path: up.path.clone(), query: String::new(), headers: Vec::new(), body: Vec::new() };
            stream(ctx, sender, rec, req, Some(up), len, parts, reader).await
        }
    }
}

/// Sends a body of `len` bytes read from `reader` to the sender thread in
/// chunks of at most `STREAM_CHUNK_BYTES`, none crossing the end of one
/// of `parts` (the whole body's length for a plain streamed PUT), as `req`
/// or as the multipart upload `m`.
#[allow(clippy::too_many_arguments)]
async fn stream(
    ctx: &Rc<Ctx>,
    sender: &async_channel::Sender<Job>,
    rec: &Record,
    req: RemoteRequest,
    m: Option<MultipartUpload>,
    len: u64,
    parts: Vec<u64>,
    mut reader: Box<PlainReader>,
) -> Result<Settled, String> {
    let (chunk_tx, chunks) = async_channel::bounded(STREAM_CHUNKS_QUEUED);
    let (tx, rx) = async_channel::bounded(1);
    let job = Job { req, stream: Some((len, chunks)), multipart: m, reply: tx };
    sender.send(job).await.map_err(|_| "the sender threads are gone".to_string())?;
    // Read on the reactor while the sender thread writes; it drops the
    // chunks' receiver when it stops, which ends this too.
    let produce = async move {
        for part in parts {
            let mut sent = 0u64;
            while sent < part {
                let mut chunk = vec![0u8; (part - sent).min(STREAM_CHUNK_BYTES) as usize];
                let read = fill(&mut reader, &mut chunk).await.map(|()| chunk).map_err(|e| format!("reading {}: {e}", rec.key));
                let failed = read.is_err();
                sent += read.as_ref().map_or(0, |c| c.len() as u64);
                if chunk_tx.send(read).await.is_err() || failed {
                    return;
                }
            }
        }
    };
    let (_, outcome) = futures_util::future::join(produce, rx.recv()).await;
    let outcome = outcome.map_err(|_| "the sender threads are gone".to_string())?;
    judge(ctx, rec, len, outcome)
}

/// What the remote's answer to `rec` means for its version (`Err`: retry).
fn judge(ctx: &Ctx, rec: &Record, bytes: u64, outcome: Outcome) -> Result<Settled, String> {
    let m = ctx.shared.metrics.core(ctx.core);
    match outcome {
        Outcome::Done => {
            m.repl_sent.fetch_add(1, Relaxed);
            m.repl_sent_bytes.fetch_add(bytes, Relaxed);
            m.repl_lag_ms_sum.fetch_add((now_unix_ms() - rec.time_ms).max(0) as u64, Relaxed);
            Ok(ReplStatus::Completed.into())
        }
        Outcome::Refused(why) => {
            m.repl_failed.fetch_add(1, Relaxed);
            *m.repl_last_error.lock().unwrap_or_else(|p| p.into_inner()) = format!("{}/{}: {why}", rec.bucket, rec.key);
            tracing::warn!(bucket = %rec.bucket, key = %rec.key, "replication refused by the remote: {why}");
            Ok(Settled { status: ReplStatus::Failed, refused: true })
        }
        Outcome::Retry(why) => Err(why),
    }
}

/// The encryption headers a sealed version is sent with, so the
/// destination seals it again, and how to open it here. SSE-C versions are
/// not replicated (the key is the client's; S3 does not replicate them
/// either): the reason is the error.
fn sealed(ctx: &Ctx, meta: &crate::meta::ObjectMeta, size: u64) -> Result<(Vec<(String, String)>, Option<Decrypt>), String> {
    let Some(info) = &meta.sse else { return Ok((Vec::new(), None)) };
    let mut h = Vec::new();
    match &info.mode {
        SseMode::Customer { .. } => return Err("SSE-C objects are not replicated (the key is the client's)".into()),
        SseMode::S3 { .. } => h.push((H_SSE.to_string(), "AES256".to_string())),
        SseMode::Kms { key_id, context, bucket_key } => {
            h.push((H_SSE.to_string(), "aws:kms".to_string()));
            h.push((H_KMS_KEY.to_string(), key_id.clone()));
            if let Some(c) = context {
                h.push((H_CONTEXT.to_string(), c.clone()));
            }
            if *bucket_key {
                h.push((H_BUCKET_KEY.to_string(), "true".to_string()));
            }
        }
    }
    let dk = crate::sse::open(&*ctx.shared.kms, Some(info), None).map_err(|e| format!("the data key does not open: {e:?}"))?;
    let decrypt = crate::sse::stream::decrypt_of(meta, size, dk).map_err(|e| format!("encrypted layout: {e:?}"))?;
    Ok((h, decrypt))
}

/// Replicates the oldest page of `t`'s entries on `shard` with up to
/// `WINDOW` requests in flight (and `WINDOW_BYTES` of bodies), committing
/// the outcomes in batches: while one batch commits, the next gathers.
/// Returns how many entries were settled (sent, skipped or failed for
/// good), or why the page stopped; the outcomes already known are
/// committed before returning either way.
async fn drain_page(ctx: &Rc<Ctx>, shard: u32, l: &Rc<LocalShard>, t: &TargetState) -> Result<usize, String> {
    let (taken, mut stop) = take_page(l, t).await?;
    let (taken, handed) = hand_off(ctx, shard, taken, &mut stop).await;
    let mut todo = taken.into_iter().peekable();
    let mut running: futures_util::stream::FuturesUnordered<EventFuture<'_>> = Default::default();
    let (mut in_flight, mut bytes_in_flight) = (0usize, 0u64);
    let mut settled: Vec<(Taken, Settled)> = Vec::new();
    let mut committing = false;
    let mut done = handed;
    loop {
        // Fill the window; nothing new once the target asked for a retry.
        while stop.is_none() && in_flight < WINDOW {
            let Some(next) = todo.peek() else { break };
            let bytes = if next.rec.op == Op::Put { next.rec.size.min(WHOLE_BODY_MAX_BYTES) } else { 0 };
            if in_flight > 0 && bytes_in_flight + bytes > WINDOW_BYTES {
                break;
            }
            let Some(taken) = todo.next() else { break };
            in_flight += 1;
            bytes_in_flight += bytes;
            let sender = &t.sender;
            running.push(Box::pin(async move {
                let status = replicate_one(ctx, shard, l, sender, &taken.rec).await;
                Event::Sent { taken: Box::new(taken), bytes, status }
            }));
        }
        if !committing && !settled.is_empty() {
            committing = true;
            let batch = std::mem::take(&mut settled);
            running.push(Box::pin(async move { Event::Committed(settle(ctx, shard, batch).await) }));
        }
        let Some(ev) = futures_util::StreamExt::next(&mut running).await else { break };
        match ev {
            Event::Sent { taken, bytes, status } => {
                in_flight -= 1;
                bytes_in_flight -= bytes;
                match status {
                    Ok(s) => settled.push((*taken, s)),
                    Err(e) => {
                        stop.get_or_insert(e);
                    }
                }
            }
            Event::Committed(r) => {
                committing = false;
                match r {
                    Ok(n) => done += n,
                    Err(e) => {
                        // Not recorded: those entries are sent again later.
                        stop.get_or_insert(e);
                    }
                }
            }
        }
    }
    debug_assert!(settled.is_empty() && in_flight == 0);
    match stop {
        Some(e) => Err(e),
        None => Ok(done),
    }
}

/// Hands the entries of keys another node owns now (their partition moved
/// there: `handover`) to that node and deletes them here: the entries
/// left, and how many went. A failure stops the page (`stop`; the entry
/// stays and goes at a later page).
async fn hand_off(ctx: &Ctx, shard: u32, taken: Vec<Taken>, stop: &mut Option<String>) -> (Vec<Taken>, usize) {
    let mut mine = Vec::with_capacity(taken.len());
    let mut handed = 0;
    for tk in taken {
        let Some(to) = crate::handover_queue::owner_elsewhere(ctx, &tk.rec.bucket, &tk.rec.key) else {
            mine.push(tk);
            continue;
        };
        if stop.is_some() {
            continue;
        }
        let (bucket, bucket_id, key) = (&tk.rec.bucket, tk.rec.bucket_id, &tk.rec.key);
        let q = crate::handover_queue::QueuedEntry { table: T_REPLICATION, shard, entry: tk.entry, summary: tk.summary, meta: tk.meta, bucket, bucket_id, key };
        match crate::handover_queue::hand_off_queued(ctx, &to, q).await {
            Ok(()) => handed += 1,
            Err(e) => *stop = Some(e),
        }
    }
    (mine, handed)
}

/// Records each outcome on its source version (when it is still there and
/// pending) and deletes the entries, in one commit under the keys' locks
/// (the keys of a batch are distinct: one entry per key per page). A crash
/// before this commit sends the batch again: at least once, and a replica
/// write with the same version id is idempotent at the destination.
async fn settle(ctx: &Ctx, shard: u32, batch: Vec<(Taken, Settled)>) -> Result<usize, String> {
    let n = batch.len();
    let retry_ms = ctx.shared.config.replication_failed_retry_ms;
    // An outcome for a key another node owns now is not recorded: its
    // entry stays, is handed over (`hand_off`), and the version is sent
    // again from there (held, so the key's export waits for this commit).
    // The page then ends as failed: the target's backoff keeps this node
    // from sending it again and again meanwhile.
    let mut holds = Vec::with_capacity(batch.len());
    let batch: Vec<(Taken, Settled)> = batch
        .into_iter()
        .filter(|(t, _)| match crate::handover::hold(ctx, &t.rec.bucket, &t.rec.key) {
            Some(h) => {
                holds.push(h);
                true
            }
            None => false,
        })
        .collect();
    let elsewhere = n - batch.len();
    let lock = batch.iter().map(|(t, _)| (T_OBJECTS, object_key(t.rec.bucket_id, &t.rec.key))).collect();
    ctx.shards
        .txn(shard, lock, move |local| async move {
            let mut muts = Vec::with_capacity(batch.len() * 2);
            for (Taken { entry, rec, attempts, .. }, Settled { status, refused }) in batch {
                if refused && rec.op != Op::DeleteVersion {
                    // Sent again later unless the version is gone or no
                    // longer FAILED by then (see `retry`).
                    muts.extend(super::retry::schedule(retry_ms, &entry, &rec, attempts));
                }
                muts.push(Mutation::Delete { table: T_REPLICATION, key: entry });
                if rec.op == Op::DeleteVersion {
                    continue;
                }
                let Some(loc) = rec.find(&local.shard)? else {
                    continue;
                };
                if loc.summary.repl != ReplStatus::Pending {
                    continue;
                }
                let stored = crate::stripes_io::load(&local.shard, loc.table, &loc.key).await.map_err(crate::s3::io_error)?;
                if let Some(stored) = stored {
                    let mut s = loc.summary;
                    s.repl = status;
                    muts.push(Mutation::Put { table: loc.table, key: loc.key, summary: s.encode(), meta: stored.meta, body: stored.body });
                }
            }
            local.commit_in_txn(muts).await.map_err(crate::s3::io_error)?;
            Ok::<(), tessera_proto::S3Error>(())
        })
        .await
        .map_err(|e| format!("recording the outcomes: {e}"))?
        .map_err(|e| format!("recording the outcomes: {e:?}"))?;
    if elsewhere > 0 {
        return Err(format!("{elsewhere} outcomes not recorded: another node owns their keys now"));
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_reuse_the_sources_layout_when_it_is_valid() {
        const M: u64 = 1 << 20;
        let src = [10 * M, 10 * M, 10 * M];
        assert_eq!(part_layout(&src, 30 * M, 12 * M), src);
        // Not the object's size, or a part under S3's minimum but the
        // last: fixed parts of the threshold (12 MiB here).
        assert_eq!(part_layout(&src, 31 * M, 12 * M), [12 * M, 12 * M, 7 * M]);
        assert_eq!(part_layout(&[M, 29 * M], 30 * M, 12 * M), [12 * M, 12 * M, 6 * M]);
        assert_eq!(part_layout(&[29 * M, M], 30 * M, 12 * M), [29 * M, M]);
        // A single PUT: 64 MiB parts, at least 5 MiB, fewer than 10,000.
        let six_gib = 6u64 << 30;
        let p = part_layout(&[], six_gib, MULTIPART_THRESHOLD_BYTES);
        assert_eq!((p.len(), p[0], p.iter().sum::<u64>()), (96, 64 * M, six_gib));
        assert_eq!(part_layout(&[], 12 * M, M), [5 * M, 5 * M, 2 * M]);
        let five_tib = 5u64 << 40;
        let p = part_layout(&[], five_tib, MULTIPART_THRESHOLD_BYTES);
        assert!(p.len() <= crate::meta::MAX_PARTS && p.iter().sum::<u64>() == five_tib, "{}", p.len());
        assert_eq!(part_layout(&[], 10 * M, 5 * M), [5 * M, 5 * M]);
    }
}
