//! The patch branch of the method on the CPU kernels: the dual patch adapters, the fusion and
//! normalisation, the two heads, the upsampling to maps, and for training the map losses with
//! their whole backward pass, in host memory.
//!
//! It is the same function as the burn path of [`super::method`] (the same parity fixtures run
//! through both), computed in fewer passes and with three formulation changes that do not change
//! the function:
//! - the products run on the backbone's GEMM ([`crate::cpu::gemm`]) with the
//!   LeakyReLU in its epilogue, reading the PyTorch-layout weights and the transposed operands
//!   of the backward products in place; the input gradient of the first layer (the frozen
//!   features) is never computed;
//! - the two-channel softmax of the upsampled cross-modal logits is `σ(±up(l₁ − l₀))` (the
//!   upsampling is linear, and `softmax([a, b])₁ = σ(b − a)`), so one channel is upsampled
//!   instead of two, and `l₁ − l₀ = 100 p'·(T₁ − T₀)`;
//! - the bilinear upsampling blends two rows and two columns directly
//!   ([`super::upsample::blend_weights`]) instead of multiplying by the mostly-zero
//!   interpolation matrices.
//!
//! Every sum over a variable number of terms is cut into fixed-size chunks whose partial sums
//! are added in chunk order, so results do not depend on the thread count or on scheduling.
//!
//! Shapes: B batch, N = h·w patches (row-major grid), D width, b bottleneck, S map side, L taps.

use rayon::prelude::*;

use super::adapter::LEAKY_SLOPE;
use super::upsample::blend_weights;
use crate::cpu::Isa;
use crate::cpu::gemm::{View, gemm_view};
use crate::cpu::isa::on_isa;
use crate::cpu::kernel::Epilogue;
use crate::cpu::math;

const SLOPE: f32 = LEAKY_SLOPE as f32;
/// Rows per task in the row-wise passes.
const ROWS: usize = 32;
/// Pixels per task in the map passes.
const PIXELS: usize = 4096;
/// Focal loss smoothing of the reference.
const SMOOTH: f32 = 1e-5;

/// A large f32 buffer taken from a process-wide pool and given back on drop. A fresh
/// multi-megabyte `Vec` is mapped and zero-filled page by page on every call (page faults were
/// several per cent of a step); buffers kept between calls skip that. Between calls the pool
/// holds at most one call's working set (the buffers of the largest call, reused by the next).
struct Buf(Vec<f32>);

static POOL: std::sync::Mutex<Vec<Vec<f32>>> = std::sync::Mutex::new(Vec::new());
/// Buffers the pool keeps at most (one training step uses about 8 per tap).
const POOL_MAX: usize = 64;

impl Buf {
    /// The smallest pooled buffer whose capacity holds `len` (empty if none).
    fn take(len: usize) -> Vec<f32> {
        let mut pool = POOL.lock().unwrap_or_else(|e| e.into_inner());
        let best = pool
            .iter()
            .enumerate()
            .filter(|(_, v)| v.capacity() >= len)
            .min_by_key(|(_, v)| v.capacity())
            .map(|(i, _)| i);
        best.map(|i| pool.swap_remove(i)).unwrap_or_default()
    }

    /// `len` values of unspecified content (earlier results), for outputs written whole: no
    /// zero-fill pass.
    fn scratch(len: usize) -> Self {
        let mut v = Self::take(len);
        if v.len() >= len {
            v.truncate(len);
        } else {
            v.resize(len, 0.0);
        }
        Self(v)
    }
}

impl std::ops::Deref for Buf {
    type Target = [f32];
    fn deref(&self) -> &[f32] {
        &self.0
    }
}

impl std::ops::DerefMut for Buf {
    fn deref_mut(&mut self) -> &mut [f32] {
        &mut self.0
    }
}

impl Drop for Buf {
    fn drop(&mut self) {
        let v = std::mem::take(&mut self.0);
        let mut pool = POOL.lock().unwrap_or_else(|e| e.into_inner());
        if pool.len() < POOL_MAX {
            pool.push(v);
        }
    }
}

