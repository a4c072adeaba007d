//! Counters for `/metrics` and readiness for `/health/ready`.
//!
//! Each reactor writes only its own `CoreMetrics` slot (relaxed atomics on
//! a cache line of their own: no lock, no contention on the request path);
//! a scrape sums the slots. Shard figures are published by each shard's
//! owning reactor every `SHARD_STATS_INTERVAL` into `ShardGauges`, since
//! only that reactor may touch the shard.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicU8, Ordering::Relaxed};
use std::time::{Duration, Instant};

/// How often each reactor publishes its shards' figures.
pub const SHARD_STATS_INTERVAL: Duration = Duration::from_secs(1);

/// Operation labels. Names from `Op::name()`, plus the IAM/STS query API,
/// health checks on the S3 port, and requests refused before routing.
/// A name missing here is counted as `Other` (never a panic).
pub const OPS: &[&str] = &[
    "ListBuckets", "CreateBucket", "HeadBucket", "DeleteBucket", "GetBucketLocation",
    "GetBucketVersioning", "PutBucketVersioning", "GetBucketTagging", "PutBucketTagging",
    "DeleteBucketTagging", "GetObjectLockConfiguration", "PutObjectLockConfiguration",
    "GetObjectTagging", "PutObjectTagging", "DeleteObjectTagging", "GetObjectRetention",
    "PutObjectRetention", "GetObjectLegalHold", "PutObjectLegalHold", "GetObjectAttributes",
    "GetBucketAcl", "GetObjectAcl", "GetBucketCors", "PutBucketCors", "DeleteBucketCors",
    "GetBucketLogging", "PutBucketLogging", "GetBucketLifecycleConfiguration",
    "PutBucketLifecycleConfiguration", "DeleteBucketLifecycle", "GetBucketNotificationConfiguration",
    "PutBucketNotificationConfiguration", "PostObject", "PreflightRequest", "PutBucketAcl",
    "PutObjectAcl", "GetBucketPolicy", "PutBucketPolicy", "DeleteBucketPolicy",
    "GetBucketPolicyStatus", "GetPublicAccessBlock", "PutPublicAccessBlock",
    "DeletePublicAccessBlock", "GetBucketOwnershipControls", "PutBucketOwnershipControls",
    "DeleteBucketOwnershipControls", "ListObjects", "ListObjectsV2", "ListObjectVersions",
    "ListMultipartUploads", "DeleteObjects", "PutObject", "CopyObject", "GetObject", "HeadObject",
    "DeleteObject", "CreateMultipartUpload", "UploadPart", "UploadPartCopy",
    "CompleteMultipartUpload", "AbortMultipartUpload", "ListParts", "SelectObjectContent",
    "RestoreObject",
    OP_IAM, OP_HEALTH, OP_UNROUTED, OP_FORWARDED, OP_OTHER,
];
/// IAM and STS query API calls (POST `/` signed for `iam` or `sts`).
pub const OP_IAM: &str = "IamStsQuery";
/// `/_tessera/health/*` on the S3 port.
pub const OP_HEALTH: &str = "Health";
/// Requests refused before an operation was known (bad head, bad route, auth).
pub const OP_UNROUTED: &str = "Unrouted";
pub const OP_OTHER: &str = "Other";
/// Object requests proxied to the node that owns the key (`forward`).
pub const OP_FORWARDED: &str = "Forwarded";

/// Status codes counted by their own label; the rest count as `other`.
const STATUSES: &[u16] =
    &[200, 204, 206, 304, 307, 400, 403, 404, 405, 409, 411, 412, 416, 500, 501, 503, 507];
const STATUS_SLOTS: usize = STATUSES.len() + 1;

/// Upper bounds of the latency buckets, in microseconds (then +Inf).
const LATENCY_BUCKETS_US: &[u64] = &[
    500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000, 2_500_000,
    5_000_000, 10_000_000,
];
const LATENCY_SLOTS: usize = LATENCY_BUCKETS_US.len() + 1;

fn counters(n: usize) -> Box<[AtomicU64]> {
    (0..n).map(|_| AtomicU64::new(0)).collect()
}

