//! `train.init`: a training that starts from given adapters instead of seeded random ones, for
//! example the untrained state of the authors' `AVADino` saved by a wrapper (docs/fidelity.md).
//!
//! The file is part of the run's identity by its SHA-256, so a changed file makes earlier work
//! stale; it is checked against the job's model (format, keys, tap count, dims) before any
//! backbone work, and read again by the training.

use std::path::Path;

use burn::tensor::Device;

use super::EngineError;
use super::assets::{backbone_spec, text_projection_dim};
use crate::experiment::{Experiment, Job};
use crate::model::{AvaDino, MethodConfig};

/// The identity of an initialisation file: `sha256:<hex>` of its bytes.
pub fn init_id(path: &Path) -> Result<String, EngineError> {
    if !path.is_file() {
        return Err(EngineError::Asset {
            what: format!("train.init {}", path.display()),
            message: "no such file; give the authors' epoch_N.pth or our adapters.safetensors"
                .into(),
        });
    }
    let hash = crate::io::sha256_file_cached(path).map_err(|source| EngineError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(format!("sha256:{hash}"))
}

/// The job's model configuration from the backbone's and text tower's shapes alone (their
/// headers and config files), so checkpoints can be checked before either is loaded.
pub fn method_config_unloaded(job: &Job, exp: &Experiment) -> Result<MethodConfig, EngineError> {
    let width = backbone_spec(&exp.backbone)?.shape().width;
    Ok(job.method_config(exp, width, text_projection_dim(&exp.text)?))
}

/// Reads the adapters of `path` (either format) as a model of `method` on `device`.
pub fn load(method: &MethodConfig, path: &Path, device: &Device) -> Result<AvaDino, EngineError> {
    Ok(AvaDino::load_checkpoint(method, path, device)?)
}
