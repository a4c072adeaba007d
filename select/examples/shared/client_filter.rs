//! The client side of "GET plus client-side filtering": the rows with
//! `k < limit` of a whole object's bytes, as a client would keep them
//! (CSV and JSON lines: bytes of the kept lines; Parquet: kept rows).
//! Shared by `examples/getfilter.rs` and `tests/tests/select_measure.rs`
//! (included by path), so both measure the same client.

pub fn kept(name: &str, body: Vec<u8>, limit: i64) -> usize {
    let mut kept = 0usize;
    if name.ends_with(".csv") {
        for line in std::str::from_utf8(&body).expect("utf8").lines().skip(1) {
            let k: i64 = line.split(',').nth(1).and_then(|v| v.parse().ok()).unwrap_or(-1);
            if (0..limit).contains(&k) {
                kept += line.len() + 1;
            }
        }
    } else if name.ends_with(".json") {
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
