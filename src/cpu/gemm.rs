//! Blocked, threaded `out = epilogue(A·B)` over the micro-kernels of [`super::kernel`].
//!
//! `A` `[M, K]` (activations) is packed once per product into `MR`-row panels (in parallel).
//! `B` `[K, N]` comes two ways, read by the same tiles in the same order (so with the same
//! bits): a fresh matrix ([`gemm`]) is packed per `KC x NC` block (one 64-column panel) in a
//! per-thread buffer, reused across calls; a matrix used many times (a weight, PyTorch
//! `weight.T`) is packed once into a [`PackedB`] holding every block ([`gemm_packed`]), which
//! the backbone does once per model (`super::packed`). Threads take column blocks (each packs
//! or reads its own B and streams all of packed A), so they never write the same output
//! element and no synchronisation is needed inside a product.

use std::cell::{Cell, RefCell};

use rayon::prelude::*;

use super::isa::Isa;
use super::kernel::{self, Epilogue, MR, NR, Tile};

/// k block. At ViT-L's K (1024, 4096) a tile runs the whole sum in registers: no partial
/// sums go through memory between k blocks, the epilogue runs once. The tile's A micro-panel
/// (`MR x K`, packed contiguous) streams from L3 once per tile; its B panel (`K x NR`, up to
/// 1 MiB) stays in L2 across all row tiles. (KC = 256 with partial sums measured ~5 % slower.)
pub const KC: usize = 4096;
/// Column block per task: one packed panel, so threads balance over `N / NR` tasks.
pub const NC: usize = NR;

/// 64-byte aligned, growable f32 buffer (the AVX-512 kernel loads B with aligned loads).
#[derive(Default)]
pub struct AlignedBuf(Vec<Lanes>);

#[derive(Clone, Copy, Default)]
#[repr(C, align(64))]
struct Lanes([f32; 16]);

impl AlignedBuf {
    /// Bytes held (the allocation, whatever `get` was last asked for).
    pub fn bytes(&self) -> usize {
        self.0.len() * std::mem::size_of::<Lanes>()
    }

    /// At least `len` floats (contents unspecified).
    pub fn get(&mut self, len: usize) -> &mut [f32] {
        let chunks = len.div_ceil(16);
        if self.0.len() < chunks {
            self.0.resize(chunks, Lanes::default());
        }
        // SAFETY: `Lanes` is `repr(C)` over 16 f32 with no padding; `chunks * 16 >= len`.
        unsafe { std::slice::from_raw_parts_mut(self.0.as_mut_ptr().cast::<f32>(), len) }
    }
}

/// Raw output pointer shared by tasks that write disjoint elements.
#[derive(Clone, Copy)]
pub struct SharedMut(*mut f32);
// SAFETY: every user writes a disjoint set of elements (documented at each use).
unsafe impl Send for SharedMut {}
unsafe impl Sync for SharedMut {}

impl SharedMut {
    pub fn new(s: &mut [f32]) -> Self {
        Self(s.as_mut_ptr())
    }

    /// The pointer (a method, so closures capture the whole `Sync` wrapper).
    pub fn ptr(self) -> *mut f32 {
        self.0
    }
}

thread_local! {
    /// Per-thread packed B block and partial sums, kept between calls (no page faults per call).
    static SCRATCH: RefCell<(AlignedBuf, AlignedBuf)> = RefCell::default();
    /// The calling thread's packed A, kept between calls.
    static APACK: Cell<AlignedBuf> = Cell::default();
}

/// A matrix operand read in place with two strides: element `(i, j)` at `data[i·rs + j·cs]`.
/// A row-major matrix with row stride `ld` is [`View::rows`]; the transpose of one is
/// [`View::transposed`] (the backward products `dW = dYᵀ·X` read `dY` that way, with no copy).
#[derive(Clone, Copy, Debug)]
pub struct View<'a> {
    pub data: &'a [f32],
    pub rs: usize,
    pub cs: usize,
}

impl<'a> View<'a> {
    /// Row-major, row stride `ld`.
    pub fn rows(data: &'a [f32], ld: usize) -> Self {
        Self {
            data,
            rs: ld,
            cs: 1,
        }
    }

