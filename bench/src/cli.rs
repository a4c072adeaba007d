//! The command line.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::dist::{KeyDist, Mix, SizeDist};
use crate::units::{parse_duration, parse_size};

#[derive(Parser, Debug)]
#[command(
    name = "tessera-bench",
    version,
    about = "Load generator for any S3 endpoint (path-style, http:// or https://)",
    after_help = "Sizes take B, KiB, MiB, GiB (or KB, MB, GB); --size also takes a range (4KiB-1MiB) or weighted \
                  choices (4KiB:90,1MiB:10). Durations: ms, s, m, h. MB/s in reports is 10^6 bytes per second; \
                  latencies are in microseconds.\n\
                  Exit status: 0 when every request succeeded, 1 when some failed, 2 on setup errors."
)]
pub struct Cli {
    /// S3 endpoint, http://host:port or https://host:port (path-style addressing);
    /// several, comma-separated, spread the connections over them in turn
    /// (the nodes of a cluster). `presign` signs for the first.
    #[arg(long, global = true, default_value = "http://127.0.0.1:9000")]
    pub endpoint: String,
    /// PEM file of the CA(s) trusted for an https:// endpoint (required with https).
    #[arg(long, global = true)]
    pub ca_cert: Option<std::path::PathBuf>,
    /// Access key id [env: AWS_ACCESS_KEY_ID].
    #[arg(long, global = true, env = "AWS_ACCESS_KEY_ID", hide_env = true)]
    pub access_key: Option<String>,
    /// Secret key [env: AWS_SECRET_ACCESS_KEY]; prefer the environment (it is redacted
    /// from reports either way).
    #[arg(long, global = true, env = "AWS_SECRET_ACCESS_KEY", hide_env = true, hide_env_values = true)]
    pub secret_key: Option<String>,
    /// Region of the signature scope.
    #[arg(long, global = true, default_value = "us-east-1")]
    pub region: String,
    /// Client threads, each running its share of the connections on its own
    /// single-threaded runtime (default: the number of cores).
    #[arg(long, global = true)]
    pub threads: Option<usize>,
    /// Limit on each request, connect to last body byte.
    #[arg(long, global = true, default_value = "30s", value_parser = parse_duration)]
    pub timeout: Duration,
    /// Print a progress line this often (0s: never).
    #[arg(long, global = true, default_value = "5s", value_parser = parse_duration)]
    pub progress: Duration,
    /// Also write the report (with the per-second timeline) as JSON to this file.
    #[arg(long, global = true)]
    pub json: Option<PathBuf>,
    /// Also write the summary table as CSV to this file (one row per operation).
    #[arg(long, global = true)]
    pub csv: Option<PathBuf>,
    /// Also plot throughput and latency over time to this SVG file.
    #[arg(long, global = true)]
    pub svg: Option<PathBuf>,
    #[command(subcommand)]
    pub workload: Workload,
}

#[derive(Subcommand, Debug)]
pub enum Workload {
    /// PUT objects over a key space for a duration (creates the bucket).
    Put(TimedArgs),
    /// Write the key space (not timed), then GET keys for a duration, checking
    /// each body's length.
    Get(GetArgs),
    /// A mix of operations over a key space written first (not timed).
    Mixed(MixedArgs),
    /// Write the key space (not timed), then DELETE keys for a duration.
    Delete(ReadArgs),
    /// Write the key space (not timed), then HEAD keys for a duration, checking
    /// each Content-Length.
    Stat(ReadArgs),
    /// Whole multipart uploads (create, parts, complete) for a duration.
    Multipart(MultipartArgs),
    /// Create --count objects once each as fast as possible (creates the bucket).
    Fill(FillArgs),
    /// Page through a bucket with ListObjectsV2 continuation tokens.
    List(ListArgs),
    /// Print a presigned URL (query authentication), e.g. for wrk or curl.
    Presign(PresignArgs),
    /// Plot a JSON result file's timeline as SVG.
    Plot(PlotArgs),
    /// Put two or more JSON result files side by side, with ratios to the first.
    Compare(CompareArgs),
    /// MD5 and SHA-256 MB/s on one core, with the node's crates (md-5, ring).
    Hash(HashArgs),
}

#[derive(Args, Debug, Clone)]
pub struct HashArgs {
    /// Time per figure.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub duration: Duration,
}

