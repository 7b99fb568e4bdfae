//! GEMM micro-kernels: one `R x NR` tile of `C = A·B` (R <= MR), then the fused epilogue.
//!
//! A is read with a row stride and a k stride (in place, or packed `[kc][MR]` by
//! `gemm::pack_a`); B is a packed panel `[kc][NR]` (see `gemm::pack_b`). With several k blocks the tile's partial sums go to a
//! scratch `part` between blocks and the epilogue runs once, on the last block, so the output
//! is written exactly once (which lets the residual epilogue update `x` in place).

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

use super::isa::Isa;
use super::math;

/// Rows of A per tile.
pub const MR: usize = 6;
/// Columns of B per packed panel (four 16-lane vectors).
pub const NR: usize = 64;

/// What the finished tile becomes. Column vectors are indexed by output column, row vectors by
/// output row, both relative to the whole product.
#[derive(Clone, Copy, Debug)]
pub enum Epilogue<'a> {
    /// `out = acc`.
    Store,
    /// `out = acc + bias`.
    Bias(&'a [f32]),
    /// `out = gelu(acc + bias)` (erf GELU).
    BiasGelu(&'a [f32]),
    /// `out = out + gamma ⊙ (acc + bias)`: LayerScale and the residual add.
    BiasScaleAdd { bias: &'a [f32], gamma: &'a [f32] },
    /// `out = acc · scale[row]` (attention's softmax normalisation).
    RowScale(&'a [f32]),
    /// `out = acc > 0 ? acc : slope · acc`, PyTorch's `leaky_relu` (the adapters' activation).
    Leaky(f32),
}

/// One tile's operands. Pointers are already offset to the tile's first row / column.
pub struct Tile<'e> {
    pub kc: usize,
    /// A, first row of the tile at k-block start; element (r, k) at `a[r·lda + k·ka]`.
    pub a: *const f32,
    pub lda: usize,
    pub ka: usize,
    /// Packed B panel, `kc x NR`, 64-byte aligned.
    pub b: *const f32,
    /// Partial sums `[R][NR]` with row stride `ldp` (unused when `first && last`).
    pub part: *mut f32,
    pub ldp: usize,
    /// First k block: start from zero instead of `part`.
    pub first: bool,
    /// Last k block: apply the epilogue and write `out`; otherwise write `part`.
    pub last: bool,
    /// Output tile, row stride `ldo`; only its first `ncols` (<= NR) columns are written.
    pub out: *mut f32,
    pub ldo: usize,
    pub ncols: usize,
    pub epilogue: Epilogue<'e>,
    /// Tile origin in the whole product, to index the epilogue vectors.
    pub row0: usize,
    pub col0: usize,
}

/// Computes one tile of `rows` (1..=MR) rows.
///
/// # Safety
/// Every pointer of `t` must be valid for the extents described on [`Tile`]: A for `rows`
/// rows of `kc` steps, B for `kc·NR` floats (64-byte aligned for AVX-512), `part` for
/// `rows x NR` and `out` for `rows x ncols`, and `isa` must be supported by this CPU.
#[inline]
pub unsafe fn tile(isa: Isa, rows: usize, t: &Tile) {
    macro_rules! by_rows {
        ($f:ident) => {
            match rows {
                1 => $f::<1>(t),
                2 => $f::<2>(t),
                3 => $f::<3>(t),
                4 => $f::<4>(t),
                5 => $f::<5>(t),
                6 => $f::<6>(t),
                _ => unreachable!("tile rows {rows} > MR"),
            }
        };
    }
    // SAFETY: forwarded from the caller.
    unsafe {
        match isa {
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => by_rows!(tile_avx512),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => by_rows!(tile_avx2),
            _ => by_rows!(tile_portable),
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn tile_avx512<const R: usize>(t: &Tile) {
    const V: usize = NR / 16;
    // SAFETY: extents and alignment are the caller's contract (see `tile`).
    unsafe {
        let mut acc = [[_mm512_setzero_ps(); V]; R];
        if !t.first {
            for (r, row) in acc.iter_mut().enumerate() {
                for (j, v) in row.iter_mut().enumerate() {
                    *v = _mm512_loadu_ps(t.part.add(r * t.ldp + 16 * j));
                }
            }
        }
        // The hot loop uses wrapping pointer steps and intrinsic loads only: no overflow,
        // `ptr::add` or alignment checks even in builds with debug assertions.
        let rows: [*const f32; R] = std::array::from_fn(|r| t.a.wrapping_add(r * t.lda));
        let mut b = t.b;
        let mut off = 0usize;
        for _ in 0..t.kc {
            let bv = [
                _mm512_load_ps(b),
                _mm512_load_ps(b.wrapping_add(16)),
                _mm512_load_ps(b.wrapping_add(32)),
                _mm512_load_ps(b.wrapping_add(48)),
            ];
            for (row, &a) in acc.iter_mut().zip(&rows) {
                // An intrinsic load, not a deref: no alignment check in debug builds.
                let av = _mm512_broadcastss_ps(_mm_load_ss(a.wrapping_add(off)));
                for (v, bj) in row.iter_mut().zip(bv) {
                    *v = _mm512_fmadd_ps(av, bj, *v);
                }
            }
            b = b.wrapping_add(NR);
            off = off.wrapping_add(t.ka);
        }
        if !t.last {
            for (r, row) in acc.iter().enumerate() {
                for (j, v) in row.iter().enumerate() {
                    _mm512_storeu_ps(t.part.add(r * t.ldp + 16 * j), *v);
                }
            }
            return;
        }
        for (r, row) in acc.iter().enumerate() {
            let out = t.out.add(r * t.ldo);
            for (j, &v) in row.iter().enumerate() {
                let c = 16 * j;
                if c >= t.ncols {
                    break;
                }
                let m: __mmask16 = if t.ncols - c >= 16 {
                    0xffff
                } else {
                    (1u16 << (t.ncols - c)) - 1
                };
                let col = |vec: &[f32]| _mm512_maskz_loadu_ps(m, vec.as_ptr().add(t.col0 + c));
                let y = match t.epilogue {
                    Epilogue::Store => v,
                    Epilogue::Bias(bias) => _mm512_add_ps(v, col(bias)),
                    Epilogue::BiasGelu(bias) => math::avx512::gelu(_mm512_add_ps(v, col(bias))),
                    Epilogue::BiasScaleAdd { bias, gamma } => _mm512_add_ps(
                        _mm512_maskz_loadu_ps(m, out.add(c)),
                        _mm512_mul_ps(col(gamma), _mm512_add_ps(v, col(bias))),
                    ),
                    Epilogue::RowScale(s) => _mm512_mul_ps(v, _mm512_set1_ps(s[t.row0 + r])),
                    Epilogue::Leaky(slope) => _mm512_mask_blend_ps(
                        _mm512_cmp_ps_mask::<_CMP_GT_OQ>(v, _mm512_setzero_ps()),
                        _mm512_mul_ps(v, _mm512_set1_ps(slope)),
                        v,
                    ),
                };
                _mm512_mask_storeu_ps(out.add(c), m, y);
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn tile_avx2<const R: usize>(t: &Tile) {
    // SAFETY: forwarded; FMA is enabled here, so `mul_add` is one instruction.
    unsafe { tile_generic::<R>(t) }
}

/// The generic tile compiled for the target's baseline. On x86-64 (no FMA in the baseline)
/// every `mul_add` is a libm `fmaf` call: the same bits as the fused instruction, several times
/// slower; on aarch64, whose baseline has FMA, it is one instruction.
unsafe fn tile_portable<const R: usize>(t: &Tile) {
    // SAFETY: forwarded.
    unsafe { tile_generic::<R>(t) }
}

/// Generic tile: 16-column strips so that an `R x 16` accumulator fits AVX2's 16 registers.
///
/// Bit-identical to [`tile_avx512`]: each element is one chain of fused multiply-adds over k
/// in order (from zero, or from `part`), and each epilogue runs the same f32 operations in the
/// same order (the GELU is [`math::gelu`], bit-identical to [`math::avx512::gelu`]).
#[inline(always)]
unsafe fn tile_generic<const R: usize>(t: &Tile) {
    const W: usize = 16;
    // SAFETY: extents are the caller's contract (see `tile`).
    unsafe {
        for strip in 0..NR / W {
            let c0 = strip * W;
            let mut acc = [[0f32; W]; R];
            if !t.first {
                for (r, row) in acc.iter_mut().enumerate() {
                    row.copy_from_slice(std::slice::from_raw_parts(t.part.add(r * t.ldp + c0), W));
                }
            }
            let rows: [*const f32; R] = std::array::from_fn(|r| t.a.wrapping_add(r * t.lda));
            let mut bp = t.b.wrapping_add(c0);
            let mut off = 0usize;
            for _ in 0..t.kc {
                let b = &*(bp as *const [f32; W]);
                for (row, &a) in acc.iter_mut().zip(&rows) {
                    let a = *a.wrapping_add(off);
                    for (v, &bj) in row.iter_mut().zip(b) {
                        *v = a.mul_add(bj, *v);
                    }
                }
                bp = bp.wrapping_add(NR);
                off = off.wrapping_add(t.ka);
            }
            if !t.last {
                for (r, row) in acc.iter().enumerate() {
                    std::slice::from_raw_parts_mut(t.part.add(r * t.ldp + c0), W)
                        .copy_from_slice(row);
                }
                continue;
            }
            let n = t.ncols.saturating_sub(c0).min(W);
            for (r, row) in acc.iter().enumerate() {
                let out = std::slice::from_raw_parts_mut(t.out.add(r * t.ldo + c0), n);
                for (i, (o, &v)) in out.iter_mut().zip(row).enumerate() {
                    let j = t.col0 + c0 + i;
                    *o = match t.epilogue {
                        Epilogue::Store => v,
                        Epilogue::Bias(bias) => v + bias[j],
                        Epilogue::BiasGelu(bias) => math::gelu(v + bias[j]),
                        Epilogue::BiasScaleAdd { bias, gamma } => *o + gamma[j] * (v + bias[j]),
                        Epilogue::RowScale(s) => v * s[t.row0 + r],
                        Epilogue::Leaky(slope) => {
                            if v > 0.0 {
                                v
                            } else {
                                v * slope
                            }
                        }
                    };
                }
            }
        }
    }
}