/// The sizes of one batch.
#[derive(Debug, Clone, Copy)]
pub struct Shapes {
    pub batch: usize,
    /// `[h, w]`.
    pub grid: [usize; 2],
    pub dim: usize,
    pub bottleneck: usize,
    /// Map side S.
    pub map: usize,
}

impl Shapes {
    fn patches(&self) -> usize {
        self.grid[0] * self.grid[1]
    }

    fn rows(&self) -> usize {
        self.batch * self.patches()
    }

    fn pixels(&self) -> usize {
        self.map * self.map
    }
}

/// One adapter's weights in PyTorch layout.
#[derive(Clone, Copy)]
pub struct AdapterW<'a> {
    /// `[b, D]`.
    pub fc1: &'a [f32],
    /// `[D, b]`.
    pub fc2: &'a [f32],
}

/// One tap's inputs.
pub struct TapIn<'a> {
    /// `[B, N, D]`.
    pub patches: &'a [f32],
    pub normal: AdapterW<'a>,
    /// The anomaly adapter and the routing weights `[B, 2]` (column 0 normal); `None` for the
    /// single-adapter variant (`A(x) + x`).
    pub anomaly: Option<(AdapterW<'a>, &'a [f32])>,
    /// The fused, normalised CLS `[B, D]` (the AACM's reference vector).
    pub cls: &'a [f32],
}

/// The inputs of the patch branch.
pub struct Heads<'a> {
    /// `T~` transposed, `[B, 2, D]`.
    pub text: &'a [f32],
    pub taps: Vec<TapIn<'a>>,
}

/// Tap-averaged maps, each `[B, 2, S, S]` (channel 1 anomalous).
#[derive(Debug, Clone)]
pub struct Maps {
    pub maps: Vec<f32>,
    pub aacm: Vec<f32>,
}

/// What the losses are taken against, with the weights of the two map losses in the objective
/// (a micro-batch's share already multiplied in).
pub struct Targets<'a> {
    /// `[B, S, S]`, binarised at `> 0.5` here.
    pub masks: &'a [f32],
    pub aware: f32,
    pub seg: f32,
}

/// One adapter's weight gradients, PyTorch layout.
pub struct AdapterGrads {
    pub fc1: Vec<f32>,
    pub fc2: Vec<f32>,
}

/// One tap's gradients.
pub struct TapGrads {
    pub normal: AdapterGrads,
    /// The anomaly adapter's and the routing weights' `[B, 2]` (dual variants).
    pub anomaly: Option<(AdapterGrads, Vec<f32>)>,
    /// `[B, D]`, of the fused normalised CLS.
    pub cls: Vec<f32>,
}

/// The map losses (unweighted) and the objective's gradients.
pub struct Grads {
    pub aware: f32,
    pub seg: f32,
    /// `[B, 2, D]`, of `T~` transposed.
    pub text: Vec<f32>,
    pub taps: Vec<TapGrads>,
}

/// An adapter's activations: `h = leaky(x W1ᵀ)` `[B·N, b]`, `y = leaky(h W2ᵀ)` `[B·N, D]`.
struct Act {
    h: Buf,
    y: Buf,
}

/// What one tap's forward keeps for the backward.
struct TapState {
    normal: Act,
    anomaly: Option<Act>,
    /// Normalised fused patches `p'` `[B·N, D]`.
    p: Buf,
    /// Row norms before the clamp `[B·N]`.
    norm: Vec<f32>,
    /// Upsampled cross-modal logit difference and AACM logit, `[B, S, S]` each.
    uq: Buf,
    ug: Buf,
}

/// `y = leaky(leaky(x W1ᵀ) W2ᵀ)` with the activations kept.
fn adapter(isa: Isa, sh: &Shapes, x: &[f32], w: AdapterW) -> Act {
    let (m, d, b) = (sh.rows(), sh.dim, sh.bottleneck);
    let mut h = Buf::scratch(m * b);
    let ep = Epilogue::Leaky(SLOPE);
    gemm_view(
        isa,
        m,
        d,
        b,
        View::rows(x, d),
        View::transposed(w.fc1, d),
        &mut h,
        b,
        ep,
    );
    let mut y = Buf::scratch(m * d);
    gemm_view(
        isa,
        m,
        b,
        d,
        View::rows(&h, b),
        View::transposed(w.fc2, b),
        &mut y,
        d,
        ep,
    );
    Act { h, y }
}

