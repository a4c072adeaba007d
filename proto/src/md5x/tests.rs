//! Tests of the multi-buffer MD5 pool: RFC 1321 vectors, interleaved
//! bodies (copied and kept in place) against the md-5 crate, lane use.

use super::*;

/// xorshift: deterministic inputs without a dependency.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

fn reference(data: &[u8]) -> [u8; 16] {
    Md5::digest(data).into()
}

#[test]
fn rfc1321_vectors() {
    for (input, hex) in [
        ("", "d41d8cd98f00b204e9800998ecf8427e"),
        ("a", "0cc175b9c0f1b6a831c399e269772661"),
        ("abc", "900150983cd24fb0d6963f7d28e17f72"),
        ("message digest", "f96b697d7cb7938d525a2f31aaf161d0"),
        (
            "12345678901234567890123456789012345678901234567890123456789012345678901234567890",
            "57edf4a22be3c955ac49da2e2107b67a",
        ),
    ] {
        for kernel in [Kernel::Scalar, Kernel::Avx2, Kernel::Avx512] {
            let pool = Md5Pool::with_kernel(kernel);
            let mut h = PooledMd5::new(&pool);
            h.update(input.as_bytes());
            assert_eq!(hex::encode(h.finish()), hex, "{input:?} with {kernel:?}");
        }
    }
}

/// The kernels this CPU has (the others are reported as skipped).
fn kernels_here() -> Vec<Kernel> {
    let all = [Kernel::Scalar, Kernel::Avx2, Kernel::Avx512];
    for k in all.iter().filter(|k| !k.available()) {
        eprintln!("{k:?} not on this CPU: skipped");
    }
    all.into_iter().filter(|k| k.available()).collect()
}

/// Feeds `bodies` interleaved, each to its own hasher of `pool`: a
/// body picked at random at each step gets what `feed(rng, i, fed,
/// hasher)` feeds it from byte `fed` on (it returns how many), one
/// body is dropped half-way (a client gone mid-upload), and each body
/// fed whole is finished and its digest checked. `gone(i)` is told of
/// each body finished or dropped.
fn drive(
    rng: &mut Rng,
    pool: &Rc<RefCell<Md5Pool>>,
    bodies: &[Vec<u8>],
    what: &str,
    mut feed: impl FnMut(&mut Rng, usize, usize, &mut PooledMd5) -> usize,
    mut gone: impl FnMut(usize),
) {
    let n = bodies.len();
    let mut hashers: Vec<Option<PooledMd5>> = bodies.iter().map(|_| Some(PooledMd5::new(pool))).collect();
    let mut fed = vec![0usize; n];
    let abandon = rng.below(n as u64) as usize;
    loop {
        let open: Vec<usize> = (0..n).filter(|&i| hashers[i].is_some()).collect();
        if open.is_empty() {
            return;
        }
        let i = open[rng.below(open.len() as u64) as usize];
        if i == abandon && n > 1 && fed[i] > bodies[i].len() / 2 {
            hashers[i] = None;
            gone(i);
            continue;
        }
        if fed[i] == bodies[i].len() {
            let h = hashers[i].take().unwrap();
            gone(i);
            assert_eq!(h.finish(), reference(&bodies[i]), "{what} body {i} ({} B)", bodies[i].len());
            continue;
        }
        fed[i] += feed(rng, i, fed[i], hashers[i].as_mut().unwrap());
    }
}

/// Many bodies of random lengths fed in random pieces, interleaved
/// across the lanes of one pool (more bodies than lanes, some dropped
/// half-way): every digest matches the md-5 crate's.
#[test]
fn interleaved_bodies_match_the_reference() {
    for kernel in kernels_here() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ kernel.lanes() as u64);
        for round in 0..6 {
            let pool = Md5Pool::with_kernel(kernel);
            let n = 1 + rng.below(POOL_LANES as u64 + 4) as usize;
            let sizes: Vec<usize> = (0..n)
                .map(|_| match rng.below(4) {
                    0 => rng.below(130) as usize,
                    1 => rng.below(70_000) as usize,
                    _ => rng.below(3 * FLUSH_BYTES as u64) as usize,
                })
                .collect();
            let bodies: Vec<Vec<u8>> = sizes.iter().map(|&s| rng.bytes(s)).collect();
            let what = format!("{kernel:?} round {round}");
            drive(&mut rng, &pool, &bodies, &what, |rng, i, fed, h| {
                let piece = 1 + rng.below((bodies[i].len() - fed).min(100_000) as u64) as usize;
                h.update(&bodies[i][fed..fed + piece]);
                piece
            }, |_| {});
            if kernel != Kernel::Scalar && n >= MIN_SIMD_LANES && sizes.iter().filter(|&&s| s > FLUSH_BYTES).count() >= MIN_SIMD_LANES {
                assert!(pool.borrow().stats().simd_blocks > 0, "{kernel:?} round {round}: the SIMD kernel never ran");
            }
            // Every lane was given back.
            assert!(pool.borrow().lanes.iter().all(|l| !l.in_use));
        }
    }
}

