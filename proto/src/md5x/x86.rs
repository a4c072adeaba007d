//! The SIMD kernels of `md5x`: `n` blocks of each of 8 or 16 lanes per
//! call, one body per 32-bit vector lane (see the parent module).

use super::{word, K};
use std::arch::x86_64::*;

/// What an idle vector lane reads (its result is dropped).
static ZERO_BLOCK: [u8; 64] = [0; 64];

/// Where each lane's blocks start and how far apart they are: a lane
/// shorter than `n` blocks is idle and reads the zero block `n` times.
fn lane_bases<const W: usize>(data: &[&[u8]; W], n: usize) -> ([*const u8; W], [usize; W]) {
    let mut base = [ZERO_BLOCK.as_ptr(); W];
    let mut stride = [0usize; W];
    for l in 0..W {
        if data[l].len() >= 64 * n {
            base[l] = data[l].as_ptr();
            stride[l] = 64;
        }
    }
    (base, stride)
}

/// `v`, as a value the compiler cannot see into: without it LLVM
/// moves the constant's add after the round function's (constants
/// last), and each step waits on one more add.
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn opaque256(mut v: __m256i) -> __m256i {
    // An empty asm that only names the register.
    std::arch::asm!("/* {0} */", inout(ymm_reg) v, options(pure, nomem, nostack, preserves_flags));
    v
}

#[inline]
#[target_feature(enable = "avx512f")]
unsafe fn opaque512(mut v: __m512i) -> __m512i {
    std::arch::asm!("/* {0} */", inout(zmm_reg) v, options(pure, nomem, nostack, preserves_flags));
    v
}

/// Eight rows (eight 32-bit words of lane `l` in `r[l]`) to columns:
/// word `k` of every lane in `out[k]`, lane `l`'s in element `l`.
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn transpose8(r: &[__m256i; 8]) -> [__m256i; 8] {
    let t0 = _mm256_unpacklo_epi32(r[0], r[1]);
    let t1 = _mm256_unpackhi_epi32(r[0], r[1]);
    let t2 = _mm256_unpacklo_epi32(r[2], r[3]);
    let t3 = _mm256_unpackhi_epi32(r[2], r[3]);
    let t4 = _mm256_unpacklo_epi32(r[4], r[5]);
    let t5 = _mm256_unpackhi_epi32(r[4], r[5]);
    let t6 = _mm256_unpacklo_epi32(r[6], r[7]);
    let t7 = _mm256_unpackhi_epi32(r[6], r[7]);
    let u0 = _mm256_unpacklo_epi64(t0, t2);
    let u1 = _mm256_unpackhi_epi64(t0, t2);
    let u2 = _mm256_unpacklo_epi64(t1, t3);
    let u3 = _mm256_unpackhi_epi64(t1, t3);
    let u4 = _mm256_unpacklo_epi64(t4, t6);
    let u5 = _mm256_unpackhi_epi64(t4, t6);
    let u6 = _mm256_unpacklo_epi64(t5, t7);
    let u7 = _mm256_unpackhi_epi64(t5, t7);
    [
        _mm256_permute2x128_si256::<0x20>(u0, u4),
        _mm256_permute2x128_si256::<0x20>(u1, u5),
        _mm256_permute2x128_si256::<0x20>(u2, u6),
        _mm256_permute2x128_si256::<0x20>(u3, u7),
        _mm256_permute2x128_si256::<0x31>(u0, u4),
        _mm256_permute2x128_si256::<0x31>(u1, u5),
        _mm256_permute2x128_si256::<0x31>(u2, u6),
        _mm256_permute2x128_si256::<0x31>(u3, u7),
    ]
}

/// The 16 message words of block `j` of 8 lanes (two loads and a
/// transpose per half, not 128 scalar inserts).
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn words8(base: &[*const u8], stride: &[usize], j: usize) -> [__m256i; 16] {
    let mut lo = [_mm256_setzero_si256(); 8];
    let mut hi = [_mm256_setzero_si256(); 8];
    for l in 0..8 {
        let p = base[l].add(j * stride[l]);
        lo[l] = _mm256_loadu_si256(p.cast());
        hi[l] = _mm256_loadu_si256(p.add(32).cast());
    }
    let (lo, hi) = (transpose8(&lo), transpose8(&hi));
    let mut m = [_mm256_setzero_si256(); 16];
    m[..8].copy_from_slice(&lo);
    m[8..].copy_from_slice(&hi);
    m
}

