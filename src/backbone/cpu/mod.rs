//! The backbone's transformer blocks on the CPU (flex device, f32), with our own kernels.
//!
//! Same function as the burn path of [`super::vit`] (same parity fixtures, same tolerance), in
//! fewer passes over memory: a blocked GEMM whose epilogue adds the bias and applies the GELU
//! or the LayerScale + residual in registers ([`gemm`], [`kernel`]), attention fused per
//! (head, query block) ([`attention`]), LayerNorm rows ([`norm`]), vector exp/erf ([`math`]).
//! The linear weights are packed once per model into the GEMM's panel layout ([`packed`]: a
//! second copy of them beside burn's tensors); the small vectors (norms, biases, LayerScale)
//! are read in place from the flex tensors. Any other device or dtype (GPU, autodiff,
//! bf16/f16) keeps the burn path ([`choice::applies`] decides).
//!
//! Three instruction sets run these kernels ([`Isa`]: AVX-512, AVX2, portable), chosen for the
//! process by `AVA_DINO_CPU_KERNELS` ([`choice`]). They compute **bit-identical** results, so
//! a run on a CPU without AVX-512 (a hosted CI runner) gives the same numbers as one with it:
//! - every product element is one chain of fused multiply-adds over k in order, in every tile
//!   ([`kernel`]; the portable tile uses `mul_add`, a libm call where the target has no FMA);
//! - the epilogues and the softmax run the same f32 operations in the same order, with the
//!   scalar `exp`/`erf`/GELU fused exactly where the AVX-512 ones are ([`math`]);
//! - the softmax row max and sum use 16 lane accumulators (element `i` in lane `i % 16`) and
//!   one reduction tree written out in both paths ([`attention`]);
//! - LayerNorm, RoPE, the packing and the threading are one code for every instruction set,
//!   and no element's value depends on which thread computes it.
//!
//! The tests compare bit patterns across [`Isa::available`]: the math functions over a dense
//! grid and the edge values, the GEMM with every epilogue, attention, and the whole
//! [`tap_hidden`] of a small random model.

pub mod attention;
pub mod norm;
pub mod packed;

/// The shared kernels, under their old paths for the backbone's files.
pub use crate::cpu::{choice, gemm, host, isa, kernel, math};

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::Arc;

use burn::nn::{LayerNorm, Linear};
use burn::tensor::{FloatDType, Tensor, TensorData};

pub use choice::{Kernels, KernelsError, effective_kernels};
pub use isa::Isa;
pub use packed::PackCache;

use self::attention::Dims;
use self::kernel::Epilogue;
use self::packed::PackedLinear;
use super::rope;
use super::vit::DinoV3;
use crate::cpu::host::HostF32;

struct NormW {
    gamma: HostF32,
    beta: Option<HostF32>,
}

impl NormW {
    fn new(ln: &LayerNorm) -> Result<Self, &'static str> {
        Ok(Self {
            gamma: HostF32::param(&ln.gamma)?,
            beta: ln.beta.as_ref().map(HostF32::param).transpose()?,
        })
    }

    /// `x` `[M, D]` → `out`.
    fn run(&self, x: &[f32], d: usize, eps: f32, out: &mut [f32]) {
        norm::layer_norm(
            x,
            d,
            self.gamma.f32(),
            self.beta.as_ref().map(HostF32::f32),
            eps,
            out,
        );
    }
}

/// A `Linear` as its `[K, N]` weight (burn stores `weight.T`), packed once per model, and bias.
struct LinearW {
    w: Arc<PackedLinear>,
    bias: Cow<'static, [f32]>,
}