/// Bodies fed as a server receives them: into buffers of random
/// sizes, each receive hashed where it lies (`update_kept`, the keep
/// being the buffer) or, now and then, copied (`update`), interleaved
/// over the bodies. The test drops its own handle of each buffer as
/// soon as it is fed, so only the lane keeps it: every digest must
/// match, and every buffer must be released once its body finished
/// or was abandoned.
#[test]
fn bodies_hashed_where_they_lie_match_the_reference_and_release_their_buffers() {
    for kernel in kernels_here() {
        let mut rng = Rng(0x5eed_0f_4ea7 ^ kernel.lanes() as u64);
        for round in 0..8 {
            let pool = Md5Pool::with_kernel(kernel);
            let n = 1 + rng.below(POOL_LANES as u64 + 4) as usize;
            let bodies: Vec<Vec<u8>> = (0..n)
                .map(|_| {
                    let size = match rng.below(4) {
                        0 => rng.below(200) as usize,
                        1 => rng.below(70_000) as usize,
                        _ => rng.below(3 * FLUSH_BYTES as u64) as usize,
                    };
                    rng.bytes(size)
                })
                .collect();
            // Per body, the buffer being filled: its bytes, and how far.
            let current: RefCell<Vec<Option<(Keep, usize)>>> = RefCell::new((0..n).map(|_| None).collect());
            let mut released: Vec<std::sync::Weak<dyn std::any::Any + Send + Sync>> = Vec::new();
            let what = format!("{kernel:?} round {round}");
            drive(&mut rng, &pool, &bodies, &what, |rng, i, fed, h| {
                let mut current = current.borrow_mut();
                // No buffer being filled: the next one, of 1 byte to 300 KiB.
                if current[i].is_none() {
                    let len = (1 + rng.below(300 * 1024) as usize).min(bodies[i].len() - fed);
                    let bytes: Keep = std::sync::Arc::new(bodies[i][fed..fed + len].to_vec());
                    released.push(std::sync::Arc::downgrade(&bytes));
                    current[i] = Some((bytes, 0));
                }
                let (keep, filled) = current[i].as_mut().unwrap();
                let room = buffer_len_of(keep) - *filled;
                let piece = 1 + rng.below(room.min(100_000) as u64) as usize;
                let data: &[u8] = &keep.downcast_ref::<Vec<u8>>().unwrap()[*filled..*filled + piece];
                if rng.below(16) == 0 {
                    // Empty feeds change nothing.
                    h.update(&[]);
                    // SAFETY: an empty slice of the kept Vec.
                    unsafe { h.update_kept(&data[..0], keep) };
                }
                if rng.below(4) == 0 {
                    h.update(data);
                } else {
                    // SAFETY: the Vec in `keep` is never changed, and lives while a clone of `keep` does.
                    unsafe { h.update_kept(data, keep) };
                }
                *filled += piece;
                if *filled == buffer_len_of(keep) {
                    current[i] = None; // the buffer goes to its write; only the lane may hold it now
                }
                piece
            }, |i| current.borrow_mut()[i] = None);
            assert!(pool.borrow().lanes.iter().all(|l| !l.in_use));
            assert!(released.iter().all(|w| w.upgrade().is_none()), "{what}: a buffer outlived its body");
        }
    }
    fn buffer_len_of(k: &Keep) -> usize {
        k.downcast_ref::<Vec<u8>>().unwrap().len()
    }
}

