//! tessera-bench: a load generator for any S3 endpoint (path-style, plain HTTP).
//!
//! Workers each own one keep-alive connection and sign every request with
//! `tessera_proto::sigv4` (payload `UNSIGNED-PAYLOAD`, so hashing never limits the
//! client). Latencies go to per-worker hdrhistograms merged at the end.

mod client;
mod http;
mod report;
mod s3;
mod stats;
mod units;
mod workload;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use serde_json::{json, Value};

use client::{Client, Shared};
use report::Report;
use stats::{ErrorLog, OpKind, Progress};
use units::{format_size, parse_duration, parse_size};
use workload::{FillPlan, ListPlan, TimedPlan};

/// Most connections (= concurrency) a run may open.
const MAX_CONCURRENCY: usize = 4096;
/// Most runtime threads.
const MAX_THREADS: usize = 256;
/// Largest key space of put/get/mixed.
const MAX_OBJECTS: u64 = 1_000_000_000;

#[derive(Parser, Debug)]
#[command(
    name = "tessera-bench",
    version,
    about = "Load generator for any S3 endpoint (path-style, http://)",
    after_help = "Sizes take B, KiB, MiB, GiB (or KB, MB, GB); durations ms, s, m, h. \
                  MB/s in reports is 10^6 bytes per second; latencies are in microseconds.\n\
                  Exit status: 0 when every request succeeded, 1 when some failed, 2 on setup errors."
)]
struct Cli {
    /// S3 endpoint, http://host:port (path-style addressing).
    #[arg(long, global = true, default_value = "http://127.0.0.1:9000")]
    endpoint: String,
    /// Access key id [env: AWS_ACCESS_KEY_ID].
    #[arg(long, global = true, env = "AWS_ACCESS_KEY_ID", hide_env = true)]
    access_key: Option<String>,
    /// Secret key [env: AWS_SECRET_ACCESS_KEY]; prefer the environment (it is redacted
    /// from reports either way).
    #[arg(long, global = true, env = "AWS_SECRET_ACCESS_KEY", hide_env = true, hide_env_values = true)]
    secret_key: Option<String>,
    /// Region of the signature scope.
    #[arg(long, global = true, default_value = "us-east-1")]
    region: String,
    /// Client runtime threads (default: the number of cores).
    #[arg(long, global = true)]
    threads: Option<usize>,
    /// Limit on each request, connect to last body byte.
    #[arg(long, global = true, default_value = "30s", value_parser = parse_duration)]
    timeout: Duration,
    /// Print a progress line this often (0s: never).
    #[arg(long, global = true, default_value = "5s", value_parser = parse_duration)]
    progress: Duration,
    /// Also write the report as JSON to this file.
    #[arg(long, global = true)]
    json: Option<PathBuf>,
    #[command(subcommand)]
    workload: Workload,
}

#[derive(Subcommand, Debug)]
enum Workload {
    /// PUT objects of one size over a key space for a duration (creates the bucket).
    Put(TimedArgs),
    /// PUT the key space once (not timed), then GET random keys for a duration,
    /// checking each body's length.
    Get(ReadArgs),
    /// A GET/PUT mix over a key space written first (not timed).
    Mixed(MixedArgs),
    /// Create --count objects once each as fast as possible (creates the bucket).
    Fill(FillArgs),
    /// Page through a bucket with ListObjectsV2 continuation tokens.
    List(ListArgs),
}

#[derive(Args, Debug, Clone)]
struct TimedArgs {
    #[arg(long)]
    bucket: String,
    /// Object size.
    #[arg(long, default_value = "4KiB", value_parser = parse_size)]
    size: u64,
    /// Requests in flight, one connection each.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// How long the timed phase runs.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    duration: Duration,
    /// Key space: keys are <prefix><index>, index in 0..objects.
    #[arg(long, default_value_t = 1000)]
    objects: u64,
    #[arg(long, default_value = "tessera-bench/")]
    prefix: String,
    /// Stop after this many requests even if time remains.
    #[arg(long)]
    max_requests: Option<u64>,
}

#[derive(Args, Debug, Clone)]
struct ReadArgs {
    #[command(flatten)]
    timed: TimedArgs,
    /// Do not write the key space first (it exists with objects of --size).
    #[arg(long)]
    skip_prefill: bool,
}

#[derive(Args, Debug, Clone)]
struct MixedArgs {
    #[command(flatten)]
    read: ReadArgs,
    /// Percent of requests that are GETs; the rest are PUTs.
    #[arg(long, default_value_t = 70, value_parser = clap::value_parser!(u32).range(0..=100))]
    get_percent: u32,
}

#[derive(Args, Debug, Clone)]
struct FillArgs {
    #[arg(long)]
    bucket: String,
    /// Objects to create: <prefix><index>, index in 0..count.
    #[arg(long)]
    count: u64,
    #[arg(long, default_value = "0", value_parser = parse_size)]
    size: u64,
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    #[arg(long, default_value = "tessera-bench/")]
    prefix: String,
    /// Give up after this long even if objects remain.
    #[arg(long, default_value = "1h", value_parser = parse_duration)]
    duration: Duration,
}