/// `Σ a·b` with 16 partial sums (vectorisable; a fixed order).
#[inline(always)]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 16];
    let (ca, cb) = (a.chunks_exact(16), b.chunks_exact(16));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for k in 0..16 {
            acc[k] += x[k] * y[k];
        }
    }
    let mut tail = 0f32;
    for (x, y) in ra.iter().zip(rb) {
        tail += x * y;
    }
    sum16(acc) + tail
}

/// A fixed reduction tree over 16 lanes.
#[inline(always)]
fn sum16(a: [f32; 16]) -> f32 {
    let mut v = a;
    for half in [8, 4, 2, 1] {
        for k in 0..half {
            v[k] += v[k + half];
        }
    }
    v[0]
}

#[inline(always)]
fn leaky_grad(y: f32) -> f32 {
    if y > 0.0 { 1.0 } else { SLOPE }
}

/// Bilinear `align_corners=True` upsampling of an `h x w` grid to `S x S` and its transpose.
struct Bilinear {
    h: usize,
    w: usize,
    s: usize,
    ys: Vec<(usize, usize, f32)>,
    xs: Vec<(usize, usize, f32)>,
}

impl Bilinear {
    fn new(grid: [usize; 2], s: usize) -> Self {
        Self {
            h: grid[0],
            w: grid[1],
            s,
            ys: blend_weights(grid[0], s),
            xs: blend_weights(grid[1], s),
        }
    }

    /// `g` `[h·w]` → `out` `[S·S]`: along x, then along y (the matrix form's order).
    #[inline(always)]
    fn up(&self, g: &[f32], out: &mut [f32]) {
        let s = self.s;
        let mut tmp = vec![0f32; self.h * s];
        for (i, row) in tmp.chunks_exact_mut(s).enumerate() {
            let src = &g[i * self.w..(i + 1) * self.w];
            for (o, &(j0, j1, f)) in row.iter_mut().zip(&self.xs) {
                *o = (1.0 - f) * src[j0] + f * src[j1];
            }
        }
        for (row, &(i0, i1, f)) in out.chunks_exact_mut(s).zip(&self.ys) {
            let (a, b) = (&tmp[i0 * s..(i0 + 1) * s], &tmp[i1 * s..(i1 + 1) * s]);
            for ((o, &x0), &x1) in row.iter_mut().zip(a).zip(b) {
                *o = (1.0 - f) * x0 + f * x1;
            }
        }
    }

    /// The transpose of [`Bilinear::up`]: `d` `[S·S]` → `out` `[h·w]`.
    #[inline(always)]
    fn up_t(&self, d: &[f32], out: &mut [f32]) {
        let s = self.s;
        let mut tmp = vec![0f32; self.h * s];
        for (row, &(i0, i1, f)) in d.chunks_exact(s).zip(&self.ys) {
            for (k, &v) in row.iter().enumerate() {
                tmp[i0 * s + k] += (1.0 - f) * v;
            }
            for (k, &v) in row.iter().enumerate() {
                tmp[i1 * s + k] += f * v;
            }
        }
        out.fill(0.0);
        for (i, row) in tmp.chunks_exact(s).enumerate() {
            let dst = &mut out[i * self.w..(i + 1) * self.w];
            for (&v, &(j0, j1, f)) in row.iter().zip(&self.xs) {
                dst[j0] += (1.0 - f) * v;
                dst[j1] += f * v;
            }
        }
    }
}

/// Rows per task in the backward's row pass: a divisor of `n`, so that no task spans two images
/// (each task's partial sums belong to one image).
fn row_chunk(n: usize) -> usize {
    (1..=ROWS.min(n))
        .rev()
        .find(|&c| n.is_multiple_of(c))
        .unwrap_or(1)
}

