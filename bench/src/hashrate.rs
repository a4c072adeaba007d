//! `tessera-bench hash`: MD5 and SHA-256 throughput on one core with the crates
//! the node uses (`md-5` for ETags and Content-MD5, `ring` for SigV4 payload
//! hashes), over 1 MiB messages (streaming) and 4 KiB messages (per-object cost),
//! and the node's multi-buffer MD5 (`tessera_proto::md5x`: several uploads'
//! ETags hashed side by side, one SIMD lane each) with 8 and 16 bodies at once.

use std::time::{Duration, Instant};

use md5::{Digest, Md5};
use tessera_proto::md5x::{Kernel, Md5Pool, PooledMd5};

/// Chunk the node feeds its hashers with (a receive buffer's worth).
const CHUNK_BYTES: usize = 64 * 1024;
/// Message sizes measured.
const MESSAGE_BYTES: [usize; 2] = [1 << 20, 4096];

/// Hashes `message`-byte messages for `duration`; MB/s (10^6 bytes per second).
fn rate(duration: Duration, message: usize, hash: &dyn Fn(&[u8]) -> u8) -> f64 {
    let data = vec![0x5au8; message];
    let started = Instant::now();
    let mut bytes = 0u64;
    let mut sink = 0u8;
    while started.elapsed() < duration {
        for _ in 0..16 {
            sink ^= hash(&data);
            bytes += message as u64;
        }
    }
    // Keeps the optimiser from dropping the hashing.
    std::hint::black_box(sink);
    bytes as f64 / started.elapsed().as_secs_f64() / 1e6
}

fn md5_of(data: &[u8]) -> u8 {
    let mut h = Md5::new();
    for c in data.chunks(CHUNK_BYTES) {
        h.update(c);
    }
    h.finalize()[0]
}

fn sha256_of(data: &[u8]) -> u8 {
    let mut h = ring::digest::Context::new(&ring::digest::SHA256);
    for c in data.chunks(CHUNK_BYTES) {
        h.update(c);
    }
    h.finish().as_ref()[0]
}

/// `bodies` 1 MiB bodies hashed at once in one pool of `kernel`, fed a
/// chunk of each in turn as a core's interleaved uploads feed it, for
/// `duration`; MB/s of all bodies together.
fn pooled_rate(duration: Duration, kernel: Kernel, bodies: usize) -> f64 {
    let data = vec![0x5au8; 1 << 20];
    let pool = Md5Pool::with_kernel(kernel);
    let started = Instant::now();
    let (mut bytes, mut sink) = (0u64, 0u8);
    while started.elapsed() < duration {
        let mut hs: Vec<PooledMd5> = (0..bodies).map(|_| PooledMd5::new(&pool)).collect();
        for c in data.chunks(CHUNK_BYTES) {
            for h in &mut hs {
                h.update(c);
            }
        }
        for h in hs {
            sink ^= h.finish()[0];
        }
        bytes += (bodies * data.len()) as u64;
    }
    std::hint::black_box(sink);
    bytes as f64 / started.elapsed().as_secs_f64() / 1e6
}

/// The table, one line per algorithm and message size, then the
/// multi-buffer kernels this CPU has.
pub fn measure(duration: Duration) -> String {
    let mut out = String::from("hash     crate  message   MB/s (one core)\n");
    for message in MESSAGE_BYTES {
        for (name, krate, f) in [("md5", "md-5", &md5_of as &dyn Fn(&[u8]) -> u8), ("sha256", "ring", &sha256_of)] {
            let label = if message >= 1 << 20 { "1 MiB" } else { "4 KiB" };
            out.push_str(&format!("{name:<8} {krate:<6} {label:<8} {:>7.0}\n", rate(duration, message, f)));
        }
    }
    for kernel in [Kernel::Avx2, Kernel::Avx512].into_iter().filter(|k| k.available()) {
        for bodies in [8, 16] {
            let label = format!("{bodies} bodies");
            out.push_str(&format!("md5x     {} {label:<8} {:>7.0}\n", kernel.name(), pooled_rate(duration, kernel, bodies)));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_the_real_ones() {
        // RFC 1321 and FIPS 180-2 test vectors, through the chunked paths.
        let md5: [u8; 16] = Md5::digest(b"abc").into();
        assert_eq!(md5[0], 0x90);
        assert_eq!(md5_of(b"abc"), 0x90);
        assert_eq!(sha256_of(b"abc"), 0xba);
        let big = vec![b'a'; 1_000_000];
        assert_eq!(md5_of(&big), 0x77); // 7707d6ae4e027c70eea2a935c2296f21
        assert_eq!(sha256_of(&big), 0xcd); // cdc76e5c9914fb92...
        let kernels = [Kernel::Avx2, Kernel::Avx512].iter().filter(|k| k.available()).count();
        assert_eq!(measure(Duration::from_millis(5)).lines().count(), 5 + 2 * kernels);
    }
}
