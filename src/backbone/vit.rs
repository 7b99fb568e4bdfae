//! DINOv3 ViT modules and forward pass (Meta `DinoVisionTransformer`, eval mode, MLP variant).
//!
//! Sequence layout: `[CLS, reg_1..reg_R, p_0..p_{HW-1}]`, patches row-major. Each block is
//! `x += γ1 ⊙ Attn(LN1(x)); x += γ2 ⊙ MLP(LN2(x))` with RoPE on patch q/k and erf-GELU MLP.
//! A tap `i` is the final norm applied to the output of block `i` (0-based), which is what the
//! AVA-DINO reference hooks read (docs/method.md, "Frozen features").
//!
//! The blocks run either through burn's ops (any device, any dtype) or, on the CPU (flex, f32),
//! through the kernels of [`super::cpu`]; both compute the same function (parity tests).

use std::collections::BTreeMap;

use burn::module::{Module, Param};
use burn::nn::{LayerNorm, Linear};
use burn::tensor::activation::gelu;
use burn::tensor::module::{attention, conv2d};
use burn::tensor::ops::{AttentionModuleOptions, ConvOptions};
use burn::tensor::{DType, Tensor};

use super::config::DinoV3Config;
use super::cpu::packed::PackCache;
use super::rope;

/// Epsilon added to the per-channel std of the patch rows (reference `extract_dinov3_features`).
pub const PATCH_STD_EPS: f64 = 1e-6;

/// Features of one tapped block.
#[derive(Debug, Clone)]
pub struct TapFeatures {
    /// Final-norm output of the block, all tokens: `[B, N, D]`, N = 1 + R + HW/p².
    pub normed: Tensor<3>,
    /// CLS row of `normed`: `[B, D]`.
    pub cls: Tensor<2>,
    /// Patch rows of `normed`, standardized per sample and channel over patches
    /// (unbiased std + 1e-6): `[B, HW/p², D]`.
    pub patches: Tensor<3>,
}

/// Multi-head self-attention with a fused qkv projection.
#[derive(Module, Debug)]
pub struct Attention {
    /// `[D] -> [3D]`, q | k | v; the k third of the bias is already masked.
    pub qkv: Linear,
    /// `[D] -> [D]`.
    pub proj: Linear,
    pub num_heads: usize,
}

/// MLP: Linear → erf-GELU → Linear.
#[derive(Module, Debug)]
pub struct Mlp {
    pub fc1: Linear,
    pub fc2: Linear,
}

/// One pre-norm transformer block with LayerScale.
#[derive(Module, Debug)]
pub struct Block {
    pub norm1: LayerNorm,
    pub attn: Attention,
    /// LayerScale γ1 `[D]`.
    pub ls1: Param<Tensor<1>>,
    pub norm2: LayerNorm,
    pub mlp: Mlp,
    /// LayerScale γ2 `[D]`.
    pub ls2: Param<Tensor<1>>,
}

/// The DINOv3 ViT backbone.
#[derive(Module, Debug)]
pub struct DinoV3 {
    /// Patch embedding conv weight `[D, C, p, p]`.
    pub patch_weight: Param<Tensor<4>>,
    /// Patch embedding bias `[D]`.
    pub patch_bias: Param<Tensor<1>>,
    /// `[1, 1, D]`.
    pub cls_token: Param<Tensor<3>>,
    /// `[1, R, D]`; `None` when R = 0.
    pub register_tokens: Option<Param<Tensor<3>>>,
    pub blocks: Vec<Block>,
    /// Final norm, also applied to every tap.
    pub norm: LayerNorm,
    /// RoPE periods `[dh/4]` (bf16 values, stored or computed).
    #[module(skip)]
    pub periods: Vec<f32>,
    #[module(skip)]
    pub config: DinoV3Config,
    /// The linear weights packed for the CPU kernels, filled by their first forward (empty
    /// on any other path). Shared by clones; see [`super::cpu::packed`].
    #[module(skip)]
    pub(crate) packed: PackCache,
}

impl Attention {
    /// `x`: `[B, N, D]`, `cos`/`sin`: `[HW, dh]` → `[B, N, D]`.
    fn forward(&self, x: Tensor<3>, cos: &Tensor<2>, sin: &Tensor<2>, prefix: usize) -> Tensor<3> {
        let [b, n, d] = x.dims();
        let (h, dh) = (self.num_heads, d / self.num_heads);
        let qkv = self.qkv.forward(x);
        let split = |i: usize| {
            qkv.clone()
                .slice([0..b, 0..n, i * d..(i + 1) * d])
                .reshape([b, n, h, dh])
                .swap_dims(1, 2)
        };
        let q = rope::apply(split(0), cos, sin, prefix);
        let k = rope::apply(split(1), cos, sin, prefix);
        let v = split(2);
        // Fused op, default scale 1/sqrt(dh), no mask: matches SDPA to f32 rounding (parity test).
        let out = attention(q, k, v, None, None, AttentionModuleOptions::default());
        self.proj.forward(out.swap_dims(1, 2).reshape([b, n, d]))
    }
}

