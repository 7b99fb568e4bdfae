//! The seam: what every room outside `backbone/` sees of a frozen backbone. [`Spec`] is a
//! backbone before its weights (enough to check taps and image size, to price a run, to prepare
//! its input), [`Backbone`] a loaded one, [`Shape`] the numbers the engine, the estimate and
//! preprocessing need. The engine never names a concrete model.
//!
//! Adding a backbone: its module beside `vit.rs` (config, modules, forward with tensor shapes,
//! loader with a key table), a case in [`Spec`] and in [`Backbone`] (each method dispatches to
//! it), and its name in [`Spec::from_weights`] (how its weight files are recognised) and
//! [`Spec::preset`]. ARCHITECTURE.md, "Where to add", walks through it.

use std::path::Path;

use burn::tensor::{DType, Device, Tensor};

use super::load::{config_for, load_backbone, save_hf_dir, weights_in_dir};
use super::precision::{Precision, PrecisionError};
use super::vit::{DinoV3, TapFeatures};
use super::{BackboneError, DinoV3Config};
use crate::image::Normalize;

/// The numbers of a backbone that rooms outside `backbone/` use.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Shape {
    /// Token width.
    pub width: usize,
    /// Transformer blocks.
    pub depth: usize,
    pub heads: usize,
    /// MLP hidden width.
    pub mlp: usize,
    /// Square patch side.
    pub patch: usize,
    /// Input channels.
    pub channels: usize,
    /// Tokens before the patches (CLS and registers).
    pub prefix_tokens: usize,
    /// The input normalisation the weights were trained with.
    pub normalize: Normalize,
}

impl Shape {
    /// Patch tokens of a square input of side `size`.
    pub fn patches(&self, size: usize) -> usize {
        (size / self.patch).pow(2)
    }

    /// Bytes of the CPU kernels' packed copy of the linear weights of every block, held beside
    /// the weights once the kernels have run ([`super::cpu::packed`]): as much again as those
    /// weights (rounded up to whole 64-column panels).
    pub fn packed_weight_bytes(&self) -> u64 {
        super::cpu::packed::model_bytes(self.width, self.mlp, self.depth)
    }

    /// Forward FLOPs on one `size` px image up to block `deepest` (0-based): the patch
    /// embedding, then per block qkv (3D) + proj (D), the two MLP products and the two
    /// attention products.
    pub fn flops(&self, size: usize, deepest: usize) -> f64 {
        let grid = self.patches(size) as f64;
        let n = grid + self.prefix_tokens as f64;
        let d = self.width as f64;
        let mlp = self.mlp as f64;
        let patch = 2.0 * grid * (self.channels * self.patch * self.patch) as f64 * d;
        let block = 2.0 * n * d * (4.0 * d) + 2.0 * 2.0 * n * d * mlp + 2.0 * 2.0 * n * n * d;
        patch + block * (deepest + 1).min(self.depth) as f64
    }
}

/// A backbone before its weights: its architecture.
#[derive(Debug, Clone, PartialEq)]
pub enum Spec {
    DinoV3(DinoV3Config),
}

impl Spec {
    /// The paper's backbone, DINOv3 ViT-L/16 (what the estimate prices without weights at hand).
    pub fn paper() -> Spec {
        Spec::DinoV3(DinoV3Config::vitl16())
    }

    /// A named architecture: `vitl16` (the released ViT-L/16) or `tiny` (D=64, 4 blocks).
    pub fn preset(name: &str) -> Option<Spec> {
        match name {
            "vitl16" => Some(Spec::paper()),
            "tiny" => Some(Spec::DinoV3(DinoV3Config::like_vitl16(64, 4, 4, 16, 4))),
            _ => None,
        }
    }

    /// A seeded random backbone's architecture: the DINOv3 design (4 registers) at width
    /// `dim`, `depth` blocks, `heads` heads, patch `patch`.
    pub fn embedded(dim: usize, depth: usize, heads: usize, patch: usize) -> Spec {
        Spec::DinoV3(DinoV3Config::like_vitl16(dim, depth, heads, patch, 4))
    }

    /// The architecture of the weights at `path` (a file, or a directory holding one), from
    /// the `config.json` beside them, without reading the weights.
    pub fn from_weights(path: &Path) -> Result<Spec, BackboneError> {
        let file = if path.is_dir() {
            weights_in_dir(path)?
        } else {
            path.to_path_buf()
        };
        Ok(Spec::DinoV3(config_for(&file)?))
    }

