//! S3 Select scan throughput, not run by default (numbers in the closing
//! note of issue 13 come from this):
//!
//! ```sh
//! cargo test --release -p tessera-tests --test select_measure -- --ignored --nocapture
//! SELECT_MEASURE_MIB=512 cargo test --release ...   # object size (default 128)
//! ```
//!
//! The server runs with `--threads 1`, so GB/s is per core. For CSV, JSON
//! LINES and Parquet (snappy, 64k-row groups) objects of the same rows, it
//! times SelectObjectContent at 1% and 50% selectivity (`k` is `i % 100`)
//! against a plain GET of the whole object plus the same filter applied in
//! this process (one thread). Throughput is object bytes / wall time.

use std::time::Instant;

#[path = "../../select/examples/shared/rows.rs"]
mod shared_rows;
use shared_rows::rows;
#[path = "../../select/examples/shared/client_filter.rs"]
mod client_filter;

use aws_sdk_s3::types::{
    CsvInput, CsvOutput, ExpressionType, FileHeaderInfo, InputSerialization, JsonInput, JsonType, OutputSerialization,
    ParquetInput, SelectObjectContentEventStream,
};
use tessera_tests::*;

async fn select(s3: &aws_sdk_s3::Client, key: &str, sql: &str, input: InputSerialization) -> (usize, f64) {
    let t = Instant::now();
    let mut out = ok(
        s3.select_object_content()
            .bucket("measure")
            .key(key)
            .expression(sql)
            .expression_type(ExpressionType::Sql)
            .input_serialization(input)
            .output_serialization(OutputSerialization::builder().csv(CsvOutput::builder().build()).build())
            .send()
            .await,
        "select",
    );
    let mut bytes = 0;
    while let Some(ev) = out.payload.recv().await.expect("event") {
        if let SelectObjectContentEventStream::Records(r) = ev {
            bytes += r.payload().map_or(0, |p| p.as_ref().len());
        }
    }
    (bytes, t.elapsed().as_secs_f64())
}

/// GET the whole object, then keep the rows with `k < limit` here.
async fn get_and_filter(s3: &aws_sdk_s3::Client, key: &str, limit: i64) -> (usize, f64) {
    let t = Instant::now();
    let body = read_body(ok(s3.get_object().bucket("measure").key(key).send().await, "get")).await;
    let kept = client_filter::kept(key, body, limit);
    (kept, t.elapsed().as_secs_f64())
}

#[tokio::test(flavor = "multi_thread")]
#[ignore]
async fn select_scan_throughput() {
    let mib: usize = std::env::var("SELECT_MEASURE_MIB").ok().and_then(|v| v.parse().ok()).unwrap_or(128);
    let server = Server::start_with(ServerOpts { threads: Some(1), ..Default::default() });
    let s3 = server.client();
    ok(s3.create_bucket().bucket("measure").send().await, "bucket");
    let (csv, json, pq) = rows(mib * MIB);
    for (key, data) in [("d.csv", csv.as_bytes()), ("d.json", json.as_bytes()), ("d.parquet", pq.as_slice())] {
        ok(s3.put_object().bucket("measure").key(key).body(bytestream(data)).send().await, "put");
    }
    println!("rows of {mib} MiB of CSV; server --threads 1; GB/s = object bytes / wall time");
    println!("{:<8} {:>6} {:>12} {:>14} {:>12} {:>14}", "format", "select", "select GB/s", "select out MB", "GET+filter", "GET+filter GB/s");
    for (key, size) in [("d.csv", csv.len()), ("d.json", json.len()), ("d.parquet", pq.len())] {
        for (pct, limit) in [("1%", 1i64), ("50%", 50)] {
            let (sql, input) = match key {
                "d.csv" => (
                    format!("SELECT * FROM S3Object s WHERE CAST(s.k AS INT) < {limit}"),
                    InputSerialization::builder().csv(CsvInput::builder().file_header_info(FileHeaderInfo::Use).build()).build(),
                ),
                "d.json" => (
                    format!("SELECT * FROM S3Object s WHERE s.k < {limit}"),
                    InputSerialization::builder().json(JsonInput::builder().r#type(JsonType::Lines).build()).build(),
                ),
                _ => (format!("SELECT * FROM S3Object s WHERE s.k < {limit}"), InputSerialization::builder().parquet(ParquetInput::builder().build()).build()),
            };
            // Once to warm up, then timed.
            select(&s3, key, &sql, input.clone()).await;
            let (out, secs) = select(&s3, key, &sql, input).await;
            let (_, gsecs) = get_and_filter(&s3, key, limit).await;
            let gb = size as f64 / 1e9;
            println!(
                "{:<8} {:>6} {:>12.3} {:>14.1} {:>12.3}s {:>14.3}",
                key.trim_start_matches("d."),
                pct,
                gb / secs,
                out as f64 / 1e6,
                gsecs,
                gb / gsecs
            );
        }
    }
}
