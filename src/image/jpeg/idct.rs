//! `jpeg_idct_islow` as libjpeg-turbo's x86 SIMD code computes it (`jsimd_idct_islow_avx2`;
//! the SSE2 version computes the same), which is what Pillow's libjpeg-turbo runs here.
//!
//! For valid JPEGs this equals the C code (`jidctint.c`). On damaged data the two differ, and
//! the SIMD arithmetic is reproduced exactly so that damaged files still decode as Pillow does:
//! dequantization keeps the low 16 bits of each product (`vpmullw`), sums of two inputs are
//! 16-bit (`vpaddw`), products are paired into 32 bits (`vpmaddwd`), each pass descales in 32
//! bits and saturates to 16 (`vpackssdw`), the output saturates to 8 bits around 128, and a
//! block whose rows 1-7 hold no coefficient takes the 16-bit shortcut for its first pass.

const CONST_BITS: u32 = 13;
const PASS1_BITS: u32 = 2;

// The SIMD constants: the `jidctint.c` factors combined pairwise (see `pass`).
const F054: i32 = 4433;
const F130: i32 = 4433 + 6270;
const MF130: i32 = 4433 - 15137;
const F117: i32 = 9633;
const MF078: i32 = 9633 - 16069;
const F078: i32 = 9633 - 3196;
const MF060: i32 = 2446 - 7373;
const MF089: i32 = -7373;
const MF050: i32 = 16819 - 20995;
const MF256: i32 = -20995;
const F060: i32 = 12299 - 7373;
const F050: i32 = 25172 - 20995;

/// `vpmaddwd` of one lane pair: two 16x16-bit products summed in 32 bits.
#[inline]
fn madd(a: i16, ca: i32, b: i16, cb: i32) -> i32 {
    (a as i32 * ca).wrapping_add(b as i32 * cb)
}

/// One 8-point pass (`DODCT`): 16-bit inputs in natural order, outputs descaled by `shift` and
/// saturated to 16 bits.
#[inline]
fn pass(v: [i16; 8], shift: u32) -> [i16; 8] {
    let [i0, i1, i2, i3, i4, i5, i6, i7] = v;
    // Even part.
    let tmp3 = madd(i2, F130, i6, F054);
    let tmp2 = madd(i6, MF130, i2, F054);
    let tmp0 = (i0.wrapping_add(i4) as i32) << CONST_BITS;
    let tmp1 = (i0.wrapping_add(i4.wrapping_neg()) as i32) << CONST_BITS;
    let (t10, t13) = (tmp0.wrapping_add(tmp3), tmp0.wrapping_sub(tmp3));
    let (t11, t12) = (tmp1.wrapping_add(tmp2), tmp1.wrapping_sub(tmp2));
    // Odd part.
    let (z3, z4) = (i7.wrapping_add(i3), i5.wrapping_add(i1));
    let (z3, z4) = (madd(z3, MF078, z4, F117), madd(z4, F078, z3, F117));
    let o0 = madd(i7, MF060, i1, MF089).wrapping_add(z3);
    let o1 = madd(i5, MF050, i3, MF256).wrapping_add(z4);
    let o2 = madd(i5, MF256, i3, F050).wrapping_add(z3);
    let o3 = madd(i7, MF089, i1, F060).wrapping_add(z4);
    let out = |x: i32| (x.wrapping_add(1 << (shift - 1)) >> shift).clamp(-32768, 32767) as i16;
    [
        out(t10.wrapping_add(o3)),
        out(t11.wrapping_add(o2)),
        out(t12.wrapping_add(o1)),
        out(t13.wrapping_add(o0)),
        out(t13.wrapping_sub(o0)),
        out(t12.wrapping_sub(o1)),
        out(t11.wrapping_sub(o2)),
        out(t10.wrapping_sub(o3)),
    ]
}

