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

use std::sync::Arc;
use std::time::Instant;

fn rows(target: usize) -> (String, String, Vec<u8>) {
    use arrow_array::{Float64Array, Int64Array, RecordBatch, StringArray};
    let mut csv = String::from("id,k,name,score\n");
    let mut json = String::new();
    let (mut ids, mut ks, mut names, mut scores) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut i = 0i64;
    while csv.len() < target {
        let k = i % 100;
        let name = format!("name-{}", (i * 7919) % 100_003);
        let score = (i % 1000) as f64 / 7.0;
        csv.push_str(&format!("{i},{k},{name},{score}\n"));
        json.push_str(&format!("{{\"id\":{i},\"k\":{k},\"name\":\"{name}\",\"score\":{score}}}\n"));
        ids.push(i);
        ks.push(k);
        names.push(name);
        scores.push(score);
        i += 1;
    }
    let batch = RecordBatch::try_from_iter(vec![
        ("id", Arc::new(Int64Array::from(ids)) as _),
        ("k", Arc::new(Int64Array::from(ks)) as _),
        ("name", Arc::new(StringArray::from(names)) as _),
        ("score", Arc::new(Float64Array::from(scores)) as _),
    ])
    .expect("batch");
    let props = parquet::file::properties::WriterProperties::builder()
        .set_max_row_group_size(65_536)
        .set_compression(parquet::basic::Compression::SNAPPY)
        .build();
    let mut pq = Vec::new();
    let mut w = parquet::arrow::ArrowWriter::try_new(&mut pq, batch.schema(), Some(props)).expect("writer");
    w.write(&batch).expect("write");
    w.close().expect("close");
    (csv, json, pq)
}

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
