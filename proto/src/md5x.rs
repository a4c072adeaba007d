//! Multi-buffer MD5: the MD5s of several bodies computed side by side,
//! one SIMD lane per body (8 lanes with AVX2, 16 with AVX-512).
//!
//! MD5 is a chain of dependent 32-bit steps, so one stream cannot go
//! faster than one core's scalar rate (about 0.5 GB/s here), and the S3
//! ETag of every PUT is an MD5 of its body: on a core serving several
//! uploads at once, that rate is the PUT wall. Independent streams can
//! share one instruction stream instead: lane `l` of every vector holds
//! body `l`'s state.
//!
//! `Md5Pool` is one core's set of lanes. A body's hasher (`PooledMd5`)
//! takes a lane while one is free (else it hashes alone, scalar), and its
//! `update` only queues bytes in its lane (a copy; `update_kept` queues
//! them where they lie, with a handle keeping that memory); once a lane holds
//! `FLUSH_BYTES`, every lane's whole blocks are hashed together, and a
//! `finish` flushes all lanes before padding its own. Uploads on a core
//! arrive interleaved, so the lanes fill at similar rates. Which kernel
//! runs is chosen once, by the CPU's features; every kernel gives the
//! digests of RFC 1321 (tests compare them with the `md-5` crate).

use std::cell::RefCell;
use std::rc::Rc;

use md5::{Digest, Md5};

/// Bytes one lane queues before the pool hashes every lane's blocks.
pub const FLUSH_BYTES: usize = 256 * 1024;
/// What a lane's queue reserves when a body takes it: a flush's worth and
/// one receive more (it grows past that only for a larger receive).
const LANE_QUEUE_BYTES: usize = FLUSH_BYTES + 64 * 1024;
/// Lanes in a pool: bodies hashed in lanes at once on one core, run by
/// the kernel in groups of its width (more uploads than that per core
/// are common at 64 connections).
pub const POOL_LANES: usize = 32;
/// The widest kernel's width (AVX-512).
const MAX_WIDTH: usize = 16;
/// Fewer lanes with blocks than this are hashed one by one (scalar). An
/// 8-wide step costs about 1.4 scalar ones here, so two lanes already
/// gain: two bodies 0.90 GB/s against 0.57 scalar (`md5x-bench 2 8`).
const MIN_SIMD_LANES: usize = 2;

const INIT: [u32; 4] = [0x6745_2301, 0xefcd_ab89, 0x98ba_dcfe, 0x1032_5476];

const K: [u32; 64] = [
    0xd76aa478, 0xe8c7b756, 0x242070db, 0xc1bdceee, 0xf57c0faf, 0x4787c62a, 0xa8304613, 0xfd469501, 0x698098d8,
    0x8b44f7af, 0xffff5bb1, 0x895cd7be, 0x6b901122, 0xfd987193, 0xa679438e, 0x49b40821, 0xf61e2562, 0xc040b340,
    0x265e5a51, 0xe9b6c7aa, 0xd62f105d, 0x02441453, 0xd8a1e681, 0xe7d3fbc8, 0x21e1cde6, 0xc33707d6, 0xf4d50d87,
    0x455a14ed, 0xa9e3e905, 0xfcefa3f8, 0x676f02d9, 0x8d2a4c8a, 0xfffa3942, 0x8771f681, 0x6d9d6122, 0xfde5380c,
    0xa4beea44, 0x4bdecfa9, 0xf6bb4b60, 0xbebfbc70, 0x289b7ec6, 0xeaa127fa, 0xd4ef3085, 0x04881d05, 0xd9d4d039,
    0xe6db99e5, 0x1fa27cf8, 0xc4ac5665, 0xf4292244, 0x432aff97, 0xab9423a7, 0xfc93a039, 0x655b59c3, 0x8f0ccc92,
    0xffeff47d, 0x85845dd1, 0x6fa87e4f, 0xfe2ce6e0, 0xa3014314, 0x4e0811a1, 0xf7537e82, 0xbd3af235, 0x2ad7d2bb,
    0xeb86d391,
];

