//! The per-epoch checkpoint of a training: the adapters in our format (what evaluation reads),
//! the reference's `epoch_N.pth`, the exact trainer state (to resume as if never stopped), the
//! epoch's losses, and `COMPLETE` written last. File names belong to
//! [`crate::experiment::CheckpointDir`].

use std::path::Path;

use burn::tensor::Device;

use super::EngineError;
use crate::experiment::CheckpointDir;
use crate::io::write_atomic;
use crate::model::LossValues;
use crate::model::{AvaDino, Trainer};

/// Mean losses and routing weights of one epoch.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct EpochSummary {
    pub epoch: usize,
    pub steps: usize,
    /// Loss values of every step, in order (for loss curves).
    pub step_losses: Vec<LossValues>,
    /// Mean tap-averaged `w_anomaly` over normal and over anomalous training images.
    pub w_anomaly_normal: Option<f64>,
    pub w_anomaly_anomalous: Option<f64>,
}

/// `epoch.json`: what one epoch did.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct EpochFile {
    pub summary: EpochSummary,
    pub seconds: f64,
    /// Optimizer updates done at the end of the epoch (the scheduler's step count).
    pub steps_done: usize,
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> EngineError + '_ {
    move |source| EngineError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Writes every file of `ckpt` from `trainer`, then marks it complete.
pub fn save(ckpt: &CheckpointDir, trainer: &Trainer, file: &EpochFile) -> Result<(), EngineError> {
    trainer.model.save(&ckpt.adapters())?;
    if let Some(pth) = ckpt.reference_pth()
        && trainer.model.config.variant.text_routed()
    {
        // The reference's own format: its test.py can read it. The ablations that change the
        // module structure have no place in that format.
        trainer
            .model
            .save_reference_pth(&pth, (ckpt.epoch - 1) as i64)?;
    }
    let (model, optim) = trainer.state_bytes()?;
    for (p, bytes) in [(ckpt.model_state(), model), (ckpt.optim_state(), optim)] {
        write_atomic(&p, &bytes).map_err(io_err(&p))?;
    }
    let p = ckpt.epoch_json();
    let json = serde_json::to_vec_pretty(file).expect("epoch file serializes");
    write_atomic(&p, &json).map_err(io_err(&p))?;
    ckpt.mark_complete()?;
    Ok(())
}

/// Removes the trainer state (model and optimizer bytes, three times the adapters) of a
/// checkpoint that two later complete ones supersede. Resume reads only the latest complete
/// checkpoint's state; keeping one more means a kill at any point leaves a state to resume from
/// even while the latest is being written. Without this a full-size training keeps 20 x 330 MB
/// of states nobody reads; the adapters and `epoch.json` stay (evaluation reads every epoch).
pub fn drop_trainer_state(ckpt: &CheckpointDir) -> Result<(), EngineError> {
    for p in [ckpt.model_state(), ckpt.optim_state()] {
        match std::fs::remove_file(&p) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io_err(&p)(e)),
            _ => {}
        }
    }
    Ok(())
}

/// Reads `epoch.json`.
pub fn read_epoch(ckpt: &CheckpointDir) -> Result<EpochFile, EngineError> {
    let p = ckpt.epoch_json();
    let text = std::fs::read(&p).map_err(io_err(&p))?;
    serde_json::from_slice(&text).map_err(|e| EngineError::Asset {
        what: p.display().to_string(),
        message: format!("{e}; the checkpoint is damaged: rerun with --force to retrain"),
    })
}

/// The trainer as it was at the end of `ckpt`; `template` is a fresh model of the same
/// configuration on the training (autodiff) device.
pub fn resume(
    ckpt: &CheckpointDir,
    template: AvaDino,
    optim: crate::model::OptimConfig,
    warmup_steps: usize,
) -> Result<Trainer, EngineError> {
    let read = |p: std::path::PathBuf| std::fs::read(&p).map_err(io_err(&p));
    let file = read_epoch(ckpt)?;
    Ok(Trainer::resume(
        template,
        optim,
        warmup_steps,
        read(ckpt.model_state())?,
        read(ckpt.optim_state())?,
        file.steps_done,
    )?)
}

/// The adapters of `ckpt`, for evaluation on `device`.
pub fn load_adapters(ckpt: &CheckpointDir, device: &Device) -> Result<AvaDino, EngineError> {
    Ok(AvaDino::load(&ckpt.adapters(), device)?)
}