/// One reactor's counters. Aligned so that two cores never share a line.
#[repr(align(128))]
pub struct CoreMetrics {
    requests: Box<[AtomicU64]>,
    latency: Box<[AtomicU64]>,
    latency_sum_us: Box<[AtomicU64]>,
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
    open_connections: AtomicI64,
    connections: AtomicU64,
    /// The reactor's hot-object cache, published every `SHARD_STATS_INTERVAL`.
    cache_hits: AtomicU64,
    cache_misses: AtomicU64,
    cache_bytes: AtomicU64,
    cache_entries: AtomicU64,
    cache_evictions: AtomicU64,
    /// MD5 blocks hashed in SIMD lanes and alone (`md5x`), published likewise.
    md5_simd_blocks: AtomicU64,
    md5_scalar_blocks: AtomicU64,
    md5_simd_slots: AtomicU64,
    /// Failed TLS handshakes, by listener and `TLS_FAILURE_REASONS`.
    tls_failures: Box<[AtomicU64]>,
    /// Bucket notifications (`notify`): events waiting in this reactor's
    /// shards' queues (published every `SHARD_STATS_INTERVAL`), events
    /// delivered, failed delivery attempts, and the sum of the delivered
    /// events' lag from their write to the receiver's 2xx.
    notify_pending: AtomicU64,
    notify_delivered: AtomicU64,
    notify_failed: AtomicU64,
    notify_lag_ms_sum: AtomicU64,
    /// Bucket replication (`replication::worker`): entries and bytes
    /// waiting on this reactor's shards and the age of the oldest
    /// (published by the worker), entries sent and their bytes, entries
    /// failed for good (FAILED), failed attempts to be retried, the sum of
    /// sent entries' lag, and the last error seen.
    pub repl_pending: AtomicU64,
    pub repl_pending_bytes: AtomicU64,
    pub repl_lag_ms: AtomicU64,
    pub repl_sent: AtomicU64,
    pub repl_sent_bytes: AtomicU64,
    pub repl_failed: AtomicU64,
    pub repl_retries: AtomicU64,
    pub repl_lag_ms_sum: AtomicU64,
    pub repl_last_error: std::sync::Mutex<String>,
    pub repl_backfilled: AtomicU64,
    pub repl_backfill_walking: AtomicU64,
    pub repl_requeued: AtomicU64,
    pub repl_failed_retrying: AtomicU64,
    /// Replication attempts sent as a multipart upload (over the threshold).
    pub repl_multipart: AtomicU64,
    /// Lifecycle (`lifecycle`): entries its walks visited (index entries,
    /// or objects, versions and uploads on a full walk), and entries the
    /// backfill indexed (a bucket that gained a configuration).
    pub lc_visited: AtomicU64,
    pub lc_backfilled: AtomicU64,
}

/// Why a TLS handshake failed (`tessera_tls_handshake_failures_total{reason}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsFailure {
    /// The client sent plain HTTP (answered with a 400).
    PlainHttp = 0,
    /// It did not finish within `tls::TLS_HANDSHAKE_TIMEOUT`.
    Timeout = 1,
    /// It closed the connection (or the socket failed) mid-handshake.
    Closed = 2,
    /// rustls refused it: garbage, no shared version or cipher, bad alert.
    Protocol = 3,
}
pub const TLS_FAILURE_REASONS: [&str; 4] = ["plain_http", "timeout", "closed", "protocol"];
/// Listeners whose handshakes are counted (`listener` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listener {
    S3 = 0,
    Admin = 1,
}
pub const LISTENERS: [&str; 2] = ["s3", "admin"];