/// Left-rotation of each round's four steps.
const S: [[u32; 4]; 4] = [[7, 12, 17, 22], [5, 9, 14, 20], [4, 11, 16, 23], [6, 10, 15, 21]];

/// The message word step `i` reads.
const fn word(i: usize) -> usize {
    match i / 16 {
        0 => i,
        1 => (5 * i + 1) % 16,
        2 => (3 * i + 5) % 16,
        _ => (7 * i) % 16,
    }
}

fn compress1(state: &mut [u32; 4], block: &[u8]) {
    let mut m = [0u32; 16];
    for (w, c) in m.iter_mut().zip(block.chunks_exact(4)) {
        *w = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
    }
    let [mut a, mut b, mut c, mut d] = *state;
    macro_rules! step {
        ($i:expr, $f:expr) => {{
            let t = a.wrapping_add($f).wrapping_add(K[$i]).wrapping_add(m[word($i)]);
            a = d;
            d = c;
            c = b;
            b = b.wrapping_add(t.rotate_left(S[$i / 16][$i % 4]));
        }};
    }
    // Unrolled by four so that each step's rotation is a constant.
    for q in 0..4 {
        let i = q * 4;
        step!(i, d ^ (b & (c ^ d)));
        step!(i + 1, d ^ (b & (c ^ d)));
        step!(i + 2, d ^ (b & (c ^ d)));
        step!(i + 3, d ^ (b & (c ^ d)));
    }
    for q in 0..4 {
        let i = 16 + q * 4;
        step!(i, c ^ (d & (b ^ c)));
        step!(i + 1, c ^ (d & (b ^ c)));
        step!(i + 2, c ^ (d & (b ^ c)));
        step!(i + 3, c ^ (d & (b ^ c)));
    }
    for q in 0..4 {
        let i = 32 + q * 4;
        step!(i, b ^ c ^ d);
        step!(i + 1, b ^ c ^ d);
        step!(i + 2, b ^ c ^ d);
        step!(i + 3, b ^ c ^ d);
    }
    for q in 0..4 {
        let i = 48 + q * 4;
        step!(i, c ^ (b | !d));
        step!(i + 1, c ^ (b | !d));
        step!(i + 2, c ^ (b | !d));
        step!(i + 3, c ^ (b | !d));
    }
    state[0] = state[0].wrapping_add(a);
    state[1] = state[1].wrapping_add(b);
    state[2] = state[2].wrapping_add(c);
    state[3] = state[3].wrapping_add(d);
}

#[cfg(target_arch = "x86_64")]
mod x86;

/// The kernels this CPU can run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kernel {
    Scalar,
    Avx2,
    /// AVX-512F with AVX-512VL (its 8-wide groups use 256-bit registers).
    Avx512,
}

impl Kernel {
    /// The widest kernel this CPU has.
    pub fn detect() -> Kernel {
        #[cfg(target_arch = "x86_64")]
        {
            if Kernel::Avx512.available() {
                return Kernel::Avx512;
            }
            if std::arch::is_x86_feature_detected!("avx2") {
                return Kernel::Avx2;
            }
        }
        Kernel::Scalar
    }

    /// Whether this CPU can run it.
    pub fn available(self) -> bool {
        match self {
            Kernel::Scalar => true,
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2 => std::arch::is_x86_feature_detected!("avx2"),
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512 => std::arch::is_x86_feature_detected!("avx512f") && std::arch::is_x86_feature_detected!("avx512vl"),
            #[cfg(not(target_arch = "x86_64"))]
            _ => false,
        }
    }

    pub fn lanes(self) -> usize {
        match self {
            Kernel::Scalar => 1,
            Kernel::Avx2 => 8,
            Kernel::Avx512 => 16,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Kernel::Scalar => "scalar",
            Kernel::Avx2 => "avx2x8",
            Kernel::Avx512 => "avx512x16",
        }
    }
}

