//! From a parsed command line to a report: connect, prepare, run, clean up, write.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use tessera_proto::time::now_unix_secs;

use crate::cli::{Cli, FillArgs, ListArgs, PresignArgs, TimedArgs, Workload};
use crate::client::{Client, Shared, Target};
use crate::dist::{Mix, SizeDist};
use crate::monitor::{Live, Point};
use crate::pool::Pool;
use crate::report::Report;
use crate::s3;
use crate::stats::{ErrorLog, OpKind, WorkerStats};
use crate::units::{self, format_size};
use crate::workload::{self, ListPlan, SweepPlan, TimedPlan};

/// Most connections (= concurrency) a run may open.
pub const MAX_CONCURRENCY: usize = 4096;
/// Largest key space of the timed workloads.
pub const MAX_OBJECTS: u64 = 1_000_000_000;
/// Smallest multipart part size accepted (S3 refuses smaller parts but the last;
/// smaller ones are allowed here so other servers' limits can be probed).
pub const MIN_PART_BYTES: u64 = 1;

fn credentials(cli: &Cli) -> Result<(String, String), String> {
    let access_key = cli.access_key.clone().ok_or("no access key: --access-key or AWS_ACCESS_KEY_ID")?;
    let secret_key = cli.secret_key.clone().ok_or("no secret key: --secret-key or AWS_SECRET_ACCESS_KEY")?;
    Ok((access_key, secret_key))
}

/// `tessera-bench presign`: the URL, signed now.
pub fn presign(cli: &Cli, a: &PresignArgs) -> Result<String, String> {
    let endpoint = s3::parse_endpoint(cli.endpoint.split(',').next().unwrap_or_default().trim())?;
    let (access_key, secret_key) = credentials(cli)?;
    s3::check_bucket_name(&a.bucket)?;
    let method = a.method.to_ascii_uppercase();
    if !matches!(method.as_str(), "GET" | "PUT" | "HEAD" | "DELETE") {
        return Err(format!("--method {:?}: GET, PUT, HEAD or DELETE", a.method));
    }
    if a.expires.is_zero() {
        return Err("--expires must be positive".into());
    }
    let signer = s3::Signer { access_key, secret_key, region: cli.region.clone(), host: endpoint.authority.clone() };
    let path = s3::object_path(&a.bucket, &a.key);
    let query = signer.presign(&method, &path, now_unix_secs(), a.expires.as_secs() as i64);
    let scheme = if endpoint.tls { "https" } else { "http" };
    Ok(format!("{scheme}://{}{path}?{query}", endpoint.authority))
}

