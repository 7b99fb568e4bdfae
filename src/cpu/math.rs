//! Elementwise f32 functions of the CPU path: `exp` (softmax), `erf` and the erf-GELU (MLP).
//!
//! One algorithm, written twice: scalar (the portable and AVX2 kernels) and AVX-512 (16 lanes).
//! `exp` is Cody-Waite range reduction plus the degree-7 Taylor polynomial (relative error < 2
//! ulp on the reduced range); `erf` is `x·P(x²)` below 1 and `1 − e^{−x²}·Q(x − 2.5)` on [1, 4),
//! with coefficients fitted by `scripts/fit_erf.py` (absolute error < 1.2e-7 over the real line,
//! about one ulp of `1 + erf`, which is what the GELU uses).
//!
//! The two versions give the same bits for every input (NaN in, NaN out; Rust does not specify
//! a NaN's payload). Step by step, scalar = AVX-512:
//! - Horner steps `acc.mul_add(x, c)` = `_mm512_fmadd_ps(acc, x, c)`;
//! - the reduction `(−n).mul_add(LN2_HI, x)` = `_mm512_fnmadd_ps(n, LN2_HI, x)` (one rounding
//!   of `x − n·LN2_HI` either way), the same for `LN2_LO`;
//! - `p · 2ⁿ` with `2ⁿ` built from its exponent bits = `_mm512_scalef_ps(p, n)`: n is an
//!   integer in [−126, 127], so 2ⁿ is a normal float and both are one rounding of the exact
//!   product (subnormal results included: no flush-to-zero on either side);
//! - rounding to the nearest even integer, the clamp at [`EXP_MAX`] (NaN kept), the zero
//!   below [`EXP_MIN`], the erf ranges and `copysign` are exact operations or selections;
//! - every other operation is one IEEE add, subtract or multiply in the same order.
//!
//! `tests::every_isa_computes_the_same_bits` checks it over a dense grid and the edge values,
//! on every instruction set the CPU has.

/// Below this, `exp` returns 0 (e^x would be subnormal; softmax rows always hold a 1).
pub const EXP_MIN: f32 = -87.336_54;
/// Inputs above this are clamped (no caller goes near it: softmax arguments are <= 0).
const EXP_MAX: f32 = 88.0;
const LOG2E: f32 = std::f32::consts::LOG2_E;
/// ln 2 split so that `n·LN2_HI` is exact for |n| < 2^12 (Cody-Waite).
const LN2_HI: f32 = 0.693_359_4;
const LN2_LO: f32 = -2.121_944_4e-4;
/// 1/k!, k = 7 down to 0.
const EXP_POLY: [f32; 8] = [
    1.0 / 5040.0,
    1.0 / 720.0,
    1.0 / 120.0,
    1.0 / 24.0,
    1.0 / 6.0,
    0.5,
    1.0,
    1.0,
];
/// erf(x)/x ≈ P(x²) on [0, 1), highest power first.
#[allow(clippy::approx_constant)]
const ERF_SMALL: [f32; 6] = [
    -0.000_563_145_96,
    0.004_917_561,
    -0.026_711_32,
    0.112_801_805,
    -0.376_123_25,
    // One ulp below 2/√π (erf's slope at 0): the fit's choice, worth a factor 2 in error at 1.
    1.128_379_1,
];
/// e^{x²}·erfc(x) ≈ Q(x − 2.5) on [1, 4), highest power first.
const ERF_LARGE: [f32; 11] = [
    1.554_144_5e-6,
    -6.357_499_4e-6,
    1.500_911e-5,
    -5.372_919_6e-5,
    2.116_975_4e-4,
    -7.387_585_4e-4,
    2.466_99e-3,
    -7.999_493e-3,
    0.024_937_926,
    -0.074_347_58,
    0.210_806_37,
];
const ERF_SPLIT: f32 = 1.0;
const ERF_CENTER: f32 = 2.5;
/// erf rounds to exactly 1.0 in f32 from about 3.92 on.
const ERF_ONE: f32 = 4.0;

#[inline(always)]
fn horner(x: f32, coeffs: &[f32]) -> f32 {
    coeffs[1..]
        .iter()
        .fold(coeffs[0], |acc, &c| acc.mul_add(x, c))
}

use super::isa::Isa;