/// Groups of 8 lanes or fewer in an AVX-512 pool run the 8-wide kernel,
/// wider ones the 16-wide: both give the reference digests.
#[test]
fn an_avx512_pool_hashes_small_and_wide_groups_right() {
    if !Kernel::Avx512.available() {
        eprintln!("no AVX-512 on this CPU: skipped");
        return;
    }
    let mut rng = Rng(77);
    for n in [3, 5, 8, 9, 13, 16, 19, 24] {
        let pool = Md5Pool::with_kernel(Kernel::Avx512);
        let bodies: Vec<Vec<u8>> = (0..n).map(|i| rng.bytes(2 * FLUSH_BYTES + 64 * i + 7)).collect();
        let mut hs: Vec<PooledMd5> = bodies.iter().map(|_| PooledMd5::new(&pool)).collect();
        for at in (0..3 * FLUSH_BYTES).step_by(16 * 1024) {
            for (h, b) in hs.iter_mut().zip(&bodies) {
                h.update(b.get(at..(at + 16 * 1024).min(b.len())).unwrap_or_default());
            }
        }
        assert!(pool.borrow().stats().simd_blocks > 0, "{n} bodies: the SIMD kernels never ran");
        for (i, (h, b)) in hs.into_iter().zip(&bodies).enumerate() {
            assert_eq!(h.finish(), reference(b), "{n} bodies, body {i}");
        }
    }
}

/// Small bodies in lanes of their size: the first to finish hashes
/// every lane's queued blocks side by side (when at least
/// `MIN_SIMD_LANES` hold some), the rest finish their padding only;
/// one alone is hashed whole by the md-5 crate. Digests as RFC 1321's.
#[test]
fn small_bodies_queued_in_one_turn_hash_side_by_side_at_the_first_finish() {
    for kernel in [Kernel::Avx2, Kernel::Avx512] {
        if !kernel.available() {
            continue;
        }
        let mut rng = Rng(5);
        let pool = Md5Pool::with_kernel(kernel);
        // 4 KiB PUTs: 64 whole blocks each and a 7-byte tail.
        let bodies: Vec<Vec<u8>> = (0..6).map(|_| rng.bytes(4096 + 7)).collect();
        let mut hs: Vec<PooledMd5> = bodies.iter().map(|b| PooledMd5::for_len(&pool, b.len() as u64)).collect();
        for (h, b) in hs.iter_mut().zip(&bodies) {
            assert!(!h.waits() && h.in_lane());
            h.update(b);
            assert!(h.waits(), "whole blocks queued");
        }
        // Each lane reserved about its body, not a whole lane queue.
        assert!(pool.borrow().lanes.iter().filter(|l| l.in_use).all(|l| match &l.pieces[0] {
            Piece::Owned(v) => v.capacity() < 8192,
            Piece::Kept { .. } => false,
        }));
        let mut hs = hs.into_iter();
        let first = hs.next().unwrap();
        assert_eq!(first.finish(), reference(&bodies[0]));
        assert_eq!(pool.borrow().stats().simd_blocks, 6 * 64, "{kernel:?}: every body's whole blocks at once");
        for (i, h) in hs.enumerate() {
            assert!(!h.waits(), "hashed by the first finish");
            assert_eq!(h.finish(), reference(&bodies[i + 1]), "{kernel:?} body {}", i + 1);
        }
        // Alone: the whole body by the md-5 crate.
        let mut h = PooledMd5::for_len(&pool, 4096);
        h.update(&bodies[0][..4096]);
        assert!(h.waits());
        assert_eq!(h.finish(), reference(&bodies[0][..4096]));
        assert_eq!(pool.borrow().stats().scalar_blocks, 64, "{kernel:?}");
    }
}