#[derive(Args, Debug, Clone)]
pub struct TimedArgs {
    #[arg(long)]
    pub bucket: String,
    /// Object size: 4KiB, a range 4KiB-1MiB, or choices 4KiB:90,1MiB:10 (each
    /// key's size is fixed by its index).
    #[arg(long, default_value = "4KiB", value_parser = SizeDist::parse)]
    pub size: SizeDist,
    /// Requests in flight, one connection each.
    #[arg(long, default_value_t = 32)]
    pub concurrency: usize,
    /// How long the timed phase runs.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Key space: keys are <prefix><index>, index in 0..objects.
    #[arg(long, default_value_t = 1000)]
    pub objects: u64,
    #[arg(long, default_value = "tessera-bench/")]
    pub prefix: String,
    /// How keys are picked: uniform, sequential (shared by all workers), zipf or zipf:S.
    #[arg(long, default_value = "uniform", value_parser = KeyDist::parse)]
    pub key_dist: KeyDist,
    /// Stop after this many requests even if time remains.
    #[arg(long, visible_alias = "count")]
    pub max_requests: Option<u64>,
    /// DELETE the whole key space after the run (not timed).
    #[arg(long)]
    pub cleanup: bool,
}

#[derive(Args, Debug, Clone)]
pub struct ReadArgs {
    #[command(flatten)]
    pub timed: TimedArgs,
    /// Do not write the key space first (it exists with objects of --size).
    #[arg(long)]
    pub skip_prefill: bool,
}

#[derive(Args, Debug, Clone)]
pub struct GetArgs {
    #[command(flatten)]
    pub read: ReadArgs,
    /// Authenticate each GET with a presigned URL (query parameters) instead of
    /// an Authorization header: the request `wrk` sends with a `presign` URL.
    #[arg(long)]
    pub presigned: bool,
}

#[derive(Args, Debug, Clone)]
pub struct MixedArgs {
    #[command(flatten)]
    pub read: ReadArgs,
    /// Percent of requests that are GETs; the rest are PUTs.
    #[arg(long, default_value_t = 70, value_parser = clap::value_parser!(u32).range(0..=100))]
    pub get_percent: u32,
    /// Weights per operation, e.g. get=70,put=20,delete=5,stat=5 (overrides
    /// --get-percent; GETs of deleted keys count as 404 NoSuchKey).
    #[arg(long, value_parser = Mix::parse)]
    pub mix: Option<Mix>,
    /// Part size of multipart uploads in the mix.
    #[arg(long, default_value = "8MiB", value_parser = parse_size)]
    pub part_size: u64,
}

#[derive(Args, Debug, Clone)]
pub struct MultipartArgs {
    #[command(flatten)]
    pub timed: TimedArgs,
    /// Part size (S3 wants at least 5 MiB for all parts but the last).
    #[arg(long, default_value = "8MiB", value_parser = parse_size)]
    pub part_size: u64,
}

#[derive(Args, Debug, Clone)]
pub struct FillArgs {
    #[arg(long)]
    pub bucket: String,
    /// Objects to create: <prefix><index>, index in 0..count.
    #[arg(long)]
    pub count: u64,
    #[arg(long, default_value = "0", value_parser = SizeDist::parse)]
    pub size: SizeDist,
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    #[arg(long, default_value = "tessera-bench/")]
    pub prefix: String,
    /// Give up after this long even if objects remain.
    #[arg(long, default_value = "1h", value_parser = parse_duration)]
    pub duration: Duration,
}

#[derive(Args, Debug, Clone)]
pub struct ListArgs {
    #[arg(long)]
    pub bucket: String,
    /// Keys per page (S3 returns at most 1000).
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub max_keys: u32,
    /// List only keys under this prefix.
    #[arg(long, default_value = "")]
    pub prefix: String,
    /// Stop after this many pages.
    #[arg(long, default_value_t = 1_000_000)]
    pub max_pages: u64,
    /// Stop after this long.
    #[arg(long, default_value = "1h", value_parser = parse_duration)]
    pub duration: Duration,
}

#[derive(Args, Debug, Clone)]
pub struct PresignArgs {
    #[arg(long)]
    pub bucket: String,
    #[arg(long)]
    pub key: String,
    /// GET, PUT, HEAD or DELETE.
    #[arg(long, default_value = "GET")]
    pub method: String,
    /// How long the URL stays valid (S3 allows up to 7 days; this tool a day).
    #[arg(long, default_value = "1h", value_parser = parse_duration)]
    pub expires: Duration,
}

#[derive(Args, Debug, Clone)]
pub struct PlotArgs {
    /// A result file written with --json.
    pub result: PathBuf,
    /// Where to write the SVG.
    #[arg(long, short)]
    pub output: PathBuf,
}

#[derive(Args, Debug, Clone)]
pub struct CompareArgs {
    /// Result files written with --json; ratios are to the first.
    #[arg(num_args = 2.., required = true)]
    pub results: Vec<PathBuf>,
}
