//! The workloads: timed PUT/GET mixes over a key space, fill (create N objects as
//! fast as possible) and list (page through a bucket). Each worker owns one
//! connection and its own counters; they are merged when the run ends.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Barrier;
use tokio::task::JoinHandle;

use crate::client::{Client, Shared};
use crate::s3;
use crate::stats::{ErrorKind, OpKind, WorkerStats};

/// Attempts at one list page before the listing gives up (5xx, timeouts, resets).
pub const MAX_LIST_PAGE_ATTEMPTS: u32 = 3;

/// The object every PUT sends: `size_bytes` of pseudo-random bytes (so nothing on
/// the way can compress it), one copy shared by all workers.
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

    /// The next number, or `None` past the limit.
    fn take(&self) -> Option<u64> {
        let n = self.issued.fetch_add(1, Ordering::Relaxed);
        (n < self.limit).then_some(n)
    }
}

/// A timed run over a key space of `objects` keys.
#[derive(Debug, Clone)]
pub struct TimedPlan {
    pub bucket: String,
    pub prefix: String,
    pub size_bytes: u64,
    pub objects: u64,
    pub concurrency: usize,
    pub duration: Duration,
    pub max_requests: Option<u64>,
    /// Share of GETs among requests, 0..=100 (0: put, 100: get).
    pub get_percent: u32,
}

pub struct Outcome {
    pub stats: WorkerStats,
    pub elapsed: Duration,
}

/// Runs `plan`: all connections open first, then the clock starts.
pub async fn run_timed(shared: Arc<Shared>, plan: TimedPlan, payload: Arc<[u8]>) -> Outcome {
    assert!(plan.objects > 0 && plan.concurrency > 0 && plan.get_percent <= 100);
    let plan = Arc::new(plan);
    let barrier = Arc::new(Barrier::new(plan.concurrency + 1));
    let tickets = Arc::new(Tickets::new(plan.max_requests));
    let mut workers = Vec::with_capacity(plan.concurrency);
    for worker in 0..plan.concurrency {
        let (shared, plan, payload) = (shared.clone(), plan.clone(), payload.clone());
        let (barrier, tickets) = (barrier.clone(), tickets.clone());
        workers.push(tokio::spawn(async move {
            let mut client = Client::new(shared.clone());
            // A failed connect is retried by the first request, which counts it.
            let _ = client.connect().await;
            let mut stats = WorkerStats::default();
            let mut rng = fastrand::Rng::with_seed(0x5eed_0000 + worker as u64);
            barrier.wait().await;
            let deadline = Instant::now() + plan.duration;
            while Instant::now() < deadline && !shared.stopped() && tickets.take().is_some() {
                let key = s3::object_key(&plan.prefix, rng.u64(0..plan.objects));
                let started = Instant::now();
                if rng.u32(0..100) < plan.get_percent {
                    let result = client.get_object(&plan.bucket, &key, plan.size_bytes).await;
                    shared.account(&mut stats, OpKind::Get, &key, started, result);
                } else {
                    let result = client.put_object(&plan.bucket, &key, &payload).await;
                    shared.account(&mut stats, OpKind::Put, &key, started, result);
                }
            }
            stats
        }));
    }
    barrier.wait().await;
    let started = Instant::now();
    let stats = join_all(workers).await;
    Outcome { stats, elapsed: started.elapsed() }
}

/// A fill: PUT objects `0..count` once each, as fast as `concurrency` allows;
/// each object is the payload given to [`run_fill`].
#[derive(Debug, Clone)]
pub struct FillPlan {
    pub bucket: String,
    pub prefix: String,
    pub count: u64,
    pub concurrency: usize,
    pub duration: Duration,
}

pub async fn run_fill(shared: Arc<Shared>, plan: FillPlan, payload: Arc<[u8]>) -> Outcome {
    assert!(plan.concurrency > 0);
    let plan = Arc::new(plan);
    let next_index = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = started + plan.duration;
    let mut workers = Vec::with_capacity(plan.concurrency);
    for _ in 0..plan.concurrency {
        let (shared, plan, payload, next_index) = (shared.clone(), plan.clone(), payload.clone(), next_index.clone());
        workers.push(tokio::spawn(async move {
            let mut client = Client::new(shared.clone());
            let mut stats = WorkerStats::default();
            while Instant::now() < deadline && !shared.stopped() {
                let index = next_index.fetch_add(1, Ordering::Relaxed);
                if index >= plan.count {
                    break;
                }
                let key = s3::object_key(&plan.prefix, index);
                let t = Instant::now();
                let result = client.put_object(&plan.bucket, &key, &payload).await;
                shared.account(&mut stats, OpKind::Put, &key, t, result);
            }
            stats
        }));
    }
    let stats = join_all(workers).await;
    Outcome { stats, elapsed: started.elapsed() }
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
}

pub async fn run_list(shared: Arc<Shared>, plan: ListPlan) -> ListOutcome {
    let mut client = Client::new(shared.clone());
    let mut out = ListOutcome { pages: 0, keys: 0, common_prefixes: 0, complete: false, stats: WorkerStats::default(), elapsed: Duration::ZERO };
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
                    shared.account(&mut out.stats, OpKind::List, &target, t, Ok(body_bytes));
                    out.pages += 1;
                    out.keys += page.keys;
                    out.common_prefixes += page.common_prefixes;
                    shared.progress.ok.store(out.keys, Ordering::Relaxed);
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
                    shared.account(&mut out.stats, OpKind::List, &target, t, Err(f));
                    if !retry || attempt == MAX_LIST_PAGE_ATTEMPTS {
                        break 'pages;
                    }
                }
            }
        }
    }
    out.elapsed = started.elapsed();
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

/// Prints a progress line every `every` until aborted: requests so far, the rate
/// over the last interval, errors, and the share done when there is a total.
pub fn spawn_progress(shared: Arc<Shared>, label: &'static str, unit: &'static str, total: Option<u64>, every: Duration) -> Option<JoinHandle<()>> {
    if every.is_zero() {
        return None;
    }
    Some(tokio::spawn(async move {
        let started = Instant::now();
        let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        let mut last = (0u64, started);
        loop {
            ticker.tick().await;
            let (ok, errors) = shared.progress.snapshot();
            let now = Instant::now();
            let rate = (ok - last.0.min(ok)) as f64 / now.duration_since(last.1).as_secs_f64().max(1e-9);
            last = (ok, now);
            let share = total.map(|t| format!(" ({:.1}%)", 100.0 * ok as f64 / t.max(1) as f64)).unwrap_or_default();
            eprintln!(
                "[{label} {:>7.1}s] {ok} {unit}{share}, {rate:.0} {unit}/s, {errors} errors",
                started.elapsed().as_secs_f64()
            );
        }
    }))
}