/// e^x.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    if x < EXP_MIN {
        return 0.0;
    }
    // Not `min`: NaN must stay NaN.
    let x = if x > EXP_MAX { EXP_MAX } else { x };
    let n = (x * LOG2E).round_ties_even();
    let r = (-n).mul_add(LN2_HI, x);
    let r = (-n).mul_add(LN2_LO, r);
    let p = horner(r, &EXP_POLY);
    // n is in [-126, 127]: the biased exponent is a normal one.
    p * f32::from_bits(((n as i32 + 127) as u32) << 23)
}

/// erf(x); NaN stays NaN.
#[inline(always)]
pub fn erf(x: f32) -> f32 {
    let a = x.abs();
    let y = if a < ERF_SPLIT {
        a * horner(a * a, &ERF_SMALL)
    } else if a < ERF_ONE {
        1.0 - exp(-(a * a)) * horner(a - ERF_CENTER, &ERF_LARGE)
    } else if a >= ERF_ONE {
        1.0
    } else {
        return x;
    };
    y.copysign(x)
}

/// Exact (erf) GELU, `(x/2)·(1 + erf(x/√2))`, in PyTorch's order of operations.
#[inline(always)]
pub fn gelu(x: f32) -> f32 {
    (x * 0.5) * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2))
}

/// `(σ(u), σ(−u))` from one exponential: with `e = e^{−|u|}`, the larger is `1/(1+e)` and the
/// smaller `e·(1/(1+e))` (no cancellation in either tail). The adapters' maps
/// (`model::fused`).
#[inline(always)]
pub fn sigmoid_pair(u: f32) -> (f32, f32) {
    let e = exp(f32::from_bits(u.to_bits() | 0x8000_0000));
    let big = 1.0 / (1.0 + e);
    let small = e * big;
    if u >= 0.0 { (big, small) } else { (small, big) }
}

/// [`sigmoid_pair`] over a slice on the instruction set `isa` (the same bits on each):
/// `pos[k] = σ(u[k])`, `neg[k] = σ(−u[k])`.
///
/// # Panics
/// If this CPU cannot run `isa`, or the slices' lengths differ.
pub fn sigmoid_pairs(isa: Isa, u: &[f32], pos: &mut [f32], neg: &mut [f32]) {
    assert!(
        pos.len() == u.len() && neg.len() == u.len(),
        "sigmoid_pairs: lengths"
    );
    isa.assert_supported();
    match isa {
        // SAFETY: the CPU runs `isa` (asserted above).
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => unsafe { avx512::sigmoid_pairs(u, pos, neg) },
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => unsafe { sigmoid_pairs_fma(u, pos, neg) },
        _ => sigmoid_pairs_scalar(u, pos, neg),
    }
}

#[inline(always)]
fn sigmoid_pairs_scalar(u: &[f32], pos: &mut [f32], neg: &mut [f32]) {
    for ((&x, p), n) in u.iter().zip(pos).zip(neg) {
        (*p, *n) = sigmoid_pair(x);
    }
}

/// The scalar loop with FMA enabled (`mul_add` one instruction, as in the AVX2 kernels).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn sigmoid_pairs_fma(u: &[f32], pos: &mut [f32], neg: &mut [f32]) {
    sigmoid_pairs_scalar(u, pos, neg)
}

/// The same functions on 16 lanes.
#[cfg(target_arch = "x86_64")]
pub mod avx512 {
    use std::arch::x86_64::*;

    use super::*;

    #[inline]
    #[target_feature(enable = "avx512f")]
    fn horner(x: __m512, coeffs: &[f32]) -> __m512 {
        coeffs[1..]
            .iter()
            .fold(_mm512_set1_ps(coeffs[0]), |acc, &c| {
                _mm512_fmadd_ps(acc, x, _mm512_set1_ps(c))
            })
    }