/// What keeps bytes a lane reads in place alive (see
/// [`PooledMd5::update_kept`]): dropped once the lane has hashed them.
pub type Keep = std::sync::Arc<dyn std::any::Any + Send + Sync>;

/// Bytes queued in a lane, in order: a copy, or bytes read where they
/// lie (a receive buffer's), with what keeps them there.
enum Piece {
    Owned(Vec<u8>),
    Kept { ptr: *const u8, len: usize, _keep: Keep },
}

impl Piece {
    fn len(&self) -> usize {
        match self {
            Piece::Owned(v) => v.len(),
            Piece::Kept { len, .. } => *len,
        }
    }

    /// Bytes `at..at + len` of the piece.
    fn bytes(&self, at: usize, len: usize) -> &[u8] {
        match self {
            Piece::Owned(v) => &v[at..at + len],
            Piece::Kept { ptr, len: have, .. } => {
                assert!(at + len <= *have);
                // SAFETY: `update_kept`'s caller keeps these bytes allocated
                // and unchanged while `_keep` lives, and `_keep` lives in
                // this piece.
                unsafe { std::slice::from_raw_parts(ptr.add(at), len) }
            }
        }
    }
}

#[derive(Default)]
struct Lane {
    in_use: bool,
    state: [u32; 4],
    /// Bytes queued, in order; `pieces[0][done..]` is the first not yet
    /// hashed. Every piece but the last is a whole number of blocks long,
    /// so a block never spans two pieces.
    pieces: std::collections::VecDeque<Piece>,
    done: usize,
    /// Bytes queued and not yet hashed.
    unhashed: usize,
    /// What the first copied piece reserves (`take_lane`).
    reserve: usize,
    /// The buffer of the last copied piece hashed to its end, for the
    /// next copy (`compact` kept it before pieces).
    spare: Vec<u8>,
    /// Bytes fed so far (for the padding's length).
    total: u64,
}

impl Lane {
    /// Whole blocks queued, over every piece.
    fn blocks(&self) -> usize {
        let tail = self.pieces.back().map_or(0, |p| p.len() % 64);
        (self.unhashed - tail) / 64
    }

    /// Whole blocks of the first piece not yet hashed: what one kernel
    /// call can take from this lane.
    fn head_blocks(&self) -> usize {
        self.pieces.front().map_or(0, |p| (p.len() - self.done) / 64)
    }

    /// The first piece's next `n` blocks.
    fn head(&self, n: usize) -> &[u8] {
        self.pieces[0].bytes(self.done, 64 * n)
    }

    /// Marks the first piece's next `n` blocks hashed; a piece hashed to
    /// its end goes (and with it what kept its bytes).
    fn advance(&mut self, n: usize) {
        self.done += 64 * n;
        self.unhashed -= 64 * n;
        if self.pieces.front().is_some_and(|p| self.done == p.len()) {
            if let Some(Piece::Owned(mut v)) = self.pieces.pop_front() {
                if v.capacity() > self.spare.capacity() {
                    v.clear();
                    self.spare = v;
                }
            }
            self.done = 0;
        }
    }

    /// Ends the last piece on a block boundary before bytes are added
    /// after it in another piece: a partial block at its end moves into a
    /// new copied piece (at most 63 bytes copied), which the new bytes
    /// then extend.
    fn close_last(&mut self) -> Option<Vec<u8>> {
        let last = self.pieces.len().checked_sub(1)?;
        let len = self.pieces[last].len();
        let start = if last == 0 { self.done } else { 0 };
        let r = (len - start) % 64;
        if r == 0 {
            return None;
        }
        let mut tail = Vec::with_capacity(64.max(self.reserve.min(64 * 1024)));
        tail.extend_from_slice(self.pieces[last].bytes(len - r, r));
        match &mut self.pieces[last] {
            Piece::Owned(v) => v.truncate(len - r),
            Piece::Kept { len: l, .. } => *l -= r,
        }
        if len - r == start {
            self.pieces.pop_back();
            if last == 0 {
                self.done = 0;
            }
        }
        Some(tail)
    }

