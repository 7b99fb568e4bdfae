//! Pillow's antialiased bilinear resize (`Image.resize(size, BILINEAR)`), reimplemented exactly.
//!
//! Pillow (`libImaging/Resample.c`) resamples 8-bit images in two separable passes, each rounding
//! to u8. Pillow 13 runs the vertical pass first when the height shrinks by more than twice as many
//! pixels as the width (`in_h - out_h > 2 * (in_w - out_w)`), otherwise horizontal first (the only
//! order of Pillow <= 12); the order changes some pixels by one unit, so it is reproduced. The filter is the triangle `1 - |x|` stretched by the reduction
//! factor (so downscaling averages, never point-samples); weights are computed in f64, normalised,
//! then turned into 22-bit fixed point with round-half-away rounding, and each output is
//! `(0.5 + sum(p * w)) >> 22` clamped to 0..=255. Reproducing each of these steps is what makes the
//! result bit-identical rather than "close".

/// Fixed-point precision of Pillow's 8-bit resampler: `32 - 8 - 2`.
const PRECISION_BITS: u32 = 22;

/// Per output position: first source index and number of taps, plus fixed-point weights.
struct Coeffs {
    bounds: Vec<(usize, usize)>,
    ksize: usize,
    weights: Vec<i32>,
}

fn bilinear(x: f64) -> f64 {
    let x = x.abs();
    if x < 1.0 { 1.0 - x } else { 0.0 }
}

/// `precompute_coeffs` + `normalize_coeffs_8bpc` of Pillow for the full box `[0, in_size)`.
fn coeffs(in_size: usize, out_size: usize) -> Coeffs {
    let scale = in_size as f64 / out_size as f64;
    let filterscale = scale.max(1.0);
    let support = filterscale; // bilinear support (1.0) times the reduction factor
    let ksize = (support.ceil() as usize) * 2 + 1;
    let mut bounds = Vec::with_capacity(out_size);
    let mut weights = vec![0i32; out_size * ksize];
    let mut k = vec![0f64; ksize];
    for xx in 0..out_size {
        let center = (xx as f64 + 0.5) * scale;
        let ss = 1.0 / filterscale;
        // C casts truncate toward zero; the clamps reproduce Pillow's bounds.
        let xmin = ((center - support + 0.5) as i64).max(0) as usize;
        let xmax = ((center + support + 0.5) as i64).min(in_size as i64) as usize;
        let n = xmax - xmin;
        let mut ww = 0.0;
        for (x, kx) in k.iter_mut().enumerate().take(n) {
            let w = bilinear((x as f64 + xmin as f64 - center + 0.5) * ss);
            *kx = w;
            ww += w;
        }
        for x in 0..n {
            let v = if ww != 0.0 { k[x] / ww } else { k[x] };
            let fixed = v * (1u32 << PRECISION_BITS) as f64;
            weights[xx * ksize + x] = if v < 0.0 {
                (-0.5 + fixed) as i32
            } else {
                (0.5 + fixed) as i32
            };
        }
        bounds.push((xmin, n));
    }
    Coeffs {
        bounds,
        ksize,
        weights,
    }
}

#[inline]
fn clip8(ss: i32) -> u8 {
    (ss >> PRECISION_BITS).clamp(0, 255) as u8
}

/// Resizes an interleaved 8-bit image (`channels` per pixel, row-major `[h][w][c]`) to
/// `out_w x out_h` exactly as Pillow's `Image.resize((out_w, out_h), Image.BILINEAR)` does.
///
/// A pass whose size does not change is skipped, as in Pillow (it would be the identity anyway).
pub fn resize_bilinear_u8(
    src: &[u8],
    w: usize,
    h: usize,
    channels: usize,
    out_w: usize,
    out_h: usize,
) -> Vec<u8> {
    assert_eq!(
        src.len(),
        w * h * channels,
        "resize: buffer does not match {w}x{h}x{channels}"
    );
    assert!(
        w > 0 && h > 0 && out_w > 0 && out_h > 0,
        "resize: empty image"
    );
    if w == out_w && h == out_h {
        return src.to_vec();
    }
    if vertical_first(w, h, out_w, out_h) {
        let tmp = if h != out_h {
            vertical(src, w, channels, &coeffs(h, out_h), 0, out_h)
        } else {
            src.to_vec()
        };
        return if w != out_w {
            horizontal(&tmp, w, channels, &coeffs(w, out_w), 0, out_h, out_w)
        } else {
            tmp
        };
    }
    let vert = coeffs(h, out_h);
    // Horizontal first: only over the source rows the vertical pass will read.
    let (first_row, last_row) = if h != out_h {
        let (lmin, ln) = vert.bounds[out_h - 1];
        (vert.bounds[0].0, lmin + ln)
    } else {
        (0, h)
    };
    let tmp = if w != out_w {
        horizontal(
            src,
            w,
            channels,
            &coeffs(w, out_w),
            first_row,
            last_row - first_row,
            out_w,
        )
    } else {
        src[first_row * w * channels..last_row * w * channels].to_vec()
    };
    if h == out_h {
        tmp
    } else {
        vertical(&tmp, out_w, channels, &vert, first_row, out_h)
    }
}

