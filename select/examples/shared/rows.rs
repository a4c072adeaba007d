//! The synthetic rows of the S3 Select measurements, shared by
//! `select/examples/scan.rs`, `select/examples/getfilter.rs` and
//! `tests/tests/select_measure.rs` (each includes this file by path):
//! `id` (0, 1, ...), `k` (`id % 100`, the filtered column), `name` and
//! `score`, as CSV (with a header), JSON LINES and Parquet (snappy,
//! 64k-row groups) objects of the same rows, grown until the CSV holds
//! `target` bytes.

use std::sync::Arc;

/// (CSV, JSON LINES, Parquet).
pub fn rows(target: usize) -> (String, String, Vec<u8>) {
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