/// `T₁ − T₀` per image, `[B, D]`.
fn text_diff(text: &[f32], d: usize) -> Vec<f32> {
    text.chunks_exact(2 * d)
        .flat_map(|t| t[d..].iter().zip(&t[..d]).map(|(a, n)| a - n))
        .collect()
}

/// One tap's forward: adapters, fusion, normalisation, the two grid logits, upsampled.
fn tap_forward(isa: Isa, sh: &Shapes, tap: &TapIn, dt: &[f32], up: &Bilinear) -> TapState {
    let (n, d) = (sh.patches(), sh.dim);
    let x = tap.patches;
    let normal = adapter(isa, sh, x, tap.normal);
    let anomaly = tap.anomaly.map(|(w, _)| adapter(isa, sh, x, w));
    let mut p = Buf::scratch(sh.rows() * d);
    let mut norm = vec![0f32; sh.rows()];
    let mut q = vec![0f32; sh.rows()];
    let mut g = vec![0f32; sh.rows()];
    p.par_chunks_mut(ROWS * d)
        .zip(norm.par_chunks_mut(ROWS))
        .zip(q.par_chunks_mut(ROWS))
        .zip(g.par_chunks_mut(ROWS))
        .enumerate()
        .for_each(|(c, (((pc, nc), qc), gc))| {
            on_isa(
                isa,
                #[inline(always)]
                || {
                    for (r, pr) in pc.chunks_exact_mut(d).enumerate() {
                        let row = c * ROWS + r;
                        let i = row / n;
                        let at = row * d..(row + 1) * d;
                        let (xr, yn) = (&x[at.clone()], &normal.y[at.clone()]);
                        match (&anomaly, tap.anomaly) {
                            (Some(a), Some((_, w))) => {
                                let (wn, wa) = (w[2 * i], w[2 * i + 1]);
                                let ya = &a.y[at];
                                for k in 0..d {
                                    pr[k] = wn * yn[k] + wa * ya[k] + xr[k];
                                }
                            }
                            _ => {
                                for k in 0..d {
                                    pr[k] = yn[k] + xr[k];
                                }
                            }
                        }
                        let nr = dot(pr, pr).sqrt();
                        let inv = nr.max(1e-12);
                        for v in pr.iter_mut() {
                            *v /= inv;
                        }
                        nc[r] = nr;
                        qc[r] = 100.0 * dot(pr, &dt[i * d..(i + 1) * d]);
                        gc[r] = 10.0 * dot(pr, &tap.cls[i * d..(i + 1) * d]);
                    }
                },
            )
        });
    let px = sh.pixels();
    let mut uq = Buf::scratch(sh.batch * px);
    let mut ug = Buf::scratch(sh.batch * px);
    uq.par_chunks_mut(px)
        .zip(ug.par_chunks_mut(px))
        .enumerate()
        .for_each(|(i, (oq, og))| {
            on_isa(isa, || {
                up.up(&q[i * n..(i + 1) * n], oq);
                up.up(&g[i * n..(i + 1) * n], og);
            })
        });
    TapState {
        normal,
        anomaly,
        p,
        norm,
        uq,
        ug,
    }
}

/// Adds one tap's probabilities to the sums `[B, 2, S, S]`.
fn accumulate(isa: Isa, sh: &Shapes, st: &TapState, maps: &mut [f32], aacm: &mut [f32]) {
    let px = sh.pixels();
    for (i, (m, a)) in maps
        .chunks_exact_mut(2 * px)
        .zip(aacm.chunks_exact_mut(2 * px))
        .enumerate()
    {
        let (m0, m1) = m.split_at_mut(px);
        let (a0, a1) = a.split_at_mut(px);
        let (uq, ug) = (&st.uq[i * px..(i + 1) * px], &st.ug[i * px..(i + 1) * px]);
        m0.par_chunks_mut(PIXELS)
            .zip(m1.par_chunks_mut(PIXELS))
            .zip(a0.par_chunks_mut(PIXELS))
            .zip(a1.par_chunks_mut(PIXELS))
            .enumerate()
            .for_each(|(c, (((m0, m1), a0), a1))| {
                let r = c * PIXELS..c * PIXELS + m0.len();
                let mut s = Sigmoids::new(m0.len());
                s.of(isa, &uq[r.clone()]);
                on_isa(isa, || {
                    for k in 0..m0.len() {
                        m1[k] += s.pos[k];
                        m0[k] += s.neg[k];
                    }
                });
                s.of(isa, &ug[r]);
                on_isa(isa, || {
                    for k in 0..m0.len() {
                        a1[k] += s.pos[k];
                        a0[k] += 1.0 - s.pos[k];
                    }
                });
            });
    }
}