    /// e^x per lane (0 below [`EXP_MIN`]).
    ///
    /// # Safety
    /// The CPU must have AVX-512F.
    #[inline]
    #[target_feature(enable = "avx512f")]
    pub fn exp(x: __m512) -> __m512 {
        let under = _mm512_cmp_ps_mask::<_CMP_LT_OQ>(x, _mm512_set1_ps(EXP_MIN));
        // vminps returns its second operand when one is NaN: NaN stays NaN.
        let x = _mm512_min_ps(_mm512_set1_ps(EXP_MAX), x);
        let n = _mm512_roundscale_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(
            _mm512_mul_ps(x, _mm512_set1_ps(LOG2E)),
        );
        let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(LN2_HI), x);
        let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(LN2_LO), r);
        let p = _mm512_scalef_ps(horner(r, &EXP_POLY), n);
        _mm512_maskz_mov_ps(!under, p)
    }

    /// erf per lane (NaN stays NaN).
    ///
    /// # Safety
    /// The CPU must have AVX-512F.
    #[inline]
    #[target_feature(enable = "avx512f")]
    pub fn erf(s: __m512) -> __m512 {
        let a = _mm512_abs_ps(s);
        let a2 = _mm512_mul_ps(a, a);
        let small = _mm512_mul_ps(a, horner(a2, &ERF_SMALL));
        // 0 − a² is −(a·a) exactly wherever this branch is chosen (a >= 1).
        let tail = _mm512_mul_ps(
            exp(_mm512_sub_ps(_mm512_setzero_ps(), a2)),
            horner(_mm512_sub_ps(a, _mm512_set1_ps(ERF_CENTER)), &ERF_LARGE),
        );
        let large = _mm512_sub_ps(_mm512_set1_ps(1.0), tail);
        let is_small = _mm512_cmp_ps_mask::<_CMP_LT_OQ>(a, _mm512_set1_ps(ERF_SPLIT));
        let is_one = _mm512_cmp_ps_mask::<_CMP_GE_OQ>(a, _mm512_set1_ps(ERF_ONE));
        let y = _mm512_mask_blend_ps(is_small, large, small);
        let y = _mm512_mask_blend_ps(is_one, y, _mm512_set1_ps(1.0));
        // copysign(y, s): y >= 0, so OR in the sign bit of s.
        let sign = _mm512_and_si512(_mm512_castps_si512(s), _mm512_set1_epi32(i32::MIN));
        _mm512_castsi512_ps(_mm512_or_si512(_mm512_castps_si512(y), sign))
    }

    /// [`super::sigmoid_pair`] per lane: the same operations in the same order.
    ///
    /// # Safety
    /// The CPU must have AVX-512F.
    #[inline]
    #[target_feature(enable = "avx512f")]
    pub fn sigmoid_pair(u: __m512) -> (__m512, __m512) {
        // −|u| by setting the sign bit, as the scalar version.
        let neg_abs = _mm512_castsi512_ps(_mm512_or_si512(
            _mm512_castps_si512(u),
            _mm512_set1_epi32(i32::MIN),
        ));
        let e = exp(neg_abs);
        let one = _mm512_set1_ps(1.0);
        let big = _mm512_div_ps(one, _mm512_add_ps(one, e));
        let small = _mm512_mul_ps(e, big);
        let ge = _mm512_cmp_ps_mask::<_CMP_GE_OQ>(u, _mm512_setzero_ps());
        (
            _mm512_mask_blend_ps(ge, small, big),
            _mm512_mask_blend_ps(ge, big, small),
        )
    }

    /// [`super::sigmoid_pairs`] on 16 lanes (the tail through masked loads and stores).
    ///
    /// # Safety
    /// The CPU must have AVX-512F; the slices have equal lengths.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn sigmoid_pairs(u: &[f32], pos: &mut [f32], neg: &mut [f32]) {
        for k in (0..u.len()).step_by(16) {
            let left = u.len() - k;
            let m: __mmask16 = if left >= 16 {
                0xffff
            } else {
                (1u16 << left) - 1
            };
            // SAFETY: the mask keeps every access inside the slices.
            unsafe {
                let x = _mm512_maskz_loadu_ps(m, u.as_ptr().add(k));
                let (p, n) = sigmoid_pair(x);
                _mm512_mask_storeu_ps(pos.as_mut_ptr().add(k), m, p);
                _mm512_mask_storeu_ps(neg.as_mut_ptr().add(k), m, n);
            }
        }
    }

    /// erf-GELU per lane.
    ///
    /// # Safety
    /// The CPU must have AVX-512F.
    #[inline]
    #[target_feature(enable = "avx512f")]
    pub fn gelu(x: __m512) -> __m512 {
        let erf = erf(_mm512_mul_ps(
            x,
            _mm512_set1_ps(std::f32::consts::FRAC_1_SQRT_2),
        ));
        _mm512_mul_ps(
            _mm512_mul_ps(x, _mm512_set1_ps(0.5)),
            _mm512_add_ps(_mm512_set1_ps(1.0), erf),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::Isa;

    /// erf in f64: the Maclaurin series below 3 (A&S 7.1.5; terms stay below 1e4, so f64 keeps
    /// ~1e-12), the asymptotic erfc series from 3 on (A&S 7.1.23; truncation error < 1e-10).
    fn erf64(x: f64) -> f64 {
        let a = x.abs();
        let y = if a < 3.0 {
            let (mut term, mut sum) = (a, a);
            for n in 1..200 {
                term *= -a * a / n as f64;
                let t = term / (2 * n + 1) as f64;
                sum += t;
                if t.abs() < 1e-17 {
                    break;
                }
            }
            sum * 2.0 / std::f64::consts::PI.sqrt()
        } else {
            let (mut term, mut sum) = (1.0, 1.0);
            for n in 1..8 {
                term *= -((2 * n - 1) as f64) / (2.0 * a * a);
                sum += term;
            }
            1.0 - (-a * a).exp() / (a * std::f64::consts::PI.sqrt()) * sum
        };
        y.copysign(x)
    }

    fn grid() -> impl Iterator<Item = f32> {
        (-60_000..=60_000).map(|i| i as f32 * 1e-4)
    }

    #[test]
    fn erf_is_within_1_2e7_of_f64() {
        let worst = grid()
            .map(|x| (erf(x) as f64 - erf64(x as f64)).abs())
            .fold(0.0, f64::max);
        assert!(worst < 1.2e-7, "max |erf - erf64| = {worst:e}");
        assert_eq!(erf(10.0), 1.0);
        assert_eq!(erf(-1e30), -1.0);
        assert!(erf(f32::NAN).is_nan());
    }

    #[test]
    fn exp_is_within_3_ulp_of_f64() {
        for i in -87_000..=87_900 {
            let x = i as f32 * 1e-3;
            let want = (x as f64).exp();
            let rel = ((exp(x) as f64 - want) / want).abs();
            assert!(
                rel < 3.0 * f32::EPSILON as f64,
                "exp({x}) rel error {rel:e}"
            );
        }
        assert_eq!(exp(-100.0), 0.0);
        assert_eq!(exp(f32::NEG_INFINITY), 0.0);
        assert_eq!(exp(0.0), 1.0);
        assert!(exp(f32::NAN).is_nan());
    }

    /// Same bits, or both NaN (Rust does not specify a NaN's payload or sign).
    fn same(a: f32, b: f32) -> bool {
        a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan())
    }

    /// Inputs of the bit comparisons: the decimal grid over [−6, 6], exp's accuracy grid, every
    /// 4093rd bit pattern of all 2³² (every exponent: subnormals, huge values, NaNs), the 2,000
    /// floats either side of each range end of exp (where its results turn subnormal, and the
    /// clamp) and of each split of erf, as erf's input and as the GELU's (x = √2·split), both
    /// signs, and the special values.
    fn bit_grid() -> Vec<f32> {
        let mut xs: Vec<f32> = grid().collect();
        xs.extend((-87_500..=88_800).map(|i| i as f32 * 1e-3));
        xs.extend((0..=u32::MAX).step_by(4093).map(f32::from_bits));
        let sqrt2 = std::f32::consts::SQRT_2;
        for c in [
            -EXP_MIN,
            EXP_MAX,
            ERF_SPLIT,
            ERF_ONE,
            ERF_SPLIT * sqrt2,
            ERF_ONE * sqrt2,
            f32::MIN_POSITIVE,
        ] {
            let b = c.to_bits();
            for bits in b - 2000..=b + 2000 {
                xs.extend([f32::from_bits(bits), -f32::from_bits(bits)]);
            }
        }
        xs.extend((0..2000).flat_map(|b| [f32::from_bits(b), -f32::from_bits(b)]));
        xs.extend([
            0.0,
            -0.0,
            1.0,
            -1.0,
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::NAN,
            -f32::NAN,
            f32::MAX,
            f32::MIN,
            f32::EPSILON,
        ]);
        xs
    }

    /// `[exp, erf, gelu]` of each input.
    type Values = Vec<[f32; 3]>;

    fn scalar(xs: &[f32]) -> Values {
        xs.iter().map(|&x| [exp(x), erf(x), gelu(x)]).collect()
    }

    /// The scalar functions compiled with FMA enabled (as inside the AVX2 kernels): `mul_add`
    /// is one instruction here, a libm call in [`scalar`] on x86-64.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    fn scalar_fma(xs: &[f32]) -> Values {
        xs.iter().map(|&x| [exp(x), erf(x), gelu(x)]).collect()
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    fn lanes_avx512(xs: &[f32]) -> Values {
        use std::arch::x86_64::*;
        let mut out = Vec::with_capacity(xs.len());
        for chunk in xs.chunks(16) {
            let mut x = [0f32; 16];
            x[..chunk.len()].copy_from_slice(chunk);
            let (mut e, mut r, mut g) = ([0f32; 16], [0f32; 16], [0f32; 16]);
            // SAFETY: AVX-512F is enabled on this function (the caller checked the CPU); the
            // arrays hold 16 lanes.
            unsafe {
                let v = _mm512_loadu_ps(x.as_ptr());
                _mm512_storeu_ps(e.as_mut_ptr(), avx512::exp(v));
                _mm512_storeu_ps(r.as_mut_ptr(), avx512::erf(v));
                _mm512_storeu_ps(g.as_mut_ptr(), avx512::gelu(v));
            }
            out.extend((0..chunk.len()).map(|l| [e[l], r[l], g[l]]));
        }
        out
    }

    /// The scalar functions (portable kernels), the same compiled with FMA (AVX2 kernels) and
    /// the AVX-512 lanes give the same bits for every input of [`bit_grid`].
    #[test]
    fn every_isa_computes_the_same_bits() {
        let xs = bit_grid();
        let want = scalar(&xs);
        let mut variants: Vec<(&str, Values)> = Vec::new();
        #[cfg(target_arch = "x86_64")]
        for isa in Isa::available() {
            match isa {
                // SAFETY: this CPU has the features (Isa::available).
                Isa::Avx512 => variants.push(("avx512", unsafe { lanes_avx512(&xs) })),
                Isa::Avx2 => variants.push(("avx2", unsafe { scalar_fma(&xs) })),
                Isa::Portable => {}
            }
        }
        if variants.is_empty() {
            eprintln!("skipped: this CPU runs only the portable kernels, nothing to compare");
        }
        for (name, got) in &variants {
            for ((x, g), w) in xs.iter().zip(got).zip(&want) {
                for (f, (g, w)) in ["exp", "erf", "gelu"].iter().zip(g.iter().zip(w)) {
                    assert!(
                        same(*g, *w),
                        "{name} {f}({x:e} = {:#010x}): {g:e} ({:#010x}) vs portable {w:e} ({:#010x})",
                        x.to_bits(),
                        g.to_bits(),
                        w.to_bits()
                    );
                }
            }
        }
    }

    /// The sigmoid pairs give the same bits on every instruction set, over the bit grid (odd
    /// lengths, so the masked tail runs), and sum to one within rounding.
    #[test]
    fn sigmoid_pairs_are_the_same_bits_on_every_isa() {
        let xs: Vec<f32> = bit_grid().into_iter().chain([3.0f32]).collect();
        let run = |isa| {
            let (mut p, mut n) = (vec![0f32; xs.len()], vec![0f32; xs.len()]);
            sigmoid_pairs(isa, &xs, &mut p, &mut n);
            (p, n)
        };
        let (p0, n0) = run(Isa::Portable);
        for isa in Isa::available() {
            let (p, n) = run(isa);
            for k in 0..xs.len() {
                assert!(
                    same(p[k], p0[k]) && same(n[k], n0[k]),
                    "{isa:?} at {}: ({}, {}) vs ({}, {})",
                    xs[k],
                    p[k],
                    n[k],
                    p0[k],
                    n0[k]
                );
            }
        }
        for (k, &x) in xs.iter().enumerate() {
            if x.is_finite() && x.abs() < 80.0 {
                let want = 1.0 / (1.0 + (-(x as f64)).exp());
                assert!(
                    (p0[k] as f64 - want).abs() < 1e-6 * want.max(1e-30) + 1e-7,
                    "{x}"
                );
                assert!((p0[k] + n0[k] - 1.0).abs() < 2e-7, "{x}");
            }
        }
    }
}