    /// Queues a copy of `data`.
    fn push_copy(&mut self, data: &[u8]) {
        // (No empty piece: one in the middle would hold no block, and the
        // rounds stop at a first piece without blocks.)
        if data.is_empty() {
            return;
        }
        self.unhashed += data.len();
        if let Some(Piece::Owned(v)) = self.pieces.back_mut() {
            v.extend_from_slice(data);
            return;
        }
        let mut v = match self.close_last() {
            Some(tail) => tail,
            None if self.spare.capacity() >= data.len() => std::mem::take(&mut self.spare),
            None => Vec::with_capacity(self.reserve.max(data.len())),
        };
        v.extend_from_slice(data);
        self.pieces.push_back(Piece::Owned(v));
    }

    /// Queues `data` where it lies (see `PooledMd5::update_kept`).
    ///
    /// # Safety
    /// As `PooledMd5::update_kept`.
    unsafe fn push_kept(&mut self, data: &[u8], keep: &Keep) {
        if data.is_empty() {
            return;
        }
        self.unhashed += data.len();
        let ptr = data.as_ptr();
        if let Some(Piece::Kept { ptr: p, len, _keep: k }) = self.pieces.back_mut() {
            // The next bytes of the same buffer: the piece grows.
            if std::sync::Arc::ptr_eq(k, keep) && p.wrapping_add(*len) == ptr {
                *len += data.len();
                return;
            }
        }
        let mut data = data;
        let mut ptr = ptr;
        if let Some(mut tail) = self.close_last() {
            // The block the last piece left open is completed by copying.
            let take = (64 - tail.len()).min(data.len());
            tail.extend_from_slice(&data[..take]);
            self.pieces.push_back(Piece::Owned(tail));
            data = &data[take..];
            ptr = data.as_ptr();
            if data.is_empty() {
                return;
            }
        }
        self.pieces.push_back(Piece::Kept { ptr, len: data.len(), _keep: keep.clone() });
    }

    /// Hashes its queued whole blocks one by one (scalar); how many.
    fn hash_alone(&mut self) -> usize {
        let mut total = 0;
        loop {
            let n = self.head_blocks();
            if n == 0 {
                return total;
            }
            for j in 0..n {
                compress1(&mut self.state, self.pieces[0].bytes(self.done + 64 * j, 64));
            }
            self.advance(n);
            total += n;
        }
    }

    /// Forgets hashed bytes of a copied first piece, keeping its buffer.
    fn compact(&mut self) {
        if self.done == 0 {
            return;
        }
        if let Some(Piece::Owned(v)) = self.pieces.front_mut() {
            v.drain(..self.done);
            self.done = 0;
        }
    }

    /// The bytes after the last whole block (fewer than 64), once every
    /// whole block is hashed.
    fn tail(&self) -> Vec<u8> {
        match self.pieces.back() {
            None => Vec::new(),
            Some(p) => {
                let start = if self.pieces.len() == 1 { self.done } else { 0 };
                p.bytes(start, p.len() - start).to_vec()
            }
        }
    }
}

/// One core's lanes (see the module comment). Not `Sync`: one per core.
pub struct Md5Pool {
    kernel: Kernel,
    lanes: Vec<Lane>,
    /// Blocks hashed by a SIMD kernel and by the scalar code, for the
    /// figures (`stats`).
    simd_blocks: u64,
    scalar_blocks: u64,
    simd_slots: u64,
    /// The earlier policy, kept for the tests' comparison: every flush
    /// hashes every lane's whole blocks while two lanes have some.
    drain_all: bool,
}

/// What a pool did: blocks hashed by each path.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PoolStats {
    pub simd_blocks: u64,
    pub scalar_blocks: u64,
    /// Block slots of the SIMD steps run (the kernel's width per step):
    /// `simd_blocks / simd_slots` is how full the vector lanes were.
    pub simd_slots: u64,
}