/// A core's steady stream of uploads: `in_flight` 1 MiB bodies at a
/// time, each started when another finished, fed in pieces of 4 to
/// 128 KiB to a body picked at random (as receives complete on a
/// server, so the queues differ). Returns the pool's figures; every
/// digest is checked.
pub(super) fn steady_uploads(kernel: Kernel, in_flight: usize, bodies: usize, drain_all: bool) -> PoolStats {
    const BODY: usize = 1 << 20;
    let pool = Md5Pool::with_kernel(kernel);
    pool.borrow_mut().drain_all = drain_all;
    let mut rng = Rng(31 + in_flight as u64);
    let data: Vec<Vec<u8>> = (0..4).map(|_| rng.bytes(BODY)).collect();
    let want: Vec<[u8; 16]> = data.iter().map(|d| reference(d)).collect();
    // (body number, bytes fed, hasher); body b hashes data[b % 4].
    let mut open: Vec<(usize, usize, PooledMd5)> = Vec::new();
    let (mut started, mut finished) = (0, 0);
    while finished < bodies {
        while open.len() < in_flight && started < bodies {
            open.push((started, 0, PooledMd5::new(&pool)));
            started += 1;
        }
        let i = rng.below(open.len() as u64) as usize;
        let (b, fed, h) = &mut open[i];
        let piece = (4096 * (1 + rng.below(32) as usize)).min(BODY - *fed);
        h.update(&data[*b % 4][*fed..*fed + piece]);
        *fed += piece;
        if *fed == BODY {
            let (b, _, h) = open.swap_remove(i);
            assert_eq!(h.finish(), want[b % 4], "{kernel:?} body {b}");
            finished += 1;
        }
    }
    let st = pool.borrow().stats();
    st
}

/// Steady uploads keep the vector lanes fuller than when every flush
/// empties every queue: a flush hashes only until no queue is over
/// its bound, and a finish only until its own body is hashed, so the
/// rest waits to be hashed beside what the other uploads bring. Here
/// (random receives, fixed seed) the lanes were 48% full with 8
/// uploads and 55% with 16 when every flush emptied every queue; now
/// 57% and 66%.
#[test]
fn steady_uploads_keep_the_vector_lanes_fuller() {
    let kernel = Kernel::Avx2;
    if !kernel.available() {
        return;
    }
    let total = 48 * (1 << 20) / 64;
    for in_flight in [4, 8, 12, 16] {
        let now = steady_uploads(kernel, in_flight, 48, false);
        let before = steady_uploads(kernel, in_flight, 48, true);
        let full = |st: &PoolStats| st.simd_blocks as f64 / st.simd_slots.max(1) as f64;
        eprintln!("{in_flight} uploads: lanes {:.1}% full, {:.1}% scalar (emptying every queue: {:.1}%, {:.1}%)", 100.0 * full(&now), 100.0 * now.scalar_blocks as f64 / total as f64, 100.0 * full(&before), 100.0 * before.scalar_blocks as f64 / total as f64);
        for st in [&now, &before] {
            assert_eq!(st.simd_blocks + st.scalar_blocks, total as u64, "every whole block hashed once");
        }
        // Fewer vector steps, and no more blocks alone, but a few.
        assert!(now.simd_slots * 100 <= before.simd_slots * 95, "{in_flight} uploads: {now:?} against {before:?}");
        assert!(now.scalar_blocks <= before.scalar_blocks + total as u64 / 50, "{in_flight} uploads: {now:?} against {before:?}");
    }
}

/// Blocks a finish hashes alone count as scalar, as the flush's do.
#[test]
fn blocks_left_alone_at_finish_count_as_scalar() {
    let pool = Md5Pool::with_kernel(Kernel::detect());
    if pool.borrow().kernel() == Kernel::Scalar {
        return;
    }
    let body = Rng(9).bytes(FLUSH_BYTES + 64 * 5 + 3);
    let mut h = PooledMd5::new(&pool);
    h.update(&body[..FLUSH_BYTES]);
    assert_eq!(pool.borrow().stats().scalar_blocks, (FLUSH_BYTES / 64) as u64, "a flush's worth alone");
    h.update(&body[FLUSH_BYTES..]);
    assert_eq!(h.finish(), reference(&body));
    assert_eq!(pool.borrow().stats(), PoolStats { simd_blocks: 0, scalar_blocks: (FLUSH_BYTES / 64 + 5) as u64, simd_slots: 0 });
}

#[test]
fn lanes_run_out_then_bodies_hash_alone() {
    let pool = Md5Pool::with_kernel(Kernel::detect());
    let simd = pool.borrow().kernel() != Kernel::Scalar;
    let hs: Vec<PooledMd5> = (0..POOL_LANES + 2).map(|_| PooledMd5::new(&pool)).collect();
    let in_lanes = hs.iter().filter(|h| h.in_lane()).count();
    assert_eq!(in_lanes, if simd { POOL_LANES } else { 0 });
    drop(hs);
    assert_eq!(PooledMd5::new(&pool).in_lane(), simd);
}
