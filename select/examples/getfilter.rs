//! The client side of "plain GET plus client-side filtering", for
//! comparing with SelectObjectContent on a running server
//! (`tools/select-vs-get.sh` drives both):
//!
//! ```sh
//! getfilter gen DIR MIB          # d.csv, d.json, d.parquet: the rows of scan.rs
//! getfilter filter FILE LIMIT    # keeps the rows with k < LIMIT, as select_measure.rs does
//! ```
//!
//! `filter` prints the bytes (rows for Parquet) kept and its own time on
//! one thread; the GET's time is the driver's.

use std::time::Instant;

#[path = "shared/rows.rs"]
mod shared_rows;
use shared_rows::rows;

fn filter(path: &str, limit: i64) -> usize {
    let body = std::fs::read(path).expect("read");
    let mut kept = 0usize;
    if path.ends_with(".csv") {
        for line in std::str::from_utf8(&body).expect("utf8").lines().skip(1) {
            let k: i64 = line.split(',').nth(1).and_then(|v| v.parse().ok()).unwrap_or(-1);
            if (0..limit).contains(&k) {
                kept += line.len() + 1;
            }
        }
    } else if path.ends_with(".json") {
        for line in std::str::from_utf8(&body).expect("utf8").lines() {
            let v: serde_json::Value = serde_json::from_str(line).expect("json");
            if v["k"].as_i64().is_some_and(|k| k < limit) {
                kept += line.len() + 1;
            }
        }
    } else {
        use arrow_array::cast::AsArray;
        let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReader::try_new(bytes::Bytes::from(body), 8192).expect("reader");
        for b in reader {
            let b = b.expect("batch");
            let k = b.column(1).as_primitive::<arrow_array::types::Int64Type>();
            kept += k.values().iter().filter(|&&v| v < limit).count();
        }
    }
    kept
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("gen") => {
            let dir = std::path::Path::new(&args[2]);
            let mib: usize = args[3].parse().expect("MIB");
            let (csv, json, pq) = rows(mib * 1024 * 1024);
            std::fs::write(dir.join("d.csv"), csv).expect("write");
            std::fs::write(dir.join("d.json"), json).expect("write");
            std::fs::write(dir.join("d.parquet"), pq).expect("write");
        }
        Some("filter") => {
            let t = Instant::now();
            let kept = filter(&args[2], args[3].parse().expect("LIMIT"));
            println!("{kept} {:.3}", t.elapsed().as_secs_f64());
        }
        _ => eprintln!("usage: getfilter gen DIR MIB | getfilter filter FILE LIMIT"),
    }
}