impl Md5Pool {
    /// A pool using the widest kernel of this CPU.
    pub fn new() -> Rc<RefCell<Md5Pool>> {
        Self::with_kernel(Kernel::detect())
    }

    /// A pool using `kernel` (falls back to scalar if the CPU lacks it).
    pub fn with_kernel(kernel: Kernel) -> Rc<RefCell<Md5Pool>> {
        let kernel = if kernel.available() { kernel } else { Kernel::Scalar };
        let lanes = if kernel == Kernel::Scalar { Vec::new() } else { (0..POOL_LANES).map(|_| Lane::default()).collect() };
        Rc::new(RefCell::new(Md5Pool { kernel, lanes, simd_blocks: 0, scalar_blocks: 0, simd_slots: 0, drain_all: false }))
    }

    pub fn kernel(&self) -> Kernel {
        self.kernel
    }

    pub fn stats(&self) -> PoolStats {
        PoolStats { simd_blocks: self.simd_blocks, scalar_blocks: self.scalar_blocks, simd_slots: self.simd_slots }
    }

    fn take_lane(&mut self, reserve: usize) -> Option<usize> {
        if self.kernel == Kernel::Scalar {
            return None;
        }
        let l = self.lanes.iter().position(|l| !l.in_use)?;
        let lane = &mut self.lanes[l];
        lane.in_use = true;
        lane.state = INIT;
        lane.pieces.clear();
        // Room for what a lane copies between flushes, taken once by its
        // first copied piece: grown by doubling, the queue copied itself
        // over about 0.4 MiB per 1 MiB body (1.3% of a node's CPU under
        // 1 MiB PUTs). Released with the lane, so an idle pool holds
        // nothing.
        lane.reserve = reserve;
        lane.done = 0;
        lane.unhashed = 0;
        lane.total = 0;
        Some(l)
    }

    /// Whether a lane holds `FLUSH_BYTES` or more not yet hashed.
    fn over_full(&self) -> bool {
        self.lanes.iter().any(|l| l.unhashed >= FLUSH_BYTES)
    }

    fn release(&mut self, l: usize) {
        let lane = &mut self.lanes[l];
        lane.in_use = false;
        lane.pieces = Default::default();
        lane.spare = Vec::new();
        lane.done = 0;
        lane.unhashed = 0;
    }

    /// Hashes queued blocks side by side: rounds of `n` blocks of every
    /// lane that has blocks (`n` the fewest any of them has), while at
    /// least `MIN_SIMD_LANES` have some and `due` says the pool must go on:
    /// [`Md5Pool::over_full`] when a lane filled up, [`Lane::blocks`] of
    /// the lane a finish needs. No further: a round after lanes ran dry
    /// hashes the rest with vector lanes idle, while blocks left queued
    /// are hashed later beside what the other bodies bring meanwhile
    /// (uploads on a core start at different times, so their queues
    /// differ: emptying every queue at each flush ran about half the
    /// vector lanes idle under 1 MiB PUTs). What stays queued past
    /// `FLUSH_BYTES` (no other lane had blocks) is hashed alone, so memory
    /// stays bounded.
    fn flush(&mut self, due: impl Fn(&Md5Pool) -> bool) {
        if self.kernel != Kernel::Scalar {
            while self.drain_all || due(self) {
                let busy: Vec<usize> = (0..self.lanes.len()).filter(|&l| self.lanes[l].head_blocks() > 0).collect();
                if busy.len() < MIN_SIMD_LANES {
                    break;
                }
                let n = busy.iter().map(|&l| self.lanes[l].head_blocks()).min().unwrap_or(0);
                self.run_simd(&busy, n);
            }
        }
        for lane in &mut self.lanes {
            if lane.unhashed >= FLUSH_BYTES {
                self.scalar_blocks += lane.hash_alone() as u64;
            }
            if lane.done >= FLUSH_BYTES / 2 {
                lane.compact();
            }
        }
    }

