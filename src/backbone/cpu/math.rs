//! Elementwise f32 functions of the CPU path: `exp` (softmax), `erf` and the erf-GELU (MLP).
//!
//! One algorithm, written twice: scalar (portable kernels) and AVX-512 (16 lanes). `exp` is
//! Cody-Waite range reduction plus the degree-7 Taylor polynomial (relative error < 2 ulp on the
//! reduced range); `erf` is `x·P(x²)` below 1 and `1 − e^{−x²}·Q(x − 2.5)` on [1, 4), with
//! coefficients fitted by `scripts/fit_erf.py` (absolute error < 1.2e-7 over the real line,
//! about one ulp of `1 + erf`, which is what the GELU uses).

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
    coeffs[1..].iter().fold(coeffs[0], |acc, &c| acc * x + c)
}

/// e^x.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    if x < EXP_MIN {
        return 0.0;
    }
    // Not `min`: NaN must stay NaN.
    let x = if x > EXP_MAX { EXP_MAX } else { x };
    let n = (x * LOG2E).round_ties_even();
    let r = (x - n * LN2_HI) - n * LN2_LO;
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

    /// erf-GELU per lane.
    ///
    /// # Safety
    /// The CPU must have AVX-512F.
    #[inline]
    #[target_feature(enable = "avx512f")]
    pub fn gelu(x: __m512) -> __m512 {
        let s = _mm512_mul_ps(x, _mm512_set1_ps(std::f32::consts::FRAC_1_SQRT_2));
        let a = _mm512_abs_ps(s);
        let a2 = _mm512_mul_ps(a, a);
        let small = _mm512_mul_ps(a, horner(a2, &ERF_SMALL));
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
        let erf = _mm512_castsi512_ps(_mm512_or_si512(_mm512_castps_si512(y), sign));
        _mm512_mul_ps(
            _mm512_mul_ps(x, _mm512_set1_ps(0.5)),
            _mm512_add_ps(_mm512_set1_ps(1.0), erf),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn avx512_lanes_match_the_scalar_functions() {
        use std::arch::x86_64::*;
        if !std::arch::is_x86_feature_detected!("avx512f") {
            eprintln!("skipped: this CPU has no AVX-512F");
            return;
        }
        let xs: Vec<f32> = grid().chain([f32::NAN, 1e30, -1e30, -100.0]).collect();
        for chunk in xs.chunks_exact(16) {
            let (mut e, mut g) = ([0f32; 16], [0f32; 16]);
            // SAFETY: AVX-512F is present (checked above); the arrays hold 16 lanes.
            unsafe {
                let v = _mm512_loadu_ps(chunk.as_ptr());
                _mm512_storeu_ps(
                    e.as_mut_ptr(),
                    avx512::exp(_mm512_min_ps(v, _mm512_set1_ps(80.0))),
                );
                _mm512_storeu_ps(g.as_mut_ptr(), avx512::gelu(v));
            }
            for (l, &x) in chunk.iter().enumerate() {
                let (we, wg) = (exp(x.min(80.0)), gelu(x));
                assert!(
                    (e[l] - we).abs() <= 2.0 * f32::EPSILON * we.abs(),
                    "exp({x}): {} vs {we}",
                    e[l]
                );
                assert!(
                    (g[l] - wg).abs() <= 2e-7 * wg.abs().max(1.0) || (x.is_nan() && g[l].is_nan()),
                    "gelu({x}): {} vs {wg}",
                    g[l]
                );
            }
        }
    }
}