impl CoreMetrics {
    fn new() -> Self {
        CoreMetrics {
            requests: counters(OPS.len() * STATUS_SLOTS),
            latency: counters(OPS.len() * LATENCY_SLOTS),
            latency_sum_us: counters(OPS.len()),
            bytes_in: AtomicU64::new(0),
            bytes_out: AtomicU64::new(0),
            open_connections: AtomicI64::new(0),
            connections: AtomicU64::new(0),
            cache_hits: AtomicU64::new(0),
            cache_misses: AtomicU64::new(0),
            cache_bytes: AtomicU64::new(0),
            cache_entries: AtomicU64::new(0),
            cache_evictions: AtomicU64::new(0),
            md5_simd_blocks: AtomicU64::new(0),
            md5_scalar_blocks: AtomicU64::new(0),
            md5_simd_slots: AtomicU64::new(0),
            tls_failures: counters(LISTENERS.len() * TLS_FAILURE_REASONS.len()),
            notify_pending: AtomicU64::new(0),
            notify_delivered: AtomicU64::new(0),
            notify_failed: AtomicU64::new(0),
            notify_lag_ms_sum: AtomicU64::new(0),
            repl_pending: AtomicU64::new(0),
            repl_pending_bytes: AtomicU64::new(0),
            repl_lag_ms: AtomicU64::new(0),
            repl_sent: AtomicU64::new(0),
            repl_sent_bytes: AtomicU64::new(0),
            repl_failed: AtomicU64::new(0),
            repl_retries: AtomicU64::new(0),
            repl_lag_ms_sum: AtomicU64::new(0),
            repl_last_error: std::sync::Mutex::new(String::new()),
            repl_backfilled: AtomicU64::new(0),
            repl_backfill_walking: AtomicU64::new(0),
            repl_requeued: AtomicU64::new(0),
            repl_failed_retrying: AtomicU64::new(0),
            repl_multipart: AtomicU64::new(0),
            lc_visited: AtomicU64::new(0),
            lc_backfilled: AtomicU64::new(0),
        }
    }

    pub fn publish_notify_pending(&self, n: u64) {
        self.notify_pending.store(n, Relaxed);
    }

    /// `n` events delivered, whose lags add up to `lag_ms`.
    pub fn notify_delivered(&self, n: u64, lag_ms: u64) {
        self.notify_delivered.fetch_add(n, Relaxed);
        self.notify_lag_ms_sum.fetch_add(lag_ms, Relaxed);
    }

    pub fn notify_failed(&self) {
        self.notify_failed.fetch_add(1, Relaxed);
    }

    pub fn add_bytes(&self, read: u64, written: u64) {
        self.bytes_in.fetch_add(read, Relaxed);
        self.bytes_out.fetch_add(written, Relaxed);
    }

    pub fn connection_opened(&self) {
        self.open_connections.fetch_add(1, Relaxed);
        self.connections.fetch_add(1, Relaxed);
    }

    pub fn tls_handshake_failed(&self, listener: Listener, why: TlsFailure) {
        self.tls_failures[listener as usize * TLS_FAILURE_REASONS.len() + why as usize].fetch_add(1, Relaxed);
    }

    pub fn connection_closed(&self) {
        self.open_connections.fetch_sub(1, Relaxed);
    }

    pub fn publish_md5(&self, s: &tessera_proto::md5x::PoolStats) {
        self.md5_simd_blocks.store(s.simd_blocks, Relaxed);
        self.md5_scalar_blocks.store(s.scalar_blocks, Relaxed);
        self.md5_simd_slots.store(s.simd_slots, Relaxed);
    }

    pub fn publish_cache(&self, s: &crate::hotcache::CacheStats) {
        self.cache_hits.store(s.hits, Relaxed);
        self.cache_misses.store(s.misses, Relaxed);
        self.cache_bytes.store(s.bytes, Relaxed);
        self.cache_entries.store(s.entries, Relaxed);
        self.cache_evictions.store(s.evictions, Relaxed);
    }
}

/// What `/health/ready` and `/admin/v1/info` know of a shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum ShardState {
    Starting = 0,
    Open = 1,
    /// It could not be opened; its requests answer 503.
    Offline = 2,
}

impl ShardState {
    pub fn name(self) -> &'static str {
        match self {
            ShardState::Starting => "starting",
            ShardState::Open => "open",
            ShardState::Offline => "offline",
        }
    }
}

/// A shard's figures as its owner last published them.
#[derive(Default)]
pub struct ShardGauges {
    state: AtomicU8,
    pub live_bytes: AtomicU64,
    pub segment_bytes: AtomicU64,
    pub segments: AtomicU64,
    pub syncs: AtomicU64,
    pub zeros_ahead: AtomicU64,
    pub allocated_ahead: AtomicU64,
    pub reused_segments: AtomicU64,
    pub spare_segments: AtomicU64,
    pub entries: AtomicU64,
    pub read_only: AtomicBool,
    pub free_bytes: AtomicU64,
    pub corrupt_reads: AtomicU64,
    /// Compaction, scrub, sync latency and errors: published every
    /// second, read by scrapes; a lock no request takes.
    detail: std::sync::Mutex<ShardDetail>,
}