/// Word `k` of 8 lanes' states, lane `l`'s in element `l`.
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn state8(states: &[[u32; 4]], k: usize) -> __m256i {
    let mut w = [0u32; 8];
    for l in 0..8 {
        w[l] = states[l][k];
    }
    _mm256_loadu_si256(w.as_ptr().cast())
}

#[inline]
#[target_feature(enable = "avx2")]
unsafe fn store_state8(states: &mut [[u32; 4]], k: usize, v: __m256i) {
    let mut w = [0u32; 8];
    _mm256_storeu_si256(w.as_mut_ptr().cast(), v);
    for l in 0..8 {
        states[l][k] = w[l];
    }
}

/// `n` blocks of each of 8 lanes: lane `l` hashes `data[l][..64 * n]`
/// (or, shorter, is idle: its state comes out meaningless).
///
/// Each step adds the message word and constant to `a` (ready four
/// steps earlier) before the round function of `b` (the step before's
/// result), so only that function, one add, the rotation and the add
/// of `b` wait on the previous step.
///
/// # Safety
/// The CPU must have AVX2.
#[target_feature(enable = "avx2")]
pub unsafe fn compress8(states: &mut [[u32; 4]; 8], data: &[&[u8]; 8], n: usize) {
    let (base, stride) = lane_bases(data, n);
    let (mut a, mut b, mut c, mut d) = (state8(states, 0), state8(states, 1), state8(states, 2), state8(states, 3));
    let ones = _mm256_set1_epi32(-1);
    macro_rules! step {
        ($m:ident, $i:expr, $f:expr, $s:expr) => {{
            let t = opaque256(_mm256_add_epi32(a, _mm256_add_epi32(_mm256_set1_epi32(K[$i] as i32), $m[word($i)])));
            let t = _mm256_add_epi32(t, $f);
            a = d;
            d = c;
            c = b;
            b = _mm256_add_epi32(b, _mm256_or_si256(_mm256_slli_epi32::<{ $s }>(t), _mm256_srli_epi32::<{ 32 - $s }>(t)));
        }};
    }
    // F = d ^ (b & (c ^ d)); G = (b & d) | (c & !d); H = b ^ (c ^ d);
    // I = c ^ (b | !d): the parts without b come first.
    macro_rules! ff {
        () => {
            _mm256_xor_si256(d, _mm256_and_si256(b, _mm256_xor_si256(c, d)))
        };
    }
    macro_rules! gg {
        () => {
            _mm256_or_si256(_mm256_and_si256(b, d), _mm256_andnot_si256(d, c))
        };
    }
    macro_rules! hh {
        () => {
            _mm256_xor_si256(b, _mm256_xor_si256(c, d))
        };
    }
    macro_rules! ii {
        () => {
            _mm256_xor_si256(c, _mm256_or_si256(b, _mm256_xor_si256(d, ones)))
        };
    }
    macro_rules! round {
        ($m:ident, $r:expr, $f:ident, $s0:expr, $s1:expr, $s2:expr, $s3:expr) => {
            for q in 0..4 {
                let i = $r * 16 + q * 4;
                step!($m, i, $f!(), $s0);
                step!($m, i + 1, $f!(), $s1);
                step!($m, i + 2, $f!(), $s2);
                step!($m, i + 3, $f!(), $s3);
            }
        };
    }
    for j in 0..n {
        let m = words8(&base, &stride, j);
        let (a0, b0, c0, d0) = (a, b, c, d);
        round!(m, 0, ff, 7, 12, 17, 22);
        round!(m, 1, gg, 5, 9, 14, 20);
        round!(m, 2, hh, 4, 11, 16, 23);
        round!(m, 3, ii, 6, 10, 15, 21);
        a = _mm256_add_epi32(a, a0);
        b = _mm256_add_epi32(b, b0);
        c = _mm256_add_epi32(c, c0);
        d = _mm256_add_epi32(d, d0);
    }
    for (k, v) in [a, b, c, d].into_iter().enumerate() {
        store_state8(states, k, v);
    }
}

