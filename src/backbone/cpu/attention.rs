//! Multi-head self-attention on the packed `qkv` rows: RoPE, then per (image, head, query
//! block) `S = Q·Kᵀ`, a row softmax and `O = P·V`, without ever holding a head's `[N, N]`
//! score matrix (one `QB x N` strip per thread, in L2).

use std::cell::{Cell, RefCell};

use rayon::prelude::*;

use super::gemm::{AlignedBuf, SharedMut};
use super::isa::Isa;
use super::kernel::{self, Epilogue, MR, NR, Tile};
use super::math;

/// Query rows per task: a multiple of MR; the score strip is `QB x N` floats (200 KiB at
/// N = 1029).
const QB: usize = 48;

/// Shapes of one attention call.
#[derive(Clone, Copy, Debug)]
pub struct Dims {
    /// Images.
    pub b: usize,
    /// Tokens per image.
    pub n: usize,
    pub heads: usize,
    pub head_dim: usize,
    /// Leading tokens without RoPE (CLS + registers).
    pub prefix: usize,
}

impl Dims {
    fn d(&self) -> usize {
        self.heads * self.head_dim
    }
}

/// Rotates q and k of every patch token in place ("rotate-half" RoPE).
///
/// `qkv`: `[B·N, 3D]` (q | k | v, head-major within each); `cos`, `sin`: `[N − prefix, dh]`.
pub fn rope(qkv: &mut [f32], dims: Dims, cos: &[f32], sin: &[f32]) {
    let (n, dh, d) = (dims.n, dims.head_dim, dims.d());
    let half = dh / 2;
    assert_eq!(cos.len(), (n - dims.prefix) * dh, "rope: cos table");
    assert_eq!(sin.len(), cos.len(), "rope: sin table");
    qkv.par_chunks_mut(3 * d).enumerate().for_each(|(row, t)| {
        let Some(p) = (row % n).checked_sub(dims.prefix) else {
            return;
        };
        let (c, s) = (&cos[p * dh..(p + 1) * dh], &sin[p * dh..(p + 1) * dh]);
        for head in t[..2 * d].chunks_exact_mut(dh) {
            let (lo, hi) = head.split_at_mut(half);
            for i in 0..half {
                let (x, y) = (lo[i], hi[i]);
                // out = x·cos + rotate_half(x)·sin, rotate_half = [−hi, lo].
                lo[i] = x * c[i] + -y * s[i];
                hi[i] = y * c[half + i] + x * s[half + i];
            }
        }
    });
}

thread_local! {
    /// Score strip, its row sums and the packed query block, reused between tasks and calls.
    static STRIP: RefCell<(AlignedBuf, Vec<f32>, AlignedBuf)> = RefCell::default();
    /// The calling thread's packed K and V, kept between calls (no page faults per block).
    static KV: Cell<(AlignedBuf, AlignedBuf)> = Cell::default();
}

