//! From component planes to output pixels, row by row: libjpeg's upsampling (`jdsample.c`:
//! "fancy" h2v1, h2v2, h1v2 triangle filters with their rounding biases and edge handling,
//! replication otherwise) and colour conversion (`jdcolor.c`: YCbCr -> RGB and YCCK -> CMYK with
//! the fixed-point tables, RGB/CMYK/grey copied).

use super::{ColorSpace, Frame};

/// How the file's samples are coded (`jpeg_color_space`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Source {
    Gray,
    YCbCr,
    Rgb,
    Cmyk,
    Ycck,
}

impl Source {
    pub fn output(self) -> ColorSpace {
        match self {
            Source::Gray => ColorSpace::Gray,
            Source::YCbCr | Source::Rgb => ColorSpace::Rgb,
            Source::Cmyk | Source::Ycck => ColorSpace::Cmyk,
        }
    }
}

/// `jdcolor.c` fixed-point tables (`build_ycc_rgb_table`).
struct Ycc {
    cr_r: [i32; 256],
    cb_b: [i32; 256],
    cr_g: [i64; 256],
    cb_g: [i64; 256],
}

impl Ycc {
    fn new() -> Self {
        const ONE_HALF: i64 = 1 << 15;
        let fix = |x: f64| (x * 65536.0 + 0.5) as i64;
        let mut t = Ycc {
            cr_r: [0; 256],
            cb_b: [0; 256],
            cr_g: [0; 256],
            cb_g: [0; 256],
        };
        for i in 0..256 {
            let x = i as i64 - 128;
            t.cr_r[i] = ((fix(1.40200) * x + ONE_HALF) >> 16) as i32;
            t.cb_b[i] = ((fix(1.77200) * x + ONE_HALF) >> 16) as i32;
            t.cr_g[i] = -fix(0.71414) * x;
            t.cb_g[i] = -fix(0.34414) * x + ONE_HALF;
        }
        t
    }
    /// `(R, G, B)` before range limiting.
    #[inline]
    fn rgb(&self, y: u8, cb: u8, cr: u8) -> (i32, i32, i32) {
        let (y, cb, cr) = (y as i32, cb as usize, cr as usize);
        (
            y + self.cr_r[cr],
            y + ((self.cb_g[cb] + self.cr_g[cr]) >> 16) as i32,
            y + self.cb_b[cb],
        )
    }
}

#[inline]
fn clamp(v: i32) -> u8 {
    v.clamp(0, 255) as u8
}

/// Interleaved output pixels (`channels` of `source.output()`), `width * height * channels`.
pub fn render(frame: &Frame, planes: &[Vec<u8>], source: Source) -> Vec<u8> {
    let (w, h) = (frame.width, frame.height);
    let channels = frame.comps.len();
    let mut out = vec![0u8; w * h * channels];
    let ycc = matches!(source, Source::YCbCr | Source::Ycck).then(Ycc::new);
    let mut rows: Vec<Vec<u8>> = vec![vec![0u8; w + 2]; channels];
    let mut sums = vec![0i32; w + 2];
    for y in 0..h {
        for (ci, row) in rows.iter_mut().enumerate() {
            upsample_row(frame, ci, &planes[ci], y, row, &mut sums);
        }
        let o = &mut out[y * w * channels..(y + 1) * w * channels];
        match (source, &ycc) {
            (Source::YCbCr, Some(t)) => {
                let (r0, r1, r2) = (&rows[0][..w], &rows[1][..w], &rows[2][..w]);
                for (x, px) in o.chunks_exact_mut(3).enumerate() {
                    let (r, g, b) = t.rgb(r0[x], r1[x], r2[x]);
                    px[0] = clamp(r);
                    px[1] = clamp(g);
                    px[2] = clamp(b);
                }
            }
            (Source::Ycck, Some(t)) => {
                for (x, px) in o.chunks_exact_mut(4).enumerate() {
                    let (r, g, b) = t.rgb(rows[0][x], rows[1][x], rows[2][x]);
                    px.copy_from_slice(&[
                        clamp(255 - r),
                        clamp(255 - g),
                        clamp(255 - b),
                        rows[3][x],
                    ]);
                }
            }
            _ if channels == 1 => o.copy_from_slice(&rows[0][..w]),
            _ => {
                for (x, px) in o.chunks_exact_mut(channels).enumerate() {
                    for (c, v) in px.iter_mut().enumerate() {
                        *v = rows[c][x];
                    }
                }
            }
        }
    }
    out
}