/// `σ(u)` and `σ(−u)` of a chunk of pixels ([`math::sigmoid_pairs`]).
struct Sigmoids {
    pos: [f32; PIXELS],
    neg: [f32; PIXELS],
    len: usize,
}

impl Sigmoids {
    fn new(len: usize) -> Box<Self> {
        Box::new(Self {
            pos: [0.0; PIXELS],
            neg: [0.0; PIXELS],
            len,
        })
    }

    fn of(&mut self, isa: Isa, u: &[f32]) {
        let n = self.len;
        math::sigmoid_pairs(isa, u, &mut self.pos[..n], &mut self.neg[..n]);
    }
}

/// Host inputs checked against the shapes.
fn check(sh: &Shapes, heads: &Heads) {
    let (b, d) = (sh.batch, sh.dim);
    assert_eq!(heads.text.len(), b * 2 * d, "fused: text");
    for t in &heads.taps {
        assert_eq!(t.patches.len(), sh.rows() * d, "fused: patches");
        assert_eq!(t.cls.len(), b * d, "fused: cls");
        if let Some((_, w)) = t.anomaly {
            assert_eq!(w.len(), b * 2, "fused: routing weights");
        }
    }
}

/// The tap-averaged maps.
fn forward_states(
    isa: Isa,
    sh: &Shapes,
    heads: &Heads,
    keep: bool,
) -> (Maps, Vec<TapState>, Vec<f32>) {
    check(sh, heads);
    let dt = text_diff(heads.text, sh.dim);
    let up = Bilinear::new(sh.grid, sh.map);
    let len = sh.batch * 2 * sh.pixels();
    let (mut maps, mut aacm) = (vec![0f32; len], vec![0f32; len]);
    let mut states = Vec::new();
    for tap in &heads.taps {
        let st = tap_forward(isa, sh, tap, &dt, &up);
        accumulate(isa, sh, &st, &mut maps, &mut aacm);
        if keep {
            states.push(st);
        }
    }
    let l = heads.taps.len() as f32;
    maps.par_iter_mut()
        .chain(aacm.par_iter_mut())
        .for_each(|v| *v /= l);
    (Maps { maps, aacm }, states, dt)
}

/// Forward only (evaluation).
pub fn forward(isa: Isa, sh: &Shapes, heads: &Heads) -> Maps {
    forward_states(isa, sh, heads, false).0
}

