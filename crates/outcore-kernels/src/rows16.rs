//! Fast arithmetic: products of sixteen weight rows at a time whose bits do not depend on the
//! batch.
//!
//! The exact arithmetic (`Arith::Exact`, every other kernel) follows llama.cpp's x86 lane order
//! bit for bit: per (row, token) eight f32 lanes, each block scaled into every lane. That costs
//! three float operations per 8-lane vector per (row, token, block), and on two cores it makes a
//! batch of four tokens compute-bound (the weights stream in a third of the time).
//!
//! Here each (row, token) has one f32 accumulator and a block costs one or two FMAs on it:
//! `acc = fma(dx * dy, sum, acc)`, then for Q4_1 `acc = fma(m, s, acc)`, where `sum` is the
//! block's exact integer dot product. Sixteen rows share a zmm of accumulators, so a block's float
//! steps are three vector operations for sixteen rows. The result is the same for a token
//! whatever else is in the batch (every (row, token) pair runs the same operations in the same
//! order), so a server's seeded sampling repeats under load; it differs from llama.cpp's (and
//! `Exact`'s) in the last bits of a product. Only types with a sixteen-row kernel on this CPU
//! (Q4_1 and Q8_0 with AVX-512 VNNI) take this path; the others run their exact kernels, which are
//! batch-invariant too (batched kernels give the single kernel's bits).

use crate::quant::{BlockQ4_1, BlockQ8_0, BlockQ8_1};

/// Weight rows per call of a sixteen-row kernel.
pub const R16: usize = 16;

/// How a product orders its float steps.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Arith {
    /// llama.cpp's CPU order, bit for bit (the tests compare logits with llama.cpp exactly).
    #[default]
    Exact,
    /// One accumulator per (row, token) with the block's exact integer sum; batch-invariant.
    Fast,
}

/// `rows` consecutive weight rows (`nb` blocks each) times `n_tokens` activation rows (`nb`
/// blocks each, with their `[d, s]` as f32 in `scales`): `out[r * n_tokens + t]`. SIMD versions
/// take exactly [`R16`] rows.
pub type RowsFn<W, A> =
    fn(w: &[W], nb: usize, act: &[A], scales: &[[f32; 2]], n_tokens: usize, out: &mut [f32]);

/// A type's fast sixteen-row kernel on this CPU, its scalar twin (for rows past the last group
/// of sixteen) and the preparation of its activations (once per product: the blocks' scales as
/// f32, and whatever re-encoding of the quants the kernels take).
pub struct FastRows<W: 'static, A: 'static> {
    pub simd: RowsFn<W, A>,
    pub scalar: RowsFn<W, A>,
    pub prepare: fn(&mut [A]) -> Vec<[f32; 2]>,
}

/// The `[d, s]` of each Q8_1 block as f32 (converted once per product, not once per row).
pub fn q8_1_scales(act: &mut [BlockQ8_1]) -> Vec<[f32; 2]> {
    act.iter().map(|b| [b.d.to_f32(), b.s.to_f32()]).collect()
}

/// Q8_0 activations for the sixteen-row kernels: each quant `y` becomes `y + 128` as a byte
/// (its sign bit flipped), the unsigned operand `vpdpbusd` takes; `[d, 0]` per block.
pub fn q8_0_offset(act: &mut [BlockQ8_0]) -> Vec<[f32; 2]> {
    act.iter_mut()
        .map(|b| {
            for q in &mut b.qs {
                *q = (*q as u8 ^ 0x80) as i8;
            }
            [b.d.to_f32(), 0.0]
        })
        .collect()
}

/// Every (row, token) of `rows` rows times `n_tokens` activation rows, `out[r * n_tokens + t]`,
/// folding `step(acc, weight block, activation block, its scales)` over the blocks from 0.
fn rows_scalar<W, A>(
    (w, nb, act, scales): (&[W], usize, &[A], &[[f32; 2]]),
    n_tokens: usize,
    out: &mut [f32],
    step: impl Fn(f32, &W, &A, [f32; 2]) -> f32,
) {
    let rows = w.len().checked_div(nb).unwrap_or(0);
    for r in 0..rows {
        let row = &w[r * nb..(r + 1) * nb];
        for t in 0..n_tokens {
            let ys = act[t * nb..(t + 1) * nb].iter();
            let sc = &scales[t * nb..(t + 1) * nb];
            out[r * n_tokens + t] = row
                .iter()
                .zip(ys)
                .zip(sc)
                .fold(0f32, |acc, ((x, y), &s)| step(acc, x, y, s));
        }
    }
}