/// One block's 64 steps with AVX-512's ternary logic and rotates, on
/// registers of the width whose intrinsics are named (`compress8_vl`,
/// `compress16`): `$m` the block's words, `$a`..`$d` the state, which
/// the block's result is added to.
/// F = (b & c) | (!b & d); G = (b & d) | (c & !d); H = b ^ c ^ d;
/// I = c ^ (b | !d), each as its truth table (bits of b = 0xF0,
/// c = 0xCC, d = 0xAA).
macro_rules! ternlog_block {
    ($add:ident, $set1:ident, $tern:ident, $rol:ident, $opaque:ident, $m:ident, $a:ident, $b:ident, $c:ident, $d:ident) => {{
        let (a0, b0, c0, d0) = ($a, $b, $c, $d);
        macro_rules! step {
            ($i:expr, $imm:expr, $s:expr) => {{
                let t = $opaque($add($a, $add($set1(K[$i] as i32), $m[word($i)])));
                let t = $add(t, $tern::<{ $imm }>($b, $c, $d));
                $a = $d;
                $d = $c;
                $c = $b;
                $b = $add($b, $rol::<{ $s }>(t));
            }};
        }
        macro_rules! round {
            ($r:expr, $imm:expr, $s0:expr, $s1:expr, $s2:expr, $s3:expr) => {
                for q in 0..4 {
                    let i = $r * 16 + q * 4;
                    step!(i, $imm, $s0);
                    step!(i + 1, $imm, $s1);
                    step!(i + 2, $imm, $s2);
                    step!(i + 3, $imm, $s3);
                }
            };
        }
        round!(0, 0xCA, 7, 12, 17, 22);
        round!(1, 0xE4, 5, 9, 14, 20);
        round!(2, 0x96, 4, 11, 16, 23);
        round!(3, 0x39, 6, 10, 15, 21);
        $a = $add($a, a0);
        $b = $add($b, b0);
        $c = $add($c, c0);
        $d = $add($d, d0);
    }};
}

/// `compress8` with AVX-512VL on 256-bit registers: each round
/// function is one ternary-logic instruction and each rotation one
/// instruction (`ternlog_block`), so a step waits on four
/// instructions, not six.
///
/// # Safety
/// The CPU must have AVX-512F and AVX-512VL.
#[target_feature(enable = "avx2,avx512f,avx512vl")]
pub unsafe fn compress8_vl(states: &mut [[u32; 4]; 8], data: &[&[u8]; 8], n: usize) {
    let (base, stride) = lane_bases(data, n);
    let (mut a, mut b, mut c, mut d) = (state8(states, 0), state8(states, 1), state8(states, 2), state8(states, 3));
    for j in 0..n {
        let m = words8(&base, &stride, j);
        ternlog_block!(_mm256_add_epi32, _mm256_set1_epi32, _mm256_ternarylogic_epi32, _mm256_rol_epi32, opaque256, m, a, b, c, d);
    }
    for (k, v) in [a, b, c, d].into_iter().enumerate() {
        store_state8(states, k, v);
    }
}

/// `n` blocks of each of 16 lanes, as `compress8_vl` on 512-bit
/// registers (lanes 0–7 in the low half, 8–15 in the high half).
///
/// # Safety
/// The CPU must have AVX-512F.
#[target_feature(enable = "avx2,avx512f")]
pub unsafe fn compress16(states: &mut [[u32; 4]; 16], data: &[&[u8]; 16], n: usize) {
    let (base, stride) = lane_bases(data, n);
    let join = |lo: __m256i, hi: __m256i| _mm512_inserti64x4::<1>(_mm512_castsi256_si512(lo), hi);
    let st = |k: usize| join(state8(&states[..8], k), state8(&states[8..], k));
    let (mut a, mut b, mut c, mut d) = (st(0), st(1), st(2), st(3));
    for j in 0..n {
        let lo = words8(&base[..8], &stride[..8], j);
        let hi = words8(&base[8..], &stride[8..], j);
        let mut m = [_mm512_setzero_si512(); 16];
        for w in 0..16 {
            m[w] = join(lo[w], hi[w]);
        }
        ternlog_block!(_mm512_add_epi32, _mm512_set1_epi32, _mm512_ternarylogic_epi32, _mm512_rol_epi32, opaque512, m, a, b, c, d);
    }
    for (k, v) in [a, b, c, d].into_iter().enumerate() {
        store_state8(&mut states[..8], k, _mm512_castsi512_si256(v));
        store_state8(&mut states[8..], k, _mm512_extracti64x4_epi64::<1>(v));
    }
}