#[derive(Args, Debug, Clone)]
struct ListArgs {
    #[arg(long)]
    bucket: String,
    /// Keys per page (S3 returns at most 1000).
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=1000))]
    max_keys: u32,
    /// List only keys under this prefix.
    #[arg(long, default_value = "")]
    prefix: String,
    /// Stop after this many pages.
    #[arg(long, default_value_t = 1_000_000)]
    max_pages: u64,
    /// Stop after this long.
    #[arg(long, default_value = "1h", value_parser = parse_duration)]
    duration: Duration,
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let cli = Cli::parse();
    let threads = cli.threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()));
    if threads == 0 || threads > MAX_THREADS {
        eprintln!("tessera-bench: --threads must be 1..={MAX_THREADS}");
        return ExitCode::from(2);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().worker_threads(threads).enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("tessera-bench: cannot start the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(run(cli, threads, report::command_line(&args))) {
        Ok(report) => {
            print!("{}", report.text());
            if report.error_count() > 0 {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            }
        }
        Err(e) => {
            eprintln!("tessera-bench: {e}");
            ExitCode::from(2)
        }
    }
}

async fn run(cli: Cli, threads: usize, command: String) -> Result<Report, String> {
    let endpoint = s3::parse_endpoint(&cli.endpoint)?;
    let access_key = cli.access_key.clone().ok_or("no access key: --access-key or AWS_ACCESS_KEY_ID")?;
    let secret_key = cli.secret_key.clone().ok_or("no secret key: --secret-key or AWS_SECRET_ACCESS_KEY")?;
    let addr: SocketAddr = tokio::net::lookup_host(&endpoint.connect_to)
        .await
        .map_err(|e| format!("resolve {}: {e}", endpoint.connect_to))?
        .next()
        .ok_or_else(|| format!("resolve {}: no address", endpoint.connect_to))?;
    let signer = s3::Signer { access_key, secret_key, region: cli.region.clone(), host: endpoint.authority.clone() };
    let shared = Arc::new(Shared {
        addr,
        signer,
        timeout: cli.timeout,
        progress_every: cli.progress,
        progress: Progress::default(),
        errors: ErrorLog::default(),
        stop: Default::default(),
    });
    {
        let shared = shared.clone();
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                eprintln!("interrupted: finishing the requests in flight");
                shared.stop.store(true, Ordering::Relaxed);
            }
        });
    }
    let mut report = match &cli.workload {
        Workload::Put(a) => run_timed_workload(&shared, "put", a, false, 0).await?,
        Workload::Get(a) => run_timed_workload(&shared, "get", &a.timed, !a.skip_prefill, 100).await?,
        Workload::Mixed(a) => {
            run_timed_workload(&shared, "mixed", &a.read.timed, !a.read.skip_prefill, a.get_percent).await?
        }
        Workload::Fill(a) => run_fill_workload(&shared, a).await?,
        Workload::List(a) => run_list_workload(&shared, a).await?,
    };
    report.command = command;
    report.endpoint = cli.endpoint.clone();
    report.params.push(("threads", json!(threads)));
    report.error_samples = shared.errors.samples();
    if shared.stopped() {
        report.results.push(("interrupted", json!(true)));
    }
    if let Some(path) = &cli.json {
        let text = serde_json::to_string_pretty(&report.json()).map_err(|e| format!("JSON: {e}"))?;
        std::fs::write(path, text + "\n").map_err(|e| format!("write {}: {e}", path.display()))?;
    }
    Ok(report)
}

fn check_concurrency(c: usize) -> Result<(), String> {
    if c == 0 || c > MAX_CONCURRENCY {
        return Err(format!("--concurrency must be 1..={MAX_CONCURRENCY}"));
    }
    Ok(())
}

async fn ensure_bucket(shared: &Arc<Shared>, bucket: &str) -> Result<(), String> {
    s3::check_bucket_name(bucket)?;
    Client::new(shared.clone()).ensure_bucket(bucket).await
}

fn reset_progress(shared: &Shared) {
    shared.progress.ok.store(0, Ordering::Relaxed);
    shared.progress.errors.store(0, Ordering::Relaxed);
}

