//! tessera-bench: a load generator for any S3 endpoint (path-style, HTTP or HTTPS).
//!
//! Thread per core: each client thread runs its share of the workers on its own
//! single-threaded runtime ([`pool`]). Workers each own one keep-alive
//! connection and sign every request with `tessera_proto::sigv4` (payload
//! `UNSIGNED-PAYLOAD`, so hashing never limits the client). Latencies go to
//! per-worker hdrhistograms merged at the end, and to per-thread per-second
//! histograms for the progress line and the timeline ([`monitor`]).

mod cli;
mod client;
mod compare;
mod dist;
mod hashrate;
mod http;
mod monitor;
mod plot;
mod pool;
mod report;
mod run;
mod s3;
mod stats;
mod units;
mod workload;

use std::process::ExitCode;

use clap::Parser;

use cli::{Cli, Workload};

/// Most runtime threads.
pub const MAX_THREADS: usize = 256;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let cli = Cli::parse();
    // Commands that only read files or sign need no runtime.
    let offline = match &cli.workload {
        Workload::Plot(a) => Some(plot::plot_file(&a.result, &a.output)),
        Workload::Compare(a) => Some(compare::compare_files(&a.results).map(|t| print!("{t}"))),
        Workload::Hash(a) => {
            print!("{}", hashrate::measure(a.duration));
            Some(Ok(()))
        }
        Workload::Presign(a) => Some(run::presign(&cli, a).map(|url| println!("{url}"))),
        _ => None,
    };
    if let Some(result) = offline {
        return match result {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("tessera-bench: {e}");
                ExitCode::from(2)
            }
        };
    }
    let threads = cli.threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()));
    if threads == 0 || threads > MAX_THREADS {
        eprintln!("tessera-bench: --threads must be 1..={MAX_THREADS}");
        return ExitCode::from(2);
    }
    // The coordinating runtime: setup, the sampler, Ctrl-C; workers run in the pool.
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("tessera-bench: cannot start the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(run::run(cli, threads, report::command_line(&args))) {
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