impl LinearW {
    /// `slot` numbers this weight in `cache` (see [`PackCache::get`]).
    fn new(l: &Linear, cache: &PackCache, slot: usize) -> Result<Self, &'static str> {
        let [k, n] = l.weight.val().dims();
        let bias = match &l.bias {
            Some(b) => Cow::Owned(HostF32::param(b)?.f32().to_vec()),
            None => Cow::Owned(vec![0.0; n]),
        };
        let w = cache.get(slot, &HostF32::param(&l.weight)?, k, n);
        Ok(Self { w, bias })
    }

    /// `out = epilogue(x·W)` with `x` `[m, K]` (the epilogue carries this layer's bias).
    fn run(&self, isa: Isa, x: &[f32], m: usize, out: &mut [f32], ep: Epilogue) {
        let b = &self.w.b;
        gemm::gemm_packed(isa, m, x, b.k(), b, out, b.n(), ep);
    }
}

struct BlockW {
    norm1: NormW,
    qkv: LinearW,
    proj: LinearW,
    ls1: HostF32,
    norm2: NormW,
    fc1: LinearW,
    fc2: LinearW,
    ls2: HostF32,
}

/// Hidden states `[B, N, D]` after each block in `taps` (deepest first-run order), on the CPU
/// kernels; `Err` says why they do not apply (then the caller runs burn). The pixels are cast
/// to f32 first, as the burn path casts them to the weights' dtype.
///
/// # Panics
/// If this CPU cannot run `isa` ([`Isa::assert_supported`]).
pub fn tap_hidden(
    model: &DinoV3,
    pixel_values: &Tensor<4>,
    taps: &[usize],
    isa: Isa,
) -> Result<BTreeMap<usize, Tensor<3>>, &'static str> {
    isa.assert_supported();
    choice::applies(&pixel_values.device(), model.dtype())?;
    let pixel_values = pixel_values.clone().cast(FloatDType::F32);
    let c = &model.config;
    let last = *taps.iter().max().ok_or("no taps")?;
    // Packed on the first forward, then read from the model's cache (`packed`).
    let cache = &model.packed;
    let blocks = model.blocks[..=last]
        .iter()
        .enumerate()
        .map(|(i, b)| {
            Ok(BlockW {
                norm1: NormW::new(&b.norm1)?,
                qkv: LinearW::new(&b.attn.qkv, cache, 4 * i)?,
                proj: LinearW::new(&b.attn.proj, cache, 4 * i + 1)?,
                ls1: HostF32::param(&b.ls1)?,
                norm2: NormW::new(&b.norm2)?,
                fc1: LinearW::new(&b.mlp.fc1, cache, 4 * i + 2)?,
                fc2: LinearW::new(&b.mlp.fc2, cache, 4 * i + 3)?,
                ls2: HostF32::param(&b.ls2)?,
            })
        })
        .collect::<Result<Vec<_>, &'static str>>()?;
    let device = pixel_values.device();
    let [b, _, h, w] = pixel_values.dims();
    let (hp, wp) = (h / c.patch_size, w / c.patch_size);
    let dims = Dims {
        b,
        n: c.prefix_tokens() + hp * wp,
        heads: c.num_attention_heads,
        head_dim: c.head_dim(),
        prefix: c.prefix_tokens(),
    };
    let (d, f, m) = (c.hidden_size, c.intermediate_size, b * dims.n);
    let mut x = model
        .embed(pixel_values)
        .into_data()
        .try_into_vec::<f32>()
        .map_err(|_| "embedding is not f32")?;
    let (cos, sin) = rope::table_values(&model.periods, hp, wp);
    let eps = c.layer_norm_eps as f32;
    let mut xn = vec![0f32; m * d];
    let mut qkv = vec![0f32; m * 3 * d];
    let mut att = vec![0f32; m * d];
    let mut hid = vec![0f32; m * f];
    let mut out = BTreeMap::new();
    for (i, blk) in blocks.iter().enumerate() {
        blk.norm1.run(&x, d, eps, &mut xn);
        blk.qkv
            .run(isa, &xn, m, &mut qkv, Epilogue::Bias(&blk.qkv.bias));
        attention::rope(&mut qkv, dims, &cos, &sin);
        attention::attention(isa, &qkv, dims, &mut att);
        let (bias, gamma) = (&blk.proj.bias, blk.ls1.f32());
        blk.proj
            .run(isa, &att, m, &mut x, Epilogue::BiasScaleAdd { bias, gamma });
        blk.norm2.run(&x, d, eps, &mut xn);
        blk.fc1
            .run(isa, &xn, m, &mut hid, Epilogue::BiasGelu(&blk.fc1.bias));
        let (bias, gamma) = (&blk.fc2.bias, blk.ls2.f32());
        blk.fc2
            .run(isa, &hid, m, &mut x, Epilogue::BiasScaleAdd { bias, gamma });
        if taps.contains(&i) {
            let data = TensorData::new(x.clone(), [b, dims.n, d]);
            out.insert(i, Tensor::from_data(data, &device));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use burn::module::Param;
    use burn::tensor::{Device, Distribution};

    use super::*;
    use crate::backbone::{DinoV3Config, Precision};

    fn max_diff(a: Tensor<3>, b: Tensor<3>) -> f32 {
        let (a, b) = (
            a.into_data().try_to_vec::<f32>().unwrap(),
            b.into_data().try_to_vec::<f32>().unwrap(),
        );
        assert_eq!(a.len(), b.len());
        a.iter()
            .zip(&b)
            .map(|(x, y)| (x - y).abs() / (1.0 + y.abs()))
            .fold(0.0, f32::max)
    }

    /// Same features as burn's ops on every ISA, with sizes off every block edge: D = 72 (three
    /// heads of 24), 91 tokens (more than one 64-key panel and one 48-query block), two images.
    #[test]
    fn cpu_kernels_compute_the_burn_function() {
        let dev = Device::flex();
        let cfg = DinoV3Config::like_vitl16(72, 3, 3, 8, 2);
        let model = DinoV3::random(&cfg, 11, &dev);
        let px = Tensor::<4>::random([2, 3, 64, 88], Distribution::Normal(0.0, 1.0), &dev);
        let taps = [2, 0];
        let want = model.forward_taps_with(px.clone(), &taps, Kernels::Burn);
        for isa in Isa::available() {
            let got = model.forward_taps_with(px.clone(), &taps, Kernels::Cpu(isa));
            for (g, w) in got.into_iter().zip(&want) {
                for (name, d) in [
                    ("normed", max_diff(g.normed, w.normed.clone())),
                    ("patches", max_diff(g.patches, w.patches.clone())),
                    (
                        "cls",
                        max_diff(g.cls.unsqueeze(), w.cls.clone().unsqueeze()),
                    ),
                ] {
                    assert!(d < 1e-5, "{isa:?} {name}: max |diff|/(1+|want|) = {d:e}");
                }
            }
        }
    }

    /// The hidden states of every ISA are the same bits, on the sizes of the test above.
    #[test]
    fn every_isa_computes_the_same_bits() {
        let dev = Device::flex();
        let cfg = DinoV3Config::like_vitl16(72, 3, 3, 8, 2);
        let model = DinoV3::random(&cfg, 11, &dev);
        let px = Tensor::<4>::random([2, 3, 64, 88], Distribution::Normal(0.0, 1.0), &dev);
        let taps = [2, 0, 1];
        let bits = |isa: Isa| -> Vec<(usize, Vec<u32>)> {
            tap_hidden(&model, &px, &taps, isa)
                .unwrap()
                .into_iter()
                .map(|(t, h)| {
                    let v = h.into_data().try_to_vec::<f32>().unwrap();
                    (t, v.iter().map(|x| x.to_bits()).collect())
                })
                .collect()
        };
        let isas = Isa::available();
        let want = bits(Isa::Portable);
        assert_eq!(want.len(), 3);
        for &isa in isas.iter().filter(|&&i| i != Isa::Portable) {
            for ((t, g), (_, w)) in bits(isa).iter().zip(&want) {
                let differ = g.iter().zip(w).filter(|(g, w)| g != w).count();
                assert_eq!(
                    differ,
                    0,
                    "{isa:?} block {t}: {differ} of {} values differ from portable",
                    w.len()
                );
            }
        }
        if isas.len() == 1 {
            eprintln!("skipped: this CPU runs only the portable kernels, nothing to compare");
        }
    }

    /// Scales every float parameter: new weights in new storage, the cache field carried over.
    struct Scale(f32);

    impl burn::module::ModuleMapper for Scale {
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
            let s = self.0;
            param.map(|t| t * s)
        }
    }

    fn hidden_bits(model: &DinoV3, px: &Tensor<4>, taps: &[usize]) -> Vec<Vec<u32>> {
        tap_hidden(model, px, taps, Isa::detect())
            .unwrap()
            .into_values()
            .map(|h| {
                let v = h.into_data().try_to_vec::<f32>().unwrap();
                v.iter().map(|x| x.to_bits()).collect()
            })
            .collect()
    }

    /// The linear weights are packed on the first forward, as many bytes as
    /// `Shape::packed_weight_bytes` says (what the memory estimate counts), and reused by the next one (same entries, same bits); a clone whose
    /// weights were replaced (sharing the cache, as `Module::map` leaves it) gets its own
    /// packing, the same bits as a model that never shared a cache, and the original's next
    /// forward is unchanged.
    #[test]
    fn weights_are_packed_once_per_model_and_follow_its_weights() {
        use burn::module::Module;

        let dev = Device::flex();
        let cfg = DinoV3Config::like_vitl16(72, 3, 3, 8, 2);
        let model = DinoV3::random(&cfg, 5, &dev);
        let px = Tensor::<4>::random([1, 3, 32, 40], Distribution::Normal(0.0, 1.0), &dev);
        assert_eq!(model.packed_weight_bytes(), 0);
        let taps = [0, 2];
        let first = hidden_bits(&model, &px, &taps);
        let shape = crate::backbone::Spec::DinoV3(cfg.clone()).shape();
        assert_eq!(
            model.packed_weight_bytes() as u64,
            shape.packed_weight_bytes()
        );
        let entries = model.packed.entries();
        assert_eq!(entries.len(), 12);
        assert!(entries.iter().all(Option::is_some));
        assert_eq!(hidden_bits(&model, &px, &taps), first);
        assert_eq!(model.packed.entries(), entries, "packed again");

        let scaled = model.clone().map(&mut Scale(0.5));
        let alone = scaled.clone().with_precision(Precision::F32).unwrap();
        assert_eq!(
            alone.packed_weight_bytes(),
            0,
            "with_precision starts afresh"
        );
        let got = hidden_bits(&scaled, &px, &taps);
        assert_ne!(got, first, "the scaled weights were not used");
        assert_eq!(got, hidden_bits(&alone, &px, &taps));
        assert_eq!(hidden_bits(&model, &px, &taps), first);
    }

    #[test]
    fn autodiff_and_other_dtypes_keep_the_burn_path() {
        let cfg = DinoV3Config::like_vitl16(16, 1, 2, 4, 0);
        let px = |dev: &Device| Tensor::<4>::zeros([1, 3, 8, 8], dev);
        let ad = Device::flex().autodiff();
        let model = DinoV3::random(&cfg, 1, &ad);
        let err = tap_hidden(&model, &px(&ad), &[0], Isa::Portable).unwrap_err();
        assert!(err.contains("flex"), "{err}");
        let dev = Device::flex();
        let model = DinoV3::random(&cfg, 1, &dev);
        let half = model.clone().with_precision(Precision::F16).unwrap();
        assert_eq!(
            tap_hidden(&half, &px(&dev), &[0], Isa::Portable).unwrap_err(),
            "weights not f32"
        );
        assert!(tap_hidden(&model, &px(&dev), &[0], Isa::Portable).is_ok());
        // f16 pixels with f32 weights are cast, as on the burn path.
        let px16 = px(&dev).cast(burn::tensor::FloatDType::F16);
        assert!(tap_hidden(&model, &px16, &[0], Isa::Portable).is_ok());
    }
}