/// Output row `y` of component `ci`, upsampled to the image width (`row[..width]`); `sums` is
/// scratch space for the vertical pass of h2v2.
fn upsample_row(
    frame: &Frame,
    ci: usize,
    plane: &[u8],
    y: usize,
    row: &mut [u8],
    sums: &mut [i32],
) {
    let c = &frame.comps[ci];
    let width = frame.width;
    let stride = frame.blocks_per_row(ci) * 8;
    let (fx, fy) = (frame.hmax / c.h, frame.vmax / c.v);
    let (dw, dh) = (c.dw, c.dh);
    let iy = y / fy;
    let line = |r: usize| &plane[r * stride..r * stride + dw];
    // The other row of a vertical triangle filter: above for the upper output row, below for
    // the lower one (edges replicated), with libjpeg's rounding bias for each.
    let other = || {
        if y.is_multiple_of(2) {
            (iy.saturating_sub(1), 1)
        } else {
            ((iy + 1).min(dh - 1), 2)
        }
    };
    match (fx, fy) {
        (1, 1) => row[..width].copy_from_slice(&line(y)[..width]),
        (2, 1) if dw > 2 => {
            let src = line(iy);
            h2v1(|x| src[x] as i32, dw, row, width)
        }
        (2, 2) if dw > 2 => {
            let (near, far) = (line(iy), line(other().0));
            for ((s, &a), &b) in sums.iter_mut().zip(near).zip(far) {
                *s = a as i32 * 3 + b as i32;
            }
            h2v2(|x| sums[x], dw, row, width);
        }
        (1, 2) => {
            let (o, bias) = other();
            let (near, far) = (line(iy), line(o));
            for ((v, &a), &b) in row[..width].iter_mut().zip(near).zip(far) {
                *v = ((a as i32 * 3 + b as i32 + bias) >> 2) as u8;
            }
        }
        _ => {
            let src = line(iy);
            for (x, v) in row[..width].iter_mut().enumerate() {
                *v = src[x / fx];
            }
        }
    }
}

/// `h2v1_fancy_upsample` of one row into `row[..width]`.
fn h2v1(src: impl Fn(usize) -> i32, dw: usize, row: &mut [u8], width: usize) {
    let mut put = |i: usize, v: i32| {
        if i < width {
            row[i] = v as u8;
        }
    };
    let v0 = src(0);
    put(0, v0);
    put(1, (v0 * 3 + src(1) + 2) >> 2);
    for x in 1..dw - 1 {
        let v = src(x) * 3;
        put(2 * x, (v + src(x - 1) + 1) >> 2);
        put(2 * x + 1, (v + src(x + 1) + 2) >> 2);
    }
    let v = src(dw - 1);
    put(2 * (dw - 1), (v * 3 + src(dw - 2) + 1) >> 2);
    put(2 * (dw - 1) + 1, v);
}

/// `h2v2_fancy_upsample` horizontally, on column sums `3 * near + far`.
fn h2v2(colsum: impl Fn(usize) -> i32, dw: usize, row: &mut [u8], width: usize) {
    let mut put = |i: usize, v: i32| {
        if i < width {
            row[i] = (v >> 4) as u8;
        }
    };
    let mut this = colsum(0);
    let mut next = colsum(1);
    put(0, this * 4 + 8);
    put(1, this * 3 + next + 7);
    for x in 1..dw - 1 {
        let last = this;
        this = next;
        next = colsum(x + 1);
        put(2 * x, this * 3 + last + 8);
        put(2 * x + 1, this * 3 + next + 7);
    }
    let last = this;
    this = next;
    put(2 * (dw - 1), this * 3 + last + 8);
    put(2 * (dw - 1) + 1, this * 4 + 7);
}