/// The figures of a shard's background work, as last published.
#[derive(Default, Clone)]
pub struct ShardDetail {
    pub compaction: tessera_io::compact::CompactionStats,
    pub scrub: tessera_io::scrub::ScrubStats,
    pub sync_latency: tessera_io::SyncLatency,
    /// Log resets after a failed write or sync.
    pub resets: u64,
    /// When the count of compaction (scrub) passes last grew, in Unix
    /// seconds, seen at the publishing tick (0: not since start).
    pub compaction_last_pass_unix: i64,
    pub scrub_last_pass_unix: i64,
}

impl ShardGauges {
    pub fn state(&self) -> ShardState {
        match self.state.load(Relaxed) {
            1 => ShardState::Open,
            2 => ShardState::Offline,
            _ => ShardState::Starting,
        }
    }

    pub fn set_offline(&self) {
        self.state.store(ShardState::Offline as u8, Relaxed);
    }

    /// The background-work figures as last published.
    pub fn detail(&self) -> ShardDetail {
        self.detail.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn publish(&self, s: &tessera_io::ShardStats) {
        {
            let now = tessera_proto::time::now_unix_secs();
            let mut d = self.detail.lock().unwrap_or_else(|e| e.into_inner());
            if s.compaction.passes > d.compaction.passes {
                d.compaction_last_pass_unix = now;
            }
            if s.scrub.passes > d.scrub.passes {
                d.scrub_last_pass_unix = now;
            }
            d.compaction = s.compaction.clone();
            d.scrub = s.scrub.clone();
            d.sync_latency = s.sync_latency;
            d.resets = s.resets;
        }
        self.live_bytes.store(s.live_bytes, Relaxed);
        self.segment_bytes.store(s.segment_bytes, Relaxed);
        self.segments.store(u64::from(s.segments), Relaxed);
        self.syncs.store(s.syncs, Relaxed);
        self.zeros_ahead.store(s.prepare.bytes, Relaxed);
        self.allocated_ahead.store(s.prepare.allocated_bytes, Relaxed);
        self.reused_segments.store(s.prepare.reused_segments, Relaxed);
        self.spare_segments.store(u64::from(s.spare_segments), Relaxed);
        self.entries.store(s.entries, Relaxed);
        self.read_only.store(s.read_only, Relaxed);
        self.free_bytes.store(s.free_bytes, Relaxed);
        self.corrupt_reads.store(s.corrupt_reads, Relaxed);
        self.state.store(ShardState::Open as u8, Relaxed);
    }
}

/// The node's counters: one slot per reactor, one per shard.
pub struct NodeMetrics {
    cores: Box<[CoreMetrics]>,
    pub shards: Box<[ShardGauges]>,
    /// The data dir of each shard (`disk` label); empty in unit tests.
    shard_disks: Vec<String>,
    op_index: HashMap<&'static str, usize, foldhash::fast::RandomState>,
    /// Every reactor accepts (set once all are ready).
    serving: AtomicBool,
    /// A stop signal arrived: not ready any more, draining.
    stopping: AtomicBool,
    pub started: Instant,
    pub started_unix_secs: i64,
}

impl NodeMetrics {
    pub fn new(cores: usize, shards: usize) -> Self {
        NodeMetrics {
            cores: (0..cores).map(|_| CoreMetrics::new()).collect(),
            shards: (0..shards).map(|_| ShardGauges::default()).collect(),
            shard_disks: Vec::new(),
            op_index: OPS.iter().enumerate().map(|(i, n)| (*n, i)).collect(),
            serving: AtomicBool::new(false),
            stopping: AtomicBool::new(false),
            started: Instant::now(),
            started_unix_secs: tessera_proto::time::now_unix_secs(),
        }
    }

    /// Names each shard's data dir (the `disk` label of per-disk figures).
    pub fn with_disks(mut self, shard_disks: Vec<String>) -> Self {
        self.shard_disks = shard_disks;
        self
    }

    /// The data dir of shard `i` ("" when unknown).
    pub fn disk_of(&self, i: usize) -> &str {
        self.shard_disks.get(i).map_or("", String::as_str)
    }

