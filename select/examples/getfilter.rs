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
#[path = "shared/client_filter.rs"]
mod client_filter;

fn filter(path: &str, limit: i64) -> usize {
    let body = std::fs::read(path).expect("read");
    client_filter::kept(path, body, limit)
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
