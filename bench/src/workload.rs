//! The workloads: timed runs of an operation mix over a key space, sweeps
//! (PUT or DELETE every key once, as fast as possible: fill, prepare, cleanup)
//! and list (page through a bucket). Each worker owns one connection and its
//! own counters on one client thread; they are merged when the run ends.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Barrier;
use tokio::task::JoinHandle;

use crate::client::{Client, Shared};
use crate::dist::{KeyChooser, KeyDist, Mix, SizeDist};
use crate::monitor::{Monitor, Point};
use crate::pool::Pool;
use crate::s3;
use crate::stats::{ErrorKind, OpKind, WorkerStats};

/// Attempts at one list page before the listing gives up (5xx, timeouts, resets).
pub const MAX_LIST_PAGE_ATTEMPTS: u32 = 3;

/// The bytes every PUT sends a prefix of: `size_bytes` of pseudo-random bytes
/// (so nothing on the way can compress them), one copy shared by all workers.
pub fn make_payload(size_bytes: u64) -> Arc<[u8]> {
    let mut rng = fastrand::Rng::with_seed(0x7e55_e7a0);
    let mut v = vec![0u8; size_bytes as usize];
    rng.fill(&mut v);
    v.into()
}

/// Hands out request numbers up to an optional limit.
struct Tickets {
    issued: AtomicU64,
    limit: u64,
}

impl Tickets {
    fn new(limit: Option<u64>) -> Tickets {
        Tickets { issued: AtomicU64::new(0), limit: limit.unwrap_or(u64::MAX) }
    }

    /// Whether another request may start. Without a limit no counter is
    /// touched: a cache line shared by every thread would cost each request.
    fn take(&self) -> bool {
        self.limit == u64::MAX || self.issued.fetch_add(1, Ordering::Relaxed) < self.limit
    }
}

/// A timed run over a key space of `objects` keys.
#[derive(Debug, Clone)]
pub struct TimedPlan {
    pub bucket: String,
    pub prefix: String,
    pub sizes: SizeDist,
    pub keys: KeyDist,
    pub objects: u64,
    pub concurrency: usize,
    pub duration: Duration,
    pub max_requests: Option<u64>,
    pub mix: Mix,
    /// Part size of multipart uploads.
    pub part_bytes: u64,
    /// GETs authenticate with presigned URLs instead of headers.
    pub presigned: bool,
}

pub struct Outcome {
    pub stats: WorkerStats,
    pub elapsed: Duration,
    /// One point per second of the phase.
    pub timeline: Vec<Point>,
}

/// Runs `plan`: all connections open first, then the clock starts.
pub async fn run_timed(pool: &Pool, shared: Arc<Shared>, plan: TimedPlan, payload: Arc<[u8]>, label: &'static str) -> Outcome {
    assert!(plan.objects > 0 && plan.concurrency > 0 && payload.len() as u64 >= plan.sizes.max());
    let plan = Arc::new(plan);
    let barrier = Arc::new(Barrier::new(plan.concurrency + 1));
    let tickets = Arc::new(Tickets::new(plan.max_requests));
    let sequence = Arc::new(AtomicU64::new(0));
    let misses_expected = plan.mix.has(OpKind::Delete);
    let mut workers = Vec::with_capacity(plan.concurrency);
    for worker in 0..plan.concurrency {
        let (shared, plan, payload) = (shared.clone(), plan.clone(), payload.clone());
        let (barrier, tickets) = (barrier.clone(), tickets.clone());
        let keys = KeyChooser::new(&plan.keys, plan.objects, sequence.clone());
        let slot = pool.slot_of(worker);
        workers.push(pool.spawn(worker, async move {
            let mut client = Client::on(shared.clone(), worker);
            // A failed connect is retried by the first request, which counts it.
            let _ = client.connect().await;
            let mut stats = WorkerStats::default();
            let mut rng = fastrand::Rng::with_seed(0x5eed_0000 + worker as u64);
            let mut key = String::new();
            barrier.wait().await;
            let deadline = Instant::now() + plan.duration;
            while Instant::now() < deadline && !shared.stopped() && tickets.take() {
                let index = keys.next(&mut rng);
                s3::set_object_key(&mut key, &plan.prefix, index);
                let size = plan.sizes.size_of(index);
                let body = &payload[..size as usize];
                let op = plan.mix.pick(&mut rng);
                let started = Instant::now();
                let result = match op {
                    OpKind::Get => client.get_object(&plan.bucket, &key, size, plan.presigned).await,
                    OpKind::Put => client.put_object(&plan.bucket, &key, body).await,
                    OpKind::Delete => client.delete_object(&plan.bucket, &key).await,
                    OpKind::Stat => client.stat_object(&plan.bucket, &key, size).await,
                    OpKind::Multipart => client.multipart_upload(&plan.bucket, &key, body, plan.part_bytes).await,
                    OpKind::List => unreachable!("a mix never holds list"),
                };
                let missed = matches!(&result, Err(f) if f.kind == ErrorKind::Status(404));
                let result = if missed && misses_expected && matches!(op, OpKind::Get | OpKind::Stat) {
                    stats.op(op).misses += 1;
                    Ok(0)
                } else {
                    result
                };
                shared.account(slot, &mut stats, op, &key, started, result);
            }
            stats
        }));
    }
    barrier.wait().await;
    let monitor = Monitor::start(shared.clone(), label, None);
    let started = Instant::now();
    let stats = join_all(workers).await;
    let elapsed = started.elapsed();
    Outcome { stats, elapsed, timeline: monitor.finish().await }
}