    /// This reactor's slot (a core past the table shares the last one's:
    /// never a panic).
    pub fn core(&self, core: usize) -> &CoreMetrics {
        &self.cores[core.min(self.cores.len() - 1)]
    }

    /// Counts one answered request.
    pub fn record(&self, core: usize, op: &str, status: u16, elapsed: Duration) {
        let c = self.core(core);
        let op = self.op_index.get(op).copied().unwrap_or(OPS.len() - 1);
        let s = STATUSES.iter().position(|&x| x == status).unwrap_or(STATUSES.len());
        c.requests[op * STATUS_SLOTS + s].fetch_add(1, Relaxed);
        let us = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        let b = LATENCY_BUCKETS_US.iter().position(|&x| us <= x).unwrap_or(LATENCY_BUCKETS_US.len());
        c.latency[op * LATENCY_SLOTS + b].fetch_add(1, Relaxed);
        c.latency_sum_us[op].fetch_add(us, Relaxed);
    }

    pub fn set_serving(&self) {
        self.serving.store(true, Relaxed);
    }

    pub fn set_stopping(&self) {
        self.stopping.store(true, Relaxed);
    }

    pub fn stopping(&self) -> bool {
        self.stopping.load(Relaxed)
    }

    /// Ready: every reactor accepts, every shard is open, no stop asked.
    /// The reason when not.
    pub fn readiness(&self) -> Result<(), String> {
        if self.stopping() {
            return Err("stopping".into());
        }
        if !self.serving.load(Relaxed) {
            return Err("starting".into());
        }
        let not_open: Vec<String> = self
            .shards
            .iter()
            .enumerate()
            .filter(|(_, g)| g.state() != ShardState::Open)
            .map(|(i, g)| format!("shard {i} {}", g.state().name()))
            .collect();
        if not_open.is_empty() {
            Ok(())
        } else {
            Err(not_open.join(", "))
        }
    }

    /// Failed TLS handshakes by listener and reason, summed over cores.
    pub fn tls_failures(&self, listener: usize, reason: usize) -> u64 {
        self.sum(|c| c.tls_failures.get(listener * TLS_FAILURE_REASONS.len() + reason).map_or(0, |a| a.load(Relaxed)))
    }

    fn sum(&self, f: impl Fn(&CoreMetrics) -> u64) -> u64 {
        self.cores.iter().map(f).fold(0u64, u64::wrapping_add)
    }

