//! CLIP ViT-L/14-336 text side: the text transformer and its key table ([`model`]), its weight
//! loading ([`load`]), the exact CLIP byte-level BPE tokenizer ([`tokenizer`]), the reference prompt
//! ensemble and the [`TextFeatures`] it produces ([`prompts`]), and the per-class-word
//! text-feature cache ([`cache`]).
//!
//! The reference (AVA-DINO `utils.py`) encodes 420 prompts per class word with a CLIP text tower that
//! runs **erf GELU** on weights trained with QuickGELU; [`Activation::Gelu`] is therefore the default
//! and [`Activation::QuickGelu`] the standard-CLIP option. Features are computed once per class word.

pub mod cache;
pub mod config;
mod html;
mod html_entities;
pub mod load;
pub mod model;
pub mod prompts;
pub mod tokenizer;

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

pub use cache::TextFeatureCache;
pub use config::ClipTextConfig;
pub use load::load_text_encoder;
pub use model::ClipText;
pub use prompts::TextFeatures;
pub use tokenizer::{CONTEXT_LENGTH, END_OF_TEXT, START_OF_TEXT, Tokenizer};

/// MLP activation of the text transformer.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize,
)]
pub enum Activation {
    /// Exact erf GELU: what the AVA-DINO reference runs (its rebuilt CLIP has no `quick_gelu`).
    #[default]
    #[serde(rename = "gelu")]
    Gelu,
    /// `x * sigmoid(1.702 x)`: what the OpenAI weights were trained with.
    #[serde(rename = "quick_gelu")]
    QuickGelu,
}

impl Activation {
    /// The name used in HF configs, CLI flags, logs and cache keys.
    pub fn name(self) -> &'static str {
        match self {
            Activation::Gelu => "gelu",
            Activation::QuickGelu => "quick_gelu",
        }
    }
}

impl fmt::Display for Activation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Activation {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "gelu" => Ok(Activation::Gelu),
            "quick_gelu" => Ok(Activation::QuickGelu),
            other => Err(format!(
                "unknown activation `{other}`: expected gelu or quick_gelu"
            )),
        }
    }
}

/// Everything that can go wrong on the text side. Each message names the file or input and the fix.
#[derive(Debug, thiserror::Error)]
pub enum TextError {
    #[error("{path}: cannot read: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{path}: not a CLIP text config ({reason}); expected an HF CLIPTextConfig (with projection_dim) or a CLIPConfig with text_config"
    )]
    Config { path: PathBuf, reason: String },
    #[error(
        "{path}: no CLIP text weights found; expected model.safetensors, openai.safetensors, a .safetensors file or a plain .pt/.bin state dict"
    )]
    NoWeights { path: PathBuf },
    #[error(transparent)]
    TensorFile(#[from] crate::io::TensorFileError),
    #[error(transparent)]
    Weights(crate::io::WeightsError),
    #[error(
        "{path}: this is a TorchScript archive (OpenAI's released CLIP .pt), which cannot be read without \
         Python; convert it once: python -c \"import torch,safetensors.torch as s; m=torch.jit.load('{path}',map_location='cpu'); \
         s.save_file({{k:v.float().contiguous() for k,v in m.state_dict().items()}},'openai.safetensors')\" (see README, CLIP weights)"
    )]
    TorchScript { path: PathBuf },
    #[error(
        "{path}: neither HF (`text_model.*`) nor OpenAI (`token_embedding.weight`, `transformer.resblocks.*`) CLIP text keys found (first keys: {found})"
    )]
    UnknownLayout { path: PathBuf, found: String },
    #[error("{path}: CLIP text weights do not match the config: {problems}")]
    Keys { path: PathBuf, problems: String },
    #[error(
        "{path}: cannot infer the config from OpenAI weights: {reason}; put an HF config.json next to the weights"
    )]
    Infer { path: PathBuf, reason: String },
    #[error(
        "text `{text}` is too long: {len} tokens with start/end, the context holds {max} (the reference raises here too; shorten the text)"
    )]
    TooLong {
        text: String,
        len: usize,
        max: usize,
    },
    #[error("input_ids: {0}")]
    Ids(String),
    #[error("{path}: cannot write: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: corrupt text-feature cache entry ({reason}); delete the file to recompute it")]
    Cache { path: PathBuf, reason: String },
}
