//! `jpeg_idct_islow` (libjpeg-turbo `jidctint.c`), as the SIMD version Pillow's libjpeg-turbo
//! runs computes it.
//!
//! For every valid JPEG the C and SIMD versions agree. They part ways on wild coefficients from
//! damaged data: the SIMD code multiplies and adds in 16-bit lanes and saturates its output,
//! the C code works in 32/64 bits and wraps its range limit. So that no wild block decodes
//! silently differently, a block is accepted only while every dequantized coefficient and every
//! first-pass value stays within ±16383 (where both compute the same exact values); its output
//! then saturates as the SIMD code's does. Outside that range the file is refused.

/// Largest magnitude of a dequantized coefficient or first-pass value computed exactly by both.
const EXACT: i64 = 16383;

const CB: i64 = 13;
const P1: i64 = 2;
const F0298: i64 = 2446;
const F0390: i64 = 3196;
const F0541: i64 = 4433;
const F0765: i64 = 6270;
const F0899: i64 = 7373;
const F1175: i64 = 9633;
const F1501: i64 = 12299;
const F1847: i64 = 15137;
const F1961: i64 = 16069;
const F2053: i64 = 16819;
const F2562: i64 = 20995;
const F3072: i64 = 25172;

#[inline]
fn descale(x: i64, n: i64) -> i64 {
    (x + (1 << (n - 1))) >> n
}

/// Odd part of the 1-D IDCT from inputs 7, 5, 3, 1: `(tmp0, tmp1, tmp2, tmp3)`.
#[inline]
fn odd(t0: i64, t1: i64, t2: i64, t3: i64) -> [i64; 4] {
    let (z1, z2, z3, z4) = (t0 + t3, t1 + t2, t0 + t2, t1 + t3);
    let z5 = (z3 + z4) * F1175;
    let (t0, t1, t2, t3) = (t0 * F0298, t1 * F2053, t2 * F3072, t3 * F1501);
    let (z1, z2) = (-z1 * F0899, -z2 * F2562);
    let z3 = -z3 * F1961 + z5;
    let z4 = -z4 * F0390 + z5;
    [t0 + z1 + z3, t1 + z2 + z4, t2 + z2 + z3, t3 + z1 + z4]
}

/// Even part from inputs 0, 2, 4, 6: `(tmp10, tmp11, tmp12, tmp13)`.
#[inline]
fn even(i0: i64, i2: i64, i4: i64, i6: i64) -> [i64; 4] {
    let z1 = (i2 + i6) * F0541;
    let tmp2 = z1 - i6 * F1847;
    let tmp3 = z1 + i2 * F0765;
    let tmp0 = (i0 + i4) << CB;
    let tmp1 = (i0 - i4) << CB;
    [tmp0 + tmp3, tmp1 + tmp2, tmp1 - tmp2, tmp0 - tmp3]
}

/// One 8-point pass: `v[0..8]` in, outputs descaled by `shift` in natural order.
#[inline]
fn pass(v: [i64; 8], shift: i64) -> [i64; 8] {
    let [t10, t11, t12, t13] = even(v[0], v[2], v[4], v[6]);
    let [o0, o1, o2, o3] = odd(v[7], v[5], v[3], v[1]);
    [
        descale(t10 + o3, shift),
        descale(t11 + o2, shift),
        descale(t12 + o1, shift),
        descale(t13 + o0, shift),
        descale(t13 - o0, shift),
        descale(t12 - o1, shift),
        descale(t11 - o2, shift),
        descale(t10 - o3, shift),
    ]
}

