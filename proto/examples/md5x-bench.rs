//! MD5 throughput per core: the md-5 crate, and `md5x` with each kernel
//! this CPU has, hashing N bodies fed in interleaved 64 KiB pieces (as a
//! core serving N uploads sees them).
//!
//! usage: cargo run --release -p tessera-proto --example md5x-bench [BODIES] [MIB_PER_BODY]

use std::time::Instant;

use md5::{Digest, Md5};
use tessera_proto::md5x::{Kernel, Md5Pool, PooledMd5};

const PIECE: usize = 64 * 1024;

fn main() {
    let mut args = std::env::args().skip(1);
    let bodies: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(16);
    let mib: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(8);
    let data: Vec<u8> = (0..mib << 20).map(|i| (i as u8).wrapping_mul(151)).collect();
    let total = (bodies * data.len()) as f64;

    let t = Instant::now();
    let mut hs: Vec<Md5> = (0..bodies).map(|_| Md5::new()).collect();
    for piece in data.chunks(PIECE) {
        for h in hs.iter_mut() {
            h.update(piece);
        }
    }
    let want: Vec<[u8; 16]> = hs.into_iter().map(|h| h.finalize().into()).collect();
    println!("md-5 crate     : {:6.2} GB/s", total / t.elapsed().as_secs_f64() / 1e9);

    for kernel in [Kernel::Scalar, Kernel::Avx2, Kernel::Avx512] {
        if !kernel.available() {
            continue;
        }
        let pool = Md5Pool::with_kernel(kernel);
        let t = Instant::now();
        let mut hs: Vec<PooledMd5> = (0..bodies).map(|_| PooledMd5::new(&pool)).collect();
        for piece in data.chunks(PIECE) {
            for h in hs.iter_mut() {
                h.update(piece);
            }
        }
        let got: Vec<[u8; 16]> = hs.into_iter().map(PooledMd5::finish).collect();
        let secs = t.elapsed().as_secs_f64();
        assert_eq!(got, want, "{kernel:?} digests differ");
        let st = pool.borrow().stats();
        println!(
            "md5x {:10}: {:6.2} GB/s ({} SIMD blocks, {} scalar)",
            kernel.name(),
            total / secs / 1e9,
            st.simd_blocks,
            st.scalar_blocks
        );
    }
}