/// Pillow 13's pass order: vertical first iff the height shrinks by more than twice the pixels
/// the width does.
pub fn vertical_first(w: usize, h: usize, out_w: usize, out_h: usize) -> bool {
    let dy = h as i64 - out_h as i64;
    let dx = w as i64 - out_w as i64;
    dy > 0 && dy > dx * 2
}

/// Horizontal pass over `rows` source rows starting at `first_row`.
fn horizontal(
    src: &[u8],
    w: usize,
    c: usize,
    hc: &Coeffs,
    first_row: usize,
    rows: usize,
    out_w: usize,
) -> Vec<u8> {
    let half = 1i32 << (PRECISION_BITS - 1);
    let mut out = vec![0u8; out_w * rows * c];
    for y in 0..rows {
        let row = &src[(y + first_row) * w * c..(y + first_row + 1) * w * c];
        let orow = &mut out[y * out_w * c..(y + 1) * out_w * c];
        for xx in 0..out_w {
            let (xmin, n) = hc.bounds[xx];
            let k = &hc.weights[xx * hc.ksize..xx * hc.ksize + n];
            for ch in 0..c {
                let mut ss = half;
                for (x, &kx) in k.iter().enumerate() {
                    ss += row[(xmin + x) * c + ch] as i32 * kx;
                }
                orow[xx * c + ch] = clip8(ss);
            }
        }
    }
    out
}

/// Vertical pass; `src` row 0 is source row `row_offset` (bounds are in source rows).
fn vertical(
    src: &[u8],
    w: usize,
    c: usize,
    vert: &Coeffs,
    row_offset: usize,
    out_h: usize,
) -> Vec<u8> {
    let half = 1i32 << (PRECISION_BITS - 1);
    let stride = w * c;
    let mut out = vec![0u8; out_h * stride];
    let mut acc = vec![0i32; stride];
    for yy in 0..out_h {
        let (ymin, n) = vert.bounds[yy];
        let ymin = ymin - row_offset;
        let k = &vert.weights[yy * vert.ksize..yy * vert.ksize + n];
        acc.fill(half);
        for (y, &ky) in k.iter().enumerate() {
            let row = &src[(ymin + y) * stride..(ymin + y + 1) * stride];
            for (a, &p) in acc.iter_mut().zip(row) {
                *a += p as i32 * ky;
            }
        }
        for (o, &a) in out[yy * stride..(yy + 1) * stride].iter_mut().zip(&acc) {
            *o = clip8(a);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_size_is_identity() {
        let src: Vec<u8> = (0..5 * 3 * 3).map(|i| (i * 7 % 256) as u8).collect();
        assert_eq!(resize_bilinear_u8(&src, 5, 3, 3, 5, 3), src);
    }

    #[test]
    fn constant_image_stays_constant() {
        let src = vec![200u8; 17 * 9];
        let out = resize_bilinear_u8(&src, 17, 9, 1, 6, 23);
        assert!(out.iter().all(|&v| v == 200));
    }

    #[test]
    fn pass_order_follows_pillow_13() {
        assert!(vertical_first(540, 792, 512, 512)); // 280 > 2 * 28
        assert!(!vertical_first(732, 900, 512, 512)); // 388 <= 2 * 220
        assert!(vertical_first(100, 50, 200, 20)); // width grows (dx < 0), height shrinks
        assert!(!vertical_first(50, 100, 20, 200)); // height grows
    }

    #[test]
    fn halving_matches_pillow() {
        // Pillow 13: Image.fromarray(np.array([[0,0,255,255,0,0,255,255]], np.uint8)).resize((4,1), BILINEAR)
        let src = [0u8, 0, 255, 255, 0, 0, 255, 255];
        assert_eq!(
            resize_bilinear_u8(&src, 8, 1, 1, 4, 1),
            vec![36, 191, 64, 219]
        );
    }
}