/// `out[t, h·dh..] = softmax(q_t·Kᵀ / √dh)·V` per image and head.
///
/// `qkv`: `[B·N, 3D]` after RoPE; `out`: `[B·N, D]`. Every `isa` gives the same bits.
///
/// # Panics
/// If this CPU cannot run `isa` ([`Isa::assert_supported`]), or on slices of the wrong size.
pub fn attention(isa: Isa, qkv: &[f32], dims: Dims, out: &mut [f32]) {
    isa.assert_supported();
    let Dims {
        b,
        n,
        heads,
        head_dim: dh,
        ..
    } = dims;
    let d = dims.d();
    assert_eq!(qkv.len(), b * n * 3 * d, "attention: qkv");
    assert_eq!(out.len(), b * n * d, "attention: out");
    let npad = n.div_ceil(NR) * NR;
    let dpad = dh.div_ceil(NR) * NR;
    // Kᵀ per (image, head) as B panels `[key panel][dh][NR]`; V as `[dh panel][N][NR]`.
    // Taken out of the thread-local for the call (a nested call gets fresh buffers).
    let (mut kbuf, mut vbuf) = KV.take();
    let kp = kbuf.get(b * heads * npad * dh);
    let vp = vbuf.get(b * heads * n * dpad);
    kp.par_chunks_mut(npad * dh)
        .zip(vp.par_chunks_mut(n * dpad))
        .enumerate()
        .for_each(|(bh, (kh, vh))| {
            let (img, h) = (bh / heads, bh % heads);
            let row = |t: usize| &qkv[(img * n + t) * 3 * d..(img * n + t + 1) * 3 * d];
            for (p, panel) in kh.chunks_exact_mut(dh * NR).enumerate() {
                panel.fill(0.0);
                for c in 0..NR.min(n - p * NR) {
                    let k = &row(p * NR + c)[d + h * dh..d + (h + 1) * dh];
                    for (dd, &v) in k.iter().enumerate() {
                        panel[dd * NR + c] = v;
                    }
                }
            }
            for (q, panel) in vh.chunks_exact_mut(n * NR).enumerate() {
                let w = NR.min(dh - q * NR);
                for (t, dst) in panel.chunks_exact_mut(NR).enumerate() {
                    let src = 2 * d + h * dh + q * NR;
                    dst[..w].copy_from_slice(&row(t)[src..src + w]);
                    dst[w..].fill(0.0);
                }
            }
        });
    let (kp, vp) = (&*kp, &*vp);
    let scale = 1.0 / (dh as f32).sqrt();
    let qblocks = n.div_ceil(QB);
    let out = SharedMut::new(out);
    (0..b * heads * qblocks).into_par_iter().for_each(|task| {
        let (bh, qb) = (task / qblocks, task % qblocks);
        let (img, h) = (bh / heads, bh % heads);
        let q0 = qb * QB;
        let rows = (n - q0).min(QB);
        let kh = &kp[bh * npad * dh..(bh + 1) * npad * dh];
        let vh = &vp[bh * n * dpad..(bh + 1) * n * dpad];
        STRIP.with_borrow_mut(|(sbuf, sums, qbuf)| {
            let s = sbuf.get(QB * npad);
            sums.resize(QB, 0.0);
            // The query rows as `[MR-row panel][dh][MR]` (rows 3D floats apart would share L1
            // sets; one broadcast stream per tile instead), rows past the block zero.
            let q = &qkv[(img * n + q0) * 3 * d + h * dh..];
            let qp = qbuf.get(rows.div_ceil(MR) * MR * dh);
            for (ip, panel) in qp.chunks_exact_mut(MR * dh).enumerate() {
                for r in 0..MR {
                    let i = ip * MR + r;
                    for c in 0..dh {
                        panel[c * MR + r] = if i < rows { q[i * 3 * d + c] } else { 0.0 };
                    }
                }
            }
            // S = Q·Kᵀ, QB x npad (the padded keys score 0 and are never read).
            for i0 in (0..rows).step_by(MR) {
                for p in 0..npad / NR {
                    let t = Tile {
                        kc: dh,
                        a: qp[i0 * dh..].as_ptr(),
                        lda: 1,
                        ka: MR,
                        b: kh[p * dh * NR..].as_ptr(),
                        part: std::ptr::null_mut(),
                        ldp: 0,
                        first: true,
                        last: true,
                        out: s[i0 * npad + p * NR..].as_mut_ptr(),
                        ldo: npad,
                        ncols: NR,
                        epilogue: Epilogue::Store,
                        row0: i0,
                        col0: p * NR,
                    };
                    // SAFETY: the packed query panel i0 holds dh·MR floats; the K panel is dh·NR floats at a 64-byte aligned offset; the strip row holds npad.
                    unsafe { kernel::tile(isa, (rows - i0).min(MR), &t) };
                }
            }
            for (r, sum) in sums.iter_mut().enumerate().take(rows) {
                *sum = 1.0 / softmax_row(isa, &mut s[r * npad..r * npad + n], scale);
            }
            // O = P·V / rowsum, written to this head's columns of `out`.
            for i0 in (0..rows).step_by(MR) {
                for q in 0..dpad / NR {
                    let t = Tile {
                        kc: n,
                        a: s[i0 * npad..].as_ptr(),
                        lda: npad,
                        ka: 1,
                        b: vh[q * n * NR..].as_ptr(),
                        part: std::ptr::null_mut(),
                        ldp: 0,
                        first: true,
                        last: true,
                        // Tasks own disjoint (rows, head columns) blocks of `out`.
                        // SAFETY: row img·N + q0 + i0 < B·N and column h·dh + q·NR < D.
                        out: unsafe { out.ptr().add((img * n + q0 + i0) * d + h * dh + q * NR) },
                        ldo: d,
                        ncols: NR.min(dh - q * NR),
                        epilogue: Epilogue::RowScale(sums),
                        row0: i0,
                        col0: 0,
                    };
                    // SAFETY: P rows hold n floats at stride npad; V panel is n·NR floats at a
                    // 64-byte aligned offset; `out` extents as above.
                    unsafe { kernel::tile(isa, (rows - i0).min(MR), &t) };
                }
            }
        });
    });
    KV.set((kbuf, vbuf));
}

/// Lanes of the softmax row reductions: element `i` goes to lane `i % LANES` in every variant.
const LANES: usize = 16;

/// `_mm512_max_ps`'s choice, written out: `a` if `a > b`, else `b` (so `b` when either is NaN
/// or both are zeros). The scalar path uses it so that its max is the AVX-512 one, bit for bit.
#[inline(always)]
fn max_ps(a: f32, b: f32) -> f32 {
    if a > b { a } else { b }
}