    pub fn shape(&self) -> Shape {
        match self {
            Spec::DinoV3(c) => Shape {
                width: c.hidden_size,
                depth: c.num_hidden_layers,
                heads: c.num_attention_heads,
                mlp: c.intermediate_size,
                patch: c.patch_size,
                channels: c.num_channels,
                prefix_tokens: c.prefix_tokens(),
                normalize: Normalize::IMAGENET,
            },
        }
    }

    /// Whether an input of `dims` `[B, C, H, W]` can be tapped at `taps` (the message says why
    /// not).
    pub fn check_input(&self, dims: [usize; 4], taps: &[usize]) -> Result<(), String> {
        match self {
            Spec::DinoV3(c) => c.check_input(dims, taps),
        }
    }
}

/// A loaded frozen backbone.
#[derive(Debug)]
pub enum Backbone {
    DinoV3(DinoV3),
}

impl Backbone {
    /// Seeded random weights of `spec` on `device`.
    pub fn random(spec: &Spec, seed: u64, device: &Device) -> Backbone {
        match spec {
            Spec::DinoV3(c) => Backbone::DinoV3(DinoV3::random(c, seed, device)),
        }
    }

    /// The weights at `path` (a file or a directory), as [`Spec::from_weights`] recognises them.
    pub fn load(path: &Path, device: &Device) -> Result<Backbone, BackboneError> {
        Ok(Backbone::DinoV3(load_backbone(path, device)?))
    }

    pub fn spec(&self) -> Spec {
        match self {
            Backbone::DinoV3(m) => Spec::DinoV3(m.config.clone()),
        }
    }

    pub fn shape(&self) -> Shape {
        self.spec().shape()
    }

    /// The same backbone computing in `precision` (every weight cast).
    pub fn with_precision(self, precision: Precision) -> Result<Backbone, PrecisionError> {
        match self {
            Backbone::DinoV3(m) => Ok(Backbone::DinoV3(m.with_precision(precision)?)),
        }
    }

    /// The dtype the weights are in.
    pub fn dtype(&self) -> DType {
        match self {
            Backbone::DinoV3(m) => m.dtype(),
        }
    }

    /// See [`Spec::check_input`].
    pub fn check_input(&self, dims: [usize; 4], taps: &[usize]) -> Result<(), String> {
        match self {
            Backbone::DinoV3(m) => m.check_input(dims, taps),
        }
    }

    /// Tap features for `taps` of `pixel_values` `[B, C, H, W]` (checked with
    /// [`Backbone::check_input`] first), in that order.
    pub fn forward_taps(&self, pixel_values: Tensor<4>, taps: &[usize]) -> Vec<TapFeatures> {
        match self {
            Backbone::DinoV3(m) => m.forward_taps(pixel_values, taps),
        }
    }

    /// What runs the blocks on `device` (`avx512`, `avx2`, `portable` or `burn`).
    pub fn kernels_name(&self, device: &Device) -> &'static str {
        match self {
            Backbone::DinoV3(m) => m.kernels_name(device),
        }
    }

    /// [`Backbone::kernels_name`] up to what changes numbers: `kernels` or `burn`.
    pub fn kernels_family(&self, device: &Device) -> &'static str {
        match self {
            Backbone::DinoV3(m) => m.kernels_family(device),
        }
    }

    /// Whether the blocks run on the CPU kernels on `device`, which keep a packed copy of the
    /// linear weights beside burn's tensors (`cpu::packed`; the memory estimate counts it).
    pub fn packs_weights(&self, device: &Device) -> bool {
        self.kernels_name(device) != "burn"
    }

    /// Bytes of the packed copy held now (0 before the CPU kernels' first forward, and on any
    /// other path; at most [`Shape::packed_weight_bytes`]).
    pub fn packed_weight_bytes(&self) -> usize {
        match self {
            Backbone::DinoV3(m) => m.packed_weight_bytes(),
        }
    }

    /// Writes the backbone as a Hugging Face model directory (`config.json`, `model.safetensors`).
    pub fn save_hf_dir(&self, dir: &Path) -> Result<(), BackboneError> {
        match self {
            Backbone::DinoV3(m) => save_hf_dir(m, dir),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_paper_backbone_costs_0_73_tflop_at_512() {
        let s = Spec::paper().shape();
        assert_eq!(
            (s.width, s.depth, s.patch, s.prefix_tokens),
            (1024, 24, 16, 5)
        );
        let f = s.flops(512, 23);
        assert!((f / 1e12 - 0.73).abs() < 0.02, "{f}");
        assert!((s.flops(512, 11) / f - 0.5).abs() < 0.01);
        assert_eq!(Spec::preset("tiny").unwrap().shape().width, 64);
        assert!(Spec::preset("vit-huge").is_none());
    }
}