/// Focal + dice of one tap-averaged map against the masks, and the objective's gradient with
/// respect to its anomalous channel minus its normal one (`∂/∂p₁ − ∂/∂p₀`, all that the
/// two-sided channels need), `[B, S·S]`, for a loss weight `weight`.
fn map_loss(sh: &Shapes, prob: &[f32], masks: &[f32], weight: f32) -> (f32, Buf) {
    let (b, px) = (sh.batch, sh.pixels());
    let on_hi = (1.0f64 - SMOOTH as f64) as f32;
    let on = |m: bool| if m { on_hi } else { SMOOTH };
    // Per image: Σ (1-pt)² ln pt, Σ p₁m, Σ p₁, Σ m, in pixel chunks (chunk order fixed);
    // ln pt is kept for the gradient's pass.
    let mut ln_pt = Buf::scratch(b * px);
    let sums: Vec<[f64; 4]> = ln_pt
        .par_chunks_mut(px)
        .enumerate()
        .flat_map(|(i, img)| {
            img.par_chunks_mut(PIXELS)
                .enumerate()
                .map(move |(c, out)| (i, c, out))
        })
        .map(|(i, c, out)| {
            let r = c * PIXELS..c * PIXELS + out.len();
            let p0 = &prob[(2 * i) * px..(2 * i + 1) * px][r.clone()];
            let p1 = &prob[(2 * i + 1) * px..(2 * i + 2) * px][r.clone()];
            let m = &masks[i * px..(i + 1) * px][r];
            let mut s = [0f64; 4];
            for k in 0..out.len() {
                let on1 = m[k] > 0.5;
                let pt = on(!on1) * p0[k] + on(on1) * p1[k] + SMOOTH;
                let om = 1.0 - pt;
                out[k] = pt.ln();
                s[0] += (om * om * out[k]) as f64;
                let mk = if on1 { 1.0 } else { 0.0 };
                s[1] += (p1[k] * mk) as f64;
                s[2] += p1[k] as f64;
                s[3] += mk as f64;
            }
            s
        })
        .collect();
    let chunks = px.div_ceil(PIXELS);
    let per_image: Vec<[f64; 4]> = sums
        .chunks_exact(chunks)
        .map(|c| {
            c.iter().fold([0f64; 4], |mut a, s| {
                for k in 0..4 {
                    a[k] += s[k];
                }
                a
            })
        })
        .collect();
    let total = (b * px) as f64;
    let focal = -per_image.iter().map(|s| s[0]).sum::<f64>() / total;
    let dices: Vec<(f64, f64)> = per_image
        .iter()
        .map(|s| (2.0 * s[1] + 1.0, s[2] + s[3] + 1.0))
        .collect();
    let dice = 1.0 - dices.iter().map(|(n, d)| n / d).sum::<f64>() / b as f64;
    // Gradients.
    let wf = weight as f64 / total;
    let wd = weight as f64 / b as f64;
    let mut grad = Buf::scratch(b * px);
    grad.par_chunks_mut(px).enumerate().for_each(|(i, gi)| {
        let p0 = &prob[(2 * i) * px..(2 * i + 1) * px];
        let p1 = &prob[(2 * i + 1) * px..(2 * i + 2) * px];
        let m = &masks[i * px..(i + 1) * px];
        let ln_pt = &ln_pt[i * px..(i + 1) * px];
        let (num, den) = dices[i];
        let (d_on, d_off) = (
            (-wd * (2.0 / den - num / (den * den))) as f32,
            (-wd * (-num / (den * den))) as f32,
        );
        for k in 0..px {
            let on1 = m[k] > 0.5;
            let (o0, o1) = (on(!on1), on(on1));
            let pt = o0 * p0[k] + o1 * p1[k] + SMOOTH;
            let om = 1.0 - pt;
            let dpt = (wf as f32) * (2.0 * om * ln_pt[k] - om * om / pt);
            gi[k] = dpt * (o1 - o0) + if on1 { d_on } else { d_off };
        }
    });
    ((focal + dice) as f32, grad)
}