impl Mlp {
    fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        self.fc2.forward(gelu(self.fc1.forward(x)))
    }
}

impl Block {
    /// `[B, N, D]` → `[B, N, D]`.
    fn forward(&self, x: Tensor<3>, cos: &Tensor<2>, sin: &Tensor<2>, prefix: usize) -> Tensor<3> {
        let a = self
            .attn
            .forward(self.norm1.forward(x.clone()), cos, sin, prefix);
        let x = x + a * self.ls1.val().unsqueeze::<3>();
        let m = self.mlp.forward(self.norm2.forward(x.clone()));
        x + m * self.ls2.val().unsqueeze::<3>()
    }
}

impl DinoV3 {
    /// Why `pixel_values` of shape `dims` cannot go through this model with `taps`, if so.
    pub fn check_input(&self, dims: [usize; 4], taps: &[usize]) -> Result<(), String> {
        self.config.check_input(dims, taps)
    }

    /// Token sequence before the first block: `[B, C, H, W]` → `[B, 1 + R + HW/p², D]`.
    pub fn embed(&self, pixel_values: Tensor<4>) -> Tensor<3> {
        let [b, _, _, _] = pixel_values.dims();
        let p = self.config.patch_size;
        let d = self.config.hidden_size;
        let opts = ConvOptions::new([p, p], [0, 0], [1, 1], 1);
        let patches = conv2d(
            pixel_values,
            self.patch_weight.val(),
            Some(self.patch_bias.val()),
            opts,
        );
        let [_, _, hp, wp] = patches.dims();
        let patches = patches.reshape([b, d, hp * wp]).swap_dims(1, 2);
        let mut parts = vec![self.cls_token.val().expand([b, 1, d])];
        if let Some(reg) = &self.register_tokens {
            parts.push(reg.val().expand([b, self.config.num_register_tokens, d]));
        }
        parts.push(patches);
        Tensor::cat(parts, 1)
    }

    /// Hidden states `[B, N, D]` after each block in `taps`, through burn's ops (any device).
    pub(super) fn tap_hidden(
        &self,
        pixel_values: Tensor<4>,
        taps: &[usize],
    ) -> BTreeMap<usize, Tensor<3>> {
        let [_, _, h, w] = pixel_values.dims();
        let c = &self.config;
        let (hp, wp) = (h / c.patch_size, w / c.patch_size);
        let prefix = c.prefix_tokens();
        let device = pixel_values.device();
        // Precision hook (precision.rs): every tensor of the forward in the weights' dtype.
        let dtype = self.dtype();
        let (cos, sin) = rope::tables(&self.periods, hp, wp, &device);
        let (cos, sin) = (cos.cast(dtype), sin.cast(dtype));
        let last = *taps.iter().max().expect("checked non-empty");
        let mut x = self.embed(pixel_values.cast(dtype));
        let mut outputs: BTreeMap<usize, Tensor<3>> = BTreeMap::new();
        for (i, block) in self.blocks.iter().enumerate().take(last + 1) {
            x = block.forward(x, &cos, &sin, prefix);
            if taps.contains(&i) {
                outputs.insert(i, x.clone());
            }
        }
        outputs
    }

    /// A tap's features from the block output `x` `[B, N, D]`: final norm, CLS row, and the
    /// patch rows standardized per sample and channel.
    pub(super) fn tap_features(&self, x: Tensor<3>) -> TapFeatures {
        let [b, n, d] = x.dims();
        let prefix = self.config.prefix_tokens();
        // Features leave in f32 whatever the compute dtype (precision.rs).
        let normed = self.norm.forward(x).cast(DType::F32);
        let cls = normed.clone().slice([0..b, 0..1, 0..d]).reshape([b, d]);
        let p = normed.clone().slice([0..b, prefix..n, 0..d]);
        let mean = p.clone().mean_dim(1);
        let std = p.clone().var(1).sqrt();
        let patches = (p - mean) / (std + PATCH_STD_EPS);
        TapFeatures {
            normed,
            cls,
            patches,
        }
    }
}