    /// The transpose of a row-major matrix with row stride `ld`: `(i, j)` is its `(j, i)`.
    pub fn transposed(data: &'a [f32], ld: usize) -> Self {
        Self {
            data,
            rs: 1,
            cs: ld,
        }
    }

    /// Whether `rows x cols` elements lie inside `data`.
    fn covers(&self, rows: usize, cols: usize) -> bool {
        rows == 0 || cols == 0 || self.data.len() > (rows - 1) * self.rs + (cols - 1) * self.cs
    }
}

/// Packs `a` (`m x k`) as `KC` blocks of `MR`-row panels `[kc][MR]`: block `k0` starts at
/// `k0·mpad`, its panel `i0` at `i0·kc` further; rows past `m` are zero. One broadcast stream
/// per tile instead of six rows a multiple of 4 KiB apart (L1 set conflicts).
pub fn pack_a(a: View, m: usize, k: usize, dst: &mut [f32]) {
    /// Panels per task: 8 panels are 48 rows, three whole cache lines of a transposed A's
    /// k step, so a task reads whole lines instead of a 24-byte piece of each.
    const GROUP: usize = 8;
    let mpad = m.div_ceil(MR) * MR;
    for (kb, block) in dst[..k * mpad].chunks_mut(KC * mpad).enumerate() {
        let k0 = kb * KC;
        let kc = (k - k0).min(KC);
        block
            .par_chunks_mut(GROUP * kc * MR)
            .enumerate()
            .for_each(|(g, panels)| {
                let first = g * GROUP;
                let rows_of = |ip: usize| m.saturating_sub(ip * MR).min(MR);
                if a.cs == 1 {
                    // Row-major: each row's k run is contiguous.
                    for (p, panel) in panels.chunks_exact_mut(kc * MR).enumerate() {
                        let ip = first + p;
                        for r in 0..rows_of(ip) {
                            let at = (ip * MR + r) * a.rs + k0;
                            for (kk, &v) in a.data[at..at + kc].iter().enumerate() {
                                panel[kk * MR + r] = v;
                            }
                        }
                    }
                } else {
                    // Transposed: a k step's rows are contiguous; every panel of the task per
                    // k step.
                    let n_panels = panels.len() / (kc * MR);
                    for kk in 0..kc {
                        let base = (k0 + kk) * a.cs;
                        for p in 0..n_panels {
                            let ip = first + p;
                            let at = base + ip * MR * a.rs;
                            let panel = &mut panels[p * kc * MR..(p + 1) * kc * MR];
                            for r in 0..rows_of(ip) {
                                panel[kk * MR + r] = a.data[at + r * a.rs];
                            }
                        }
                    }
                }
                for (p, panel) in panels.chunks_exact_mut(kc * MR).enumerate() {
                    for r in rows_of(first + p)..MR {
                        for kk in 0..kc {
                            panel[kk * MR + r] = 0.0;
                        }
                    }
                }
            });
    }
}

/// Packs rows `k0..k0+kc`, columns `j0..j0+nc` of `b` (`n` columns) into `ceil(nc/NR)` panels
/// `[kc][NR]`, zero-filling columns past `n`.
pub fn pack_b(b: View, n: usize, k0: usize, kc: usize, j0: usize, nc: usize, dst: &mut [f32]) {
    let panels = nc.div_ceil(NR);
    for p in 0..panels {
        let c0 = j0 + p * NR;
        let w = n.saturating_sub(c0).min(NR);
        let panel = &mut dst[p * kc * NR..(p + 1) * kc * NR];
        if b.rs == 1 && b.cs != 1 {
            // A transposed row-major matrix: each column is a contiguous run of k. Moved in
            // 16 x 16 tiles: 16 runs of 16 read, 16 panel rows of 16 written, all in L1.
            const T: usize = 16;
            for j0 in (0..NR).step_by(T) {
                for kk0 in (0..kc).step_by(T) {
                    let kn = (kc - kk0).min(T);
                    for j in j0..j0 + T {
                        if j < w {
                            let at = (c0 + j) * b.cs + k0 + kk0;
                            for (t, &v) in b.data[at..at + kn].iter().enumerate() {
                                panel[(kk0 + t) * NR + j] = v;
                            }
                        } else {
                            for t in 0..kn {
                                panel[(kk0 + t) * NR + j] = 0.0;
                            }
                        }
                    }
                }
            }
            continue;
        }
        for (kk, row) in panel.chunks_exact_mut(NR).enumerate() {
            let src = (k0 + kk) * b.rs + c0 * b.cs;
            if b.cs == 1 {
                row[..w].copy_from_slice(&b.data[src..src + w]);
            } else {
                for (j, v) in row[..w].iter_mut().enumerate() {
                    *v = b.data[src + j * b.cs];
                }
            }
            row[w..].fill(0.0);
        }
    }
}

