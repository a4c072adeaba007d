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
mod tests;