/// A sweep: one `op` (PUT or DELETE) on each of objects `0..count`, as fast as
/// `concurrency` allows; object `i` is `sizes.size_of(i)` bytes of the payload.
#[derive(Debug, Clone)]
pub struct SweepPlan {
    pub op: OpKind,
    pub bucket: String,
    pub prefix: String,
    pub count: u64,
    pub sizes: SizeDist,
    pub concurrency: usize,
    pub duration: Duration,
}

pub async fn run_sweep(pool: &Pool, shared: Arc<Shared>, plan: SweepPlan, payload: Arc<[u8]>, label: &'static str) -> Outcome {
    assert!(plan.concurrency > 0 && matches!(plan.op, OpKind::Put | OpKind::Delete));
    let plan = Arc::new(plan);
    let next_index = Arc::new(AtomicU64::new(0));
    let monitor = Monitor::start(shared.clone(), label, Some(plan.count));
    let started = Instant::now();
    let deadline = started + plan.duration;
    let mut workers = Vec::with_capacity(plan.concurrency);
    for worker in 0..plan.concurrency {
        let (shared, plan, payload, next_index) = (shared.clone(), plan.clone(), payload.clone(), next_index.clone());
        let slot = pool.slot_of(worker);
        workers.push(pool.spawn(worker, async move {
            let mut client = Client::on(shared.clone(), worker);
            let mut stats = WorkerStats::default();
            while Instant::now() < deadline && !shared.stopped() {
                let index = next_index.fetch_add(1, Ordering::Relaxed);
                if index >= plan.count {
                    break;
                }
                let key = s3::object_key(&plan.prefix, index);
                let t = Instant::now();
                let result = if plan.op == OpKind::Put {
                    let size = plan.sizes.size_of(index) as usize;
                    client.put_object(&plan.bucket, &key, &payload[..size]).await
                } else {
                    client.delete_object(&plan.bucket, &key).await
                };
                shared.account(slot, &mut stats, plan.op, &key, t, result);
            }
            stats
        }));
    }
    let stats = join_all(workers).await;
    let elapsed = started.elapsed();
    Outcome { stats, elapsed, timeline: monitor.finish().await }
}

/// A listing of a whole bucket (or prefix), page after page.
#[derive(Debug, Clone)]
pub struct ListPlan {
    pub bucket: String,
    pub prefix: String,
    pub max_keys: u32,
    pub max_pages: u64,
    pub duration: Duration,
}

pub struct ListOutcome {
    pub pages: u64,
    pub keys: u64,
    pub common_prefixes: u64,
    /// The listing reached a page without a continuation token.
    pub complete: bool,
    pub stats: WorkerStats,
    pub elapsed: Duration,
    pub timeline: Vec<Point>,
}

pub async fn run_list(shared: Arc<Shared>, plan: ListPlan) -> ListOutcome {
    let mut client = Client::new(shared.clone());
    let mut out = ListOutcome {
        pages: 0,
        keys: 0,
        common_prefixes: 0,
        complete: false,
        stats: WorkerStats::default(),
        elapsed: Duration::ZERO,
        timeline: Vec::new(),
    };
    let monitor = Monitor::start(shared.clone(), "list", None);
    let started = Instant::now();
    let deadline = started + plan.duration;
    let mut token: Option<String> = None;
    'pages: while out.pages < plan.max_pages && Instant::now() < deadline && !shared.stopped() {
        let query = s3::list_query(plan.max_keys, &plan.prefix, token.as_deref());
        for attempt in 1..=MAX_LIST_PAGE_ATTEMPTS {
            let t = Instant::now();
            let result = client.list_page(&plan.bucket, &query).await;
            let target = format!("{} page {}", plan.bucket, out.pages + 1);
            match result {
                Ok((page, body_bytes)) => {
                    shared.account(0, &mut out.stats, OpKind::List, &target, t, Ok(body_bytes));
                    out.pages += 1;
                    out.keys += page.keys;
                    out.common_prefixes += page.common_prefixes;
                    token = page.next_token;
                    if token.is_none() {
                        out.complete = true;
                        break 'pages;
                    }
                    continue 'pages;
                }
                Err(f) => {
                    // 4xx and unusable bodies will not get better on a retry.
                    let retry = matches!(f.kind, ErrorKind::Io | ErrorKind::Timeout)
                        || matches!(f.kind, ErrorKind::Status(s) if s >= 500);
                    shared.account(0, &mut out.stats, OpKind::List, &target, t, Err(f));
                    if !retry || attempt == MAX_LIST_PAGE_ATTEMPTS {
                        break 'pages;
                    }
                }
            }
        }
    }
    out.elapsed = started.elapsed();
    out.timeline = monitor.finish().await;
    out
}

async fn join_all(workers: Vec<JoinHandle<WorkerStats>>) -> WorkerStats {
    let mut total = WorkerStats::default();
    for w in workers {
        match w.await {
            Ok(stats) => total.merge(&stats),
            // A worker cannot panic on server input; if one did, say so loudly.
            Err(e) => eprintln!("error: a worker failed: {e}"),
        }
    }
    total
}
