//! Commit latency and throughput of one shard on one reactor.
//!
//! cargo run --release -p tessera-io --example shard_bench -- [BODY_BYTES] [CONCURRENCY] [OPS] [DIR]
//!
//! Bodies up to 128 KiB go inline in the commit record; bigger ones are
//! written as 1 MiB data records first, then committed as extents (as the
//! node does). DIR defaults to a temp dir (on /tmp's filesystem).

use std::rc::Rc;
use std::time::{Duration, Instant};

use tessera_io::{Body, DataBuf, Mutation, Shard, ShardOptions};

const INLINE_MAX_BYTES: usize = 128 << 10;
const RECORD_BYTES: usize = 1 << 20;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |i: usize, d: usize| args.get(i).and_then(|v| v.parse().ok()).unwrap_or(d);
    let body_bytes = arg(1, 4096);
    let concurrency = arg(2, 1);
    let ops = arg(3, 2000);
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = args
        .get(4)
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| tmp.path().join("shard"));

    let mut rt = monoio::RuntimeBuilder::<monoio::FusionDriver>::new()
        .enable_timer()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let shard = Rc::new(Shard::open(&dir, 0, ShardOptions::default()).await.expect("open"));
        let body = Rc::new(vec![0xabu8; body_bytes]);
        let started = Instant::now();
        let mut tasks = Vec::new();
        for w in 0..concurrency {
            let shard = shard.clone();
            let body = body.clone();
            tasks.push(monoio::spawn(async move {
                let mut lat = Vec::new();
                let mut i = w;
                while i < ops {
                    let t = Instant::now();
                    put(&shard, i, &body).await;
                    lat.push(t.elapsed());
                    i += concurrency;
                }
                lat
            }));
        }
        let mut lat: Vec<Duration> = Vec::new();
        for t in tasks {
            lat.extend(t.await);
        }
        let secs = started.elapsed().as_secs_f64();
        lat.sort_unstable();
        let pct = |p: f64| lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)].as_micros();
        let st = shard.stats();
        println!(
            "body {body_bytes} B, concurrency {concurrency}, {ops} puts: {:.0} puts/s, {:.1} MiB/s, latency us p50 {} p99 {} max {}, {} syncs ({:.1} puts/sync), io_uring {}, direct {}",
            ops as f64 / secs,
            (ops * body_bytes) as f64 / secs / (1 << 20) as f64,
            pct(0.5),
            pct(0.99),
            pct(1.0),
            st.syncs,
            ops as f64 / st.syncs as f64,
            st.io_uring,
            st.direct_io,
        );
    });
}

async fn put(shard: &Shard, i: usize, body: &[u8]) {
    let key = format!("bench/object-{i:09}").into_bytes();
    let body = if body.len() <= INLINE_MAX_BYTES {
        Body::Inline(body.to_vec())
    } else {
        let mut extents = Vec::new();
        for chunk in body.chunks(RECORD_BYTES) {
            let mut d = DataBuf::new(RECORD_BYTES);
            d.extend_from_slice(chunk);
            extents.push(shard.write_data(d).await.expect("write_data"));
        }
        Body::Extents(extents)
    };
    let m = Mutation::Put {
        table: 0,
        key,
        summary: vec![0; 40],
        meta: b"content-type: application/octet-stream".to_vec(),
        body,
    };
    shard.commit(vec![m]).await.expect("commit");
}
