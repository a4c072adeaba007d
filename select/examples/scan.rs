//! In-crate scan throughput, no network and no server: the same rows as
//! `tests/tests/select_measure.rs` (CSV, JSON LINES, Parquet) run through
//! [`Engine`] / [`ParquetScan`] on one thread at 1% and 50% selectivity.
//!
//! ```sh
//! cargo run --release -p tessera-select --example scan            # 64 MiB of CSV
//! SCAN_MIB=256 SCAN_REPEAT=5 cargo run --release -p tessera-select --example scan
//! ```
//!
//! GB/s = object bytes / wall time of the scan (best of `SCAN_REPEAT`),
//! output discarded after it is produced.

use std::time::Instant;

#[path = "shared/rows.rs"]
mod shared_rows;
use shared_rows::rows;

use tessera_select::params::{
    Compression, CsvInput, CsvInputOptions, CsvOutput, CsvOutputOptions, InputFormat, JsonType, OutputFormat, SelectParams,
};
use tessera_select::parquet::{PStep, ParquetScan};
use tessera_select::time::Prec;
use tessera_select::{Engine, Step, Ts};

const NOW: Ts = Ts { secs: 0, nanos: 0, offset_min: 0, prec: Prec::Second };

/// Bytes handed to the engine at once (the node reads 1 MiB pieces).
const PIECE: usize = 1024 * 1024;

fn params(sql: &str, input: InputFormat) -> SelectParams {
    SelectParams {
        expression: sql.to_string(),
        input,
        compression: Compression::None,
        output: OutputFormat::Csv(CsvOutput::from_options(&CsvOutputOptions::default()).expect("csv output")),
        scan_range: None,
        progress: false,
    }
}

/// Output bytes of one text scan.
fn text_scan(p: &SelectParams, data: &[u8]) -> usize {
    let mut e = Engine::new(p, data.len() as u64, NOW).expect("engine");
    let mut pieces = data.chunks(PIECE);
    let mut out = 0;
    loop {
        match e.step().expect("step") {
            Step::NeedInput => match pieces.next() {
                Some(c) => e.feed(c.to_vec()),
                None => e.end_input(),
            },
            Step::Continue => out += e.take_output().len(),
            Step::Done => return out + e.take_output().len(),
        }
    }
}

fn parquet_scan(p: &SelectParams, data: &[u8]) -> usize {
    let mut s = ParquetScan::new(p, data.len() as u64, NOW).expect("scan");
    let mut out = 0;
    loop {
        match s.step().expect("step") {
            PStep::NeedData(ranges) => {
                let bufs = ranges.iter().map(|r| data[r.start as usize..r.end as usize].to_vec()).collect();
                s.push(ranges, bufs).expect("push");
            }
            PStep::Continue => out += s.take_output().len(),
            PStep::Done => return out + s.take_output().len(),
        }
    }
}

fn main() {
    let mib: usize = std::env::var("SCAN_MIB").ok().and_then(|v| v.parse().ok()).unwrap_or(64);
    let repeat: usize = std::env::var("SCAN_REPEAT").ok().and_then(|v| v.parse().ok()).unwrap_or(3);
    let only = std::env::var("SCAN_ONLY").ok();
    let (csv, json, pq) = rows(mib * 1024 * 1024);
    let csv_in = InputFormat::Csv(
        CsvInput::from_options(&CsvInputOptions { file_header_info: Some("USE"), ..Default::default() }).expect("csv input"),
    );
    println!("{mib} MiB of CSV rows; one thread; GB/s = input bytes / wall time (best of {repeat})");
    println!("{:<8} {:>4} {:>10} {:>12} {:>8}", "format", "sel", "GB/s", "out MB", "ms");
    for fmt in ["csv", "json", "parquet"] {
        if only.as_deref().is_some_and(|o| o != fmt) {
            continue;
        }
        for (pct, limit) in [("1%", 1), ("50%", 50)] {
            let (sql, input, data): (String, InputFormat, &[u8]) = match fmt {
                "csv" => (format!("SELECT * FROM S3Object s WHERE CAST(s.k AS INT) < {limit}"), csv_in.clone(), csv.as_bytes()),
                "json" => (format!("SELECT * FROM S3Object s WHERE s.k < {limit}"), InputFormat::Json(JsonType::Lines), json.as_bytes()),
                _ => (format!("SELECT * FROM S3Object s WHERE s.k < {limit}"), InputFormat::Parquet, &pq),
            };
            let p = params(&sql, input);
            let mut best = f64::MAX;
            let mut out = 0;
            for _ in 0..repeat {
                let t = Instant::now();
                out = if fmt == "parquet" { parquet_scan(&p, data) } else { text_scan(&p, data) };
                best = best.min(t.elapsed().as_secs_f64());
            }
            println!("{:<8} {:>4} {:>10.3} {:>12.1} {:>8.0}", fmt, pct, data.len() as f64 / 1e9 / best, out as f64 / 1e6, best * 1e3);
        }
    }
}