    /// `n` blocks of each lane in `busy` (at most the kernel's width at a
    /// time, in one kernel call: the states stay in registers); idle
    /// vector lanes hash a zero block whose result is dropped.
    fn run_simd(&mut self, busy: &[usize], n: usize) {
        #[cfg(target_arch = "x86_64")]
        {
            let width = self.kernel.lanes();
            for group in busy.chunks(width) {
                let mut states = [[0u32; 4]; MAX_WIDTH];
                let mut data: [&[u8]; MAX_WIDTH] = [&[]; MAX_WIDTH];
                for (v, &l) in group.iter().enumerate() {
                    let lane = &self.lanes[l];
                    states[v] = lane.state;
                    data[v] = lane.head(n);
                }
                match self.kernel {
                    // A group of 8 lanes or fewer runs an 8-wide kernel:
                    // 16-wide steps with 8 lanes busy waste half of each.
                    Kernel::Avx512 if group.len() > 8 => {
                        self.simd_slots += 16 * n as u64;
                        // SAFETY: the pool only picks a kernel the CPU has (`with_kernel`).
                        unsafe { x86::compress16(&mut states, &data, n) }
                    }
                    Kernel::Avx512 => {
                        self.simd_slots += 8 * n as u64;
                        let s: &mut [[u32; 4]; 8] = (&mut states[..8]).try_into().unwrap_or_else(|_| unreachable!());
                        let d: &[&[u8]; 8] = (&data[..8]).try_into().unwrap_or_else(|_| unreachable!());
                        // SAFETY: as above (Kernel::Avx512 needs AVX-512VL too).
                        unsafe { x86::compress8_vl(s, d, n) }
                    }
                    Kernel::Avx2 => {
                        self.simd_slots += 8 * n as u64;
                        let s: &mut [[u32; 4]; 8] = (&mut states[..8]).try_into().unwrap_or_else(|_| unreachable!());
                        let d: &[&[u8]; 8] = (&data[..8]).try_into().unwrap_or_else(|_| unreachable!());
                        // SAFETY: as above.
                        unsafe { x86::compress8(s, d, n) }
                    }
                    Kernel::Scalar => unreachable!("a scalar pool has no lanes"),
                }
                for (v, &l) in group.iter().enumerate() {
                    let lane = &mut self.lanes[l];
                    lane.state = states[v];
                    lane.advance(n);
                }
                self.simd_blocks += (n * group.len()) as u64;
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            let _ = (busy, n);
            unreachable!("no SIMD kernel on this architecture");
        }
    }
}

/// An MD5 computation: in a pool's lane when one was free, else alone.
pub struct PooledMd5 {
    inner: Inner,
}

enum Inner {
    Lane { pool: Rc<RefCell<Md5Pool>>, lane: usize },
    /// No lane: the md-5 crate (faster than `compress1` on one stream).
    Alone(Md5),
}

impl PooledMd5 {
    /// Takes a lane of `pool` if one is free.
    pub fn new(pool: &Rc<RefCell<Md5Pool>>) -> PooledMd5 {
        Self::reserving(pool, LANE_QUEUE_BYTES)
    }

    /// Takes a lane for a message of `len` bytes (a small body: its lane
    /// reserves only that).
    pub fn for_len(pool: &Rc<RefCell<Md5Pool>>, len: u64) -> PooledMd5 {
        Self::reserving(pool, (len as usize).saturating_add(64).min(LANE_QUEUE_BYTES))
    }

    fn reserving(pool: &Rc<RefCell<Md5Pool>>, reserve: usize) -> PooledMd5 {
        let lane = pool.borrow_mut().take_lane(reserve);
        let inner = match lane {
            Some(lane) => Inner::Lane { pool: pool.clone(), lane },
            None => Inner::alone(),
        };
        PooledMd5 { inner }
    }

    /// A computation outside any pool (scalar).
    pub fn alone() -> PooledMd5 {
        PooledMd5 { inner: Inner::alone() }
    }

    /// Whether it got a lane (for tests and figures).
    pub fn in_lane(&self) -> bool {
        matches!(self.inner, Inner::Lane { .. })
    }