/// One tap's backward. `dq_up`, `dg_up`: the objective's gradient with respect to the tap's
/// upsampled logits `[B, S·S]`. Adds to `dtext`.
fn tap_backward(
    cx: &Ctx,
    tap: &TapIn,
    mut st: TapState,
    (dq_up, dg_up): (&[f32], &[f32]),
    dtext: &mut [f32],
) -> TapGrads {
    let (isa, sh, dt, up) = (cx.isa, cx.sh, cx.dt, cx.up);
    let (b, n, d, px) = (sh.batch, sh.patches(), sh.dim, sh.pixels());
    let mut dq = vec![0f32; sh.rows()];
    let mut dg = vec![0f32; sh.rows()];
    dq.par_chunks_mut(n)
        .zip(dg.par_chunks_mut(n))
        .enumerate()
        .for_each(|(i, (q, g))| {
            on_isa(isa, || {
                up.up_t(&dq_up[i * px..(i + 1) * px], q);
                up.up_t(&dg_up[i * px..(i + 1) * px], g);
            })
        });
    // Row pass: dP, the heads' vector gradients, the normalisation's backward (dU into p),
    // the routing weights' gradients, then dZ2 = w·dU⊙leaky'(y) into y.
    let dual = st.anomaly.is_some();
    let w = tap.anomaly.map(|(_, w)| w);
    let rows = row_chunk(n);
    let chunk = |c: usize| c * rows;
    let ya_ptr = st.anomaly.as_mut().map(|a| &mut a.y[..]);
    // Per chunk: [dΔT (D), dc (D), dwn, dwa] for the chunk's image.
    let partials: Vec<(usize, Vec<f32>)> = {
        let p_chunks = st.p.par_chunks_mut(rows * d);
        let yn_chunks = st.normal.y.par_chunks_mut(rows * d);
        let work = |(c, ((pc, ync), yac)): RowChunk| {
            on_isa(
                isa,
                #[inline(always)]
                || {
                    let mut acc = vec![0f32; 2 * d + 2];
                    let row0 = chunk(c);
                    let i = row0 / n;
                    let mut yac = yac;
                    let mut dp = vec![0f32; d];
                    for (r, pr) in pc.chunks_exact_mut(d).enumerate() {
                        let row = row0 + r;
                        debug_assert_eq!(row / n, i, "chunks stay inside one image");
                        let (gq, gg) = (100.0 * dq[row], 10.0 * dg[row]);
                        let dti = &dt[i * d..(i + 1) * d];
                        let ci = &tap.cls[i * d..(i + 1) * d];
                        for k in 0..d {
                            dp[k] = gq * dti[k] + gg * ci[k];
                            acc[k] += gq * pr[k];
                            acc[d + k] += gg * pr[k];
                        }
                        let nr = st.norm[row];
                        if nr > 1e-12 {
                            let s = dot(pr, &dp);
                            for k in 0..d {
                                pr[k] = (dp[k] - s * pr[k]) / nr;
                            }
                        } else {
                            for k in 0..d {
                                pr[k] = dp[k] / 1e-12;
                            }
                        }
                        let du = &*pr;
                        let yn = &mut ync[r * d..(r + 1) * d];
                        match (&mut yac, w) {
                            (Some(ya), Some(w)) => {
                                let ya = &mut ya[r * d..(r + 1) * d];
                                acc[2 * d] += dot(du, yn);
                                acc[2 * d + 1] += dot(du, ya);
                                let (wn, wa) = (w[2 * i], w[2 * i + 1]);
                                for k in 0..d {
                                    yn[k] = wn * du[k] * leaky_grad(yn[k]);
                                    ya[k] = wa * du[k] * leaky_grad(ya[k]);
                                }
                            }
                            _ => {
                                for k in 0..d {
                                    yn[k] = du[k] * leaky_grad(yn[k]);
                                }
                            }
                        }
                    }
                    (i, acc)
                },
            )
        };
        match ya_ptr {
            Some(ya) => p_chunks
                .zip(yn_chunks)
                .zip(ya.par_chunks_mut(rows * d).map(Some))
                .enumerate()
                .map(work)
                .collect(),
            None => p_chunks
                .zip(yn_chunks)
                .map(|x| (x, None))
                .enumerate()
                .map(work)
                .collect(),
        }
    };
    let mut dcls = vec![0f32; b * d];
    let mut dw = vec![0f32; b * 2];
    for (i, acc) in partials {
        let t = &mut dtext[i * 2 * d..(i + 1) * 2 * d];
        for k in 0..d {
            t[d + k] += acc[k];
            t[k] -= acc[k];
            dcls[i * d + k] += acc[d + k];
        }
        dw[2 * i] += acc[2 * d];
        dw[2 * i + 1] += acc[2 * d + 1];
    }
    let normal = adapter_backward(isa, sh, tap.patches, tap.normal, st.normal);
    let anomaly = match (st.anomaly, tap.anomaly) {
        (Some(act), Some((wts, _))) => Some((adapter_backward(isa, sh, tap.patches, wts, act), dw)),
        _ => None,
    };
    debug_assert_eq!(anomaly.is_some(), dual);
    TapGrads {
        normal,
        anomaly,
        cls: dcls,
    }
}