    /// The Prometheus text exposition (format 0.0.4) of every metric.
    /// `queues`: requests waiting in each core's cross-core queue now.
    pub fn render(&self, queues: &[usize]) -> String {
        let mut out = String::with_capacity(32 * 1024);
        self.render_requests(&mut out);
        self.render_latency(&mut out);
        let gauge = |out: &mut String, name: &str, kind: &str, help: &str, v: u64| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}");
        };
        gauge(&mut out, "tessera_received_bytes_total", "counter", "Bytes read from S3 clients.", self.sum(|c| c.bytes_in.load(Relaxed)));
        gauge(&mut out, "tessera_sent_bytes_total", "counter", "Bytes written to S3 clients.", self.sum(|c| c.bytes_out.load(Relaxed)));
        let open: i64 = self.cores.iter().map(|c| c.open_connections.load(Relaxed)).sum();
        gauge(&mut out, "tessera_open_connections", "gauge", "S3 connections open now.", open.max(0) as u64);
        gauge(&mut out, "tessera_connections_total", "counter", "S3 connections accepted.", self.sum(|c| c.connections.load(Relaxed)));
        self.render_shards(&mut out);
        crate::metrics_detail::render(self, &mut out, queues);
        self.render_cache(&mut out);
        gauge(&mut out, "tessera_process_resident_memory_bytes", "gauge", "Resident set size of the process.", rss_bytes());
        gauge(&mut out, "tessera_uptime_seconds", "gauge", "Seconds since the process started.", self.started.elapsed().as_secs());
        gauge(&mut out, "tessera_ready", "gauge", "1 when /health/ready answers 200.", u64::from(self.readiness().is_ok()));
        let _ = writeln!(
            out,
            "# HELP tessera_build_info The running version.\n# TYPE tessera_build_info gauge\ntessera_build_info{{version=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION")
        );
        out
    }

    fn render_requests(&self, out: &mut String) {
        out.push_str("# HELP tessera_requests_total Requests answered, by operation and status.\n");
        out.push_str("# TYPE tessera_requests_total counter\n");
        for (op, name) in OPS.iter().enumerate() {
            for s in 0..STATUS_SLOTS {
                let n = self.sum(|c| c.requests[op * STATUS_SLOTS + s].load(Relaxed));
                if n == 0 {
                    continue;
                }
                let status = STATUSES.get(s).map_or("other".to_string(), |x| x.to_string());
                let _ = writeln!(out, "tessera_requests_total{{op=\"{name}\",status=\"{status}\"}} {n}");
            }
        }
    }

    fn render_latency(&self, out: &mut String) {
        let name = "tessera_request_duration_seconds";
        let _ = writeln!(out, "# HELP {name} Time from a request's head to the end of its response, by operation.");
        let _ = writeln!(out, "# TYPE {name} histogram");
        for (op, label) in OPS.iter().enumerate() {
            let counts: Vec<u64> =
                (0..LATENCY_SLOTS).map(|b| self.sum(|c| c.latency[op * LATENCY_SLOTS + b].load(Relaxed))).collect();
            let total: u64 = counts.iter().sum();
            if total == 0 {
                continue;
            }
            let mut cumulative = 0u64;
            for (b, n) in counts.iter().enumerate() {
                cumulative += n;
                let le = LATENCY_BUCKETS_US.get(b).map_or("+Inf".to_string(), |us| format!("{}", *us as f64 / 1e6));
                let _ = writeln!(out, "{name}_bucket{{op=\"{label}\",le=\"{le}\"}} {cumulative}");
            }
            let sum_us = self.sum(|c| c.latency_sum_us[op].load(Relaxed));
            let _ = writeln!(out, "{name}_sum{{op=\"{label}\"}} {}", sum_us as f64 / 1e6);
            let _ = writeln!(out, "{name}_count{{op=\"{label}\"}} {total}");
        }
    }

    /// The hot-object caches, MD5 lanes and notification queues, per reactor (`core` label).
    fn render_cache(&self, out: &mut String) {
        type Field = fn(&CoreMetrics) -> u64;
        let fields: [(&str, &str, Field); 28] = [
            ("tessera_lifecycle_visited_entries_total", "Entries lifecycle passes visited: index entries, or every object, version and upload of a full walk.", |c| c.lc_visited.load(Relaxed)),
            ("tessera_lifecycle_backfilled_entries_total", "Objects and uploads a bucket held when it gained a lifecycle configuration, indexed by its backfill.", |c| c.lc_backfilled.load(Relaxed)),
            ("tessera_replication_pending_entries", "Bucket replication entries queued on this reactor's shards, not sent yet.", |c| c.repl_pending.load(Relaxed)),
            ("tessera_replication_pending_bytes", "Object bytes the queued replication entries will send.", |c| c.repl_pending_bytes.load(Relaxed)),
            ("tessera_replication_lag_milliseconds", "Age of the oldest queued replication entry on this reactor's shards (0: none).", |c| c.repl_lag_ms.load(Relaxed)),
            ("tessera_replication_sent_total", "Replication entries the remote accepted.", |c| c.repl_sent.load(Relaxed)),
            ("tessera_replication_sent_bytes_total", "Object bytes replicated.", |c| c.repl_sent_bytes.load(Relaxed)),
            ("tessera_replication_failed_total", "Replication entries failed for good (versions marked FAILED).", |c| c.repl_failed.load(Relaxed)),
            ("tessera_replication_retries_total", "Replication attempts that failed and will be retried.", |c| c.repl_retries.load(Relaxed)),
            ("tessera_replication_backfilled_total", "Versions written before their bucket's replication configuration that its ExistingObjectReplication backfill queued.", |c| c.repl_backfilled.load(Relaxed)),
            ("tessera_replication_backfill_walking", "Bucket and shard pairs of this reactor whose existing-object backfill is not done yet.", |c| c.repl_backfill_walking.load(Relaxed)),
            ("tessera_replication_requeued_total", "FAILED versions queued again by a resync (admin call) or an automatic retry.", |c| c.repl_requeued.load(Relaxed)),
            ("tessera_replication_failed_retry_scheduled", "FAILED versions the remote refused that will be sent again automatically (backoff; see the admin call).", |c| c.repl_failed_retrying.load(Relaxed)),
            ("tessera_replication_multipart_attempts_total", "Replication attempts of versions over the multipart threshold (5 GiB), each sent as a multipart upload.", |c| c.repl_multipart.load(Relaxed)),
            ("tessera_replication_lag_milliseconds_total", "Sum over replicated entries of the time from their write to the remote's answer.", |c| c.repl_lag_ms_sum.load(Relaxed)),
            ("tessera_notify_pending_events", "Bucket notification events queued on this reactor's shards, not delivered yet.", |c| c.notify_pending.load(Relaxed)),
            ("tessera_notify_delivered_total", "Bucket notification events delivered (the target answered 2xx).", |c| c.notify_delivered.load(Relaxed)),
            ("tessera_notify_failed_attempts_total", "Bucket notification deliveries that failed and will be retried.", |c| c.notify_failed.load(Relaxed)),
            ("tessera_notify_lag_milliseconds_total", "Sum over delivered events of the time from their write to their delivery.", |c| c.notify_lag_ms_sum.load(Relaxed)),
            ("tessera_core_open_connections", "S3 connections this reactor serves now.", |c| c.open_connections.load(Relaxed).max(0) as u64),
            ("tessera_md5_simd_blocks_total", "64-byte MD5 blocks of request bodies hashed in SIMD lanes (several bodies at once).", |c| c.md5_simd_blocks.load(Relaxed)),
            ("tessera_md5_scalar_blocks_total", "64-byte MD5 blocks of pooled request bodies hashed one body at a time.", |c| c.md5_scalar_blocks.load(Relaxed)),
            ("tessera_md5_simd_slots_total", "Block slots of the SIMD MD5 steps run (8 or 16 per step); simd_blocks / simd_slots is how full the vector lanes were.", |c| c.md5_simd_slots.load(Relaxed)),
            ("tessera_cache_hits_total", "GET/HEAD reads served by the hot-object cache.", |c| c.cache_hits.load(Relaxed)),
            ("tessera_cache_misses_total", "GET/HEAD reads the hot-object cache could not serve.", |c| c.cache_misses.load(Relaxed)),
            ("tessera_cache_evictions_total", "Entries evicted from the hot-object cache.", |c| c.cache_evictions.load(Relaxed)),
            ("tessera_cache_bytes", "Bytes held by the hot-object cache.", |c| c.cache_bytes.load(Relaxed)),
            ("tessera_cache_entries", "Objects held by the hot-object cache.", |c| c.cache_entries.load(Relaxed)),
        ];
        for (name, help, f) in fields {
            let kind = if name.ends_with("_total") { "counter" } else { "gauge" };
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for (i, c) in self.cores.iter().enumerate() {
                let _ = writeln!(out, "{name}{{core=\"{i}\"}} {}", f(c));
            }
        }
    }

    fn render_shards(&self, out: &mut String) {
        type Field = fn(&ShardGauges) -> u64;
        let fields: [(&str, &str, Field); 12] = [
            ("tessera_shard_live_bytes", "Bytes of live records in the shard's segments.", |g| g.live_bytes.load(Relaxed)),
            ("tessera_shard_segment_bytes", "Bytes of the shard's segments (live and garbage).", |g| g.segment_bytes.load(Relaxed)),
            ("tessera_shard_segments", "Segment files of the shard.", |g| g.segments.load(Relaxed)),
            ("tessera_shard_syncs_total", "fdatasync calls of the shard's log since start.", |g| g.syncs.load(Relaxed)),
            ("tessera_shard_zeros_ahead_bytes_total", "Zeros written ahead of the log's head since start, so that small commits' syncs change no file metadata.", |g| g.zeros_ahead.load(Relaxed)),
            ("tessera_shard_allocated_ahead_bytes_total", "Segment bytes allocated (fallocate) ahead of the log's head since start, so that large commits' appends do not extend the file.", |g| g.allocated_ahead.load(Relaxed)),
            ("tessera_shard_reused_segments_total", "Segments started since start in a retired segment's file, whose blocks were written already (no allocation for their syncs to commit).", |g| g.reused_segments.load(Relaxed)),
            ("tessera_shard_spare_segments", "Retired segment files kept to start new segments in.", |g| g.spare_segments.load(Relaxed)),
            ("tessera_shard_entries", "Index entries of the shard (all tables).", |g| g.entries.load(Relaxed)),
            ("tessera_shard_free_bytes", "Free bytes on the shard's filesystem at the last check.", |g| g.free_bytes.load(Relaxed)),
            ("tessera_shard_corrupt_reads_total", "Reads that failed a checksum.", |g| g.corrupt_reads.load(Relaxed)),
            ("tessera_shard_read_only", "1 when the shard refuses writes (I/O error or full disk).", |g| u64::from(g.read_only.load(Relaxed))),
        ];
        for (name, help, f) in fields {
            let kind = if name.ends_with("_total") { "counter" } else { "gauge" };
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for (i, g) in self.shards.iter().enumerate() {
                let _ = writeln!(out, "{name}{{shard=\"{i}\"}} {}", f(g));
            }
        }
        let name = "tessera_shard_offline";
        let _ = writeln!(out, "# HELP {name} 1 when the shard could not be opened (its requests answer 503).\n# TYPE {name} gauge");
        for (i, g) in self.shards.iter().enumerate() {
            let _ = writeln!(out, "{name}{{shard=\"{i}\"}} {}", u64::from(g.state() == ShardState::Offline));
        }
    }
}