    /// Whether whole blocks of it wait in its lane: a `finish` now would
    /// hash them with whatever the other lanes hold at this moment, so a
    /// caller that can let the other bodies of this turn arrive first
    /// (yield once) gets them hashed side by side.
    pub fn waits(&self) -> bool {
        match &self.inner {
            Inner::Lane { pool, lane } => pool.try_borrow().is_ok_and(|p| p.lanes[*lane].blocks() > 0),
            Inner::Alone(_) => false,
        }
    }

    pub fn update(&mut self, data: &[u8]) {
        match &mut self.inner {
            Inner::Lane { pool, lane } => {
                let mut p = pool.borrow_mut();
                let l = &mut p.lanes[*lane];
                l.push_copy(data);
                l.total += data.len() as u64;
                if l.unhashed >= FLUSH_BYTES {
                    p.flush(Md5Pool::over_full);
                }
            }
            Inner::Alone(h) => h.update(data),
        }
    }

    /// `update` without the copy: the lane reads `data` where it lies
    /// when it hashes it (beside the other lanes, as `update`'s copies),
    /// and holds a clone of `keep` until then. Copying every body byte
    /// into its lane was 8% of all CPU under 1 MiB PUTs.
    ///
    /// # Safety
    /// `data`'s bytes must stay allocated and unchanged for as long as
    /// any clone of `keep` lives (the lane drops its clone once it has
    /// hashed them, at the latest when this hasher is dropped).
    pub unsafe fn update_kept(&mut self, data: &[u8], keep: &Keep) {
        match &mut self.inner {
            Inner::Lane { pool, lane } => {
                let mut p = pool.borrow_mut();
                let l = &mut p.lanes[*lane];
                // SAFETY: passed on from our caller.
                unsafe { l.push_kept(data, keep) };
                l.total += data.len() as u64;
                if l.unhashed >= FLUSH_BYTES {
                    p.flush(Md5Pool::over_full);
                }
            }
            Inner::Alone(h) => h.update(data),
        }
    }

    pub fn finish(mut self) -> [u8; 16] {
        let (mut state, tail, total) = match &mut self.inner {
            Inner::Lane { pool, lane } => {
                let mut p = pool.borrow_mut();
                let me = *lane;
                p.flush(|p| p.lanes[me].blocks() > 0);
                let l = &mut p.lanes[*lane];
                if l.unhashed as u64 == l.total && l.pieces.len() == 1 {
                    // Nothing hashed in a lane: the whole message is here,
                    // and the md-5 crate is faster alone than `compress1`.
                    let (digest, blocks) = (Md5::digest(l.pieces[0].bytes(0, l.unhashed)), l.total.div_ceil(64));
                    p.scalar_blocks += blocks;
                    return digest.into();
                }
                // What no flush paired is hashed alone, in place: up to a
                // flush's worth of whole blocks, then the short tail.
                let whole = l.hash_alone();
                let out = (l.state, l.tail(), l.total);
                p.scalar_blocks += whole as u64;
                out
            }
            Inner::Alone(h) => return std::mem::take(h).finalize().into(),
        };
        let mut last = tail;
        last.push(0x80);
        while last.len() % 64 != 56 {
            last.push(0);
        }
        last.extend_from_slice(&(total.wrapping_mul(8)).to_le_bytes());
        for block in last.chunks_exact(64) {
            compress1(&mut state, block);
        }
        let mut out = [0u8; 16];
        for (o, w) in out.chunks_exact_mut(4).zip(state) {
            o.copy_from_slice(&w.to_le_bytes());
        }
        out
    }
}

impl Inner {
    fn alone() -> Inner {
        Inner::Alone(Md5::new())
    }
}

impl Drop for PooledMd5 {
    fn drop(&mut self) {
        if let Inner::Lane { pool, lane } = &self.inner {
            // A body abandoned mid-way (or finished) gives its lane back.
            if let Ok(mut p) = pool.try_borrow_mut() {
                p.release(*lane);
            }
        }
    }
}

#[cfg(test)]
mod tests {
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
}