/// The one reduction tree of the lane accumulators, shared by every variant: lane `i` with lane
/// `i + 8`, then `+ 4`, `+ 2`, `+ 1` (not `_mm512_reduce_*_ps`, whose order the intrinsic does
/// not promise).
#[inline(always)]
fn tree(mut v: [f32; LANES], op: impl Fn(f32, f32) -> f32) -> f32 {
    let mut w = LANES / 2;
    while w > 0 {
        for i in 0..w {
            v[i] = op(v[i], v[i + w]);
        }
        w /= 2;
    }
    v[0]
}

/// Replaces `row` by `exp(row·scale − max·scale)` and returns its sum.
///
/// The same bits on every ISA: the max and the sum run on [`LANES`] lane accumulators and end
/// in [`tree`], the exponential is [`math::exp`] (bit-identical to [`math::avx512::exp`]), and
/// `v·scale − m` is unfused on both sides.
fn softmax_row(isa: Isa, row: &mut [f32], scale: f32) -> f32 {
    match isa {
        // SAFETY: `attention`, the only caller, asserted that this CPU runs `isa`.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => unsafe { softmax_row_avx512(row, scale) },
        // SAFETY: as above.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => unsafe { softmax_row_fma(row, scale) },
        _ => softmax_row_generic(row, scale),
    }
}

/// [`softmax_row_generic`] compiled with FMA (`math::exp`'s `mul_add` one instruction).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn softmax_row_fma(row: &mut [f32], scale: f32) -> f32 {
    softmax_row_generic(row, scale)
}