/// A `[K, N]` row-major matrix packed once, in exactly the panels [`gemm`] packs per call:
/// for each k block (`KC` rows, `kc` in the last) and each column block (`NC` columns),
/// `ceil(nc/NR)` panels `[kc][NR]` ([`pack_b`]), columns past `n` zero. Block `(k0, j0)` starts
/// at `k0·npad + j0·kc` floats (`npad` = `n` rounded up to `NR`), a multiple of `NR` floats
/// into a 64-byte aligned buffer, as the AVX-512 tile's aligned loads need.
pub struct PackedB {
    k: usize,
    n: usize,
    data: AlignedBuf,
}

impl PackedB {
    /// Packs `b` (`k x n`, row-major), one column block per rayon task.
    ///
    /// # Panics
    /// If `b` holds fewer than `k·n` floats.
    pub fn new(b: &[f32], k: usize, n: usize) -> Self {
        assert!(
            b.len() >= k * n,
            "PackedB: B holds {} < k x n = {}",
            b.len(),
            k * n
        );
        let npad = n.div_ceil(NR) * NR;
        let mut data = AlignedBuf::default();
        let dst = data.get(k * npad);
        if !dst.is_empty() {
            for (kb, block) in dst.chunks_mut(KC * npad).enumerate() {
                let k0 = kb * KC;
                let kc = (k - k0).min(KC);
                block
                    .par_chunks_mut(NC * kc)
                    .enumerate()
                    .for_each(|(jb, cols)| {
                        let j0 = jb * NC;
                        pack_b(View::rows(b, n), n, k0, kc, j0, (n - j0).min(NC), cols);
                    });
            }
        }
        Self { k, n, data }
    }

    /// Rows (the product's `k`).
    pub fn k(&self) -> usize {
        self.k
    }

    /// Columns (the product's `n`).
    pub fn n(&self) -> usize {
        self.n
    }

    /// Bytes of the packed copy (`k x n` rounded up to whole panels).
    pub fn bytes(&self) -> usize {
        self.data.bytes()
    }

    /// The panels of k block `k0` (`kc` rows), column block `j0`: `ceil(nc/NR)·kc·NR` floats.
    fn block(&self, k0: usize, kc: usize, j0: usize) -> *const f32 {
        let npad = self.n.div_ceil(NR) * NR;
        debug_assert!(k0 + kc <= self.k && j0 < npad.max(1));
        // SAFETY: `k0·npad + j0·kc` lies inside (or at the end of, when `kc` = 0) the
        // `k·npad` floats that `new` allocated.
        unsafe { self.data.0.as_ptr().cast::<f32>().add(k0 * npad + j0 * kc) }
    }
}