async fn run_timed_workload(
    shared: &Arc<Shared>,
    name: &'static str,
    a: &TimedArgs,
    prefill: bool,
    get_percent: u32,
) -> Result<Report, String> {
    check_concurrency(a.concurrency)?;
    if a.objects == 0 || a.objects > MAX_OBJECTS {
        return Err(format!("--objects must be 1..={MAX_OBJECTS}"));
    }
    ensure_bucket(shared, &a.bucket).await?;
    let payload = workload::make_payload(a.size);
    if prefill {
        let plan = FillPlan {
            bucket: a.bucket.clone(),
            prefix: a.prefix.clone(),
            count: a.objects,
            concurrency: a.concurrency,
            duration: units::MAX_DURATION,
        };
        eprintln!("prefill: writing {} objects of {} (not timed)", a.objects, format_size(a.size));
        let progress = workload::spawn_progress(shared.clone(), "prefill", "objects", Some(a.objects), shared.progress_every);
        let out = workload::run_fill(shared.clone(), plan, payload.clone()).await;
        progress.inspect(|p| p.abort());
        let put = &out.stats.ops[OpKind::Put.index()];
        if put.error_count() > 0 || put.ok < a.objects {
            return Err(format!("prefill wrote {} of {} objects ({} errors); not starting", put.ok, a.objects, put.error_count()));
        }
        eprintln!("prefill: done in {:.1} s", out.elapsed.as_secs_f64());
        reset_progress(shared);
    }
    let plan = TimedPlan {
        bucket: a.bucket.clone(),
        prefix: a.prefix.clone(),
        size_bytes: a.size,
        objects: a.objects,
        concurrency: a.concurrency,
        duration: a.duration,
        max_requests: a.max_requests,
        get_percent,
    };
    let progress = workload::spawn_progress(shared.clone(), name, "req", None, shared.progress_every);
    let out = workload::run_timed(shared.clone(), plan, payload).await;
    progress.inspect(|p| p.abort());
    let kinds = match get_percent {
        0 => vec![OpKind::Put],
        100 => vec![OpKind::Get],
        _ => vec![OpKind::Get, OpKind::Put],
    };
    let mut params = vec![
        ("bucket", json!(a.bucket)),
        ("size", json!(format_size(a.size))),
        ("size_bytes", json!(a.size)),
        ("concurrency", json!(a.concurrency)),
        ("duration_s", json!(a.duration.as_secs_f64())),
        ("objects", json!(a.objects)),
        ("prefix", json!(a.prefix)),
    ];
    if name == "mixed" {
        params.push(("get_percent", json!(get_percent)));
    }
    if let Some(m) = a.max_requests {
        params.push(("max_requests", json!(m)));
    }
    Ok(new_report(name, params, out.elapsed, out.stats, kinds, vec![]))
}

async fn run_fill_workload(shared: &Arc<Shared>, a: &FillArgs) -> Result<Report, String> {
    check_concurrency(a.concurrency)?;
    ensure_bucket(shared, &a.bucket).await?;
    let plan = FillPlan {
        bucket: a.bucket.clone(),
        prefix: a.prefix.clone(),
        count: a.count,
        concurrency: a.concurrency,
        duration: a.duration,
    };
    let progress = workload::spawn_progress(shared.clone(), "fill", "objects", Some(a.count), shared.progress_every);
    let out = workload::run_fill(shared.clone(), plan, workload::make_payload(a.size)).await;
    progress.inspect(|p| p.abort());
    let put = &out.stats.ops[OpKind::Put.index()];
    let results = vec![
        ("created", json!(put.ok)),
        ("complete", json!(put.ok == a.count)),
        ("objects_per_s", json!(put.ok as f64 / out.elapsed.as_secs_f64().max(1e-9))),
    ];
    let params = vec![
        ("bucket", json!(a.bucket)),
        ("count", json!(a.count)),
        ("size", json!(format_size(a.size))),
        ("size_bytes", json!(a.size)),
        ("concurrency", json!(a.concurrency)),
        ("prefix", json!(a.prefix)),
    ];
    Ok(new_report("fill", params, out.elapsed, out.stats, vec![OpKind::Put], results))
}

async fn run_list_workload(shared: &Arc<Shared>, a: &ListArgs) -> Result<Report, String> {
    s3::check_bucket_name(&a.bucket)?;
    let plan = ListPlan {
        bucket: a.bucket.clone(),
        prefix: a.prefix.clone(),
        max_keys: a.max_keys,
        max_pages: a.max_pages,
        duration: a.duration,
    };
    let progress = workload::spawn_progress(shared.clone(), "list", "keys", None, shared.progress_every);
    let out = workload::run_list(shared.clone(), plan).await;
    progress.inspect(|p| p.abort());
    let results = vec![
        ("pages", json!(out.pages)),
        ("keys", json!(out.keys)),
        ("common_prefixes", json!(out.common_prefixes)),
        ("complete", json!(out.complete)),
        ("keys_per_s", json!(out.keys as f64 / out.elapsed.as_secs_f64().max(1e-9))),
    ];
    let params = vec![
        ("bucket", json!(a.bucket)),
        ("max_keys", json!(a.max_keys)),
        ("prefix", json!(a.prefix)),
    ];
    let mut report = new_report("list", params, out.elapsed, out.stats, vec![OpKind::List], results);
    if !out.complete && report.error_count() == 0 && !shared.stopped() {
        eprintln!("list: stopped at --max-pages or --duration before the end of the bucket");
    }
    report.results.push(("stopped_early", json!(!out.complete)));
    Ok(report)
}

fn new_report(
    workload: &'static str,
    params: Vec<(&'static str, Value)>,
    elapsed: Duration,
    stats: stats::WorkerStats,
    kinds: Vec<OpKind>,
    results: Vec<(&'static str, Value)>,
) -> Report {
    Report {
        workload,
        command: String::new(),
        endpoint: String::new(),
        params,
        elapsed,
        stats,
        kinds,
        results,
        error_samples: Vec::new(),
    }
}