/// The definition of the fast Q8_0 x Q8_0 product (activations through [`q8_0_offset`]): per
/// block the exact integer sum of `x * y`, then `acc = fma(dx * dy, sum, acc)`.
pub fn q8_0_q8_0_rows_scalar(
    w: &[BlockQ8_0],
    nb: usize,
    act: &[BlockQ8_0],
    scales: &[[f32; 2]],
    n_tokens: usize,
    out: &mut [f32],
) {
    rows_scalar((w, nb, act, scales), n_tokens, out, |acc, x, y, [dy, _]| {
        let sum: i32 =
            x.qs.iter()
                .zip(&y.qs)
                .map(|(&a, &b)| i32::from(a) * i32::from((b as u8 ^ 0x80) as i8))
                .sum();
        (x.d.to_f32() * dy).mul_add(sum as f32, acc)
    });
}

/// The definition of the fast Q4_1 x Q8_1 product (any number of rows): per block the exact
/// integer sum of `q * y`, then `acc = fma(dx * dy, sum, acc)` and `acc = fma(m, s, acc)`.
pub fn q4_1_q8_1_rows_scalar(
    w: &[BlockQ4_1],
    nb: usize,
    act: &[BlockQ8_1],
    scales: &[[f32; 2]],
    n_tokens: usize,
    out: &mut [f32],
) {
    rows_scalar(
        (w, nb, act, scales),
        n_tokens,
        out,
        |acc, x, y, [dy, sy]| {
            let mut sum = 0i32;
            for j in 0..16 {
                sum += i32::from(x.qs[j] & 0x0F) * i32::from(y.qs[j]);
                sum += i32::from(x.qs[j] >> 4) * i32::from(y.qs[j + 16]);
            }
            let acc = (x.d.to_f32() * dy).mul_add(sum as f32, acc);
            x.m.to_f32().mul_add(sy, acc)
        },
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::GgmlBlock;

    fn lcg(seed: &mut u64) -> f32 {
        *seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((*seed >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }

    fn random_bytes<B: bytemuck::Pod + bytemuck::Zeroable>(n: usize, seed: &mut u64) -> Vec<B> {
        let mut v = vec![B::zeroed(); n];
        for b in bytemuck::cast_slice_mut::<B, u8>(&mut v) {
            *b = (lcg(seed) * 127.0) as i8 as u8;
        }
        v
    }

    /// `f.simd` gives `f.scalar`'s bits, for quantized data and raw bytes (`fix` then sets
    /// finite scales), across 1-70 blocks and token counts around the pass size.
    fn check_twin<W: GgmlBlock, A: GgmlBlock>(
        f: FastRows<W, A>,
        mut seed: u64,
        fix: impl Fn(&mut [W], &mut [A], &mut u64),
    ) {
        for nb in [1usize, 3, 32, 33, 70] {
            for n_tokens in [1usize, 2, 3, 4, 5, 8, 9, 17] {
                for raw in [false, true] {
                    let (w, mut act) = if raw {
                        let mut w: Vec<W> = random_bytes(R16 * nb, &mut seed);
                        let mut a: Vec<A> = random_bytes(n_tokens * nb, &mut seed);
                        fix(&mut w, &mut a, &mut seed);
                        (w, a)
                    } else {
                        let wf: Vec<f32> = (0..R16 * nb * 32).map(|_| lcg(&mut seed)).collect();
                        let mut w = vec![W::zeroed(); R16 * nb];
                        W::quantize(&wf, &mut w);
                        let xf: Vec<f32> =
                            (0..n_tokens * nb * 32).map(|_| lcg(&mut seed)).collect();
                        let mut a = vec![A::zeroed(); n_tokens * nb];
                        A::quantize_activation_scalar(&xf, &mut a);
                        (w, a)
                    };
                    let sc = (f.prepare)(&mut act);
                    let mut want = vec![0f32; R16 * n_tokens];
                    (f.scalar)(&w, nb, &act, &sc, n_tokens, &mut want);
                    let mut got = vec![f32::NAN; R16 * n_tokens];
                    (f.simd)(&w, nb, &act, &sc, n_tokens, &mut got);
                    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                    assert_eq!(
                        bits(&got),
                        bits(&want),
                        "nb {nb}, {n_tokens} tokens, raw {raw}"
                    );
                }
            }
        }
    }

    #[test]
    fn simd_rows_match_the_scalar_twin() {
        let Some(f) = BlockQ4_1::fast_rows(crate::dispatch::kernels()) else {
            eprintln!("no sixteen-row kernel on this CPU; nothing to compare");
            return;
        };
        check_twin(f, 11, |w, a, seed| {
            for b in w {
                b.d = half::f16::from_f32(lcg(seed) * 0.01);
                b.m = half::f16::from_f32(lcg(seed) * 0.02);
            }
            for b in a {
                b.d = half::f16::from_f32(lcg(seed) * 0.05);
                b.s = half::f16::from_f32(lcg(seed) * 3.0);
            }
        });
    }

    /// The Q8_0 kernel: offset activations, signed weights, the extreme quants too.
    #[test]
    fn simd_q8_0_rows_match_the_scalar_twin() {
        let Some(f) = BlockQ8_0::fast_rows(crate::dispatch::kernels()) else {
            eprintln!("no sixteen-row kernel on this CPU; nothing to compare");
            return;
        };
        check_twin(f, 13, |w, a, seed| {
            for b in w.iter_mut().chain(a.iter_mut()) {
                b.d = half::f16::from_f32(lcg(seed) * 0.01);
                // -128 * -128 sums are the largest.
                b.qs[0] = -128;
                b.qs[31] = 127;
            }
        });
    }

    /// Close to the exact arithmetic (the float steps differ only in rounding).
    #[test]
    fn fast_rows_stay_close_to_the_exact_dot() {
        let mut seed = 5u64;
        let nb = 48;
        let wf: Vec<f32> = (0..3 * nb * 32).map(|_| lcg(&mut seed)).collect();
        let mut w = vec![BlockQ4_1::zeroed(); 3 * nb];
        BlockQ4_1::quantize(&wf, &mut w);
        let xf: Vec<f32> = (0..2 * nb * 32).map(|_| lcg(&mut seed)).collect();
        let mut a = vec![BlockQ8_1::zeroed(); 2 * nb];
        BlockQ8_1::quantize_activation_scalar(&xf, &mut a);
        let mut got = vec![0f32; 6];
        let sc = q8_1_scales(&mut a);
        q4_1_q8_1_rows_scalar(&w, nb, &a, &sc, 2, &mut got);
        let (mut w8, mut a8) = (
            vec![BlockQ8_0::zeroed(); 3 * nb],
            vec![BlockQ8_0::zeroed(); 2 * nb],
        );
        BlockQ8_0::quantize(&wf, &mut w8);
        BlockQ8_0::quantize_activation_scalar(&xf, &mut a8);
        let exact8: Vec<f32> = (0..6)
            .map(|i| {
                let (r, t) = (i / 2, i % 2);
                BlockQ8_0::vec_dot_scalar(&w8[r * nb..(r + 1) * nb], &a8[t * nb..(t + 1) * nb])
            })
            .collect();
        let sc8 = q8_0_offset(&mut a8);
        let mut got8 = vec![0f32; 6];
        q8_0_q8_0_rows_scalar(&w8, nb, &a8, &sc8, 2, &mut got8);
        for (g, e) in got8.iter().zip(&exact8) {
            assert!((g - e).abs() <= 1e-5 * (1.0 + e.abs()), "Q8_0 {g} vs {e}");
        }
        for r in 0..3 {
            for t in 0..2 {
                let exact =
                    BlockQ4_1::vec_dot_scalar(&w[r * nb..(r + 1) * nb], &a[t * nb..(t + 1) * nb]);
                let g = got[r * 2 + t];
                assert!(
                    (g - exact).abs() <= 1e-5 * (1.0 + exact.abs()),
                    "{g} vs {exact}"
                );
            }
        }
    }

    use bytemuck::Zeroable;
}
