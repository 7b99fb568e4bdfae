//! The AVA-DINO method (docs/method.md): dual bottleneck adapters per tap, text-guided
//! routing (and the ablation variants), cross-modal map / AACM / global heads, the reference
//! losses, AdamW with warmup, checkpoints in our format and the reference's `epoch_N.pth`.
//!
//! The model works on tap features and text features as tensors; it knows nothing of datasets,
//! backbones or the CLI.

pub mod adamw;
pub mod adapter;
pub mod checkpoint;
pub mod config;
pub mod fused;
pub mod heads;
pub mod loss;
pub mod method;
pub mod optim;
pub mod routing;
pub mod upsample;

pub use checkpoint::CheckpointError;
pub use config::{LossWeights, MethodConfig, Protocol, Variant};
pub use method::{AvaDino, Batch, LossValues, Losses, MethodOutput, ModelError};
pub use optim::{OptimConfig, Trainer, accumulated_gradients};
