//! Encode and decode throughput of the erasure crate, single-threaded.
//!
//! `cargo run --release -p tessera-erasure --example ec-bench [-- SECONDS]`
//!
//! For 4+2, 8+4 and 12+4 at 1 MiB stripes it prints, in GB/s of object data
//! (10^9 bytes per second, one core): encode (split, parity, framing and
//! checksums), decode with all data blocks present (checksums and copy),
//! decode with m blocks lost (data blocks first: the worst case), and the
//! framing alone (xxh3 over every block) and reed-solomon-simd's encode
//! without any framing, so the checksum's and the copies' share is visible.

use std::time::{Duration, Instant};
use tessera_erasure::{verify_block, Codec, Params, DEFAULT_STRIPE_BYTES};

fn rate(bytes: u64, took: Duration) -> f64 {
    bytes as f64 / took.as_secs_f64() / 1e9
}

/// Runs `f` repeatedly for about `secs` seconds; returns GB/s of `bytes` per call.
fn measure(secs: f64, bytes: usize, mut f: impl FnMut()) -> f64 {
    for _ in 0..3 {
        f(); // warm up: buffers, the coder's tables
    }
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed().as_secs_f64() < secs {
        f();
        n += 1;
    }
    rate(n * bytes as u64, start.elapsed())
}

fn main() {
    let secs: f64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(1.0);
    let stripe = DEFAULT_STRIPE_BYTES;
    let data: Vec<u8> = (0..stripe)
        .map(|i| (i as u32).wrapping_mul(2_654_435_761) as u8)
        .collect();
    println!(
        "stripe {} KiB, one thread, GB/s of object data (1e9 B/s)",
        stripe / 1024
    );
    println!(
        "{:>6} {:>8} {:>12} {:>14} {:>9} {:>10}",
        "k+m", "encode", "decode(all)", "decode(m lost)", "verify", "raw rs enc"
    );
    for (k, m) in [(4usize, 2usize), (8, 4), (12, 4)] {
        let params = Params::new(k, m, stripe).expect("valid parameters");
        let mut codec = Codec::new(params);
        let mut blocks = Vec::new();
        let encode = measure(secs, stripe, || {
            codec
                .encode_stripe(1, 0, &data, &mut blocks)
                .expect("encode");
        });
        let mut out = Vec::new();
        let all: Vec<Option<&[u8]>> = blocks.iter().map(|b| Some(b.as_slice())).collect();
        let decode_all = measure(secs, stripe, || {
            codec.decode_stripe(1, 0, &all, &mut out).expect("decode");
        });
        assert_eq!(out, data);
        let lost: Vec<Option<&[u8]>> = blocks
            .iter()
            .enumerate()
            .map(|(i, b)| if i < m { None } else { Some(b.as_slice()) })
            .collect();
        let decode_lost = measure(secs, stripe, || {
            codec.decode_stripe(1, 0, &lost, &mut out).expect("decode");
        });
        assert_eq!(out, data);
        let verify = measure(secs, stripe, || {
            for b in &blocks {
                std::hint::black_box(verify_block(b).expect("good block"));
            }
        });
        // reed-solomon-simd wants equal, even shards: pad as the codec does.
        let shard = tessera_erasure::payload_len_for(stripe, k);
        let mut padded = data.clone();
        padded.resize(shard * k, 0);
        let mut raw = reed_solomon_simd::ReedSolomonEncoder::new(k, m, shard).expect("raw encoder");
        let raw_encode = measure(secs, stripe, || {
            raw.reset(k, m, shard).expect("reset");
            for chunk in padded.chunks(shard) {
                raw.add_original_shard(chunk).expect("shard");
            }
            std::hint::black_box(raw.encode().expect("encode").recovery(0));
        });
        println!(
            "{:>6} {:>8.2} {:>12.2} {:>14.2} {:>9.2} {:>10.2}",
            format!("{k}+{m}"),
            encode,
            decode_all,
            decode_lost,
            verify,
            raw_encode
        );
    }
}