/// Resident set size from `/proc/self/statm` (0 where it cannot be read).
pub fn rss_bytes() -> u64 {
    let Ok(text) = std::fs::read_to_string("/proc/self/statm") else { return 0 };
    let pages: u64 = text.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    // SAFETY: sysconf reads a system constant.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    pages.saturating_mul(u64::try_from(page).unwrap_or(4096))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_by_op_status_and_latency_bucket() {
        let m = NodeMetrics::new(2, 1);
        m.record(0, "GetObject", 200, Duration::from_micros(700));
        m.record(1, "GetObject", 200, Duration::from_millis(30));
        m.record(1, "NoSuchOp", 418, Duration::from_secs(100));
        m.record(7, "PutObject", 200, Duration::ZERO);
        let text = m.render(&[3, 0]);
        assert!(text.contains("tessera_requests_total{op=\"GetObject\",status=\"200\"} 2\n"), "{text}");
        assert!(text.contains("tessera_requests_total{op=\"Other\",status=\"other\"} 1\n"), "{text}");
        assert!(text.contains("tessera_requests_total{op=\"PutObject\",status=\"200\"} 1\n"), "{text}");
        assert!(text.contains("tessera_request_duration_seconds_bucket{op=\"GetObject\",le=\"0.001\"} 1\n"), "{text}");
        assert!(text.contains("tessera_request_duration_seconds_bucket{op=\"GetObject\",le=\"0.05\"} 2\n"), "{text}");
        assert!(text.contains("tessera_request_duration_seconds_bucket{op=\"GetObject\",le=\"+Inf\"} 2\n"), "{text}");
        assert!(text.contains("tessera_request_duration_seconds_count{op=\"GetObject\"} 2\n"), "{text}");
        assert!(text.contains("tessera_shard_offline{shard=\"0\"} 0\n"), "{text}");
        assert!(text.contains("tessera_cross_core_queue_depth{core=\"0\"} 3\n"), "{text}");
        assert!(text.contains("tessera_shard_sync_duration_seconds_count{shard=\"0\"} 0\n"), "{text}");
    }

    #[test]
    fn ready_only_when_serving_with_every_shard_open() {
        let m = NodeMetrics::new(1, 2);
        assert!(m.readiness().is_err());
        m.set_serving();
        assert!(m.readiness().is_err(), "shards still starting");
        m.shards[0].publish(&tessera_io::ShardStats::default());
        m.shards[1].set_offline();
        assert_eq!(m.readiness(), Err("shard 1 offline".to_string()));
        m.shards[1].publish(&tessera_io::ShardStats::default());
        assert_eq!(m.readiness(), Ok(()));
        m.set_stopping();
        assert!(m.readiness().is_err());
    }
}