/// A task of the backward's row pass: its index, its rows of `p'` and of the adapters' outputs.
type RowChunk<'a> = (
    usize,
    ((&'a mut [f32], &'a mut [f32]), Option<&'a mut [f32]>),
);

/// What every tap's backward shares.
struct Ctx<'a> {
    isa: Isa,
    sh: &'a Shapes,
    /// `T₁ − T₀` per image `[B, D]`.
    dt: &'a [f32],
    up: &'a Bilinear,
}

/// Weight gradients of one adapter from `act.y` holding `dZ2` (the output's pre-activation
/// gradient): `dW2 = dZ2ᵀ h`, `dZ1 = (dZ2 W2) ⊙ leaky'(h)`, `dW1 = dZ1ᵀ x`.
fn adapter_backward(isa: Isa, sh: &Shapes, x: &[f32], w: AdapterW, act: Act) -> AdapterGrads {
    let (m, d, b) = (sh.rows(), sh.dim, sh.bottleneck);
    let dz2 = act.y;
    let mut fc2 = vec![0f32; d * b];
    gemm_view(
        isa,
        d,
        m,
        b,
        View::transposed(&dz2, d),
        View::rows(&act.h, b),
        &mut fc2,
        b,
        Epilogue::Store,
    );
    let mut dz1 = Buf::scratch(m * b);
    gemm_view(
        isa,
        m,
        d,
        b,
        View::rows(&dz2, d),
        View::rows(w.fc2, b),
        &mut dz1,
        b,
        Epilogue::Store,
    );
    drop(dz2);
    dz1.par_chunks_mut(ROWS * b)
        .zip(act.h.par_chunks(ROWS * b))
        .for_each(|(g, h)| {
            on_isa(isa, || {
                for (g, &h) in g.iter_mut().zip(h) {
                    *g *= leaky_grad(h);
                }
            })
        });
    let mut fc1 = vec![0f32; b * d];
    gemm_view(
        isa,
        b,
        m,
        d,
        View::transposed(&dz1, b),
        View::rows(x, d),
        &mut fc1,
        d,
        Epilogue::Store,
    );
    AdapterGrads { fc1, fc2 }
}

/// Forward, the two map losses and the objective's gradients.
pub fn train(isa: Isa, sh: &Shapes, heads: &Heads, targets: &Targets) -> (Maps, Grads) {
    let (maps, states, dt) = forward_states(isa, sh, heads, true);
    let px = sh.pixels();
    assert_eq!(targets.masks.len(), sh.batch * px, "fused: masks");
    let (seg, gm) = map_loss(sh, &maps.maps, targets.masks, targets.seg);
    let (aware, ga) = map_loss(sh, &maps.aacm, targets.masks, targets.aware);
    let l = heads.taps.len() as f32;
    let up = Bilinear::new(sh.grid, sh.map);
    let mut dtext = vec![0f32; heads.text.len()];
    let mut taps = Vec::with_capacity(states.len());
    for (tap, st) in heads.taps.iter().zip(states) {
        let mut dq_up = Buf::scratch(sh.batch * px);
        let mut dg_up = Buf::scratch(sh.batch * px);
        dq_up
            .par_chunks_mut(PIXELS)
            .zip(dg_up.par_chunks_mut(PIXELS))
            .enumerate()
            .for_each(|(c, (q, g))| {
                let o = c * PIXELS;
                let n = q.len();
                let mut s = Sigmoids::new(n);
                s.of(isa, &st.uq[o..o + n]);
                on_isa(isa, || {
                    for k in 0..n {
                        q[k] = gm[o + k] / l * (s.pos[k] * s.neg[k]);
                    }
                });
                s.of(isa, &st.ug[o..o + n]);
                on_isa(isa, || {
                    for k in 0..n {
                        g[k] = ga[o + k] / l * (s.pos[k] * s.neg[k]);
                    }
                });
            });
        let cx = Ctx {
            isa,
            sh,
            dt: &dt,
            up: &up,
        };
        taps.push(tap_backward(&cx, tap, st, (&dq_up, &dg_up), &mut dtext));
    }
    (
        maps,
        Grads {
            aware,
            seg,
            text: dtext,
            taps,
        },
    )
}
