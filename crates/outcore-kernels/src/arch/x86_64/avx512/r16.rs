//! What the sixteen-row kernels of the fast arithmetic (`q4_1_r16`, `q8_0_r16`) share: the
//! rows' lane order after the in-lane transposition, the passes over the rows in groups of up to
//! [`TOKENS`] tokens, and the scatter of the accumulators into `out`.

use std::arch::x86_64::*;

use crate::rows16::R16;

/// Tokens per pass over the rows (one zmm accumulator each; 16 rather than 8: a 12-token step
/// of sixteen rows of 576 in L1, 1037 -> 892 ns; 16 tokens 1235 -> 1160 ns; 8 the same).
pub(super) const TOKENS: usize = 16;

/// The lane of row `r` after [`transpose`]: row `4j + l` ends in lane `4l + j`.
pub(super) const fn lane(r: usize) -> usize {
    (r % 4) * 4 + r / 4
}

/// The byte offset of each lane's row, for gathering a field of sixteen rows' blocks.
pub(super) fn row_offsets(row_bytes: usize) -> [i32; R16] {
    let mut offs = [0i32; R16];
    for r in 0..R16 {
        offs[lane(r)] = (r * row_bytes) as i32;
    }
    offs
}

/// 4x4 transposition of dwords within each 128-bit lane of four zmm: zmm `j` holding rows
/// `4j..4j+4` (one per 128-bit lane) becomes zmm `k` holding dword `k` of all sixteen rows.
#[inline]
#[target_feature(enable = "avx512f")]
pub(super) fn transpose(z: [__m512i; 4]) -> [__m512i; 4] {
    let t01l = _mm512_unpacklo_epi32(z[0], z[1]);
    let t01h = _mm512_unpackhi_epi32(z[0], z[1]);
    let t23l = _mm512_unpacklo_epi32(z[2], z[3]);
    let t23h = _mm512_unpackhi_epi32(z[2], z[3]);
    [
        _mm512_unpacklo_epi64(t01l, t23l),
        _mm512_unpackhi_epi64(t01l, t23l),
        _mm512_unpacklo_epi64(t01h, t23h),
        _mm512_unpackhi_epi64(t01h, t23h),
    ]
}

/// The rows and the first token of one pass.
pub(super) struct Pass<'a, W, A> {
    pub w: &'a [W],
    pub nb: usize,
    pub act: &'a [A],
    pub scales: &'a [[f32; 2]],
    pub t0: usize,
}

/// Checks the slices, then runs `pass(p, nt)` for each group of up to [`TOKENS`] tokens and
/// writes its accumulators (lane order) to `out[r * n_tokens + t]`. `pass` runs tokens
/// `p.t0..p.t0 + nt` (through [`by_tokens`]).
pub(super) fn run<W, A>(
    name: &str,
    (w, nb, act, scales): (&[W], usize, &[A], &[[f32; 2]]),
    n_tokens: usize,
    out: &mut [f32],
    pass: impl Fn(&Pass<'_, W, A>, usize) -> [[f32; R16]; TOKENS],
) {
    assert!(
        w.len() >= R16 * nb
            && act.len() >= n_tokens * nb
            && scales.len() >= n_tokens * nb
            && out.len() >= R16 * n_tokens
            && R16 * nb * size_of::<W>() <= i32::MAX as usize,
        "{name}: slices shorter than 16 rows x {nb} blocks x {n_tokens} tokens"
    );
    let mut t0 = 0;
    while t0 < n_tokens {
        let nt = (n_tokens - t0).min(TOKENS);
        let p = Pass {
            w,
            nb,
            act,
            scales,
            t0,
        };
        let acc = pass(&p, nt);
        for (t, a) in acc.iter().take(nt).enumerate() {
            for r in 0..R16 {
                out[r * n_tokens + t0 + t] = a[lane(r)];
            }
        }
        t0 += nt;
    }
}

/// `$pass::<nt>($p)` for a run-time token count `nt` in `1..=TOKENS`.
macro_rules! by_tokens {
    ($nt:expr, $pass:ident, $p:expr) => {
        match $nt {
            1 => $pass::<1>($p),
            2 => $pass::<2>($p),
            3 => $pass::<3>($p),
            4 => $pass::<4>($p),
            5 => $pass::<5>($p),
            6 => $pass::<6>($p),
            7 => $pass::<7>($p),
            8 => $pass::<8>($p),
            9 => $pass::<9>($p),
            10 => $pass::<10>($p),
            11 => $pass::<11>($p),
            12 => $pass::<12>($p),
            13 => $pass::<13>($p),
            14 => $pass::<14>($p),
            15 => $pass::<15>($p),
            _ => $pass::<16>($p),
        }
    };
}
pub(super) use by_tokens;