#[inline(always)]
fn softmax_row_generic(row: &mut [f32], scale: f32) -> f32 {
    let mut mx = [f32::NEG_INFINITY; LANES];
    for (i, &v) in row.iter().enumerate() {
        mx[i % LANES] = max_ps(mx[i % LANES], v);
    }
    let m = tree(mx, max_ps) * scale;
    let mut sum = [0f32; LANES];
    for (i, v) in row.iter_mut().enumerate() {
        *v = math::exp(*v * scale - m);
        sum[i % LANES] += *v;
    }
    tree(sum, |a, b| a + b)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn softmax_row_avx512(row: &mut [f32], scale: f32) -> f32 {
    use std::arch::x86_64::*;
    let n = row.len();
    let p = row.as_mut_ptr();
    let mask = |i: usize| -> __mmask16 {
        if n - i >= 16 {
            0xffff
        } else {
            (1u16 << (n - i)) - 1
        }
    };
    let lanes = |v: __m512| {
        let mut out = [0f32; LANES];
        // SAFETY: `out` holds 16 floats.
        unsafe { _mm512_storeu_ps(out.as_mut_ptr(), v) };
        out
    };
    // SAFETY: every access is masked to the row's n floats.
    unsafe {
        let mut mx = _mm512_set1_ps(f32::NEG_INFINITY);
        for i in (0..n).step_by(LANES) {
            // Lane l: max_ps(mx, v) of its elements only (the others keep mx).
            mx = _mm512_mask_max_ps(mx, mask(i), mx, _mm512_maskz_loadu_ps(mask(i), p.add(i)));
        }
        let vs = _mm512_set1_ps(scale);
        let m = _mm512_set1_ps(tree(lanes(mx), max_ps) * scale);
        let mut sum = _mm512_setzero_ps();
        for i in (0..n).step_by(LANES) {
            let k = mask(i);
            let e = math::avx512::exp(_mm512_sub_ps(
                _mm512_mul_ps(_mm512_maskz_loadu_ps(k, p.add(i)), vs),
                m,
            ));
            sum = _mm512_mask_add_ps(sum, k, sum, e);
            _mm512_mask_storeu_ps(p.add(i), k, e);
        }
        tree(lanes(sum), |a, b| a + b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// f64 attention on random q/k/v against every ISA, with ragged N, dh and a query block edge.
    #[test]
    fn attention_matches_f64_on_every_isa() {
        for &(b, n, heads, dh) in &[(1, 7, 2, 16), (2, QB + 13, 3, 8), (1, 70, 1, 72)] {
            let d = heads * dh;
            let mut s = 12345u32;
            let qkv: Vec<f32> = (0..b * n * 3 * d)
                .map(|_| {
                    s = s.wrapping_mul(1_103_515_245).wrapping_add(12345);
                    ((s >> 8) as f32 / (1u32 << 24) as f32) * 4.0 - 2.0
                })
                .collect();
            let dims = Dims {
                b,
                n,
                heads,
                head_dim: dh,
                prefix: 0,
            };
            let scale = 1.0 / (dh as f64).sqrt();
            for isa in Isa::available() {
                let mut out = vec![0f32; b * n * d];
                attention(isa, &qkv, dims, &mut out);
                for img in 0..b {
                    for h in 0..heads {
                        let at = |t: usize, part: usize, c: usize| {
                            qkv[(img * n + t) * 3 * d + part * d + h * dh + c] as f64
                        };
                        for i in 0..n {
                            let sc: Vec<f64> = (0..n)
                                .map(|j| {
                                    (0..dh).map(|c| at(i, 0, c) * at(j, 1, c)).sum::<f64>() * scale
                                })
                                .collect();
                            let mx = sc.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                            let e: Vec<f64> = sc.iter().map(|v| (v - mx).exp()).collect();
                            let z: f64 = e.iter().sum();
                            for c in 0..dh {
                                let want = (0..n).map(|j| e[j] * at(j, 2, c)).sum::<f64>() / z;
                                let got = out[(img * n + i) * d + h * dh + c] as f64;
                                assert!(
                                    (got - want).abs() < 2e-5,
                                    "{isa:?} b{b} n{n} h{heads} dh{dh} [{img},{h},{i},{c}]: {got} vs {want}"
                                );
                            }
                        }
                    }
                }
            }
        }
    }

    /// Every ISA gives the same bits as the portable kernels: ragged N (tails of the 16-lane
    /// softmax reductions, a query block edge), ragged dh, and rows with a wide spread of
    /// scores (large inputs: most exponentials underflow to 0).
    #[test]
    fn every_isa_computes_the_same_bits() {
        let isas = Isa::available();
        for &(b, n, heads, dh, amp) in &[
            (1, 7, 2, 16, 2.0),
            (2, QB + 13, 3, 8, 2.0),
            (1, 70, 1, 72, 2.0),
            (1, 61, 2, 24, 40.0),
        ] {
            let d = heads * dh;
            let mut s = 777u32;
            let qkv: Vec<f32> = (0..b * n * 3 * d)
                .map(|_| {
                    s = s.wrapping_mul(1_103_515_245).wrapping_add(12345);
                    ((s >> 8) as f32 / (1u32 << 24) as f32 - 0.5) * 2.0 * amp
                })
                .collect();
            let dims = Dims {
                b,
                n,
                heads,
                head_dim: dh,
                prefix: 0,
            };
            let run = |isa| {
                let mut out = vec![0f32; b * n * d];
                attention(isa, &qkv, dims, &mut out);
                out
            };
            let want = run(Isa::Portable);
            for &isa in isas.iter().filter(|&&i| i != Isa::Portable) {
                for (i, (g, w)) in run(isa).iter().zip(&want).enumerate() {
                    assert_eq!(
                        g.to_bits(),
                        w.to_bits(),
                        "{isa:?} b{b} n{n} h{heads} dh{dh} [{}, {}]: {g:e} vs portable {w:e}",
                        i / d,
                        i % d
                    );
                }
            }
        }
    }

    /// The row reductions of the softmax, scalar and AVX-512, on rows of every length up to
    /// three vectors, with NaN and signed zeros (where `max` is not commutative).
    #[test]
    fn softmax_rows_are_the_same_bits() {
        let isas = Isa::available();
        for n in 1..=48 {
            for special in [None, Some(0.0), Some(-0.0), Some(f32::NAN)] {
                // With zeros: both signs, every other value below them (the zeros are the max).
                let zeros = special.is_some_and(|v| v == 0.0);
                let row: Vec<f32> = (0..n)
                    .map(|i| match special {
                        Some(v) if i % 5 == 2 => v,
                        Some(v) if zeros && i % 5 == 3 => -v,
                        _ if zeros => -0.7 * (1 + i * 37 % 23) as f32,
                        _ => ((i * 37 % 23) as f32 - 11.0) * 0.7,
                    })
                    .collect();
                let run = |isa| {
                    let mut r = row.clone();
                    let sum = softmax_row(isa, &mut r, 0.125);
                    (sum, r)
                };
                let (ws, wr) = run(Isa::Portable);
                for &isa in isas.iter().filter(|&&i| i != Isa::Portable) {
                    let (gs, gr) = run(isa);
                    let same =
                        |g: f32, w: f32| g.to_bits() == w.to_bits() || (g.is_nan() && w.is_nan());
                    assert!(
                        same(gs, ws),
                        "{isa:?} n{n} {special:?}: sum {gs:e} vs {ws:e}"
                    );
                    for (j, (g, w)) in gr.iter().zip(&wr).enumerate() {
                        assert!(
                            same(*g, *w),
                            "{isa:?} n{n} {special:?} [{j}]: {g:e} vs {w:e}"
                        );
                    }
                }
            }
        }
    }
}