/// Inverse DCT of one block (coefficients in natural order, quantizers as latched) into 8x8
/// samples at `out[r * stride + c]`. `Err` when the block leaves the exactly computed range.
pub fn idct_block(
    coef: &[i16; 64],
    q: &[u16; 64],
    out: &mut [u8],
    stride: usize,
) -> Result<(), ()> {
    // Dequantize as `vpmullw` does: 16-bit quantizer (`ISLOW_MULT_TYPE`), low 16 bits of the product.
    let mut d = [0i64; 64];
    let mut ac = false;
    for i in 0..64 {
        if coef[i] == 0 {
            continue;
        }
        let v = (coef[i] as i32).wrapping_mul(q[i] as i16 as i32) as i16 as i64;
        if v.abs() > EXACT {
            return Err(());
        }
        d[i] = v;
        ac |= i > 0 && v != 0;
    }
    if !ac {
        // DC only: both passes reduce to a constant (the C code's own shortcut).
        let ws = d[0] << P1;
        if ws.abs() > EXACT {
            return Err(());
        }
        let v = saturate(descale(ws, P1 + 3));
        for r in 0..8 {
            out[r * stride..r * stride + 8].fill(v);
        }
        return Ok(());
    }
    let mut ws = [0i64; 64];
    for c in 0..8 {
        if (1..8).all(|r| d[r * 8 + c] == 0) {
            // No AC terms in this column: every output is the DC term (libjpeg's shortcut).
            let v = d[c] << P1;
            if v.abs() > EXACT {
                return Err(());
            }
            for r in 0..8 {
                ws[r * 8 + c] = v;
            }
            continue;
        }
        let col = pass(std::array::from_fn(|r| d[r * 8 + c]), CB - P1);
        for (r, &v) in col.iter().enumerate() {
            if v.abs() > EXACT {
                return Err(());
            }
            ws[r * 8 + c] = v;
        }
    }
    for r in 0..8 {
        let row = pass(std::array::from_fn(|c| ws[r * 8 + c]), CB + P1 + 3);
        let o = &mut out[r * stride..r * stride + 8];
        for (dst, &v) in o.iter_mut().zip(&row) {
            *dst = saturate(v);
        }
    }
    Ok(())
}

/// Output sample: the SIMD code packs with signed saturation, then re-centres.
#[inline]
fn saturate(v: i64) -> u8 {
    (v.clamp(-128, 127) + 128) as u8
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The general two-pass formula, without shortcuts.
    fn general(coef: &[i16; 64], q: &[u16; 64]) -> [u8; 64] {
        let d: [i64; 64] = std::array::from_fn(|i| coef[i] as i64 * q[i] as i64);
        let mut ws = [0i64; 64];
        for c in 0..8 {
            let col = pass(std::array::from_fn(|r| d[r * 8 + c]), CB - P1);
            for r in 0..8 {
                ws[r * 8 + c] = col[r];
            }
        }
        let mut out = [0u8; 64];
        for r in 0..8 {
            let row = pass(std::array::from_fn(|c| ws[r * 8 + c]), CB + P1 + 3);
            for c in 0..8 {
                out[r * 8 + c] = saturate(row[c]);
            }
        }
        out
    }

    #[test]
    fn shortcuts_equal_the_general_formula() {
        let q: [u16; 64] = std::array::from_fn(|i| 1 + (i as u16 * 7) % 23);
        let mut state = 7u64;
        for case in 0..200 {
            let mut coef = [0i16; 64];
            // DC only, a few AC-free columns, or a dense block.
            let n = [1, 3, 12, 64][case % 4];
            for _ in 0..n {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let i = if n == 1 {
                    0
                } else {
                    (state >> 40) as usize % if n == 3 { 8 } else { 64 }
                };
                coef[i] = ((state >> 20) as i16) % 40;
            }
            let mut fast = [0u8; 64];
            idct_block(&coef, &q, &mut fast, 8).unwrap();
            assert_eq!(fast, general(&coef, &q), "case {case}: {coef:?}");
        }
    }

    #[test]
    fn wild_coefficients_are_refused_and_outputs_saturate() {
        let mut q = [1u16; 64];
        let mut out = [0u8; 64];
        let mut coef = [0i16; 64];
        coef[0] = 4094; // 4094 << 2 = 16376: still exact, output far above 255
        idct_block(&coef, &q, &mut out, 8).unwrap();
        assert!(out.iter().all(|&v| v == 255));
        coef[0] = 4100; // first pass leaves the exact range
        assert!(idct_block(&coef, &q, &mut out, 8).is_err());
        coef[0] = 100;
        q[0] = 200; // 20000 after dequantization
        assert!(idct_block(&coef, &q, &mut out, 8).is_err());
    }
}
