//! DINOv3 ViT backbone (frozen image features).
//!
//! - [`config`]: architecture from an HF `config.json`, the `vitl16` preset and its design at
//!   other sizes;
//! - [`rope`]: 2-D RoPE with bf16-rounded periods;
//! - [`vit`]: modules and the tap forward ([`DinoV3::forward_taps`]);
//! - [`cpu`]: the blocks on the CPU with our own kernels (flex device, f32), three
//!   bit-identical instruction-set variants chosen by `AVA_DINO_CPU_KERNELS`;
//! - [`load`]: the key table, HF / Meta weights mapped onto it, random weights, HF directory
//!   export;
//! - [`precision`]: the compute dtype (`f32|bf16|f16`) and the cast of a loaded model;
//! - the seam ([`Spec`], [`Backbone`], [`Shape`]): all that rooms outside see of a backbone.

use std::path::PathBuf;

pub mod config;
pub mod cpu;
mod forward;
pub mod load;
pub mod precision;
pub mod rope;
mod seam;
pub mod vit;

pub use config::DinoV3Config;
pub use cpu::{Isa, Kernels, KernelsError, effective_kernels};
pub use load::{load_backbone, save_hf_dir};
pub use precision::{Precision, PrecisionError};
pub use seam::{Backbone, Shape, Spec};
pub use vit::{DinoV3, TapFeatures};

/// Why a backbone could not be loaded. Every message names the file and says what to fix.
#[derive(Debug, thiserror::Error)]
pub enum BackboneError {
    #[error("{path}: no such file or directory")]
    NotFound { path: PathBuf },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: bad DINOv3 config: {reason}")]
    Config { path: PathBuf, reason: String },
    #[error(transparent)]
    File(#[from] crate::io::WeightsError),
    #[error("{path}: cannot write weights: {reason}")]
    Weights { path: PathBuf, reason: String },
    #[error("{path}: {reason}")]
    NoWeights { path: PathBuf, reason: String },
    #[error(
        "{path}: no architecture: put the model's config.json beside it, or keep the released name \
         `dinov3_vitl16_pretrain_lvd1689m-<hash>.pth`"
    )]
    NoConfig { path: PathBuf },
    #[error(
        "{path}: not DINOv3 weights (neither HF `embeddings.*`/`layer.N.*` nor Meta `blocks.N.*` names); first keys: {first_keys}"
    )]
    Layout { path: PathBuf, first_keys: String },
    #[error("{path}: {count} tensor(s) missing for this config.json, first: {first}")]
    MissingKeys {
        path: PathBuf,
        count: usize,
        first: String,
    },
    #[error(
        "{path}: {count} unexpected tensor(s) for this config.json (wrong model or config?), first: {first}"
    )]
    UnexpectedKeys {
        path: PathBuf,
        count: usize,
        first: String,
    },
    #[error(
        "{path}: tensor `{key}` has shape {found:?}, the config needs {expected:?} (does config.json match the weights?)"
    )]
    Shape {
        path: PathBuf,
        key: String,
        found: Vec<usize>,
        expected: Vec<usize>,
    },
    #[error("{path}: tensor `{key}` holds NaN or infinite values; the file is corrupt")]
    NonFinite { path: PathBuf, key: String },
}