pub async fn run(cli: Cli, threads: usize, command: String) -> Result<Report, String> {
    let (access_key, secret_key) = credentials(&cli)?;
    let mut targets = Vec::new();
    for url in cli.endpoint.split(',').map(str::trim) {
        let endpoint = s3::parse_endpoint(url)?;
        let addr: SocketAddr = tokio::net::lookup_host(&endpoint.connect_to)
            .await
            .map_err(|e| format!("resolve {}: {e}", endpoint.connect_to))?
            .next()
            .ok_or_else(|| format!("resolve {}: no address", endpoint.connect_to))?;
        let signer = s3::Signer {
            access_key: access_key.clone(),
            secret_key: secret_key.clone(),
            region: cli.region.clone(),
            host: endpoint.authority.clone(),
        };
        let tls = match (&cli.ca_cert, endpoint.tls) {
            (Some(ca), true) => Some(crate::http::TlsClient::new(ca, endpoint.host())?),
            (None, true) => return Err("an https:// endpoint needs --ca-cert FILE (the CA of its certificate)".into()),
            (_, false) => None,
        };
        targets.push(Target { addr, tls, signer });
    }
    let pool = Pool::new(threads)?;
    let shared = Arc::new(Shared {
        targets,
        timeout: cli.timeout,
        progress_every: cli.progress,
        live: Live::new(pool.len()),
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
        Workload::Put(a) => timed(&pool, &shared, "put", a, Mix::only(OpKind::Put), false, 0, false).await?,
        Workload::Get(a) => {
            let (t, prefill) = (&a.read.timed, !a.read.skip_prefill);
            timed(&pool, &shared, "get", t, Mix::only(OpKind::Get), prefill, 0, a.presigned).await?
        }
        Workload::Mixed(a) => {
            let mix = a.mix.clone().unwrap_or_else(|| Mix::get_put(a.get_percent));
            let prefill = !a.read.skip_prefill && (mix.has(OpKind::Get) || mix.has(OpKind::Stat));
            timed(&pool, &shared, "mixed", &a.read.timed, mix, prefill, a.part_size, false).await?
        }
        Workload::Delete(a) => timed(&pool, &shared, "delete", &a.timed, Mix::only(OpKind::Delete), !a.skip_prefill, 0, false).await?,
        Workload::Stat(a) => timed(&pool, &shared, "stat", &a.timed, Mix::only(OpKind::Stat), !a.skip_prefill, 0, false).await?,
        Workload::Multipart(a) => {
            timed(&pool, &shared, "multipart", &a.timed, Mix::only(OpKind::Multipart), false, a.part_size, false).await?
        }
        Workload::Fill(a) => fill(&pool, &shared, a).await?,
        Workload::List(a) => list(&shared, a).await?,
        Workload::Presign(_) | Workload::Plot(_) | Workload::Compare(_) | Workload::Hash(_) => return Err("not a workload".into()),
    };
    report.command = command;
    report.endpoint = cli.endpoint.clone();
    report.params.push(("threads", json!(threads)));
    report.error_samples = shared.errors.samples();
    if shared.stopped() {
        report.results.push(("interrupted", json!(true)));
    }
    write_outputs(&cli, &report)?;
    Ok(report)
}

fn write_outputs(cli: &Cli, report: &Report) -> Result<(), String> {
    let write = |path: &std::path::Path, text: String| std::fs::write(path, text).map_err(|e| format!("write {}: {e}", path.display()));
    if let Some(path) = &cli.json {
        let text = serde_json::to_string_pretty(&report.json()).map_err(|e| format!("JSON: {e}"))?;
        write(path, text + "\n")?;
    }
    if let Some(path) = &cli.csv {
        write(path, report.csv())?;
    }
    if let Some(path) = &cli.svg {
        write(path, crate::plot::svg(&report.title(), &report.timeline))?;
    }
    Ok(())
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

/// PUTs (prepare) or DELETEs (cleanup) the key space, untimed; fails on any error.
async fn sweep(pool: &Pool, shared: &Arc<Shared>, a: &TimedArgs, op: OpKind, payload: &Arc<[u8]>) -> Result<(), String> {
    let label = if op == OpKind::Put { "prepare" } else { "cleanup" };
    eprintln!("{label}: {} {} objects of {} (not timed)", op.name(), a.objects, a.size.describe());
    let plan = SweepPlan {
        op,
        bucket: a.bucket.clone(),
        prefix: a.prefix.clone(),
        count: a.objects,
        sizes: a.size.clone(),
        concurrency: a.concurrency,
        duration: units::MAX_DURATION,
    };
    let out = workload::run_sweep(pool, shared.clone(), plan, payload.clone(), label).await;
    let done = &out.stats.ops[op.index()];
    if done.error_count() > 0 || done.ok < a.objects {
        return Err(format!("{label}: {} of {} objects ({} errors)", done.ok, a.objects, done.error_count()));
    }
    eprintln!("{label}: done in {:.1} s", out.elapsed.as_secs_f64());
    Ok(())
}

#[allow(clippy::too_many_arguments)]
async fn timed(
    pool: &Pool,
    shared: &Arc<Shared>,
    name: &'static str,
    a: &TimedArgs,
    mix: Mix,
    prefill: bool,
    part_bytes: u64,
    presigned: bool,
) -> Result<Report, String> {
    check_concurrency(a.concurrency)?;
    if a.objects == 0 || a.objects > MAX_OBJECTS {
        return Err(format!("--objects must be 1..={MAX_OBJECTS}"));
    }
    if mix.has(OpKind::Multipart) && part_bytes < MIN_PART_BYTES {
        return Err("--part-size must be positive".into());
    }
    ensure_bucket(shared, &a.bucket).await?;
    let payload = workload::make_payload(a.size.max());
    if prefill {
        sweep(pool, shared, a, OpKind::Put, &payload).await?;
    }
    let plan = TimedPlan {
        bucket: a.bucket.clone(),
        prefix: a.prefix.clone(),
        sizes: a.size.clone(),
        keys: a.key_dist.clone(),
        objects: a.objects,
        concurrency: a.concurrency,
        duration: a.duration,
        max_requests: a.max_requests,
        mix: mix.clone(),
        part_bytes,
        presigned,
    };
    let out = workload::run_timed(pool, shared.clone(), plan, payload.clone(), name).await;
    let mut params = vec![
        ("bucket", json!(a.bucket)),
        ("size", json!(a.size.describe())),
        ("concurrency", json!(a.concurrency)),
        ("duration_s", json!(a.duration.as_secs_f64())),
        ("objects", json!(a.objects)),
        ("prefix", json!(a.prefix)),
        ("key_dist", json!(a.key_dist.name())),
    ];
    if let SizeDist::Fixed(n) = a.size {
        params.insert(2, ("size_bytes", json!(n)));
    }
    if name == "mixed" {
        params.push(("mix", json!(mix.describe())));
    }
    if mix.has(OpKind::Multipart) {
        params.push(("part_size", json!(format_size(part_bytes))));
    }
    if presigned {
        params.push(("presigned", json!(true)));
    }
    if let Some(m) = a.max_requests {
        params.push(("max_requests", json!(m)));
    }
    let report = new_report(name, params, out.elapsed, out.stats, mix.kinds(), vec![], out.timeline);
    if a.cleanup && !shared.stopped() {
        sweep(pool, shared, a, OpKind::Delete, &payload).await?;
    }
    Ok(report)
}

async fn fill(pool: &Pool, shared: &Arc<Shared>, a: &FillArgs) -> Result<Report, String> {
    check_concurrency(a.concurrency)?;
    ensure_bucket(shared, &a.bucket).await?;
    let plan = SweepPlan {
        op: OpKind::Put,
        bucket: a.bucket.clone(),
        prefix: a.prefix.clone(),
        count: a.count,
        sizes: a.size.clone(),
        concurrency: a.concurrency,
        duration: a.duration,
    };
    let out = workload::run_sweep(pool, shared.clone(), plan, workload::make_payload(a.size.max()), "fill").await;
    let put = &out.stats.ops[OpKind::Put.index()];
    let results = vec![
        ("created", json!(put.ok)),
        ("complete", json!(put.ok == a.count)),
        ("objects_per_s", json!(put.ok as f64 / out.elapsed.as_secs_f64().max(1e-9))),
    ];
    let mut params = vec![
        ("bucket", json!(a.bucket)),
        ("count", json!(a.count)),
        ("size", json!(a.size.describe())),
        ("concurrency", json!(a.concurrency)),
        ("prefix", json!(a.prefix)),
    ];
    if let SizeDist::Fixed(n) = a.size {
        params.insert(3, ("size_bytes", json!(n)));
    }
    Ok(new_report("fill", params, out.elapsed, out.stats, vec![OpKind::Put], results, out.timeline))
}

async fn list(shared: &Arc<Shared>, a: &ListArgs) -> Result<Report, String> {
    s3::check_bucket_name(&a.bucket)?;
    let plan = ListPlan {
        bucket: a.bucket.clone(),
        prefix: a.prefix.clone(),
        max_keys: a.max_keys,
        max_pages: a.max_pages,
        duration: a.duration,
    };
    let out = workload::run_list(shared.clone(), plan).await;
    let results = vec![
        ("pages", json!(out.pages)),
        ("keys", json!(out.keys)),
        ("common_prefixes", json!(out.common_prefixes)),
        ("complete", json!(out.complete)),
        ("keys_per_s", json!(out.keys as f64 / out.elapsed.as_secs_f64().max(1e-9))),
    ];
    let params = vec![("bucket", json!(a.bucket)), ("max_keys", json!(a.max_keys)), ("prefix", json!(a.prefix))];
    let mut report = new_report("list", params, out.elapsed, out.stats, vec![OpKind::List], results, out.timeline);
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
    stats: WorkerStats,
    kinds: Vec<OpKind>,
    results: Vec<(&'static str, Value)>,
    timeline: Vec<Point>,
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
        timeline,
    }
}