/// Where a product's B comes from.
#[derive(Clone, Copy)]
enum Bsrc<'a> {
    /// `[k, n]` read through a view, packed block by block in each thread's scratch.
    Fresh(View<'a>),
    /// Packed once.
    Packed(&'a PackedB),
}

/// `out[i, j] = epilogue(Σ_k a[i, k]·b[k, j])` for `i < m`, `j < n`, on the rayon pool.
///
/// `a`: `[m, k]`, row stride `lda`; `b`: `[k, n]` row-major; `out`: `[m, n]`, row stride `ldo`
/// (read too by [`Epilogue::BiasScaleAdd`]). The sum is one fused multiply-add per k in order,
/// so every `isa` gives the same bits. For a B used many times, [`gemm_packed`] gives the
/// same bits without packing it again.
///
/// # Panics
/// If this CPU cannot run `isa` ([`Isa::assert_supported`]), or a slice is shorter than the
/// product needs.
#[allow(clippy::too_many_arguments)]
pub fn gemm(
    isa: Isa,
    m: usize,
    k: usize,
    n: usize,
    a: &[f32],
    lda: usize,
    b: &[f32],
    out: &mut [f32],
    ldo: usize,
    epilogue: Epilogue,
) {
    assert!(lda >= k, "gemm: stride {lda} below k={k}");
    gemm_view(
        isa,
        m,
        k,
        n,
        View::rows(a, lda),
        View::rows(b, n),
        out,
        ldo,
        epilogue,
    );
}

/// [`gemm`] with B packed beforehand (`k` and `n` are `b`'s): the same tiles read the same
/// panels in the same order, so the result is the same to the bit.
///
/// # Panics
/// As [`gemm`].
#[allow(clippy::too_many_arguments)]
pub fn gemm_packed(
    isa: Isa,
    m: usize,
    a: &[f32],
    lda: usize,
    b: &PackedB,
    out: &mut [f32],
    ldo: usize,
    epilogue: Epilogue,
) {
    assert!(lda >= b.k, "gemm: stride {lda} below k={}", b.k);
    gemm_from(
        isa,
        m,
        b.k,
        b.n,
        View::rows(a, lda),
        Bsrc::Packed(b),
        out,
        ldo,
        epilogue,
    );
}

/// [`gemm`] with both operands read through [`View`]s (transposed or strided, in place).
///
/// # Panics
/// As [`gemm`].
#[allow(clippy::too_many_arguments)]
pub fn gemm_view(
    isa: Isa,
    m: usize,
    k: usize,
    n: usize,
    a: View,
    b: View,
    out: &mut [f32],
    ldo: usize,
    epilogue: Epilogue,
) {
    assert!(b.covers(k, n), "gemm: B holds {} < k x n", b.data.len());
    gemm_from(isa, m, k, n, a, Bsrc::Fresh(b), out, ldo, epilogue);
}

#[allow(clippy::too_many_arguments)]
fn gemm_from(
    isa: Isa,
    m: usize,
    k: usize,
    n: usize,
    a: View,
    b: Bsrc,
    out: &mut [f32],
    ldo: usize,
    epilogue: Epilogue,
) {
    isa.assert_supported();
    if m == 0 || n == 0 {
        return;
    }
    assert!(ldo >= n, "gemm: stride {ldo} below n={n}");
    assert!(a.covers(m, k), "gemm: A holds {} < m x k", a.data.len());
    assert!(
        out.len() >= (m - 1) * ldo + n,
        "gemm: out holds {} < m x n",
        out.len()
    );
    check_epilogue(&epilogue, m, n);
    // Taken out of the thread-local for the call (a nested call on this thread, e.g. from a
    // rayon task that this thread steals while waiting, gets a fresh one instead of a panic).
    let mut abuf = APACK.take();
    let mpad = m.div_ceil(MR) * MR;
    let ap = abuf.get(k.max(1) * mpad);
    pack_a(a, m, k, ap);
    let ap = &*ap;
    let out = SharedMut::new(out);
    let blocks = n.div_ceil(NC);
    let kblocks = k.div_ceil(KC).max(1);
    (0..blocks).into_par_iter().for_each(|jb| {
        let j0 = jb * NC;
        let nc = (n - j0).min(NC);
        let panels = nc.div_ceil(NR);
        SCRATCH.with_borrow_mut(|(bbuf, pbuf)| {
            let ldp = panels * NR;
            let part = if kblocks > 1 {
                pbuf.get(m * ldp).as_mut_ptr()
            } else {
                std::ptr::null_mut()
            };
            for kb in 0..kblocks {
                let k0 = kb * KC;
                let kc = (k - k0).min(KC);
                // This block's panels `[kc][NR]`, 64-byte aligned either way.
                let bp: *const f32 = match b {
                    Bsrc::Fresh(b) => {
                        let bp = bbuf.get(panels * kc * NR);
                        pack_b(b, n, k0, kc, j0, nc, bp);
                        bp.as_ptr()
                    }
                    Bsrc::Packed(p) => p.block(k0, kc, j0),
                };
                for i0 in (0..m).step_by(MR) {
                    let rows = (m - i0).min(MR);
                    for p in 0..panels {
                        let c0 = j0 + p * NR;
                        let t = Tile {
                            kc,
                            // SAFETY (all offsets): within the extents asserted above;
                            // packed A block (k0, i0) starts at k0·mpad + i0·kc.
                            a: unsafe { ap.as_ptr().add(k0 * mpad + i0 * kc) },
                            lda: 1,
                            ka: MR,
                            b: unsafe { bp.add(p * kc * NR) },
                            part: if part.is_null() {
                                part
                            } else {
                                unsafe { part.add(i0 * ldp + p * NR) }
                            },
                            ldp,
                            first: kb == 0,
                            last: kb + 1 == kblocks,
                            // Column blocks are disjoint across tasks: no two tasks write one element.
                            out: unsafe { out.ptr().add(i0 * ldo + c0) },
                            ldo,
                            ncols: (n - c0).min(NR),
                            epilogue,
                            row0: i0,
                            col0: c0,
                        };
                        // SAFETY: the tile's extents lie inside the asserted buffers; `bp`
                        // points at `panels·kc·NR` floats (an `AlignedBuf` or a `PackedB`
                        // block) at a multiple of NR floats (64-byte aligned).
                        unsafe { kernel::tile(isa, rows, &t) };
                    }
                }
            }
        });
    });
    APACK.set(abuf);
}

/// The epilogue's vectors cover the product (checked once so the kernels can index freely).
pub fn check_epilogue(e: &Epilogue, m: usize, n: usize) {
    let cols =
        |v: &[f32], what: &str| assert!(v.len() >= n, "gemm: {what} has {} < {n} columns", v.len());
    match *e {
        Epilogue::Store | Epilogue::Leaky(_) => {}
        Epilogue::Bias(b) | Epilogue::BiasGelu(b) => cols(b, "bias"),
        Epilogue::BiasScaleAdd { bias, gamma } => {
            cols(bias, "bias");
            cols(gamma, "gamma");
        }
        Epilogue::RowScale(s) => {
            assert!(s.len() >= m, "gemm: row scale has {} < {m} rows", s.len())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::math;

    /// Every epilogue, on the given vectors.
    fn epilogues<'a>(bias: &'a [f32], gamma: &'a [f32], rs: &'a [f32]) -> [Epilogue<'a>; 6] {
        [
            Epilogue::Store,
            Epilogue::Bias(bias),
            Epilogue::BiasGelu(bias),
            Epilogue::BiasScaleAdd { bias, gamma },
            Epilogue::RowScale(rs),
            Epilogue::Leaky(0.01),
        ]
    }

    fn seq(len: usize, seed: u32) -> Vec<f32> {
        let mut s = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
        (0..len)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 17;
                s ^= s << 5;
                (s as f32 / u32::MAX as f32) * 2.0 - 1.0
            })
            .collect()
    }

    /// f64 reference of every epilogue, against every ISA, on shapes with ragged edges in m, n
    /// and k (k crosses a KC boundary so the partial-sum path runs).
    #[test]
    fn every_isa_and_epilogue_matches_f64() {
        for &(m, k, n) in &[
            (1, 1, 1),
            (7, 3, 65),
            (13, KC + 37, 2 * NC + 5),
            (6, 2 * KC, NR),
        ] {
            let lda = k + 3;
            let a = seq(m * lda, 1);
            let b = seq(k * n, 2);
            let bias = seq(n, 3);
            let gamma = seq(n, 4);
            let rs = seq(m, 5);
            let x0 = seq(m * n, 6);
            let dot = |i: usize, j: usize| {
                (0..k)
                    .map(|kk| a[i * lda + kk] as f64 * b[kk * n + j] as f64)
                    .sum::<f64>()
            };
            type Want<'a> = Box<dyn Fn(usize, usize) -> f64 + 'a>;
            let cases: Vec<(Epilogue, Want)> = vec![
                (Epilogue::Store, Box::new(dot)),
                (
                    Epilogue::Bias(&bias),
                    Box::new(|i, j| dot(i, j) + bias[j] as f64),
                ),
                (
                    Epilogue::BiasGelu(&bias),
                    Box::new(|i, j| math::gelu((dot(i, j) + bias[j] as f64) as f32) as f64),
                ),
                (
                    Epilogue::BiasScaleAdd {
                        bias: &bias,
                        gamma: &gamma,
                    },
                    Box::new(|i, j| {
                        x0[i * n + j] as f64 + gamma[j] as f64 * (dot(i, j) + bias[j] as f64)
                    }),
                ),
                (
                    Epilogue::RowScale(&rs),
                    Box::new(|i, j| dot(i, j) * rs[i] as f64),
                ),
                (
                    Epilogue::Leaky(0.01),
                    Box::new(|i, j| {
                        let v = dot(i, j);
                        if v > 0.0 { v } else { 0.01 * v }
                    }),
                ),
            ];
            for isa in Isa::available() {
                for (e, want) in &cases {
                    let mut out = x0.clone();
                    gemm(isa, m, k, n, &a, lda, &b, &mut out, n, *e);
                    for i in 0..m {
                        for j in 0..n {
                            let (g, w) = (out[i * n + j] as f64, want(i, j));
                            let tol = 1e-5 * (1.0 + (k as f64).sqrt());
                            assert!(
                                (g - w).abs() <= tol,
                                "{isa:?} {e:?} m{m} k{k} n{n} [{i},{j}]: {g} vs {w}"
                            );
                        }
                    }
                }
            }
        }
    }

    /// The operands of an `m x k x n` product with every epilogue's inputs: A with row stride
    /// `k + 3`, then B, bias, gamma, row scales and the initial output, from seeds `seed`,
    /// `seed + 1`, ... in that order.
    struct Operands {
        lda: usize,
        a: Vec<f32>,
        b: Vec<f32>,
        bias: Vec<f32>,
        gamma: Vec<f32>,
        rs: Vec<f32>,
        x0: Vec<f32>,
    }

    impl Operands {
        fn new(m: usize, k: usize, n: usize, seed: u32) -> Self {
            let lda = k + 3;
            Self {
                lda,
                // Scaled so that the GELU sees every range of its erf (|x/√2| below 1, up to
                // 4, beyond).
                a: seq(m * lda, seed).iter().map(|v| v * 3.0).collect(),
                b: seq(k * n, seed + 1),
                bias: seq(n, seed + 2),
                gamma: seq(n, seed + 3),
                rs: seq(m, seed + 4),
                x0: seq(m * n, seed + 5),
            }
        }
    }

    /// Every ISA gives the same bits as the portable kernels, for every epilogue, on the shapes
    /// above (ragged edges in m, n and k; k across a KC boundary, so partial sums go through
    /// memory between k blocks).
    #[test]
    fn every_isa_computes_the_same_bits() {
        let isas = Isa::available();
        for &(m, k, n) in &[
            (1, 1, 1),
            (7, 3, 65),
            (13, KC + 37, 2 * NC + 5),
            (6, 2 * KC, NR),
        ] {
            let Operands {
                lda,
                a,
                b,
                bias,
                gamma,
                rs,
                x0,
            } = Operands::new(m, k, n, 1);
            for e in epilogues(&bias, &gamma, &rs) {
                let run = |isa| {
                    let mut out = x0.clone();
                    gemm(isa, m, k, n, &a, lda, &b, &mut out, n, e);
                    out
                };
                let want = run(Isa::Portable);
                for &isa in isas.iter().filter(|&&i| i != Isa::Portable) {
                    let got = run(isa);
                    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                        assert_eq!(
                            g.to_bits(),
                            w.to_bits(),
                            "{isa:?} {e:?} m{m} k{k} n{n} [{}, {}]: {g:e} vs portable {w:e}",
                            i / n,
                            i % n
                        );
                    }
                }
            }
        }
    }

    /// Transposed and strided views give the bits of the same product on copied row-major
    /// operands (packing only moves values; the sums are the same chains).
    #[test]
    fn views_read_the_same_product_as_copies() {
        for &(m, k, n) in &[(1, 1, 1), (7, 3, 65), (13, 70, 2 * NC + 5)] {
            // A stored transposed ([k, m], row stride m + 2), B as every other column of [k, 2n].
            let (lat, ldb) = (m + 2, 2 * n);
            let at = seq(k * lat, 7);
            let bw = seq(k * ldb, 8);
            let a: Vec<f32> = (0..m * k).map(|x| at[(x % k) * lat + x / k]).collect();
            let b: Vec<f32> = (0..k * n)
                .map(|x| bw[(x / n) * ldb + 2 * (x % n)])
                .collect();
            for isa in Isa::available() {
                let mut want = vec![0.0; m * n];
                gemm(isa, m, k, n, &a, k, &b, &mut want, n, Epilogue::Store);
                let mut got = vec![0.0; m * n];
                let bv = View {
                    data: &bw,
                    rs: ldb,
                    cs: 2,
                };
                let av = View::transposed(&at, lat);
                gemm_view(isa, m, k, n, av, bv, &mut got, n, Epilogue::Store);
                let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&got), bits(&want), "{isa:?} m{m} k{k} n{n}");
                // B stored transposed ([n, k], row stride k + 1): PyTorch-layout weights.
                let ldt = k + 1;
                let mut bt = vec![0f32; n * ldt];
                for kk in 0..k {
                    for j in 0..n {
                        bt[j * ldt + kk] = b[kk * n + j];
                    }
                }
                let mut got_t = vec![0.0; m * n];
                let btv = View::transposed(&bt, ldt);
                gemm_view(isa, m, k, n, av, btv, &mut got_t, n, Epilogue::Store);
                assert_eq!(
                    bits(&got_t),
                    bits(&want),
                    "{isa:?} m{m} k{k} n{n} (B transposed)"
                );
            }
        }
    }

    /// A B packed once gives the same bits as the same B packed per call, on every ISA and
    /// epilogue, with m, k and n off the MR / NR / KC edges (k across a KC boundary, so the
    /// partial sums and the second k block's panels are read too), and with the packed B
    /// reused across products of different m.
    #[test]
    fn packed_and_fresh_b_give_the_same_bits() {
        for &(m, k, n) in &[
            (1, 1, 1),
            (5, 7, 3),
            (7, 3, 65),
            (11, 67, NR - 1),
            (13, 130, 2 * NC + 5),
            (8, KC + 37, NC + 3),
            (3, 0, 5),
        ] {
            let Operands {
                lda,
                a,
                b,
                bias,
                gamma,
                rs,
                x0,
            } = Operands::new(m, k, n, 7);
            let packed = PackedB::new(&b, k, n);
            assert_eq!((packed.k(), packed.n()), (k, n));
            assert!(packed.bytes() >= k * n.div_ceil(NR) * NR * 4);
            for isa in Isa::available() {
                for e in epilogues(&bias, &gamma, &rs) {
                    // The whole product, then its first rows only (same packed B, smaller m).
                    for rows in [m, m.div_ceil(2)] {
                        let mut want = x0.clone();
                        gemm(isa, rows, k, n, &a, lda, &b, &mut want, n, e);
                        let mut got = x0.clone();
                        gemm_packed(isa, rows, &a, lda, &packed, &mut got, n, e);
                        let differ = got
                            .iter()
                            .zip(&want)
                            .filter(|(g, w)| g.to_bits() != w.to_bits())
                            .count();
                        assert_eq!(
                            differ, 0,
                            "{isa:?} {e:?} m{rows} k{k} n{n}: {differ} values differ"
                        );
                        // Not a vacuous comparison: the product was written.
                        if k > 0 {
                            assert_ne!(got, x0, "{isa:?} {e:?} m{rows} k{k} n{n}");
                        }
                    }
                }
            }
        }
    }

    /// The packed copy is `pack_b`'s panels for every (k block, column block), at the offsets
    /// the product reads, 64-byte aligned.
    #[test]
    fn packed_b_holds_pack_b_panels_at_aligned_offsets() {
        let (k, n) = (KC + 9, 2 * NC + 17);
        let b = seq(k * n, 13);
        let packed = PackedB::new(&b, k, n);
        for k0 in [0, KC] {
            let kc = (k - k0).min(KC);
            for j0 in (0..n).step_by(NC) {
                let nc = (n - j0).min(NC);
                let len = nc.div_ceil(NR) * kc * NR;
                let mut want = vec![f32::NAN; len];
                pack_b(View::rows(&b, n), n, k0, kc, j0, nc, &mut want);
                let p = packed.block(k0, kc, j0);
                assert_eq!(p as usize % 64, 0, "block ({k0}, {j0}) not 64-byte aligned");
                // SAFETY: `block` points at `len` packed floats.
                let got = unsafe { std::slice::from_raw_parts(p, len) };
                assert!(
                    got.iter()
                        .zip(&want)
                        .all(|(g, w)| g.to_bits() == w.to_bits()),
                    "block ({k0}, {j0})"
                );
            }
        }
    }
}