/// Output sample: saturated to a signed byte (`vpacksswb`), then re-centred on 128.
#[inline]
fn sample(v: i16) -> u8 {
    (v.clamp(-128, 127) + 128) as u8
}

/// Inverse DCT of one block (coefficients in natural order, quantizers as latched) into 8x8
/// samples at `out[r * stride + c]`.
pub fn idct_block(coef: &[i16; 64], q: &[u16; 64], out: &mut [u8], stride: usize) {
    let d: [i16; 64] = std::array::from_fn(|i| coef[i].wrapping_mul(q[i] as i16));
    let mut ws = [0i16; 64];
    if coef[8..].iter().all(|&c| c == 0) {
        // No coefficient below row 0: every column is its row-0 term, shifted in 16 bits.
        for r in 0..8 {
            for c in 0..8 {
                ws[r * 8 + c] = d[c].wrapping_shl(PASS1_BITS);
            }
        }
    } else {
        for c in 0..8 {
            let col = pass(
                std::array::from_fn(|r| d[r * 8 + c]),
                CONST_BITS - PASS1_BITS,
            );
            for (r, &v) in col.iter().enumerate() {
                ws[r * 8 + c] = v;
            }
        }
    }
    for r in 0..8 {
        let w = &ws[r * 8..r * 8 + 8];
        let o = &mut out[r * stride..r * stride + 8];
        if w[1..].iter().all(|&v| v == 0) {
            // Only the first input: all eight outputs are its descaled value (exactly what the
            // general pass computes then).
            let v = (((w[0] as i32) << CONST_BITS) + (1 << (CONST_BITS + PASS1_BITS + 2)))
                >> (CONST_BITS + PASS1_BITS + 3);
            o.fill(sample(v.clamp(-32768, 32767) as i16));
            continue;
        }
        let row = pass(w.try_into().expect("8 values"), CONST_BITS + PASS1_BITS + 3);
        for (dst, &v) in o.iter_mut().zip(&row) {
            *dst = sample(v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `jidctint.c` in 64-bit arithmetic with its 10-bit range-limit wrap: the C code.
    fn c_reference(coef: &[i16; 64], q: &[u16; 64]) -> [u8; 64] {
        let f = |x: f64| (x * 8192.0 + 0.5) as i64;
        let one_d = |v: [i64; 8], shift: i64| -> [i64; 8] {
            let z1 = (v[2] + v[6]) * f(0.541196100);
            let tmp2 = z1 - v[6] * f(1.847759065);
            let tmp3 = z1 + v[2] * f(0.765366865);
            let tmp0 = (v[0] + v[4]) << 13;
            let tmp1 = (v[0] - v[4]) << 13;
            let (t10, t13, t11, t12) = (tmp0 + tmp3, tmp0 - tmp3, tmp1 + tmp2, tmp1 - tmp2);
            let (a0, a1, a2, a3) = (v[7], v[5], v[3], v[1]);
            let (z1, z2, z3, z4) = (a0 + a3, a1 + a2, a0 + a2, a1 + a3);
            let z5 = (z3 + z4) * f(1.175875602);
            let (a0, a1, a2, a3) = (
                a0 * f(0.298631336),
                a1 * f(2.053119869),
                a2 * f(3.072711026),
                a3 * f(1.501321110),
            );
            let (z1, z2) = (-z1 * f(0.899976223), -z2 * f(2.562915447));
            let z3 = -z3 * f(1.961570560) + z5;
            let z4 = -z4 * f(0.390180644) + z5;
            let (o0, o1, o2, o3) = (a0 + z1 + z3, a1 + z2 + z4, a2 + z2 + z3, a3 + z1 + z4);
            let d = |x: i64| (x + (1 << (shift - 1))) >> shift;
            [
                d(t10 + o3),
                d(t11 + o2),
                d(t12 + o1),
                d(t13 + o0),
                d(t13 - o0),
                d(t12 - o1),
                d(t11 - o2),
                d(t10 - o3),
            ]
        };
        let d: [i64; 64] = std::array::from_fn(|i| coef[i] as i64 * q[i] as i64);
        let mut ws = [0i64; 64];
        for c in 0..8 {
            let col = one_d(std::array::from_fn(|r| d[r * 8 + c]), 11);
            for r in 0..8 {
                ws[r * 8 + c] = col[r];
            }
        }
        let mut out = [0u8; 64];
        for r in 0..8 {
            let row = one_d(std::array::from_fn(|c| ws[r * 8 + c]), 18);
            for c in 0..8 {
                let i = (row[c] & 1023) as usize;
                out[r * 8 + c] = match i {
                    0..=127 => (i + 128) as u8,
                    128..=511 => 255,
                    512..=895 => 0,
                    _ => (i - 896) as u8,
                };
            }
        }
        out
    }

    /// Quantized coefficients of an 8x8 block of samples (float forward DCT, as an encoder).
    fn encode(px: &[u8; 64], q: &[u16; 64]) -> [i16; 64] {
        let c = |u: usize| {
            if u == 0 {
                std::f64::consts::FRAC_1_SQRT_2
            } else {
                1.0
            }
        };
        std::array::from_fn(|i| {
            let (v, u) = (i / 8, i % 8);
            let mut sum = 0.0;
            for y in 0..8 {
                for x in 0..8 {
                    let a = ((2 * x + 1) as f64 * u as f64 * std::f64::consts::PI / 16.0).cos();
                    let b = ((2 * y + 1) as f64 * v as f64 * std::f64::consts::PI / 16.0).cos();
                    sum += (px[y * 8 + x] as f64 - 128.0) * a * b;
                }
            }
            (0.25 * c(u) * c(v) * sum / q[i] as f64).round() as i16
        })
    }

    #[test]
    fn equals_the_c_code_on_valid_blocks() {
        let mut state = 7u64;
        let mut next = || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 33) as u32
        };
        for case in 0..300 {
            // Flat, smooth and noisy sample blocks, fine and coarse quantizers.
            let scale = [1u32, 4, 16][case % 3];
            let q: [u16; 64] = std::array::from_fn(|i| (1 + (i as u32 * scale) % 50) as u16);
            let base = next() % 256;
            let px: [u8; 64] = std::array::from_fn(|i| match case % 4 {
                0 => base as u8,
                1 => ((base + (i as u32 % 8) * 9 + (i as u32 / 8) * 5) % 256) as u8,
                _ => (next() % 256) as u8,
            });
            let coef = encode(&px, &q);
            let mut got = [0u8; 64];
            idct_block(&coef, &q, &mut got, 8);
            assert_eq!(got, c_reference(&coef, &q), "case {case}: {coef:?}");
        }
    }

    #[test]
    fn wild_values_follow_the_simd_arithmetic() {
        let q = [1u16; 64];
        let mut out = [0u8; 64];
        let mut coef = [0i16; 64];
        // 4094 * 8 / 64 = 512 above mid-grey: the C range limit wraps to 0, SIMD saturates.
        coef[0] = 4094;
        idct_block(&coef, &q, &mut out, 8);
        assert!(out.iter().all(|&v| v == 255));
        assert_eq!(c_reference(&coef, &q)[0], 0);
        // 9000 << 2 wraps in 16 bits (-29536): the shortcut's `vpsllw` gives a dark block.
        coef[0] = 9000;
        idct_block(&coef, &q, &mut out, 8);
        assert!(out.iter().all(|&v| v == 0), "{out:?}");
        // A product past 16 bits keeps its low half: 300 * 300 = 90000 = 24464 + 65536.
        let mut q2 = [1u16; 64];
        q2[0] = 300;
        coef[0] = 300;
        let mut a = [0u8; 64];
        idct_block(&coef, &q2, &mut a, 8);
        coef[0] = 24464;
        idct_block(&coef, &q, &mut out, 8);
        assert_eq!(a, out);
    }
}
